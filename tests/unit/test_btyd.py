"""BG/NBD model: published and reference values, simulation, edge cases, point-in-time RFM."""

from __future__ import annotations

import dataclasses
import datetime as dt
import warnings

import duckdb
import numpy as np
import pandas as pd
import pytest

from churnlab import btyd
from churnlab.btyd import BGNBDParams
from churnlab.errors import ChurnlabError

# Published maximum-likelihood fit on the CDNOW sample, in weeks (Fader, Hardie & Lee 2005,
# section 5: r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, log-likelihood -9582.4).
CDNOW = BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)

# Histories (x, t_x, T) in weeks; the first three are CDNOW customers 3, 2 and 1.
H = np.array(
    [
        (0, 0.0, 38.86),
        (1, 1.71, 38.86),
        (2, 30.43, 38.86),
        (5, 10.0, 38.86),
        (5, 38.0, 38.86),
        (20, 35.0, 38.86),
        (3, 5.0, 30.0),
        (40, 70.0, 78.0),
        (120, 75.0, 78.0),
    ]
)
X, TX, TT = H[:, 0], H[:, 1], H[:, 2]

# Reference values computed with lifetimes 0.11.3 (BetaGeoFitter with params_ set to CDNOW;
# numpy 2.4.6, scipy 1.17.1) in a throwaway environment: conditional_probability_alive,
# conditional_expected_number_of_purchases_up_to_time(39 and 4) and, per history,
# _negative_log_likelihood(log params, ..., weights=1, penalizer 0).
LT_P_ALIVE = [
    1.0,
    0.2121009853773791,
    0.726578570080673,
    0.0248043661687785,
    0.8794295232204663,
    0.8030101724959235,
    0.07696184676199996,
    0.4617196985665538,
    0.6393510087033374,
]
LT_E39 = [
    0.19509805201125396,
    0.20318698707975183,
    1.226028174767135,
    0.09444008240106358,
    3.3483377915703008,
    11.379982083413397,
    0.22327182351428534,
    7.543477832049247,
    31.081890008699467,
]
LT_E4 = [
    0.02215262146648201,
    0.023910290399401225,
    0.14733443008415406,
    0.011700169089160615,
    0.41482511803227684,
    1.454581002960206,
    0.028141182611049424,
    0.8857192428321179,
    3.6625803056832718,
]
LT_NLL = [
    0.5547132764381585,
    4.469093275032588,
    9.45860630706627,
    14.371932360595384,
    17.940186095915013,
    38.73350073342184,
    9.595182674681116,
    72.50046438398766,
    79.94638830192054,
]
# pymc-marketing 0.19.2 BetaGeoModel.expected_probability_no_purchase(t=39) with its posterior
# fixed at CDNOW, for the histories with x > 0 (H[1:]). For x = 0 it returns 0.9266, which is
# wrong: its formula keeps the "dropped out after the last purchase" term that only exists when
# x > 0 (see test_p_no_purchase_matches_monte_carlo_integral and the simulation test).
PYMC_P0_39 = [
    0.8833326506170451,
    0.44537286208299587,
    0.9760498044561462,
    0.1508547767416947,
    0.19699163136882203,
    0.9296327258402055,
    0.5382803795563569,
    0.3606489912967007,
]
# E[X(t) | x, t_x, T] evaluated with mpmath at 50 digits from the paper's equation 10 (without
# the Euler transform btyd uses): large x, long and tiny horizons. Columns x, t_x, T, t, value.
MPMATH_E = [
    (50, 70.0, 78.0, 52.0, 7.2156457985488),
    (300, 77.0, 78.0, 52.0, 140.31050591809478),
    (1000, 77.9, 78.0, 104.0, 887.5198192407609),
    (5, 3.0, 200.0, 1000.0, 2.892357256388414e-06),
    (1, 0.5, 1.0, 0.01, 0.0016767588326997934),
]


def simulate(
    rng: np.random.Generator,
    params: BGNBDParams,
    T: np.ndarray,
    t_future: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """BG/NBD histories over (0, T] and purchase counts in (T, T + t_future]."""
    n = len(T)
    lam = rng.gamma(params.r, 1.0 / params.alpha, n)
    p = np.clip(rng.beta(params.a, params.b, n), 1e-12, 1.0)
    repeats_until_death = rng.geometric(p)  # dies right after this many repeat purchases
    n_events = rng.poisson(lam * T)  # Poisson events in (0, T] had nobody died
    x = np.minimum(n_events, repeats_until_death)
    t_x = np.zeros(n)
    some = x > 0
    # the x-th of n_events uniform times on (0, T]
    t_x[some] = T[some] * rng.beta(x[some], n_events[some] - x[some] + 1)
    alive = n_events < repeats_until_death
    future = np.where(
        alive, np.minimum(rng.poisson(lam * t_future), repeats_until_death - n_events), 0
    )
    return x.astype(float), t_x, T, future


TRUE = BGNBDParams(r=0.8, alpha=5.0, a=0.6, b=3.0)
HORIZON_WEEKS = 13.0


@pytest.fixture(scope="module")
def simulated() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20240401)
    T = rng.uniform(26.0, 78.0, 20_000)
    x, t_x, T, future = simulate(rng, TRUE, T, HORIZON_WEEKS)
    return {"x": x, "t_x": t_x, "T": T, "future": future}


@pytest.fixture(scope="module")
def fitted(simulated: dict[str, np.ndarray]) -> BGNBDParams:
    return btyd.fit(simulated["x"], simulated["t_x"], simulated["T"])


# ------------------------------------------------------------------ published / reference values


def test_published_cdnow_conditional_expectation():
    # FHL 2005, section 5: customer 1 (x=2, t_x=30.43, T=38.86) is expected to make 1.226
    # purchases in the next 39 weeks.
    got = btyd.expected_purchases(CDNOW, 39.0, 2, 30.43, 38.86)
    assert round(float(got), 3) == 1.226


def test_scores_match_lifetimes_reference_values():
    np.testing.assert_allclose(btyd.p_alive(CDNOW, X, TX, TT), LT_P_ALIVE, rtol=1e-12)
    np.testing.assert_allclose(btyd.expected_purchases(CDNOW, 39.0, X, TX, TT), LT_E39, rtol=1e-12)
    np.testing.assert_allclose(btyd.expected_purchases(CDNOW, 4.0, X, TX, TT), LT_E4, rtol=1e-12)
    np.testing.assert_allclose(-btyd.log_likelihood(CDNOW, X, TX, TT), LT_NLL, rtol=1e-12)


def test_expected_purchases_matches_high_precision_values_for_large_histories():
    x, t_x, T, t, want = np.array(MPMATH_E).T
    np.testing.assert_allclose(btyd.expected_purchases(CDNOW, t, x, t_x, T), want, rtol=1e-11)


def test_p_no_purchase_matches_pymc_marketing_where_it_is_right():
    got = btyd.p_no_purchase(CDNOW, 39.0, X[1:], TX[1:], TT[1:])
    np.testing.assert_allclose(got, PYMC_P0_39, rtol=1e-12)


def test_p_no_purchase_matches_monte_carlo_integral():
    """Integrate over (lambda, p) from the priors, weighting each draw by its likelihood."""
    rng = np.random.default_rng(7)
    m = 400_000
    lam = rng.gamma(CDNOW.r, 1.0 / CDNOW.alpha, m)
    p = rng.beta(CDNOW.a, CDNOW.b, m)
    t = 39.0
    for x, t_x, T in H[:5]:
        alive = (1 - p) ** x * lam**x * np.exp(-lam * T)
        dead = (x > 0) * p * (1 - p) ** max(x - 1, 0) * lam**x * np.exp(-lam * t_x)
        lik = alive + dead
        # alive customers buy nothing in (T, T+t] with probability exp(-lambda t)
        no_buy = (dead + alive * np.exp(-lam * t)) / lik
        mc = float(np.sum(lik * no_buy) / np.sum(lik))
        assert btyd.p_no_purchase(CDNOW, t, x, t_x, T) == pytest.approx(mc, abs=0.004)
        assert btyd.p_alive(CDNOW, x, t_x, T) == pytest.approx(
            float(np.sum(alive) / np.sum(lik)), abs=0.004
        )
    # x = 0: alive for sure, so the answer is the Gamma(r, alpha + T) Laplace transform
    want = ((CDNOW.alpha + 38.86) / (CDNOW.alpha + 38.86 + t)) ** CDNOW.r
    assert btyd.p_no_purchase(CDNOW, t, 0, 0.0, 38.86) == pytest.approx(want, rel=1e-14)


# ------------------------------------------------------------------ simulation: fit and calibration


def test_fit_recovers_simulated_parameters(fitted: BGNBDParams):
    # Sampling sd at 20,000 customers (20 replications at 5,000, scaled): r 1.5%, alpha 2.3%,
    # a 3.4%, b 4.8% of the true value; the bounds are about 4 sd.
    assert fitted.r == pytest.approx(TRUE.r, rel=0.06)
    assert fitted.alpha == pytest.approx(TRUE.alpha, rel=0.09)
    assert fitted.a == pytest.approx(TRUE.a, rel=0.14)
    assert fitted.b == pytest.approx(TRUE.b, rel=0.19)


def test_fitted_log_likelihood_is_a_maximum(simulated: dict[str, np.ndarray], fitted: BGNBDParams):
    def total(p: BGNBDParams) -> float:
        return float(btyd.log_likelihood(p, simulated["x"], simulated["t_x"], simulated["T"]).sum())

    best = total(fitted)
    for name in ("r", "alpha", "a", "b"):
        for factor in (0.99, 1.01):
            moved = dataclasses.replace(fitted, **{name: getattr(fitted, name) * factor})
            assert total(moved) < best


def test_p_no_purchase_is_calibrated_on_the_next_period(
    simulated: dict[str, np.ndarray], fitted: BGNBDParams
):
    x, t_x, T, future = (simulated[k] for k in ("x", "t_x", "T", "future"))
    pred = btyd.p_no_purchase(fitted, HORIZON_WEEKS, x, t_x, T)
    obs = (future == 0).astype(float)
    n = len(obs)
    assert abs(pred.mean() - obs.mean()) < 4 * np.sqrt(np.mean(pred * (1 - pred)) / n) + 0.005
    order = np.argsort(pred, kind="stable")
    for idx in np.array_split(order, 10):
        p_mean, o_mean = pred[idx].mean(), obs[idx].mean()
        se = np.sqrt(max(p_mean * (1 - p_mean), 1e-4) / len(idx))
        assert abs(o_mean - p_mean) < 4 * se + 0.005, (p_mean, o_mean)
    # customers without a repeat purchase are where implementations go wrong
    zero = x == 0
    p0, o0 = pred[zero].mean(), obs[zero].mean()
    assert abs(o0 - p0) < 4 * np.sqrt(p0 * (1 - p0) / zero.sum()) + 0.005
    # the model is informative: the top decile of risk churns far more than the bottom one
    assert obs[order[-n // 10 :]].mean() > obs[order[: n // 10]].mean() + 0.5


def test_expected_purchases_is_calibrated_on_the_next_period(
    simulated: dict[str, np.ndarray], fitted: BGNBDParams
):
    x, t_x, T, future = (simulated[k] for k in ("x", "t_x", "T", "future"))
    pred = btyd.expected_purchases(fitted, HORIZON_WEEKS, x, t_x, T)
    se = future.std() / np.sqrt(len(future))
    assert abs(pred.mean() - future.mean()) < 4 * se + 0.01


def test_fit_is_deterministic_order_free_and_weights_pool_rows(simulated: dict[str, np.ndarray]):
    # coarse (5-week) times, so that many customers share a history
    x = simulated["x"][:3000]
    t_x, T = (5.0 * np.round(simulated[k][:3000] / 5.0) for k in ("t_x", "T"))
    t_x = np.minimum(t_x, T)
    t_x[x == 0] = 0.0
    base = btyd.fit(x, t_x, T)
    perm = np.random.default_rng(1).permutation(len(x))
    assert btyd.fit(x[perm], t_x[perm], T[perm]) == base
    hist, counts = np.unique(np.stack([x, t_x, T], axis=1), axis=0, return_counts=True)
    assert len(hist) < len(x) / 2  # rounding made the pooling real
    assert btyd.fit(hist[:, 0], hist[:, 1], hist[:, 2], weights=counts) == base
    # zero weight is the same as leaving the row out
    w = np.ones(len(x))
    w[:500] = 0.0
    assert btyd.fit(x, t_x, T, weights=w) == btyd.fit(x[500:], t_x[500:], T[500:])


def test_time_unit_only_rescales_alpha(simulated: dict[str, np.ndarray]):
    x, t_x, T = (simulated[k][:5000] for k in ("x", "t_x", "T"))
    weeks = btyd.fit(x, t_x, T)
    days = btyd.fit(x, t_x * 7, T * 7)
    assert days.alpha == pytest.approx(7 * weeks.alpha, rel=1e-5)
    for name in ("r", "a", "b"):
        assert getattr(days, name) == pytest.approx(getattr(weeks, name), rel=1e-5)
    np.testing.assert_allclose(
        btyd.p_no_purchase(days, 91.0, x, t_x * 7, T * 7),
        btyd.p_no_purchase(weeks, 13.0, x, t_x, T),
        atol=1e-6,
    )


def test_penalizer_shrinks_parameters(simulated: dict[str, np.ndarray]):
    x, t_x, T = (simulated[k][:5000] for k in ("x", "t_x", "T"))

    def norm(p: BGNBDParams) -> float:
        return p.r**2 + p.alpha**2 + p.a**2 + p.b**2

    assert norm(btyd.fit(x, t_x, T, penalizer=0.1)) < 0.8 * norm(btyd.fit(x, t_x, T))


# ------------------------------------------------------------------ edge cases


def test_no_repeat_purchase_means_alive():
    got = btyd.p_alive(CDNOW, np.zeros(3), np.zeros(3), np.array([1.0, 50.0, 500.0]))
    assert got.tolist() == [1.0, 1.0, 1.0]


def test_zero_horizon():
    assert btyd.p_no_purchase(CDNOW, 0.0, X, TX, TT).tolist() == [1.0] * len(X)
    assert btyd.expected_purchases(CDNOW, 0.0, X, TX, TT).tolist() == [0.0] * len(X)


def test_longer_horizon_lowers_p_no_purchase():
    t = np.array([0.5, 1, 4, 13, 52, 520])
    for x, t_x, T in H:
        p0 = btyd.p_no_purchase(CDNOW, t, x, t_x, T)
        # strictly falling, until a heavy buyer's curve has flattened at 1 - P(alive)
        assert np.all(np.diff(p0[:5]) < 0) and p0[5] <= p0[4]
        # in the limit only the dead never buy again
        far = btyd.p_no_purchase(CDNOW, 1e40, x, t_x, T)  # r = 0.243 converges slowly
        assert far == pytest.approx(1 - btyd.p_alive(CDNOW, x, t_x, T), abs=1e-6)


def test_longer_silence_lowers_p_alive_and_raises_churn():
    T = np.array([20.0, 30.0, 40.0, 80.0])  # same last purchase at week 10, observed longer
    alive = btyd.p_alive(CDNOW, 3, 10.0, T)
    churn = btyd.p_no_purchase(CDNOW, 13.0, 3, 10.0, T)
    assert np.all(np.diff(alive) < 0) and np.all(np.diff(churn) > 0)
    # and a later last purchase (shorter silence) at the same age means more alive
    assert np.all(np.diff(btyd.p_alive(CDNOW, 3, np.array([5.0, 20.0, 39.0]), 40.0)) > 0)


def test_probabilities_are_consistent():
    t = 13.0
    p0 = btyd.p_no_purchase(CDNOW, t, X, TX, TT)
    assert np.all((p0 > 0) & (p0 < 1))
    # P(at least one purchase) <= E[purchases] (Markov), and p_churn >= P(dead)
    assert np.all(1 - p0 <= btyd.expected_purchases(CDNOW, t, X, TX, TT) + 1e-12)
    assert np.all(p0 >= 1 - btyd.p_alive(CDNOW, X, TX, TT))


def test_nan_history_scores_nan_and_broadcasts():
    got = btyd.p_no_purchase(
        CDNOW, np.array([[4.0], [13.0]]), [np.nan, 2.0], [np.nan, 30.43], 38.86
    )
    assert got.shape == (2, 2)
    assert np.isnan(got[:, 0]).all() and np.isfinite(got[:, 1]).all()
    assert np.isnan(btyd.p_alive(CDNOW, np.nan, np.nan, np.nan))
    assert np.isnan(btyd.expected_purchases(CDNOW, 4.0, np.nan, np.nan, np.nan))


@pytest.mark.parametrize(
    ("x", "t_x", "T", "message"),
    [
        (-1, 0.0, 5.0, "impossible"),
        (1.5, 1.0, 5.0, "impossible"),
        (2, 6.0, 5.0, "impossible"),
        (0, 1.0, 5.0, "impossible"),
    ],
)
def test_scoring_rejects_impossible_histories(x, t_x, T, message):
    with pytest.raises(ChurnlabError, match=message):
        btyd.p_alive(CDNOW, x, t_x, T)


def test_scoring_rejects_negative_horizon():
    with pytest.raises(ChurnlabError, match="t must be >= 0"):
        btyd.p_no_purchase(CDNOW, -1.0, 1, 1.0, 2.0)


def test_fit_refuses_too_little_data():
    with pytest.raises(ChurnlabError, match="at least 10 customers"):
        btyd.fit([1, 2, 0], [1.0, 2.0, 0.0], [3.0, 3.0, 3.0])
    with pytest.raises(ChurnlabError, match="at least 10 customers"):
        btyd.fit(*np.ones((3, 12)) * [[1], [1], [2]], weights=[0.0] * 6 + [1.0] * 6)
    with pytest.raises(ChurnlabError, match="no repeat purchase|none of the 20"):
        btyd.fit(np.zeros(20), np.zeros(20), np.full(20, 10.0))


def test_fit_refuses_bad_inputs():
    x, t_x, T = np.array([1.0] * 12), np.array([1.0] * 12), np.array([2.0] * 12)
    with pytest.raises(ChurnlabError, match="dropna"):
        btyd.fit(np.r_[x, np.nan], np.r_[t_x, np.nan], np.r_[T, np.nan])
    with pytest.raises(ChurnlabError, match="impossible"):
        btyd.fit(x, t_x * 3, T)
    with pytest.raises(ChurnlabError, match="weights has 3 values for 12"):
        btyd.fit(x, t_x, T, weights=[1, 2, 3])
    with pytest.raises(ChurnlabError, match="penalizer"):
        btyd.fit(x, t_x, T, penalizer=-1.0)


def test_fit_refuses_data_without_dropout():
    # Poisson buyers who never drop out: the likelihood keeps rising as a -> 0
    rng = np.random.default_rng(0)
    T = rng.uniform(20, 50, 2000)
    n = rng.poisson(rng.gamma(2.0, 0.5, 2000) * T)
    t_x = np.where(n > 0, T * rng.beta(np.maximum(n, 1), 1), 0.0)
    with pytest.raises(ChurnlabError, match=r"no interior maximum.*a -> 0"):
        btyd.fit(n, t_x, T)


# ------------------------------------------------------------------ point-in-time RFM

C1 = dt.datetime(2024, 2, 1)
C2 = dt.datetime(2024, 3, 1)


def orders_con(rows: list[tuple[str, str, float, str | None]]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE main.orders (account_id VARCHAR, ordered_at TIMESTAMP, amount DOUBLE, "
        "kind VARCHAR)"
    )
    if rows:
        con.executemany("INSERT INTO main.orders VALUES (?, ?, ?, ?)", rows)
    return con


def spine_frame(rows: list[tuple[str, dt.datetime]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["account_id", "cutoff"])
    return frame.astype({"cutoff": "datetime64[us]"})


LITERAL_ORDERS = [
    ("a", "2024-01-01 10:00:00", 50.0, "new"),
    ("a", "2024-01-01 15:30:00", 20.0, "services"),  # same day: one purchase
    ("a", "2024-01-15 09:00:00", 30.0, None),  # kind NULL is an order
    ("a", "2024-01-20 12:00:00", -30.0, "refund"),  # a refund is not a purchase
    ("a", "2024-02-01 00:00:00", 40.0, "new"),  # exactly at C1: not seen at C1
    ("b", "2024-01-31 23:59:59.999999", 10.0, "new"),  # one microsecond before C1: seen
    ("c", "2024-01-10 08:00:00", -5.0, "refund"),  # only a refund
    ("e", "2024-03-05 00:00:00", 1.0, "new"),  # only after both cutoffs
]


def test_rfm_exact_values_in_days():
    con = orders_con(LITERAL_ORDERS)
    spine = spine_frame([("b", C1), ("a", C2), ("a", C1), ("c", C1), ("d", C1), ("e", C2)])
    got = btyd.rfm_at_cutoffs(con, spine, time_unit_days=1.0)
    assert got["account_id"].tolist() == ["b", "a", "a", "c", "d", "e"]
    assert got["cutoff"].tolist() == [C1, C2, C1, C1, C1, C2]
    assert got["cutoff"].dtype == "datetime64[us]"
    nan = float("nan")
    want = pd.DataFrame(
        {
            # b: one order day (Jan 31), age 1 day. a at C2: Jan 1, Jan 15, Feb 1 (2024 is leap).
            # a at C1: Jan 1 and Jan 15 only.
            "frequency": [0.0, 2.0, 1.0, nan, nan, nan],
            "recency": [0.0, 31.0, 14.0, nan, nan, nan],
            "T": [1.0, 60.0, 31.0, nan, nan, nan],
        }
    )
    pd.testing.assert_frame_equal(got[["frequency", "recency", "T"]], want)
    assert list(got.columns) == ["account_id", "cutoff", "frequency", "recency", "T"]


def test_rfm_in_weeks_and_empty_spine():
    con = orders_con(LITERAL_ORDERS)
    got = btyd.rfm_at_cutoffs(con, spine_frame([("a", C2)]))
    assert got[["frequency", "recency", "T"]].iloc[0].tolist() == pytest.approx(
        [2.0, 31 / 7, 60 / 7], rel=1e-15
    )
    empty = btyd.rfm_at_cutoffs(con, spine_frame([]))
    assert len(empty) == 0
    assert list(empty.columns) == ["account_id", "cutoff", "frequency", "recency", "T"]


def test_rfm_errors():
    con = orders_con([])
    with pytest.raises(ChurnlabError, match="no column"):
        btyd.rfm_at_cutoffs(con, pd.DataFrame({"account_id": ["a"]}))
    with pytest.raises(ChurnlabError, match="time_unit_days"):
        btyd.rfm_at_cutoffs(con, spine_frame([("a", C1)]), time_unit_days=0)
    with pytest.raises(ChurnlabError, match="no main.orders"):
        btyd.rfm_at_cutoffs(duckdb.connect(), spine_frame([("a", C1)]))


def random_orders(rng: np.random.Generator, cutoffs: list[dt.datetime]) -> pd.DataFrame:
    start = np.datetime64("2023-10-01T00:00:00", "us")
    span_us = 240 * 86_400_000_000
    n = 600
    at = start + rng.integers(0, span_us, n).astype("timedelta64[us]")
    # put orders exactly at and just around every cutoff
    edges = [np.datetime64(c, "us") + np.timedelta64(d, "us") for c in cutoffs for d in (-1, 0, 1)]
    at = np.concatenate([at, np.array(edges * 4, dtype="datetime64[us]")])
    m = len(at)
    return pd.DataFrame(
        {
            "account_id": rng.choice(list("abcdefgh"), m),
            "ordered_at": at,
            "amount": rng.normal(100, 30, m),
            "kind": rng.choice(np.array(["new", "refund", None, "upsell"], dtype=object), m),
        }
    )


def con_from_frame(orders: pd.DataFrame) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register("src", orders)
    con.execute(
        "CREATE TABLE main.orders AS SELECT account_id::VARCHAR AS account_id, "
        "ordered_at::TIMESTAMP AS ordered_at, amount::DOUBLE AS amount, kind::VARCHAR AS kind "
        "FROM src"
    )
    con.unregister("src")
    return con


def test_rfm_point_in_time_mutation():
    cutoffs = [dt.datetime(2023, 12, 1), dt.datetime(2024, 2, 1), dt.datetime(2024, 4, 1)]
    rng = np.random.default_rng(3)
    orders = random_orders(rng, cutoffs)
    spine = spine_frame([(a, c) for c in cutoffs for a in "abcdefghz"])
    base = btyd.rfm_at_cutoffs(con_from_frame(orders), spine)
    assert base["frequency"].notna().sum() > 20 and (base["frequency"] > 0).sum() > 10
    for c in cutoffs:
        rows = (spine["cutoff"] == c).to_numpy()
        after = (orders["ordered_at"] >= c).to_numpy()
        changed = orders.copy()
        # every order at or after the cutoff: moved, re-kinded, re-priced, given to others
        changed.loc[after, "ordered_at"] += pd.Timedelta(days=3, hours=5)
        changed.loc[after, "kind"] = "new"
        changed.loc[after, "amount"] = 1.0
        changed.loc[after, "account_id"] = rng.choice(list("abcdefghz"), after.sum())
        extra = changed[after].assign(ordered_at=np.datetime64(c, "us"))
        for mutated in (changed, pd.concat([changed, extra]), orders[~after]):
            got = btyd.rfm_at_cutoffs(con_from_frame(mutated), spine)
            pd.testing.assert_frame_equal(got[rows], base[rows])
        # and the test can fail: dropping the last order day before the cutoff changes the rows
        buys = orders[~after & (orders["kind"] != "refund").to_numpy()]
        last = buys.loc[buys["ordered_at"].idxmax()]
        same_day = (orders["account_id"] == last["account_id"]) & (
            orders["ordered_at"].dt.floor("D") == last["ordered_at"].floor("D")
        )
        dropped = btyd.rfm_at_cutoffs(con_from_frame(orders[~same_day]), spine)
        assert not dropped[rows].equals(base[rows])


def test_score_at_cutoffs():
    con = orders_con(LITERAL_ORDERS)
    rfm = btyd.rfm_at_cutoffs(con, spine_frame([("a", C2), ("b", C1), ("d", C1)]))
    rfm.index = pd.Index([10, 11, 12])
    got = btyd.score_at_cutoffs(CDNOW, rfm, 91.0)
    assert list(got.columns) == [
        "account_id",
        "cutoff",
        "p_alive",
        "expected_purchases",
        "p_churn",
    ]
    assert got.index.tolist() == [10, 11, 12]
    x, t_x, T = rfm["frequency"].iloc[:2], rfm["recency"].iloc[:2], rfm["T"].iloc[:2]
    np.testing.assert_array_equal(got["p_alive"].iloc[:2], btyd.p_alive(CDNOW, x, t_x, T))
    np.testing.assert_array_equal(
        got["p_churn"].iloc[:2], btyd.p_no_purchase(CDNOW, 13.0, x, t_x, T)
    )
    np.testing.assert_array_equal(
        got["expected_purchases"].iloc[:2], btyd.expected_purchases(CDNOW, 13.0, x, t_x, T)
    )
    assert got.loc[11, "p_alive"] == 1.0  # b has no repeat purchase
    assert got.loc[12, ["p_alive", "expected_purchases", "p_churn"]].isna().all()
    with pytest.raises(ChurnlabError, match="horizon_days"):
        btyd.score_at_cutoffs(CDNOW, rfm, -1.0)
    with pytest.raises(ChurnlabError, match="no column"):
        btyd.score_at_cutoffs(CDNOW, rfm.drop(columns="T"), 91.0)


def test_likelihood_gradient_matches_finite_differences():
    x, t_x, T = X, TX / 10, TT / 10  # the fit works in rescaled time
    theta = np.array([CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b])
    _, grad = btyd._ll_terms(*theta, x, t_x, T, grad=True)
    for i in range(4):
        h = np.zeros(4)
        h[i] = 1e-6 * theta[i]
        up = btyd.log_likelihood(BGNBDParams(*(theta + h)), x, t_x, T)
        down = btyd.log_likelihood(BGNBDParams(*(theta - h)), x, t_x, T)
        np.testing.assert_allclose(grad[i], (up - down) / (2 * h[i]), rtol=1e-6, atol=1e-8)


def test_expected_purchases_is_finite_when_almost_everyone_drops_out() -> None:
    # A fit on one-purchase customers (a = 4e4, b = 2e-5: dropout after every repeat purchase)
    # made (1-z)^(a-1) 2F1(...) overflow: NaN and a RuntimeWarning in the terminal.
    params = BGNBDParams(r=0.0096, alpha=1.9965, a=43156.6, b=2.317e-5)
    x, t_x, T = np.array([0.0, 1.0, 3.0]), np.array([0.0, 5.0, 20.0]), np.array([10.0, 30.0, 60.0])
    t = 12.86
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = btyd.expected_purchases(params, t, x, t_x, T)
    # x = 0: alive, and at most one more purchase before dropping out: P(any purchase in t)
    once = 1.0 - ((params.alpha + T[0]) / (params.alpha + T[0] + t)) ** params.r
    assert got[0] == pytest.approx(once, rel=1e-4)
    assert 0.0 <= got[1] < 1e-9 and 0.0 <= got[2] < 1e-5  # dead after their repeat purchases

"""Campaign statistics: intervals, sample sizes, Qini curves, with exact and published values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from churnlab.effects import (
    EffectsError,
    difference_in_means,
    difference_in_rates,
    minimum_detectable_effect,
    required_sample_size,
    too_small,
)
from churnlab.uplift_curves import qini_auc, qini_curve, uplift_by_decile


def outcomes(events: int, n: int) -> np.ndarray:
    return np.r_[np.ones(events), np.zeros(n - events)]


# ---------------------------------------------------------------------------------------------
# difference_in_rates


def test_rate_difference_fields_on_a_tiny_input() -> None:
    r = difference_in_rates([True, True, False, True], [0, 1, 0])
    assert (r.rate_t, r.rate_c, r.diff) == (0.75, 1 / 3, 0.75 - 1 / 3)
    assert (r.n_t, r.n_c, r.events_t, r.events_c) == (4, 3, 3, 1)
    assert (r.method, r.level) == ("newcombe", 0.95)
    assert r.ci_low < r.diff < r.ci_high


@pytest.mark.parametrize(
    ("e_t", "n_t", "e_c", "n_c", "low", "high"),
    [
        # Newcombe (1998), Table II, method 10 (hybrid score, no continuity correction).
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
        (10, 10, 0, 20, 0.6791, 1.0000),
        # By hand: Wilson 6/7 = (0.48686, 0.97432), 2/7 = (0.08221, 0.64107); 0.57143 -
        # sqrt(0.37028^2 + 0.35536^2) = 0.0582 and 0.57143 + sqrt(0.11718^2 + 0.20350^2) = 0.8062.
        (6, 7, 2, 7, 0.0582, 0.8062),
    ],
)
def test_newcombe_interval_matches_published_values(
    e_t: int, n_t: int, e_c: int, n_c: int, low: float, high: float
) -> None:
    r = difference_in_rates(outcomes(e_t, n_t), outcomes(e_c, n_c))
    assert r.diff == pytest.approx(e_t / n_t - e_c / n_c)
    assert r.ci_low == pytest.approx(low, abs=5e-5)
    assert r.ci_high == pytest.approx(high, abs=5e-5)


def test_newcombe_interval_narrows_with_the_level() -> None:
    t, c = outcomes(56, 70), outcomes(48, 80)
    wide = difference_in_rates(t, c, level=0.99)
    narrow = difference_in_rates(t, c, level=0.80)
    assert wide.ci_low < 0.0524 < narrow.ci_low < narrow.ci_high < 0.3339 < wide.ci_high


@pytest.mark.parametrize(("n_t", "p_t", "n_c", "p_c"), [(60, 0.25, 30, 0.10), (200, 0.3, 50, 0.4)])
def test_newcombe_coverage_is_close_to_nominal(n_t: int, p_t: float, n_c: int, p_c: float) -> None:
    rng = np.random.default_rng(2024)
    reps = 2000
    covered = 0
    for _ in range(reps):
        r = difference_in_rates(
            outcomes(rng.binomial(n_t, p_t), n_t), outcomes(rng.binomial(n_c, p_c), n_c)
        )
        covered += r.ci_low <= p_t - p_c <= r.ci_high
    # Binomial standard error of the coverage at 2000 repetitions is 0.005.
    assert 0.93 <= covered / reps <= 0.97


def test_bootstrap_rates_are_reproducible_and_close_to_newcombe() -> None:
    rng = np.random.default_rng(5)
    t = (rng.random(3000) < 0.3).astype(int)
    c = (rng.random(2000) < 0.2).astype(int)
    a = difference_in_rates(t, c, method="bootstrap", seed=7)
    b = difference_in_rates(t, c, method="bootstrap", seed=7)
    other = difference_in_rates(t, c, method="bootstrap", seed=8)
    assert a == b
    assert (a.ci_low, a.ci_high) != (other.ci_low, other.ci_high)
    assert a.method == "bootstrap" and a.ci_low < a.diff < a.ci_high
    score = difference_in_rates(t, c)
    assert a.ci_low == pytest.approx(score.ci_low, abs=0.004)
    assert a.ci_high == pytest.approx(score.ci_high, abs=0.004)


def test_bootstrap_of_certain_outcomes_is_a_point() -> None:
    r = difference_in_rates(np.ones(5), np.zeros(4), method="bootstrap")
    assert (r.diff, r.ci_low, r.ci_high) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("treated", "control", "message"),
    [
        ([1, 0, 2], [0, 1], "outcomes must be 0/1.*e.g. 2 at position 2"),
        ([1, np.nan], [0, 1], "1 missing or infinite value.*position 1"),
        ([], [0, 1], "treated_outcomes: no accounts"),
        ([1, 0], ["yes"], "values must be numbers or booleans"),
    ],
)
def test_rate_inputs_are_checked(treated, control, message: str) -> None:
    with pytest.raises(EffectsError, match=message):
        difference_in_rates(treated, control)


def test_unknown_method_and_level_are_rejected() -> None:
    with pytest.raises(EffectsError, match="method must be 'newcombe' or 'bootstrap'"):
        difference_in_rates([1], [0], method="wald")  # type: ignore[arg-type]
    with pytest.raises(EffectsError, match="level must be between 0 and 1"):
        difference_in_rates([1], [0], level=95)


# ---------------------------------------------------------------------------------------------
# difference_in_means


def test_welch_interval_by_hand_and_against_scipy() -> None:
    t, c = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0]
    r = difference_in_means(t, c)
    # Variances 5/3 and 4: se = sqrt(5/12 + 4/3) = sqrt(1.75),
    # df = 1.75^2 / ((5/12)^2 / 3 + (4/3)^2 / 2).
    assert r.diff == -1.5 and (r.mean_t, r.mean_c) == (2.5, 4.0)
    assert r.se == pytest.approx(math.sqrt(1.75))
    assert r.df == pytest.approx(1.75**2 / ((5 / 12) ** 2 / 3 + (4 / 3) ** 2 / 2))
    ref = stats.ttest_ind(t, c, equal_var=False).confidence_interval(0.95)
    assert (r.ci_low, r.ci_high) == pytest.approx((ref.low, ref.high))
    assert (r.n_t, r.n_c, r.method) == (4, 3, "welch")


def test_welch_with_no_variance_is_a_point_and_needs_two_per_group() -> None:
    r = difference_in_means([5.0, 5.0], [3.0, 3.0, 3.0])
    assert (r.diff, r.ci_low, r.ci_high, r.se) == (2.0, 2.0, 2.0, 0.0)
    assert math.isnan(r.df)
    with pytest.raises(EffectsError, match="at least 2 accounts per group.*treated 1"):
        difference_in_means([1.0], [1.0, 2.0])


def test_bootstrap_means_are_reproducible_and_close_to_welch() -> None:
    rng = np.random.default_rng(3)
    t = rng.lognormal(6, 1, 800)  # skewed like retained ARR
    c = rng.lognormal(5.9, 1, 300)
    a = difference_in_means(t, c, method="bootstrap", seed=1)
    again = difference_in_means(t, c, method="bootstrap", seed=1)
    other = difference_in_means(t, c, method="bootstrap", seed=2)
    assert (a.ci_low, a.ci_high, a.se) == (again.ci_low, again.ci_high, again.se)
    assert (a.ci_low, a.ci_high) != (other.ci_low, other.ci_high)
    w = difference_in_means(t, c)
    assert a.diff == w.diff and math.isnan(a.df)
    assert a.se == pytest.approx(w.se, rel=0.1)
    assert a.ci_low == pytest.approx(w.ci_low, abs=0.15 * w.se)
    assert a.ci_high == pytest.approx(w.ci_high, abs=0.15 * w.se)


# ---------------------------------------------------------------------------------------------
# planning


def test_sample_size_textbook_value_for_equal_groups() -> None:
    # 0.4 vs 0.6, alpha 0.05, power 0.8: 96.9 per group by the usual formula, so 97 each.
    s = required_sample_size(0.4, 0.2, holdout_share=0.5)
    assert (s.n_treated, s.n_control, s.n_total) == (97, 97, 194)


def test_sample_size_with_a_small_holdout_by_hand() -> None:
    # p_c 0.30, p_t 0.25, 20% held out: pbar = 0.26, sigma_0 = sqrt(0.26 * 0.74 * 6.25) =
    # 1.096586, sigma_1 = sqrt(0.1875 / 0.8 + 0.21 / 0.2) = 1.133303, N = ((1.959964 * sigma_0
    # + 0.841621 * sigma_1) / 0.05)^2 = 3851.65 -> 3082 contacted and 771 held out.
    s = required_sample_size(0.3, -0.05, holdout_share=0.2)
    assert (s.n_treated, s.n_control, s.n_total) == (3082, 771, 3853)
    assert (s.base_rate, s.detectable_diff, s.alpha, s.power) == (0.3, -0.05, 0.05, 0.8)


def test_sample_size_gives_the_promised_power_by_simulation() -> None:
    s = required_sample_size(0.3, -0.05, holdout_share=0.2)
    rng = np.random.default_rng(11)
    reps = 2000
    e_t = rng.binomial(s.n_treated, 0.25, reps)
    e_c = rng.binomial(s.n_control, 0.30, reps)
    pooled = (e_t + e_c) / s.n_total
    se = np.sqrt(pooled * (1 - pooled) * (1 / s.n_treated + 1 / s.n_control))
    z = (e_t / s.n_treated - e_c / s.n_control) / se
    power = np.mean(np.abs(z) > stats.norm.ppf(0.975))
    assert 0.77 <= power <= 0.83


def test_minimum_detectable_effect_inverts_the_sample_size() -> None:
    # Rounding up to whole accounts makes the detectable effect a hair smaller than asked.
    assert minimum_detectable_effect(97, 97, 0.4) == pytest.approx(0.2, abs=2e-4)
    assert minimum_detectable_effect(97, 97, 0.4) < 0.2
    mde = minimum_detectable_effect(3082, 771, 0.3, alternative="decrease")
    assert -0.05 < mde < -0.0499
    assert minimum_detectable_effect(4 * 3082, 4 * 771, 0.3, alternative="decrease") > mde
    assert math.isnan(minimum_detectable_effect(1, 1, 0.5))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_rate": 0.0, "detectable_diff": 0.1}, "base_rate must be strictly between"),
        ({"base_rate": 0.95, "detectable_diff": 0.1}, "base_rate \\+ detectable_diff must be"),
        ({"base_rate": 0.3, "detectable_diff": 0.0}, "must not be 0"),
        ({"base_rate": 0.3, "detectable_diff": 0.1, "power": 1.0}, "power must be between"),
    ],
)
def test_sample_size_inputs_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(EffectsError, match=message):
        required_sample_size(**kwargs, holdout_share=0.2)


# ---------------------------------------------------------------------------------------------
# Qini

# Six accounts, scores descending: treated accounts 0, 2, 4 and held-out 1, 3, 5.
SCORE = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
TREATED = [1, 0, 1, 0, 1, 0]
SAVED = [1, 0, 1, 1, 0, 0]


def test_qini_curve_by_hand() -> None:
    curve = qini_curve(SCORE, TREATED, SAVED)
    assert list(curve.columns) == [
        "n",
        "fraction",
        "n_treated",
        "n_control",
        "outcome_treated",
        "outcome_control",
        "qini",
        "random",
    ]
    assert curve["n"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert curve["n_treated"].tolist() == [0, 1, 1, 2, 2, 3, 3]
    # Q = Y_t - Y_c * N_t / N_c: 1 (no control yet), 1, 2, 2 - 1 * 2/2, 2 - 1 * 3/2, 2 - 1 * 3/3.
    assert curve["qini"].tolist() == [0.0, 1.0, 1.0, 2.0, 1.0, 0.5, 1.0]
    assert curve["random"].tolist() == pytest.approx([k / 6 for k in range(7)])


def test_qini_auc_by_hand() -> None:
    # Area between the curve and the random line: 1/12 * (5/6 + 9/6 + 13/6 + 11/6 + 0 - 2/6) = 0.5.
    assert qini_auc(SCORE, TREATED, SAVED, normalize=False) == pytest.approx(0.5)
    # Perfect ranking (treated savers {0, 2} tied first, the non-savers {1, 4, 5}, then the
    # held-out saver 3): points (2/6, 2), (5/6, 2), (1, 1), area 13/12; coefficient 6/13.
    assert qini_auc(SCORE, TREATED, SAVED) == pytest.approx(6 / 13)


def test_qini_of_perfect_random_and_inverted_scores() -> None:
    y, w = np.array(SAVED, float), np.array(TREATED, float)
    rng = np.random.default_rng(0)
    # Any score putting treated savers first and held-out savers last is perfect, however it
    # orders the accounts in between.
    perfect = 2 * y * w - 2 * y * (1 - w) + (1 - y) * rng.random(6)
    assert qini_auc(perfect, w, y) == pytest.approx(1.0)
    # One score for all: a single step straight to the end, the random line itself.
    assert qini_auc(np.zeros(6), w, y) == 0.0
    # The inverted ranking (held-out saver first, then the non-savers tied, then the treated
    # savers): points (1/6, 0), (4/6, -1/3), (1, 1); area -17/36, coefficient -17/39.
    assert qini_auc(-(y * w - y * (1 - w)), w, y) == pytest.approx(-17 / 39)


def test_qini_of_a_true_uplift_score_on_a_large_experiment() -> None:
    rng = np.random.default_rng(42)
    n = 20000
    x = rng.normal(size=n)
    w = rng.random(n) < 0.8
    uplift = 0.15 * np.tanh(x)  # helps for x > 0, harms for x < 0
    saved = rng.random(n) < 0.6 + uplift * w
    # Outcomes are noisy coin flips, so even the true uplift is far from the perfect ranking
    # (which knows the outcomes): real coefficients are small, random ones about 0.
    good = qini_auc(uplift, w, saved)
    assert 0.04 < good < 0.2
    assert qini_auc(-uplift, w, saved) == pytest.approx(-good, abs=0.005)
    # Random scores here spread with a standard deviation of about 0.006.
    assert abs(qini_auc(rng.random(n), w, saved)) < 0.025


def test_qini_groups_tied_scores() -> None:
    curve = qini_curve([1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1])
    assert curve["n"].tolist() == [0, 2, 4]
    assert curve["qini"].tolist() == [0.0, 1.0, 0.0]


def test_qini_inputs_are_checked() -> None:
    with pytest.raises(EffectsError, match="same length"):
        qini_curve([1, 2], [1, 0, 1], [0, 1])
    with pytest.raises(EffectsError, match="both contacted \\(1\\) and held-out \\(0\\)"):
        qini_curve([1, 2], [1, 1], [0, 1])
    with pytest.raises(EffectsError, match="normalize=True needs 0/1"):
        qini_auc([1, 2, 3], [1, 0, 1], [10.0, 0.0, 5.0])
    # A value outcome by hand: descending order score 3 (treated, 5), 2 (held out, 0), 1
    # (treated, 10): Q = 5, 5, 15 against random 5, 10, 15, gaps 0, 0, -5, 0 at fractions
    # 0, 1/3, 2/3, 1: area 1/3 * (0 - 5/2 - 5/2) = -5/3.
    assert qini_auc([1, 2, 3], [1, 0, 1], [10.0, 0.0, 5.0], normalize=False) == pytest.approx(
        -5 / 3
    )
    with pytest.raises(EffectsError, match="no better than random"):
        qini_auc([1, 2, 3], [1, 0, 1], [0, 0, 0])


def test_uplift_by_decile_by_hand() -> None:
    table = uplift_by_decile(SCORE, TREATED, SAVED, bins=2)
    assert table["band"].tolist() == [1, 2]
    assert table[["n_treated", "n_control"]].to_numpy().tolist() == [[2, 1], [1, 2]]
    assert table["mean_treated"].tolist() == [1.0, 0.0]
    assert table["mean_control"].tolist() == [0.0, 0.5]
    assert table["uplift"].tolist() == [1.0, -0.5]
    assert (table["score_max"].tolist(), table["score_min"].tolist()) == ([0.9, 0.6], [0.7, 0.4])
    first = difference_in_rates([1, 1], [0])
    assert (table.loc[0, "ci_low"], table.loc[0, "ci_high"]) == (first.ci_low, first.ci_high)


def test_uplift_by_decile_falls_for_a_good_score() -> None:
    rng = np.random.default_rng(9)
    n = 20000
    x = rng.normal(size=n)
    w = rng.random(n) < 0.5
    saved = rng.random(n) < 0.5 + 0.2 * np.tanh(x) * w
    table = uplift_by_decile(x, w, saved)
    assert len(table) == 10 and table["n_treated"].sum() + table["n_control"].sum() == n
    assert table["uplift"].iloc[0] > 0.15 and table["uplift"].iloc[-1] < -0.15
    assert (table["ci_low"] < table["uplift"]).all() and (table["uplift"] < table["ci_high"]).all()
    values = uplift_by_decile(x, w, np.where(saved, 120.0, 0.0), bins=4)  # value per account
    assert values["uplift"].iloc[0] == pytest.approx(120 * table["uplift"].iloc[:3].mean(), rel=0.2)
    assert values["ci_low"].notna().all()
    with pytest.raises(EffectsError, match="bins must be a whole number from 1 to 6"):
        uplift_by_decile(SCORE, TREATED, SAVED, bins=7)


# ---------------------------------------------------------------------------------------------
# too_small


def test_too_small_names_the_counts_and_thresholds() -> None:
    assert too_small(12, 3) == (
        "holdout too small to measure the campaign: 12 held-out accounts (need at least 30) "
        "and 3 events among them (need at least 5)"
    )
    assert too_small(29, 5) == (
        "holdout too small to measure the campaign: 29 held-out accounts (need at least 30)"
    )
    assert too_small(1, 1, min_holdout=2, min_events=2) == (
        "holdout too small to measure the campaign: 1 held-out account (need at least 2) and "
        "1 event among them (need at least 2)"
    )
    assert too_small(30, 5) is None
    assert too_small(5000, 4) == (
        "holdout too small to measure the campaign: 4 events among them (need at least 5)"
    )


def test_too_small_rejects_impossible_counts() -> None:
    with pytest.raises(EffectsError, match="must not be negative"):
        too_small(-1, 0)
    with pytest.raises(EffectsError, match="more events \\(6\\) than held-out accounts \\(5\\)"):
        too_small(5, 6)


def test_results_are_frozen() -> None:
    r = difference_in_rates([1, 0], [0, 0])
    with pytest.raises(AttributeError):
        r.diff = 0.0  # type: ignore[misc]

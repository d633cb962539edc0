"""Calibration, LightGBM params pass-through, temporal split and heuristic feature choice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from churnlab import train
from churnlab.config import ConfigError, TrainParams
from churnlab.manifest import Feature


def _miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True p, labels, and an over-confident model's log-odds (3x the true log-odds + 1)."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(-1.5, 1.0, n)
    p = 1 / (1 + np.exp(-true_logit))
    y = (rng.random(n) < p).astype(float)
    return p, y, 3 * true_logit + 1.0


@pytest.mark.parametrize("method", ["auto", "isotonic", "sigmoid"])
def test_calibration_improves_log_loss_of_a_miscalibrated_model_on_new_rows(method: str) -> None:
    _, y_fit, m_fit = _miscalibrated(4000, 0)
    _, y_new, m_new = _miscalibrated(4000, 1)
    cal, info = train.fit_calibrator(m_fit, y_fit, method)
    raw = np.clip(1 / (1 + np.exp(-m_new)), 1e-4, 1 - 1e-4)
    before = log_loss(y_new, raw)
    after = log_loss(y_new, cal.predict(m_new))
    assert after < before - 0.05
    assert info["calibration.method"] in {"isotonic", "sigmoid"}
    if method != "auto":
        assert info["calibration.method"] == method


def test_auto_picks_the_lower_cross_fitted_log_loss_and_logs_both() -> None:
    _, y, m = _miscalibrated(3000, 2)
    _, info = train.fit_calibrator(m, y, "auto")
    iso, sig = info["calibration.cv_log_loss_isotonic"], info["calibration.cv_log_loss_sigmoid"]
    # The planted distortion is linear in log-odds, which Platt scaling recovers exactly.
    assert info["calibration.method"] == ("isotonic" if iso < sig else "sigmoid") == "sigmoid"
    assert info["calibration.cv_log_loss_uncalibrated"] > sig


def test_calibrator_is_monotone_and_clipped() -> None:
    _, y, m = _miscalibrated(2000, 3)
    cal, _ = train.fit_calibrator(m, y, "isotonic")
    grid = np.linspace(-20, 20, 200)
    p = cal.predict(grid)
    assert np.all(np.diff(p) >= 0)
    assert p.min() >= 1e-4 and p.max() <= 1 - 1e-4


@pytest.mark.parametrize("key", ["is_unbalance", "scale_pos_weight", "unbalance"])
def test_class_reweighting_is_refused_with_a_config_error(key: str) -> None:
    params = TrainParams(lightgbm={"objective": "binary", key: True})
    with pytest.raises(ConfigError, match=f"train.lightgbm.{key}.*distorts"):
        train.lightgbm_params(params)


def test_lightgbm_params_pass_through_and_rounds_alias() -> None:
    params = TrainParams(lightgbm={"num_leaves": 7, "n_estimators": 33, "min_data_in_leaf": 3})
    lgb_params, rounds = train.lightgbm_params(params)
    assert rounds == 33
    assert lgb_params == {
        "num_leaves": 7,
        "min_data_in_leaf": 3,
        "objective": "binary",
        "verbose": -1,
    }
    with pytest.raises(ConfigError, match="objective"):
        train.lightgbm_params(TrainParams(lightgbm={"objective": "regression"}))


def _tiny_frame() -> pd.DataFrame:
    cutoffs = pd.date_range("2025-01-01", periods=8, freq="MS")
    rows = []
    for i, c in enumerate(cutoffs):
        for a in range(4):
            labeled = i < 7
            rows.append(
                {
                    "account_id": f"a{a}",
                    "cutoff": c,
                    "x": float(a),
                    # account a3 is not eligible for churn at cutoff index 6
                    "churn": (float(a % 2) if not (a == 3 and i == 6) else np.nan)
                    if labeled
                    else np.nan,
                    "labeled": labeled,
                }
            )
    frame = pd.DataFrame(rows)
    frame["cutoff"] = frame["cutoff"].astype("datetime64[us]")
    return frame


def test_temporal_split_purges_overlapping_label_windows() -> None:
    frame = _tiny_frame()
    s = train.temporal_split(frame, "churn", horizon_days=60)
    # labeled cutoffs Jan..Jul; test = Jul; valid = latest c with c + 60d <= Jul 1 -> May 1;
    # train = c + 60d <= May 1 -> Jan, Feb (Mar 1 + 60d = Apr 30 <= May 1 -> also Mar).
    assert s.test_cutoff == pd.Timestamp("2025-07-01")
    assert s.valid_cutoff == pd.Timestamp("2025-05-01")
    assert [c.month for c in s.train_cutoffs] == [1, 2, 3]
    assert len(s.test) == 3  # a3 has no churn label at the test cutoff
    assert s.test["churn"].notna().all() and not s.test["labeled"].eq(False).any()


def test_temporal_split_without_purge_uses_adjacent_cutoffs() -> None:
    s = train.temporal_split(_tiny_frame(), "churn", horizon_days=60, purge=False)
    assert s.valid_cutoff == pd.Timestamp("2025-06-01")
    assert len(s.train_cutoffs) == 5


def test_temporal_split_chosen_test_cutoff_and_errors() -> None:
    frame = _tiny_frame()
    s = train.temporal_split(frame, "churn", 30, test_cutoff=pd.Timestamp("2025-05-01"))
    assert s.valid_cutoff == pd.Timestamp("2025-04-01")
    assert max(s.train_cutoffs) == pd.Timestamp("2025-03-01")
    with pytest.raises(train.TrainError, match="no validation cutoff"):
        train.temporal_split(frame, "churn", 30, test_cutoff=pd.Timestamp("2025-01-01"))
    with pytest.raises(train.TrainError, match="no labeled rows"):
        train.temporal_split(frame, "churn", 30, test_cutoff=pd.Timestamp("2025-08-01"))


def test_heuristic_features_prefer_engagement_recency_and_a_30_day_window() -> None:
    feats = [
        Feature("events_7d", "events", "engagement", measure="events", window=7),
        Feature("events_90d", "events", "engagement", measure="events", window=90),
        Feature("events_30d", "events", "engagement", measure="events", window=30),
        Feature(
            "events_30d_trend",
            "trend",
            "engagement",
            kind="trend",
            measure="events_trend",
            window=30,
        ),  # fmt: skip
        Feature(
            "days_since_last_order",
            "days",
            "commercial",
            kind="days",
            measure="days_since_last_order",
        ),  # fmt: skip
        Feature(
            "days_since_last_event",
            "days",
            "engagement",
            kind="days",
            measure="days_since_last_event",
        ),  # fmt: skip
    ]
    assert train.heuristic_features(feats) == {
        "recency": "days_since_last_event",
        "activity": "events_30d",
    }
    orders_only = [
        Feature("orders_90d", "orders", "commercial", measure="orders", window=90),
        Feature(
            "days_since_last_order",
            "days",
            "commercial",
            kind="days",
            measure="days_since_last_order",
        ),  # fmt: skip
    ]
    assert train.heuristic_features(orders_only) == {
        "recency": "days_since_last_order",
        "activity": "orders_90d",
    }


def test_heuristic_scores_rank_inactive_accounts_as_churn_risk() -> None:
    X = pd.DataFrame({"days": [1.0, 50.0, np.nan], "events": [10.0, 1.0, 0.0]})
    chosen = {"recency": "days", "activity": "events"}
    churn = train.heuristic_scores(X, "churn", chosen)
    assert churn.argsort().tolist() == [0, 1, 2]  # never active (NaN recency) riskiest
    assert train.heuristic_scores(X, "expansion", chosen).argsort().tolist() == [2, 1, 0]


def test_the_heuristic_direction_is_chosen_on_the_validation_cutoff() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"days": rng.uniform(0, 60, 500), "events": rng.poisson(5, 500).astype(float)})
    chosen = {"recency": "days", "activity": "events"}
    natural = (rng.random(500) < 0.1 + 0.01 * X["days"]).astype(float)  # inactive churn more
    assert not train.heuristic_direction(X, natural.to_numpy(), "churn", chosen)
    backwards = (rng.random(500) < 0.7 - 0.01 * X["days"]).astype(float)  # the opposite world
    assert train.heuristic_direction(X, backwards.to_numpy(), "churn", chosen)
    s = train.heuristic_scores(X, "churn", chosen)
    np.testing.assert_allclose(train.heuristic_scores(X, "churn", chosen, reverse=True), 1 - s)


def test_the_logistic_regression_is_calibrated_like_the_model() -> None:
    from churnlab.baselines import calibrate_logreg, fit_logreg_baseline, logreg_scores

    rng = np.random.default_rng(1)

    def world(n: int, shift: float) -> tuple[pd.DataFrame, np.ndarray]:
        x = rng.normal(size=n)
        p = 1 / (1 + np.exp(-(-2.0 + shift + 1.5 * x)))
        return pd.DataFrame({"x": x}), (rng.random(n) < p).astype(float)

    X_tr, y_tr = world(4000, 0.0)
    X_va, y_va = world(4000, 1.0)  # the season moved the base rate
    X_te, y_te = world(4000, 1.0)
    pipe = fit_logreg_baseline(X_tr, y_tr, [])
    raw = logreg_scores(pipe, X_te, [])
    cal = logreg_scores(pipe, X_te, [], calibrate_logreg(pipe, X_va, y_va, []))
    assert abs(raw.mean() - y_te.mean()) > 0.08  # uncalibrated: off by the shift
    assert abs(cal.mean() - y_te.mean()) < 0.02
    from churnlab.evaluate import expected_calibration_error

    assert expected_calibration_error(y_te, cal) < expected_calibration_error(y_te, raw)


def test_the_logistic_regression_starts_from_the_month_base_rate_like_a_seasonal_model() -> None:
    """With season offsets the baseline is calibrated around them (issue 13, fair baselines)."""
    from churnlab.baselines import fit_logreg_baseline, logreg_test_scores

    rng = np.random.default_rng(2)
    base = {1: -2.5, 2: -0.5}  # two calendar months' log-odds; validation and test differ

    def world(n: int, month: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        x = rng.normal(size=n)
        p = 1 / (1 + np.exp(-(base[month] + 1.2 * x)))
        return pd.DataFrame({"x": x}), (rng.random(n) < p).astype(float), np.full(n, base[month])

    parts = [world(3000, m) for m in (1, 2)]
    X_tr = pd.concat([p[0] for p in parts], ignore_index=True)
    y_tr = np.concatenate([p[1] for p in parts])
    off_tr = np.concatenate([p[2] for p in parts])
    X_va, y_va, off_va = world(4000, 1)
    X_te, y_te, off_te = world(4000, 2)
    pipe = fit_logreg_baseline(X_tr, y_tr, [])
    X, y = (X_tr, X_va, X_te), (y_tr, y_va)
    plain, how_plain = logreg_test_scores(pipe, X, y, [])
    seasonal, how = logreg_test_scores(pipe, X, y, [], offsets=(off_tr, off_va, off_te))
    assert (how_plain, how) == ("plain", "season")
    # Calibrated on the low month, the plain baseline predicts its level in the high month.
    assert plain.mean() < y_te.mean() - 0.15
    assert abs(seasonal.mean() - y_te.mean()) < 0.03
    from churnlab.evaluate import expected_calibration_error

    assert (
        expected_calibration_error(y_te, seasonal)
        < 0.05
        < 0.15
        < expected_calibration_error(y_te, plain)
    )


def test_the_level_shift_is_the_maximum_likelihood_constant_even_from_a_far_start() -> None:
    """Offset and margin both at the base rate's log-odds double it: plain Newton diverged."""
    from churnlab.baselines import _level_shift

    rng = np.random.default_rng(5)
    n = 20000
    margin = rng.normal(-2.3, 0.6, n)
    offset = np.full(n, -2.3)
    y = (rng.random(n) < 1 / (1 + np.exp(-(margin + 0.4)))).astype(float)  # about 11% positives
    c = _level_shift(margin, offset, y)
    assert np.isfinite(c) and abs(c) < 10  # the old Newton steps went to 9e15 here
    # the maximum-likelihood condition: the shifted probabilities sum to the positives
    p = 1 / (1 + np.exp(-(offset + margin - c)))
    assert p.sum() == pytest.approx(y.sum(), rel=1e-9)
    # close to the truth: offset + margin - c should equal margin + 0.4, so c is about -2.7
    assert c == pytest.approx(-2.7, abs=0.05)
    # one class only: no finite maximum, no shift
    assert _level_shift(margin, offset, np.zeros(n)) == 0.0


def test_the_logistic_regression_reads_heavy_tailed_amounts_on_a_log_scale() -> None:
    """A few huge spenders must not set the baseline's scale (signed log1p before scaling)."""
    from churnlab.baselines import fit_logreg_baseline, logreg_margin

    rng = np.random.default_rng(4)
    spend = np.exp(rng.normal(3.0, 2.0, 6000))  # lognormal: a handful of accounts spend 1000x
    y = (rng.random(6000) < 1 / (1 + np.exp(-(2.0 - 0.8 * np.log1p(spend))))).astype(float)
    X = pd.DataFrame({"spend": spend})
    pipe = fit_logreg_baseline(X, y, [])
    m = logreg_margin(pipe, X, [])
    # The margin is linear in log1p(spend): a straight line through its values fits exactly.
    slope, intercept = np.polyfit(np.log1p(spend), m, 1)
    np.testing.assert_allclose(m, intercept + slope * np.log1p(spend), atol=1e-8)
    assert slope < -0.5


def test_scaling_around_an_offset_keeps_each_month_level_and_fits_the_confidence():
    """Season-aware calibration (issue 13): p = sigmoid(offset + a * (margin - offset))."""
    from churnlab.calibration import OffsetPlatt, cross_fitted, fit_offset_platt

    rng = np.random.default_rng(5)
    n = 40_000
    offset = np.where(rng.random(n) < 0.5, -2.0, -0.5)  # two months' base rates
    raw = rng.normal(0.0, 1.5, n)  # an over-confident booster: truth uses 0.6 of it
    y = (rng.random(n) < 1 / (1 + np.exp(-(offset + 0.6 * raw)))).astype(float)
    cal = fit_offset_platt(raw + offset, offset, y)
    assert isinstance(cal.model, OffsetPlatt)
    assert cal.model.a == pytest.approx(0.6, abs=0.03)
    p = cal.predict(raw + offset, offset)
    for level in (-2.0, -0.5):
        sel = offset == level
        assert p[sel].mean() == pytest.approx(y[sel].mean(), abs=0.01)
    # A booster output of 0 is the month's base rate, whatever the confidence.
    np.testing.assert_allclose(cal.predict(offset, offset), 1 / (1 + np.exp(-offset)))
    oof = cross_fitted(raw + offset, y, "sigmoid", offset=offset)
    assert abs(oof.mean() - y.mean()) < 0.01


def test_platt_log_loss_equals_the_fitted_platt_calibrators_log_loss() -> None:
    from sklearn.linear_model import LogisticRegression

    from churnlab.calibration import fit_offset_platt, platt_log_loss

    rng = np.random.default_rng(0)
    z = rng.normal(size=4000) * 2
    y = (rng.random(4000) < 1 / (1 + np.exp(-(0.4 * z - 1.2)))).astype(float)
    lr = LogisticRegression(C=1e10).fit(z[:, None], y)
    assert platt_log_loss(z, y) == pytest.approx(log_loss(y, lr.predict_proba(z[:, None])[:, 1]))
    assert platt_log_loss(z, y) < log_loss(y, 1 / (1 + np.exp(-z))) - 0.05  # the level refitted
    off = rng.normal(size=4000) * 0.3
    cal = fit_offset_platt(z + off, off, y)
    assert platt_log_loss(z + off, y, off) == pytest.approx(log_loss(y, cal.predict(z + off, off)))


def test_early_stopping_is_not_fooled_by_a_validation_cutoff_with_another_base_rate() -> None:
    """Training rows churn at about 30%, the validation cutoff at about 5%, with the same ranking
    signal: the raw log loss stops at a handful of trees (each one moves the level the wrong way
    for the validation rows), the recalibrated one keeps the trees that rank better (measured:
    25 trees and test ROC-AUC 0.791 against 189 and 0.805)."""
    from sklearn.metrics import roc_auc_score

    from churnlab.fitting import fit_booster

    rng = np.random.default_rng(3)

    def rows(n: int, intercept: float) -> tuple[pd.DataFrame, np.ndarray]:
        X = pd.DataFrame(rng.normal(size=(n, 6)), columns=[f"x{i}" for i in range(6)])
        logit = intercept + 1.2 * X["x0"] - 0.8 * X["x1"] ** 2 + 0.6 * X["x2"] * X["x3"]
        return X, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)

    X_train, y_train = rows(6000, 0.0)
    X_valid, y_valid = rows(3000, -3.0)
    X_test, y_test = rows(6000, -1.0)
    base = {**TrainParams().lightgbm, "num_threads": 1}
    new = TrainParams(lightgbm=base)
    old = TrainParams(lightgbm={**base, "metric": "binary_logloss"})
    b_new, best_new = fit_booster(new, X_train, y_train, X_valid, y_valid)
    b_old, best_old = fit_booster(old, X_train, y_train, X_valid, y_valid)
    assert best_old < 40 < 100 < best_new, (best_old, best_new)
    auc_new = roc_auc_score(y_test, b_new.predict(X_test))
    auc_old = roc_auc_score(y_test, b_old.predict(X_test))
    assert auc_new > auc_old + 0.01, (auc_new, auc_old)

"""``train.refit``: the chosen booster and the logistic regression learn from the validation cutoff.

Trees, shape, season and calibrator come from the fit on the training cutoffs scored on the
validation cutoff; the model that ships is then fitted again on the training and validation rows.
On a planted set whose churn starts to depend on NPS at the validation cutoff (it did not before),
only the refitted model can know it at the test cutoff.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churnlab import baselines, fitting, train
from churnlab.calibration import fit_calibrator
from churnlab.config import TrainParams
from planted import planted_training_set

PARAMS = TrainParams(lightgbm={**TrainParams().lightgbm, "num_threads": 1}, shapes=({},))
OFF = PARAMS.model_copy(update={"refit": False})


@pytest.fixture(scope="module")
def shifted() -> tuple[pd.DataFrame, object]:
    """From the validation cutoff on, NPS detractors churn more as well (it did not matter)."""
    frame, manifest, oracle = planted_training_set(n_accounts=2000, n_cutoffs=12)
    valid = train.temporal_split(frame, "churn", manifest.window).valid_cutoff
    rows = (frame["cutoff"] >= valid) & frame["labeled"]
    rng = np.random.default_rng(11)
    nps = frame.loc[rows, "nps_last"].fillna(7.0).to_numpy(dtype=float)
    p0 = oracle.loc[rows, "p_churn"].to_numpy(dtype=float)
    p = 1 / (1 + np.exp(-(np.log(p0 / (1 - p0)) + np.where(nps <= 4, 2.5, 0.0))))
    frame = frame.copy()
    frame.loc[rows, "churn"] = (rng.random(int(rows.sum())) < p).astype(float)
    return frame, manifest


@pytest.fixture(scope="module")
def fits(shifted) -> tuple[train.TaskResult, train.TaskResult]:
    frame, manifest = shifted
    return (
        train.train_task(frame, manifest, "churn", PARAMS),
        train.train_task(frame, manifest, "churn", OFF),
    )


def test_the_refitted_model_learns_what_changed_at_the_validation_cutoff(fits) -> None:
    on, off = fits
    changed = on.split.valid_cutoff
    assert max(on.split.train_cutoffs) < changed and (on.split.test["cutoff"] > changed).all()
    print({k: (on.metrics[k], off.metrics[k]) for k in ("test.roc_auc", "baseline_logreg.roc_auc")})
    assert on.metrics["test.roc_auc"] > off.metrics["test.roc_auc"] + 0.02
    # the baseline gets the same treatment, so the comparison stays fair
    assert on.metrics["baseline_logreg.roc_auc"] > off.metrics["baseline_logreg.roc_auc"] + 0.02


def test_validation_metrics_are_the_held_out_fits(fits) -> None:
    on, off = fits
    valid = {k: v for k, v in on.metrics.items() if k.startswith(("valid.", "shape.", "season."))}
    assert valid and valid == {k: off.metrics[k] for k in valid}
    assert on.metrics["model.best_iteration"] == off.metrics["model.best_iteration"]
    assert off.metrics["model.refit_trees"] == 0.0


def test_the_refit_is_the_same_settings_on_training_and_validation_rows(fits) -> None:
    on, off = fits
    n_train, n_valid = len(on.split.train), len(on.split.valid)
    best = int(on.metrics["model.best_iteration"])
    trees = round(best * (n_train + n_valid) / n_train)
    assert on.metrics["model.refit_trees"] == trees == on.bundle.booster.num_trees()
    b = on.bundle
    X = pd.concat([b.matrix(on.split.train), b.matrix(on.split.valid)])
    y = np.concatenate([on.split.train["churn"], on.split.valid["churn"]])
    lgb_params, _ = fitting.lightgbm_params(
        PARAMS.model_copy(update={"lightgbm": b.info["lightgbm"] | {"num_threads": 1}})
    )
    direct = lgb.train(lgb_params, lgb.Dataset(X, y), num_boost_round=trees)
    X_test = b.matrix(on.split.test)
    refit = b.booster.predict(X_test, raw_score=True)
    assert np.allclose(direct.predict(X_test, raw_score=True), refit)
    # the calibrator is the held-out fit's, fitted on its validation margins
    grid = np.linspace(-6, 3, 50)
    assert np.array_equal(on.bundle.calibrator.predict(grid), off.bundle.calibrator.predict(grid))
    assert on.calibration == off.calibration


def test_the_baseline_is_refitted_and_calibrated_on_the_held_out_rows(fits) -> None:
    on, _ = fits
    s = on.split
    X = [on.bundle.matrix(p) for p in (s.train, s.valid, s.test)]
    y = [p["churn"].to_numpy(dtype=float) for p in (s.train, s.valid)]
    cat = list(on.bundle.categories)
    held_out = baselines.fit_logreg_baseline(X[0], y[0], cat)
    calibrator, _ = fit_calibrator(
        baselines.logreg_margin(held_out, X[1], cat), y[1], PARAMS.calibration, seed=7
    )
    both = baselines.fit_logreg_baseline(pd.concat(X[:2]), np.concatenate(y), cat)
    expected = calibrator.predict(baselines.logreg_margin(both, X[2], cat))
    assert np.allclose(on.predictions["p_logreg"].to_numpy(), expected)
    assert roc_auc_score(s.test["churn"], expected) == pytest.approx(
        on.metrics["baseline_logreg.roc_auc"]
    )


def test_a_season_aware_model_is_refitted_from_the_same_month_offsets() -> None:
    frame, manifest, _ = planted_training_set(n_accounts=800, n_cutoffs=20)
    res = train.train_task(frame, manifest, "churn", PARAMS.model_copy(update={"season": "on"}))
    b, s = res.bundle, res.split
    assert b.season is not None
    X = pd.concat([b.matrix(s.train), b.matrix(s.valid)])
    y = np.concatenate([s.train["churn"], s.valid["churn"]])
    init = np.concatenate([b.offset(s.train), b.offset(s.valid)])
    lgb_params, _ = fitting.lightgbm_params(
        PARAMS.model_copy(update={"lightgbm": b.info["lightgbm"] | {"num_threads": 1}})
    )
    trees = int(res.metrics["model.refit_trees"])
    X_test = b.matrix(s.test)
    with_offsets = lgb.train(lgb_params, lgb.Dataset(X, y, init_score=init), num_boost_round=trees)
    assert np.allclose(
        with_offsets.predict(X_test, raw_score=True), b.booster.predict(X_test, raw_score=True)
    )
    without = lgb.train(lgb_params, lgb.Dataset(X, y), num_boost_round=trees)
    assert not np.allclose(
        without.predict(X_test, raw_score=True), b.booster.predict(X_test, raw_score=True)
    )

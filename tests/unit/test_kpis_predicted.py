"""Predicted vs realised churn per cutoff and risk band."""

from __future__ import annotations

import math

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from churnlab import backscore
from churnlab.train import ModelBundle, fit_calibrator

CUTOFFS = pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]).astype("datetime64[us]")
INFO = {"train_cutoffs": ["2024-01-01"], "valid_cutoff": "2024-02-01", "test_cutoff": None}


class LookupScorer:
    """A model whose probability is the row's ``p`` column (exact expected values)."""

    info = INFO

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["p"].to_numpy(dtype=float)


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": list("abcdefgh"),
            "cutoff": CUTOFFS[[0, 0, 0, 0, 1, 1, 2, 2]],
            # Band edges: 0.05 opens the 5-10% band, 1.0 closes the last band.
            "p": [0.01, 0.05, 0.30, 1.0, 0.10, 0.20, 0.5, 0.02],
            "churn": [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, np.nan, np.nan],
            "labeled": [True] * 6 + [False] * 2,
        }
    )


def test_exact_values_per_cutoff_and_band():
    out = backscore.predicted_vs_realised(_frame(), LookupScorer())
    overall = out["predicted_vs_realised"]
    assert list(overall["cutoff"]) == list(CUTOFFS)
    assert list(overall["role"]) == ["train", "valid", "not used in training"]
    assert list(overall["rows"]) == [4, 2, 2]
    assert list(overall["labeled_rows"]) == [4, 2, 0]
    assert overall["mean_predicted"].tolist() == pytest.approx([1.36 / 4, 0.15, 0.26])
    assert overall["realised_rate"].tolist()[:2] == [0.5, 0.0]
    assert math.isnan(overall["realised_rate"].iloc[2])  # window still open: no outcome yet
    assert overall["positives"].tolist()[:2] == [2.0, 0.0]
    assert math.isnan(overall["positives"].iloc[2])
    assert overall["difference"].iloc[0] == pytest.approx(1.36 / 4 - 0.5)

    bands = out["predicted_vs_realised_bands"]
    got = {
        (pd.Timestamp(r.cutoff).month, r.band): (r.rows, r.realised_rate)
        for r in bands.itertuples()
    }
    assert set(got) == {
        (1, "0-5%"),
        (1, "5-10%"),
        (1, "20-40%"),
        (1, "40-100%"),
        (2, "10-20%"),
        (2, "20-40%"),
        (3, "0-5%"),
        (3, "40-100%"),
    }
    assert got[(1, "5-10%")] == (1, 1.0)
    assert got[(1, "40-100%")] == (1, 1.0)
    assert got[(2, "20-40%")] == (1, 0.0)


def test_needs_the_label_columns():
    with pytest.raises(backscore.KpiError, match="churnlab.dataset.read"):
        backscore.predicted_vs_realised(_frame().drop(columns=["labeled"]), LookupScorer())


def test_with_a_trained_model_bundle():
    rng = np.random.default_rng(3)
    n = 3000
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * x - 2)))).astype(float)
    cutoff = CUTOFFS[np.repeat([0, 1, 2], n // 3)]
    train = cutoff == CUTOFFS[0]
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 1},
        lgb.Dataset(pd.DataFrame({"x": x[train]}), y[train]),
        num_boost_round=20,
    )
    valid = cutoff == CUTOFFS[1]
    calibrator, _ = fit_calibrator(
        booster.predict(pd.DataFrame({"x": x[valid]}), raw_score=True), y[valid], "sigmoid"
    )
    bundle = ModelBundle(
        "churn",
        booster,
        calibrator,
        [{"name": "x", "description": "x", "group": "engagement", "dtype": "float64"}],
        {},
        {"x": 0.0},
        {
            "train_cutoffs": ["2024-01-01"],
            "valid_cutoff": "2024-02-01",
            "test_cutoff": "2024-03-01",
        },
    )
    frame = pd.DataFrame({"cutoff": cutoff, "x": x, "churn": y, "labeled": True})
    out = backscore.predicted_vs_realised(frame, bundle)
    overall = out["predicted_vs_realised"]
    p = bundle.predict(frame)
    for i, c in enumerate(CUTOFFS):
        at = cutoff == c
        assert overall["mean_predicted"].iloc[i] == pytest.approx(p[at].mean(), rel=1e-12)
        assert overall["realised_rate"].iloc[i] == pytest.approx(y[at].mean(), rel=1e-12)
    assert list(overall["role"]) == ["train", "valid", "test"]
    # Calibrated on February, so March's mean prediction is close to its realised rate.
    test = overall.iloc[2]
    assert abs(test["difference"]) < 0.03
    bands = out["predicted_vs_realised_bands"]
    assert bands.groupby("cutoff")["rows"].sum().tolist() == [1000, 1000, 1000]
    # Higher bands churn more.
    march = bands[bands["cutoff"] == CUTOFFS[2]].set_index("band")["realised_rate"]
    assert march.iloc[0] < march.iloc[-1]

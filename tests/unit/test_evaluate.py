"""Metric functions: exact values on tiny inputs and agreement with scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from churnlab import evaluate


def test_top_mask_takes_ceil_of_fraction_and_breaks_ties_by_row_order() -> None:
    score = np.array([0.5, 0.9, 0.5, 0.1, 0.5])
    # ceil(0.5 * 5) = 3 rows: 0.9 first, then the first two 0.5s in row order.
    assert evaluate.top_mask(score, 0.5).tolist() == [True, True, True, False, False]
    assert evaluate.top_mask(score, 0.01).tolist() == [False, True, False, False, False]
    assert evaluate.top_mask(score, 1.0).all()


def test_ece_exact_on_two_bins() -> None:
    y = np.array([0, 1, 0, 0, 1, 1])
    p = np.array([0.05, 0.05, 0.05, 0.05, 0.95, 0.95])
    # bin 0: mean p 0.05, rate 0.25 -> gap 0.2, weight 4/6; bin 9: mean p 0.95, rate 1 -> 0.05, 2/6
    assert evaluate.expected_calibration_error(y, p) == pytest.approx(4 / 6 * 0.2 + 2 / 6 * 0.05)


def test_ece_puts_probability_one_in_last_bin_and_is_zero_when_perfect() -> None:
    y = np.array([1, 1, 0, 0])
    p = np.array([1.0, 1.0, 0.0, 0.0])
    assert evaluate.expected_calibration_error(y, p) == 0.0


def test_lift_precision_recall_and_value_captured_exact() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    score = np.arange(10, 0, -1) / 10  # row 0 highest
    arr = np.array([100.0, 5, 300, 5, 5, 5, 5, 5, 5, 600])
    # top 20% = rows 0 and 1: one positive of two
    precision, recall = evaluate.precision_recall_at(y, score, 0.2)
    assert (precision, recall) == (0.5, pytest.approx(1 / 3))
    assert evaluate.lift_at(y, score, 0.2) == pytest.approx(0.5 / 0.3)
    # top 10% = row 0: 100 of the churners' 1000
    assert evaluate.value_captured_at(y, score, arr, 0.1) == pytest.approx(0.1)
    assert evaluate.value_captured_at(y, score, arr, 0.3) == pytest.approx(0.4)


def test_value_captured_ignores_missing_and_negative_values() -> None:
    y = np.array([1, 1, 1])
    score = np.array([0.9, 0.5, 0.1])
    value = np.array([np.nan, -50.0, 10.0])
    assert evaluate.value_captured_at(y, score, value, 0.6) == 0.0
    assert evaluate.value_captured_at(y, score, value, 1.0) == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_score_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.01, 0.99, 500)
    y = (rng.random(500) < p).astype(float)
    m = evaluate.score_metrics(y, p, value=rng.gamma(2, 100, 500))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert m["log_loss"] == pytest.approx(log_loss(y, p))
    assert m["brier"] == pytest.approx(brier_score_loss(y, p))
    assert m["positive_rate"] == pytest.approx(y.mean())
    assert {"lift_top5", "precision_top10", "recall_top20", "value_captured_top10", "ece"} <= set(m)


def test_heuristic_scores_get_no_probability_metrics() -> None:
    m = evaluate.score_metrics(np.array([0, 1, 0, 1]), np.array([3, 9, 1, 2]), probabilistic=False)
    assert "log_loss" not in m and "brier" not in m and "ece" not in m
    assert m["roc_auc"] == pytest.approx(0.75)


def test_single_class_gives_nan_auc_not_an_error() -> None:
    m = evaluate.score_metrics(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4]))
    assert np.isnan(m["roc_auc"]) and np.isnan(m["lift_top10"])


def test_oracle_metrics_join_on_account_and_cutoff_and_refuse_partial_cover() -> None:
    c = pd.Timestamp("2025-01-01")
    rows = pd.DataFrame(
        {
            "account_id": ["b", "a", "c"],
            "cutoff": pd.to_datetime([c, c, c]).astype("datetime64[us]"),
        }
    )
    oracle = pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "a"],
            "cutoff": pd.to_datetime([c, c, c, c + pd.Timedelta(days=31)]).astype("datetime64[us]"),
            "p_churn": [0.9, 0.1, 0.2, 0.0],
            "p_expansion": [0.0, 0.0, 0.0, 0.0],
        }
    )
    y = np.array([0.0, 1.0, 0.0])  # a (0.9) is the churner: oracle AUC 1
    out = evaluate.oracle_metrics(rows, y, oracle, "churn", model_auc=0.75)
    # Oracle ECE, one row per bin: b (p 0.1, y 0) 0.1, c (0.2, 0) 0.2, a (0.9, 1) 0.1; mean 0.4/3.
    assert out == {"oracle_roc_auc": 1.0, "oracle_gap": 0.25, "oracle_ece": pytest.approx(0.4 / 3)}
    assert evaluate.oracle_metrics(rows, y, oracle.iloc[:2], "churn", 0.5) == {}
    assert evaluate.oracle_metrics(rows, y, None, "churn", 0.5) == {}


def test_load_oracle_returns_none_without_oracle_folder(tmp_path) -> None:
    assert evaluate.load_oracle(tmp_path) is None


def test_calibration_and_gains_tables() -> None:
    y = np.array([0, 1, 1, 0])
    p = np.array([0.05, 0.15, 0.95, 0.91])
    t = evaluate.calibration_table(y, p)
    assert t["bin"].tolist() == [0, 1, 9]
    assert t["rows"].tolist() == [1, 1, 2]
    g = evaluate.gains_table(y, p, points=4)
    assert g["gain"].tolist() == [0.5, 0.5, 1.0, 1.0]

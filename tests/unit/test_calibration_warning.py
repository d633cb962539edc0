"""``train`` warns when the probabilities are clearly off in level at the test cutoff."""

from __future__ import annotations

import pandas as pd

from churnlab import terminal, train


def table(predicted: float, realised: float, rows: int = 2000) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cutoff": ["2010-06-01", "2010-09-01", "2010-12-01"],
            "role": ["train", "valid", "test"],
            "rows": [1800, 1900, rows],
            "mean_predicted": [0.40, 0.31, predicted],
            "realised": [0.40, 0.31, realised],
        }
    )


NOTE = "off: the training cutoffs cover 3 of the 12 calendar months"


def test_a_level_far_off_beyond_noise_is_named_with_its_figures() -> None:
    msg = train.calibration_warning(table(0.316, 0.579, rows=2877), NOTE)
    assert msg is not None
    assert "test cutoff 2010-12-01" in msg
    assert "mean predicted 0.316 against 0.579 realised on 2,877 rows" in msg
    assert "(calibrated on 2010-09-01)" in msg
    assert f"season {NOTE}" in msg
    # too high is a warning as well as too low
    assert train.calibration_warning(table(0.353, 0.105), NOTE) is not None


def test_no_warning_under_five_points_or_within_sampling_noise() -> None:
    # 4.9 points on 2,000 rows: many standard errors, but under the threshold
    assert train.calibration_warning(table(0.349, 0.30), NOTE) is None
    # 6 points on 40 rows: over the threshold, but inside 3 standard errors (0.22)
    assert train.calibration_warning(table(0.36, 0.30, rows=40), NOTE) is None
    # the same 6 points on 2,000 rows (standard error 0.010) warn
    assert train.calibration_warning(table(0.36, 0.30), NOTE) is not None


def test_no_test_row_no_warning() -> None:
    t = table(0.9, 0.1)
    assert train.calibration_warning(t[t["role"] != "test"], NOTE) is None


def test_train_summary_prints_the_warning_under_its_task() -> None:
    info = {
        "metrics": {"test.roc_auc": 0.76, "baseline_logreg.roc_auc": 0.75},
        "test_cutoff": "2010-12-01",
        "calibration": "sigmoid",
        "season": "off",
        "model_name": "churnlab-churn",
        "version": "1",
        "decision": "champion",
        "reason": "no champion to compare with",
    }
    summary = {
        "tasks": {"churn": {**info, "warning": "probabilities are off"}, "expansion": info},
        "models_dir": "models",
        "tracking_uri": "sqlite:///mlflow.db",
    }
    lines = terminal.format_summary(summary)
    assert lines.count("  warning: probabilities are off") == 1
    churn_at = next(i for i, line in enumerate(lines) if line.startswith("churn:"))
    expansion_at = next(i for i, line in enumerate(lines) if line.startswith("expansion:"))
    assert churn_at < lines.index("  warning: probabilities are off") < expansion_at

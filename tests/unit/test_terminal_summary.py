"""What `churnlab train` and `churnlab backtest` print beside the model: every baseline logged.

The BG/NBD baseline exists for orders-only churn alone (issue 13, item 2: reported beside the
logistic regression and the heuristic on the same rows); it is printed when its metrics were
logged and left out, not printed empty, otherwise.
"""

from __future__ import annotations

import pandas as pd

from churnlab import terminal

INFO = {
    "test_cutoff": "2011-09-01",
    "calibration": "sigmoid",
    "season": "on",
    "model_name": "churnlab-churn",
    "version": "1",
    "decision": "champion",
    "reason": "no champion to compare with",
}
METRICS = {
    "test.roc_auc": 0.7764,
    "test.pr_auc": 0.586,
    "baseline_logreg.roc_auc": 0.7754,
    "baseline_heuristic.roc_auc": 0.6028,
}


def _lines(metrics: dict) -> list[str]:
    summary = {
        "tasks": {"churn": {**INFO, "metrics": metrics}},
        "models_dir": "models",
        "tracking_uri": "sqlite:///mlflow.db",
    }
    return terminal.format_summary(summary)


def test_train_prints_the_bg_nbd_baseline_between_the_others_when_logged() -> None:
    lines = _lines({**METRICS, "baseline_btyd.roc_auc": 0.7459, "baseline_btyd.log_loss": 0.5417})
    rows = [line.split()[0] for line in lines if line.startswith("  ")]
    assert rows == ["LightGBM", "logistic", "BG/NBD", "heuristic"]
    assert f"  {'BG/NBD':<20} roc_auc=0.746 log_loss=0.542" in lines


def test_no_bg_nbd_row_without_its_metrics() -> None:
    lines = _lines(METRICS)
    assert not any("BG/NBD" in line for line in lines)
    assert f"  {'heuristic':<20} roc_auc=0.603" in lines


def test_a_heuristic_without_metrics_is_printed_as_not_scored() -> None:
    metrics = {k: v for k, v in METRICS.items() if not k.startswith("baseline_heuristic")}
    lines = _lines(metrics)
    assert (
        f"  {'heuristic':<20} not scored: the data has no recency or activity feature to rank by"
        in lines
    )


def test_train_prints_each_baseline_difference_with_its_interval_and_verdict() -> None:
    paired = {
        "vs_logreg.roc_auc_diff": -0.0021, "vs_logreg.roc_auc_lo": -0.0092,
        "vs_logreg.roc_auc_hi": 0.0042, "vs_logreg.log_loss_diff": -0.02,
        "vs_logreg.log_loss_lo": -0.03, "vs_logreg.log_loss_hi": -0.01,
        "vs_heuristic.roc_auc_diff": 0.17, "vs_heuristic.roc_auc_lo": 0.15,
        "vs_heuristic.roc_auc_hi": 0.2,
    }  # fmt: skip
    lines = _lines({**METRICS, **paired})
    assert (
        "  LightGBM - logistic regression: roc_auc -0.0021 [-0.0092, +0.0042] within noise; "
        "log_loss -0.0200 [-0.0300, -0.0100] ahead"
    ) in lines
    assert "  LightGBM - heuristic: roc_auc +0.1700 [+0.1500, +0.2000] ahead" in lines
    assert not any("BG/NBD:" in line for line in lines)
    # the comparisons follow the baselines' own rows
    assert (
        lines.index("  LightGBM - heuristic: roc_auc +0.1700 [+0.1500, +0.2000] ahead")
        > [i for i, line in enumerate(lines) if line.startswith(f"  {'heuristic':<20}")][0]
    )
    assert not any("bootstrap" in line for line in _lines(METRICS))


def test_backtest_prints_the_bg_nbd_ranking_when_the_folds_have_it() -> None:
    folds = pd.DataFrame(
        {
            "fold": ["0", "1", "mean", "std"],
            "test_cutoff": ["2011-08-01", "2011-09-01", "", ""],
            "test.roc_auc": [0.77, 0.78, 0.775, 0.007],
            "baseline_logreg.roc_auc": [0.76, 0.77, 0.765, 0.007],
            "baseline_btyd.roc_auc": [0.74, 0.75, 0.745, 0.007],
        }
    )
    plain = folds.drop(columns=["baseline_btyd.roc_auc"])
    result = {"tables": {"churn": folds, "expansion": plain}, "tracking_uri": "sqlite:///x.db"}
    lines = terminal.format_backtest(result)
    assert "  fold 1 (test 2011-09-01): test.roc_auc=0.780 baseline_logreg.roc_auc=0.770 " \
        "baseline_btyd.roc_auc=0.750" in lines  # fmt: skip
    assert "  mean+-std: test.roc_auc=0.775+-0.007 baseline_logreg.roc_auc=0.765+-0.007 " \
        "baseline_btyd.roc_auc=0.745+-0.007" in lines  # fmt: skip
    expansion = lines[lines.index("expansion:") :]
    assert not any("btyd" in line for line in expansion)
    with_intervals = folds.assign(
        **{"vs_logreg.roc_auc_diff": 0.01, "vs_logreg.roc_auc_lo": -0.004,
           "vs_logreg.roc_auc_hi": 0.024}
    )  # fmt: skip
    result["tables"] = {"churn": with_intervals}
    lines = terminal.format_backtest(result)
    assert (
        "  fold 0 (test 2011-08-01): test.roc_auc=0.770 baseline_logreg.roc_auc=0.760 "
        "baseline_btyd.roc_auc=0.740 (LightGBM - logistic regression +0.010, 95% interval "
        "-0.004 to +0.024)"
    ) in lines


def test_the_drift_warning_says_what_drift_of_an_age_means() -> None:
    from churnlab.terminal import drift_text

    drifting = pd.DataFrame(
        {"feature": ["tenure_days", "days_since_first_order", "overdue_ratio"],
         "psi": [1.64, 1.63, 0.36]}
    )  # fmt: skip
    text = drift_text(drifting, 0.2)
    assert text.startswith(
        "feature drift since training (PSI > 0.2): tenure_days 1.64, days_since_first_order "
        "1.63, overdue_ratio 0.36; tenure_days and days_since_first_order grow with the calendar"
    ), text
    one = drift_text(drifting.iloc[1:], 0.2)
    assert "0.36; days_since_first_order grows with the calendar, so part of this" in one, one
    other = drift_text(drifting.iloc[2:], 0.2)
    assert other == "feature drift since training (PSI > 0.2): overdue_ratio 0.36"

"""The paired bootstrap of model-minus-baseline metric differences (churnlab.compare)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from churnlab import compare, evaluate


def _data(n: int, seed: int, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-x))).astype(float)
    p = 1 / (1 + np.exp(-(x + rng.normal(scale=0.5, size=n))))
    if ties:  # a step-function calibrator (isotonic) gives many equal scores
        p = np.round(p, 1)
    return y, p


@pytest.mark.parametrize("ties", [False, True])
def test_weighted_metrics_equal_sklearn_with_sample_weights(ties: bool) -> None:
    y, p = _data(300, 1, ties)
    w = compare.resample_counts(len(y), 5, np.random.default_rng(3))
    auc, ap = compare.weighted_ranking_metrics(y, p, w)
    for b in range(len(w)):
        assert auc[b] == pytest.approx(roc_auc_score(y, p, sample_weight=w[b]), abs=1e-12)
        assert ap[b] == pytest.approx(average_precision_score(y, p, sample_weight=w[b]), abs=1e-12)
        # a weight is a count: the same as scoring the resampled rows themselves
        rows = np.repeat(np.arange(len(y)), w[b].astype(int))
        assert auc[b] == pytest.approx(roc_auc_score(y[rows], p[rows]), abs=1e-12)


def test_resample_counts_draw_n_rows_each() -> None:
    w = compare.resample_counts(50, 7, np.random.default_rng(0))
    assert w.shape == (7, 50)
    assert (w.sum(axis=1) == 50).all()
    assert len({tuple(r) for r in w}) == 7


def test_point_differences_are_the_metric_differences() -> None:
    y, p = _data(500, 2)
    base = np.clip(p + np.random.default_rng(5).normal(scale=0.2, size=len(p)), 0.01, 0.99)
    out = compare.paired_differences(y, p, {"logreg": (base, True)}, resamples=50)
    assert out["vs_logreg.roc_auc_diff"] == pytest.approx(
        roc_auc_score(y, p) - roc_auc_score(y, base), abs=1e-12
    )
    assert out["vs_logreg.pr_auc_diff"] == pytest.approx(
        average_precision_score(y, p) - average_precision_score(y, base), abs=1e-12
    )
    assert out["vs_logreg.log_loss_diff"] == pytest.approx(log_loss(y, p) - log_loss(y, base))
    for metric in compare.METRICS:
        assert out[f"vs_logreg.{metric}_lo"] < out[f"vs_logreg.{metric}_hi"]


def test_a_much_better_model_is_ahead_and_a_copy_within_noise() -> None:
    y, p = _data(2000, 4)
    noise = np.random.default_rng(9).random(len(y))  # a baseline that knows nothing
    noisy = np.clip(0.5 * p + 0.5 * noise, 0.01, 0.99)
    rng = np.random.default_rng(11)
    near = np.clip(p + rng.normal(scale=0.02, size=len(p)), 0.001, 0.999)  # the same, jittered
    out = compare.paired_differences(
        y, p, {"noisy": (noisy, True), "near": (near, True), "rank": (noise, False)}
    )
    for metric in compare.METRICS:
        assert compare.verdict(out, "noisy", metric) == "ahead"
        assert compare.verdict(out, "near", metric) == "within noise"
    # the worse baseline, seen from its side: the model is behind it
    flipped = compare.paired_differences(y, noisy, {"model": (p, True)})
    assert compare.verdict(flipped, "model", "roc_auc") == "behind"
    assert compare.verdict(flipped, "model", "log_loss") == "behind"
    # a ranking-only baseline has no log loss to compare
    assert "vs_rank.log_loss_diff" not in out
    assert compare.verdict(out, "rank", "log_loss") == "not compared"
    assert compare.verdict(out, "rank", "roc_auc") == "ahead"


def test_interval_covers_the_true_difference_at_about_the_stated_level() -> None:
    """Two fixed scorers on fresh samples of one population: the 95% interval of the AUC
    difference should cover the population difference in about 95% of samples."""
    rng = np.random.default_rng(21)
    big = 200_000
    x = rng.normal(size=big)
    y = (rng.random(big) < 1 / (1 + np.exp(-x))).astype(float)
    a = x + rng.normal(scale=0.8, size=big)
    b = x + rng.normal(scale=1.0, size=big)
    truth = roc_auc_score(y, a) - roc_auc_score(y, b)
    covered = 0
    trials = 60
    for t in range(trials):
        rows = rng.choice(big, size=600, replace=False)
        pa, pb = 1 / (1 + np.exp(-a[rows])), 1 / (1 + np.exp(-b[rows]))
        out = compare.paired_differences(y[rows], pa, {"b": (pb, True)}, resamples=400, seed=t)
        covered += out["vs_b.roc_auc_lo"] <= truth <= out["vs_b.roc_auc_hi"]
    assert 0.85 <= covered / trials <= 1.0


def test_one_class_or_a_handful_of_positives_gives_nothing() -> None:
    y = np.zeros(20)
    assert compare.paired_differences(y, np.full(20, 0.2), {"b": (np.full(20, 0.3), True)}) == {}
    # one positive in six rows: every resample that draws it ranks it first (ROC-AUC 1.0 to 1.0)
    y, p = np.array([0, 0, 0, 0, 0, 1.0]), np.linspace(0.1, 0.6, 6)
    assert compare.paired_differences(y, p, {"b": (p[::-1].copy(), True)}) == {}
    y, p = _data(400, 12)
    few = np.flatnonzero(y == 1)[: compare.MIN_CLASS_ROWS - 1]
    keep = np.concatenate([np.flatnonzero(y == 0), few])
    assert compare.paired_differences(y[keep], p[keep], {"b": (p[keep] * 0.9, True)}) == {}
    enough = np.concatenate([keep, np.flatnonzero(y == 1)[compare.MIN_CLASS_ROWS - 1 :][:1]])
    assert compare.paired_differences(y[enough], p[enough], {"b": (p[enough] * 0.9, True)})


def test_log_loss_is_clipped_as_the_reported_metric() -> None:
    y = np.tile([0.0, 1.0, 1.0, 0.0], 10)
    p = np.tile([0.0, 1.0, 0.5, 1.0], 10)  # certain and wrong: the clipping decides the loss
    base = np.full(40, 0.5)
    out = compare.paired_differences(y, p, {"b": (base, True)}, resamples=10)
    diff = evaluate.score_metrics(y, p)["log_loss"] - evaluate.score_metrics(y, base)["log_loss"]
    assert out["vs_b.log_loss_diff"] == pytest.approx(diff, rel=1e-12)


def test_large_test_sets_draw_fewer_resamples() -> None:
    assert compare.resamples_for(5_000) == 1000
    assert compare.resamples_for(20_000) == 1000
    assert compare.resamples_for(40_000) == 500
    assert compare.resamples_for(1_000_000) == 200
    assert compare.resamples_for(1_000_000, wanted=50) == 50  # an explicit smaller number stays
    y, p = _data(300, 6)
    out = compare.paired_differences(y, p, {"b": (np.clip(p * 0.9, 0, 1), True)}, resamples=30)
    assert out["vs.resamples"] == 30


def test_comparison_rows_turn_log_loss_so_that_positive_favours_the_model(tmp_path) -> None:
    metrics = {
        "vs_logreg.roc_auc_diff": -0.002, "vs_logreg.roc_auc_lo": -0.009,
        "vs_logreg.roc_auc_hi": 0.004, "vs_logreg.log_loss_diff": -0.02,
        "vs_logreg.log_loss_lo": -0.03, "vs_logreg.log_loss_hi": -0.01,
        "vs_heuristic.roc_auc_diff": 0.17, "vs_heuristic.roc_auc_lo": 0.15,
        "vs_heuristic.roc_auc_hi": 0.2,
    }  # fmt: skip
    rows = evaluate.comparison_rows(metrics)
    assert rows.to_dict("records") == [
        {"baseline": "logistic regression", "metric": "ROC-AUC", "advantage": -0.002,
         "lo": -0.009, "hi": 0.004},
        {"baseline": "logistic regression", "metric": "log loss", "advantage": 0.02,
         "lo": 0.01, "hi": 0.03},
        {"baseline": "recency/activity heuristic", "metric": "ROC-AUC", "advantage": 0.17,
         "lo": 0.15, "hi": 0.2},
    ]  # fmt: skip
    paths = evaluate.plot_comparison(metrics, tmp_path, "churn")
    assert [p.name for p in paths] == ["baseline_comparison.png"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert evaluate.plot_comparison({"test.roc_auc": 0.8}, tmp_path / "none", "churn") == []
    assert not (tmp_path / "none").exists()


def test_the_champion_note_gives_the_difference_and_its_interval() -> None:
    from churnlab.tracking import paired_note

    y, p = _data(1500, 8)
    noise = np.random.default_rng(2).random(len(y))
    worse = np.clip(0.3 * p + 0.7 * noise, 0.01, 0.99)
    better = paired_note(y, p, worse, "roc_auc")
    out = compare.paired_differences(y, p, {"champion": (worse, True)})
    assert better == (
        f"; new minus champion {out['vs_champion.roc_auc_diff']:+.4f}, 95% interval "
        f"{out['vs_champion.roc_auc_lo']:+.4f} to {out['vs_champion.roc_auc_hi']:+.4f} (better)"
    )
    assert paired_note(y, worse, p, "log_loss").endswith("(worse)")
    assert paired_note(y, p, p, "pr_auc").endswith("(within noise)")
    assert paired_note(y, p, worse, "lift_top10") == ""  # not a bootstrapped metric
    assert paired_note(np.zeros(10), p[:10], worse[:10], "roc_auc") == ""  # one class

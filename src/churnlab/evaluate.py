"""Model metrics on a test cutoff: ranking, probability quality, top-k lift and value captured.

Ranking and probability metrics come from scikit-learn; the business metrics (lift, precision and
recall at the top k%, value captured) are defined here because scikit-learn has none. The top k%
of a list of n rows is its ``ceil(k * n)`` highest-scored rows; ties in the score are broken by a
stable sort on the row order, so the result is deterministic.

Expected calibration error (ECE) uses 10 equal-width probability bins on [0, 1] (the last bin
closed): the sum over non-empty bins of (rows in bin / rows) * |mean label - mean probability|.
Equal-width bins are the usual definition (Guo et al. 2017); with rare positives most rows fall in
the first bins, which is where a retention team's decisions are made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)

from churnlab import plots

TOP_FRACTIONS: tuple[float, ...] = (0.05, 0.10, 0.20)
ECE_BINS = 10
_EPS = 1e-15


def top_mask(score: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the top ``ceil(fraction * n)`` rows by score (stable on ties).

    Parameters
    ----------
    score : ndarray
        Scores, higher = more likely positive.
    fraction : float
        Share of rows to select, in (0, 1].
    """
    score = np.asarray(score, dtype=float)
    n = len(score)
    k = min(n, max(1, math.ceil(fraction * n - 1e-9))) if n else 0
    order = np.argsort(-score, kind="stable")
    mask = np.zeros(n, dtype=bool)
    mask[order[:k]] = True
    return mask


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error with equal-width bins (see the module docstring).

    Parameters
    ----------
    y : ndarray
        0/1 labels.
    p : ndarray
        Predicted probabilities in [0, 1].
    n_bins : int
        Number of equal-width bins on [0, 1].
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if len(y) == 0:
        return float("nan")
    # Bin i holds [i/n, (i+1)/n); p == 1 goes to the last bin.
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y, minlength=n_bins)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    nz = count > 0
    gap = np.abs(sum_y[nz] - sum_p[nz]) / count[nz]
    return float(np.sum(count[nz] / len(y) * gap))


def lift_at(y: np.ndarray, score: np.ndarray, fraction: float) -> float:
    """Positive rate in the top ``fraction`` divided by the overall positive rate."""
    y = np.asarray(y, dtype=float)
    base = y.mean() if len(y) else float("nan")
    if not base > 0:
        return float("nan")
    return float(y[top_mask(score, fraction)].mean() / base)


def precision_recall_at(y: np.ndarray, score: np.ndarray, fraction: float) -> tuple[float, float]:
    """Precision and recall when the top ``fraction`` of rows is flagged positive."""
    y = np.asarray(y, dtype=float)
    mask = top_mask(score, fraction)
    hits = y[mask].sum()
    positives = y.sum()
    precision = float(hits / mask.sum()) if mask.sum() else float("nan")
    recall = float(hits / positives) if positives else float("nan")
    return precision, recall


def value_captured_at(
    y: np.ndarray, score: np.ndarray, value: np.ndarray, fraction: float
) -> float:
    """Share of the positives' value that falls in the top ``fraction`` of rows.

    For churn, ``value`` is ARR: the share of revenue at risk captured. For expansion it is the
    expansion amount: the share of expansion value captured. Missing or negative values count
    as zero (a positive's value cannot be negative at risk).
    """
    y = np.asarray(y, dtype=float)
    v = np.clip(np.nan_to_num(np.asarray(value, dtype=float), nan=0.0), 0.0, None) * (y == 1)
    total = v.sum()
    if not total > 0:
        return float("nan")
    return float(v[top_mask(score, fraction)].sum() / total)


def _both_classes(y: np.ndarray) -> bool:
    return len(np.unique(y)) == 2


def score_metrics(
    y: np.ndarray,
    score: np.ndarray,
    *,
    value: np.ndarray | None = None,
    probabilistic: bool = True,
    fractions: Sequence[float] = TOP_FRACTIONS,
    value_fraction: float = 0.10,
) -> dict[str, float]:
    """All test metrics of one scorer on one set of rows.

    Parameters
    ----------
    y : ndarray
        0/1 labels.
    score : ndarray
        Probabilities (``probabilistic=True``) or any ranking score.
    value : ndarray, optional
        Per-row value for ``value_captured_top10`` (ARR for churn, expansion amount for expansion).
    probabilistic : bool
        If False (a heuristic ranking), log loss, Brier and ECE are left out: they need
        probabilities.
    fractions : sequence of float
        Top-k fractions for lift, precision and recall.
    value_fraction : float
        Top fraction for the value captured.

    Returns
    -------
    dict
        ``roc_auc``, ``pr_auc``, ``log_loss``, ``brier``, ``ece``, ``lift_top5``,
        ``precision_top5``, ``recall_top5`` (and 10, 20), ``value_captured_top10``,
        ``positive_rate``, ``rows``.
    """
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    out: dict[str, float] = {"rows": float(len(y)), "positive_rate": float(y.mean())}
    if _both_classes(y):
        out["roc_auc"] = float(roc_auc_score(y, score))
        out["pr_auc"] = float(average_precision_score(y, score))
    else:
        out["roc_auc"] = out["pr_auc"] = float("nan")
    if probabilistic:
        p = np.clip(score, _EPS, 1 - _EPS)
        out["log_loss"] = float(log_loss(y, p, labels=[0, 1]))
        out["brier"] = float(brier_score_loss(y, score))
        out["ece"] = expected_calibration_error(y, score)
    for f in fractions:
        tag = f"top{round(f * 100)}"
        out[f"lift_{tag}"] = lift_at(y, score, f)
        out[f"precision_{tag}"], out[f"recall_{tag}"] = precision_recall_at(y, score, f)
    if value is not None:
        out[f"value_captured_top{round(value_fraction * 100)}"] = value_captured_at(
            y, score, value, value_fraction
        )
    return out


def load_oracle(source: str | Path) -> pd.DataFrame | None:
    """The synthetic generator's true probabilities, if ``source`` is a synthetic world.

    Returns ``<source>/oracle/oracle.parquet`` (account_id, cutoff, p_churn, p_expansion) or None
    when it does not exist (real data).
    """
    path = Path(source) / "oracle" / "oracle.parquet"
    if not path.is_file():
        return None
    oracle = pd.read_parquet(path)
    oracle["account_id"] = oracle["account_id"].astype(str)
    oracle["cutoff"] = pd.to_datetime(oracle["cutoff"]).astype("datetime64[us]")
    return oracle


def oracle_probabilities(
    rows: pd.DataFrame, oracle: pd.DataFrame | None, task: str
) -> np.ndarray | None:
    """The oracle's true probabilities of ``rows`` (in their order), or None where it lacks one."""
    if oracle is None:
        return None
    col = f"p_{task}"
    keys = rows[["account_id", "cutoff"]].astype({"account_id": str})
    keys["cutoff"] = keys["cutoff"].astype("datetime64[us]")
    joined = keys.merge(
        oracle[["account_id", "cutoff", col]], on=["account_id", "cutoff"], how="left"
    )
    if len(joined) != len(rows) or joined[col].isna().any():
        return None
    return joined[col].to_numpy(dtype=float)


def oracle_metrics(
    rows: pd.DataFrame, y: np.ndarray, oracle: pd.DataFrame | None, task: str, model_auc: float
) -> dict[str, float]:
    """The oracle's ROC-AUC on the same rows, the model's gap to it, and the oracle's own ECE.

    The gap is ``oracle_auc - model_auc``; the oracle's ECE is the sampling-noise floor of
    calibration error on these rows.

    Returns an empty dict when there is no oracle or it does not cover every row (the oracle
    belongs to another dataset, or a different horizon was used).
    """
    if oracle is None or not _both_classes(np.asarray(y)):
        return {}
    p = oracle_probabilities(rows, oracle, task)
    if p is None:
        return {}
    auc = float(roc_auc_score(y, p))
    # The true probabilities' own ECE on these rows is the noise floor of the model's ECE.
    return {
        "oracle_roc_auc": auc,
        "oracle_gap": auc - model_auc,
        "oracle_ece": expected_calibration_error(y, p),
    }


def calibration_table(y: np.ndarray, p: np.ndarray, n_bins: int = ECE_BINS) -> pd.DataFrame:
    """Per equal-width bin: rows, mean probability and observed rate (the calibration curve)."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    frame = pd.DataFrame({"bin": idx, "y": y, "p": p})
    table = frame.groupby("bin").agg(rows=("y", "size"), mean_p=("p", "mean"), rate=("y", "mean"))
    return table.reset_index()


def gains_table(y: np.ndarray, score: np.ndarray, points: int = 20) -> pd.DataFrame:
    """Cumulative gains and lift at ``points`` evenly spaced top fractions."""
    y = np.asarray(y, dtype=float)
    rows = []
    for f in np.linspace(1 / points, 1.0, points):
        _, recall = precision_recall_at(y, score, float(f))
        rows.append({"fraction": float(f), "gain": recall, "lift": lift_at(y, score, float(f))})
    return pd.DataFrame(rows)


def plot_evaluation(predictions: pd.DataFrame, out_dir: Path, task: str) -> list[Path]:
    """ROC, precision-recall, calibration and cumulative gains charts (PNG) on the test rows.

    Parameters
    ----------
    predictions : DataFrame
        ``y`` and the scores ``p`` (model), ``p_logreg`` and ``heuristic`` (baselines).
    out_dir : Path
        Folder the PNG files are written to.
    task : str
        Used in the titles.
    """
    from sklearn.metrics import precision_recall_curve, roc_curve

    out_dir.mkdir(parents=True, exist_ok=True)
    y = predictions["y"].to_numpy(dtype=float)
    scorers = {
        "LightGBM (calibrated)": "p",
        "logistic regression": "p_logreg",
        "recency/activity heuristic": "heuristic",
    }
    scorers = {k: v for k, v in scorers.items() if v in predictions.columns}
    paths = []

    fig = plots.figure(5, 5, layout="tight")
    ax = fig.subplots()
    for label, col in scorers.items():
        fpr, tpr, _ = roc_curve(y, predictions[col])
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{task}: ROC")
    ax.legend(loc="lower right", fontsize=8)
    paths.append(out_dir / "roc_curve.png")

    fig2 = plots.figure(5, 5, layout="tight")
    ax2 = fig2.subplots()
    for label, col in scorers.items():
        prec, rec, _ = precision_recall_curve(y, predictions[col])
        ax2.plot(rec, prec, label=label)
    ax2.axhline(y.mean(), color="k", ls=":", lw=1)
    ax2.set(xlabel="recall", ylabel="precision", title=f"{task}: precision-recall")
    ax2.legend(loc="upper right", fontsize=8)
    paths.append(out_dir / "pr_curve.png")

    fig3 = plots.figure(5, 5, layout="tight")
    ax3 = fig3.subplots()
    table = calibration_table(y, predictions["p"].to_numpy(dtype=float))
    ax3.plot([0, 1], [0, 1], "k:", lw=1)
    ax3.plot(table["mean_p"], table["rate"], "o-", label="LightGBM (calibrated)")
    ax3.set(
        xlabel="mean predicted probability",
        ylabel="observed rate",
        title=f"{task}: calibration ({ECE_BINS} equal-width bins)",
    )
    ax3.legend(loc="upper left", fontsize=8)
    paths.append(out_dir / "calibration_curve.png")

    fig4 = plots.figure(10, 4.5, layout="tight")
    ax4, ax5 = fig4.subplots(1, 2)
    for label, col in scorers.items():
        g = gains_table(y, predictions[col].to_numpy(dtype=float))
        ax4.plot(g["fraction"], g["gain"], label=label)
        ax5.plot(g["fraction"], g["lift"], label=label)
    ax4.plot([0, 1], [0, 1], "k:", lw=1)
    ax4.set(
        xlabel="share of accounts targeted",
        ylabel="share of positives",
        title=f"{task}: cumulative gains",
    )
    ax5.axhline(1.0, color="k", ls=":", lw=1)
    ax5.set(xlabel="share of accounts targeted", ylabel="lift", title=f"{task}: lift")
    ax4.legend(loc="lower right", fontsize=8)
    paths.append(out_dir / "lift_gains.png")

    for f, path in zip((fig, fig2, fig3, fig4), paths, strict=True):
        plots.save(f, path)
    return paths


_COMPARED = {
    "logreg": "logistic regression",
    "btyd": "BG/NBD model",
    "heuristic": "recency/activity heuristic",
    "oracle": "oracle (true probabilities)",
}
_METRIC_LABEL = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "log_loss": "log loss"}


def comparison_rows(metrics: dict[str, float]) -> pd.DataFrame:
    """LightGBM's advantage over each baseline, one row per (baseline, metric), with interval.

    From the paired bootstrap's ``vs_<baseline>.<metric>_diff/_lo/_hi`` (:mod:`churnlab.compare`);
    ``advantage`` is the difference turned so that positive favours LightGBM (log loss: the
    baseline's minus LightGBM's).
    """
    rows = []
    for name, label in _COMPARED.items():
        for metric, mlabel in _METRIC_LABEL.items():
            key = f"vs_{name}.{metric}"
            if not all(f"{key}_{x}" in metrics for x in ("diff", "lo", "hi")):
                continue
            sign = -1.0 if metric == "log_loss" else 1.0
            ends = sorted(sign * metrics[f"{key}_{x}"] for x in ("lo", "hi"))
            rows.append(
                {"baseline": label, "metric": mlabel,
                 "advantage": sign * metrics[f"{key}_diff"], "lo": ends[0], "hi": ends[1]}
            )  # fmt: skip
    return pd.DataFrame(rows, columns=["baseline", "metric", "advantage", "lo", "hi"])


def plot_comparison(metrics: dict[str, float], out_dir: Path, task: str) -> list[Path]:
    """A chart of LightGBM's advantage over each baseline with its 95% interval (PNG).

    One bar per (baseline, metric), right of zero when LightGBM is better; an interval that
    crosses zero is a difference within the noise of the test cutoff. No chart (an empty
    list) when the run has no paired comparison.
    """
    rows = comparison_rows(metrics)
    if rows.empty:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = list(dict.fromkeys(rows["baseline"]))  # one panel (own scale) per baseline
    fig = plots.figure(8, 0.5 * len(rows) + 0.9 * len(groups) + 0.6, layout="constrained")
    axes = np.atleast_1d(
        fig.subplots(len(groups), 1, height_ratios=[(rows["baseline"] == g).sum() for g in groups])
    )
    fig.suptitle(f"{task}: LightGBM's advantage over each baseline (right of 0: LightGBM better)")
    for ax, group in zip(axes, groups, strict=True):
        part = rows[rows["baseline"] == group].reset_index(drop=True)
        pos = np.arange(len(part))[::-1]
        ahead, behind = part["lo"] > 0, part["hi"] < 0
        colours = list(np.where(ahead, "tab:green", np.where(behind, "tab:red", "0.45")))
        ax.hlines(pos, part["lo"], part["hi"], colors=colours, lw=2)
        ax.scatter(part["advantage"], pos, c=colours, zorder=3)
        for y, r in zip(pos, part.itertuples(index=False), strict=True):
            ax.annotate(
                f"{r.advantage:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}]", (r.hi, y),
                xytext=(6, 0), textcoords="offset points", va="center", fontsize=8,
            )  # fmt: skip
        lo, hi = min(0.0, part["lo"].min()), max(0.0, part["hi"].max())
        span = hi - lo or 0.01
        ax.set_xlim(lo - 0.08 * span, hi + 0.6 * span)  # room for the labels on the right
        ax.set_ylim(-0.6, len(part) - 0.4)
        ax.axvline(0.0, color="k", lw=1)
        ax.set_yticks(pos, list(part["metric"]))
        ax.set_title(f"against the {group}", fontsize=9, loc="left")
    axes[-1].set_xlabel("difference on the test cutoff, with its 95% paired bootstrap interval")
    path = out_dir / "baseline_comparison.png"
    plots.save(fig, path)
    return [path]

"""What a campaign measurement logs to MLflow, and its charts.

:func:`run_log` describes what to log for a :class:`churnlab.measure.Measurement` (written by
:func:`churnlab.tracking.log`); :func:`plot` draws the effects with their intervals and the Qini
curves of the targeting score.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from churnlab import plots
from churnlab.measure import OUTCOMES, OVERALL, Measurement
from churnlab.runlog import RunLog

_METRIC_NAME = re.compile(r"[^0-9A-Za-z_\-. /]")


def _metric_key(name: str) -> str:
    """A campaign id made safe for an MLflow metric name (other characters become '_')."""
    return _METRIC_NAME.sub("_", name)


def run_log(result: Measurement, plot_files: Sequence[Path] = ()) -> RunLog:
    """What to log to MLflow for a measurement (:func:`churnlab.tracking.log` writes it).

    Metrics, per measured campaign ``c`` (its id with characters MLflow refuses replaced by
    ``_``): ``measure.<c>.<outcome>_diff``, ``_ci_low``, ``_ci_high`` for every outcome,
    ``measure.<c>.n_treated``, ``n_holdout`` and ``qini_coefficient``; plus
    ``measure.campaigns_measured`` and ``measure.campaigns_pending``. Tags: the interval methods,
    level, mode, data end and the ids of measured, pending and too-small campaigns. Tables under
    ``measure/``: ``campaigns.csv``, ``effects.csv``, ``power.csv``, ``pending.csv``,
    ``warnings.csv`` and, with a score, ``qini.csv`` and ``uplift_by_decile.csv``; plots under
    ``measure/plots``.

    Parameters
    ----------
    result : Measurement
        What :func:`measure` returned.
    plot_files : sequence of Path
        The plot files (what :func:`plot` returned).
    """
    metrics: dict[str, float] = {
        "measure.campaigns_measured": float(len(result.campaigns)),
        "measure.campaigns_pending": float(len(result.pending)),
    }
    for _, row in result.campaigns.iterrows():
        key = f"measure.{_metric_key(str(row['campaign_id']))}"
        for o in OUTCOMES:
            for part in ("diff", "ci_low", "ci_high"):
                metrics[f"{key}.{o}_{part}"] = float(row[f"{o}_{part}"])
        metrics[f"{key}.n_treated"] = float(row["n_treated"])
        metrics[f"{key}.n_holdout"] = float(row["n_holdout"])
        metrics[f"{key}.qini_coefficient"] = float(row["qini_coefficient"])
    s = result.settings
    small = sorted(set(result.warnings["campaign_id"][result.warnings["segment_type"] == OVERALL]))
    tags = {
        "measure.rate_method": s.rate_method,
        "measure.mean_method": s.mean_method,
        "measure.level": str(s.level),
        "measure.mode": result.mode,
        "measure.data_end": pd.Timestamp(result.data_end).isoformat(),
        "measure.measured": ",".join(map(str, result.campaigns["campaign_id"])),
        "measure.pending": ",".join(map(str, result.pending["campaign_id"])),
        "measure.too_small": ",".join(map(str, small)),
    }
    tables = {
        "measure/campaigns.csv": result.campaigns,
        "measure/effects.csv": result.effects,
        "measure/power.csv": result.power,
        "measure/pending.csv": result.pending,
        "measure/warnings.csv": result.warnings,
    }
    if not result.qini.empty:
        tables["measure/qini.csv"] = result.qini
        tables["measure/uplift_by_decile.csv"] = result.uplift_by_decile
    files = {"measure/plots": list(plot_files)} if plot_files else {}
    return RunLog(metrics=metrics, tags=tags, tables=tables, files=files)


_PLOT_OUTCOMES = (
    ("churn", "churn rate, treated - holdout (points)", 100.0),
    ("expansion", "expansion rate, treated - holdout (points)", 100.0),
    ("retained_arr", "retained ARR per account, treated - holdout", 1.0),
    ("expansion_value", "expansion value per account, treated - holdout", 1.0),
)


def plot(result: Measurement, out_dir: Path | str) -> list[Path]:
    """Draw the effects with their intervals per campaign, and the Qini curves of the score.

    ``effects.png``: one panel per outcome, one horizontal bar per measured campaign (the
    difference, with its interval as an error bar; red when harmful, green when a detectable
    improvement, grey otherwise). ``qini.png`` (only with a score): the Qini curve of each
    campaign against its random line. Nothing is drawn when no campaign was measured.

    Parameters
    ----------
    result : Measurement
        What :func:`measure` returned.
    out_dir : Path
        Folder for the PNG files (created if needed).

    Returns
    -------
    list of Path
        The files written.
    """
    out = Path(out_dir)
    paths: list[Path] = []
    camps = result.campaigns
    if camps.empty:
        return paths
    panels = [p for p in _PLOT_OUTCOMES if camps[f"{p[0]}_diff"].notna().any()]
    n = len(camps)
    fig = plots.figure(5.0 * len(panels), max(2.5, 0.45 * n + 1.2))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    y = np.arange(n)[::-1]
    for ax, (outcome, title, scale) in zip(axes, panels, strict=True):
        diff = camps[f"{outcome}_diff"].to_numpy(dtype=float) * scale
        low = camps[f"{outcome}_ci_low"].to_numpy(dtype=float) * scale
        high = camps[f"{outcome}_ci_high"].to_numpy(dtype=float) * scale
        verdict = camps[f"{outcome}_verdict"].astype(str)
        colour = np.where(
            verdict.str.contains("harmful"),
            "tab:red",
            np.where(verdict.str.contains("no detectable|not", regex=True), "grey", "tab:green"),
        )
        err = np.vstack([np.nan_to_num(diff - low), np.nan_to_num(high - diff)])
        ax.barh(y, np.nan_to_num(diff), color=colour, alpha=0.6)
        ax.errorbar(np.nan_to_num(diff), y, xerr=err, fmt="none", ecolor="black", capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, camps["campaign_id"].astype(str).tolist(), fontsize=8)
    level = int(round(100 * result.settings.level))
    fig.suptitle(f"Campaign effects with {level}% intervals (green: helps, red: harms)")
    paths.append(plots.save(fig, out / "effects.png"))
    if not result.qini.empty:
        fig = plots.figure(7, 5)
        ax = fig.add_subplot()
        for (cid, outcome), curve in result.qini.groupby(["campaign_id", "outcome"], sort=True):
            line = ax.plot(curve["fraction"], curve["qini"], label=f"{cid} ({outcome})")[0]
            ax.plot(curve["fraction"], curve["random"], linestyle="--", color=line.get_color(),
                    alpha=0.6)  # fmt: skip
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xlabel("share of the audience targeted, by descending score")
        ax.set_ylabel("extra responses (saved or expanded accounts)")
        ax.set_title("Qini curves of the targeting score (dashed: random targeting)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        paths.append(plots.save(fig, out / "qini.png"))
    return paths

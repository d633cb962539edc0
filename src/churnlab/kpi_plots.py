"""KPI charts: trends, the MRR bridge, cohort retention, NPS, campaigns, predicted vs realised.

Complete periods only (partial periods at the edges of the data would look like drops); a chart
whose data is absent is skipped rather than drawn empty. Drawn with :mod:`churnlab.plots`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnlab import plots
from churnlab.backscore import PVR_BANDS, PVR_OVERALL, headline
from churnlab.periods import label


@dataclass
class _Charts:
    """The complete periods being drawn and where the files go."""

    m: pd.DataFrame
    period: str
    out: Path
    paths: list[Path] = field(default_factory=list)

    @property
    def x(self) -> np.ndarray:
        return np.arange(len(self.m))

    def save(self, fig: Any, name: str) -> None:
        self.paths.append(plots.save(fig, self.out / name))

    def ticks(self, ax: Any) -> None:
        labels = [label(pd.Timestamp(t), self.period) for t in self.m.index]
        step = max(1, len(labels) // 12)
        ax.set_xticks(self.x[::step], labels[::step], rotation=45, ha="right")
        ax.grid(axis="y", alpha=0.3)

    def has(self, *cols: str) -> bool:
        return len(self.m) > 0 and any(self.m[c].notna().any() for c in cols)


def _legend(fig: Any, *axes: Any) -> None:
    # Below the plot, so it never hides a line or a bar.
    handles, names = [], []
    for a in axes:
        h, n = a.get_legend_handles_labels()
        handles += h
        names += n
    fig.legend(handles, names, loc="outside lower center", ncol=min(5, len(names)), fontsize=8)


def _money(a: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    def fmt(v: float, _pos: int) -> str:
        if abs(v) >= 1e6:
            return f"{v / 1e6:.1f}M"
        return f"{v / 1e3:.0f}k" if abs(v) >= 1e3 else f"{v:.0f}"

    a.yaxis.set_major_formatter(FuncFormatter(fmt))


def _trends(ch: _Charts) -> None:
    """Churn, GRR, NRR (monthly and trailing 12 months) or the buyer metrics."""
    # KPI trends: rates on one axis (percent), so churn and retention read on the same scale.
    # Fixed colours: the two axes would otherwise each start the colour cycle and clash.
    trend_cols = [
        ("churn_rate", "logo churn rate", "#d62728"),
        ("grr", "GRR", "#1f77b4"),
        ("nrr", "NRR", "#2ca02c"),
        ("grr_12m", "GRR (trailing 12m)", "#1f77b4"),
        ("nrr_12m", "NRR (trailing 12m)", "#2ca02c"),
        ("active_customer_churn_rate", "active-customer churn (orders)", "#ff7f0e"),
        ("repeat_purchase_rate", "repeat-purchase rate", "#9467bd"),
        ("spend_retention", "spend retention", "#8c564b"),
    ]
    present = [(col, lab, color) for col, lab, color in trend_cols if ch.has(col)]
    if present:
        fig = plots.figure()
        ax = fig.add_subplot()
        churn_like = {"churn_rate", "active_customer_churn_rate"}
        ax2 = ax.twinx() if any(col in churn_like for col, _, _ in present) else None
        for col, lab, color in present:
            target_ax = ax2 if (ax2 is not None and col in churn_like) else ax
            style = "--" if col.endswith("_12m") else "-"
            target_ax.plot(
                ch.x, 100 * ch.m[col].to_numpy(), style, color=color, marker="o", ms=3, label=lab
            )
        ax.set_ylabel("retention (%)")
        if ax2 is not None:
            ax2.set_ylabel("churn (%)")
            ax2.set_ylim(bottom=0)
            _legend(fig, ax, ax2)
        else:
            _legend(fig, ax)
        ax.set_title(f"Retention KPIs per {ch.period} (complete periods)")
        ch.ticks(ax)
        ch.save(fig, "kpi_trends.png")


def _bridge(ch: _Charts) -> None:
    """MRR movements as stacked bars, net change and end MRR."""
    if ch.has("start_mrr"):
        fig = plots.figure()
        ax = fig.add_subplot()
        ups = [
            ("new_mrr", "new", "#2ca02c"),
            ("expansion_mrr", "expansion", "#98df8a"),
            ("reactivation_mrr", "reactivation", "#17becf"),
        ]
        downs = [
            ("churned_mrr", "churned", "#d62728"),
            ("contraction_mrr", "contraction", "#ff9896"),
        ]
        bottom = np.zeros(len(ch.m))
        for col, lab, color in ups:
            v = ch.m[col].to_numpy()
            ax.bar(ch.x, v, bottom=bottom, label=lab, color=color)
            bottom = bottom + v
        bottom = np.zeros(len(ch.m))
        for col, lab, color in downs:
            v = -ch.m[col].to_numpy()
            ax.bar(ch.x, v, bottom=bottom, label=lab, color=color)
            bottom = bottom + v
        net = (ch.m["end_mrr"] - ch.m["start_mrr"]).to_numpy()
        ax.plot(ch.x, net, "k-", marker="o", ms=3, label="net change")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylabel("MRR movement")
        ax3 = ax.twinx()
        ax3.plot(ch.x, ch.m["end_mrr"].to_numpy(), color="grey", ls=":", label="end MRR")
        ax3.set_ylabel("end MRR")
        _money(ax)
        _money(ax3)
        _legend(fig, ax, ax3)
        ax.set_title(
            f"MRR bridge per {ch.period}: start + new + expansion + reactivation "
            "- contraction - churned = end (movements)"
        )
        ch.ticks(ax)
        ch.save(fig, "mrr_bridge.png")


def _cohort_heatmap(ch: _Charts, cohorts: pd.DataFrame) -> None:
    """Share of each sign-up cohort still active after k periods."""
    if len(cohorts):
        grid = cohorts.pivot(index="cohort", columns="periods_since_signup", values="retention")
        fig = plots.figure(10, max(4.0, 0.3 * len(grid) + 1.5))
        ax = fig.add_subplot()
        image = ax.imshow(
            100 * grid.to_numpy(dtype=float), aspect="auto", cmap="viridis", vmin=0, vmax=100
        )
        ax.set_yticks(
            np.arange(len(grid)),
            [label(pd.Timestamp(t), ch.period) for t in grid.index],
            fontsize=7,
        )
        ax.set_xlabel(f"{ch.period}s since sign-up")
        ax.set_ylabel("sign-up cohort")
        ax.set_title("Cohort retention (% of cohort active)")
        if grid.shape[0] * grid.shape[1] <= 400:
            for (i, j), v in np.ndenumerate(grid.to_numpy(dtype=float)):
                if not math.isnan(v):
                    ax.text(
                        j,
                        i,
                        f"{100 * v:.0f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if v < 0.6 else "black",
                    )
        fig.colorbar(image, ax=ax, label="% retained")
        ch.save(fig, "cohort_retention.png")


def _nps(ch: _Charts) -> None:
    """NPS with promoter, passive and detractor counts."""
    if ch.has("nps"):
        fig = plots.figure()
        ax = fig.add_subplot()
        ax.bar(ch.x, ch.m["promoters"].to_numpy(), color="#2ca02c", label="promoters")
        ax.bar(
            ch.x,
            ch.m["passives"].to_numpy(),
            bottom=ch.m["promoters"].to_numpy(),
            color="#c7c7c7",
            label="passives",
        )
        ax.bar(
            ch.x,
            ch.m["detractors"].to_numpy(),
            bottom=(ch.m["promoters"] + ch.m["passives"]).to_numpy(),
            color="#d62728",
            label="detractors",
        )
        ax.set_ylabel("responses")
        ax2 = ax.twinx()
        ax2.plot(ch.x, ch.m["nps"].to_numpy(), "k-", marker="o", ms=3, label="NPS")
        ax2.set_ylabel("NPS (-100..100)")
        ax2.axhline(0, color="black", lw=0.5, ls=":")
        _legend(fig, ax, ax2)
        ax.set_title(f"NPS per {ch.period} (periods without responses have no NPS)")
        ch.ticks(ax)
        ch.save(fig, "nps.png")


def _campaigns(ch: _Charts) -> None:
    """Open and click rates of customer campaigns, with sends."""
    if ch.has("open_rate"):
        fig = plots.figure()
        ax = fig.add_subplot()
        ax.bar(
            ch.x,
            ch.m["campaign_sent"].to_numpy(),
            color="#dddddd",
            label="sent (account x campaign)",
        )
        ax.set_ylabel("sends to current customers")
        ax2 = ax.twinx()
        ax2.plot(ch.x, 100 * ch.m["open_rate"].to_numpy(), marker="o", ms=3, label="open rate")
        ax2.plot(ch.x, 100 * ch.m["click_rate"].to_numpy(), marker="o", ms=3, label="click rate")
        ax2.set_ylabel("rate (%)")
        ax2.set_ylim(bottom=0)
        _legend(fig, ax, ax2)
        ax.set_title(
            f"Customer campaign engagement per {ch.period} (unique per account and campaign)"
        )
        ch.ticks(ax)
        ch.save(fig, "campaigns.png")


def plot(result: dict[str, pd.DataFrame], out_dir: Path | str) -> list[Path]:
    """Draw the KPI plots as PNG files (complete periods only; a plot without data is skipped).

    Plots: ``kpi_trends.png`` (churn, GRR, NRR; orders-only: active-customer churn, repeat
    purchase, spend retention), ``mrr_bridge.png`` (MRR movements as stacked bars with end MRR),
    ``cohort_retention.png`` (heatmap), ``nps.png`` (NPS with promoter/passive/detractor counts),
    ``campaigns.png`` (open and click rates with sends), and ``predicted_vs_realised.png`` when
    the result holds :func:`predicted_vs_realised` tables.

    Parameters
    ----------
    result : dict of str to DataFrame
        What :func:`compute` returned.
    out_dir : Path or str
        Directory for the PNG files (created if needed).

    Returns
    -------
    list of Path
        The files written.
    """
    period = str(result["info"]["period"].iloc[0])
    monthly = result["monthly"]
    c = _Charts(monthly[~monthly["partial"]], period, Path(out_dir))
    _trends(c)
    _bridge(c)
    _cohort_heatmap(c, result["cohorts"])
    _nps(c)
    _campaigns(c)
    if PVR_OVERALL in result and len(result[PVR_OVERALL]):
        _plot_pvr(result, lambda fig, name: c.save(fig, name))
    return c.paths


def _plot_pvr(result: dict[str, pd.DataFrame], save: Callable[[Any, str], None]) -> None:
    overall, by_band = result[PVR_OVERALL], result[PVR_BANDS]
    head = headline(result)
    fig = plots.figure(12, 5)
    ax, ax_b = fig.subplots(1, 2, width_ratios=[3, 2])
    x = np.arange(len(overall))
    ax.plot(x, 100 * overall["mean_predicted"], marker="o", ms=3, label="mean predicted")
    ax.plot(x, 100 * overall["realised_rate"], marker="s", ms=3, label="realised")
    shades = {"train": "#e8f0fb", "valid": "#e0e0e0", "test": "#ffd27f"}
    roles = list(overall["role"])
    for i, role in enumerate(roles):
        if role in shades:
            ax.axvspan(i - 0.5, i + 0.5, color=shades[role], lw=0)
            if i == 0 or roles[i - 1] != role:  # label each run of cutoffs once
                ax.text(
                    i, 0, role, ha="left" if role == "train" else "center", va="bottom", fontsize=7
                )
    labels = [pd.Timestamp(c).strftime("%Y-%m-%d") for c in overall["cutoff"]]
    step = max(1, len(labels) // 10)
    ax.set_xticks(x[::step], labels[::step], rotation=45, ha="right")
    ax.set_ylabel("churn within the horizon (%)")
    ax.set_ylim(bottom=0)
    ax.set_title("Predicted vs realised churn per cutoff")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if head is not None:
        b = by_band[by_band["cutoff"] == head["cutoff"]]
        xb = np.arange(len(b))
        ax_b.bar(xb - 0.2, 100 * b["mean_predicted"], 0.4, label="mean predicted")
        ax_b.bar(xb + 0.2, 100 * b["realised_rate"], 0.4, label="realised")
        for i, n in enumerate(b["rows"]):
            ax_b.text(i, 0, f"n={n}", ha="center", va="bottom", fontsize=7)
        ax_b.set_xticks(xb, list(b["band"]))
        ax_b.set_xlabel("predicted risk band")
        ax_b.set_title(
            f"By risk band, cutoff {pd.Timestamp(head['cutoff']).date()} ({head['role']})"
        )
        ax_b.legend(fontsize=8)
        ax_b.grid(axis="y", alpha=0.3)
    else:
        ax_b.set_axis_off()
    save(fig, "predicted_vs_realised.png")

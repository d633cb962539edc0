"""KPI charts: trends, the MRR bridge, cohort retention, NPS, campaigns, predicted vs realised.

Complete periods only (partial periods at the edges of the data would look like drops); a chart
whose data is absent is skipped rather than drawn empty. Drawn with :mod:`churnlab.plots`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnlab import plots
from churnlab.atomic import write_file
from churnlab.backscore import PVR_BANDS, PVR_OVERALL, headline
from churnlab.periods import label


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
    out = Path(out_dir)
    period = str(result["info"]["period"].iloc[0])
    monthly = result["monthly"]
    m = monthly[~monthly["partial"]]
    labels = [label(pd.Timestamp(t), period) for t in m.index]
    x = np.arange(len(m))
    paths: list[Path] = []

    def save(fig: Any, name: str) -> None:
        target = out / name
        write_file(target, lambda tmp: fig.savefig(tmp, format="png"))
        paths.append(target)

    def ticks(ax: Any) -> None:
        step = max(1, len(labels) // 12)
        ax.set_xticks(x[::step], labels[::step], rotation=45, ha="right")
        ax.grid(axis="y", alpha=0.3)

    def legend(fig: Any, *axes: Any) -> None:
        # Below the plot, so it never hides a line or a bar.
        handles, names = [], []
        for a in axes:
            h, n = a.get_legend_handles_labels()
            handles += h
            names += n
        fig.legend(handles, names, loc="outside lower center", ncol=min(5, len(names)), fontsize=8)

    def money(a: Any) -> None:
        from matplotlib.ticker import FuncFormatter

        def fmt(v: float, _pos: int) -> str:
            if abs(v) >= 1e6:
                return f"{v / 1e6:.1f}M"
            return f"{v / 1e3:.0f}k" if abs(v) >= 1e3 else f"{v:.0f}"

        a.yaxis.set_major_formatter(FuncFormatter(fmt))

    def has(*cols: str) -> bool:
        return len(m) > 0 and any(m[c].notna().any() for c in cols)

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
    present = [(c, lab, color) for c, lab, color in trend_cols if has(c)]
    if present:
        fig = plots.figure()
        ax = fig.add_subplot()
        churn_like = {"churn_rate", "active_customer_churn_rate"}
        ax2 = ax.twinx() if any(c in churn_like for c, _, _ in present) else None
        for c, lab, color in present:
            target_ax = ax2 if (ax2 is not None and c in churn_like) else ax
            style = "--" if c.endswith("_12m") else "-"
            target_ax.plot(
                x, 100 * m[c].to_numpy(), style, color=color, marker="o", ms=3, label=lab
            )
        ax.set_ylabel("retention (%)")
        if ax2 is not None:
            ax2.set_ylabel("churn (%)")
            ax2.set_ylim(bottom=0)
            legend(fig, ax, ax2)
        else:
            legend(fig, ax)
        ax.set_title(f"Retention KPIs per {period} (complete periods)")
        ticks(ax)
        save(fig, "kpi_trends.png")

    if has("start_mrr"):
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
        bottom = np.zeros(len(m))
        for c, lab, color in ups:
            v = m[c].to_numpy()
            ax.bar(x, v, bottom=bottom, label=lab, color=color)
            bottom = bottom + v
        bottom = np.zeros(len(m))
        for c, lab, color in downs:
            v = -m[c].to_numpy()
            ax.bar(x, v, bottom=bottom, label=lab, color=color)
            bottom = bottom + v
        net = (m["end_mrr"] - m["start_mrr"]).to_numpy()
        ax.plot(x, net, "k-", marker="o", ms=3, label="net change")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylabel("MRR movement")
        ax3 = ax.twinx()
        ax3.plot(x, m["end_mrr"].to_numpy(), color="grey", ls=":", label="end MRR")
        ax3.set_ylabel("end MRR")
        money(ax)
        money(ax3)
        legend(fig, ax, ax3)
        ax.set_title(
            f"MRR bridge per {period}: start + new + expansion + reactivation "
            "- contraction - churned = end (movements)"
        )
        ticks(ax)
        save(fig, "mrr_bridge.png")

    cohorts = result["cohorts"]
    if len(cohorts):
        grid = cohorts.pivot(index="cohort", columns="periods_since_signup", values="retention")
        fig = plots.figure(10, max(4.0, 0.3 * len(grid) + 1.5))
        ax = fig.add_subplot()
        image = ax.imshow(
            100 * grid.to_numpy(dtype=float), aspect="auto", cmap="viridis", vmin=0, vmax=100
        )
        ax.set_yticks(
            np.arange(len(grid)), [label(pd.Timestamp(t), period) for t in grid.index], fontsize=7
        )
        ax.set_xlabel(f"{period}s since sign-up")
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
        save(fig, "cohort_retention.png")

    if has("nps"):
        fig = plots.figure()
        ax = fig.add_subplot()
        ax.bar(x, m["promoters"].to_numpy(), color="#2ca02c", label="promoters")
        ax.bar(
            x,
            m["passives"].to_numpy(),
            bottom=m["promoters"].to_numpy(),
            color="#c7c7c7",
            label="passives",
        )
        ax.bar(
            x,
            m["detractors"].to_numpy(),
            bottom=(m["promoters"] + m["passives"]).to_numpy(),
            color="#d62728",
            label="detractors",
        )
        ax.set_ylabel("responses")
        ax2 = ax.twinx()
        ax2.plot(x, m["nps"].to_numpy(), "k-", marker="o", ms=3, label="NPS")
        ax2.set_ylabel("NPS (-100..100)")
        ax2.axhline(0, color="black", lw=0.5, ls=":")
        legend(fig, ax, ax2)
        ax.set_title(f"NPS per {period} (periods without responses have no NPS)")
        ticks(ax)
        save(fig, "nps.png")

    if has("open_rate"):
        fig = plots.figure()
        ax = fig.add_subplot()
        ax.bar(x, m["campaign_sent"].to_numpy(), color="#dddddd", label="sent (account x campaign)")
        ax.set_ylabel("sends to current customers")
        ax2 = ax.twinx()
        ax2.plot(x, 100 * m["open_rate"].to_numpy(), marker="o", ms=3, label="open rate")
        ax2.plot(x, 100 * m["click_rate"].to_numpy(), marker="o", ms=3, label="click rate")
        ax2.set_ylabel("rate (%)")
        ax2.set_ylim(bottom=0)
        legend(fig, ax, ax2)
        ax.set_title(f"Customer campaign engagement per {period} (unique per account and campaign)")
        ticks(ax)
        save(fig, "campaigns.png")
    if PVR_OVERALL in result and len(result[PVR_OVERALL]):
        _plot_pvr(result, save)
    return paths


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

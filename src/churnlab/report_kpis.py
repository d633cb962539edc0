"""The KPI section of the report (:mod:`churnlab.report`): cards, trends and the MRR bridge.

Metrics are labelled outcome or activity (from the KPI catalogue); metrics that do not apply to
the data are explained, never shown as zero; partial periods are marked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from churnlab.report_charts import (
    _PALETTE,
    _bar_chart,
    _clean,
    _line_chart,
    _Series,
)
from churnlab.report_format import (
    _e,
    _finite,
    _kind_badge,
    _note,
    format_int,
    format_money,
    format_percent,
)
from churnlab.report_inputs import (
    DASH,
    ColType,
    ReportInputs,
)

# --------------------------------------------------------------------------------------------
# KPIs

KpiUnit = Literal["pct", "money", "int", "points", "score"]


@dataclass(frozen=True)
class _Kpi:
    name: str
    label: str
    unit: KpiUnit
    kind: str
    better: int  # +1 higher is better, -1 lower is better, 0 neither


_KPIS: tuple[_Kpi, ...] = (
    _Kpi("churn_rate", "Logo churn rate", "pct", "outcome", -1),
    _Kpi("retention_rate", "Customer retention rate", "pct", "outcome", 1),
    _Kpi("grr", "GRR (monthly)", "pct", "outcome", 1),
    _Kpi("nrr", "NRR (monthly)", "pct", "outcome", 1),
    _Kpi("grr_12m", "GRR, trailing 12 months", "pct", "outcome", 1),
    _Kpi("nrr_12m", "NRR, trailing 12 months", "pct", "outcome", 1),
    _Kpi("start_mrr", "MRR at period start", "money", "outcome", 1),
    _Kpi("new_mrr", "New MRR", "money", "outcome", 1),
    _Kpi("expansion_mrr", "Expansion MRR", "money", "outcome", 1),
    _Kpi("contraction_mrr", "Contraction MRR", "money", "outcome", -1),
    _Kpi("churned_mrr", "Churned MRR", "money", "outcome", -1),
    _Kpi("reactivation_mrr", "Reactivation MRR", "money", "outcome", 1),
    _Kpi("end_mrr", "MRR at period end", "money", "outcome", 1),
    _Kpi("active_customer_churn_rate", "Active-customer churn rate", "pct", "outcome", -1),
    _Kpi("repeat_purchase_rate", "Repeat-purchase rate", "pct", "outcome", 1),
    _Kpi("spend_retention", "Spend retention", "pct", "outcome", 1),
    _Kpi("buyers", "Buyers", "int", "outcome", 1),
    _Kpi("revenue", "Revenue", "money", "outcome", 1),
    _Kpi("upsell_revenue_share", "Upsell + cross-sell revenue share", "pct", "outcome", 1),
    _Kpi("existing_customer_revenue_share", "Revenue from existing customers", "pct", "outcome", 0),
    _Kpi("nps", "NPS", "points", "outcome", 1),
    _Kpi("nps_responses", "NPS responses", "int", "activity", 0),
    _Kpi("campaign_sent", "Campaign sends to customers", "int", "activity", 0),
    _Kpi("open_rate", "Campaign open rate", "pct", "activity", 1),
    _Kpi("click_rate", "Campaign click rate", "pct", "activity", 1),
    _Kpi("tickets_opened", "Support tickets opened", "int", "activity", 0),
    _Kpi("csat_mean", "CSAT (1-5)", "score", "activity", 1),
)
_KPI_BY_NAME = {k.name: k for k in _KPIS}
_CARD_KPIS = (
    "churn_rate",
    "active_customer_churn_rate",
    "nrr",
    "grr",
    "nrr_12m",
    "spend_retention",
    "upsell_revenue_share",
    "nps",
    "open_rate",
)
_WHY_ABSENT = {
    "subscriptions": "needs subscription data; this data has no subscriptions (orders only)",
    "orders": "needs order data; this data has no orders",
    "orders_only": "applies to orders-only data",
    "upsell_orders": "needs orders marked upsell or cross_sell (the orders table's kind column); "
    "this data has none",
    "nps": "no NPS survey responses in the data",
    "campaign_events": "no campaign events in the data",
    "tickets": "no support tickets in the data",
}


def _kpi_value(unit: KpiUnit, v: Any, currency: str = "") -> str:
    if unit == "pct":
        return format_percent(v)
    if unit == "money":
        return format_money(v, currency)
    if unit == "int":
        return format_int(v)
    if not _finite(v):
        return DASH
    return f"{float(v):.1f}" if unit == "points" else f"{float(v):.2f}"


def _period_labels(index: pd.DatetimeIndex) -> list[str]:
    if len(index) and all(t.day == 1 for t in index):
        months = {t.month for t in index}
        if (
            len(index) > 1
            and months <= {1, 4, 7, 10}
            and all(
                (b.year * 12 + b.month) - (a.year * 12 + a.month) == 3
                for a, b in zip(index[:-1], index[1:], strict=True)
            )
        ):
            return [f"Q{(t.month - 1) // 3 + 1} {t.year}" for t in index]
        return [t.strftime("%b %Y") for t in index]
    return [t.strftime("%Y-%m-%d") for t in index]


def _kpi_frame(frame: pd.DataFrame) -> pd.DataFrame:
    f = frame
    if not isinstance(f.index, pd.DatetimeIndex) and "period" in f.columns:
        f = f.set_index("period")
    f = f.copy()
    f.index = pd.DatetimeIndex(pd.to_datetime(f.index))
    f = f.sort_index()
    if "partial" not in f.columns:
        f["partial"] = False
    f["partial"] = f["partial"].fillna(False).astype(bool)
    return f


class _KpiContext:
    def __init__(self, frame: pd.DataFrame, catalogue: pd.DataFrame | None, currency: str) -> None:
        self.m = frame
        self.currency = currency
        self.labels = _period_labels(pd.DatetimeIndex(frame.index))
        self.partial = [bool(p) for p in frame["partial"]]
        self.kind: dict[str, str] = {k.name: k.kind for k in _KPIS}
        self.applicable: dict[str, bool] = {}
        self.applies_to: dict[str, str] = {}
        self.description: dict[str, str] = {}
        if catalogue is not None and "name" in catalogue.columns:
            for _, r in catalogue.iterrows():
                name = str(r["name"])
                if "kind" in catalogue.columns and r["kind"] in ("outcome", "activity"):
                    self.kind[name] = str(r["kind"])
                if "applicable" in catalogue.columns and pd.notna(r["applicable"]):
                    self.applicable[name] = bool(r["applicable"])
                if "applies_to" in catalogue.columns and pd.notna(r["applies_to"]):
                    self.applies_to[name] = str(r["applies_to"])
                if "description" in catalogue.columns and pd.notna(r["description"]):
                    self.description[name] = str(r["description"])

    def has(self, name: str) -> bool:
        return name in self.m.columns and bool(
            pd.to_numeric(self.m[name], errors="coerce").notna().any()
        )

    def values(self, name: str) -> list[float | None]:
        return _clean(pd.to_numeric(self.m[name], errors="coerce"))

    def why_absent(self, names: Sequence[str]) -> str:
        for n in names:
            key = self.applies_to.get(n)
            if key in _WHY_ABSENT and (self.applicable.get(n) is False or n not in self.m.columns):
                return _WHY_ABSENT[key]
        for n in names:
            if self.applicable.get(n) is False:
                return "does not apply to this data"
        return "no values in the KPI table"


def _kpi_cards(ctx: _KpiContext) -> str:
    complete = [i for i, p in enumerate(ctx.partial) if not p]
    if not complete:
        return _note(
            "Every period in the KPI table is partial: no complete period to summarise.",
            "note-kpi-latest",
            warn=True,
        )
    last = complete[-1]
    prev = complete[-2] if len(complete) > 1 else None
    cards = []
    for name in _CARD_KPIS:
        if not ctx.has(name):
            continue
        k = _KPI_BY_NAME[name]
        vals = ctx.values(name)
        v = vals[last]
        delta = ""
        if prev is not None and v is not None and vals[prev] is not None:
            d = v - vals[prev]  # type: ignore[operator]
            arrow = "\u25b2" if d > 0 else ("\u25bc" if d < 0 else "\u25cf")
            good = "" if k.better == 0 or d == 0 else ("good" if d * k.better > 0 else "bad")
            if k.unit == "pct":
                amount = f"{abs(d) * 100:.1f} pp"
            elif k.unit == "money":
                amount = format_money(abs(d), ctx.currency)
            else:
                amount = f"{abs(d):.1f}"
            delta = (
                f'<div class="delta {good}">{arrow} {_e(amount)} vs {_e(ctx.labels[prev])}</div>'
            )
        cards.append(
            f'<div class="card small" data-testid="kpi-card-{name}">'
            f'<div class="label">{_e(k.label)}</div><div '
            f'class="value">{_e(_kpi_value(k.unit, v, ctx.currency))}</div>'
            f"{delta}{_kind_badge(ctx.kind.get(name, k.kind))}</div>"
        )
    if not cards:
        return ""
    return (
        f"<h3>Latest complete period: {_e(ctx.labels[last])}</h3>"
        f'<div class="cards">{"".join(cards)}</div>'
    )


def _kpi_chart(
    ctx: _KpiContext,
    testid: str,
    title: str,
    names: Sequence[str],
    unit: ColType,
    dashed: Sequence[str] = (),
    refs: Sequence[tuple[float, str]] = (),
    zero_based: bool = False,
    show_absent: bool = True,
) -> str:
    present = [n for n in names if ctx.has(n)]
    kinds = {ctx.kind.get(n, "outcome") for n in names}
    kind = "activity" if kinds == {"activity"} else "outcome"
    head = (
        f'<figure class="kpi" data-testid="{_e(testid)}-figure">'
        f"<figcaption>{_e(title)} {_kind_badge(kind)}</figcaption>"
    )
    if not present:
        if not show_absent:
            return ""
        return head + _note(f"{title}: {ctx.why_absent(names)}.", f"note-{testid}") + "</figure>"
    series = [
        _Series(_KPI_BY_NAME[n].label, ctx.values(n), _PALETTE[i % len(_PALETTE)], n in dashed)
        for i, n in enumerate(present)
    ]
    chart = _line_chart(testid, title, ctx.labels, ctx.partial, series, unit, refs, zero_based)
    return head + chart + "</figure>"


def _mrr_bridge(ctx: _KpiContext) -> str:
    up_names = ("new_mrr", "expansion_mrr", "reactivation_mrr")
    down_names = ("contraction_mrr", "churned_mrr")
    head = (
        '<figure class="kpi wide" data-testid="chart-mrr-bridge-figure"><figcaption>MRR bridge: '
        f"movements per period {_kind_badge('outcome')}</figcaption>"
    )
    if not any(ctx.has(n) for n in (*up_names, *down_names)):
        return (
            head
            + _note(f"MRR bridge: {ctx.why_absent(up_names)}.", "note-chart-mrr-bridge")
            + "</figure>"
        )
    colors = {
        "new_mrr": "#0b62a4",
        "expansion_mrr": "#009e73",
        "reactivation_mrr": "#56b4e9",
        "contraction_mrr": "#e69f00",
        "churned_mrr": "#b3261e",
    }
    up = [_Series(_KPI_BY_NAME[n].label, ctx.values(n), colors[n]) for n in up_names if ctx.has(n)]
    down = [
        _Series(_KPI_BY_NAME[n].label, ctx.values(n), colors[n]) for n in down_names if ctx.has(n)
    ]
    chart = _bar_chart(
        "chart-mrr-bridge", "MRR movements per period", ctx.labels, ctx.partial, up, down, "money"
    )
    # The bridge of the latest complete period in words: start + movements = end.
    complete = [i for i, p in enumerate(ctx.partial) if not p]
    text = ""
    if complete and all(ctx.has(n) for n in ("start_mrr", "end_mrr", *up_names, *down_names)):
        i = complete[-1]
        v = {n: ctx.values(n)[i] for n in ("start_mrr", "end_mrr", *up_names, *down_names)}
        c = ctx.currency
        text = (
            f'<p class="bridge" data-testid="mrr-bridge-latest">{_e(ctx.labels[i])}: start '
            f"{_e(format_money(v['start_mrr'], c))} + new {_e(format_money(v['new_mrr'], c))} + "
            "expansion "
            f"{_e(format_money(v['expansion_mrr'], c))} + reactivation "
            f"{_e(format_money(v['reactivation_mrr'], c))}"
            f" \u2212 contraction {_e(format_money(v['contraction_mrr'], c))} \u2212 churned "
            f"{_e(format_money(v['churned_mrr'], c))} = end {_e(format_money(v['end_mrr'], c))}</p>"
        )
    return head + chart + text + "</figure>"


def _kpi_table(ctx: _KpiContext, last: int = 6) -> str:
    n = len(ctx.labels)
    idx = list(range(max(0, n - last), n))
    rows_by_kind: dict[str, list[str]] = {"outcome": [], "activity": []}
    for k in _KPIS:
        if not ctx.has(k.name):
            continue
        vals = ctx.values(k.name)
        kind = ctx.kind.get(k.name, k.kind)
        desc = ctx.description.get(k.name, "")
        cells = "".join(
            f'<td class="num{" partial" if ctx.partial[i] else ""}">'
            f"{_e(_kpi_value(k.unit, vals[i], ctx.currency))}</td>"
            for i in idx
        )
        title = f' title="{_e(desc)}"' if desc else ""
        rows_by_kind["outcome" if kind != "activity" else "activity"].append(
            f'<tr data-metric="{_e(k.name)}"><th scope="row"{title}>{_e(k.label)}</th>{cells}</tr>'
        )
    if not any(rows_by_kind.values()):
        return ""
    head = "".join(
        f'<th class="num{" partial" if ctx.partial[i] else ""}" scope="col">{_e(ctx.labels[i])}'
        f"{'<br><small>partial</small>' if ctx.partial[i] else ''}</th>"
        for i in idx
    )
    body = []
    for kind, label in (
        ("outcome", "Outcome metrics: what the business cares about"),
        ("activity", "Activity metrics: easy to capture, lead the outcomes"),
    ):
        if rows_by_kind[kind]:
            body.append(
                f'<tr class="group" data-kind="{kind}"><th colspan="{len(idx) + 1}" '
                'scope="rowgroup">'
                f"{_e(label)}</th></tr>"
            )
            body.extend(rows_by_kind[kind])
    return (
        f'<div class="tablewrap"><table id="kpi-table" data-testid="kpi-table"><caption>Latest '
        f'{len(idx)} periods</caption><thead><tr><th scope="col">Metric</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _kpis(inputs: ReportInputs) -> str:
    out = ['<section id="kpis" data-testid="kpis"><h2>Retention KPIs</h2>']
    if inputs.kpis is None or inputs.kpis.empty:
        out.append(_note("KPI trends were not provided.", "note-kpis"))
        return "".join(out) + "</section>"
    frame = _kpi_frame(inputs.kpis)
    ctx = _KpiContext(frame, inputs.kpi_catalogue, inputs.currency)
    out.append(_kpi_lead(ctx))
    out.append(_kpi_cards(ctx))
    subscription = any(ctx.has(n) for n in ("churn_rate", "grr", "nrr", "end_mrr"))
    orders_only = not subscription and any(
        ctx.has(n)
        for n in ("active_customer_churn_rate", "repeat_purchase_rate", "spend_retention")
    )
    figs = _orders_charts(ctx) if orders_only else _subscription_charts(ctx)
    out.extend(['<div class="figs">', *figs, *_shared_charts(ctx), "</div>"])
    out.append(_kpi_table(ctx))
    out.append("</section>")
    return "".join(out)


def _kpi_lead(ctx: _KpiContext) -> str:
    """The paragraph on outcome and activity metrics, naming the partial periods if any."""
    out = [
        '<p class="lead">Outcome metrics (churn, revenue retention, upsell revenue) are what the '
        "business cares about; activity metrics (campaign opens and clicks, tickets) are easy to "
        "capture and move first. Each chart says which it shows."
    ]
    if any(ctx.partial):
        parts = [ctx.labels[i] for i, p in enumerate(ctx.partial) if p]
        out.append(
            f" Partial periods ({_e(', '.join(parts))}) are shaded and drawn with hollow markers: "
            "the "
            "data does not cover them fully, so they are not comparable with full periods."
        )
    out.append("</p>")
    return "".join(out)


def _orders_charts(ctx: _KpiContext) -> list[str]:
    """Churn and retention charts of orders-only data: active buyers, repeat purchase, spend."""
    return [
        _kpi_chart(
            ctx,
            "chart-churn",
            "Active-customer churn rate",
            ["active_customer_churn_rate"],
            "pct",
            zero_based=True,
        ),
        _kpi_chart(
            ctx,
            "chart-retention",
            "Repeat purchase and spend retention",
            ["repeat_purchase_rate", "spend_retention"],
            "pct",
        ),
        _kpi_chart(ctx, "chart-buyers", "Buyers per period", ["buyers"], "int", zero_based=True),
        _kpi_chart(
            ctx,
            "chart-revenue-retention",
            "Gross and net revenue retention",
            ["grr", "nrr"],
            "pct",
        ),
    ]


def _subscription_charts(ctx: _KpiContext) -> list[str]:
    """Churn and retention charts of subscription data: logos, customers, GRR and NRR."""
    return [
        _kpi_chart(ctx, "chart-churn", "Logo churn rate", ["churn_rate"], "pct", zero_based=True),
        _kpi_chart(ctx, "chart-retention", "Customer retention rate", ["retention_rate"], "pct"),
        _kpi_chart(
            ctx,
            "chart-revenue-retention",
            "Gross and net revenue retention: monthly and trailing 12 months",
            ["grr", "nrr", "grr_12m", "nrr_12m"],
            "pct",
            dashed=("grr_12m", "nrr_12m"),
            refs=[(1.0, "100%")],
        ),
    ]


def _shared_charts(ctx: _KpiContext) -> list[str]:
    """The charts of every kind of data: MRR bridge, upsell share, NPS, campaigns, tickets."""
    return [
        _mrr_bridge(ctx),
        _kpi_chart(
            ctx,
            "chart-upsell",
            "Upsell + cross-sell revenue share",
            ["upsell_revenue_share"],
            "pct",
            refs=[(0.5, "mature companies: 50%+")],
            zero_based=True,
        ),
        _kpi_chart(ctx, "chart-nps", "Net Promoter Score", ["nps"], "num"),
        _kpi_chart(
            ctx,
            "chart-campaigns",
            "Customer campaign open and click rates",
            ["open_rate", "click_rate"],
            "pct",
            zero_based=True,
        ),
        _kpi_chart(
            ctx,
            "chart-tickets",
            "Support tickets opened",
            ["tickets_opened"],
            "int",
            zero_based=True,
            show_absent=False,
        ),
    ]

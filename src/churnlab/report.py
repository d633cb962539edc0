"""One self-contained HTML report for customer-success leads and marketers.

:func:`render` turns a :class:`ReportInputs` into one HTML string; :func:`write` renders it and
writes it atomically. The page needs nothing from the network: styles and scripts are inline,
charts are inline SVG drawn here, and a Content-Security-Policy forbids any other source, so a
report mailed or opened offline looks the same.

Sections, each of which shows a note instead when its input is missing:

- headline: accounts scored, total ARR, revenue at risk, expected expansion value, by risk band;
- KPI trends (labelled outcome or activity): churn and retention, GRR/NRR monthly and trailing
  12 months, the MRR bridge, upsell revenue share, NPS, campaign open/click rates; partial
  periods are shaded in charts and marked in tables;
- model quality: ROC-AUC, lift and calibration error against the baselines, calibration curves,
  predicted vs realised churn per past cutoff, feature drift (PSI) warnings;
- top drivers (global TreeSHAP importance) in plain words, per feature and per driver group;
- the at-risk and expansion lists, and the campaign audiences.

Large tables (100,000 rows and more) are embedded as JSON in a ``<script
type="application/json">`` block and rendered by a small vanilla script with paging, sorting
(numeric for numbers) and filtering over all rows; the first page is also rendered here as
plain HTML so the page reads and prints without scripts. Every string from the data is
HTML-escaped, and ``<``, ``>`` and ``&`` inside the JSON are written as JSON unicode escapes so
that no data can close the script element.

Number formats are the same in Python and in the page's script (money ``4.7M``, ``165k``;
probabilities and rates ``12.3%``): both round half up on the same double arithmetic, so a
sorted page shows exactly the text this module would.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from churnlab.errors import ChurnlabError

ColType = Literal["text", "int", "num", "money", "pct", "points"]

DASH = "\u2014"
TASKS = ("churn", "expansion")
_TASK_LABEL = {"churn": "Churn", "expansion": "Expansion"}


class ReportError(ChurnlabError):
    """The report cannot be rendered or written from the given inputs."""


# eq=False: field-wise equality (and hashing) of DataFrames is ambiguous; compare by identity.
@dataclass(frozen=True, eq=False)
class ReportInputs:
    """Everything the report shows; every piece but the title and the dates is optional.

    A missing piece (``None``) renders as a note in its section. Frames keep the column names
    of the stages that produce them (``churnlab score``, ``churnlab.kpis.compute``, training).

    Attributes
    ----------
    title : str
        Page title.
    as_of : date or datetime
        The scoring date the lists refer to.
    generated_at : datetime
        When the report was produced (shown in the header, UTC if naive).
    headline : mapping, optional
        ``accounts_scored``, ``total_arr``, ``revenue_at_risk``, ``expected_expansion_value``
        and ``by_band``: DataFrame(risk_band, accounts, arr, revenue_at_risk, mean_probability).
    kpis : DataFrame, optional
        The ``"monthly"`` frame of ``churnlab.kpis.compute``: indexed by period start, with a
        ``partial`` column and one column per metric (NaN where a metric does not apply).
    kpi_catalogue : DataFrame, optional
        The metric catalogue: name, kind ('outcome' or 'activity'), applicable, unit,
        description (and ``applies_to`` when present, used to explain absent metrics).
    models : mapping, optional
        Per task (``"churn"``, ``"expansion"``): name, version, run_id, test_cutoff, metrics
        (``test.roc_auc``, ``baseline_logreg.roc_auc``, ...) and calibration:
        DataFrame(bin, mean_predicted, realised, rows).
    predicted_vs_realised : DataFrame, optional
        Past cutoffs: cutoff, role, rows, mean_predicted, realised_rate.
    drift : DataFrame, optional
        feature, description, psi (sorted by psi, largest first).
    drift_threshold : float
        PSI above which a feature is flagged as drifted.
    drivers : mapping, optional
        Per task: DataFrame(feature, description, group, mean_abs_shap).
    at_risk : DataFrame, optional
        account_id, attributes (name, segment, owner, ...), churn_probability, risk_band, arr,
        revenue_at_risk, reason_1..reason_3, reason_1_points..reason_3_points, driver_group,
        play, rank.
    expansion : DataFrame, optional
        account_id, attributes, expansion_probability, expected_expansion_value,
        reason_1..reason_3, offer, rank.
    audiences : DataFrame, optional
        Per campaign: campaign, kind, contacts, holdout, cost, expected_value,
        expected_net_value.
    audience_rows : DataFrame, optional
        The audience members (account_id, campaign, holdout, ...), shown as a paged table.
    notes : sequence of str
        Warnings shown at the top of the page.
    currency : str
        Prefix for money values (e.g. ``"$"``); empty by default.
    page_size : int
        Rows per page of the large tables.
    """

    title: str
    as_of: dt.date | dt.datetime | pd.Timestamp
    generated_at: dt.datetime | pd.Timestamp
    headline: Mapping[str, Any] | None = None
    kpis: pd.DataFrame | None = None
    kpi_catalogue: pd.DataFrame | None = None
    models: Mapping[str, Mapping[str, Any]] | None = None
    predicted_vs_realised: pd.DataFrame | None = None
    drift: pd.DataFrame | None = None
    drift_threshold: float = 0.2
    drivers: Mapping[str, pd.DataFrame] | None = None
    at_risk: pd.DataFrame | None = None
    expansion: pd.DataFrame | None = None
    audiences: pd.DataFrame | None = None
    audience_rows: pd.DataFrame | None = None
    notes: Sequence[str] = ()
    currency: str = ""
    page_size: int = 50

    def __post_init__(self) -> None:
        if not str(self.title).strip():
            raise ReportError("ReportInputs.title is empty: give the report a title")
        if not (isinstance(self.page_size, int) and self.page_size >= 1):
            raise ReportError(
                f"ReportInputs.page_size must be a positive integer, got {self.page_size!r}"
            )
        if not (isinstance(self.drift_threshold, int | float) and self.drift_threshold > 0):
            raise ReportError(
                "ReportInputs.drift_threshold must be a positive number, got "
                f"{self.drift_threshold!r}"
            )
        for name in (
            "kpis",
            "kpi_catalogue",
            "predicted_vs_realised",
            "drift",
            "at_risk",
            "expansion",
            "audiences",
            "audience_rows",
        ):
            value = getattr(self, name)
            if value is not None and not isinstance(value, pd.DataFrame):
                raise ReportError(
                    f"ReportInputs.{name} must be a pandas DataFrame or None, got "
                    f"{type(value).__name__}"
                )
        for name in ("headline", "models", "drivers"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise ReportError(
                    f"ReportInputs.{name} must be a mapping or None, got {type(value).__name__}"
                )
        if isinstance(self.notes, str):
            raise ReportError("ReportInputs.notes must be a list of strings, not one string")


# --------------------------------------------------------------------------------------------
# Number formats. The page's script has the same functions (fmtMoney, fmtPct, ...): both round
# half up with floor(x + 0.5) on the same double arithmetic, so they agree to the last digit.


def _finite(v: Any) -> bool:
    if v is None or isinstance(v, bool | str):
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _num(v: Any) -> float | None:
    """``v`` as a float when it is a finite number, else None."""
    return float(v) if _finite(v) else None


def _tenths(n: int) -> str:
    return str(n // 10) if n % 10 == 0 else f"{n // 10}.{n % 10}"


_UNITS: tuple[tuple[float, str], ...] = ((1e3, "k"), (1e6, "M"), (1e9, "B"), (1e12, "T"))


def format_money(value: Any, currency: str = "") -> str:
    """Format an amount compactly: ``950``, ``4.7k``, ``165k``, ``4.7M``, ``1.2B``.

    One decimal below 100 units of the suffix, none above; the decimal is dropped when it is
    zero (``5k``, not ``5.0k``). Rounds half up (away from zero for negatives).

    Parameters
    ----------
    value : number or None
        The amount; None and NaN give an em dash.
    currency : str
        Prefix such as ``"$"`` (placed after the minus sign).

    Returns
    -------
    str
        The formatted amount.
    """
    if not _finite(value):
        return DASH
    v = float(value)
    a = abs(v)
    text: str | None = None
    if a < 1000:
        n0 = math.floor(a + 0.5)
        if n0 < 1000:
            text = str(n0)
        else:
            a = 1000.0
    if text is None:
        for i, (unit, suffix) in enumerate(_UNITS):
            s = a / unit
            n = math.floor(s * 10 + 0.5) if s < 100 else math.floor(s + 0.5) * 10
            if n < 10000 or i == len(_UNITS) - 1:
                text = _tenths(n) + suffix
                break
    assert text is not None
    sign = "-" if v < 0 and text != "0" else ""
    return f"{sign}{currency}{text}"


def format_percent(value: Any) -> str:
    """Format a probability or ratio as a percentage with one decimal: ``0.1234`` -> ``12.3%``.

    Parameters
    ----------
    value : number or None
        The ratio (1.0 is 100%); None and NaN give an em dash.

    Returns
    -------
    str
        The formatted percentage.
    """
    if not _finite(value):
        return DASH
    v = float(value)
    n = math.floor(abs(v) * 1000 + 0.5)
    sign = "-" if v < 0 and n > 0 else ""
    return f"{sign}{n // 10}.{n % 10}%"


def format_int(value: Any) -> str:
    """Format a count with thousands separators, rounding half up: ``12345.6`` -> ``12,346``.

    Parameters
    ----------
    value : number or None
        The count; None and NaN give an em dash.

    Returns
    -------
    str
        The formatted count.
    """
    if not _finite(value):
        return DASH
    v = float(value)
    n = math.floor(abs(v) + 0.5)
    sign = "-" if v < 0 and n > 0 else ""
    return f"{sign}{n:,}"


def format_number(value: Any) -> str:
    """Format a plain number: integers with separators, anything else with two decimals.

    Parameters
    ----------
    value : number or None
        The number; None and NaN give an em dash.

    Returns
    -------
    str
        The formatted number.
    """
    if not _finite(value):
        return DASH
    v = float(value)
    if v == math.floor(v):
        return format_int(v)
    n = math.floor(abs(v) * 100 + 0.5)
    sign = "-" if v < 0 and n > 0 else ""
    return f"{sign}{n // 100:,}.{n % 100:02d}"


def format_points(value: Any) -> str:
    """Format probability points with a sign and one decimal: ``4.04`` -> ``+4.0``.

    Parameters
    ----------
    value : number or None
        Percentage points; None and NaN give an em dash.

    Returns
    -------
    str
        The formatted points.
    """
    if not _finite(value):
        return DASH
    v = float(value)
    n = math.floor(abs(v) * 10 + 0.5)
    sign = "" if n == 0 else ("+" if v > 0 else "-")
    return f"{sign}{n // 10}.{n % 10}"


def _fmt(kind: ColType, value: Any, currency: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if kind == "money":
        return format_money(value, currency)
    if kind == "pct":
        return format_percent(value)
    if kind == "int":
        return format_int(value)
    if kind == "num":
        return format_number(value)
    if kind == "points":
        return format_points(value)
    return str(value)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _json_for_script(payload: Any) -> str:
    # Inside <script> the HTML parser only looks for "</script" (and "<!--"); escaping every
    # <, > and & (which JSON can only contain inside strings) makes that impossible.
    text = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _date(value: Any) -> str:
    if value is None:
        return DASH
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return str(value)
    if pd.isna(ts):
        return DASH
    if ts == ts.normalize():
        return ts.strftime("%Y-%m-%d")
    return ts.strftime("%Y-%m-%d %H:%M")


# --------------------------------------------------------------------------------------------
# Small HTML pieces


def _note(text: str, testid: str, warn: bool = False) -> str:
    cls = "note warn" if warn else "note"
    return f'<p class="{cls}" data-testid="{_e(testid)}">{_e(text)}</p>'


def _missing_columns(frame: pd.DataFrame, needed: Sequence[str]) -> list[str]:
    return [c for c in needed if c not in frame.columns]


def _static_table(
    headers: Sequence[tuple[str, bool]],
    rows: Sequence[Sequence[str]],
    table_id: str,
    caption: str | None = None,
    row_classes: Sequence[str] | None = None,
    foot: Sequence[str] | None = None,
) -> str:
    """A small table of already formatted, *unescaped* cells; (label, numeric) headers."""
    out = [f'<div class="tablewrap"><table id="{_e(table_id)}" data-testid="{_e(table_id)}">']
    if caption:
        out.append(f"<caption>{_e(caption)}</caption>")
    out.append("<thead><tr>")
    for label, numeric in headers:
        out.append(f'<th class="{"num" if numeric else ""}" scope="col">{_e(label)}</th>')
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        cls = f' class="{_e(row_classes[i])}"' if row_classes and row_classes[i] else ""
        out.append(f"<tr{cls}>")
        for (_, numeric), cell in zip(headers, row, strict=True):
            out.append(f'<td class="{"num" if numeric else ""}">{_e(cell)}</td>')
        out.append("</tr>")
    out.append("</tbody>")
    if foot:
        out.append('<tfoot><tr class="total">')
        for (_, numeric), cell in zip(headers, foot, strict=True):
            out.append(f'<td class="{"num" if numeric else ""}">{_e(cell)}</td>')
        out.append("</tr></tfoot>")
    out.append("</table></div>")
    return "".join(out)


def _kind_badge(kind: str) -> str:
    k = "activity" if kind == "activity" else "outcome"
    label = "Activity metric" if k == "activity" else "Outcome metric"
    return f'<span class="badge {k}" data-kind="{k}">{label}</span>'


# --------------------------------------------------------------------------------------------
# Inline SVG charts

_PALETTE = ("#0b62a4", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#555555")


@dataclass(frozen=True)
class _Series:
    label: str
    values: Sequence[float | None]
    color: str
    dashed: bool = False


def _clean(values: Any) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        out.append(float(v) if _finite(v) else None)
    return out


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.05 or 0.05
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = mag
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= m * mag * (1 + 1e-9):
            step = m * mag
            break
    start = math.floor(lo / step + 1e-9) * step
    ticks = [start]
    while ticks[-1] < hi - 1e-9 * step:
        ticks.append(ticks[-1] + step)
    return ticks


def _axis_formatter(unit: str, ticks: Sequence[float]) -> Callable[[float], str]:
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    if unit == "pct":
        decimals = 0 if step >= 0.01 - 1e-12 else 1
        return lambda v: f"{v * 100:.{decimals}f}%"
    if unit == "money":
        return lambda v: format_money(v)
    if unit == "int":
        return lambda v: format_int(v)
    decimals = 0 if step >= 1 else (1 if step >= 0.1 else 2)
    return lambda v: f"{v:.{decimals}f}"


def _f(v: float) -> str:
    return f"{v:.1f}"


class _Frame:
    """Plot geometry shared by the line and bar charts: x slots, y scale, axes and shading."""

    def __init__(
        self, n: int, lo: float, hi: float, unit: str, width: int = 640, height: int = 240
    ) -> None:
        self.w, self.h = width, height
        self.left, self.right, self.top, self.bottom = 62, 14, 12, 40
        self.n = max(n, 1)
        self.ticks = _nice_ticks(lo, hi)
        self.y0, self.y1 = self.ticks[0], self.ticks[-1]
        self.step = (self.w - self.left - self.right) / self.n
        self.fmt = _axis_formatter(unit, self.ticks)

    def x(self, i: int) -> float:
        return self.left + self.step * (i + 0.5)

    def y(self, v: float) -> float:
        span = self.y1 - self.y0 or 1.0
        return self.top + (self.h - self.top - self.bottom) * (1 - (v - self.y0) / span)

    def open(self, testid: str, label: str) -> str:
        return (
            f'<svg class="chart" data-testid="{_e(testid)}" viewBox="0 0 {self.w} {self.h}" '
            f'role="img" aria-label="{_e(label)}" preserveAspectRatio="xMidYMid meet">'
        )

    def shading(self, partial: Sequence[bool]) -> str:
        out = []
        for i, p in enumerate(partial):
            if p:
                out.append(
                    '<rect class="partial" data-testid="partial-period" '
                    f'x="{_f(self.x(i) - self.step / 2)}" '
                    f'y="{self.top}" width="{_f(self.step)}" '
                    f'height="{self.h - self.top - self.bottom}"><title>partial '
                    "period</title></rect>"
                )
        return "".join(out)

    def axes(self, labels: Sequence[str]) -> str:
        out = []
        for t in self.ticks:
            yy = _f(self.y(t))
            out.append(
                f'<line class="grid" x1="{self.left}" x2="{self.w - self.right}" y1="{yy}" '
                f'y2="{yy}"/>'
                f'<text class="ytick" x="{self.left - 6}" y="{yy}" dy="0.32em" '
                f'text-anchor="end">{_e(self.fmt(t))}</text>'
            )
        every = max(1, math.ceil(len(labels) / 12))
        prev_year = ""
        for i, lab in enumerate(labels):
            if i % every:
                continue
            first, _, second = lab.partition(" ")
            show_second = second and second != prev_year
            prev_year = second or prev_year
            xx = _f(self.x(i))
            base = self.h - self.bottom + 16
            out.append(f'<text class="xtick" x="{xx}" y="{base}" text-anchor="middle">{_e(first)}')
            if show_second:
                out.append(f'<tspan x="{xx}" dy="1.15em">{_e(second)}</tspan>')
            out.append("</text>")
        return "".join(out)


def _legend(series: Sequence[_Series], partial: bool, extra: Sequence[tuple[str, str]] = ()) -> str:
    items = []
    for s in series:
        style = f"border-top-color:{s.color}"
        cls = "sw line dashed" if s.dashed else "sw line"
        items.append(f'<li><span class="{cls}" style="{style}"></span>{_e(s.label)}</li>')
    for label, color in extra:
        items.append(f'<li><span class="sw box" style="background:{color}"></span>{_e(label)}</li>')
    if partial:
        items.append('<li><span class="sw box partial"></span>partial period</li>')
    return f'<ul class="legend">{"".join(items)}</ul>'


def _line_chart(
    testid: str,
    label: str,
    x_labels: Sequence[str],
    partial: Sequence[bool],
    series: Sequence[_Series],
    unit: ColType,
    refs: Sequence[tuple[float, str]] = (),
    zero_based: bool = False,
    wide: bool = False,
) -> str:
    values = [v for s in series for v in s.values if v is not None] + [r[0] for r in refs]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if zero_based:
        lo = min(lo, 0.0)
    fr = _Frame(len(x_labels), lo, hi, unit, width=1100 if wide else 640)
    out = [fr.open(testid, label), fr.shading(partial), fr.axes(x_labels)]
    for value, text in refs:
        yy = _f(fr.y(value))
        out.append(
            f'<line class="ref" x1="{fr.left}" x2="{fr.w - fr.right}" y1="{yy}" y2="{yy}"/>'
            f'<text class="reflabel" x="{fr.w - fr.right - 4}" y="{yy}" dy="-0.35em" '
            f'text-anchor="end">{_e(text)}</text>'
        )
    for s in series:
        segments: list[list[tuple[float, float]]] = [[]]
        for i, v in enumerate(s.values):
            if v is None:
                if segments[-1]:
                    segments.append([])
                continue
            segments[-1].append((fr.x(i), fr.y(v)))
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        for seg in segments:
            if len(seg) > 1:
                d = "M" + " L".join(f"{_f(a)} {_f(b)}" for a, b in seg)
                out.append(f'<path class="series" d="{d}" stroke="{s.color}"{dash}/>')
        for i, v in enumerate(s.values):
            if v is None:
                continue
            hollow = partial[i] if i < len(partial) else False
            fill = "#fff" if hollow else s.color
            tip = f"{x_labels[i]}{' (partial)' if hollow else ''}: {s.label} {_fmt(unit, v)}"
            out.append(
                f'<circle cx="{_f(fr.x(i))}" cy="{_f(fr.y(v))}" r="3" fill="{fill}" '
                f'stroke="{s.color}"><title>{_e(tip)}</title></circle>'
            )
    out.append("</svg>")
    return "".join(out) + _legend(series, any(partial))


def _bar_chart(
    testid: str,
    label: str,
    x_labels: Sequence[str],
    partial: Sequence[bool],
    up: Sequence[_Series],
    down: Sequence[_Series],
    unit: ColType,
) -> str:
    """Stacked bars: ``up`` series above zero, ``down`` series (magnitudes) below it."""
    n = len(x_labels)
    tops = [sum(s.values[i] or 0.0 for s in up) for i in range(n)]
    bottoms = [-sum(abs(s.values[i] or 0.0) for s in down) for i in range(n)]
    # Drawn full width: a wider canvas keeps the text at the size of the other charts.
    fr = _Frame(n, min([0.0, *bottoms]), max([0.0, *tops]), unit, width=1100, height=260)
    out = [fr.open(testid, label), fr.shading(partial), fr.axes(x_labels)]
    bw = max(fr.step * 0.62, 1.0)
    for i in range(n):
        for group, sign in ((up, 1.0), (down, -1.0)):
            acc = 0.0
            for s in group:
                v = abs(s.values[i] or 0.0)
                if v <= 0:
                    continue
                y_a, y_b = fr.y(sign * acc), fr.y(sign * (acc + v))
                acc += v
                y_top, hgt = min(y_a, y_b), abs(y_a - y_b)
                tip = (
                    f"{x_labels[i]}{' (partial)' if partial[i] else ''}: {s.label} {_fmt(unit, v)}"
                )
                op = ' fill-opacity="0.45"' if partial[i] else ""
                out.append(
                    f'<rect x="{_f(fr.x(i) - bw / 2)}" y="{_f(y_top)}" width="{_f(bw)}" '
                    f'height="{_f(max(hgt, 0.5))}" '
                    f'fill="{s.color}"{op}><title>{_e(tip)}</title></rect>'
                )
    zero = _f(fr.y(0.0))
    out.append(
        f'<line class="zero" x1="{fr.left}" x2="{fr.w - fr.right}" y1="{zero}" y2="{zero}"/>'
    )
    out.append("</svg>")
    extra = [(s.label, s.color) for s in (*up, *down)]
    return "".join(out) + _legend([], any(partial), extra)


def _calibration_chart(testid: str, label: str, frame: pd.DataFrame) -> str:
    pred = _clean(frame["mean_predicted"])
    real = _clean(frame["realised"])
    rows = _clean(frame["rows"]) if "rows" in frame.columns else [None] * len(pred)
    pts = [
        (p, r, n)
        for p, r, n in zip(pred, real, rows, strict=True)
        if p is not None and r is not None
    ]
    hi = max([0.05, *[max(p, r) for p, r, _ in pts]])
    ticks = _nice_ticks(0.0, hi, 5)
    top = ticks[-1]
    size, left, bottom, pad = 300, 52, 40, 12
    plot = size - left - pad

    def sx(v: float) -> float:
        return left + plot * v / top

    def sy(v: float) -> float:
        return pad + plot * (1 - v / top)

    fmt = _axis_formatter("pct", ticks)
    out = [
        f'<svg class="chart square" data-testid="{_e(testid)}" viewBox="0 0 {size} '
        f'{size + bottom - pad}" '
        f'role="img" aria-label="{_e(label)}">'
    ]
    for t in ticks:
        out.append(
            f'<line class="grid" x1="{left}" x2="{left + plot}" y1="{_f(sy(t))}" y2="{_f(sy(t))}"/>'
            f'<line class="grid" y1="{pad}" y2="{pad + plot}" x1="{_f(sx(t))}" x2="{_f(sx(t))}"/>'
            f'<text class="ytick" x="{left - 6}" y="{_f(sy(t))}" dy="0.32em" '
            f'text-anchor="end">{_e(fmt(t))}</text>'
            f'<text class="xtick" x="{_f(sx(t))}" y="{pad + plot + 16}" '
            f'text-anchor="middle">{_e(fmt(t))}</text>'
        )
    out.append(
        f'<line class="ref" x1="{_f(sx(0))}" y1="{_f(sy(0))}" x2="{_f(sx(top))}" '
        f'y2="{_f(sy(top))}"/>'
        f'<text class="axis" x="{left + plot / 2}" y="{pad + plot + 34}" '
        'text-anchor="middle">predicted</text>'
        f'<text class="axis" transform="translate(12 {pad + plot / 2}) rotate(-90)" '
        f'text-anchor="middle">realised</text>'
    )
    counts = [n for _, _, n in pts if n is not None and n > 0]
    biggest = max(counts) if counts else 1.0
    if len(pts) > 1:
        d = "M" + " L".join(f"{_f(sx(p))} {_f(sy(r))}" for p, r, _ in pts)
        out.append(f'<path class="series" d="{d}" stroke="{_PALETTE[0]}"/>')
    for p, r, n in pts:
        radius = 3 + 5 * math.sqrt((n or 0) / biggest) if counts else 4
        tip = f"predicted {format_percent(p)}, realised {format_percent(r)}"
        if n is not None:
            tip += f", {format_int(n)} rows"
        out.append(
            f'<circle cx="{_f(sx(p))}" cy="{_f(sy(r))}" r="{_f(radius)}" fill="{_PALETTE[0]}" '
            f'fill-opacity="0.7" stroke="#fff"><title>{_e(tip)}</title></circle>'
        )
    out.append("</svg>")
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Header, notes and headline


def _header(inputs: ReportInputs, sections: Sequence[tuple[str, str]]) -> str:
    gen = pd.Timestamp(inputs.generated_at)
    gen_text = gen.strftime("%Y-%m-%d %H:%M") + (
        " UTC" if gen.tzinfo is None else gen.strftime(" %Z")
    )
    model_bits = []
    for task in TASKS:
        m = (inputs.models or {}).get(task)
        if m:
            ver = f" v{m['version']}" if m.get("version") not in (None, "") else ""
            model_bits.append(f"{_TASK_LABEL[task].lower()} model {m.get('name') or task}{ver}")
    meta = f"Scores as of {_date(inputs.as_of)} · generated {gen_text}"
    if model_bits:
        meta += " · " + ", ".join(model_bits)
    nav = "".join(f'<a href="#{_e(i)}">{_e(t)}</a>' for i, t in sections)
    return (
        f'<header><h1 data-testid="title">{_e(inputs.title)}</h1>'
        f'<p class="meta" data-testid="meta">{_e(meta)}</p>'
        f'<nav class="noprint" aria-label="Sections">{nav}</nav></header>'
    )


def _notes(inputs: ReportInputs, missing: Sequence[str]) -> str:
    items = [f'<li class="warn">{_e(n)}</li>' for n in inputs.notes if str(n).strip()]
    if missing:
        items.append(f"<li>Not in this report: {_e('; '.join(missing))}.</li>")
    if not items:
        return ""
    return (
        '<section id="notes" class="notes" data-testid="notes" aria-label="Notes">'
        f"<ul>{''.join(items)}</ul></section>"
    )


_BAND_COLORS = ("#b3261e", "#d55e00", "#e69f00", "#7a8b99", "#2e7d32")


def _band_order(frame: pd.DataFrame | None, prob_col: str) -> list[str]:
    """Band labels from the highest risk down (by mean probability, else as they come)."""
    if frame is None or "risk_band" not in frame.columns:
        return []
    bands = frame["risk_band"].dropna().astype(str)
    if prob_col in frame.columns:
        means = frame.assign(_b=frame["risk_band"].astype("string")).groupby("_b")[prob_col].mean()
        return [str(b) for b in means.sort_values(ascending=False, kind="stable").index]
    return list(dict.fromkeys(bands))


def _band_classes(order: Sequence[str]) -> dict[str, str]:
    n = len(order)
    out = {}
    for i, b in enumerate(order):
        # Spread the bands over the colour scale from red (highest risk) to green.
        j = 0 if n <= 1 else round(i * (len(_BAND_COLORS) - 1) / (n - 1))
        out[b] = f"band band-{j}"
    return out


def _headline(inputs: ReportInputs) -> str:
    h = inputs.headline
    out = ['<section id="headline" data-testid="headline"><h2>Headline</h2>']
    if not h:
        out.append(_note("Headline figures were not provided.", "note-headline"))
        out.append("</section>")
        return "".join(out)
    cur = inputs.currency
    total = _num(h.get("total_arr"))
    risk = _num(h.get("revenue_at_risk"))
    share = (
        f"{format_percent(risk / total)} of ARR"
        if risk is not None and total is not None and total > 0
        else ""
    )
    cards = [
        ("accounts-scored", "Accounts scored", format_int(h.get("accounts_scored")), ""),
        (
            "total-arr",
            "Total ARR",
            format_money(total, cur),
            "annual recurring revenue of scored accounts",
        ),
        (
            "revenue-at-risk",
            "Revenue at risk",
            format_money(risk, cur),
            share or "churn probability × ARR",
        ),
        (
            "expected-expansion",
            "Expected expansion value",
            format_money(h.get("expected_expansion_value"), cur),
            "expansion probability × expected amount",
        ),
    ]
    out.append('<div class="cards">')
    for key, label, value, sub in cards:
        out.append(
            f'<div class="card" data-testid="card-{key}"><div class="label">{_e(label)}</div>'
            f'<div class="value">{_e(value)}</div><div class="sub">{_e(sub)}</div></div>'
        )
    out.append("</div>")
    missing = [
        k
        for k in ("accounts_scored", "total_arr", "revenue_at_risk", "expected_expansion_value")
        if not _finite(h.get(k))
    ]
    if missing:
        out.append(
            _note(f"Not provided: {', '.join(missing)} (shown as {DASH}).", "note-headline-missing")
        )
    by_band = h.get("by_band")
    if isinstance(by_band, pd.DataFrame) and not by_band.empty and "risk_band" in by_band.columns:
        b = by_band
        if "mean_probability" in b.columns:
            b = b.sort_values("mean_probability", ascending=False, kind="stable")
        risk_total = (
            float(pd.to_numeric(b["revenue_at_risk"], errors="coerce").sum())
            if "revenue_at_risk" in b.columns
            else 0.0
        )
        classes = _band_classes([str(x) for x in b["risk_band"]])
        rows = [
            '<div class="tablewrap"><table id="by-band" data-testid="by-band"><caption>By risk '
            "band</caption>"
            '<thead><tr><th scope="col">Risk band</th><th class="num" scope="col">Accounts</th>'
            '<th class="num" scope="col">ARR</th><th class="num" scope="col">Revenue at risk</th>'
            '<th scope="col" class="barcol">Share of revenue at risk</th>'
            '<th class="num" scope="col">Mean churn probability</th></tr></thead><tbody>'
        ]
        for _, r in b.iterrows():
            band = str(r["risk_band"])
            rar = r.get("revenue_at_risk")
            pct = float(rar) / risk_total if _finite(rar) and risk_total > 0 else 0.0
            share_text = format_percent(pct) if risk_total > 0 else DASH
            rows.append(
                f'<tr><td><span class="{classes[band]}">{_e(band)}</span></td>'
                f'<td class="num">{_e(format_int(r.get("accounts")))}</td>'
                f'<td class="num">{_e(format_money(r.get("arr"), cur))}</td>'
                f'<td class="num">{_e(format_money(rar, cur))}</td>'
                f'<td class="barcol"><span class="bar" style="width:{pct * 100:.1f}%"></span>'
                f'<span class="barlabel">{_e(share_text)}</span></td>'
                f'<td class="num">{_e(format_percent(r.get("mean_probability")))}</td></tr>'
            )
        rows.append("</tbody></table></div>")
        out.append("".join(rows))
    else:
        out.append(_note("The split by risk band was not provided.", "note-by-band"))
    out.append("</section>")
    return "".join(out)


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
    out.append(
        '<p class="lead">Outcome metrics (churn, revenue retention, upsell revenue) are what the '
        "business cares about; activity metrics (campaign opens and clicks, tickets) are easy to "
        "capture and move first. Each chart says which it shows."
    )
    if any(ctx.partial):
        parts = [ctx.labels[i] for i, p in enumerate(ctx.partial) if p]
        out.append(
            f" Partial periods ({_e(', '.join(parts))}) are shaded and drawn with hollow markers: "
            "the "
            "data does not cover them fully, so they are not comparable with full periods."
        )
    out.append("</p>")
    out.append(_kpi_cards(ctx))
    subscription = any(ctx.has(n) for n in ("churn_rate", "grr", "nrr", "end_mrr"))
    orders_only = not subscription and any(
        ctx.has(n)
        for n in ("active_customer_churn_rate", "repeat_purchase_rate", "spend_retention")
    )
    figs = []
    if orders_only:
        figs.append(
            _kpi_chart(
                ctx,
                "chart-churn",
                "Active-customer churn rate",
                ["active_customer_churn_rate"],
                "pct",
                zero_based=True,
            )
        )
        figs.append(
            _kpi_chart(
                ctx,
                "chart-retention",
                "Repeat purchase and spend retention",
                ["repeat_purchase_rate", "spend_retention"],
                "pct",
            )
        )
        figs.append(
            _kpi_chart(ctx, "chart-buyers", "Buyers per period", ["buyers"], "int", zero_based=True)
        )
        figs.append(
            _kpi_chart(
                ctx,
                "chart-revenue-retention",
                "Gross and net revenue retention",
                ["grr", "nrr"],
                "pct",
            )
        )
    else:
        figs.append(
            _kpi_chart(
                ctx, "chart-churn", "Logo churn rate", ["churn_rate"], "pct", zero_based=True
            )
        )
        figs.append(
            _kpi_chart(ctx, "chart-retention", "Customer retention rate", ["retention_rate"], "pct")
        )
        figs.append(
            _kpi_chart(
                ctx,
                "chart-revenue-retention",
                "Gross and net revenue retention: monthly and trailing 12 months",
                ["grr", "nrr", "grr_12m", "nrr_12m"],
                "pct",
                dashed=("grr_12m", "nrr_12m"),
                refs=[(1.0, "100%")],
            )
        )
    grid = ['<div class="figs">', *figs]
    grid.append(_mrr_bridge(ctx) if not orders_only else _mrr_bridge(ctx))
    grid.append(
        _kpi_chart(
            ctx,
            "chart-upsell",
            "Upsell + cross-sell revenue share",
            ["upsell_revenue_share"],
            "pct",
            refs=[(0.5, "mature companies: 50%+")],
            zero_based=True,
        )
    )
    grid.append(_kpi_chart(ctx, "chart-nps", "Net Promoter Score", ["nps"], "num"))
    grid.append(
        _kpi_chart(
            ctx,
            "chart-campaigns",
            "Customer campaign open and click rates",
            ["open_rate", "click_rate"],
            "pct",
            zero_based=True,
        )
    )
    grid.append(
        _kpi_chart(
            ctx,
            "chart-tickets",
            "Support tickets opened",
            ["tickets_opened"],
            "int",
            zero_based=True,
            show_absent=False,
        )
    )
    grid.append("</div>")
    out.extend(grid)
    out.append(_kpi_table(ctx))
    out.append("</section>")
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Model quality

_METRIC_ROWS: tuple[tuple[str, str, str], ...] = (
    ("roc_auc", "ROC-AUC (ranking; 0.5 is chance, higher is better)", "f3"),
    ("pr_auc", "PR-AUC (higher is better)", "f3"),
    ("log_loss", "Log loss (lower is better)", "f3"),
    ("brier", "Brier score (lower is better)", "f3"),
    ("ece", "Calibration error, ECE (lower is better)", "f3"),
    ("lift_top10", "Lift in the top 10% (× the average rate)", "lift"),
    ("precision_top10", "Precision in the top 10%", "pct"),
    ("recall_top10", "Recall in the top 10%", "pct"),
    ("value_captured_top10", "Revenue captured by the top 10%", "pct"),
)


def _metric_text(v: Any, how: str) -> str:
    if not _finite(v):
        return DASH
    if how == "pct":
        return format_percent(v)
    if how == "lift":
        return f"{float(v):.2f}\u00d7"
    return f"{float(v):.3f}"


def _model_card(task: str, m: Mapping[str, Any]) -> str:
    metrics: Mapping[str, Any] = m.get("metrics") or {}
    name = m.get("name") or f"churnlab-{task}"
    bits = [f"{name}"]
    if m.get("version") not in (None, ""):
        bits.append(f"version {m['version']}")
    if m.get("run_id"):
        bits.append(f"MLflow run {str(m['run_id'])[:12]}")
    if m.get("test_cutoff") is not None:
        bits.append(f"tested on the cutoff {_date(m['test_cutoff'])}")
    out = [
        f'<div class="model" data-testid="model-{task}"><h3>{_TASK_LABEL[task]} model</h3>',
        f'<p class="meta">{_e(" · ".join(bits))}</p>',
    ]
    summary = []
    auc, lr, heur = (
        _num(metrics.get(f"{p}.roc_auc")) for p in ("test", "baseline_logreg", "baseline_heuristic")
    )
    if auc is not None:
        base = [
            (lbl, v)
            for lbl, v in (("logistic regression", lr), ("recency/activity heuristic", heur))
            if v is not None
        ]
        if base:
            loses = [lbl for lbl, v in base if auc <= v]
            vs = ", ".join(f"{lbl} {v:.3f}" for lbl, v in base)
            if not loses:
                summary.append(
                    "Ranks accounts better than "
                    f"{'both baselines' if len(base) > 1 else 'the baseline'} "
                    f"(ROC-AUC {auc:.3f} vs {vs})."
                )
            else:
                summary.append(
                    f"Does not beat the {' and the '.join(loses)} on ROC-AUC "
                    f"({auc:.3f} vs {vs}): treat its ranking with care."
                )
    lift = _num(metrics.get("test.lift_top10"))
    if lift is not None:
        word = "churn" if task == "churn" else "expansion"
        summary.append(
            f"The 10% of accounts it ranks highest {word} at {lift:.1f}× the average rate."
        )
    ece = metrics.get("test.ece")
    if _finite(ece):
        summary.append(f"Probabilities are off by {format_percent(ece)} on average (ECE).")
    if summary:
        out.append(f'<p class="summary">{_e(" ".join(summary))}</p>')
    rows = []
    for key, label, how in _METRIC_ROWS:
        vals = [
            metrics.get(f"{p}.{key}") for p in ("test", "baseline_logreg", "baseline_heuristic")
        ]
        if not _finite(vals[0]):
            continue
        rows.append([label, *(_metric_text(v, how) for v in vals)])
    oracle = _num(metrics.get("test.oracle_roc_auc"))
    if oracle is not None:
        rows.append(
            [
                "ROC-AUC of the true probabilities (synthetic data only)",
                f"{oracle:.3f}",
                DASH,
                DASH,
            ]
        )
    if rows:
        out.append(
            _static_table(
                [
                    ("Metric (test cutoff)", False),
                    ("This model", True),
                    ("Logistic regression", True),
                    ("Heuristic", True),
                ],
                rows,
                f"metrics-{task}",
            )
        )
    else:
        out.append(_note("No test metrics were provided for this model.", f"note-metrics-{task}"))
    cal = m.get("calibration")
    if (
        isinstance(cal, pd.DataFrame)
        and not cal.empty
        and not _missing_columns(cal, ("mean_predicted", "realised"))
    ):
        out.append(
            '<figure class="cal" '
            f'data-testid="calibration-{task}-figure"><figcaption>Calibration: predicted '
            "vs realised rate per probability bin (on the diagonal = calibrated)</figcaption>"
            + _calibration_chart(
                f"calibration-{task}", f"{_TASK_LABEL[task]} calibration curve", cal
            )
            + "</figure>"
        )
    else:
        out.append(_note("No calibration curve was provided.", f"note-calibration-{task}"))
    out.append("</div>")
    return "".join(out)


def _pvr(frame: pd.DataFrame | None) -> str:
    out = ["<h3>Predicted vs realised churn per past cutoff</h3>"]
    if frame is None or frame.empty:
        return "".join(out) + _note(
            "Predicted vs realised churn per cutoff was not provided.", "note-pvr"
        )
    miss = _missing_columns(frame, ("cutoff", "mean_predicted", "realised_rate"))
    if miss:
        return "".join(out) + _note(
            f"Predicted vs realised: the table lacks the columns {', '.join(miss)}.",
            "note-pvr",
            warn=True,
        )
    f = frame.sort_values("cutoff", kind="stable")
    labels = _period_labels(pd.DatetimeIndex(pd.to_datetime(f["cutoff"])))
    waiting = [not _finite(v) for v in f["realised_rate"]]
    series = [
        _Series("mean predicted", _clean(f["mean_predicted"]), _PALETTE[0], dashed=True),
        _Series("realised", _clean(f["realised_rate"]), _PALETTE[1]),
    ]
    chart = _line_chart(
        "chart-pvr",
        "Predicted vs realised churn per cutoff",
        labels,
        [False] * len(labels),
        series,
        "pct",
        zero_based=True,
        wide=True,
    )
    out.append(f'<figure class="kpi wide" data-testid="chart-pvr-figure">{chart}</figure>')
    rows = []
    for (_, r), wait in zip(f.iterrows(), waiting, strict=True):
        diff = (
            DASH
            if wait
            else f"{(float(r['mean_predicted']) - float(r['realised_rate'])) * 100:+.1f} pp"
        )
        rows.append(
            [
                _date(r["cutoff"]),
                str(r.get("role", "")) if pd.notna(r.get("role", "")) else "",
                format_int(r.get("rows")),
                format_percent(r["mean_predicted"]),
                "window still open" if wait else format_percent(r["realised_rate"]),
                diff,
            ]
        )
    out.append(
        _static_table(
            [
                ("Cutoff", False),
                ("Role", False),
                ("Accounts", True),
                ("Mean predicted", True),
                ("Realised", True),
                ("Predicted − realised", True),
            ],
            rows,
            "pvr-table",
        )
    )
    out.append(
        '<p class="hint">Only validation, test and later cutoffs are honest out-of-sample checks; '
        "training cutoffs were fitted on.</p>"
    )
    return "".join(out)


def _drift(frame: pd.DataFrame | None, threshold: float) -> str:
    out = ["<h3>Feature drift</h3>"]
    if frame is None:
        return "".join(out) + _note("Feature drift (PSI) was not provided.", "note-drift")
    if frame.empty or "psi" not in frame.columns:
        return "".join(out) + _note("Feature drift: no PSI values were provided.", "note-drift")
    f = frame.assign(_psi=pd.to_numeric(frame["psi"], errors="coerce")).sort_values(
        "_psi", ascending=False, kind="stable", na_position="last"
    )
    drifted = f[f["_psi"] > threshold]
    if len(drifted):
        names = ", ".join(
            str(r.get("description") or r.get("feature")) for _, r in drifted.head(5).iterrows()
        )
        more = f" and {len(drifted) - 5} more" if len(drifted) > 5 else ""
        out.append(
            _note(
                f"{len(drifted)} feature{'s' if len(drifted) != 1 else ''} drifted above PSI "
                f"{threshold:g} "
                f"between the training data and the scored data: {names}{more}. Scores that lean "
                "on "
                "them deserve a second look; retraining on recent data usually helps.",
                "drift-warning",
                warn=True,
            )
        )
    else:
        out.append(
            f'<p data-testid="drift-ok">No feature drifted above PSI {threshold:g}: the scored '
            "accounts look like the training data.</p>"
        )
    shown = pd.concat([drifted, f.head(10)]).drop_duplicates(
        subset=["feature"] if "feature" in f.columns else None
    )
    shown = shown.sort_values("_psi", ascending=False, kind="stable", na_position="last")
    rows, classes = [], []
    for _, r in shown.iterrows():
        psi = r["_psi"]
        bad = _finite(psi) and float(psi) > threshold
        rows.append(
            [
                str(r.get("description", "") or ""),
                str(r.get("feature", "")),
                f"{float(psi):.3f}" if _finite(psi) else DASH,
                "drifted" if bad else "stable",
            ]
        )
        classes.append("drifted" if bad else "")
    out.append(
        _static_table(
            [("Feature", False), ("Column", False), ("PSI", True), ("Status", False)],
            rows,
            "drift-table",
            row_classes=classes,
        )
    )
    return "".join(out)


def _models(inputs: ReportInputs) -> str:
    out = ['<section id="models" data-testid="models"><h2>Model quality at a glance</h2>']
    models = inputs.models or {}
    cards = []
    for task in TASKS:
        m = models.get(task)
        if m:
            cards.append(_model_card(task, m))
        else:
            cards.append(
                f'<div class="model" data-testid="model-{task}"><h3>{_TASK_LABEL[task]} model</h3>'
                + _note(f"No {task} model in this report.", f"note-model-{task}")
                + "</div>"
            )
    out.append(f'<div class="models">{"".join(cards)}</div>')
    out.append(_pvr(inputs.predicted_vs_realised))
    out.append(_drift(inputs.drift, float(inputs.drift_threshold)))
    out.append("</section>")
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Drivers


def _drivers(inputs: ReportInputs) -> str:
    out = [
        '<section id="drivers" data-testid="drivers"><h2>What drives the scores</h2>'
        '<p class="lead">Global TreeSHAP importance: how much each input moves the model\'s '
        'predictions on average, as a share of all inputs.</p><div class="models">'
    ]
    drivers = inputs.drivers or {}
    for task in TASKS:
        frame = drivers.get(task)
        what = "churn risk" if task == "churn" else "expansion likelihood"
        out.append(
            f'<div class="drivers" data-testid="drivers-{task}"><h3>{_TASK_LABEL[task]}: top '
            f"drivers of {what}</h3>"
        )
        if not isinstance(frame, pd.DataFrame) or frame.empty:
            out.append(_note(f"No {task} drivers in this report.", f"note-drivers-{task}"))
            out.append("</div>")
            continue
        miss = _missing_columns(frame, ("mean_abs_shap",))
        if miss or not ({"feature", "description"} & set(frame.columns)):
            out.append(
                _note(
                    "The driver table lacks mean_abs_shap or feature names.",
                    f"note-drivers-{task}",
                    warn=True,
                )
            )
            out.append("</div>")
            continue
        f = frame.assign(
            _v=pd.to_numeric(frame["mean_abs_shap"], errors="coerce").fillna(0.0).abs()
        )
        f = f.sort_values("_v", ascending=False, kind="stable")
        total = float(f["_v"].sum())
        top = f.head(10)
        items = []
        for _, r in top.iterrows():
            share = float(r["_v"]) / total if total > 0 else 0.0
            desc = r.get("description")
            feat = r.get("feature")
            words = str(desc) if isinstance(desc, str) and desc.strip() else str(feat)
            group = r.get("group")
            tag = (
                f'<span class="tag">{_e(group)}</span>' if isinstance(group, str) and group else ""
            )
            col = f" <code>{_e(feat)}</code>" if isinstance(feat, str) and feat != words else ""
            items.append(
                f'<li><div class="driver"><span class="words">{_e(words)}</span>{tag}{col}</div>'
                f'<div class="meter"><span class="bar" style="width:{share * 100:.1f}%"></span>'
                f'<span class="barlabel">{_e(format_percent(share))}</span></div></li>'
            )
        out.append(f'<ol class="driverlist">{"".join(items)}</ol>')
        if "group" in f.columns:
            g = (
                f.groupby(f["group"].fillna("other").astype(str))["_v"]
                .sum()
                .sort_values(ascending=False)
            )
            rows = []
            sentence: list[str] = []
            for name, v in g.items():
                share = float(v) / total if total > 0 else 0.0
                rows.append(
                    f'<tr><th scope="row">{_e(name)}</th><td class="barcol"><span class="bar" '
                    f'style="width:{share * 100:.1f}%"></span><span class="barlabel">'
                    f"{_e(format_percent(share))}</span></td></tr>"
                )
                if len(sentence) < 2:
                    sentence.append(f"{name} ({format_percent(share)})")
            out.append(
                f"<p>By driver group, {_e(' and '.join(sentence))} weigh most.</p>"
                f'<div class="tablewrap"><table class="groups" data-testid="driver-groups-{task}">'
                '<thead><tr><th scope="col">Driver group</th><th scope="col">Share of '
                "importance</th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table></div>"
            )
        out.append("</div>")
    out.append("</div></section>")
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Big interactive tables


@dataclass(frozen=True)
class _Col:
    key: str
    label: str
    type: ColType


_LABELS = {
    "rank": "Rank",
    "account_id": "Account",
    "name": "Name",
    "segment": "Segment",
    "owner": "Owner",
    "churn_probability": "Churn risk",
    "risk_band": "Risk band",
    "arr": "ARR",
    "revenue_at_risk": "Revenue at risk",
    "driver_group": "Main driver",
    "play": "Play",
    "expansion_probability": "Expansion likelihood",
    "expected_expansion_value": "Expected value",
    "offer": "Offer",
    "campaign": "Campaign",
    "kind": "Kind",
    "holdout": "Holdout",
    "contacts": "Contacts",
    "cost": "Cost",
    "expected_value": "Expected value",
    "expected_net_value": "Expected net value",
    "mrr": "MRR",
}
_MONEY_COLS = {
    "arr",
    "mrr",
    "revenue_at_risk",
    "expected_expansion_value",
    "expected_value",
    "expected_net_value",
    "cost",
    "expected_amount",
}
_PCT_COLS = {"churn_probability", "expansion_probability", "probability", "uplift"}
_REASON = re.compile(r"^reason_(\d+)$")
_HIDDEN = re.compile(
    r"^(reason_\d+(_points|_feature|_group)?|driver_(?!group$).+|base_p|cutoff|p)$"
)


def _label_for(key: str) -> str:
    return _LABELS.get(key, key.replace("_", " ").strip().capitalize() or key)


def _infer_type(key: str, s: pd.Series) -> ColType:
    if key in _MONEY_COLS:
        return "money"
    if key in _PCT_COLS:
        return "pct"
    if pd.api.types.is_bool_dtype(s):
        return "text"
    if pd.api.types.is_integer_dtype(s):
        return "int"
    if pd.api.types.is_float_dtype(s):
        return "int" if key in ("rank", "contacts", "holdout", "seats", "accounts") else "num"
    return "text"


def _is_missing(v: Any) -> bool:
    if v is None or isinstance(v, str):
        return v is None
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):  # a list or array in a cell: shown as text
        return False


def _column_values(s: pd.Series, kind: ColType) -> list[Any]:
    if kind == "text":
        if pd.api.types.is_datetime64_any_dtype(s):
            return [None if pd.isna(v) else _date(v) for v in s]
        if pd.api.types.is_bool_dtype(s):
            return [None if pd.isna(v) else ("yes" if v else "no") for v in s]
        return [None if _is_missing(v) else str(v) for v in s.astype(object)]
    num = pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()
    digits = {"money": 2, "pct": 6, "points": 3, "int": 0}.get(kind)
    if digits is not None:
        num = np.round(num, digits)
    ok = np.isfinite(num)
    if kind == "int":
        return [int(v) if k else None for v, k in zip(num.tolist(), ok.tolist(), strict=True)]
    return [v if k else None for v, k in zip(num.tolist(), ok.tolist(), strict=True)]


@dataclass(frozen=True)
class _TableSpec:
    table_id: str
    label: str
    columns: tuple[_Col, ...]
    reasons: tuple[tuple[str, str | None], ...]  # (reason column, points column or None)
    filters: tuple[tuple[str, str, str], ...]  # (column, element id, label)
    search: tuple[str, ...]
    extra_detail: tuple[str, ...]  # columns shown in the expanded row besides reasons


def _spec_for(
    frame: pd.DataFrame,
    table_id: str,
    label: str,
    lead: Sequence[tuple[str, ColType]],
    tail: Sequence[tuple[str, ColType]],
    filter_cols: Sequence[str],
    extra_detail: Sequence[str] = (),
) -> _TableSpec:
    cols = list(frame.columns)
    lead_keys = [k for k, _ in lead]
    tail_keys = [k for k, _ in tail]
    known = set(lead_keys) | set(tail_keys)
    attrs = [c for c in cols if isinstance(c, str) and c not in known and not _HIDDEN.match(c)]
    # The account's display name reads best right after its id.
    attrs.sort(key=lambda c: 0 if c == "name" else 1)
    columns: list[_Col] = []
    for k, t in lead:
        if k in frame.columns:
            columns.append(_Col(k, _label_for(k), t))
    for k in attrs:
        columns.append(_Col(k, _label_for(k), _infer_type(k, frame[k])))
    for k, t in tail:
        if k in frame.columns:
            columns.append(_Col(k, _label_for(k), t))
    reasons = []
    for c in cols:
        m = _REASON.match(str(c))
        if m:
            pts = f"reason_{m.group(1)}_points"
            reasons.append((str(c), pts if pts in frame.columns else None))
    reasons.sort(key=lambda r: int(r[0].split("_")[1]))
    filters = tuple(
        (
            c,
            f"{table_id}-{'band' if c == 'risk_band' else c}",
            "Band" if c == "risk_band" else _label_for(c),
        )
        for c in filter_cols
        if c in frame.columns
    )
    search = tuple(
        c.key for c in columns if c.type == "text" and c.key in ("account_id", "name", *attrs)
    )
    return _TableSpec(
        table_id,
        label,
        tuple(columns),
        tuple(reasons),
        filters,
        search,
        tuple(c for c in extra_detail if c in frame.columns),
    )


def _table_payload(
    frame: pd.DataFrame,
    spec: _TableSpec,
    page_size: int,
    currency: str,
    badges: Mapping[str, Mapping[str, str]],
) -> dict[str, Any]:
    keys = [c.key for c in spec.columns]
    types: dict[str, ColType] = {c.key: c.type for c in spec.columns}
    detail_keys: list[str] = []
    for r, p in spec.reasons:
        detail_keys.append(r)
        if p:
            detail_keys.append(p)
            types[p] = "points"
        types.setdefault(r, "text")
    for k in spec.extra_detail:
        if k not in keys and k not in detail_keys:
            detail_keys.append(k)
    all_keys = keys + [k for k in detail_keys if k not in keys]
    data_cols = [
        _column_values(frame[k], types.get(k) or _infer_type(k, frame[k])) for k in all_keys
    ]
    rows = [list(r) for r in zip(*data_cols, strict=True)] if data_cols else []
    pos = {k: i for i, k in enumerate(all_keys)}
    filters = []
    for col, el_id, lab in spec.filters:
        values = frame[col]
        text = values.astype(object).where(values.notna(), None)
        strs = [
            None if v is None else ("yes" if v is True else "no" if v is False else str(v))
            for v in text
        ]
        counts: dict[str | None, int] = {}
        for v in strs:
            counts[v] = counts.get(v, 0) + 1
        order = [b for b in badges.get(col, {}) if b in counts]
        rest = sorted((v for v in counts if v is not None and v not in order), key=str.casefold)
        options = [*order, *rest] + ([None] if None in counts else [])
        filters.append(
            {
                "col": pos[col],
                "id": el_id,
                "label": lab,
                "options": options,
                "counts": [counts[o] for o in options],
            }
        )
    return {
        "id": spec.table_id,
        "columns": [{"key": c.key, "label": c.label, "type": c.type} for c in spec.columns],
        "reasons": [[pos[r], pos[p] if p else -1] for r, p in spec.reasons],
        "details": [[pos[k], _label_for(k)] for k in spec.extra_detail],
        "filters": filters,
        "search": [pos[k] for k in spec.search],
        "badges": {str(pos[k]): dict(v) for k, v in badges.items() if k in pos},
        "pageSize": page_size,
        "currency": currency,
        "rows": rows,
    }


def _table_html(payload: dict[str, Any], label: str, expandable: bool) -> str:
    """The table's shell, its first page as plain HTML (for no-script and print) and its JSON."""
    tid = payload["id"]
    cols = payload["columns"]
    rows = payload["rows"]
    n = len(rows)
    size = int(payload["pageSize"])
    cur = payload["currency"]
    badges = {int(k): v for k, v in payload["badges"].items()}
    out = [f'<div class="bigtable" data-table="{_e(tid)}">']
    out.append(f'<div class="controls noprint" id="{_e(tid)}-controls" hidden>')
    if payload["search"]:
        out.append(
            f'<label>Search <input type="search" id="{_e(tid)}-search" '
            f'data-testid="{_e(tid)}-search" '
            f'placeholder="account or name" autocomplete="off"></label>'
        )
    for flt in payload["filters"]:
        opts = [f'<option value="">All ({_e(format_int(n))})</option>']
        for i, (o, c) in enumerate(zip(flt["options"], flt["counts"], strict=True)):
            text = "(blank)" if o is None else o
            opts.append(f'<option value="{i}">{_e(text)} ({_e(format_int(c))})</option>')
        out.append(
            f'<label>{_e(flt["label"])} <select id="{_e(flt["id"])}" data-testid="{_e(flt["id"])}">'
            f"{''.join(opts)}</select></label>"
        )
    out.append(
        f'<button type="button" id="{_e(tid)}-reset" '
        f'data-testid="{_e(tid)}-reset">Reset</button></div>'
    )
    shown = min(n, size)
    count = f"showing 1\u2013{format_int(shown)} of {format_int(n)}" if n else "no rows"
    out.append(
        f'<p class="count" id="{_e(tid)}-count" data-testid="{_e(tid)}-count" data-total="{n}" '
        f'data-matching="{n}" aria-live="polite">{_e(count)}</p>'
    )
    out.append(
        f'<div class="tablewrap"><table class="data" id="{_e(tid)}" data-testid="{_e(tid)}">'
        f'<caption class="sr">{_e(label)}</caption><thead><tr>'
    )
    if expandable:
        out.append('<th class="exp" scope="col"><span class="sr">Details</span></th>')
    for c in cols:
        numeric = c["type"] != "text"
        out.append(
            f'<th scope="col" data-key="{_e(c["key"])}" data-type="{_e(c["type"])}" '
            'aria-sort="none"'
            f'{" class=num" if numeric else ""}><button type="button" '
            f'class="sort">{_e(c["label"])}</button></th>'
        )
    out.append("</tr></thead><tbody>")
    for i in range(shown):
        row = rows[i]
        out.append(f'<tr class="row" data-row="{i}">')
        if expandable:
            out.append('<td class="exp"><span aria-hidden="true">\u25b8</span></td>')
        for j, c in enumerate(cols):
            v = row[j]
            text = DASH if v is None else _fmt(c["type"], v, cur)
            cls = "num" if c["type"] != "text" else ""
            if j in badges and v is not None and str(v) in badges[j]:
                cell = f'<span class="{_e(badges[j][str(v)])}">{_e(text)}</span>'
            else:
                cell = _e(text)
            out.append(f'<td data-key="{_e(c["key"])}" class="{cls}">{cell}</td>')
        out.append("</tr>")
    out.append("</tbody></table></div>")
    out.append(
        f'<div class="pager noprint" id="{_e(tid)}-pager" hidden>'
        f'<button type="button" id="{_e(tid)}-first" data-testid="{_e(tid)}-first">« First</button>'
        f'<button type="button" id="{_e(tid)}-prev" data-testid="{_e(tid)}-prev">‹ '
        "Previous</button>"
        f'<span id="{_e(tid)}-page" data-testid="{_e(tid)}-page"></span>'
        f'<button type="button" id="{_e(tid)}-next" data-testid="{_e(tid)}-next">Next ›</button>'
        f'<button type="button" id="{_e(tid)}-last" data-testid="{_e(tid)}-last">Last '
        "»</button></div>"
    )
    out.append(
        f'<script type="application/json" class="table-data" id="{_e(tid)}-data">'
        f"{_json_for_script(payload)}</script></div>"
    )
    return "".join(out)


_AT_RISK_LEAD: tuple[tuple[str, ColType], ...] = (("rank", "int"), ("account_id", "text"))
_AT_RISK_TAIL: tuple[tuple[str, ColType], ...] = (
    ("churn_probability", "pct"),
    ("risk_band", "text"),
    ("arr", "money"),
    ("revenue_at_risk", "money"),
    ("driver_group", "text"),
    ("play", "text"),
)
_EXP_TAIL: tuple[tuple[str, ColType], ...] = (
    ("expansion_probability", "pct"),
    ("arr", "money"),
    ("expected_expansion_value", "money"),
    ("offer", "text"),
)


def _big_table_section(
    section_id: str,
    title: str,
    lead_text: str,
    frame: pd.DataFrame | None,
    table_id: str,
    tail: Sequence[tuple[str, ColType]],
    filter_cols: Sequence[str],
    needed: Sequence[str],
    inputs: ReportInputs,
    prob_col: str,
    what: str,
) -> str:
    out = [f'<section id="{section_id}" data-testid="{section_id}"><h2>{_e(title)}</h2>']
    if frame is None:
        out.append(_note(f"The {what} was not provided.", f"note-{table_id}"))
        return "".join(out) + "</section>"
    miss = _missing_columns(frame, needed)
    if miss:
        out.append(
            _note(
                f"The {what} lacks the columns {', '.join(miss)}; it cannot be shown.",
                f"note-{table_id}",
                warn=True,
            )
        )
        return "".join(out) + "</section>"
    if frame.empty:
        out.append(_note(f"The {what} is empty: no accounts were selected.", f"note-{table_id}"))
        return "".join(out) + "</section>"
    out.append(f'<p class="lead">{_e(lead_text)}</p>')
    f = frame.reset_index(drop=True)
    if "rank" in f.columns:
        f = f.sort_values("rank", kind="stable", na_position="last").reset_index(drop=True)
    spec = _spec_for(
        f,
        table_id,
        title,
        _AT_RISK_LEAD,
        tail,
        filter_cols,
        extra_detail=("play",) if table_id == "at-risk" else ("offer",),
    )
    badges: dict[str, dict[str, str]] = {}
    if "risk_band" in f.columns:
        badges["risk_band"] = _band_classes(_band_order(f, prob_col))
    payload = _table_payload(f, spec, inputs.page_size, inputs.currency, badges)
    out.append(_table_html(payload, title, expandable=bool(spec.reasons or spec.extra_detail)))
    return "".join(out) + "</section>"


def _at_risk(inputs: ReportInputs) -> str:
    return _big_table_section(
        "at-risk-list",
        "Accounts at risk of churning",
        "Highest revenue at risk first. Click a column header to sort, a row to see why the model "
        "flags the account (in probability points of churn risk) and the suggested play.",
        inputs.at_risk,
        "at-risk",
        _AT_RISK_TAIL,
        ("risk_band", "segment", "owner", "play"),
        ("account_id",),
        inputs,
        "churn_probability",
        "at-risk list",
    )


def _expansion(inputs: ReportInputs) -> str:
    return _big_table_section(
        "expansion-list",
        "Expansion opportunities",
        "Accounts most likely to buy more, with the expected value (likelihood × expected amount). "
        "Click a row for the reasons and the suggested offer.",
        inputs.expansion,
        "expansion",
        _EXP_TAIL,
        ("risk_band", "segment", "owner", "offer"),
        ("account_id",),
        inputs,
        "expansion_probability",
        "expansion list",
    )


def _audiences(inputs: ReportInputs) -> str:
    out = ['<section id="audiences" data-testid="audiences"><h2>Campaign audiences</h2>']
    a = inputs.audiences
    cur = inputs.currency
    if a is None or a.empty:
        out.append(_note("Campaign audiences were not provided.", "note-audiences"))
    elif "campaign" not in a.columns:
        out.append(
            _note("The audience summary lacks the campaign column.", "note-audiences", warn=True)
        )
    else:
        cols = [
            ("campaign", "Campaign", "text"),
            ("kind", "Kind", "text"),
            ("contacts", "Contacts", "int"),
            ("holdout", "Held out", "int"),
            ("cost", "Cost", "money"),
            ("expected_value", "Expected value", "money"),
            ("expected_net_value", "Expected net value", "money"),
        ]
        cols = [c for c in cols if c[0] in a.columns]
        rows, classes = [], []
        for _, r in a.iterrows():
            rows.append(
                [
                    (str(r[k]) if pd.notna(r[k]) else DASH)
                    if t == "text"
                    else (format_int(r[k]) if t == "int" else format_money(r[k], cur))
                    for k, _, t in cols
                ]
            )
            net = r.get("expected_net_value")
            classes.append("negative" if _finite(net) and float(net) < 0 else "")
        foot = []
        for k, _, t in cols:
            if k == "campaign":
                foot.append("Total")
            elif t == "text":
                foot.append("")
            else:
                total = float(pd.to_numeric(a[k], errors="coerce").sum())
                foot.append(format_int(total) if t == "int" else format_money(total, cur))
        words = [f"{len(a)} campaign{'s' if len(a) != 1 else ''}"]
        sums = {
            c: float(pd.to_numeric(a[c], errors="coerce").sum())
            for c in a.columns
            if c != "campaign" and pd.api.types.is_numeric_dtype(a[c])
        }
        if "contacts" in sums:
            words.append(f"reach {format_int(sums['contacts'])} contacts")
        if "holdout" in sums:
            words.append(f"({format_int(sums['holdout'])} held out to measure the effect)")
        if "expected_net_value" in sums:
            words.append(
                f"for an expected net value of {format_money(sums['expected_net_value'], cur)}"
            )
        out.append(f'<p class="lead">{_e(" ".join(words))}.</p>')
        out.append(
            _static_table(
                [(lab, t != "text") for _, lab, t in cols],
                rows,
                "audience-summary",
                row_classes=classes,
                foot=foot,
            )
        )
    rows_frame = inputs.audience_rows
    if rows_frame is not None and not rows_frame.empty:
        out.append("<h3>Audience members</h3>")
        f = rows_frame.reset_index(drop=True)
        spec = _spec_for(
            f,
            "audience-rows",
            "Audience members",
            (("account_id", "text"),),
            (),
            ("campaign", "kind", "holdout", "segment", "owner"),
        )
        payload = _table_payload(f, spec, inputs.page_size, cur, {})
        out.append(_table_html(payload, "Audience members", expandable=bool(spec.reasons)))
    out.append("</section>")
    return "".join(out)


def _glossary() -> str:
    items = [
        (
            "Churn risk",
            "the model's calibrated probability that the account has no active "
            "subscription (or, without subscriptions, places no order) at the end of the horizon.",
        ),
        (
            "Revenue at risk",
            "churn risk × ARR: the revenue expected to be lost if nothing is done.",
        ),
        ("Expected expansion value", "expansion likelihood × the expected increase in revenue."),
        (
            "Probability points",
            "how much one input raises the account's probability, e.g. +4.0 "
            "points takes 10% to 14%.",
        ),
        (
            "GRR / NRR",
            "gross / net revenue retention of the customers at the start of the period; "
            "NRR counts expansion, GRR does not.",
        ),
        (
            "PSI",
            "population stability index of a feature between training and scored data; above "
            "0.2 is usually treated as material drift.",
        ),
        (
            "Holdout",
            "accounts deliberately left out of a campaign, so that its effect can be measured.",
        ),
    ]
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    return (
        '<section id="glossary" data-testid="glossary"><h2>How to read this report</h2>'
        f"<dl>{dl}</dl></section>"
    )


# --------------------------------------------------------------------------------------------
# Page


def _missing_pieces(inputs: ReportInputs) -> list[str]:
    missing = []
    if not inputs.headline:
        missing.append("headline figures")
    if inputs.kpis is None or inputs.kpis.empty:
        missing.append("KPI trends")
    for task in TASKS:
        if not (inputs.models or {}).get(task):
            missing.append(f"{task} model")
    if inputs.drift is None:
        missing.append("feature drift")
    if inputs.at_risk is None:
        missing.append("at-risk list")
    if inputs.expansion is None:
        missing.append("expansion list")
    if inputs.audiences is None:
        missing.append("campaign audiences")
    return missing


def render(inputs: ReportInputs) -> str:
    """Render the report as one self-contained HTML page.

    Parameters
    ----------
    inputs : ReportInputs
        The figures, tables and notes to show; missing pieces become notes in their sections.

    Returns
    -------
    str
        The HTML document. It loads nothing from the network (inline CSS, script and SVG, and a
        Content-Security-Policy that forbids other sources).
    """
    sections = [
        ("headline", "Headline"),
        ("kpis", "KPIs"),
        ("models", "Model quality"),
        ("drivers", "Drivers"),
        ("at-risk-list", "At risk"),
        ("expansion-list", "Expansion"),
        ("audiences", "Audiences"),
        ("glossary", "How to read"),
    ]
    body = "".join(
        [
            _header(inputs, sections),
            "<main>",
            _notes(inputs, _missing_pieces(inputs)),
            _headline(inputs),
            _kpis(inputs),
            _models(inputs),
            _drivers(inputs),
            _at_risk(inputs),
            _expansion(inputs),
            _audiences(inputs),
            _glossary(),
            "</main>",
        ]
    )
    gen = pd.Timestamp(inputs.generated_at)
    footer = (
        f"<footer>Generated by churnlab on {_e(gen.strftime('%Y-%m-%d %H:%M'))}. "
        "Self-contained: this file loads nothing from the network.</footer>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        '<link rel="icon" href="data:,">'
        f"<title>{_e(inputs.title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}{footer}<script>{_JS}</script></body></html>\n"
    )


def write(inputs: ReportInputs, path: Path | str) -> Path:
    """Render the report and write it atomically to ``path``.

    The page is written to a temporary file in the same folder and renamed over ``path``, so a
    reader never sees half a report and a failed render leaves any previous report in place.

    Parameters
    ----------
    inputs : ReportInputs
        What to show.
    path : Path or str
        The HTML file to write; its folder is created if needed.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ReportError
        If the path is a folder or the file cannot be written.
    """
    target = Path(path)
    if target.is_dir():
        raise ReportError(
            f"cannot write the report to {target}: it is a folder; give a file name "
            "such as report.html"
        )
    page = render(inputs)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as err:
        raise ReportError(f"cannot write the report to {target}: {err}") from err
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
        # mkstemp makes the file private (0600); a report is meant to be shared like any file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as err:
        raise ReportError(f"cannot write the report to {target}: {err}") from err
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target


# --------------------------------------------------------------------------------------------
# Inline assets

_CSS = """
:root{--fg:#1d232a;--muted:#5b6670;--line:#dde2e6;--bg:#fff;--soft:#f4f6f8;--accent:#0b62a4;
--warn:#8a3b00;--warnbg:#fff4e5;--bad:#b3261e;--good:#2e7d32;color-scheme:light}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1240px;padding:0 24px 48px;color:var(--fg);background:var(--bg);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{padding:20px 0 8px;border-bottom:1px solid var(--line)}
h1{font-size:26px;margin:0 0 4px}h2{font-size:21px;margin:36px 0 10px;padding-top:8px;
border-top:1px solid var(--line)}h3{font-size:16px;margin:22px 0 8px}
.meta{color:var(--muted);margin:0 0 8px;font-size:13px}
nav{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:14px;padding:4px 0}
nav a{color:var(--accent);text-decoration:none}nav a:hover{text-decoration:underline}
.lead{color:var(--muted);max-width:80ch}.hint{color:var(--muted);font-size:13px}
.note{background:var(--soft);border-left:4px solid #9aa5ae;padding:8px 12px;margin:8px 0;
max-width:90ch}.note.warn{background:var(--warnbg);border-left-color:#e69f00;color:var(--warn)}
.notes ul{list-style:none;padding:0;margin:16px 0 0}.notes li{padding:8px 12px;margin:6px 0;
background:var(--soft);border-left:4px solid #9aa5ae}.notes li.warn{background:var(--warnbg);
border-left-color:#e69f00;color:var(--warn)}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px;
margin:12px 0}
.card{border:1px solid var(--line);border-radius:8px;padding:12px 14px;background:#fff}
.card .label{color:var(--muted);font-size:13px}.card .value{font-size:28px;font-weight:650;
font-variant-numeric:tabular-nums}.card.small .value{font-size:22px}.card .sub{color:var(--muted);
font-size:12px}.delta{font-size:12px;color:var(--muted)}.delta.good{color:var(--good)}
.delta.bad{color:var(--bad)}
.badge{display:inline-block;font-size:11px;font-weight:600;border-radius:10px;padding:1px 8px;
margin-left:6px;vertical-align:middle;letter-spacing:.02em}.badge.outcome{background:#e3eefa;
color:#0b4f86}.badge.activity{background:#efe7f5;color:#6a3d8f}
.card .badge{margin:6px 0 0}
.band{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;
color:#fff;white-space:nowrap}.band-0{background:#b3261e}.band-1{background:#d55e00}
.band-2{background:#b07800}.band-3{background:#6b7a87}.band-4{background:#2e7d32}
.tablewrap{overflow-x:auto;margin:8px 0}
table{border-collapse:collapse;width:100%;font-size:14px;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:600;padding:4px 0;color:var(--muted)}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:var(--soft);font-weight:600;white-space:nowrap}
.num{text-align:right}td.partial,th.partial{background:repeating-linear-gradient(45deg,#fff,
#fff 4px,#f1f3f5 4px,#f1f3f5 8px)}
tr.group th{background:#fafbfc;color:var(--muted);font-weight:600;font-size:13px}
tr.drifted td{color:var(--warn);background:var(--warnbg)}tr.negative td{color:var(--bad)}
tfoot td{font-weight:650;border-top:2px solid var(--line)}
.barcol{min-width:160px}.bar{display:inline-block;height:10px;background:var(--accent);
border-radius:2px;vertical-align:middle;margin-right:6px;max-width:70%}
.barlabel{font-size:12px;color:var(--muted)}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:8px 24px}
figure{margin:12px 0;break-inside:avoid}figcaption{font-weight:600;margin-bottom:4px}
figure.wide{grid-column:1/-1}
svg.chart{width:100%;height:auto;display:block;max-height:300px}svg.chart.square{max-width:340px}
svg .grid{stroke:#e6e9ec;stroke-width:1}svg .zero{stroke:#8a949c;stroke-width:1}
svg .ref{stroke:#8a949c;stroke-dasharray:4 4;stroke-width:1}svg .series{fill:none;stroke-width:2}
svg text{font:11px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;fill:#5b6670}
svg .reflabel{font-size:10px}svg .partial{fill:#eef1f4}svg .axis{font-size:12px}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:4px 16px;padding:0;margin:4px 0 0;
font-size:12px;color:var(--muted)}.sw{display:inline-block;width:18px;margin-right:6px;
vertical-align:middle}.sw.line{border-top:3px solid}.sw.line.dashed{border-top-style:dashed}
.sw.box{height:10px;border-radius:2px}.sw.box.partial{background:#eef1f4;border:1px solid #cfd5da}
.bridge{font-size:13px;color:var(--muted)}
.models{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:8px 28px}
.summary{max-width:80ch}
.driverlist{padding-left:30px;margin:6px 0}.driverlist li{margin:6px 0}
.driver .tag{display:inline-block;font-size:11px;background:var(--soft);
border:1px solid var(--line);
border-radius:10px;padding:0 7px;margin-left:8px;color:var(--muted)}
.driver code{font-size:11px;color:#8a949c;margin-left:6px}.meter{margin-top:2px}
table.groups{max-width:520px}
.controls{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:center;margin:8px 0;font-size:14px}
.controls select,.controls input,.controls button,.pager button{font:inherit;padding:3px 6px}
.count{margin:6px 0;color:var(--muted);font-size:13px}
.pager{display:flex;gap:8px;align-items:center;margin:8px 0;font-size:14px}
table.data th button.sort{font:inherit;font-weight:600;background:none;border:0;padding:0;
cursor:pointer;color:inherit}
table.data th[aria-sort=descending] button.sort::after{content:" \\25BC"}
table.data th[aria-sort=ascending] button.sort::after{content:" \\25B2"}
table.data{font-size:13px}table.data th,table.data td{padding:5px 6px}
table.data td.num,table.data td .band{white-space:nowrap}table.data td{overflow-wrap:break-word}
table.data tr.row{cursor:pointer}table.data tr.row:hover td{background:#f7f9fb}
table.data tr.row[aria-expanded=true] td{background:#eef5fc}
table.data td.exp,table.data th.exp{width:22px;color:var(--muted);padding-right:0}
tr.row[aria-expanded=true] td.exp span{display:inline-block;transform:rotate(90deg)}
tr.details td{background:#f7fafd;padding:8px 12px 12px 34px}
ul.reasons{margin:0;padding-left:18px}ul.reasons li{margin:3px 0}
.pts{display:inline-block;min-width:44px;font-weight:650;font-variant-numeric:tabular-nums}
.pts.up{color:var(--bad)}.pts.down{color:var(--good)}
.detail-extra{margin:6px 0 0;color:var(--muted)}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;max-width:100ch}
dt{font-weight:600}
dd{margin:0;color:var(--muted)}
footer{margin-top:40px;padding-top:12px;border-top:1px solid var(--line);color:var(--muted);
font-size:12px}
@media (max-width:700px){.figs,.models{grid-template-columns:1fr}body{padding:0 12px 32px}}
@media print{
body{max-width:none;padding:0;font-size:11pt}nav,.noprint,.controls,.pager{display:none!important}
h2{break-after:avoid}figure,.card,.model{break-inside:avoid}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
.figs,.models{grid-template-columns:1fr 1fr}table{font-size:9pt}
tr{break-inside:avoid}a{color:inherit;text-decoration:none}
.tablewrap{overflow:visible}table.data{font-size:8pt}
table.data th.exp,table.data td.exp{display:none}
table.data tr.row:hover td{background:none}
}
"""

# Vanilla script: no libraries, no network. It renders each table from its JSON block. The
# formatters mirror format_money, format_percent, ... above exactly (floor(x + 0.5) rounding).
_JS = r"""
(function () {
  "use strict";
  var DASH = "\u2014";
  var UNITS = [[1e3, "k"], [1e6, "M"], [1e9, "B"], [1e12, "T"]];
  function tenths(n) { return n % 10 === 0 ? String(n / 10) : Math.floor(n / 10) + "." + (n % 10); }
  function groupInt(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
  function finite(v) { return typeof v === "number" && isFinite(v); }
  function fmtMoney(v, cur) {
    if (!finite(v)) return DASH;
    var a = Math.abs(v), text = null;
    if (a < 1000) {
      var n0 = Math.floor(a + 0.5);
      if (n0 < 1000) text = String(n0); else a = 1000;
    }
    if (text === null) {
      for (var i = 0; i < UNITS.length; i++) {
        var s = a / UNITS[i][0];
        var n = s < 100 ? Math.floor(s * 10 + 0.5) : Math.floor(s + 0.5) * 10;
        if (n < 10000 || i === UNITS.length - 1) { text = tenths(n) + UNITS[i][1]; break; }
      }
    }
    return (v < 0 && text !== "0" ? "-" : "") + (cur || "") + text;
  }
  function fmtPct(v) {
    if (!finite(v)) return DASH;
    var n = Math.floor(Math.abs(v) * 1000 + 0.5);
    return (v < 0 && n > 0 ? "-" : "") + Math.floor(n / 10) + "." + (n % 10) + "%";
  }
  function fmtInt(v) {
    if (!finite(v)) return DASH;
    var n = Math.floor(Math.abs(v) + 0.5);
    return (v < 0 && n > 0 ? "-" : "") + groupInt(n);
  }
  function fmtNum(v) {
    if (!finite(v)) return DASH;
    if (v === Math.floor(v)) return fmtInt(v);
    var n = Math.floor(Math.abs(v) * 100 + 0.5), c = n % 100;
    var sign = v < 0 && n > 0 ? "-" : "";
    return sign + groupInt(Math.floor(n / 100)) + "." + (c < 10 ? "0" : "") + c;
  }
  function fmtPoints(v) {
    if (!finite(v)) return DASH;
    var n = Math.floor(Math.abs(v) * 10 + 0.5);
    return (n === 0 ? "" : (v > 0 ? "+" : "-")) + Math.floor(n / 10) + "." + (n % 10);
  }
  function fmt(type, v, cur) {
    if (v === null || v === undefined) return DASH;
    switch (type) {
      case "money": return fmtMoney(v, cur);
      case "pct": return fmtPct(v);
      case "int": return fmtInt(v);
      case "num": return fmtNum(v);
      case "points": return fmtPoints(v);
      default: return String(v);
    }
  }
  window.churnlabFormat = {
    money: fmtMoney, pct: fmtPct, int: fmtInt, num: fmtNum, points: fmtPoints
  };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function Table(root, spec) {
    var self = this;
    this.spec = spec;
    this.rows = spec.rows;
    this.table = document.getElementById(spec.id);
    this.tbody = this.table.tBodies[0];
    this.count = document.getElementById(spec.id + "-count");
    this.pageLabel = document.getElementById(spec.id + "-page");
    this.expandable = spec.reasons.length > 0 || spec.details.length > 0;
    this.ncols = spec.columns.length + (this.expandable ? 1 : 0);
    this.sortCol = -1; this.sortDir = 0; this.page = 0;
    this.filterVals = spec.filters.map(function () { return null; });
    this.query = "";
    this.expanded = {};
    this.collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});
    this.badges = spec.badges || {};
    this.view = this.rows.map(function (_, i) { return i; });
    this.haystack = null;

    var heads = this.table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th) {
      var key = th.getAttribute("data-key");
      if (!key) return;
      var col = -1;
      spec.columns.forEach(function (c, i) { if (c.key === key) col = i; });
      th.addEventListener("click", function () { self.sortBy(col, th); });
    });
    spec.filters.forEach(function (f, i) {
      var sel = document.getElementById(f.id);
      if (!sel) return;
      sel.addEventListener("change", function () {
        self.filterVals[i] = sel.value === "" ? null : {v: f.options[Number(sel.value)]};
        self.apply();
      });
    });
    var search = document.getElementById(spec.id + "-search");
    if (search) {
      search.addEventListener("input", function () {
        self.query = search.value.trim().toLowerCase();
        self.apply();
      });
    }
    var reset = document.getElementById(spec.id + "-reset");
    if (reset) reset.addEventListener("click", function () { self.reset(); });
    var nav = {first: function () { self.page = 0; }, prev: function () { self.page -= 1; },
               next: function () { self.page += 1; }, last: function () { self.page = 1e9; }};
    Object.keys(nav).forEach(function (k) {
      var b = document.getElementById(spec.id + "-" + k);
      if (b) b.addEventListener("click", function () { nav[k](); self.render(); });
    });
    this.tbody.addEventListener("click", function (ev) {
      var tr = ev.target.closest ? ev.target.closest("tr.row") : null;
      if (tr && self.expandable) self.toggle(Number(tr.getAttribute("data-row")));
    });
    this.tbody.addEventListener("keydown", function (ev) {
      if (ev.key !== "Enter" && ev.key !== " ") return;
      var tr = ev.target.closest ? ev.target.closest("tr.row") : null;
      if (tr && self.expandable) {
        ev.preventDefault();
        self.toggle(Number(tr.getAttribute("data-row")));
      }
    });
    var controls = document.getElementById(spec.id + "-controls");
    if (controls) controls.hidden = false;
    var pager = document.getElementById(spec.id + "-pager");
    if (pager) pager.hidden = false;
    this.render();
  }

  Table.prototype.reset = function () {
    var spec = this.spec;
    spec.filters.forEach(function (f) {
      var s = document.getElementById(f.id);
      if (s) s.value = "";
    });
    var search = document.getElementById(spec.id + "-search");
    if (search) search.value = "";
    this.filterVals = spec.filters.map(function () { return null; });
    this.query = ""; this.sortCol = -1; this.sortDir = 0;
    Array.prototype.forEach.call(this.table.tHead.rows[0].cells, function (th) {
      if (th.hasAttribute("aria-sort")) th.setAttribute("aria-sort", "none");
    });
    this.apply();
  };

  Table.prototype.sortBy = function (col, th) {
    if (col < 0) return;
    var numeric = this.spec.columns[col].type !== "text";
    if (this.sortCol === col) this.sortDir = -this.sortDir;
    else { this.sortCol = col; this.sortDir = numeric ? -1 : 1; }
    Array.prototype.forEach.call(this.table.tHead.rows[0].cells, function (h) {
      if (h.hasAttribute("aria-sort")) h.setAttribute("aria-sort", "none");
    });
    th.setAttribute("aria-sort", this.sortDir < 0 ? "descending" : "ascending");
    this.apply();
  };

  Table.prototype.apply = function () {
    var rows = this.rows, spec = this.spec, fv = this.filterVals, q = this.query, self = this;
    var active = [];
    spec.filters.forEach(function (f, i) { if (fv[i]) active.push([f.col, fv[i].v]); });
    if (q && !this.haystack) {
      this.haystack = rows.map(function (r) {
        var parts = spec.search.map(function (c) { return r[c] === null ? "" : String(r[c]); });
        return parts.join("\u0001").toLowerCase();
      });
    }
    var view = [];
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i], ok = true;
      for (var j = 0; j < active.length; j++) {
        var v = r[active[j][0]];
        var s = v === null || v === undefined ? null : String(v);
        if (s !== active[j][1]) { ok = false; break; }
      }
      if (ok && q && this.haystack[i].indexOf(q) < 0) ok = false;
      if (ok) view.push(i);
    }
    if (this.sortCol >= 0) {
      var c = this.sortCol, dir = this.sortDir, numeric = spec.columns[c].type !== "text";
      var coll = this.collator;
      view.sort(function (a, b) {
        var x = rows[a][c], y = rows[b][c];
        var xn = x === null || x === undefined, yn = y === null || y === undefined;
        if (xn || yn) return xn && yn ? a - b : (xn ? 1 : -1);  // missing values last either way
        var d = numeric ? (x < y ? -1 : (x > y ? 1 : 0)) : coll.compare(String(x), String(y));
        return d !== 0 ? d * dir : a - b;
      });
    }
    this.view = view;
    this.page = 0;
    self.render();
  };

  Table.prototype.toggle = function (i) {
    if (this.expanded[i]) delete this.expanded[i]; else this.expanded[i] = true;
    this.render();
  };

  Table.prototype.detailRow = function (r) {
    var spec = this.spec, cur = spec.currency;
    var tr = el("tr", "details"), td = el("td");
    tr.setAttribute("data-testid", spec.id + "-details");
    td.colSpan = this.ncols;
    var ul = el("ul", "reasons"), any = false;
    spec.reasons.forEach(function (pair) {
      var text = r[pair[0]];
      if (text === null || text === undefined || text === "") return;
      any = true;
      var li = el("li");
      li.setAttribute("data-testid", "reason");
      if (pair[1] >= 0 && finite(r[pair[1]])) {
        var p = r[pair[1]];
        li.appendChild(el("span", "pts " + (p > 0 ? "up" : "down"), fmtPoints(p)));
      }
      li.appendChild(el("span", "text", String(text)));
      ul.appendChild(li);
    });
    if (any) td.appendChild(ul);
    else if (spec.reasons.length) {
      td.appendChild(el("p", "detail-extra", "No reasons recorded for this account."));
    }
    spec.details.forEach(function (d) {
      var v = r[d[0]];
      if (v !== null && v !== undefined && v !== "") {
        td.appendChild(el("p", "detail-extra", d[1] + ": " + fmt("text", v, cur)));
      }
    });
    tr.appendChild(td);
    return tr;
  };

  Table.prototype.render = function () {
    var spec = this.spec, rows = this.rows, view = this.view;
    var size = spec.pageSize, cur = spec.currency;
    var pages = Math.max(1, Math.ceil(view.length / size));
    if (this.page >= pages) this.page = pages - 1;
    if (this.page < 0) this.page = 0;
    var start = this.page * size, end = Math.min(view.length, start + size);
    var frag = document.createDocumentFragment(), cols = spec.columns, badges = this.badges;
    for (var k = start; k < end; k++) {
      var i = view[k], r = rows[i], tr = el("tr", "row");
      tr.setAttribute("data-row", String(i));
      if (this.expandable) {
        tr.tabIndex = 0;
        tr.setAttribute("aria-expanded", this.expanded[i] ? "true" : "false");
        var ex = el("td", "exp"), sp = el("span", null, "\u25b8");
        sp.setAttribute("aria-hidden", "true");
        ex.appendChild(sp);
        tr.appendChild(ex);
      }
      for (var j = 0; j < cols.length; j++) {
        var v = r[j], td = el("td", cols[j].type === "text" ? "" : "num");
        td.setAttribute("data-key", cols[j].key);
        var text = fmt(cols[j].type, v, cur), b = badges[String(j)];
        if (b && v !== null && b[String(v)]) td.appendChild(el("span", b[String(v)], text));
        else td.textContent = text;
        tr.appendChild(td);
      }
      frag.appendChild(tr);
      if (this.expanded[i]) frag.appendChild(this.detailRow(r));
    }
    this.tbody.textContent = "";
    this.tbody.appendChild(frag);
    var total = rows.length, n = view.length, txt;
    if (n === 0) txt = "no rows match (" + fmtInt(total) + " in total)";
    else {
      txt = "showing " + fmtInt(start + 1) + "\u2013" + fmtInt(end) + " of " + fmtInt(n);
      if (n !== total) txt += " matching (" + fmtInt(total) + " in total)";
    }
    this.count.textContent = txt;
    this.count.setAttribute("data-matching", String(n));
    this.count.setAttribute("data-total", String(total));
    this.count.setAttribute("data-start", String(n ? start + 1 : 0));
    this.count.setAttribute("data-end", String(end));
    if (this.pageLabel) {
      this.pageLabel.textContent = "page " + fmtInt(this.page + 1) + " of " + fmtInt(pages);
    }
    var setDis = function (id, dis) {
      var b = document.getElementById(spec.id + "-" + id);
      if (b) b.disabled = dis;
    };
    setDis("first", this.page === 0); setDis("prev", this.page === 0);
    setDis("next", this.page >= pages - 1); setDis("last", this.page >= pages - 1);
  };

  function init() {
    var blocks = document.querySelectorAll("script.table-data");
    window.churnlabTables = {};
    Array.prototype.forEach.call(blocks, function (block) {
      var spec = JSON.parse(block.textContent);
      window.churnlabTables[spec.id] = new Table(block.parentNode, spec);
    });
    document.documentElement.setAttribute("data-ready", "true");
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
"""

"""Inline SVG charts of the report (:mod:`churnlab.report`): lines, stacked bars, calibration.

Drawn here as SVG text, so the page needs no script or network to show them; partial periods are
shaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from churnlab.report_format import (
    _e,
    _finite,
    _fmt,
    format_int,
    format_money,
    format_percent,
)
from churnlab.report_inputs import ColType

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

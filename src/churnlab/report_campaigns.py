"""The campaign-effects section of the report (:mod:`churnlab.report`): what campaigns changed.

From ``churnlab measure``: per measured campaign, the effect on the outcome it was meant to move
(churn for retention, expansion for upsell) as treated minus holdout in rate points, with its
interval, drawn as a forest plot and listed with the verdict, the incremental ARR and the cost;
then the too-small holdouts with their counts and the campaigns still in their outcome window.
Without a measurement the section is a note saying how to get one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from churnlab.report_charts import _f
from churnlab.report_format import (
    _e,
    _finite,
    _note,
    _num,
    _static_table,
    format_int,
    format_money,
    format_percent,
    format_points,
)
from churnlab.report_inputs import DASH, ReportInputs

_NEEDED = ("campaign_id", "primary_outcome", "n_treated", "n_holdout")
_OUTCOME_WORD = {"churn": "churn rate", "expansion": "expansion rate"}


def _verdict(text: Any) -> tuple[str, str]:
    """(short word, row class) of a measure verdict."""
    verdict = str(text) if isinstance(text, str) else "not measured"
    if "harmful" in verdict:
        return f"harms: {verdict.replace(' (harmful)', '')}", "harms"
    if verdict in ("no detectable effect", "not measured"):
        return verdict, ""
    return f"helps: {verdict}", "helps"


def _pct(v: float | None) -> float | None:
    return None if v is None else 100 * v


def _forest(camps: pd.DataFrame) -> str:
    """One row per campaign: its interval as a line, the estimate as a dot, zero as a rule."""
    rows: list[tuple[str, float, float | None, float | None, str]] = []
    for _, r in camps.iterrows():
        o = str(r["primary_outcome"])
        d, lo, hi = (_num(r.get(f"{o}_{p}")) for p in ("diff", "ci_low", "ci_high"))
        if d is not None:
            verdict = _verdict(r.get(f"{o}_verdict"))[1]
            rows.append((str(r["campaign_id"]), 100 * d, _pct(lo), _pct(hi), verdict))
    if not rows:
        return ""
    values = [0.0] + [v for _, d, lo, hi, _ in rows for v in (d, lo, hi) if v is not None]
    span = max(max(values) - min(values), 1.0)
    lo_x, hi_x = min(values) - 0.05 * span, max(values) + 0.05 * span
    left, width, row_h = 190, 420, 22
    height = 30 + row_h * len(rows)

    def x(v: float) -> float:
        return left + (v - lo_x) / (hi_x - lo_x) * width

    colour = {"helps": "#2e7d32", "harms": "#b3261e", "": "#5b6670"}
    out = [
        f'<svg class="chart" data-testid="chart-campaign-effects" role="img" '
        f'viewBox="0 0 {left + width + 20} {height}" width="100%" '
        f'aria-label="Campaign effects with their intervals, in rate points">',
        f'<line x1="{_f(x(0))}" y1="4" x2="{_f(x(0))}" y2="{height - 22}" stroke="#1d232a" '
        'stroke-width="1"/>',
        f'<text x="{_f(x(0))}" y="{height - 8}" font-size="11" text-anchor="middle">0</text>',
        f'<text x="{_f(x(lo_x + 0.05 * span))}" y="{height - 8}" font-size="11" '
        f'text-anchor="middle">{_e(format_points(lo_x + 0.05 * span))}</text>',
        f'<text x="{_f(x(hi_x - 0.05 * span))}" y="{height - 8}" font-size="11" '
        f'text-anchor="middle">{_e(format_points(hi_x - 0.05 * span))}</text>',
    ]
    for i, (cid, d, lo, hi, cls) in enumerate(rows):
        y = 14 + i * row_h
        c = colour[cls]
        out.append(
            f'<text x="{left - 8}" y="{y + 4}" font-size="12" text-anchor="end">{_e(cid)}</text>'
        )
        if lo is not None and hi is not None:
            out.append(
                f'<line x1="{_f(x(lo))}" y1="{y}" x2="{_f(x(hi))}" y2="{y}" '
                f'stroke="{c}" stroke-width="2"><title>{_e(cid)}: {_e(format_points(d))} points '
                f"({_e(format_points(lo))} to {_e(format_points(hi))})</title></line>"
            )
        out.append(f'<circle cx="{_f(x(d))}" cy="{y}" r="4" fill="{c}"/>')
    out.append("</svg>")
    return "".join(out)


def _own_warnings(m: Mapping[str, Any], camps: pd.DataFrame) -> pd.DataFrame | None:
    """Too-small warnings of each campaign on the outcome it was meant to move."""
    w = m.get("warnings")
    if w is None or w.empty or not {"campaign_id", "message"} <= set(w.columns):
        return None
    primary = dict(zip(camps["campaign_id"], camps["primary_outcome"], strict=True))
    if {"segment_type", "outcome"} <= set(w.columns):
        w = w[(w["segment_type"] == "all") & (w["outcome"] == w["campaign_id"].map(primary))]
    return w


def _table(camps: pd.DataFrame, level: int, currency: str, flagged: set[str]) -> str:
    headers = [
        ("Campaign", False),
        ("Kind", False),
        ("Contacted", True),
        ("Held out", True),
        ("Outcome", False),
        ("Contacted rate", True),
        ("Holdout rate", True),
        ("Effect (points)", True),
        (f"{level}% interval", True),
        ("Verdict", False),
        ("Incremental ARR", True),
        ("Cost", True),
    ]
    rows, classes = [], []
    for _, r in camps.iterrows():
        o = str(r["primary_outcome"])
        lo, hi = _num(r.get(f"{o}_ci_low")), _num(r.get(f"{o}_ci_high"))
        interval = (
            f"{format_points(100 * lo)} to {format_points(100 * hi)}"
            if lo is not None and hi is not None
            else DASH
        )
        diff = _num(r.get(f"{o}_diff"))
        word, cls = _verdict(r.get(f"{o}_verdict"))
        gain = r.get("incremental_retained_arr" if o == "churn" else "incremental_expansion_value")
        kind = r.get("kind")
        rows.append(
            [
                str(r["campaign_id"]) + (" *" if r["campaign_id"] in flagged else ""),
                str(kind) if isinstance(kind, str) else DASH,
                format_int(r["n_treated"]),
                format_int(r["n_holdout"]),
                _OUTCOME_WORD.get(o, o),
                format_percent(r.get(f"{o}_treated")),
                format_percent(r.get(f"{o}_holdout")),
                DASH if diff is None else format_points(100 * diff),
                interval,
                word,
                format_money(gain, currency) if _finite(gain) else DASH,
                format_money(r.get("cost"), currency) if _finite(r.get("cost")) else DASH,
            ]
        )  # fmt: skip
        classes.append(cls)
    return _static_table(headers, rows, "campaign-effects-table", row_classes=classes)


def _warnings(w: pd.DataFrame | None) -> str:
    if w is None or w.empty:
        return ""
    items = "".join(f"<li>{_e(r['campaign_id'])}: {_e(r['message'])}</li>" for _, r in w.iterrows())
    return (
        '<div class="note warn" data-testid="campaign-warnings"><strong>* Too small to '
        f"measure reliably</strong><ul>{items}</ul></div>"
    )


def _pending(m: Mapping[str, Any]) -> str:
    p = m.get("pending")
    if p is None or p.empty or "campaign_id" not in p.columns:
        return ""
    items = []
    for _, r in p.iterrows():
        end = pd.Timestamp(r["window_end"]).strftime("%Y-%m-%d") if "window_end" in r else DASH
        n = f", {format_int(r['accounts'])} accounts" if _finite(r.get("accounts")) else ""
        items.append(f"<li>{_e(r['campaign_id'])}{_e(n)}: outcome window closes {_e(end)}</li>")
    return (
        '<div class="note" data-testid="campaign-pending"><strong>Still in their outcome '
        f"window (measured once it closes)</strong><ul>{''.join(items)}</ul></div>"
    )


def campaign_effects(inputs: ReportInputs) -> str:
    """The campaign-effects section (a note when there is no measurement)."""
    out = [
        '<section id="campaign-effects" data-testid="campaign-effects"><h2>Campaign effects</h2>'
    ]
    m = inputs.measurement
    if m is None:
        out.append(
            _note(
                "No campaign measurement yet: append the treatments.csv that churnlab score "
                "writes to the treatments table when the campaigns go out, and run churnlab "
                "measure once their outcome windows have closed.",
                "note-campaign-effects",
            )
        )
        return "".join(out + ["</section>"])
    camps = m["campaigns"]
    missing = [c for c in _NEEDED if c not in camps.columns]
    level = round(100 * float(m.get("level") or 0.95))
    end = m.get("data_end")
    when = f" (data end {pd.Timestamp(end):%Y-%m-%d})" if end is not None else ""
    if missing:
        out.append(
            _note(
                f"The campaign measurement lacks the columns {missing}.",
                "note-campaign-effects",
                warn=True,
            )  # fmt: skip
        )
    elif camps.empty:
        out.append(
            _note(f"No campaign has a complete outcome window yet{when}.", "note-campaign-effects")
        )
    else:
        out.append(
            f'<p class="lede">Measured from randomised holdouts{_e(when)}: the effect is the '
            "contacted accounts' rate minus the held-out accounts' rate on the outcome the "
            "campaign was meant to move (churn for retention, expansion for upsell), in "
            f"points, with its {level}% interval. An interval that includes 0 is no detectable "
            "effect.</p>"
        )
        out.append(_forest(camps))
        own = _own_warnings(m, camps)
        flagged = set() if own is None else set(own["campaign_id"])
        out.append(_table(camps, level, inputs.currency, flagged))
        out.append(_warnings(own))
    out.append(_pending(m))
    out.append("</section>")
    return "".join(out)

"""The big interactive tables of the report (:mod:`churnlab.report`): lists and audiences.

Large tables are embedded as JSON in a ``<script type="application/json">`` block and rendered by
the page's script with paging, sorting and filtering over all rows; the first page is also
rendered here as plain HTML so the page reads and prints without scripts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churnlab.report_format import (
    _band_classes,
    _band_order,
    _date,
    _e,
    _finite,
    _fmt,
    _json_for_script,
    _missing_columns,
    _note,
    _static_table,
    format_int,
    format_money,
)
from churnlab.report_inputs import (
    DASH,
    ColType,
    ReportInputs,
)

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
    out = [f'<div class="bigtable" data-table="{_e(tid)}">', _table_controls(payload, n)]
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
    out.extend(_first_page(payload, shown, expandable))
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


def _table_controls(payload: dict[str, Any], n: int) -> str:
    """Search box, one select per filter (with each option's row count) and the reset button.

    Hidden until the page's script shows them: without scripts they would do nothing.
    """
    tid = payload["id"]
    out = [f'<div class="controls noprint" id="{_e(tid)}-controls" hidden>']
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
    return "".join(out)


def _first_page(payload: dict[str, Any], shown: int, expandable: bool) -> list[str]:
    """The first ``shown`` rows as formatted cells, band values as badges."""
    cols = payload["columns"]
    rows = payload["rows"]
    cur = payload["currency"]
    badges = {int(k): v for k, v in payload["badges"].items()}
    out = []
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
    return out


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
        out.append(_audience_summary(a, cur))
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


def _audience_summary(a: pd.DataFrame, cur: str) -> str:
    """A sentence on reach and value, then one row per campaign with totals underneath.

    Campaigns whose expected net value is negative are marked.
    """
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
    return f'<p class="lead">{_e(" ".join(words))}.</p>' + _static_table(
        [(lab, t != "text") for _, lab, t in cols],
        rows,
        "audience-summary",
        row_classes=classes,
        foot=foot,
    )

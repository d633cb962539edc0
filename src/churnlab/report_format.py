"""Number formats and small HTML pieces of the report (:mod:`churnlab.report`).

Number formats are the same in Python and in the page's script (money ``4.7M``, ``165k``;
probabilities and rates ``12.3%``): both round half up on the same double arithmetic, so a
sorted page shows exactly the text this module would. Every string from the data goes through
:func:`_e` (HTML escaping) or :func:`_json_for_script` (JSON that cannot close its script
element).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from churnlab.report_inputs import (
    DASH,
    ColType,
)

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
# Risk bands

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

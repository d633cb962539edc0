"""One self-contained HTML report for customer-success leads and marketers.

:func:`render` turns a :class:`ReportInputs` into one HTML string; :func:`write` renders it and
writes it atomically. The page needs nothing from the network: styles and scripts are inline
(read from the package data ``report_assets/report.css`` and ``report.js``), charts are inline
SVG, and a Content-Security-Policy forbids any other source, so a report mailed or opened
offline looks the same. The sections are drawn by :mod:`churnlab.report_kpis`,
:mod:`churnlab.report_models`, :mod:`churnlab.report_tables` and
:mod:`churnlab.report_campaigns` from the pieces in :mod:`churnlab.report_format` and
:mod:`churnlab.report_charts`; :class:`ReportInputs` is in :mod:`churnlab.report_inputs`.

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

import functools
import os
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from churnlab.report_campaigns import campaign_effects
from churnlab.report_format import (
    _band_classes,
    _date,
    _e,
    _finite,
    _note,
    _num,
    format_int,
    format_money,
    format_number,
    format_percent,
    format_points,
)
from churnlab.report_inputs import (
    _TASK_LABEL,
    DASH,
    TASKS,
    ColType,
    ReportError,
    ReportInputs,
)
from churnlab.report_kpis import _kpis
from churnlab.report_models import (
    _drivers,
    _models,
)
from churnlab.report_tables import (
    _at_risk,
    _audiences,
    _expansion,
)

__all__ = [
    "ColType",
    "ReportError",
    "ReportInputs",
    "format_int",
    "format_money",
    "format_number",
    "format_percent",
    "format_points",
    "render",
    "write",
]


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


def _headline(inputs: ReportInputs) -> str:
    h = inputs.headline
    out = ['<section id="headline" data-testid="headline"><h2>Headline</h2>']
    if not h:
        out.append(_note("Headline figures were not provided.", "note-headline"))
        out.append("</section>")
        return "".join(out)
    cur = inputs.currency
    out.append(_headline_cards(h, cur))
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
        out.append(_by_band_table(by_band, cur))
    else:
        out.append(_note("The split by risk band was not provided.", "note-by-band"))
    out.append("</section>")
    return "".join(out)


def _headline_cards(h: Mapping[str, Any], cur: str) -> str:
    """The four headline figures as cards; revenue at risk says its share of ARR when known."""
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
    out = ['<div class="cards">']
    for key, label, value, sub in cards:
        out.append(
            f'<div class="card" data-testid="card-{key}"><div class="label">{_e(label)}</div>'
            f'<div class="value">{_e(value)}</div><div class="sub">{_e(sub)}</div></div>'
        )
    out.append("</div>")
    return "".join(out)


def _by_band_table(by_band: pd.DataFrame, cur: str) -> str:
    """Accounts, ARR and revenue at risk per risk band, riskiest band first, with share bars."""
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
    return "".join(rows)


# --------------------------------------------------------------------------------------------
# Glossary


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
        ("campaign-effects", "Campaign effects"),
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
            campaign_effects(inputs),
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
        f"<title>{_e(inputs.title)}</title><style>{_asset('report.css')}</style></head>"
        f"<body>{body}{footer}<script>{_asset('report.js')}</script></body></html>\n"
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
# Inline assets: package data (src/churnlab/report_assets), read once per process.


@functools.cache
def _asset(name: str) -> str:
    """The text of ``report_assets/<name>`` as installed with the package."""
    try:
        return resources.files("churnlab").joinpath("report_assets", name).read_text("utf-8")
    except OSError as err:
        raise ReportError(
            f"the report's {name} is missing from the installed churnlab package ({err}); "
            "reinstall churnlab (it ships report_assets/ as package data)"
        ) from None

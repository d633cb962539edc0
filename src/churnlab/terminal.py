"""Terminal output of the CLI: rich tables and summary lines (only the CLI imports this).

Every table fits the terminal without cutting a value short (fewer columns are shown instead, the
title says so), and messages put paths last or on their own line, so that nothing a person or a
script reads depends on the terminal's width or on where the files live.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from churnlab import compare, drift, periods
from churnlab.backscore import PVR_OVERALL
from churnlab.kpi_catalogue import METRICS
from churnlab.manifest import HEURISTIC_NOT_SCORED, NO_VALUE_MEANS, Manifest
from churnlab.validate import ValidationFailed


def report_ok(summary: dict[str, Any], console: Console) -> None:
    """Print the summary of a dataset that passed validation, and its coverage warnings.

    The verdict is a line of its own and the source path comes after it on another, so neither
    is broken across lines however long the path or narrow the terminal.
    """
    console.print("The data meets the data contract.", highlight=False, soft_wrap=True)
    console.print(f"source: {summary['source']}", highlight=False, soft_wrap=True)
    table = Table(title="rows and time range per table", title_justify="left")
    table.add_column("table", no_wrap=True)
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("first", no_wrap=True)
    table.add_column("last", no_wrap=True)
    for name, rows in summary["tables"].items():
        span = summary["time_range"].get(name) or ["", ""]
        table.add_row(name, f"{rows:,}", span[0], span[1])
    console.print(table)
    console.print(f"as-of used for the future-timestamp check: {summary['as_of']}")
    if summary.get("data_end"):
        console.print(
            f"data end for labels and KPIs: {summary['data_end']} (end of the last day "
            "subscriptions/orders cover, or data.as_of)",
            highlight=False,
            soft_wrap=True,
        )
    for message in summary.get("warnings", ()):
        console.print(Text.assemble(("warning: ", "bold yellow"), message), soft_wrap=True)


def print_problems(err: ValidationFailed, console: Console) -> None:
    """Print a validation report: one block per problem (no markup from the data is rendered)."""
    head = str(err).splitlines()[0]
    console.print(Text.assemble(("error: ", "bold red"), head), soft_wrap=True)
    for p in err.problems:
        line = Text("  ")
        line.append(p.where, style="bold")
        line.append(f": {p.what}")
        if p.rows:
            line.append(f" ({p.rows:,} row{'s' if p.rows != 1 else ''})")
        if p.examples:
            line.append(f", e.g. rows: {list(p.examples)!r}", style="dim")
        if p.fix:
            line.append("; fix: ", style="green")
            line.append(p.fix)
        console.print(line, soft_wrap=True)


def synth_summary(summary: dict[str, Any]) -> tuple[Table, str]:
    """Rows per table of a synthetic world, and its headline rates in one line."""
    table = Table(title=f"synthetic world (as of {summary['as_of'][:10]})")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in summary["rows"].items():
        table.add_row(name, f"{n:,}")
    table.add_row("oracle/oracle", f"{summary['oracle_rows']:,}")
    rates = [
        f"{what} {summary[key]:.1%}"
        for key, what in (
            ("churn_90d_rate", "90-day churn"),
            ("expansion_90d_rate", "90-day expansion"),
            ("mean_oracle_p_churn", "mean oracle p_churn"),
        )
        if summary[key] is not None
    ]
    headline = ", ".join(rates) or "no complete 90-day windows (add months)"
    return table, f"{headline}\nwritten to {summary['out']}"


def dataset_table(manifest: Manifest) -> Table:
    """The training set per cutoff: rows, labeled, positives and rates of both tasks."""
    table = Table(
        title=f"training set ({manifest.mode} mode, horizon {manifest.horizon_days} days)"
    )
    # Short headers: the table must fit an 80-column terminal without truncating values.
    for col in ("cutoff", "rows", "labels", "churn+", "churn%", "expand+", "expand%"):
        table.add_column(col, justify="left" if col == "cutoff" else "right", no_wrap=True)

    def rate(v: float | None) -> str:
        return "-" if v is None else f"{v:.1%}"

    for r in manifest.per_cutoff:
        table.add_row(
            r["cutoff"][:10],
            f"{r['rows']:,}",
            "yes" if r["labeled"] else "no",
            str(r["churn_positives"]),
            rate(r["churn_rate"]),
            str(r["expansion_positives"]),
            rate(r["expansion_rate"]),
        )
    return table


_TABLE_ROWS: tuple[str, ...] = (
    "customers_start",
    "churned",
    "churn_rate",
    "retention_rate",
    "start_mrr",
    "new_mrr",
    "expansion_mrr",
    "contraction_mrr",
    "churned_mrr",
    "reactivation_mrr",
    "end_mrr",
    "grr",
    "nrr",
    "grr_12m",
    "nrr_12m",
    "buyers",
    "active_customer_churn_rate",
    "repeat_purchase_rate",
    "spend_retention",
    "revenue",
    "upsell_revenue_share",
    "existing_customer_revenue_share",
    "nps",
    "nps_responses",
    "open_rate",
    "click_rate",
    "tickets_opened",
)


def _fmt(value: float, unit: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    if unit == "ratio":
        return f"{100 * value:.1f}%"
    if unit.startswith("currency"):  # compact, so that a period column stays narrow
        for above, scale, suffix, digits in (
            (1e9, 1e9, "B", 2),
            (1e6, 1e6, "M", 2),
            (1e4, 1e3, "k", 1),
        ):
            if abs(value) >= above:
                return f"{value / scale:.{digits}f}{suffix}"
        return f"{value:,.0f}"
    if unit.startswith("points") or unit.startswith("score"):
        return f"{value:.1f}"
    return f"{value:,.0f}"


def summary_table(result: dict[str, pd.DataFrame], last: int = 6, width: int | None = None) -> Any:
    """A rich table of the latest periods: one row per applicable KPI, one column per period.

    Shows the last ``last`` periods, fewer when a ``width`` (the terminal's) cannot hold them
    without cutting values short; every period is in the CSV/Parquet files. Partial periods are
    marked with ``*`` in the header; undefined values show as ``-``.
    """
    period = str(result["info"]["period"].iloc[0])
    mode = str(result["info"]["mode"].iloc[0])
    units = {x.name: x.unit for x in METRICS}
    kinds = {x.name: x.kind for x in METRICS}
    monthly = result["monthly"]
    rows = {
        kind: [n for n in _TABLE_ROWS if kinds[n] == kind and monthly[n].notna().any()]
        for kind in ("outcome", "activity")
    }
    m = monthly.tail(last)
    cells = {n: [_fmt(v, units[n]) for v in m[n].tolist()] for kind in rows for n in rows[kind]}
    headers = [
        periods.label(pd.Timestamp(ts), period) + ("*" if partial else "")
        for ts, partial in zip(m.index, m["partial"], strict=True)
    ]
    if width is not None and headers:
        # Box-drawing: 1 border + per column (2 padding + 1 separator); never cut a value.
        name_w = max([len("KPI"), *(len(n) for n in cells)])
        col_w = max(len(x) for x in [*headers, *(c for v in cells.values() for c in v)])
        fit = max(1, (width - name_w - 4) // (col_w + 3))
        if fit < len(headers):
            headers = headers[-fit:]
            cells = {n: v[-fit:] for n, v in cells.items()}
    shown = "" if len(headers) == len(monthly) else f"last {len(headers)} of {len(monthly)}; "
    table = Table(
        title=f"Retention KPIs per {period} ({mode}; {shown}* = partial period; "
        "activity metrics below the line)"
    )
    table.add_column("KPI", no_wrap=True)
    for label in headers:
        table.add_column(label, justify="right", no_wrap=True)
    for kind in ("outcome", "activity"):
        for name in rows[kind]:
            table.add_row(name, *cells[name])
        if rows[kind] and kind == "outcome":
            table.add_section()
    return table


def predicted_table(result: dict[str, pd.DataFrame], last: int = 6) -> Any:
    """A rich table of predicted vs realised churn for the last ``last`` cutoffs (or None)."""
    overall = result.get(PVR_OVERALL)
    if overall is None or overall.empty:
        return None
    table = Table(title="Predicted vs realised churn within the horizon, per cutoff")
    for col in ("cutoff", "role", "rows", "mean predicted", "realised", "difference"):
        table.add_column(col, justify="left" if col in ("cutoff", "role") else "right")
    for r in overall.tail(last).itertuples():
        table.add_row(
            pd.Timestamp(r.cutoff).date().isoformat(),
            str(r.role),
            f"{r.rows:,}",
            _fmt(r.mean_predicted, "ratio"),
            _fmt(r.realised_rate, "ratio"),
            _fmt(r.difference, "ratio"),
        )
    return table


_SHOWN = ("roc_auc", "pr_auc", "log_loss", "ece", "lift_top10", "value_captured_top10")
_ALWAYS = ("test", "baseline_logreg", "baseline_heuristic")  # rows printed even when empty


def format_summary(summary: dict[str, Any]) -> list[str]:
    """Printable lines for ``churnlab train``: metrics vs baselines, promotion, where to look."""
    lines = []
    for task, info in summary["tasks"].items():
        m = info["metrics"]
        lines.append(
            f"{task}: test cutoff {info['test_cutoff']}, calibration {info['calibration']}, "
            f"season {info.get('season', 'off')}, "
            f"registered {info['model_name']} v{info['version']} as {info['decision']} "
            f"({info['reason']})"
        )
        for prefix, label in (
            ("test", "LightGBM"),
            ("baseline_logreg", "logistic regression"),
            ("baseline_btyd", "BG/NBD"),
            ("baseline_heuristic", "heuristic"),
        ):
            parts = [
                f"{k}={m[f'{prefix}.{k}']:.3f}"
                for k in _SHOWN
                if f"{prefix}.{k}" in m and math.isfinite(m[f"{prefix}.{k}"])
            ]
            if prefix == "baseline_heuristic" and not any(k.startswith(prefix) for k in m):
                parts = [HEURISTIC_NOT_SCORED]
            if parts or prefix in _ALWAYS:  # BG/NBD exists for orders-only churn alone
                lines.append(f"  {label:<20} " + " ".join(parts))
        lines += format_comparisons(m)
        if info.get("warning"):
            lines.append(f"  warning: {info['warning']}")
        if "test.oracle_roc_auc" in m:
            lines.append(
                f"  {'oracle (synthetic)':<20} roc_auc={m['test.oracle_roc_auc']:.3f} "
                f"gap={m['test.oracle_gap']:.3f}"
            )
    for task, reason in summary.get("skipped", {}).items():
        lines.append(f"{task}: skipped: {reason}")
    lines.append(
        f"champion bundles in {summary['models_dir']}/ (challengers stay in the registry); "
        f"KPIs: {summary.get('kpis', '-')}"
    )
    lines.append(f"MLflow: mlflow ui --backend-store-uri {summary['tracking_uri']}")
    return lines


_COMPARED = (
    ("logreg", "logistic regression"),
    ("btyd", "BG/NBD"),
    ("heuristic", "heuristic"),
    ("oracle", "oracle (synthetic)"),
)


def format_comparisons(m: dict[str, float]) -> list[str]:
    """LightGBM minus each baseline on the test rows, with 95% paired bootstrap intervals."""
    lines = []
    for name, label in _COMPARED:
        parts = []
        for metric in compare.METRICS:
            key = f"vs_{name}.{metric}"
            if f"{key}_diff" not in m or f"{key}_lo" not in m:
                continue
            parts.append(
                f"{metric} {m[f'{key}_diff']:+.4f} [{m[f'{key}_lo']:+.4f}, {m[f'{key}_hi']:+.4f}]"
                f" {compare.verdict(m, name, metric)}"
            )
        if parts:
            lines.append(f"  LightGBM - {label}: " + "; ".join(parts))
    if lines:
        lines.insert(0, "  LightGBM against the baselines on the test rows (95% paired bootstrap):")
    return lines


def format_backtest(result: dict[str, Any]) -> list[str]:
    """Printable lines for ``churnlab backtest``: per fold and mean +- std of key metrics."""
    lines = []
    keys = [f"test.{k}" for k in ("roc_auc", "pr_auc", "ece")] + [
        "baseline_logreg.roc_auc",
        "baseline_btyd.roc_auc",  # orders-only churn
        "baseline_heuristic.roc_auc",
    ]
    for task, table in result["tables"].items():
        lines.append(f"{task}:")
        folds = table[~table["fold"].isin(["mean", "std"])]
        for _, row in folds.iterrows():
            vals = " ".join(f"{k}={row[k]:.3f}" for k in keys if k in row)
            d = "vs_logreg.roc_auc"
            if all(pd.notna(row.get(f"{d}_{x}")) for x in ("diff", "lo", "hi")):
                vals += (
                    f" (LightGBM - logistic regression {row[f'{d}_diff']:+.3f}, 95% interval"
                    f" {row[f'{d}_lo']:+.3f} to {row[f'{d}_hi']:+.3f})"
                )
            lines.append(f"  fold {row['fold']} (test {row['test_cutoff']}): {vals}")
        mean = table[table["fold"] == "mean"].iloc[0]
        std = table[table["fold"] == "std"].iloc[0]
        vals = " ".join(f"{k}={mean[k]:.3f}+-{std[k]:.3f}" for k in keys if k in mean)
        lines.append(f"  mean+-std: {vals}")
    lines += [f"note: {note}" for note in result.get("skipped", [])]
    lines.append(f"MLflow: mlflow ui --backend-store-uri {result['tracking_uri']}")
    return lines


def _money(v: float) -> str:
    return _fmt(float(v), "currency")


def _lists_table(title: str, frame: pd.DataFrame, cols: list[tuple[str, str, str]]) -> Table:
    """A narrow table of a list's first rows; long text wraps instead of being cut."""
    table = Table(title=title, title_justify="left", expand=False)
    for _, header, kind in cols:
        if kind == "text":
            table.add_column(header, overflow="fold", ratio=1, min_width=20)
        else:
            table.add_column(header, justify="right", no_wrap=True)
    for row in frame.itertuples(index=False):
        values = []
        for col, _, kind in cols:
            v = getattr(row, col)
            if kind == "pct":
                values.append(f"{100 * v:.1f}%")
            elif kind == "money":
                values.append(_money(v))
            elif kind == "int":
                values.append(f"{int(v):,}")
            else:
                values.append(
                    "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                )
        table.add_row(*values)
    return table


AGE_FEATURES = ("tenure_days", "days_since_first_order")
"""Ages that grow with the calendar: scored later than training, accounts are simply older."""


def drift_text(drifting: pd.DataFrame, threshold: float) -> str:
    """The drift warning: the five largest PSIs, and what drift of an age or of emptiness means.

    A feature whose PSI is mostly the change in its share of rows without a value
    (:func:`churnlab.drift.missing_part` >= 0.5) says so, with both shares, and with what that
    usually is: for a purchase-cadence gap (:data:`~churnlab.manifest.NO_VALUE_MEANS`) customers
    with too few order days, otherwise accounts with no history before the cutoff.
    """
    top = drifting.head(5)
    parts, emptier = [], []
    for _, row in top.iterrows():
        part = f"{row['feature']} {float(row['psi']):.2f}"
        if "missing_now" in row.index and drift.missing_part(row) >= 0.5:
            emptier.append(str(row["feature"]))
            part += (
                f" (mostly the share without a value: {100 * float(row['missing_trained']):.1f}% "
                f"of the training rows, {100 * float(row['missing_now']):.1f}% now)"
            )
        parts.append(part)
    text = f"feature drift since training (PSI > {threshold}): " + ", ".join(parts)
    ages = [f for f in top["feature"] if f in AGE_FEATURES]
    if ages:
        text += (
            f"; {' and '.join(ages)} {'grows' if len(ages) == 1 else 'grow'} with the calendar, "
            "so part of this is the scored "
            "accounts being older than any the model trained on (it treats an age above the "
            "largest it saw as that largest), not a change in the data"
        )
    return text + _emptier_text(emptier)


def _emptier_text(features: list[str]) -> str:
    """What a drifted share without a value usually is, for :func:`drift_text`."""
    text = ""
    cadence: dict[str, list[str]] = {}
    for f in features:
        if f in NO_VALUE_MEANS:
            cadence.setdefault(NO_VALUE_MEANS[f], []).append(f)
    if cadence:
        clauses = [
            f"{' and '.join(names)} {'means' if len(names) == 1 else 'mean'} {why} so far"
            for why, names in cadence.items()
        ]
        n = sum(len(names) for names in cadence.values())
        text += (
            "; without a value, " + ", ".join(clauses) + f": {'its' if n == 1 else 'their'} "
            "drift is a change in how many such customers are scored, not in anyone's "
            "purchase gaps"
        )
    if any(f not in NO_VALUE_MEANS for f in features):
        text += (
            "; a changed share without a value is often accounts with no history before the "
            "cutoff (training cutoffs include subscriptions that start on them, a scoring at the "
            "end of the data has none), not a change in the values"
        )
    return text


def score_summary(run: Any, top: int, drift_warning: float) -> list[Any]:
    """What ``churnlab score`` prints: top at-risk and expansion accounts, audiences, files."""
    out: list[Any] = []
    at_risk = run.at_risk
    bands = at_risk.groupby("risk_band")["revenue_at_risk"].agg(["size", "sum"])
    at_stake = _money(at_risk["revenue_at_risk"].sum())
    out.append(
        f"{len(at_risk):,} accounts scored at {run.as_of:%Y-%m-%d}: ARR "
        f"{_money(at_risk['arr'].sum())}, revenue at risk {at_stake} "
        "(" + ", ".join(f"{b} {int(r['size']):,}" for b, r in bands.iterrows()) + ")"
    )
    out.append(
        _lists_table(
            f"Top {min(top, len(at_risk))} at-risk accounts (by revenue at risk)",
            at_risk.head(top),
            [
                ("account_id", "account", "int_text"),
                ("churn_probability", "churn", "pct"),
                ("revenue_at_risk", "at risk", "money"),
                ("reason_1", "first reason", "text"),
                ("play", "play", "int_text"),
            ],  # fmt: skip
        )
    )
    exp = run.expansion
    if exp is not None and len(exp):
        out.append(
            _lists_table(
                f"Top {min(top, len(exp))} expansion accounts (by expected expansion value)",
                exp.head(top),
                [
                    ("account_id", "account", "int_text"),
                    ("expansion_probability", "p", "pct"),
                    ("expected_expansion_value", "value", "money"),
                    ("reason_1", "first reason", "text"),
                    ("offer", "offer", "int_text"),
                ],  # fmt: skip
            )
        )
    elif exp is not None:
        out.append("expansion list: empty (see the note below)")
    else:
        out.append("no expansion list (no expansion model)")
    s = run.audience_summary
    table = Table(title="Campaign audiences", title_justify="left")
    for col in ("campaign", "contacts", "holdout", "cost", "expected value", "net value"):
        table.add_column(col, justify="left" if col == "campaign" else "right", no_wrap=True)
    for r in s.itertuples():
        table.add_row(r.campaign, f"{int(r.contacts):,}", f"{int(r.holdout):,}", _money(r.cost),
                      _money(r.expected_value), _money(r.expected_net_value))  # fmt: skip
    out.append(table)
    sel = run.selection
    out.append(
        f"audience selection: {sel.method} ({sel.status}), gap to the LP bound {sel.gap:.2e}, "
        f"cost {_money(sel.cost)} of budget "
        + ("unlimited" if sel.budget is None else _money(sel.budget))
    )
    drifting = run.drift[run.drift["psi"] > drift_warning]
    if len(drifting):
        out.append(Text.assemble(("warning: ", "bold yellow"), drift_text(drifting, drift_warning)))
    out += [Text.assemble(("note: ", "bold"), n) for n in run.notes]
    models = ", ".join(f"{m.get('name')} v{m.get('version')}" for m in run.models.values())
    out.append(f"models: {models}; MLflow run {run.run_id}")
    out.append(f"lists (CSV and Parquet): {run.folder}/")
    if run.sink:
        out.append(f"also written to: {run.sink}")
    return out


def demo_outputs(run: Any, report_path: Path, kpi_dir: Path, tracking_uri: str) -> list[str]:
    """The demo's last lines: where each output is, as paths to open, one per line."""
    folder = Path(run.folder)
    return [
        f"at-risk list (customer success): {folder / 'at_risk.csv'}",
        f"expansion list (account managers): {folder / 'expansion.csv'}",
        f"campaign audiences with holdouts (marketing): {folder / 'audiences.csv'}",
        f"report, open it in a browser: {Path(report_path).resolve()}",
        f"retention KPIs and plots: {kpi_dir}/",
        f"every run in MLflow: mlflow ui --backend-store-uri {tracking_uri}",
    ]

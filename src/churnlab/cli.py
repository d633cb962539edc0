"""The ``churnlab`` command line (Typer): the commands that build, train and run the pipeline.

params.yaml is loaded once here and each stage gets only its own section. Expected errors
(:class:`churnlab.errors.ChurnlabError`) become one line on stderr and exit code 1 (2 for bad
usage), never a traceback (:func:`churnlab.cli_app.expected_errors`). The commands that act on
the champion models (``score``, ``report``, ``measure``, ``train-uplift``) are in
:mod:`churnlab.cli_actions` and registered here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from churnlab import cli_actions
from churnlab.cli_app import (
    ParamsOpt,
    SourceOpt,
    app,
    console,
    err_console,
    expected_errors,
    get_params,
    spinner,
)
from churnlab.config import Params
from churnlab.errors import ChurnlabError

import_app = typer.Typer(help="Import real datasets into contract tables.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@app.command()
@expected_errors
def validate(
    data: Annotated[
        str | None,
        typer.Argument(
            help="A folder of TABLE.parquet/TABLE.csv files, a DuckDB file, or a database URL "
            "(default: data.source from params.yaml)."
        ),
    ] = None,
    params: ParamsOpt = None,
) -> None:
    """Check a dataset against the data contract and report every problem at once.

    Prints a summary and exits 0 if the data is valid; otherwise prints one line per problem
    (table.column, what is wrong, how many rows, examples, how to fix it) and exits 1.
    """
    from churnlab.load import source_notes
    from churnlab.terminal import print_problems, report_ok
    from churnlab.validate import ValidationFailed, validate_source

    p = get_params(params)
    try:
        with console.status("validating"):
            summary = validate_source(p.data, data)
            summary["warnings"] = [*summary["warnings"], *source_notes(p.data, data)]
    except ValidationFailed as err:
        print_problems(err, err_console)
        raise typer.Exit(1) from None
    report_ok(summary, console)


@import_app.command("online-retail")
@expected_errors
def import_online_retail(
    path: Annotated[
        Path,
        typer.Argument(
            help="The UCI Online Retail II lines: the shared transactions.parquet, or a .csv/"
            ".xlsx/.parquet with the workbook's column names (Invoice, StockCode, Quantity, "
            "InvoiceDate, Price, Customer ID, Country).",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Output folder (default: imports.online_retail_out from params.yaml)."
        ),
    ] = None,
    params: ParamsOpt = None,
) -> None:
    """Turn Online Retail II invoice lines into contract tables accounts and orders.

    Lines without a customer id are dropped (and counted); invoices become orders, cancellations
    (invoice prefix C) become refunds with negative amounts. Use the result with
    `churnlab validate DIR` or `data.source: DIR`.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from churnlab import online_retail

    p = get_params(params)
    target = out if out is not None else Path(p.imports.online_retail_out)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err_console
    ) as bar:
        task = bar.add_task("importing Online Retail II", total=len(online_retail.STEPS))
        summary = online_retail.import_online_retail(
            path, target, progress=lambda step: bar.update(task, advance=1, description=step)
        )
    for line in online_retail.format_summary(summary):
        console.print(line, highlight=False, soft_wrap=True)


@import_app.command("cdnow")
@expected_errors
def import_cdnow(
    path: Annotated[
        Path,
        typer.Argument(
            help="CDNOW_master.txt: one transaction per line, customer id, date (YYYYMMDD), "
            "number of CDs, dollar value (Bruce Hardie's file, or lifetimes/datasets/ in the "
            "lifetimes wheel); or CDNOW_sample.txt, the 1/10 sample (a sample id after the "
            "customer id).",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output folder (default: imports.cdnow_out from params.yaml)."),
    ] = None,
    params: ParamsOpt = None,
) -> None:
    """Turn the CDNOW purchase histories into contract tables accounts and orders.

    Each customer becomes an account created at their first purchase; each transaction an order
    (kind new for the first, renewal after it; $0.00 transactions are kept). Use the result with
    `churnlab validate DIR` or `data.source: DIR`.
    """
    from churnlab import cdnow

    p = get_params(params)
    target = out if out is not None else Path(p.imports.cdnow_out)
    with console.status("importing CDNOW"):
        summary = cdnow.import_cdnow(path, target)
    for line in cdnow.format_summary(summary):
        console.print(line, highlight=False, soft_wrap=True)


DatasetOpt = Annotated[
    Path | None,
    typer.Option("--dataset", help="Training set folder (default: dataset.out from params.yaml)."),
]


@app.command()
@expected_errors
def train(params: ParamsOpt = None, dataset: DatasetOpt = None) -> None:
    """Train the churn and expansion models on the training set and track them in MLflow.

    Splits by cutoff (train earlier / validate next / test on the latest labeled cutoff), fits
    LightGBM with early stopping, calibrates on the validation cutoff, scores both baselines on
    the same test rows, explains with TreeSHAP, logs everything to MLflow, registers
    PREFIX-churn / PREFIX-expansion (PREFIX: tracking.registry_prefix) and moves the
    champion alias only if the new version is not worse than the current champion (and never
    to a model whose test cutoff is degenerate). The champion's bundle is also saved under
    train.out/TASK.

    Exit codes: 0 every task trained, 3 a task was skipped (its reason is printed; the others
    trained and registered), 1 an error.
    """
    from churnlab import pipeline, terminal

    p = get_params(params)
    with spinner("reading the training set") as progress:
        summary = pipeline.train_models(
            p,
            params_path=params,
            dataset_dir=dataset,
            progress=progress,
        )
    for line in terminal.format_summary(summary):
        console.print(line, highlight=False, soft_wrap=True)
    _exit_if_skipped(summary)


SKIPPED_EXIT = 3
"""Exit code of ``train`` (and ``demo``) when some task was skipped and the others trained."""


def _exit_if_skipped(summary: dict[str, Any]) -> None:
    if not summary.get("skipped"):
        return
    if not summary.get("tasks"):
        raise ChurnlabError(
            "no task could be trained: "
            + "; ".join(f"{t}: {r}" for t, r in summary["skipped"].items())
        )
    err_console.print(
        f"[bold yellow]warning:[/] skipped {', '.join(summary['skipped'])} (see above); "
        f"exit code {SKIPPED_EXIT}",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(SKIPPED_EXIT)


@app.command()
@expected_errors
def backtest(
    folds: Annotated[
        int | None,
        typer.Option("--folds", min=1, help="Test cutoffs (default: train.backtest_folds)."),
    ] = None,
    params: ParamsOpt = None,
    dataset: DatasetOpt = None,
) -> None:
    """Repeat the temporal split for the K latest test cutoffs; per-fold metrics, mean and std.

    Each fold retrains from scratch with the same params; results are logged to MLflow (one
    child run per task, fold number as the metric step) and printed.
    """
    from churnlab import pipeline, terminal

    p = get_params(params)
    k = folds if folds is not None else p.train.backtest_folds
    with spinner("reading the training set") as progress:
        result = pipeline.backtest(
            p,
            k,
            params_path=params,
            dataset_dir=dataset,
            progress=progress,
        )
    for line in terminal.format_backtest(result):
        console.print(line, highlight=False, soft_wrap=True)


@app.command()
@expected_errors
def kpis(
    date_from: Annotated[
        dt.datetime | None,
        typer.Option(
            "--from",
            formats=["%Y-%m-%d"],
            help="First day to report (default: kpis.date_from, else the data's start).",
        ),
    ] = None,
    date_to: Annotated[
        dt.datetime | None,
        typer.Option(
            "--to",
            formats=["%Y-%m-%d"],
            help="Last day to report, inclusive (default: kpis.date_to, else the data's end).",
        ),
    ] = None,
    period: Annotated[
        str | None,
        typer.Option("--period", help="month, quarter or week (default: kpis.period)."),
    ] = None,
    source: SourceOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output folder for tables and plots (default: kpis.out)."),
    ] = None,
    log: Annotated[
        bool,
        typer.Option(
            "--log",
            help="Also log the KPIs, tables and plots to a new MLflow run (tracking section).",
        ),
    ] = False,
    predicted: Annotated[
        bool,
        typer.Option(
            "--predicted/--no-predicted",
            help="Add predicted vs realised churn per cutoff and risk band when a trained churn "
            "model (train.out) and the training set (dataset.out) exist.",
        ),
    ] = True,
    params: ParamsOpt = None,
) -> None:
    """Retention KPIs per period: churn, MRR bridge, GRR/NRR, revenue, NPS, campaigns, cohorts.

    Writes monthly.csv/.parquet, cohorts.csv/.parquet, metrics.csv (each KPI's kind: activity or
    outcome) and PNG plots to the output folder, prints the last six periods, and with --log
    records the latest complete period's KPIs as kpi.* metrics in MLflow. Partial periods at the
    edges of the data are flagged and never reported as the latest complete one.
    """
    from churnlab import pipeline, terminal

    p = get_params(params)
    kp = _kpi_params(p, date_from, date_to, period, out)
    with spinner("computing KPIs") as progress:
        done = pipeline.compute_kpis(
            kp,
            p.data,
            p.tracking,
            source=source,
            log=log,
            dataset_dir=Path(p.dataset.out) if predicted else None,
            models_dir=Path(p.train.out) if predicted else None,
            progress=progress,
        )
    console.print(terminal.summary_table(done.result, width=console.width))
    predicted_vs_realised = terminal.predicted_table(done.result)
    if predicted_vs_realised is not None:
        console.print(predicted_vs_realised)
    for note in done.notes:
        console.print(note, highlight=False)
    console.print(f"tables and {len(done.plots)} plots written to {done.out}/", highlight=False)
    if done.run_id is not None:
        console.print(f"logged to MLflow run {done.run_id}", highlight=False)


def _kpi_params(
    p: Params,
    date_from: dt.datetime | None,
    date_to: dt.datetime | None,
    period: str | None,
    out: Path | None,
) -> Any:
    """The ``kpis`` section with the command's options applied."""
    from churnlab.config import KpiParams
    from churnlab.kpi_catalogue import KpiError

    update: dict[str, Any] = p.kpis.model_dump()
    if date_from is not None:
        update["date_from"] = date_from.date()
    if date_to is not None:
        update["date_to"] = date_to.date()
    if period is not None:
        update["period"] = period
    if out is not None:
        update["out"] = str(out)
    try:
        return KpiParams.model_validate(update)
    except ValueError as err:
        raise KpiError(f"--period must be month, quarter or week (got {period!r})") from err


@app.command("build-dataset")
@expected_errors
def build_dataset(
    source: SourceOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output folder (default: dataset.out from params.yaml)."),
    ] = None,
    params: ParamsOpt = None,
) -> None:
    """Build the point-in-time training set: one row per account and cutoff.

    Features use only rows before each cutoff; churn and expansion labels use the following
    dataset.horizon_days. Writes dataset.parquet and manifest.json (cutoffs, positives per cutoff,
    feature descriptions, data fingerprint, params) to the output folder atomically, prints a
    summary per cutoff and warns when a task has too few positives or negatives to train.
    """
    from churnlab import pipeline, terminal

    p = get_params(params)
    with spinner("building the training set") as progress:
        result = pipeline.build_dataset(p, source=source, out=out, progress=progress)
    console.print(terminal.dataset_table(result.manifest))
    console.print(
        f"{result.manifest.rows:,} rows, {len(result.manifest.features)} features -> {result.out}",
        highlight=False,
    )
    for message in (*result.coverage, *result.warnings.values()):
        err_console.print(
            f"[bold yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True
        )


# Registered here rather than where they are defined, so that --help lists every command in
# pipeline order.
app.command()(cli_actions.score)
app.command()(cli_actions.report)
app.command()(cli_actions.measure)
app.command("train-uplift")(cli_actions.train_uplift)


@app.command()
@expected_errors
def serve(
    task: Annotated[
        str, typer.Option("--task", help="Which champion to serve: churn or expansion.")
    ] = "churn",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 5001,
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on (default: this machine only).")
    ] = "127.0.0.1",
    params: ParamsOpt = None,
) -> None:
    """Serve the champion model over HTTP with MLflow's scoring server (until Ctrl-C).

    POST feature rows to http://HOST:PORT/invocations, e.g. with
    `{"dataframe_split": {"columns": [...], "data": [[...]]}}` (the columns of the model's
    signature, one row per account, as `churnlab score` builds them); the answer is
    `{"predictions": [...]}`, the calibrated probabilities. It runs in this project's own Python
    environment (no conda or virtualenv is created).
    """
    from churnlab import serving

    if task not in ("churn", "expansion"):
        raise ChurnlabError(f"--task {task!r}: use churn or expansion")
    p = get_params(params)
    command, env, uri = serving.command(p, task, host, port)
    console.print(f"serving {uri} on http://{host}:{port}/invocations (Ctrl-C stops it)",
                  highlight=False, soft_wrap=True)  # fmt: skip
    raise typer.Exit(serving.run(command, env))


@app.command()
@expected_errors
def demo(
    accounts: Annotated[
        int | None,
        typer.Option("--accounts", min=1, help="Synthetic accounts (default: synth.accounts)."),
    ] = None,
    months: Annotated[
        int | None,
        typer.Option("--months", min=1, help="Synthetic months (default: synth.months)."),
    ] = None,
    params: ParamsOpt = None,
) -> None:
    """Run every stage end to end on the embedded defaults, ending in lists people use.

    1 synth (a synthetic SaaS company into synth.out), 2 validate it against the data contract,
    3 build-dataset (point-in-time training set), 4 train (churn and expansion models, SHAP,
    registry; the retention KPIs are logged in the same MLflow run), 5 kpis (tables and plots
    into kpis.out), 6 score (the at-risk list, the expansion list and campaign audiences at the
    data end), 7 report (one HTML page to open). The data source is always the synthetic world,
    whatever data.source says. It ends by printing where everything is.
    """
    from churnlab import actions, pipeline, reporting, synth, terminal
    from churnlab.validate import validate_source

    p = get_params(params)
    synth_params = p.synth.model_copy(
        update={k: v for k, v in {"accounts": accounts, "months": months}.items() if v}
    )
    p = p.model_copy(
        update={"synth": synth_params, "data": p.data.model_copy(update={"source": p.synth.out})}
    )

    def stage(title: str) -> contextlib.AbstractContextManager[Callable[[str], None]]:
        console.rule(title)
        return spinner("starting", transient=True)

    with stage(f"1/7 synth: {p.synth.accounts:,} accounts x {p.synth.months} months") as progress:
        s = synth.run(
            p.synth, progress=lambda step, done, total: progress(f"{step} {done}/{total}")
        )
    console.print(
        f"wrote {sum(s['rows'].values()):,} rows to {s['out']}/ "
        f"({', '.join(f'{k} {v:,}' for k, v in s['rows'].items())})",
        highlight=False,
    )

    console.rule("2/7 validate")
    terminal.report_ok(validate_source(p.data), console)

    with stage("3/7 build-dataset") as progress:
        d = pipeline.build_dataset(p, progress=progress)
    m = d.manifest
    console.print(
        f"{m.rows:,} rows x {len(m.features)} features over {len(m.cutoffs)} cutoffs "
        f"({m.mode} mode) -> {d.out}",
        highlight=False,
    )
    for message in (*d.coverage, *d.warnings.values()):
        err_console.print(
            f"[bold yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True
        )

    with stage("4/7 train") as progress:
        summary = pipeline.train_models(p, params_path=params, progress=progress)
    for line in terminal.format_summary(summary):
        console.print(line, highlight=False, soft_wrap=True)

    with stage("5/7 kpis") as progress:
        done = pipeline.compute_kpis(
            p.kpis,
            p.data,
            p.tracking,
            dataset_dir=Path(p.dataset.out),
            models_dir=Path(p.train.out),
            progress=progress,
        )
    console.print(terminal.summary_table(done.result, width=console.width))
    console.print(f"KPI tables and {len(done.plots)} plots in {done.out}/", highlight=False)

    with stage("6/7 score") as progress:
        run = actions.score_accounts(p, progress=progress)
    for renderable in terminal.score_summary(run, p.score.top, p.score.drift_warning):
        console.print(renderable, highlight=False, soft_wrap=True)

    with stage("7/7 report") as progress:
        page = reporting.build_report(p, as_of=run.as_of, progress=progress)
    console.rule("done: where everything is")
    for line in terminal.demo_outputs(run, page.path, done.out, summary["tracking_uri"]):
        console.print(line, highlight=False, soft_wrap=True)
    _exit_if_skipped(summary)


@app.command("synth")
@expected_errors
def synth_cmd(
    accounts: Annotated[
        int | None,
        typer.Option("--accounts", min=1, help="Number of accounts (default: synth.accounts)."),
    ] = None,
    months: Annotated[
        int | None,
        typer.Option("--months", min=1, help="Months to simulate (default: synth.months)."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Random seed (default: synth.seed).")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--start", help="First month, YYYY-MM-01 (default: synth.start)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output folder, replaced atomically (default: synth.out)."),
    ] = None,
    params: ParamsOpt = None,
) -> None:
    """Generate a synthetic B2B SaaS company: the seven contract tables plus oracle/.

    Writes OUT/TABLE.parquet and OUT/oracle/{oracle,realised}.parquet (the true churn and
    expansion probabilities per account and month start, ignored by loading). The same seed
    gives byte-identical files.
    """
    import datetime as dt

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from churnlab import synth, terminal

    p = get_params(params)
    update: dict[str, Any] = {"accounts": accounts, "months": months, "seed": seed}
    if start is not None:
        try:
            update["start"] = dt.date.fromisoformat(start)
        except ValueError:
            raise ChurnlabError(
                f"--start {start!r} is not a date: use YYYY-MM-01, e.g. 2024-01-01"
            ) from None
    update = {k: v for k, v in update.items() if v is not None}
    sp = p.synth.model_copy(update=update)
    if sp.start.day != 1:
        raise ChurnlabError(f"--start {sp.start} must be the first day of a month, e.g. 2024-01-01")
    target = out if out is not None else Path(sp.out)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("simulating months", total=sp.months)

        def progress(stage: str, done: int, total: int) -> None:
            label = "simulating months" if stage == "simulate" else "writing parquet"
            bar.update(task, description=label, completed=done, total=total)

        summary = synth.run(sp, target, progress=progress)
    table, rates = terminal.synth_summary(summary)
    console.print(table)
    console.print(rates, highlight=False)


def main() -> None:  # pragma: no cover - console entry point for `python -m churnlab`
    """Run the CLI and exit 0."""
    app()
    sys.exit(0)

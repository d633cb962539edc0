"""The ``churnlab`` command line (Typer).

params.yaml is loaded once here and each stage gets only its own section. Expected errors
(:class:`churnlab.errors.ChurnlabError`) become one line on stderr and exit code 1 (2 for bad
usage), never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from churnlab.config import Params, load_params
from churnlab.errors import ChurnlabError

app = typer.Typer(
    help="churnlab: point-in-time churn and expansion models, reasons, and retention KPIs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
import_app = typer.Typer(help="Import real datasets into contract tables.", no_args_is_help=True)
app.add_typer(import_app, name="import")

console = Console()
err_console = Console(stderr=True)

ParamsOpt = Annotated[
    Path | None,
    typer.Option("--params", help="params.yaml to read (default: ./params.yaml if present)."),
]

F = TypeVar("F", bound=Callable[..., Any])


def expected_errors(fn: F) -> F:
    """Turn expected errors into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ChurnlabError as err:
            err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def get_params(path: Path | None) -> Params:
    """Load params.yaml once per command."""
    return load_params(path)


@app.command()
@expected_errors
def validate(
    data: Annotated[
        str | None,
        typer.Argument(
            help="A folder of <table>.parquet/.csv files, a DuckDB file, or a database URL "
            "(default: data.source from params.yaml)."
        ),
    ] = None,
    params: ParamsOpt = None,
) -> None:
    """Check a dataset against the data contract and report every problem at once."""
    from churnlab.validate import report_ok, validate_source

    p = get_params(params)
    summary = validate_source(p.data, data)
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


def main() -> None:  # pragma: no cover - console entry point for `python -m churnlab`
    app()
    sys.exit(0)

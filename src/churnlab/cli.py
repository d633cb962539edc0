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


def main() -> None:  # pragma: no cover - console entry point for `python -m churnlab`
    app()
    sys.exit(0)

"""The ``churnlab`` Typer app and what every command shares.

The app itself, the consoles, the options every command takes (``--params``, ``--source``), the
spinner, and :func:`expected_errors`: expected errors (:class:`churnlab.errors.ChurnlabError`)
become one line on stderr and exit code 1 (2 for bad usage), never a traceback. params.yaml is
loaded once per command (:func:`get_params`) and each stage gets only its own section. The
commands live in :mod:`churnlab.cli` and :mod:`churnlab.cli_actions`.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from churnlab.config import Params, load_params
from churnlab.errors import ChurnlabError
from churnlab.sources import mask_password

# MLflow's INFO lines (database migrations, experiment creation) interleave with the command's
# own output; warnings still show. MLFLOW_LOGGING_LEVEL set by the user wins.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

app = typer.Typer(
    help="churnlab: point-in-time churn and expansion models, reasons, and retention KPIs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",
)

console = Console()
err_console = Console(stderr=True)

ParamsOpt = Annotated[
    Path | None,
    typer.Option("--params", help="params.yaml to read (default: ./params.yaml if present)."),
]

SourceOpt = Annotated[
    str | None,
    typer.Option(
        "--source", help="Data folder, DuckDB file or database URL (default: data.source)."
    ),
]

F = TypeVar("F", bound=Callable[..., Any])


def expected_errors(fn: F) -> F:
    """Turn expected errors into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ChurnlabError as err:
            # escape: messages quote user data, which must not be read as rich markup; a URL in
            # a message never shows its password.
            message = escape(mask_password(str(err)))
            err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def spinner(description: str, transient: bool = False) -> Iterator[Callable[[str], None]]:
    """A rich spinner on stderr for a step of unknown length; yields ``progress(message)``."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=transient,
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda message: bar.update(task, description=message)


def get_params(path: Path | None) -> Params:
    """Load params.yaml once per command."""
    return load_params(path)

"""The notebooks run, small, in the project's own Python, and are stored as text without outputs.

Each notebook is a jupytext percent-format script (``notebooks/NN_name.py``, the source of truth
in git). Here it is read with jupytext, its ``parameters`` cell is followed by an injected cell
with small sizes and a temporary output folder (what papermill does), and nbclient executes it
in a kernel started from this interpreter (``sys.executable``), with this checkout's ``src``
first on the path. A cell that raises fails the test with the cell and its traceback.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
NAMES = ("01_explore", "02_train_and_explain", "03_target_campaigns", "04_online_retail")
TRANSACTIONS = REPO.parent / "shared" / "data" / "online_retail" / "transactions.parquet"
KERNEL = "churnlab-tests"
CELL_TIMEOUT = 600  # seconds; the whole of a small notebook takes well under a minute

# The sizes CI runs at (each notebook's parameters cell holds the full-size defaults).
SMALL: dict[str, dict[str, object]] = {
    "01_explore": {"ACCOUNTS": 600, "MONTHS": 15},
    "02_train_and_explain": {"ACCOUNTS": 800, "MONTHS": 15},
    "03_target_campaigns": {"ACCOUNTS": 800, "MONTHS": 15},
    "04_online_retail": {"TRAIN_FROM": "2010-10-01"},
}


def _transactions() -> Path:
    path = Path(os.environ.get("CHURNLAB_ONLINE_RETAIL", TRANSACTIONS))
    if not path.is_file():
        pytest.fail(
            f"the shared Online Retail II file is missing: expected {path} (the repo's sibling "
            "folder shared/data/online_retail/transactions.parquet, or set CHURNLAB_ONLINE_RETAIL)"
        )
    return path


def _with_parameters(nb: nbformat.NotebookNode, values: dict[str, object]) -> None:
    """Insert a cell assigning ``values`` right after the cell tagged ``parameters``."""
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "a notebook needs exactly one cell tagged `parameters`"
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(tagged[0] + 1, cell)


def _kernel(tmp: Path) -> AsyncKernelManager:
    """A kernel manager for this interpreter only, whatever kernels the machine has installed."""
    spec = tmp / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "churnlab tests", "language": "python"})
    )
    specs = KernelSpecManager(kernel_dirs=[str(spec.parent)], ensure_native_kernel=False)
    # Unix sockets in tmp, not TCP ports: the kernel talks to nothing but this process.
    return AsyncKernelManager(
        kernel_name=KERNEL,
        kernel_spec_manager=specs,
        transport="ipc",
        ip=str(tmp / "kernel-ipc"),
        connection_file=str(tmp / "kernel-connection.json"),
    )


def _kernel_env() -> dict[str, str]:
    # No MLflow store from the caller's shell; the kernel's own inline plots (MPLBACKEND=agg, as
    # some shells set it, would swallow them).
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MPLBACKEND")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


def _snapshot() -> dict[str, float]:
    """What the repository holds outside tmp: the notebooks folder and the default MLflow store."""
    paths = [p for p in NOTEBOOKS.rglob("*") if "__pycache__" not in p.parts]
    paths += [REPO / "mlflow.db", REPO / "mlruns"]
    return {str(p): p.stat().st_mtime for p in paths if p.exists()}


def _python_files() -> list[Path]:
    return [NOTEBOOKS / f"{name}.py" for name in NAMES]


def test_the_notebooks_are_the_four_documented_ones() -> None:
    scripts = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    assert scripts == list(NAMES)


# The Online Retail notebook (40-50 s) runs with -m slow: the default suite runs the same
# import, build, train and report on that data in test_report_pipeline's browser test.
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n == "04_online_retail" else n for n in NAMES],
)
def test_notebook_runs_small(name: str, tmp_path: Path) -> None:
    nb = jupytext.read(NOTEBOOKS / f"{name}.py")
    values = {**SMALL[name], "OUTPUTS": str(tmp_path / "outputs")}
    if name == "04_online_retail":
        values["TRANSACTIONS"] = str(_transactions())
    _with_parameters(nb, values)
    # The kernel is this interpreter: the notebook sees the same churnlab as the tests.
    nb.cells.insert(0, nbformat.v4.new_code_cell(
        f"import sys\nassert sys.executable == {sys.executable!r}, sys.executable"
    ))  # fmt: skip
    before = _snapshot()
    client = NotebookClient(
        nb,
        km=_kernel(tmp_path),
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    started = time.perf_counter()
    client.execute(env=_kernel_env(), cleanup_kc=True)  # and stop the kernel: we made its manager
    print(f"{name}: executed in {time.perf_counter() - started:.1f} s")
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    # Everything the notebook wrote is under its OUTPUTS folder, never in the repository.
    assert _snapshot() == before
    assert (tmp_path / "outputs" / name).is_dir()
    if name != "01_explore":
        assert (tmp_path / "outputs" / name / "mlflow.db").is_file()


def _tracked_notebook_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "--", "notebooks"],
            cwd=REPO, capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):  # not a git checkout: whatever is on disk
        return [p for p in NOTEBOOKS.rglob("*") if p.is_file() and "outputs" not in p.parts]
    return [REPO / line for line in out.stdout.splitlines()]


def test_no_notebook_has_outputs_committed() -> None:
    tracked = _tracked_notebook_files()
    for path in tracked:
        if path.suffix == ".ipynb":
            nb = nbformat.read(path, as_version=4)
            with_outputs = [i for i, c in enumerate(nb.cells) if c.get("outputs")]
            counted = [i for i, c in enumerate(nb.cells) if c.get("execution_count")]
            assert not with_outputs and not counted, (
                f"{path.name} is committed with outputs (cells {with_outputs or counted}): "
                "strip them, or better, keep only its jupytext .py"
            )
    # The text scripts are the notebooks; an .ipynb made from one is git-ignored.
    assert {p.name for p in tracked if p.suffix == ".py"} == {f"{n}.py" for n in NAMES}
    for made in ("notebooks/01_explore.ipynb", "notebooks/outputs/01_explore/mlflow.db"):
        ignored = subprocess.run(["git", "check-ignore", "-q", made], cwd=REPO, timeout=30)
        assert ignored.returncode in (0, 128), f"{made} is not git-ignored"  # 128: no git


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: p.stem)
def test_notebook_imports_churnlab_and_defines_nothing(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0] for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }  # fmt: skip
    assert "churnlab" in imported
    defined = [
        node.name for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    ]  # fmt: skip
    assert defined == [], f"{path.name} defines {defined}: put shared code in src/churnlab"
    params = jupytext.read(path).cells
    tagged = [c for c in params if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "OUTPUTS" in tagged[0].source


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: p.stem)
def test_notebook_text_is_what_jupytext_writes(path: Path) -> None:
    # Saving from Jupyter (or `jupytext --to py:percent`) then changes only what was edited.
    text = path.read_text()
    assert jupytext.writes(jupytext.reads(text, fmt="py:percent"), fmt="py:percent") == text


def test_nothing_imports_the_notebooks() -> None:
    for folder in ("src", "tests", "benchmarks"):
        for path in (REPO / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = (
                    [a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                )  # fmt: skip
                assert not any(n.split(".")[0] == "notebooks" for n in names), path

"""`churnlab validate` on the bad-input corpus: the specific message, exit 1, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from churnlab.cli import app

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = sorted(d.name for d in CORPUS.iterdir() if d.is_dir() and not d.name.startswith("_"))


@pytest.fixture(scope="module")
def default_params(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Passed explicitly so that the working directory's params.yaml cannot change the outcome.
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text("data: {}\n")
    return path


def run_validate(folder: Path, default_params: Path):
    params = folder / "params.yaml"
    args = ["validate", str(folder), "--params", str(params if params.exists() else default_params)]
    return CliRunner().invoke(app, args)


def expected_lines(folder: Path) -> list[str]:
    return [line for line in (folder / "expected.txt").read_text().splitlines() if line]


def problem_lines(stderr: str) -> list[str]:
    return [line.strip() for line in stderr.splitlines() if line.startswith("  ")]


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_reported(case: str, default_params: Path) -> None:
    folder = CORPUS / case
    result = run_validate(folder, default_params)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    lines = problem_lines(result.stderr)
    for expected in expected_lines(folder):
        where, _, phrase = expected.partition(": ")
        hits = [line for line in lines if line.startswith(f"{where}: ") and phrase in line]
        assert hits, f"{case}: no line '{expected}' in\n{result.stderr}"
        # Every reported problem says how to fix it.
        assert all("fix: " in line for line in hits)


def test_several_problems_are_reported_at_once(default_params: Path) -> None:
    folder = CORPUS / "_several_problems"
    result = run_validate(folder, default_params)
    assert result.exit_code == 1
    expected = expected_lines(folder)
    lines = problem_lines(result.stderr)
    assert f"{len(expected)} problems found" in result.stderr
    assert len(lines) == len(expected)
    for want in expected:
        where, _, phrase = want.partition(": ")
        assert any(line.startswith(f"{where}: ") and phrase in line for line in lines), want


def test_valid_dataset_exits_0(default_params: Path) -> None:
    result = run_validate(CORPUS / "_valid", default_params)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "meets the data contract" in result.stdout
    for table in ("accounts", "subscriptions", "orders", "events", "campaign_events", "tickets"):
        assert table in result.stdout


def test_data_values_are_not_read_as_markup(tmp_path: Path, default_params: Path) -> None:
    # A rich-markup-looking value must be printed literally, not styled away.
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "accounts.csv").write_text("account_id,created_at\na1,2024-01-01\n")
    (folder / "orders.csv").write_text(
        "account_id,ordered_at,amount,kind\na1,2024-02-01,10,[bold]upgrade[/bold]\n"
    )
    result = run_validate(folder, default_params)
    assert result.exit_code == 1
    assert "[bold]upgrade[/bold]" in result.stderr


def test_real_console_script_prints_no_traceback(default_params: Path) -> None:
    # The installed entry point, in a fresh process, exactly as a user runs it.
    exe = Path(sys.executable).parent / "churnlab"
    proc = subprocess.run(
        [str(exe), "validate", str(CORPUS / "_several_problems"), "--params", str(default_params)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "subscriptions.end_at: end_at before start_at" in proc.stderr

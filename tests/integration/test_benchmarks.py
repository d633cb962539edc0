"""Every benchmark script runs end to end at a tiny size and prints its ratio line.

The figures themselves are not checked (timings are machine-dependent and belong in the scripts'
output, not in assertions); this keeps the scripts from breaking unnoticed as the code changes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"

CASES = {
    "audiences": (["audiences.py", "--accounts", "2000"], "audiences.select"),
    "synth": (["synth.py", "--accounts", "200", "--months", "13"], "ratio synth wall"),
    "validate-synth": (
        ["validate.py", "--accounts", "200", "--months", "13", "--repeat", "1"],
        "ratio validate / reference",
    ),
    "validate-numpy": (
        [
            "validate.py",
            "--source",
            "numpy",
            "--events",
            "20000",
            "--accounts",
            "200",
            "--months",
            "13",
            "--repeat",
            "1",
        ],
        "ratio validate / reference",
    ),  # fmt: skip
    "features": (
        ["features.py", "--accounts", "300", "--months", "18", "--world", "{tmp}/world"],
        ("ratio build / reference", "outside the events passes"),
    ),
    "kpis": (["kpis.py", "--accounts", "200", "--months", "13"], "kpis.compute, 13 monthly"),
    "train": (["train.py", "--accounts", "600", "--rows", "2000"], "reasons for 2,000 accounts"),
    "score": (
        ["score.py", "--accounts", "500", "--train-accounts", "500", "--months", "14"],
        "ratio reasons",
    ),
}


SLOW = {
    # a Spark session (JVM start-up) and two Spark builds: minutes, not seconds
    "spark_scale": (
        ["spark_scale.py", "--accounts", "100", "--scales", "1,2", "--months", "13",
         "--worlds", "{tmp}/worlds", "--partitions", "2"],
        "ratio spark / duckdb build",
    ),
}  # fmt: skip


def test_every_benchmark_script_is_covered() -> None:
    scripts = {p.name for p in BENCH.glob("*.py")}
    assert scripts == {args[0] for args, _ in (CASES | SLOW).values()}


@pytest.mark.parametrize(
    "case",
    [*sorted(CASES), *(pytest.param(c, marks=[pytest.mark.slow, pytest.mark.spark]) for c in SLOW)],
)
def test_benchmark_runs_small(case: str, tmp_path: Path) -> None:
    args, expected = (CASES | SLOW)[case]
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run(
        [sys.executable, str(BENCH / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for line in (expected,) if isinstance(expected, str) else expected:
        assert line in proc.stdout, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr

"""A training set too large for the machine's memory is refused before it is filled.

Without the check the feature matrix is allocated lazily and the system kills the process
minutes later, in the middle of the passes, with no message.
"""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from churnlab import features, synth
from churnlab.cli import app
from churnlab.config import SynthParams


def test_a_build_that_cannot_fit_is_refused_with_what_to_change(tmp_path, monkeypatch) -> None:
    synth.run(SynthParams(accounts=300, months=14, seed=5), out=tmp_path / "world")
    out = tmp_path / "ds"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"source": str(tmp_path / "world")},
                                      "dataset": {"out": str(out)}}))  # fmt: skip
    seen: list[tuple[int, int]] = []
    check = features.check_memory

    def small_machine(rows: int, columns: int) -> None:
        seen.append((rows, columns))
        check(rows, columns)

    monkeypatch.setattr(features, "check_memory", small_machine)
    monkeypatch.setattr(features, "available_memory", lambda: 1 << 20)  # 1 MiB
    result = CliRunner().invoke(app, ["build-dataset", "--params", str(params)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    rows, columns = seen[0]
    assert rows > 1000 and columns > 50
    assert f"the features need about 0.0 GiB of memory ({rows:,} rows x {columns} numeric" in text
    assert "and 0.0 GiB is available: build fewer rows (a later dataset.cutoff_start" in text
    assert "dataset.engine: spark" in text
    assert not out.exists()  # nothing half-written
    # with the memory there, the same build goes through
    monkeypatch.setattr(features, "available_memory", lambda: 1 << 40)
    again = CliRunner().invoke(app, ["build-dataset", "--params", str(params)])
    assert again.exit_code == 0, again.output
    assert (out / "manifest.json").is_file()


def test_the_check_is_silent_where_memory_is_unknown_or_enough(monkeypatch) -> None:
    monkeypatch.setattr(features, "available_memory", lambda: None)
    features.check_memory(10**9, 10**3)  # unknown (not Linux): no refusal on a guess
    monkeypatch.setattr(features, "available_memory", lambda: 12 * 10**6)
    features.check_memory(10_000, 100)  # 8 MB x 1.5 = 12 MB: fits exactly
    with pytest.raises(features.FeatureError, match="need about"):
        features.check_memory(10_001, 100)
    assert features.available_memory() is None or features.available_memory() > 0

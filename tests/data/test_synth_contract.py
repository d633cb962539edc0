"""The synthetic world on disk: determinism, atomic output, and the data contract."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from churnlab import load, synth
from churnlab.config import DataParams, SynthParams
from churnlab.schema import TABLES

SMALL = SynthParams(accounts=400, months=14, seed=21)
# The contract tables the default world writes (treatments only with synth.campaigns on).
WRITTEN = [t for t in TABLES if t != "treatments"]


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.parquet"))
    }


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "world"
    synth.run(SMALL, out)
    return out


def test_writes_every_contract_table_and_the_oracle(world_dir: Path) -> None:
    names = {p.name for p in world_dir.iterdir()}
    assert names == {f"{t}.parquet" for t in WRITTEN} | {"oracle"}
    assert {p.name for p in (world_dir / "oracle").iterdir()} == {
        "oracle.parquet",
        "realised.parquet",
    }


def test_same_seed_gives_byte_identical_files(world_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    synth.run(SMALL, again)
    first, second = _hashes(world_dir), _hashes(again)
    assert len(first) == 9
    assert first == second


def test_different_seed_gives_different_files(world_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    synth.run(SMALL.model_copy(update={"seed": 22}), other)
    first, second = _hashes(world_dir), _hashes(other)
    assert all(first[k] != second[k] for k in first)


def test_output_validates_and_loads_with_contract_types(world_dir: Path) -> None:
    con = load.load(DataParams(source=str(world_dir)))
    assert load.present_tables(con) == WRITTEN
    assert load.data_end(con, DataParams()) == pd.Timestamp("2025-03-01").to_pydatetime()
    types = {
        (r[0], r[1]): r[2]
        for r in con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'main'"
        ).fetchall()
    }
    for name in WRITTEN:
        for col in TABLES[name].columns:
            assert types[(name, col.name)] == col.dtype, (name, col.name)
    n_events = con.execute("SELECT count(*) FROM events").fetchone()[0]
    assert n_events == pd.read_parquet(world_dir / "events.parquet").shape[0]


def test_realised_activity_matches_subscriptions_in_sql(world_dir: Path) -> None:
    con = load.load(DataParams(source=str(world_dir)))
    real = pd.read_parquet(world_dir / "oracle" / "realised.parquet")
    con.register("realised", real)
    mismatches = con.execute(
        """
        SELECT count(*) FROM realised r
        WHERE r.active <> EXISTS (
            SELECT 1 FROM subscriptions s
            WHERE s.account_id = r.account_id AND s.start_at <= r.cutoff
              AND (s.end_at IS NULL OR r.cutoff < s.end_at))
        """
    ).fetchone()[0]
    assert mismatches == 0


def test_failed_run_keeps_earlier_output(world_dir: Path, tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "kept"
    synth.run(SMALL, target)
    before = _hashes(target)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synth.pq, "write_table", boom)
    with pytest.raises(RuntimeError):
        synth.run(SMALL.model_copy(update={"seed": 99}), target)
    assert _hashes(target) == before
    # no temp folder left behind (the hidden .kept.v* siblings are the published versions)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["kept"]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".link-" in p.name]

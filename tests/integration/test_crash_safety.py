"""Crash injection for every writer: killed at any step, the previous output stays readable.

Each writer (synth, import, dataset, models, KPIs) first writes version A of its output. Then, for
every step of writing version B (content complete but unpublished, before each rename or link
in the output folder, and after the last one), a child process is killed there with ``os._exit`` (no
cleanup code runs, as with ``kill -9``). After each kill the output reads as exactly A or exactly
B, never missing or mixed; the next normal write succeeds and leaves no temporaries behind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from churnlab import dataset, pipeline, synth, train
from churnlab.config import SynthParams, TrainParams
from churnlab.load import write_tables
from planted import planted_training_set

TESTS = Path(__file__).resolve().parents[1]
CHILD = TESTS / "crash_child.py"


def _digest(path: Path) -> str:
    """A fingerprint of an output's content through its link: file names and what they hold.

    Tables are compared by their values rounded to 6 digits (DuckDB's parallel sums differ in
    the last bits from run to run), images by name only (matplotlib's bytes depend on the
    process's font cache); everything else byte for byte. That still tells version A from B.
    """
    h = hashlib.sha256()
    root = path.resolve()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode())
        if f.suffix in (".csv", ".parquet"):
            frame = pd.read_csv(f) if f.suffix == ".csv" else pd.read_parquet(f)
            h.update(frame.round(6).to_csv(index=False).encode())
        elif f.suffix != ".png":
            h.update(f.read_bytes())
    return h.hexdigest()


def _run(
    writer: str, watched: Path, step: int, when: str, args: dict
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHILD), writer, str(watched), str(step), when, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=watched,
    )


def _temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name or ".link-" in p.name]


def _exercise(writer: str, outputs: list[Path], args_a: dict, args_b: dict) -> None:
    watched = outputs[0].parent
    done = _run(writer, watched, -1, "before", args_a)
    assert done.returncode == 0, done.stderr
    old = {o: _digest(o) for o in outputs}
    probe = _run(writer, watched, -1, "before", args_b)
    assert probe.returncode == 0, probe.stderr
    new = {o: _digest(o) for o in outputs}
    assert old != new, "versions A and B must differ for the test to mean anything"
    steps = json.loads(probe.stdout.strip().splitlines()[-1])["steps"]
    assert steps >= 3  # a version rename, a link, a link swap per output at least
    # Just after step k is the same state as just before step k + 1 (nothing touches the output
    # folder in between), so: before every step, and after the last one.
    points = [(k, "before") for k in range(steps + 1)] + [(steps, "after")]
    for step, when in points:
        back = _run(writer, watched, -1, "before", args_a)  # start from version A
        assert back.returncode == 0, back.stderr
        killed = _run(writer, watched, step, when, args_b)
        assert killed.returncode == 137, (step, when, killed.stderr)
        for o in outputs:
            assert o.exists(), f"{o} missing after a kill at step {step} ({when})"
            assert _digest(o) in (old[o], new[o]), f"{o} mixed after step {step} ({when})"
    final = _run(writer, watched, -1, "before", args_b)
    assert final.returncode == 0, final.stderr
    assert {o: _digest(o) for o in outputs} == new
    assert _temporaries(watched) == []


def test_synth_survives_a_kill_at_every_step(tmp_path: Path) -> None:
    out = tmp_path / "world"
    small = {"accounts": 40, "months": 6}
    _exercise("synth", [out], {"params": {**small, "seed": 1}, "out": str(out)},
              {"params": {**small, "seed": 2}, "out": str(out)})  # fmt: skip


def test_import_survives_a_kill_at_every_step(tmp_path: Path) -> None:
    def lines(n: int) -> Path:
        path = tmp_path / f"lines{n}.parquet"
        pd.DataFrame(
            {
                "invoice": [f"{500000 + i}" for i in range(n)],
                "stock_code": ["X"] * n,
                "description": ["thing"] * n,
                "quantity": pd.array([1] * n, dtype="int32"),
                "invoice_date": pd.date_range("2010-01-01", periods=n, freq="D"),
                "unit_price": [2.5] * n,
                "customer_id": pd.array([10 + i % 3 for i in range(n)], dtype="Int32"),
                "country": ["United Kingdom"] * n,
            }
        ).to_parquet(path, index=False)
        return path

    out = tmp_path / "imported" / "retail"
    out.parent.mkdir()
    _exercise("import", [out], {"source": str(lines(5)), "out": str(out)},
              {"source": str(lines(9)), "out": str(out)})  # fmt: skip


def test_dataset_survives_a_kill_at_every_step(tmp_path: Path) -> None:
    sources = []
    for seed in (1, 2):
        frame, manifest, _ = planted_training_set(n_accounts=50, n_cutoffs=4, seed=seed)
        sources.append(dataset.write(frame, manifest, tmp_path / f"src{seed}"))
    out = tmp_path / "out" / "dataset"
    out.parent.mkdir()
    _exercise("dataset", [out], {"source": str(sources[0]), "out": str(out)},
              {"source": str(sources[1]), "out": str(out)})  # fmt: skip


def test_models_survive_a_kill_at_every_step(tmp_path: Path) -> None:
    params = TrainParams(
        lightgbm={
            "objective": "binary",
            "n_estimators": 20,
            "num_leaves": 7,
            "verbose": -1,
            "min_child_samples": 20,
            "num_threads": 1,
        },  # fmt: skip
        early_stopping_rounds=5,
    )
    saved = {}
    for seed in (1, 2):
        frame, manifest, _ = planted_training_set(n_accounts=300, n_cutoffs=12, seed=seed)
        bundles = {t: train.train_task(frame, manifest, t, params).bundle for t in ("churn",)}
        dirs = pipeline.save_bundles(bundles, tmp_path / f"b{seed}")
        saved[seed] = {t: str(p) for t, p in dirs.items()}
    out = tmp_path / "models"
    out.mkdir()
    _exercise("models", [out / "churn"], {"bundles": saved[1], "out": str(out)},
              {"bundles": saved[2], "out": str(out)})  # fmt: skip


@pytest.fixture(scope="module")
def two_worlds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("kpi-worlds")
    worlds = []
    for seed in (1, 2):
        world = synth.generate(SynthParams(accounts=40, months=6, seed=seed))[0]
        write_tables(world, root / f"w{seed}")
        worlds.append(root / f"w{seed}")
    return worlds[0], worlds[1]


def test_kpis_survive_a_kill_at_every_step(tmp_path: Path, two_worlds: tuple[Path, Path]) -> None:
    out = tmp_path / "reports" / "kpis"
    out.parent.mkdir()
    as_of = dt.datetime(2024, 7, 1).isoformat()
    _exercise("kpis", [out], {"source": str(two_worlds[0]), "out": str(out), "as_of": as_of},
              {"source": str(two_worlds[1]), "out": str(out), "as_of": as_of})  # fmt: skip

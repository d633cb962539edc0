"""The data fingerprint on DuckDB, and which manifests it is compared with.

DuckDB's hash reads each table's row count, time range and (account, time) pairs; a Spark-built
manifest carries Spark's own, tagged hash, compared only on Spark (``test_spark_parity.py``).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from test_leakage import literal_tables

from churnlab import dataset, load
from churnlab.manifest import Manifest


def fingerprint_of(frames: dict[str, pd.DataFrame]) -> str:
    """The fingerprint of typed contract frames (``load.connect_frames``: no validation)."""
    con = load.connect_frames(frames)
    try:
        return dataset.fingerprint(con)
    finally:
        con.close()


def test_same_data_same_fingerprint_in_any_row_order():
    frames = literal_tables()
    shuffled = {k: v.iloc[::-1].reset_index(drop=True) for k, v in frames.items()}
    first = fingerprint_of(frames)
    assert first == fingerprint_of(frames) == fingerprint_of(shuffled)
    assert not first.startswith(dataset.SPARK_FINGERPRINT) and len(first) == 16


@pytest.mark.parametrize("table", sorted(literal_tables()))
def test_fingerprint_changes_when_a_table_gains_loses_or_moves_a_row(table):
    frames = literal_tables()
    base = fingerprint_of(frames)
    frame = frames[table]
    time = next(c for c in frame.columns if c.endswith("_at"))
    moved = frame.copy()
    moved.loc[moved.index[-1], time] += dt.timedelta(microseconds=1)
    other = frame.assign(account_id=frame["account_id"].where(frame.index != 0, "zz"))
    for changed in (frame.iloc[:-1], pd.concat([frame, frame.iloc[:1]]), moved, other):
        assert fingerprint_of({**frames, table: changed}) != base


def _manifest(fingerprint: str) -> Manifest:
    return Manifest(
        mode="contractual", horizon_days=30, windows=(7,), data_end="2024-08-01", cutoffs=(),
        per_cutoff=(), rows=0, features=(), data_fingerprint=fingerprint,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [("same", False), ("other", True), ("", None), ("spark:3f2a9c0d11b7e645", None)],
)
def test_data_changed_compares_like_with_like(recorded, expected):
    """DuckDB's hash against the data; no fingerprint, or Spark's, cannot tell here."""
    frames = literal_tables()
    other = fingerprint_of({**frames, "nps": frames["nps"].iloc[:-1]})
    value = {"same": fingerprint_of(frames), "other": other}.get(recorded, recorded)
    con = load.connect_frames(frames)
    try:
        assert dataset.data_changed(con, _manifest(value)) is expected
    finally:
        con.close()


def test_build_records_the_connections_fingerprint_and_fails_with_its_own_error():
    """``build`` hashes the data on a worker cursor while it runs: the manifest gets the same
    hash as ``fingerprint``; a build that fails raises its own error (the worker is interrupted)
    and the connection stays usable."""
    from churnlab.config import DataParams, DatasetParams

    con = load.connect_frames(literal_tables())
    try:
        _, manifest = dataset.build(
            con, DatasetParams(cutoff_start="2024-04-01", cutoff_end="2024-04-01",
                               windows=[7], horizon_days=30), DataParams(),
        )  # fmt: skip
        assert manifest.data_fingerprint == dataset.fingerprint(con)
        with pytest.raises(dataset.DatasetError, match="no eligible accounts at any cutoff"):
            dataset.build(
                con,
                DatasetParams(cutoff_start="2000-01-01", cutoff_end="2000-01-01"),
                DataParams(),
            )
        assert con.execute("SELECT count(*) FROM main.events").fetchall()[0][0] > 0
    finally:
        con.close()

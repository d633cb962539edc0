"""The data fingerprint: stable for the same data, different when any table's data changes.

Computed on DuckDB from typed contract tables (``load.connect_frames``: the mutations need not
pass validation; ``load.load`` of Parquet files once); the Spark engine's equality with it is in
``test_spark_parity.py``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from test_leakage import literal_tables

from churnlab import dataset, load
from churnlab.config import DataParams
from churnlab.manifest import Manifest


def fingerprint_of(frames: dict[str, pd.DataFrame]) -> str:
    """The fingerprint of typed contract frames."""
    con = load.connect_frames(frames)
    try:
        return dataset.fingerprint(con)
    finally:
        con.close()


def loaded_fingerprint(frames: dict[str, pd.DataFrame], folder: Path) -> str:
    """``frames`` written as Parquet to ``folder``, loaded (validated, typed), fingerprinted."""
    folder.mkdir(parents=True, exist_ok=True)
    load.write_tables(frames, folder)
    con = load.load(DataParams(source=str(folder)), str(folder))
    try:
        return dataset.fingerprint(con)
    finally:
        con.close()


def changed(value: object) -> object:
    """A different value of the same type (None for a missing one)."""
    if value is None or value is pd.NA or pd.isna(value):
        return None
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, pd.Timestamp | dt.datetime):
        return value + dt.timedelta(microseconds=1)
    return value + 1


def test_same_data_same_fingerprint_in_any_row_order(tmp_path):
    frames = literal_tables()
    first = loaded_fingerprint(frames, tmp_path / "a")
    again = loaded_fingerprint(frames, tmp_path / "b")
    shuffled = {k: v.iloc[::-1].reset_index(drop=True) for k, v in frames.items()}
    assert first == again == loaded_fingerprint(shuffled, tmp_path / "c")
    assert first.startswith(f"{dataset.FINGERPRINT_KIND}:") and len(first) == len("rows1:") + 16


def fingerprint_with(con, table: str, frame: pd.DataFrame) -> str:
    """The fingerprint of ``con``'s tables with ``table`` replaced by ``frame`` (then put back)."""
    con.execute(f"ALTER TABLE main.{table} RENAME TO _kept")
    try:
        con.register("_frame", frame)
        con.execute(f"CREATE TABLE main.{table} AS SELECT * FROM _frame")
        con.unregister("_frame")
        return dataset.fingerprint(con)
    finally:
        con.execute(f"DROP TABLE IF EXISTS main.{table}")
        con.execute(f"ALTER TABLE _kept RENAME TO {table}")


def test_fingerprint_changes_when_any_value_of_any_table_changes():
    frames = literal_tables()
    con = load.connect_frames(frames)
    base = dataset.fingerprint(con)
    seen = {base}
    for table, frame in frames.items():
        for col in frame.columns:
            new = changed(frame[col].iloc[-1])
            if new is None:  # a missing value: give it the first row's
                new = frame[col].iloc[0]
            mutated = frame.copy()
            mutated.loc[mutated.index[-1], col] = new
            got = fingerprint_with(con, table, mutated)
            assert got not in seen, (table, col)
            seen.add(got)
    assert dataset.fingerprint(con) == base  # every table put back
    con.close()


def test_fingerprint_changes_when_a_row_is_added_or_removed():
    frames = literal_tables()
    con = load.connect_frames(frames)
    base = dataset.fingerprint(con)
    for table, frame in frames.items():
        assert fingerprint_with(con, table, frame.iloc[:-1]) != base, table
        assert fingerprint_with(con, table, pd.concat([frame, frame.iloc[:1]])) != base, table
    con.close()
    no_nps = {k: v for k, v in frames.items() if k != "nps"}
    assert fingerprint_of(no_nps) != base


def test_a_missing_value_is_not_an_empty_one():
    frames = literal_tables()
    empty = {**frames, "nps": frames["nps"].assign(comment=["", "ok", "great", "bad"])}
    assert fingerprint_of(frames) != fingerprint_of(empty)


def _manifest(fingerprint: str) -> Manifest:
    return Manifest(
        mode="contractual",
        horizon_days=30,
        windows=(7,),
        data_end="2024-08-01",
        cutoffs=(),
        per_cutoff=(),
        rows=0,
        features=(),
        data_fingerprint=fingerprint,
    )


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [("same", False), ("other", True), ("", None), ("3f2a9c0d11b7e645", None)],
)
def test_data_changed_compares_only_fingerprints_of_this_definition(tmp_path, recorded, expected):
    """An empty fingerprint or one of the earlier definition (16 hex digits) cannot tell."""
    frames = literal_tables()
    now = fingerprint_of(frames)
    other = fingerprint_of({**frames, "nps": frames["nps"].iloc[:-1]})
    value = {"same": now, "other": other}.get(recorded, recorded)
    con = load.connect_frames(frames)
    try:
        assert dataset.data_changed(con, _manifest(value)) is expected
    finally:
        con.close()

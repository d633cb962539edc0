"""Loading: Parquet, CSV and DuckDB sources give identical typed frames; zones become UTC."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from churnlab import load, sources
from churnlab.config import DataParams
from churnlab.schema import TABLES
from churnlab.sources import SourceError
from churnlab.validate import ValidationFailed

NOW = dt.datetime(2026, 1, 1)


def expected(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The frames as read_frames must return them: sorted by the contract columns."""
    out = {}
    for name, frame in frames.items():
        order = [c for c in TABLES[name].column_names if c in frame.columns]
        out[name] = frame.sort_values(order, ignore_index=True)
    return out


def write_parquet(frames: dict[str, pd.DataFrame], folder: Path) -> str:
    load.write_tables(frames, folder)
    return str(folder)


def write_csv(frames: dict[str, pd.DataFrame], folder: Path) -> str:
    folder.mkdir()
    for name, frame in frames.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return str(folder)


def write_duckdb(frames: dict[str, pd.DataFrame], path: Path, names: dict[str, str]) -> str:
    con = duckdb.connect(str(path))
    for name, frame in frames.items():
        con.register("frame", frame)
        con.execute(f"CREATE TABLE {names.get(name, name)} AS SELECT * FROM frame")
        con.unregister("frame")
    con.close()
    return str(path)


def read(source: str, data: DataParams | None = None) -> dict[str, pd.DataFrame]:
    data = data or DataParams(source=source)
    con = load.load(data, source, now=NOW)
    try:
        return load.read_frames(con)
    finally:
        con.close()


def assert_same(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    assert list(got) == list(want)
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], check_dtype=True, obj=name)


def test_parquet_csv_and_duckdb_give_identical_frames(
    contract_frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    want = expected(contract_frames)
    from_parquet = read(write_parquet(contract_frames, tmp_path / "pq"))
    from_csv = read(write_csv(contract_frames, tmp_path / "csv"))
    from_duckdb = read(write_duckdb(contract_frames, tmp_path / "db.duckdb", {}))
    assert_same(from_parquet, want)
    assert_same(from_csv, want)
    assert_same(from_duckdb, want)


def test_read_frames_dtypes(contract_frames: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    got = read(write_parquet(contract_frames, tmp_path / "pq"))
    subs = got["subscriptions"]
    assert str(subs["account_id"].dtype) == "str"
    assert str(subs["start_at"].dtype) == "datetime64[us]"
    assert str(subs["mrr"].dtype) == "float64"
    assert str(subs["seats"].dtype) == "Int32"
    assert subs["end_at"].isna().sum() == 1  # open-ended stays missing
    assert got["events"]["occurred_at"].iloc[0] == pd.Timestamp("2024-01-05 10:00:00.123456")


def test_zoned_timestamps_become_naive_utc(tmp_path: Path) -> None:
    berlin = pd.Series(pd.to_datetime(["2024-06-01 12:00:00", "2024-01-01 00:30:00"]))
    accounts = pd.DataFrame(
        {
            "account_id": pd.Series(["a1", "a2"], dtype="str"),
            "created_at": berlin.dt.tz_localize("Europe/Berlin"),
        }
    )
    orders = pd.DataFrame(
        {
            "account_id": pd.Series(["a1"], dtype="str"),
            "ordered_at": pd.Series(["2024-07-01T10:00:00-05:00"], dtype="str"),
            "amount": [10.0],
        }
    )
    folder = tmp_path / "zoned"
    load.write_tables({"accounts": accounts}, folder)
    orders.to_csv(folder / "orders.csv", index=False)
    got = read(str(folder))
    assert got["accounts"]["created_at"].tolist() == [
        pd.Timestamp("2024-06-01 10:00:00"),  # a1: CEST = UTC+2
        pd.Timestamp("2023-12-31 23:30:00"),  # a2: CET = UTC+1
    ]
    assert str(got["accounts"]["created_at"].dtype) == "datetime64[us]"
    assert got["orders"]["ordered_at"].tolist() == [pd.Timestamp("2024-07-01 15:00:00")]


def test_naive_text_is_read_as_utc_whatever_the_machine_zone(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "accounts.csv").write_text("account_id,created_at\na1,2024-06-01 12:00:00\n")
    (folder / "orders.csv").write_text("account_id,ordered_at,amount\na1,2024-06-02,1\n")
    # DuckDB's default zone is the machine's; the loader pins UTC so naive text means UTC.
    con = sources.open_source(DataParams(source=str(folder)))
    assert con.execute("SELECT current_setting('TimeZone')").fetchall() == [("UTC",)]
    con.close()
    assert read(str(folder))["accounts"]["created_at"].tolist() == [
        pd.Timestamp("2024-06-01 12:00:00")
    ]


def test_column_and_table_mapping(contract_frames: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    frames = dict(contract_frames)
    frames["events"] = frames["events"].rename(columns={"occurred_at": "ts", "account_id": "cust"})
    path = write_duckdb(frames, tmp_path / "m.duckdb", {"accounts": "customers"})
    data = DataParams(
        source=path,
        tables={"accounts": "customers"},
        columns={"events": {"occurred_at": "ts", "account_id": "cust"}},
    )
    got = read(path, data)
    assert_same(got, expected(contract_frames))


def test_folder_table_mapping_and_extra_columns(
    contract_frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    folder = tmp_path / "f"
    frames = {"customers": contract_frames["accounts"], "orders": contract_frames["orders"]}
    write_csv(frames, folder)
    got = read(str(folder), DataParams(source=str(folder), tables={"accounts": "customers"}))
    accounts = got["accounts"]
    assert list(accounts.columns) == ["account_id", "created_at", "segment", "employees"]
    assert str(accounts["employees"].dtype) == "int64"  # typed like the Parquet source
    assert accounts["segment"].tolist() == ["smb", "mid", "ent"]


def test_load_rejects_invalid_data(valid_csv_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    for name in ("accounts", "subscriptions"):
        (folder / f"{name}.csv").write_text((valid_csv_dir / f"{name}.csv").read_text())
    text = (folder / "subscriptions.csv").read_text().replace(",100,", ",-100,", 1)
    (folder / "subscriptions.csv").write_text(text)
    with pytest.raises(ValidationFailed) as info:
        load.load(DataParams(source=str(folder)), now=NOW)
    assert [(p.table, p.column, p.what) for p in info.value.problems] == [
        ("subscriptions", "mrr", "negative mrr")
    ]


def test_load_valid_corpus_base(valid_csv_dir: Path) -> None:
    got = read(str(valid_csv_dir))
    assert set(got) == set(TABLES)
    # '2024-03-01 00:00:00+02:00' in the CSV is 22:00 UTC the day before
    assert got["accounts"]["created_at"].tolist()[-1] == pd.Timestamp("2024-02-29 22:00:00")


def test_data_end_is_the_end_of_the_last_day_label_tables_cover(
    contract_frames: dict[str, pd.DataFrame],
) -> None:
    con = load.connect_frames(contract_frames)
    # subscriptions start last on 2024-03-01 12:00, orders run to 2024-06-01: the label tables
    # are both observed through the end of 2024-03-01; NPS rows up to 2024-06-30 do not count.
    assert load.data_end(con, DataParams()) == dt.datetime(2024, 3, 2)
    # the connection stays usable (no half-fetched result left open)
    con.register("x", pd.DataFrame({"a": [1]}))
    assert load.data_end(con, DataParams(as_of=dt.datetime(2025, 1, 1))) == dt.datetime(2025, 1, 1)


@pytest.mark.parametrize(
    "source, message",
    [
        ("does/not/exist", "not found"),
        ("postgresql://nobody@127.0.0.1:1/none", "cannot connect"),
    ],
)
def test_unopenable_sources_are_clear_errors(source: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        sources.open_source(DataParams(source=source))


def test_corrupt_parquet_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "accounts.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SourceError, match="accounts.parquet"):
        sources.open_source(DataParams(source=str(tmp_path)))


def test_bad_table_mapping_is_never_put_into_sql(
    contract_frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    path = write_duckdb(contract_frames, tmp_path / "x.duckdb", {})
    data = DataParams(source=path, tables={"orders": 'orders"; DROP TABLE accounts; --'})
    with pytest.raises(ValidationFailed) as info:
        load.load(data, now=NOW)
    assert [p.where for p in info.value.problems] == ["orders"]
    assert "is not a plain table name" in info.value.problems[0].what
    con = duckdb.connect(path, read_only=True)
    assert con.execute("SELECT count(*) FROM accounts").fetchall() == [(3,)]
    con.close()

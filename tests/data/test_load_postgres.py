"""Loading from a real PostgreSQL server gives the same frames as Parquet, CSV and DuckDB."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from churnlab import load, sources
from churnlab.config import DataParams
from churnlab.validate import ValidationFailed, validate_source

pytestmark = pytest.mark.postgres

NOW = dt.datetime(2026, 1, 1)


@pytest.fixture
def pg_url(postgres_server: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the shared server (tests must not see each other's tables)."""
    name = "t_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    url = sa.engine.make_url(postgres_server)
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def read(source: str, data: DataParams | None = None) -> dict[str, pd.DataFrame]:
    con = load.load(data or DataParams(source=source), source, now=NOW)
    try:
        return load.read_frames(con)
    finally:
        con.close()


def to_postgres(url: str, frames: dict[str, pd.DataFrame], schema_prefix: str = "") -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for name, frame in frames.items():
            frame.to_sql(f"{schema_prefix}{name}", conn, index=False, if_exists="replace")
    engine.dispose()


def test_postgres_matches_parquet_csv_and_duckdb(
    pg_url: str, contract_frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    to_postgres(pg_url, contract_frames)
    from_pg = read(pg_url)

    load.write_tables(contract_frames, tmp_path / "pq")
    csv = tmp_path / "csv"
    csv.mkdir()
    for name, frame in contract_frames.items():
        frame.to_csv(csv / f"{name}.csv", index=False)
    import duckdb

    db = tmp_path / "x.duckdb"
    con = duckdb.connect(str(db))
    for name, frame in contract_frames.items():
        con.register("f", frame)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM f")
        con.unregister("f")
    con.close()

    others = {
        "parquet": read(str(tmp_path / "pq")),
        "csv": read(str(csv)),
        "duckdb": read(str(db)),
    }
    for kind, frames in others.items():
        assert list(frames) == list(from_pg), kind
        for name in frames:
            pd.testing.assert_frame_equal(from_pg[name], frames[name], obj=f"{kind}:{name}")


def test_postgres_zones_mapping_and_validation(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS crm_accounts, crm_orders"))
        conn.execute(sa.text("CREATE TABLE crm_accounts (id text, signup timestamptz)"))
        conn.execute(sa.text("CREATE TABLE crm_orders (id text, at timestamptz, amount float8)"))
        conn.execute(
            sa.text(
                "INSERT INTO crm_accounts VALUES ('a1', '2024-06-01 12:00:00+02'), "
                "('a2', '2024-01-01 00:30:00+01')"
            )
        )
        conn.execute(sa.text("INSERT INTO crm_orders VALUES ('a1', '2024-07-01 10:00-05', 10)"))
    engine.dispose()
    data = DataParams(
        source=pg_url,
        tables={"accounts": "crm_accounts", "orders": "crm_orders"},
        columns={
            "accounts": {"account_id": "id", "created_at": "signup"},
            "orders": {"account_id": "id", "ordered_at": "at"},
        },
    )
    got = read(pg_url, data)
    assert got["accounts"]["created_at"].tolist() == [
        pd.Timestamp("2024-06-01 10:00:00"),
        pd.Timestamp("2023-12-31 23:30:00"),
    ]
    assert got["orders"]["ordered_at"].tolist() == [pd.Timestamp("2024-07-01 15:00:00")]
    summary = validate_source(data, now=NOW)
    assert summary["kind"] == "url"
    assert summary["tables"] == {"accounts": 2, "orders": 1}

    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO crm_orders VALUES ('zz', '2030-01-01', -5)"))
    engine.dispose()
    with pytest.raises(ValidationFailed) as info:
        validate_source(data, now=NOW)
    assert {(p.where, p.what.split(" (")[0]) for p in info.value.problems} == {
        ("orders.account_id", "account ids not found in accounts"),
        ("orders.ordered_at", "timestamps after the as-of date 2026-01-01 00:00:00"),
        ("orders.amount", "negative amount"),
    }


def test_postgres_tables_are_read_in_chunks(
    pg_url: str,
    contract_frames: dict[str, pd.DataFrame],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One row per chunk: a column with no value in the first chunk (rows reversed, so the NULLs
    come first) keeps the type of its later values, and an empty table keeps its columns."""
    frames = {name: f.iloc[::-1].reset_index(drop=True) for name, f in contract_frames.items()}
    frames["nps"] = frames["nps"].iloc[0:0]
    assert frames["events"]["quantity"].isna().iloc[0]  # the case under test
    assert frames["tickets"]["closed_at"].isna().iloc[0]
    to_postgres(pg_url, frames)
    monkeypatch.setattr(sources, "SQL_CHUNK_ROWS", 1)
    from_pg = read(pg_url)
    load.write_tables(frames, tmp_path / "pq")
    from_parquet = read(str(tmp_path / "pq"))
    assert list(from_pg) == list(from_parquet)
    for name in from_pg:
        pd.testing.assert_frame_equal(from_pg[name], from_parquet[name], obj=name)
    assert from_pg["nps"].empty and "score" in from_pg["nps"].columns
    assert from_pg["events"]["quantity"].notna().sum() == 2

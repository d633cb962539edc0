"""Loading contract tables into DuckDB from a folder, a DuckDB file or a SQL database.

The flow is ``open_source`` (raw views, the user's own columns, nothing checked) ->
``churnlab.validate.validate`` (every problem at once) -> ``typed_views`` (contract names and
types). :func:`load` does all three. Every later stage receives a DuckDB connection whose main
schema holds one typed relation per present contract table, named after the table.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import tempfile
from pathlib import Path

import duckdb
import pandas as pd

from churnlab.config import DataParams
from churnlab.errors import ChurnlabError
from churnlab.schema import TABLES

RAW = "raw"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


class SourceError(ChurnlabError):
    """The data source cannot be opened."""


def is_identifier(name: str) -> bool:
    """True if ``name`` is a plain column/table name (letters, digits, underscore)."""
    return bool(_IDENT.match(name))


def quote(name: str) -> str:
    """Quote an identifier for DuckDB SQL (only ever applied to checked or contract names)."""
    return '"' + name.replace('"', '""') + '"'


def source_kind(source: str) -> str:
    """Classify a source string as 'folder', 'duckdb' or 'url'."""
    if _URL.match(source) and not source.startswith("file://"):
        return "url"
    path = Path(source)
    if path.is_dir():
        return "folder"
    if path.suffix in {".duckdb", ".db", ".ddb"} or path.is_file():
        return "duckdb"
    raise SourceError(
        f"data source {source!r} not found: give a folder of <table>.parquet/<table>.csv files, "
        "a DuckDB database file, or a database URL such as postgresql://user@host/db"
    )


def open_source(data: DataParams, source: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open a data source and expose each contract table found as a raw view ``raw.<table>``.

    Raw views carry the user's own columns, untouched: column mapping, types and contract rules
    are applied by validation and :func:`typed_views`, never here.

    Parameters
    ----------
    data : DataParams
        The ``data`` section of params.yaml (table-name mapping for databases).
    source : str, optional
        Overrides ``data.source``.
    """
    source = source or data.source
    kind = source_kind(source)
    con = duckdb.connect()
    con.execute(f"CREATE SCHEMA {RAW}")
    if kind == "folder":
        _open_folder(con, Path(source))
    elif kind == "duckdb":
        _open_duckdb(con, Path(source), data.tables)
    else:
        _open_url(con, source, data.tables)
    return con


def _open_folder(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    for name in TABLES:
        parquet, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
        if parquet.exists():
            con.execute(
                f"CREATE VIEW {RAW}.{name} AS SELECT * FROM read_parquet(?)", [str(parquet)]
            )
        elif csv.exists():
            # Read every CSV column as text so that bad values become validation findings
            # (with row examples) instead of a reader exception.
            con.execute(
                f"CREATE TABLE {RAW}.{name} AS SELECT * FROM read_csv(?, all_varchar=true, "
                "header=true)",
                [str(csv)],
            )


def _open_duckdb(con: duckdb.DuckDBPyConnection, path: Path, tables: dict[str, str]) -> None:
    if not path.exists():
        raise SourceError(f"DuckDB file {path} not found")
    try:
        con.execute("ATTACH ? AS src (READ_ONLY)", [str(path)])
    except duckdb.Error as err:
        raise SourceError(f"{path} is not a readable DuckDB database: {err}") from None
    existing = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'src'"
        ).fetchall()
    }
    for name in TABLES:
        user = tables.get(name, name)
        _check_table_name(name, user)
        if user in existing:
            con.execute(f"CREATE VIEW {RAW}.{name} AS SELECT * FROM src.{quote(user)}")


def _open_url(con: duckdb.DuckDBPyConnection, url: str, tables: dict[str, str]) -> None:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url)
        inspector = sa.inspect(engine)
        existing = set(inspector.get_table_names())
    except Exception as err:  # any driver error: report it in one line
        raise SourceError(f"cannot connect to {_redact(url)}: {err}".splitlines()[0]) from None
    try:
        with engine.connect() as conn:
            for name in TABLES:
                user = tables.get(name, name)
                _check_table_name(name, user)
                if user not in existing:
                    continue
                table = sa.Table(user, sa.MetaData(), autoload_with=conn)
                frame = pd.read_sql(sa.select(table), conn)
                con.register(f"_src_{name}", frame)
                con.execute(f"CREATE TABLE {RAW}.{name} AS SELECT * FROM _src_{name}")
                con.unregister(f"_src_{name}")
    finally:
        engine.dispose()


def _check_table_name(contract: str, user: str) -> None:
    if not is_identifier(user):
        raise SourceError(
            f"data.tables.{contract}: {user!r} is not a plain table name (letters, digits and "
            "underscores only); rename the table or use a view with a plain name"
        )


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def raw_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Contract tables present as raw views, in contract order."""
    found = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [RAW]
        ).fetchall()
    }
    return [t for t in TABLES if t in found]


def raw_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The user's column names of a raw table, in order."""
    return [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [RAW, table],
        ).fetchall()
    ]


def source_column(data: DataParams, table: str, column: str) -> str:
    """The user's column name for a contract column (identity unless mapped)."""
    return data.columns.get(table, {}).get(column, column)


def typed_views(con: duckdb.DuckDBPyConnection, data: DataParams) -> None:
    """Create one typed view per raw table in the main schema, named and typed per the contract.

    Call only after validation passed: casts here are strict and would raise otherwise. Accounts
    keep their extra (static attribute) columns; other tables keep contract columns only.
    """
    for name in raw_tables(con):
        table = TABLES[name]
        present = set(raw_columns(con, name))
        exprs = []
        mapped_sources = set()
        for col in table.columns:
            src = source_column(data, name, col.name)
            mapped_sources.add(src)
            if src in present:
                exprs.append(f"{_cast(quote(src), col.dtype)} AS {col.name}")
            elif not col.required:
                exprs.append(f"CAST(NULL AS {col.dtype}) AS {col.name}")
        if table.extra_columns_allowed:
            exprs += [
                f"{quote(c)} AS {quote(c)}"
                for c in raw_columns(con, name)
                if c not in mapped_sources and c not in table.column_names
            ]
        con.execute(f"CREATE OR REPLACE VIEW main.{name} AS SELECT {', '.join(exprs)} FROM {RAW}.{name}")


def _cast(expr: str, dtype: str) -> str:
    if dtype == "TIMESTAMP":
        return timestamp_expr(expr)
    if dtype == "VARCHAR":
        return f"CAST({expr} AS VARCHAR)"
    return f"CAST({expr} AS {dtype})"


def timestamp_expr(expr: str, try_: bool = False) -> str:
    """SQL turning a raw value (text, date, naive or zoned timestamp) into a naive UTC TIMESTAMP."""
    cast = "TRY_CAST" if try_ else "CAST"
    # Zoned inputs are converted to UTC first; text with an offset parses as TIMESTAMPTZ.
    return (
        f"(CASE WHEN {expr} IS NULL THEN NULL ELSE "
        f"{cast}(timezone('UTC', {cast}({expr} AS TIMESTAMPTZ)) AS TIMESTAMP) END)"
    )


def load(
    data: DataParams,
    source: str | None = None,
    *,
    now: dt.datetime | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open, validate and type a data source.

    Parameters
    ----------
    data : DataParams
        The ``data`` section of params.yaml.
    source : str, optional
        Overrides ``data.source``.
    now : datetime, optional
        Used as the as-of date for the "timestamp in the future" check when ``data.as_of`` is
        not set (default: the current UTC time).

    Raises
    ------
    churnlab.validate.ValidationFailed
        With every problem found, if the data breaks the contract.
    """
    from churnlab.validate import validate_or_raise

    con = open_source(data, source)
    validate_or_raise(con, data, now=now)
    typed_views(con, data)
    return con


def connect_frames(frames: dict[str, pd.DataFrame]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection holding already-typed contract frames as tables (tests, notebooks)."""
    con = duckdb.connect()
    for name, frame in frames.items():
        con.register(f"_frame_{name}", frame)
        con.execute(f"CREATE TABLE main.{quote(name)} AS SELECT * FROM _frame_{name}")
        con.unregister(f"_frame_{name}")
    return con


def present_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Contract tables present (typed) in the main schema, in contract order."""
    found = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
    }
    return [t for t in TABLES if t in found]


def read_frames(con: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
    """Every typed contract table as a pandas frame, rows in a deterministic order."""
    out = {}
    for name in present_tables(con):
        table = TABLES[name]
        order = ", ".join(c for c in table.column_names if c in _columns(con, name))
        out[name] = con.execute(f"SELECT * FROM main.{name} ORDER BY {order}").df()
    return out


def _columns(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_name = ?",
            [name],
        ).fetchall()
    ]


def data_end(con: duckdb.DuckDBPyConnection, data: DataParams) -> dt.datetime:
    """The end of observation: ``data.as_of`` if set, else the latest row timestamp in the data."""
    if data.as_of is not None:
        return data.as_of
    parts = [
        f"SELECT max({TABLES[t].time_column}) AS m FROM main.{t}" for t in present_tables(con)
    ]
    value = con.execute(f"SELECT max(m) FROM ({' UNION ALL '.join(parts)})").fetchone()
    if value is None or value[0] is None:
        raise ChurnlabError("the data has no timestamps: cannot tell where observation ends")
    return pd.Timestamp(value[0]).to_pydatetime()


def write_tables(frames: dict[str, pd.DataFrame], out: Path | str) -> None:
    """Write frames as ``<out>/<name>.parquet``, atomically per file (temp file, then rename)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        target = out / f"{name}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def replace_dir(tmp_dir: Path, target: Path) -> None:
    """Swap a fully written temporary directory into place (earlier output survives a failure)."""
    target = Path(target)
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
        os.replace(tmp_dir, target)
        shutil.rmtree(old)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_dir, target)

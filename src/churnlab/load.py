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
from typing import Any

import duckdb
import pandas as pd

from churnlab.config import DataParams
from churnlab.errors import ChurnlabError
from churnlab.schema import TABLES

RAW = "raw"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_SAFE_TYPE = re.compile(r"^[A-Z_]+(\(\d+(, ?\d+)?\))?$")  # a DuckDB type name the sniffer gave


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
    # Naive timestamps mean UTC: casting them to TIMESTAMPTZ must not apply the machine's zone.
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE SCHEMA {RAW}")
    if kind == "folder":
        _open_folder(con, Path(source), data)
    elif kind == "duckdb":
        _open_duckdb(con, Path(source), data.tables)
    else:
        _open_url(con, source, data.tables)
    return con


def _open_folder(con: duckdb.DuckDBPyConnection, folder: Path, data: DataParams) -> None:
    for name in TABLES:
        user = data.tables.get(name, name)
        if not is_identifier(user):
            continue  # reported by validation
        parquet, csv = folder / f"{user}.parquet", folder / f"{user}.csv"
        try:
            if parquet.exists():
                # Views cannot take prepared parameters: the path goes in as an escaped literal.
                con.execute(
                    f"CREATE VIEW {RAW}.{name} AS SELECT * FROM read_parquet({_literal(parquet)})"
                )
            elif csv.exists():
                _open_csv(con, name, csv, data)
        except duckdb.Error as err:
            path = parquet if parquet.exists() else csv
            raise SourceError(
                f"cannot read {path}: {str(err).splitlines()[0]} (check that it is a valid "
                f"{path.suffix[1:]} file)"
            ) from None


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _open_csv(con: duckdb.DuckDBPyConnection, name: str, csv: Path, data: DataParams) -> None:
    # Contract columns are read as text so that bad values become validation findings (with row
    # examples) instead of a reader exception.
    con.execute(
        f"CREATE TABLE {RAW}.{name} AS SELECT * FROM read_csv(?, all_varchar=true, header=true)",
        [str(csv)],
    )
    table = TABLES[name]
    if not table.extra_columns_allowed:
        return
    # Extra (static attribute) columns are not validated: give them the types DuckDB detects
    # over the whole file, as a Parquet source would have them, so that all sources agree.
    contract = {source_column(data, name, c) for c in table.column_names}
    sniffed = con.execute(
        "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM "
        "read_csv(?, header=true, sample_size=-1))",
        [str(csv)],
    ).fetchall()
    for column, ctype in sniffed:
        if column in contract or ctype == "VARCHAR" or not _SAFE_TYPE.match(ctype):
            continue
        con.execute(
            f"ALTER TABLE {RAW}.{name} ALTER {quote(column)} SET DATA TYPE {ctype} "
            f"USING TRY_CAST({quote(column)} AS {ctype})"
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
        if is_identifier(user) and user in existing:
            con.execute(f"CREATE VIEW {RAW}.{name} AS SELECT * FROM src.{quote(user)}")


# Rows fetched from a SQL database per round trip: the whole table never sits in memory at once.
SQL_CHUNK_ROWS = 200_000


def _duckdb_type(column: Any) -> str:
    """The DuckDB type for a database column, as pandas would have typed its values."""
    import sqlalchemy as sa

    t = column.type
    if isinstance(t, sa.DateTime):
        return "TIMESTAMPTZ" if t.timezone else "TIMESTAMP"
    if isinstance(t, sa.Date):
        return "DATE"
    if isinstance(t, sa.Boolean):
        return "BOOLEAN"
    if isinstance(t, sa.Integer):
        return "BIGINT"
    if isinstance(t, (sa.Float, sa.Numeric)):
        return "DOUBLE"
    # Text is what every contract type can be validated and cast from.
    return "VARCHAR"


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
            # A server-side cursor where the driver has one (PostgreSQL): rows arrive in chunks.
            stream = conn.execution_options(stream_results=True, max_row_buffer=SQL_CHUNK_ROWS)
            for name in TABLES:
                user = tables.get(name, name)
                if not is_identifier(user) or user not in existing:
                    continue  # a bad name is reported by validation
                try:
                    table = sa.Table(user, sa.MetaData(), autoload_with=conn)
                    _copy_table(con, name, table, stream)
                except Exception as err:  # any driver error: report it in one line
                    raise SourceError(
                        f"cannot read table {user} from {_redact(url)}: {err}".splitlines()[0]
                    ) from None
    finally:
        engine.dispose()


def _copy_table(con: duckdb.DuckDBPyConnection, name: str, table: Any, conn: Any) -> None:
    """Copy a database table into ``raw.<name>`` chunk by chunk."""
    import sqlalchemy as sa

    types = {c.name: _duckdb_type(c) for c in table.columns}
    created = False
    for frame in pd.read_sql(sa.select(table), conn, chunksize=SQL_CHUNK_ROWS):
        con.register(f"_src_{name}", frame)
        try:
            if not created:
                con.execute(f"CREATE TABLE {RAW}.{name} AS SELECT * FROM _src_{name}")
                # A column with no value in the first chunk arrives without a type: take the
                # database's, so that later chunks' values keep theirs.
                for c in frame.columns:
                    if frame[c].isna().all():
                        typ = types.get(c, "VARCHAR")
                        con.execute(f"ALTER TABLE {RAW}.{name} ALTER {quote(c)} TYPE {typ}")
                created = True
            else:
                con.execute(f"INSERT INTO {RAW}.{name} BY NAME SELECT * FROM _src_{name}")
        finally:
            con.unregister(f"_src_{name}")
    if not created:  # an empty table: its columns, typed as the database types them
        cols = ", ".join(f"{quote(c)} {t}" for c, t in types.items())
        con.execute(f"CREATE TABLE {RAW}.{name} ({cols})")


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


def raw_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """The user's columns of a raw table and their DuckDB types, in order."""
    return {
        str(r[0]): str(r[1])
        for r in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [RAW, table],
        ).fetchall()
    }


def typed_views(con: duckdb.DuckDBPyConnection, data: DataParams) -> None:
    """Create one typed view per raw table in the main schema, named and typed per the contract.

    Call only after validation passed: casts here are strict and would raise otherwise. Accounts
    keep their extra (static attribute) columns (timestamps among them normalised to naive UTC);
    other tables keep contract columns only.
    """
    for name in raw_tables(con):
        table = TABLES[name]
        types = raw_types(con, name)
        exprs = []
        mapped_sources = set()
        for col in table.columns:
            src = source_column(data, name, col.name)
            mapped_sources.add(src)
            if src in types:
                exprs.append(f"{_cast(quote(src), col.dtype, types[src])} AS {col.name}")
            elif not col.required:
                exprs.append(f"CAST(NULL AS {col.dtype}) AS {col.name}")
        if table.extra_columns_allowed:
            for c, ctype in types.items():
                if c in mapped_sources or c in table.column_names:
                    continue
                if ctype.startswith("TIMESTAMP"):
                    exprs.append(f"{timestamp_expr(quote(c), source_type=ctype)} AS {quote(c)}")
                else:
                    exprs.append(f"{quote(c)} AS {quote(c)}")
        con.execute(
            f"CREATE OR REPLACE VIEW main.{name} AS SELECT {', '.join(exprs)} FROM {RAW}.{name}"
        )


def _cast(expr: str, dtype: str, source_type: str | None = None) -> str:
    if dtype == "TIMESTAMP":
        return timestamp_expr(expr, source_type=source_type)
    if dtype == "VARCHAR":
        return f"CAST({expr} AS VARCHAR)"
    if dtype == "INTEGER":
        # Via DOUBLE so that text such as '3.0' converts like the number 3.0 does.
        return f"CAST(CAST({expr} AS DOUBLE) AS INTEGER)"
    return f"CAST({expr} AS {dtype})"


def timestamp_expr(expr: str, try_: bool = False, source_type: str | None = None) -> str:
    """SQL turning a raw value (text, date, naive or zoned timestamp) into a naive UTC TIMESTAMP.

    Parameters
    ----------
    expr : str
        SQL expression (a quoted, checked column name).
    try_ : bool
        Use TRY_CAST: unparseable values become NULL instead of an error.
    source_type : str, optional
        The DuckDB type of ``expr`` when known. Naive timestamps and dates then cast directly
        (they always convert, and this is the hot path on large tables); zoned timestamps
        convert to UTC. Text and unknown types go through TIMESTAMPTZ, so an explicit offset is
        honoured and text without one is read as UTC (the connection's time zone is UTC).
    """
    cast = "TRY_CAST" if try_ else "CAST"
    if source_type is not None:
        if source_type.startswith("TIMESTAMP WITH TIME ZONE"):
            return f"CAST(timezone('UTC', {expr}) AS TIMESTAMP)"
        if source_type.startswith(("TIMESTAMP", "DATE")):
            return f"CAST({expr} AS TIMESTAMP)"
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

    source = source or data.source
    con = open_source(data, source)
    try:
        validate_or_raise(con, data, now=now, source=source)
    except BaseException:
        con.close()
        raise
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
    """Every typed contract table as a pandas frame, rows in a deterministic order.

    Dtypes are the same whatever the source: ``str`` for text and ids, ``datetime64[us]`` (naive
    UTC) for timestamps, ``float64`` for DOUBLE columns, nullable ``Int32`` for INTEGER ones
    (seats) and ``bool`` for BOOLEAN ones (holdout); extra account columns keep their type, with
    text as ``str`` and timestamps as ``datetime64[us]``.
    """
    out = {}
    for name in present_tables(con):
        table = TABLES[name]
        present = _columns(con, name)
        order = ", ".join(c for c in table.column_names if c in present)
        frame = con.execute(f"SELECT * FROM main.{name} ORDER BY {order}").df()
        out[name] = _normalise_dtypes(frame, name)
    return out


# BOOLEAN as numpy bool: the contract's only boolean column (treatments.holdout) is not nullable.
_PANDAS_DTYPES = {
    "VARCHAR": "str",
    "TIMESTAMP": "datetime64[us]",
    "DOUBLE": "float64",
    "BOOLEAN": "bool",
}


def _normalise_dtypes(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    table = TABLES[name]
    casts: dict[str, str] = {}
    for column in frame.columns:
        if column in table.column_names:
            dtype = table.column(column).dtype
            casts[column] = _PANDAS_DTYPES.get(dtype, "Int32")
        elif pd.api.types.is_datetime64_any_dtype(frame[column]):
            casts[column] = "datetime64[us]"
        elif pd.api.types.is_object_dtype(frame[column]) or pd.api.types.is_string_dtype(
            frame[column]
        ):
            casts[column] = "str"
    changed = {c: t for c, t in casts.items() if str(frame[c].dtype) != t}
    return frame.astype(changed) if changed else frame


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
    parts = [f"SELECT max({TABLES[t].time_column}) AS m FROM main.{t}" for t in present_tables(con)]
    # fetchall: duckdb 2 keeps a half-fetched result open and then refuses register().
    value = con.execute(f"SELECT max(m) FROM ({' UNION ALL '.join(parts)})").fetchall()[0]
    if value[0] is None:
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

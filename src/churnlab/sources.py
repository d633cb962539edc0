"""Data sources: open a folder, a DuckDB file or a SQL database and expose its raw tables.

:func:`open_source` gives a DuckDB connection with one raw view per contract table found, in the
schema ``raw``, carrying the user's own columns untouched; nothing is checked here. Validation
(:mod:`churnlab.validate`) reads those views, and :mod:`churnlab.load` turns them into typed
contract relations. The helpers for naming and quoting identifiers and for reading timestamps
live here because both validation and loading need them.
"""

from __future__ import annotations

import re
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
            raise SourceError(_read_error(path, str(err), data.encoding)) from None


def _read_error(path: Path, message: str, encoding: str) -> str:
    """One line saying why a file cannot be read and how to fix it."""
    if "Invalid unicode" in message or "not utf-8 encoded" in message:
        line = re.search(r"Line: (\d+)", message)
        where = f" (line {line.group(1)})" if line else ""
        return (
            f"{path} is not {encoding} text{where}: re-save it as UTF-8, or set data.encoding in "
            "params.yaml to the file's encoding (latin-1 or utf-16)"
        )
    return (
        f"cannot read {path}: {message.splitlines()[0]} (check that it is a valid "
        f"{path.suffix[1:]} file)"
    )


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _open_csv(con: duckdb.DuckDBPyConnection, name: str, csv: Path, data: DataParams) -> None:
    # Contract columns are read as text so that bad values become validation findings (with row
    # examples) instead of a reader exception.
    con.execute(
        f"CREATE TABLE {RAW}.{name} AS SELECT * FROM "
        "read_csv(?, all_varchar=true, header=true, encoding=?)",
        [str(csv), data.encoding],
    )
    table = TABLES[name]
    if not table.extra_columns_allowed:
        return
    # Extra (static attribute) columns are not validated: give them the types DuckDB detects
    # over the whole file, as a Parquet source would have them, so that all sources agree.
    contract = {source_column(data, name, c) for c in table.column_names}
    sniffed = con.execute(
        "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM "
        "read_csv(?, header=true, sample_size=-1, encoding=?))",
        [str(csv), data.encoding],
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
        raise SourceError(
            f"cannot connect to {mask_password(url)}: {err}".splitlines()[0]
        ) from None
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
                        f"cannot read table {user} from {mask_password(url)}: {err}".splitlines()[0]
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


def mask_password(text: str) -> str:
    """``text`` (a URL, a message, a YAML file) with every URL password replaced by ``***``.

    A database URL is rendered by SQLAlchemy with its password hidden; any other text has the
    password part of each ``scheme://user:password@`` replaced, so it is safe to log, print or
    store.
    """
    if _URL.match(text) and " " not in text.strip():
        try:
            import sqlalchemy as sa

            url = sa.engine.make_url(text.strip())
            if url.password is not None:
                return url.render_as_string(hide_password=True)
        except Exception:  # not a SQLAlchemy URL: fall back to the pattern below
            pass
    return re.sub(r"://([^:/@\s]+):[^@\s]*@", r"://\1:***@", text)


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

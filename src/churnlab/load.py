"""Loading contract tables into DuckDB: open, validate, type.

The flow is :func:`churnlab.sources.open_source` (raw views, the user's own columns, nothing
checked) -> :func:`churnlab.validate.validate` (every problem at once) -> :func:`typed_views`
(contract names and types). :func:`load` does all three. Every later stage receives a DuckDB
connection whose main schema holds one typed relation per present contract table, named after
the table.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd

from churnlab.atomic import atomic_file
from churnlab.config import DataParams
from churnlab.coverage import end_is_inclusive, inclusive_note, observed_end
from churnlab.errors import ChurnlabError
from churnlab.schema import TABLES
from churnlab.sources import (
    RAW,
    open_source,
    quote,
    raw_tables,
    raw_types,
    source_column,
    timestamp_expr,
)
from churnlab.validate import validate_or_raise


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
        view = AS_GIVEN if name == "subscriptions" else name  # read by _subscription_end
        con.execute(
            f"CREATE OR REPLACE VIEW main.{view} AS SELECT {', '.join(exprs)} FROM {RAW}.{name}"
        )
    if "subscriptions" in raw_tables(con):
        _subscription_end(con, data)


AS_GIVEN = "_cl_subscriptions_as_given"
"""The typed subscriptions before any end-date reading (what :func:`end_gaps` measures)."""


def end_gaps(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    """Consecutive subscription rows of an account: pairs, one day apart, and touching."""
    table = AS_GIVEN if _exists(con, AS_GIVEN) else "subscriptions"
    row = con.execute(
        f"""WITH s AS (SELECT end_at, lead(start_at) OVER (PARTITION BY account_id
                                 ORDER BY start_at, end_at) AS nxt FROM main.{table})
        SELECT count(*), count(*) FILTER (WHERE nxt = end_at + INTERVAL 1 DAY),
               count(*) FILTER (WHERE nxt = end_at)
        FROM s WHERE nxt IS NOT NULL AND end_at IS NOT NULL"""
    ).fetchall()[0]
    return int(row[0]), int(row[1]), int(row[2])


def subscription_end_notes(con: duckdb.DuckDBPyConnection, data: DataParams) -> list[str]:
    """The note to print when end dates were read as inclusive (else nothing)."""
    if "subscriptions" not in present_tables(con):
        return []
    pairs, one_day, touching = end_gaps(con)
    if not end_is_inclusive(data.subscription_end, pairs, one_day, touching):
        return []
    return [inclusive_note(data.subscription_end, pairs, one_day)]


def source_notes(data: DataParams, source: str | None = None) -> list[str]:
    """:func:`subscription_end_notes` of a source that passed validation (``churnlab validate``)."""
    con = open_source(data, source or data.source)
    try:
        typed_views(con, data)
        return subscription_end_notes(con, data)
    finally:
        con.close()


def _exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_name = ?",
            [name],
        ).fetchall()[0][0]
    )


def _subscription_end(con: duckdb.DuckDBPyConnection, data: DataParams) -> None:
    """Read inclusive end dates (``data.subscription_end``) as the contract's exclusive ends."""
    shift = end_is_inclusive(data.subscription_end, *end_gaps(con))
    end = "end_at + INTERVAL 1 DAY" if shift else "end_at"
    con.execute(
        f"CREATE OR REPLACE VIEW main.subscriptions AS SELECT * REPLACE ({end} AS end_at) "
        f"FROM main.{AS_GIVEN}"
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


def last_rows(con: duckdb.DuckDBPyConnection) -> dict[str, dt.datetime | None]:
    """Each present table's last timestamp (its time column), None for an empty table."""
    out: dict[str, dt.datetime | None] = {}
    for t in present_tables(con):
        # fetchall: duckdb 2 keeps a half-fetched result open and then refuses register().
        value = con.execute(f"SELECT max({TABLES[t].time_column}) FROM main.{t}").fetchall()[0][0]
        out[t] = None if value is None else pd.Timestamp(value).to_pydatetime()
    return out


def data_end(con: duckdb.DuckDBPyConnection, data: DataParams) -> dt.datetime:
    """The end of observation that labels and KPIs use (:mod:`churnlab.coverage`).

    ``data.as_of`` if set, else the end of the last day that every table defining a label
    (subscriptions, orders) covers.
    """
    if data.as_of is not None:
        return data.as_of
    end = observed_end(last_rows(con))
    if end is None:
        raise ChurnlabError("the data has no timestamps: cannot tell where observation ends")
    return end


def write_tables(frames: dict[str, pd.DataFrame], out: Path | str) -> None:
    """Write frames as ``<out>/<name>.parquet``, atomically per file (temp file, then rename)."""
    out = Path(out)
    for name, frame in frames.items():
        with atomic_file(out / f"{name}.parquet") as tmp:
            frame.to_parquet(tmp, index=False)


def drop_temp_tables(con: duckdb.DuckDBPyConnection, keep: tuple[str, ...] = ()) -> None:
    """Drop churnlab's temporary tables (``_cl_*``) from a connection, except ``keep``."""
    names = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE temporary AND table_name LIKE '\\_cl\\_%' "
        "ESCAPE '\\'"
    ).fetchall()
    for (name,) in names:
        if name not in keep:
            con.execute(f"DROP TABLE IF EXISTS temp.{quote(name)}")

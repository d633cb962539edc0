"""The spine of a training set: which (account_id, cutoff) rows exist.

A cutoff is a midnight (UTC) timestamp; the spine holds, for every cutoff, the accounts that are
customers at that moment:

- contractual mode (subscriptions present): accounts with an active subscription at the cutoff,
  ``start_at <= cutoff < end_at`` (``end_at`` NULL = open-ended);
- orders-only mode: accounts with a (non-refund) order in ``[cutoff - lookback_days, cutoff)``.

All cutoffs are evaluated in one DuckDB query (a range join against a small table of cutoffs).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import duckdb
import pandas as pd

from churnlab.config import DatasetParams
from churnlab.errors import ChurnlabError
from churnlab.load import present_tables

MODES = ("contractual", "orders")


class SpineError(ChurnlabError):
    """The spine cannot be built from the data and params given."""


def resolve_mode(con: duckdb.DuckDBPyConnection, params: DatasetParams) -> str:
    """The label/spine mode: 'contractual' or 'orders'.

    ``auto`` picks contractual when a subscriptions table is present, else orders.

    Raises
    ------
    SpineError
        When the mode asks for a table that is absent.
    """
    return mode_for(present_tables(con), params)


def mode_for(tables: Iterable[str], params: DatasetParams) -> str:
    """The mode for the contract tables present (see :func:`resolve_mode`; any engine)."""
    present = set(tables)
    mode = params.mode
    if mode == "auto":
        mode = "contractual" if "subscriptions" in present else "orders"
    needed = "subscriptions" if mode == "contractual" else "orders"
    if needed not in present:
        raise SpineError(
            f"dataset.mode is {params.mode!r} (resolved to {mode!r}) but the data has no "
            f"{needed} table; add {needed}.parquet to the data source or set dataset.mode to "
            f"{'orders' if mode == 'contractual' else 'contractual'} in params.yaml"
        )
    return mode


def _month_start_on_or_after(t: dt.datetime) -> dt.datetime:
    first = dt.datetime(t.year, t.month, 1)
    if first >= t:
        return first
    return dt.datetime(t.year + t.month // 12, t.month % 12 + 1, 1)


def _step(t: dt.datetime, freq: str) -> dt.datetime:
    if freq == "weekly":
        return t + dt.timedelta(days=7)
    return dt.datetime(t.year + t.month // 12, t.month % 12 + 1, 1)


def _to_midnight(d: dt.date | dt.datetime) -> dt.datetime:
    return dt.datetime(d.year, d.month, d.day)


def data_start(con: duckdb.DuckDBPyConnection, mode: str) -> dt.datetime:
    """The first revenue timestamp (first subscription start or first order)."""
    table, col = (
        ("subscriptions", "start_at") if mode == "contractual" else ("orders", "ordered_at")
    )
    # fetchall, not fetchone: an unfinished result blocks the connection in DuckDB 2.
    value = con.execute(f"SELECT min({col}) FROM main.{table}").fetchall()[0]
    if value[0] is None:
        raise SpineError(f"the {table} table is empty: there is nothing to build a training set on")
    return pd.Timestamp(value[0]).to_pydatetime()


def cutoffs(
    con: duckdb.DuckDBPyConnection,
    params: DatasetParams,
    data_end: dt.datetime,
    mode: str,
) -> list[dt.datetime]:
    """The cutoffs of the training set, all at midnight.

    Defaults: the first cutoff is the first period start after the data's first revenue row plus
    the largest feature window (so every window is fully observed); the last is the last period
    start at or before ``data_end``. Weekly cutoffs step by 7 days from the first cutoff.

    Parameters
    ----------
    con : DuckDBPyConnection
        Connection holding the typed contract tables.
    params : DatasetParams
        The ``dataset`` section of params.yaml.
    data_end : datetime
        End of observation (``load.data_end``).
    mode : str
        'contractual' or 'orders' (see :func:`resolve_mode`).

    Raises
    ------
    SpineError
        When no cutoff falls in the range.
    """
    start = data_start(con, mode) if params.cutoff_start is None else None
    return cutoff_range(params, start, data_end)


def cutoff_range(
    params: DatasetParams, first_revenue: dt.datetime | None, data_end: dt.datetime
) -> list[dt.datetime]:
    """The cutoffs from the first revenue timestamp and the data end (see :func:`cutoffs`).

    ``first_revenue`` may be None when ``dataset.cutoff_start`` is set (it is not needed then);
    any engine computes it (:func:`data_start` on DuckDB).
    """
    if params.cutoff_start is not None:
        first = _to_midnight(params.cutoff_start)
    else:
        if first_revenue is None:
            raise SpineError("the revenue table is empty: there is nothing to build on")
        start = first_revenue + dt.timedelta(days=max(params.windows))
        first = _month_start_on_or_after(start)
    last = _to_midnight(params.cutoff_end) if params.cutoff_end is not None else data_end
    if last > data_end:
        raise SpineError(
            f"dataset.cutoff_end {last:%Y-%m-%d} is after the data end {data_end:%Y-%m-%d %H:%M}: "
            "cutoffs there would see no rows after the data end, so every account would look "
            f"as if it had gone quiet; set cutoff_end to {data_end:%Y-%m-%d} or earlier, or "
            "leave it empty (the data end)"
        )
    out = []
    t = first
    while t <= last:
        out.append(t)
        t = _step(t, params.cutoff_freq)
    if not out:
        raise SpineError(
            f"no cutoff between {first:%Y-%m-%d} and {last:%Y-%m-%d}: the data ends before the "
            "first cutoff; set dataset.cutoff_start/cutoff_end in params.yaml or use more data"
        )
    assert_midnight(out)
    return out


def assert_midnight(values: list[dt.datetime]) -> None:
    """Cutoffs must be midnights: daily feature buckets are exact only then."""
    bad = [v for v in values if v != _to_midnight(v)]
    if bad:
        raise SpineError(
            f"cutoffs must be at midnight (UTC); got {bad[0].isoformat()}: use dates for "
            "dataset.cutoff_start/cutoff_end"
        )


def cutoff_frame(values: list[dt.datetime]) -> pd.DataFrame:
    """A one-column frame of cutoffs (datetime64[us])."""
    return pd.DataFrame({"cutoff": pd.Series(values, dtype="datetime64[us]")})


def build(
    con: duckdb.DuckDBPyConnection,
    cutoff_values: list[dt.datetime],
    mode: str,
    params: DatasetParams,
) -> pd.DataFrame:
    """The eligible (account_id, cutoff) rows for every cutoff, sorted.

    Parameters
    ----------
    con : DuckDBPyConnection
        Connection holding the typed contract tables.
    cutoff_values : list of datetime
        Midnight cutoffs (see :func:`cutoffs`).
    mode : str
        'contractual': active subscription at the cutoff; 'orders': a non-refund order in the
        ``lookback_days`` before it.
    params : DatasetParams
        The ``dataset`` section (``lookback_days``).

    Returns
    -------
    DataFrame
        Columns ``account_id`` (str) and ``cutoff`` (datetime64[us]).
    """
    assert_midnight(cutoff_values)
    if mode not in MODES:
        raise SpineError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    con.register("_cl_cutoffs_df", cutoff_frame(cutoff_values))
    try:
        if mode == "contractual":
            sql = """
                SELECT DISTINCT s.account_id, c.cutoff
                FROM main.subscriptions s JOIN _cl_cutoffs_df c
                  ON s.start_at <= c.cutoff AND (s.end_at IS NULL OR s.end_at > c.cutoff)
            """
        else:
            sql = f"""
                SELECT DISTINCT o.account_id, c.cutoff
                FROM main.orders o JOIN _cl_cutoffs_df c
                  ON o.ordered_at < c.cutoff
                 AND o.ordered_at >= c.cutoff - INTERVAL {int(params.lookback_days)} DAY
                WHERE coalesce(o.kind, '') <> 'refund'
            """
        frame = con.execute(
            f"SELECT account_id, CAST(cutoff AS TIMESTAMP) AS cutoff FROM ({sql}) "
            "ORDER BY account_id, cutoff"
        ).df()
    finally:
        con.unregister("_cl_cutoffs_df")
    frame["account_id"] = frame["account_id"].astype(str)
    frame["cutoff"] = frame["cutoff"].astype("datetime64[us]")
    return frame

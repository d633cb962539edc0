"""The calendar period grid of the KPIs and the observed window of the data.

Periods are calendar months by default (month, quarter, or ISO week starting Monday). The data is
observed from the first day with a row in any table except ``accounts`` to the observation end;
a period that starts before the observed start or ends after the observed end is partial (see
:mod:`churnlab.kpis` for how partial periods are reported).
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from churnlab.config import DataParams, KpiParams
from churnlab.kpi_catalogue import TRAILING_PERIODS, KpiError, Period
from churnlab.load import data_end, present_tables
from churnlab.schema import TABLES


def period_start(ts: dt.datetime | pd.Timestamp, period: Period) -> pd.Timestamp:
    """The start of the calendar period containing ``ts`` (ISO weeks start on Monday)."""
    t = pd.Timestamp(ts).normalize()
    if period == "week":
        return t - pd.Timedelta(days=t.weekday())
    if period == "quarter":
        return t.replace(month=3 * ((t.month - 1) // 3) + 1, day=1)
    return t.replace(day=1)


def shift_period(ts: pd.Timestamp, period: Period, n: int) -> pd.Timestamp:
    """``ts`` moved by ``n`` periods (``ts`` is a period start)."""
    if period == "week":
        return ts + pd.Timedelta(weeks=n)
    return ts + pd.DateOffset(months=n * (3 if period == "quarter" else 1))


def observation_window(
    con: duckdb.DuckDBPyConnection, data: DataParams
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The observed time window ``[start, end)`` of the data (see the module docstring)."""
    parts = [
        f"SELECT min({TABLES[t].time_column}) AS m FROM main.{t}"
        for t in present_tables(con)
        if t != "accounts"
    ]
    if not parts:
        parts = ["SELECT min(created_at) AS m FROM main.accounts"]
    first = con.execute(f"SELECT min(m) FROM ({' UNION ALL '.join(parts)})").fetchall()[0]
    if first[0] is None:
        raise KpiError("the data has no rows with timestamps: there is nothing to compute KPIs on")
    start = pd.Timestamp(first[0]).normalize()
    end = pd.Timestamp(data_end(con, data))  # the same end as the labels' (churnlab.coverage)
    if end <= start:
        raise KpiError(
            f"data.as_of ({end}) is not after the first row of the data ({start}); "
            "set data.as_of to the time the data was extracted"
        )
    return start, end


def periods(params: KpiParams, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The period grid: one row per period overlapping the observed window and the requested range.

    Columns: ``period`` (start), ``period_end``, ``partial``, the snapshot instants ``b0``/``b1``
    (period start/end clipped to the observed window), ``t0`` (start of the trailing-12-month
    window, NaT when it is not fully observed or the period is partial), ``prev`` (previous period
    start) and ``prev_complete`` (the previous period was fully observed).
    """
    p: Period = params.period
    lo = start if params.date_from is None else max(start, pd.Timestamp(params.date_from))
    hi = end - pd.Timedelta(microseconds=1)
    if params.date_to is not None:
        # date_to is inclusive: the period containing it is the last one.
        hi = min(hi, pd.Timestamp(params.date_to))
    first, last = period_start(lo, p), period_start(hi, p)
    if first > last:
        raise KpiError(
            f"no {p} overlaps both the requested range (kpis.date_from={params.date_from}, "
            f"kpis.date_to={params.date_to}) and the observed data ({start.date()} to "
            f"{end.date()}); widen --from/--to"
        )
    rows = []
    ps = first
    k = TRAILING_PERIODS[p]
    while ps <= last:
        pe = shift_period(ps, p, 1)
        partial = bool(ps < start or pe > end)
        t0 = shift_period(pe, p, -k)
        prev = shift_period(ps, p, -1)
        rows.append(
            {
                "period": ps,
                "period_end": pe,
                "partial": partial,
                "b0": max(ps, start),
                "b1": min(pe, end),
                "t0": pd.NaT if partial or t0 < start else t0,
                "prev": prev,
                "prev_complete": bool(prev >= start),
            }
        )
        ps = pe
    frame = pd.DataFrame(rows)
    for col in ("period", "period_end", "b0", "b1", "t0", "prev"):
        frame[col] = frame[col].astype("datetime64[us]")
    return frame


def label(ts: pd.Timestamp, period: str) -> str:
    """A period's short name: ``2024-03``, ``2024-Q1`` or the week's Monday ``2024-03-04``."""
    if period == "month":
        return ts.strftime("%Y-%m")
    if period == "quarter":
        return f"{ts.year}-Q{(ts.month - 1) // 3 + 1}"
    return ts.strftime("%Y-%m-%d")

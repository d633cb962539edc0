"""The bucketed pass of the DuckDB + NumPy engine: counts, sums, active days, latest rows.

One projection query per source table reads the rows the windows cover (the whole history
when a lifetime total or a latest value is wanted) as narrow arrays: the account's index, the
day, a bit set of the filters the row matches (one bit per distinct ``where``), the values
summed (a sum's own filter applied in SQL: NULL, then 0, outside it; money as exact integer
micro-units) and the row's time when a latest row is wanted. :mod:`churnlab.feature_windows`
turns them into every window of every cutoff: sorted runs for few rows, dense (segment,
account) grids for many. Aggregates over calendar days of the whole history (lifetime order
days, the first order, gaps between order days, the latest day's spend) come from the
distinct (account, day) pairs (:class:`~churnlab.feature_windows.DayRuns`); a table that
needs them takes its windowed distinct days from them too.

A source whose specs use windows beyond ``dataset.windows`` (``dataset.long_windows``) gets a
grid of its own, with those windows' segments and an earlier start; the other sources keep the
shared one.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from churnlab import feature_windows as fw
from churnlab.feature_engine import ACCOUNTS, Lookup, Pass, Query, Run, relation, ts_sql
from churnlab.feature_specs import DAILY, Planned, Source

MICRO = 1_000_000
MAX_AMOUNT = 9_000_000_000_000
"""Amounts are summed exactly as 64-bit micro-units: up to nine trillion per row and per sum."""
MICRO_EXACT = 2**50
"""Below this many micro-units, DuckDB casts DECIMAL(38, 6) to DOUBLE as one division of the
unscaled integer (its fast path), which NumPy reproduces bit for bit."""

AMOUNT_ERROR = (
    "churnlab: an amount in {table} is beyond nine trillion; features sum amounts exactly in "
    "64-bit micro-units (6 decimals): check the table for a misplaced unit or corrupt row"
)
ValueKey = tuple[str, bool, str | None]
Bit = Callable[[str | None], int | None]
Measures = dict[str, tuple[int | None, str | None]]


def _int_type(nbits: int) -> str:
    """The narrowest signed SQL integer holding ``nbits`` bits."""
    return "SMALLINT" if nbits <= 15 else "INTEGER" if nbits <= 31 else "BIGINT"


_LITERAL = r"'(?:[^']|'')*'"
_SIMPLE = re.compile(
    rf"^\s*([a-z_][a-z0-9_]*)\s*(=|<>|IN)\s*({_LITERAL}|\(\s*{_LITERAL}(?:\s*,\s*{_LITERAL})*\s*\))\s*$",
    re.IGNORECASE,
)


def _simple_filter(where: str) -> tuple[str, str, frozenset[str]] | None:
    """``column = 'x'``, ``column <> 'x'`` or ``column IN ('x', ...)``: its parts, else None."""
    m = _SIMPLE.match(where)
    if m is None:
        return None
    op = m.group(2).upper()
    if (op == "IN") != m.group(3).startswith("("):
        return None
    lits = frozenset(x[1:-1].replace("''", "'") for x in re.findall(_LITERAL, m.group(3)))
    return m.group(1).lower(), op, lits


_OTHER = "\x00churnlab: a value that is none of the literals"


def _is_text(run: Run, source: Source, column: str) -> bool:
    """Whether ``column`` of the source's rows is VARCHAR (a lookup of string literals is exact)."""
    rows = run.con.execute(f"DESCRIBE SELECT {column} FROM {relation(run, source)}").fetchall()
    return bool(rows) and str(rows[0][1]) == "VARCHAR"


def _class_lookup(filters: dict[str, int]) -> tuple[str, np.ndarray, str] | None:
    """Rows' classes by one lookup of their value, when every filter compares one column.

    When each filter is ``column = / <> / IN`` string literals of the same column, a row's
    filter bits depend only on its value: the literals' bits, one bit set shared by every other
    value and none for NULL (SQL comparisons with NULL are not true). The bits are worked out
    here per value and the rows get their class from a constant list indexed by the value's
    position among the literals: one lookup per row instead of a CASE per filter, and no dense
    class pass in NumPy. Returns the SQL of the class, the bit set of each class and the
    column, or None.
    """
    parsed = []
    for where, b in filters.items():
        simple = _simple_filter(where)
        if simple is None:
            return None
        parsed.append((*simple, b))
    columns = {column for column, _, _, _ in parsed}
    if len(parsed) < 2 or len(columns) != 1:
        return None
    column = columns.pop()
    values = sorted({v for _, _, lits, _ in parsed for v in lits})
    if _OTHER in values:
        return None

    def bits_of(value: str | None) -> int:
        out = 0
        for _, op, lits, b in parsed:
            if value is not None and ((value not in lits) if op == "<>" else (value in lits)):
                out |= 1 << b
        return out

    sets = [bits_of(None), bits_of(_OTHER), *(bits_of(v) for v in values)]
    combos = sorted(set(sets))
    code = [combos.index(b) for b in sets]
    ctype = "TINYINT" if len(combos) < 127 else "SMALLINT"
    lits_sql = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    codes_sql = ", ".join(map(str, code[2:]))
    position = f"list_position([{lits_sql}]::VARCHAR[], {column})"
    sql = (
        f"CASE WHEN {column} IS NULL THEN {code[0]} "
        f"ELSE coalesce(([{codes_sql}]::{ctype}[])[{position}], {code[1]}) END"
    )
    return f"CAST({sql} AS {ctype})", np.array(combos, dtype=np.int64), column


def _value_key(p: Planned) -> ValueKey:
    """A value column of a projection: expression, exact decimal, and a sum's own filter."""
    return (str(p.value), p.spec.decimal, p.where if p.spec.agg in ("sum", "last_day") else None)


def _measure(p: Planned, values: dict[ValueKey, str]) -> tuple[str, str | None]:
    """Key of a count/sum spec's measure and its value column (None for a row count)."""
    col = values[_value_key(p)] if p.spec.agg == "sum" and p.value else None
    return f"{p.spec.agg}|{p.where}|{col}", col


def _projection(
    run: Run, g: fw.Grid, source: Source, planned: list[Planned], lifetime: bool
) -> tuple[Query, dict[str, int], dict[ValueKey, str], np.ndarray | None]:
    """The projection query of one source, its filter bits, value columns and class bit sets.

    The class bit sets are None when the query returns each row's filter ``bits`` (classes are
    then found in NumPy), else the query returns each row's class ``cls`` directly.
    """
    filters: dict[str, int] = {}
    values: dict[ValueKey, str] = {}
    for p in planned:
        if p.where is not None and p.where not in filters:
            filters[p.where] = len(filters)
        if p.spec.agg in ("sum", "latest", "last_day") and p.value is not None:
            values.setdefault(_value_key(p), f"v{len(values)}")
    if len(filters) > 62:
        raise ValueError(f"{source.name}: more than 62 distinct filters in one pass")
    t = source.time
    day_type = "SMALLINT" if g.ndays < 2**15 - 1 else "INTEGER"
    cols = [
        "a.aidx",
        f"CAST(greatest(date_diff('day', {ts_sql(g.start)}, {t}), -1) AS {day_type}) AS d",
    ]
    lookup = _class_lookup(filters)
    if lookup is not None and not _is_text(run, source, lookup[2]):
        lookup = None  # string comparisons with another type convert: keep the filters as written
    if lookup is not None:
        cols.append(f"{lookup[0]} AS cls")
    else:
        bits = " | ".join(f"CASE WHEN {w} THEN {1 << b} ELSE 0 END" for w, b in filters.items())
        cols.append(f"CAST({bits or '0'} AS {_int_type(len(filters))}) AS bits")
    for (expr, decimal, where), alias in values.items():
        if where is not None:  # a sum's filter, applied here: NULL (then 0) outside it
            expr = f"CASE WHEN {where} THEN {expr} END"
        if decimal:
            exact = f"CAST({expr} AS DECIMAL(38, 6))"
            cols.append(
                f"coalesce(CASE WHEN abs({exact}) >= {MAX_AMOUNT} THEN error("
                f"'{AMOUNT_ERROR.format(table=source.table)}') "
                f"ELSE CAST({exact} * {MICRO} AS BIGINT) END, 0) AS {alias}"
            )
        else:
            cols.append(f"CAST({expr} AS DOUBLE) AS {alias}")
    if any(p.spec.agg in ("last", "latest", *DAILY) or _daily(p) for p in planned):
        cols.append(f"epoch_us({t}) AS ts")
    lower = "" if lifetime else f" AND {t} >= {ts_sql(g.start)}"
    sql = f"""SELECT {", ".join(cols)}
        FROM {relation(run, source)} s JOIN {ACCOUNTS} a ON s.account_id = a.account_id
        WHERE {t} < {ts_sql(g.cutoffs[-1])}{lower}"""
    # the table's row count bounds the result (instant from Parquet metadata or a table)
    base = run.relations.get(source.relation or "", f"main.{source.table}")
    bound = int(run.con.execute(f"SELECT count(*) FROM {base}").fetchall()[0][0])
    query = Query(sql, main=source.relation is not None, capacity=bound)
    return query, filters, values, None if lookup is None else lookup[1]


def _rows(
    arrays: dict[str, np.ndarray],
    nbits: int,
    values: dict[ValueKey, str],
    combos: np.ndarray | None = None,
) -> fw.Rows:
    for (_, decimal, _where), alias in values.items():
        arrays[alias] = arrays[alias].astype(np.int64 if decimal else np.float64, copy=False)
    if combos is not None:  # classes from the projection (see _class_lookup)
        cls = arrays["cls"]
    else:
        cls, combos = fw.dense_classes(arrays["bits"], nbits)
    return fw.Rows(
        acc=arrays["aidx"].astype(np.int32, copy=False),
        day=arrays["d"],
        cls=cls,
        combos=combos,
        values={alias: arrays[alias] for alias in values.values()},
        time=arrays["ts"].astype(np.int64, copy=False) if "ts" in arrays else None,
    )


def _daily(p: Planned) -> bool:
    """Whether a spec needs the distinct (account, day) pairs of the whole history."""
    return p.spec.agg in DAILY or (p.spec.agg == "days" and p.window is None)


def source_grid(run: Run, planned: list[Planned]) -> fw.Grid:
    """The shared grid, or one with the source's long windows too (an earlier start)."""
    g = run.grid
    extra = {p.window for p in planned if p.window is not None} - set(g.windows)
    if not extra:
        return g
    return fw.make_grid(g.acc, g.cut, g.cutoffs, tuple(sorted({*g.windows, *extra})))


def bucketed(run: Run, source: Source, planned: list[Planned]) -> Pass:
    """Counts, sums, active days, days since the latest row and latest values, for a source."""
    g = source_grid(run, planned)
    lifetime = any(
        p.window is None and p.spec.agg in ("count", "sum", "latest") or _daily(p) for p in planned
    )
    query, filters, values, combos = _projection(run, g, source, planned, lifetime)
    rows = _rows((yield query), len(filters), values, combos)

    def bit(where: str | None) -> int | None:
        return None if where is None else filters[where]

    # a table that needs its distinct days takes every distinct-day count from them
    daily = any(_daily(p) for p in planned)
    by_day = [p for p in planned if daily and (_daily(p) or p.spec.agg == "days")]
    out_daily = _daily_pass(g, rows, by_day, values, bit)
    planned_rows = [p for p in planned if p not in by_day]

    measures: Measures = {}
    for p in planned:
        if p.spec.agg in ("count", "sum"):
            key, col = _measure(p, values)
            # a sum's filter is applied in the projection already
            measures[key] = (bit(p.where) if col is None else None, col)
    summed = {values[_value_key(p)] for p in planned if p.spec.agg == "sum"}
    floats = any(rows.values[v].dtype != np.int64 for v in summed)
    latest = any(p.spec.agg == "latest" for p in planned)
    if latest and floats:  # no family declares this; sorted running sums need integers
        raise ValueError(f"{source.name}: latest values and float sums in one pass")
    # latest values need the sorted rows, however many: sorting is then the price
    if (len(rows.acc) <= fw.SORT_ROWS or latest) and not floats:
        out, older = _sorted_pass(g, rows, planned_rows, measures, values, bit)
    else:
        out, older = _dense_pass(g, rows, planned_rows, measures, values, bit)
    out |= out_daily
    for p in planned:
        name = p.feature.name
        if p.spec.agg == "first":
            run.put(name, fw.days_since(g, out[name]))
        elif p.spec.agg == "last_day" and p.spec.decimal:
            sums, ok = out[name], out_daily[f"{name} (found)"]
            values_ = yield from micro_to_double(sums.astype(np.int64))
            run.put(name, np.where(ok, values_, np.nan))
        elif p.spec.agg == "last_day":
            run.put(name, np.where(out_daily[f"{name} (found)"], out[name], np.nan))
        elif p.spec.agg == "last":
            times = out[name]
            if name in older:
                times = np.where(times < 0, older[name][g.acc], times)
            elif not lifetime and (times < 0).any():
                need = np.zeros(g.accounts, dtype=bool)
                need[g.acc[times < 0]] = True
                found = yield from _older_times(run, g, source, p.where, need)
                times = np.where(times < 0, found[g.acc], times)
            run.put(name, fw.days_since(g, times))
        elif p.spec.agg == "sum" and p.spec.decimal:
            run.put(name, (yield from micro_to_double(np.rint(out[name]).astype(np.int64))))
        else:
            run.put(name, out[name])


def _daily_pass(
    g: fw.Grid, rows: fw.Rows, planned: list[Planned], values: dict[ValueKey, str], bit: Bit
) -> dict[str, np.ndarray]:
    """Distinct days, first times, gap spreads and latest day sums, per filter.

    From the (account, day) pairs of each filter's rows: one
    :class:`~churnlab.feature_windows.DayRuns` per distinct ``where``.
    """
    runs: dict[str | None, fw.DayRuns] = {}
    out: dict[str, np.ndarray] = {}
    for p in planned:
        if p.where not in runs:
            columns = tuple(
                sorted({values[_value_key(q)] for q in planned
                        if q.where == p.where and q.spec.agg == "last_day"})
            )  # fmt: skip
            runs[p.where] = fw.day_runs(g, rows, rows.rows_with(bit(p.where)), columns)
        r, name = runs[p.where], p.feature.name
        if p.spec.agg == "days":
            out[name] = fw.distinct_days(g, r, p.window)
        elif p.spec.agg == "first":
            out[name] = fw.first_times(g, r)
        elif p.spec.agg == "gap_sd":
            out[name] = fw.gap_spread(g, r)
        else:  # last_day
            out[name], out[f"{name} (found)"] = fw.latest_day_sums(g, r, values[_value_key(p)])
    return out


def _older_times(
    run: Run, g: fw.Grid, source: Source, where: str | None, missing: np.ndarray
) -> Lookup:
    """Latest row time before the start of the pass's grid ``g`` for the accounts in ``missing``.

    Looks back in widening steps (90 days, a year, everything) and stops as soon as every
    account has its answer, so that a time-ordered table is read only as far back as needed.
    """
    best = np.full(g.accounts, -1, dtype=np.int64)
    todo = np.flatnonzero(missing)
    upper = g.start
    for back in (90, 365, None):
        if not len(todo):
            break
        lower = None if back is None else g.start - dt.timedelta(days=back)
        cond = f"{source.time} < {ts_sql(upper)}"
        if lower is not None:
            cond += f" AND {source.time} >= {ts_sql(lower)}"
        if where is not None:
            cond += f" AND ({where})"
        raw = yield Query(
            f"""SELECT a.aidx, max(epoch_us({source.time})) AS ts
            FROM {relation(run, source)} s JOIN {ACCOUNTS} a ON s.account_id = a.account_id
            SEMI JOIN _cl_need_df n ON a.aidx = n.aidx
            WHERE {cond} GROUP BY a.aidx""",
            {"_cl_need_df": pa.table({"aidx": todo.astype(np.int32)})},
            main=True,
        )
        best[raw["aidx"]] = raw["ts"]
        todo = todo[best[todo] < 0]
        if lower is not None:
            upper = lower
    return best


def _sorted_pass(
    g: fw.Grid,
    rows: fw.Rows,
    planned: list[Planned],
    measures: Measures,
    values: dict[ValueKey, str],
    bit: Bit,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Few rows: windows by binary search in the rows sorted by account and time."""
    runs = fw.sort_runs(g, rows, measures)
    out: dict[str, np.ndarray] = {}
    day_counts: dict[str | None, np.ndarray] = {}
    for p in planned:
        agg = p.spec.agg
        if agg in ("count", "sum"):
            out[p.feature.name] = fw.runs_window(g, runs, _measure(p, values)[0], p.window)
        elif agg in ("last", "latest"):
            assert rows.time is not None
            match = None if p.where is None else rows.class_mask(bit(p.where))[runs.cls]
            row = fw.runs_latest(g, runs, match)
            if agg == "last":
                out[p.feature.name] = _take(rows.time, row, -1)
            else:
                v = rows.values[values[_value_key(p)]]
                out[p.feature.name] = _take(v, row, 0.0 if p.feature.fill_zero else np.nan)
        else:  # days
            assert p.window is not None
            if p.where not in day_counts:
                mask = rows.rows_with(bit(p.where))
                day_counts[p.where] = fw.active_day_counts(g, fw.day_cells(g, rows), mask)
            out[p.feature.name] = fw.active_days(g, day_counts[p.where], p.window)
    return out, {}


def _take(values: np.ndarray, row: np.ndarray, missing: float) -> np.ndarray:
    """``values[row]``, with ``missing`` where ``row`` is -1."""
    out = np.full(len(row), missing, dtype=values.dtype)
    ok = row >= 0
    out[ok] = values[row[ok]]
    return out


def _dense_pass(
    g: fw.Grid,
    rows: fw.Rows,
    planned: list[Planned],
    measures: Measures,
    values: dict[ValueKey, str],
    bit: Bit,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Many rows: dense (segment, account) sums and (day, account) presence."""
    sums = fw.segment_sums(g, rows, measures) if measures else None
    by_window: dict[int | None, dict[str, np.ndarray]] = {}
    cells = fw.day_cells(g, rows) if any(p.spec.agg in ("days", "last") for p in planned) else None
    day_counts: dict[str | None, np.ndarray] = {}
    masks: dict[str | None, np.ndarray] = {}
    out: dict[str, np.ndarray] = {}
    older: dict[str, np.ndarray] = {}
    for p in planned:
        name, agg = p.feature.name, p.spec.agg
        if agg in ("count", "sum"):
            assert sums is not None
            if p.window not in by_window:
                by_window[p.window] = fw.window_sums(g, sums, p.window)
            out[name] = by_window[p.window][_measure(p, values)[0]]
            continue
        assert cells is not None
        if p.where not in masks:
            masks[p.where] = rows.rows_with(bit(p.where))
            day_counts[p.where] = fw.active_day_counts(g, cells, masks[p.where])
        mask = masks[p.where]
        if agg == "days":
            assert p.window is not None
            out[name] = fw.active_days(g, day_counts[p.where], p.window)
        else:
            out[name] = fw.latest_by_day(g, rows, cells, mask, day_counts[p.where])
            if (rows.day < 0).any():
                older[name] = fw.older_times(g, rows, mask)
    return out, older


def micro_to_double(micro: np.ndarray) -> Lookup:
    """Exact micro-unit sums -> doubles, as DuckDB casts its DECIMAL(38, 6) sums.

    Values beyond :data:`MICRO_EXACT` (sums above a billion) are converted by DuckDB itself.
    """
    out = micro / MICRO
    big = np.flatnonzero(np.abs(micro) >= MICRO_EXACT)
    if len(big):
        raw = yield Query(
            "SELECT i, CAST(CAST(v AS DECIMAL(38, 0)) * CAST(0.000001 AS DECIMAL(7, 6)) "
            "AS DOUBLE) AS v FROM _cl_micro_df",
            {"_cl_micro_df": pa.table({"i": np.arange(len(big)), "v": micro[big]})},
        )
        out[big[raw["i"]]] = raw["v"]
    return out

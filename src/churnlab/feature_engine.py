"""The DuckDB + NumPy engine: expanded feature specs -> one float column per feature.

Per source table, the specs are grouped by how they are computed:

- bucketed aggregates (``count``, ``sum``, ``days``, ``last``): one projection query per table
  reads the rows the windows cover (the whole history when a lifetime total is wanted) as
  narrow integer arrays: account index, day, a bit set of the filters the row matches, values,
  times. :mod:`churnlab.feature_windows` turns them into every window of every cutoff;
- ``distinct``: one DuckDB aggregation per (account, value) of the segments it was active in;
- ``latest``: an ASOF join of the spine with the source's rows per instant;
- ``mean``, ``mean_days``, ``open``: a join of the spine with the table's rows (small tables);
- ``age``, ``attribute``: a join of the spine with the accounts;
- ``derived``: SQL over the other columns, evaluated by DuckDB over an Arrow view of them.

Every result is a NumPy array in spine order (row ``rid``), so assembling the frame is placing
columns, not joining relations.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from churnlab import feature_windows as fw
from churnlab.feature_specs import BUCKETED, Planned, Source
from churnlab.sources import quote

SPINE = "_cl_spine"  # account_id, cutoff, rid
ACCOUNTS = "_cl_acc"  # account_id, aidx
MICRO = 1_000_000


@dataclass
class Run:
    """A computation in progress: the connection, the grid and the columns computed so far."""

    con: duckdb.DuckDBPyConnection
    grid: fw.Grid
    relations: dict[str, str]  # source relation names ("steps" -> the timeline table)
    columns: dict[str, np.ndarray]
    codes: dict[str, np.ndarray]
    timings: dict[str, float]


def _ts(t: dt.datetime) -> str:
    return f"TIMESTAMP '{t:%Y-%m-%d %H:%M:%S}'"


def days_since_sql(cutoff: str, ts: str) -> str:
    """Days from ``ts`` to ``cutoff`` as an exact double (integer microseconds first)."""
    return f"CAST(epoch_us({cutoff}) - epoch_us({ts}) AS DOUBLE) / {fw.US_PER_DAY}"


def _relation(run: Run, source: Source) -> str:
    """The source's rows as a relation (its own filter applied)."""
    base = run.relations.get(source.relation or "", f"main.{source.table}")
    if source.where:
        return f"(SELECT * FROM {base} WHERE {source.where})"
    return base


def _code_sql(expr: str, levels: tuple[str, ...]) -> str:
    """Category code of a text value: its position in ``levels``, -1 if missing or unknown."""
    lits = ", ".join("'" + c.replace("'", "''") + "'" for c in levels)
    return f"CAST(coalesce(list_position([{lits}]::VARCHAR[], {expr}), 0) - 1 AS INTEGER)"


def _fetch_by_rid(run: Run, sql: str, planned: list[Planned], fill: bool = True) -> None:
    """Run ``sql`` (columns ``rid`` and one per feature) and place its columns by row."""
    raw = run.con.execute(sql).fetchnumpy()
    rid = np.asarray(raw["rid"])
    n = run.grid.n
    for p in planned:
        f = p.feature
        values = raw[f.name]
        if f.dtype == "category":
            out = np.full(n, -1, dtype=np.int64)
            out[rid] = np.ma.filled(np.ma.asarray(values), -1)
            run.codes[f.name] = out
            continue
        col = np.full(n, 0.0 if (f.fill_zero and fill) else np.nan)
        col[rid] = np.ma.filled(np.ma.asarray(values).astype("float64"), np.nan)
        run.columns[f.name] = col


# --------------------------------------------------------------------------------------------
# Bucketed aggregates
# --------------------------------------------------------------------------------------------


def _bucket_rows(
    run: Run, source: Source, planned: list[Planned], lifetime: bool
) -> tuple[fw.Rows, dict[str, int], dict[tuple[str, bool], str]]:
    """The projection query of one source: its rows as arrays, with filter bits and values."""
    g = run.grid
    filters: dict[str, int] = {}
    values: dict[tuple[str, bool], str] = {}
    for p in planned:
        if p.where is not None and p.where not in filters:
            filters[p.where] = len(filters)
        if p.spec.agg == "sum" and p.value is not None:
            values.setdefault((p.value, p.spec.decimal), f"v{len(values)}")
    if len(filters) > 62:
        raise ValueError(f"{source.name}: more than 62 distinct filters in one pass")
    t = source.time
    bits = " | ".join(f"CASE WHEN {w} THEN {1 << b} ELSE 0 END" for w, b in filters.items())
    day_type = "SMALLINT" if g.ndays < 2**15 - 1 else "INTEGER"
    cols = [
        "a.aidx",
        f"CAST(greatest(date_diff('day', {_ts(g.start)}, {t}), -1) AS {day_type}) AS d",
        f"CAST({bits or '0'} AS {'INTEGER' if len(filters) <= 30 else 'BIGINT'}) AS bits",
    ]
    for (expr, decimal), alias in values.items():
        if decimal:
            cols.append(f"CAST(CAST({expr} AS DECIMAL(38, 6)) * {MICRO} AS BIGINT) AS {alias}")
        else:
            cols.append(f"CAST({expr} AS DOUBLE) AS {alias}")
    wants_time = any(p.spec.agg == "last" for p in planned)
    if wants_time:
        cols.append(f"epoch_us({t}) AS ts")
    lower = "" if lifetime else f" AND {t} >= {_ts(g.start)}"
    end = g.cutoffs[-1]
    raw = run.con.execute(
        f"""SELECT {", ".join(cols)}
        FROM {_relation(run, source)} s JOIN {ACCOUNTS} a ON s.account_id = a.account_id
        WHERE {t} < {_ts(end)}{lower}"""
    ).fetchnumpy()
    arrays = {k: np.ma.filled(np.ma.asarray(v), np.nan if k.startswith("v") else 0)
              for k, v in raw.items()}  # fmt: skip
    for (_, decimal), alias in values.items():
        if not decimal:
            arrays[alias] = np.asarray(arrays[alias], dtype=np.float64)
        else:
            arrays[alias] = np.asarray(arrays[alias], dtype=np.int64)
    cls, combos = fw.dense_classes(np.asarray(arrays["bits"]), len(filters))
    rows = fw.Rows(
        acc=np.asarray(arrays["aidx"], dtype=np.int32),
        day=np.asarray(arrays["d"]),
        cls=cls,
        combos=combos,
        values={alias: arrays[alias] for alias in values.values()},
        time=np.asarray(arrays["ts"], dtype=np.int64) if wants_time else None,
    )
    return rows, filters, values


def _older_times(run: Run, source: Source, where: str | None, missing: np.ndarray) -> np.ndarray:
    """Latest row time before the grid's start for the accounts in ``missing`` (DuckDB).

    Looks back in widening steps (90 days, a year, everything) and stops as soon as every
    account has its answer, so that a time-ordered table is read only as far back as needed.
    """
    g = run.grid
    best = np.full(g.accounts, -1, dtype=np.int64)
    todo = np.flatnonzero(missing)
    upper = g.start
    for back in (90, 365, None):
        if not len(todo):
            break
        lower = None if back is None else g.start - dt.timedelta(days=back)
        run.con.register("_cl_need_df", {"aidx": todo.astype(np.int32)})
        cond = f"{source.time} < {_ts(upper)}"
        if lower is not None:
            cond += f" AND {source.time} >= {_ts(lower)}"
        if where is not None:
            cond += f" AND ({where})"
        raw = run.con.execute(
            f"""SELECT a.aidx, max(epoch_us({source.time})) AS ts
            FROM {_relation(run, source)} s JOIN {ACCOUNTS} a ON s.account_id = a.account_id
            SEMI JOIN _cl_need_df n ON a.aidx = n.aidx
            WHERE {cond} GROUP BY a.aidx"""
        ).fetchnumpy()
        run.con.unregister("_cl_need_df")
        best[np.asarray(raw["aidx"])] = np.asarray(raw["ts"])
        todo = todo[best[todo] < 0]
        if lower is not None:
            upper = lower
    return best


def _measure(p: Planned, values: dict[tuple[str, bool], str]) -> tuple[str, str | None]:
    """Key of a count/sum spec's measure and its value column (None for a row count)."""
    col = values[(p.value, p.spec.decimal)] if p.spec.agg == "sum" and p.value else None
    return f"{p.spec.agg}|{p.where}|{col}", col


def bucketed(run: Run, source: Source, planned: list[Planned]) -> None:
    """Counts, sums, active days and days since the latest row, for one source."""
    g = run.grid
    lifetime = any(p.window is None and p.spec.agg in ("count", "sum") for p in planned)
    rows, filters, values = _bucket_rows(run, source, planned, lifetime)

    def bit(where: str | None) -> int | None:
        return None if where is None else filters[where]

    measures = {}
    for p in planned:
        if p.spec.agg in ("count", "sum"):
            key, col = _measure(p, values)
            measures[key] = (bit(p.where), col)
    sums = fw.segment_sums(g, rows, measures) if measures else None
    by_window: dict[int | None, dict[str, np.ndarray]] = {}
    cells = fw.day_cells(g, rows) if any(p.spec.agg in ("days", "last") for p in planned) else None
    day_counts: dict[str | None, np.ndarray] = {}
    micro: list[tuple[str, np.ndarray]] = []
    for p in planned:
        name, agg = p.feature.name, p.spec.agg
        if agg in ("count", "sum"):
            assert sums is not None
            if p.window not in by_window:
                by_window[p.window] = fw.window_sums(g, sums, p.window)
            v = by_window[p.window][_measure(p, values)[0]]
            if p.spec.decimal:
                micro.append((name, np.rint(v).astype(np.int64)))
            else:
                run.columns[name] = v.astype(np.float64)
            continue
        assert cells is not None
        mask = rows.rows_with(bit(p.where))
        if p.where not in day_counts:
            day_counts[p.where] = fw.active_day_counts(g, cells, mask)
        if agg == "days":
            assert p.window is not None
            run.columns[name] = fw.active_days(g, day_counts[p.where], p.window)
        elif agg == "last":
            times = fw.latest_times(g, rows, cells, mask, day_counts[p.where])
            missing = times < 0
            if missing.any():
                if lifetime:
                    older = fw.older_times(g, rows, mask)
                else:
                    need = np.zeros(g.accounts, dtype=bool)
                    need[g.acc[missing]] = True
                    older = _older_times(run, source, p.where, need)
                times = np.where(missing, older[g.acc], times)
            run.columns[name] = fw.days_since(g, times)
    if micro:
        _micro_to_double(run, micro)


def _micro_to_double(run: Run, micro: list[tuple[str, np.ndarray]]) -> None:
    """Exact micro-unit sums -> doubles, converted by DuckDB as its DECIMAL(38, 6) sums are."""
    n = run.grid.n
    data = {"rid": np.arange(n, dtype=np.int64)} | {f"c{i}": v for i, (_, v) in enumerate(micro)}
    cols = ", ".join(
        f"CAST(CAST(c{i} AS DECIMAL(38, 0)) * CAST(0.000001 AS DECIMAL(7, 6)) AS DOUBLE) AS c{i}"
        for i in range(len(micro))
    )
    run.con.register("_cl_micro_df", pa.table(data))
    try:
        raw = run.con.execute(f"SELECT rid, {cols} FROM _cl_micro_df").fetchnumpy()
    finally:
        run.con.unregister("_cl_micro_df")
    rid = np.asarray(raw["rid"])
    for i, (name, _) in enumerate(micro):
        col = np.empty(n, dtype=np.float64)
        col[rid] = np.asarray(raw[f"c{i}"], dtype=np.float64)
        run.columns[name] = col


# --------------------------------------------------------------------------------------------
# Distinct values, latest values, per-cutoff joins, account attributes
# --------------------------------------------------------------------------------------------


def distinct(run: Run, source: Source, planned: list[Planned]) -> None:
    """Distinct non-null values per window (active users), from per-value segment masks."""
    g = run.grid
    chunk, bit = fw.segment_masks(g)
    nchunks = int(chunk.max()) + 1 if len(chunk) else 1
    days = [g.start.date() + dt.timedelta(days=i) for i in range(g.ndays)]
    segday = pa.table({"d": pa.array(days, pa.date32()), "chunk": chunk, "bit": bit})
    run.con.register("_cl_segday_df", segday)
    t = source.time
    try:
        for (where, value), group in _group(planned, lambda p: (p.where, p.value)).items():
            masks = ", ".join(
                f"bit_or(CASE WHEN sd.chunk = {k} THEN sd.bit END) AS m{k}" for k in range(nchunks)
            )
            cond = f" AND ({where})" if where else ""
            raw = run.con.execute(
                f"""SELECT a.aidx, u.* EXCLUDE (account_id) FROM (
                    SELECT s.account_id, {masks}
                    FROM {_relation(run, source)} s JOIN _cl_segday_df sd
                      ON CAST({t} AS DATE) = sd.d
                    WHERE {t} >= {_ts(g.start)} AND {t} < {_ts(g.cutoffs[-1])}
                      AND {value} IS NOT NULL{cond}
                    GROUP BY s.account_id, s.{value}) u
                JOIN {ACCOUNTS} a ON u.account_id = a.account_id"""
            ).fetchnumpy()
            acc = np.asarray(raw["aidx"], dtype=np.int64)
            masks_arr = np.column_stack(
                [np.ma.filled(np.ma.asarray(raw[f"m{k}"]), 0).astype(np.uint64)
                 for k in range(nchunks)]
            )  # fmt: skip
            for p in group:
                assert p.window is not None
                run.columns[p.feature.name] = fw.distinct_counts(g, acc, masks_arr, p.window)
    finally:
        run.con.unregister("_cl_segday_df")


def _group(planned: list[Planned], key: Callable[[Planned], object]) -> dict:
    out: dict[object, list[Planned]] = defaultdict(list)
    for p in planned:
        out[key(p)].append(p)
    return out


def latest(run: Run, source: Source, planned: list[Planned]) -> None:
    """Values on the latest row (per instant) of the source before each cutoff."""
    rel = _relation(run, source)
    if source.per_instant:
        aggs = ", ".join(f"{sql} AS {quote(c)}" for c, sql in source.per_instant.items())
        rel = f"(SELECT account_id, {source.time} AS _t, {aggs} FROM {rel} GROUP BY ALL)"
    else:
        rel = f"(SELECT *, {source.time} AS _t FROM {rel})"
    if source.previous:
        lags = ", ".join(
            f"lag({quote(c)}) OVER (PARTITION BY account_id ORDER BY _t) AS prev_{c}"
            for c in source.previous
        )
        rel = f"(SELECT *, {lags} FROM {rel})"
    cols = []
    for p in planned:
        f = p.feature
        last = p.spec.agg == "last"
        expr = days_since_sql("sp.cutoff", "l._t") if last else str(p.value)
        if f.dtype == "category":
            cols.append(f"{_code_sql(f'({expr})', f.categories or ())} AS {quote(f.name)}")
        else:
            cols.append(f"CAST({expr} AS DOUBLE) AS {quote(f.name)}")
    _fetch_by_rid(
        run,
        f"""SELECT sp.rid, {", ".join(cols)}
        FROM {SPINE} sp ASOF JOIN {rel} l
          ON sp.account_id = l.account_id AND sp.cutoff > l._t""",
        planned,
    )


def per_cutoff(run: Run, source: Source, planned: list[Planned]) -> None:
    """Means over a window and rows open at the cutoff: a join of the spine with the rows."""
    t = source.time
    windowed = [p for p in planned if p.spec.agg in ("mean", "mean_days")]
    for window, group in _group(windowed, lambda p: p.window).items():
        cols = []
        for p in group:
            if p.spec.agg == "mean_days":
                expr = (
                    f"avg(epoch_us(s.{p.value}) - epoch_us(s.{t})) "
                    f"FILTER (WHERE s.{p.value} < sp.cutoff) / {fw.US_PER_DAY}"
                )
            else:
                known = p.spec.known or t
                expr = (
                    f"CAST(avg(CAST(s.{p.value} AS DECIMAL(18, 6))) "
                    f"FILTER (WHERE {_qualify(known)} < sp.cutoff) AS DOUBLE)"
                )
            cols.append(f"{expr} AS {quote(p.feature.name)}")
        _fetch_by_rid(
            run,
            f"""SELECT sp.rid, {", ".join(cols)}
            FROM {SPINE} sp JOIN {_relation(run, source)} s ON sp.account_id = s.account_id
             AND s.{t} < sp.cutoff AND s.{t} >= sp.cutoff - INTERVAL {int(str(window))} DAY
            GROUP BY sp.rid""",
            group,
        )
    for p in planned:
        if p.spec.agg == "open":
            _fetch_by_rid(
                run,
                f"""SELECT sp.rid, count(*) AS {quote(p.feature.name)}
                FROM {SPINE} sp JOIN {_relation(run, source)} s ON sp.account_id = s.account_id
                 AND s.{t} < sp.cutoff AND (s.{p.value} IS NULL OR s.{p.value} >= sp.cutoff)
                GROUP BY sp.rid""",
                [p],
            )


def _qualify(expr: str) -> str:
    """Column references of the tickets' known-at expression, qualified with ``s.``."""
    for c in ("opened_at", "closed_at"):
        expr = expr.replace(c, f"s.{c}")
    return expr


def accounts(run: Run, source: Source, planned: list[Planned]) -> None:
    """Tenure and account attributes, hidden while the account row does not exist yet."""
    t = f"a.{source.time}"
    cols = []
    for p in planned:
        f = p.feature
        if p.spec.agg == "age":
            expr = days_since_sql("sp.cutoff", t)
            cols.append(f"CASE WHEN {t} < sp.cutoff THEN {expr} END AS {quote(f.name)}")
        elif f.dtype == "category":
            guarded = f"CASE WHEN {t} < sp.cutoff THEN a.{quote(str(p.value))} END"
            cols.append(f"{_code_sql(guarded, f.categories or ())} AS {quote(f.name)}")
        else:
            cols.append(
                f"CASE WHEN {t} < sp.cutoff THEN CAST(a.{quote(str(p.value))} AS DOUBLE) END "
                f"AS {quote(f.name)}"
            )
    _fetch_by_rid(
        run,
        f"""SELECT sp.rid, {", ".join(cols)}
        FROM {SPINE} sp JOIN {_relation(run, source)} a ON sp.account_id = a.account_id""",
        planned,
    )


def derived(run: Run, planned: list[Planned]) -> None:
    """Features that are SQL over other features (ratios, trends), in DuckDB over Arrow."""
    if not planned:
        return
    n = run.grid.n
    # NaN -> NULL, as in SQL; the scan is parallel, so results come back with their row number
    base = pa.table(
        {"rid": pa.array(np.arange(n, dtype=np.int64))}
        | {k: pa.array(v, from_pandas=True) for k, v in run.columns.items()}
    )
    exprs = ", ".join(
        f"CAST({p.feature.expr} AS DOUBLE) AS {quote(p.feature.name)}" for p in planned
    )
    run.con.register("_cl_base_df", base)
    try:
        _fetch_by_rid(run, f"SELECT rid, {exprs} FROM _cl_base_df", planned, fill=False)
    finally:
        run.con.unregister("_cl_base_df")


PASSES: dict[str, Callable[[Run, Source, list[Planned]], None]] = {
    "bucketed": bucketed,
    "distinct": distinct,
    "latest": latest,
    "per_cutoff": per_cutoff,
    "accounts": accounts,
}


def pass_of(p: Planned) -> str:
    """Which pass computes a planned feature."""
    agg = p.spec.agg
    if agg == "last" and p.source.per_instant:
        return "latest"  # days since the latest row of a per-instant source: same ASOF join
    if agg in BUCKETED:
        return "bucketed"
    if agg in ("mean", "mean_days", "open"):
        return "per_cutoff"
    if agg in ("age", "attribute"):
        return "accounts"
    return agg

"""Point-in-time features for every (account_id, cutoff) row of a spine.

Every feature sees only rows whose timestamp is strictly before the cutoff. The feature list is
explicit: the families are declared as tables of specs in :mod:`churnlab.feature_specs` (source,
filter, aggregate, windows, kind, a one-line description written to read well inside a sentence,
driver group); this module resolves what the data offers (tables present, optional columns with
values, event types, category levels), expands the specs into :class:`~churnlab.manifest.Feature`
records and has :mod:`churnlab.feature_engine` compute them. Tables that are absent drop their
family's features and nothing else. Counts are 0 when the table is present and nothing happened;
everything else that cannot be computed (a rate with no denominator, the days since an event that
never happened) stays missing (NaN).

All cutoffs are computed together, from one pass over each large table (see
:mod:`churnlab.feature_windows` for how windows of many cutoffs share it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from churnlab import feature_buckets as buckets
from churnlab import feature_engine as engine
from churnlab import feature_windows as fw
from churnlab.config import DatasetParams
from churnlab.feature_specs import (
    FAMILIES,
    NPS_CATEGORIES,
    Account,
    Context,
    FeatureError,
    Planned,
    expand,
)
from churnlab.load import drop_temp_tables, present_tables
from churnlab.manifest import Feature
from churnlab.schema import DRIVER_GROUPS, FAILED_PAYMENT_EVENT, TABLES
from churnlab.sources import quote
from churnlab.timeline import subscription_steps

__all__ = ["NPS_CATEGORIES", "FeatureError", "compute", "describe", "slug"]


def slug(value: str) -> str:
    """A column-name-safe lower-case form of a data value (event type, priority)."""
    s = re.sub(r"[^0-9a-z]+", "_", value.strip().lower()).strip("_")
    return s or "blank"


def _ts(t: dt.datetime) -> str:
    return f"TIMESTAMP '{t:%Y-%m-%d %H:%M:%S}'"


# --------------------------------------------------------------------------------------------
# What the data offers
# --------------------------------------------------------------------------------------------


def columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    return {
        r[0]: r[1]
        for r in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
    }


def _has_values(con: duckdb.DuckDBPyConnection, table: str, column: str, last: dt.datetime) -> bool:
    """Whether ``column`` has a value in a row before the last cutoff (stops at the first)."""
    if column not in columns(con, table):
        return False
    ts = TABLES[table].time_column
    rows = con.execute(
        f"SELECT 1 FROM main.{table} WHERE {quote(column)} IS NOT NULL AND {ts} < {_ts(last)} "
        "LIMIT 1"
    ).fetchall()
    return bool(rows)


def _event_types(con: duckdb.DuckDBPyConnection, grid: fw.Grid, limit: int) -> tuple[str, ...]:
    # Types used inside the feature windows (a type seen only earlier would be all zeros).
    rows = con.execute(
        f"""SELECT event_type FROM main.events
        WHERE occurred_at >= {_ts(grid.start)} AND occurred_at < {_ts(grid.cutoffs[-1])}
          AND event_type <> '{FAILED_PAYMENT_EVENT}'
        GROUP BY 1 ORDER BY count(*) DESC, event_type LIMIT {int(limit)}"""
    ).fetchall()
    return tuple(sorted(str(r[0]) for r in rows))


def event_slugs(types: tuple[str, ...]) -> dict[str, str]:
    """Column-safe forms of the event types (:func:`slug`), made unique by trailing ``_``."""
    out: dict[str, str] = {}
    for t in types:
        s = slug(t)
        while s in out.values():
            s += "_"
        out[t] = s
    return out


def _levels(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[str, ...]:
    return tuple(str(r[0]) for r in con.execute(sql).fetchall())


_NUMERIC = re.compile(
    r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|U\w*INT|FLOAT|DOUBLE|DECIMAL"
    r"|REAL|BOOLEAN)"
)


def _account_columns(
    con: duckdb.DuckDBPyConnection,
    params: DatasetParams,
    last: dt.datetime,
    given: dict[str, tuple[str, ...]],
) -> tuple[Account, ...]:
    out = []
    for col, ctype in columns(con, "accounts").items():
        if col in ("account_id", "created_at"):
            continue
        name = slug(col)
        if name in {"account_id", "cutoff"}:
            name = f"account_{name}"
        if ctype == "VARCHAR":
            sql = (
                f"SELECT DISTINCT {quote(col)} FROM main.accounts WHERE {quote(col)} IS NOT NULL "
                f"AND created_at < {_ts(last)} ORDER BY 1"
            )
            levels = given[name] if name in given else _levels(con, sql)
            if len(levels) > params.max_category_levels:
                continue  # an identifier-like column (names, emails): not a useful category
            out.append(Account(col, name, "category", levels))
        elif _NUMERIC.match(ctype):
            out.append(Account(col, name, "float64"))
    return tuple(out)


def _context(
    con: duckdb.DuckDBPyConnection,
    params: DatasetParams,
    grid: fw.Grid,
    event_types: tuple[str, ...] | None,
    categories: dict[str, tuple[str, ...]],
) -> Context:
    tables = frozenset(present_tables(con))
    last = grid.cutoffs[-1]
    needs = {n for f in FAMILIES for b in f.blocks for s in b.specs for n in s.needs}
    has = frozenset(
        n
        for n in sorted(needs)
        if n.split(".")[0] in tables and _has_values(con, n.split(".")[0], n.split(".")[1], last)
    )
    types: tuple[str, ...] = ()
    if "events" in tables:
        types = (
            event_types
            if event_types is not None
            else _event_types(con, grid, params.max_event_types)
        )
    cats = dict(categories)
    if "subscriptions.plan" in has and "plan" not in cats:
        cats["plan"] = _levels(
            con,
            "SELECT DISTINCT plan FROM main.subscriptions WHERE plan IS NOT NULL "
            f"AND start_at < {_ts(last)} ORDER BY 1",
        )
    accounts = _account_columns(con, params, last, categories) if "accounts" in tables else ()
    return Context(
        windows=grid.windows,
        tables=tables,
        has_values=has,
        event_types=types,
        slugs=event_slugs(types),
        categories=cats,
        account_columns=accounts,
        long_windows={t: tuple(ws) for t, ws in params.long_windows.items() if ws},
    )


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _prepare_spine(spine: pd.DataFrame) -> pd.DataFrame:
    if spine.empty:
        raise FeatureError("the spine is empty: no (account, cutoff) rows to compute features for")
    spine = (
        spine[["account_id", "cutoff"]]
        .astype({"account_id": str, "cutoff": "datetime64[us]"})
        .sort_values(["account_id", "cutoff"], kind="stable")
        .reset_index(drop=True)
    )
    cuts = spine["cutoff"]
    if ((cuts - cuts.dt.normalize()) != pd.Timedelta(0)).any():
        raise FeatureError("cutoffs must be at midnight (daily feature buckets rely on it)")
    if spine.duplicated().any():
        raise FeatureError("the spine has duplicate (account_id, cutoff) rows")
    return spine


def _grid(
    con: duckdb.DuckDBPyConnection, spine: pd.DataFrame, windows: tuple[int, ...]
) -> tuple[fw.Grid, dict[str, pa.Table]]:
    """Spine layout for array work; the spine and account index as temporary tables.

    They are also returned as Arrow tables, for a worker connection.
    """
    ids = spine["account_id"].to_numpy()
    acc, uniques = pd.factorize(ids, sort=False)  # the spine is sorted: codes ascend
    cut_values = np.sort(spine["cutoff"].unique())
    cut = np.searchsorted(cut_values, spine["cutoff"].to_numpy())
    cutoffs = tuple(pd.Timestamp(c).to_pydatetime() for c in cut_values)
    shared = {
        engine.SPINE: pa.table(
            {
                "account_id": pa.array(ids, pa.string()),
                "cutoff": pa.array(spine["cutoff"].to_numpy(), pa.timestamp("us")),
                "rid": pa.array(np.arange(len(spine), dtype=np.int64)),
            }
        ),
        engine.ACCOUNTS: pa.table(
            {
                "account_id": pa.array(uniques, pa.string()),
                "aidx": pa.array(np.arange(len(uniques), dtype=np.int32)),
            }
        ),
    }
    for name, table in shared.items():
        con.register("_cl_arrow_df", table)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _cl_arrow_df")
        con.unregister("_cl_arrow_df")
    grid = fw.make_grid(acc.astype(np.int32), cut.astype(np.int32), cutoffs, windows)
    return grid, shared


def compute(
    con: duckdb.DuckDBPyConnection,
    spine: pd.DataFrame,
    params: DatasetParams,
    *,
    event_types: tuple[str, ...] | list[str] | None = None,
    categories: dict[str, list[str] | tuple[str, ...]] | None = None,
    steps: str | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, list[Feature]]:
    """Features for every (account_id, cutoff) row of ``spine``, from rows before its cutoff.

    Parameters
    ----------
    con : DuckDBPyConnection
        Connection holding the typed contract tables.
    spine : DataFrame
        Columns ``account_id`` and ``cutoff`` (midnight timestamps), e.g. from ``spine.build``.
    params : DatasetParams
        The ``dataset`` section: ``windows``, ``long_windows``, ``max_event_types``,
        ``max_category_levels``.
    event_types : sequence of str, optional
        The event types to count (default: the ``max_event_types`` most frequent types in the
        feature windows of the spine's cutoffs).
        Pass the training manifest's list when scoring so the columns match.
    categories : dict, optional
        Category levels per categorical feature (default: values seen before the last cutoff).
    steps : str, optional
        The subscription timeline table (:func:`churnlab.timeline.subscription_steps`) when the
        caller has built it; it is left in place. By default the timeline is built and dropped.
    timings : dict, optional
        Filled with wall seconds per stage and per pass (``"bucketed:events"``, ...) and process
        CPU seconds per pass (``"cpu bucketed:events"``), for benchmarks.

    Returns
    -------
    (DataFrame, list of Feature)
        One row per spine row, sorted by (account_id, cutoff): ``account_id``, ``cutoff``, then
        the features (float64, or category for categoricals); and the feature definitions.
    """
    spine = _prepare_spine(spine)
    windows = tuple(sorted(set(params.windows)))
    if not windows or windows[0] <= 0:
        raise FeatureError("dataset.windows must be positive whole days, e.g. [7, 30, 90]")
    given = {k: tuple(v) for k, v in (categories or {}).items()}
    types = tuple(event_types) if event_types is not None else None
    keep_order = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()
    # Row order of intermediate results never matters here (every result carries its row
    # number); not keeping it lets DuckDB scan and write in parallel.
    con.execute("SET preserve_insertion_order = false")
    try:
        with _no_hugepage_advice():
            return _compute(con, spine, params, windows, types, given, steps, timings)
    finally:
        drop_temp_tables(con, keep=(steps,) if steps is not None else ())
        con.execute(f"SET preserve_insertion_order = {str(bool(keep_order[0][0])).lower()}")


MEMORY_FACTOR = 1.5
"""A lower bound on a feature build's peak memory over its float matrix (rows x features x 8
bytes): the matrix and the assembled frame's copy of part of it. The 100k-account benchmark
peaks at 2.0 GB for a 0.56 GB matrix, the rest being the event arrays, so a build refused with
this factor could not have fitted."""


def available_memory() -> int | None:
    """Bytes of memory the system can still give (Linux ``MemAvailable``), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(rows: int, columns: int) -> None:
    """Refuse a build whose feature matrix cannot fit in memory, before it is filled.

    Filling it would get the process killed by the system with no message (and the matrix is
    allocated lazily, so the kill comes minutes later, in the middle of the passes).

    Raises
    ------
    FeatureError
        If ``rows x columns`` floats, times :data:`MEMORY_FACTOR`, exceed the available memory.
    """
    need = float(rows) * columns * 8 * MEMORY_FACTOR
    avail = available_memory()
    if avail is None or need <= avail:
        return
    gib = 2.0**30
    raise FeatureError(
        f"the features need about {need / gib:.1f} GiB of memory ({rows:,} rows x {columns} "
        f"numeric features, held about {MEMORY_FACTOR:g}x while they are built) and "
        f"{avail / gib:.1f} GiB is available: build fewer rows (a later dataset.cutoff_start or "
        "an earlier dataset.cutoff_end), fewer features (fewer dataset.windows or a lower "
        "dataset.max_event_types), or build on Spark (dataset.engine: spark)"
    )


def _compute(
    con: duckdb.DuckDBPyConnection,
    spine: pd.DataFrame,
    params: DatasetParams,
    windows: tuple[int, ...],
    types: tuple[str, ...] | None,
    given: dict[str, tuple[str, ...]],
    steps: str | None,
    timings: dict[str, float] | None,
) -> tuple[pd.DataFrame, list[Feature]]:
    clock = {"start": time.perf_counter()}

    def lap(name: str) -> None:
        now = time.perf_counter()
        clock[name], clock["start"] = now - clock["start"], now

    grid, shared = _grid(con, spine, windows)
    lap("grid")
    ctx = _context(con, params, grid, types, given)
    planned = expand(ctx)
    _check_names(planned)
    lap("context")
    if steps is None and any(p.source.relation == "steps" for p in planned):
        steps = subscription_steps(con, "_cl_fsteps", accounts=spine["account_id"])
        lap("timeline")
    feats = sorted((p.feature for p in planned), key=lambda f: DRIVER_GROUPS.index(f.group))
    floats = [f.name for f in feats if f.dtype != "category"]
    check_memory(grid.n, len(floats))
    run = engine.Run(
        con,
        grid,
        {"steps": steps} if steps else {},
        block=np.empty((grid.n, len(floats)), dtype="float64", order="F"),
        position={name: j for j, name in enumerate(floats)},
        shared=shared,
    )
    _run(run, planned)
    lap("passes")
    frame = _assemble(run, spine, feats)
    lap("assemble")
    if timings is not None:
        timings.update({k: v for k, v in clock.items() if k != "start"} | run.timings)
        timings.update({f"cpu {k}": v for k, v in run.cpu.items()})
    return frame, feats


@contextlib.contextmanager
def _no_hugepage_advice() -> Iterator[None]:
    """NumPy's huge-page advice off while features are computed, restored after.

    NumPy asks Linux for transparent huge pages on every large array (``madvise``). Where the
    kernel then compacts memory synchronously to find them (``defrag = madvise``, a common
    default) and memory is fragmented (a page cache full of the data just read), each fresh
    array stalls in the kernel (numpy issue 31590). The build allocates many large arrays once;
    on the benchmark machine this halved the kernel time of the feature build.
    """
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    toggle = getattr(multiarray, "_set_madvise_hugepage", None)
    previous = toggle(False) if toggle is not None else None
    try:
        yield
    finally:
        if toggle is not None and previous is not None:
            toggle(previous)


def _check_names(planned: list[Planned]) -> None:
    names = [p.feature.name for p in planned]
    if len(set(names)) != len(names):
        dup = sorted({x for x in names if names.count(x) > 1})
        raise FeatureError(f"duplicate feature names {dup}: rename the account columns")


PASSES: engine.Passes = {
    "bucketed": buckets.bucketed,
    "distinct": engine.distinct,
    "latest": engine.latest,
    "per_cutoff": engine.per_cutoff,
    "accounts": engine.accounts,
}
BACKGROUND = True
"""Run independent queries on a second connection while the main thread does array work."""


def _run(run: engine.Run, planned: list[Planned]) -> None:
    """Every pass over every source (largest table first), then the derived features."""
    groups: dict[tuple[str, str], list[Planned]] = {}
    for p in planned:
        if p.spec.agg != "derived":
            groups.setdefault((engine.pass_of(p), p.source.name), []).append(p)
    # the events projection first: its array work is the longest and overlaps the rest
    order = sorted(groups, key=lambda k: (k[1] != "events", k[0] != "bucketed"))
    engine.execute(run, {k: groups[k] for k in order}, PASSES, background=BACKGROUND)
    t, c = time.perf_counter(), time.process_time()
    engine.derived(run, [p for p in planned if p.spec.agg == "derived"])
    run.timings["derived"] = time.perf_counter() - t
    run.cpu["derived"] = time.process_time() - c


def _assemble(run: engine.Run, spine: pd.DataFrame, feats: list[Feature]) -> pd.DataFrame:
    """The frame: the float block as it is, category columns inserted where they belong."""
    floats = [f.name for f in feats if f.dtype != "category"]
    # The frame takes the Fortran-ordered block as its single float block without copying.
    frame = pd.DataFrame(run.block, columns=floats, copy=False)
    for j, f in enumerate(feats):  # ascending positions: each insert lands where it belongs
        if f.dtype == "category":
            cat = pd.Categorical.from_codes(run.codes[f.name], categories=list(f.categories or ()))
            frame.insert(j, f.name, cat)
    frame.insert(0, "cutoff", spine["cutoff"].to_numpy())
    frame.insert(0, "account_id", spine["account_id"].to_numpy())
    return frame


def describe(name: str, features: Sequence[Feature]) -> Feature:
    """The definition of one feature.

    Parameters
    ----------
    name : str
        A feature column name.
    features : sequence of Feature
        A manifest's features (``dataset.read(out)[1].features``); the feature set depends on
        the data (tables present, event types), so the manifest is the reference.

    Raises
    ------
    FeatureError
        For a name that is not in the list.
    """
    for f in features:
        if f.name == name:
            return f
    raise FeatureError(
        f"feature {name!r} is not in the manifest's feature list: rebuild the training set with "
        "`churnlab build-dataset`"
    )

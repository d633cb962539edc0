"""The Spark compiler of the feature specs: the same features as the DuckDB engine, on Spark.

It reads the declared families through :func:`churnlab.feature_specs.expand` (the same
:class:`~churnlab.feature_specs.Planned` records, so the same feature names, dtypes, order and
descriptions) and compiles each aggregate to the PySpark DataFrame API. Nothing here lists
features; a spec the compiler cannot compile exactly is refused with "not supported on Spark
yet: ..." (:class:`churnlab.spark_engine.SparkUnsupported`), never computed approximately.
The expansion and its checks are in :mod:`churnlab.spark_plan`, the passes that compile each
kind of aggregate in :mod:`churnlab.spark_passes`; this module runs them and assembles the row.

How each aggregate is computed (all cutoffs at once; ``c`` is the cutoff in epoch
microseconds, windows are whole UTC days before it because cutoffs are midnights):

- ``count``, ``sum``, ``days`` in a window: the source's rows are reduced to one row per
  (account, day) with a count per filter, a sum per value and the day's latest matching time;
  a broadcast (day, cutoff, lag) table (:func:`churnlab.spark_engine.day_map`) joins each
  day to the cutoffs whose windows hold it, and the window's value is a conditional sum
  (``lag <= w``); active days count the days with a matching row;
- lifetime ``count`` / ``sum`` and ``last`` (days since the latest matching row): running
  totals and maxima over the same daily rows, read at a marker per spine row placed before
  the rows of its own day (:func:`churnlab.spark_engine.running`);
- ``latest`` (and ``last`` of per-instant sources): the source's rows (combined per instant
  where the source says so, with the previous instant's values as ``prev_*``) and a marker
  per spine row, in time order; the value is the last row's before the marker (DuckDB: an
  ASOF join);
- ``distinct``: one row per (account, value, day), joined to the cutoffs; a value counts in a
  window when its last day before the cutoff is inside it;
- ``mean``, ``mean_days``: the rows joined to the cutoffs whose windows hold them, averaged
  with the row-level conditions (known before the cutoff; closed before it);
- ``open``: +1 at each row's time and -1 at its end (when it has one), a running sum at each
  marker;
- ``age``, ``attribute``: a join of the spine with the accounts, hidden before the account
  row exists;
- ``derived``: the spec's SQL over the other columns of the assembled row.

Constructs that differ between the engines, and how they are handled:

- **day differences**: DuckDB's ``date_diff('day', a, b)`` counts day boundaries crossed,
  Spark's ``datediff`` (and sqlglot's transpilation of one into the other) full days elapsed.
  Neither is used: times are epoch microseconds, days are floored UTC calendar days
  (:func:`churnlab.spark_engine.day_of`), durations are integer microseconds divided once
  (:func:`churnlab.spark_engine.days_between`), which is what the DuckDB engine computes.
- **strictly before the cutoff**: every window is ``c - w days <= t < c``; in the running
  passes a row at exactly ``c`` sorts after the cutoff's marker, so it is not counted.
- **time zones**: the session time zone is UTC (fixed by :func:`churnlab.spark_engine.session`);
  timestamps are instants, so zoned Parquet columns are read at their UTC instant and naive
  ones as UTC, as the DuckDB loader does.
- **ASOF joins, FILTER clauses, ordered aggregates** (``first(x ORDER BY ...)``): written as
  running windows, conditional sums and a ``row_number`` per instant.
- **DECIMAL casts of doubles and averages of decimals**: rewritten to DuckDB's rounding and
  result (:func:`churnlab.spark_engine.translate`); money is summed as exact integer
  micro-units and divided once, as the DuckDB engine does.
- **NULL and NaN**: Spark keeps them apart, DuckDB's engine makes every missing value NaN;
  here missing is NULL throughout (NaN inputs become NULL at load), written as NaN/null.
- **division by zero**: DuckDB gives inf or NaN, Spark (ANSI off) NULL; specs divide only
  under ``CASE WHEN den > 0`` (unguarded division is banned).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from churnlab import spark_engine as se
from churnlab.config import DatasetParams
from churnlab.feature_specs import Planned
from churnlab.manifest import Feature
from churnlab.schema import DRIVER_GROUPS
from churnlab.sources import quote
from churnlab.spark_passes import PASSES, pass_of
from churnlab.spark_plan import (
    SUPPORTED,
    Run,
    check_supported,
    checked_cutoffs,
    plan,
    quote_col,
    windows_of,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def compute(
    spark: SparkSession,
    tables: dict[str, DataFrame],
    spine: DataFrame,
    params: DatasetParams,
    *,
    cutoffs: Sequence[dt.datetime] | None = None,
    event_types: Sequence[str] | None = None,
    categories: dict[str, list[str] | tuple[str, ...]] | None = None,
    steps: DataFrame | None = None,
) -> tuple[DataFrame, list[Feature], list[DataFrame]]:
    """Features for every (account_id, cutoff) row of ``spine``, from rows before its cutoff.

    The Spark counterpart of :func:`churnlab.features.compute`: the same features (names,
    order, dtypes, values) from the same specs. Nothing is collected to the driver but the
    small facts the expansion needs (event types, category levels, which optional columns have
    values, the distinct cutoffs).

    Parameters
    ----------
    spark : SparkSession
        The session.
    tables : dict
        Contract table -> typed DataFrame (:func:`churnlab.spark_engine.read_tables`).
    spine : DataFrame
        ``account_id`` (string) and ``cutoff`` (timestamp at a UTC midnight), no duplicates.
    params : DatasetParams
        The ``dataset`` section: ``windows``, ``max_event_types``, ``max_category_levels``.
    cutoffs : sequence of datetime, optional
        The spine's distinct cutoffs when the caller knows them (else they are collected).
    event_types, categories : optional
        As for :func:`churnlab.features.compute` (scoring passes the training ones).
    steps : DataFrame, optional
        The subscription timeline (:func:`churnlab.spark_engine.subscription_steps`) when the
        caller has built it.

    Returns
    -------
    (DataFrame, list of Feature, list of DataFrame)
        One row per spine row (unordered): ``account_id``, ``cutoff``, then the features
        (double; categories as their level's text, NULL when missing or unknown); the feature
        definitions; and the frames cached for the computation (unpersist them when done).
    """
    from pyspark.sql import functions as F

    if cutoffs is None:
        # as epoch microseconds: pyspark renders timestamps in the Python process's time zone
        found = spine.select(se.micros(F.col("cutoff"))).distinct().collect()
        cutoffs = [se.from_micros(int(r[0])) for r in found]
    cuts = checked_cutoffs(cutoffs)
    windows = windows_of(params)
    relations = dict(tables)
    c = se.micros(F.col("cutoff"))
    sp = spine.select(F.col("account_id").cast("string").alias("account_id"), c.alias("c"))
    sp = sp.withColumn("cday", se.day_of(F.col("c")))
    planned = plan(spark, tables, cuts, params, event_types=event_types, categories=categories)
    # the day map reaches back as far as the longest window of any feature (long windows)
    longest = max([p.window for p in planned if p.window is not None] or [windows[-1]])
    days = se.day_map(
        spark,
        [(se.to_micros(k), se.to_micros(k) // se.US_PER_DAY - longest,
          se.to_micros(k) // se.US_PER_DAY) for k in cuts],
    )  # fmt: skip
    run = Run(spark, relations, sp, cuts, windows, days)
    run.spine = run.persist(sp)
    if steps is None and any(p.source.relation == "steps" for p in planned):
        steps = se.subscription_steps(tables["subscriptions"])
    if steps is not None:
        relations["steps"] = run.persist(steps)
    frame = _assemble(run, planned)
    feats = sorted((p.feature for p in planned), key=lambda f: DRIVER_GROUPS.index(f.group))
    return frame, feats, run.cached


def release(cached: Sequence[DataFrame]) -> None:
    """Unpersist the frames :func:`compute` cached."""
    for frame in cached:
        frame.unpersist()


# --------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------


def _assemble(run: Run, planned: list[Planned]) -> DataFrame:
    """Every pass joined onto the spine, fills applied, then the derived features."""
    from pyspark.sql import functions as F

    groups: dict[tuple[str, str], list[Planned]] = {}
    for p in planned:
        if p.spec.agg != "derived":
            groups.setdefault((pass_of(p), p.source.name), []).append(p)
    # every pass's frames stacked under the spine's keys and reduced per key: one shuffle,
    # where a join per pass would be one each (each frame has at most one row per key)
    frames = [run.spine.select("account_id", "c", F.lit(1).alias("_spine"))]
    fills: dict[str, float | None] = {}
    for (kind, _source), group in groups.items():
        part = PASSES[kind](run, group[0].source, group)
        frames += part.frames
        fills |= part.fills
    stacked = frames[0]
    for other in frames[1:]:
        stacked = stacked.unionByName(other, allowMissingColumns=True)
    names = [p.feature.name for p in planned if p.spec.agg != "derived"]
    wide = (
        stacked.groupBy("account_id", "c")
        .agg(
            F.max("_spine").alias("_spine"),
            *[F.first(quote_col(n), ignorenulls=True).alias(n) for n in names],
        )
        .where(F.col("_spine") == 1)
    )
    base = []
    for p in planned:
        if p.spec.agg == "derived":
            continue
        name = p.feature.name
        col = F.col(quote_col(name))
        if p.feature.dtype != "category":
            col = F.when(F.isnan(col), F.lit(None).cast("double")).otherwise(col)
        fill = fills[name]
        if fill is not None:
            col = F.coalesce(col, F.lit(fill))
        base.append(col.alias(name))
    wide = wide.select("account_id", "c", *base)
    # derived features over other derived ones (overdue ratio over the mean gap) come in
    # rounds, each over the columns of the earlier ones, as the DuckDB engine computes them
    todo = [p for p in planned if p.spec.agg == "derived"]
    while todo:
        pending = {p.feature.name for p in todo}
        ready = [p for p in todo if not (_identifiers(p) & (pending - {p.feature.name}))]
        if not ready or any(p.feature.name in _identifiers(p) for p in ready):
            raise ValueError(f"derived features depend on each other in a cycle: {sorted(pending)}")
        schema = se.schema_of(wide)
        exprs = []
        for p in ready:
            sql = se.translate(str(p.feature.expr), schema, f"feature {p.feature.name}")
            exprs.append(F.expr(f"CAST({sql} AS DOUBLE)").alias(p.feature.name))
        wide = wide.select("*", *exprs)
        todo = [p for p in todo if p not in ready]
    order = sorted((p.feature for p in planned), key=lambda f: DRIVER_GROUPS.index(f.group))
    cutoff = F.timestamp_micros(F.col("c")).alias("cutoff")
    return wide.select("account_id", cutoff, *[F.col(quote_col(f.name)) for f in order])


def _identifiers(p: Planned) -> set[str]:
    """The identifiers a derived feature's SQL uses (feature names among them)."""
    return set(re.findall(r"[A-Za-z_]\w*", str(p.feature.expr)))


__all__ = ["SUPPORTED", "check_supported", "compute", "plan", "quote", "quote_col", "release"]

"""The Spark compiler of the feature specs: the same features as the DuckDB engine, on Spark.

It reads the declared families through :func:`churnlab.feature_specs.expand` (the same
:class:`~churnlab.feature_specs.Planned` records, so the same feature names, dtypes, order and
descriptions) and compiles each aggregate to the PySpark DataFrame API. Nothing here lists
features; a spec the compiler cannot compile exactly is refused with "not supported on Spark
yet: ..." (:class:`churnlab.spark_engine.SparkUnsupported`), never computed approximately.

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

import dataclasses
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from churnlab import spark_engine as se
from churnlab.config import DatasetParams
from churnlab.feature_specs import (
    DAILY,
    FAMILIES,
    Account,
    Context,
    FeatureError,
    Planned,
    Source,
    Spec,
    expand,
)
from churnlab.features import event_slugs, slug
from churnlab.manifest import Feature
from churnlab.schema import DRIVER_GROUPS, FAILED_PAYMENT_EVENT, TABLES
from churnlab.sources import quote

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

SUPPORTED = frozenset(
    ("count", "sum", "days", "last", "first", "gap_sd", "last_day", "latest", "distinct", "mean",
     "mean_days", "open", "age", "attribute", "derived")
)  # fmt: skip
"""The aggregates this compiler knows; a new one in :data:`churnlab.feature_specs.AGGS` is an
error until it is taught here (and in the parity tests)."""
RELATIONS = (None, "steps")

_SPEC_FIELDS = frozenset(
    ("name", "description", "group", "agg", "source", "where", "value", "windows", "kind",
     "measure", "fill_zero", "decimal", "known", "dtype", "categories", "each", "join",
     "levels", "needs")
)  # fmt: skip
_SOURCE_FIELDS = frozenset(
    ("name", "table", "time", "relation", "where", "per_instant", "previous")
)
_ORDERED = re.compile(r"^\s*first\(\s*([A-Za-z_]\w*)\s+ORDER\s+BY\s+(.+)\)\s*$", re.I | re.S)


@dataclass
class _Run:
    """A computation in progress: the session, the relations, the spine and the cutoffs."""

    spark: SparkSession
    relations: dict[str, DataFrame]  # contract tables by name, plus "steps"
    spine: DataFrame  # account_id, c (epoch us), cday (epoch day)
    cutoffs: tuple[dt.datetime, ...]
    windows: tuple[int, ...]
    days: DataFrame  # (d, c, lag) for lag 1 .. the largest window
    cached: list[DataFrame] = field(default_factory=list)

    @property
    def start_us(self) -> int:
        """First instant any window covers (the earliest cutoff minus the largest window)."""
        return se.to_micros(self.cutoffs[0] - dt.timedelta(days=self.windows[-1]))

    def start_of(self, planned: Sequence[Planned]) -> int:
        """First instant the windows of ``planned`` cover (long windows reach further back)."""
        longest = max([p.window for p in planned if p.window is not None] or [self.windows[-1]])
        return se.to_micros(self.cutoffs[0] - dt.timedelta(days=longest))

    @property
    def last_us(self) -> int:
        """The latest cutoff: no row at or after it matters to any spine row."""
        return se.to_micros(self.cutoffs[-1])

    def relation(self, source: Source) -> DataFrame:
        """The source's rows, its own filter applied."""
        from pyspark.sql import functions as F

        base = self.relations[source.relation or source.table]
        if source.where:
            base = base.where(F.expr(se.translate(source.where, se.schema_of(base), source.name)))
        return base

    def persist(self, frame: DataFrame) -> DataFrame:
        """Cache a frame read by several passes (released by :func:`release`)."""
        frame = frame.persist()
        self.cached.append(frame)
        return frame


@dataclass(frozen=True)
class _Part:
    """A pass's result: frames keyed by (account_id, c), one column per feature, and fills.

    A frame has at most one row per key; it may hold keys that are not spine rows (accounts
    with rows at a cutoff where they are not eligible), which the assembly drops.
    """

    frames: list[DataFrame]
    fills: dict[str, float | None]  # value for spine rows the pass has no row for


# --------------------------------------------------------------------------------------------
# What the compiler accepts
# --------------------------------------------------------------------------------------------


def check_supported(planned: Sequence[Planned]) -> None:
    """Refuse what this compiler would not compute exactly as the DuckDB engine does.

    Raises
    ------
    SparkUnsupported
        Naming the construct and the feature: an aggregate it does not know, a spec or source
        field it does not read (set to a non-default value), a relation other than the table
        or the subscription timeline, or a combination the DuckDB engine reads differently.
    """
    for p in planned:
        name, spec, source = p.feature.name, p.spec, p.source
        if spec.agg not in SUPPORTED:
            raise se.SparkUnsupported(f"aggregate {spec.agg!r}", f"feature {name}")
        _check_fields(spec, _SPEC_FIELDS, f"feature {name}")
        _check_fields(source, _SOURCE_FIELDS, f"source {source.name}")
        if source.relation not in RELATIONS:
            raise se.SparkUnsupported(f"relation {source.relation!r}", f"source {source.name}")
        agg = spec.agg
        if agg in ("mean", "mean_days", "open", "age", "attribute") and p.where is not None:
            raise se.SparkUnsupported(f"a filter on a {agg!r} feature", f"feature {name}")
        if agg in ("latest", "last") and source.per_instant and p.where is not None:
            raise se.SparkUnsupported("a filter on a per-instant source", f"feature {name}")
        if agg in ("distinct", "mean", "mean_days") and p.window is None:
            raise se.SparkUnsupported(f"{agg!r} without a window", f"feature {name}")
        point = ("latest", "last", "open", "age", "attribute", *DAILY)
        if agg in point and p.window is not None:
            raise se.SparkUnsupported(f"{agg!r} with a window", f"feature {name}")
        needs_value = ("sum", "latest", "distinct", "mean", "mean_days", "open", "last_day")
        if agg in needs_value and not p.value:
            raise se.SparkUnsupported(f"{agg!r} without a value", f"feature {name}")


def _check_fields(record: Spec | Source, known: frozenset[str], where: str) -> None:
    for f in dataclasses.fields(record):
        if f.name in known:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if getattr(record, f.name) != default:
            raise se.SparkUnsupported(f"the {type(record).__name__} field {f.name!r}", where)


# --------------------------------------------------------------------------------------------
# What the data offers (as churnlab.features resolves it for DuckDB)
# --------------------------------------------------------------------------------------------


def _event_types(events: DataFrame, start_us: int, last_us: int, limit: int) -> tuple[str, ...]:
    """The ``limit`` most used event types inside the feature windows (ties by name)."""
    from pyspark.sql import functions as F

    t = se.micros(F.col("occurred_at"))
    rows = (
        events.where(
            (t >= start_us) & (t < last_us) & (F.col("event_type") != FAILED_PAYMENT_EVENT)
        )
        .groupBy("event_type")
        .count()
        .orderBy(F.col("count").desc(), F.col("event_type"))
        .limit(int(limit))
        .collect()
    )
    return tuple(sorted(str(r[0]) for r in rows))


def quote_col(name: str) -> str:
    """A column name for ``F.col`` (backquoted: names may hold dots or spaces)."""
    return "`" + name.replace("`", "``") + "`"


_NUMERIC = ("byte", "short", "integer", "long", "float", "double", "decimal", "boolean")


def _facts(
    tables: dict[str, DataFrame],
    needs: list[str],
    text_columns: list[str],
    last_us: int,
) -> tuple[set[str], dict[str, int]]:
    """Needed ``table.column`` with a value before the last cutoff; text columns' level counts.

    The count of distinct values of each text account column in rows before the last cutoff
    comes from the same Spark job.
    """
    from pyspark.sql import functions as F

    aggs = []
    by_table: dict[str, list[str]] = {}
    for n in needs:
        by_table.setdefault(n.split(".")[0], []).append(n)
    for table, names in by_table.items():
        frame = tables[table]
        before = se.micros(F.col(str(TABLES[table].time_column))) < last_us
        cols = []
        for j, n in enumerate(names):
            column = n.split(".")[1]
            if column in frame.columns:
                cols.append(F.max(F.when(F.col(column).isNotNull() & before, 1)).alias(f"h{j}"))
        if cols:
            aggs.append(frame.agg(*cols).select(
                *[F.col(f"h{j}").alias(names[j]) for j in range(len(names))
                  if names[j].split(".")[1] in frame.columns]
            ))  # fmt: skip
    if text_columns:
        acc = tables["accounts"]
        before = se.micros(F.col("created_at")) < last_us
        aggs.append(acc.agg(*[
            F.count_distinct(F.when(before, F.col(quote_col(c)))).alias(f"levels:{c}")
            for c in text_columns
        ]))  # fmt: skip
    row = se.one_row(aggs)
    has = {n for n in needs if row.get(n) == 1}
    counts = {c: int(row[f"levels:{c}"]) for c in text_columns}
    return has, counts


def _level_sets(
    frames: list[tuple[str, DataFrame, str, str]], last_us: int
) -> dict[str, tuple[str, ...]]:
    """Distinct non-null values before the last cutoff, sorted, of several columns (one job).

    ``frames``: (key, frame, column, time column); call it only for columns known to have few
    distinct values (:func:`_facts`).
    """
    from pyspark.sql import functions as F

    aggs = []
    for j, (_key, frame, column, time) in enumerate(frames):
        value = F.when(se.micros(F.col(time)) < last_us, F.col(quote_col(column)).cast("string"))
        aggs.append(frame.agg(F.collect_set(value).alias(f"s{j}")))
    row = se.one_row(aggs)
    return {key: tuple(sorted(row[f"s{j}"])) for j, (key, *_rest) in enumerate(frames)}


def _account_columns(
    accounts: DataFrame,
    params: DatasetParams,
    given: dict[str, tuple[str, ...]],
    counts: dict[str, int],
    levels: dict[str, tuple[str, ...]],
) -> tuple[Account, ...]:
    out = []
    for f in accounts.schema.fields:
        col = f.name
        if col in ("account_id", "created_at"):
            continue
        name = _account_name(col)
        kind = f.dataType.typeName()
        if kind == "string":
            found = given[name] if name in given else levels.get(col)
            if found is None or len(found) > params.max_category_levels:
                continue  # an identifier-like column (names, emails): not a useful category
            out.append(Account(col, name, "category", found))
        elif kind in _NUMERIC:
            out.append(Account(col, name, "float64"))
    return tuple(out)


def _account_name(column: str) -> str:
    name = slug(column)
    return f"account_{name}" if name in {"account_id", "cutoff"} else name


def _context(
    run: _Run,
    params: DatasetParams,
    event_types: tuple[str, ...] | None,
    categories: dict[str, tuple[str, ...]],
) -> Context:
    tables = {k: v for k, v in run.relations.items() if k in TABLES}
    present = frozenset(tables)
    needs = sorted(
        n
        for n in {n for f in FAMILIES for b in f.blocks for s in b.specs for n in s.needs}
        if n.split(".")[0] in present
    )
    text = []
    if "accounts" in present:
        for f in tables["accounts"].schema.fields:
            plain = f.name not in ("account_id", "created_at")
            given = _account_name(f.name) in categories
            if plain and not given and f.dataType.typeName() == "string":
                text.append(f.name)
    has, counts = _facts(tables, needs, text, run.last_us)
    wanted: list[tuple[str, DataFrame, str, str]] = [
        (c, tables["accounts"], c, "created_at")
        for c in text
        if counts[c] <= params.max_category_levels
    ]
    if "subscriptions.plan" in has and "plan" not in categories:
        wanted.append(("subscriptions.plan", tables["subscriptions"], "plan", "start_at"))
    levels = _level_sets(wanted, run.last_us) if wanted else {}
    types: tuple[str, ...] = ()
    if "events" in present:
        types = (
            event_types
            if event_types is not None
            else _event_types(tables["events"], run.start_us, run.last_us, params.max_event_types)
        )
    cats = dict(categories)
    if "subscriptions.plan" in levels:
        cats["plan"] = levels["subscriptions.plan"]
    accounts = (
        _account_columns(tables["accounts"], params, categories, counts, levels)
        if "accounts" in present
        else ()
    )
    return Context(
        windows=run.windows,
        tables=present,
        has_values=frozenset(has),
        event_types=types,
        slugs=event_slugs(types),
        categories=cats,
        account_columns=accounts,
        long_windows={t: tuple(ws) for t, ws in params.long_windows.items() if ws},
    )


def plan(
    spark: SparkSession,
    tables: dict[str, DataFrame],
    cutoffs: Sequence[dt.datetime],
    params: DatasetParams,
    *,
    event_types: Sequence[str] | None = None,
    categories: dict[str, list[str] | tuple[str, ...]] | None = None,
) -> list[Planned]:
    """The expanded specs for this data and these (spine) cutoffs, checked for Spark.

    Parameters
    ----------
    spark : SparkSession
        The session.
    tables : dict
        Contract table -> typed DataFrame (:func:`churnlab.spark_engine.read_tables`).
    cutoffs : sequence of datetime
        The spine's distinct cutoffs (midnights).
    params : DatasetParams
        ``windows``, ``max_event_types``, ``max_category_levels``.
    event_types, categories : optional
        As for :func:`churnlab.features.compute` (scoring passes the training ones).

    Returns
    -------
    list of Planned
        In :func:`churnlab.feature_specs.expand` order.
    """
    run = _Run(spark, dict(tables), spark.range(0).toDF("c"), _cutoffs(cutoffs),
               _windows(params), spark.range(0).toDF("d"))  # fmt: skip
    given = {k: tuple(v) for k, v in (categories or {}).items()}
    types = tuple(event_types) if event_types is not None else None
    planned = expand(_context(run, params, types, given))
    names = [p.feature.name for p in planned]
    if len(set(names)) != len(names):
        dup = sorted({x for x in names if names.count(x) > 1})
        raise FeatureError(f"duplicate feature names {dup}: rename the account columns")
    check_supported(planned)
    return planned


def _windows(params: DatasetParams) -> tuple[int, ...]:
    windows = tuple(sorted(set(params.windows)))
    if not windows or windows[0] <= 0:
        raise FeatureError("dataset.windows must be positive whole days, e.g. [7, 30, 90]")
    return windows


def _cutoffs(values: Sequence[dt.datetime]) -> tuple[dt.datetime, ...]:
    cuts = tuple(sorted(set(values)))
    if not cuts:
        raise FeatureError("the spine is empty: no (account, cutoff) rows to compute features for")
    if any(c != dt.datetime(c.year, c.month, c.day) for c in cuts):
        raise FeatureError("cutoffs must be at midnight (daily feature buckets rely on it)")
    return cuts


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
    cuts = _cutoffs(cutoffs)
    windows = _windows(params)
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
    run = _Run(spark, relations, sp, cuts, windows, days)
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
# Passes
# --------------------------------------------------------------------------------------------


def _pass_of(p: Planned) -> str:
    agg = p.spec.agg
    if agg in ("latest",) or (agg == "last" and p.source.per_instant):
        return "latest"
    if agg in ("count", "sum", "days", "last", *DAILY):
        return "bucketed"
    if agg in ("mean", "mean_days"):
        return "per_cutoff"
    if agg in ("age", "attribute"):
        return "accounts"
    return agg


def _assemble(run: _Run, planned: list[Planned]) -> DataFrame:
    """Every pass joined onto the spine, fills applied, then the derived features."""
    from pyspark.sql import functions as F

    groups: dict[tuple[str, str], list[Planned]] = {}
    for p in planned:
        if p.spec.agg != "derived":
            groups.setdefault((_pass_of(p), p.source.name), []).append(p)
    passes = {
        "bucketed": _bucketed,
        "latest": _latest,
        "distinct": _distinct,
        "per_cutoff": _per_cutoff,
        "open": _open,
        "accounts": _accounts,
    }
    # every pass's frames stacked under the spine's keys and reduced per key: one shuffle,
    # where a join per pass would be one each (each frame has at most one row per key)
    frames = [run.spine.select("account_id", "c", F.lit(1).alias("_spine"))]
    fills: dict[str, float | None] = {}
    for (kind, _source), group in groups.items():
        part = passes[kind](run, group[0].source, group)
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


def _sql(run_frame: DataFrame, sql: str, where: str) -> Column:
    from pyspark.sql import functions as F

    return F.expr(se.translate(sql, se.schema_of(run_frame), where))


def _flag(frame: DataFrame, where: str | None, name: str) -> Column:
    """1 for rows matching ``where`` (NULL counts as no), 0 otherwise."""
    from pyspark.sql import functions as F

    if where is None:
        return F.lit(1)
    return F.when(F.coalesce(_sql(frame, where, name), F.lit(False)), 1).otherwise(0)


def _bucketed(run: _Run, source: Source, planned: list[Planned]) -> _Part:
    """Counts, sums, active days, days since the latest or first row, gaps, latest day's sum.

    Windows and lifetime; the gaps are between active days, the sum the latest one's. The
    source's rows are reduced to one row per (account, day) first: per filter, the rows
    matching it, their latest and earliest time; per value, its sum over them.
    """
    from pyspark.sql import functions as F

    rel = run.relation(source)
    t = _sql(rel, source.time, f"source {source.name}")
    lifetime = any(p.window is None for p in planned)
    rows = rel.withColumn("_t", se.micros(t))
    keep = F.col("_t") < run.last_us
    if not lifetime:
        keep = keep & (F.col("_t") >= run.start_of(planned))
    rows = rows.where(keep)
    wheres: dict[str | None, str] = {}
    sums: dict[tuple[str, bool, str | None], str] = {}
    cols: list[Column | str] = ["account_id", se.day_of(F.col("_t")).alias("_d"), "_t"]
    for p in planned:
        if p.where not in wheres:
            wheres[p.where] = f"_f{len(wheres)}"
            cols.append(_flag(rows, p.where, p.feature.name).alias(wheres[p.where]))
        if p.spec.agg in ("sum", "last_day"):
            key = _sum_key(p)
            if key not in sums:
                sums[key] = f"_v{len(sums)}"
                if p.spec.decimal:
                    v = se.exact_micros(rows, str(p.value), p.feature.name, source.table)
                else:
                    v = _sql(rows, str(p.value), p.feature.name).cast("double")
                if p.where is not None:  # a sum's own filter: 0 outside it
                    v = F.when(F.col(wheres[p.where]) == 1, v)
                cols.append(F.coalesce(v, F.lit(0).cast(v_type(p))).alias(sums[key]))
    rows = rows.select(*cols)
    aggs = []
    for where, flag in wheres.items():
        aggs.append(F.sum(flag).alias(f"n{flag}"))
        matching = F.when(F.col(flag) == 1, F.col("_t"))
        if any(p.spec.agg == "last" and p.where == where for p in planned):
            aggs.append(F.max(matching).alias(f"t{flag}"))
        if any(p.spec.agg == "first" and p.where == where for p in planned):
            aggs.append(F.min(matching).alias(f"u{flag}"))
    aggs += [F.sum(v).alias(f"s{v}") for v in sums.values()]
    daily = run.persist(rows.groupBy("account_id", "_d").agg(*aggs))

    parts: list[DataFrame] = []
    fills: dict[str, float | None] = {}
    windowed = [p for p in planned if p.window is not None]
    if windowed:
        joined = daily.join(run.days, daily["_d"] == run.days["d"])
        outs = []
        for p in windowed:
            assert p.window is not None
            inside = F.col("lag") <= p.window
            flag = wheres[p.where]
            if p.spec.agg == "count":
                v = F.sum(F.when(inside, F.col(f"n{flag}")))
            elif p.spec.agg == "days":
                v = F.sum(F.when(inside & (F.col(f"n{flag}") > 0), 1))
            else:
                v = F.sum(F.when(inside, F.col(f"s{sums[_sum_key(p)]}")))
            outs.append(_numeric(p, v).alias(p.feature.name))
            fills[p.feature.name] = 0.0
        parts.append(joined.groupBy("account_id", "c").agg(*outs))
    whole = [p for p in planned if p.window is None and p.spec.agg != "gap_sd"]
    markers = run.spine.select("account_id", "c", F.col("cday").alias("_d"))
    if whole:
        aggs_run = {}
        for p in whole:
            flag, name = wheres[p.where], p.feature.name
            if p.spec.agg == "count":
                aggs_run[name] = F.sum(f"n{flag}")
            elif p.spec.agg == "sum":
                aggs_run[name] = F.sum(f"s{sums[_sum_key(p)]}")
            elif p.spec.agg == "days":
                aggs_run[name] = F.sum(F.when(F.col(f"n{flag}") > 0, 1))
            elif p.spec.agg == "first":
                aggs_run[name] = F.min(f"u{flag}")
            elif p.spec.agg == "last_day":  # the latest day with a matching row: its sum
                day = F.struct(F.col(f"s{sums[_sum_key(p)]}").alias("v"))
                aggs_run[name] = F.last(F.when(F.col(f"n{flag}") > 0, day), ignorenulls=True)
            else:  # last
                aggs_run[name] = F.max(f"t{flag}")
        state = se.running(daily, markers, "_d", aggs_run)
        outs = []
        for p in whole:
            v = F.col(quote_col(p.feature.name))
            if p.spec.agg in ("last", "first"):
                outs.append(se.days_between(F.col("c"), v).alias(p.feature.name))
                fills[p.feature.name] = None
            elif p.spec.agg == "last_day":
                outs.append(_numeric(p, v["v"]).alias(p.feature.name))
                fills[p.feature.name] = None
            else:
                outs.append(_numeric(p, v).alias(p.feature.name))
                fills[p.feature.name] = 0.0
        parts.append(state.select("account_id", "c", *outs))
    for p in planned:
        if p.spec.agg == "gap_sd":
            parts.append(_gap_spread(daily, markers, f"n{wheres[p.where]}", p.feature.name))
            fills[p.feature.name] = None
    return _join_parts(parts, fills)


def _sum_key(p: Planned) -> tuple[str, bool, str | None]:
    """A summed value: its expression, whether exact in micro-units, and its own filter."""
    return (str(p.value), p.spec.decimal, p.where)


def _gap_spread(daily: DataFrame, markers: DataFrame, count: str, name: str) -> DataFrame:
    """The sample standard deviation of the whole days between consecutive active days.

    Over the days with a matching row (``count`` > 0) before each cutoff: with ``m`` gaps
    summing to ``D`` (first to last day) and squares summing to ``S``, the variance is
    ``(m S - D^2) / (m (m - 1))`` with an exact integer numerator, as the DuckDB engine
    computes it; missing with fewer than two gaps.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    days = daily.where(F.col(count) > 0).select("account_id", "_d")
    previous = F.lag("_d").over(Window.partitionBy("account_id").orderBy("_d"))
    gap = F.coalesce(F.col("_d") - previous, F.lit(0)).cast("long")
    days = days.select("account_id", "_d", F.col("_d").alias("_day"), (gap * gap).alias("_g2"))
    aggs = {
        "_n": F.count("_day"),
        "_first": F.min("_day"),
        "_last": F.max("_day"),
        "_s": F.sum("_g2"),
    }
    state = se.running(days, markers, "_d", aggs)
    m = F.col("_n") - 1
    span = F.col("_last") - F.col("_first")
    num = (m * F.col("_s") - span * span).cast("double")
    value = F.when(m >= 2, F.sqrt(num / (m * (m - 1)).cast("double")))
    return state.select("account_id", "c", value.alias(name))


def v_type(p: Planned) -> str:
    """The Spark type of a sum's per-row value: exact micro-units or a double."""
    return "long" if p.spec.decimal else "double"


def _numeric(p: Planned, total: Column) -> Column:
    """A count, a sum of micro-units (divided once, as the DuckDB engine) or a float sum.

    Below 2^50 micro-units one division is how DuckDB casts its DECIMAL(38, 6) sums to DOUBLE;
    beyond (sums above a billion) the two may differ in the last bit.
    """
    if p.spec.agg in ("sum", "last_day") and p.spec.decimal:
        return total.cast("double") / 1_000_000.0
    return total.cast("double")


def _join_parts(parts: list[DataFrame], fills: dict[str, float | None]) -> _Part:
    return _Part(parts, fills)


def _per_instant(rel: DataFrame, source: Source) -> DataFrame:
    """Rows sharing an account and instant combined (``Source.per_instant``)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    schema = se.schema_of(rel)
    plain, ordered = {}, {}
    for col, sql in source.per_instant.items():
        m = _ORDERED.match(sql)
        if m:
            ordered[col] = (m.group(1), _order_keys(m.group(2), schema, source))
        else:
            plain[col] = F.expr(se.translate(sql, schema, f"source {source.name}")).alias(col)
    out = rel.groupBy("account_id", "_t").agg(*plain.values()) if plain else None
    for col, (value, keys) in ordered.items():
        w = Window.partitionBy("account_id", "_t").orderBy(*keys)
        first = (
            rel.withColumn("_rn", F.row_number().over(w))
            .where(F.col("_rn") == 1)
            .select("account_id", "_t", F.col(value).alias(col))
        )
        out = first if out is None else out.join(first, ["account_id", "_t"])
    assert out is not None
    return out


def _order_keys(text: str, schema: dict, source: Source) -> list[Column]:
    """``ORDER BY`` keys of an ordered aggregate with DuckDB's defaults (NULLS LAST)."""
    from pyspark.sql import functions as F

    keys = []
    for part in text.split(","):
        m = re.match(r"^\s*(.+?)(?:\s+(ASC|DESC))?(?:\s+NULLS\s+(FIRST|LAST))?\s*$", part, re.I)
        if m is None or "(" in part:
            raise se.SparkUnsupported(f"ORDER BY key {part!r}", f"source {source.name}")
        expr = F.expr(se.translate(m.group(1), schema, f"source {source.name}"))
        desc = (m.group(2) or "").upper() == "DESC"
        first = (m.group(3) or "").upper() == "FIRST"
        if desc:
            keys.append(expr.desc_nulls_first() if first else expr.desc_nulls_last())
        else:
            keys.append(expr.asc_nulls_first() if first else expr.asc_nulls_last())
    return keys


def _latest(run: _Run, source: Source, planned: list[Planned]) -> _Part:
    """Values on the latest row (per instant) before each cutoff, and days since it."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rel = run.relation(source)
    rel = rel.withColumn("_t", se.micros(_sql(rel, source.time, f"source {source.name}")))
    rel = rel.where(F.col("_t") < run.last_us)
    if source.per_instant:
        rel = _per_instant(rel, source)
    if source.previous:
        w = Window.partitionBy("account_id").orderBy("_t")
        for col in source.previous:
            rel = rel.withColumn(f"prev_{col}", F.lag(col).over(w))
    values = []
    for j, p in enumerate(planned):
        if p.spec.agg == "last":
            v = F.col("_t")
        elif p.feature.dtype == "category":
            v = _sql(rel, str(p.value), p.feature.name).cast("string")
        else:
            v = _sql(rel, str(p.value), p.feature.name).cast("double")
        row = F.struct(v.alias("v"))
        if p.where is not None:
            row = F.when(F.coalesce(_sql(rel, p.where, p.feature.name), F.lit(False)), row)
        values.append(row.alias(f"_r{j}"))
    rows = rel.select("account_id", "_t", *values)
    markers = run.spine.select("account_id", "c", F.col("c").alias("_t"))
    aggs = {f"_r{j}": F.last(f"_r{j}", ignorenulls=True) for j in range(len(planned))}
    state = se.running(rows, markers, "_t", aggs)
    outs = []
    fills: dict[str, float | None] = {}
    for j, p in enumerate(planned):
        found = F.col(f"_r{j}")
        v = found["v"]
        name = p.feature.name
        if p.spec.agg == "last":
            outs.append(se.days_between(F.col("c"), v).alias(name))
            fills[name] = None
            continue
        if p.feature.dtype == "category":
            v = F.when(v.isin(list(p.feature.categories or ())), v)
        elif p.feature.fill_zero:  # no row before the cutoff: 0; a row with no value: missing
            v = F.when(found.isNull(), F.lit(0.0)).otherwise(v)
        outs.append(v.alias(name))
        fills[name] = None
    return _Part([state.select("account_id", "c", *outs)], fills)


MASK_BITS = 63
"""(cutoff, window) flags per long column of a day's mask (the sign bit is left alone)."""


def _distinct(run: _Run, source: Source, planned: list[Planned]) -> _Part:
    """Distinct non-null values per window (active users), from per-value window masks.

    Each (account, value, day) gets the bit set of the (cutoff, window) pairs whose window holds
    the day (a broadcast day -> mask table); OR-ed per (account, value), a value counts in a
    window when its bit is set. One row per (account, value) and task is shuffled, where
    joining the days to the cutoffs would shuffle one per value, day and window.
    """
    from pyspark.sql import functions as F

    rel = run.relation(source)
    rel = rel.withColumn("_t", se.micros(_sql(rel, source.time, f"source {source.name}")))
    rel = rel.where((F.col("_t") >= run.start_of(planned)) & (F.col("_t") < run.last_us))
    parts = []
    fills: dict[str, float | None] = {}
    groups: dict[tuple[str | None, str], list[Planned]] = {}
    for p in planned:
        groups.setdefault((p.where, str(p.value)), []).append(p)
    cdays = [se.to_micros(c) // se.US_PER_DAY for c in run.cutoffs]
    for (where, value), group in groups.items():
        name = group[0].feature.name
        ws = sorted({int(str(p.window)) for p in group})
        bits = [(k, w) for k in range(len(cdays)) for w in ws]
        masks = _day_masks(run.spark, cdays, ws, bits)
        v = _sql(rel, value, name)
        keep = v.isNotNull()
        if where is not None:
            keep = keep & (_flag(rel, where, name) == 1)
        # no distinct days first: OR is idempotent, and the map side combines the masks
        rows = rel.where(keep).select(
            "account_id", se.day_of(F.col("_t")).alias("_d"), v.alias("_v")
        )
        chunks = (len(bits) + MASK_BITS - 1) // MASK_BITS
        per_value = (
            rows.join(masks, rows["_d"] == masks["d"])
            .groupBy("account_id", "_v")
            .agg(*[F.bit_or(f"m{i}").alias(f"m{i}") for i in range(chunks)])
        )
        counts = []
        for b in range(len(bits)):
            m = F.col(f"m{b // MASK_BITS}")
            counts.append(F.sum(F.shiftright(m, b % MASK_BITS).bitwiseAND(1)).alias(f"n{b}"))
        per_account = per_value.groupBy("account_id").agg(*counts)
        index = {kw: b for b, kw in enumerate(bits)}
        stacked = F.explode(F.array(*[
            F.struct(F.lit(se.to_micros(run.cutoffs[k])).alias("c"),
                     *[F.col(f"n{index[(k, int(str(p.window)))]}").cast("double")
                       .alias(p.feature.name) for p in group])
            for k in range(len(cdays))
        ]))  # fmt: skip
        out = per_account.select("account_id", stacked.alias("_s"))
        parts.append(out.select("account_id", "_s.*"))
        fills |= {p.feature.name: 0.0 for p in group}
    return _join_parts(parts, fills)


def _day_masks(
    spark: SparkSession, cdays: list[int], windows: list[int], bits: list[tuple[int, int]]
) -> DataFrame:
    """Per day: the bit set of the (cutoff index, window) pairs whose window holds it."""
    from pyspark.sql import functions as F

    chunks = (len(bits) + MASK_BITS - 1) // MASK_BITS
    rows = []
    for d in range(min(cdays) - max(windows), max(cdays)):
        m = [0] * chunks
        for b, (k, w) in enumerate(bits):
            if cdays[k] - w <= d < cdays[k]:
                m[b // MASK_BITS] |= 1 << (b % MASK_BITS)
        if any(m):
            rows.append((d, *m))
    schema = "d long, " + ", ".join(f"m{i} long" for i in range(chunks))
    return F.broadcast(spark.createDataFrame(rows, schema))


def _per_cutoff(run: _Run, source: Source, planned: list[Planned]) -> _Part:
    """Means over a window with row-level conditions on the cutoff (known / closed before it)."""
    from pyspark.sql import functions as F

    rel = run.relation(source)
    t = se.micros(_sql(rel, source.time, f"source {source.name}"))
    cols: list[Column | str] = ["account_id", t.alias("_t")]
    for j, p in enumerate(planned):
        if p.spec.agg == "mean_days":
            cols.append(se.micros(_sql(rel, str(p.value), p.feature.name)).alias(f"_e{j}"))
        else:
            known = p.spec.known or source.time
            cols.append(se.micros(_sql(rel, known, p.feature.name)).alias(f"_k{j}"))
            micro = se.exact_micros(rel, str(p.value), p.feature.name, source.table, "18, 6")
            cols.append(micro.alias(f"_m{j}"))
    rows = rel.select(*cols)
    rows = rows.where((F.col("_t") >= run.start_of(planned)) & (F.col("_t") < run.last_us))
    rows = rows.withColumn("_d", se.day_of(F.col("_t")))
    joined = rows.join(run.days, rows["_d"] == run.days["d"])
    aggs, outs = [], []
    fills: dict[str, float | None] = {}
    for j, p in enumerate(planned):
        assert p.window is not None
        inside = F.col("lag") <= p.window
        if p.spec.agg == "mean_days":
            ok = inside & (F.col(f"_e{j}") < F.col("c"))
            diff = F.col(f"_e{j}") - F.col("_t")
        else:
            ok = inside & (F.col(f"_k{j}") < F.col("c"))
            diff = F.col(f"_m{j}")
        aggs += [F.sum(F.when(ok, diff)).alias(f"_s{j}"), F.count(F.when(ok, diff)).alias(f"_n{j}")]
        total, n = F.col(f"_s{j}").cast("double"), F.col(f"_n{j}")
        if p.spec.agg == "mean_days":  # DuckDB: avg(BIGINT) / D
            value = total / n / float(se.US_PER_DAY)
        else:  # DuckDB: avg(DECIMAL(18, 6)), i.e. (sum / 10^6) / n
            value = total / 1_000_000.0 / n
        outs.append(F.when(n > 0, value).alias(p.feature.name))
        fills[p.feature.name] = None
    frame = joined.groupBy("account_id", "c").agg(*aggs).select("account_id", "c", *outs)
    return _Part([frame], fills)


def _open(run: _Run, source: Source, planned: list[Planned]) -> _Part:
    """Rows started before the cutoff whose end is missing or not before it."""
    from pyspark.sql import functions as F

    rel = run.relation(source)
    t = se.micros(_sql(rel, source.time, f"source {source.name}"))
    parts = []
    fills: dict[str, float | None] = {}
    markers = run.spine.select("account_id", "c", F.col("c").alias("_t"))
    for p in planned:
        end = se.micros(_sql(rel, str(p.value), p.feature.name))
        rows = rel.select("account_id", t.alias("_t"), end.alias("_e"))
        rows = rows.where(F.col("_t") < run.last_us)
        opened = rows.select("account_id", "_t", F.lit(1).alias("_delta"))
        # closed before the cutoff <=> max(start, end) before it (an end before the start
        # never made the row open)
        closed = rows.where(F.col("_e").isNotNull()).select(
            "account_id", F.greatest("_t", "_e").alias("_t"), F.lit(-1).alias("_delta")
        )
        state = se.running(opened.unionByName(closed), markers, "_t", {"_n": F.sum("_delta")})
        n = F.col("_n")
        fill = 0.0 if p.feature.fill_zero else None
        value = F.when(n > 0, n.cast("double"))
        parts.append(state.select("account_id", "c", value.alias(p.feature.name)))
        fills[p.feature.name] = fill
    return _join_parts(parts, fills)


def _accounts(run: _Run, source: Source, planned: list[Planned]) -> _Part:
    """Tenure and account attributes, hidden while the account row does not exist yet."""
    from pyspark.sql import functions as F

    acc = run.relation(source)
    t = se.micros(_sql(acc, source.time, f"source {source.name}"))
    cols = [F.col("account_id"), t.alias("_t")]
    for j, p in enumerate(planned):
        if p.spec.agg == "attribute":
            cols.append(F.col(quote_col(str(p.value))).alias(f"_a{j}"))
    joined = run.spine.select("account_id", "c").join(acc.select(*cols), "account_id")
    exists = F.col("_t") < F.col("c")
    outs = []
    fills: dict[str, float | None] = {}
    for j, p in enumerate(planned):
        f = p.feature
        if p.spec.agg == "age":
            v = F.when(exists, se.days_between(F.col("c"), F.col("_t")))
        elif f.dtype == "category":
            v = F.col(f"_a{j}").cast("string")
            v = F.when(exists & v.isin(list(f.categories or ())), v)
        else:
            v = F.when(exists, F.col(f"_a{j}").cast("double"))
        outs.append(v.alias(f.name))
        fills[f.name] = None
    return _Part([joined.select("account_id", "c", *outs)], fills)


__all__ = ["SUPPORTED", "check_supported", "compute", "plan", "quote", "release"]

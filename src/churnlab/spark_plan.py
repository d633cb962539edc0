"""What the Spark compiler computes: the expanded feature specs for this data, checked.

:func:`plan` reads the facts the expansion needs from the data (the most used event types,
which optional columns have values, text columns' level counts and levels) in a few small Spark
jobs, expands the declared families with :func:`churnlab.feature_specs.expand` exactly as the
DuckDB engine does, and refuses (:func:`check_supported`) any spec the compiler in
:mod:`churnlab.spark_passes` would not compute exactly. :class:`Run` is the state one
computation shares between its passes: the session, the relations, the spine and the cutoffs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
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
from churnlab.schema import FAILED_PAYMENT_EVENT, TABLES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

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


@dataclass
class Run:
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
    run: Run,
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
    run = Run(spark, dict(tables), spark.range(0).toDF("c"), checked_cutoffs(cutoffs),
               windows_of(params), spark.range(0).toDF("d"))  # fmt: skip
    given = {k: tuple(v) for k, v in (categories or {}).items()}
    types = tuple(event_types) if event_types is not None else None
    planned = expand(_context(run, params, types, given))
    names = [p.feature.name for p in planned]
    if len(set(names)) != len(names):
        dup = sorted({x for x in names if names.count(x) > 1})
        raise FeatureError(f"duplicate feature names {dup}: rename the account columns")
    check_supported(planned)
    return planned


def windows_of(params: DatasetParams) -> tuple[int, ...]:
    """The feature windows (days), sorted and distinct; refused unless positive."""
    windows = tuple(sorted(set(params.windows)))
    if not windows or windows[0] <= 0:
        raise FeatureError("dataset.windows must be positive whole days, e.g. [7, 30, 90]")
    return windows


def checked_cutoffs(values: Sequence[dt.datetime]) -> tuple[dt.datetime, ...]:
    """The distinct cutoffs, sorted; refused when there are none or one is not a midnight."""
    cuts = tuple(sorted(set(values)))
    if not cuts:
        raise FeatureError("the spine is empty: no (account, cutoff) rows to compute features for")
    if any(c != dt.datetime(c.year, c.month, c.day) for c in cuts):
        raise FeatureError("cutoffs must be at midnight (daily feature buckets rely on it)")
    return cuts


__all__ = [
    "RELATIONS",
    "SUPPORTED",
    "Run",
    "check_supported",
    "checked_cutoffs",
    "plan",
    "quote_col",
    "windows_of",
]

"""The Spark compiler's passes: each kind of aggregate compiled to the PySpark DataFrame API.

A pass takes the :class:`~churnlab.spark_plan.Run`, one source and the planned features of that
source it computes (:func:`pass_of` says which pass a feature belongs to) and returns a
:class:`Part`: frames keyed by (account_id, c) with one column per feature, and the value for
spine rows a frame has no row for. :func:`churnlab.spark_features.compute` stacks the parts
under the spine. How each aggregate is computed, and how the constructs that differ between the
engines are handled, is in the docstring of :mod:`churnlab.spark_features`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from churnlab import spark_engine as se
from churnlab.feature_specs import DAILY, Planned, Source
from churnlab.spark_plan import Run, quote_col

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

_ORDERED = re.compile(r"^\s*first\(\s*([A-Za-z_]\w*)\s+ORDER\s+BY\s+(.+)\)\s*$", re.I | re.S)


@dataclass(frozen=True)
class Part:
    """A pass's result: frames keyed by (account_id, c), one column per feature, and fills.

    A frame has at most one row per key; it may hold keys that are not spine rows (accounts
    with rows at a cutoff where they are not eligible), which the assembly drops.
    """

    frames: list[DataFrame]
    fills: dict[str, float | None]  # value for spine rows the pass has no row for


def pass_of(p: Planned) -> str:
    """The pass that computes a (non-derived) feature: a key of :data:`PASSES`."""
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


def _sql(run_frame: DataFrame, sql: str, where: str) -> Column:
    from pyspark.sql import functions as F

    return F.expr(se.translate(sql, se.schema_of(run_frame), where))


def _flag(frame: DataFrame, where: str | None, name: str) -> Column:
    """1 for rows matching ``where`` (NULL counts as no), 0 otherwise."""
    from pyspark.sql import functions as F

    if where is None:
        return F.lit(1)
    return F.when(F.coalesce(_sql(frame, where, name), F.lit(False)), 1).otherwise(0)


@dataclass(frozen=True)
class _Daily:
    """A source's rows reduced to one row per (account, day) (:func:`_daily`).

    Columns ``account_id``, ``_d`` and, per filter ``f`` (:attr:`wheres`), ``n<f>`` (matching
    rows), ``t<f>`` / ``u<f>`` (their latest / earliest time, when a feature needs it); per
    summed value ``v`` (:attr:`sums`), ``s<v>``.
    """

    frame: DataFrame
    wheres: dict[str | None, str]  # a feature's filter -> its flag column
    sums: dict[tuple[str, bool, str | None], str]  # a summed value (:func:`_sum_key`) -> column

    def count(self, p: Planned) -> str:
        """The column of the rows matching ``p``'s filter."""
        return f"n{self.wheres[p.where]}"

    def total(self, p: Planned) -> str:
        """The column of ``p``'s summed value."""
        return f"s{self.sums[_sum_key(p)]}"


def _bucketed(run: Run, source: Source, planned: list[Planned]) -> Part:
    """Counts, sums, active days, days since the latest or first row, gaps, latest day's sum.

    Windows and lifetime; the gaps are between active days, the sum the latest one's. The
    source's rows are reduced to one row per (account, day) first: per filter, the rows
    matching it, their latest and earliest time; per value, its sum over them.
    """
    from pyspark.sql import functions as F

    daily = _daily(run, source, planned)
    parts: list[DataFrame] = []
    fills: dict[str, float | None] = {}
    windowed = [p for p in planned if p.window is not None]
    if windowed:
        parts.append(_in_windows(run, daily, windowed, fills))
    whole = [p for p in planned if p.window is None and p.spec.agg != "gap_sd"]
    markers = run.spine.select("account_id", "c", F.col("cday").alias("_d"))
    if whole:
        parts.append(_lifetime(daily, markers, whole, fills))
    for p in planned:
        if p.spec.agg == "gap_sd":
            parts.append(_gap_spread(daily.frame, markers, daily.count(p), p.feature.name))
            fills[p.feature.name] = None
    return _join_parts(parts, fills)


def _daily(run: Run, source: Source, planned: list[Planned]) -> _Daily:
    """The source's rows reduced to one row per (account, day), cached.

    Rows before the last cutoff; inside the windows only, unless a lifetime value reads them all.
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
    return _Daily(run.persist(rows.groupBy("account_id", "_d").agg(*aggs)), wheres, sums)


def _in_windows(
    run: Run, daily: _Daily, windowed: list[Planned], fills: dict[str, float | None]
) -> DataFrame:
    """Counts, sums and active days per window: the days joined to the cutoffs they precede."""
    from pyspark.sql import functions as F

    joined = daily.frame.join(run.days, daily.frame["_d"] == run.days["d"])
    outs = []
    for p in windowed:
        assert p.window is not None
        inside = F.col("lag") <= p.window
        if p.spec.agg == "count":
            v = F.sum(F.when(inside, F.col(daily.count(p))))
        elif p.spec.agg == "days":
            v = F.sum(F.when(inside & (F.col(daily.count(p)) > 0), 1))
        else:
            v = F.sum(F.when(inside, F.col(daily.total(p))))
        outs.append(_numeric(p, v).alias(p.feature.name))
        fills[p.feature.name] = 0.0
    return joined.groupBy("account_id", "c").agg(*outs)


def _lifetime(
    daily: _Daily, markers: DataFrame, whole: list[Planned], fills: dict[str, float | None]
) -> DataFrame:
    """Lifetime counts, sums and days; days since the latest / first row; the last day's sum."""
    from pyspark.sql import functions as F

    aggs_run = {}
    for p in whole:
        flag, name = daily.wheres[p.where], p.feature.name
        if p.spec.agg == "count":
            aggs_run[name] = F.sum(f"n{flag}")
        elif p.spec.agg == "sum":
            aggs_run[name] = F.sum(daily.total(p))
        elif p.spec.agg == "days":
            aggs_run[name] = F.sum(F.when(F.col(f"n{flag}") > 0, 1))
        elif p.spec.agg == "first":
            aggs_run[name] = F.min(f"u{flag}")
        elif p.spec.agg == "last_day":  # the latest day with a matching row: its sum
            day = F.struct(F.col(daily.total(p)).alias("v"))
            aggs_run[name] = F.last(F.when(F.col(f"n{flag}") > 0, day), ignorenulls=True)
        else:  # last
            aggs_run[name] = F.max(f"t{flag}")
    state = se.running(daily.frame, markers, "_d", aggs_run)
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
    return state.select("account_id", "c", *outs)


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


def _join_parts(parts: list[DataFrame], fills: dict[str, float | None]) -> Part:
    return Part(parts, fills)


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


def _latest(run: Run, source: Source, planned: list[Planned]) -> Part:
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
    return Part([state.select("account_id", "c", *outs)], fills)


MASK_BITS = 63
"""(cutoff, window) flags per long column of a day's mask (the sign bit is left alone)."""


def _distinct(run: Run, source: Source, planned: list[Planned]) -> Part:
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


def _per_cutoff(run: Run, source: Source, planned: list[Planned]) -> Part:
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
    return Part([frame], fills)


def _open(run: Run, source: Source, planned: list[Planned]) -> Part:
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


def _accounts(run: Run, source: Source, planned: list[Planned]) -> Part:
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
    return Part([joined.select("account_id", "c", *outs)], fills)


PASSES: dict[str, Callable[[Run, Source, list[Planned]], Part]] = {
    "bucketed": _bucketed,
    "latest": _latest,
    "distinct": _distinct,
    "per_cutoff": _per_cutoff,
    "open": _open,
    "accounts": _accounts,
}
"""Each pass (:func:`pass_of`) by name."""

__all__ = ["MASK_BITS", "PASSES", "Part", "pass_of", "v_type"]

"""The training set on Apache Spark: the spine, the labels and the assembled frame.

The Spark counterpart of :mod:`churnlab.spine`, :mod:`churnlab.labels` and
:func:`churnlab.dataset.build`, with the same definitions (DESIGN.md sections 2 and 4) and the
same output: one row per (account_id, cutoff), the features of :mod:`churnlab.spark_features`,
the label columns and, for orders-only data, the BG/NBD inputs. What is computed on the driver
is small and shared with the DuckDB path: the cutoffs (:func:`churnlab.spine.cutoff_range`),
each cutoff's label window end (:meth:`churnlab.config.Horizon.add`), the per-cutoff counts of
the manifest (:func:`churnlab.dataset.per_cutoff`). The events never leave the executors; the
finished training set (one row per account and cutoff) is collected once, through Arrow, since
training runs on the driver.

Every window boundary here is a midnight (cutoffs are midnights, label windows end a whole
number of days or calendar months later), so "``cutoff <= t < window_end``" is a range of UTC
days, joined through a small broadcast (day, cutoff) table rather than a range join.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from churnlab import dataset, spine
from churnlab import spark_engine as se
from churnlab import spark_features as sf
from churnlab.config import DataParams, DatasetParams, Horizon
from churnlab.coverage import observed_end
from churnlab.labels import DAYS_PER_MONTH
from churnlab.manifest import Feature, Manifest
from churnlab.schema import LABEL_COLUMNS, UPSELL_KINDS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

NOT_REFUND = "coalesce(kind, '') <> 'refund'"


# --------------------------------------------------------------------------------------------
# Cutoffs and the spine
# --------------------------------------------------------------------------------------------


def data_end(tables: se.SparkTables, data: DataParams) -> dt.datetime:
    """The end of observation, as :func:`churnlab.load.data_end` computes it on DuckDB."""
    if data.as_of is not None:
        return data.as_of
    end = observed_end(tables.last_rows())
    if end is None:
        raise dataset.DatasetError("the data has no timestamps: cannot tell where observation ends")
    return end


def cutoffs(
    tables: se.SparkTables, params: DatasetParams, end: dt.datetime, mode: str
) -> list[dt.datetime]:
    """The cutoffs of the training set (see :func:`churnlab.spine.cutoffs`)."""
    from pyspark.sql import functions as F

    first = None
    if params.cutoff_start is None:
        contractual = mode == "contractual"
        table, col = ("subscriptions", "start_at") if contractual else ("orders", "ordered_at")
        value = tables.frames[table].agg(F.min(se.micros(F.col(col)))).collect()[0][0]
        if value is None:
            raise spine.SpineError(
                f"the {table} table is empty: there is nothing to build a training set on"
            )
        first = se.from_micros(int(value))
    return spine.cutoff_range(params, first, end)


def _cutoff_table(spark: SparkSession, values: Sequence[dt.datetime]) -> DataFrame:
    from pyspark.sql import functions as F

    rows = [(se.to_micros(c),) for c in values]
    return F.broadcast(spark.createDataFrame(rows, "c long"))


def build_spine(
    spark: SparkSession,
    tables: se.SparkTables,
    cutoff_values: Sequence[dt.datetime],
    mode: str,
    params: DatasetParams,
) -> DataFrame:
    """The eligible (account_id, cutoff) rows for every cutoff (see :func:`churnlab.spine.build`).

    Returns
    -------
    DataFrame
        ``account_id`` (string) and ``cutoff`` (timestamp), distinct, unordered.
    """
    from pyspark.sql import functions as F

    spine.assert_midnight(list(cutoff_values))
    if mode not in spine.MODES:
        raise spine.SpineError(f"unknown mode {mode!r}; use one of {', '.join(spine.MODES)}")
    if mode == "contractual":
        subs = tables.frames["subscriptions"]
        start, end = se.micros(F.col("start_at")), se.micros(F.col("end_at"))
        rows = subs.select("account_id", start.alias("_s"), end.alias("_e"))
        cuts = _cutoff_table(spark, cutoff_values)
        active = (F.col("_s") <= F.col("c")) & (F.col("_e").isNull() | (F.col("_e") > F.col("c")))
        pairs = rows.join(cuts, active)
    else:
        orders = tables.frames["orders"].where(F.expr(NOT_REFUND))
        rows = orders.select("account_id", se.day_of(se.micros(F.col("ordered_at"))).alias("_d"))
        lookback = int(params.lookback_days)
        days = _day_ranges(
            spark, [(c, _day(c) - lookback, _day(c)) for c in cutoff_values], ("lookback",)
        )
        pairs = rows.join(days, rows["_d"] == days["d"])
    return pairs.select(
        F.col("account_id").cast("string").alias("account_id"),
        F.timestamp_micros(F.col("c")).alias("cutoff"),
    ).distinct()


def _day(t: dt.datetime) -> int:
    """The UTC epoch day of a midnight."""
    return se.to_micros(t) // se.US_PER_DAY


def _day_ranges(
    spark: SparkSession,
    spans: Sequence[tuple[dt.datetime, int, int]],
    names: Sequence[str],
    extra: Sequence[Sequence[tuple[int, int]]] | None = None,
) -> DataFrame:
    """(day, cutoff) pairs with a 0/1 flag per named day range, broadcast.

    ``spans`` are (cutoff, first day, end day) of the first range; ``extra`` holds, per
    further name, (first day, end day) per cutoff. A pair is listed when any range holds it.
    """
    from pyspark.sql import functions as F

    ranges = [[(a, b) for _, a, b in spans], *(extra or [])]
    rows = []
    for k, (c, _a, _b) in enumerate(spans):
        per = [r[k] for r in ranges]
        lo, hi = min(a for a, _ in per), max(b for _, b in per)
        for d in range(lo, hi):
            rows.append((d, se.to_micros(c), *[int(a <= d < b) for a, b in per]))
    schema = "d long, c long, " + ", ".join(f"in_{n} int" for n in names)
    return F.broadcast(spark.createDataFrame(rows, schema))


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


def compute_labels(
    spark: SparkSession,
    tables: se.SparkTables,
    spine_frame: DataFrame,
    cutoff_values: Sequence[dt.datetime],
    params: DatasetParams,
    mode: str,
    end: dt.datetime,
    *,
    steps: DataFrame | None = None,
) -> DataFrame:
    """Labels for every spine row (see :func:`churnlab.labels.compute`).

    Parameters
    ----------
    spark : SparkSession
        The session.
    tables : SparkTables
        The contract tables.
    spine_frame : DataFrame
        ``account_id`` and ``cutoff``.
    cutoff_values : sequence of datetime
        The spine's distinct cutoffs (midnights).
    params : DatasetParams
        ``window``, ``lookback_days``, ``expansion_min_fraction``.
    mode : str
        'contractual' or 'orders'.
    end : datetime
        End of observation: windows ending after it are unlabeled.
    steps : DataFrame, optional
        The subscription timeline (:func:`churnlab.spark_engine.subscription_steps`).

    Returns
    -------
    DataFrame
        ``account_id``, ``cutoff``, ``churn``, ``expansion``, ``expansion_amount`` (double,
        NULL when unlabeled), ``mrr``, ``arr`` (double) and ``labeled`` (boolean).
    """
    from pyspark.sql import functions as F

    if mode not in spine.MODES:
        raise spine.SpineError(f"unknown mode {mode!r}; use one of {', '.join(spine.MODES)}")
    h = params.window
    ends = [(se.to_micros(c), se.to_micros(h.add(c))) for c in cutoff_values]
    windows = F.broadcast(spark.createDataFrame(ends, "c long, window_end long"))
    sp = spine_frame.select(
        F.col("account_id").cast("string").alias("account_id"),
        se.micros(F.col("cutoff")).alias("c"),
    ).join(windows, "c")
    sp = sp.withColumn("labeled", F.col("window_end") <= F.lit(se.to_micros(end)))
    frac = float(params.expansion_min_fraction)
    if mode == "contractual":
        if steps is None:
            steps = se.subscription_steps(tables.frames["subscriptions"])
        out = _contractual(spark, tables, sp, cutoff_values, h, frac, steps)
    else:
        out = _orders(spark, tables, sp, cutoff_values, h, int(params.lookback_days), frac)
    labeled = F.col("labeled")
    return out.select(
        "account_id",
        F.timestamp_micros(F.col("c")).alias("cutoff"),
        F.when(labeled, F.col("churn").cast("double")).alias("churn"),
        F.when(labeled, F.col("expansion").cast("double")).alias("expansion"),
        F.when(labeled, F.col("amount").cast("double")).alias("expansion_amount"),
        F.col("mrr").cast("double").alias("mrr"),
        (F.lit(12.0) * F.col("mrr").cast("double")).alias("arr"),
        labeled.alias("labeled"),
    )


def _grew(after: Column, before: Column, frac: float) -> Column:
    """``after > before AND after - before >= frac * before``, amounts in micro-units.

    With DuckDB's arithmetic: its labels write ``frac`` into SQL as a literal, and a decimal
    one (``0.1``) multiplies the DECIMAL(38, 6) amounts exactly, an exponent one (``1e-05``) is
    a DOUBLE. Spark would round ``0.1 * x`` to six decimals, so the exact case compares
    integers: ``(after - before) * 10^k >= n * before`` for ``frac = n / 10^k``, in
    DECIMAL(38, 0).
    """
    from pyspark.sql import functions as F

    a, b = after.cast("decimal(38, 0)"), before.cast("decimal(38, 0)")
    text = f"{frac}"
    if "e" in text.lower():
        grew = (a - b).cast("double") / 1e6 >= F.lit(frac) * (b.cast("double") / 1e6)
    else:
        k = max(0, -int(Decimal(text).as_tuple().exponent))
        n = int(Decimal(text).scaleb(k))
        scale = F.lit(10**k).cast("decimal(38, 0)")
        grew = (a - b) * scale >= F.lit(n).cast("decimal(38, 0)") * b
    return (a > b) & grew


def _micros_of(amount: Column) -> Column:
    """A DECIMAL(38, 6) amount as exact micro-units (DECIMAL(38, 0))."""
    from pyspark.sql import functions as F

    return (amount * F.lit(1_000_000)).cast("decimal(38, 0)")


def _contractual(
    spark: SparkSession,
    tables: se.SparkTables,
    sp: DataFrame,
    cutoff_values: Sequence[dt.datetime],
    h: Horizon,
    frac: float,
    steps: DataFrame,
) -> DataFrame:
    from pyspark.sql import functions as F

    rows = steps.select(
        "account_id",
        se.micros(F.col("step_at")).alias("_t"),
        F.struct("mrr_after", "active_after").alias("_state"),
    )
    last = {"_state": F.last("_state", ignorenulls=True)}
    # state "at" an instant includes changes at that very instant: rows before markers
    at_cut = se.running(rows, sp.select("account_id", "c", F.col("c").alias("_t")), "_t", last,
                        strict=False)  # fmt: skip
    at_end = se.running(
        rows,
        sp.select("account_id", "c", F.col("window_end").alias("_t")),
        "_t",
        last,
        strict=False,
    )
    zero = F.lit(0).cast("decimal(38, 6)")
    s_mrr = F.coalesce(F.col("s._state.mrr_after"), zero)
    e_mrr = F.coalesce(F.col("e._state.mrr_after"), zero)
    e_active = F.coalesce(F.col("e._state.active_after"), F.lit(0))
    out = (
        sp.alias("sp")
        .join(at_cut.alias("s"), ["account_id", "c"], "left")
        .join(at_end.alias("e"), ["account_id", "c"], "left")
    )
    upsell = None
    if "orders" in tables.frames:
        days = _day_ranges(
            spark,
            [(c, _day(c), _day(h.add(c))) for c in cutoff_values],
            ("window",),
        )
        kinds = ", ".join(f"'{k}'" for k in UPSELL_KINDS)
        orders = tables.frames["orders"].where(F.expr(f"kind IN ({kinds})"))
        od = orders.select("account_id", se.day_of(se.micros(F.col("ordered_at"))).alias("_d"))
        upsell = (
            od.join(days, od["_d"] == days["d"])
            .groupBy("account_id", "c")
            .agg(F.count(F.lit(1)).alias("_n"))
        )
        out = out.join(upsell, ["account_id", "c"], "left")
    n_upsell = F.coalesce(F.col("_n"), F.lit(0)) if upsell is not None else F.lit(0)
    return out.select(
        "account_id",
        "c",
        "labeled",
        (e_active <= 0).alias("churn"),
        (_grew(_micros_of(e_mrr), _micros_of(s_mrr), frac) | (n_upsell > 0)).alias("expansion"),
        (e_mrr - s_mrr).alias("amount"),
        s_mrr.alias("mrr"),
    )


def _orders(
    spark: SparkSession,
    tables: se.SparkTables,
    sp: DataFrame,
    cutoff_values: Sequence[dt.datetime],
    h: Horizon,
    lookback: int,
    frac: float,
) -> DataFrame:
    from pyspark.sql import functions as F

    orders = tables.frames["orders"].where(F.expr(NOT_REFUND))
    micro = se.exact_micros(orders, "amount", "orders labels", "orders")
    daily = (
        orders.select(
            "account_id", se.day_of(se.micros(F.col("ordered_at"))).alias("_d"), micro.alias("_m")
        )
        .groupBy("account_id", "_d")
        .agg(F.count(F.lit(1)).alias("_n"), F.sum("_m").alias("_m"))
    )
    days = _day_ranges(
        spark,
        [(c, _day(c), _day(h.add(c))) for c in cutoff_values],
        ("after", "before", "lookback"),
        [
            [(_day(h.add(c, -1)), _day(c)) for c in cutoff_values],
            [(_day(c) - lookback, _day(c)) for c in cutoff_values],
        ],
    )

    def total(flag: str, value: str) -> Column:
        return F.sum(F.when(F.col(f"in_{flag}") == 1, F.col(value)))

    sums = (
        daily.join(days, daily["_d"] == days["d"])
        .groupBy("account_id", "c")
        .agg(
            total("after", "_n").alias("n_after"),
            total("after", "_m").alias("after"),
            total("before", "_m").alias("before"),
            total("lookback", "_m").alias("lookback"),
        )
    )
    out = sp.join(sums, ["account_id", "c"], "left")
    after, before = (F.coalesce(F.col(c), F.lit(0).cast("long")) for c in ("after", "before"))
    per_month = float(lookback) / DAYS_PER_MONTH
    lookback_spend = F.coalesce(F.col("lookback"), F.lit(0)).cast("double") / 1_000_000.0
    return out.select(
        "account_id",
        "c",
        "labeled",
        (F.coalesce(F.col("n_after"), F.lit(0)) == 0).alias("churn"),
        _grew(after, before, frac).alias("expansion"),
        ((after - before).cast("double") / 1e6).alias("amount"),
        (lookback_spend / per_month).alias("mrr"),
    )


# --------------------------------------------------------------------------------------------
# The BG/NBD inputs (orders-only)
# --------------------------------------------------------------------------------------------


def purchase_history(
    tables: se.SparkTables, spine_frame: DataFrame, *, time_unit_days: float = 7.0
) -> DataFrame:
    """Frequency, recency and age per spine row (see :func:`churnlab.btyd.rfm_at_cutoffs`).

    Returns
    -------
    DataFrame
        ``account_id``, ``cutoff``, ``btyd_frequency``, ``btyd_recency``, ``btyd_T`` (NULL for
        an account with no order before the cutoff).
    """
    from pyspark.sql import functions as F

    orders = tables.frames["orders"].where(F.expr(NOT_REFUND) & F.col("ordered_at").isNotNull())
    days = (
        orders.select("account_id", se.day_of(se.micros(F.col("ordered_at"))).alias("_d"))
        .distinct()
        .select("account_id", "_d", F.lit(1).alias("_one"), F.col("_d").alias("_day"))
    )
    markers = spine_frame.select(
        F.col("account_id").cast("string").alias("account_id"),
        se.micros(F.col("cutoff")).alias("c"),
    ).withColumn("_d", se.day_of(F.col("c")))
    # an order day counts when its first order is before the cutoff: the day is before it
    state = se.running(
        days,
        markers,
        "_d",
        # over the rows' own copy of the day: markers sort by "_d" too, but carry no "_day"
        {"_n": F.sum("_one"), "_first": F.min("_day"), "_last": F.max("_day")},
    )
    unit = float(time_unit_days) * se.US_PER_DAY
    first = (F.col("_first") * se.US_PER_DAY).cast("double")
    last = (F.col("_last") * se.US_PER_DAY).cast("double")
    return state.select(
        "account_id",
        F.timestamp_micros(F.col("c")).alias("cutoff"),
        (F.col("_n").cast("double") - 1.0).alias("btyd_frequency"),
        ((last - first) / unit).alias("btyd_recency"),
        ((F.col("c").cast("double") - first) / unit).alias("btyd_T"),
    )


# --------------------------------------------------------------------------------------------
# The training set
# --------------------------------------------------------------------------------------------


def build(
    spark: SparkSession,
    tables: se.SparkTables,
    params: DatasetParams,
    data: DataParams,
    *,
    source: str = "",
    progress: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, Manifest]:
    """Build the training set on Spark (see :func:`churnlab.dataset.build`).

    Parameters
    ----------
    spark : SparkSession
        The session (:func:`churnlab.spark_engine.session`).
    tables : SparkTables
        The contract tables (:func:`churnlab.spark_engine.read_tables`).
    params : DatasetParams
        The ``dataset`` section of params.yaml.
    data : DataParams
        The ``data`` section (``as_of``).
    source : str
        Recorded in the manifest.
    progress : callable, optional
        Called with a short message as each stage starts.

    Returns
    -------
    (DataFrame, Manifest)
        The same frame and manifest as the DuckDB build, rows sorted by (account_id, cutoff),
        except the manifest's ``data_fingerprint``, which is empty (it is DuckDB's hash of the
        tables: a run that compares it skips the comparison).
    """
    from pyspark.sql import functions as F

    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    say("choosing cutoffs and eligible accounts (Spark)")
    mode = spine.mode_for(tables.names, params)
    end = data_end(tables, data)
    cuts = cutoffs(tables, params, end, mode)
    sp = build_spine(spark, tables, cuts, mode, params).persist()
    cached: list[DataFrame] = [sp]
    try:
        rows = sp.count()
        if rows == 0:
            raise dataset.DatasetError(
                f"no eligible accounts at any cutoff ({cuts[0]:%Y-%m-%d} .. {cuts[-1]:%Y-%m-%d}, "
                f"mode {mode}): check dataset.cutoff_start/cutoff_end against the data's dates"
            )
        # as epoch microseconds: pyspark renders timestamps in the Python process's time zone
        present = sp.select(se.micros(F.col("cutoff"))).distinct().collect()
        spine_cuts = sorted(se.from_micros(int(r[0])) for r in present)
        timings["spine"] = time.perf_counter() - t0
        say(f"computing features and labels for {rows:,} rows over {len(cuts)} cutoffs (Spark)")
        t1 = time.perf_counter()
        steps = None
        if mode == "contractual":
            steps = se.subscription_steps(tables.frames["subscriptions"]).persist()
            cached.append(steps)
        with se.spark_errors():
            x, feats, more = sf.compute(
                spark, tables.frames, sp, params, cutoffs=spine_cuts, steps=steps
            )
            cached += more
            y = compute_labels(spark, tables, sp, spine_cuts, params, mode, end, steps=steps)
            frame = x.join(y, ["account_id", "cutoff"], "left")
            extra: tuple[str, ...] = ()
            if mode == "orders":
                rfm = purchase_history(tables, sp)
                frame = frame.join(rfm, ["account_id", "cutoff"], "left")
                extra = dataset.BTYD_COLUMNS
            names = [f.name for f in feats]
            cols = ["account_id", "cutoff", *names, *LABEL_COLUMNS, *extra]
            frame = frame.select(
                *[F.col(sf.quote_col(c)) for c in cols[:1]],
                F.col("cutoff").cast("timestamp_ntz").alias("cutoff"),
                *[F.col(sf.quote_col(c)) for c in cols[2:]],
            )
            table = frame.toArrow()
        timings["features"] = time.perf_counter() - t1
    finally:
        sf.release(cached)
    out = to_pandas(table, feats, LABEL_COLUMNS, extra)
    if len(out) != rows:
        raise dataset.DatasetError("internal error: feature and label rows are out of step")
    say("writing the manifest")
    manifest = Manifest(
        mode=mode,
        horizon_days=params.window.days,
        horizon=params.window.label,
        windows=tuple(int(w) for w in sorted(set(params.windows))),
        data_end=end.isoformat(),
        cutoffs=tuple(c.isoformat() for c in cuts),
        per_cutoff=tuple(dataset.per_cutoff(out)),
        rows=int(len(out)),
        features=tuple(feats),
        event_types=tuple(sorted({f.event_type for f in feats if f.event_type is not None})),
        label_columns=LABEL_COLUMNS,
        tables=tuple(tables.names),
        data_fingerprint="",
        source=source,
        params=params.model_dump(mode="json"),
        built_at=dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        timings_s={k: round(v, 3) for k, v in timings.items()},
    )
    return out, manifest


def to_pandas(
    table: pa.Table, feats: Sequence[Feature], labels: Sequence[str], extra: Sequence[str] = ()
) -> pd.DataFrame:
    """The collected training set as the DuckDB build's frame: same dtypes, sorted rows.

    ``account_id`` str, ``cutoff`` datetime64[us], float features float64 (NULL is NaN),
    category features ``pd.Categorical`` over the feature's levels, label and extra columns
    float64, ``labeled`` bool.
    """
    cols: dict[str, object] = {}
    cols["account_id"] = np.asarray(table.column("account_id").to_pylist(), dtype=object)
    cutoff = table.column("cutoff").cast(pa.timestamp("us"))
    cols["cutoff"] = cutoff.to_numpy()
    for f in feats:
        col = table.column(f.name)
        if f.dtype == "category":
            values = col.to_pylist()
            cols[f.name] = pd.Categorical(values, categories=list(f.categories or ()))
        else:
            cols[f.name] = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
    for name in (*labels, *extra):
        col = table.column(name)
        if name == "labeled":
            cols[name] = col.to_numpy(zero_copy_only=False).astype(bool)
        else:
            cols[name] = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
    frame = pd.DataFrame(cols)
    frame["account_id"] = frame["account_id"].astype(str)
    frame["cutoff"] = frame["cutoff"].astype("datetime64[us]")
    return frame.sort_values(["account_id", "cutoff"], kind="stable").reset_index(drop=True)

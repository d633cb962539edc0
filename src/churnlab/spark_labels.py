"""The labels on Apache Spark: churn and expansion from ``[cutoff, cutoff + horizon)``.

The Spark counterpart of :func:`churnlab.labels.compute`, with the same definitions (DESIGN.md
section 4), used by :mod:`churnlab.spark_dataset`. Every window boundary here is a midnight
(cutoffs are midnights, label windows end a whole number of days or calendar months later), so
"``cutoff <= t < window_end``" is a range of UTC days, joined through a small broadcast (day,
cutoff) table (:func:`day_ranges`) rather than a range join.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from churnlab import spark_engine as se
from churnlab import spine
from churnlab.config import DatasetParams, Horizon
from churnlab.labels import DAYS_PER_MONTH
from churnlab.schema import UPSELL_KINDS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

NOT_REFUND = "coalesce(kind, '') <> 'refund'"
"""Orders that count as purchases (refunds do not)."""


def epoch_day(t: dt.datetime) -> int:
    """The UTC epoch day of a midnight."""
    return se.to_micros(t) // se.US_PER_DAY


def day_ranges(
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
        days = day_ranges(
            spark,
            [(c, epoch_day(c), epoch_day(h.add(c))) for c in cutoff_values],
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
    days = day_ranges(
        spark,
        [(c, epoch_day(c), epoch_day(h.add(c))) for c in cutoff_values],
        ("after", "before", "lookback"),
        [
            [(epoch_day(h.add(c, -1)), epoch_day(c)) for c in cutoff_values],
            [(epoch_day(c) - lookback, epoch_day(c)) for c in cutoff_values],
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

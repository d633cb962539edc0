"""The training set on Apache Spark: the spine, the labels and the assembled frame.

The Spark counterpart of :mod:`churnlab.spine`, :mod:`churnlab.labels` and
:func:`churnlab.dataset.build`, with the same definitions (DESIGN.md sections 2 and 4) and the
same output: one row per (account_id, cutoff), the features of :mod:`churnlab.spark_features`,
the label columns and, for orders-only data, the BG/NBD inputs. What is computed on the driver
is small and shared with the DuckDB path: the cutoffs (:func:`churnlab.spine.cutoff_range`),
each cutoff's label window end (:meth:`churnlab.config.Horizon.add`), the per-cutoff counts of
the manifest (:func:`churnlab.dataset.per_cutoff`). The events never leave the executors:
:func:`write` (``churnlab build-dataset``) writes the finished training set (one row per
account and cutoff) with Spark's Parquet writer, :func:`build` collects it through Arrow (for
callers that want the frame); training reads it on the driver. The labels are in
:mod:`churnlab.spark_labels`; the data fingerprint (:func:`fingerprint`) is Spark's own, tagged.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from churnlab import btyd_population as bp
from churnlab import dataset, spine
from churnlab import spark_engine as se
from churnlab import spark_features as sf
from churnlab.atomic import atomic_dir
from churnlab.config import DataParams, DatasetParams
from churnlab.coverage import observed_end
from churnlab.manifest import Feature, Manifest
from churnlab.schema import LABEL_COLUMNS, TABLES, TASKS
from churnlab.spark_labels import NOT_REFUND, compute_labels, day_ranges, epoch_day

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


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
        days = day_ranges(
            spark,
            [(c, epoch_day(c) - lookback, epoch_day(c)) for c in cutoff_values],
            ("lookback",),
        )
        pairs = rows.join(days, rows["_d"] == days["d"])
    return pairs.select(
        F.col("account_id").cast("string").alias("account_id"),
        F.timestamp_micros(F.col("c")).alias("cutoff"),
    ).distinct()


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


def account_types(tables: se.SparkTables) -> dict[str, str]:
    """The ``accounts`` columns and their Spark type names (:func:`dataset.unused_columns`)."""
    return {f.name: f.dataType.typeName() for f in tables.frames["accounts"].schema}


def population_fits(
    spark: SparkSession, tables: se.SparkTables, cutoffs: Sequence[dt.datetime]
) -> tuple[dict[str, Any], ...]:
    """The BG/NBD fit at each cutoff on every customer before it (see :mod:`btyd_population`).

    The same sample of accounts as on DuckDB (smallest MD5 of the id), the same histories
    (:func:`purchase_history`) and the same fit.
    """
    from pyspark.sql import functions as F

    orders = tables.frames["orders"].where(
        F.expr(NOT_REFUND) & F.col("ordered_at").isNotNull() & F.col("account_id").isNotNull()
    )
    sample = (
        orders.groupBy(F.col("account_id").cast("string").alias("account_id"))
        .agg(se.micros(F.min("ordered_at")).alias("first_us"))
        .orderBy(F.md5(F.col("account_id")), "account_id")
        .limit(bp.POPULATION_LIMIT)
        .toArrow()
        .to_pandas()
    )
    firsts = pd.DataFrame(
        {"account_id": sample["account_id"].astype(str),
         "first_at": pd.to_datetime(sample["first_us"].astype("int64"), unit="us")}
    )  # fmt: skip
    sp = bp.spine(firsts, cutoffs)
    if sp.empty:
        return ()
    us = sp["cutoff"].astype("datetime64[us]").astype("int64")
    frame = spark.createDataFrame(
        pd.DataFrame({"account_id": sp["account_id"], "c": us}), "account_id string, c long"
    ).select("account_id", F.timestamp_micros(F.col("c")).alias("cutoff"))
    got = (
        purchase_history(tables, frame)
        .select(se.micros(F.col("cutoff")).alias("c"), *dataset.BTYD_COLUMNS)
        .toArrow()
        .to_pandas()
    )
    rfm = pd.DataFrame(
        {"cutoff": pd.to_datetime(got["c"].astype("int64"), unit="us"),
         "frequency": got["btyd_frequency"].astype(float),
         "recency": got["btyd_recency"].astype(float), "T": got["btyd_T"].astype(float)}
    )  # fmt: skip
    return bp.fits(rfm)


# --------------------------------------------------------------------------------------------
# The training set
# --------------------------------------------------------------------------------------------


@dataclass
class _Assembled:
    """The training set assembled on Spark, not computed yet, and what its manifest needs."""

    frame: DataFrame  # account_id, cutoff (timestamp_ntz), features, labels, extra columns
    feats: list[Feature]
    extra: tuple[str, ...]
    rows: int  # spine rows
    mode: str
    end: dt.datetime
    cuts: list[dt.datetime]
    timings: dict[str, float]
    started: float  # when the features started (perf_counter): they run when the frame does
    cached: list[DataFrame]
    btyd_fits: tuple[dict[str, Any], ...] = ()


def build(
    spark: SparkSession,
    tables: se.SparkTables,
    params: DatasetParams,
    data: DataParams,
    *,
    source: str = "",
    progress: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, Manifest]:
    """Build the training set on Spark and collect it (see :func:`churnlab.dataset.build`).

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
        but the data fingerprint, which is Spark's own (:func:`fingerprint`).
        :func:`write` writes the set from the executors instead, without collecting it.
    """
    say = progress or (lambda _msg: None)
    built = _assemble(spark, tables, params, data, say)
    try:
        with se.spark_errors():
            table = built.frame.toArrow()
        built.timings["features"] = time.perf_counter() - built.started
    finally:
        sf.release(built.cached)
    out = to_pandas(table, built.feats, LABEL_COLUMNS, built.extra)
    if len(out) != built.rows:
        raise dataset.DatasetError("internal error: feature and label rows are out of step")
    say("fingerprinting the data (Spark)")
    return out, _manifest(built, dataset.per_cutoff(out), tables, params, source)


def write(
    spark: SparkSession,
    tables: se.SparkTables,
    params: DatasetParams,
    data: DataParams,
    out: Path | str,
    *,
    source: str = "",
    progress: Callable[[str], None] | None = None,
) -> Manifest:
    """Build the training set on Spark and write it with Spark's Parquet writer.

    ``<out>/dataset.parquet`` is a folder of part files, one per task of the last stage,
    written by the executors (nothing but the per-cutoff counts and the fingerprint reaches the
    driver), and ``<out>/manifest.json`` the manifest :func:`build` makes;
    :func:`churnlab.dataset.read` reads the pair back as the frame :func:`build` returns. Both
    are written to a temporary sibling of ``out`` and published in one rename
    (:func:`churnlab.atomic.atomic_dir`), so a failed build leaves an earlier output as it was.
    ``out`` is a path of this machine's file system; on a cluster, one every executor can
    write to (a shared mount), since the executors write the part files there.

    Parameters
    ----------
    spark, tables, params, data, source, progress
        As for :func:`build`.
    out : Path or str
        The training set's folder (``dataset.out``).

    Returns
    -------
    Manifest
        The manifest written.
    """
    from pyspark.sql import functions as F

    say = progress or (lambda _msg: None)
    with atomic_dir(out) as tmp:
        built = _assemble(spark, tables, params, data, say)
        uri = (tmp / dataset.DATASET_FILE).resolve().as_uri()
        try:
            with se.spark_errors():
                say("writing the training set (Spark)")
                built.frame.write.parquet(uri)
            built.timings["features"] = time.perf_counter() - built.started
        finally:
            sf.release(built.cached)
        with se.spark_errors():
            written = spark.read.parquet(uri)
            counts = _per_cutoff(written.withColumn("cutoff", se.micros(F.col("cutoff"))))
        if sum(r["rows"] for r in counts) != built.rows:
            raise dataset.DatasetError("internal error: feature and label rows are out of step")
        say("fingerprinting the data (Spark)")
        manifest = _manifest(built, counts, tables, params, source)
        manifest.write(tmp / dataset.MANIFEST_FILE)
    return manifest


def _assemble(
    spark: SparkSession,
    tables: se.SparkTables,
    params: DatasetParams,
    data: DataParams,
    say: Callable[[str], None],
) -> _Assembled:
    """The spine, then the features and labels joined onto it, as one (lazy) Spark frame.

    The spine is counted and its cutoffs collected here; the frames cached for the
    computation are in the result's ``cached`` (the caller releases them once it has run).
    """
    from pyspark.sql import functions as F

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
        started = time.perf_counter()
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
            fits: tuple[dict[str, Any], ...] = ()
            if mode == "orders":
                rfm = purchase_history(tables, sp)
                frame = frame.join(rfm, ["account_id", "cutoff"], "left")
                extra = dataset.BTYD_COLUMNS
                say("fitting the BG/NBD baseline at each cutoff (Spark)")
                fits = population_fits(spark, tables, spine_cuts)
    except BaseException:
        sf.release(cached)
        raise
    cols = [f.name for f in feats] + [*LABEL_COLUMNS, *extra]
    frame = frame.select(
        F.col("account_id"),
        F.col("cutoff").cast("timestamp_ntz").alias("cutoff"),
        *[F.col(sf.quote_col(c)) for c in cols],
    )
    return _Assembled(
        frame, feats, extra, rows, mode, end, cuts, timings, started, cached, fits
    )


def _per_cutoff(frame: DataFrame) -> list[dict[str, Any]]:
    """:func:`churnlab.dataset.per_cutoff` on Spark (``cutoff`` in epoch microseconds)."""
    from pyspark.sql import functions as F

    labeled = F.col("labeled")
    aggs = [F.count(F.lit(1)).alias("rows"), F.count(F.when(labeled, 1)).alias("labeled_rows")]
    for task in TASKS:
        aggs.append(F.count(F.when(labeled & (F.col(task) == 1), 1)).alias(f"{task}_positives"))
        aggs.append(F.count(F.when(labeled & (F.col(task) == 0), 1)).alias(f"{task}_negatives"))
    out = []
    for r in frame.groupBy("cutoff").agg(*aggs).orderBy("cutoff").collect():
        row: dict[str, Any] = {
            "cutoff": pd.Timestamp(se.from_micros(int(r["cutoff"]))).isoformat(),
            "rows": int(r["rows"]),
            "labeled": bool(r["labeled_rows"] > 0),
            "labeled_rows": int(r["labeled_rows"]),
        }
        for task in TASKS:
            pos, neg = int(r[f"{task}_positives"]), int(r[f"{task}_negatives"])
            row[f"{task}_positives"] = pos
            row[f"{task}_negatives"] = neg
            row[f"{task}_rate"] = pos / (pos + neg) if pos + neg else None
        out.append(row)
    return out


def _manifest(
    built: _Assembled,
    per_cutoff: list[dict[str, Any]],
    tables: se.SparkTables,
    params: DatasetParams,
    source: str,
) -> Manifest:
    feats = built.feats
    return Manifest(
        mode=built.mode,
        horizon_days=params.window.days,
        horizon=params.window.label,
        windows=tuple(int(w) for w in sorted(set(params.windows))),
        data_end=built.end.isoformat(),
        cutoffs=tuple(c.isoformat() for c in built.cuts),
        per_cutoff=tuple(per_cutoff),
        rows=int(sum(r["rows"] for r in per_cutoff)),
        features=tuple(feats),
        event_types=tuple(sorted({f.event_type for f in feats if f.event_type is not None})),
        label_columns=LABEL_COLUMNS,
        tables=tuple(tables.names),
        data_fingerprint=fingerprint(tables),
        source=source,
        params=params.model_dump(mode="json"),
        built_at=dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        timings_s={k: round(v, 3) for k, v in built.timings.items()},
        btyd_fits=built.btyd_fits,
    )


def fingerprint(tables: se.SparkTables) -> str:
    """A hash of every present table's rows on Spark, in one job, tagged ``spark:``.

    Per table: the row count, the first and last time (epoch microseconds) and the sum of each
    row's ``xxhash64`` over all its columns (contract columns in contract order, then any
    account attributes by name), so every value counts and row order does not. Not DuckDB's
    hash (:func:`churnlab.dataset.fingerprint`, which reads only accounts and times and costs
    little in the embedded build): a manifest's Spark fingerprint is compared only with one
    Spark computes (:func:`data_changed`; :func:`churnlab.dataset.data_changed` skips it).
    """
    import hashlib

    from pyspark.sql import functions as F

    aggs = []
    for j, name in enumerate(tables.names):
        frame = tables.frames[name]
        contract = [c.name for c in TABLES[name].columns if c.name in frame.columns]
        cols = [*contract, *sorted(c for c in frame.columns if c not in contract)]
        row_hash = F.xxhash64(*[F.col(sf.quote_col(c)) for c in cols]).cast("decimal(38, 0)")
        t = se.micros(F.col(str(TABLES[name].time_column)))
        aggs.append(frame.agg(F.count(F.lit(1)).alias(f"n{j}"), F.min(t).alias(f"a{j}"),
                              F.max(t).alias(f"b{j}"), F.sum(row_hash).alias(f"s{j}")))  # fmt: skip
    with se.spark_errors():
        row = se.one_row(aggs)
    parts = []
    for j, name in enumerate(tables.names):
        values = [None if row[f"{k}{j}"] is None else int(row[f"{k}{j}"]) for k in "nabs"]
        parts.append(f"{name}:{values}")
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    return f"{dataset.SPARK_FINGERPRINT}{digest}"


def data_changed(tables: se.SparkTables, manifest: Manifest) -> bool | None:
    """Whether the data differs from what the training set was built from (Spark's hash).

    Returns
    -------
    bool or None
        None when the manifest cannot tell: no fingerprint, or DuckDB's (compared like with
        like: :func:`churnlab.dataset.data_changed`).
    """
    recorded = manifest.data_fingerprint
    if not recorded.startswith(dataset.SPARK_FINGERPRINT):
        return None
    return fingerprint(tables) != recorded


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

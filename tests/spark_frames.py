"""Helpers of the Spark engine's tests: the same inputs on both engines, outputs compared.

Contract frames reach Spark as they reach a user's cluster: written as Parquet and read by
:func:`churnlab.spark_engine.read_tables`. Spines are built from epoch microseconds (pyspark
would read naive pandas timestamps in the Python process's time zone).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from churnlab import load
from churnlab import spark_dataset as sd
from churnlab import spark_engine as se
from churnlab import spark_features as sf
from churnlab.config import DataParams, DatasetParams
from churnlab.manifest import Feature
from churnlab.schema import LABEL_COLUMNS


def spark_tables(spark, frames: dict[str, pd.DataFrame], folder: Path) -> se.SparkTables:
    """``frames`` written to ``folder`` as Parquet and read back by the Spark engine."""
    folder.mkdir(parents=True, exist_ok=True)
    load.write_tables(frames, folder)
    return se.read_tables(spark, DataParams(source=str(folder)), str(folder))


def spark_spine(spark, spine: pd.DataFrame):
    """A pandas spine (account_id, cutoff) as a Spark DataFrame."""
    from pyspark.sql import functions as F

    us = spine["cutoff"].astype("datetime64[us]").astype("int64").tolist()
    rows = list(zip(spine["account_id"].astype(str).tolist(), us, strict=True))
    frame = spark.createDataFrame(rows, "account_id string, c long")
    return frame.select("account_id", F.timestamp_micros(F.col("c")).alias("cutoff"))


def spark_features(
    spark, tables: se.SparkTables, spine: pd.DataFrame, params: DatasetParams, **given
) -> pd.DataFrame:
    """Features on Spark as the DuckDB engine's frame (sorted rows, same dtypes).

    ``given``: ``event_types`` and ``categories``, as for :func:`churnlab.features.compute`.
    """
    return spark_features_and_definitions(spark, tables, spine, params, **given)[0]


def spark_features_and_definitions(
    spark, tables: se.SparkTables, spine: pd.DataFrame, params: DatasetParams, **given
) -> tuple[pd.DataFrame, list[Feature]]:
    """:func:`spark_features` and the feature records."""
    from pyspark.sql import functions as F

    frame, feats, cached = sf.compute(
        spark, tables.frames, spark_spine(spark, spine), params, **given
    )
    try:
        cols = [F.col(sf.quote_col(f.name)) for f in feats]
        table = frame.select(
            "account_id", F.col("cutoff").cast("timestamp_ntz").alias("cutoff"), *cols
        ).toArrow()
    finally:
        sf.release(cached)
    return sd.to_pandas(table, feats, ()), feats


def spark_labels(
    spark,
    tables: se.SparkTables,
    spine: pd.DataFrame,
    params: DatasetParams,
    mode: str,
    end: dt.datetime,
) -> pd.DataFrame:
    """Labels on Spark as :func:`churnlab.labels.compute`'s frame."""
    from pyspark.sql import functions as F

    cuts = sorted({pd.Timestamp(c).to_pydatetime() for c in spine["cutoff"]})
    y = sd.compute_labels(spark, tables, spark_spine(spark, spine), cuts, params, mode, end)
    table = y.withColumn("cutoff", F.col("cutoff").cast("timestamp_ntz")).toArrow()
    return sd.to_pandas(table, [], LABEL_COLUMNS)


def assert_same_frame(duck: pd.DataFrame, spark: pd.DataFrame, rtol: float = 1e-9) -> None:
    """Same rows, columns and dtypes; integer-valued and text columns exact, floats to ``rtol``.

    NaN must be NaN in both. A float column whose DuckDB values are all whole numbers (counts,
    days, flags) must match exactly.
    """
    assert list(duck.columns) == list(spark.columns)
    assert len(duck) == len(spark)
    bad_types = {
        c: (duck[c].dtype, spark[c].dtype) for c in duck if duck[c].dtype != spark[c].dtype
    }
    assert not bad_types, bad_types
    mismatched = {}
    for col in duck.columns:
        a, b = duck[col], spark[col]
        if a.dtype.kind == "f":
            x, y = a.to_numpy(), b.to_numpy()
            same_nan = np.array_equal(np.isnan(x), np.isnan(y))
            ok = np.isfinite(x) & np.isfinite(y)
            whole = np.all(x[ok] == np.round(x[ok]))
            if whole:
                close = np.array_equal(x[ok], y[ok])
            else:
                close = np.allclose(x[ok], y[ok], rtol=rtol, atol=0.0)
            if not (same_nan and close and np.array_equal(x[~ok & ~np.isnan(x)],
                                                          y[~ok & ~np.isnan(y)])):
                mismatched[col] = int((~np.isclose(x, y, rtol=rtol, equal_nan=True)).sum())
        else:
            left = a.astype(object).where(a.notna(), None).tolist()
            right = b.astype(object).where(b.notna(), None).tolist()
            if left != right:
                mismatched[col] = sum(u != v for u, v in zip(left, right, strict=True))
    assert not mismatched, f"columns that differ (cells): {mismatched}"

"""The point-in-time leakage tests by mutation, on the Spark engine (see ``test_leakage``).

The same literal tables and mutations as the DuckDB tests: change or delete every row at or
after the cutoff and the Spark-built features are identical (bit for bit); change rows before
it and the labels are identical; the same mutation on the other side does change them, so the
tests are not vacuous.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from test_leakage import (
    CADENCE,
    DATA_END,
    PARAMS,
    T,
    assert_identical,
    at_or_after,
    before,
    literal_tables,
    mutate,
    orders_only,
    spine_for,
)

from spark_frames import (
    spark_features,
    spark_features_and_definitions,
    spark_labels,
    spark_tables,
)

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def _features(spark, frames, folder, spine):
    return spark_features(spark, spark_tables(spark, frames, folder), spine, PARAMS)


def _labels(spark, frames, folder, spine, mode):
    return spark_labels(spark, spark_tables(spark, frames, folder), spine, PARAMS, mode, DATA_END)


@pytest.mark.parametrize("how", ["change", "delete"])
def test_spark_features_ignore_rows_at_or_after_cutoff(spark, tmp_path, how):
    frames = literal_tables()
    spine = spine_for(frames)
    base = _features(spark, frames, tmp_path / "base", spine)
    mutated = mutate(frames, at_or_after(T), how)
    for name in frames:  # the mutation really touched every table
        assert not frames[name].equals(mutated[name]), name
    assert_identical(base, _features(spark, mutated, tmp_path / "mutated", spine))


@pytest.mark.parametrize("how", ["change", "delete"])
def test_spark_features_ignore_later_rows_when_later_cutoffs_read_them(spark, tmp_path, how):
    """Two cutoffs computed together: the later one reads rows the earlier must not see."""
    frames = literal_tables()
    later = T + dt.timedelta(days=61)
    spine = pd.concat([spine_for(frames), spine_for(frames, later)], ignore_index=True)
    tables = spark_tables(spark, frames, tmp_path / "base")
    base, feats = spark_features_and_definitions(spark, tables, spine, PARAMS)
    assert set(CADENCE) <= set(base.columns)
    fixed = {  # the later cutoff's windows see other event types and levels: keep the columns
        "event_types": sorted({f.event_type for f in feats if f.event_type}),
        "categories": {f.name: f.categories for f in feats if f.dtype == "category"},
    }
    mutated = spark_features(
        spark,
        spark_tables(spark, mutate(frames, at_or_after(T), how), tmp_path / "mutated"),
        spine,
        PARAMS,
        **fixed,
    )
    at_t = base["cutoff"] == T
    assert_identical(
        base[at_t].reset_index(drop=True), mutated[mutated["cutoff"] == T].reset_index(drop=True)
    )
    assert not base[~at_t].reset_index(drop=True).equals(
        mutated[mutated["cutoff"] == later].reset_index(drop=True)
    )


@pytest.mark.parametrize("how", ["change", "delete"])
def test_spark_cadence_features_ignore_orders_at_or_after_cutoff(spark, tmp_path, how):
    frames = literal_tables()
    spine = spine_for(frames)
    base = _features(spark, frames, tmp_path / "base", spine)
    mutated = mutate(frames, orders_only(at_or_after(T)), how)
    assert not frames["orders"].equals(mutated["orders"])
    assert_identical(base, _features(spark, mutated, tmp_path / "mutated", spine))
    changed = _features(spark, mutate(frames, orders_only(before(T)), "delete"),
                        tmp_path / "before", spine)  # fmt: skip
    moved = [c for c in CADENCE if not base[c].equals(changed[c])]
    assert moved == list(CADENCE)  # every order feature reads the orders before the cutoff


def test_spark_features_do_change_when_rows_before_cutoff_change(spark, tmp_path):
    frames = literal_tables()
    spine = spine_for(frames)
    base = _features(spark, frames, tmp_path / "base", spine)
    changed = _features(spark, mutate(frames, before(T), "change"), tmp_path / "changed", spine)
    assert not base.equals(changed)


@pytest.mark.parametrize("how", ["change", "delete"])
def test_spark_contractual_labels_ignore_rows_before_cutoff(spark, tmp_path, how):
    frames = literal_tables()
    spine = spine_for(frames)
    base = _labels(spark, frames, tmp_path / "base", spine, "contractual")
    mutated = mutate(frames, before(T), how)
    assert not frames["subscriptions"].equals(mutated["subscriptions"])
    assert_identical(base, _labels(spark, mutated, tmp_path / "mutated", spine, "contractual"))


@pytest.mark.parametrize("how", ["change", "delete"])
def test_spark_orders_churn_ignores_rows_before_cutoff(spark, tmp_path, how):
    frames = literal_tables()
    spine = spine_for(frames)
    keep = ["account_id", "cutoff", "churn", "labeled"]
    base = _labels(spark, frames, tmp_path / "base", spine, "orders")[keep]
    mutated = _labels(spark, mutate(frames, before(T), how), tmp_path / "m", spine, "orders")
    assert_identical(base, mutated[keep])


def test_spark_labels_do_change_when_window_rows_change(spark, tmp_path):
    frames = literal_tables()
    spine = spine_for(frames)
    base = _labels(spark, frames, tmp_path / "base", spine, "contractual")
    mutated = mutate(frames, at_or_after(T), "delete")
    assert not base.equals(_labels(spark, mutated, tmp_path / "mutated", spine, "contractual"))

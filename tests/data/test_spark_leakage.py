"""The point-in-time leakage tests by mutation, on the Spark engine (see ``test_leakage``).

The same literal tables and mutations as the DuckDB tests: change or delete every row at or
after the cutoff and the Spark-built features are identical (bit for bit); change rows before
it and the labels are identical; the same mutation on the other side does change them, so the
tests are not vacuous.
"""

from __future__ import annotations

import pytest
from test_leakage import (
    DATA_END,
    PARAMS,
    T,
    assert_identical,
    at_or_after,
    before,
    literal_tables,
    mutate,
    spine_for,
)

from spark_frames import spark_features, spark_labels, spark_tables

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

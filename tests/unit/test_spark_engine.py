"""The Spark engine without a Spark session: errors that say how to fix them, the SQL rules.

What is refused or rewritten when a spec's SQL snippet goes to Spark, the Java version check,
the sources it does not read, and the one-line errors of ``build-dataset`` when pyspark or
Java is missing. Nothing here starts a JVM (the parity tests do, marker ``spark``).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest
from pyspark.sql.types import DoubleType, IntegerType, StringType
from typer.testing import CliRunner

from churnlab import spark_engine as se
from churnlab import spark_features as sf
from churnlab.config import DataParams, SparkParams
from churnlab.feature_specs import (
    AGGS,
    FAMILIES,
    Block,
    Context,
    Family,
    Spec,
    expand,
)

SCHEMA = {"amount": DoubleType(), "seats": IntegerType(), "kind": StringType()}


# ------------------------------------------------------------------------------------------
# translate: the spec SQL on Spark
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        ("date_diff('day', a, b) > 3", "date arithmetic"),
        ("datediff(a, b)", "date arithmetic"),
        ("occurred_at > now() - INTERVAL 3 DAY", "interval"),
        ("epoch_us(occurred_at)", "interval or epoch"),
        ("list_position(['a'], kind) > 0", "list functions"),
        ("count(*) FILTER (WHERE kind = 'x')", "FILTER"),
        ("seats // 2", "integer division"),
        ("first(kind ORDER BY amount)", "ordered aggregate"),
        ("regexp_matches(kind, 'a.*')", "regular expressions"),
        ("sum(amount) OVER (PARTITION BY kind)", "window clauses"),
        ("date_trunc('month', occurred_at)", "date functions"),
    ],
)
def test_constructs_that_differ_between_engines_are_refused(sql, what):
    with pytest.raises(se.SparkUnsupported, match=what) as err:
        se.translate(sql, SCHEMA, "feature x")
    assert "feature x" in str(err.value) and "dataset.engine: duckdb" in str(err.value)


def test_string_literals_may_hold_anything():
    sql = "kind = 'interval // date_diff [x] ORDER BY'"
    assert se.translate(sql, SCHEMA, "f") == sql


def test_decimal_cast_of_a_double_rounds_half_away_from_zero_as_duckdb():
    out = se.translate("CAST(amount AS DECIMAL(38, 6))", SCHEMA, "f")
    assert out == (
        "CAST(CAST(round(amount * 1000000D) AS DECIMAL(38, 0)) / 1000000BD AS DECIMAL(38, 6))"
    )
    # not a double: left as it is (an exact cast already)
    assert se.translate("CAST(seats AS DECIMAL(18, 6))", SCHEMA, "f") == (
        "CAST(seats AS DECIMAL(18, 6))"
    )


def test_average_becomes_an_exact_sum_over_a_count():
    out = se.translate("CAST(avg(CAST(seats AS DECIMAL(18, 6))) AS DOUBLE)", SCHEMA, "f")
    assert out == (
        "CAST((CAST(sum(CAST(seats AS DECIMAL(18, 6))) AS DOUBLE) / "
        "count(CAST(seats AS DECIMAL(18, 6)))) AS DOUBLE)"
    )


def test_every_declared_feature_compiles():
    """The repository's families: every aggregate is known and no snippet is refused."""
    assert set(AGGS) <= sf.SUPPORTED
    ctx = Context(
        windows=(7, 30, 90),
        tables=frozenset(
            ("accounts", "subscriptions", "orders", "events", "campaign_events", "tickets", "nps")
        ),
        has_values=frozenset(("events.quantity", "events.user_id", "subscriptions.seats",
                              "subscriptions.plan")),
        event_types=("login", "export"),
        slugs={"login": "login", "export": "export"},
        categories={"plan": ("a", "b")},
        long_windows={"orders": (180, 365)},
    )  # fmt: skip
    planned = expand(ctx, FAMILIES)
    assert {"order_days_365d", "gap_spread_days", "last_order_value"} <= {
        p.feature.name for p in planned
    }
    sf.check_supported(planned)
    for p in planned:
        for sql in (p.where, p.value if p.spec.agg == "derived" else None, p.source.where):
            if sql is not None:
                se.translate(sql, {}, p.feature.name)


def test_a_filter_the_compiler_would_ignore_is_refused():
    family = Family("x", (Block((Spec("m_{w}d", "m", "support", "mean", "tickets",
                                      where="priority = 'high'", value="csat",
                                      windows="max"),)),))  # fmt: skip
    ctx = Context((7,), frozenset(("tickets",)), frozenset(), (), {}, {})
    with pytest.raises(se.SparkUnsupported, match="a filter on a 'mean' feature"):
        sf.check_supported(expand(ctx, (family,)))


# ------------------------------------------------------------------------------------------
# Installation checks and sources
# ------------------------------------------------------------------------------------------


def _fake_java(tmp_path: Path, banner: str) -> Path:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '{banner}' >&2\n")
    java.chmod(0o755)
    return home


@pytest.mark.parametrize(
    ("banner", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "11.0.22" 2024-01-16', 11),
    ],
)
def test_java_version_from_java_home(tmp_path, monkeypatch, banner, major):
    monkeypatch.setenv("JAVA_HOME", str(_fake_java(tmp_path, banner)))
    assert se.java_version() == major


def test_no_java_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    assert se.java_version() is None
    with pytest.raises(se.SparkEngineError, match="openjdk-17-jre-headless"):
        se.session(SparkParams())


def test_old_java_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(_fake_java(tmp_path, 'openjdk version "11.0.22"')))
    with pytest.raises(se.SparkEngineError, match="version 11; pyspark 4 needs Java 17"):
        se.session(SparkParams())


def test_missing_pyspark_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # import fails as if not installed
    with pytest.raises(se.SparkEngineError, match=r"pip install 'churnlab\[spark\]'") as err:
        se.session(SparkParams())
    assert "dataset.engine: duckdb" in str(err.value)


def test_build_dataset_command_says_what_is_missing(monkeypatch, tmp_path):
    from churnlab.cli import app

    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    (tmp_path / "data").mkdir()
    params = tmp_path / "params.yaml"
    params.write_text(f"data:\n  source: {tmp_path / 'data'}\ndataset:\n  engine: spark\n")
    result = CliRunner().invoke(app, ["build-dataset", "--params", str(params)])
    assert result.exit_code == 1
    assert "pyspark is not installed" in result.output and "Traceback" not in result.output


def test_databases_are_not_a_spark_source(tmp_path):
    db = tmp_path / "crm.duckdb"
    db.write_bytes(b"")
    for source in (str(db), "postgresql://me@db/crm", "postgresql+psycopg2://me@db/crm"):
        with pytest.raises(se.SparkEngineError, match="reads a folder of <table>.parquet"):
            se.read_tables(None, DataParams(), source)  # type: ignore[arg-type]
    with pytest.raises(se.SparkEngineError, match="not found"):
        se.read_tables(None, DataParams(), str(tmp_path / "missing"))  # type: ignore[arg-type]


def test_epoch_microseconds_round_trip():
    t = dt.datetime(2024, 3, 31, 23, 59, 59, 999_999)
    assert se.to_micros(t) == 1_711_929_599_999_999
    assert se.from_micros(se.to_micros(t)) == t
    assert se.to_micros(dt.datetime(1969, 12, 31, 23, 59, 59)) == -1_000_000

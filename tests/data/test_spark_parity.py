"""Parity: the training set built on Spark (``local[2]``) is the one DuckDB builds.

Same rows, same columns and dtypes, whole-number columns (counts, days, flags) exact, other
floats to 1e-9, the same NaNs, the same category values. On small synthetic worlds (both
modes, through ``dataset.build`` and ``spark_dataset.build``) and on tiny literal tables with
the boundary cases: a row exactly at the cutoff and one microsecond before it, rows at the
start of a window and a microsecond earlier, rows on either side of a UTC midnight given in
another time zone.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from test_leakage import (
    DATA_END,
    PARAMS,
    US,
    T,
    _one_row_tables,
    feature_frame,
    label_frame,
    literal_tables,
    spine_for,
)

from churnlab import dataset, features, load, synth
from churnlab import spark_dataset as sd
from churnlab import spark_engine as se
from churnlab.config import DataParams, DatasetParams, SynthParams
from churnlab.errors import ChurnlabError
from spark_frames import assert_same_frame, spark_features, spark_labels, spark_tables

pytestmark = pytest.mark.spark


# ------------------------------------------------------------------------------------------
# Literal tables: the boundaries
# ------------------------------------------------------------------------------------------


def _window_edges() -> dict[str, pd.DataFrame]:
    """The literal tables plus rows exactly at a window's start and a microsecond before it."""
    frames = literal_tables()
    start7 = T - dt.timedelta(days=7)
    start30 = T - dt.timedelta(days=30)
    extra = pd.DataFrame(
        {
            "account_id": ["a", "a", "b", "b"],
            "occurred_at": pd.Series([start7, start7 - US, start30, start30 - US],
                                     dtype="datetime64[us]"),
            "event_type": ["login", "export", "login", "login"],
            "quantity": [2.0, 3.0, 5.0, 7.0],
            "user_id": ["u9", "u8", "v2", "v3"],
        }
    )  # fmt: skip
    frames["events"] = pd.concat([frames["events"], extra], ignore_index=True)
    orders = pd.DataFrame(
        {
            "account_id": ["a", "c"],
            "ordered_at": pd.Series([start7, start30 - US], dtype="datetime64[us]"),
            "amount": [0.1 + 0.2, 1234.5678915],  # not exact in binary; a tie beyond 6 decimals
            "kind": ["renewal", "new"],
            "product": ["x", "y"],
        }
    )
    frames["orders"] = pd.concat([frames["orders"], orders], ignore_index=True)
    return frames


@pytest.mark.slow
def test_literal_tables_same_features(spark, tmp_path):
    frames = _window_edges()
    duck = feature_frame(frames)
    got = spark_features(spark, spark_tables(spark, frames, tmp_path), spine_for(frames), PARAMS)
    assert_same_frame(duck, got)
    # the boundaries as expected, not just alike: 7-day window [T - 7d, T)
    row = got.set_index("account_id").loc["a"]
    assert row["events_7d"] == 2.0  # 1 us before T and at T - 7d; not T - 7d - 1 us, not T
    assert row["event_quantity_7d"] == 3.0
    assert row["orders_7d"] == 2.0  # 1 us before T and at T - 7d


@pytest.mark.slow
@pytest.mark.parametrize("when", [T - US, T], ids=["one-us-before", "at-cutoff"])
def test_one_row_at_the_boundary_same_features(spark, tmp_path, when):
    frames = _one_row_tables(when)
    con = load.connect_frames(frames)
    duck, _ = features.compute(con, spine_for(frames), PARAMS)
    got = spark_features(spark, spark_tables(spark, frames, tmp_path), spine_for(frames), PARAMS)
    assert_same_frame(duck, got)
    counted = got.set_index("account_id").loc["a", "events_7d"]
    assert counted == (1.0 if when < T else 0.0)


@pytest.mark.parametrize("mode", ["contractual", "orders"])
def test_literal_tables_same_labels(spark, tmp_path, mode):
    frames = _window_edges()
    duck = label_frame(frames, mode)
    tables = spark_tables(spark, frames, tmp_path)
    got = spark_labels(spark, tables, spine_for(frames), PARAMS, mode, DATA_END)
    assert_same_frame(duck, got)


@pytest.mark.slow
def test_label_window_in_calendar_months_and_expansion_threshold(spark, tmp_path):
    """A month horizon from month ends (clamped to February's end) and a growth exactly at
    the threshold (0.1 x 100.000004 is 10.0000004: DuckDB compares it exactly)."""
    params = DatasetParams(windows=(7, 30, 90), horizon="1 month", lookback_days=60,
                           expansion_min_fraction=0.1)  # fmt: skip
    jan31 = dt.datetime(2024, 1, 31)
    frames = {
        "accounts": pd.DataFrame(
            {"account_id": ["a", "b"], "created_at": pd.Series([jan31 - dt.timedelta(days=60)] * 2,
                                                               dtype="datetime64[us]")}
        ),
        "subscriptions": pd.DataFrame(
            {
                "account_id": ["a", "a", "b", "b"],
                "start_at": pd.Series([dt.datetime(2023, 12, 1), dt.datetime(2024, 2, 10),
                                       dt.datetime(2023, 12, 1), dt.datetime(2024, 2, 29)],
                                      dtype="datetime64[us]"),
                "end_at": pd.Series([dt.datetime(2024, 2, 10), None, dt.datetime(2024, 2, 29),
                                     None], dtype="datetime64[us]"),
                "mrr": [100.000004, 110.000004, 100.0, 110.0],
                "plan": ["p", "p", "p", "p"],
                "seats": pd.array([1, 1, 1, 1], dtype="Int32"),
            }
        ),
    }  # fmt: skip
    spine = pd.DataFrame(
        {"account_id": ["a", "b"], "cutoff": pd.Series([jan31] * 2, dtype="datetime64[us]")}
    )
    end = dt.datetime(2024, 6, 1)
    con = load.connect_frames(frames)
    from churnlab import labels

    duck = labels.compute(con, spine, params, "contractual", end)
    got = spark_labels(spark, spark_tables(spark, frames, tmp_path), spine, params,
                       "contractual", end)  # fmt: skip
    assert_same_frame(duck, got)
    # a: +10.0000000 on 100.000004 is below 10% (10.0000004); b: the change on Feb 29 (the
    # window's end, Jan 31 + 1 month) is inside the state at the end
    assert got["expansion"].tolist() == [0.0, 1.0]


@pytest.mark.slow
def test_time_zones_are_read_as_instants(spark, tmp_path):
    """Zoned Parquet timestamps: the same UTC instants (and UTC days) on both engines."""
    frames = literal_tables()
    ev = frames["events"]
    zoned = pd.DataFrame(
        {
            "account_id": ["a", "a", "b"],
            # 00:30 in Paris on April 1st is 22:30 UTC on March 31st: before the cutoff
            "occurred_at": pd.to_datetime(["2024-04-01 00:30", "2024-03-25 01:00",
                                           "2024-04-01 01:59:59.999999"], format="ISO8601")
            .tz_localize("Europe/Paris").astype("datetime64[us, Europe/Paris]"),
            "event_type": ["login", "login", "export"],
            "quantity": [1.0, 1.0, 1.0],
            "user_id": ["z1", "z2", "z3"],
        }
    )  # fmt: skip
    paris = ev["occurred_at"].dt.tz_localize("UTC").dt.tz_convert("Europe/Paris")
    moved = ev.assign(occurred_at=paris)
    frames["events"] = pd.concat([moved, zoned], ignore_index=True)
    folder = tmp_path / "zoned"
    folder.mkdir()
    load.write_tables(frames, folder)
    con = load.load(DataParams(source=str(folder)), str(folder), now=dt.datetime(2025, 1, 1))
    spine = spine_for(literal_tables())
    duck, _ = features.compute(con, spine, PARAMS)
    tables = se.read_tables(spark, DataParams(source=str(folder)), str(folder))
    got = spark_features(spark, tables, spine, PARAMS)
    assert_same_frame(duck, got)
    plain = feature_frame(literal_tables()).set_index("account_id")
    # Paris 00:30 and 01:59:59.999999 on April 1st are before the UTC cutoff, and 01:00 on
    # March 25th (CET) is the 7-day window's first instant: they count
    assert got.set_index("account_id").loc["a", "events_7d"] == plain.loc["a", "events_7d"] + 2
    assert got.set_index("account_id").loc["b", "events_7d"] == plain.loc["b", "events_7d"] + 1


# ------------------------------------------------------------------------------------------
# Synthetic worlds: the whole training set
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("spark-world") / "synthetic"
    synth.run(SynthParams(accounts=150, months=14, seed=5), out=out)
    return out


def _both(spark, source: Path, params: DatasetParams):
    data = DataParams(source=str(source))
    con = load.load(data, str(source))
    try:
        duck, dm = dataset.build(con, params, data)
    finally:
        con.close()
    got, sm = sd.build(spark, se.read_tables(spark, data, str(source)), params, data)
    return duck, dm, got, sm


def _same_manifest(a, b) -> None:
    for key in ("mode", "horizon_days", "windows", "data_end", "cutoffs", "per_cutoff", "rows",
                "features", "event_types", "label_columns", "tables", "params"):  # fmt: skip
        assert getattr(a, key) == getattr(b, key), key
    # the BG/NBD baseline's fits: the same customers at each cutoff, the same estimates
    assert [(f["cutoff"], f["customers"]) for f in a.btyd_fits] == [
        (f["cutoff"], f["customers"]) for f in b.btyd_fits
    ]
    for fa, fb in zip(a.btyd_fits, b.btyd_fits, strict=True):
        assert [fa[k] for k in ["r", "alpha", "a", "b"]] == pytest.approx(
            [fb[k] for k in ["r", "alpha", "a", "b"]], rel=1e-6
        )
    # each engine its own hash, tagged so that each is compared only with its own
    assert a.data_fingerprint and not a.data_fingerprint.startswith(dataset.SPARK_FINGERPRINT)
    assert b.data_fingerprint.startswith(dataset.SPARK_FINGERPRINT)


@pytest.mark.slow
def test_contractual_world_same_training_set(spark, world):
    duck, dm, got, sm = _both(spark, world, DatasetParams())
    assert dm.mode == "contractual" and len(duck) > 500
    assert_same_frame(duck, got)
    _same_manifest(dm, sm)


@pytest.mark.slow
def test_orders_only_world_same_training_set(spark, world, tmp_path):
    """Written by Spark's Parquet writer (``spark_dataset.write``) and read back."""
    source = tmp_path / "orders-only"
    shutil.copytree(world, source, ignore=shutil.ignore_patterns("subscriptions.parquet", "oracle"))
    params = DatasetParams(horizon="1 month", cutoff_freq="weekly", windows=(14, 60))
    data = DataParams(source=str(source))
    con = load.load(data, str(source))
    try:
        duck, dm = dataset.build(con, params, data)
    finally:
        con.close()
    written = sd.write(spark, se.read_tables(spark, data, str(source)), params, data,
                       tmp_path / "out")  # fmt: skip
    got, sm = dataset.read(tmp_path / "out")
    assert sm == written
    assert dm.mode == "orders" and "btyd_T" in duck.columns
    assert len(dm.btyd_fits) > 20 and sm.btyd_fits == written.btyd_fits  # of 48 cutoffs
    assert_same_frame(duck, got)
    _same_manifest(dm, sm)


@pytest.mark.slow
def test_build_dataset_command_on_spark(spark, world, tmp_path):
    """``churnlab build-dataset`` with ``dataset.engine: spark`` writes the DuckDB build's files
    (the test's session is reused and left running)."""
    from typer.testing import CliRunner

    from churnlab.cli import app

    outs = {}
    for engine in ("duckdb", "spark"):
        params = tmp_path / f"{engine}.yaml"
        params.write_text(f"dataset:\n  engine: {engine}\n  windows: [7, 30]\n")
        outs[engine] = tmp_path / engine
        result = CliRunner().invoke(app, ["build-dataset", "--source", str(world), "--out",
                                          str(outs[engine]), "--params", str(params)])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "training set (contractual mode" in result.output
    duck, dm = dataset.read(outs["duckdb"])
    got, sm = dataset.read(outs["spark"])
    assert_same_frame(duck, got)
    assert sm.params == {**dm.params, "engine": "spark"}
    _same_manifest(dm, replace(sm, params=dm.params))
    # written by Spark's writer: a folder of part files (as many as the last stage's tasks,
    # after adaptive execution merged the small ones), not one file from the driver
    written = outs["spark"] / dataset.DATASET_FILE
    parts = sorted(written.glob("part-*.parquet"))
    assert written.is_dir() and (written / "_SUCCESS").exists() and parts
    assert sum(len(pd.read_parquet(p)) for p in parts) == len(duck)
    assert spark.range(3).count() == 3  # still running


# ------------------------------------------------------------------------------------------
# The data fingerprint and the Parquet written by Spark
# ------------------------------------------------------------------------------------------


def _typed_accounts(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Account attributes of several types, with missing values."""
    acc = frames["accounts"]
    return {
        **frames,
        "accounts": acc.assign(
            active=[True, False, None],
            seats_bought=pd.array([3, None, 7], dtype="Int64"),
            signed_on=pd.to_datetime(["2023-05-01", None, "2024-01-31"]).date,
            price=[Decimal("12.50"), Decimal("0.0000001"), None],
            ratio=[0.1 + 0.2, float("nan"), 1e13],
        ),
    }


def test_spark_fingerprint_sees_every_value_and_is_stable(spark, tmp_path):
    """Spark's own hash: tagged, the same for the same rows in any order and across runs,
    different when one value of any table changes; compared like with like."""
    frames = _typed_accounts(literal_tables())
    tables = spark_tables(spark, frames, tmp_path / "base")
    got = sd.fingerprint(tables)
    assert got.startswith(dataset.SPARK_FINGERPRINT) and sd.fingerprint(tables) == got
    shuffled = {k: v.iloc[::-1].reset_index(drop=True) for k, v in frames.items()}
    assert sd.fingerprint(spark_tables(spark, shuffled, tmp_path / "shuffled")) == got
    changes = {  # one value each, none of them an account id or a time
        "accounts": ("price", 0, Decimal("12.51")),
        "subscriptions": ("mrr", 2, 200.000001),
        "orders": ("kind", 3, "upsell"),
        "events": ("user_id", 5, "v9"),
        "campaign_events": ("action", 1, "open"),
        "tickets": ("csat", 3, 5.0),
        "nps": ("comment", 0, "late"),
    }
    seen = {got}
    for table, (col, row, value) in changes.items():
        frame = frames[table].copy()
        frame.loc[row, col] = value
        other = sd.fingerprint(spark_tables(spark, {**frames, table: frame}, tmp_path / table))
        assert other not in seen, table
        seen.add(other)
    manifest = _manifest_with(got)
    assert sd.data_changed(tables, manifest) is False
    assert sd.data_changed(tables, replace(manifest, data_fingerprint=sorted(seen - {got})[0]))
    assert sd.data_changed(tables, replace(manifest, data_fingerprint="3f2a9c0d11b7e645")) is None
    assert sd.data_changed(tables, replace(manifest, data_fingerprint="")) is None


def _manifest_with(fingerprint: str):
    from churnlab.manifest import Manifest

    return Manifest(mode="contractual", horizon_days=30, windows=(7,), data_end="2024-08-01",
                    cutoffs=(), per_cutoff=(), rows=0, features=(),
                    data_fingerprint=fingerprint)  # fmt: skip


@pytest.mark.slow
def test_spark_written_set_reads_back_as_duckdbs_and_a_failed_write_keeps_the_last(
    spark, tmp_path, monkeypatch
):
    """Literal tables (every boundary) written by Spark: the DuckDB build's frame and manifest.
    A job that fails while writing, and a failure after the part files are written, leave the
    previous set as it was and no temporary folder beside it."""
    frames = _window_edges()
    folder, out = tmp_path / "data", tmp_path / "out"
    tables = spark_tables(spark, frames, folder)
    data = DataParams(source=str(folder))
    con = load.load(data, str(folder))
    try:
        duck, dm = dataset.build(con, PARAMS, data)
    finally:
        con.close()
    sd.write(spark, tables, PARAMS, data, out)
    got, sm = dataset.read(out)
    assert_same_frame(duck, got)
    _same_manifest(dm, sm)
    first = out.resolve()

    huge = frames["orders"].copy()
    huge.loc[0, "amount"] = 2e13  # beyond nine trillion: the job raises inside the write
    bad = spark_tables(spark, {**frames, "orders": huge}, tmp_path / "huge")
    with pytest.raises(ChurnlabError, match="beyond nine trillion"):
        sd.write(spark, bad, PARAMS, data, out)

    def fail(*_args, **_kwargs):
        raise RuntimeError("killed after the part files")

    monkeypatch.setattr(sd, "_manifest", fail)
    with pytest.raises(RuntimeError, match="killed after the part files"):
        sd.write(spark, tables, PARAMS, data, out)
    assert out.resolve() == first
    assert_same_frame(duck, dataset.read(out)[0])
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_inclusive_end_dates_are_read_as_on_duckdb(spark, world, tmp_path):
    source = tmp_path / "inclusive"
    shutil.copytree(world, source, ignore=shutil.ignore_patterns("oracle"))
    subs = pd.read_parquet(world / "subscriptions.parquet")
    subs["end_at"] = subs["end_at"] - pd.Timedelta(days=1)  # the last day of service
    subs.to_parquet(source / "subscriptions.parquet")
    data = DataParams(source=str(source))
    tables = se.read_tables(spark, data, str(source))
    assert len(tables.notes) == 1 and "last day of service" in tables.notes[0]
    con = load.load(data)
    try:
        assert load.subscription_end_notes(con, data) == list(tables.notes)
        duck = con.execute("SELECT account_id, start_at, end_at FROM main.subscriptions").df()
    finally:
        con.close()
    got = tables.frames["subscriptions"].select("account_id", "start_at", "end_at").toPandas()
    key = ["account_id", "start_at"]
    duck = duck.sort_values(key).reset_index(drop=True)
    got = got.sort_values(key).reset_index(drop=True)
    orig = subs.sort_values(key).reset_index(drop=True)
    assert (duck["end_at"] == orig["end_at"] + pd.Timedelta(days=1)).where(orig["end_at"].notna(),
                                                                          True).all()  # fmt: skip
    pd.testing.assert_series_equal(
        pd.to_datetime(got["end_at"]).astype("datetime64[us]"),
        pd.to_datetime(duck["end_at"]).astype("datetime64[us]"),
    )

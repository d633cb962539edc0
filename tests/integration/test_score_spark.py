"""`churnlab score` with ``dataset.engine: spark`` gives the DuckDB path's lists (``local[2]``).

One small synthetic world (300 accounts, 15 months), both models trained and registered once,
then scored on DuckDB and on Spark with the same champions: the same accounts, probabilities to
1e-9, the same reason texts, points, bands, plays and offers, the same ranks (up to accounts
whose sort key is equal to 1e-12: the DuckDB path ranks on TreeSHAP's sum, Spark on the
registered pyfunc's output, which can differ in the last bit), the same audiences, drift and
drivers; the Parquet lists Spark writes read back as the DuckDB path's Parquet files. And the
Spark path's errors are one line and a non-zero exit.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from churnlab import actions, pipeline, synth
from churnlab.cli import app
from churnlab.config import Params, SynthParams, load_params
from churnlab.errors import ChurnlabError

pytestmark = [pytest.mark.slow, pytest.mark.spark]

LGB = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 7,
    "n_estimators": 60,
    "verbose": -1,
    "seed": 7,
    "num_threads": 2,
    "min_child_samples": 20,
}
SORT_KEYS = {"at_risk": "revenue_at_risk", "expansion": "expected_expansion_value"}


def _on_spark(params: Params, out: Path) -> Params:
    return params.model_copy(
        update={
            "dataset": params.dataset.model_copy(update={"engine": "spark"}),
            "score": params.score.model_copy(update={"out": str(out)}),
        }
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The world, its models (registered), and one scoring per engine with the same champions."""
    root = tmp_path_factory.mktemp("score_spark")
    synth.run(SynthParams(accounts=300, months=15, seed=3), root / "world")
    raw = {
        "data": {"source": str(root / "world")},
        "dataset": {"out": str(root / "ds")},
        "train": {"lightgbm": LGB, "early_stopping_rounds": 10, "out": str(root / "models")},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "score-spark"},
        "explain": {"sample_for_plots": 100},
        "score": {"out": str(root / "duck")},
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    params = load_params(path)
    pipeline.build_dataset(params)
    summary = pipeline.train_models(params, log_kpis=False)
    assert set(summary["tasks"]) == {"churn", "expansion"}, summary["skipped"]
    return {"root": root, "params": params, "path": path}


@pytest.fixture(scope="module")
def runs(world: dict, spark) -> dict:
    t0 = time.perf_counter()
    duck = actions.score_accounts(world["params"])
    t1 = time.perf_counter()
    on_spark = actions.score_accounts(_on_spark(world["params"], world["root"] / "spark"))
    t2 = time.perf_counter()
    print(f"\nscore: DuckDB {t1 - t0:.1f} s, Spark local[2] {t2 - t1:.1f} s "
          f"(Spark steps {on_spark.timings})")  # fmt: skip
    return {"duck": duck, "spark": on_spark}


def assert_same_list(duck: pd.DataFrame, spark: pd.DataFrame, key: str) -> None:
    """Same columns, dtypes and accounts; values per account equal (floats to 1e-9); ranks too.

    Ranks: the sort key at every rank agrees to 1e-12, and an account sits at another rank only
    where that key ties another account's to 1e-12.
    """
    assert list(duck.columns) == list(spark.columns)
    assert duck.dtypes.to_dict() == spark.dtypes.to_dict()
    assert len(duck) == len(spark) and set(duck["account_id"]) == set(spark["account_id"])
    assert (spark["rank"].to_numpy() == np.arange(1, len(spark) + 1)).all()
    np.testing.assert_allclose(spark[key], duck[key], rtol=1e-12, atol=0)
    moved = duck["account_id"].to_numpy() != spark["account_id"].to_numpy()
    assert moved.sum() <= max(2, len(duck) // 20), "more than ties moved"
    d = duck.set_index("account_id").drop(columns="rank")
    s = spark.set_index("account_id").loc[d.index].drop(columns="rank")
    pd.testing.assert_frame_equal(d, s, check_exact=False, rtol=1e-9, atol=0)


def test_spark_scores_and_reasons_are_the_duckdb_ones(runs) -> None:
    duck, on_spark = runs["duck"], runs["spark"]
    assert on_spark.as_of == duck.as_of and on_spark.models == duck.models
    assert len(duck.at_risk) > 100 and len(duck.expansion) > 50
    for name, key in SORT_KEYS.items():
        assert_same_list(getattr(duck, name), getattr(on_spark, name), key)
    # the reasons are texts with numbers in them: identical, not close
    for i in (1, 2, 3):
        col = f"reason_{i}"
        d = duck.at_risk.set_index("account_id")[col]
        assert (on_spark.at_risk.set_index("account_id").loc[d.index, col] == d).all()
    # probabilities from the registered pyfunc (Spark UDF) vs TreeSHAP's sum: to rounding
    p = on_spark.at_risk.set_index("account_id")["churn_probability"]
    q = duck.at_risk.set_index("account_id").loc[p.index, "churn_probability"]
    assert float((p - q).abs().max()) < 1e-12
    assert set(on_spark.at_risk["risk_band"]) >= {"low", "high"}
    assert on_spark.at_risk["play"].notna().any() and on_spark.expansion["offer"].nunique() >= 2


def test_audiences_drift_and_the_files_the_report_reads_are_the_same(runs) -> None:
    duck, on_spark = runs["duck"], runs["spark"]
    keys = ["campaign", "account_id"]
    a = duck.audiences.sort_values(keys).reset_index(drop=True)
    b = on_spark.audiences.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a.drop(columns="rank", errors="ignore"),
                                  b.drop(columns="rank", errors="ignore"),
                                  check_exact=False, rtol=1e-9, atol=0)  # fmt: skip
    pd.testing.assert_frame_equal(duck.audience_summary, on_spark.audience_summary,
                                  check_exact=False, rtol=1e-9, atol=0)  # fmt: skip
    pd.testing.assert_frame_equal(duck.drift, on_spark.drift, check_exact=False, rtol=1e-12)
    assert len(duck.drift) > 10
    for task in ("churn", "expansion"):
        d = pd.read_csv(duck.folder / f"drivers_{task}.csv").set_index("feature")
        s = pd.read_csv(on_spark.folder / f"drivers_{task}.csv").set_index("feature")
        pd.testing.assert_frame_equal(d, s.loc[d.index], check_exact=False, rtol=1e-9, atol=1e-15)
    names = sorted(p.name for p in duck.folder.iterdir())
    assert sorted(p.name for p in on_spark.folder.iterdir() if p.name != "spark") == names
    assert {"at_risk.csv", "expansion.csv", "audiences.csv", "treatments.csv", "drift.csv",
            "run.json"} <= set(names)  # fmt: skip


def test_the_parquet_lists_spark_writes_read_back_as_the_duckdb_lists(runs) -> None:
    duck, on_spark = runs["duck"], runs["spark"]
    assert on_spark.spark_lists is not None and set(on_spark.spark_lists) == set(SORT_KEYS)
    assert duck.spark_lists is None
    for name, key in SORT_KEYS.items():
        path = Path(on_spark.spark_lists[name])
        assert path == on_spark.folder / "spark" / f"{name}.parquet" and path.is_dir()
        assert len(list(path.glob("part-*.parquet"))) >= 1  # a Spark dataset, not one file
        back = pd.read_parquet(path)
        assert back["rank"].is_monotonic_increasing  # written in rank order
        mine = pd.read_parquet(duck.folder / f"{name}.parquet")
        assert_same_list(mine, back.reset_index(drop=True), key)
        # and the same as the Parquet file of the Spark run's own folder (driver-written)
        pd.testing.assert_frame_equal(back, pd.read_parquet(on_spark.folder / f"{name}.parquet"))


def test_lists_out_sends_the_parquet_lists_to_any_spark_path(world, spark, tmp_path) -> None:
    from churnlab import spark_score

    frame = spark.createDataFrame([(2, "b"), (1, "a")], "rank long, account_id string")
    lists = spark_score.SparkLists(
        cutoff=dt.datetime(2025, 4, 1), mode="contractual", at_risk=pd.DataFrame(),
        expansion=None, drivers={}, drift=pd.DataFrame(), frames={"at_risk": frame},
        cached=(),
    )  # fmt: skip
    params = world["params"].model_copy(update={"spark": world["params"].spark.model_copy(
        update={"lists_out": f"file://{tmp_path}/x/"})})  # fmt: skip
    written = actions._write_spark_lists(params, lists, tmp_path / "unused", lambda _m: None)
    assert written == {"at_risk": f"file://{tmp_path}/x/2025-04-01/at_risk.parquet"}
    back = pd.read_parquet(tmp_path / "x" / "2025-04-01" / "at_risk.parquet")
    assert back["account_id"].tolist() == ["a", "b"] and not (tmp_path / "unused").exists()


# --------------------------------------------------------------------------------------------
# Errors: one line, exit code 1


def _spark_params_file(world: dict, folder: Path, **changes: dict) -> Path:
    raw = yaml.safe_load(world["path"].read_text())
    raw["dataset"]["engine"] = "spark"
    raw["score"]["out"] = str(folder / "actions")
    for section, values in changes.items():
        raw.setdefault(section, {}).update(values)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], result.output


def test_no_champion_on_the_spark_path_is_one_line(world, spark, tmp_path) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    path = _spark_params_file(world, tmp_path, tracking={"uri": empty})
    result = CliRunner().invoke(app, ["score", "--params", str(path)])
    _one_line_error(result, "no champion for churnlab-churn", "run `churnlab train` first")


def test_a_model_version_the_registry_lacks_is_one_line(world, spark, tmp_path) -> None:
    path = _spark_params_file(world, tmp_path)
    result = CliRunner().invoke(app, ["score", "--params", str(path), "--model-version",
                                      "churn=99"])  # fmt: skip
    _one_line_error(result, "has no version 99")


def test_csv_data_on_the_spark_path_is_one_line(world, spark, tmp_path) -> None:
    csv = tmp_path / "csv"
    csv.mkdir()
    for name in ("accounts", "subscriptions"):
        pd.read_parquet(Path(world["params"].data.source) / f"{name}.parquet").head(3).to_csv(
            csv / f"{name}.csv", index=False
        )
    path = _spark_params_file(world, tmp_path)
    result = CliRunner().invoke(app, ["score", "--params", str(path), "--source", str(csv)])
    _one_line_error(result, "is CSV; the Spark engine reads Parquet")


def test_uplift_targeting_on_the_spark_path_is_refused_in_one_line(world, tmp_path) -> None:
    path = _spark_params_file(world, tmp_path)
    result = CliRunner().invoke(app, ["score", "--params", str(path), "--target", "uplift"])
    _one_line_error(result, "--target uplift is not available with dataset.engine: spark")


def test_an_unregistered_model_as_a_spark_udf_is_a_churnlab_error(world, spark) -> None:
    from churnlab import tracking

    tracking.configure(world["params"].tracking)
    with pytest.raises(ChurnlabError, match=r"cannot load models:/churnlab-churn/99 as a Spark"):
        tracking.spark_udf(spark, "churnlab-churn", "99")


# --------------------------------------------------------------------------------------------
# Orders-only ARR: net spend of the 365 days before the cutoff, as the DuckDB path sums it


def test_orders_only_arr_on_spark_is_the_duckdb_net_spend(spark, tmp_path) -> None:
    from churnlab import load, spark_score
    from churnlab.config import DataParams
    from spark_frames import spark_spine, spark_tables

    cut = dt.datetime(2025, 4, 1)
    year = cut - dt.timedelta(days=365)
    us = dt.timedelta(microseconds=1)
    frames = {
        "accounts": pd.DataFrame({"account_id": ["a", "b", "c"],
                                  "created_at": pd.to_datetime(["2023-01-01"] * 3)}),
        "orders": pd.DataFrame({
            "account_id": ["a", "a", "a", "a", "a", "b"],
            # just before the cutoff; a refund; the window's first instant; just before it;
            # at the cutoff (after: not counted); an account with only a refund
            "ordered_at": pd.Series([cut - us, cut - 2 * us, year, year - us, cut, cut - us],
                                    dtype="datetime64[us]"),
            "amount": [100.25, 30.0, 50.0, 70.0, 20.0, 5.0],
            "kind": ["new", "refund", "renewal", "new", "new", "refund"],
            "product": ["x"] * 6,
        }),
    }  # fmt: skip
    tables = spark_tables(spark, frames, tmp_path / "parquet")
    sp = spark_spine(spark, pd.DataFrame({"account_id": ["a", "b", "c"], "cutoff": cut}))
    got = spark_score._net_spend(tables, sp, cut).toPandas().set_index("account_id")["_arr"]
    con = load.load(DataParams(source=str(tmp_path / "parquet")))
    try:
        money = pd.DataFrame({"account_id": ["a", "b", "c"]})
        want = actions._arr(con, money, "orders", cut)
    finally:
        con.close()
    assert want.tolist() == [100.25 - 30.0 + 50.0, 0.0, 0.0]  # refunds negative, floored at 0
    assert got.loc[["a", "b", "c"]].tolist() == want.tolist()

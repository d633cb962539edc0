"""The training set end to end: synthetic world (contractual), Online Retail II (orders only),
files and manifest, data sufficiency, and the build-dataset command."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnlab import dataset, load
from churnlab.config import DataParams, DatasetParams, SynthParams
from churnlab.schema import LABEL_COLUMNS

ONLINE_RETAIL = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "data"
    / "online_retail"
    / "transactions.parquet"
)


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    from churnlab import synth

    out = tmp_path_factory.mktemp("world") / "synthetic"
    synth.run(SynthParams(accounts=500, months=18, seed=11), out=out)
    return out


@pytest.fixture(scope="session")
def built(world) -> tuple[pd.DataFrame, dict]:
    con = load.load(DataParams(source=str(world)))
    return dataset.build(con, DatasetParams(), DataParams())


def test_contractual_rates_match_the_generators_realised_outcomes(world, built):
    frame, manifest = built
    assert manifest.mode == "contractual"
    realised = pd.read_parquet(world / "oracle" / "realised.parquet")
    real = realised[realised["active"]].copy()
    real["cutoff"] = real["cutoff"].astype("datetime64[us]")
    merged = frame.merge(real, on=["account_id", "cutoff"], how="outer", indicator=True)
    in_range = merged["cutoff"].isin(frame["cutoff"].unique())
    # The spine is exactly the generator's active accounts at every cutoff ...
    assert (merged.loc[in_range, "_merge"] == "both").all()
    both = merged[merged["_merge"] == "both"]
    # ... and every label equals its realised outcome (NaN where the window is incomplete).
    pd.testing.assert_series_equal(both["churn"], both["churn_90d"], check_names=False)
    pd.testing.assert_series_equal(both["expansion"], both["expansion_90d"], check_names=False)
    np.testing.assert_allclose(both["mrr_x"], both["mrr_y"], rtol=1e-9)
    for row in manifest.per_cutoff:
        r = real[real["cutoff"] == pd.Timestamp(row["cutoff"])]
        assert row["rows"] == len(r)
        if row["labeled"]:
            assert row["churn_rate"] == pytest.approx(r["churn_90d"].mean(), abs=1e-12)
            assert row["expansion_rate"] == pytest.approx(r["expansion_90d"].mean(), abs=1e-12)
        else:
            assert r["churn_90d"].isna().all()
    assert sum(r["labeled"] for r in manifest.per_cutoff) >= 10


def test_frame_layout_and_manifest(built):
    frame, manifest = built
    names = [f.name for f in manifest.features]
    assert list(frame.columns) == ["account_id", "cutoff", *names, *LABEL_COLUMNS]
    assert not frame.duplicated(["account_id", "cutoff"]).any()
    assert frame["account_id"].map(type).eq(str).all()
    assert str(frame["cutoff"].dtype) == "datetime64[us]"
    for f in manifest.features:
        assert str(frame[f.name].dtype) == f.dtype
    cats = {f.name for f in manifest.features if f.dtype == "category"}
    assert {"plan", "segment", "industry", "country", "nps_category"} <= cats
    assert {f.group for f in manifest.features} == {
        "engagement",
        "commercial",
        "support",
        "marketing",
        "sentiment",
        "profile",
    }
    for key in (
        "mode",
        "horizon_days",
        "windows",
        "cutoffs",
        "per_cutoff",
        "features",
        "data_fingerprint",
        "params",
    ):
        assert key in manifest.to_dict()
    json.dumps(manifest.to_dict())  # serialisable
    assert frame.loc[~frame["labeled"], ["churn", "expansion"]].isna().all().all()
    assert frame.loc[frame["labeled"], ["churn", "expansion"]].notna().all().all()
    assert (frame["arr"] == 12 * frame["mrr"]).all()
    assert all(c.endswith("T00:00:00") for c in manifest.cutoffs)


def test_write_read_round_trip(built, tmp_path):
    frame, manifest = built
    out = dataset.write(frame, manifest, tmp_path / "ds")
    back, man = dataset.read(out)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert man == manifest
    for f in manifest.features:
        if f.dtype == "category":
            assert list(back[f.name].cat.categories) == list(f.categories)
    # rewriting replaces the folder atomically and leaves no temporary folders behind
    dataset.write(frame.head(10), manifest, out)
    assert len(dataset.read(out)[0]) == 10
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["ds"]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".link-" in p.name]


def test_read_keeps_category_values_when_the_manifest_has_no_levels(built, tmp_path):
    frame, manifest = built
    cat = next(f for f in manifest.features if f.dtype == "category")
    bare = replace(
        manifest,
        features=tuple(replace(f, categories=None) if f is cat else f for f in manifest.features),
    )
    back, _ = dataset.read(dataset.write(frame, bare, tmp_path / "ds"))
    assert back[cat.name].notna().sum() == frame[cat.name].notna().sum() > 0
    assert list(back[cat.name].cat.categories) == sorted(frame[cat.name].dropna().unique())
    assert back[cat.name].astype(str).tolist() == frame[cat.name].astype(str).tolist()


def test_read_missing_is_a_clear_error(tmp_path):
    with pytest.raises(dataset.DatasetError, match="build-dataset"):
        dataset.read(tmp_path / "nothing")


def test_sufficiency_names_counts_per_cutoff(built):
    _, manifest = built
    assert dataset.check_sufficiency(manifest, DatasetParams()) == {}
    strict = DatasetParams(min_positives=10**6)
    problems = dataset.check_sufficiency(manifest, strict)
    assert set(problems) == {"churn", "expansion"}
    first = next(r for r in manifest.per_cutoff if r["labeled"])
    assert f"{first['cutoff'][:10]}: {first['churn_positives']}+/" in problems["churn"]
    assert "dataset.min_positives" in problems["churn"]
    with pytest.raises(dataset.InsufficientDataError, match="expansion: too few"):
        dataset.require_sufficient(manifest, strict, "expansion")


def test_sufficiency_says_a_label_absent_from_all_the_data_cannot_be_fixed_by_a_horizon(built):
    _, manifest = built
    none = replace(
        manifest,
        per_cutoff=tuple(
            {**r, "expansion_positives": 0,
             "expansion_negatives": r["expansion_negatives"] + r["expansion_positives"]}
            for r in manifest.per_cutoff
        ),
    )  # fmt: skip
    problems = dataset.check_sufficiency(none, DatasetParams())
    assert set(problems) == {"expansion"}
    assert problems["expansion"].startswith("expansion: no expansion at all in the data (0 ")
    assert "drop it from train.tasks" in problems["expansion"]
    assert "horizon" not in problems["expansion"] and "cutoff_start" not in problems["expansion"]
    assert dataset.label_absent(none, "churn") is None
    assert dataset.label_absent(manifest, "expansion") is None


def test_settings_mismatch_names_what_differs_and_ignores_where_and_how(built):
    _, manifest = built
    assert manifest.params and manifest.mode == "contractual"
    same = (DatasetParams(), DatasetParams(out="elsewhere", engine="spark", min_positives=5),
            DatasetParams(mode="contractual"), DatasetParams(horizon="90 days"))  # fmt: skip
    for params in same:
        assert dataset.settings_mismatch(manifest, params) is None, params
    problem = dataset.settings_mismatch(manifest, DatasetParams(horizon_days=60, windows=(7, 30)))
    assert problem is not None
    assert "horizon 90 days there, 60 days in params.yaml" in problem
    assert "windows [7, 30, 90] there, [7, 30] in params.yaml" in problem
    assert "Run `churnlab build-dataset`" in problem
    problem = dataset.settings_mismatch(manifest, DatasetParams(mode="orders"))
    assert problem is not None and "mode contractual there, orders from params.yaml" in problem
    assert "horizon 90 days there, 3 months" in str(
        dataset.settings_mismatch(manifest, DatasetParams(horizon="3 months"))
    )
    unrecorded = replace(manifest, params={})  # a manifest from before params were recorded
    assert dataset.settings_mismatch(unrecorded, DatasetParams(windows=(7,))) is None


def test_train_refuses_a_training_set_built_with_other_settings(world, tmp_path, monkeypatch):
    from churnlab.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "ds"
    built = CliRunner().invoke(app, ["build-dataset", "--source", str(world), "--out", str(out)])
    assert built.exit_code == 0, built.output
    params = tmp_path / "params.yaml"
    params.write_text(f"dataset:\n  out: {out}\n  horizon_days: 60\n")
    for command in (["train"], ["backtest", "--folds", "2"]):
        result = CliRunner().invoke(app, [*command, "--params", str(params)])
        assert result.exit_code == 1, result.output
        text = " ".join(result.output.split())
        assert "horizon 90 days there, 60 days in params.yaml" in text, text
        assert "Traceback" not in result.output
    # it fails before any MLflow run: no store was created
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_build_dataset_command(world, tmp_path):
    from churnlab.cli import app

    params = tmp_path / "params.yaml"
    params.write_text("dataset:\n  min_positives: 100000\n")
    out = tmp_path / "ds"
    result = CliRunner().invoke(
        app, ["build-dataset", "--source", str(world), "--out", str(out), "--params", str(params)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "dataset.parquet").exists() and (out / "manifest.json").exists()
    assert "training set (contractual mode" in result.output
    assert "2024-04-01" in result.output
    assert "too few labeled examples" in result.output  # a warning, not a crash
    bad = CliRunner().invoke(app, ["build-dataset", "--source", str(tmp_path / "missing")])
    assert bad.exit_code == 1
    assert "Traceback" not in bad.output


def test_orders_only_online_retail_end_to_end(tmp_path):
    if not ONLINE_RETAIL.exists():
        pytest.fail(f"Online Retail II data not found at {ONLINE_RETAIL} (see DESIGN.md)")
    from churnlab.online_retail import import_online_retail

    import_online_retail(ONLINE_RETAIL, tmp_path / "or")
    con = load.load(DataParams(source=str(tmp_path / "or")))
    params = DatasetParams()
    frame, manifest = dataset.build(con, params, DataParams())
    assert manifest.mode == "orders"
    assert {f.group for f in manifest.features} == {"commercial", "profile"}
    assert frame["country"].dtype == "category"
    orders = con.execute("SELECT * FROM orders").df()
    buys = orders[orders["kind"].fillna("") != "refund"]
    end = pd.Timestamp(manifest.data_end)
    labeled = [r for r in manifest.per_cutoff if r["labeled"]]
    assert len(labeled) >= 12
    for row in (labeled[0], labeled[-1]):
        t = pd.Timestamp(row["cutoff"])
        assert t + pd.Timedelta(days=params.horizon_days) <= end
        lookback = buys[
            (buys["ordered_at"] < t)
            & (buys["ordered_at"] >= t - pd.Timedelta(days=params.lookback_days))
        ]
        part = frame[frame["cutoff"] == t].set_index("account_id")
        assert sorted(part.index) == sorted(lookback["account_id"].unique())
        window = buys[
            (buys["ordered_at"] >= t)
            & (buys["ordered_at"] < t + pd.Timedelta(days=params.horizon_days))
        ]
        expected_churn = (~part.index.isin(window["account_id"].unique())).astype(float)
        np.testing.assert_array_equal(part["churn"].to_numpy(), expected_churn)
        last90 = buys[(buys["ordered_at"] < t) & (buys["ordered_at"] >= t - pd.Timedelta(days=90))]
        counts = last90.groupby("account_id").size().reindex(part.index, fill_value=0)
        np.testing.assert_array_equal(part["orders_90d"].to_numpy(), counts.to_numpy())
        assert 0.05 < row["churn_rate"] < 0.95
    unlabeled = frame[~frame["labeled"]]
    assert (unlabeled["cutoff"] + pd.Timedelta(days=params.horizon_days) > end).all()
    assert dataset.check_sufficiency(manifest, params) == {}

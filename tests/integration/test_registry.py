"""Registry and tracking against a temporary MLflow store (SQLite in tmp_path).

A small fabricated training set with a planted signal stands in for ``churnlab build-dataset``.
"""

from __future__ import annotations

from dataclasses import replace

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from churnlab import pipeline, train
from churnlab.config import Params, parse_params
from planted import planted_training_set


@pytest.fixture()
def store(tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    # Artifacts of a SQLite store default to ./mlruns: keep them in tmp_path.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _params(store: str, tmp_path, tasks=("churn",), **lightgbm) -> Params:
    lgb = {
        "objective": "binary",
        "learning_rate": 0.1,
        "num_leaves": 7,
        "n_estimators": 60,
        "verbose": -1,
        "seed": 7,
        "num_threads": 1,
        "min_child_samples": 20,
        **lightgbm,
    }
    return parse_params(
        {
            "train": {
                "lightgbm": lgb,
                "tasks": list(tasks),
                "early_stopping_rounds": 20,
                "out": str(tmp_path / "models"),
            },
            "tracking": {"uri": store, "experiment": "test", "registry_prefix": "t"},
            "explain": {"sample_for_plots": 300},
        }
    )


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    return planted_training_set(n_accounts=600, n_cutoffs=10)


def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    out = set()
    for f in client.list_artifacts(run_id, path):
        if f.is_dir:
            out |= _artifacts(client, run_id, f.path)
        else:
            out.add(f.path)
    return out


def test_train_logs_registers_promotes_and_loads(store, tmp_path, data) -> None:
    frame, manifest, oracle = data
    params = _params(store, tmp_path, tasks=("churn", "expansion"))
    first = pipeline.train_frame(params, frame, manifest, oracle=oracle, log_kpis=False)
    client = MlflowClient(store)

    for task in ("churn", "expansion"):
        info = first["tasks"][task]
        assert (info["model_name"], info["version"], info["decision"]) == (
            f"t-{task}",
            "1",
            "champion",
        )
        assert info["reason"] == "no champion to compare with"
        run = client.get_run(info["run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["promotion.decision"] == "champion"
        assert run.data.tags["calibration.method"] in {"isotonic", "sigmoid"}
        assert info["warning"] is None and "calibration_warning" not in run.data.tags
        assert run.data.tags["mlflow.parentRunId"] == first["run_id"]
        m = run.data.metrics
        for prefix in ("test", "baseline_logreg", "baseline_heuristic"):
            for k in (
                "roc_auc",
                "pr_auc",
                "lift_top5",
                "lift_top10",
                "lift_top20",
                "precision_top10",
                "recall_top10",
                "value_captured_top10",
            ):
                assert f"{prefix}.{k}" in m, f"{prefix}.{k}"
        for k in ("log_loss", "brier", "ece", "oracle_roc_auc", "oracle_gap"):
            assert f"test.{k}" in m
        assert m["test.roc_auc"] == pytest.approx(info["metrics"]["test.roc_auc"])
        arts = _artifacts(client, info["run_id"])
        for name in (
            "shap/shap_beeswarm.png",
            "shap/shap_bar.png",
            "shap/shap_importance.csv",
            "shap/shap_group_importance.csv",
            "shap/reasons_top1000.csv",
            "evaluation/calibration_curve.png",
            "evaluation/lift_gains.png",
            "evaluation/roc_curve.png",
            "evaluation/pr_curve.png",
            "evaluation/baseline_comparison.png",
            "evaluation/test_predictions.csv",
            "features.csv",
        ):
            assert name in arts, name

    parent = client.get_run(first["run_id"])
    assert parent.data.params["train.lightgbm.num_leaves"] == "7"
    assert parent.data.params["tracking.registry_prefix"] == "t"
    assert "git_commit" in parent.data.tags
    assert {"params.yaml", "dataset_manifest.json"} <= _artifacts(client, first["run_id"])

    # The registered champion returns the bundle's calibrated probabilities.
    bundle = train.ModelBundle.load(tmp_path / "models" / "churn")
    test = frame[frame["cutoff"] == frame.loc[frame["labeled"], "cutoff"].max()]
    model = mlflow.pyfunc.load_model("models:/t-churn@champion")
    from churnlab.tracking import model_input

    got = np.asarray(model.predict(model_input(bundle, test)), dtype=float)
    np.testing.assert_allclose(got, bundle.predict(test), rtol=1e-10)
    assert got.min() > 0 and got.max() < 1


def test_a_level_off_at_the_test_cutoff_is_warned_and_tagged(store, tmp_path, data) -> None:
    frame, manifest, oracle = data
    frame = frame.copy()
    test_cutoff = frame.loc[frame["labeled"], "cutoff"].max()
    # One in eight of the test cutoff's stayers churn after all: 19% churn against the
    # training cutoffs' 9.7%, a level no earlier cutoff showed.
    stay = np.flatnonzero((frame["cutoff"] == test_cutoff).to_numpy() & (frame["churn"] == 0))
    frame.loc[frame.index[stay[::8]], "churn"] = 1.0
    summary = pipeline.train_frame(_params(store, tmp_path), frame, manifest, log_kpis=False)
    info = summary["tasks"]["churn"]
    assert info["decision"] == "champion"  # inside the test-cutoff gate's range (test_set_problem)
    assert info["warning"] is not None
    assert f"test cutoff {test_cutoff:%Y-%m-%d}" in info["warning"]
    assert "mean predicted" in info["warning"] and "realised" in info["warning"]
    tags = MlflowClient(store).get_run(info["run_id"]).data.tags
    assert tags["calibration_warning"] == info["warning"]
    # The champion carries it, and scoring with it says so.
    champion, _ = pipeline.champion_bundle(_params(store, tmp_path), "churn")
    assert champion.info["calibration_warning"] == info["warning"]
    from churnlab import actions

    _, notes = actions._score_models(_params(store, tmp_path), None, lambda _msg: None)
    assert f"churn model, when it was tested: {info['warning']}" in notes


def test_champion_kept_when_new_version_is_worse(store, tmp_path, data) -> None:
    frame, manifest, oracle = data
    params = _params(store, tmp_path)
    pipeline.train_frame(params, frame, manifest, oracle=oracle, log_kpis=False)
    # Same data and seed: identical metrics, not worse -> the champion moves to v2.
    second = pipeline.train_frame(params, frame, manifest, oracle=oracle, log_kpis=False)["tasks"]
    assert (second["churn"]["version"], second["churn"]["decision"]) == ("2", "champion")
    assert second["churn"]["reason"].startswith("not worse than the champion")
    # the same model: the paired bootstrap of the difference is exactly zero
    assert second["churn"]["reason"].endswith(
        "; new minus champion +0.0000, 95% interval +0.0000 to +0.0000 (within noise)"
    ), second["churn"]["reason"]
    # A model that sees only the weak profile feature is clearly worse: challenger.
    weak = replace(manifest, features=tuple(f for f in manifest.features if f.name == "segment"))
    third = pipeline.train_frame(params, frame, weak, oracle=oracle, log_kpis=False)
    third = third["tasks"]["churn"]
    assert (third["version"], third["decision"]) == ("3", "challenger")
    assert third["reason"].startswith("worse than the champion")
    assert third["reason"].endswith("(worse)"), third["reason"]  # clearly, not by noise
    client = MlflowClient(store)
    assert str(client.get_model_version_by_alias("t-churn", "champion").version) == "2"
    assert str(client.get_model_version_by_alias("t-churn", "challenger").version) == "3"
    mv = client.get_model_version("t-churn", "3")
    assert mv.tags["promotion.decision"] == "challenger"
    run = client.get_run(third["run_id"])
    assert float(run.data.tags["promotion.champion_score"]) == pytest.approx(
        second["churn"]["metrics"]["test.roc_auc"]
    )


def test_a_season_aware_champion_is_compared_on_the_new_test_rows(store, tmp_path) -> None:
    # 20 monthly cutoffs: the training cutoffs cover the 12 calendar months, so the model can
    # be season-aware; its pyfunc form takes each row's cutoff as text (model_input). Until
    # the champion's re-scoring formatted the test rows' dates, a retrain never compared
    # with a season-aware champion ("could not score the test rows") and was never promoted.
    frame, manifest, _ = planted_training_set(n_accounts=300, n_cutoffs=20)
    params = _params(store, tmp_path)
    params = params.model_copy(update={"train": params.train.model_copy(update={"season": "on"})})
    first = pipeline.train_frame(params, frame, manifest, log_kpis=False)["tasks"]["churn"]
    assert first["season"] == "on" and first["decision"] == "champion"
    second = pipeline.train_frame(params, frame, manifest, log_kpis=False)["tasks"]["churn"]
    assert (second["version"], second["decision"]) == ("2", "champion")
    assert second["reason"].startswith("not worse than the champion: roc_auc "), second["reason"]
    # What MLflow says when the rows do not fit a champion's schema (the dates as they were
    # passed before) embeds the whole input frame: the decision's reason keeps its gist.
    from churnlab import tracking

    model = mlflow.pyfunc.load_model("models:/t-churn@champion")
    cols = [c.name for c in model.metadata.get_input_schema().inputs]
    test = frame[frame["cutoff"] == frame.loc[frame["labeled"], "cutoff"].max()]
    with pytest.raises(mlflow.exceptions.MlflowException) as err:
        model.predict(test[cols].assign(segment=test["segment"].astype(str)))
    assert "Failed to enforce schema" in str(err.value) and "\n" in str(err.value)
    gist = tracking._one_line(err.value)
    assert gist.startswith("Incompatible input types for column cutoff"), gist
    assert "\n" not in gist and len(gist) <= 240
    # a cutoff that is no date is the model's own error, in the form the scoring server
    # answers with (HTTP 400 and this message, not a stack trace)
    bundle = train.ModelBundle.load(tmp_path / "models" / "churn")
    with pytest.raises(mlflow.exceptions.MlflowException, match="no valid cutoff date") as err:
        model.predict(tracking.model_input(bundle, test).assign(cutoff="soon"))
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"


def test_a_run_that_raises_is_marked_failed(store, tmp_path, data) -> None:
    frame, manifest, _ = data
    params = _params(store, tmp_path, scale_pos_weight=5.0)
    with pytest.raises(Exception, match="scale_pos_weight"):
        pipeline.train_frame(params, frame, manifest, log_kpis=False)
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("test")
    runs = client.search_runs([exp.experiment_id])
    assert runs and all(r.info.status == "FAILED" for r in runs)
    assert not (tmp_path / "models").exists()


def test_cli_train_without_a_training_set_is_one_line_and_exit_1(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from churnlab.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["train", "--dataset", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "build-dataset" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["backtest", "--folds", "0"])
    assert result.exit_code == 2  # usage error: --folds must be >= 1


def test_promotion_decision_directions_and_tolerance() -> None:
    from churnlab.tracking import promotion_decision

    assert promotion_decision(0.80, None, "roc_auc", 0.005) == (True, "no champion to compare with")
    assert promotion_decision(0.796, 0.80, "roc_auc", 0.005)[0] is True  # within tolerance
    ok, reason = promotion_decision(0.79, 0.80, "roc_auc", 0.005)
    assert not ok and reason.startswith("worse than the champion: roc_auc 0.7900 vs champion")
    # log loss: lower is better
    assert promotion_decision(0.30, 0.29, "log_loss", 0.005)[0] is False
    assert promotion_decision(0.28, 0.29, "log_loss", 0.005)[0] is True

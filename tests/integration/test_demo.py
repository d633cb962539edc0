"""`churnlab demo` (what `make demo` runs) end to end on a small synthetic world."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnlab.cli import app

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    return tmp_path


def test_demo_runs_every_stage_and_leaves_its_outputs(in_tmp: Path) -> None:
    # 24 months: the training cutoffs cover every calendar month, so the models are
    # season-aware, as they are on the default world and on any two years of real data
    result = CliRunner().invoke(app, ["demo", "--accounts", "400", "--months", "24"])
    assert result.exit_code == 0, result.output
    assert result.output.count("season on") == 2, result.output
    stages = ("1/7 synth", "2/7 validate", "3/7 build-dataset", "4/7 train", "5/7 kpis",
              "6/7 score", "7/7 report")  # fmt: skip
    for stage in stages:
        assert stage in result.output
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in result.output

    assert (in_tmp / "data/synthetic/events.parquet").exists()
    assert (in_tmp / "data/synthetic/oracle/oracle.parquet").exists()
    ds = pd.read_parquet(in_tmp / "data/dataset/dataset.parquet")
    assert {"account_id", "cutoff", "churn", "expansion"} <= set(ds.columns)
    monthly = pd.read_csv(in_tmp / "reports/kpis/monthly.csv")
    assert len(monthly) >= 14 and "churn_rate" in monthly.columns

    mlflow.set_tracking_uri(f"sqlite:///{in_tmp / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    for task in ("churn", "expansion"):
        champion = client.get_model_version_by_alias(f"churnlab-{task}", "champion")
        assert int(champion.version) == 1
    runs = mlflow.search_runs(experiment_names=["churnlab"])
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    # One training run (with its task children) and one scoring run.
    assert sorted(parents["tags.churnlab.command"]) == ["score", "train"]
    assert any(c.startswith("metrics.kpi.") for c in runs.columns)
    assert os.path.exists(in_tmp / "models")
    # It ends in lists people use, and says where they are.
    lists = sorted((in_tmp / "reports" / "actions").glob("[!.]*/at_risk.csv"))
    assert len(lists) == 1 and len(pd.read_csv(lists[0])) > 0
    for what in ("at-risk list", "expansion list", "campaign audiences", "report, open it"):
        assert what in result.output
    report = next((in_tmp / "reports").glob("report_*.html"))
    assert str(report.resolve()) in result.output.replace("\n", "")
    assert report.stat().st_size > 50_000

    # Retraining on the same data is compared with the champion on the same test rows and
    # promoted (a season-aware champion could not be re-scored until stop 22).
    again = CliRunner().invoke(app, ["train"])
    assert again.exit_code == 0, again.output
    for task in ("churn", "expansion"):
        assert f"registered churnlab-{task} v2 as champion (not worse than the champion: " in (
            " ".join(again.output.split())
        ), again.output


def test_a_tiny_demo_runs_through(in_tmp: Path) -> None:
    # 100 accounts over a year: too few expansions for the amount regressor; the expected
    # expansion value uses their mean amount (it used to stop at score)
    result = CliRunner().invoke(app, ["demo", "--accounts", "100", "--months", "12"])
    assert result.exit_code == 0, result.output
    assert "7/7 report" in result.output and "error" not in result.output.lower()
    # its 44 training rows leave no split of 100 rows a side: train and score say so
    text = " ".join(result.output.split())
    assert "warning: the churn model learnt nothing" in text
    assert "note: churn model, when it was tested: the churn model learnt nothing" in text
    lists = next((in_tmp / "reports" / "actions").glob("[!.]*/expansion.csv"))
    expansion = pd.read_csv(lists)
    assert len(expansion) and (expansion["expected_amount"] > 0).all()


def test_demo_help_lists_the_stages() -> None:
    result = CliRunner().invoke(app, ["demo", "--help"])
    assert result.exit_code == 0
    assert "build-dataset" in result.output and "kpis" in result.output

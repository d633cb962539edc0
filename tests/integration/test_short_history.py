"""Short histories (issue 13): build-dataset names the horizons that fit, train stops early."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from churnlab import synth
from churnlab.cli import app
from churnlab.config import SynthParams


def test_five_months_with_a_90_day_horizon(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    synth.run(SynthParams(accounts=300, months=5, seed=4), tmp_path / "w")
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "data": {"source": str(tmp_path / "w")},
                "dataset": {"windows": [7, 30], "out": str(tmp_path / "ds")},
                "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
            }
        )
    )
    built = CliRunner().invoke(app, ["build-dataset", "--params", str(params)])
    assert built.exit_code == 0, built.output
    out = " ".join((built.stdout + built.stderr).split())
    assert "with horizon 90 days only" in out and "too few for a train, validation and test" in out
    assert "horizons that give a train/validation/test split on this data: 7 days" in out
    assert "30 days" in out and "1 month" in out and "90 days (" not in out
    assert "dataset.horizon" in out
    result = CliRunner().invoke(app, ["train", "--params", str(params)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    msg = " ".join((result.stdout + result.stderr).split())
    assert "no task can be trained" in msg and "horizons that give" in msg
    # It stopped before MLflow: no store, no runs, no KPIs computed.
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
    shorter = params.read_text().replace("windows:", "horizon: 1 month\n  windows:")
    params.write_text(shorter)
    assert CliRunner().invoke(app, ["build-dataset", "--params", str(params)]).exit_code == 0
    trained = CliRunner().invoke(app, ["train", "--params", str(params)])
    assert trained.exit_code in (0, 3), trained.output
    assert "registered churnlab-churn v1" in trained.output

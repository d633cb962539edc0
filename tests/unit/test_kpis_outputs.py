"""KPI outputs: tables, plots, the MLflow logging function and the `churnlab kpis` command."""

from __future__ import annotations

import datetime as dt
import math

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from test_kpis import AS_OF, ORDERS, _accounts, _orders, _world
from test_kpis_predicted import LookupScorer
from test_kpis_predicted import _frame as _pvr_frame
from typer.testing import CliRunner

from churnlab import backscore, kpi_outputs, kpi_plots, kpis, periods, terminal, tracking
from churnlab.cli import app
from churnlab.config import DataParams, KpiParams
from churnlab.load import connect_frames, write_tables

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result() -> dict[str, pd.DataFrame]:
    return kpis.compute(connect_frames(_world()), KpiParams(), DataParams(as_of=AS_OF))


def test_write_tables_round_trip(result, tmp_path):
    paths = kpi_outputs.write(result, tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == [
        "cohorts.csv",
        "cohorts.parquet",
        "metrics.csv",
        "monthly.csv",
        "monthly.parquet",
    ]
    back = pd.read_parquet(tmp_path / "out" / "monthly.parquet")
    pd.testing.assert_frame_equal(back, result["monthly"].reset_index(), check_dtype=False)
    csv = pd.read_csv(tmp_path / "out" / "monthly.csv")
    assert list(csv.columns) == list(result["monthly"].reset_index().columns)
    assert math.isnan(csv["grr_12m"].iloc[0])  # undefined stays empty, not 0
    # No temporary files are left behind.
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_plots_are_pngs(result, tmp_path):
    paths = kpi_plots.plot(result, tmp_path / "plots")
    assert sorted(p.name for p in paths) == [
        "campaigns.png",
        "cohort_retention.png",
        "kpi_trends.png",
        "mrr_bridge.png",
        "nps.png",
    ]
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000


def test_plots_skip_what_the_data_lacks(tmp_path):
    frames = {
        "accounts": _accounts([("A", "2024-01-01")]),
        "orders": _orders([("A", "2024-01-01", 10.0, None), ("A", "2024-02-03", 20.0, None)]),
    }
    res = kpis.compute(
        connect_frames(frames), KpiParams(), DataParams(as_of=dt.datetime(2024, 3, 1))
    )
    names = sorted(p.name for p in kpi_plots.plot(res, tmp_path))
    assert names == ["cohort_retention.png", "kpi_trends.png"]


def test_log_to_mlflow_needs_an_active_run(result):
    assert mlflow.active_run() is None
    with pytest.raises(tracking.TrackingError, match="active MLflow run"):
        tracking.log(kpi_outputs.run_log(result))


def test_log_to_mlflow_and_the_cli(tmp_path, monkeypatch):
    """One MLflow store for both (creating a SQLite store costs seconds)."""
    monkeypatch.chdir(tmp_path)  # MLflow puts artifacts beside the working directory
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    res = kpis.compute(connect_frames(_world()), KpiParams(), DataParams(as_of=AS_OF))
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("kpi-test")
    res.update(backscore.predicted_vs_realised(_pvr_frame(), LookupScorer()))
    with mlflow.start_run() as run:
        entry = kpi_outputs.run_log(res, kpi_plots.plot(res, tmp_path / "plots"))
        tracking.log(entry)
        logged = entry.metrics
    client = MlflowClient(uri)
    data = client.get_run(run.info.run_id).data
    latest = res["monthly"].iloc[-1]
    assert data.metrics["kpi.churn_rate"] == latest["churn_rate"] == 0.0
    assert data.metrics["kpi.end_mrr"] == 655.0
    assert data.metrics["kpi.nps"] == 0.0
    assert "kpi.grr_12m" not in data.metrics  # NaN is skipped, not logged as 0
    assert "kpi.open_rate" not in data.metrics  # no sends in April
    # No test cutoff in the model's info: the latest labeled cutoff (February) is the headline.
    assert data.metrics["kpi.predicted_churn"] == pytest.approx(0.15)
    assert data.metrics["kpi.realised_churn"] == 0.0
    assert set(logged) == {k for k in data.metrics if k.startswith("kpi.")}
    assert data.tags["kpi.period"] == "2024-04-01"
    assert data.tags["kpi.mode"] == "contractual"
    assert "churn_rate" in data.tags["kpi.outcome_metrics"].split(",")
    assert "open_rate" in data.tags["kpi.activity_metrics"].split(",")
    files = {a.path for a in client.list_artifacts(run.info.run_id, "kpis")}
    assert {
        "kpis/monthly.csv",
        "kpis/cohorts.csv",
        "kpis/kpi_kinds.json",
        "kpis/predicted_vs_realised.csv",
        "kpis/predicted_vs_realised_bands.csv",
        "kpis/plots",
    } <= files
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "kpis/plots")}
    assert "kpis/plots/mrr_bridge.png" in plots
    assert "kpis/plots/predicted_vs_realised.png" in plots and len(plots) == 6
    kinds_path = client.download_artifacts(run.info.run_id, "kpis/kpi_kinds.json", str(tmp_path))
    kinds = pd.read_json(kinds_path)
    assert kinds.loc["kind", "nrr"] == "outcome" and kinds.loc["kind", "click_rate"] == "activity"
    assert kinds.loc["kind", "realised_churn"] == "outcome"

    # The command: reads a folder, validates, writes tables and plots, logs a run.
    source = tmp_path / "world"
    write_tables(_world(), source)
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "data": {"source": str(source), "as_of": dt.date(2024, 5, 1)},
                "tracking": {"experiment": "kpi-cli"},
            }
        )
    )
    out = tmp_path / "reports"
    cli = CliRunner().invoke(
        app, ["kpis", "--params", str(params), "--out", str(out), "--log", "--from", "2024-02-01"]
    )
    assert cli.exit_code == 0, cli.output
    assert "2024-04" in cli.output and "churn_rate" in cli.output
    assert "predicted vs realised: skipped (no churn model in models/churn)" in cli.output
    written = pd.read_parquet(out / "monthly.parquet")
    assert list(written["period"]) == [pd.Timestamp(f"2024-0{m}-01") for m in (2, 3, 4)]
    assert written["churn_rate"].tolist() == pytest.approx([2 / 8, 1 / 7, 0.0])
    assert len(list((out / "plots").glob("*.png"))) == 5
    exp = client.get_experiment_by_name("kpi-cli")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].data.metrics["kpi.end_mrr"] == 655.0


def test_cli_errors_are_one_line(tmp_path):
    source = tmp_path / "world"
    write_tables({"accounts": _world()["accounts"], "orders": ORDERS}, source)
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump({"data": {"source": str(source), "as_of": dt.date(2024, 5, 1)}})
    )
    runner = CliRunner()
    bad = runner.invoke(app, ["kpis", "--params", str(params), "--period", "year"])
    assert bad.exit_code == 1
    assert "--period must be month, quarter or week" in bad.output
    assert "Traceback" not in bad.output
    empty = runner.invoke(
        app, ["kpis", "--params", str(params), "--from", "2031-01-01", "--out", str(tmp_path / "o")]
    )
    assert empty.exit_code == 1 and "widen --from/--to" in empty.output
    assert not (tmp_path / "o").exists()


def test_money_is_compact_in_the_terminal_table():
    assert terminal._fmt(4_012_345.0, "currency") == "4.01M"
    assert terminal._fmt(14_149.0, "currency") == "14.1k"
    assert terminal._fmt(-165_300.0, "currency") == "-165.3k"
    assert terminal._fmt(9_381.4, "currency") == "9,381"
    assert terminal._fmt(2.5e9, "currency") == "2.50B"


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_summary_table_fits_the_terminal_without_cutting_values(result, width):
    from rich.console import Console

    console = Console(width=width, record=True, color_system=None)
    console.print(terminal.summary_table(result, width=width))
    text = console.export_text()
    assert "…" not in text  # no value or header cut short
    assert max(len(line) for line in text.splitlines()) <= width
    monthly = result["monthly"]
    last = periods.label(pd.Timestamp(monthly.index[-1]), "month")
    header = next(line for line in text.splitlines() if "┃ KPI " in line)
    assert last in header  # the latest period is always shown
    shown = sum(periods.label(pd.Timestamp(ts), "month") in header for ts in monthly.index[-6:])
    assert shown >= 1
    if width >= 120:
        assert shown == min(6, len(monthly))
    if shown < len(monthly):
        assert f"last {shown} of {len(monthly)}" in text

"""`churnlab measure` and `train-uplift` on a small synthetic world with campaigns (no churn
models needed), and the treatments rows `score` writes appended to a world's table."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from churnlab import audiences, load, measure, measuring, synth, uplift
from churnlab.cli import app
from churnlab.config import SynthParams, load_params
from churnlab.validate import validate_source


@pytest.fixture(scope="module", autouse=True)
def _cwd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # MLflow puts a new experiment's artifacts under ./mlruns: keep them out of the checkout.
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("cwd"))
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("measure")
    folder = root / "world"
    summary = synth.run(SynthParams(accounts=1200, months=15, seed=5, campaigns=True), folder)
    raw = {
        "data": {"source": str(folder)},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "measure-test"},
        "score": {"out": str(root / "actions")},
        "measure": {"out": str(root / "measure"), "uplift_out": str(root / "uplift")},
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return {"root": root, "folder": folder, "path": path, "summary": summary}


def _customers_at(folder: Path, at: dt.datetime) -> list[str]:
    subs = pd.read_parquet(folder / "subscriptions.parquet")
    active = (subs["start_at"] <= at) & (subs["end_at"].isna() | (subs["end_at"] > at))
    return sorted(subs.loc[active, "account_id"].astype(str).unique())


def test_measure_command_prints_a_table_that_fits_and_writes_and_logs(world: dict) -> None:
    result = CliRunner().invoke(app, ["measure", "--params", str(world["path"])])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    params = load_params(world["path"])
    assert lines[-1].startswith(params.measure.out)  # the folder: a path is as long as it is
    assert all(len(line) <= 100 for line in lines[:-1]), max(lines[:-1], key=len)
    treatments = pd.read_parquet(world["folder"] / "treatments.parquet")
    folder = Path(params.measure.out)
    [measured] = sorted(folder.glob("2*"))
    campaigns = pd.read_csv(measured / "campaigns.csv")
    pending = pd.read_csv(measured / "pending.csv")
    assert set(campaigns["campaign_id"]) | set(pending["campaign_id"]) == set(
        treatments["campaign_id"]
    )
    assert len(campaigns) >= 4
    # One table row per measured campaign, with its counts and verdict word.
    for _, r in campaigns.iterrows():
        row = next(line for line in lines if line.startswith(r["campaign_id"]))
        assert f"{int(r['n_treated']):,}" in row and f"{int(r['n_holdout']):,}" in row
        assert row.rstrip().endswith(("helps", "HARMS", "no detectable effect"))
    for cid in pending["campaign_id"]:
        assert any(line.startswith(f"pending: {cid} ") for line in lines)
    assert (measured / "plots" / "effects.png").is_file()
    meta = json.loads((measured / "run.json").read_text())
    assert meta["measured"] == list(campaigns["campaign_id"])
    mlflow.set_tracking_uri(params.tracking.uri)
    run = mlflow.get_run(meta["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["churnlab.command"] == "measure"
    assert run.data.metrics["measure.campaigns_measured"] == len(campaigns)
    first = campaigns.iloc[0]
    assert run.data.metrics[f"measure.{first['campaign_id']}.churn_diff"] == pytest.approx(
        first["churn_diff"]
    )


def test_measure_as_of_counts_only_windows_closed_by_then(world: dict) -> None:
    params = load_params(world["path"])
    end = dt.datetime.fromisoformat(world["summary"]["as_of"])
    early = measuring.measure_campaigns(params, as_of=end - dt.timedelta(days=200))
    late = measuring.measure_campaigns(params)
    assert len(early.result.campaigns) < len(late.result.campaigns)
    closes = pd.to_datetime(early.result.campaigns["window_end"])
    assert (closes <= pd.Timestamp(end - dt.timedelta(days=200))).all()
    assert early.folder.name == f"{end - dt.timedelta(days=200):%Y-%m-%d}"
    with pytest.raises(measure.MeasureError, match="after the data end"):
        measuring.measure_campaigns(params, as_of=end + dt.timedelta(days=1))


def test_a_too_small_holdout_is_a_starred_row_with_its_counts() -> None:
    row = {c: np.nan for c in measure.CAMPAIGN_COLUMNS}
    row |= {
        "campaign_id": "csm-save-call-2025-06-01", "kind": "retention",
        "primary_outcome": "churn", "n_treated": 120, "n_holdout": 12, "churn_diff": -0.031,
        "churn_ci_low": -0.2, "churn_ci_high": 0.1, "churn_verdict": "no detectable effect",
        "warning": "holdout too small",
    }  # fmt: skip
    upsell = row | {"campaign_id": "upsell-offer-2025-06-01", "kind": "upsell",
                    "primary_outcome": "expansion", "expansion_diff": 0.1,
                    "expansion_verdict": "raised expansion",
                    "warning": "on churn only"}  # fmt: skip
    warn = pd.DataFrame(
        [{"campaign_id": "csm-save-call-2025-06-01", "segment_type": "all", "segment": "all",
          "outcome": "churn", "n_holdout": 12, "events_holdout": 2,
          "message": "only 12 held-out accounts (fewer than 30) and 2 churned (fewer than 5): "
                     "the interval is unreliable, keep more accounts out next time"},
         {"campaign_id": "upsell-offer-2025-06-01", "segment_type": "all", "segment": "all",
          "outcome": "churn", "n_holdout": 12, "events_holdout": 2,
          "message": "a warning on the outcome upsell is not meant to move"}]
    )  # fmt: skip
    pend = pd.DataFrame(
        [{"campaign_id": "upsell-offer-2025-12-01", "kind": "upsell", "accounts": 40,
          "holdout_accounts": 4, "window_end": pd.Timestamp("2026-03-01"),
          "days_to_go": 59}]
    )  # fmt: skip
    empty = pd.DataFrame()
    result = measure.Measurement(
        campaigns=pd.DataFrame([row, upsell]), effects=empty, power=empty, qini=empty,
        uplift_by_decile=empty, pending=pend, warnings=warn, outcomes=empty,
        data_end=dt.datetime(2026, 1, 1), mode="contractual",
    )  # fmt: skip
    lines = measuring.summary_lines(result)
    assert lines[0].startswith("2 campaign(s) measured, 1 pending (data end 2026-01-01)")
    assert lines[3] == (
        "csm-save-call-2025-06-01*        120    12 churn       -3.1 [-20.0, +10.0]  "
        "no detectable effect"
    )
    # Its warning is on churn, which an upsell campaign is not meant to move: no star.
    assert lines[4] == (
        "upsell-offer-2025-06-01          120    12 expansion  +10.0                 helps"
    )
    assert lines[5].startswith("* csm-save-call-2025-06-01 (churn): only 12 held-out accounts")
    assert lines[6].startswith("    ")  # the warning wraps at 100 columns
    assert not any("not meant to move" in line for line in lines)
    assert (
        lines[-1]
        == "pending: upsell-offer-2025-12-01 (40 accounts) until 2026-03-01, 59 days to go"
    )
    assert all(len(line) <= measuring.WIDTH for line in lines)


def test_appended_treatments_from_score_validate_and_become_a_campaign(
    world: dict, tmp_path: Path
) -> None:
    # What `score` writes for an audience at an as-of, appended to the world's treatments.
    end = dt.datetime.fromisoformat(world["summary"]["as_of"])
    as_of = end - dt.timedelta(days=120)
    ids = _customers_at(world["folder"], as_of)[:60]
    audience = pd.DataFrame(
        {
            "account_id": ids,
            "campaign": ["csm-save-call" if i % 2 else "upsell-offer" for i in range(60)],
            "kind": ["retention" if i % 2 else "upsell" for i in range(60)],
            "holdout": [i % 5 == 0 for i in range(60)],
            "cost": [0.0 if i % 5 == 0 else (150.0 if i % 2 else 20.0) for i in range(60)],
        }
    )
    campaigns = [
        audiences.Campaign("csm-save-call", "retention", 150.0, 0.25, channel="csm_call"),
        audiences.Campaign("upsell-offer", "upsell", 20.0, 0.2),
    ]
    rows = audiences.treatments(audience, campaigns, as_of)
    assert list(rows.columns) == [
        "account_id", "campaign_id", "assigned_at", "holdout", "kind", "channel", "cost"
    ]  # fmt: skip
    stamp = f"{as_of:%Y-%m-%d}"
    assert set(rows["campaign_id"]) == {f"csm-save-call-{stamp}", f"upsell-offer-{stamp}"}
    assert (rows["assigned_at"] == pd.Timestamp(as_of)).all()
    assert set(rows.loc[rows["kind"] == "retention", "channel"]) == {"csm_call"}
    assert rows.loc[rows["kind"] == "upsell", "channel"].isna().all()
    assert (rows.loc[rows["holdout"], "cost"] == 0).all()

    data = tmp_path / "data"
    data.mkdir()
    for f in world["folder"].glob("*.parquet"):
        (data / f.name).write_bytes(f.read_bytes())
    rows.to_csv(tmp_path / "treatments.csv", index=False)  # as score writes it
    sent = pd.read_csv(tmp_path / "treatments.csv", parse_dates=["assigned_at"])
    old = pd.read_parquet(data / "treatments.parquet")
    both = pd.concat([old, sent.astype({"assigned_at": "datetime64[us]"})], ignore_index=True)
    both.to_parquet(data / "treatments.parquet", index=False)
    params = load_params(world["path"])
    summary = validate_source(params.data, str(data))  # raises on any problem
    assert summary["tables"]["treatments"] == len(old) + 60
    con = load.load(params.data.model_copy(update={"source": str(data)}))
    try:
        result = measure.measure(con, params.dataset, params.data)
    finally:
        con.close()
    assert {f"csm-save-call-{stamp}", f"upsell-offer-{stamp}"} <= set(
        result.campaigns["campaign_id"]
    )
    new = result.campaigns.set_index("campaign_id").loc[f"csm-save-call-{stamp}"]
    assert new["accounts"] == 30 and new["primary_outcome"] == "churn"


def test_train_uplift_writes_a_model_score_can_read(world: dict) -> None:
    params = load_params(world["path"])
    run = measuring.train_uplift(params)
    model = uplift.load(run.folder)
    assert model.method == "x"
    assert set(model.info["campaigns"]) <= set(
        pd.read_parquet(world["folder"] / "treatments.parquet")["campaign_id"]
    )
    assert "campaign_kind" in model.feature_names
    assert model.info["dataset"]["horizon_days"] == params.dataset.horizon_days
    assert run.evaluated_on is not None and run.evaluated_on.startswith("RET-")
    assert run.evaluation is not None
    assert set(run.evaluation["targeting"]) == {"model", "churn_risk", "random"}
    mlflow.set_tracking_uri(params.tracking.uri)
    logged = mlflow.get_run(run.run_id)
    assert logged.data.tags["uplift.evaluated_on"] == run.evaluated_on
    assert logged.data.metrics["uplift.rows_treated"] == model.info["rows_treated"]

"""The loop on a synthetic world with campaigns and trained models: score, send (append
treatments.csv), measure with the scoring's segments, train-uplift, score --target uplift."""

from __future__ import annotations

import datetime as dt
import html
import shutil
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import yaml

from churnlab import actions, measuring, pipeline, reporting, synth
from churnlab.config import SynthParams, load_params
from churnlab.validate import validate_source

pytestmark = pytest.mark.slow  # about 60 s: a training set, two models, four scorings

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
BUDGET = 15000.0


@pytest.fixture(scope="module", autouse=True)
def _cwd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # MLflow puts a new experiment's artifacts under ./mlruns: keep them out of the checkout.
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("cwd"))
        yield


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("uplift")
    world = root / "world"
    made = synth.run(SynthParams(accounts=2500, months=18, seed=3, campaigns=True), world)
    raw = {
        "data": {"source": str(world)},
        "dataset": {"out": str(root / "ds")},
        "train": {"lightgbm": LGB, "early_stopping_rounds": 10, "out": str(root / "models")},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "uplift-test"},
        "explain": {"sample_for_plots": 200},
        "score": {"out": str(root / "actions"), "budget": BUDGET},
        "measure": {"out": str(root / "measure"), "uplift_out": str(root / "uplift")},
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    params = load_params(path)
    pipeline.build_dataset(params)
    summary = pipeline.train_models(params, log_kpis=False)
    assert set(summary["tasks"]) == {"churn", "expansion"}, summary["skipped"]
    end = dt.datetime.fromisoformat(made["as_of"])
    sent_at = end - dt.timedelta(days=120)
    sent = actions.score_accounts(params, as_of=sent_at, budget=None)
    # The campaigns go out: their treatments rows are appended to the data's table.
    rows = pd.read_csv(sent.folder / "treatments.csv", parse_dates=["assigned_at"])
    table = pd.read_parquet(world / "treatments.parquet")
    appended = pd.concat([table, rows.astype({"assigned_at": "datetime64[us]"})])
    appended.to_parquet(world / "treatments.parquet", index=False)
    validate_source(params.data)  # raises on any problem
    measured = measuring.measure_campaigns(params)
    trained = measuring.train_uplift(params)
    by_churn = actions.score_accounts(params)
    shutil.copytree(by_churn.folder, root / "by_churn")  # the uplift scoring replaces the folder
    by_uplift = actions.score_accounts(params, target="uplift")
    return {
        "params": params, "sent": sent, "rows": rows, "measured": measured,
        "trained": trained, "by_churn": by_churn, "by_uplift": by_uplift,
    }  # fmt: skip


def test_the_sent_audiences_are_measured_with_the_scorings_segments(loop: dict) -> None:
    sent, run = loop["sent"], loop["measured"]
    stamp = f"{sent.as_of:%Y-%m-%d}"
    assert run.segments_from == (stamp,)
    ours = set(loop["rows"]["campaign_id"])
    assert ours == {f"{c}-{stamp}" for c in sent.audiences["campaign"].unique()}
    camps = run.result.campaigns.set_index("campaign_id")
    assert ours <= set(camps.index)
    for cid in ours:
        name = cid.removesuffix(f"-{stamp}")
        members = sent.audiences[sent.audiences["campaign"] == name]
        # Every member was a customer at the as-of: none is dropped.
        assert camps.loc[cid, "accounts"] == len(members)
        assert camps.loc[cid, "n_holdout"] == int(members["holdout"].sum())
    effects = run.result.effects
    mine = effects[effects["campaign_id"].isin(ours)]
    bands = mine.loc[mine["segment_type"] == "risk_band", "segment"]
    assert set(bands) <= set(sent.at_risk["risk_band"]) and len(set(bands)) >= 2
    assert (mine["segment_type"] == "driver_group").any()
    # The Qini of the score they were targeted by; none for the synthetic world's campaigns.
    qini = set(run.result.qini["campaign_id"])
    retention = {f"{c}-{stamp}" for c in sent.audiences.loc[
        sent.audiences["kind"] == "retention", "campaign"].unique()}  # fmt: skip
    assert retention <= qini <= ours
    synthetic = set(camps.index) - ours
    assert camps.loc[list(synthetic), "qini_coefficient"].isna().all()


def test_uplift_targeting_differs_never_harms_and_fits_the_budget(loop: dict) -> None:
    churn, lift = loop["by_churn"], loop["by_uplift"]
    assert lift.target == "uplift" and lift.uplift is not None
    pred = lift.uplift.set_index(["account_id", "campaign"])
    ret = lift.audiences[lift.audiences["kind"] == "retention"]
    assert len(ret) > 0
    key = pd.MultiIndex.from_frame(ret[["account_id", "campaign"]].astype(str))
    effect = pred["effect"].reindex(key).to_numpy()
    assert np.isfinite(effect).all()
    assert (effect <= 0).all(), "an account predicted to churn more was chosen"
    np.testing.assert_allclose(
        ret["value"].to_numpy(), -effect * pred["arr"].reindex(key).to_numpy(), rtol=1e-12
    )
    assert (ret["rate"] == 1.0).all()
    old = churn.audiences[churn.audiences["kind"] == "retention"]
    assert set(zip(ret["account_id"], ret["campaign"], strict=True)) != set(
        zip(old["account_id"], old["campaign"], strict=True)
    )
    for run in (churn, lift):
        contacts = run.audiences[~run.audiences["holdout"]]
        assert contacts["cost"].sum() <= BUDGET
        assert run.selection.cost <= BUDGET
    # Harmful predictions exist, so the exclusion is not vacuous.
    assert pred["harmful"].any()
    written = pd.read_csv(lift.folder / "uplift.csv")
    assert len(written) == len(lift.uplift)
    meta = (lift.folder / "run.json").read_text()
    assert '"target": "uplift"' in meta


def test_the_report_shows_the_measured_campaigns(loop: dict) -> None:
    page = reporting.build_report(loop["params"]).path.read_text()
    start = page.index('<section id="campaign-effects"')
    section = page[start : page.index("</section>", start)]
    camps = loop["measured"].result.campaigns
    primary = [r[f"{r['primary_outcome']}_diff"] for _, r in camps.iterrows()]
    assert section.count("<circle") == int(pd.notna(primary).sum()) > 0
    for cid in camps["campaign_id"]:
        assert f">{html.escape(cid)}" in section
    assert 'data-testid="campaign-warnings"' in section  # the small scoring holdouts

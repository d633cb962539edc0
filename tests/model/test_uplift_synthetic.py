"""The uplift model on the synthetic world's past campaigns, against the true effects.

Fitted on the campaigns whose outcome windows closed before a later retention campaign
(``uplift.time_split``), evaluated on that campaign against targeting by churn risk (the oracle's
untreated churn probability at assignment) and by the true effects (the oracle). The figures
measured are in the README ("Campaign effects and uplift").
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnlab import load, synth, uplift, uplift_evaluation
from churnlab.config import DatasetParams, SynthParams

PARAMS = DatasetParams()


def campaign_rows(params: SynthParams) -> tuple[pd.DataFrame, list]:
    world = synth.simulate(params)
    con = load.connect_frames({k: synth.to_pandas(t) for k, t in world.tables.items()})
    rows, feats = uplift.training_rows(con, PARAMS, world.as_of)
    con.close()
    assert world.effects is not None
    truth = synth.to_pandas(world.effects)[
        ["account_id", "campaign_id", "true_effect_churn", "p_churn_untreated"]
    ]
    rows = rows.merge(truth, on=["account_id", "campaign_id"], validate="one_to_one")
    return rows, feats + uplift.campaign_features(rows)


def evaluate_latest(rows: pd.DataFrame, feats: list, campaigns: int) -> pd.DataFrame:
    """Share of the oracle's gain, Qini and AUUC per targeting on the latest retention campaigns."""
    retention = sorted(c for c in rows["campaign_id"].unique() if c.startswith("RET"))
    out = []
    for evaluation in retention[-campaigns:]:
        train, test = uplift.time_split(rows, evaluation, PARAMS.horizon_days)
        model = uplift.fit(train, feats)
        ev = uplift_evaluation.evaluate(
            model,
            test,
            churn_risk=test["p_churn_untreated"],
            true_effect=test["true_effect_churn"],
        )
        out.append(ev.summary.assign(campaign=evaluation, train_rows=len(train)))
    return pd.concat(out, ignore_index=True)


def test_uplift_pipeline_on_a_small_world() -> None:
    rows, feats = campaign_rows(SynthParams(accounts=3000, months=16, seed=7, campaigns=True))
    assert set(rows["campaign_kind"]) == {"retention", "upsell"}
    assert rows["churn"].isin([0.0, 1.0]).all()
    train, test = uplift.time_split(rows, "RET-2025-01-training", PARAMS.horizon_days)
    # the four campaigns of July and October 2024 closed by January; April 2025 is pending
    assert sorted(train["campaign_id"].unique()) == [
        "RET-2024-07-training",
        "RET-2024-10-discount",
        "UPS-2024-07-upgrade",
        "UPS-2024-10-upgrade",
    ]
    model = uplift.fit(train, feats)
    effect = uplift.predict_effect(model, test)
    assert np.isfinite(effect).all() and (np.abs(effect) <= 1).all()
    # contact lowers churn on average in this retention campaign, as planted (-0.093; -0.12
    # before the harm of contact fell on sleeping dogs, for whom training about breaks even)
    assert test["true_effect_churn"].mean() < -0.05
    assert effect.mean() < 0
    ev = uplift_evaluation.evaluate(
        model, test, churn_risk=test["p_churn_untreated"], true_effect=test["true_effect_churn"]
    )
    s = ev.summary.set_index("targeting")
    assert list(s.index) == ["model", "churn_risk", "oracle", "random"]
    assert s.loc["oracle", "share_of_oracle"] == 1.0
    assert s.loc["oracle", "true_gain_area"] > s.loc["churn_risk", "true_gain_area"] > 0
    assert set(ev.curves["targeting"]) == {"model", "churn_risk", "oracle"}
    value = uplift.uplift_value(effect, test["arr"].to_numpy(), 120.0)
    assert (value.loc[value["target"], "effect"] < 0).all()


@pytest.mark.slow
def test_uplift_beats_churn_risk_on_a_large_world() -> None:
    """30,000 accounts, seed 1 (the learner's settings were chosen on seed 42)."""
    rows, feats = campaign_rows(SynthParams(accounts=30000, months=24, seed=1, campaigns=True))
    table = evaluate_latest(rows, feats, campaigns=3)
    print(table.round(4).to_string())
    share = table.pivot(index="campaign", columns="targeting", values="share_of_oracle")
    # Measured (the harm of contact depends on observable state, README): model 0.271 / 0.481 /
    # 0.464 of the oracle's gain, churn risk 0.160 / 0.328 / 0.158, a noise-free regression of
    # the true effects on the features 0.825 / 0.847 / 0.870. The 0.6 is not reached:
    # a few hundred held-out accounts per campaign do not let the learner find the modifiers
    # among 146 features (the README gives the ceiling and why).
    assert (share["model"] > share["churn_risk"]).all()
    assert share["model"].mean() >= 0.35

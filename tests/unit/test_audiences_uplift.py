"""Audiences targeted by uplift, and audiences as treatments rows: tiny literal frames."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churnlab import audiences
from churnlab.audiences import Campaign
from churnlab.errors import ChurnlabError


def at_risk() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d"],
            "churn_probability": [0.6, 0.5, 0.2, 0.1],
            "risk_band": ["high", "high", "medium", "low"],
            "arr": [1000.0, 2000.0, 3000.0, 4000.0],
            "revenue_at_risk": [600.0, 1000.0, 600.0, 400.0],
            "driver_group": ["support"] * 4,
            "play": ["escalation review"] * 4,
        }
    )


SAVE = Campaign("save", "retention", cost_per_contact=10.0, rate=0.5)


def lift(effects: dict[str, float], campaign: str = "save") -> pd.DataFrame:
    frame = at_risk().set_index("account_id")
    ids = list(effects)
    effect = np.array([effects[a] for a in ids])
    return pd.DataFrame(
        {
            "account_id": ids,
            "campaign": campaign,
            "effect": effect,
            "value": -effect * frame.loc[ids, "arr"].to_numpy(),
            "harmful": effect > 0,
        }
    )


def test_uplift_replaces_the_churn_value_and_leaves_out_harm() -> None:
    pairs = audiences.candidate_pairs(
        at_risk(), None, [SAVE], uplift=lift({"a": 0.05, "b": -0.01, "c": -0.1, "d": 0.0})
    )
    # a would churn more when contacted: never a candidate, whatever its churn risk.
    assert list(pairs["account_id"]) == ["b", "c", "d"]
    assert list(pairs["value"]) == [20.0, 300.0, 0.0]
    assert (pairs["rate"] == 1.0).all()
    assert list(pairs["expected_net_value"]) == [10.0, 290.0, -10.0]


def test_accounts_without_a_prediction_are_not_candidates_for_that_campaign() -> None:
    other = Campaign("call", "retention", cost_per_contact=1.0, rate=0.1)
    pairs = audiences.candidate_pairs(at_risk(), None, [SAVE, other], uplift=lift({"c": -0.1}))
    save = pairs[pairs["campaign"] == "save"]
    call = pairs[pairs["campaign"] == "call"]
    assert list(save["account_id"]) == ["c"]
    # A retention campaign without predictions keeps the churn-risk value.
    assert list(call["account_id"]) == ["a", "b", "c", "d"]
    assert list(call["value"]) == [600.0, 1000.0, 600.0, 400.0]


def test_uplift_and_churn_targeting_choose_differently_within_the_budget() -> None:
    # Budget 20 = two contacts. By churn risk: b and a (revenue at risk x 0.5 = 500, 300);
    # by uplift: c and d, the two the campaign is predicted to save the most ARR of.
    effects = {"a": 0.02, "b": -0.001, "c": -0.05, "d": -0.04}
    by_churn, _ = audiences.build(
        at_risk(), None, [SAVE], 20.0, holdout_share=0.0, as_of="2025-01-01"
    )
    by_uplift, sel = audiences.build(
        at_risk(), None, [SAVE], 20.0, holdout_share=0.0, as_of="2025-01-01",
        uplift=lift(effects),
    )  # fmt: skip
    assert list(by_churn["account_id"]) == ["a", "b"]
    assert list(by_uplift["account_id"]) == ["c", "d"]
    assert sel.cost <= 20.0
    assert list(by_uplift["expected_value"]) == [150.0, 160.0]


def test_malformed_uplift_frames_are_refused() -> None:
    frame = lift({"a": -0.1})
    with pytest.raises(ChurnlabError, match="lacks the columns"):
        audiences.candidate_pairs(at_risk(), None, [SAVE], uplift=frame.drop(columns="harmful"))
    with pytest.raises(ChurnlabError, match="one row per"):
        audiences.candidate_pairs(at_risk(), None, [SAVE], uplift=pd.concat([frame, frame]))
    with pytest.raises(ChurnlabError, match="not in the at_risk frame"):
        audiences.candidate_pairs(at_risk(), None, [SAVE], uplift=frame.assign(account_id="zz"))
    with pytest.raises(ChurnlabError, match="finite"):
        audiences.candidate_pairs(at_risk(), None, [SAVE], uplift=frame.assign(value=np.nan))


def test_campaign_id_is_the_name_and_the_as_of_date() -> None:
    assert audiences.campaign_id("save", "2025-01-01") == "save-2025-01-01"
    assert audiences.campaign_id("save", dt.datetime(2025, 1, 1)) == "save-2025-01-01"
    assert audiences.campaign_id("save", pd.Timestamp("2025-01-01")) == "save-2025-01-01"


def test_treatments_rows_of_an_audience() -> None:
    audience = pd.DataFrame(
        {
            "account_id": ["b", "a", "c"],
            "campaign": ["save", "save", "ref"],
            "kind": ["retention", "retention", "advocacy"],
            "holdout": [True, False, False],
            "cost": [0.0, 10.0, 5.0],
        }
    )
    ref = Campaign("ref", "advocacy", 5.0, 0.1, value_per_response=100.0, channel="email")
    rows = audiences.treatments(audience, [SAVE, ref], dt.datetime(2025, 1, 1))
    assert rows.to_dict("records") == [
        {"account_id": "c", "campaign_id": "ref-2025-01-01",
         "assigned_at": pd.Timestamp("2025-01-01"), "holdout": False, "kind": "advocacy",
         "channel": "email", "cost": 5.0},
        {"account_id": "a", "campaign_id": "save-2025-01-01",
         "assigned_at": pd.Timestamp("2025-01-01"), "holdout": False, "kind": "retention",
         "channel": None, "cost": 10.0},
        {"account_id": "b", "campaign_id": "save-2025-01-01",
         "assigned_at": pd.Timestamp("2025-01-01"), "holdout": True, "kind": "retention",
         "channel": None, "cost": 0.0},
    ]  # fmt: skip
    assert str(rows["assigned_at"].dtype) == "datetime64[us]"
    with pytest.raises(ChurnlabError, match="not declared"):
        audiences.treatments(audience, [SAVE], "2025-01-01")


def test_channel_must_be_text() -> None:
    with pytest.raises(ChurnlabError, match="channel"):
        Campaign("x", "retention", 1.0, 0.1, channel="  ")

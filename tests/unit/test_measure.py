"""Campaign measurement on tiny literal worlds: exact rates, differences, counts, warnings."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from churnlab import effects, load, measure, measure_outputs, uplift_curves
from churnlab.config import DataParams, DatasetParams

PARAMS = DatasetParams(horizon_days=30, lookback_days=60, expansion_min_fraction=0.1)
AS_OF = dt.datetime(2024, 7, 1)
DATA = DataParams(as_of=AS_OF)


def ts(*values: object) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), format="ISO8601"), dtype="datetime64[us]")


def subscriptions(rows: list[tuple[str, str, str | None, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": [r[0] for r in rows],
            "start_at": ts(*[r[1] for r in rows]),
            "end_at": ts(*[r[2] for r in rows]),
            "mrr": [r[3] for r in rows],
            "plan": ["p"] * len(rows),
            "seats": pd.array([1] * len(rows), dtype="Int32"),
        }
    )


def treatments(rows: list[tuple[str, str, str, bool]], cost: float = 10.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": [r[0] for r in rows],
            "campaign_id": [r[1] for r in rows],
            "assigned_at": ts(*[r[2] for r in rows]),
            "holdout": pd.Series([r[3] for r in rows], dtype="bool"),
            "kind": ["retention"] * len(rows),
            "channel": ["email"] * len(rows),
            "cost": [0.0 if r[3] else cost for r in rows],
        }
    )


def accounts(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"account_id": ids, "created_at": ts(*["2024-01-01"] * len(ids))})


def orders(rows: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": [r[0] for r in rows],
            "ordered_at": ts(*[r[1] for r in rows]),
            "amount": [r[2] for r in rows],
            "kind": [r[3] for r in rows],
            "product": ["core"] * len(rows),
        }
    )


def tiny_world() -> dict[str, pd.DataFrame]:
    """C1 (assigned 2024-03-01, 30-day window): 4 contacted customers, 2 held out, 1 non-customer.

    t1 stays (MRR 100); t2 churns (200); t3 upgrades 100 -> 150 (expansion, +600 ARR); t4 buys
    an upsell with flat MRR (expansion, no value); h1 churns (300); h2 downgrades 100 -> 80;
    x1's subscription starts after the assignment. C2 (p1, p2) is assigned 2024-06-15: its
    window ends after the data.
    """
    subs = subscriptions(
        [
            ("t1", "2024-01-01", None, 100.0),
            ("t2", "2024-01-01", "2024-03-15", 200.0),
            ("t3", "2024-01-01", "2024-03-10", 100.0),
            ("t3", "2024-03-10", None, 150.0),
            ("t4", "2024-01-01", None, 50.0),
            ("h1", "2024-01-01", "2024-03-20", 300.0),
            ("h2", "2024-01-01", "2024-03-05", 100.0),
            ("h2", "2024-03-05", None, 80.0),
            ("x1", "2024-04-01", None, 100.0),
            ("p1", "2024-01-01", None, 100.0),
            ("p2", "2024-01-01", None, 100.0),
        ]
    )
    tr = treatments(
        [
            ("t1", "C1", "2024-03-01", False),
            ("t2", "C1", "2024-03-01", False),
            ("t3", "C1", "2024-03-01", False),
            ("t4", "C1", "2024-03-01", False),
            ("x1", "C1", "2024-03-01", False),
            ("h1", "C1", "2024-03-01", True),
            ("h2", "C1", "2024-03-01", True),
            ("p1", "C2", "2024-06-15", False),
            ("p2", "C2", "2024-06-15", True),
        ]
    )
    return {
        "accounts": accounts(["t1", "t2", "t3", "t4", "h1", "h2", "x1", "p1", "p2"]),
        "subscriptions": subs,
        "orders": orders(
            [("t1", "2024-01-01", 100.0, "new"), ("t4", "2024-03-10", 500.0, "upsell")]
        ),
        "treatments": tr,
    }


SEGMENTS = pd.DataFrame(
    {
        "account_id": ["t1", "t2", "t3", "t4", "h1", "h2"],
        "campaign_id": ["C1"] * 6,
        "risk_band": ["high", "high", "low", "low", "high", "low"],
        "driver_group": ["support", "commercial", "support", "commercial", "support", "commercial"],
        "score": [0.9, 0.8, 0.3, 0.2, 0.85, 0.25],
    }
)


@pytest.fixture
def tiny() -> measure.Measurement:
    return measure.measure(load.connect_frames(tiny_world()), PARAMS, DATA, segments=SEGMENTS)


def test_per_campaign_table_has_hand_computed_values(tiny: measure.Measurement) -> None:
    assert tiny.campaigns["campaign_id"].tolist() == ["C1"]
    c = tiny.campaigns.iloc[0]
    assert (c["accounts"], c["not_customers"], c["n_treated"], c["n_holdout"]) == (7, 1, 4, 2)
    assert c["holdout_share"] == pytest.approx(2 / 6)
    # churn: t2 of four contacted, h1 of two held out
    assert (c["churned_treated"], c["churned_holdout"]) == (1, 1)
    assert (c["churn_treated"], c["churn_holdout"], c["churn_diff"]) == (0.25, 0.5, -0.25)
    # expansion: t3 (MRR +50%) and t4 (upsell order); nobody held out
    assert (c["expanded_treated"], c["expanded_holdout"]) == (2, 0)
    assert (c["expansion_treated"], c["expansion_holdout"], c["expansion_diff"]) == (0.5, 0.0, 0.5)
    # retained ARR: t 1200, 0, 1200 (min of 150 and 100 MRR), 600; h 0, 960 (80 MRR)
    assert (c["retained_arr_treated"], c["retained_arr_holdout"]) == (750.0, 480.0)
    assert c["retained_arr_diff"] == 270.0
    # expansion value: t3's +50 MRR = 600 ARR
    assert (c["expansion_value_treated"], c["expansion_value_holdout"]) == (150.0, 0.0)
    assert (c["arr_treated"], c["arr_holdout"]) == (5400.0, 4800.0)
    assert c["cost"] == 50.0  # five contacted (x1 too) at 10
    assert c["incremental_retained_arr"] == 270.0 * 4
    assert c["incremental_expansion_value"] == 150.0 * 4
    assert (c["kind"], c["channel"], c["primary_outcome"]) == ("retention", "email", "churn")
    assert c["first_assigned_at"] == c["last_assigned_at"] == pd.Timestamp("2024-03-01")
    assert c["window_end"] == pd.Timestamp("2024-03-31")


def test_intervals_are_the_named_methods_on_the_outcomes(tiny: measure.Measurement) -> None:
    c = tiny.campaigns.iloc[0]
    rate = effects.difference_in_rates([0, 1, 0, 0], [1, 0])
    assert (c["churn_ci_low"], c["churn_ci_high"]) == (rate.ci_low, rate.ci_high)
    mean = effects.difference_in_means([1200, 0, 1200, 600], [0, 960])
    assert (c["retained_arr_ci_low"], c["retained_arr_ci_high"]) == (mean.ci_low, mean.ci_high)
    assert (c["rate_method"], c["mean_method"], c["level"]) == ("newcombe", "welch", 0.95)
    assert c["churn_verdict"] == "no detectable effect"
    booted = measure.measure(
        load.connect_frames(tiny_world()),
        PARAMS,
        DATA,
        settings=measure.MeasureSettings(rate_method="bootstrap", mean_method="bootstrap", seed=3),
    ).campaigns.iloc[0]
    boot = effects.difference_in_rates([0, 1, 0, 0], [1, 0], method="bootstrap", seed=3)
    assert (booted["churn_ci_low"], booted["churn_ci_high"]) == (boot.ci_low, boot.ci_high)
    assert booted["rate_method"] == "bootstrap"


def test_outcomes_per_assignment(tiny: measure.Measurement) -> None:
    o = tiny.outcomes.set_index("account_id")
    assert sorted(o.index) == ["h1", "h2", "t1", "t2", "t3", "t4"]  # x1 dropped, C2 pending
    assert o["churn"].to_dict() == {"h1": 1, "h2": 0, "t1": 0, "t2": 1, "t3": 0, "t4": 0}
    assert o["expansion"].to_dict() == {"h1": 0, "h2": 0, "t1": 0, "t2": 0, "t3": 1, "t4": 1}
    assert o["arr"].to_dict() == {
        "h1": 3600.0, "h2": 1200.0, "t1": 1200.0, "t2": 2400.0, "t3": 1200.0, "t4": 600.0
    }  # fmt: skip
    # retained + expansion value = ARR at the window end
    end = {"h1": 0.0, "h2": 960.0, "t1": 1200.0, "t2": 0.0, "t3": 1800.0, "t4": 600.0}
    assert (o["retained_arr"] + o["expansion_value"]).to_dict() == end
    assert o.loc["t1", "risk_band"] == "high" and o.loc["t1", "score"] == 0.9


def test_pending_campaign_is_listed_not_measured(tiny: measure.Measurement) -> None:
    p = tiny.pending.iloc[0]
    assert tiny.pending["campaign_id"].tolist() == ["C2"]
    assert (p["accounts"], p["holdout_accounts"], p["days_to_go"]) == (2, 1, 14)
    assert p["window_end"] == pd.Timestamp("2024-07-15")
    assert p["data_end"] == pd.Timestamp(AS_OF)
    assert "C2" not in set(tiny.effects["campaign_id"]) | set(tiny.outcomes["campaign_id"])


def test_window_ending_exactly_at_the_data_end_is_complete() -> None:
    frames = tiny_world()
    tr = treatments(
        [
            ("t1", "ON_TIME", "2024-06-01", False),
            ("h2", "ON_TIME", "2024-06-01", True),
            ("t1", "LATE", "2024-06-01 00:00:01", False),
            ("h2", "LATE", "2024-06-01 00:00:01", True),
        ]
    )
    frames["treatments"] = tr
    m = measure.measure(load.connect_frames(frames), PARAMS, DATA)
    assert m.campaigns["campaign_id"].tolist() == ["ON_TIME"]
    assert m.pending["campaign_id"].tolist() == ["LATE"]
    assert m.pending["days_to_go"].tolist() == [1]  # one second to go rounds up to a day


def test_too_small_warnings_carry_the_counts(tiny: measure.Measurement) -> None:
    w = tiny.warnings
    overall = w[w["segment_type"] == "all"].set_index("outcome")
    assert overall.loc["churn", "message"] == (
        "holdout too small to measure the campaign: 2 held-out accounts (need at least 30) and "
        "1 event among them (need at least 5)"
    )
    assert (overall.loc["churn", "n_holdout"], overall.loc["churn", "events_holdout"]) == (2, 1)
    assert overall.loc["expansion", "events_holdout"] == 0
    warning = tiny.campaigns.iloc[0]["warning"]
    assert warning.startswith("churn: holdout too small") and "; expansion: holdout" in warning
    # every segment row is too small as well
    assert set(w["segment_type"]) == {"all", "risk_band", "driver_group"}
    # retained ARR carries the churn warning, expansion value the expansion one
    e = tiny.effects[tiny.effects["segment_type"] == "all"].set_index("outcome")
    assert e.loc["retained_arr", "warning"] == e.loc["churn", "warning"]
    assert e.loc["expansion_value", "warning"] == e.loc["expansion", "warning"]


def test_no_warning_when_the_holdout_is_big_enough() -> None:
    con = load.connect_frames(churn_world({"BIG": (40, 8, 30, 5)}))
    m = measure.measure(con, PARAMS, DATA)
    # 30 held out with 5 churned: churn is measurable; nobody expanded, so expansion is not
    assert m.warnings["outcome"].tolist() == ["expansion"]
    assert m.campaigns.iloc[0]["warning"] == (
        "expansion: holdout too small to measure the campaign: 0 events among them (need at "
        "least 5)"
    )
    relaxed = measure.MeasureSettings(min_events=0)
    assert measure.measure(con, PARAMS, DATA, settings=relaxed).warnings.empty
    con = load.connect_frames(churn_world({"FEW": (40, 8, 30, 4)}))
    msg = measure.measure(con, PARAMS, DATA).warnings.set_index("outcome").loc["churn", "message"]
    assert msg == (
        "holdout too small to measure the campaign: 4 events among them (need at least 5)"
    )


def test_per_segment_rows(tiny: measure.Measurement) -> None:
    e = tiny.effects
    churn = e[e["outcome"] == "churn"].set_index(["segment_type", "segment"])
    assert churn.loc[("risk_band", "high"), ["treated", "holdout", "diff"]].tolist() == [
        0.5, 1.0, -0.5
    ]  # fmt: skip
    assert churn.loc[("risk_band", "low"), ["treated", "holdout", "diff"]].tolist() == [0, 0, 0]
    assert churn.loc[("driver_group", "support"), "diff"] == -1.0
    assert churn.loc[("driver_group", "commercial"), "diff"] == 0.5
    assert churn.loc[("risk_band", "high"), ["n_treated", "n_holdout"]].tolist() == [2, 1]
    assert list(e.columns) == list(measure.EFFECT_COLUMNS)
    assert list(tiny.campaigns.columns) == list(measure.CAMPAIGN_COLUMNS)
    # 4 outcomes x (overall + 2 bands + 2 driver groups)
    assert len(e) == 4 * 5


def test_qini_of_the_targeting_score(tiny: measure.Measurement) -> None:
    rows = SEGMENTS.set_index("account_id").loc[["h1", "h2", "t1", "t2", "t3", "t4"]]
    treated = np.array([0, 0, 1, 1, 1, 1])
    saved = 1 - np.array([1, 0, 0, 1, 0, 0])
    expected = uplift_curves.qini_curve(rows["score"], treated, saved)
    got = tiny.qini.drop(columns=["campaign_id", "outcome"])
    pd.testing.assert_frame_equal(got, expected)
    assert set(tiny.qini["outcome"]) == {"churn"}
    assert tiny.campaigns.iloc[0]["qini_coefficient"] == pytest.approx(
        uplift_curves.qini_auc(rows["score"], treated, saved)
    )
    deciles = tiny.uplift_by_decile.drop(columns=["campaign_id", "outcome"])
    pd.testing.assert_frame_equal(
        deciles, uplift_curves.uplift_by_decile(rows["score"], treated, saved, bins=6)
    )


def test_no_score_means_no_qini() -> None:
    m = measure.measure(load.connect_frames(tiny_world()), PARAMS, DATA)
    assert m.qini.empty and m.uplift_by_decile.empty
    assert math.isnan(m.campaigns.iloc[0]["qini_coefficient"])
    assert set(m.effects["segment_type"]) == {"all"}


def test_power_table(tiny: measure.Measurement) -> None:
    p = tiny.power.set_index("outcome")
    churn = p.loc["churn"]
    need = effects.required_sample_size(0.5, -0.05, holdout_share=2 / 6)
    assert (churn["required_treated"], churn["required_holdout"]) == (
        need.n_treated, need.n_control
    )  # fmt: skip
    assert churn["required_total"] == need.n_total
    assert churn["powered"] is False
    mde = effects.minimum_detectable_effect(4, 2, 0.5, alternative="decrease")
    assert (math.isnan(mde) and math.isnan(churn["mde"])) or churn["mde"] == mde
    assert churn["detectable_diff"] == -0.05 and churn["base_rate"] == 0.5
    # no held-out expansion: no base rate to plan from
    assert p.loc["expansion", "base_rate"] == 0.0 and math.isnan(p.loc["expansion", "mde"])
    assert pd.isna(p.loc["expansion", "required_total"])


def test_power_on_a_large_campaign_matches_the_planning_functions() -> None:
    con = load.connect_frames(churn_world({"BIG": (400, 120, 100, 40)}))
    p = measure.measure(con, PARAMS, DATA).power.set_index("outcome").loc["churn"]
    assert p["mde"] == effects.minimum_detectable_effect(400, 100, 0.4, alternative="decrease")
    assert p["mde"] < 0
    need = effects.required_sample_size(0.4, -0.05, holdout_share=0.2)
    assert p["required_total"] == need.n_total and p["powered"] is False


def churn_world(campaigns: dict[str, tuple[int, int, int, int]]) -> dict[str, pd.DataFrame]:
    """Campaigns as (contacted, churned among them, held out, churned among them), MRR 100 each.

    Every campaign is assigned 2024-03-01; a churned account's subscription ends 2024-03-15,
    the others run on.
    """
    subs, rows, ids = [], [], []
    for cid, (n_t, c_t, n_c, c_c) in campaigns.items():
        for arm, n, churned in (("t", n_t, c_t), ("h", n_c, c_c)):
            for i in range(n):
                a = f"{cid}-{arm}{i:03d}"
                ids.append(a)
                subs.append((a, "2024-01-01", "2024-03-15" if i < churned else None, 100.0))
                rows.append((a, cid, "2024-03-01", arm == "h"))
    return {
        "accounts": accounts(ids),
        "subscriptions": subscriptions(subs),
        "treatments": treatments(rows),
    }


def test_no_effect_and_harmful_campaigns() -> None:
    world = churn_world(
        {
            "NONE": (100, 20, 100, 20),
            "HARM": (100, 40, 100, 10),
            "HELP": (100, 10, 100, 40),
        }
    )
    m = measure.measure(load.connect_frames(world), PARAMS, DATA)
    c = m.campaigns.set_index("campaign_id")
    assert c.loc["NONE", "churn_diff"] == 0.0
    assert c.loc["NONE", "churn_ci_low"] < 0 < c.loc["NONE", "churn_ci_high"]
    assert c.loc["NONE", "churn_verdict"] == "no detectable effect"
    assert c.loc["NONE", "retained_arr_verdict"] == "no detectable effect"
    assert c.loc["HARM", "churn_diff"] == pytest.approx(0.3)
    assert c.loc["HARM", "churn_ci_low"] > 0
    assert c.loc["HARM", "churn_verdict"] == "raised churn (harmful)"
    assert c.loc["HARM", "retained_arr_diff"] == pytest.approx(-0.3 * 1200)
    assert c.loc["HARM", "retained_arr_verdict"] == "less ARR retained (harmful)"
    assert c.loc["HELP", "churn_verdict"] == "lowered churn"
    assert c.loc["HELP", "retained_arr_verdict"] == "more ARR retained"
    e = m.effects[(m.effects["outcome"] == "churn")].set_index("campaign_id")
    assert e["harmful"].to_dict() == {"HARM": True, "HELP": False, "NONE": False}
    assert e["detectable"].to_dict() == {"HARM": True, "HELP": True, "NONE": False}


def test_upsell_kind_is_measured_on_expansion() -> None:
    frames = tiny_world()
    frames["treatments"] = frames["treatments"].assign(kind="upsell")
    m = measure.measure(load.connect_frames(frames), PARAMS, DATA, segments=SEGMENTS)
    assert m.campaigns.iloc[0]["primary_outcome"] == "expansion"
    assert set(m.qini["outcome"]) == {"expansion"}
    assert measure.primary_outcome(None) == "churn"
    assert measure.primary_outcome("Cross_Sell") == "expansion"


def test_an_account_in_two_campaigns_at_the_same_instant() -> None:
    frames = tiny_world()
    extra = treatments([("t2", "C3", "2024-03-01", False), ("h2", "C3", "2024-03-01", True)])
    frames["treatments"] = pd.concat([frames["treatments"], extra], ignore_index=True)
    m = measure.measure(load.connect_frames(frames), PARAMS, DATA)
    c = m.campaigns.set_index("campaign_id")
    assert c.loc["C3", ["n_treated", "n_holdout", "churn_treated", "churn_holdout"]].tolist() == [
        1, 1, 1.0, 0.0
    ]  # fmt: skip
    assert c.loc["C1", "n_treated"] == 4  # unchanged by the second assignment


def test_campaign_without_holdout_is_not_measurable() -> None:
    frames = tiny_world()
    frames["treatments"] = frames["treatments"][~frames["treatments"]["holdout"]]
    m = measure.measure(load.connect_frames(frames), PARAMS, DATA)
    c = m.campaigns.iloc[0]
    assert c["n_holdout"] == 0 and math.isnan(c["churn_diff"])
    assert c["churn_verdict"] == "not measured"
    assert "no held-out accounts (4 contacted, 0 held out)" in c["warning"]
    assert m.power.set_index("outcome").loc["churn", "base_rate"] != 0.0  # NaN, not a rate


def test_orders_only_data() -> None:
    frames = {
        "accounts": accounts(["o1", "o2", "o3", "o4"]),
        "orders": orders(
            [
                ("o1", "2024-02-10", 100.0, "new"),
                ("o1", "2024-03-10", 300.0, "renewal"),
                ("o2", "2024-02-20", 100.0, "new"),
                ("o3", "2024-02-15", 50.0, "new"),
                ("o3", "2024-03-05", 50.0, "renewal"),
                ("o4", "2023-10-01", 80.0, "new"),
            ]
        ),
        "treatments": treatments(
            [
                ("o1", "C1", "2024-03-01", False),
                ("o2", "C1", "2024-03-01", False),
                ("o3", "C1", "2024-03-01", True),
                ("o4", "C1", "2024-03-01", True),
            ]
        ),
    }
    m = measure.measure(load.connect_frames(frames), PARAMS, DATA)
    assert m.mode == "orders"
    c = m.campaigns.iloc[0]
    assert (c["n_treated"], c["n_holdout"], c["not_customers"]) == (2, 1, 1)  # o4: no recent order
    assert (c["churn_treated"], c["churn_holdout"]) == (0.5, 0.0)
    assert (c["expansion_treated"], c["expansion_holdout"]) == (0.5, 0.0)
    # o1 spent 300 in the window against 100 in the 30 days before
    assert (c["expansion_value_treated"], c["expansion_value_holdout"]) == (100.0, 0.0)
    assert math.isnan(c["retained_arr_diff"]) and c["retained_arr_verdict"] == "not applicable"
    assert "retained_arr" not in set(m.effects["outcome"])


def test_bad_inputs_raise_clear_errors() -> None:
    frames = tiny_world()
    del frames["treatments"]
    with pytest.raises(measure.MeasureError, match="no treatments table"):
        measure.measure(load.connect_frames(frames), PARAMS, DATA)
    frames = tiny_world()
    frames["treatments"] = frames["treatments"].iloc[:0]
    with pytest.raises(measure.MeasureError, match="treatments table is empty"):
        measure.measure(load.connect_frames(frames), PARAMS, DATA)
    con = load.connect_frames(tiny_world())
    with pytest.raises(measure.MeasureError, match="duplicate .* e.g. \\(t1, C1\\)"):
        measure.measure(con, PARAMS, DATA, segments=pd.concat([SEGMENTS, SEGMENTS.iloc[:1]]))
    with pytest.raises(measure.MeasureError, match="missing column"):
        measure.measure(con, PARAMS, DATA, segments=SEGMENTS.drop(columns=["campaign_id"]))
    with pytest.raises(measure.MeasureError, match="no segment column"):
        measure.measure(con, PARAMS, DATA, segments=SEGMENTS[["account_id", "campaign_id"]])
    bad = SEGMENTS.assign(score=["x", 1, 2, 3, 4, 5])
    with pytest.raises(measure.MeasureError, match="not finite numbers, e.g. 'x'"):
        measure.measure(con, PARAMS, DATA, segments=bad)


def test_run_log(tiny: measure.Measurement) -> None:
    log = measure_outputs.run_log(tiny)
    assert log.metrics["measure.C1.churn_diff"] == -0.25
    assert log.metrics["measure.C1.retained_arr_diff"] == 270.0
    assert log.metrics["measure.C1.n_holdout"] == 2.0
    assert log.metrics["measure.campaigns_measured"] == 1.0
    assert log.metrics["measure.campaigns_pending"] == 1.0
    assert log.metrics["measure.C1.qini_coefficient"] == tiny.campaigns.iloc[0]["qini_coefficient"]
    assert log.tags["measure.rate_method"] == "newcombe"
    assert log.tags["measure.mean_method"] == "welch"
    assert log.tags["measure.pending"] == "C2"
    assert log.tags["measure.too_small"] == "C1"
    assert log.tags["measure.data_end"] == "2024-07-01T00:00:00"
    assert set(log.tables) == {
        "measure/campaigns.csv",
        "measure/effects.csv",
        "measure/power.csv",
        "measure/pending.csv",
        "measure/warnings.csv",
        "measure/qini.csv",
        "measure/uplift_by_decile.csv",
    }
    assert log.files == {}


def test_metric_names_are_made_safe_for_mlflow() -> None:
    frames = tiny_world()
    tr = frames["treatments"]
    frames["treatments"] = tr.assign(campaign_id=tr["campaign_id"].replace("C1", "spring (EU)! #1"))
    log = measure_outputs.run_log(measure.measure(load.connect_frames(frames), PARAMS, DATA))
    assert log.metrics["measure.spring _EU__ _1.churn_diff"] == -0.25
    assert log.tags["measure.measured"] == "spring (EU)! #1"  # tags keep the id as it is


def test_nothing_measured_yet() -> None:
    frames = tiny_world()
    frames["treatments"] = frames["treatments"][frames["treatments"]["campaign_id"] == "C2"]
    m = measure.measure(load.connect_frames(frames), PARAMS, DATA)
    assert m.campaigns.empty and list(m.campaigns.columns) == list(measure.CAMPAIGN_COLUMNS)
    assert m.effects.empty and m.power.empty and m.warnings.empty
    assert m.pending["campaign_id"].tolist() == ["C2"]
    assert measure_outputs.run_log(m).metrics == {
        "measure.campaigns_measured": 0.0,
        "measure.campaigns_pending": 1.0,
    }


def test_plots_are_written(tiny: measure.Measurement, tmp_path) -> None:
    paths = measure_outputs.plot(tiny, tmp_path)
    assert [p.name for p in paths] == ["effects.png", "qini.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = measure_outputs.run_log(tiny, paths)
    assert log.files == {"measure/plots": paths}
    bare = measure.measure(load.connect_frames(tiny_world()), PARAMS, DATA)
    assert [p.name for p in measure_outputs.plot(bare, tmp_path / "bare")] == ["effects.png"]

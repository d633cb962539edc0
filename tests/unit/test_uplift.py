"""Uplift meta-learners on planted literal rows, evaluation curves and the selection input."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churnlab import load, uplift, uplift_evaluation
from churnlab.config import DatasetParams
from churnlab.manifest import Feature

FEATS = [
    Feature("low_usage", "low usage", "engagement"),
    Feature("noise_a", "noise a", "engagement"),
    Feature("noise_b", "noise b", "support"),
    Feature("segment", "segment", "profile", dtype="category", kind="category"),
]


def planted(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    """Rows of two campaigns (A in January, B in May) with a planted, two-sided effect.

    Untreated churn is 40% for normal usage and 20% for low usage (so churn risk points at the
    normal-usage accounts); contact lowers low-usage churn to 5% (effect -0.15) and raises
    normal-usage churn to 60% (effect +0.20: harmful). Segment and the noise columns do nothing.
    """
    rng = np.random.default_rng(seed)
    low = (rng.random(n) < 0.5).astype(float)
    treated = rng.random(n) < 0.8
    p0 = np.where(low == 1, 0.2, 0.4)
    p1 = np.where(low == 1, 0.05, 0.6)
    churn = (rng.random(n) < np.where(treated, p1, p0)).astype(float)
    half = n // 2
    return pd.DataFrame(
        {
            "account_id": [f"a{i:05d}" for i in range(n)],
            "campaign_id": np.where(np.arange(n) < half, "A", "B"),
            "assigned_at": np.where(
                np.arange(n) < half, np.datetime64("2024-01-01"), np.datetime64("2024-05-01")
            ).astype("datetime64[us]"),
            "treated": treated,
            "churn": churn,
            "low_usage": low,
            "noise_a": rng.normal(size=n),
            "noise_b": rng.normal(size=n),
            "segment": pd.Categorical(rng.choice(["smb", "ent"], n)),
            "p0": p0,
            "true_effect": p1 - p0,
        }
    )


@pytest.fixture(scope="module")
def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    return uplift.time_split(planted(), "B", 90)


@pytest.mark.parametrize("method", ["t", "x"])
def test_learners_recover_the_planted_effects(split, method: str) -> None:
    train, test = split
    model = uplift.fit(train, FEATS, uplift.UpliftSettings(method=method))
    effect = uplift.predict_effect(model, test)
    low = test["low_usage"] == 1
    assert effect[low].mean() == pytest.approx(-0.15, abs=0.05)
    assert effect[~low].mean() == pytest.approx(0.20, abs=0.05)
    # the sign alone separates the two groups for almost every account
    assert ((effect < 0) == low).mean() > 0.95
    ev = uplift_evaluation.evaluate(
        model, test, churn_risk=test["p0"], true_effect=test["true_effect"]
    )
    s = ev.summary.set_index("targeting")
    assert s.loc["oracle", "share_of_oracle"] == 1.0
    assert s.loc["model", "share_of_oracle"] >= 0.6
    assert s.loc["model", "share_of_oracle"] > s.loc["churn_risk", "share_of_oracle"]
    assert s.loc["model", "qini_coefficient"] > s.loc["churn_risk", "qini_coefficient"]
    assert s.loc["model", "auuc"] > s.loc["churn_risk", "auuc"]
    # churn risk contacts the accounts contact harms first: worse than random
    assert s.loc["churn_risk", "share_of_oracle"] < 0
    assert s.loc["random"].tolist() == [0.0] * 5
    assert model.info["rows_treated"] + model.info["rows_control"] == len(train)
    assert model.info["campaigns"] == ["A"]


def test_predicted_arms_and_the_t_learner_difference(split) -> None:
    train, test = split
    model = uplift.fit(train, FEATS, uplift.UpliftSettings(method="t"))
    arms = uplift.predict_arms(model, test)
    np.testing.assert_allclose(
        uplift.predict_effect(model, test), arms["p_treated"] - arms["p_control"]
    )
    low = test["low_usage"] == 1
    assert arms["p_control"][low].mean() == pytest.approx(0.2, abs=0.05)
    assert arms["p_treated"][~low].mean() == pytest.approx(0.6, abs=0.05)


def test_fit_ignores_row_order(split) -> None:
    train, test = split
    a = uplift.predict_effect(uplift.fit(train, FEATS), test)
    b = uplift.predict_effect(uplift.fit(train.sample(frac=1.0, random_state=3), FEATS), test)
    np.testing.assert_array_equal(a, b)


def test_save_and_load_round_trip(split, tmp_path) -> None:
    train, test = split
    model = uplift.fit(train, FEATS)
    back = uplift.load(uplift.save(model, tmp_path / "uplift"))
    np.testing.assert_array_equal(
        uplift.predict_effect(back, test), uplift.predict_effect(model, test)
    )
    assert back.method == "x" and back.features == model.features
    assert back.categories == {"segment": ("ent", "smb")}
    with pytest.raises(uplift.UpliftError, match="no uplift model here"):
        uplift.load(tmp_path / "nothing")


def test_unseen_category_and_missing_columns(split) -> None:
    train, test = split
    model = uplift.fit(train, FEATS)
    odd = test.assign(segment=pd.Categorical(["gov"] * len(test)))
    assert np.isfinite(uplift.predict_effect(model, odd)).all()
    with pytest.raises(uplift.UpliftError, match="lack the model's feature columns.*event_types"):
        uplift.predict_effect(model, test.drop(columns=["noise_a"]))


def test_fit_refuses_what_it_cannot_learn_from(split) -> None:
    train, _ = split
    with pytest.raises(uplift.UpliftError, match="only 15 held-out rows"):
        few = pd.concat([train[train["treated"]], train[~train["treated"]].head(15)])
        uplift.fit(few, FEATS)
    with pytest.raises(uplift.UpliftError, match="without a 0/1 outcome"):
        uplift.fit(train.assign(churn=train["churn"].where(train.index != train.index[0])), FEATS)
    with pytest.raises(uplift.UpliftError, match="every held-out row has churn = 0"):
        uplift.fit(train.assign(churn=np.where(train["treated"], train["churn"], 0.0)), FEATS)
    with pytest.raises(uplift.UpliftError, match="method must be"):
        uplift.fit(train, FEATS, uplift.UpliftSettings(method="s"))  # type: ignore[arg-type]
    with pytest.raises(uplift.UpliftError, match="no 'treated' column"):
        uplift.fit(train.drop(columns=["treated"]), FEATS)


def test_time_split_purges_campaigns_whose_window_is_still_open() -> None:
    rows = pd.DataFrame(
        {
            "campaign_id": ["A", "A", "B", "C", "C"],
            "assigned_at": pd.to_datetime(
                ["2024-01-01", "2024-01-02", "2024-02-01", "2024-04-01", "2024-04-15"]
            ),
        }
    )
    # A's last window closes 2024-04-01 (90 days after 2024-01-02): just in time for C;
    # B's closes 2024-05-01, after C started
    train, test = uplift.time_split(rows, "C", 90)
    assert train["campaign_id"].tolist() == ["A", "A"]
    assert test["campaign_id"].tolist() == ["C", "C"]
    with pytest.raises(uplift.UpliftError, match="closed by 2024-04-01, when C started"):
        uplift.time_split(rows, "C", 91)  # A's window now ends a day after C starts
    train, test = uplift.time_split(rows, ["B", "C"], 20)  # B starts 2024-02-01
    assert train["campaign_id"].tolist() == ["A", "A"] and len(test) == 3
    with pytest.raises(uplift.UpliftError, match="not among the rows"):
        uplift.time_split(rows, "Z", 90)
    with pytest.raises(uplift.UpliftError, match="no campaign's outcome window closed"):
        uplift.time_split(rows, "A", 90)


def test_cumulative_gain_and_auuc_by_hand() -> None:
    # ranked: (treated, 1), (held out, 0), (treated, 0), (held out, 1)
    score, treated, outcome = [3, 2, 1, 0], [1, 0, 1, 0], [1, 0, 0, 1]
    g = uplift_evaluation.cumulative_gain(score, treated, outcome)
    assert g["n"].tolist() == [0, 1, 2, 3, 4]
    # n=1: no held-out account yet; n=2: (1/1 - 0/1) x 2; n=3: (1/2 - 0/1) x 3; n=4: 0
    assert g["gain"].tolist() == [0.0, 0.0, 2.0, 1.5, 0.0]
    assert g["random"].tolist() == [0.0] * 5
    # trapezoids over quarters: (0 + 2 + 3.5 + 1.5) / 2 x 0.25 = 0.875, per account / 4
    assert uplift_evaluation.auuc(score, treated, outcome) == pytest.approx(0.875 / 4)


def test_true_gain_by_hand() -> None:
    g = uplift_evaluation.true_gain([0.3, 0.1, 0.2], [0.05, -0.02, 0.1])
    assert g["n"].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(g["gain"], [0.0, 0.05, 0.15, 0.13])
    np.testing.assert_allclose(g["random"], [0.0, 0.13 / 3, 0.26 / 3, 0.13])
    tied = uplift_evaluation.true_gain([1.0, 1.0, 0.0], [0.1, 0.2, 0.3])
    assert tied["n"].tolist() == [0, 2, 3]  # ties enter together


def test_uplift_value_by_hand() -> None:
    v = uplift.uplift_value([-0.1, 0.05, -0.02, 0.0], [1000, 2000, 500, 800], 10.0)
    assert list(v.columns) == list(uplift.UPLIFT_VALUE_COLUMNS)
    assert v["expected_saved_arr"].tolist() == pytest.approx([100.0, -100.0, 10.0, 0.0])
    assert v["expected_net_value"].tolist() == pytest.approx([90.0, -110.0, 0.0, -10.0])
    assert v["harmful"].tolist() == [False, True, False, False]
    # a net value of exactly 0 is not worth a contact
    assert v["target"].tolist() == [True, False, False, False]
    per = uplift.uplift_value([-0.1, -0.1], [1000, 1000], [50.0, 150.0])
    assert per["target"].tolist() == [True, False]
    # a large saving does not make a harmful prediction a target
    assert not uplift.uplift_value([0.01], [1e9]).loc[0, "target"]


def test_uplift_value_rejects_bad_inputs() -> None:
    with pytest.raises(uplift.UpliftError, match="same length"):
        uplift.uplift_value([-0.1, 0.1], [100.0])
    with pytest.raises(uplift.UpliftError, match="effect: 1 missing"):
        uplift.uplift_value([np.nan], [100.0])
    with pytest.raises(uplift.UpliftError, match="must not be negative"):
        uplift.uplift_value([-0.1], [-5.0])
    with pytest.raises(uplift.UpliftError, match="must not be negative"):
        uplift.uplift_value([-0.1], [5.0], -1.0)
    with pytest.raises(uplift.UpliftError, match=r"\[-1, 1\]"):
        uplift.uplift_value([-1.5], [5.0])


def _ts(*values: str | None) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), format="ISO8601"), dtype="datetime64[us]")


def test_training_rows_use_features_at_the_assignment_midnight() -> None:
    """Assigned at 09:00: features see rows before midnight that day, never after it."""
    ids = ["a1", "a2", "a3", "a4"]
    frames = {
        "accounts": pd.DataFrame({"account_id": ids, "created_at": _ts(*["2024-01-01"] * 4)}),
        "subscriptions": pd.DataFrame(
            {
                "account_id": ids,
                "start_at": _ts("2024-01-01", "2024-01-01", "2024-01-01", "2024-04-01"),
                "end_at": _ts(None, "2024-03-20", None, None),
                "mrr": [100.0, 100.0, 100.0, 100.0],
                "plan": ["p"] * 4,
                "seats": pd.array([1] * 4, dtype="Int32"),
            }
        ),
        "events": pd.DataFrame(
            {
                "account_id": ["a1", "a1", "a1", "a2"],
                "occurred_at": _ts(
                    "2024-02-28 10:00", "2024-03-01 08:00", "2024-03-02 10:00", "2024-02-29"
                ),
                "event_type": ["login"] * 4,
                "quantity": [1.0] * 4,
                "user_id": ["u1", "u1", "u1", "u2"],
            }
        ),
        "treatments": pd.DataFrame(
            {
                "account_id": ids,
                "campaign_id": ["C1"] * 4,
                "assigned_at": _ts(*["2024-03-01 09:00"] * 4),
                "holdout": [False, True, False, False],
                "kind": ["retention"] * 4,
                "channel": ["csm_call"] * 4,
                "cost": [120.0, 0.0, 120.0, 120.0],
            }
        ),
    }
    params = DatasetParams(horizon_days=30, windows=(7, 30))
    rows, feats = uplift.training_rows(load.connect_frames(frames), params, dt.datetime(2024, 7, 1))
    # a4 was not a customer at the assignment
    assert rows["account_id"].tolist() == ["a1", "a2", "a3"]
    assert (rows["cutoff"] == pd.Timestamp("2024-03-01")).all()
    assert rows["treated"].tolist() == [True, False, True]
    assert rows["churn"].tolist() == [0.0, 1.0, 0.0]
    # a1's 08:00 login on the assignment day is after the feature cutoff (midnight)
    assert rows.set_index("account_id")["events_7d"].to_dict() == {"a1": 1.0, "a2": 1.0, "a3": 0.0}
    assert rows["campaign_channel"].tolist() == ["csm_call"] * 3
    names = {f.name for f in feats}
    assert "events_7d" in names and "campaign_channel" not in names
    extra = uplift.campaign_features(rows)
    assert [(f.name, f.dtype, f.categories) for f in extra] == [
        ("campaign_kind", "category", ("retention",)),
        ("campaign_channel", "category", ("csm_call",)),
    ]
    with pytest.raises(uplift.UpliftError, match="not in the treatments table"):
        uplift.training_rows(load.connect_frames(frames), params, dt.datetime(2024, 7, 1),
                             campaigns=["nope"])  # fmt: skip
    with pytest.raises(uplift.UpliftError, match="no assignment has a complete outcome window"):
        uplift.training_rows(load.connect_frames(frames), params, dt.datetime(2024, 3, 15))

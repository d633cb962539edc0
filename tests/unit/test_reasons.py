"""Per-account reasons: probability points add up, sentences, driver groups, TreeSHAP values."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from churnlab import explain, train

FEATURES = [
    {"name": "logins_30d", "description": "logins in the last 30 days", "group": "engagement"},
    {
        "name": "tickets_90d",
        "description": "support tickets in the last 90 days",
        "group": "support",
    },
    {"name": "nps_last", "description": "latest NPS score", "group": "sentiment", "kind": "value"},
    {"name": "plan", "description": "plan", "group": "profile", "dtype": "category"},
]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    logins = rng.poisson(10, n).astype(float)
    tickets = rng.poisson(1, n).astype(float)
    nps = np.where(rng.random(n) < 0.5, rng.integers(0, 11, n), np.nan).astype(float)
    plan = rng.choice(["basic", "pro"], n)
    z = -1.0 - 0.2 * (logins - 10) + 0.5 * tickets + np.where(plan == "basic", 0.5, 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    return pd.DataFrame(
        {
            "account_id": [f"acc{i}" for i in range(n)],
            "logins_30d": logins,
            "tickets_90d": tickets,
            "nps_last": nps,
            "plan": pd.Categorical(plan),
            "churn": y,
        }
    )


@pytest.fixture(scope="module", params=["sigmoid", "isotonic"])
def bundle(request: pytest.FixtureRequest) -> train.ModelBundle:
    fit, valid = _frame(3000, 0), _frame(2000, 1)
    b = train.ModelBundle(
        "churn",
        None,
        None,
        FEATURES,
        {"plan": ["basic", "pro"]},  # type: ignore[arg-type]
        {"logins_30d": 10.0, "tickets_90d": 0.0, "nps_last": 7.0},
    )
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 7, "verbose": -1, "seed": 1, "num_threads": 1},
        lgb.Dataset(b.matrix(fit), fit["churn"]),
        num_boost_round=40,
    )
    b.booster = booster
    margin = booster.predict(b.matrix(valid), raw_score=True)
    b.calibrator, _ = train.fit_calibrator(margin, valid["churn"].to_numpy(), request.param)
    return b


def test_points_sum_to_the_calibrated_probability_change(bundle: train.ModelBundle) -> None:
    rows = _frame(500, 2)
    contrib = explain.contributions(bundle, rows)
    points, p, p0 = explain.probability_points(bundle, contrib)
    np.testing.assert_allclose(points.sum(axis=1), 100 * (p - p0), atol=1e-6)
    np.testing.assert_allclose(p, bundle.predict(rows))
    # Monotone calibrator: each feature keeps the sign of its log-odds contribution.
    nz = np.abs(points) > 1e-9
    assert np.all(np.sign(points[nz]) == np.sign(contrib[:, :-1][nz]))


def test_pred_contrib_equals_shap_tree_explainer(bundle: train.ModelBundle) -> None:
    import shap

    rows = _frame(50, 3)
    X = bundle.matrix(rows)
    ours = explain.contributions(bundle, rows)[:, :-1]
    theirs = shap.TreeExplainer(bundle.booster).shap_values(X)
    np.testing.assert_allclose(ours, np.asarray(theirs), atol=1e-6)


def test_reasons_are_the_top_points_with_sentences_and_groups(bundle: train.ModelBundle) -> None:
    rows = _frame(300, 4)
    why = explain.reasons(bundle, rows, top_k=2)
    points, _, _ = explain.probability_points(bundle, explain.contributions(bundle, rows))
    names = np.array(bundle.feature_names)
    assert (why["reason_1_feature"].to_numpy() == names[points.argmax(axis=1)]).all()
    assert (why["reason_1_points"] >= why["reason_2_points"]).all()
    np.testing.assert_allclose(why["driver_engagement"], points[:, 0])
    drivers = why[[c for c in why.columns if c.startswith("driver_")]].sum(axis=1)
    np.testing.assert_allclose(drivers, 100 * (why["p"] - why["base_p"]), atol=1e-6)
    assert list(why.index) == list(rows.index)
    assert why["account_id"].tolist() == rows["account_id"].tolist()


def test_sentence_wording_against_the_usual_level(bundle: train.ModelBundle) -> None:
    rows = pd.DataFrame(
        {
            "account_id": ["x", "y"],
            "logins_30d": [3.0, 10.0],
            "tickets_90d": [4.0, 0.0],
            "nps_last": [np.nan, 9.5],
            "plan": pd.Categorical(["basic", "enterprise"]),  # unseen level -> no value
        }
    )
    why = explain.reasons(bundle, rows, top_k=4)
    sentences = {}
    for i in range(1, 5):
        for r in range(2):
            sentences[(r, why[f"reason_{i}_feature"].iloc[r])] = (
                why[f"reason_{i}"].iloc[r],
                why[f"reason_{i}_points"].iloc[r],
            )
    text, pts = sentences[(0, "logins_30d")]
    assert text == (
        f"logins in the last 30 days is 3 (-70% vs a usual 10): {pts:+.1f} points of churn risk"
    )
    assert sentences[(0, "tickets_90d")][0].startswith(
        "support tickets in the last 90 days is 4 (usually 0): "
    )
    assert sentences[(0, "nps_last")][0].startswith("latest NPS score has no data: ")
    assert sentences[(1, "nps_last")][0].startswith("latest NPS score is 9.5 (usually 7): ")
    assert sentences[(0, "plan")][0].startswith("plan is basic: ")
    assert sentences[(1, "plan")][0].startswith("plan has no value: ")


def test_importance_table_sorted_with_descriptions(bundle: train.ModelBundle) -> None:
    contrib = explain.contributions(bundle, _frame(400, 5))
    imp = explain.importance(bundle, contrib)
    assert imp["mean_abs_shap"].is_monotonic_decreasing
    assert imp.iloc[0]["feature"] == "logins_30d"  # the strongest planted effect
    assert set(imp["group"]) == {"engagement", "support", "sentiment", "profile"}


def test_summary_plots_are_written(bundle: train.ModelBundle, tmp_path) -> None:
    rows = _frame(200, 6)
    paths = explain.plot_summary(bundle, explain.contributions(bundle, rows), rows, tmp_path, 100)
    assert [p.name for p in paths] == ["shap_beeswarm.png", "shap_bar.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_trend_and_ratio_features_are_worded_as_changes_and_shares() -> None:
    feats = [
        {
            "name": "logins_trend_30d",
            "description": "logins per day in the last 30 days against the previous 60 days",
            "group": "engagement",
            "kind": "change",
        },
        {
            "name": "util",
            "description": "share of paid seats used",
            "group": "engagement",
            "kind": "ratio",
        },
        {
            "name": "nps_change",
            "description": "change in NPS",
            "group": "sentiment",
            "kind": "change",
        },
    ]
    b = train.ModelBundle("churn", None, None, feats, {}, {"logins_trend_30d": 0.0, "util": 0.5})  # type: ignore[arg-type]
    X = pd.DataFrame(
        {
            "logins_trend_30d": [-0.64, 0.2, 0.0, np.nan],
            "util": [0.25, 1.0, np.nan, 0.5],
            "nps_change": [-3.0, 2.0, 0.0, np.nan],
        }
    )
    phrases = explain._value_phrases(b, X)
    assert phrases["nps_change"].tolist() == ["is down 3", "is up 2", "is unchanged", "has no data"]
    assert phrases["logins_trend_30d"].tolist() == [
        "is down 64%",
        "is up 20%",
        "is unchanged",
        "has no data",
    ]
    assert phrases["util"].tolist() == [
        "is 25% (usually 50%)",
        "is 100% (usually 50%)",
        "has no data",
        "is 50% (usually 50%)",
    ]


def test_numbers_in_sentences_are_plain() -> None:
    values = np.array(
        [4567.8, 1234.5, 99.96, 12.34, 0.04567, 0.0004, -0.0004, 3.0, np.nan, -2500.5]
    )
    assert explain._fmt(values).tolist() == [
        "4,568",
        "1,234",
        "100",
        "12.3",
        "0.0457",
        "0",
        "-0",
        "3",
        "missing",
        "-2,500",
    ]


def test_a_value_at_its_usual_level_says_so(bundle: train.ModelBundle) -> None:
    rows = pd.DataFrame(
        {
            "account_id": ["x"],
            "logins_30d": [10.0],
            "tickets_90d": [0.0],
            "nps_last": [7.0],
            "plan": pd.Categorical(["pro"]),
        }
    )
    why = explain.reasons(bundle, rows, top_k=4)
    texts = [why[f"reason_{i}"].iloc[0] for i in range(1, 5)]
    login = [t for t in texts if t.startswith("logins in the last 30 days")]
    assert login and login[0].startswith("logins in the last 30 days is 10 (the usual 10): ")


def test_a_missing_purchase_gap_says_what_it_means() -> None:
    from types import SimpleNamespace

    from churnlab.manifest import Feature

    bundle = SimpleNamespace(categories={}, reference={"mean_gap_days": 30.0, "x": 1.0})
    gap = Feature("mean_gap_days", "mean days between consecutive order days", "commercial",
                  kind="days", table="orders", measure="mean_gap_days")  # fmt: skip
    col = pd.Series([np.nan, 45.0])
    assert explain._feature_phrases(bundle, gap, col).tolist() == [
        "has no value yet (fewer than two days with an order)",
        "is 45 (usually 30)",
    ]
    spread = Feature("gap_spread_days", "spread", "commercial", kind="days", table="orders",
                     measure="gap_spread_days")  # fmt: skip
    assert explain._feature_phrases(bundle, spread, pd.Series([np.nan]))[0].endswith(
        "(fewer than three days with an order)"
    )
    other = Feature("x", "something", "commercial", kind="value", table="orders", measure="x")
    assert explain._feature_phrases(bundle, other, pd.Series([np.nan]))[0] == "has no data"


def test_a_usual_count_below_the_average_gives_the_average_too(
    bundle: train.ModelBundle,
) -> None:
    import copy

    rows = pd.DataFrame(
        {"account_id": ["x"], "logins_30d": [10.0], "tickets_90d": [0.0], "nps_last": [7.0],
         "plan": pd.Categorical(["pro"])}
    )  # fmt: skip
    b = copy.copy(bundle)
    b.info = {"reference_mean": {"logins_30d": 12.4, "tickets_90d": 1.0, "nps_last": 6.9}}
    texts = explain._feature_phrases(b, b.features[0], rows["logins_30d"])
    assert texts.tolist() == ["is 10 (the usual 10, the average 12.4)"]
    b.info = {"reference_mean": {"logins_30d": 10.4}}  # within 5% of the median: not worth it
    assert explain._feature_phrases(b, b.features[0], rows["logins_30d"]).tolist() == [
        "is 10 (the usual 10)"
    ]
    b.info = {"reference_mean": {"logins_30d": None}}
    assert explain._feature_phrases(b, b.features[0], rows["logins_30d"]).tolist() == [
        "is 10 (the usual 10)"
    ]
    off_usual = explain._feature_phrases(b, b.features[0], pd.Series([3.0]))
    assert off_usual.tolist() == ["is 3 (-70% vs a usual 10)"]  # the average only at the usual

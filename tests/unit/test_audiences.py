"""Campaign audiences: eligibility and value per kind, exact selection, stratified holdouts."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from churnlab import audiences, knapsack
from churnlab.audiences import Campaign
from churnlab.errors import ChurnlabError

SRC = Path(__file__).resolve().parents[2] / "src"


def at_risk_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["a1", "a2", "a3", "a4"],
            "churn_probability": [0.8, 0.4, 0.1, 0.05],
            "risk_band": ["high", "medium", "low", "low"],
            "arr": [1000.0, 2000.0, 500.0, 0.0],
            "revenue_at_risk": [800.0, 800.0, 50.0, 0.0],
            "driver_group": ["engagement", "support", None, None],
            "play": ["adoption", "support_recovery", "nurture", "nurture"],
            "nps_category": ["detractor", None, "promoter", "passive"],
            "segment": ["smb", "mid", "smb", "ent"],
        }
    )


def expansion_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["a3", "a2"],
            "expansion_probability": [0.5, 0.25],
            "expected_expansion_value": [300.0, 100.0],
            "offer": ["seats", "addon"],
        }
    )


def pairs_frame(rows: list[tuple[str, str, float, float]]) -> pd.DataFrame:
    """Pairs from (account_id, campaign, cost, expected_net_value) rows."""
    frame = pd.DataFrame(rows, columns=["account_id", "campaign", "cost", "expected_net_value"])
    frame["risk_band"] = "low"
    return frame


def chosen_keys(selection: audiences.Selection) -> list[tuple[str, str]]:
    return list(selection.chosen[["account_id", "campaign"]].itertuples(index=False, name=None))


# -- Campaign --------------------------------------------------------------------------------------


def test_campaign_coerces_lists_to_tuples_and_keeps_fields() -> None:
    c = Campaign("win_back", "retention", 25.0, 0.2, risk_bands=["high", "medium"], plays=["a"])
    assert c.risk_bands == ("high", "medium")
    assert c.plays == ("a",)
    assert c.nps_categories is None
    hash(c)  # frozen and hashable


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(kind="referral"), "kind"),
        (dict(cost_per_contact=-1.0), "cost_per_contact"),
        (dict(cost_per_contact=float("nan")), "cost_per_contact"),
        (dict(cost_per_contact=float("inf")), "cost_per_contact"),
        (dict(cost_per_contact=True), "cost_per_contact"),
        (dict(cost_per_contact="5"), "cost_per_contact"),
        (dict(rate=1.5), "rate"),
        (dict(rate=-0.1), "rate"),
        (dict(value_per_response=10.0), "value_per_response"),
        (dict(min_churn_probability=1.2), "min_churn_probability"),
        (dict(max_churn_probability=-0.5), "max_churn_probability"),
        (dict(min_churn_probability=0.6, max_churn_probability=0.4), "min_churn_probability"),
        (dict(risk_bands=()), "risk_bands"),
        (dict(risk_bands="high"), "risk_bands"),
        (dict(plays=("ok", "")), "plays"),
        (dict(nps_categories=("promoter", "fan")), "nps_categories"),
    ],
)
def test_campaign_validation_names_the_campaign_and_the_field(kwargs: dict, field: str) -> None:
    base = dict(name="save_them", kind="retention", cost_per_contact=10.0, rate=0.2)
    with pytest.raises(ChurnlabError) as err:
        Campaign(**{**base, **kwargs})  # type: ignore[arg-type]
    assert "'save_them'" in str(err.value)
    assert field in str(err.value)


def test_advocacy_and_nurture_need_a_value_per_response() -> None:
    for kind in ("advocacy", "nurture"):
        with pytest.raises(ChurnlabError, match="value_per_response is required"):
            Campaign("c", kind, 1.0, 0.1)
        with pytest.raises(ChurnlabError, match="value_per_response"):
            Campaign("c", kind, 1.0, 0.1, value_per_response=-5.0)
    assert Campaign("c", "advocacy", 1.0, 0.1, value_per_response=0.0).value_per_response == 0.0
    with pytest.raises(ChurnlabError, match="name"):
        Campaign("  ", "retention", 1.0, 0.1)


# -- candidate_pairs -------------------------------------------------------------------------------


def test_value_semantics_per_kind_exact() -> None:
    campaigns = [
        Campaign("save", "retention", 100.0, 0.25),
        Campaign("grow", "upsell", 10.0, 0.5),
        Campaign("refer", "advocacy", 5.0, 0.1, value_per_response=200.0),
        Campaign("drip", "nurture", 1.0, 0.05, value_per_response=40.0),
    ]
    pairs = audiences.candidate_pairs(at_risk_frame(), expansion_frame(), campaigns)
    assert list(pairs.columns) == list(audiences.PAIR_COLUMNS)
    got = {
        (r.account_id, r.campaign): (r.kind, r.risk_band, r.value, r.rate, r.cost,
                                     r.expected_value, r.expected_net_value)
        for r in pairs.itertuples()
    }  # fmt: skip
    want = {
        # retention: value = revenue_at_risk, expected = value * save rate
        ("a1", "save"): ("retention", "high", 800.0, 0.25, 100.0, 200.0, 100.0),
        ("a2", "save"): ("retention", "medium", 800.0, 0.25, 100.0, 200.0, 100.0),
        ("a3", "save"): ("retention", "low", 50.0, 0.25, 100.0, 12.5, -87.5),
        ("a4", "save"): ("retention", "low", 0.0, 0.25, 100.0, 0.0, -100.0),
        # upsell: only accounts in the expansion frame, value = expected_expansion_value
        ("a2", "grow"): ("upsell", "medium", 100.0, 0.5, 10.0, 50.0, 40.0),
        ("a3", "grow"): ("upsell", "low", 300.0, 0.5, 10.0, 150.0, 140.0),
        # advocacy and nurture: value = value_per_response for every account
        **{(a, "refer"): ("advocacy", b, 200.0, 0.1, 5.0, 20.0, 15.0)
           for a, b in [("a1", "high"), ("a2", "medium"), ("a3", "low"), ("a4", "low")]},
        **{(a, "drip"): ("nurture", b, 40.0, 0.05, 1.0, 2.0, 1.0)
           for a, b in [("a1", "high"), ("a2", "medium"), ("a3", "low"), ("a4", "low")]},
    }  # fmt: skip
    assert got == want
    # Sorted by account, then campaign.
    keys = list(zip(pairs["account_id"], pairs["campaign"], strict=True))
    assert keys == sorted(keys)


def test_eligibility_filters_are_inclusive_and_combine() -> None:
    frame = at_risk_frame()
    cases = {
        Campaign("c", "retention", 1.0, 0.1, risk_bands=("high", "medium")): ["a1", "a2"],
        # bounds are inclusive: 0.4 and 0.1 are in [0.1, 0.4]
        Campaign("c", "retention", 1.0, 0.1, min_churn_probability=0.1,
                 max_churn_probability=0.4): ["a2", "a3"],
        Campaign("c", "retention", 1.0, 0.1, min_churn_probability=0.4): ["a1", "a2"],
        Campaign("c", "retention", 1.0, 0.1, max_churn_probability=0.05): ["a4"],
        Campaign("c", "nurture", 1.0, 0.1, value_per_response=1.0, plays=("nurture",)): [
            "a3", "a4"],
        # no NPS response (None) never matches an NPS filter
        Campaign("c", "advocacy", 1.0, 0.1, value_per_response=1.0,
                 nps_categories=("promoter", "passive")): ["a3", "a4"],
        Campaign("c", "advocacy", 1.0, 0.1, value_per_response=1.0, risk_bands=("low",),
                 nps_categories=("promoter",)): ["a3"],
        Campaign("c", "upsell", 1.0, 0.1, risk_bands=("low",)): ["a3"],
        Campaign("c", "upsell", 1.0, 0.1, plays=("adoption",)): [],
    }  # fmt: skip
    for campaign, want in cases.items():
        pairs = audiences.candidate_pairs(frame, expansion_frame(), [campaign])
        assert pairs["account_id"].tolist() == want, campaign


def test_missing_probability_fails_a_bound_but_not_an_unbounded_campaign() -> None:
    frame = at_risk_frame()
    frame.loc[0, "churn_probability"] = np.nan
    bounded = Campaign("b", "retention", 1.0, 0.1, min_churn_probability=0.0)
    free = Campaign("f", "retention", 1.0, 0.1)
    pairs = audiences.candidate_pairs(frame, None, [bounded, free])
    assert pairs.loc[pairs["campaign"] == "b", "account_id"].tolist() == ["a2", "a3", "a4"]
    assert pairs.loc[pairs["campaign"] == "f", "account_id"].tolist() == ["a1", "a2", "a3", "a4"]


def test_no_expansion_model_means_no_upsell_pairs() -> None:
    grow = Campaign("grow", "upsell", 1.0, 0.5)
    refer = Campaign("refer", "advocacy", 1.0, 0.5, value_per_response=10.0)
    for expansion in (None, expansion_frame().iloc[0:0]):
        pairs = audiences.candidate_pairs(at_risk_frame(), expansion, [grow, refer])
        assert set(pairs["campaign"]) == {"refer"}
    empty = audiences.candidate_pairs(at_risk_frame(), None, [grow])
    assert empty.empty and list(empty.columns) == list(audiences.PAIR_COLUMNS)
    assert audiences.candidate_pairs(at_risk_frame(), None, []).empty


def test_candidate_pairs_input_errors() -> None:
    save = Campaign("save", "retention", 1.0, 0.1)
    with pytest.raises(ChurnlabError, match="revenue_at_risk"):
        audiences.candidate_pairs(at_risk_frame().drop(columns="revenue_at_risk"), None, [save])
    doubled = pd.concat([at_risk_frame(), at_risk_frame().iloc[:1]])
    with pytest.raises(ChurnlabError, match="one row per account.*a1"):
        audiences.candidate_pairs(doubled, None, [save])
    stray = pd.concat([expansion_frame(), expansion_frame().iloc[:1].assign(account_id="zz")])
    grow = Campaign("grow", "upsell", 1.0, 0.1)
    with pytest.raises(ChurnlabError, match="not in the at_risk frame.*zz"):
        audiences.candidate_pairs(at_risk_frame(), stray, [grow])
    with pytest.raises(ChurnlabError, match="used twice"):
        audiences.candidate_pairs(at_risk_frame(), None, [save, save])
    promo = Campaign("promo", "advocacy", 1.0, 0.1, value_per_response=1.0,
                     nps_categories=("promoter",))  # fmt: skip
    with pytest.raises(ChurnlabError, match="nps_category"):
        audiences.candidate_pairs(at_risk_frame().drop(columns="nps_category"), None, [promo])
    with pytest.raises(ChurnlabError, match="Campaign records"):
        audiences.candidate_pairs(at_risk_frame(), None, [{"name": "save"}])  # type: ignore[list-item]
    nameless = at_risk_frame().astype({"account_id": object})
    nameless.loc[1, "account_id"] = None
    with pytest.raises(ChurnlabError, match="without an account_id"):
        audiences.candidate_pairs(nameless, None, [save])
    # Without an NPS filter the column is not needed.
    no_nps = at_risk_frame().drop(columns="nps_category")
    assert len(audiences.candidate_pairs(no_nps, None, [save])) == 4


# -- select: exact on literal cases ----------------------------------------------------------------


def test_select_knapsack_literal() -> None:
    pairs = pairs_frame(
        [
            ("a", "big", 10.0, 30.0),
            ("a", "small", 4.0, 20.0),
            ("b", "big", 10.0, 25.0),
            ("b", "small", 4.0, 6.0),
            ("c", "small", 4.0, 9.0),
            ("d", "small", 4.0, -1.0),  # never chosen
            ("e", "free", 0.0, 0.0),  # worth nothing: never chosen
        ]
    )
    # Budget 14: a.small + b.big = 45 beats a.big + a... (one per account): a.big + c = 39.
    sel = audiences.select(pairs, 14.0)
    assert chosen_keys(sel) == [("a", "small"), ("b", "big")]
    assert (sel.objective, sel.cost, sel.method, sel.status) == (45.0, 14.0, "milp", "optimal")
    # Unlimited: every account takes its best positive pair.
    free = audiences.select(pairs, None)
    assert chosen_keys(free) == [("a", "big"), ("b", "big"), ("c", "small")]
    assert (free.objective, free.method, free.gap) == (64.0, "unconstrained", 0.0)
    # Budget 0: nothing that costs anything.
    assert audiences.select(pairs, 0.0).chosen.empty
    # Non-binding budget is the unconstrained answer.
    assert chosen_keys(audiences.select(pairs, 24.0)) == chosen_keys(free)


def test_select_takes_zero_cost_pairs_within_a_zero_budget() -> None:
    pairs = pairs_frame([("a", "free", 0.0, 2.0), ("a", "paid", 3.0, 9.0), ("b", "paid", 1.0, 4.0)])
    sel = audiences.select(pairs, 0.0)
    assert chosen_keys(sel) == [("a", "free")]
    assert sel.objective == 2.0 and sel.cost == 0.0


def test_select_budget_check_is_exact_not_within_tolerance() -> None:
    # 0.1 + 0.2 is 0.30000000000000004 in floating point: above a budget of 0.3.
    pairs = pairs_frame([("a", "c", 0.1, 5.0), ("b", "c", 0.2, 4.0), ("c", "c", 0.3, 3.0)])
    sel = audiences.select(pairs, 0.3)
    assert math.fsum(sel.chosen["cost"]) <= 0.3
    assert chosen_keys(sel) == [("a", "c")] and sel.objective == 5.0
    assert chosen_keys(audiences.select(pairs, 0.30000000000000004)) == [("a", "c"), ("b", "c")]


def test_select_ties_are_deterministic_and_independent_of_row_order() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(40):
        for camp in ("x", "y", "z"):
            if rng.random() < 0.8:
                rows.append((f"acc{i:02d}", camp, float(rng.choice([1.0, 2.0])),
                             float(rng.choice([1.0, 2.0, 3.0]))))  # fmt: skip
    pairs = pairs_frame(rows)
    pairs["extra"] = np.arange(len(pairs))
    ref = audiences.select(pairs, 17.0)
    assert ref.status == "optimal"
    for seed in range(5):
        shuffled = pairs.sample(frac=1.0, random_state=seed)
        shuffled.index = rng.permutation(len(shuffled)) + 1000
        sel = audiences.select(shuffled, 17.0)
        pd.testing.assert_frame_equal(sel.chosen, ref.chosen)
        assert (sel.objective, sel.lp_bound) == (ref.objective, ref.lp_bound)
    pd.testing.assert_frame_equal(audiences.select(pairs, 17.0).chosen, ref.chosen)
    # Pass-through columns travel with the chosen rows.
    assert "extra" in ref.chosen.columns


def test_select_input_errors() -> None:
    pairs = pairs_frame([("a", "c", 1.0, 5.0)])
    for bad in (-1.0, float("nan"), float("inf"), True, "10"):
        with pytest.raises(ChurnlabError, match="budget"):
            audiences.select(pairs, bad)  # type: ignore[arg-type]
    with pytest.raises(ChurnlabError, match="one row per"):
        audiences.select(pd.concat([pairs, pairs]), 1.0)
    with pytest.raises(ChurnlabError, match="cost"):
        audiences.select(pairs.assign(cost=-1.0), 1.0)
    with pytest.raises(ChurnlabError, match="expected_net_value"):
        audiences.select(pairs.drop(columns="expected_net_value"), 1.0)
    with pytest.raises(ChurnlabError, match="time_limit"):
        audiences.select(pairs, 1.0, time_limit=0)
    empty = audiences.select(pairs.iloc[0:0], 5.0)
    assert empty.chosen.empty and (empty.objective, empty.method) == (0.0, "none")


# -- select: against brute force, linprog and a direct MILP ----------------------------------------


def random_case(rng: np.random.Generator) -> tuple[pd.DataFrame, float | None]:
    n_acc = int(rng.integers(1, 7))
    n_camp = int(rng.integers(1, 4))
    grid_costs = [0.0, 0.1, 0.2, 0.3, 1.0, 2.0, 2.5]
    grid_values = [-1.0, 0.0, 0.5, 1.0, 2.0, 3.0]
    rows = []
    for a in range(n_acc):
        for c in range(n_camp):
            if rng.random() < 0.2:
                continue
            cost = float(rng.choice(grid_costs)) if rng.random() < 0.7 else rng.uniform(0, 3)
            env = float(rng.choice(grid_values)) if rng.random() < 0.6 else rng.uniform(-1, 4)
            rows.append((f"a{a}", f"c{c}", round(cost, 3) if rng.random() < 0.5 else cost, env))
    pairs = pairs_frame(rows)
    total = math.fsum(pairs["cost"]) if rows else 0.0
    kind = int(rng.integers(0, 6))
    if kind == 0:
        budget = None
    elif kind == 1:
        budget = 0.0
    elif kind == 2:
        budget = total  # not binding
    elif kind == 3 and rows:
        picked = pairs["cost"].to_numpy()[rng.random(len(pairs)) < 0.5]
        budget = math.fsum(picked)  # exactly the cost of some subset
    else:
        budget = float(rng.uniform(0, max(total, 0.1)))
    return pairs, budget


def brute_force(pairs: pd.DataFrame, budget: float | None) -> float:
    options: dict[str, list[tuple[float, float]]] = {}
    for r in pairs.itertuples():
        options.setdefault(r.account_id, [(0.0, 0.0)])
        if r.expected_net_value > 0:
            options[r.account_id].append((r.cost, r.expected_net_value))
    best = 0.0
    for combo in itertools.product(*options.values()):
        cost = math.fsum(c for c, _ in combo)
        if budget is None or cost <= budget:
            best = max(best, math.fsum(v for _, v in combo))
    return best


def check_selection(pairs: pd.DataFrame, budget: float | None, sel: audiences.Selection) -> None:
    chosen = sel.chosen
    assert not chosen["account_id"].duplicated().any()
    assert (chosen["expected_net_value"] > 0).all()
    if budget is not None:
        assert math.fsum(chosen["cost"]) <= budget
    assert sel.objective == math.fsum(chosen["expected_net_value"])
    assert sel.lp_bound >= sel.objective - 1e-12
    assert 0.0 <= sel.gap <= 1.0
    keys = set(zip(pairs["account_id"], pairs["campaign"], strict=True))
    assert set(chosen_keys(sel)) <= keys


def test_select_equals_brute_force_on_200_random_cases() -> None:
    rng = np.random.default_rng(20260101)
    methods = set()
    for case in range(200):
        pairs, budget = random_case(rng)
        sel = audiences.select(pairs, budget)
        check_selection(pairs, budget, sel)
        assert sel.objective == pytest.approx(brute_force(pairs, budget), abs=1e-9), (case, pairs)
        assert sel.status == "optimal"
        methods.add(sel.method)
    # The cases reach every exact path.
    assert methods == {"none", "unconstrained", "milp"}


def lp_relaxation(pairs: pd.DataFrame, budget: float) -> float:
    p = pairs[pairs["expected_net_value"] > 0]
    codes, _ = pd.factorize(p["account_id"])
    n = len(p)
    A = sp.vstack(
        [
            sp.csr_matrix(p["cost"].to_numpy()[None, :]),
            sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(codes.max() + 1, n)),
        ]
    )
    b = np.r_[budget, np.ones(codes.max() + 1)]
    res = linprog(-p["expected_net_value"].to_numpy(), A_ub=A, b_ub=b, bounds=(0, 1))
    assert res.status == 0
    return -res.fun


def test_lp_bound_equals_linprog_relaxation() -> None:
    rng = np.random.default_rng(7)
    for _ in range(30):
        n_acc = int(rng.integers(2, 40))
        rows = [
            (f"a{a}", f"c{c}", float(rng.uniform(0.5, 10)), float(rng.uniform(-2, 20)))
            for a in range(n_acc)
            for c in range(4)
            if rng.random() < 0.75
        ]
        pairs = pairs_frame(rows)
        budget = float(0.3 * pairs["cost"].sum() / 2)
        sel = audiences.select(pairs, budget)
        if sel.method == "unconstrained":
            continue
        assert sel.lp_bound == pytest.approx(lp_relaxation(pairs, budget), rel=1e-9, abs=1e-9)
        assert sel.gap == pytest.approx((sel.lp_bound - sel.objective) / sel.lp_bound)


def direct_milp(pairs: pd.DataFrame, budget: float) -> float:
    p = pairs[pairs["expected_net_value"] > 0]
    codes, _ = pd.factorize(p["account_id"])
    n = len(p)
    A = sp.vstack(
        [
            sp.csr_matrix(p["cost"].to_numpy()[None, :]),
            sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(codes.max() + 1, n)),
        ]
    ).tocsr()
    ub = np.r_[budget, np.ones(codes.max() + 1)]
    res = milp(
        -p["expected_net_value"].to_numpy(),
        integrality=np.ones(n),
        bounds=Bounds(0, 1),
        constraints=LinearConstraint(A, -np.inf, ub),
        options={"mip_rel_gap": 0.0},
    )
    assert res.status == 0
    return -res.fun


def test_select_matches_a_direct_milp_beyond_brute_force_size() -> None:
    rng = np.random.default_rng(11)
    rows = [
        (f"acc{a:03d}", f"c{c}", float(rng.choice([1.0, 2.5, 4.0, 7.0])) + rng.uniform(0, 0.01),
         float(rng.gamma(1.5, 4.0)) - 2.0)
        for a in range(250)
        for c in range(3)
    ]  # fmt: skip
    pairs = pairs_frame(rows)
    budget = 0.25 * float(pairs["cost"].sum()) / 3
    sel = audiences.select(pairs, budget)
    check_selection(pairs, budget, sel)
    assert (sel.method, sel.status) == ("milp", "optimal")
    assert 0 < sel.core_pairs < sel.candidates
    assert sel.objective == pytest.approx(direct_milp(pairs, budget), rel=1e-9)


def big_pairs(n_acc: int, seed: int) -> tuple[pd.DataFrame, float]:
    rng = np.random.default_rng(seed)
    rows = [
        (f"acc{a:04d}", f"c{c}", float(cost), float(rng.gamma(1.0, 30.0) * rng.random() - cost))
        for a in range(n_acc)
        for c, cost in enumerate((40.0, 15.0, 5.0))
    ]
    pairs = pairs_frame(rows)
    free = audiences.select(pairs, None)
    return pairs, 0.3 * free.cost


def test_fallback_when_the_core_is_too_big_stays_within_budget_and_reports_its_gap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pairs, budget = big_pairs(400, 5)
    exact = audiences.select(pairs, budget)
    monkeypatch.setattr(knapsack, "_CORE_VARS", 0)
    sel = audiences.select(pairs, budget)
    check_selection(pairs, budget, sel)
    assert (sel.method, sel.status) == ("lp-rounding", "feasible")
    assert sel.lp_bound == exact.lp_bound
    assert sel.objective <= exact.objective
    # The LP rounding loses at most a sliver of the bound here.
    assert 0 < sel.gap < 1e-2
    assert sel.objective >= exact.lp_bound * (1 - sel.gap) - 1e-9


def test_time_limit_falls_back_to_the_deterministic_lp_rounding() -> None:
    pairs, budget = big_pairs(400, 6)
    sel = audiences.select(pairs, budget, time_limit=1e-9)
    check_selection(pairs, budget, sel)
    assert (sel.method, sel.status) == ("lp-rounding", "feasible")
    again = audiences.select(pairs.iloc[::-1], budget, time_limit=1e-9)
    pd.testing.assert_frame_equal(again.chosen, sel.chosen)


# -- holdouts --------------------------------------------------------------------------------------


def selected_frame(n: int, campaigns: tuple[str, ...] = ("save",), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for camp in campaigns:
        for i in range(n):
            value = float(rng.uniform(10, 100))
            rows.append(
                {
                    "account_id": f"acc{i:05d}",
                    "campaign": camp,
                    "kind": "retention",
                    "risk_band": ["low", "medium", "high"][i % 3],
                    "value": value,
                    "rate": 0.2,
                    "cost": 5.0,
                    "expected_value": 0.2 * value,
                    "expected_net_value": 0.2 * value - 5.0,
                }
            )
    return pd.DataFrame(rows)


def held(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(
        frame.loc[frame["holdout"], ["account_id", "campaign"]].itertuples(index=False, name=None)
    )


def test_holdouts_are_reproducible_and_change_with_as_of_and_seed() -> None:
    sel = selected_frame(300, ("save", "grow"))
    a = audiences.assign_holdouts(sel, 0.1, as_of="2025-10-01", seed=0)
    b = audiences.assign_holdouts(sel, 0.1, as_of="2025-10-01", seed=0)
    pd.testing.assert_frame_equal(a, b)
    assert held(a) != held(audiences.assign_holdouts(sel, 0.1, as_of="2025-11-01", seed=0))
    assert held(a) != held(audiences.assign_holdouts(sel, 0.1, as_of="2025-10-01", seed=1))
    # The two campaigns draw independently: not the same accounts held out in both.
    save = {acc for acc, c in held(a) if c == "save"}
    grow = {acc for acc, c in held(a) if c == "grow"}
    assert save != grow
    # The same instant in any spelling is the same draw.
    for as_of in (
        dt.date(2025, 10, 1),
        dt.datetime(2025, 10, 1),
        pd.Timestamp("2025-10-01"),
        pd.Timestamp("2025-10-01T02:00:00+02:00"),
    ):
        assert held(audiences.assign_holdouts(sel, 0.1, as_of=as_of, seed=0)) == held(a)


def test_holdout_draw_is_the_same_in_another_process() -> None:
    # Python's own hash() is salted per process; the draw must not be.
    code = (
        "import pandas as pd, sys;"
        "from churnlab import audiences;"
        "f = pd.DataFrame({'account_id': [f'a{i}' for i in range(50)], 'campaign': 'c',"
        " 'risk_band': 'low', 'cost': 1.0, 'expected_value': 2.0, 'expected_net_value': 1.0});"
        "h = audiences.assign_holdouts(f, 0.2, as_of='2025-10-01', seed=3);"
        "print(','.join(h.loc[h['holdout'], 'account_id']))"
    )
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(SRC)}
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        outputs.add(proc.stdout.strip())
    assert len(outputs) == 1
    assert len(outputs.pop().split(",")) == 10


def test_exactly_round_share_times_n_per_campaign_and_band() -> None:
    frames = []
    for n in range(1, 31):
        f = selected_frame(n, (f"c{n:02d}",), seed=n)
        f["risk_band"] = "low" if n % 2 else "high"
        f["account_id"] = [f"s{n}_{i}" for i in range(n)]
        frames.append(f)
    sel = pd.concat(frames, ignore_index=True)
    sel.loc[sel.index % 4 == 0, "risk_band"] = "medium"
    for share in (0.0, 0.1, 0.25, 0.5, 0.9):
        out = audiences.assign_holdouts(sel, share, as_of="2025-10-01")
        for (_, _), g in out.groupby(["campaign", "risk_band"]):
            assert int(g["holdout"].sum()) == round(share * len(g))


def test_big_stratum_share_is_right_and_not_clustered() -> None:
    sel = selected_frame(20_000)
    sel["risk_band"] = "low"
    out = audiences.assign_holdouts(sel, 0.1, as_of="2025-10-01", seed=42)
    assert int(out["holdout"].sum()) == 2_000
    # Spread over the id range, not the first or last ids: each tenth holds 10% +- 2 points.
    tenths = out.groupby(np.arange(len(out)) // 2_000)["holdout"].mean()
    assert tenths.between(0.08, 0.12).all()


def test_holdouts_do_not_depend_on_scores_or_row_order() -> None:
    sel = selected_frame(600, ("save", "grow"))
    ref = held(audiences.assign_holdouts(sel, 0.1, as_of="2025-10-01"))
    rng = np.random.default_rng(0)
    permuted = sel.copy()
    for _, idx in permuted.groupby(["campaign", "risk_band"]).groups.items():
        for col in ("value", "expected_value", "expected_net_value"):
            permuted.loc[idx, col] = rng.permutation(permuted.loc[idx, col].to_numpy())
    assert held(audiences.assign_holdouts(permuted, 0.1, as_of="2025-10-01")) == ref
    shuffled = sel.sample(frac=1.0, random_state=1)
    assert held(audiences.assign_holdouts(shuffled, 0.1, as_of="2025-10-01")) == ref


def test_holdouts_through_build_ignore_churn_scores_within_a_band() -> None:
    n = 300
    rng = np.random.default_rng(5)
    p = rng.uniform(0.3, 0.9, n)
    frame = pd.DataFrame(
        {
            "account_id": [f"acc{i:03d}" for i in range(n)],
            "churn_probability": p,
            "risk_band": np.where(p > 0.6, "high", "medium"),
            "arr": 1000.0,
            "revenue_at_risk": p * 1000.0,
            "driver_group": "engagement",
            "play": "save",
        }
    )
    campaign = Campaign("refer", "advocacy", 1.0, 0.5, value_per_response=10.0)
    kwargs = dict(holdout_share=0.2, as_of="2025-10-01", seed=9)
    ref, _ = audiences.build(frame, None, [campaign], None, **kwargs)  # type: ignore[arg-type]
    shuffled = frame.copy()
    for band in ("high", "medium"):
        m = shuffled["risk_band"] == band
        for col in ("churn_probability", "revenue_at_risk"):
            shuffled.loc[m, col] = rng.permutation(shuffled.loc[m, col].to_numpy())
    out, _ = audiences.build(shuffled, None, [campaign], None, **kwargs)  # type: ignore[arg-type]
    assert held(out) == held(ref)
    assert len(held(ref)) == round(0.2 * (p > 0.6).sum()) + round(0.2 * (p <= 0.6).sum())


def test_holdout_rows_are_free_and_keep_their_would_be_value() -> None:
    sel = selected_frame(40)
    out = audiences.assign_holdouts(sel, 0.25, as_of="2025-10-01")
    h = out[out["holdout"]]
    c = out[~out["holdout"]]
    assert len(h) == sum(round(0.25 * k) for k in sel["risk_band"].value_counts())
    assert (h[["cost", "expected_value", "expected_net_value"]] == 0.0).all().all()
    by_id = sel.set_index(["account_id", "campaign"])
    original = by_id.loc[list(zip(h["account_id"], h["campaign"], strict=True))]
    assert h["expected_net_value_if_contacted"].tolist() == original["expected_net_value"].tolist()
    assert h["value"].tolist() == original["value"].tolist()
    assert (c["expected_net_value_if_contacted"] == c["expected_net_value"]).all()
    assert (c["cost"] == 5.0).all()


def test_assign_holdouts_input_errors() -> None:
    sel = selected_frame(5)
    for share in (-0.1, 1.0, 1.5, float("nan"), True):
        with pytest.raises(ChurnlabError, match="share"):
            audiences.assign_holdouts(sel, share, as_of="2025-10-01")  # type: ignore[arg-type]
    for as_of in (None, "not a date", ""):
        with pytest.raises(ChurnlabError, match="as_of"):
            audiences.assign_holdouts(sel, 0.1, as_of=as_of)  # type: ignore[arg-type]
    for seed in (1.5, "1", True):
        with pytest.raises(ChurnlabError, match="seed"):
            audiences.assign_holdouts(sel, 0.1, as_of="2025-10-01", seed=seed)  # type: ignore[arg-type]
    assert audiences.assign_holdouts(sel, 0.1, as_of="2025-10-01", seed=np.int64(3)).shape[0] == 5
    once = audiences.assign_holdouts(sel, 0.1, as_of="2025-10-01")
    with pytest.raises(ChurnlabError, match="already"):
        audiences.assign_holdouts(once, 0.1, as_of="2025-10-01")
    with pytest.raises(ChurnlabError, match="risk_band"):
        audiences.assign_holdouts(sel.drop(columns="risk_band"), 0.1, as_of="2025-10-01")
    empty = audiences.assign_holdouts(sel.iloc[0:0], 0.1, as_of="2025-10-01")
    assert empty.empty and "holdout" in empty.columns


# -- summary and build -----------------------------------------------------------------------------


def test_summary_counts_contacts_and_holdouts_exactly() -> None:
    audience = pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d", "e"],
            "campaign": ["save", "save", "save", "grow", "grow"],
            "kind": ["retention", "retention", "retention", "upsell", "upsell"],
            "holdout": [False, True, False, False, False],
            "cost": [10.0, 0.0, 10.0, 2.0, 2.0],
            "expected_value": [50.0, 0.0, 30.0, 7.0, 5.0],
            "expected_net_value": [40.0, 0.0, 20.0, 5.0, 3.0],
        }
    )
    out = audiences.summary(audience)
    assert list(out.columns) == list(audiences.SUMMARY_COLUMNS)
    assert out.to_dict("records") == [
        {"campaign": "grow", "kind": "upsell", "contacts": 2, "holdout": 0, "cost": 4.0,
         "expected_value": 12.0, "expected_net_value": 8.0},
        {"campaign": "save", "kind": "retention", "contacts": 2, "holdout": 1, "cost": 20.0,
         "expected_value": 80.0, "expected_net_value": 60.0},
    ]  # fmt: skip
    # A held-out row never counts as a contact, whatever its cost column says.
    audience.loc[1, ["cost", "expected_value", "expected_net_value"]] = [10.0, 1.0, -9.0]
    again = audiences.summary(audience).set_index("campaign")
    assert again.loc["save", "contacts"] == 2 and again.loc["save", "cost"] == 20.0
    assert audiences.summary(audience.iloc[0:0]).empty


def test_build_chains_pairs_selection_and_holdouts() -> None:
    campaigns = [
        Campaign("save", "retention", 100.0, 0.25, risk_bands=("high", "medium")),
        Campaign("grow", "upsell", 10.0, 0.5),
        Campaign("refer", "advocacy", 5.0, 0.1, value_per_response=200.0,
                 nps_categories=("promoter",)),
    ]  # fmt: skip
    audience, sel = audiences.build(
        at_risk_frame(), expansion_frame(), campaigns, 150.0,
        holdout_share=0.0, as_of="2025-10-01", seed=0,
    )  # fmt: skip
    assert list(audience.columns) == list(audiences.AUDIENCE_COLUMNS)
    # Pairs: a1 save 100 (cost 100); a2 save 100 (100) or grow 40 (10); a3 grow 140 (10) or
    # refer 15 (5). Budget 150: a1 save + a2 grow + a3 grow = 280 for 120.
    rows = list(zip(audience["account_id"], audience["campaign"], strict=True))
    assert rows == [("a1", "save"), ("a2", "grow"), ("a3", "grow")]
    assert sel.objective == 280.0 and sel.cost == 120.0
    assert not audience["holdout"].any()
    assert audiences.summary(audience)["contacts"].sum() == 3


def single_option_problem(costs: list[float], values: list[float]) -> audiences._Problem:
    n = len(costs)
    return audiences._Problem.build(
        np.array([f"a{i}" for i in range(n)]), np.array(values), np.array(costs), np.arange(n)
    )


def test_greedy_fill_undoes_an_upgrade_when_the_exact_sum_exceeds_the_budget() -> None:
    # By ratio the fill takes 0.1, 0.1, 0.2, 0.2; the running remainder says all four fit in
    # 0.6, but their exact sum is 0.6000000000000001.
    problem = single_option_problem([0.1, 0.1, 0.2, 0.2], [1.0, 0.99, 1.9, 1.8])
    choice = problem.fill(np.full(4, -1), 0.6)
    assert choice.tolist() == [0, 0, 0, -1]
    # select() itself finds the best exactly feasible set: all but the 0.99.
    costs, values = [0.1, 0.1, 0.2, 0.2], [1.0, 0.99, 1.9, 1.8]
    pairs = pairs_frame([(f"a{i}", "c", costs[i], values[i]) for i in range(4)])
    sel = audiences.select(pairs, 0.6)
    assert chosen_keys(sel) == [("a0", "c"), ("a2", "c"), ("a3", "c")]
    assert sel.objective == pytest.approx(4.7) and sel.status == "optimal"


def test_repair_drops_the_worst_value_per_cost_until_the_exact_sum_fits() -> None:
    # Ratios 10, 5, 40: 0.2 goes first, then 0.1, then 0.5.
    problem = single_option_problem([0.1, 0.2, 0.5], [1.0, 1.0, 20.0])
    assert problem.repair(np.zeros(3, dtype=np.int64), 0.7).tolist() == [0, -1, 0]
    assert problem.repair(np.zeros(3, dtype=np.int64), 0.5).tolist() == [-1, -1, 0]
    assert problem.repair(np.zeros(3, dtype=np.int64), 0.3).tolist() == [-1, -1, -1]
    # 0.1 + 0.2 is above 0.3 in floating point.
    pair = single_option_problem([0.1, 0.2], [1.0, 1.0])
    assert pair.repair(np.zeros(2, dtype=np.int64), 0.3).tolist() == [0, -1]
    assert pair.repair(np.zeros(2, dtype=np.int64), 0.30000000000000004).tolist() == [0, 0]


def test_reductions_alone_can_prove_the_lp_rounding_optimal() -> None:
    # a (cost 1, 5), b (1, 3), c (1, 0.5), budget 2: at the budget price 2 (inside the dual
    # optimal range [0.5, 3]) a and b are fixed in, c is fixed out, and the bound is 8 = a + b.
    problem = single_option_problem([1.0, 1.0, 1.0], [5.0, 3.0, 0.5])
    incumbent = np.array([0, 0, -1])
    bound = problem.dual(2.0, 2.0)
    assert bound == 8.0
    choice, method, status, core = audiences._solve_core(
        problem, 2.0, 2.0, bound, incumbent, deadline=float("inf")
    )
    assert choice.tolist() == [0, 0, -1]
    assert (method, status, core) == ("lp-rounding", "optimal", 0)

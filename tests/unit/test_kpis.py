"""Retention KPIs on tiny hand-made worlds with exact expected values.

The main world runs January-April 2024 (as of 2024-05-01). MRR snapshots at each month start:

========  =====  =====  =====  =====  =====
account   Jan 1  Feb 1  Mar 1  Apr 1  May 1
========  =====  =====  =====  =====  =====
A         100    150    150    120    120    expansion Jan, contraction Mar
B         200    200    200    200    200    300 from Feb 10 to Feb 20: nets out in Feb
C         100    100    100    130    130    180 Mar 10-20 then 130: net expansion 30 in Mar
D         50     50     -      60     60     ends Feb 15 (churn), returns Mar 10 (reactivation)
E         -      -      80     80     80     signs up Feb 5 (new)
F         40     40     40     40     40     cancels Jan 10, returns Jan 20: no movement
G         0      0      25     25     25     free plan, paid from Mar 1 (new MRR, not a new logo)
H         70     70     70     -      -      ends Apr 1 (churn in March)
L         -      10     -      -      -      signs up Jan 10, ends Mar 1
========  =====  =====  =====  =====  =====

(``-`` = no active subscription; G is an active customer with 0 MRR in Jan and Feb.)
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from churnlab import kpi_outputs, kpis
from churnlab.config import DataParams, KpiParams
from churnlab.load import connect_frames
from churnlab.schema import TABLES

NaN = float("nan")
T = pd.Timestamp


def _ts(values: list) -> pd.Series:
    return pd.Series(pd.to_datetime(values, format="ISO8601"), dtype="datetime64[us]")


def _accounts(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": pd.Series([r[0] for r in rows], dtype=str),
            "created_at": _ts([r[1] for r in rows]),
        }
    )


def _subs(rows: list[tuple[str, str, str | None, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": pd.Series([r[0] for r in rows], dtype=str),
            "start_at": _ts([r[1] for r in rows]),
            "end_at": _ts([r[2] for r in rows]),
            "mrr": pd.Series([r[3] for r in rows], dtype="float64"),
        }
    )


def _orders(rows: list[tuple[str, str, float, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": pd.Series([r[0] for r in rows], dtype=str),
            "ordered_at": _ts([r[1] for r in rows]),
            "amount": pd.Series([r[2] for r in rows], dtype="float64"),
            "kind": pd.Series([r[3] for r in rows], dtype=str),
        }
    )


ACCOUNTS = _accounts(
    [(a, "2023-06-01") for a in "ABCDFGH"]
    + [("E", "2024-02-05"), ("K", "2024-01-20"), ("L", "2024-01-10")]
)
SUBSCRIPTIONS = _subs(
    [
        ("A", "2024-01-01", "2024-02-01", 100.0),
        ("A", "2024-02-01", "2024-04-01", 150.0),
        ("A", "2024-04-01", None, 120.0),
        ("B", "2024-01-01", "2024-02-10", 200.0),
        ("B", "2024-02-10", "2024-02-20", 300.0),
        ("B", "2024-02-20", None, 200.0),
        ("C", "2024-01-01", "2024-03-10", 100.0),
        ("C", "2024-03-10", "2024-03-20", 180.0),
        ("C", "2024-03-20", None, 130.0),
        ("D", "2024-01-01", "2024-02-15", 50.0),
        ("D", "2024-03-10", None, 60.0),
        ("E", "2024-02-05", None, 80.0),
        ("F", "2024-01-01", "2024-01-10", 40.0),
        ("F", "2024-01-20", None, 40.0),
        ("G", "2024-01-01", "2024-03-01", 0.0),
        ("G", "2024-03-01", None, 25.0),
        ("H", "2024-01-01", "2024-04-01", 70.0),
        ("L", "2024-01-10", "2024-03-01", 10.0),
    ]
)
ORDERS = _orders(
    [
        ("A", "2024-01-15", 500.0, "upsell"),
        ("E", "2024-02-10", 100.0, "cross_sell"),
        ("E", "2024-02-25", 30.0, "refund"),  # recorded positive: still reduces revenue
        ("A", "2024-03-05", 200.0, "services"),
        ("A", "2024-03-20", -50.0, "refund"),
        ("B", "2024-04-02", 10.0, None),
        ("A", "2024-04-10", 60.0, "services"),
    ]
)
NPS = pd.DataFrame(
    {
        "account_id": pd.Series(list("ABCDEG"), dtype=str),
        "responded_at": _ts(
            ["2024-01-05", "2024-01-06", "2024-01-07", "2024-01-08", "2024-03-03", "2024-04-04"]
        ),
        "score": pd.Series([10, 9, 7, 3, 6, 8], dtype="float64"),
        "comment": pd.Series(["great", None, "   ", "too pricey", "", None], dtype=str),
    }
)
_CAMPAIGN_ROWS = [
    # c1, January: A (sent twice, opened twice, clicked), D (click only, in February),
    # F (unsubscribes), K (never a customer: excluded).
    ("A", "2024-01-05", "c1", "sent"),
    ("A", "2024-01-06", "c1", "sent"),
    ("A", "2024-01-06", "c1", "open"),
    ("A", "2024-01-07", "c1", "open"),
    ("A", "2024-01-07", "c1", "click"),
    ("D", "2024-01-05", "c1", "sent"),
    ("D", "2024-02-02", "c1", "click"),
    ("F", "2024-01-05", "c1", "sent"),
    ("F", "2024-01-06", "c1", "unsubscribe"),
    ("K", "2024-01-05", "c1", "sent"),
    ("K", "2024-01-06", "c1", "open"),
    # c2, March: D is between subscriptions on Mar 5 (excluded), B opens, E does nothing;
    # an open without any send (G) is not counted.
    ("D", "2024-03-05", "c2", "sent"),
    ("D", "2024-03-06", "c2", "open"),
    ("B", "2024-03-05", "c2", "sent"),
    ("B", "2024-03-06", "c2", "open"),
    ("E", "2024-03-05", "c2", "sent"),
    ("G", "2024-03-06", "c2", "open"),
]
CAMPAIGNS = pd.DataFrame(
    {
        "account_id": pd.Series([r[0] for r in _CAMPAIGN_ROWS], dtype=str),
        "occurred_at": _ts([r[1] for r in _CAMPAIGN_ROWS]),
        "campaign_id": pd.Series([r[2] for r in _CAMPAIGN_ROWS], dtype=str),
        "action": pd.Series([r[3] for r in _CAMPAIGN_ROWS], dtype=str),
    }
)
TICKETS = pd.DataFrame(
    {
        "account_id": pd.Series(list("ABC"), dtype=str),
        "opened_at": _ts(["2024-01-03", "2024-01-04", "2024-03-04"]),
        "csat": pd.Series([4.0, None, 2.0], dtype="float64"),
    }
)
AS_OF = dt.datetime(2024, 5, 1)
MONTHS = [T("2024-01-01"), T("2024-02-01"), T("2024-03-01"), T("2024-04-01")]


def _world(**drop: bool) -> dict[str, pd.DataFrame]:
    frames = {
        "accounts": ACCOUNTS,
        "subscriptions": SUBSCRIPTIONS,
        "orders": ORDERS,
        "nps": NPS,
        "campaign_events": CAMPAIGNS,
        "tickets": TICKETS,
    }
    return {k: v for k, v in frames.items() if not drop.get(k, False)}


def _compute(frames: dict[str, pd.DataFrame], as_of: dt.datetime | None = AS_OF, **kw) -> dict:
    con = connect_frames(frames)
    return kpis.compute(con, KpiParams(**kw), DataParams(as_of=as_of))


@pytest.fixture(scope="module")
def result() -> dict[str, pd.DataFrame]:
    return _compute(_world())


def _col(result: dict, name: str) -> list[float]:
    return result["monthly"][name].tolist()


def _assert_values(actual: list[float], expected: list[float]) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        if isinstance(e, float) and math.isnan(e):
            assert math.isnan(a), (actual, expected)
        else:
            assert a == pytest.approx(e, rel=1e-12, abs=1e-12), (actual, expected)


def test_period_grid_and_flags(result):
    m = result["monthly"]
    assert list(m.index) == MONTHS
    assert m.index.name == "period"
    assert not m["partial"].any()
    assert list(m["period_end"]) == [*MONTHS[1:], T("2024-05-01")]
    info = result["info"].iloc[0]
    assert info["mode"] == "contractual"
    assert info["latest_complete"] == T("2024-04-01")
    assert info["observed_from"] == T("2024-01-01")


def test_logo_churn_and_retention(result):
    _assert_values(_col(result, "customers_start"), [7, 8, 7, 7])
    _assert_values(_col(result, "customers_end"), [8, 7, 7, 7])
    _assert_values(_col(result, "new_customers"), [1, 1, 1, 0])  # L; E; D returns
    _assert_values(_col(result, "churned"), [0, 2, 1, 0])  # -; D, L; H
    _assert_values(_col(result, "churn_rate"), [0.0, 2 / 8, 1 / 7, 0.0])
    _assert_values(_col(result, "retention_rate"), [1.0, 6 / 8, 6 / 7, 1.0])


def test_mrr_movements_exact(result):
    _assert_values(_col(result, "start_mrr"), [560, 620, 665, 655])
    # January: A +50, L new. February: D and L churn, E new, G's first paid month is new MRR,
    # B's plan change inside the month nets out. March: A -30, C +30 net of its mid-month spike,
    # D reactivates, H churns.
    _assert_values(_col(result, "new_mrr"), [10, 80 + 25, 0, 0])
    _assert_values(_col(result, "expansion_mrr"), [50, 0, 30, 0])
    _assert_values(_col(result, "contraction_mrr"), [0, 0, 30, 0])
    _assert_values(_col(result, "churned_mrr"), [0, 60, 70, 0])
    _assert_values(_col(result, "reactivation_mrr"), [0, 0, 60, 0])
    _assert_values(_col(result, "end_mrr"), [620, 665, 655, 655])


def test_mrr_bridge_holds(result):
    m = result["monthly"]
    bridge = (
        m["start_mrr"]
        + m["new_mrr"]
        + m["expansion_mrr"]
        - m["contraction_mrr"]
        - m["churned_mrr"]
        + m["reactivation_mrr"]
    )
    assert (bridge == m["end_mrr"]).all()
    # Each period's end is the next period's start.
    assert (m["end_mrr"].iloc[:-1].to_numpy() == m["start_mrr"].iloc[1:].to_numpy()).all()


def test_grr_nrr(result):
    _assert_values(_col(result, "grr"), [1.0, 560 / 620, 565 / 665, 1.0])
    _assert_values(_col(result, "nrr"), [610 / 560, 560 / 620, 595 / 665, 1.0])
    # Twelve months of history are not observed: undefined, not 0.
    _assert_values(_col(result, "grr_12m"), [NaN] * 4)
    _assert_values(_col(result, "nrr_12m"), [NaN] * 4)


def test_revenue_and_shares(result):
    jan = 100 + 200 + 100 + 50 + 40 * 21 / 31 + 70 + 10 * 22 / 31
    feb = 150 + 6800 / 29 + 100 + 50 * 14 / 29 + 80 * 25 / 29 + 40 + 70 + 10
    mar = 150 + 200 + (100 * 9 + 180 * 10 + 130 * 12) / 31 + 60 * 22 / 31 + 80 + 40 + 25 + 70
    apr = 120 + 200 + 130 + 60 + 80 + 40 + 25
    _assert_values(_col(result, "subscription_revenue"), [jan, feb, mar, apr])
    _assert_values(_col(result, "order_revenue"), [500, 70, 150, 70])
    _assert_values(_col(result, "refunds"), [0, 30, 50, 0])
    _assert_values(_col(result, "upsell_revenue"), [500, 100, 0, 0])
    total = [jan + 500, feb + 70, mar + 150, apr + 70]
    _assert_values(_col(result, "revenue"), total)
    _assert_values(_col(result, "upsell_revenue_share"), [500 / total[0], 100 / total[1], 0.0, 0.0])
    # Not existing at the period start: L in January (created Jan 10), E in February.
    existing = [
        total[0] - 10 * 22 / 31,
        total[1] - 80 * 25 / 29 - 70,
        total[2],
        total[3],
    ]
    _assert_values(
        _col(result, "existing_customer_revenue_share"),
        [e / t for e, t in zip(existing, total, strict=True)],
    )


def test_buyer_metrics_apply_to_orders_only_data(result):
    for name in ("buyers_prev", "active_customer_churn_rate", "repeat_purchase_rate"):
        assert result["monthly"][name].isna().all(), name
    # The same orders without subscriptions. Observation now starts Jan 3 (the first ticket), so
    # January is partial and February has no complete previous month.
    m = _compute(_world(subscriptions=True))["monthly"]
    assert list(m["partial"]) == [True, False, False, False]
    _assert_values(m["buyers_prev"].tolist(), [NaN, NaN, 1, 1])
    _assert_values(m["buyers_retained"].tolist(), [NaN, NaN, 0, 1])
    _assert_values(m["active_customer_churn_rate"].tolist(), [NaN, NaN, 1.0, 0.0])
    _assert_values(m["spend_retention"].tolist(), [NaN, NaN, 0.0, 60 / 150])
    _assert_values(m["buyers"].tolist(), [1, 1, 1, 2])
    _assert_values(m["repeat_purchase_rate"].tolist(), [0.0, 0.0, 1.0, 0.5])
    # Current customers for campaigns: an earlier order. c1 (Jan 5) reached nobody; of c2
    # (Mar 5) only E (ordered Feb 10) counts: B's first order is in April, D never ordered.
    _assert_values(m["campaign_sent"].tolist(), [0, 0, 1, 0])
    _assert_values(m["open_rate"].tolist(), [NaN, NaN, 0.0, NaN])


def test_nps(result):
    _assert_values(_col(result, "nps_responses"), [4, 0, 1, 1])
    _assert_values(_col(result, "promoters"), [2, 0, 0, 0])
    _assert_values(_col(result, "passives"), [1, 0, 0, 1])
    _assert_values(_col(result, "detractors"), [1, 0, 1, 0])
    _assert_values(_col(result, "nps_comments"), [2, 0, 0, 0])  # blank comments do not count
    _assert_values(_col(result, "nps"), [25.0, NaN, -100.0, 0.0])


def test_campaign_rates(result):
    _assert_values(_col(result, "campaign_sent"), [3, 0, 2, 0])
    _assert_values(_col(result, "campaign_opened"), [2, 0, 1, 0])
    _assert_values(_col(result, "campaign_clicked"), [2, 0, 0, 0])
    _assert_values(_col(result, "campaign_unsubscribed"), [1, 0, 0, 0])
    _assert_values(_col(result, "open_rate"), [2 / 3, NaN, 0.5, NaN])
    _assert_values(_col(result, "click_rate"), [2 / 3, NaN, 0.0, NaN])


def test_tickets(result):
    _assert_values(_col(result, "tickets_opened"), [2, 0, 1, 0])
    _assert_values(_col(result, "csat_mean"), [4.0, NaN, 2.0, NaN])


def test_cohorts(result):
    c = result["cohorts"]
    got = {
        (pd.Timestamp(r.cohort), r.periods_since_signup): (r.cohort_size, r.retained)
        for r in c.itertuples()
    }
    jan, feb = T("2024-01-01"), T("2024-02-01")
    # January cohort: K (never subscribed) and L (active at Feb 1 only); February: E.
    assert got == {
        (jan, 0): (2, 1),
        (jan, 1): (2, 0),
        (jan, 2): (2, 0),
        (jan, 3): (2, 0),
        (feb, 0): (1, 1),
        (feb, 1): (1, 1),
        (feb, 2): (1, 1),
    }
    assert c.loc[(c.cohort == jan) & (c.periods_since_signup == 0), "retention"].item() == 0.5


def test_metric_catalogue_labels_kinds(result):
    cat = result["metrics"].set_index("name")
    assert set(cat["kind"]) == {"outcome", "activity"}
    assert cat.loc["churn_rate", "kind"] == "outcome"
    assert cat.loc["nrr", "kind"] == "outcome"
    assert cat.loc["open_rate", "kind"] == "activity"
    assert cat.loc["tickets_opened", "kind"] == "activity"
    assert set(cat.index[~cat["applicable"]]) == {
        "buyers_prev",
        "buyers_retained",
        "active_customer_churn_rate",
        "buyers",
        "repeat_buyers",
        "repeat_purchase_rate",
        "spend_retention",
    }
    assert list(cat.index) == [
        c for c in result["monthly"].columns if c not in ("period_end", "partial")
    ]


def test_all_metric_columns_are_float(result):
    m = result["monthly"]
    for metric in kpis.METRICS:
        assert m[metric.name].dtype == np.float64, metric.name


def test_partial_last_period_is_flagged_and_clipped():
    res = _compute(_world(), as_of=dt.datetime(2024, 4, 15))
    m = res["monthly"]
    assert list(m["partial"]) == [False, False, False, True]
    assert res["info"]["latest_complete"].iloc[0] == T("2024-03-01")
    assert kpi_outputs.latest_complete(res).name == T("2024-03-01")
    # April to date: snapshots at Apr 1 and Apr 15, nothing changed.
    assert m.loc[T("2024-04-01"), "end_mrr"] == 655
    # Only the observed half of April is billed.
    assert m.loc[T("2024-04-01"), "subscription_revenue"] == pytest.approx(655 * 14 / 30)
    # Cohort cells need complete periods.
    assert res["cohorts"]["period"].max() == T("2024-03-01")


TIME = {t.name: t.time_column for t in TABLES.values()}


def test_inferred_end_makes_the_last_month_partial():
    # Without as_of, observation ends at the end of the last day that the tables defining labels
    # (subscriptions and orders) cover, Apr 1 here; later rows of other tables (tickets to Apr 10)
    # do not extend it (churnlab.coverage). April is partial.
    res = _compute(_world(), as_of=None)
    assert list(res["monthly"]["partial"]) == [False, False, False, True]
    assert res["info"]["observed_to"].iloc[0] == T("2024-04-02")
    frames = _world()
    last = {t: frames[t][TIME[t]].max() for t in ("subscriptions", "orders")}
    assert min(last.values()) < T("2024-04-02") <= max(f[TIME[t]].max() for t, f in frames.items())


def test_partial_first_period_when_data_starts_mid_month():
    frames = {
        "accounts": _accounts([("A", "2024-01-15")]),
        "subscriptions": _subs([("A", "2024-01-15", None, 10.0)]),
    }
    res = _compute(frames, as_of=dt.datetime(2024, 3, 1))
    m = res["monthly"]
    assert list(m["partial"]) == [True, False]
    # The partial month is measured from the first observed instant: A is already there.
    assert m["start_mrr"].tolist() == [10.0, 10.0]
    assert m["new_mrr"].tolist() == [0.0, 0.0]
    assert res["info"]["latest_complete"].iloc[0] == T("2024-02-01")


def test_no_customers_at_start_is_undefined_not_zero():
    frames = {
        "accounts": _accounts([("P", "2023-12-01")]),
        "subscriptions": _subs([("P", "2024-01-01", "2024-01-15", 10.0)]),
    }
    m = _compute(frames, as_of=dt.datetime(2024, 3, 1))["monthly"]
    _assert_values(m["customers_start"].tolist(), [1, 0])
    _assert_values(m["churned"].tolist(), [1, 0])
    _assert_values(m["churn_rate"].tolist(), [1.0, NaN])
    _assert_values(m["retention_rate"].tolist(), [0.0, NaN])
    _assert_values(m["start_mrr"].tolist(), [10, 0])
    _assert_values(m["grr"].tolist(), [0.0, NaN])
    _assert_values(m["nrr"].tolist(), [0.0, NaN])
    # No orders table: order metrics do not apply.
    assert m["upsell_revenue_share"].isna().all()
    assert m["active_customer_churn_rate"].isna().all()
    # February had no revenue at all: shares are undefined.
    assert math.isnan(m["existing_customer_revenue_share"].iloc[1])


def test_trailing_twelve_months():
    frames = {
        "accounts": _accounts([(a, "2022-12-01") for a in "XYZW"]),
        "subscriptions": _subs(
            [
                ("X", "2023-01-01", "2023-07-01", 100.0),
                ("X", "2023-07-01", None, 150.0),  # expands
                ("Y", "2023-01-01", "2023-03-01", 100.0),
                ("Y", "2023-12-01", None, 40.0),  # leaves and returns smaller: contraction
                ("Z", "2023-01-01", "2023-10-01", 100.0),  # churns
                ("W", "2023-05-01", None, 500.0),  # new within the window: excluded
            ]
        ),
    }
    m = _compute(frames, as_of=dt.datetime(2024, 1, 1))["monthly"]
    dec = T("2023-12-01")
    assert m.loc[dec, "grr_12m"] == pytest.approx(140 / 300, rel=1e-12)
    assert m.loc[dec, "nrr_12m"] == pytest.approx(190 / 300, rel=1e-12)
    assert m.drop(index=dec)[["grr_12m", "nrr_12m"]].isna().all().all()


def test_orders_only_world():
    frames = {
        "accounts": _accounts([("A", "2023-12-20"), ("B", "2024-01-10"), ("C", "2024-02-03")]),
        "orders": _orders(
            [
                ("A", "2024-01-01 10:00", 100.0, None),
                ("B", "2024-01-10", 50.0, None),
                ("A", "2024-02-05", 80.0, None),
                ("C", "2024-02-03", 20.0, None),
                ("B", "2024-02-20", -10.0, "refund"),
                ("C", "2024-03-01", 30.0, "upsell"),
            ]
        ),
    }
    res = _compute(frames, as_of=dt.datetime(2024, 4, 1))
    m = res["monthly"]
    assert res["info"]["mode"].iloc[0] == "orders"
    for name in (
        "churn_rate",
        "start_mrr",
        "grr",
        "nrr",
        "grr_12m",
        "customers_start",
        "subscription_revenue",
        "new_mrr",
    ):
        assert m[name].isna().all(), name
    cat = res["metrics"].set_index("name")
    assert not cat.loc["churn_rate", "applicable"]
    assert cat.loc["active_customer_churn_rate", "applicable"]
    # Feb: of {A, B} only A ordered again. Mar: of {A, C} only C.
    _assert_values(m["buyers_prev"].tolist(), [NaN, 2, 2])
    _assert_values(m["active_customer_churn_rate"].tolist(), [NaN, 0.5, 0.5])
    # Spend: B's refund counts against Feb. Mar: A 0 + C 30 against A 80 + C 20.
    _assert_values(m["spend_retention"].tolist(), [NaN, 70 / 150, 30 / 100])
    _assert_values(m["repeat_purchase_rate"].tolist(), [0.0, 0.5, 1.0])
    _assert_values(m["order_revenue"].tolist(), [150, 90, 30])
    _assert_values(m["upsell_revenue_share"].tolist(), [0.0, 0.0, 1.0])
    # Existing = created before the period start: A in Jan; A and B in Feb; everyone in Mar.
    _assert_values(m["existing_customer_revenue_share"].tolist(), [100 / 150, 70 / 90, 1.0])
    c = res["cohorts"]
    got = {
        (pd.Timestamp(r.cohort).month, r.periods_since_signup): r.retained for r in c.itertuples()
    }
    assert got == {(1, 0): 1, (1, 1): 0, (1, 2): 0, (2, 0): 1, (2, 1): 1}
    # Without any order marked upsell or cross_sell (a retailer's purchases, or no kind
    # column), upsell revenue cannot be told apart: NaN and not applicable, not 0%.
    orders = frames["orders"]
    frames["orders"] = orders.assign(kind=orders["kind"].replace("upsell", None))
    res = _compute(frames, as_of=dt.datetime(2024, 4, 1))
    assert res["monthly"]["upsell_revenue_share"].isna().all()
    assert res["monthly"]["upsell_revenue"].isna().all()
    cat = res["metrics"].set_index("name")
    assert not cat.loc["upsell_revenue_share", "applicable"]
    assert cat.loc["upsell_revenue_share", "applies_to"] == "upsell_orders"
    assert cat.loc["spend_retention", "applicable"]


def test_quarterly_periods():
    res = _compute(_world(), period="quarter", as_of=dt.datetime(2024, 7, 1))
    m = res["monthly"]
    assert list(m.index) == [T("2024-01-01"), T("2024-04-01")]
    # Q1 compares Jan 1 with Apr 1: everything inside the quarter nets out.
    q1 = m.loc[T("2024-01-01")]
    assert (q1["start_mrr"], q1["end_mrr"]) == (560, 655)
    assert q1["churned"] == 1  # H (D churned and returned within the quarter)
    assert q1["new_mrr"] == 80 + 25  # E and G; L came and went inside the quarter
    # A 100 -> 120, C 100 -> 130, and D 50 -> 60: D paid at both ends, so not a reactivation.
    assert q1["expansion_mrr"] == 20 + 30 + 10
    assert q1["reactivation_mrr"] == 0 and q1["contraction_mrr"] == 0
    assert q1["churned_mrr"] == 70


def test_date_range_and_weeks():
    res = _compute(
        _world(), period="week", date_from=dt.date(2024, 2, 1), date_to=dt.date(2024, 2, 14)
    )
    m = res["monthly"]
    # ISO weeks (Mondays) overlapping Feb 1-14: Jan 29, Feb 5, Feb 12.
    assert list(m.index) == [T("2024-01-29"), T("2024-02-05"), T("2024-02-12")]
    # E starts at Feb 5 00:00, the instant that ends the week of Jan 29: new in that week.
    assert m.loc[T("2024-01-29"), "new_mrr"] == 80
    assert m.loc[T("2024-02-05"), "new_mrr"] == 0
    assert m.loc[T("2024-02-12"), "churned"] == 1  # D ends Feb 15


def test_empty_range_and_missing_tables_raise():
    with pytest.raises(kpis.KpiError, match="widen --from/--to"):
        _compute(_world(), date_from=dt.date(2030, 1, 1))
    with pytest.raises(kpis.KpiError, match="subscriptions / orders"):
        _compute({"accounts": ACCOUNTS, "nps": NPS})


def test_compute_leaves_the_connection_clean():
    con = connect_frames(_world())
    before = con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()
    kpis.compute(con, KpiParams(), DataParams(as_of=AS_OF))
    after = con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()
    assert before == after


def test_rows_ending_at_the_as_of_date_have_ended():
    # Monthly billing rows, data as of Apr 1. A continues: its paid-through April row starts at
    # the as-of date. C's last row ends exactly at the as-of date: C churned in March.
    frames = {
        "accounts": _accounts([(a, "2023-12-01") for a in "ABC"]),
        "subscriptions": _subs(
            [
                ("A", "2024-01-01", "2024-02-01", 10.0),
                ("A", "2024-02-01", "2024-03-01", 10.0),
                ("A", "2024-03-01", "2024-04-01", 12.0),
                ("A", "2024-04-01", "2024-05-01", 12.0),
                ("B", "2024-01-01", "2024-02-01", 20.0),
                ("B", "2024-02-01", "2024-03-01", 20.0),
                ("C", "2024-01-01", "2024-04-01", 5.0),
            ]
        ),
    }
    res = _compute(frames, as_of=dt.datetime(2024, 4, 1))
    m = res["monthly"]
    assert list(m.index) == MONTHS[:3] and not m["partial"].any()
    _assert_values(m["churned"].tolist(), [0, 1, 1])
    _assert_values(m["churn_rate"].tolist(), [0.0, 1 / 3, 1 / 2])
    _assert_values(m["expansion_mrr"].tolist(), [0, 2, 0])  # A's March price, seen at Mar 1
    _assert_values(m["churned_mrr"].tolist(), [0, 20, 5])
    _assert_values(m["end_mrr"].tolist(), [35, 17, 12])
    # The paid-through row bills nothing inside the observed months.
    _assert_values(m["subscription_revenue"].tolist(), [35, 35, 17])
    # Without as_of the observation runs to midnight after the latest row (Apr 1): April is a
    # one-day partial period and March stays complete.
    res = _compute(frames, as_of=None)
    assert list(res["monthly"]["partial"]) == [False, False, False, True]
    assert res["monthly"]["churned"].tolist()[:3] == [0, 1, 1]


def test_existing_customer_revenue_counts_from_the_first_subscription_not_the_sign_up():
    # Y signs up mid-January and starts paying on February 1st: in February its revenue is a
    # new customer's (issue 13: the share was 100% in every month when sign-ups preceded the
    # first payment). X pays from the first observed day and was created before: existing.
    frames = {
        "accounts": _accounts([("X", "2023-06-01"), ("Y", "2024-01-15")]),
        "subscriptions": _subs([("X", "2024-01-01", None, 100.0), ("Y", "2024-02-01", None, 50.0)]),
    }
    m = _compute(frames, as_of=dt.datetime(2024, 4, 1))["monthly"]
    _assert_values(m["existing_customer_revenue_share"].tolist(), [1.0, 100 / 150, 1.0])

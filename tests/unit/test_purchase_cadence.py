"""Purchase-cadence features of the orders table, exact on tiny hand-made tables.

Cutoff 2024-04-01, windows 7 and 30 days, long windows (orders) 180 and 365 days: the windows
start 2024-03-25, 2024-03-02, 2023-10-04 and 2023-04-02. Refunds never count; an order exactly
at the cutoff does not count, one a microsecond before does. Gaps between order days are in
whole calendar days; the mean gap is first to last order (exact instants) over the gaps.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churnlab import feature_windows as fw
from churnlab import features, load, spine
from churnlab.config import DatasetParams

T = dt.datetime(2024, 4, 1)
PARAMS = DatasetParams(windows=(7, 30))
DAY_US = 86_400_000_000
NAN = float("nan")
WINDOWS = (7, 30, 180, 365)
NEW = [
    *(f"{m}_{w}d" for w in WINDOWS for m in ("orders", "spend", "order_days")),
    "order_days_lifetime", "days_since_first_order", "mean_order_value_lifetime",
    "last_order_value", "mean_gap_days", "gap_spread_days", "overdue_ratio",
    "spend_trend_7d", "spend_trend_30d", "spend_trend_180d",
]  # fmt: skip
"""The features this family adds or extends (orders and spend existed for 7 and 30 days)."""


def ts(*values: object) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), format="ISO8601"), dtype="datetime64[us]")


ORDERS = [
    # no purchase before the cutoff: a refund, and an order exactly at the cutoff
    ("zero", "2024-03-15 09:00", -20.0, "refund"),
    ("zero", "2024-04-01 00:00", 50.0, "new"),
    # one order day: two orders on it (the last one 1 us before the cutoff) and a refund
    ("one", "2024-03-31 08:00", 5.0, "renewal"),
    ("one", "2024-03-31 23:59:59.999999", 10.0, "new"),
    ("one", "2024-03-31 12:00", -3.0, "refund"),
    # two order days, 274 days apart; the older inside 365 days only
    ("two", "2023-06-01 12:00", 100.0, "new"),
    ("two", "2024-03-01 00:00", 50.0, "renewal"),
    ("two", "2024-03-01 18:00", 25.0, "upsell"),
    # three order days, gaps 10 and 80 days; a refund on the last one and an older one
    ("three", "2023-12-01 00:00", -10.0, "refund"),
    ("three", "2024-01-01 10:00", 30.0, "new"),
    ("three", "2024-01-11 10:00", 60.0, "renewal"),
    ("three", "2024-03-31 10:00", 90.0, "renewal"),
    ("three", "2024-03-31 15:00", -40.0, "refund"),
    # four order days a week apart: gaps 7, 7, 7 (no spread)
    *(("steady", f"2024-03-{d:02d} 12:00", 10.0, "renewal") for d in (1, 8, 15, 22)),
    # orders near midnight: calendar gaps 2 and 8 days, instants 9 days 13 hours apart
    ("late", "2024-03-10 23:00", 20.0, "new"),
    ("late", "2024-03-12 01:00", 20.0, "renewal"),
    ("late", "2024-03-20 12:00", 20.0, "renewal"),
    # only orders long before every window (2022-05-01 twice, 2023-01-01)
    ("old", "2022-05-01 09:00", 40.0, "new"),
    ("old", "2022-05-01 15:00", 2.0, "renewal"),
    ("old", "2023-01-01 00:00", 8.0, "renewal"),
]


def orders(rows=ORDERS) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": [r[0] for r in rows],
            "ordered_at": ts(*[r[1] for r in rows]),
            "amount": [r[2] for r in rows],
            "kind": [r[3] for r in rows],
            "product": ["p"] * len(rows),
        }
    )


def accounts(ids) -> pd.DataFrame:
    return pd.DataFrame({"account_id": list(ids), "created_at": ts(*["2021-01-01"] * len(ids))})


def compute(frames, cutoffs=(T,), params: DatasetParams = PARAMS):
    con = load.connect_frames(frames)
    ids = sorted(frames["accounts"]["account_id"])
    sp = pd.DataFrame(
        [(a, c) for a in ids for c in cutoffs], columns=["account_id", "cutoff"]
    ).astype({"cutoff": "datetime64[us]"})
    frame, feats = features.compute(con, sp, params)
    return frame, {f.name: f for f in feats}


def check(row: pd.Series, expected: dict[str, float], who: str) -> None:
    for name, value in expected.items():
        got = row[name]
        if np.isnan(value):
            assert np.isnan(got), f"{who} {name}: {got}"
        else:
            assert got == pytest.approx(value, rel=1e-12, abs=1e-12), f"{who} {name}: {got}"


def zeros(**kw: float) -> dict[str, float]:
    """Every windowed count and sum 0, every other new feature missing, then ``kw``."""
    out = {f"{m}_{w}d": 0.0 for w in WINDOWS for m in ("orders", "spend", "order_days")}
    out |= {n: NAN for n in NEW if n not in out}
    out["order_days_lifetime"] = 0.0
    return out | kw


EXPECTED = {
    "zero": zeros(),
    "one": zeros(
        orders_7d=2, spend_7d=15, order_days_7d=1,
        orders_30d=2, spend_30d=15, order_days_30d=1,
        orders_180d=2, spend_180d=15, order_days_180d=1,
        orders_365d=2, spend_365d=15, order_days_365d=1,
        order_days_lifetime=1, days_since_first_order=16 / 24,
        mean_order_value_lifetime=7.5, last_order_value=15,
    ),
    "two": zeros(
        orders_180d=2, spend_180d=75, order_days_180d=1,
        orders_365d=3, spend_365d=175, order_days_365d=2,
        order_days_lifetime=2,
        days_since_first_order=304.5,  # 2023-06-01 12:00 -> 2024-04-01: 305 days - 12 h
        mean_order_value_lifetime=175 / 3,
        last_order_value=75,  # both orders of 2024-03-01
        mean_gap_days=304.5 - 30.25,  # last order 2024-03-01 18:00: 30.25 days before
        overdue_ratio=30.25 / 274.25,
        spend_trend_30d=-1.0,  # nothing in 30 days against 75 in the 150 before
        spend_trend_180d=(75 / 180) / (100 / 185) - 1,
    ),
    "three": zeros(
        orders_7d=1, spend_7d=90, order_days_7d=1,
        orders_30d=1, spend_30d=90, order_days_30d=1,
        orders_180d=3, spend_180d=180, order_days_180d=3,
        orders_365d=3, spend_365d=180, order_days_365d=3,
        order_days_lifetime=3,
        days_since_first_order=91 - 10 / 24,
        mean_order_value_lifetime=60,
        last_order_value=90,  # the refund of the same day does not count
        mean_gap_days=45,  # (90 days 0 h) / 2
        gap_spread_days=70 / np.sqrt(2),  # sample std of [10, 80]
        overdue_ratio=(14 / 24) / 45,
        spend_trend_30d=(90 / 30) / (90 / 150) - 1,
    ),
    "steady": zeros(
        orders_30d=3, spend_30d=30, order_days_30d=3,
        orders_180d=4, spend_180d=40, order_days_180d=4,
        orders_365d=4, spend_365d=40, order_days_365d=4,
        order_days_lifetime=4, days_since_first_order=30.5,
        mean_order_value_lifetime=10, last_order_value=10,
        mean_gap_days=7, gap_spread_days=0.0, overdue_ratio=9.5 / 7,
        spend_trend_7d=-1.0, spend_trend_30d=(30 / 30) / (10 / 150) - 1,
    ),
    "late": zeros(
        orders_30d=3, spend_30d=60, order_days_30d=3,
        orders_180d=3, spend_180d=60, order_days_180d=3,
        orders_365d=3, spend_365d=60, order_days_365d=3,
        order_days_lifetime=3,
        days_since_first_order=21 + 1 / 24,
        mean_order_value_lifetime=20, last_order_value=20, spend_trend_7d=-1.0,
        mean_gap_days=(9 + 13 / 24) / 2,  # exact instants, first to last
        gap_spread_days=np.sqrt(18),  # calendar days: gaps 2 and 8
        overdue_ratio=11.5 / ((9 + 13 / 24) / 2),
    ),
    "old": zeros(
        order_days_lifetime=2,
        days_since_first_order=701 - 9 / 24,  # 2022-05-01 09:00
        mean_order_value_lifetime=50 / 3,
        last_order_value=8,
        mean_gap_days=(701 - 9 / 24) - 456,  # 2023-01-01 is 456 days before the cutoff
        overdue_ratio=456 / ((701 - 9 / 24) - 456),
    ),
}  # fmt: skip


@pytest.mark.parametrize("dense", [False, True], ids=["sorted", "dense"])
def test_cadence_features_exact(dense, monkeypatch):
    if dense:  # the path for large tables: dense (segment, account) grids
        monkeypatch.setattr(fw, "SORT_ROWS", 0)
    frame, _ = compute({"accounts": accounts(EXPECTED), "orders": orders()})
    by = frame.set_index("account_id")
    for who, expected in EXPECTED.items():
        check(by.loc[who], expected, who)
    # the lifetime totals the ratios divide agree with the rows
    assert by.loc["two", "orders_lifetime"] == 3 and by.loc["old", "spend_lifetime"] == 50


def test_each_cutoff_sees_only_its_own_past():
    """One spine, three cutoffs: each row equals the hand count at its own cutoff."""
    three = [r for r in ORDERS if r[0] == "three"]
    frame, _ = compute(
        {"accounts": accounts(["three"]), "orders": orders(three)},
        cutoffs=(dt.datetime(2024, 1, 11), dt.datetime(2024, 1, 15), T),
    )
    by = frame.set_index("cutoff")
    # 2024-01-11 00:00: the order at 10:00 that day is not seen yet
    check(
        by.loc["2024-01-11"],
        {
            "order_days_lifetime": 1,
            "last_order_value": 30,
            "days_since_first_order": 10 - 10 / 24,
            "mean_gap_days": NAN,
            "gap_spread_days": NAN,
        },
        "01-11",
    )
    check(
        by.loc["2024-01-15"],
        {
            "order_days_lifetime": 2,
            "last_order_value": 60,
            "mean_gap_days": 10,
            "gap_spread_days": NAN,
            "overdue_ratio": (4 - 10 / 24) / 10,
            "orders_7d": 1,
        },
        "01-15",
    )
    check(by.loc[T], EXPECTED["three"], "04-01")  # fmt: skip


def test_cadence_features_metadata():
    _, feats = compute({"accounts": accounts(EXPECTED), "orders": orders()})
    for name in NEW:
        f = feats[name]
        assert (f.group, f.table, f.family) == ("commercial", "orders", "commercial"), name
        first = f.description.split()[0]
        assert first.islower() and not f.description.endswith("."), f.description
    kinds = {n: feats[n].kind for n in NEW}
    assert {n for n, k in kinds.items() if k == "days"} == {
        "days_since_first_order", "mean_gap_days", "gap_spread_days"
    }  # fmt: skip
    assert {n for n, k in kinds.items() if k == "trend"} == {
        "spend_trend_7d", "spend_trend_30d", "spend_trend_180d"
    }  # fmt: skip
    assert kinds["overdue_ratio"] == "value"  # a multiple of the usual gap, not a share
    assert kinds["last_order_value"] == kinds["mean_order_value_lifetime"] == "amount"
    assert kinds["order_days_365d"] == kinds["order_days_lifetime"] == "count"
    for m in ("orders", "spend", "order_days"):
        assert {feats[f"{m}_{w}d"].measure for w in WINDOWS} == {m}
        assert [feats[f"{m}_{w}d"].window for w in WINDOWS] == list(WINDOWS)
    assert feats["order_days_lifetime"].measure == "order_days"
    assert feats["order_days_lifetime"].window is None
    assert feats["mean_order_value_lifetime"].measure == feats["avg_order_value_30d"].measure
    assert {feats[f"spend_trend_{a}d"].measure for a in (7, 30, 180)} == {"spend_trend"}
    assert feats["days_since_first_order"].description == "days since the first order"
    assert feats["spend_trend_30d"].description == (
        "order spend per day in the last 30 days against the previous 150 days"
    )
    assert feats["order_days_365d"].description == "days with an order in the last 365 days"


def test_without_orders_there_are_no_cadence_features():
    subs = pd.DataFrame(
        {
            "account_id": ["a"],
            "start_at": ts("2024-01-01"),
            "end_at": ts(None),
            "mrr": [100.0],
            "plan": ["basic"],
            "seats": pd.array([3], dtype="Int32"),
        }
    )
    frame, feats = compute({"accounts": accounts(["a"]), "subscriptions": subs})
    assert not [f for f in feats.values() if f.table == "orders"]
    assert not set(NEW) & set(frame.columns)


def test_long_windows_are_per_table_and_optional():
    frames = {"accounts": accounts(EXPECTED), "orders": orders()}
    _, none = compute(frames, params=DatasetParams(windows=(7, 30), long_windows={}))
    assert "orders_180d" not in none and "order_days_365d" not in none
    assert [n for n in none if n.startswith("spend_trend_")] == ["spend_trend_7d"]
    assert "order_days_30d" in none and "gap_spread_days" in none
    frame, other = compute(frames, params=DatasetParams(windows=(7, 30), long_windows={
        "orders": (45,)}))  # fmt: skip
    assert [n for n in other if n.startswith("spend_trend_")] == [
        "spend_trend_7d", "spend_trend_30d"
    ]  # fmt: skip
    by = frame.set_index("account_id")
    assert by.loc["steady", "order_days_45d"] == 4  # 2024-03-01 is 31 days back
    assert by.loc["steady", "spend_trend_30d"] == pytest.approx((30 / 30) / (10 / 15) - 1)
    # the long windows never widen another table's windows
    assert not [n for n in other if n.endswith("_45d") and other[n].table != "orders"]


def test_long_windows_do_not_move_the_first_cutoff():
    con = load.connect_frames({"accounts": accounts(EXPECTED), "orders": orders()})
    end = dt.datetime(2024, 6, 1)
    first_order = dt.datetime(2022, 5, 1, 9)
    with_long = spine.cutoffs(con, DatasetParams(), end, "orders")
    without = spine.cutoffs(con, DatasetParams(long_windows={}), end, "orders")
    assert with_long == without
    # the first month start with a full 90-day window after the first order
    assert with_long[0] == dt.datetime(2022, 8, 1) > first_order + dt.timedelta(days=90)


# --------------------------------------------------------------------------------------------
# Against a direct pandas computation on random order histories at many cutoffs
# --------------------------------------------------------------------------------------------


def _random_orders(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 400
    start = np.datetime64("2022-01-01T00:00:00", "us")
    # bursts: several orders on some days, at random times
    when = start + rng.integers(0, 900, n).astype("timedelta64[D]").astype("timedelta64[us]")
    when += rng.integers(0, DAY_US, n).astype("timedelta64[us]")
    return pd.DataFrame(
        {
            "account_id": np.array([f"x{i}" for i in range(7)])[rng.integers(0, 7, n)],
            "ordered_at": pd.Series(when, dtype="datetime64[us]"),
            "amount": np.round(rng.uniform(1, 500, n), 2),
            "kind": np.array(["new", "renewal", "refund", None], dtype=object)[
                rng.integers(0, 4, n)
            ],
            "product": ["p"] * n,
        }
    )


def _reference(o: pd.DataFrame, account: str, cutoff: pd.Timestamp) -> dict[str, float]:
    buys = o[(o["account_id"] == account) & (o["ordered_at"] < cutoff)]
    buys = buys[buys["kind"].fillna("") != "refund"]
    days = np.array(sorted({d.toordinal() for d in buys["ordered_at"].dt.date}), dtype=float)
    out: dict[str, float] = {}
    spend = {}
    for w in WINDOWS:
        inside = buys[buys["ordered_at"] >= cutoff - pd.Timedelta(days=w)]
        out[f"orders_{w}d"] = len(inside)
        spend[w] = out[f"spend_{w}d"] = float(inside["amount"].sum())
        out[f"order_days_{w}d"] = inside["ordered_at"].dt.date.nunique()
    for a, b in zip(WINDOWS, WINDOWS[1:], strict=False):
        prev = spend[b] - spend[a]
        out[f"spend_trend_{a}d"] = (spend[a] / a) / (prev / (b - a)) - 1 if prev > 0 else NAN
    k = len(days)
    out["order_days_lifetime"] = k
    first = (cutoff - buys["ordered_at"].min()) / pd.Timedelta(days=1) if k else NAN
    last = (cutoff - buys["ordered_at"].max()) / pd.Timedelta(days=1) if k else NAN
    out["days_since_first_order"] = first
    out["mean_order_value_lifetime"] = buys["amount"].mean() if k else NAN
    on_last = buys[buys["ordered_at"].dt.date == buys["ordered_at"].max().date()] if k else buys
    out["last_order_value"] = float(on_last["amount"].sum()) if k else NAN
    gap = (first - last) / (k - 1) if k >= 2 else NAN
    out["mean_gap_days"] = gap
    out["gap_spread_days"] = float(np.std(np.diff(days), ddof=1)) if k >= 3 else NAN
    out["overdue_ratio"] = last / gap if k >= 2 and gap > 0 else NAN
    return out


@pytest.mark.parametrize(
    ("seed", "dense", "first"),
    # from the first order on; from 2023-06 (the windows start 2022-06: older rows count for
    # lifetime features only), through both paths
    [(0, False, "2022-01-01"), (1, False, "2023-06-01"), (2, True, "2022-01-01"),
     (3, True, "2023-06-01")],
)  # fmt: skip
def test_cadence_features_equal_a_direct_computation(seed, dense, first, monkeypatch):
    if dense:
        monkeypatch.setattr(fw, "SORT_ROWS", 0)
    o = _random_orders(seed)
    ids = [*sorted(o["account_id"].unique()), "never"]  # "never" has no order at all
    cutoffs = [pd.Timestamp(c) for c in pd.date_range(first, "2024-08-01", freq="MS")]
    frame, _ = compute({"accounts": accounts(ids), "orders": o}, cutoffs=cutoffs)
    assert frame["gap_spread_days"].notna().sum() > 50  # the cases are really exercised
    assert (frame["order_days_lifetime"] == 0).any()
    for _, row in frame.iterrows():
        check(row, _reference(o, row["account_id"], row["cutoff"]), row["account_id"])

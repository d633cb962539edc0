"""Exact feature values on tiny hand-made tables, one test per family (cutoff 2024-04-01).

Windows are 7 and 30 days: the 7-day window is [2024-03-25, 2024-04-01), the 30-day window
[2024-03-02, 2024-04-01).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churnlab import features, load
from churnlab.config import DatasetParams
from churnlab.schema import DRIVER_GROUPS

T = dt.datetime(2024, 4, 1)
PARAMS = DatasetParams(windows=(7, 30))
DAY_US = 86_400_000_000


def ts(*values: object) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), format="ISO8601"), dtype="datetime64[us]")


def accounts() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d"],
            "created_at": ts("2024-01-01", "2024-02-01", "2024-01-15", "2024-04-01"),
            "segment": ["smb", "ent", "smb", "mid"],
            "employees": [10.0, 500.0, None, 7.0],
        }
    )


def subscriptions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["a", "a", "b", "b", "c"],
            "start_at": ts("2024-01-01", "2024-03-10", "2024-02-01", "2024-03-20", "2024-01-15"),
            "end_at": ts("2024-03-10", None, None, None, "2024-03-25"),
            "mrr": [100.0, 150.0, 80.0, 20.0, 50.0],
            "plan": ["basic", "pro", "basic", "basic", "basic"],
            "seats": pd.array([4, 6, 2, 0, 1], dtype="Int32"),
        }
    )


def events() -> pd.DataFrame:
    rows = [
        ("a", "2024-03-31 23:00", "login", "u1", 2.0),
        ("a", "2024-03-31 10:00", "login", "u1", 1.0),
        ("a", "2024-03-28 12:00", "export", "u2", 5.0),
        ("a", "2024-03-10 09:00", "login", "u3", 1.0),
        ("a", "2024-02-20 09:00", "login", "u1", 3.0),
        ("a", "2024-04-01 00:00", "login", "u9", 7.0),  # at the cutoff: not seen
        ("a", "2024-03-15 00:00", "payment_failed", None, 1.0),  # billing, not product use
    ]
    return pd.DataFrame(
        {
            "account_id": [r[0] for r in rows],
            "occurred_at": ts(*[r[1] for r in rows]),
            "event_type": [r[2] for r in rows],
            "quantity": [r[4] for r in rows],
            "user_id": [r[3] for r in rows],
        }
    )


def orders() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["a"] * 5,
            "ordered_at": ts("2024-03-20", "2024-03-30", "2024-03-31", "2023-12-01", "2024-04-01"),
            "amount": [100.0, 40.0, -30.0, 500.0, 999.0],
            "kind": ["new", "upsell", "refund", "new", "new"],
            "product": ["p"] * 5,
        }
    )


def tickets() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["a", "a", "a"],
            "opened_at": ts("2024-03-05", "2024-03-29", "2024-03-30"),
            "closed_at": ts("2024-03-07", "2024-04-02", None),
            "priority": ["high", "urgent", "normal"],
            "csat": [5.0, 1.0, None],
        }
    )


def campaigns() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["a"] * 6,
            "occurred_at": ts(
                "2024-03-20", "2024-03-20", "2024-03-21", "2024-03-26", "2024-03-28", "2024-04-01"
            ),
            "campaign_id": ["c1", "c2", "c1", "c1", "c2", "c3"],
            "action": ["sent", "sent", "open", "click", "unsubscribe", "sent"],
            "campaign_type": ["nurture"] * 6,
        }
    )


def nps() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["a", "a", "b"],
            "responded_at": ts("2024-01-10", "2024-03-15", "2024-03-01"),
            "score": [9.0, 4.0, 8.0],
            "comment": [None, "slow", None],
        }
    )


def compute(frames: dict[str, pd.DataFrame], params: DatasetParams = PARAMS, **kw):
    con = load.connect_frames(frames)
    ids = sorted(frames["accounts"]["account_id"])
    spine = pd.DataFrame(
        {"account_id": ids, "cutoff": pd.Series([T] * len(ids), dtype="datetime64[us]")}
    )
    frame, feats = features.compute(con, spine, params, **kw)
    return frame.set_index("account_id"), {f.name: f for f in feats}


def check(frame: pd.DataFrame, expected: dict[str, dict[str, float]]) -> None:
    for account, values in expected.items():
        for name, value in values.items():
            got = frame.loc[account, name]
            if value is None or (isinstance(value, float) and np.isnan(value)):
                assert pd.isna(got), f"{account} {name}: {got}"
            else:
                assert got == pytest.approx(value, rel=1e-12, abs=0), f"{account} {name}"


NAN = float("nan")


def test_engagement_exact():
    frame, feats = compute(
        {"accounts": accounts(), "subscriptions": subscriptions(), "events": events()}
    )
    check(
        frame,
        {
            "a": {
                "events_7d": 3,
                "events_login_7d": 2,
                "events_export_7d": 1,
                "active_days_7d": 2,
                "active_users_7d": 2,
                "event_types_7d": 2,
                "events_30d": 4,
                "events_login_30d": 3,
                "events_export_30d": 1,
                "active_days_30d": 3,
                "active_users_30d": 3,
                "event_types_30d": 2,
                # (3 / 7) / (1 / 23) - 1 and (2 / 7) / (1 / 23) - 1
                "events_trend_7d": 62 / 7,
                "events_login_trend_7d": 39 / 7,
                "events_export_trend_7d": NAN,
                "days_since_last_event": 1 / 24,
                "seat_utilisation_7d": 2 / 6,
                "seat_utilisation_30d": 3 / 6,
                "events_per_active_user_7d": 3 / 2,
                "events_per_active_user_30d": 4 / 3,
                "event_quantity_7d": 2 + 1 + 5,
                "event_quantity_30d": 2 + 1 + 5 + 1,
                "quantity_per_event_7d": 8 / 3,
                "quantity_per_event_30d": 9 / 4,
                "failed_payments_7d": 0,
                "failed_payments_30d": 1,
            },
            "b": {
                "events_7d": 0,
                "active_users_30d": 0,
                "events_trend_7d": NAN,
                "days_since_last_event": NAN,
                "seat_utilisation_30d": 0.0,
                "events_per_active_user_30d": NAN,
                "event_quantity_30d": 0,
                "quantity_per_event_30d": NAN,
            },
            "c": {"seat_utilisation_30d": NAN},  # no seats just before the cutoff
        },
    )
    assert feats["events_login_30d"].event_type == "login"
    # A rate against the account's own earlier rate: its own kind, so reasons say "down 64%".
    assert feats["events_login_trend_7d"].kind == "trend"
    assert "payment_failed" not in {f.event_type for f in feats.values()}


def test_commercial_exact():
    frame, feats = compute(
        {"accounts": accounts(), "subscriptions": subscriptions(), "orders": orders()}
    )
    check(
        frame,
        {
            "a": {
                "tenure_days": 91,
                "mrr_current": 150,
                "seats": 6,
                "mrr_change_7d": 0,
                "mrr_change_30d": 50,
                "upgrades_30d": 1,
                "downgrades_30d": 0,
                "orders_7d": 1,
                "spend_7d": 40,
                "orders_30d": 2,
                "spend_30d": 140,
                "refunds_30d": 1,
                "refund_amount_30d": 30,
                "upsell_orders_30d": 1,
                "orders_lifetime": 3,
                "spend_lifetime": 640,
                "days_since_last_order": 2,
                "avg_order_value_30d": 70,
            },
            # an add-on on top of a running subscription is an upgrade
            "b": {
                "tenure_days": 60,
                "mrr_current": 100,
                "mrr_change_30d": 20,
                "upgrades_30d": 1,
                "orders_30d": 0,
                "days_since_last_order": NAN,
                "avg_order_value_30d": NAN,
            },
            # ended 2024-03-25: the cancellation is an MRR change but not a downgrade
            "c": {"mrr_current": 0, "mrr_change_7d": -50, "downgrades_7d": 0, "tenure_days": 77},
            "d": {"tenure_days": NAN, "mrr_current": 0},  # created at the cutoff
        },
    )
    assert frame.loc["a", "plan"] == "pro"
    assert frame.loc["b", "plan"] == "basic"
    assert list(frame["plan"].cat.categories) == ["basic", "pro"]
    assert feats["plan"].group == "commercial"


def test_support_exact():
    frame, _ = compute({"accounts": accounts(), "tickets": tickets()})
    check(
        frame,
        {
            "a": {
                "tickets_7d": 2,
                "tickets_30d": 3,
                "tickets_high_30d": 1,
                "tickets_urgent_30d": 1,
                "tickets_normal_30d": 1,
                "tickets_low_30d": 0,
                "tickets_open": 2,
                "days_to_close_mean": 2.0,
                # the urgent ticket's CSAT arrives when it closes, after the cutoff
                "csat_mean_30d": 5.0,
                "csat_last": 5.0,
                "days_since_last_ticket": 2.0,
            },
            "b": {"tickets_30d": 0, "tickets_open": 0, "csat_last": NAN, "days_to_close_mean": NAN},
        },
    )


def test_marketing_exact():
    frame, _ = compute({"accounts": accounts(), "campaign_events": campaigns()})
    check(
        frame,
        {
            "a": {
                "sends_7d": 0,
                "opens_7d": 0,
                "clicks_7d": 1,
                "sends_30d": 2,
                "opens_30d": 1,
                "clicks_30d": 1,
                "unsubscribes_30d": 1,
                "open_rate_30d": 0.5,
                "click_rate_30d": 0.5,
                "days_since_last_click": 6.0,
            },
            "b": {"sends_30d": 0, "open_rate_30d": NAN, "days_since_last_click": NAN},
        },
    )


def test_sentiment_exact():
    frame, feats = compute({"accounts": accounts(), "nps": nps()})
    check(
        frame,
        {
            "a": {"nps_last": 4, "nps_change": -5, "days_since_nps": 17},
            "b": {"nps_last": 8, "nps_change": NAN, "days_since_nps": 31},
            "c": {"nps_last": NAN},
        },
    )
    assert list(frame["nps_category"].astype(object).fillna("-")) == [
        "detractor",
        "passive",
        "-",
        "-",
    ]
    assert list(frame["nps_category"].cat.categories) == ["detractor", "passive", "promoter"]
    assert feats["nps_category"].group == "sentiment"


def test_profile_exact_and_hidden_before_creation():
    frame, feats = compute({"accounts": accounts()})
    assert list(frame["segment"].cat.categories) == ["ent", "smb"]  # "mid" only from d, at T
    assert frame.loc["a", "segment"] == "smb"
    assert pd.isna(frame.loc["d", "segment"])  # created at the cutoff
    check(frame, {"a": {"employees": 10}, "c": {"employees": NAN}, "d": {"employees": NAN}})
    assert feats["segment"].dtype == "category"
    assert feats["employees"].group == "profile"


def test_every_feature_has_metadata_that_reads_as_a_sentence():
    frames = {
        "accounts": accounts(),
        "subscriptions": subscriptions(),
        "events": events(),
        "orders": orders(),
        "tickets": tickets(),
        "campaign_events": campaigns(),
        "nps": nps(),
    }
    frame, feats = compute(frames)
    assert list(frame.columns[1:]) == list(feats)
    for f in feats.values():
        meta = f.to_dict()
        assert set(meta) >= {"name", "description", "group", "dtype", "kind"}
        assert meta["group"] in DRIVER_GROUPS
        assert meta["dtype"] in ("float64", "category")
        assert str(frame[f.name].dtype) == meta["dtype"]
        first = meta["description"].split()[0]
        assert first.islower() or first.isupper(), meta  # lower case or an acronym (MRR, NPS)
        assert not meta["description"].endswith(".")
    assert {f.group for f in feats.values()} == set(DRIVER_GROUPS)
    # "ratio" features are shares, worded as percentages in reasons; per-unit rates are values
    # ("units of product use per event is 25.1", not "2507%").
    ratios = {n for n, f in feats.items() if f.kind == "ratio"}
    assert ratios == {
        *(f"seat_utilisation_{w}d" for w in (7, 30)),
        "open_rate_30d",
        "click_rate_30d",
    }
    for w in (7, 30):
        assert feats[f"quantity_per_event_{w}d"].kind == "value"
        assert feats[f"events_per_active_user_{w}d"].kind == "value"
    described = features.describe("events_login_30d", list(feats.values()))
    assert described.description == "login events in the last 30 days"
    with pytest.raises(features.FeatureError):
        features.describe("nope", list(feats.values()))


def test_absent_tables_drop_only_their_features():
    frame, feats = compute({"accounts": accounts(), "orders": orders()})
    groups = {f.group for f in feats.values()}
    assert groups == {"commercial", "profile"}
    assert "events_7d" not in frame.columns and "orders_7d" in frame.columns


def test_given_event_types_and_categories_fix_the_columns():
    frame, feats = compute(
        {"accounts": accounts(), "events": events()},
        event_types=["login", "search"],
        categories={"segment": ["smb", "ent", "mid"]},
    )
    assert "events_search_7d" in frame.columns and "events_export_7d" not in frame.columns
    assert frame.loc["a", "events_search_30d"] == 0
    assert list(frame["segment"].cat.categories) == ["smb", "ent", "mid"]


def _random_tables(seed: int, n_acc: int = 6) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = 600
    start = np.datetime64("2023-01-01T00:00:00", "us")
    ids = np.array([f"x{i}" for i in range(n_acc)])
    when = start + rng.integers(0, 500 * DAY_US, n).astype("timedelta64[us]")
    return {
        "accounts": pd.DataFrame(
            {"account_id": ids, "created_at": pd.Series([start] * n_acc, dtype="datetime64[us]")}
        ),
        "events": pd.DataFrame(
            {
                "account_id": ids[rng.integers(0, n_acc, n)],
                "occurred_at": pd.Series(when, dtype="datetime64[us]"),
                "event_type": np.array(["login", "export", "view"])[rng.integers(0, 3, n)],
                "quantity": np.ones(n),
                "user_id": np.array(["u1", "u2", "u3", "u4"])[rng.integers(0, 4, n)],
            }
        ),
    }


def test_a_row_does_not_depend_on_the_other_cutoffs():
    """Segments are shared between cutoffs; each cutoff's features must equal a one-cutoff run.

    Weekly cutoffs over a year give more than 64 segments (several user-mask chunks)."""
    frames = _random_tables(1)
    ids = sorted(frames["accounts"]["account_id"])
    cutoffs = list(pd.date_range("2023-03-06", "2024-03-04", freq="7D"))
    params = DatasetParams(windows=(7, 30, 90))
    con = load.connect_frames(frames)
    spine = pd.DataFrame(
        [(a, c) for a in ids for c in cutoffs], columns=["account_id", "cutoff"]
    ).astype({"cutoff": "datetime64[us]"})
    all_at_once, _ = features.compute(con, spine, params, event_types=["export", "login", "view"])
    for c in (cutoffs[0], cutoffs[20], cutoffs[-1]):
        one = spine[spine["cutoff"] == c].reset_index(drop=True)
        alone, _ = features.compute(con, one, params, event_types=["export", "login", "view"])
        part = all_at_once[all_at_once["cutoff"] == c].reset_index(drop=True)
        pd.testing.assert_frame_equal(part, alone, check_exact=True)
    # and against a direct pandas count for the 90-day window
    ev = frames["events"]
    for c in (cutoffs[10], cutoffs[-1]):
        inside = ev[(ev["occurred_at"] < c) & (ev["occurred_at"] >= c - pd.Timedelta(days=90))]
        users = inside.groupby("account_id")["user_id"].nunique()
        days = inside.groupby("account_id")["occurred_at"].apply(lambda s: s.dt.date.nunique())
        got = all_at_once[all_at_once["cutoff"] == c].set_index("account_id")
        assert (got["active_users_90d"] == users.reindex(got.index, fill_value=0)).all()
        assert (got["active_days_90d"] == days.reindex(got.index, fill_value=0)).all()
        assert (got["events_90d"] == inside.groupby("account_id").size()).all()


def test_cutoffs_must_be_midnight():
    frames = {"accounts": accounts()}
    con = load.connect_frames(frames)
    spine = pd.DataFrame(
        {
            "account_id": ["a"],
            "cutoff": pd.Series([T + dt.timedelta(hours=1)], dtype="datetime64[us]"),
        }
    )
    with pytest.raises(features.FeatureError, match="midnight"):
        features.compute(con, spine, PARAMS)


def test_rows_stay_aligned_on_a_spine_large_enough_for_parallel_scans():
    """Every value belongs to its own row when DuckDB scans and joins in parallel.

    DuckDB does not keep row order in parallel plans (and churnlab turns insertion order off), so
    a frame assembled by position would scramble rows on large inputs only; tiny tables never
    show it. 300k spine rows span many row groups and vectors. Each account's values are made
    distinct (1 + i % 4 events, 1 + i % 7 seats, quantity 1 + i % 3) so that derived features
    checked against their inputs, and inputs checked against the account, expose any shuffle.
    """
    n = 150_000
    ids = np.array([f"acct{i:06d}" for i in range(n)])
    i = np.arange(n)
    start = np.datetime64("2024-01-01T00:00:00", "us")
    n_ev = 1 + i % 4  # 1..4 events per account, 1 + (i % 4 > 1) of them exports
    acc = np.repeat(i, n_ev)
    k = np.arange(len(acc)) - np.repeat(np.cumsum(n_ev) - n_ev, n_ev)  # index within account
    frames = {
        "accounts": pd.DataFrame(
            {"account_id": ids, "created_at": pd.Series([start] * n, dtype="datetime64[us]")}
        ),
        "subscriptions": pd.DataFrame(
            {
                "account_id": ids,
                "start_at": pd.Series([start] * n, dtype="datetime64[us]"),
                "end_at": pd.Series([pd.NaT] * n, dtype="datetime64[us]"),
                "mrr": (100 + i % 50).astype("float64"),
                "plan": "basic",
                "seats": pd.array(1 + i % 7, dtype="Int32"),
            }
        ),
        "events": pd.DataFrame(
            {
                "account_id": ids[acc],
                "occurred_at": pd.Series(
                    np.datetime64("2024-03-20T10:00:00", "us")
                    + (k * 3_600_000_000).astype("timedelta64[us]"),
                    dtype="datetime64[us]",
                ),
                "event_type": np.where(k < 1 + (acc % 4 > 1), "export", "login"),
                "quantity": (1 + acc % 3).astype("float64"),
                "user_id": np.char.add(ids[acc], np.char.add("-u", k.astype(str))),
            }
        ),
    }
    con = load.connect_frames(frames)
    spine = pd.DataFrame(
        [(a, c) for a in ids for c in (T, T + dt.timedelta(days=7))],
        columns=["account_id", "cutoff"],
    ).astype({"cutoff": "datetime64[us]"})
    frame, _ = features.compute(con, spine, PARAMS, event_types=["export", "login"])
    assert len(frame) == 2 * n
    idx = frame["account_id"].str[4:].astype(int).to_numpy()
    expect_events = 1 + idx % 4
    np.testing.assert_array_equal(frame["events_30d"], expect_events)
    np.testing.assert_array_equal(frame["events_export_30d"], 1 + (idx % 4 > 1))
    np.testing.assert_array_equal(frame["seats"], 1 + idx % 7)
    np.testing.assert_array_equal(frame["mrr_current"], 100 + idx % 50)
    # derived features against their own row's inputs
    np.testing.assert_array_equal(frame["active_users_30d"], expect_events)
    np.testing.assert_allclose(frame["seat_utilisation_30d"], expect_events / (1 + idx % 7))
    np.testing.assert_allclose(frame["quantity_per_event_30d"], 1 + idx % 3)
    np.testing.assert_array_equal(frame["event_types_30d"], 1 + (idx % 4 > 0))

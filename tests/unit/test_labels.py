"""Exact churn/expansion labels on tiny tables (DESIGN.md section 4)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churnlab import labels, load
from churnlab.config import DatasetParams

T = dt.datetime(2024, 4, 1)
LATE = dt.datetime(2024, 7, 1)
PARAMS = DatasetParams(horizon_days=30, lookback_days=60, expansion_min_fraction=0.1)
AS_OF = dt.datetime(2024, 7, 15)


def ts(*values: object) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), format="ISO8601"), dtype="datetime64[us]")


def spine(ids: list[str], cutoffs: list[dt.datetime]) -> pd.DataFrame:
    rows = [(a, c) for a in ids for c in cutoffs]
    return pd.DataFrame(rows, columns=["account_id", "cutoff"]).astype({"cutoff": "datetime64[us]"})


def contractual_tables() -> dict[str, pd.DataFrame]:
    subs = [
        ("a", "2024-01-01", None, 150.0),  # stays, flat MRR, buys an upsell: expansion
        ("b", "2024-02-01", None, 80.0),
        ("b", "2024-03-20", None, 20.0),
        ("b", "2024-04-10", None, 30.0),  # 100 -> 130: +30% expansion
        ("e", "2024-01-01", "2024-04-20", 60.0),  # churns
        ("f", "2024-01-01", "2024-04-10", 70.0),  # cancels and returns inside the window
        ("f", "2024-04-20", None, 70.0),
        ("g", "2024-01-01", "2024-04-15", 100.0),  # +5%: below the 10% threshold
        ("g", "2024-04-15", None, 105.0),
        ("h", "2024-01-01", "2024-05-01", 40.0),  # ends exactly at the window end: churned
    ]
    return {
        "accounts": pd.DataFrame(
            {"account_id": list("abefgh"), "created_at": ts(*["2024-01-01"] * 6)}
        ),
        "subscriptions": pd.DataFrame(
            {
                "account_id": [r[0] for r in subs],
                "start_at": ts(*[r[1] for r in subs]),
                "end_at": ts(*[r[2] for r in subs]),
                "mrr": [r[3] for r in subs],
                "plan": ["p"] * len(subs),
                "seats": pd.array([1] * len(subs), dtype="Int32"),
            }
        ),
        "orders": pd.DataFrame(
            {
                "account_id": ["a", "g"],
                "ordered_at": ts("2024-04-15", "2024-05-01"),  # g's is after the window
                "amount": [500.0, 900.0],
                "kind": ["upsell", "upsell"],
                "product": ["x", "x"],
            }
        ),
    }


def test_contractual_labels_exact():
    frames = contractual_tables()
    con = load.connect_frames(frames)
    out = labels.compute(con, spine(list("abefgh"), [T, LATE]), PARAMS, "contractual", AS_OF)
    got = out[out["cutoff"] == T].set_index("account_id")
    assert got["churn"].to_dict() == {"a": 0, "b": 0, "e": 1, "f": 0, "g": 0, "h": 1}
    assert got["expansion"].to_dict() == {"a": 1, "b": 1, "e": 0, "f": 0, "g": 0, "h": 0}
    assert got["expansion_amount"].to_dict() == {
        "a": 0,
        "b": 30,
        "e": -60,
        "f": 0,
        "g": 5,
        "h": -40,
    }
    assert got["mrr"].to_dict() == {"a": 150, "b": 100, "e": 60, "f": 70, "g": 100, "h": 40}
    assert (got["arr"] == 12 * got["mrr"]).all()
    assert got["labeled"].all()
    # 2024-07-01 + 30 days runs past the as-of date: unlabeled, but MRR is known
    late = out[out["cutoff"] == LATE].set_index("account_id")
    assert not late["labeled"].any()
    assert late[["churn", "expansion", "expansion_amount"]].isna().all().all()
    assert late.loc["a", "mrr"] == 150
    assert out["churn"].dtype == "float64" and out["labeled"].dtype == bool


def test_label_window_ending_exactly_at_data_end_is_labeled():
    con = load.connect_frames(contractual_tables())
    end = T + dt.timedelta(days=30)
    at_end = labels.compute(con, spine(["a"], [T]), PARAMS, "contractual", end)
    just_before = labels.compute(
        con, spine(["a"], [T]), PARAMS, "contractual", end - dt.timedelta(microseconds=1)
    )
    assert at_end["labeled"].iloc[0] and not just_before["labeled"].iloc[0]


def orders_tables() -> dict[str, pd.DataFrame]:
    rows = [
        ("p", "2024-03-10", 100.0, "new"),  # spend before: 100
        ("p", "2024-04-05", 90.0, "new"),
        ("p", "2024-04-25", 60.0, "new"),  # spend after: 150 -> expansion
        ("q", "2024-02-15", 50.0, "new"),  # in the 60-day lookback, not the 30-day baseline
        ("q", "2024-03-20", 100.0, "new"),
        ("q", "2024-04-10", -100.0, "refund"),  # a refund is not an order: churn
        ("r", "2024-03-25", 100.0, "new"),
        ("r", "2024-04-02", 105.0, "new"),  # +5%: not expansion
    ]
    return {
        "accounts": pd.DataFrame(
            {"account_id": list("pqr"), "created_at": ts(*["2024-01-01"] * 3)}
        ),
        "orders": pd.DataFrame(
            {
                "account_id": [r[0] for r in rows],
                "ordered_at": ts(*[r[1] for r in rows]),
                "amount": [r[2] for r in rows],
                "kind": [r[3] for r in rows],
                "product": ["x"] * len(rows),
            }
        ),
    }


def test_orders_only_labels_exact():
    con = load.connect_frames(orders_tables())
    got = labels.compute(con, spine(list("pqr"), [T]), PARAMS, "orders", AS_OF).set_index(
        "account_id"
    )
    assert got["churn"].to_dict() == {"p": 0, "q": 1, "r": 0}
    assert got["expansion"].to_dict() == {"p": 1, "q": 0, "r": 0}
    assert got["expansion_amount"].to_dict() == {"p": 50, "q": -100, "r": 5}
    months = 60 / (365.25 / 12)
    assert got["mrr"].to_numpy() == pytest.approx(np.array([100, 150, 100]) / months)


def test_unknown_mode_is_rejected():
    con = load.connect_frames(orders_tables())
    with pytest.raises(Exception, match="unknown mode"):
        labels.compute(con, spine(["p"], [T]), PARAMS, "weird", AS_OF)

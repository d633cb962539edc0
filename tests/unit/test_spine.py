"""Spine: cutoffs, mode and eligible accounts."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from churnlab import load, spine
from churnlab.config import DatasetParams


def ts(*values: object) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), format="ISO8601"), dtype="datetime64[us]")


def frames() -> dict[str, pd.DataFrame]:
    return {
        "accounts": pd.DataFrame(
            {"account_id": list("abcd"), "created_at": ts(*["2024-01-01"] * 4)}
        ),
        "subscriptions": pd.DataFrame(
            {
                "account_id": ["a", "b", "c", "d"],
                # a: open; b: ends exactly at the cutoff; c: starts exactly at it; d: later
                "start_at": ts("2024-01-01", "2024-01-01", "2024-04-01", "2024-04-01 00:00:01"),
                "end_at": ts(None, "2024-04-01", "2024-05-01", None),
                "mrr": [1.0, 1.0, 1.0, 1.0],
                "plan": ["p"] * 4,
                "seats": pd.array([1] * 4, dtype="Int32"),
            }
        ),
        "orders": pd.DataFrame(
            {
                "account_id": ["a", "b", "c", "d"],
                "ordered_at": ts(
                    "2024-03-31 23:59:59.999999", "2024-01-31", "2024-04-01", "2024-02-01"
                ),
                "amount": [1.0, 1.0, 1.0, -1.0],
                "kind": ["new", "new", "new", "refund"],
                "product": ["x"] * 4,
            }
        ),
    }


T = dt.datetime(2024, 4, 1)


def test_contractual_spine_is_active_at_cutoff():
    con = load.connect_frames(frames())
    sp = spine.build(con, [T], "contractual", DatasetParams())
    assert sp["account_id"].tolist() == ["a", "c"]
    assert str(sp["cutoff"].dtype) == "datetime64[us]"


def test_orders_spine_uses_lookback_before_cutoff():
    con = load.connect_frames(frames())
    sp = spine.build(con, [T], "orders", DatasetParams(lookback_days=60))
    # b ordered 61 days before; c at the cutoff; d only a refund
    assert sp["account_id"].tolist() == ["a"]
    sp = spine.build(con, [T], "orders", DatasetParams(lookback_days=61))
    assert sp["account_id"].tolist() == ["a", "b"]


def test_resolve_mode():
    f = frames()
    assert spine.resolve_mode(load.connect_frames(f), DatasetParams()) == "contractual"
    no_subs = {k: v for k, v in f.items() if k != "subscriptions"}
    assert spine.resolve_mode(load.connect_frames(no_subs), DatasetParams()) == "orders"
    with pytest.raises(spine.SpineError, match="no subscriptions table"):
        spine.resolve_mode(load.connect_frames(no_subs), DatasetParams(mode="contractual"))


def test_default_and_explicit_cutoffs():
    con = load.connect_frames(frames())
    end = dt.datetime(2024, 9, 15, 12)
    # first start 2024-01-01 + 90 days = 2024-03-31 -> first month start 2024-04-01
    cuts = spine.cutoffs(con, DatasetParams(), end, "contractual")
    assert cuts[0] == dt.datetime(2024, 4, 1) and cuts[-1] == dt.datetime(2024, 9, 1)
    assert len(cuts) == 6
    weekly = spine.cutoffs(
        con,
        DatasetParams(
            cutoff_start=dt.date(2024, 5, 6), cutoff_end=dt.date(2024, 6, 3), cutoff_freq="weekly"
        ),
        end,
        "contractual",
    )
    assert [c.day for c in weekly] == [6, 13, 20, 27, 3]
    assert all(c.hour == 0 for c in weekly)


def test_no_cutoff_in_range_is_a_clear_error():
    con = load.connect_frames(frames())
    with pytest.raises(spine.SpineError, match="no cutoff"):
        spine.cutoffs(con, DatasetParams(), dt.datetime(2024, 2, 1), "contractual")


def test_a_cutoff_end_after_the_data_end_is_refused():
    con = load.connect_frames(frames())
    end = dt.datetime(2024, 9, 15, 12)
    last = spine.cutoffs(con, DatasetParams(cutoff_end=dt.date(2024, 9, 15)), end, "contractual")
    assert last[-1] == dt.datetime(2024, 9, 1)  # up to the data end is fine
    with pytest.raises(spine.SpineError) as err:
        spine.cutoffs(con, DatasetParams(cutoff_end=dt.date(2024, 12, 1)), end, "contractual")
    assert str(err.value).startswith(
        "dataset.cutoff_end 2024-12-01 is after the data end 2024-09-15 12:00: cutoffs there "
        "would see no rows after the data end"
    )
    assert "set cutoff_end to 2024-09-15 or earlier" in str(err.value)


def test_cutoffs_must_be_midnight():
    con = load.connect_frames(frames())
    with pytest.raises(spine.SpineError, match="midnight"):
        spine.build(con, [T + dt.timedelta(minutes=1)], "contractual", DatasetParams())

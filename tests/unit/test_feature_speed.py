"""The engine's shortcuts give what the plain SQL gives: filter classes by value lookup, the
subscription timeline without instants that change nothing."""

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

from churnlab import load, timeline
from churnlab.feature_buckets import _class_lookup

FILTERS = {
    "event_type <> 'payment_failed'": 0,
    "event_type = 'login'": 1,
    "event_type = 'payment_failed'": 2,
    "event_type = 'it''s'": 3,
    "event_type IN ('login', 'export')": 4,
}


def test_class_lookup_gives_the_bits_the_filters_give():
    sql, combos, column = _class_lookup(FILTERS)
    assert column == "event_type"
    values = ["login", "payment_failed", "it's", "export", "other", None, ""]
    con = duckdb.connect()
    con.register("v", pd.DataFrame({"event_type": pd.Series(values, dtype=object)}))
    bits = " | ".join(f"CASE WHEN {w} THEN {1 << b} ELSE 0 END" for w, b in FILTERS.items())
    rows = con.execute(f"SELECT event_type, {sql} AS cls, {bits} AS bits FROM v").fetchall()
    got = {r[0]: int(combos[r[1]]) for r in rows}
    want = {r[0]: int(r[2]) for r in rows}
    assert got == want
    assert want["login"] == 0b10011 and want[None] == 0 and want["other"] == 0b1


def test_class_lookup_only_for_comparisons_of_one_column():
    assert _class_lookup({"event_type = 'a'": 0}) is None  # one filter: nothing to share
    assert _class_lookup({"event_type = 'a'": 0, "action = 'b'": 1}) is None
    assert _class_lookup({"NOT coalesce(kind, '') = 'refund'": 0, "kind = 'refund'": 1}) is None
    assert _class_lookup({"kind = ('a', 'b')": 0, "kind = 'refund'": 1}) is None
    assert _class_lookup({"kind IN ('a', 'b')": 0, "kind = 'refund'": 1}) is not None


def _ts(*values: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values)), dtype="datetime64[us]")


def test_timeline_has_no_rows_for_instants_that_change_nothing():
    subs = pd.DataFrame(
        {
            "account_id": ["a", "a", "a", "b", "b"],
            # a: monthly renewals at one price, then a price rise; b: a zero-length row
            "start_at": _ts("2024-01-01", "2024-02-01", "2024-03-01", "2024-01-05", "2024-02-01"),
            "end_at": _ts("2024-02-01", "2024-03-01", "2024-04-01", "2024-01-05", "2024-03-01"),
            "mrr": [10.0, 10.0, 12.0, 5.0, 7.0],
            "seats": [2, 2, 2, 1, 1],
        }
    )
    con = load.connect_frames({"accounts": pd.DataFrame({"account_id": ["a", "b"],
                               "created_at": _ts("2023-01-01", "2023-01-01")}),
                               "subscriptions": subs})  # fmt: skip
    name = timeline.subscription_steps(con, "_t")
    steps = con.execute(
        f"SELECT account_id, step_at, CAST(dm AS DOUBLE), CAST(mrr_after AS DOUBLE), "
        f"seats_after, active_after FROM {name} ORDER BY 1, 2"
    ).fetchall()
    t = dt.datetime
    assert steps == [
        ("a", t(2024, 1, 1), 10.0, 10.0, 2, 1),
        ("a", t(2024, 3, 1), 2.0, 12.0, 2, 1),
        ("a", t(2024, 4, 1), -12.0, 0.0, 0, 0),
        ("b", t(2024, 2, 1), 7.0, 7.0, 1, 1),
        ("b", t(2024, 3, 1), -7.0, 0.0, 0, 0),
    ]
    # the state at any instant is the same as with every instant kept
    for acc, at, mrr in (("a", "2024-02-15", 10.0), ("a", "2024-03-01", 12.0),
                         ("b", "2024-01-05", 0.0), ("b", "2024-01-20", 0.0)):  # fmt: skip
        live = subs[(subs.account_id == acc) & (subs.start_at <= at) & (subs.end_at > at)]
        got = [s[3] for s in steps if s[0] == acc and s[1] <= pd.Timestamp(at)]
        assert (got[-1] if got else 0.0) == live.mrr.sum() == mrr
    assert np.isfinite([s[3] for s in steps]).all()


def test_labels_of_a_spine_with_no_labeled_row_equal_those_of_a_mixed_one():
    """Scoring at the data end labels nothing: the short query gives the same MRR and NaNs."""
    from churnlab import labels
    from churnlab.config import DatasetParams

    subs = pd.DataFrame(
        {
            "account_id": ["a", "a", "b"],
            "start_at": _ts("2024-01-01", "2024-03-01", "2024-02-10"),
            "end_at": _ts("2024-03-01", "2024-06-01", "2024-04-20"),
            "mrr": [10.0, 14.5, 7.25],
            "seats": [2, 3, 1],
        }
    )
    orders = pd.DataFrame({"account_id": ["a"], "ordered_at": _ts("2024-04-02"), "amount": [5.0],
                           "kind": ["upsell"], "product": ["x"]})  # fmt: skip
    accounts = pd.DataFrame(
        {"account_id": ["a", "b"], "created_at": _ts("2023-01-01", "2023-01-01")}
    )
    con = load.connect_frames({"accounts": accounts, "subscriptions": subs, "orders": orders})
    params = DatasetParams(horizon_days=30)
    end = dt.datetime(2024, 5, 1)
    cutoffs = _ts("2024-03-15", "2024-04-15", "2024-03-15", "2024-04-15")
    mixed_spine = pd.DataFrame({"account_id": ["a", "a", "b", "b"], "cutoff": cutoffs})
    mixed = labels.compute(con, mixed_spine, params, "contractual", end)
    assert mixed["labeled"].tolist() == [True, False, True, False]
    late = mixed_spine[mixed_spine.cutoff == pd.Timestamp("2024-04-15")].reset_index(drop=True)
    alone = labels.compute(con, late, params, "contractual", end)
    want = mixed[~mixed["labeled"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, want, check_exact=True)
    assert alone["mrr"].tolist() == [14.5, 7.25] and alone["churn"].isna().all()


def test_timeline_is_filtered_to_the_given_accounts_only_when_they_are_few():
    """Under a quarter of the accounts: only theirs; more: every account's (cheaper to build)."""
    ids = [f"a{i}" for i in range(8)]
    subs = pd.DataFrame(
        {
            "account_id": ids,
            "start_at": _ts(*["2024-01-01"] * 8),
            "end_at": _ts(*["2024-06-01"] * 8),
            "mrr": [10.0] * 8,
            "seats": [1] * 8,
        }
    )
    accounts = pd.DataFrame({"account_id": ids, "created_at": _ts(*["2023-01-01"] * 8)})
    con = load.connect_frames({"accounts": accounts, "subscriptions": subs})

    def built(given: list[str]) -> set[str]:
        name = timeline.subscription_steps(con, "_t", accounts=pd.Series(given))
        return {r[0] for r in con.execute(f"SELECT DISTINCT account_id FROM {name}").fetchall()}

    assert timeline.FILTER_SHARE == 4
    assert built(["a0"]) == {"a0"}
    assert built(["a0", "a0", "a0"]) == {"a0"}  # distinct accounts are counted
    assert built(["a0", "a1", "a1"]) == set(ids)  # 2 of 8: a quarter, not under it
    assert built(ids[:7]) == set(ids)

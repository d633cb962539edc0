"""Unit tests of the synthetic world: calendar, label bookkeeping, and the shape of a tiny world."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churnlab import synth
from churnlab.config import SynthParams
from churnlab.schema import CAMPAIGN_ACTIONS, ORDER_KINDS, TABLES, TICKET_PRIORITIES

DUCK_TO_PANDAS = {
    "VARCHAR": "str",
    "TIMESTAMP": "datetime64[us]",
    "DOUBLE": "float64",
    "INTEGER": "int32",
    "BOOLEAN": "bool",
}
# Written only with synth.campaigns on.
CAMPAIGN_TABLES = {"treatments"}


@pytest.fixture(scope="module")
def world() -> tuple[dict[str, pd.DataFrame], pd.DataFrame, pd.DataFrame]:
    return synth.generate(SynthParams(accounts=300, months=12, seed=5))


def test_month_starts_cross_year() -> None:
    got = synth._month_starts(dt.date(2024, 11, 1), 4)
    assert [str(d)[:10] for d in got] == ["2024-11-01", "2024-12-01", "2025-01-01", "2025-02-01"]


def _realised(act: list[list[bool]], mrr: list[list[float]], orders=()) -> pd.DataFrame:
    """Realised labels for hand-made histories: rows = month starts, columns = accounts."""
    ms = synth._month_starts(dt.date(2024, 1, 1), 12)
    n_months = len(act) - 1
    ids = synth._account_ids(len(act[0]))
    created = np.full(len(act[0]), ms[0].astype(np.int64) - 1)
    exp = [(np.array([a]), np.array([ms[0].astype(np.int64) + t])) for a, t in orders]
    table = synth._build_realised(
        np.array(act), np.array(mrr, dtype=float), exp, ids, created, ms, n_months
    )
    return synth.to_pandas(table)


def test_realised_churn_is_about_the_month_holding_cutoff_plus_90_days() -> None:
    # Account 1 is active in Jan-Mar 2024 only. 2024-01-01 + 90 days = 2024-03-31 (March):
    # still active then, so no churn from the January cutoff; from February (+90 = May 1) yes.
    act = [[True, True], [True, True], [True, True], [True, False], [True, False], [True, False]]
    mrr = [[100, 50], [100, 50], [100, 50], [100, 0], [120, 0], [120, 0]]
    r = _realised(act, mrr).set_index(["account_id", "cutoff"])
    b = r.xs("A000002")
    assert b["churn_90d"].iloc[0] == 0.0
    assert b["churn_90d"].iloc[1] == 1.0
    assert b["churned_in_month"].tolist()[:3] == [0.0, 0.0, 1.0]
    assert np.isnan(b["churned_in_month"].iloc[3])  # not active: not eligible
    assert np.isnan(b["churn_90d"].iloc[3])
    # The as-of is 2024-06-01: a window from 2024-03-01 ends 2024-05-30 (labelled), one from
    # 2024-04-01 ends 2024-06-30, after the as-of (unlabelled).
    a = r.xs("A000001")
    assert a["churn_90d"].notna().tolist() == [True, True, True, False, False, False]
    # MRR 100 -> 120 in May: +20% >= 10%, from the February and March cutoffs only.
    assert a["expansion_90d"].tolist()[:3] == [0.0, 1.0, 1.0]


def test_realised_expansion_order_counts_inside_window_only() -> None:
    act = [[True]] * 6
    mrr = [[100.0]] * 6
    day = 86_400_000_000
    # An upsell order on 2024-03-30 (day 89 after 2024-01-01): inside [Jan 1, Jan 1 + 90d).
    r = _realised(act, mrr, orders=[(0, 89 * day)])
    assert r["expansion_90d"].tolist()[:3] == [1.0, 1.0, 1.0]
    # On 2024-03-31 (day 90): outside the January window, inside February's and March's.
    r = _realised(act, mrr, orders=[(0, 90 * day)])
    assert r["expansion_90d"].tolist()[:3] == [0.0, 1.0, 1.0]


def test_tables_have_contract_columns_and_dtypes(world) -> None:
    tables, _, _ = world
    assert set(tables) == set(TABLES) - CAMPAIGN_TABLES
    for name, frame in tables.items():
        for col in TABLES[name].columns:
            assert col.name in frame.columns, (name, col.name)
            assert str(frame[col.name].dtype) == DUCK_TO_PANDAS[col.dtype], (name, col.name)
            if not col.nullable:
                assert frame[col.name].notna().all(), (name, col.name)
    acc = tables["accounts"]
    assert acc["account_id"].is_unique
    assert acc["account_id"].str.fullmatch(r"A\d{6}").all()
    assert set(acc["segment"]) == {"smb", "mid", "enterprise"}
    assert {"industry", "country", "acquisition_channel"} <= set(acc.columns)


def test_enumerations_and_ranges(world) -> None:
    tables, _, _ = world
    ev = tables["events"]
    assert set(ev["event_type"]) == set(synth.EVENT_TYPES)
    assert ev.loc[ev.event_type == "payment_failed", "user_id"].isna().all()
    assert ev.loc[ev.event_type != "payment_failed", "user_id"].notna().all()
    assert (ev["quantity"] >= 1).all()
    assert set(tables["orders"]["kind"]) <= set(ORDER_KINDS)
    assert (tables["orders"].query("kind != 'refund'")["amount"] > 0).all()
    assert (tables["orders"].query("kind == 'refund'")["amount"] < 0).all()
    assert set(tables["campaign_events"]["action"]) == set(CAMPAIGN_ACTIONS)
    tk = tables["tickets"]
    assert set(tk["priority"]) == set(TICKET_PRIORITIES)
    assert tk["csat"].dropna().between(1, 5).all()
    assert tk.loc[tk.closed_at.isna(), "csat"].isna().all()  # only closed tickets are rated
    assert (tk["closed_at"].dropna() > tk.loc[tk.closed_at.notna(), "opened_at"]).all()
    nps = tables["nps"]
    assert nps["score"].between(0, 10).all() and (nps["score"] % 1 == 0).all()
    assert 0 < nps["comment"].notna().mean() < 1


def test_subscriptions_are_monthly_billing_rows_up_to_the_as_of_month(world) -> None:
    tables, _, _ = world
    sub = tables["subscriptions"]
    assert (sub.start_at.dt.day == 1).all()
    assert (sub.end_at == sub.start_at + pd.DateOffset(months=1)).all()
    assert not sub.duplicated(["account_id", "start_at"]).any()
    as_of = pd.Timestamp("2025-01-01")
    assert sub.start_at.max() == as_of  # paid-through row of open accounts
    for name in ("orders", "events", "campaign_events", "tickets", "nps"):
        col = TABLES[name].time_column
        assert tables[name][col].max() < as_of, name
    assert (sub.mrr > 0).all() and (sub.seats >= 1).all()


def test_oracle_and_realised_cover_active_accounts(world) -> None:
    tables, oracle, realised = world
    sub = tables["subscriptions"][["account_id", "start_at"]]
    active = realised[realised.active][["account_id", "cutoff"]]
    pairs = sub.rename(columns={"start_at": "cutoff"})
    assert len(active) == len(pairs)
    assert active.merge(pairs).shape[0] == len(pairs)
    assert oracle[["account_id", "cutoff"]].merge(active).shape[0] == len(oracle) == len(active)
    assert oracle["p_churn"].between(0, 1).all() and oracle["p_expansion"].between(0, 1).all()
    assert list(oracle.columns) == ["account_id", "cutoff", "p_churn", "p_expansion"]
    assert str(oracle["cutoff"].dtype) == "datetime64[us]"
    # New accounts arrive every month after the first.
    first = tables["subscriptions"].groupby("account_id").start_at.min()
    assert first.dt.month.nunique() == 12

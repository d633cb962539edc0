"""The planted mechanisms of the synthetic world show in its observable tables.

One small world (800 accounts x 18 months) is generated once; each test compares groups of
(account, month start) rows whose 90-day label window is complete, using only rows before the
month start for the grouping (the point-in-time rule).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churnlab import synth
from churnlab.config import SynthParams


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    tables, oracle, realised = synth.generate(SynthParams(accounts=800, months=18, seed=7))
    c = duckdb.connect()
    for name, frame in {**tables, "oracle": oracle, "realised": realised}.items():
        c.register(f"_{name}", frame)
        c.execute(f"CREATE TABLE {name} AS SELECT * FROM _{name}")
    # Labelled rows from the fourth month on (three full months of history before each).
    c.execute(
        """
        CREATE TABLE spine AS
        SELECT r.account_id, r.cutoff, r.churn_90d, r.expansion_90d, o.p_churn, o.p_expansion
        FROM realised r JOIN oracle o USING (account_id, cutoff)
        WHERE r.churn_90d IS NOT NULL AND r.cutoff >= TIMESTAMP '2024-04-01'
        """
    )
    return c


def _frame(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    return con.execute(sql).df()


def test_churners_used_the_product_less_in_the_90_days_before(con) -> None:
    df = _frame(
        con,
        """
        SELECT s.churn_90d, count(e.account_id) AS events,
               count(e.account_id) / any_value(sub.seats) AS events_per_seat
        FROM spine s
        JOIN subscriptions sub ON sub.account_id = s.account_id
             AND sub.start_at = s.cutoff - INTERVAL 1 MONTH
        LEFT JOIN events e ON e.account_id = s.account_id AND e.occurred_at < s.cutoff
             AND e.occurred_at >= s.cutoff - INTERVAL 90 DAY AND e.event_type <> 'payment_failed'
        GROUP BY s.account_id, s.cutoff, s.churn_90d
        """,
    )
    by = df.groupby("churn_90d")[["events", "events_per_seat"]].median()
    assert by.loc[1.0, "events"] < 0.7 * by.loc[0.0, "events"]
    assert by.loc[1.0, "events_per_seat"] < 0.8 * by.loc[0.0, "events_per_seat"]


def test_promoters_expand_more_often_than_detractors(con) -> None:
    df = _frame(
        con,
        """
        SELECT s.expansion_90d, arg_max(n.score, n.responded_at) AS last_score
        FROM spine s JOIN nps n ON n.account_id = s.account_id AND n.responded_at < s.cutoff
        GROUP BY s.account_id, s.cutoff, s.expansion_90d
        """,
    )
    promoters = df.loc[df.last_score >= 9, "expansion_90d"]
    detractors = df.loc[df.last_score <= 6, "expansion_90d"]
    assert len(promoters) > 200 and len(detractors) > 200
    assert promoters.mean() > 1.5 * detractors.mean()


def test_failed_payments_come_before_more_churn(con) -> None:
    df = _frame(
        con,
        """
        SELECT s.churn_90d, count(e.account_id) > 0 AS failed
        FROM spine s LEFT JOIN events e ON e.account_id = s.account_id
             AND e.event_type = 'payment_failed' AND e.occurred_at < s.cutoff
             AND e.occurred_at >= s.cutoff - INTERVAL 90 DAY
        GROUP BY s.account_id, s.cutoff, s.churn_90d
        """,
    )
    rate = df.groupby("failed")["churn_90d"].mean()
    assert df.failed.sum() > 100
    assert rate[True] > 1.3 * rate[False]


def test_support_friction_comes_before_more_churn(con) -> None:
    df = _frame(
        con,
        """
        SELECT s.churn_90d, count(t.account_id) AS tickets
        FROM spine s LEFT JOIN tickets t ON t.account_id = s.account_id
             AND t.opened_at < s.cutoff AND t.opened_at >= s.cutoff - INTERVAL 90 DAY
        JOIN accounts a ON a.account_id = s.account_id
        WHERE a.segment = 'smb'
        GROUP BY s.account_id, s.cutoff, s.churn_90d
        """,
    )
    rate = df.groupby(df.tickets > 0)["churn_90d"].mean()
    assert rate[True] > 1.3 * rate[False]


def test_oracle_is_calibrated_and_informative(con) -> None:
    df = _frame(con, "SELECT * FROM spine")
    assert abs(df.p_churn.mean() - df.churn_90d.mean()) < 0.015
    assert abs(df.p_expansion.mean() - df.expansion_90d.mean()) < 0.015
    # Binned calibration: realised rates per oracle decile follow the predicted ones.
    for p, y in (("p_churn", "churn_90d"), ("p_expansion", "expansion_90d")):
        bins = pd.qcut(df[p], 5, labels=False)
        table = df.groupby(bins)[[p, y]].mean()
        assert np.abs(table[p] - table[y]).max() < 0.05, table
        assert 0.7 < roc_auc_score(df[y], df[p]) < 0.95  # learnable, not separable


def test_rates_are_in_the_intended_range(con) -> None:
    df = _frame(con, "SELECT * FROM spine")
    assert 0.08 <= df.churn_90d.mean() <= 0.17
    assert 0.10 <= df.expansion_90d.mean() <= 0.22

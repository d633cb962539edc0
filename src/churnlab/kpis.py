"""Retention KPIs per calendar period, computed in DuckDB, plotted, written and logged to MLflow.

DESIGN.md section 5 defines the metrics; each is quoted where it is computed (see
:data:`METRICS` for the full catalogue with units and kinds). This module fixes the details the
definitions leave open:

Periods and the observation window
    Periods are calendar months by default (``kpis.period``: month, quarter or ISO week starting
    Monday). Data is observed from the first day with a row in any table except ``accounts``
    (sign-up dates may precede the recorded history) to the observation end: ``data.as_of`` when
    set, else midnight after the day of the latest timestamp in the data. A period that starts
    before the observation start or ends after the observation end is ``partial``: it stays in
    the table, flagged, with snapshots clipped to the observed window (period-to-date), and is
    never the "latest complete period" nor part of a trailing or cohort figure. The state at the
    observation end is observed (DESIGN.md section 3): a subscription row that ends at the as-of
    date has ended, and a customer who continues has a row running past it (open-ended, or a
    paid-through billing row that starts at the as-of date, as the synthetic world writes).

MRR and customers (subscriptions present: contractual mode)
    An account's MRR at instant ``t`` is the sum of ``mrr`` over its subscription rows active at
    ``t``: ``start_at <= t < end_at`` (``end_at`` NULL = open-ended). An account is an active
    customer at ``t`` if it has such a row (a zero-MRR row counts for customers, not for MRR).
    **Every period metric compares two snapshots**, the period start and the period end; what
    happens between them is not seen. A plan upgraded on the 10th and downgraded back on the 20th
    nets out (no movement), a plan upgraded and then partly downgraded shows the net expansion,
    and a customer who cancels and returns inside a period is neither churned nor reactivated;
    this is the same rule as the churn label (DESIGN.md section 4: "a cancel-and-return inside
    the window is not churn"). Each account with MRR at either snapshot gets exactly one movement:

    - new: 0 at start, > 0 at end, and no subscription row with ``mrr > 0`` starting before the
      period start (never paid before);
    - reactivation: 0 at start, > 0 at end, and paid at some time before the period start;
    - expansion / contraction: > 0 at both, end above / below start (the difference);
    - churned: > 0 at start, 0 at end (the start MRR).

    So ``start + new + expansion - contraction - churned + reactivation = end`` holds exactly:
    the sums are taken in DuckDB DECIMAL(38, 6) (MRR rounded to 6 decimals) and only the results
    become floats. Logo churn uses the same snapshots: customers lost = active at the period
    start, not at its end. GRR and NRR follow DESIGN.md (reactivation and new MRR are in neither).
    The trailing-12-month GRR/NRR apply the same comparison to the 12 months (4 quarters, 52
    weeks) ending at the period end, over accounts paying at the window start:
    ``grr_12m = sum(min(end, start)) / sum(start)`` and ``nrr_12m = sum(end) / sum(start)``; NaN
    until the whole window is observed.

Revenue
    Subscription revenue is recognised pro rata: a row contributes ``mrr x (overlap with the
    period) / (length of the calendar month the overlap lies in)``, month by month, so a full
    month of a row is exactly its ``mrr``. Order revenue is ``amount``, except that refunds
    (``kind = 'refund'``) always reduce revenue by ``|amount|`` whatever sign they were recorded
    with. Upsell revenue is the amount of orders of kind ``upsell`` or ``cross_sell``: seat and plan
    growth inside subscriptions is reported as expansion MRR (and in NRR), not here, so the two are
    never double-counted. Revenue shares are undefined (NaN) when total revenue is not positive.

Orders-only mode (no subscriptions)
    Subscription metrics are NaN (not applicable, never 0). A buyer in a period is an account
    with at least one non-refund order in it; active-customer churn, repeat-purchase rate and
    spend retention are defined on buyers (see :data:`METRICS`). Beside subscriptions, orders are
    add-on purchases: they count in revenue and the revenue shares, and the buyer metrics are
    NaN (not applicable).

Campaigns
    The unit is one (account, campaign) pair with a ``sent`` action, placed in the period of its
    first send, and counted only if the account was a current customer at that instant (an
    active subscription; orders-only: at least one earlier non-refund order). A pair is opened if
    it has an ``open`` or a ``click`` (a click proves the mail was opened, even when the tracking
    pixel was blocked), clicked if it has a ``click``, whenever those happened.

Cohorts
    Accounts are grouped by the period of ``created_at``. Retention after k periods is the share
    of the cohort with an active subscription at the end of the k-th period after the sign-up
    period (orders-only: with an order in that period); k = 0 is the sign-up period itself.

Predicted vs realised
    :func:`churnlab.backscore.predicted_vs_realised` back-scores the training set with the churn
    model and compares the mean predicted probability with the realised churn rate per cutoff and
    per fixed risk band; the pipeline adds it to the result when a trained churn model and the
    training set exist. Charts are drawn by :mod:`churnlab.kpi_plots`, MLflow logging is
    described by :func:`run_log`, and the period grid lives in :mod:`churnlab.periods`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from churnlab.config import DataParams, KpiParams
from churnlab.kpi_catalogue import METRIC_KINDS, METRICS, TRAILING_PERIODS, KpiError, Metric
from churnlab.load import present_tables
from churnlab.periods import observation_window, period_start, periods, shift_period
from churnlab.schema import UPSELL_KINDS, sql_list

__all__ = ["METRICS", "METRIC_KINDS", "TRAILING_PERIODS", "KpiError", "compute"]

_SQL_UNIT = {"month": "month", "quarter": "quarter", "week": "week"}


# --------------------------------------------------------------------------------------------
# Periods


def _month_pieces(grid: pd.DataFrame) -> pd.DataFrame:
    """Each period's observed part split at calendar-month boundaries, with the month's length."""
    rows = []
    for ps, b0, b1 in zip(grid["period"], grid["b0"], grid["b1"], strict=True):
        q = pd.Timestamp(b0)
        while q < b1:
            month = period_start(q, "month")
            nxt = shift_period(month, "month", 1)
            qe = min(nxt, pd.Timestamp(b1))
            month_us = (nxt - month) // pd.Timedelta(microseconds=1)
            rows.append({"ps": ps, "qs": q, "qe": qe, "month_us": int(month_us)})
            q = qe
    frame = pd.DataFrame(rows, columns=["ps", "qs", "qe", "month_us"])
    for col in ("ps", "qs", "qe"):
        frame[col] = frame[col].astype("datetime64[us]")
    frame["month_us"] = frame["month_us"].astype("int64")
    return frame


def compute(
    con: duckdb.DuckDBPyConnection,
    params: KpiParams,
    data: DataParams,
    progress: Callable[[str], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """Compute the retention KPIs per period (DESIGN.md section 5).

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        Connection holding the typed contract tables (``accounts`` plus ``subscriptions`` and/or
        ``orders``; ``nps``, ``campaign_events`` and ``tickets`` add their metrics when present).
    params : KpiParams
        The ``kpis`` section: period (month, quarter, week) and optional date range.
    data : DataParams
        The ``data`` section (``as_of`` fixes the end of observation).
    progress : callable, optional
        Called with a short label before each step (CLI progress).

    Returns
    -------
    dict of str to DataFrame
        ``"monthly"``: one row per period (of the configured length, whatever the key says),
        indexed by ``period`` (period start), with ``period_end``, ``partial`` and one column per
        entry of :data:`METRICS`; metrics that do not apply to the data (e.g. MRR without
        subscriptions) and rates with a zero denominator are NaN, never 0.
        ``"cohorts"``: long table ``cohort``, ``periods_since_signup``, ``cohort_size``,
        ``retained``, ``retention`` over complete periods.
        ``"metrics"``: the catalogue (name, kind, applies_to, applicable, unit, description).
        ``"info"``: one row: period, mode (contractual/orders), observed_from, observed_to,
        latest_complete (period start or NaT).

    Raises
    ------
    KpiError
        If neither subscriptions nor orders are present, or no period is left to report.
    """
    step = progress or (lambda _label: None)
    tables = set(present_tables(con))
    if "accounts" not in tables or not tables & {"subscriptions", "orders"}:
        raise KpiError(
            "KPIs need the accounts table and at least one of subscriptions / orders; "
            f"found: {', '.join(sorted(tables)) or 'none'}"
        )
    has_subs = "subscriptions" in tables and _count(con, "subscriptions") > 0
    has_orders = "orders" in tables and _count(con, "orders") > 0
    if not (has_subs or has_orders):
        raise KpiError("subscriptions and orders are both empty: there is no revenue to report on")
    if has_orders and _upsell_orders(con):
        tables.add(UPSELL_ORDERS)  # upsell revenue can be measured: orders say which they are
    start, end = observation_window(con, data)
    grid = periods(params, start, end)
    unit = _SQL_UNIT[params.period]

    # Temporary tables live in this connection only and are removed afterwards, so that the
    # caller's connection is left as it was.
    temp = _Temp(con)
    try:
        temp.register("_kpi_periods", grid)
        temp.register("_kpi_pieces", _month_pieces(grid))
        parts, cohorts = _parts(con, temp, tables, has_subs, has_orders, unit, grid, step)
    finally:
        temp.drop_all()
    frame = grid[["period", "period_end", "partial"]].copy()
    for part in parts:
        frame = frame.merge(part, on="period", how="left")
    frame = _finish(frame, tables, has_subs, has_orders)
    return {
        "monthly": frame,
        "cohorts": cohorts,
        "metrics": _catalogue(tables, has_subs, has_orders),
        "info": _info(params, frame, has_subs, start, end),
    }


class _Temp:
    """Temporary tables made on a connection, dropped together."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.created: list[str] = []

    def __call__(self, name: str, sql: str, args: list[Any] | None = None) -> None:
        # DuckDB 2 keeps a statement's result open until it is fetched, even for DDL.
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}", args or []).fetchall()
        self.created.append(name)

    def register(self, name: str, df: pd.DataFrame) -> None:
        self.con.register(f"_kpi_df_{name}", df)
        self(name, f"SELECT * FROM _kpi_df_{name}")
        self.con.unregister(f"_kpi_df_{name}")

    def drop_all(self) -> None:
        for name in self.created:
            self.con.execute(f"DROP TABLE IF EXISTS {name}").fetchall()


def _parts(
    con: duckdb.DuckDBPyConnection,
    temp: _Temp,
    tables: set[str],
    has_subs: bool,
    has_orders: bool,
    unit: str,
    grid: pd.DataFrame,
    step: Callable[[str], None],
) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """Each table's per-period metrics (frames keyed by period) and the cohort table."""
    parts: list[pd.DataFrame] = []
    if has_subs:
        step("subscriptions: MRR snapshots and movements")
        parts.append(_subscription_kpis(con, temp))
    if has_orders:
        step("orders")
        temp(
            "_kpi_ord",
            f"""
            SELECT account_id, date_trunc('{unit}', ordered_at) AS ps,
                   sum(CASE WHEN kind = 'refund' THEN -abs(amount) ELSE amount END) AS net,
                   sum(CASE WHEN kind = 'refund' THEN abs(amount) ELSE 0 END) AS refunds,
                   count(*) FILTER (WHERE kind IS DISTINCT FROM 'refund') AS n_orders,
                   coalesce(sum(amount) FILTER (WHERE kind IN {sql_list(UPSELL_KINDS)}), 0)
                       AS upsell
            FROM main.orders GROUP BY ALL
            """,
        )
        if not has_subs:
            step("orders: buyers, repeat purchases, spend retention")
            parts.append(_order_kpis(con))
    step("revenue")
    parts.append(_revenue_kpis(con, has_subs, has_orders))
    for table, label, fn in (
        ("nps", "NPS", lambda: _nps_kpis(con, unit)),
        ("campaign_events", "campaigns", lambda: _campaign_kpis(con, unit, has_subs)),
        ("tickets", "tickets", lambda: _ticket_kpis(con, unit)),
    ):
        if table in tables:
            step(label)
            parts.append(fn())
    step("cohorts")
    return parts, _cohorts(con, grid, has_subs)


def _catalogue(tables: set[str], has_subs: bool, has_orders: bool) -> pd.DataFrame:
    applicable = {m.name: _applies(m, tables, has_subs, has_orders) for m in METRICS}
    return pd.DataFrame(
        [
            {
                "name": m.name,
                "kind": m.kind,
                "applies_to": m.applies_to,
                "applicable": applicable[m.name],
                "unit": m.unit,
                "description": m.description,
            }
            for m in METRICS
        ]
    )


def _info(
    params: KpiParams, frame: pd.DataFrame, has_subs: bool, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    complete = frame.index[~frame["partial"].to_numpy(dtype=bool)]
    info = pd.DataFrame(
        {
            "period": [params.period],
            "mode": ["contractual" if has_subs else "orders"],
            "observed_from": [start],
            "observed_to": [end],
            "latest_complete": [complete[-1] if len(complete) else pd.NaT],
        }
    )
    for col in ("observed_from", "observed_to", "latest_complete"):
        info[col] = info[col].astype("datetime64[us]")
    return info


UPSELL_ORDERS = "upsell_orders"
"""Stands for "orders marked upsell or cross_sell exist" among the tables the metrics need:
without any (no kind column, or a retailer's purchases), upsell revenue is not measurable and
its share is NaN, not a 0% that reads as "no upsell"."""


def _upsell_orders(con: duckdb.DuckDBPyConnection) -> bool:
    sql = f"SELECT count(*) FROM main.orders WHERE kind IN {sql_list(UPSELL_KINDS)}"
    return int(con.execute(sql).fetchall()[0][0]) > 0


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM main.{table}").fetchall()[0][0])


def _applies(m: Metric, tables: set[str], has_subs: bool, has_orders: bool) -> bool:
    if m.applies_to == "subscriptions":
        return has_subs
    if m.applies_to == "orders":
        return has_orders
    if m.applies_to == "orders_only":
        return has_orders and not has_subs
    if m.applies_to == "any":
        return True
    return m.applies_to in tables


def _df(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    out = con.execute(sql).df()
    if "period" in out.columns:
        out["period"] = out["period"].astype("datetime64[us]")
    return out


def _subscription_kpis(con: duckdb.DuckDBPyConnection, temp: _Temp) -> pd.DataFrame:
    # Every instant any metric needs: period starts/ends (clipped) and trailing-window starts.
    temp(
        "_kpi_bounds",
        """
        SELECT DISTINCT b FROM (
            SELECT b0 AS b FROM _kpi_periods UNION ALL SELECT b1 FROM _kpi_periods
            UNION ALL SELECT t0 FROM _kpi_periods WHERE t0 IS NOT NULL)
        """,
    )
    # One pass over subscriptions: each account's MRR (exact decimals) and activity per instant.
    temp(
        "_kpi_snap",
        """
        SELECT s.account_id, b.b, sum(CAST(s.mrr AS DECIMAL(18, 6))) AS mrr
        FROM main.subscriptions s JOIN _kpi_bounds b
          ON s.start_at <= b.b AND (s.end_at IS NULL OR b.b < s.end_at)
        GROUP BY ALL
        """,
    )
    temp(
        "_kpi_first_paid",
        """
        SELECT account_id, min(start_at) AS first_paid FROM main.subscriptions
        WHERE mrr > 0 AND (end_at IS NULL OR end_at > start_at) GROUP BY ALL
        """,
    )
    movements = _df(
        con,
        """
        WITH s0 AS (
            SELECT p.period, s.account_id, s.mrr FROM _kpi_periods p
            JOIN _kpi_snap s ON s.b = p.b0),
        s1 AS (
            SELECT p.period, s.account_id, s.mrr FROM _kpi_periods p
            JOIN _kpi_snap s ON s.b = p.b1),
        pairs AS (
            SELECT coalesce(s0.period, s1.period) AS period,
                   coalesce(s0.account_id, s1.account_id) AS account_id,
                   s0.account_id IS NOT NULL AS active0, s1.account_id IS NOT NULL AS active1,
                   coalesce(s0.mrr, 0) AS m0, coalesce(s1.mrr, 0) AS m1
            FROM s0 FULL OUTER JOIN s1 ON s0.period = s1.period AND s0.account_id = s1.account_id)
        SELECT p.period,
            count(*) FILTER (WHERE active0) AS customers_start,
            count(*) FILTER (WHERE active1) AS customers_end,
            count(*) FILTER (WHERE active1 AND NOT active0) AS new_customers,
            count(*) FILTER (WHERE active0 AND NOT active1) AS churned,
            sum(m0) AS start_mrr,
            sum(CASE WHEN m0 = 0 AND m1 > 0 AND NOT coalesce(f.first_paid < p.b0, false)
                THEN m1 ELSE 0 END) AS new_mrr,
            sum(CASE WHEN m0 > 0 AND m1 > m0 THEN m1 - m0 ELSE 0 END) AS expansion_mrr,
            sum(CASE WHEN m0 > 0 AND m1 > 0 AND m1 < m0 THEN m0 - m1 ELSE 0 END)
                AS contraction_mrr,
            sum(CASE WHEN m0 > 0 AND m1 = 0 THEN m0 ELSE 0 END) AS churned_mrr,
            sum(CASE WHEN m0 = 0 AND m1 > 0 AND coalesce(f.first_paid < p.b0, false)
                THEN m1 ELSE 0 END) AS reactivation_mrr,
            sum(m1) AS end_mrr
        FROM _kpi_periods p
        LEFT JOIN pairs ON pairs.period = p.period
        LEFT JOIN _kpi_first_paid f ON f.account_id = pairs.account_id
        GROUP BY p.period
        """,
    )
    trailing = _df(
        con,
        """
        SELECT p.period, sum(a.mrr) AS start_12m,
               sum(least(a.mrr, coalesce(e.mrr, 0))) AS gross_12m,
               sum(coalesce(e.mrr, 0)) AS net_12m
        FROM _kpi_periods p
        JOIN _kpi_snap a ON a.b = p.t0 AND a.mrr > 0
        LEFT JOIN _kpi_snap e ON e.b = p.b1 AND e.account_id = a.account_id
        GROUP BY p.period
        """,
    )
    return _subscription_rates(movements.merge(trailing, on="period", how="left"))


def _subscription_rates(out: pd.DataFrame) -> pd.DataFrame:
    """Money as floats, true zeros filled, and the churn, GRR and NRR rates derived."""
    money = [c for c in out.columns if c.endswith("mrr") or c.endswith("_12m")]
    out[money] = out[money].astype("float64")
    counts = ["customers_start", "customers_end", "new_customers", "churned"]
    out[counts] = out[counts].fillna(0).astype("float64")
    # Periods without any subscription row have no pairs: their movements are 0, not unknown
    # (subscriptions exist in the data, they simply had none at these instants).
    mrr_cols = [c for c in money if c.endswith("mrr")]
    out[mrr_cols] = out[mrr_cols].fillna(0.0)
    start = out["start_mrr"].where(out["start_mrr"] > 0)
    out["grr"] = (out["start_mrr"] - out["churned_mrr"] - out["contraction_mrr"]) / start
    out["nrr"] = (
        out["start_mrr"] + out["expansion_mrr"] - out["contraction_mrr"] - out["churned_mrr"]
    ) / start
    start12 = out["start_12m"].where(out["start_12m"] > 0)
    out["grr_12m"] = out["gross_12m"] / start12
    out["nrr_12m"] = out["net_12m"] / start12
    cust = out["customers_start"].where(out["customers_start"] > 0)
    out["churn_rate"] = out["churned"] / cust
    out["retention_rate"] = 1.0 - out["churn_rate"]
    return out.drop(columns=["start_12m", "gross_12m", "net_12m"])


def _order_kpis(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return _df(
        con,
        """
        WITH first_order AS (
            SELECT account_id, min(ordered_at) AS first_at FROM main.orders
            WHERE kind IS DISTINCT FROM 'refund' GROUP BY ALL),
        churn AS (
            SELECT p.period,
                   count(*) AS buyers_prev,
                   count(*) FILTER (WHERE cur.n_orders > 0) AS buyers_retained,
                   sum(prev.net) AS spend_prev,
                   sum(coalesce(cur.net, 0)) AS spend_retained
            FROM _kpi_periods p
            JOIN _kpi_ord prev ON prev.ps = p.prev AND prev.n_orders > 0
            LEFT JOIN _kpi_ord cur ON cur.ps = p.period AND cur.account_id = prev.account_id
            WHERE p.prev_complete
            GROUP BY p.period),
        repeat AS (
            SELECT p.period, count(*) AS buyers,
                   count(*) FILTER (WHERE f.first_at < p.period) AS repeat_buyers
            FROM _kpi_periods p
            JOIN _kpi_ord o ON o.ps = p.period AND o.n_orders > 0
            JOIN first_order f ON f.account_id = o.account_id
            GROUP BY p.period)
        SELECT p.period, p.prev_complete, c.buyers_prev, c.buyers_retained, c.spend_prev,
               c.spend_retained, r.buyers, r.repeat_buyers
        FROM _kpi_periods p
        LEFT JOIN churn c ON c.period = p.period
        LEFT JOIN repeat r ON r.period = p.period
        """,
    )


def _first_revenue_sql(has_subs: bool, has_orders: bool) -> str:
    """Since when each account is a customer (``first_paid``).

    A customer's age starts when it becomes a customer: its first subscription row (a zero-MRR
    row counts, as it does for customer counts) or its first purchase (a non-refund order with a
    positive amount), whichever is first. An account created before that (a sign-up, a trial) is
    a new customer in the month it starts. An account that is already a customer on the first
    observed day of the data was one before the data starts: it counts from its ``created_at``
    if that is earlier.
    """
    parts = []
    if has_subs:
        parts.append(
            "SELECT account_id, min(start_at) AS t FROM main.subscriptions "
            "WHERE end_at IS NULL OR end_at > start_at GROUP BY ALL"
        )
    if has_orders:
        parts.append(
            "SELECT account_id, min(ordered_at) AS t FROM main.orders "
            "WHERE kind IS DISTINCT FROM 'refund' AND amount > 0 GROUP BY ALL"
        )
    first = f"SELECT account_id, min(t) AS paid FROM ({' UNION ALL '.join(parts)}) GROUP BY ALL"
    return f"""(SELECT f.account_id,
            CASE WHEN f.paid < (SELECT min(b0) FROM _kpi_periods) + INTERVAL 1 DAY
                  AND a.created_at < f.paid THEN a.created_at ELSE f.paid END AS first_paid
        FROM ({first}) f JOIN main.accounts a ON a.account_id = f.account_id)"""


def _revenue_kpis(con: duckdb.DuckDBPyConnection, has_subs: bool, has_orders: bool) -> pd.DataFrame:
    first = _first_revenue_sql(has_subs, has_orders)
    selects = []
    if has_subs:
        # Pro rata per calendar month: overlap / month length, so a whole month is exactly mrr.
        selects.append(
            f"""
            SELECT pc.ps AS period, coalesce(f.first_paid < pc.ps, false) AS existing,
                   sum(s.mrr * ((epoch_us(least(coalesce(s.end_at, pc.qe), pc.qe))
                                 - epoch_us(greatest(s.start_at, pc.qs))) / pc.month_us))
                       AS subscription_revenue,
                   0.0 AS order_revenue, 0.0 AS refunds, 0.0 AS upsell_revenue
            FROM main.subscriptions s
            JOIN _kpi_pieces pc ON s.start_at < pc.qe AND (s.end_at IS NULL OR s.end_at > pc.qs)
            LEFT JOIN {first} f ON f.account_id = s.account_id
            GROUP BY ALL
            """
        )
    if has_orders:
        selects.append(
            f"""
            SELECT p.period, coalesce(f.first_paid < p.period, false) AS existing,
                   0.0 AS subscription_revenue,
                   sum(o.net) AS order_revenue, sum(o.refunds) AS refunds,
                   sum(o.upsell) AS upsell_revenue
            FROM _kpi_periods p JOIN _kpi_ord o ON o.ps = p.period
            LEFT JOIN {first} f ON f.account_id = o.account_id
            GROUP BY ALL
            """
        )
    parts = _df(con, " UNION ALL ".join(f"({s})" for s in selects))
    parts["total"] = parts["subscription_revenue"] + parts["order_revenue"]
    parts["existing_total"] = parts["total"].where(parts["existing"].astype(bool), 0.0)
    out = (
        parts.groupby("period", as_index=False)[
            [
                "subscription_revenue",
                "order_revenue",
                "refunds",
                "upsell_revenue",
                "total",
                "existing_total",
            ]
        ]
        .sum()
        .rename(columns={"total": "revenue", "existing_total": "existing_customer_revenue"})
    )
    return out


def _nps_kpis(con: duckdb.DuckDBPyConnection, unit: str) -> pd.DataFrame:
    return _df(
        con,
        f"""
        SELECT date_trunc('{unit}', responded_at) AS period,
               count(*) AS nps_responses,
               count(*) FILTER (WHERE score >= 9) AS promoters,
               count(*) FILTER (WHERE score >= 7 AND score < 9) AS passives,
               count(*) FILTER (WHERE score < 7) AS detractors,
               count(*) FILTER (WHERE nullif(trim(comment), '') IS NOT NULL) AS nps_comments
        FROM main.nps GROUP BY ALL
        """,
    )


def _campaign_kpis(con: duckdb.DuckDBPyConnection, unit: str, has_subs: bool) -> pd.DataFrame:
    # A semi join (hash on account, then the time condition) rather than a correlated EXISTS.
    if has_subs:
        current = """SEMI JOIN main.subscriptions s ON s.account_id = pairs.account_id
                     AND s.start_at <= pairs.sent_at
                     AND (s.end_at IS NULL OR pairs.sent_at < s.end_at)"""
    else:
        current = """SEMI JOIN main.orders o ON o.account_id = pairs.account_id
                     AND o.ordered_at < pairs.sent_at AND o.kind IS DISTINCT FROM 'refund'"""
    return _df(
        con,
        f"""
        WITH pairs AS (
            SELECT account_id, campaign_id,
                   min(occurred_at) FILTER (WHERE action = 'sent') AS sent_at,
                   bool_or(action IN ('open', 'click')) AS opened,
                   bool_or(action = 'click') AS clicked,
                   bool_or(action = 'unsubscribe') AS unsubscribed
            FROM main.campaign_events GROUP BY ALL)
        SELECT date_trunc('{unit}', sent_at) AS period,
               count(*) AS campaign_sent,
               count(*) FILTER (WHERE opened) AS campaign_opened,
               count(*) FILTER (WHERE clicked) AS campaign_clicked,
               count(*) FILTER (WHERE unsubscribed) AS campaign_unsubscribed
        FROM pairs {current}
        WHERE sent_at IS NOT NULL
        GROUP BY ALL
        """,
    )


def _ticket_kpis(con: duckdb.DuckDBPyConnection, unit: str) -> pd.DataFrame:
    return _df(
        con,
        f"""
        SELECT date_trunc('{unit}', opened_at) AS period, count(*) AS tickets_opened,
               avg(csat) AS csat_mean
        FROM main.tickets GROUP BY ALL
        """,
    )


def _cohorts(con: duckdb.DuckDBPyConnection, grid: pd.DataFrame, has_subs: bool) -> pd.DataFrame:
    if has_subs:
        # Active at the end of the period: in the snapshot at b1 (unique per account and instant).
        active = "LEFT JOIN _kpi_snap x ON x.b = p.b1 AND x.account_id = c.account_id"
    else:
        active = (
            "LEFT JOIN _kpi_ord x ON x.ps = p.period AND x.n_orders > 0 "
            "AND x.account_id = c.account_id"
        )
    out = _df(
        con,
        f"""
        WITH c AS (
            SELECT a.account_id, g.period AS cohort FROM main.accounts a
            JOIN _kpi_periods g ON a.created_at >= g.period AND a.created_at < g.period_end),
        sizes AS (SELECT cohort, count(*) AS cohort_size FROM c GROUP BY ALL)
        SELECT c.cohort, p.period, any_value(sizes.cohort_size) AS cohort_size,
               count(x.account_id) AS retained
        FROM c JOIN _kpi_periods p ON p.period >= c.cohort AND NOT p.partial
        JOIN sizes ON sizes.cohort = c.cohort
        {active}
        GROUP BY c.cohort, p.period
        """,
    )
    index = {ts: i for i, ts in enumerate(grid["period"])}
    out["cohort"] = out["cohort"].astype("datetime64[us]")
    out["periods_since_signup"] = [
        index[pd.Timestamp(p)] - index[pd.Timestamp(c)]
        for c, p in zip(out["cohort"], out["period"], strict=True)
    ]
    out["cohort_size"] = out["cohort_size"].astype("int64")
    out["retained"] = out["retained"].astype("int64")
    out["retention"] = out["retained"] / out["cohort_size"]
    cols = ["cohort", "periods_since_signup", "period", "cohort_size", "retained", "retention"]
    return out[cols].sort_values(["cohort", "periods_since_signup"]).reset_index(drop=True)


def _finish(
    frame: pd.DataFrame, tables: set[str], has_subs: bool, has_orders: bool
) -> pd.DataFrame:
    """Derive the rates, fill true zeros, NaN what does not apply, order the columns."""
    f = frame.copy()
    for col in (
        "subscription_revenue",
        "order_revenue",
        "refunds",
        "upsell_revenue",
        "revenue",
        "existing_customer_revenue",
    ):
        f[col] = f[col].astype("float64").fillna(0.0)
    if has_orders and not has_subs:
        ok = f["prev_complete"].astype(bool)
        for col in ("buyers_prev", "buyers_retained", "spend_prev", "spend_retained"):
            # A complete previous period with no buyers has 0 of them; an unobserved one, NaN.
            f[col] = f[col].astype("float64").where(~ok | f[col].notna(), 0.0).where(ok)
        for col in ("buyers", "repeat_buyers"):
            f[col] = f[col].astype("float64").fillna(0.0)
        prev = f["buyers_prev"].where(f["buyers_prev"] > 0)
        f["active_customer_churn_rate"] = 1.0 - f["buyers_retained"] / prev
        f["repeat_purchase_rate"] = f["repeat_buyers"] / f["buyers"].where(f["buyers"] > 0)
        f["spend_retention"] = f["spend_retained"] / f["spend_prev"].where(f["spend_prev"] > 0)
    revenue = f["revenue"].where(f["revenue"] > 0)
    f["upsell_revenue_share"] = f["upsell_revenue"] / revenue
    f["existing_customer_revenue_share"] = f["existing_customer_revenue"] / revenue
    if "nps" in tables:
        for col in ("nps_responses", "promoters", "passives", "detractors", "nps_comments"):
            f[col] = f[col].astype("float64").fillna(0.0)
        n = f["nps_responses"].where(f["nps_responses"] > 0)
        f["nps"] = 100.0 * (f["promoters"] - f["detractors"]) / n
    if "campaign_events" in tables:
        for col in (
            "campaign_sent",
            "campaign_opened",
            "campaign_clicked",
            "campaign_unsubscribed",
        ):
            f[col] = f[col].astype("float64").fillna(0.0)
        sent = f["campaign_sent"].where(f["campaign_sent"] > 0)
        f["open_rate"] = f["campaign_opened"] / sent
        f["click_rate"] = f["campaign_clicked"] / sent
    if "tickets" in tables:
        f["tickets_opened"] = f["tickets_opened"].astype("float64").fillna(0.0)
        f["csat_mean"] = f["csat_mean"].astype("float64")
    for m in METRICS:
        if m.name not in f.columns or not _applies(m, tables, has_subs, has_orders):
            f[m.name] = np.nan
    cols = ["period", "period_end", "partial", *(m.name for m in METRICS)]
    f = f[cols].copy()
    f[[m.name for m in METRICS]] = f[[m.name for m in METRICS]].astype("float64")
    f["partial"] = f["partial"].astype(bool)
    return f.set_index("period")

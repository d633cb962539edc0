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

Predicted vs realised (issue 5, point 6)
    :func:`predicted_vs_realised` back-scores the training set with the churn model and compares
    the mean predicted probability with the realised churn rate per cutoff and per fixed risk
    band; :func:`run` adds it when a trained churn model and the training set exist.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import duckdb
import numpy as np
import pandas as pd

from churnlab.atomic import atomic_dir, write_file
from churnlab.config import DataParams, KpiParams, TrackingParams
from churnlab.errors import ChurnlabError
from churnlab.load import data_end, present_tables
from churnlab.schema import UPSELL_KINDS, sql_list

Period = Literal["month", "quarter", "week"]
Kind = Literal["outcome", "activity"]

TRAILING_PERIODS: dict[str, int] = {"month": 12, "quarter": 4, "week": 52}
"""Periods in the trailing-12-month window (52 weeks for weekly periods)."""


class KpiError(ChurnlabError):
    """The KPIs cannot be computed from the given data or parameters."""


@dataclass(frozen=True)
class Metric:
    """One column of the period table."""

    name: str
    kind: Kind
    applies_to: Literal[
        "subscriptions", "orders", "orders_only", "any", "nps", "campaign_events", "tickets"
    ]
    """The data the metric needs; ``orders_only``: orders and no subscriptions (buyer metrics
    describe a non-contractual business; beside subscriptions, orders are add-on purchases)."""
    unit: str
    description: str


METRICS: tuple[Metric, ...] = (
    Metric(
        "customers_start",
        "outcome",
        "subscriptions",
        "accounts",
        "customers active at the start of the period (an active subscription)",
    ),
    Metric(
        "customers_end",
        "outcome",
        "subscriptions",
        "accounts",
        "customers active at the end of the period",
    ),
    Metric(
        "new_customers",
        "outcome",
        "subscriptions",
        "accounts",
        "customers active at the end who were not at the start",
    ),
    Metric(
        "churned",
        "outcome",
        "subscriptions",
        "accounts",
        "customers lost in the period: active at the start, not at the end",
    ),
    Metric(
        "churn_rate",
        "outcome",
        "subscriptions",
        "ratio",
        "customer (logo) churn rate: customers lost in the period / customers active at the "
        "start of the period",
    ),
    Metric(
        "retention_rate",
        "outcome",
        "subscriptions",
        "ratio",
        "customer retention rate: 1 - customer churn rate, i.e. share of start-of-period "
        "customers still active at its end",
    ),
    Metric("start_mrr", "outcome", "subscriptions", "currency/month", "MRR at the period start"),
    Metric(
        "new_mrr",
        "outcome",
        "subscriptions",
        "currency/month",
        "MRR at the end of accounts that never paid before the period",
    ),
    Metric(
        "expansion_mrr",
        "outcome",
        "subscriptions",
        "currency/month",
        "MRR increase of accounts paying at both start and end",
    ),
    Metric(
        "contraction_mrr",
        "outcome",
        "subscriptions",
        "currency/month",
        "MRR decrease of accounts paying at both start and end",
    ),
    Metric(
        "churned_mrr",
        "outcome",
        "subscriptions",
        "currency/month",
        "start MRR of accounts paying at the start and not at the end",
    ),
    Metric(
        "reactivation_mrr",
        "outcome",
        "subscriptions",
        "currency/month",
        "MRR at the end of accounts that paid before, but not at the period start",
    ),
    Metric("end_mrr", "outcome", "subscriptions", "currency/month", "MRR at the period end"),
    Metric(
        "grr",
        "outcome",
        "subscriptions",
        "ratio",
        "gross revenue retention: (start MRR - churned MRR - contraction MRR) / start MRR, "
        "for start-of-period customers",
    ),
    Metric(
        "nrr",
        "outcome",
        "subscriptions",
        "ratio",
        "net revenue retention: (start MRR + expansion MRR - contraction MRR - churned MRR) / "
        "start MRR",
    ),
    Metric(
        "grr_12m",
        "outcome",
        "subscriptions",
        "ratio",
        "GRR over the trailing 12 months ending at the period end (snapshots 12 months "
        "apart; 52 weeks, 4 quarters)",
    ),
    Metric(
        "nrr_12m",
        "outcome",
        "subscriptions",
        "ratio",
        "NRR over the trailing 12 months ending at the period end",
    ),
    Metric(
        "buyers_prev",
        "outcome",
        "orders_only",
        "accounts",
        "active customers of the previous period (at least one non-refund order in it)",
    ),
    Metric(
        "buyers_retained",
        "outcome",
        "orders_only",
        "accounts",
        "previous-period buyers who ordered again in this period",
    ),
    Metric(
        "active_customer_churn_rate",
        "outcome",
        "orders_only",
        "ratio",
        "active-customer churn: ordered in the previous period, not in this one / ordered in "
        "the previous period",
    ),
    Metric("buyers", "outcome", "orders_only", "accounts", "accounts with a non-refund order"),
    Metric(
        "repeat_buyers",
        "outcome",
        "orders_only",
        "accounts",
        "buyers of the period who had ordered before the period start",
    ),
    Metric(
        "repeat_purchase_rate",
        "outcome",
        "orders_only",
        "ratio",
        "repeat buyers / buyers of the period",
    ),
    Metric(
        "spend_retention",
        "outcome",
        "orders_only",
        "ratio",
        "net order spend in this period of the previous period's buyers / their net spend in "
        "the previous period",
    ),
    Metric(
        "revenue",
        "outcome",
        "any",
        "currency",
        "total revenue: subscription revenue (pro rata MRR) + net order revenue",
    ),
    Metric(
        "subscription_revenue",
        "outcome",
        "subscriptions",
        "currency",
        "MRR recognised pro rata over the period",
    ),
    Metric("order_revenue", "outcome", "orders", "currency", "order amounts net of refunds"),
    Metric("refunds", "outcome", "orders", "currency", "refunded amounts (positive)"),
    Metric(
        "upsell_revenue",
        "outcome",
        "orders",
        "currency",
        "amounts of orders of kind upsell or cross_sell",
    ),
    Metric(
        "upsell_revenue_share",
        "outcome",
        "orders",
        "ratio",
        "upsell revenue share: upsell + cross-sell revenue / total revenue in the period",
    ),
    Metric(
        "existing_customer_revenue_share",
        "outcome",
        "any",
        "ratio",
        "revenue from existing customers: revenue from customers older than the period start "
        "(created_at < period start) / total revenue",
    ),
    Metric(
        "nps",
        "outcome",
        "nps",
        "points (-100..100)",
        "NPS: % promoters (9-10) - % detractors (0-6) among responses in the period",
    ),
    Metric("nps_responses", "activity", "nps", "responses", "NPS responses in the period"),
    Metric("promoters", "activity", "nps", "responses", "responses scoring 9-10"),
    Metric("passives", "activity", "nps", "responses", "responses scoring 7-8"),
    Metric("detractors", "activity", "nps", "responses", "responses scoring 0-6"),
    Metric("nps_comments", "activity", "nps", "responses", "responses with a non-empty comment"),
    Metric(
        "campaign_sent",
        "activity",
        "campaign_events",
        "(account, campaign) pairs",
        "campaign sends to current customers, unique per account and campaign",
    ),
    Metric(
        "campaign_opened",
        "activity",
        "campaign_events",
        "(account, campaign) pairs",
        "sent pairs with an open (or a click)",
    ),
    Metric(
        "campaign_clicked",
        "activity",
        "campaign_events",
        "(account, campaign) pairs",
        "sent pairs with a click",
    ),
    Metric(
        "campaign_unsubscribed",
        "activity",
        "campaign_events",
        "(account, campaign) pairs",
        "sent pairs with an unsubscribe",
    ),
    Metric(
        "open_rate",
        "activity",
        "campaign_events",
        "ratio",
        "customer campaign open rate: opens / sent, over campaigns sent to current customers "
        "(unique per account and campaign)",
    ),
    Metric(
        "click_rate",
        "activity",
        "campaign_events",
        "ratio",
        "customer campaign click rate: clicks / sent, over campaigns sent to current "
        "customers (unique per account and campaign)",
    ),
    Metric("tickets_opened", "activity", "tickets", "tickets", "support tickets opened"),
    Metric(
        "csat_mean",
        "activity",
        "tickets",
        "score (1-5)",
        "mean CSAT of tickets opened in the period",
    ),
)
"""Every KPI column with its kind (DESIGN.md section 5: activity metrics are easy to capture;
outcome metrics are what the business cares about), the table it needs, unit and definition."""

METRIC_KINDS: dict[str, Kind] = {m.name: m.kind for m in METRICS}

_SQL_UNIT = {"month": "month", "quarter": "quarter", "week": "week"}


# --------------------------------------------------------------------------------------------
# Periods


def period_start(ts: dt.datetime | pd.Timestamp, period: Period) -> pd.Timestamp:
    """The start of the calendar period containing ``ts`` (ISO weeks start on Monday)."""
    t = pd.Timestamp(ts).normalize()
    if period == "week":
        return t - pd.Timedelta(days=t.weekday())
    if period == "quarter":
        return t.replace(month=3 * ((t.month - 1) // 3) + 1, day=1)
    return t.replace(day=1)


def shift_period(ts: pd.Timestamp, period: Period, n: int) -> pd.Timestamp:
    """``ts`` moved by ``n`` periods (``ts`` is a period start)."""
    if period == "week":
        return ts + pd.Timedelta(weeks=n)
    return ts + pd.DateOffset(months=n * (3 if period == "quarter" else 1))


def observation_window(
    con: duckdb.DuckDBPyConnection, data: DataParams
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The observed time window ``[start, end)`` of the data (see the module docstring)."""
    from churnlab.schema import TABLES

    parts = [
        f"SELECT min({TABLES[t].time_column}) AS m FROM main.{t}"
        for t in present_tables(con)
        if t != "accounts"
    ]
    if not parts:
        parts = ["SELECT min(created_at) AS m FROM main.accounts"]
    first = con.execute(f"SELECT min(m) FROM ({' UNION ALL '.join(parts)})").fetchall()[0]
    if first[0] is None:
        raise KpiError("the data has no rows with timestamps: there is nothing to compute KPIs on")
    start = pd.Timestamp(first[0]).normalize()
    if data.as_of is not None:
        end = pd.Timestamp(data.as_of)
    else:
        # The latest row says the day was observed, not that it was observed to its last second.
        end = pd.Timestamp(data_end(con, data)).normalize() + pd.Timedelta(days=1)
    if end <= start:
        raise KpiError(
            f"data.as_of ({end}) is not after the first row of the data ({start}); "
            "set data.as_of to the time the data was extracted"
        )
    return start, end


def periods(params: KpiParams, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The period grid: one row per period overlapping the observed window and the requested range.

    Columns: ``period`` (start), ``period_end``, ``partial``, the snapshot instants ``b0``/``b1``
    (period start/end clipped to the observed window), ``t0`` (start of the trailing-12-month
    window, NaT when it is not fully observed or the period is partial), ``prev`` (previous period
    start) and ``prev_complete`` (the previous period was fully observed).
    """
    p: Period = params.period
    lo = start if params.date_from is None else max(start, pd.Timestamp(params.date_from))
    hi = end - pd.Timedelta(microseconds=1)
    if params.date_to is not None:
        # date_to is inclusive: the period containing it is the last one.
        hi = min(hi, pd.Timestamp(params.date_to))
    first, last = period_start(lo, p), period_start(hi, p)
    if first > last:
        raise KpiError(
            f"no {p} overlaps both the requested range (kpis.date_from={params.date_from}, "
            f"kpis.date_to={params.date_to}) and the observed data ({start.date()} to "
            f"{end.date()}); widen --from/--to"
        )
    rows = []
    ps = first
    k = TRAILING_PERIODS[p]
    while ps <= last:
        pe = shift_period(ps, p, 1)
        partial = bool(ps < start or pe > end)
        t0 = shift_period(pe, p, -k)
        prev = shift_period(ps, p, -1)
        rows.append(
            {
                "period": ps,
                "period_end": pe,
                "partial": partial,
                "b0": max(ps, start),
                "b1": min(pe, end),
                "t0": pd.NaT if partial or t0 < start else t0,
                "prev": prev,
                "prev_complete": bool(prev >= start),
            }
        )
        ps = pe
    frame = pd.DataFrame(rows)
    for col in ("period", "period_end", "b0", "b1", "t0", "prev"):
        frame[col] = frame[col].astype("datetime64[us]")
    return frame


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


# --------------------------------------------------------------------------------------------
# Compute


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
    start, end = observation_window(con, data)
    grid = periods(params, start, end)
    unit = _SQL_UNIT[params.period]

    frame = grid[["period", "period_end", "partial"]].copy()
    # Temporary tables live in this connection only; the finally block removes them so that the
    # caller's connection is left as it was.
    created: list[str] = []

    def temp(name: str, sql: str, args: list[Any] | None = None) -> None:
        # DuckDB 2 keeps a statement's result open until it is fetched, even for DDL.
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}", args or []).fetchall()
        created.append(name)

    def register(name: str, df: pd.DataFrame) -> None:
        con.register(f"_kpi_df_{name}", df)
        temp(name, f"SELECT * FROM _kpi_df_{name}")
        con.unregister(f"_kpi_df_{name}")

    try:
        register("_kpi_periods", grid)
        register("_kpi_pieces", _month_pieces(grid))
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
        if "nps" in tables:
            step("NPS")
            parts.append(_nps_kpis(con, unit))
        if "campaign_events" in tables:
            step("campaigns")
            parts.append(_campaign_kpis(con, unit, has_subs))
        if "tickets" in tables:
            step("tickets")
            parts.append(_ticket_kpis(con, unit))
        step("cohorts")
        cohorts = _cohorts(con, grid, has_subs)
    finally:
        for name in created:
            con.execute(f"DROP TABLE IF EXISTS {name}").fetchall()

    for part in parts:
        frame = frame.merge(part, on="period", how="left")
    frame = _finish(frame, tables, has_subs, has_orders)

    applicable = {m.name: _applies(m, tables, has_subs, has_orders) for m in METRICS}
    catalogue = pd.DataFrame(
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
    return {"monthly": frame, "cohorts": cohorts, "metrics": catalogue, "info": info}


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


def _subscription_kpis(con: duckdb.DuckDBPyConnection, temp: Callable[..., None]) -> pd.DataFrame:
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
    out = movements.merge(trailing, on="period", how="left")
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


def _revenue_kpis(con: duckdb.DuckDBPyConnection, has_subs: bool, has_orders: bool) -> pd.DataFrame:
    selects = []
    if has_subs:
        # Pro rata per calendar month: overlap / month length, so a whole month is exactly mrr.
        selects.append(
            """
            SELECT pc.ps AS period, a.created_at < pc.ps AS existing,
                   sum(s.mrr * ((epoch_us(least(coalesce(s.end_at, pc.qe), pc.qe))
                                 - epoch_us(greatest(s.start_at, pc.qs))) / pc.month_us))
                       AS subscription_revenue,
                   0.0 AS order_revenue, 0.0 AS refunds, 0.0 AS upsell_revenue
            FROM main.subscriptions s
            JOIN _kpi_pieces pc ON s.start_at < pc.qe AND (s.end_at IS NULL OR s.end_at > pc.qs)
            JOIN main.accounts a ON a.account_id = s.account_id
            GROUP BY ALL
            """
        )
    if has_orders:
        selects.append(
            """
            SELECT p.period, a.created_at < p.period AS existing, 0.0 AS subscription_revenue,
                   sum(o.net) AS order_revenue, sum(o.refunds) AS refunds,
                   sum(o.upsell) AS upsell_revenue
            FROM _kpi_periods p JOIN _kpi_ord o ON o.ps = p.period
            JOIN main.accounts a ON a.account_id = o.account_id
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


def latest_complete(result: dict[str, pd.DataFrame]) -> pd.Series | None:
    """The row of the latest complete (not partial) period, or None if every period is partial."""
    monthly = result["monthly"]
    complete = monthly[~monthly["partial"]]
    if complete.empty:
        return None
    return complete.iloc[-1]


# --------------------------------------------------------------------------------------------
# Predicted vs realised (needs a trained churn model)

RISK_BANDS: tuple[float, ...] = (0.0, 0.05, 0.10, 0.20, 0.40, 1.0)
"""Edges of the churn-risk bands: [0, 5%), [5%, 10%), [10%, 20%), [20%, 40%), [40%, 100%]."""

PVR_OVERALL = "predicted_vs_realised"
PVR_BANDS = "predicted_vs_realised_bands"


class ChurnScorer(Protocol):
    """What :func:`predicted_vs_realised` needs of a model (``churnlab.train.ModelBundle``)."""

    info: dict[str, Any]

    def predict(self, frame: pd.DataFrame) -> np.ndarray: ...


def _band_labels(bands: Sequence[float]) -> list[str]:
    return [f"{100 * lo:g}-{100 * hi:g}%" for lo, hi in zip(bands[:-1], bands[1:], strict=True)]


def _cutoff_role(cutoff: pd.Timestamp, info: dict[str, Any]) -> str:
    day = cutoff.date().isoformat()
    if day == str(info.get("test_cutoff")):
        return "test"
    if day == str(info.get("valid_cutoff")):
        return "valid"
    if day in {str(c) for c in info.get("train_cutoffs", [])}:
        return "train"
    test = info.get("test_cutoff")
    if test is not None and day > str(test):
        return "after test"
    return "not used in training"


def predicted_vs_realised(
    frame: pd.DataFrame, model: ChurnScorer, bands: Sequence[float] = RISK_BANDS
) -> dict[str, pd.DataFrame]:
    """Mean predicted churn probability against the realised churn rate, per cutoff and risk band.

    Every row of the training set is (back-)scored with the model; a cutoff's realised rate is
    the mean ``churn`` label over its labeled rows (NaN while its label window is still open, so
    the latest cutoffs show a prediction waiting for its outcome). Bands are fixed probability
    ranges (:data:`RISK_BANDS`) so that they mean the same at every cutoff. Each cutoff carries
    its ``role`` in the model's fit (train, valid, test, after test): only valid, test and later
    cutoffs are honest out-of-sample checks of calibration.

    Parameters
    ----------
    frame : DataFrame
        The training set (``dataset.read``): ``cutoff``, ``churn``, ``labeled`` and the model's
        feature columns.
    model : ChurnScorer
        The churn model (``churnlab.train.ModelBundle`` for the churn task).
    bands : sequence of float
        Band edges from 0 to 1.

    Returns
    -------
    dict of str to DataFrame
        ``"predicted_vs_realised"``: ``cutoff``, ``role``, ``rows``, ``labeled_rows``,
        ``mean_predicted``, ``realised_rate``, ``positives``, ``difference`` (predicted -
        realised). ``"predicted_vs_realised_bands"``: the same per ``cutoff`` and ``band``.

    Raises
    ------
    KpiError
        If the frame lacks the label columns.
    """
    missing = [c for c in ("cutoff", "churn", "labeled") if c not in frame.columns]
    if missing:
        raise KpiError(
            f"predicted vs realised needs the training set's {missing} columns: pass the frame "
            "returned by churnlab.dataset.read"
        )
    edges = np.asarray(bands, dtype=float)
    p = np.asarray(model.predict(frame), dtype=float)
    labeled = frame["labeled"].to_numpy(dtype=bool) & frame["churn"].notna().to_numpy()
    rows = pd.DataFrame(
        {
            "cutoff": frame["cutoff"].to_numpy(),
            "p": p,
            "y": np.where(labeled, frame["churn"].to_numpy(dtype=float, na_value=np.nan), np.nan),
            # Right-open bands, the last one closed at 1.
            "band": np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2),
        }
    )

    def summarise(g: pd.core.groupby.DataFrameGroupBy) -> pd.DataFrame:
        out = g.agg(
            rows=("p", "size"),
            labeled_rows=("y", "count"),
            mean_predicted=("p", "mean"),
            realised_rate=("y", "mean"),
            positives=("y", "sum"),
        )
        out["positives"] = out["positives"].where(out["labeled_rows"] > 0)
        out["difference"] = out["mean_predicted"] - out["realised_rate"]
        return out.reset_index()

    overall = summarise(rows.groupby("cutoff"))
    by_band = summarise(rows.groupby(["cutoff", "band"]))
    names = _band_labels([float(e) for e in edges])
    by_band["band"] = [names[i] for i in by_band["band"]]
    for out in (overall, by_band):
        out["cutoff"] = out["cutoff"].astype("datetime64[us]")
        out.insert(1, "role", [_cutoff_role(pd.Timestamp(c), model.info) for c in out["cutoff"]])
        for col in ("rows", "labeled_rows"):
            out[col] = out[col].astype("int64")
    return {PVR_OVERALL: overall, PVR_BANDS: by_band}


def _pvr_headline(result: dict[str, pd.DataFrame]) -> pd.Series | None:
    """The predicted-vs-realised row of the test cutoff (else of the latest labeled cutoff)."""
    overall = result.get(PVR_OVERALL)
    if overall is None or overall.empty:
        return None
    test = overall[overall["role"] == "test"]
    if len(test):
        return test.iloc[-1]
    labeled = overall[overall["labeled_rows"] > 0]
    return labeled.iloc[-1] if len(labeled) else None


def _plot_pvr(result: dict[str, pd.DataFrame], save: Callable[[Any, str], None]) -> None:
    overall, by_band = result[PVR_OVERALL], result[PVR_BANDS]
    head = _pvr_headline(result)
    fig = _new_figure(12, 5)
    ax, ax_b = fig.subplots(1, 2, width_ratios=[3, 2])
    x = np.arange(len(overall))
    ax.plot(x, 100 * overall["mean_predicted"], marker="o", ms=3, label="mean predicted")
    ax.plot(x, 100 * overall["realised_rate"], marker="s", ms=3, label="realised")
    shades = {"train": "#e8f0fb", "valid": "#e0e0e0", "test": "#ffd27f"}
    roles = list(overall["role"])
    for i, role in enumerate(roles):
        if role in shades:
            ax.axvspan(i - 0.5, i + 0.5, color=shades[role], lw=0)
            if i == 0 or roles[i - 1] != role:  # label each run of cutoffs once
                ax.text(
                    i, 0, role, ha="left" if role == "train" else "center", va="bottom", fontsize=7
                )
    labels = [pd.Timestamp(c).strftime("%Y-%m-%d") for c in overall["cutoff"]]
    step = max(1, len(labels) // 10)
    ax.set_xticks(x[::step], labels[::step], rotation=45, ha="right")
    ax.set_ylabel("churn within the horizon (%)")
    ax.set_ylim(bottom=0)
    ax.set_title("Predicted vs realised churn per cutoff")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if head is not None:
        b = by_band[by_band["cutoff"] == head["cutoff"]]
        xb = np.arange(len(b))
        ax_b.bar(xb - 0.2, 100 * b["mean_predicted"], 0.4, label="mean predicted")
        ax_b.bar(xb + 0.2, 100 * b["realised_rate"], 0.4, label="realised")
        for i, n in enumerate(b["rows"]):
            ax_b.text(i, 0, f"n={n}", ha="center", va="bottom", fontsize=7)
        ax_b.set_xticks(xb, list(b["band"]))
        ax_b.set_xlabel("predicted risk band")
        ax_b.set_title(
            f"By risk band, cutoff {pd.Timestamp(head['cutoff']).date()} ({head['role']})"
        )
        ax_b.legend(fontsize=8)
        ax_b.grid(axis="y", alpha=0.3)
    else:
        ax_b.set_axis_off()
    save(fig, "predicted_vs_realised.png")


# --------------------------------------------------------------------------------------------
# Outputs


def _flat(result: dict[str, pd.DataFrame], name: str) -> pd.DataFrame:
    frame = result[name]
    return frame.reset_index() if name == "monthly" else frame


def _csv_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda tmp: frame.to_csv(tmp, index=False)


def _parquet_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda tmp: frame.to_parquet(tmp, index=False)


def write(result: dict[str, pd.DataFrame], out_dir: Path | str) -> list[Path]:
    """Write the period table and the cohorts as CSV and Parquet, each file atomically.

    Parameters
    ----------
    result : dict of str to DataFrame
        What :func:`compute` returned.
    out_dir : Path or str
        Directory to write ``monthly.{csv,parquet}``, ``cohorts.{csv,parquet}``,
        ``metrics.csv`` (the catalogue with each metric's kind) and, when the result has them,
        ``predicted_vs_realised.csv`` and ``predicted_vs_realised_bands.csv`` into.

    Returns
    -------
    list of Path
        The files written.
    """
    out = Path(out_dir)
    paths = []
    for name in ("monthly", "cohorts"):
        frame = _flat(result, name)
        write_file(out / f"{name}.csv", _csv_writer(frame))
        write_file(out / f"{name}.parquet", _parquet_writer(frame))
        paths += [out / f"{name}.csv", out / f"{name}.parquet"]
    target = out / "metrics.csv"
    write_file(target, _csv_writer(result["metrics"]))
    paths.append(target)
    for name in (PVR_OVERALL, PVR_BANDS):
        if name in result:
            write_file(out / f"{name}.csv", _csv_writer(result[name]))
            paths.append(out / f"{name}.csv")
    return paths


def _new_figure(width: float = 10, height: float = 5) -> Any:
    # The object-oriented API with an explicit Agg canvas: no pyplot global state, no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _label(ts: pd.Timestamp, period: str) -> str:
    if period == "month":
        return ts.strftime("%Y-%m")
    if period == "quarter":
        return f"{ts.year}-Q{(ts.month - 1) // 3 + 1}"
    return ts.strftime("%Y-%m-%d")


def plot(result: dict[str, pd.DataFrame], out_dir: Path | str) -> list[Path]:
    """Draw the KPI plots as PNG files (complete periods only; a plot without data is skipped).

    Plots: ``kpi_trends.png`` (churn, GRR, NRR; orders-only: active-customer churn, repeat
    purchase, spend retention), ``mrr_bridge.png`` (MRR movements as stacked bars with end MRR),
    ``cohort_retention.png`` (heatmap), ``nps.png`` (NPS with promoter/passive/detractor counts),
    ``campaigns.png`` (open and click rates with sends), and ``predicted_vs_realised.png`` when
    the result holds :func:`predicted_vs_realised` tables.

    Parameters
    ----------
    result : dict of str to DataFrame
        What :func:`compute` returned.
    out_dir : Path or str
        Directory for the PNG files (created if needed).

    Returns
    -------
    list of Path
        The files written.
    """
    out = Path(out_dir)
    period = str(result["info"]["period"].iloc[0])
    monthly = result["monthly"]
    m = monthly[~monthly["partial"]]
    labels = [_label(pd.Timestamp(t), period) for t in m.index]
    x = np.arange(len(m))
    paths: list[Path] = []

    def save(fig: Any, name: str) -> None:
        target = out / name
        write_file(target, lambda tmp: fig.savefig(tmp, format="png"))
        paths.append(target)

    def ticks(ax: Any) -> None:
        step = max(1, len(labels) // 12)
        ax.set_xticks(x[::step], labels[::step], rotation=45, ha="right")
        ax.grid(axis="y", alpha=0.3)

    def legend(fig: Any, *axes: Any) -> None:
        # Below the plot, so it never hides a line or a bar.
        handles, names = [], []
        for a in axes:
            h, n = a.get_legend_handles_labels()
            handles += h
            names += n
        fig.legend(handles, names, loc="outside lower center", ncol=min(5, len(names)), fontsize=8)

    def money(a: Any) -> None:
        from matplotlib.ticker import FuncFormatter

        def fmt(v: float, _pos: int) -> str:
            if abs(v) >= 1e6:
                return f"{v / 1e6:.1f}M"
            return f"{v / 1e3:.0f}k" if abs(v) >= 1e3 else f"{v:.0f}"

        a.yaxis.set_major_formatter(FuncFormatter(fmt))

    def has(*cols: str) -> bool:
        return len(m) > 0 and any(m[c].notna().any() for c in cols)

    # KPI trends: rates on one axis (percent), so churn and retention read on the same scale.
    # Fixed colours: the two axes would otherwise each start the colour cycle and clash.
    trend_cols = [
        ("churn_rate", "logo churn rate", "#d62728"),
        ("grr", "GRR", "#1f77b4"),
        ("nrr", "NRR", "#2ca02c"),
        ("grr_12m", "GRR (trailing 12m)", "#1f77b4"),
        ("nrr_12m", "NRR (trailing 12m)", "#2ca02c"),
        ("active_customer_churn_rate", "active-customer churn (orders)", "#ff7f0e"),
        ("repeat_purchase_rate", "repeat-purchase rate", "#9467bd"),
        ("spend_retention", "spend retention", "#8c564b"),
    ]
    present = [(c, lab, color) for c, lab, color in trend_cols if has(c)]
    if present:
        fig = _new_figure()
        ax = fig.add_subplot()
        churn_like = {"churn_rate", "active_customer_churn_rate"}
        ax2 = ax.twinx() if any(c in churn_like for c, _, _ in present) else None
        for c, lab, color in present:
            target_ax = ax2 if (ax2 is not None and c in churn_like) else ax
            style = "--" if c.endswith("_12m") else "-"
            target_ax.plot(
                x, 100 * m[c].to_numpy(), style, color=color, marker="o", ms=3, label=lab
            )
        ax.set_ylabel("retention (%)")
        if ax2 is not None:
            ax2.set_ylabel("churn (%)")
            ax2.set_ylim(bottom=0)
            legend(fig, ax, ax2)
        else:
            legend(fig, ax)
        ax.set_title(f"Retention KPIs per {period} (complete periods)")
        ticks(ax)
        save(fig, "kpi_trends.png")

    if has("start_mrr"):
        fig = _new_figure()
        ax = fig.add_subplot()
        ups = [
            ("new_mrr", "new", "#2ca02c"),
            ("expansion_mrr", "expansion", "#98df8a"),
            ("reactivation_mrr", "reactivation", "#17becf"),
        ]
        downs = [
            ("churned_mrr", "churned", "#d62728"),
            ("contraction_mrr", "contraction", "#ff9896"),
        ]
        bottom = np.zeros(len(m))
        for c, lab, color in ups:
            v = m[c].to_numpy()
            ax.bar(x, v, bottom=bottom, label=lab, color=color)
            bottom = bottom + v
        bottom = np.zeros(len(m))
        for c, lab, color in downs:
            v = -m[c].to_numpy()
            ax.bar(x, v, bottom=bottom, label=lab, color=color)
            bottom = bottom + v
        net = (m["end_mrr"] - m["start_mrr"]).to_numpy()
        ax.plot(x, net, "k-", marker="o", ms=3, label="net change")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylabel("MRR movement")
        ax3 = ax.twinx()
        ax3.plot(x, m["end_mrr"].to_numpy(), color="grey", ls=":", label="end MRR")
        ax3.set_ylabel("end MRR")
        money(ax)
        money(ax3)
        legend(fig, ax, ax3)
        ax.set_title(
            f"MRR bridge per {period}: start + new + expansion + reactivation "
            "- contraction - churned = end (movements)"
        )
        ticks(ax)
        save(fig, "mrr_bridge.png")

    cohorts = result["cohorts"]
    if len(cohorts):
        grid = cohorts.pivot(index="cohort", columns="periods_since_signup", values="retention")
        fig = _new_figure(10, max(4.0, 0.3 * len(grid) + 1.5))
        ax = fig.add_subplot()
        image = ax.imshow(
            100 * grid.to_numpy(dtype=float), aspect="auto", cmap="viridis", vmin=0, vmax=100
        )
        ax.set_yticks(
            np.arange(len(grid)), [_label(pd.Timestamp(t), period) for t in grid.index], fontsize=7
        )
        ax.set_xlabel(f"{period}s since sign-up")
        ax.set_ylabel("sign-up cohort")
        ax.set_title("Cohort retention (% of cohort active)")
        if grid.shape[0] * grid.shape[1] <= 400:
            for (i, j), v in np.ndenumerate(grid.to_numpy(dtype=float)):
                if not math.isnan(v):
                    ax.text(
                        j,
                        i,
                        f"{100 * v:.0f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if v < 0.6 else "black",
                    )
        fig.colorbar(image, ax=ax, label="% retained")
        save(fig, "cohort_retention.png")

    if has("nps"):
        fig = _new_figure()
        ax = fig.add_subplot()
        ax.bar(x, m["promoters"].to_numpy(), color="#2ca02c", label="promoters")
        ax.bar(
            x,
            m["passives"].to_numpy(),
            bottom=m["promoters"].to_numpy(),
            color="#c7c7c7",
            label="passives",
        )
        ax.bar(
            x,
            m["detractors"].to_numpy(),
            bottom=(m["promoters"] + m["passives"]).to_numpy(),
            color="#d62728",
            label="detractors",
        )
        ax.set_ylabel("responses")
        ax2 = ax.twinx()
        ax2.plot(x, m["nps"].to_numpy(), "k-", marker="o", ms=3, label="NPS")
        ax2.set_ylabel("NPS (-100..100)")
        ax2.axhline(0, color="black", lw=0.5, ls=":")
        legend(fig, ax, ax2)
        ax.set_title(f"NPS per {period} (periods without responses have no NPS)")
        ticks(ax)
        save(fig, "nps.png")

    if has("open_rate"):
        fig = _new_figure()
        ax = fig.add_subplot()
        ax.bar(x, m["campaign_sent"].to_numpy(), color="#dddddd", label="sent (account x campaign)")
        ax.set_ylabel("sends to current customers")
        ax2 = ax.twinx()
        ax2.plot(x, 100 * m["open_rate"].to_numpy(), marker="o", ms=3, label="open rate")
        ax2.plot(x, 100 * m["click_rate"].to_numpy(), marker="o", ms=3, label="click rate")
        ax2.set_ylabel("rate (%)")
        ax2.set_ylim(bottom=0)
        legend(fig, ax, ax2)
        ax.set_title(f"Customer campaign engagement per {period} (unique per account and campaign)")
        ticks(ax)
        save(fig, "campaigns.png")
    if PVR_OVERALL in result and len(result[PVR_OVERALL]):
        _plot_pvr(result, save)
    return paths


def kpi_kinds(result: dict[str, pd.DataFrame]) -> dict[str, dict[str, Any]]:
    """Each KPI's kind (activity or outcome), unit, applicability and definition, by name."""
    kinds = {
        row["name"]: {
            "kind": row["kind"],
            "applicable": bool(row["applicable"]),
            "unit": row["unit"],
            "description": row["description"],
        }
        for row in result["metrics"].to_dict("records")
    }
    if PVR_OVERALL in result:
        for name, what in (("predicted_churn", "mean predicted"), ("realised_churn", "realised")):
            kinds[name] = {
                "kind": "outcome",
                "applicable": True,
                "unit": "ratio",
                "description": f"{what} churn within the horizon at the model's test cutoff "
                "(else the latest labeled cutoff)",
            }
    return kinds


def log_to_mlflow(
    result: dict[str, pd.DataFrame], plots: Path | str | Sequence[Path | str] | None = None
) -> dict[str, float]:
    """Log the KPIs into the active MLflow run.

    Metrics: the latest complete period's KPIs as ``kpi.<name>`` (NaN and not-applicable values
    are skipped, never logged as 0). Tags: ``kpi.period`` (its start, ISO), ``kpi.period_length``,
    ``kpi.mode``, and ``kpi.outcome_metrics`` / ``kpi.activity_metrics`` (comma-separated names).
    Artifacts under ``kpis/``: ``monthly.csv``, ``cohorts.csv``, ``metrics.csv``,
    ``kpi_kinds.json`` (kind, unit and definition per metric) and the plots under ``kpis/plots``.
    When the result holds :func:`predicted_vs_realised` tables (add them to the dict), they are
    logged too, with ``kpi.predicted_churn`` / ``kpi.realised_churn`` at the test cutoff.

    Parameters
    ----------
    result : dict of str to DataFrame
        What :func:`compute` returned.
    plots : Path, str, or sequence of them, optional
        The plot files (what :func:`plot` returned) or a directory whose PNG files are logged.
        None, or a directory without PNG files, draws the plots with :func:`plot` first (into
        that directory, or a temporary one).

    Returns
    -------
    dict of str to float
        The metrics logged.

    Raises
    ------
    KpiError
        If there is no active MLflow run.
    """
    import mlflow

    if mlflow.active_run() is None:
        raise KpiError("log_to_mlflow needs an active MLflow run (call it inside mlflow.start_run)")
    info = result["info"].iloc[0]
    row = latest_complete(result)
    metrics: dict[str, float] = {}
    if row is not None:
        for m in METRICS:
            value = row[m.name]
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                metrics[f"kpi.{m.name}"] = float(value)
    head = _pvr_headline(result)
    if head is not None:
        # Outcome vs prediction at the test cutoff (else the latest labeled one).
        metrics["kpi.predicted_churn"] = float(head["mean_predicted"])
        metrics["kpi.realised_churn"] = float(head["realised_rate"])
    if metrics:
        mlflow.log_metrics(metrics)
    kinds = kpi_kinds(result)
    mlflow.set_tags(
        {
            "kpi.period": "none" if row is None else pd.Timestamp(row.name).date().isoformat(),
            "kpi.period_length": str(info["period"]),
            "kpi.mode": str(info["mode"]),
            "kpi.outcome_metrics": ",".join(k for k, v in kinds.items() if v["kind"] == "outcome"),
            "kpi.activity_metrics": ",".join(
                k for k, v in kinds.items() if v["kind"] == "activity"
            ),
        }
    )
    with tempfile.TemporaryDirectory(prefix="churnlab-kpis-") as tmp:
        folder = Path(tmp)
        _flat(result, "monthly").to_csv(folder / "monthly.csv", index=False)
        result["cohorts"].to_csv(folder / "cohorts.csv", index=False)
        result["metrics"].to_csv(folder / "metrics.csv", index=False)
        (folder / "kpi_kinds.json").write_text(json.dumps(kinds, indent=2))
        for name in (PVR_OVERALL, PVR_BANDS):
            if name in result:
                result[name].to_csv(folder / f"{name}.csv", index=False)
        mlflow.log_artifacts(str(folder), artifact_path="kpis")
        for path in _plot_files(result, plots, folder):
            mlflow.log_artifact(str(path), artifact_path="kpis/plots")
    return metrics


def _plot_files(
    result: dict[str, pd.DataFrame], plots: Path | str | Sequence[Path | str] | None, tmp: Path
) -> list[Path]:
    if plots is None:
        return plot(result, tmp / "plots")
    if isinstance(plots, str | Path):
        folder = Path(plots)
        if not folder.is_dir():
            return [folder]
        found = sorted(folder.glob("*.png"))
        # An empty folder is a place to draw them (callers that only want them logged).
        return found or plot(result, folder)
    return [Path(p) for p in plots]


@dataclass(frozen=True)
class KpiRun:
    """What :func:`run` produced."""

    result: dict[str, pd.DataFrame]
    out: Path
    files: list[Path]
    plots: list[Path]
    run_id: str | None
    notes: tuple[str, ...] = ()


def run(
    params: KpiParams,
    data: DataParams,
    tracking: TrackingParams | None = None,
    *,
    source: str | None = None,
    log: bool = False,
    con: duckdb.DuckDBPyConnection | None = None,
    dataset_dir: Path | str | None = None,
    models_dir: Path | str | None = None,
    progress: Callable[[str], None] | None = None,
) -> KpiRun:
    """Load the data, compute the KPIs, write tables and plots to ``params.out``, optionally log.

    The output folder is replaced atomically: it is written in full to a temporary sibling
    folder first, so a failed run leaves the previous output in place.

    Parameters
    ----------
    params : KpiParams
        The ``kpis`` section.
    data : DataParams
        The ``data`` section (source, column mapping, as-of).
    tracking : TrackingParams, optional
        The ``tracking`` section; needed when ``log`` is true.
    source : str, optional
        Overrides ``data.source``.
    log : bool
        Create an MLflow run (experiment ``tracking.experiment``) and log the KPIs into it.
    con : duckdb.DuckDBPyConnection, optional
        An already loaded connection (``source`` is then ignored).
    dataset_dir, models_dir : Path or str, optional
        The training set (``dataset.out``) and the models folder (``train.out``): when both
        hold what ``churnlab build-dataset`` and ``churnlab train`` write, the result also gets
        :func:`predicted_vs_realised` for the churn model (else a note says why not).
    progress : callable, optional
        Called with a short label before each step.
    """
    step = progress or (lambda _label: None)
    if con is None:
        from churnlab.load import load

        step("loading and validating the data")
        con = load(data, source)
    result = compute(con, params, data, progress=step)
    notes: list[str] = []
    if dataset_dir is not None and models_dir is not None:
        bundle_dir = Path(models_dir) / "churn"
        if not (bundle_dir / "bundle.json").is_file():
            notes.append(f"predicted vs realised: skipped (no churn model in {bundle_dir})")
        elif not (Path(dataset_dir) / "manifest.json").is_file():
            notes.append(f"predicted vs realised: skipped (no training set in {dataset_dir})")
        else:
            from churnlab import dataset
            from churnlab.train import ModelBundle

            step("scoring the training set: predicted vs realised churn")
            frame, _manifest = dataset.read(dataset_dir)
            result.update(predicted_vs_realised(frame, ModelBundle.load(bundle_dir)))
    out = Path(params.out)
    with atomic_dir(out) as tmp:
        step("writing tables")
        write(result, tmp)
        step("drawing plots")
        plot(result, tmp / "plots")
    files = sorted(p for p in out.iterdir() if p.is_file())
    plots = sorted((out / "plots").glob("*.png"))
    run_id = None
    if log:
        import mlflow

        from churnlab import tracking as tracking_store
        from churnlab.config import flatten

        step("logging to MLflow")
        # The same store and experiment as `churnlab train` (tracking.uri, MLFLOW_TRACKING_URI,
        # else sqlite:///mlflow.db).
        tracking_store.configure(tracking or TrackingParams())
        with mlflow.start_run(run_name="kpis") as active:
            mlflow.log_params(flatten(params, "kpis."))
            mlflow.set_tag("churnlab.command", "kpis")
            log_to_mlflow(result, plots)
            run_id = active.info.run_id
    return KpiRun(
        result=result, out=out, files=files, plots=plots, run_id=run_id, notes=tuple(notes)
    )


_TABLE_ROWS: tuple[str, ...] = (
    "customers_start",
    "churned",
    "churn_rate",
    "retention_rate",
    "start_mrr",
    "new_mrr",
    "expansion_mrr",
    "contraction_mrr",
    "churned_mrr",
    "reactivation_mrr",
    "end_mrr",
    "grr",
    "nrr",
    "grr_12m",
    "nrr_12m",
    "buyers",
    "active_customer_churn_rate",
    "repeat_purchase_rate",
    "spend_retention",
    "revenue",
    "upsell_revenue_share",
    "existing_customer_revenue_share",
    "nps",
    "nps_responses",
    "open_rate",
    "click_rate",
    "tickets_opened",
)


def _fmt(value: float, unit: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    if unit == "ratio":
        return f"{100 * value:.1f}%"
    if unit.startswith("currency"):  # compact, so that a period column stays narrow
        for above, scale, suffix, digits in (
            (1e9, 1e9, "B", 2),
            (1e6, 1e6, "M", 2),
            (1e4, 1e3, "k", 1),
        ):
            if abs(value) >= above:
                return f"{value / scale:.{digits}f}{suffix}"
        return f"{value:,.0f}"
    if unit.startswith("points") or unit.startswith("score"):
        return f"{value:.1f}"
    return f"{value:,.0f}"


def summary_table(result: dict[str, pd.DataFrame], last: int = 6, width: int | None = None) -> Any:
    """A rich table of the latest periods: one row per applicable KPI, one column per period.

    Shows the last ``last`` periods, fewer when a ``width`` (the terminal's) cannot hold them
    without cutting values short; every period is in the CSV/Parquet files. Partial periods are
    marked with ``*`` in the header; undefined values show as ``-``.
    """
    from rich.table import Table

    period = str(result["info"]["period"].iloc[0])
    mode = str(result["info"]["mode"].iloc[0])
    units = {x.name: x.unit for x in METRICS}
    kinds = {x.name: x.kind for x in METRICS}
    monthly = result["monthly"]
    rows = {
        kind: [n for n in _TABLE_ROWS if kinds[n] == kind and monthly[n].notna().any()]
        for kind in ("outcome", "activity")
    }
    m = monthly.tail(last)
    cells = {n: [_fmt(v, units[n]) for v in m[n].tolist()] for kind in rows for n in rows[kind]}
    headers = [
        _label(pd.Timestamp(ts), period) + ("*" if partial else "")
        for ts, partial in zip(m.index, m["partial"], strict=True)
    ]
    if width is not None and headers:
        # Box-drawing: 1 border + per column (2 padding + 1 separator); never cut a value.
        name_w = max([len("KPI"), *(len(n) for n in cells)])
        col_w = max(len(x) for x in [*headers, *(c for v in cells.values() for c in v)])
        fit = max(1, (width - name_w - 4) // (col_w + 3))
        if fit < len(headers):
            headers = headers[-fit:]
            cells = {n: v[-fit:] for n, v in cells.items()}
    shown = "" if len(headers) == len(monthly) else f"last {len(headers)} of {len(monthly)}; "
    table = Table(
        title=f"Retention KPIs per {period} ({mode}; {shown}* = partial period; "
        "activity metrics below the line)"
    )
    table.add_column("KPI", no_wrap=True)
    for label in headers:
        table.add_column(label, justify="right", no_wrap=True)
    for kind in ("outcome", "activity"):
        for name in rows[kind]:
            table.add_row(name, *cells[name])
        if rows[kind] and kind == "outcome":
            table.add_section()
    return table


def predicted_table(result: dict[str, pd.DataFrame], last: int = 6) -> Any:
    """A rich table of predicted vs realised churn for the last ``last`` cutoffs (or None)."""
    from rich.table import Table

    overall = result.get(PVR_OVERALL)
    if overall is None or overall.empty:
        return None
    table = Table(title="Predicted vs realised churn within the horizon, per cutoff")
    for col in ("cutoff", "role", "rows", "mean predicted", "realised", "difference"):
        table.add_column(col, justify="left" if col in ("cutoff", "role") else "right")
    for r in overall.tail(last).itertuples():
        table.add_row(
            pd.Timestamp(r.cutoff).date().isoformat(),
            str(r.role),
            f"{r.rows:,}",
            _fmt(r.mean_predicted, "ratio"),
            _fmt(r.realised_rate, "ratio"),
            _fmt(r.difference, "ratio"),
        )
    return table

"""Churn and expansion labels for every (account_id, cutoff) row of a spine (DESIGN.md section 4).

Labels look only at the label window ``[cutoff, cutoff + horizon)`` and at the account's state at
the cutoff (the baseline a change is measured against):

- contractual churn: no active subscription at ``cutoff + horizon`` (a cancel-and-return inside
  the window is not churn);
- orders-only churn: no (non-refund) order in the label window;
- contractual expansion: MRR at ``cutoff + horizon`` is above MRR at the cutoff by at least
  ``expansion_min_fraction``, or an upsell/cross-sell order lands in the window; amount = delta MRR;
- orders-only expansion: spend in the window is above spend in the equally long window before
  the cutoff by at least ``expansion_min_fraction``; amount = delta spend.

A cutoff whose window ends after the data does (``cutoff + horizon > data_end``) is unlabeled:
its label columns are NaN and ``labeled`` is False, so it can be scored but never trained on.
``mrr`` is the MRR at the cutoff (orders-only: spend in the lookback window per month) and
``arr = 12 * mrr``, so that a probability times ARR is revenue at stake.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from churnlab.config import DatasetParams, Horizon
from churnlab.load import drop_temp_tables
from churnlab.schema import UPSELL_KINDS, sql_list
from churnlab.spine import MODES, SpineError
from churnlab.timeline import subscription_steps

DAYS_PER_MONTH = 365.25 / 12


def compute(
    con: duckdb.DuckDBPyConnection,
    spine: pd.DataFrame,
    params: DatasetParams,
    mode: str,
    data_end: dt.datetime,
    *,
    steps: str | None = None,
) -> pd.DataFrame:
    """Labels for every spine row, all cutoffs in one query.

    Parameters
    ----------
    con : DuckDBPyConnection
        Connection holding the typed contract tables.
    spine : DataFrame
        Columns ``account_id`` and ``cutoff``.
    params : DatasetParams
        ``window`` (``horizon`` or ``horizon_days``), ``lookback_days``,
        ``expansion_min_fraction``.
    mode : str
        'contractual' or 'orders'.
    data_end : datetime
        End of observation (``load.data_end``): windows ending after it are unlabeled.
    steps : str, optional
        The subscription timeline table (:func:`churnlab.timeline.subscription_steps`) when the
        caller has built it; it is left in place. By default the timeline is built and dropped.

    Returns
    -------
    DataFrame
        ``account_id``, ``cutoff``, ``churn``, ``expansion``, ``expansion_amount`` (float, NaN when
        unlabeled), ``mrr``, ``arr`` (float) and ``labeled`` (bool), sorted by (account_id, cutoff).
    """
    if mode not in MODES:
        raise SpineError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    h = params.window
    frac = float(params.expansion_min_fraction)
    end = pd.Timestamp(data_end).to_pydatetime()
    con.register("_cl_lspine_df", spine[["account_id", "cutoff"]])
    window_end = h.sql("CAST(cutoff AS TIMESTAMP)")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _cl_lspine AS
        SELECT CAST(account_id AS VARCHAR) AS account_id, CAST(cutoff AS TIMESTAMP) AS cutoff,
               {window_end} AS window_end,
               {window_end} <= TIMESTAMP '{end.isoformat(" ")}' AS labeled
        FROM _cl_lspine_df"""
    )
    con.unregister("_cl_lspine_df")
    if mode == "contractual":
        timeline = steps or subscription_steps(con, "_cl_lsteps", accounts=spine["account_id"])
        any_labeled = con.execute("SELECT bool_or(labeled) FROM _cl_lspine").fetchall()[0][0]
        sql = _contractual(con, frac, timeline) if any_labeled else _mrr_only(timeline)
    else:
        sql = _orders(h, int(params.lookback_days), frac)
    frame = con.execute(
        f"""SELECT account_id, cutoff,
               CASE WHEN labeled THEN CAST(churn AS DOUBLE) END AS churn,
               CASE WHEN labeled THEN CAST(expansion AS DOUBLE) END AS expansion,
               CASE WHEN labeled THEN CAST(amount AS DOUBLE) END AS expansion_amount,
               CAST(mrr AS DOUBLE) AS mrr, 12 * CAST(mrr AS DOUBLE) AS arr, labeled
        FROM ({sql}) ORDER BY account_id, cutoff"""
    ).df()
    drop_temp_tables(con, keep=(steps,) if steps is not None else ())
    frame["account_id"] = frame["account_id"].astype(str)
    frame["cutoff"] = frame["cutoff"].astype("datetime64[us]")
    frame["labeled"] = frame["labeled"].astype(bool)
    for col in ("churn", "expansion", "expansion_amount", "mrr", "arr"):
        frame[col] = frame[col].astype("float64")
    return frame


def _contractual(con: duckdb.DuckDBPyConnection, frac: float, steps: str) -> str:
    has_orders = bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = 'main' AND table_name = 'orders'"
        ).fetchall()[0][0]
    )
    upsell = (
        f"""(SELECT sp.account_id, sp.cutoff, count(*) AS n
            FROM _cl_lspine sp JOIN main.orders o ON sp.account_id = o.account_id
             AND o.ordered_at >= sp.cutoff AND o.ordered_at < sp.window_end
            WHERE sp.labeled AND o.kind IN {sql_list(UPSELL_KINDS)} GROUP BY ALL)"""
        if has_orders
        else "(SELECT NULL::VARCHAR AS account_id, NULL::TIMESTAMP AS cutoff, 0 AS n WHERE false)"
    )
    # MRR and active count "at" an instant include changes at that very instant (a subscription
    # starting at the cutoff is active at it): steps with at <= instant.
    return f"""
        SELECT sp.account_id, sp.cutoff, sp.labeled,
               coalesce(e.active_after, 0) <= 0 AS churn,
               (coalesce(e.mrr_after, 0) > coalesce(s.mrr_after, 0)
                AND coalesce(e.mrr_after, 0) - coalesce(s.mrr_after, 0)
                    >= {frac} * coalesce(s.mrr_after, 0))
               OR coalesce(u.n, 0) > 0 AS expansion,
               coalesce(e.mrr_after, 0) - coalesce(s.mrr_after, 0) AS amount,
               coalesce(s.mrr_after, 0) AS mrr
        FROM _cl_lspine sp
        ASOF LEFT JOIN {steps} s ON sp.account_id = s.account_id AND sp.cutoff >= s.step_at
        ASOF LEFT JOIN {steps} e ON sp.account_id = e.account_id AND sp.window_end >= e.step_at
        LEFT JOIN {upsell} u ON u.account_id = sp.account_id AND u.cutoff = sp.cutoff"""


def _mrr_only(steps: str) -> str:
    """No row is labeled (scoring at the data end): the MRR at the cutoff, no label window."""
    return f"""
        SELECT sp.account_id, sp.cutoff, sp.labeled, NULL::BOOLEAN AS churn,
               NULL::BOOLEAN AS expansion, NULL::DECIMAL(38, 6) AS amount,
               coalesce(s.mrr_after, 0) AS mrr
        FROM _cl_lspine sp
        ASOF LEFT JOIN {steps} s ON sp.account_id = s.account_id AND sp.cutoff >= s.step_at"""


def _orders(h: Horizon, lookback: int, frac: float) -> str:
    refund = "coalesce(o.kind, '') = 'refund'"
    before = h.sql("sp.cutoff", "-")  # the equally long window before the cutoff
    earliest = f"least({before}, sp.cutoff - INTERVAL {lookback} DAY)"
    amount = "CAST(o.amount AS DECIMAL(38, 6))"
    return f"""
        SELECT sp.account_id, sp.cutoff, sp.labeled,
               coalesce(a.n_after, 0) = 0 AS churn,
               coalesce(a.after, 0) > coalesce(a.before, 0)
                 AND coalesce(a.after, 0) - coalesce(a.before, 0)
                     >= {frac} * coalesce(a.before, 0) AS expansion,
               coalesce(a.after, 0) - coalesce(a.before, 0) AS amount,
               CAST(coalesce(a.lookback, 0) AS DOUBLE) / ({lookback} / {DAYS_PER_MONTH}) AS mrr
        FROM _cl_lspine sp LEFT JOIN (
            SELECT sp.account_id, sp.cutoff,
                   count(*) FILTER (WHERE o.ordered_at >= sp.cutoff) AS n_after,
                   sum({amount}) FILTER (WHERE o.ordered_at >= sp.cutoff) AS after,
                   sum({amount}) FILTER (WHERE o.ordered_at < sp.cutoff
                       AND o.ordered_at >= {before}) AS before,
                   sum({amount}) FILTER (WHERE o.ordered_at < sp.cutoff
                       AND o.ordered_at >= sp.cutoff - INTERVAL {lookback} DAY) AS lookback
            FROM _cl_lspine sp JOIN main.orders o ON sp.account_id = o.account_id
             AND o.ordered_at >= {earliest} AND o.ordered_at < sp.window_end
            WHERE NOT {refund}
            GROUP BY ALL) a ON a.account_id = sp.account_id AND a.cutoff = sp.cutoff"""

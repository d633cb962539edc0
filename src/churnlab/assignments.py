"""Campaign assignments and their outcomes: the ``treatments`` table, labelled as in training.

:func:`read_treatments` reads the contract's ``treatments`` table; :func:`assignment_outcomes`
gives every assignment the training labels at cutoff = ``assigned_at`` (churn, expansion), its ARR
at assignment, the retained ARR and expansion value, whether the account was a customer then (the
training spine's rule) and whether its outcome window is complete. The outcomes are defined in
:mod:`churnlab.measure`, which measures campaigns from these rows; :mod:`churnlab.uplift` learns
from the same rows.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

from churnlab import labels
from churnlab.config import DatasetParams
from churnlab.errors import ChurnlabError
from churnlab.load import drop_temp_tables, present_tables
from churnlab.spine import resolve_mode

_OUTCOME_COLUMNS: tuple[str, ...] = ("churn", "expansion", "arr", "retained_arr", "expansion_value")
"""What :func:`assignment_outcomes` fills for measured assignments (NaN for the others)."""


class MeasureError(ChurnlabError):
    """Campaigns cannot be measured from the data or segments given."""


def read_treatments(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The typed ``treatments`` table as a frame (contract columns, optional ones as NULL).

    Raises
    ------
    MeasureError
        If the data has no treatments table or it is empty.
    """
    if "treatments" not in present_tables(con):
        raise MeasureError(
            "the data has no treatments table: campaigns are measured from their assignments; "
            "add treatments.parquet (account_id, campaign_id, assigned_at, holdout) to the source"
        )
    cols = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_name = 'treatments'"
        ).fetchall()
    }
    exprs = ["account_id", "campaign_id", "assigned_at", "holdout"]
    for name, dtype in (("kind", "VARCHAR"), ("channel", "VARCHAR"), ("cost", "DOUBLE")):
        exprs.append(name if name in cols else f"CAST(NULL AS {dtype}) AS {name}")
    frame = con.execute(
        f"SELECT {', '.join(exprs)} FROM main.treatments ORDER BY campaign_id, account_id"
    ).df()
    if frame.empty:
        raise MeasureError("the treatments table is empty: there is no campaign to measure")
    frame["account_id"] = frame["account_id"].astype(str)
    frame["campaign_id"] = frame["campaign_id"].astype(str)
    frame["assigned_at"] = frame["assigned_at"].astype("datetime64[us]")
    frame["holdout"] = frame["holdout"].astype(bool)
    frame["cost"] = frame["cost"].astype("float64")
    for c in ("kind", "channel"):
        frame[c] = frame[c].astype(object).where(frame[c].notna(), None)
    return frame


def _eligible(
    con: duckdb.DuckDBPyConnection, keys: pd.DataFrame, mode: str, params: DatasetParams
) -> np.ndarray:
    """Whether each (account_id, assigned_at) row was a customer at that instant (spine's rule)."""
    con.register("_cl_mkeys_df", keys.assign(rid=np.arange(len(keys))))
    try:
        if mode == "contractual":
            sql = """SELECT DISTINCT k.rid FROM _cl_mkeys_df k JOIN main.subscriptions s
                ON s.account_id = k.account_id AND s.start_at <= k.assigned_at
               AND (s.end_at IS NULL OR s.end_at > k.assigned_at)"""
        else:
            sql = f"""SELECT DISTINCT k.rid FROM _cl_mkeys_df k JOIN main.orders o
                ON o.account_id = k.account_id AND o.ordered_at < k.assigned_at
               AND o.ordered_at >= k.assigned_at - INTERVAL {int(params.lookback_days)} DAY
               WHERE coalesce(o.kind, '') <> 'refund'"""
        rid = con.execute(sql).fetchnumpy()["rid"]
    finally:
        con.unregister("_cl_mkeys_df")
    out = np.zeros(len(keys), dtype=bool)
    out[np.asarray(rid, dtype=np.int64)] = True
    return out


def assignment_outcomes(
    con: duckdb.DuckDBPyConnection,
    params: DatasetParams,
    end: dt.datetime,
    *,
    treatments: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Outcomes of every assignment, with the training labels at cutoff = ``assigned_at``.

    Parameters
    ----------
    con : DuckDBPyConnection
        Connection holding the typed contract tables.
    params : DatasetParams
        ``horizon_days``, ``lookback_days``, ``expansion_min_fraction`` and ``mode``.
    end : datetime
        End of observation (:func:`churnlab.load.data_end`).
    treatments : DataFrame, optional
        The assignments (default: :func:`read_treatments`).

    Returns
    -------
    DataFrame
        The treatments columns plus ``eligible`` (a customer at ``assigned_at``), ``complete``
        (``assigned_at + horizon_days <= end``), ``window_end``, ``churn``, ``expansion`` (0/1),
        ``arr`` (ARR at assignment), ``retained_arr`` and ``expansion_value`` (defined in
        :mod:`churnlab.measure`); the outcomes are NaN unless the row is eligible and complete.
        Sorted by (campaign_id, account_id).
    """
    tr = read_treatments(con) if treatments is None else treatments
    mode = resolve_mode(con, params)
    horizon = dt.timedelta(days=int(params.horizon_days))
    keys = tr[["account_id", "assigned_at"]].drop_duplicates().reset_index(drop=True)
    eligible = _eligible(con, keys, mode, params)
    # One label row per distinct (account, instant): an account in two campaigns assigned at the
    # same moment would otherwise be a duplicate spine row.
    spine = keys.rename(columns={"assigned_at": "cutoff"})
    try:
        lab = labels.compute(con, spine, params, mode, end)
    finally:
        drop_temp_tables(con)
    lab = lab.rename(columns={"cutoff": "assigned_at"})
    keys = keys.assign(eligible=eligible)
    keys = keys.merge(lab, on=["account_id", "assigned_at"], how="left", validate="one_to_one")
    amount = keys["expansion_amount"]
    if mode == "contractual":
        keys["retained_arr"] = keys["arr"] + 12 * np.minimum(amount, 0.0)
        keys["expansion_value"] = 12 * np.maximum(amount, 0.0)
    else:
        keys["retained_arr"] = np.nan
        keys["expansion_value"] = np.maximum(amount, 0.0)
    keys["complete"] = keys["labeled"].astype(bool)
    measured = keys["eligible"] & keys["complete"]
    for c in _OUTCOME_COLUMNS:
        keys[c] = keys[c].where(measured)
    keys = keys[["account_id", "assigned_at", "eligible", "complete", *_OUTCOME_COLUMNS]]
    out = tr.merge(keys, on=["account_id", "assigned_at"], how="left", validate="many_to_one")
    out.insert(out.columns.get_loc("assigned_at") + 1, "window_end", out["assigned_at"] + horizon)
    return out.sort_values(["campaign_id", "account_id"], kind="stable").reset_index(drop=True)

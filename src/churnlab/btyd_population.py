"""The BG/NBD baseline's fits: at each cutoff, on every customer with a purchase before it.

A BG/NBD model describes a *random* customer of the population, so it must be fitted on all of
them: every account with a (non-refund) order before the cutoff, however long ago. The training
set's rows are not such a sample: orders-only rows are the accounts that ordered in the
``lookback_days`` before their cutoff (DESIGN.md section 4), i.e. recent buyers only. Fitted on
them, the model sees no customer who stopped buying and concludes that nobody ever does: on a
world simulated from the BG/NBD model itself (the published CDNOW parameters, r = 0.243,
alpha = 4.414, a = 0.793, b = 2.426 in weeks) the fit on the training rows gave a = 8e-7,
b = 3e5 (no dropout at all), a mean P(no purchase in 90 days) of 0.41 against 0.56 realised
(ECE 0.152, log loss 0.677); on every customer before the cutoff it gave r = 0.22,
alpha = 4.27, a = 0.72, b = 2.14, ECE 0.053, log loss 0.578 and a better ranking (ROC-AUC 0.767
against 0.752).

So the training-set build fits the model at each cutoff on the population before it (only
orders before the cutoff: point in time, no label is read) and stores the parameters in the
manifest (``btyd_fits``); the baseline scores a cutoff's rows with that cutoff's fit, which is
how the model is used in practice (fitted on the history to date, predicting the next
horizon). At most :data:`POPULATION_LIMIT` accounts take part, the same ones at every cutoff
and on both engines (the smallest MD5 of the account id among those with an order).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import duckdb
import pandas as pd

from churnlab import btyd
from churnlab.errors import ChurnlabError

POPULATION_LIMIT = 50_000
"""Accounts the per-cutoff fits use at most (four parameters: a sample this size pins them)."""

FIRSTS_SQL = """
    SELECT account_id, min(ordered_at) AS first_at
    FROM main.orders
    WHERE coalesce(kind, '') <> 'refund' AND ordered_at IS NOT NULL AND account_id IS NOT NULL
    GROUP BY account_id
    ORDER BY md5(account_id), account_id
    LIMIT {limit}
"""


def spine(firsts: pd.DataFrame, cutoffs: Sequence[dt.datetime]) -> pd.DataFrame:
    """(account, cutoff) for each account whose first purchase is before the cutoff.

    ``firsts`` holds ``account_id`` and ``first_at`` (the first non-refund order), one row per
    account of the sample (:data:`FIRSTS_SQL` on DuckDB; the same on Spark).
    """
    parts = []
    for c in cutoffs:
        ids = firsts.loc[firsts["first_at"] < pd.Timestamp(c), "account_id"]
        parts.append(pd.DataFrame({"account_id": ids.astype(str).to_numpy(), "cutoff": c}))
    if not parts:
        return pd.DataFrame({"account_id": [], "cutoff": pd.Series([], dtype="datetime64[us]")})
    out = pd.concat(parts, ignore_index=True)
    out["cutoff"] = out["cutoff"].astype("datetime64[us]")
    return out


def duckdb_population(
    con: duckdb.DuckDBPyConnection,
    cutoffs: Sequence[dt.datetime],
    limit: int = POPULATION_LIMIT,
) -> pd.DataFrame:
    """``frequency, recency, T`` of the population at each cutoff (:func:`btyd.rfm_at_cutoffs`)."""
    firsts = con.execute(FIRSTS_SQL.format(limit=int(limit))).df()
    firsts["first_at"] = pd.to_datetime(firsts["first_at"])
    return btyd.rfm_at_cutoffs(con, spine(firsts, cutoffs))


def fits(rfm: pd.DataFrame) -> tuple[dict[str, Any], ...]:
    """The maximum-likelihood fit at each cutoff of ``rfm`` that has enough history for one.

    Returns
    -------
    tuple of dict
        ``cutoff`` (ISO), ``customers`` and the parameters ``r``, ``alpha``, ``a``, ``b``, in
        cutoff order; cutoffs whose fit fails (too few customers, no repeat purchase, no
        interior optimum) are left out, and their rows get no baseline score.
    """
    out = []
    rows = rfm.dropna(subset=["frequency", "recency", "T"])
    for cutoff, g in rows.groupby("cutoff", sort=True):
        try:
            p = btyd.fit(g["frequency"], g["recency"], g["T"])
        except ChurnlabError:
            continue
        out.append(
            {"cutoff": pd.Timestamp(cutoff).isoformat(), "customers": int(len(g)),
             "r": p.r, "alpha": p.alpha, "a": p.a, "b": p.b}
        )  # fmt: skip
    return tuple(out)


def params_at(fitted: Sequence[dict[str, Any]], cutoff: pd.Timestamp) -> btyd.BGNBDParams | None:
    """The stored fit of ``cutoff`` (from :func:`fits`), or None."""
    for f in fitted:
        if pd.Timestamp(f["cutoff"]) == pd.Timestamp(cutoff):
            return btyd.BGNBDParams(r=f["r"], alpha=f["alpha"], a=f["a"], b=f["b"])
    return None

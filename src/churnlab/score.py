"""Scoring at an as-of date: the at-risk list, the expansion list and what each account needs.

The rows scored are built by exactly the training code (:func:`churnlab.spine.build` and
:func:`churnlab.features.compute` with ``cutoff = as_of``), for every account eligible at that
moment: a current customer (contractual data) or a recent buyer (orders-only). This module turns
those rows and the champion models into the two lists; the pipeline resolves the models, writes
the files and logs the run.

At-risk list (customer success)
    ``churn_probability`` (calibrated), ``risk_band`` (``score.risk_bands`` thresholds),
    ``arr`` (12 x MRR at the as-of; orders-only: net spend of the 12 months before it),
    ``revenue_at_risk`` = probability x ARR, the top reasons (sentence and signed probability
    points, TreeSHAP), the ``driver_group`` of the largest reason that raises the risk, the
    ``play`` for it (``score.plays``; low seat use gets ``score.seat_play``, a commercial reason
    on orders-only data ``score.purchase_play``), and ``rank`` by
    revenue at risk (1 = most at stake).

Expansion list (marketing, account managers)
    ``expansion_probability``, ``expected_amount`` (the expected ARR increase given expansion,
    from the expansion model's amount regressor: 12 x the monthly MRR increase, or for
    orders-only data the spend increase over the horizon scaled to a year),
    ``expected_expansion_value`` = probability x expected amount, the top reasons, the suggested
    ``offer`` (``seats`` when seat pressure drives it, ``cross_sell`` for accounts on the top
    plan, else ``upsell``) and ``rank``; accounts whose churn probability is above
    ``score.expansion_max_churn`` are left to the at-risk list.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from churnlab import explain
from churnlab.bundle import ModelBundle
from churnlab.config import ScoreParams
from churnlab.errors import ChurnlabError

SEAT_MEASURES = frozenset({"seat_utilisation", "active_users", "seats"})
"""Measures whose reason means seats: low use (churn) or seat pressure (expansion)."""
DAYS_PER_YEAR = 365.25


class ScoreError(ChurnlabError):
    """The rows cannot be scored with these models."""


@dataclass(frozen=True)
class Lists:
    """What scoring produced (before audiences)."""

    at_risk: pd.DataFrame
    expansion: pd.DataFrame
    churn_reasons: pd.DataFrame
    expansion_reasons: pd.DataFrame | None


def no_eligible_account(cutoff: dt.datetime, mode: str) -> ScoreError:
    """The error for a scoring date at which no account is eligible (either engine)."""
    return ScoreError(
        f"no account is eligible at {cutoff:%Y-%m-%d} ({mode} mode: "
        + ("no active subscription" if mode == "contractual" else "no recent order")
        + "): check --as-of against the data's dates"
    )


def feature_context(
    bundles: dict[str, ModelBundle],
) -> tuple[list[str], dict[str, list[str] | tuple[str, ...]]]:
    """The event types and category levels the models were trained with, for the feature build.

    Bundles from before event types were recorded give the event types of their features.
    """
    churn = bundles["churn"]
    event_types = churn.info.get("event_types")
    if event_types is None:
        event_types = sorted({f.event_type for f in churn.features if f.event_type})
    categories: dict[str, list[str] | tuple[str, ...]] = {
        k: v for b in bundles.values() for k, v in b.categories.items()
    }
    return list(event_types), categories


def check_signature(bundle: ModelBundle, rows: pd.DataFrame, skip: Sequence[str] = ()) -> None:
    """Refuse rows that do not carry exactly the model's features with the model's types.

    Parameters
    ----------
    bundle : ModelBundle
        The model.
    rows : DataFrame
        The scored rows (``account_id``, ``cutoff``, feature columns).
    skip : sequence of str
        Non-feature columns of ``rows``.

    Raises
    ------
    ScoreError
        Naming the missing, extra and mistyped features.
    """
    have = [c for c in rows.columns if c not in ("account_id", "cutoff", *skip)]
    want = bundle.feature_names
    missing = [f for f in want if f not in have]
    extra = [f for f in have if f not in set(want)]
    mistyped = []
    for f in bundle.features:
        if f.name in rows.columns:
            is_cat = isinstance(rows[f.name].dtype, pd.CategoricalDtype)
            if is_cat != (f.dtype == "category"):
                mistyped.append(
                    f"{f.name} ({'category' if is_cat else 'number'}, model: {f.dtype})"
                )
    if not (missing or extra or mistyped):
        return
    parts = [
        f"{label}: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''} ({len(names)})"
        for label, names in (("missing", missing), ("extra", extra), ("mistyped", mistyped))
        if names
    ]
    raise ScoreError(
        f"the rows to score do not match the {bundle.task} model's features ("
        + "; ".join(parts)
        + "): the data or dataset params changed since it was trained; retrain "
        "(`churnlab build-dataset` then `churnlab train`) or score with the params it was "
        "trained with"
    )


def risk_bands(p: np.ndarray, bands: dict[str, float]) -> np.ndarray:
    """The band of each probability: the highest threshold it reaches, else ``low``."""
    out = np.full(len(p), "low", dtype=object)
    for name, threshold in sorted(bands.items(), key=lambda kv: kv[1]):
        out[np.asarray(p) >= threshold] = name
    return out


def band_note(p: np.ndarray, bands: dict[str, float], *, min_accounts: int = 20) -> str | None:
    """A note when the top risk band holds more than half of the scored accounts, else None.

    The bands are absolute churn probabilities; on a book whose churn level is above the top
    threshold (real order histories often lose 40-50% of their buyers in a horizon) nearly
    everyone is "high", the band singles out no one and campaigns limited to it reach almost
    everyone. The note gives thresholds taken from this scoring's probabilities that put the top
    10% of accounts in the top band, the next 20% in the next, and so on.
    """
    p = np.asarray(p, dtype=float)
    p = p[np.isfinite(p)]
    if not bands or len(p) < min_accounts:
        return None
    ordered = sorted(bands.items(), key=lambda kv: kv[1], reverse=True)
    top, threshold = ordered[0]
    share = float(np.mean(p >= threshold))
    if share <= 0.5:
        return None
    targets = [0.1 * (2 * i + 1) for i in range(min(len(ordered), 5))]  # top 10%, 30%, ...
    exact = [float(np.quantile(p, 1.0 - t)) for t in targets]
    # two decimals, or more where the probabilities are packed so tightly that rounding would
    # merge two thresholds or move a band's share by more than 2 points (98-100% churn books)
    for digits in range(2, 7):
        rounded = [round(v, digits) for v in exact]
        shares = [float(np.mean(p >= v)) for v in rounded]
        apart = len(set(rounded)) == len(rounded)
        if apart and all(abs(s - t) <= 0.02 for s, t in zip(shares, targets, strict=True)):
            break
    rendered = ", ".join(
        f"{name}: {value:.{digits}f}" for (name, _), value in zip(ordered, rounded, strict=False)
    )
    return (
        f"{share:.0%} of the {len(p):,} scored accounts are in the '{top}' risk band (churn "
        f"probability >= {threshold:g}): this book's churn level is above score.risk_bands, so "
        f"the band singles out no one and campaigns limited to it reach almost everyone; to band "
        f"by rank (top 10%, next 20%, ...) set score.risk_bands: {{{rendered}}}"
    )


def expansion_note(
    expansion: pd.DataFrame | None, at_risk: pd.DataFrame, params: ScoreParams
) -> str | None:
    """A note when the expansion list is empty because every account is too likely to churn."""
    if expansion is None or len(expansion) or not len(at_risk):
        return None
    return (
        f"the expansion list is empty: all {len(at_risk):,} scored accounts have a churn "
        f"probability above score.expansion_max_churn = {params.expansion_max_churn:g} "
        "(accounts likely to leave are not offered more); raise it to list them anyway"
    )


def plays(reasons: pd.DataFrame, bundle: ModelBundle, params: ScoreParams) -> pd.DataFrame:
    """The driver group of the largest reason that raises the risk, and the play for it."""
    measure = {f.name: f.measure or f.name for f in bundle.features}
    group = reasons["reason_1_group"].where(reasons["reason_1_points"] > 0)
    seat = reasons["reason_1_feature"].map(measure).isin(SEAT_MEASURES) & group.notna()
    plays_ = dict(params.plays)
    if bundle.info.get("dataset", {}).get("mode") == "orders":  # no billing: purchase cadence
        plays_["commercial"] = params.purchase_play
    play = group.map(plays_).where(group.notna())
    play = play.where(~seat, params.seat_play)
    return pd.DataFrame({"driver_group": group, "play": play}, index=reasons.index)


def _reasons(bundle: ModelBundle, rows: pd.DataFrame, top_k: int) -> pd.DataFrame:
    """Per-account reasons; the global importance of the same TreeSHAP values in ``attrs``."""
    contrib = explain.contributions(bundle, rows)
    reasons = explain.reasons(bundle, rows, top_k, contrib=contrib)
    reasons.attrs["importance"] = explain.importance(bundle, contrib)
    return reasons


def reason_columns(reasons: pd.DataFrame, k: int) -> pd.DataFrame:
    """The lists' reason columns of a reasons frame: ``reason_i`` and ``reason_i_points``."""
    cols = []
    for i in range(1, k + 1):
        cols += [f"reason_{i}", f"reason_{i}_points"]
    return reasons[[c for c in cols if c in reasons.columns]]


def _attributes(accounts: pd.DataFrame | None, columns: Sequence[str]) -> pd.DataFrame | None:
    if accounts is None:
        return None
    keep = [c for c in columns if c in accounts.columns]
    return accounts[["account_id", *keep]].drop_duplicates("account_id") if keep else None


def at_risk_list(
    rows: pd.DataFrame,
    bundle: ModelBundle,
    arr: np.ndarray,
    params: ScoreParams,
    *,
    top_k: int = 3,
    accounts: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every scored account with its churn risk, revenue at risk, reasons and play, ranked.

    Returns
    -------
    (DataFrame, DataFrame)
        The list (sorted by rank) and the full reasons frame (TreeSHAP, every account).
    """
    reasons = _reasons(bundle, rows, top_k)
    p = reasons["p"].to_numpy()
    out = pd.DataFrame({"account_id": rows["account_id"].astype(str).to_numpy()})
    attrs = _attributes(accounts, params.account_columns)
    if attrs is not None:
        out = out.merge(attrs, on="account_id", how="left")
    out["churn_probability"] = p
    out["risk_band"] = risk_bands(p, params.risk_bands)
    out["arr"] = np.asarray(arr, dtype=float)
    out["revenue_at_risk"] = out["churn_probability"] * out["arr"]
    body = pd.concat(
        [reason_columns(reasons, top_k), plays(reasons, bundle, params)], axis=1
    ).reset_index(drop=True)
    out = pd.concat([out, body], axis=1)
    if "nps_category" in rows.columns:
        out["nps_category"] = rows["nps_category"].astype(object).to_numpy()
    return _ranked(out, "revenue_at_risk"), reasons


def _ranked(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Sorted by ``by`` (largest first; ties by account id) with ``rank`` 1..n."""
    out = frame.sort_values([by, "account_id"], ascending=[False, True], kind="stable")
    out = out.reset_index(drop=True)
    out.insert(1, "rank", np.arange(1, len(out) + 1))
    return out


def _offers(
    rows: pd.DataFrame, reasons: pd.DataFrame, bundle: ModelBundle, mrr: np.ndarray, k: int
) -> np.ndarray:
    """``seats`` when a top reason is seat pressure, ``cross_sell`` on the top plan, else upsell."""
    seats = seat_pressure(reasons, bundle, k)
    offer = np.where(seats, "seats", "upsell").astype(object)
    if "plan" in rows.columns and rows["plan"].notna().any():
        plan = rows["plan"].astype(object)
        top = top_plan(pd.Series(np.asarray(mrr, dtype=float)).groupby(plan.to_numpy()).mean())
        offer[(plan.to_numpy() == top) & ~seats] = "cross_sell"
    return offer


def seat_pressure(reasons: pd.DataFrame, bundle: ModelBundle, k: int) -> np.ndarray:
    """Per account: whether one of its top ``k`` reasons that raise the score is about seats."""
    measure = {f.name: f.measure or f.name for f in bundle.features}
    seats = np.zeros(len(reasons), dtype=bool)
    for i in range(1, k + 1):
        col = f"reason_{i}_feature"
        if col in reasons:
            up = reasons[f"reason_{i}_points"].to_numpy() > 0
            seats |= up & reasons[col].map(measure).isin(SEAT_MEASURES).to_numpy()
    return seats


def top_plan(mean_mrr: pd.Series) -> object | None:
    """The plan with the highest mean MRR (the first in plan order on a tie), None if none.

    ``mean_mrr`` is the mean MRR per plan (index: plan, sorted), as a groupby gives it.
    """
    return mean_mrr.idxmax() if len(mean_mrr) else None


def model_stamp(bundle: ModelBundle) -> tuple[str, str, str]:
    """The registered name, version and run id stamped on every row a model scored."""
    reg = bundle.info.get("registry", {})
    return (
        reg.get("name", f"unregistered-{bundle.task}"),
        str(reg.get("version", "")),
        str(reg.get("run_id", "")),
    )


def expansion_list(
    rows: pd.DataFrame,
    bundle: ModelBundle,
    churn_probability: np.ndarray,
    mrr: np.ndarray,
    params: ScoreParams,
    *,
    annualise: float,
    top_k: int = 3,
    accounts: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accounts likely to expand (not at high churn risk) with their expected value and offer.

    Parameters
    ----------
    annualise : float
        Turns the amount the label measures into a yearly figure (12 for a monthly MRR change;
        365.25 / horizon days for spend in the horizon).

    Returns
    -------
    (DataFrame, DataFrame)
        The list (sorted by expected expansion value) and the full reasons frame.
    """
    reasons = _reasons(bundle, rows, top_k)
    amount = bundle.expected_amount(rows)
    if amount is None:
        raise ScoreError(
            "the expansion model has no amount model (trained by an older churnlab): retrain "
            "with `churnlab train` to get expected expansion values"
        )
    out = pd.DataFrame({"account_id": rows["account_id"].astype(str).to_numpy()})
    attrs = _attributes(accounts, params.account_columns)
    if attrs is not None:
        out = out.merge(attrs, on="account_id", how="left")
    out["expansion_probability"] = reasons["p"].to_numpy()
    out["expected_amount"] = np.clip(amount, 0.0, None) * annualise
    out["expected_expansion_value"] = out["expansion_probability"] * out["expected_amount"]
    out["churn_probability"] = np.asarray(churn_probability, dtype=float)
    out = pd.concat([out, reason_columns(reasons, top_k).reset_index(drop=True)], axis=1)
    out["offer"] = _offers(rows, reasons, bundle, mrr, top_k)
    keep = out["churn_probability"].to_numpy() <= params.expansion_max_churn
    return _ranked(out[keep], "expected_expansion_value"), reasons


def annual_factor(mode: str, horizon_days: int) -> float:
    """What the expansion amount is multiplied by to be a yearly figure (see the docstring)."""
    return 12.0 if mode == "contractual" else DAYS_PER_YEAR / horizon_days


def as_of_cutoff(as_of: dt.datetime | None, data_end: dt.datetime) -> dt.datetime:
    """The scoring cutoff: ``as_of`` (a midnight, not after the data end) or the data end.

    Raises
    ------
    ScoreError
        If ``as_of`` is not a midnight or lies after the data end.
    """
    cutoff = as_of if as_of is not None else data_end
    if cutoff != dt.datetime(cutoff.year, cutoff.month, cutoff.day):
        if as_of is None:  # a data.as_of with a time of day: score at the midnight before it
            return dt.datetime(cutoff.year, cutoff.month, cutoff.day)
        raise ScoreError(
            f"--as-of {as_of:%Y-%m-%d %H:%M:%S} is not a midnight: features count whole days "
            f"before the cutoff; use a date, e.g. --as-of {as_of:%Y-%m-%d}"
        )
    if cutoff > data_end:
        raise ScoreError(
            f"--as-of {cutoff:%Y-%m-%d} is after the data end {data_end:%Y-%m-%d}: there is no "
            "data up to then; leave --as-of out to score at the data end"
        )
    return cutoff

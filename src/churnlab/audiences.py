"""Campaign audiences: who gets which campaign within a budget, with stratified holdouts.

``churnlab score`` hands this module the scored accounts and the declared campaigns; it returns
the audiences table (one row per chosen account and campaign) and how it was chosen. Everything
here is pure: frames in, frames out.

The pipeline is :func:`candidate_pairs` (every eligible account x campaign with its expected net
value) -> :func:`select` (the best assignment within the budget, each account in at most one
campaign) -> :func:`assign_holdouts` (a reproducible random share of each campaign and risk band
is held out and not contacted, so the campaign's effect can be measured after the horizon) ->
:func:`summary`. :func:`build` chains the first three.

Value semantics
---------------
Every pair has a ``value`` (what one response is worth), a ``rate`` (the chance of that response)
and a ``cost`` (what one contact costs); ``expected_value = value * rate`` and
``expected_net_value = expected_value - cost``. Only calibrated probabilities make these money.

- retention: value = ``revenue_at_risk`` (churn probability x ARR), rate = the campaign's save
  rate, the share of the at-risk revenue that a contact saves.
- upsell: value = ``expected_expansion_value`` (expansion probability x the expected amount given
  expansion), rate = the share of that value a contact realises (a response rate). Only accounts
  in the ``expansion`` frame are eligible.
- advocacy, nurture: value = the campaign's ``value_per_response`` (e.g. what a referral or a
  case study is worth), rate = the response rate.
- retention targeted by uplift (``score --target uplift``, the ``uplift`` frame): value = the
  expected saved ARR ``-effect x ARR`` from the uplift model's predicted effect of that campaign
  on the account's churn, rate = 1 (the effect already is the saved probability); accounts with a
  predicted harmful effect (``effect > 0``) or no prediction are not eligible.

Once sent, an audience is appended to the ``treatments`` table of the data contract:
:func:`treatments` gives its rows (campaign id = campaign name + as-of date, see
:func:`campaign_id`), so that ``churnlab measure`` measures it after the horizon.

Selection is a multiple-choice knapsack, solved exactly by :func:`churnlab.knapsack.select`
(re-exported here as :func:`select`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd

# The Campaign record lives in churnlab.campaigns; it is re-exported here, beside the audiences
# chosen for it (audiences.Campaign).
from churnlab.campaigns import KINDS, NPS_CATEGORIES, Campaign  # noqa: F401
from churnlab.errors import ChurnlabError

# The solver lives in churnlab.knapsack; its names are re-exported here because the audiences
# are what callers choose (audiences.select, audiences.Selection).
from churnlab.knapsack import (  # noqa: F401
    DEFAULT_TIME_LIMIT,
    Selection,
    _Problem,
    _solve_core,
    select,
)

AT_RISK_COLUMNS: tuple[str, ...] = (
    "account_id",
    "churn_probability",
    "risk_band",
    "arr",
    "revenue_at_risk",
    "driver_group",
    "play",
)
EXPANSION_COLUMNS: tuple[str, ...] = (
    "account_id",
    "expansion_probability",
    "expected_expansion_value",
    "offer",
)
PAIR_COLUMNS: tuple[str, ...] = (
    "account_id",
    "campaign",
    "kind",
    "risk_band",
    "value",
    "rate",
    "cost",
    "expected_value",
    "expected_net_value",
)
AUDIENCE_COLUMNS: tuple[str, ...] = (
    "account_id",
    "campaign",
    "kind",
    "risk_band",
    "holdout",
    "value",
    "rate",
    "cost",
    "expected_value",
    "expected_net_value",
    "expected_net_value_if_contacted",
)
UPLIFT_COLUMNS: tuple[str, ...] = ("account_id", "campaign", "effect", "value", "harmful")
"""The ``uplift`` frame of :func:`candidate_pairs`: per account and retention campaign, the
predicted effect on churn, the expected saved ARR and whether contact is predicted to harm."""
TREATMENT_COLUMNS: tuple[str, ...] = (
    "account_id",
    "campaign_id",
    "assigned_at",
    "holdout",
    "kind",
    "channel",
    "cost",
)
"""The contract's ``treatments`` columns, as :func:`treatments` writes them."""
SUMMARY_COLUMNS: tuple[str, ...] = (
    "campaign",
    "kind",
    "contacts",
    "holdout",
    "cost",
    "expected_value",
    "expected_net_value",
)


# -- candidate pairs -------------------------------------------------------------------------------


def candidate_pairs(
    at_risk: pd.DataFrame,
    expansion: pd.DataFrame | None,
    campaigns: Sequence[Campaign],
    *,
    uplift: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every eligible (account, campaign) pair with what contacting it is expected to be worth.

    An account is eligible for a campaign when its ``risk_band``, ``churn_probability``,
    ``play`` and (if the campaign filters on it) ``nps_category`` pass the campaign's filters;
    upsell campaigns are, in addition, only for accounts in ``expansion`` (which the caller has
    already cleared of high-risk accounts). Pairs with a non-positive expected net value are kept
    here (they show what a campaign would cost); :func:`select` never chooses them.

    What a response is worth (``value``) depends on the campaign's kind:

    - retention: ``revenue_at_risk`` of the account; ``rate`` is the save rate.
    - upsell: ``expected_expansion_value`` of the account; ``rate`` is the response rate.
    - advocacy, nurture: the campaign's ``value_per_response``; ``rate`` is the response rate.

    and ``expected_value = value * rate``, ``expected_net_value = expected_value - cost`` with
    ``cost`` = the campaign's cost per contact.

    Parameters
    ----------
    at_risk : DataFrame
        One row per scored account with the columns in ``AT_RISK_COLUMNS`` (``nps_category``
        too when a campaign filters on it); other columns are ignored.
    expansion : DataFrame or None
        One row per account with ``account_id`` and ``expected_expansion_value``; None or empty
        when there is no expansion model (then upsell campaigns get no pairs). Every account in
        it must be in ``at_risk``.
    campaigns : sequence of Campaign
        The declared campaigns; names must be unique.
    uplift : DataFrame, optional
        Columns ``UPLIFT_COLUMNS``: uplift targeting. Every retention campaign with rows in it
        takes ``value`` (the expected saved ARR, ``-effect x ARR``) with rate 1 instead of
        revenue at risk x save rate, and only its accounts that are not ``harmful`` are
        eligible (besides the campaign's own filters). Retention campaigns without rows in it
        keep the churn-risk value.

    Returns
    -------
    DataFrame
        Columns ``PAIR_COLUMNS``, one row per eligible pair, sorted by account_id, campaign.

    Raises
    ------
    ChurnlabError
        A required column is missing, an account appears twice, an expansion account was not
        scored, or two campaigns share a name.
    """
    _check_campaigns(campaigns)
    _require(at_risk, AT_RISK_COLUMNS, "at_risk")
    _unique_accounts(at_risk, "at_risk")
    if any(c.nps_categories is not None for c in campaigns) and "nps_category" not in at_risk:
        names = [c.name for c in campaigns if c.nps_categories is not None]
        raise ChurnlabError(
            f"campaigns {names} filter on nps_categories but the at_risk frame has no "
            "nps_category column; score with NPS data or remove the filter"
        )
    upsell_base = _upsell_base(at_risk, expansion) if _has_kind(campaigns, "upsell") else None
    by_uplift = _uplift_values(uplift, at_risk) if uplift is not None else {}

    frames = []
    for campaign in campaigns:
        base = upsell_base if campaign.kind == "upsell" else at_risk
        if base is None or base.empty:
            continue
        sub = base.loc[_eligible(base, campaign)]
        rate = float(campaign.rate)
        if campaign.kind == "retention" and campaign.name in by_uplift:
            predicted = by_uplift[campaign.name]
            sub = sub[sub["account_id"].isin(predicted.index)]
            value = predicted.loc[sub["account_id"]].to_numpy(dtype=float)
            rate = 1.0
        elif campaign.kind == "retention":
            value = sub["revenue_at_risk"].to_numpy(dtype=float)
        elif campaign.kind == "upsell":
            value = sub["expected_expansion_value"].to_numpy(dtype=float)
        else:
            value = np.full(len(sub), float(campaign.value_per_response or 0.0))
        expected = value * rate
        cost = float(campaign.cost_per_contact)
        frames.append(
            pd.DataFrame(
                {
                    "account_id": sub["account_id"].to_numpy(),
                    "campaign": campaign.name,
                    "kind": campaign.kind,
                    "risk_band": sub["risk_band"].to_numpy(),
                    "value": value,
                    "rate": rate,
                    "cost": cost,
                    "expected_value": expected,
                    "expected_net_value": expected - cost,
                }
            )
        )
    if not frames:
        return _empty(PAIR_COLUMNS)
    pairs = pd.concat(frames, ignore_index=True)
    return pairs.sort_values(["account_id", "campaign"], kind="mergesort").reset_index(drop=True)


def _uplift_values(uplift: pd.DataFrame, at_risk: pd.DataFrame) -> dict[str, pd.Series]:
    """Campaign -> expected saved ARR by account, harmful accounts left out."""
    _require(uplift, UPLIFT_COLUMNS, "uplift")
    if uplift.duplicated(["account_id", "campaign"]).any():
        raise ChurnlabError("the uplift frame must have one row per (account_id, campaign)")
    value = uplift["value"].to_numpy(dtype=float)
    if not np.isfinite(value).all():
        raise ChurnlabError("the uplift frame's value must be finite in every row")
    unscored = ~uplift["account_id"].isin(at_risk["account_id"])
    if unscored.any():
        raise ChurnlabError(
            "the uplift frame has accounts that are not in the at_risk frame: "
            f"{sorted(map(str, uplift['account_id'][unscored]))[:5]}"
        )
    out: dict[str, pd.Series] = {}
    for name, g in uplift.groupby("campaign", sort=True):
        keep = ~g["harmful"].astype(bool).to_numpy()
        out[str(name)] = g.loc[keep].set_index("account_id")["value"].astype(float)
    return out


def _check_campaigns(campaigns: Sequence[Campaign]) -> None:
    seen: set[str] = set()
    for c in campaigns:
        if not isinstance(c, Campaign):
            raise ChurnlabError(f"campaigns must be Campaign records, got {type(c).__name__}")
        if c.name in seen:
            raise ChurnlabError(f"campaign name {c.name!r} is used twice; names must be unique")
        seen.add(c.name)


def _has_kind(campaigns: Sequence[Campaign], kind: str) -> bool:
    return any(c.kind == kind for c in campaigns)


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ChurnlabError(
            f"the {what} frame lacks the columns {missing} (it has {list(frame.columns)}); "
            f"it needs {list(columns)}"
        )


def _unique_accounts(frame: pd.DataFrame, what: str) -> None:
    if frame["account_id"].isna().any():
        raise ChurnlabError(f"the {what} frame has rows without an account_id")
    dup = frame["account_id"][frame["account_id"].duplicated()]
    if len(dup):
        raise ChurnlabError(
            f"the {what} frame must have one row per account; repeated: "
            f"{sorted(map(str, dup.unique()))[:5]}"
        )


def _upsell_base(at_risk: pd.DataFrame, expansion: pd.DataFrame | None) -> pd.DataFrame | None:
    if expansion is None or expansion.empty:
        return None
    _require(expansion, ("account_id", "expected_expansion_value"), "expansion")
    _unique_accounts(expansion, "expansion")
    unscored = ~expansion["account_id"].isin(at_risk["account_id"])
    if unscored.any():
        examples = sorted(map(str, expansion["account_id"][unscored]))[:5]
        raise ChurnlabError(
            "the expansion frame has accounts that are not in the at_risk frame (every scored "
            f"account must be in at_risk): {examples}"
        )
    return at_risk.drop(columns=["expected_expansion_value"], errors="ignore").merge(
        expansion[["account_id", "expected_expansion_value"]], on="account_id", how="inner"
    )


def _eligible(frame: pd.DataFrame, c: Campaign) -> np.ndarray:
    ok = np.ones(len(frame), dtype=bool)
    if c.risk_bands is not None:
        ok &= frame["risk_band"].isin(c.risk_bands).to_numpy()
    p = frame["churn_probability"].to_numpy(dtype=float)
    # NaN compares False, so an account without a probability fails any bound.
    if c.min_churn_probability is not None:
        ok &= p >= c.min_churn_probability
    if c.max_churn_probability is not None:
        ok &= p <= c.max_churn_probability
    if c.plays is not None:
        ok &= frame["play"].isin(c.plays).to_numpy()
    if c.nps_categories is not None:
        ok &= frame["nps_category"].isin(c.nps_categories).to_numpy()
    return ok


_TEXT_COLUMNS = frozenset({"account_id", "campaign", "kind", "risk_band"})
_COUNT_COLUMNS = frozenset({"contacts", "holdout"})


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    def dtype(c: str) -> str:
        return "object" if c in _TEXT_COLUMNS else "int64" if c in _COUNT_COLUMNS else "float64"

    return pd.DataFrame({c: pd.Series(dtype=dtype(c)) for c in columns})


# -- holdouts --------------------------------------------------------------------------------------


def assign_holdouts(
    selected: pd.DataFrame,
    share: float = 0.10,
    *,
    as_of: dt.date | dt.datetime | pd.Timestamp | str,
    seed: int = 0,
) -> pd.DataFrame:
    """Hold out a reproducible random share of each campaign and risk band from contact.

    Inside each (campaign, risk_band) stratum of n rows, rows are ranked by a stable hash of
    (seed, as_of, campaign, account_id) (BLAKE2b, the same on every machine and process) and the
    first ``round(share * n)`` are held out (Python's ``round``, halves to even: a stratum of 5 at
    10% holds out none). Which accounts are held out depends only on the seed, the as-of date,
    the campaign and the stratum's members, never on scores or row order.

    Held-out rows are not contacted: their ``cost``, ``expected_value`` and
    ``expected_net_value`` are 0; ``expected_net_value_if_contacted`` keeps what every row would
    be worth if contacted. Their ``value`` and ``rate`` stay, for measuring the campaign later.
    The budget they free is not spent on others (that would bias the comparison).

    Parameters
    ----------
    selected : DataFrame
        Chosen pairs (``Selection.chosen``) with ``account_id``, ``campaign``, ``risk_band``,
        ``cost``, ``expected_value`` and ``expected_net_value``.
    share : float
        Share held out in each stratum, in [0, 1).
    as_of : date, datetime, Timestamp or ISO string
        The scoring date; a new date draws new holdouts. Time-zone-aware values are taken in
        UTC; a date and its midnight are the same.
    seed : int
        Seed of the draw.

    Returns
    -------
    DataFrame
        ``selected`` with ``holdout`` (bool) and ``expected_net_value_if_contacted`` added,
        sorted by account_id, campaign.

    Raises
    ------
    ChurnlabError
        ``share`` is outside [0, 1), ``as_of`` is not a date, a column is missing, or holdouts
        were already assigned.
    """
    ok = isinstance(share, Real) and not isinstance(share, bool) and math.isfinite(share)
    if not ok or not 0 <= share < 1:
        raise ChurnlabError(f"holdout share must be a number in [0, 1), got {share!r}")
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise ChurnlabError(f"holdout seed must be an integer, got {seed!r}")
    _require(
        selected,
        ("account_id", "campaign", "risk_band", "cost", "expected_value", "expected_net_value"),
        "selected",
    )
    if "holdout" in selected.columns:
        raise ChurnlabError(
            "the selected frame already has a holdout column; assign holdouts once, to the "
            "rows select() chose"
        )
    stamp = _iso(as_of)
    out = selected.sort_values(["account_id", "campaign"], kind="mergesort").reset_index(drop=True)
    out["expected_net_value_if_contacted"] = out["expected_net_value"].astype(float)
    n = len(out)
    holdout = np.zeros(n, dtype=bool)
    if n and share > 0:
        prefix = f"{seed}\x1f{stamp}\x1f"
        keys = np.fromiter(
            (
                _hash(f"{prefix}{c}\x1f{a}")
                for c, a in zip(
                    out["campaign"].astype(str), out["account_id"].astype(str), strict=True
                )
            ),
            dtype=np.uint64,
            count=n,
        )
        stratum = out.groupby(["campaign", "risk_band"], dropna=False, sort=True).ngroup()
        stratum = stratum.to_numpy()
        # Rank inside each stratum by hash; the row index (account_id order) breaks hash ties.
        order = np.lexsort((np.arange(n), keys, stratum))
        s = stratum[order]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        sizes = np.diff(np.r_[starts, n])
        rank = np.arange(n) - np.repeat(starts, sizes)
        take = np.repeat(np.array([round(share * int(k)) for k in sizes]), sizes)
        holdout[order] = rank < take
    out["holdout"] = holdout
    for col in ("cost", "expected_value", "expected_net_value"):
        out[col] = out[col].astype(float).where(~holdout, 0.0)
    return out


def _iso(as_of: Any) -> str:
    if as_of is None:
        raise ChurnlabError("as_of is required to draw holdouts (the scoring date)")
    try:
        ts = pd.Timestamp(as_of)
    except (TypeError, ValueError) as exc:
        raise ChurnlabError(f"as_of must be a date or an ISO date string, got {as_of!r}") from exc
    if pd.isna(ts):
        raise ChurnlabError(f"as_of must be a date, got {as_of!r}")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.isoformat()


def _hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


# -- summary and build -----------------------------------------------------------------------------


def summary(audience: pd.DataFrame) -> pd.DataFrame:
    """Per campaign: contacts, holdouts, and the cost and expected value of the contacts.

    Parameters
    ----------
    audience : DataFrame
        The audiences table (from :func:`build` or :func:`assign_holdouts`); without a
        ``holdout`` column every row counts as a contact.

    Returns
    -------
    DataFrame
        Columns ``SUMMARY_COLUMNS``, one row per campaign in the audience, sorted by name.
        ``cost``, ``expected_value`` and ``expected_net_value`` sum over the contacts only.
    """
    _require(
        audience, ("campaign", "kind", "cost", "expected_value", "expected_net_value"), "audience"
    )
    if audience.empty:
        return _empty(SUMMARY_COLUMNS)
    held = (
        audience["holdout"].astype(bool).to_numpy()
        if "holdout" in audience.columns
        else np.zeros(len(audience), dtype=bool)
    )
    frame = pd.DataFrame(
        {
            "campaign": audience["campaign"].to_numpy(),
            "kind": audience["kind"].to_numpy(),
            "contacts": (~held).astype(int),
            "holdout": held.astype(int),
        }
    )
    for col in ("cost", "expected_value", "expected_net_value"):
        frame[col] = np.where(held, 0.0, audience[col].to_numpy(dtype=float))
    out = frame.groupby("campaign", sort=True).agg(
        kind=("kind", "first"),
        contacts=("contacts", "sum"),
        holdout=("holdout", "sum"),
        cost=("cost", "sum"),
        expected_value=("expected_value", "sum"),
        expected_net_value=("expected_net_value", "sum"),
    )
    return out.reset_index()[list(SUMMARY_COLUMNS)]


def build(
    at_risk: pd.DataFrame,
    expansion: pd.DataFrame | None,
    campaigns: Sequence[Campaign],
    budget: float | None,
    *,
    holdout_share: float,
    as_of: dt.date | dt.datetime | pd.Timestamp | str,
    seed: int = 0,
    time_limit: float = DEFAULT_TIME_LIMIT,
    uplift: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, Selection]:
    """The audiences table: candidate pairs, the best selection within budget, holdouts.

    Parameters
    ----------
    at_risk, expansion, campaigns
        As for :func:`candidate_pairs`.
    budget : float or None
        Total contact cost allowed (None = unlimited), as for :func:`select`.
    holdout_share : float
        Share of each (campaign, risk band) held out, in [0, 1).
    as_of : date, datetime, Timestamp or ISO string
        The scoring date (seeds the holdout draw with ``seed``).
    seed : int
        Seed of the holdout draw.
    time_limit : float
        Seconds allowed for the selection.
    uplift : DataFrame, optional
        Uplift targeting of the retention campaigns, as for :func:`candidate_pairs`.

    Returns
    -------
    audience : DataFrame
        Columns ``AUDIENCE_COLUMNS``, one row per chosen (account, campaign), sorted by
        account_id, campaign.
    selection : Selection
        How the rows were chosen (objective, LP bound, gap, method, status), before holdouts.
    """
    pairs = candidate_pairs(at_risk, expansion, campaigns, uplift=uplift)
    selection = select(pairs, budget, time_limit=time_limit)
    audience = assign_holdouts(selection.chosen, holdout_share, as_of=as_of, seed=seed)
    return audience[list(AUDIENCE_COLUMNS)], selection


# -- treatments ------------------------------------------------------------------------------------


def campaign_id(name: str, as_of: dt.date | dt.datetime | pd.Timestamp | str) -> str:
    """The ``treatments`` campaign id of a campaign sent at ``as_of``: ``<name>-<YYYY-MM-DD>``.

    Each scoring's audience is its own campaign (its own randomisation and window), so the same
    campaign sent again a month later is measured separately.
    """
    return f"{name}-{pd.Timestamp(_iso(as_of)):%Y-%m-%d}"


def treatments(
    audience: pd.DataFrame,
    campaigns: Sequence[Campaign],
    as_of: dt.date | dt.datetime | pd.Timestamp | str,
) -> pd.DataFrame:
    """The audience as rows of the contract's ``treatments`` table, to append once it is sent.

    Parameters
    ----------
    audience : DataFrame
        The audiences table (:func:`build`): ``account_id``, ``campaign``, ``kind``,
        ``holdout``, ``cost`` (0 for held-out rows).
    campaigns : sequence of Campaign
        The campaigns it was built for (their channels).
    as_of : date, datetime, Timestamp or ISO string
        The scoring date: every row's ``assigned_at`` (a midnight), and part of the campaign id.

    Returns
    -------
    DataFrame
        Columns ``TREATMENT_COLUMNS``: ``account_id``, ``campaign_id`` (:func:`campaign_id`),
        ``assigned_at``, ``holdout``, ``kind``, ``channel`` (the campaign's, None when not
        declared) and ``cost`` (what contacting the account costs; 0 for the holdout), sorted
        by campaign_id, account_id.
    """
    _require(audience, ("account_id", "campaign", "kind", "holdout", "cost"), "audience")
    stamp = pd.Timestamp(_iso(as_of)).as_unit("us")
    channel = {c.name: c.channel for c in campaigns}
    names = audience["campaign"].astype(str)
    unknown = sorted(set(names) - set(channel))
    if unknown:
        raise ChurnlabError(f"the audience has campaigns that were not declared: {unknown[:5]}")
    out = pd.DataFrame(
        {
            "account_id": audience["account_id"].astype(str).to_numpy(),
            "campaign_id": [campaign_id(n, stamp) for n in names],
            "assigned_at": pd.Series(stamp, index=range(len(audience))).astype("datetime64[us]"),
            "holdout": audience["holdout"].astype(bool).to_numpy(),
            "kind": audience["kind"].astype(str).to_numpy(),
            "channel": pd.Series([channel[n] for n in names], dtype=object),
            "cost": audience["cost"].to_numpy(dtype=float),
        }
    )
    out = out.sort_values(["campaign_id", "account_id"], kind="mergesort")
    return out.reset_index(drop=True)[list(TREATMENT_COLUMNS)]

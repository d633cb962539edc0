"""What each campaign actually changed, measured from its randomised holdout after the horizon.

A campaign's audience (the ``treatments`` table) is split at random into contacted accounts and
a holdout; once the outcome window of every assignment is complete, the difference between the
two groups is the campaign's effect. This stage computes, per campaign (and per risk band and
driver group when the caller gives them), treated vs holdout:

- **churn rate**: the training label (:func:`churnlab.labels.compute` with cutoff =
  ``assigned_at``): contractual, no active subscription at ``assigned_at + horizon_days``;
  orders-only, no order in the window;
- **expansion rate**: the training label too (MRR up by ``expansion_min_fraction`` or an
  upsell/cross-sell order in the window; orders-only, spend above the window before);
- **retained ARR** per account: ``12 x min(MRR at the window end, MRR at assignment)``, the ARR
  held at assignment that is still there at the end (a GRR numerator per account; churned
  accounts keep 0). Contractual data only (NaN for orders-only data);
- **expansion value** per account: contractual, ``12 x max(MRR at the window end - MRR at
  assignment, 0)``, the ARR gained; orders-only, the spend growth over the equally long window
  before, 0 when spend did not grow. (Contractual retained ARR + expansion value = ARR at the
  window end.)

Each difference is **treated minus holdout** with a 95% interval: rates get Newcombe's hybrid
score interval (:func:`churnlab.effects.difference_in_rates`, or a seeded percentile bootstrap),
per-account means Welch's t interval (:func:`churnlab.effects.difference_in_means`, or the
bootstrap); the ``method`` column says which. An interval that excludes 0 is a detectable
effect; one in the wrong direction (more churn, less expansion or ARR) is flagged as harmful.

Who counts: an assignment is measured when the account was a customer at ``assigned_at`` (the
training spine's rule: an active subscription, ``start_at <= assigned_at < end_at``; orders-only,
a non-refund order in the ``lookback_days`` before), since only such rows carry labels in
training. Eligibility is fixed before the campaign, so dropping the others keeps the comparison
randomised; how many were dropped is reported. A campaign is measured only when the windows of
all its assignments are complete (``assigned_at + horizon_days <= data end``); otherwise it is
listed as pending, with the date its last window closes.

Everything here is pure: a DuckDB connection and frames in, a :class:`Measurement` out. The
outcomes per assignment come from :mod:`churnlab.assignments`; :mod:`churnlab.measure_outputs`
describes what to log and draws the charts.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd

from churnlab import effects, uplift_curves

# The assignments' outcomes and the stage's error live in churnlab.assignments (uplift reads the
# same rows); they are re-exported here, where callers measuring campaigns look for them.
from churnlab.assignments import (  # noqa: F401
    MeasureError,
    assignment_outcomes,
    read_treatments,
)
from churnlab.config import DataParams, DatasetParams
from churnlab.load import data_end
from churnlab.spine import resolve_mode

OUTCOMES: tuple[str, ...] = ("churn", "expansion", "retained_arr", "expansion_value")
"""Measured outcomes, in display order."""
RATE_OUTCOMES: tuple[str, ...] = ("churn", "expansion")
MEAN_OUTCOMES: tuple[str, ...] = ("retained_arr", "expansion_value")
DESIRED: dict[str, int] = {"churn": -1, "expansion": 1, "retained_arr": 1, "expansion_value": 1}
"""The direction a good campaign moves each outcome (churn down, the others up)."""
PAIRED_RATE: dict[str, str] = {
    "churn": "churn",
    "retained_arr": "churn",
    "expansion": "expansion",
    "expansion_value": "expansion",
}
"""The rate whose holdout counts decide whether an outcome's holdout is too small."""
SEGMENT_COLUMNS: tuple[str, ...] = ("risk_band", "driver_group")
"""Optional per-(account, campaign) segment columns that get their own breakdown."""
UPSELL_KINDS: tuple[str, ...] = ("upsell", "cross_sell", "expansion")
"""Treatment kinds whose primary outcome is expansion; every other kind is measured on churn."""
OVERALL = "all"

EFFECT_COLUMNS: tuple[str, ...] = (
    "campaign_id",
    "segment_type",
    "segment",
    "outcome",
    "statistic",
    "n_treated",
    "n_holdout",
    "events_treated",
    "events_holdout",
    "treated",
    "holdout",
    "diff",
    "ci_low",
    "ci_high",
    "method",
    "level",
    "detectable",
    "harmful",
    "verdict",
    "warning",
)
CAMPAIGN_COLUMNS: tuple[str, ...] = (
    "campaign_id",
    "kind",
    "channel",
    "primary_outcome",
    "first_assigned_at",
    "last_assigned_at",
    "window_end",
    "accounts",
    "not_customers",
    "n_treated",
    "n_holdout",
    "holdout_share",
    *(
        f"{o}_{part}"
        for o in OUTCOMES
        for part in ("treated", "holdout", "diff", "ci_low", "ci_high", "verdict")
    ),
    "churned_treated",
    "churned_holdout",
    "expanded_treated",
    "expanded_holdout",
    "arr_treated",
    "arr_holdout",
    "cost",
    "incremental_retained_arr",
    "incremental_expansion_value",
    "rate_method",
    "mean_method",
    "level",
    "qini_coefficient",
    "warning",
)
PENDING_COLUMNS: tuple[str, ...] = (
    "campaign_id",
    "kind",
    "accounts",
    "holdout_accounts",
    "first_assigned_at",
    "last_assigned_at",
    "window_end",
    "data_end",
    "days_to_go",
)
POWER_COLUMNS: tuple[str, ...] = (
    "campaign_id",
    "outcome",
    "base_rate",
    "n_treated",
    "n_holdout",
    "holdout_share",
    "mde",
    "detectable_diff",
    "required_treated",
    "required_holdout",
    "required_total",
    "powered",
)
WARNING_COLUMNS: tuple[str, ...] = (
    "campaign_id",
    "segment_type",
    "segment",
    "outcome",
    "n_holdout",
    "events_holdout",
    "message",
)


@dataclass(frozen=True)
class MeasureSettings:
    """How campaigns are measured (the knobs a ``measure`` params section would hold).

    Attributes
    ----------
    level : float
        Confidence level of every interval.
    rate_method : {"newcombe", "bootstrap"}
        Interval for differences in rates (churn, expansion).
    mean_method : {"welch", "bootstrap"}
        Interval for differences in per-account means (retained ARR, expansion value).
    n_boot, seed : int
        Bootstrap replicates and seed (bootstrap methods only).
    detectable_diff : float
        Size (absolute, in rate points) of the effect the power table plans for: a churn
        decrease or an expansion increase of this much.
    alpha, power : float
        Two-sided significance level and power of the planning test.
    min_holdout, min_events : int
        Fewer held-out accounts or holdout outcome events than this get a too-small warning.
    bins : int
        Score bands of the uplift-by-decile table.
    """

    level: float = 0.95
    rate_method: Literal["newcombe", "bootstrap"] = "newcombe"
    mean_method: Literal["welch", "bootstrap"] = "welch"
    n_boot: int = effects.DEFAULT_BOOT
    seed: int = 0
    detectable_diff: float = 0.05
    alpha: float = 0.05
    power: float = 0.8
    min_holdout: int = 30
    min_events: int = 5
    bins: int = 10


@dataclass(frozen=True)
class Measurement:
    """Everything :func:`measure` found.

    Attributes
    ----------
    campaigns : DataFrame
        Columns ``CAMPAIGN_COLUMNS``, one row per measured campaign (all its eligible
        accounts): counts, the four outcomes per arm with their difference and interval,
        verdicts, cost, the score's Qini coefficient and the too-small warnings (see
        :func:`measure`).
    effects : DataFrame
        Long form, columns ``EFFECT_COLUMNS``: one row per campaign, segment and outcome.
        ``segment_type`` is ``"all"`` (``segment`` ``"all"``), ``"risk_band"`` or
        ``"driver_group"``.
    power : DataFrame
        Columns ``POWER_COLUMNS``: per campaign and rate outcome, the minimum detectable effect at
        the current group sizes and the accounts a test of ``detectable_diff`` needs.
    qini : DataFrame
        Qini curve points of the targeting score per campaign (``campaign_id``, ``outcome``, then
        :func:`churnlab.uplift_curves.qini_curve`'s columns); empty without a score.
    uplift_by_decile : DataFrame
        Observed uplift per score band per campaign (``campaign_id``, ``outcome``, then
        :func:`churnlab.uplift_curves.uplift_by_decile`'s columns); empty without a score.
    pending : DataFrame
        Columns ``PENDING_COLUMNS``: campaigns whose outcome windows are not all complete.
    warnings : DataFrame
        Columns ``WARNING_COLUMNS``: every too-small holdout (per campaign, segment and rate).
    outcomes : DataFrame
        Per measured assignment: ``account_id``, ``campaign_id``, ``assigned_at``, ``holdout``,
        the outcomes and the segment columns given.
    data_end : datetime
        End of observation the windows were checked against.
    mode : str
        ``"contractual"`` or ``"orders"``.
    settings : MeasureSettings
        The settings used.
    """

    campaigns: pd.DataFrame
    effects: pd.DataFrame
    power: pd.DataFrame
    qini: pd.DataFrame
    uplift_by_decile: pd.DataFrame
    pending: pd.DataFrame
    warnings: pd.DataFrame
    outcomes: pd.DataFrame
    data_end: dt.datetime
    mode: str
    settings: MeasureSettings = field(default_factory=MeasureSettings)


# ---------------------------------------------------------------------------------------------
# segments


def _check_segments(segments: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("account_id", "campaign_id") if c not in segments.columns]
    if missing:
        raise MeasureError(
            f"segments: missing column(s) {missing}; give one row per (account_id, campaign_id) "
            "with any of risk_band, driver_group, score"
        )
    cols = [c for c in (*SEGMENT_COLUMNS, "score") if c in segments.columns]
    if not cols:
        raise MeasureError(
            "segments: no segment column; add risk_band, driver_group and/or score (the score the "
            "campaign was targeted by)"
        )
    seg = segments[["account_id", "campaign_id", *cols]].copy()
    seg["account_id"] = seg["account_id"].astype(str)
    seg["campaign_id"] = seg["campaign_id"].astype(str)
    dup = seg.duplicated(["account_id", "campaign_id"])
    if dup.any():
        first = seg.loc[dup].iloc[0]
        raise MeasureError(
            f"segments: {int(dup.sum())} duplicate (account_id, campaign_id) row(s), e.g. "
            f"({first['account_id']}, {first['campaign_id']}); keep one row per assignment"
        )
    if "score" in cols:
        score = pd.to_numeric(seg["score"], errors="coerce")
        bad = seg["score"].notna() & ~np.isfinite(score.astype("float64"))
        if bad.any():
            raise MeasureError(
                f"segments: score has {int(bad.sum())} value(s) that are not finite numbers, e.g. "
                f"{seg.loc[bad, 'score'].iloc[0]!r}; scores must be numbers (missing is allowed)"
            )
        seg["score"] = score.astype("float64")
    for c in SEGMENT_COLUMNS:
        if c in cols:
            seg[c] = (
                seg[c]
                .astype(object)
                .where(seg[c].notna(), None)
                .map(lambda v: None if v is None else str(v))
            )
    return seg


# ---------------------------------------------------------------------------------------------
# one comparison


def _verdict(outcome: str, diff: float, detectable: bool) -> str:
    if not math.isfinite(diff):
        return "not measured"
    if not detectable:
        return "no detectable effect"
    up = diff > 0
    words = {
        "churn": ("raised churn", "lowered churn"),
        "expansion": ("raised expansion", "lowered expansion"),
        "retained_arr": ("more ARR retained", "less ARR retained"),
        "expansion_value": ("more expansion value", "less expansion value"),
    }[outcome]
    text = words[0] if up else words[1]
    return f"{text} (harmful)" if (1 if up else -1) != DESIRED[outcome] else text


def _size_warning(n_t: int, n_c: int, events_c: int, s: MeasureSettings) -> str | None:
    if n_t == 0 or n_c == 0:
        which = "contacted" if n_t == 0 else "held-out"
        return (
            f"no {which} accounts ({n_t:,} contacted, {n_c:,} held out): nothing to compare, "
            "the campaign cannot be measured"
        )
    return effects.too_small(n_c, events_c, min_holdout=s.min_holdout, min_events=s.min_events)


def _compare(
    outcome: str, treated: np.ndarray, control: np.ndarray, s: MeasureSettings
) -> dict[str, Any]:
    """One treated-vs-holdout comparison (without the warning, which the rate row decides)."""
    n_t, n_c = len(treated), len(control)
    rate = outcome in RATE_OUTCOMES
    row: dict[str, Any] = {
        "outcome": outcome,
        "statistic": "rate" if rate else "mean",
        "n_treated": n_t,
        "n_holdout": n_c,
        "events_treated": int(treated.sum()) if rate else np.nan,
        "events_holdout": int(control.sum()) if rate else np.nan,
        "treated": float(treated.mean()) if n_t else np.nan,
        "holdout": float(control.mean()) if n_c else np.nan,
        "diff": np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "method": s.rate_method if rate else s.mean_method,
        "level": s.level,
    }
    if n_t and n_c:
        row["diff"] = row["treated"] - row["holdout"]
        if rate:
            r = effects.difference_in_rates(
                treated, control, level=s.level, method=s.rate_method, n_boot=s.n_boot,
                seed=s.seed,
            )  # fmt: skip
            row["ci_low"], row["ci_high"] = r.ci_low, r.ci_high
        elif s.mean_method == "bootstrap" or min(n_t, n_c) >= 2:
            m = effects.difference_in_means(
                treated, control, level=s.level, method=s.mean_method, n_boot=s.n_boot,
                seed=s.seed,
            )  # fmt: skip
            row["ci_low"], row["ci_high"] = m.ci_low, m.ci_high
    detectable = bool(row["ci_low"] > 0 or row["ci_high"] < 0)  # NaN compares False
    row["detectable"] = detectable
    row["harmful"] = bool(detectable and np.sign(row["diff"]) == -DESIRED[outcome])
    row["verdict"] = _verdict(outcome, row["diff"], detectable)
    return row


def _group_effects(g: pd.DataFrame, mode: str, s: MeasureSettings) -> list[dict[str, Any]]:
    """The four outcome rows of one group of measured assignments."""
    treated = ~g["holdout"].to_numpy(dtype=bool)
    rows: dict[str, dict[str, Any]] = {}
    for outcome in OUTCOMES:
        if outcome == "retained_arr" and mode != "contractual":
            continue
        y = g[outcome].to_numpy(dtype="float64")
        rows[outcome] = _compare(outcome, y[treated], y[~treated], s)
    for outcome, row in rows.items():
        paired = rows[PAIRED_RATE[outcome]]
        row["warning"] = _size_warning(
            paired["n_treated"], paired["n_holdout"], int(paired["events_holdout"]), s
        )
    return list(rows.values())


# ---------------------------------------------------------------------------------------------
# the stage


def primary_outcome(kind: str | None) -> str:
    """The outcome a campaign of this ``kind`` is meant to move: expansion or churn.

    Upsell kinds (``UPSELL_KINDS``) are meant to raise expansion; every other kind, or none, is
    a retention campaign meant to lower churn.
    """
    return "expansion" if kind is not None and str(kind).lower() in UPSELL_KINDS else "churn"


def _joined(values: pd.Series) -> str | None:
    vals = sorted({str(v) for v in values.dropna()})
    return ",".join(vals) if vals else None


def measure(
    con: duckdb.DuckDBPyConnection,
    params: DatasetParams,
    data: DataParams,
    *,
    segments: pd.DataFrame | None = None,
    settings: MeasureSettings | None = None,
) -> Measurement:
    """Measure every campaign whose outcome windows are complete, from its holdout.

    Parameters
    ----------
    con : DuckDBPyConnection
        Connection holding the typed contract tables, ``treatments`` among them
        (:func:`churnlab.load.load` or :func:`churnlab.load.connect_frames`).
    params : DatasetParams
        The ``dataset`` section: the label definitions (``horizon_days``,
        ``expansion_min_fraction``, ``lookback_days``, ``mode``) are exactly the training ones.
    data : DataParams
        The ``data`` section (``as_of`` fixes the end of observation, else the data's latest
        timestamp, :func:`churnlab.load.data_end`).
    segments : DataFrame, optional
        One row per (``account_id``, ``campaign_id``) with any of ``risk_band``,
        ``driver_group`` (each gets a per-segment breakdown; missing values are left out of it)
        and ``score`` (the score the campaign was targeted by, higher = targeted first, e.g. the
        churn probability of a retention audience; rows without one are left out of the Qini).
    settings : MeasureSettings, optional
        Interval methods, level, power planning and warning thresholds.

    Returns
    -------
    Measurement
        ``campaigns`` has one row per measured campaign: ``campaign_id``, ``kind``,
        ``channel``, ``primary_outcome``, ``first_assigned_at``, ``last_assigned_at``,
        ``window_end``, ``accounts`` (assignments), ``not_customers`` (dropped: not a customer at
        assignment), ``n_treated``, ``n_holdout``, ``holdout_share``, then per outcome ``o`` in
        ``OUTCOMES``: ``o_treated``, ``o_holdout`` (rates or per-account means), ``o_diff``,
        ``o_ci_low``, ``o_ci_high``, ``o_verdict``; ``churned_treated``, ``churned_holdout``,
        ``expanded_treated``, ``expanded_holdout`` (events), ``arr_treated``, ``arr_holdout``
        (ARR at assignment, sums), ``cost`` (sum), ``incremental_retained_arr`` and
        ``incremental_expansion_value`` (the per-account difference times the contacted
        accounts), ``rate_method``, ``mean_method``, ``level``, ``qini_coefficient`` (NaN
        without a score) and ``warning`` (the too-small warnings of both rates, "" when none).

    Raises
    ------
    MeasureError
        Without a (non-empty) treatments table, or with malformed segments.
    """
    s = settings or MeasureSettings()
    cursor = con.cursor()
    try:
        end = data_end(cursor, data)
    finally:
        cursor.close()
    mode = resolve_mode(con, params)
    out = assignment_outcomes(con, params, end)
    seg = _check_segments(segments) if segments is not None else None
    if seg is not None:
        out = out.merge(seg, on=["account_id", "campaign_id"], how="left")

    last = out.groupby("campaign_id", sort=True)["assigned_at"].max()
    done = last + dt.timedelta(days=int(params.horizon_days)) <= pd.Timestamp(end)
    pending = _pending(out[out["campaign_id"].isin(done.index[~done])], end)
    measured = out[out["campaign_id"].isin(done.index[done])]

    effect_rows: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    qini_parts: list[pd.DataFrame] = []
    decile_parts: list[pd.DataFrame] = []
    power_rows: list[dict[str, Any]] = []
    for cid, g in measured.groupby("campaign_id", sort=True):
        kind = _joined(g["kind"])
        primary = primary_outcome(kind)
        ok = g[g["eligible"]]
        overall = _group_effects(ok, mode, s)
        for row in overall:
            effect_rows.append({"campaign_id": cid, "segment_type": OVERALL, "segment": OVERALL,
                                **row})  # fmt: skip
        for col in SEGMENT_COLUMNS:
            if seg is None or col not in ok.columns:
                continue
            for value, sg in ok[ok[col].notna()].groupby(col, sort=True):
                for row in _group_effects(sg, mode, s):
                    effect_rows.append(
                        {"campaign_id": cid, "segment_type": col, "segment": value, **row}
                    )
        power_rows += _power(str(cid), overall, s)
        qini = np.nan
        if seg is not None and "score" in ok.columns:
            qini, curve, deciles = _qini(ok, primary, s)
            if curve is not None and deciles is not None:
                qini_parts.append(curve.assign(campaign_id=cid, outcome=primary))
                decile_parts.append(deciles.assign(campaign_id=cid, outcome=primary))
        summaries.append(_summary(str(cid), g, ok, kind, primary, overall, qini, params))

    effects_frame = pd.DataFrame(effect_rows, columns=list(EFFECT_COLUMNS))
    return Measurement(
        campaigns=pd.DataFrame(summaries, columns=list(CAMPAIGN_COLUMNS)),
        effects=effects_frame,
        power=pd.DataFrame(power_rows, columns=list(POWER_COLUMNS)),
        qini=_front(qini_parts, ["campaign_id", "outcome"]),
        uplift_by_decile=_front(decile_parts, ["campaign_id", "outcome"]),
        pending=pending,
        warnings=_warnings(effects_frame),
        outcomes=measured[measured["eligible"]]
        .drop(columns=["eligible", "complete"])
        .reset_index(drop=True),
        data_end=end,
        mode=mode,
        settings=s,
    )


def _front(parts: list[pd.DataFrame], first: list[str]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame(columns=first)
    frame = pd.concat(parts, ignore_index=True)
    return frame[[*first, *[c for c in frame.columns if c not in first]]]


def _pending(rows: pd.DataFrame, end: dt.datetime) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame(columns=list(PENDING_COLUMNS))
    g = rows.groupby("campaign_id", sort=True)
    frame = pd.DataFrame(
        {
            "kind": g["kind"].agg(_joined),
            "accounts": g.size(),
            "holdout_accounts": g["holdout"].sum().astype(int),
            "first_assigned_at": g["assigned_at"].min(),
            "last_assigned_at": g["assigned_at"].max(),
            "window_end": g["window_end"].max(),
        }
    ).reset_index()
    frame["data_end"] = pd.Timestamp(end)
    left = (frame["window_end"] - frame["data_end"]) / pd.Timedelta(days=1)
    frame["days_to_go"] = np.ceil(left).astype(int)
    return frame[list(PENDING_COLUMNS)]


def _summary(
    cid: str,
    g: pd.DataFrame,
    ok: pd.DataFrame,
    kind: str | None,
    primary: str,
    rows: list[dict[str, Any]],
    qini: float,
    params: DatasetParams,
) -> dict[str, Any]:
    by = {r["outcome"]: r for r in rows}
    n_t = int((~ok["holdout"]).sum())
    n_c = int(ok["holdout"].sum())
    out: dict[str, Any] = {
        "campaign_id": cid,
        "kind": kind,
        "channel": _joined(g["channel"]),
        "primary_outcome": primary,
        "first_assigned_at": g["assigned_at"].min(),
        "last_assigned_at": g["assigned_at"].max(),
        "window_end": g["window_end"].max(),
        "accounts": len(g),
        "not_customers": int((~g["eligible"]).sum()),
        "n_treated": n_t,
        "n_holdout": n_c,
        "holdout_share": n_c / (n_t + n_c) if n_t + n_c else np.nan,
    }
    for o in OUTCOMES:
        r = by.get(o)
        for key in ("treated", "holdout", "diff", "ci_low", "ci_high"):
            out[f"{o}_{key}"] = r[key] if r else np.nan
        out[f"{o}_verdict"] = r["verdict"] if r else "not applicable"
    out["churned_treated"] = by["churn"]["events_treated"]
    out["churned_holdout"] = by["churn"]["events_holdout"]
    out["expanded_treated"] = by["expansion"]["events_treated"]
    out["expanded_holdout"] = by["expansion"]["events_holdout"]
    out["arr_treated"] = float(ok.loc[~ok["holdout"], "arr"].sum())
    out["arr_holdout"] = float(ok.loc[ok["holdout"], "arr"].sum())
    out["cost"] = float(g["cost"].sum()) if g["cost"].notna().any() else np.nan
    out["incremental_retained_arr"] = out["retained_arr_diff"] * n_t
    out["incremental_expansion_value"] = out["expansion_value_diff"] * n_t
    out["rate_method"] = by["churn"]["method"]
    out["mean_method"] = by["expansion_value"]["method"]
    out["level"] = by["churn"]["level"]
    out["qini_coefficient"] = qini
    out["warning"] = "; ".join(
        f"{o}: {by[o]['warning']}" for o in RATE_OUTCOMES if by[o]["warning"]
    )
    return out


def _power(cid: str, rows: list[dict[str, Any]], s: MeasureSettings) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        if r["outcome"] not in RATE_OUTCOMES:
            continue
        n_t, n_c = int(r["n_treated"]), int(r["n_holdout"])
        base = float(r["holdout"]) if n_c else np.nan
        sign = DESIRED[r["outcome"]]
        d = sign * abs(s.detectable_diff)
        row: dict[str, Any] = {
            "campaign_id": cid,
            "outcome": r["outcome"],
            "base_rate": base,
            "n_treated": n_t,
            "n_holdout": n_c,
            "holdout_share": n_c / (n_t + n_c) if n_t + n_c else np.nan,
            "mde": np.nan,
            "detectable_diff": d,
            "required_treated": pd.NA,
            "required_holdout": pd.NA,
            "required_total": pd.NA,
            "powered": pd.NA,
        }
        if n_t and n_c and 0 < base < 1:
            row["mde"] = effects.minimum_detectable_effect(
                n_t, n_c, base, alpha=s.alpha, power=s.power,
                alternative="increase" if sign > 0 else "decrease",
            )  # fmt: skip
            if 0 < base + d < 1:
                need = effects.required_sample_size(
                    base, d, alpha=s.alpha, power=s.power, holdout_share=row["holdout_share"]
                )
                row["required_treated"] = need.n_treated
                row["required_holdout"] = need.n_control
                row["required_total"] = need.n_total
                row["powered"] = bool(n_t >= need.n_treated and n_c >= need.n_control)
        out.append(row)
    return out


def _qini(
    ok: pd.DataFrame, primary: str, s: MeasureSettings
) -> tuple[float, pd.DataFrame | None, pd.DataFrame | None]:
    """Qini coefficient, curve and uplift by band of the targeting score on one campaign."""
    rows = ok[ok["score"].notna()]
    treated = (~rows["holdout"]).to_numpy(dtype=float)
    if rows.empty or treated.min() == treated.max():
        return np.nan, None, None
    y = rows[primary].to_numpy(dtype="float64")
    # The curve counts the response a campaign should raise: saved (not churned) for retention.
    response = 1 - y if primary == "churn" else y
    score = rows["score"].to_numpy(dtype="float64")
    curve = uplift_curves.qini_curve(score, treated, response)
    deciles = uplift_curves.uplift_by_decile(
        score, treated, response, bins=min(s.bins, len(rows)), level=s.level
    )
    try:
        coef = uplift_curves.qini_auc(score, treated, response)
    except effects.EffectsError:  # every outcome the same: the coefficient is undefined
        coef = np.nan
    return coef, curve, deciles


def _warnings(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[(frame["statistic"] == "rate") & frame["warning"].notna()]
    out = rows.rename(columns={"warning": "message"})[list(WARNING_COLUMNS)]
    return out.reset_index(drop=True)

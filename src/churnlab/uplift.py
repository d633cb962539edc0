"""Uplift: who a campaign changes, learnt from past randomised campaigns with LightGBM.

A churn score targets the accounts most likely to leave; a campaign is worth sending to the
accounts it *saves*, and some accounts churn more when contacted. This module fits a
meta-learner on past campaigns' treated and held-out accounts and predicts each account's
**treatment effect on churn**: its churn probability if contacted minus if not (negative =
the campaign keeps it).

Learners (small, on :mod:`lightgbm`)
------------------------------------
causalml (0.18.0) has both learners but was not added: its wheel pins forestci and pathos and
pulls in xgboost, statsmodels, seaborn, pydot, graphviz and even black at run time, for two
learners that are a few dozen lines here.

- ``"t"`` (T-learner): one classifier per arm, ``mu1`` on contacted accounts, ``mu0`` on the
  holdout; effect ``mu1(x) - mu0(x)``.
- ``"x"`` (X-learner, Kuenzel et al. 2019; default): the T-learner's two classifiers impute each
  account's individual effect from the other arm (contacted: ``y - mu0(x)``, held out:
  ``mu1(x) - y``); a regressor per arm learns these, ``tau1`` and ``tau0``, and the effect is
  ``e tau0(x) + (1 - e) tau1(x)`` with ``e`` the share contacted (the propensity, constant in a
  randomised campaign). It suits campaigns whose holdout is much smaller than the treated group:
  the holdout's imputations use the classifier fitted on the large treated group.

Features are the training set's point-in-time features (:func:`churnlab.features.compute`) at
``cutoff = assigned_at`` floored to midnight (UTC): the feature SQL buckets rows by whole days, so
cutoffs must be midnights, and rows between midnight and the assignment are left out (never
anything after it). Outcomes are the training churn label (:func:`churnlab.assignments.
assignment_outcomes`). Fit on campaigns whose outcome windows closed before the campaign
evaluated on or targeted (:func:`time_split`), never on a random split.

:func:`churnlab.uplift_evaluation.evaluate` scores a later campaign: the Qini coefficient and
AUUC of the model's ranking against targeting by churn risk (and, on the synthetic world, by the
true effects: the oracle), and, when the true effects are known, the share of the oracle's
expected gain the ranking gets.
:func:`uplift_value` turns predicted effects into the selection input of ``score --target
uplift``: expected saved ARR ``-effect x ARR`` minus cost, with harmful accounts excluded.

References
----------
Kuenzel, S. R., Sekhon, J. S., Bickel, P. J., Yu, B. (2019). Metalearners for estimating
heterogeneous treatment effects using machine learning. PNAS 116, 4156-4165.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import lightgbm as lgb
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from churnlab import features
from churnlab.assignments import assignment_outcomes
from churnlab.config import DatasetParams
from churnlab.errors import ChurnlabError
from churnlab.manifest import Feature

# Chosen on the synthetic world (seed 42, 10,000-60,000 accounts; see the README): shallow,
# slow trees; deeper or faster ones fit the outcome noise of a few hundred held-out accounts.
DEFAULT_LIGHTGBM: dict[str, Any] = {
    "learning_rate": 0.03,
    "num_leaves": 3,
    "max_depth": 3,
    "min_child_samples": 100,
    "feature_fraction": 0.5,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 10.0,
    "verbose": -1,
    "seed": 7,
    # One thread: on a few thousand rows OpenMP's start-up and spin-waiting cost more than they
    # save (measured 0.1 s against 2 s per fit on a busy 2-core machine).
    "num_threads": 1,
    "deterministic": True,
    "force_col_wise": True,
}
"""LightGBM parameters of every learner (small trees: a few thousand rows per arm at most)."""
_CLIP = 1e-4
CAMPAIGN_COLUMNS: dict[str, str] = {"kind": "campaign_kind", "channel": "campaign_channel"}
"""Treatments columns copied onto each row as campaign features (see :func:`campaign_features`)."""
UPLIFT_VALUE_COLUMNS: tuple[str, ...] = (
    "effect",
    "arr",
    "cost",
    "expected_saved_arr",
    "expected_net_value",
    "harmful",
    "target",
)


class UpliftError(ChurnlabError):
    """An uplift model cannot be fitted, applied or evaluated on the rows given."""


@dataclass(frozen=True)
class UpliftSettings:
    """How the meta-learner is fitted.

    Attributes
    ----------
    method : {"x", "t"}
        X-learner (default) or T-learner.
    rounds : int
        Boosting rounds of the outcome classifiers.
    effect_rounds : int
        Boosting rounds of the X-learner's effect regressors.
    lightgbm : dict
        LightGBM parameters (``objective`` is set per learner).
    """

    method: Literal["x", "t"] = "x"
    rounds: int = 200
    effect_rounds: int = 200
    lightgbm: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_LIGHTGBM))


@dataclass(frozen=True)
class UpliftModel:
    """A fitted meta-learner.

    Attributes
    ----------
    method : str
        ``"t"`` or ``"x"``.
    features : tuple of Feature
        The model's features, in training order.
    categories : dict of str to tuple of str
        Levels of each categorical feature seen in training (others become missing).
    boosters : dict of str to lightgbm.Booster
        ``mu_treated`` and ``mu_control`` (classifiers); the X-learner adds ``tau_treated`` and
        ``tau_control`` (regressors of the imputed effects).
    treated_share : float
        Share of training rows contacted (the X-learner's weight ``e``).
    info : dict
        Facts about the fit: campaigns, rows per arm, churn rates per arm, settings.
    """

    method: str
    features: tuple[Feature, ...]
    categories: dict[str, tuple[str, ...]]
    boosters: dict[str, lgb.Booster]
    treated_share: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        """Feature columns, in training order."""
        return [f.name for f in self.features]

    @property
    def event_types(self) -> tuple[str, ...]:
        """Event types the features count: pass them to ``features.compute`` when scoring."""
        return tuple(sorted({f.event_type for f in self.features if f.event_type is not None}))


# ---------------------------------------------------------------------------------------------
# rows


def midnight(values: pd.Series) -> pd.Series:
    """Timestamps floored to midnight (the feature cutoff of an assignment)."""
    return pd.to_datetime(values).dt.floor("D").astype("datetime64[us]")


def assignment_features(
    con: duckdb.DuckDBPyConnection,
    params: DatasetParams,
    assignments: pd.DataFrame,
    *,
    event_types: Sequence[str] | None = None,
    categories: dict[str, Sequence[str]] | None = None,
) -> tuple[pd.DataFrame, list[Feature]]:
    """Point-in-time features of each assignment, at its ``assigned_at`` floored to midnight.

    Parameters
    ----------
    con : DuckDBPyConnection
        Connection holding the typed contract tables.
    params : DatasetParams
        The ``dataset`` section (feature windows, event types, category limits).
    assignments : DataFrame
        Columns ``account_id`` and ``assigned_at`` (any others are kept).
    event_types, categories : optional
        As for :func:`churnlab.features.compute` (pass a fitted model's to get its columns).

    Returns
    -------
    (DataFrame, list of Feature)
        ``assignments`` (same rows and order) with ``cutoff`` (the floored instant) and the
        feature columns added; and the feature definitions.
    """
    if assignments.empty:
        raise UpliftError("no assignments to compute features for")
    rows = assignments.copy()
    rows["cutoff"] = midnight(rows["assigned_at"])
    spine = rows[["account_id", "cutoff"]].drop_duplicates().reset_index(drop=True)
    cats: dict[str, list[str] | tuple[str, ...]] | None = (
        {k: list(v) for k, v in categories.items()} if categories is not None else None
    )
    x, feats = features.compute(
        con, spine, params, event_types=list(event_types) if event_types else None,
        categories=cats,
    )  # fmt: skip
    clash = [f.name for f in feats if f.name in rows.columns]
    if clash:
        raise UpliftError(f"assignment columns clash with feature names: {clash[:5]}")
    out = rows.merge(x, on=["account_id", "cutoff"], how="left", validate="many_to_one")
    return out, feats


def training_rows(
    con: duckdb.DuckDBPyConnection,
    params: DatasetParams,
    end: Any,
    *,
    campaigns: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, list[Feature]]:
    """Measured assignments (customers at assignment, window complete) with their features.

    Parameters
    ----------
    con : DuckDBPyConnection
        Connection holding the typed contract tables, ``treatments`` among them.
    params : DatasetParams
        The ``dataset`` section (labels and features exactly as in training).
    end : datetime
        End of observation (:func:`churnlab.load.data_end`).
    campaigns : sequence of str, optional
        Only these campaign ids (default: every campaign).

    Returns
    -------
    (DataFrame, list of Feature)
        One row per assignment: :func:`churnlab.assignments.assignment_outcomes`'s columns,
        ``treated`` (not held out), ``campaign_kind`` and ``campaign_channel`` (copies of the
        treatments' ``kind`` and ``channel``, see :func:`campaign_features`), ``cutoff`` and the
        features; and the feature definitions (account features only).
    """
    out = assignment_outcomes(con, params, end)
    if campaigns is not None:
        unknown = sorted(set(campaigns) - set(out["campaign_id"]))
        if unknown:
            raise UpliftError(f"campaigns not in the treatments table: {unknown[:5]}")
        out = out[out["campaign_id"].isin(list(campaigns))]
    out = out[out["eligible"] & out["complete"]].reset_index(drop=True)
    if out.empty:
        raise UpliftError(
            "no assignment has a complete outcome window (or none was a customer when "
            "assigned): there is nothing to learn the effect from yet"
        )
    out["treated"] = ~out["holdout"]
    for src, dst in CAMPAIGN_COLUMNS.items():
        out[dst] = out[src]
    return assignment_features(con, params, out)


def campaign_features(rows: pd.DataFrame) -> list[Feature]:
    """Features for the campaign's own attributes (``campaign_kind``, ``campaign_channel``).

    A model fitted on several kinds of campaign (a training call, a discount e-mail, an upsell
    pitch) can then tell their effects apart. Only columns present with at least one value are
    returned. At scoring, set these columns to the planned campaign's kind and channel.

    Parameters
    ----------
    rows : DataFrame
        :func:`training_rows` output.

    Returns
    -------
    list of Feature
        Categorical features, to add to the feature list given to :func:`fit`.
    """
    out = []
    for src, name in CAMPAIGN_COLUMNS.items():
        if name in rows.columns and rows[name].notna().any():
            levels = tuple(sorted({str(v) for v in rows[name].dropna()}))
            out.append(
                Feature(
                    name,
                    f"campaign {src}",
                    "marketing",
                    dtype="category",
                    kind="category",
                    table="treatments",
                    categories=levels,
                )
            )
    return out


def time_split(
    rows: pd.DataFrame, evaluation: str | Sequence[str], horizon_days: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows from campaigns whose windows closed before the evaluation campaign(s).

    A campaign trains when its last ``assigned_at + horizon_days`` is at or before the first
    assignment of the evaluation campaigns (the same purge as the churn model's split: when the
    evaluation campaign was targeted, only those outcomes were known). Never a random split.

    Parameters
    ----------
    rows : DataFrame
        :func:`training_rows` output (``campaign_id``, ``assigned_at`` and the rest).
    evaluation : str or sequence of str
        The later campaign(s) to evaluate on.
    horizon_days : int
        The outcome window (``dataset.horizon_days``).

    Returns
    -------
    (DataFrame, DataFrame)
        Training rows and evaluation rows.

    Raises
    ------
    UpliftError
        If an evaluation campaign is unknown or no campaign closed before it.
    """
    names = [evaluation] if isinstance(evaluation, str) else list(evaluation)
    unknown = sorted(set(names) - set(rows["campaign_id"]))
    if unknown:
        raise UpliftError(f"evaluation campaign(s) not among the rows: {unknown}")
    test = rows[rows["campaign_id"].isin(names)]
    start = test["assigned_at"].min()
    closes = rows.groupby("campaign_id")["assigned_at"].max() + pd.Timedelta(days=horizon_days)
    before = closes.index[(closes <= start) & ~closes.index.isin(names)]
    train = rows[rows["campaign_id"].isin(before)]
    if train.empty:
        raise UpliftError(
            f"no campaign's outcome window closed by {pd.Timestamp(start):%Y-%m-%d}, when "
            f"{', '.join(names)} started: nothing earlier to learn from"
        )
    return train.reset_index(drop=True), test.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# fit and predict


def _levels(frame: pd.DataFrame, feats: Sequence[Feature]) -> dict[str, tuple[str, ...]]:
    out = {}
    for f in feats:
        if f.dtype == "category" or isinstance(frame[f.name].dtype, pd.CategoricalDtype):
            out[f.name] = tuple(sorted({str(v) for v in frame[f.name].dropna().unique()}))
    return out


def _matrix(
    frame: pd.DataFrame, names: Sequence[str], categories: dict[str, tuple[str, ...]]
) -> pd.DataFrame:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise UpliftError(
            f"rows lack the model's feature columns {missing[:5]}: compute features with the "
            "model's event types and categories (assignment_features(..., event_types="
            "model.event_types, categories=model.categories))"
        )
    cols: dict[str, Any] = {}
    for name in names:
        col = frame[name]
        if name in categories:
            values = col.astype(object).where(col.notna(), None)
            cols[name] = pd.Categorical(
                values.map(lambda v: None if v is None else str(v)),
                categories=list(categories[name]),
            )
        else:
            cols[name] = pd.to_numeric(col, errors="coerce").astype("float64").to_numpy()
    return pd.DataFrame(cols, index=frame.index)


def _train(
    X: pd.DataFrame, y: np.ndarray, objective: str, rounds: int, s: UpliftSettings
) -> lgb.Booster:
    params = {**s.lightgbm, "objective": objective}
    data = lgb.Dataset(X, y, feature_name=list(X.columns), free_raw_data=False)
    return lgb.train(params, data, num_boost_round=rounds)


def _binary_outcome(values: pd.Series, name: str) -> np.ndarray:
    y = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise UpliftError(
            f"{name}: {int(bad.sum())} row(s) without a 0/1 outcome; fit on assignments whose "
            "outcome window is complete (training_rows)"
        )
    return y


def fit(
    rows: pd.DataFrame,
    feats: Sequence[Feature],
    settings: UpliftSettings | None = None,
    *,
    outcome: str = "churn",
) -> UpliftModel:
    """Fit the meta-learner on past randomised campaigns.

    Parameters
    ----------
    rows : DataFrame
        One row per assignment with ``treated`` (bool), the 0/1 ``outcome`` column and the
        feature columns (:func:`training_rows`, then :func:`time_split`).
    feats : sequence of Feature
        The features to use (e.g. all that :func:`training_rows` returned).
    settings : UpliftSettings, optional
        Learner and LightGBM settings.
    outcome : str
        The 0/1 outcome column (``churn``: the effect is on churn).

    Returns
    -------
    UpliftModel

    Raises
    ------
    UpliftError
        If an arm has fewer than 20 rows, an outcome is missing or not 0/1, or an arm's outcomes
        are all the same.
    """
    s = settings or UpliftSettings()
    if s.method not in ("t", "x"):
        raise UpliftError(f"method must be 't' or 'x', got {s.method!r}")
    for col in ("treated", outcome):
        if col not in rows.columns:
            raise UpliftError(f"rows have no {col!r} column (use training_rows)")
    feats = tuple(feats)
    if not feats:
        raise UpliftError("no features to fit on")
    # Row order changes LightGBM's bagging: fix it by time and account, whatever the input.
    rows = rows.sort_values(
        [c for c in ("assigned_at", "campaign_id", "account_id") if c in rows.columns],
        kind="stable",
    )
    y = _binary_outcome(rows[outcome], outcome)
    w = rows["treated"].to_numpy(dtype=bool)
    for arm, mask in (("contacted", w), ("held-out", ~w)):
        if mask.sum() < 20:
            raise UpliftError(
                f"only {int(mask.sum())} {arm} rows: an uplift model needs at least 20 per arm; "
                "add earlier campaigns with holdouts"
            )
        if y[mask].min() == y[mask].max():
            raise UpliftError(
                f"every {arm} row has {outcome} = {y[mask][0]:g}: nothing to learn the effect from"
            )
    categories = _levels(rows, feats)
    names = [f.name for f in feats]
    X = _matrix(rows, names, categories)
    mu1 = _train(X[w], y[w], "binary", s.rounds, s)
    mu0 = _train(X[~w], y[~w], "binary", s.rounds, s)
    boosters = {"mu_treated": mu1, "mu_control": mu0}
    if s.method == "x":
        d1 = y[w] - _proba(mu0, X[w])
        d0 = _proba(mu1, X[~w]) - y[~w]
        boosters["tau_treated"] = _train(X[w], d1, "regression", s.effect_rounds, s)
        boosters["tau_control"] = _train(X[~w], d0, "regression", s.effect_rounds, s)
    info = {
        "method": s.method,
        "outcome": outcome,
        "rows_treated": int(w.sum()),
        "rows_control": int((~w).sum()),
        "rate_treated": float(y[w].mean()),
        "rate_control": float(y[~w].mean()),
        "campaigns": sorted(map(str, rows["campaign_id"].unique()))
        if "campaign_id" in rows.columns
        else [],
        "rounds": s.rounds,
        "effect_rounds": s.effect_rounds,
        "lightgbm": dict(s.lightgbm),
    }
    return UpliftModel(s.method, feats, categories, boosters, float(w.mean()), info)


def _proba(booster: lgb.Booster, X: pd.DataFrame) -> np.ndarray:
    return np.clip(np.asarray(booster.predict(X), dtype=float), _CLIP, 1 - _CLIP)


def predict_effect(model: UpliftModel, frame: pd.DataFrame) -> np.ndarray:
    """Each row's predicted effect of contact on churn: treated minus untreated probability.

    Parameters
    ----------
    model : UpliftModel
        A fitted model.
    frame : DataFrame
        Rows holding the model's feature columns (e.g. :func:`assignment_features` with the
        model's ``event_types`` and ``categories``, or a scoring frame built the same way).

    Returns
    -------
    ndarray of float
        Negative where contact lowers churn, positive where it raises it (harmful).
    """
    X = _matrix(frame, model.feature_names, model.categories)
    b = model.boosters
    if model.method == "t":
        return _proba(b["mu_treated"], X) - _proba(b["mu_control"], X)
    e = model.treated_share
    tau0 = np.asarray(b["tau_control"].predict(X), dtype=float)
    tau1 = np.asarray(b["tau_treated"].predict(X), dtype=float)
    return np.clip(e * tau0 + (1 - e) * tau1, -1.0, 1.0)


def predict_arms(model: UpliftModel, frame: pd.DataFrame) -> pd.DataFrame:
    """The two outcome classifiers' probabilities: ``p_treated`` and ``p_control`` per row."""
    X = _matrix(frame, model.feature_names, model.categories)
    return pd.DataFrame(
        {
            "p_treated": _proba(model.boosters["mu_treated"], X),
            "p_control": _proba(model.boosters["mu_control"], X),
        },
        index=frame.index,
    )


def save(model: UpliftModel, out: Path | str) -> Path:
    """Write a model to folder ``out``: one LightGBM text file per booster and ``uplift.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, booster in model.boosters.items():
        booster.save_model(str(out / f"{name}.txt"))
    meta = {
        "method": model.method,
        "features": [f.to_dict() for f in model.features],
        "categories": {k: list(v) for k, v in model.categories.items()},
        "boosters": sorted(model.boosters),
        "treated_share": model.treated_share,
        "info": model.info,
    }
    (out / "uplift.json").write_text(json.dumps(meta, indent=2, default=str))
    return out


def load(path: Path | str) -> UpliftModel:
    """Read a model written by :func:`save`.

    Raises
    ------
    UpliftError
        If the folder holds no uplift model.
    """
    path = Path(path)
    if not (path / "uplift.json").is_file():
        raise UpliftError(f"{path}: no uplift model here (uplift.json is missing)")
    meta = json.loads((path / "uplift.json").read_text())
    boosters = {n: lgb.Booster(model_file=str(path / f"{n}.txt")) for n in meta["boosters"]}
    return UpliftModel(
        meta["method"],
        tuple(Feature.from_dict(f) for f in meta["features"]),
        {k: tuple(v) for k, v in meta["categories"].items()},
        boosters,
        float(meta["treated_share"]),
        meta["info"],
    )


# ---------------------------------------------------------------------------------------------
# selection input


def uplift_value(effect: ArrayLike, arr: ArrayLike, cost: ArrayLike | float = 0.0) -> pd.DataFrame:
    """Expected value of contacting each account, from its predicted effect on churn.

    ``expected_saved_arr = -effect x arr`` (the ARR a contact is expected to keep) and
    ``expected_net_value = expected_saved_arr - cost``. ``harmful`` marks a predicted rise in
    churn (``effect > 0``); ``target`` is True only for accounts that are not harmful and whose
    net value is positive: the retention audience of ``score --target uplift`` chooses among
    those (by net value, within the budget).

    Parameters
    ----------
    effect : array-like of float
        Predicted effect on churn per account (:func:`predict_effect`).
    arr : array-like of float
        ARR per account (non-negative).
    cost : float or array-like of float
        Cost of one contact (per account or one for all; non-negative).

    Returns
    -------
    DataFrame
        Columns ``UPLIFT_VALUE_COLUMNS``, one row per account, in input order.

    Raises
    ------
    UpliftError
        On lengths that differ, missing or infinite values, negative ARR or cost, or effects
        outside [-1, 1].
    """
    e = np.asarray(effect, dtype=float)
    a = np.asarray(arr, dtype=float)
    c = np.broadcast_to(np.asarray(cost, dtype=float), e.shape).astype(float)
    if e.ndim != 1 or a.shape != e.shape:
        raise UpliftError(
            f"effect and arr must be one-dimensional and of the same length "
            f"(got {e.shape} and {a.shape})"
        )
    for name, v in (("effect", e), ("arr", a), ("cost", c)):
        if not np.isfinite(v).all():
            raise UpliftError(
                f"{name}: {int((~np.isfinite(v)).sum())} missing or infinite value(s)"
            )
    if (a < 0).any() or (c < 0).any():
        raise UpliftError("arr and cost must not be negative")
    if (np.abs(e) > 1).any():
        raise UpliftError("effects are differences of probabilities: they must lie in [-1, 1]")
    saved = -e * a
    net = saved - c
    harmful = e > 0
    return pd.DataFrame(
        {
            "effect": e,
            "arr": a,
            "cost": c,
            "expected_saved_arr": saved,
            "expected_net_value": net,
            "harmful": harmful,
            "target": ~harmful & (net > 0),
        }
    )

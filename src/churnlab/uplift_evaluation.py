"""How well an uplift model targets a later campaign: Qini, AUUC and the share of the oracle.

:func:`evaluate` scores rankings of a campaign the model was not fitted on (:func:`churnlab.uplift.
time_split`): the model's predicted effect against targeting by churn risk (and, on the synthetic
world, by the true effects: the oracle), on the realised outcomes (the Qini coefficient of
:mod:`churnlab.uplift_curves` and the AUUC of :func:`cumulative_gain`) and, when the true effects
are known, by the share of the oracle's expected gain the ranking gets (:func:`true_gain`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from churnlab import uplift_curves
from churnlab.uplift import UpliftError, UpliftModel, _binary_outcome, predict_effect

TARGETINGS: tuple[str, ...] = ("model", "churn_risk", "oracle", "random")
"""Rankings :func:`evaluate` compares."""


@dataclass(frozen=True)
class UpliftEvaluation:
    """How well rankings target a campaign's effect (see :func:`evaluate`).

    Attributes
    ----------
    summary : DataFrame
        One row per targeting in ``TARGETINGS`` that could be scored: ``targeting``,
        ``qini_coefficient``, ``qini_area``, ``auuc`` (realised outcomes), and with the true
        effects ``true_gain_area`` and ``share_of_oracle``.
    curves : DataFrame
        Qini curve points per targeting (``targeting`` then the columns of
        :func:`churnlab.uplift_curves.qini_curve`).
    rows : DataFrame
        The evaluation rows: ``account_id``, ``campaign_id``, ``treated``, ``churn``,
        ``effect`` (predicted), ``churn_risk`` and ``true_effect`` when given.
    """

    summary: pd.DataFrame
    curves: pd.DataFrame
    rows: pd.DataFrame


def cumulative_gain(score: ArrayLike, treated: ArrayLike, outcome: ArrayLike) -> pd.DataFrame:
    """Uplift (cumulative gain) curve: ``(Y_t(n) / N_t(n) - Y_c(n) / N_c(n)) x n``.

    The observed difference in outcome rates among the top ``n`` accounts by descending score,
    scaled to ``n`` accounts (0 while either arm is empty among them); ties enter together,
    as in :func:`churnlab.uplift_curves.qini_curve`, whose ``n``, ``fraction`` and group columns
    it shares. ``random`` is the straight line to the last point.

    Parameters
    ----------
    score, treated, outcome : array-like
        As for :func:`churnlab.uplift_curves.qini_curve`.

    Returns
    -------
    DataFrame
        ``n``, ``fraction``, ``gain``, ``random``.
    """
    q = uplift_curves.qini_curve(score, treated, outcome)
    nt, nc = q["n_treated"].to_numpy(float), q["n_control"].to_numpy(float)
    ok = (nt > 0) & (nc > 0)
    rate_t = np.divide(q["outcome_treated"], nt, out=np.zeros(len(q)), where=ok)
    rate_c = np.divide(q["outcome_control"], nc, out=np.zeros(len(q)), where=ok)
    gain = np.where(ok, (rate_t - rate_c) * q["n"].to_numpy(float), 0.0)
    frame = pd.DataFrame({"n": q["n"], "fraction": q["fraction"], "gain": gain})
    frame["random"] = frame["fraction"] * frame["gain"].iloc[-1]
    return frame


def _area(x: np.ndarray, gap: np.ndarray) -> float:
    return float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(x)))


def auuc(score: ArrayLike, treated: ArrayLike, outcome: ArrayLike) -> float:
    """Area between the cumulative gain curve and its random line, per account in the audience.

    Trapezoids over the fraction targeted, divided by the audience size: extra responses per
    account, averaged over every targeting depth, beyond random targeting (0 for random, higher
    is better).
    """
    c = cumulative_gain(score, treated, outcome)
    n = float(c["n"].iloc[-1])
    return _area(c["fraction"].to_numpy(), (c["gain"] - c["random"]).to_numpy()) / n


def true_gain(score: ArrayLike, saved_effect: ArrayLike) -> pd.DataFrame:
    """Expected extra responses from contacting the top share by score, from the true effects.

    Parameters
    ----------
    score : array-like of float
        Higher = contacted first (ties enter together).
    saved_effect : array-like of float
        Each account's true effect on the response (for churn, ``-true_effect_churn``).

    Returns
    -------
    DataFrame
        ``n``, ``fraction``, ``gain`` (sum of the true effects of the top ``n``), ``random``.
    """
    s = np.asarray(score, dtype=float)
    v = np.asarray(saved_effect, dtype=float)
    if len(s) != len(v) or len(s) == 0:
        raise UpliftError("score and saved_effect must be non-empty and of the same length")
    order = np.argsort(s, kind="mergesort")[::-1]
    s, v = s[order], v[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    n = np.r_[0, last + 1]
    gain = np.r_[0.0, np.cumsum(v)[last]]
    frame = pd.DataFrame({"n": n, "fraction": n / len(s), "gain": gain})
    frame["random"] = frame["fraction"] * frame["gain"].iloc[-1]
    return frame


def _true_area(score: np.ndarray, saved_effect: np.ndarray) -> float:
    c = true_gain(score, saved_effect)
    return _area(c["fraction"].to_numpy(), (c["gain"] - c["random"]).to_numpy())


def evaluate(
    model: UpliftModel,
    rows: pd.DataFrame,
    *,
    churn_risk: ArrayLike | None = None,
    true_effect: ArrayLike | None = None,
    outcome: str = "churn",
) -> UpliftEvaluation:
    """Score rankings of a later campaign by how well they find the accounts it saves.

    Every ranking targets the accounts it expects to save first: the model by its predicted
    effect (most negative first), churn risk by descending probability, the oracle by the true
    effect; ``random`` is the Qini curve's random line (coefficient 0). On the evaluation rows'
    realised outcomes (``saved = 1 - churn``): the Qini coefficient
    (:func:`churnlab.uplift_curves.qini_auc`), the raw Qini area and the AUUC (:func:`auuc`).
    With the true effects: ``true_gain_area``, the area between the expected-saved curve
    (:func:`true_gain`) and random, and ``share_of_oracle``, that area over the oracle's.

    Parameters
    ----------
    model : UpliftModel
        Fitted on earlier campaigns (:func:`churnlab.uplift.time_split`).
    rows : DataFrame
        The evaluation campaign's rows (``treated``, ``outcome``, the features).
    churn_risk : array-like, optional
        A churn probability per row at assignment (a churn model's, or the synthetic oracle's
        untreated ``p_churn``).
    true_effect : array-like, optional
        The true effect on churn per row (synthetic world only).
    outcome : str
        The 0/1 churn column.

    Returns
    -------
    UpliftEvaluation
    """
    y = _binary_outcome(rows[outcome], outcome)
    w = rows["treated"].to_numpy(dtype=float)
    effect = predict_effect(model, rows)
    saved = 1 - y
    keep = ["account_id", "campaign_id"]
    out = rows[[c for c in keep if c in rows.columns]].copy()
    out["treated"] = w.astype(bool)
    out[outcome] = y
    out["effect"] = effect
    scores: dict[str, np.ndarray] = {"model": -effect}
    if churn_risk is not None:
        risk = np.asarray(churn_risk, dtype=float)
        if len(risk) != len(rows):
            raise UpliftError("churn_risk must have one value per row")
        out["churn_risk"] = risk
        scores["churn_risk"] = risk
    truth = None
    if true_effect is not None:
        truth = np.asarray(true_effect, dtype=float)
        if len(truth) != len(rows):
            raise UpliftError("true_effect must have one value per row")
        out["true_effect"] = truth
        scores["oracle"] = -truth
    summary, curves = [], []
    oracle_area = _true_area(-truth, -truth) if truth is not None else np.nan
    for name, score in scores.items():
        row: dict[str, Any] = {
            "targeting": name,
            "qini_coefficient": uplift_curves.qini_auc(score, w, saved),
            "qini_area": uplift_curves.qini_auc(score, w, saved, normalize=False),
            "auuc": auuc(score, w, saved),
        }
        if truth is not None:
            row["true_gain_area"] = _true_area(score, -truth)
            row["share_of_oracle"] = row["true_gain_area"] / oracle_area
        summary.append(row)
        curves.append(uplift_curves.qini_curve(score, w, saved).assign(targeting=name))
    summary.append(
        {"targeting": "random", "qini_coefficient": 0.0, "qini_area": 0.0, "auuc": 0.0}
        | ({"true_gain_area": 0.0, "share_of_oracle": 0.0} if truth is not None else {})
    )
    frame = pd.concat(curves, ignore_index=True)
    frame = frame[["targeting", *[c for c in frame.columns if c != "targeting"]]]
    return UpliftEvaluation(pd.DataFrame(summary), frame, out.reset_index(drop=True))

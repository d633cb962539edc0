"""Uplift curves of a ranking on a randomised campaign: Qini curve and coefficient, uplift by band.

Pure statistics on the outcomes of a campaign's contacted and held-out accounts (the conventions of
:mod:`churnlab.effects`: differences are treated minus control, missing outcomes are an error).
The outcome is the response the campaign should *raise*, so that higher is better: pass
``saved = 1 - churned`` for retention campaigns and ``expanded`` for upsell ones; the score ranks
accounts by predicted uplift in that outcome (target the highest first). A model that predicts
the change in churn probability therefore scores with its negative.

References
----------
Radcliffe, N. J. (2007). Using control groups to target on predicted lift: building and assessing
uplift models. Direct Marketing Analytics Journal 1, 14-21.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from churnlab.effects import (
    EffectsError,
    _binary,
    _values,
    difference_in_means,
    difference_in_rates,
)


def _uplift_inputs(
    score: ArrayLike, treated: ArrayLike, outcome: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = _values(score, "score")
    w = _binary(treated, "treated")
    y = _values(outcome, "outcome")
    if not len(s) == len(w) == len(y):
        raise EffectsError(
            f"score, treated and outcome must have the same length (got {len(s)}, {len(w)}, "
            f"{len(y)})"
        )
    if w.sum() == 0 or w.sum() == len(w):
        raise EffectsError(
            "treated must hold both contacted (1) and held-out (0) accounts: an uplift curve "
            "compares the two"
        )
    return s, w, y


def qini_curve(score: ArrayLike, treated: ArrayLike, outcome: ArrayLike) -> pd.DataFrame:
    """Qini curve of an uplift score (Radcliffe 2007).

    Accounts are ranked by descending score; tied scores enter together (the curve has one point
    per distinct score, plus the origin). After the top ``n`` accounts,
    ``qini(n) = Y_t(n) - Y_c(n) * N_t(n) / N_c(n)``: the outcomes of the treated among them minus
    those of the held-out among them scaled to as many accounts, i.e. the extra outcomes the
    campaign produced in the targeted part if the control's rate held there (0 while ``N_c`` is
    0). This is scikit-uplift's ``qini_curve`` and causalml's ``get_qini`` (without ties
    causalml gives the same values row by row). ``random`` is the straight line from the origin
    to the last point, what targeting at random gives on average.

    Parameters
    ----------
    score : array-like of float
        Predicted uplift in ``outcome``; higher means target first.
    treated : array-like of 0/1 or bool
        1 for contacted accounts, 0 for the holdout.
    outcome : array-like of float
        The response the campaign should raise (higher is better): ``1 - churned`` ("saved")
        for retention, ``expanded`` for upsell; any numbers (e.g. value) are allowed.

    Returns
    -------
    DataFrame
        One row per point: ``n`` (accounts targeted), ``fraction`` (``n / N``), ``n_treated``,
        ``n_control``, ``outcome_treated``, ``outcome_control`` (sums), ``qini``, ``random``.
    """
    s, w, y = _uplift_inputs(score, treated, outcome)
    order = np.argsort(s, kind="mergesort")[::-1]
    s, w, y = s[order], w[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last row of each run of tied scores
    n_treated = np.cumsum(w)[last]
    n = last + 1
    n_control = n - n_treated
    y_t = np.cumsum(y * w)[last]
    y_c = np.cumsum(y * (1 - w))[last]
    scale = np.divide(n_treated, n_control, out=np.zeros(len(n)), where=n_control > 0)
    qini = y_t - y_c * scale
    total = len(s)
    frame = pd.DataFrame(
        {
            "n": np.r_[0, n].astype(np.int64),
            "n_treated": np.r_[0, n_treated].astype(np.int64),
            "n_control": np.r_[0, n_control].astype(np.int64),
            "outcome_treated": np.r_[0.0, y_t],
            "outcome_control": np.r_[0.0, y_c],
            "qini": np.r_[0.0, qini],
        }
    )
    frame.insert(1, "fraction", frame["n"] / total)
    frame["random"] = frame["fraction"] * frame["qini"].iloc[-1]
    return frame


def _area_above_random(curve: pd.DataFrame) -> float:
    x = curve["fraction"].to_numpy()
    gap = (curve["qini"] - curve["random"]).to_numpy()
    return float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(x)))


def qini_auc(
    score: ArrayLike, treated: ArrayLike, outcome: ArrayLike, *, normalize: bool = True
) -> float:
    """Area between the Qini curve and the random line, normalised by the perfect model's.

    With ``normalize=True`` (default) this is the Qini coefficient as scikit-uplift's
    ``qini_auc_score(y, score, treated, negative_effect=True)`` computes it: 1 for the perfect
    ranking, about 0 for a random one, negative for one worse than random. The perfect ranking
    is the one that knows the outcomes (Radcliffe 2007): treated accounts with outcome 1 first,
    then every account with outcome 0, then held-out accounts with outcome 1, i.e. the score
    ``outcome * treated - outcome * (1 - treated)``. Areas are trapezoids over the fraction of the
    audience targeted.

    Parameters
    ----------
    score, treated, outcome : array-like
        As for :func:`qini_curve`.
    normalize : bool
        False returns the raw area between the curve and the random line (outcome units, over a
        fraction of the audience from 0 to 1), which also suits non-binary outcomes.

    Returns
    -------
    float

    Raises
    ------
    EffectsError
        If ``normalize`` is set and the outcome is not 0/1, or the perfect ranking is no better
        than random (e.g. every outcome is the same).
    """
    area = _area_above_random(qini_curve(score, treated, outcome))
    if not normalize:
        return area
    y = _binary(outcome, "outcome (normalize=True needs 0/1 outcomes)")
    w = _binary(treated, "treated")
    perfect = _area_above_random(qini_curve(y * w - y * (1 - w), w, y))
    if perfect <= 0:
        raise EffectsError(
            "the perfect ranking is no better than random here (every outcome the same?): the "
            "Qini coefficient is undefined; use normalize=False"
        )
    return area / perfect


def uplift_by_decile(
    score: ArrayLike,
    treated: ArrayLike,
    outcome: ArrayLike,
    *,
    bins: int = 10,
    level: float = 0.95,
) -> pd.DataFrame:
    """Observed uplift per score band: treated minus control outcome, band by band.

    Accounts are sorted by descending score (ties kept in reverse input order, as
    ``np.argsort(score, kind="mergesort")[::-1]`` leaves them; scikit-uplift's
    ``uplift_by_percentile`` with ``strategy="overall"`` sorts the same way) and split into
    ``bins`` bands of equal size (sizes differ by at most one, the larger ones first). Band 1
    holds the highest scores. A good uplift score shows uplift falling from band 1 down.

    Parameters
    ----------
    score, treated, outcome : array-like
        As for :func:`qini_curve`; with 0/1 outcomes the rates get Newcombe intervals
        (:func:`churnlab.effects.difference_in_rates`), otherwise Welch intervals
        (:func:`churnlab.effects.difference_in_means`).
    bins : int
        Number of bands (10: deciles).
    level : float
        Confidence level of the per-band intervals.

    Returns
    -------
    DataFrame
        One row per band: ``band`` (1 = highest scores), ``score_min``, ``score_max``,
        ``n_treated``, ``n_control``, ``mean_treated``, ``mean_control`` (rates for 0/1
        outcomes), ``uplift`` (treated minus control), ``ci_low``, ``ci_high`` (NaN when a group
        of the band is too small for an interval).
    """
    s, w, y = _uplift_inputs(score, treated, outcome)
    if not isinstance(bins, int) or bins < 1 or bins > len(s):
        raise EffectsError(f"bins must be a whole number from 1 to {len(s)} (accounts), got {bins}")
    binary = bool(np.all((y == 0) | (y == 1)))
    order = np.argsort(s, kind="mergesort")[::-1]
    rows = []
    for band, idx in enumerate(np.array_split(order, bins), start=1):
        yt, yc = y[idx][w[idx] == 1], y[idx][w[idx] == 0]
        mean_t = float(yt.mean()) if len(yt) else float("nan")
        mean_c = float(yc.mean()) if len(yc) else float("nan")
        low = high = float("nan")
        if binary and len(yt) and len(yc):
            r = difference_in_rates(yt, yc, level=level)
            low, high = r.ci_low, r.ci_high
        elif not binary and len(yt) >= 2 and len(yc) >= 2:
            m = difference_in_means(yt, yc, level=level)
            low, high = m.ci_low, m.ci_high
        rows.append(
            {
                "band": band,
                "score_min": float(s[idx].min()),
                "score_max": float(s[idx].max()),
                "n_treated": len(yt),
                "n_control": len(yc),
                "mean_treated": mean_t,
                "mean_control": mean_c,
                "uplift": mean_t - mean_c,
                "ci_low": low,
                "ci_high": high,
            }
        )
    return pd.DataFrame(rows)

"""Calibration: map a booster's log-odds to probabilities that mean what they say.

Probabilities are calibrated on the validation cutoff with isotonic regression or Platt scaling
(a one-feature logistic regression on the log-odds), chosen by cross-fitted log loss so that the
choice does not reward isotonic regression for memorising the rows. LightGBM's is_unbalance and
scale_pos_weight are never used for this: they distort probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

PROB_CLIP = 1e-4
"""Calibrated probabilities are clipped to [PROB_CLIP, 1 - PROB_CLIP] so log loss stays finite."""


@dataclass
class OffsetPlatt:
    """Scaling around a fixed offset: ``p = sigmoid(offset + a * (margin - offset))``.

    A season-aware model's margin is the calendar month's offset (its base rate at training
    cutoffs) plus the booster's output. Its validation rows come from one cutoff, whose level
    is one draw of one month: a free intercept would carry that cutoff's luck to every month
    (on a planted world a 3-standard-error dip at the validation cutoff cut every month's
    prediction by a fifth). So only the booster's confidence ``a`` is fitted; the level is the
    month's, and training keeps the plain model when the validation cutoff clearly disagrees.
    """

    a: float

    def probability(self, margin: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """Calibrated probabilities before clipping."""
        z = offset + self.a * (margin - offset)
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=float)


@dataclass
class Calibrator:
    """Maps booster log-odds to calibrated probabilities (isotonic, Platt, Platt with offset)."""

    method: str
    model: IsotonicRegression | LogisticRegression | OffsetPlatt

    def predict(self, margin: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probabilities, clipped to [1e-4, 1 - 1e-4] so log loss stays finite.

        ``offset`` is each row's part of ``margin`` that is not the booster's (season offsets);
        only Platt scaling around an offset reads it.
        """
        margin = np.asarray(margin, dtype=float)
        if isinstance(self.model, IsotonicRegression):
            p = self.model.predict(margin)
        elif isinstance(self.model, OffsetPlatt):
            off = np.zeros_like(margin) if offset is None else np.asarray(offset, dtype=float)
            p = self.model.probability(margin, np.broadcast_to(off, margin.shape))
        else:
            p = self.model.predict_proba(margin.reshape(-1, 1))[:, 1]
        return np.clip(np.asarray(p, dtype=float), PROB_CLIP, 1 - PROB_CLIP)


def fit_offset_platt(margin: np.ndarray, offset: np.ndarray, y: np.ndarray) -> Calibrator:
    """Maximum-likelihood :class:`OffsetPlatt` (the booster's confidence ``a``)."""
    raw = np.asarray(margin, dtype=float) - np.asarray(offset, dtype=float)
    off = np.asarray(offset, dtype=float)
    y = np.asarray(y, dtype=float)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = off + theta[0] * raw
        # log(1 + e^z) - y z, and its derivative (sigmoid(z) - y) * raw.
        value = float(np.sum(np.logaddexp(0.0, z) - y * z))
        return value, np.array([float((1.0 / (1.0 + np.exp(-z)) - y) @ raw)])

    res = minimize(loss, np.array([1.0]), jac=True, method="L-BFGS-B", bounds=[(0.0, None)])
    return Calibrator("sigmoid", OffsetPlatt(float(res.x[0])))


def _fit_method(method: str, margin: np.ndarray, y: np.ndarray) -> Calibrator:
    model: IsotonicRegression | LogisticRegression
    if method == "isotonic":
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        model.fit(margin, y)
    else:
        # Platt scaling: a one-feature logistic regression on the log-odds, barely regularised.
        model = LogisticRegression(C=1e4, max_iter=1000)
        model.fit(margin.reshape(-1, 1), y)
    return Calibrator(method, model)


def fit_calibrator(
    margin: np.ndarray, y: np.ndarray, method: str = "auto", *, folds: int = 5, seed: int = 0
) -> tuple[Calibrator, dict[str, Any]]:
    """Fit a calibrator on validation rows, choosing isotonic vs Platt by cross-fitted log loss.

    Each method is scored on validation rows it was not fitted on (stratified ``folds``-fold
    cross-fitting), so the choice does not reward isotonic regression for memorising the rows;
    the chosen method is then refitted on all validation rows.

    Parameters
    ----------
    margin : ndarray
        Booster log-odds on the validation rows.
    y : ndarray
        Validation labels (0/1).
    method : {"auto", "isotonic", "sigmoid"}
        "auto" picks the lower cross-fitted log loss.

    Returns
    -------
    (Calibrator, dict)
        The fitted calibrator and ``calibration.*`` facts to log (method, cross-fitted log loss
        of each method and of the uncalibrated booster).
    """
    margin = np.asarray(margin, dtype=float)
    y = np.asarray(y, dtype=float)
    minority = int(min(y.sum(), len(y) - y.sum()))
    k = max(2, min(folds, minority))
    info: dict[str, Any] = {
        "calibration.cv_log_loss_uncalibrated": float(
            log_loss(y, np.clip(1 / (1 + np.exp(-margin)), PROB_CLIP, 1 - PROB_CLIP))
        )
    }
    scores = {}
    for m in ("isotonic", "sigmoid"):
        oof = cross_fitted(margin, y, m, folds=k, seed=seed)
        scores[m] = float(log_loss(y, oof, labels=[0, 1]))
        info[f"calibration.cv_log_loss_{m}"] = scores[m]
    chosen = min(scores, key=lambda m: scores[m]) if method == "auto" else method
    info["calibration.method"] = chosen
    info["calibration.choice"] = "auto" if method == "auto" else "fixed in params"
    return _fit_method(chosen, margin, y), info


def cross_fitted(
    margin: np.ndarray,
    y: np.ndarray,
    method: str,
    *,
    folds: int = 5,
    seed: int = 0,
    offset: np.ndarray | None = None,
) -> np.ndarray:
    """Calibrated probabilities of each row from a calibrator fitted on the other folds.

    ``folds`` is capped by the minority class count (at least 2), as in :func:`fit_calibrator`.
    With ``offset`` the calibrator is Platt scaling around it (:func:`fit_offset_platt`).
    """
    margin = np.asarray(margin, dtype=float)
    y = np.asarray(y, dtype=float)
    minority = int(min(y.sum(), len(y) - y.sum()))
    k = max(2, min(folds, minority))
    oof = np.empty_like(y)
    for fit_idx, hold_idx in StratifiedKFold(k, shuffle=True, random_state=seed).split(margin, y):
        if offset is None:
            cal = _fit_method(method, margin[fit_idx], y[fit_idx])
            oof[hold_idx] = cal.predict(margin[hold_idx])
        else:
            cal = fit_offset_platt(margin[fit_idx], offset[fit_idx], y[fit_idx])
            oof[hold_idx] = cal.predict(margin[hold_idx], offset[hold_idx])
    return oof


def platt_log_loss(
    margin: np.ndarray, y: np.ndarray, offset: np.ndarray | None = None, *, steps: int = 30
) -> float:
    """Mean log loss after Platt scaling fitted on the same rows: the ranking's log loss.

    Without ``offset``: ``sigmoid(a * margin + b)``, as the Platt calibrator. With it: scaling
    around the offset, ``sigmoid(offset + a * (margin - offset))``, as :class:`OffsetPlatt`.
    Early stopping reads this instead of the raw log loss (:func:`churnlab.fitting.fit_booster`):
    the booster is calibrated on these rows afterwards, so a level that differs between the
    training cutoffs and the validation cutoff (a season, a cohort growing older) must not
    stop the trees while they still rank better. Damped Newton steps from ``a = 1, b = 0``.
    """
    z = np.asarray(margin, dtype=float)
    y = np.asarray(y, dtype=float)
    off = np.zeros_like(z) if offset is None else np.asarray(offset, dtype=float)
    raw = z - off
    cols = [raw] if offset is not None else [raw, np.ones_like(raw)]
    X = np.column_stack(cols)
    theta = np.zeros(X.shape[1])
    theta[0] = 1.0

    def loss(t: np.ndarray) -> float:
        s = off + X @ t
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    value = loss(theta)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(off + X @ theta)))
        grad = X.T @ (p - y) / len(y)
        hess = (X * (p * (1 - p))[:, None]).T @ X / len(y) + 1e-9 * np.eye(X.shape[1])
        step = np.linalg.solve(hess, grad)
        for _ in range(20):  # halve the step until the loss does not rise
            new = loss(theta - step)
            if new <= value:
                break
            step = step / 2
        else:
            break
        converged = value - new < 1e-12
        theta, value = theta - step, new
        if converged:
            break
    return value


def row_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Each row's log loss (probabilities clipped as the calibrators clip them)."""
    p = np.clip(np.asarray(p, dtype=float), PROB_CLIP, 1 - PROB_CLIP)
    y = np.asarray(y, dtype=float)
    return np.asarray(-(y * np.log(p) + (1 - y) * np.log(1 - p)), dtype=float)

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
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

PROB_CLIP = 1e-4
"""Calibrated probabilities are clipped to [PROB_CLIP, 1 - PROB_CLIP] so log loss stays finite."""


@dataclass
class Calibrator:
    """Maps booster log-odds to calibrated probabilities (isotonic or Platt)."""

    method: str
    model: IsotonicRegression | LogisticRegression

    def predict(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, clipped to [1e-4, 1 - 1e-4] so log loss stays finite."""
        margin = np.asarray(margin, dtype=float)
        if isinstance(self.model, IsotonicRegression):
            p = self.model.predict(margin)
        else:
            p = self.model.predict_proba(margin.reshape(-1, 1))[:, 1]
        return np.clip(np.asarray(p, dtype=float), PROB_CLIP, 1 - PROB_CLIP)


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
        oof = np.empty_like(y)
        for fit_idx, hold_idx in StratifiedKFold(k, shuffle=True, random_state=seed).split(
            margin, y
        ):
            oof[hold_idx] = _fit_method(m, margin[fit_idx], y[fit_idx]).predict(margin[hold_idx])
        scores[m] = float(log_loss(y, oof, labels=[0, 1]))
        info[f"calibration.cv_log_loss_{m}"] = scores[m]
    chosen = min(scores, key=lambda m: scores[m]) if method == "auto" else method
    info["calibration.method"] = chosen
    info["calibration.choice"] = "auto" if method == "auto" else "fixed in params"
    return _fit_method(chosen, margin, y), info

"""Baselines scored on the same test rows as the model: a logistic regression and a heuristic.

The logistic regression uses the same features (median-imputed with missing flags, a signed
log1p so that a few large spenders do not set the scale, standardised, and one-hot
categoricals). The recency/activity heuristic ranks accounts by how long they have been
inactive and how little they did recently, the rule of thumb a team uses without a model; it
chooses its two features by their typed manifest fields (:data:`churnlab.manifest.RECENCY_MEASURES`,
:data:`churnlab.manifest.ACTIVITY_MEASURES` and the window), never by parsing column names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from churnlab import btyd, btyd_population
from churnlab.calibration import Calibrator, fit_calibrator, fit_offset_platt
from churnlab.manifest import ACTIVITY_MEASURES, RECENCY_MEASURES, Feature, Manifest


def fit_logreg_baseline(X: pd.DataFrame, y: np.ndarray, categorical: list[str]) -> Pipeline:
    """Logistic regression on the same features as the model.

    Numerics are median-imputed (with missing flags), put on a signed log scale
    (``sign(x) * log1p(|x|)``: counts and amounts are heavy-tailed, and a linear model on their
    raw values is ruled by its largest accounts; on Online Retail II this lifted the baseline's
    expansion ROC-AUC from 0.55 to 0.63) and standardised; categoricals are one-hot encoded with
    missing as its own level.
    """
    numeric = [c for c in X.columns if c not in categorical]
    transformers: list[tuple[str, Any, list[str]]] = [
        (
            "num",
            make_pipeline(
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                FunctionTransformer(_signed_log1p),
                StandardScaler(),
            ),
            numeric,
        )
    ]
    if categorical:
        transformers.append(("cat", OneHotEncoder(handle_unknown="ignore"), categorical))
    pipe = Pipeline(
        [
            ("prep", ColumnTransformer(transformers)),
            ("model", LogisticRegression(C=1.0, max_iter=2000)),
        ]
    )
    pipe.fit(_logreg_input(X, categorical), y)
    return pipe


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _logreg_input(X: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    out = X.copy()
    for c in categorical:
        out[c] = X[c].astype(object).where(X[c].notna(), "(missing)").astype(str).to_numpy(object)
    return out


def logreg_scores(
    pipe: Pipeline, X: pd.DataFrame, categorical: list[str], calibrator: Calibrator | None = None
) -> np.ndarray:
    """Baseline logistic regression probabilities (calibrated when a calibrator is given)."""
    if calibrator is not None:
        return calibrator.predict(logreg_margin(pipe, X, categorical))
    return np.asarray(pipe.predict_proba(_logreg_input(X, categorical))[:, 1], dtype=float)


def logreg_margin(pipe: Pipeline, X: pd.DataFrame, categorical: list[str]) -> np.ndarray:
    """The logistic regression's log-odds."""
    return np.asarray(pipe.decision_function(_logreg_input(X, categorical)), dtype=float)


def calibrate_logreg(
    pipe: Pipeline,
    X_valid: pd.DataFrame,
    y_valid: np.ndarray,
    categorical: list[str],
    method: str = "auto",
    seed: int = 0,
) -> Calibrator:
    """Calibrate the logistic regression on the validation cutoff exactly as the model is.

    A fair comparison of log loss and calibration error needs both calibrated the same way: an
    L2-regularised regression fitted on other cutoffs is as miscalibrated on a new season as a
    booster is.
    """
    calibrator, _ = fit_calibrator(logreg_margin(pipe, X_valid, categorical), y_valid, method,
                                   seed=seed)  # fmt: skip
    return calibrator


def logreg_test_scores(
    pipe: Pipeline,
    X: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    y: tuple[np.ndarray, np.ndarray],
    categorical: list[str],
    method: str = "auto",
    seed: int = 0,
    offsets: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    refit: Pipeline | None = None,
) -> tuple[np.ndarray, str]:
    """Calibrated test probabilities of the logistic regression, and how it was calibrated.

    The baseline is calibrated on the validation cutoff as the model is (:func:`calibrate_logreg`).
    When the model starts from each calendar month's base rate (``offsets`` given), comparing it
    with a baseline calibrated to the validation cutoff's single month would measure the season,
    not the model, so the baseline gets the same treatment: its log-odds, shifted by the
    constant that fits the training rows best as a deviation from each row's month offset
    (as a booster started from those offsets learns one), are added to the offset and
    Platt-scaled around it (:func:`~churnlab.calibration.fit_offset_platt`). The validation
    cutoff cannot choose between the two for it: all its rows share one month, so the plain
    calibration, free to fit that month's level, always wins there (the model's own choice
    compares two boosters).

    Parameters
    ----------
    pipe : Pipeline
        The fitted :func:`fit_logreg_baseline`.
    X : tuple of DataFrame
        Training, validation and test feature matrices.
    y : tuple of ndarray
        Training and validation labels.
    categorical : list of str
        Categorical columns.
    method : str
        ``train.calibration`` (auto, isotonic or sigmoid) for the plain calibration.
    seed : int
        Cross-fitting folds' seed.
    offsets : tuple of ndarray, optional
        The training, validation and test rows' season offsets (log-odds) of a season-aware
        model.
    refit : Pipeline, optional
        The same regression fitted on the training and validation rows (``train.refit``, as the
        model is): it scores the test rows through the calibration fitted with ``pipe`` on the
        held-out validation rows.

    Returns
    -------
    tuple
        Test probabilities, and ``"plain"`` or ``"season"``.
    """
    margins = [logreg_margin(pipe, x, categorical) for x in X]
    y_train, y_valid = y
    test_margin = margins[2] if refit is None else logreg_margin(refit, X[2], categorical)
    if offsets is None:
        plain = calibrate_logreg(pipe, X[1], y_valid, categorical, method, seed)
        return plain.predict(test_margin), "plain"
    shift = _level_shift(margins[0], offsets[0], y_train)
    test_shift = shift
    if refit is not None:  # its own level against the offsets of the rows it was fitted on
        test_shift = _level_shift(
            np.concatenate([logreg_margin(refit, x, categorical) for x in X[:2]]),
            np.concatenate(offsets[:2]), np.concatenate([y_train, y_valid]),
        )  # fmt: skip
    m_valid, m_test = offsets[1] + margins[1] - shift, offsets[2] + test_margin - test_shift
    seasonal = fit_offset_platt(m_valid, offsets[1], y_valid)
    return seasonal.predict(m_test, offsets[2]), "season"


def _level_shift(margin: np.ndarray, offset: np.ndarray, y: np.ndarray) -> float:
    """The constant ``c`` for which ``sigmoid(offset + margin - c)`` fits ``y`` best.

    Maximum likelihood on the training rows: the baseline's log-odds become a deviation from
    each row's month offset, as a booster started from those offsets learns one. The score
    ``sum(y - sigmoid(offset + margin - c))`` rises with ``c``, so its root is bracketed and
    found by Brent's method. Plain Newton steps overshoot when the start is far off (offset and
    margin both near the base rate's log-odds double it: p = 0.01 against 10% positives), and
    diverged to c = 9e15 on a subscriptions-only world, which made every calibrated baseline
    probability equal and its ROC-AUC 0.500.
    """
    z = np.asarray(offset, dtype=float) + np.asarray(margin, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(y) == 0 or y.min() == y.max():  # no finite maximum: keep the log-odds as they are
        return 0.0

    def score(c: float) -> float:
        return float(np.sum(y - expit(z - c)))

    return float(brentq(score, float(z.min()) - 40.0, float(z.max()) + 40.0, xtol=1e-12))


def heuristic_features(features: Sequence[Feature]) -> dict[str, str | None]:
    """Pick the recency and activity features of the heuristic baseline.

    Recency: the first feature measuring the days since the last activity, product events
    preferred over orders (:data:`~churnlab.manifest.RECENCY_MEASURES`). Activity: the count of
    all product events (else of orders; :data:`~churnlab.manifest.ACTIVITY_MEASURES`, not a
    per-event-type count) over the window closest to 30 days: recent, but less noisy than a week.
    Either is None when the data has no such feature.
    """
    numeric = [f for f in features if f.dtype != "category"]
    recency = next((f.name for m in RECENCY_MEASURES for f in numeric if f.measure == m), None)
    activity = None
    for m in ACTIVITY_MEASURES:
        cands = [
            f for f in numeric if f.measure == m and f.event_type is None and f.window is not None
        ]
        if cands:
            activity = min(cands, key=lambda f: abs((f.window or 0) - 30)).name
            break
    return {"recency": recency, "activity": activity}


def heuristic_scores(
    X: pd.DataFrame, task: str, chosen: dict[str, str | None], *, reverse: bool = False
) -> np.ndarray:
    """Recency/activity heuristic: the mean of two percentile ranks.

    Churn risk ranks long inactivity (missing recency = never active = most inactive) and low
    recent activity highest; expansion ranks the reverse (recent, heavy users first). With
    ``reverse`` the ranking is turned round (see :func:`heuristic_direction`).
    """
    s = _heuristic(X, task, chosen)
    return 1.0 - s if reverse else s


def heuristic_direction(
    X_valid: pd.DataFrame, y_valid: np.ndarray, task: str, chosen: dict[str, str | None]
) -> bool:
    """Whether the heuristic ranks the validation cutoff better turned round (True) or as designed.

    On purchase data, spend that grows in the next window (the expansion label) comes more often
    from accounts that bought little recently (regression to the mean) than from the heaviest
    buyers, so the designed direction ranks below random; the direction is chosen on the
    validation cutoff, never on the test rows.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_valid, dtype=float)
    if len(np.unique(y)) < 2:
        return False
    return bool(roc_auc_score(y, _heuristic(X_valid, task, chosen)) < 0.5)


def _heuristic(X: pd.DataFrame, task: str, chosen: dict[str, str | None]) -> np.ndarray:
    n = len(X)
    parts = []
    sign = 1.0 if task == "churn" else -1.0
    if chosen.get("recency"):
        r = pd.to_numeric(X[chosen["recency"]], errors="coerce").astype(float)
        r = r.fillna(r.max() + 1 if r.notna().any() else 0.0)
        parts.append((sign * r).rank(pct=True).to_numpy())
    if chosen.get("activity"):
        a = pd.to_numeric(X[chosen["activity"]], errors="coerce").astype(float).fillna(0.0)
        parts.append((-sign * a).rank(pct=True).to_numpy())
    if not parts:
        return np.zeros(n)
    return np.asarray(np.mean(parts, axis=0), dtype=float)


def btyd_baseline(test_rows: pd.DataFrame, task: str, manifest: Manifest) -> np.ndarray | None:
    """Orders-only churn: a BG/NBD model's P(no purchase in the horizon) for the test rows.

    Scored with the test cutoff's fit from the manifest (``btyd_fits``): fitted at the training
    set's build on every customer with a purchase before that cutoff, not on the training rows,
    which hold recent buyers only (see :mod:`churnlab.btyd_population`). None when there is no
    fit (not orders-only churn, a training set built before stop 24, or a cutoff with too little
    history): the baseline is left out, not faked. Rows without an order before their cutoff
    score as the population's mean.
    """
    cols = ("btyd_frequency", "btyd_recency", "btyd_T")
    if task != "churn" or manifest.mode != "orders" or any(c not in test_rows for c in cols):
        return None
    cutoffs = test_rows["cutoff"].unique()
    if len(cutoffs) != 1:
        return None
    params = btyd_population.params_at(manifest.btyd_fits, pd.Timestamp(cutoffs[0]))
    if params is None:
        return None
    rfm = test_rows[["account_id", "cutoff", *cols]].rename(
        columns={"btyd_frequency": "frequency", "btyd_recency": "recency", "btyd_T": "T"}
    )
    p = btyd.score_at_cutoffs(params, rfm, manifest.window.days)["p_churn"].to_numpy(dtype=float)
    return np.where(np.isfinite(p), p, np.nanmean(p))

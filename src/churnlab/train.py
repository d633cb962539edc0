"""Churn and expansion models: temporal split, LightGBM, calibration, baselines, backtest.

For each task the training set (one row per account and cutoff) is split by cutoff, never at
random. Only rows whose label window is complete and whose label is defined for the task count.
The test cutoff is the latest such cutoff (or one chosen by the backtest); the validation cutoff
is the latest earlier cutoff whose label window ends by the test cutoff, and training uses every
cutoff whose label window ends by the validation cutoff. That purge (``train.purge``) means no
label used for fitting comes from after the cutoff it is evaluated at, as in production, where a
model scored at date T can only have learnt from windows that closed by T.

LightGBM parameters are passed through from params.yaml (``train.lightgbm``), with early stopping
on the validation cutoff. Probabilities are calibrated on the validation cutoff (isotonic or Platt
on the booster's log-odds, picked by cross-fitted validation log loss); LightGBM's is_unbalance
and scale_pos_weight are refused because they distort probabilities.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from churnlab import evaluate
from churnlab.atomic import atomic_dir
from churnlab.config import ConfigError, TrainParams
from churnlab.errors import ChurnlabError
from churnlab.schema import LABEL_COLUMNS, TASK_VALUE, TASKS

# LightGBM names (and aliases) that re-weight classes and so distort probabilities.
_FORBIDDEN = {
    "is_unbalance": "is_unbalance",
    "unbalance": "is_unbalance",
    "unbalanced_sets": "is_unbalance",
    "scale_pos_weight": "scale_pos_weight",
}
_ROUNDS_ALIASES = (
    "n_estimators",
    "num_iterations",
    "num_iteration",
    "n_iter",
    "num_tree",
    "num_trees",
    "num_round",
    "num_rounds",
    "nrounds",
    "num_boost_round",
    "max_iter",
)
_PROB_CLIP = 1e-4
ProgressFn = Callable[[str], None]


class TrainError(ChurnlabError):
    """The training set cannot be split or fitted for a task."""


# --------------------------------------------------------------------------- split


@dataclass(frozen=True)
class Split:
    """Rows of one task split by cutoff."""

    task: str
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    train_cutoffs: tuple[pd.Timestamp, ...]
    valid_cutoff: pd.Timestamp
    test_cutoff: pd.Timestamp


def eligible_rows(frame: pd.DataFrame, task: str) -> pd.DataFrame:
    """Rows with a complete label window and a defined label for ``task``."""
    if task not in frame.columns or "labeled" not in frame.columns:
        raise TrainError(
            f"training set has no '{task}' or 'labeled' column: rebuild it with "
            "`churnlab build-dataset`"
        )
    mask = frame["labeled"].astype(bool) & frame[task].notna()
    return frame.loc[mask]


def labeled_cutoffs(frame: pd.DataFrame, task: str) -> list[pd.Timestamp]:
    """Cutoffs that have eligible rows for ``task``, oldest first."""
    rows = eligible_rows(frame, task)
    return sorted(pd.Timestamp(c) for c in rows["cutoff"].unique())


def temporal_split(
    frame: pd.DataFrame,
    task: str,
    horizon_days: int,
    *,
    test_cutoff: pd.Timestamp | None = None,
    purge: bool = True,
) -> Split:
    """Split eligible rows by cutoff into train / validation / test (see the module docstring).

    Parameters
    ----------
    frame : DataFrame
        The training set (``account_id``, ``cutoff``, features, label columns).
    task : {"churn", "expansion"}
        Label column.
    horizon_days : int
        Label window length (from the dataset manifest), used by the purge.
    test_cutoff : Timestamp, optional
        Test on this cutoff (default: the latest cutoff with eligible rows).
    purge : bool
        Keep only earlier cutoffs whose label windows end by the next split's cutoff.

    Raises
    ------
    TrainError
        If there are not enough labeled cutoffs for a train, validation and test cutoff.
    """
    rows = eligible_rows(frame, task)
    cutoffs = sorted(pd.Timestamp(c) for c in rows["cutoff"].unique())
    hint = (
        "build the training set over a longer period (dataset.cutoff_start/cutoff_end) or "
        "use a shorter dataset.horizon_days"
    )
    if not cutoffs:
        raise TrainError(f"{task}: the training set has no labeled rows; {hint}")
    test = pd.Timestamp(test_cutoff) if test_cutoff is not None else cutoffs[-1]
    if test not in cutoffs:
        raise TrainError(f"{task}: test cutoff {test.date()} has no labeled rows")
    gap = pd.Timedelta(days=horizon_days) if purge else pd.Timedelta(0)

    def before(c: pd.Timestamp) -> list[pd.Timestamp]:
        return [x for x in cutoffs if x < c and (not purge or x + gap <= c)]

    valid_options = before(test)
    if not valid_options:
        raise TrainError(
            f"{task}: no validation cutoff before the test cutoff {test.date()} "
            f"(labeled cutoffs: {len(cutoffs)}); {hint}"
        )
    valid = valid_options[-1]
    train_cutoffs = before(valid)
    if not train_cutoffs:
        raise TrainError(
            f"{task}: no training cutoff before the validation cutoff {valid.date()} "
            f"(labeled cutoffs: {len(cutoffs)}); {hint}"
        )
    split = Split(
        task=task,
        train=rows.loc[rows["cutoff"].isin(train_cutoffs)],
        valid=rows.loc[rows["cutoff"] == valid],
        test=rows.loc[rows["cutoff"] == test],
        train_cutoffs=tuple(train_cutoffs),
        valid_cutoff=valid,
        test_cutoff=test,
    )
    for name, part in (("training", split.train), ("validation", split.valid)):
        counts = part[task].value_counts()
        if counts.get(1.0, 0) < 2 or counts.get(0.0, 0) < 2:
            raise TrainError(
                f"{task}: the {name} rows need both classes (positives {counts.get(1.0, 0)}, "
                f"negatives {counts.get(0.0, 0)}); {hint}"
            )
    return split


def canonical_order(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Rows sorted by cutoff, then by a hash of their feature and label values.

    LightGBM's bagging samples rows by position, so the input row order would change the model.
    Ordering by content (never by account id) makes training invariant both to the row order
    and to relabelling account ids; identical rows are interchangeable, so their ties are moot.
    """
    cols = [c for c in [*features, *LABEL_COLUMNS] if c in frame.columns]
    content = frame[cols].copy()
    for c in cols:
        if isinstance(content[c].dtype, pd.CategoricalDtype):
            content[c] = content[c].astype(object).where(content[c].notna(), None).astype(str)
    key = pd.util.hash_pandas_object(content, index=False).to_numpy()
    order = np.lexsort((key, frame["cutoff"].to_numpy()))
    return frame.iloc[order]


# --------------------------------------------------------------------------- params


def lightgbm_params(train: TrainParams) -> tuple[dict[str, Any], int]:
    """LightGBM parameters passed through from params.yaml, and the boosting rounds.

    Raises
    ------
    ConfigError
        If ``train.lightgbm`` asks for class re-weighting (is_unbalance, scale_pos_weight) or a
        non-binary objective.
    """
    params = dict(train.lightgbm)
    for key in params:
        if key in _FORBIDDEN:
            raise ConfigError(
                f"params.yaml: train.lightgbm.{key}: not allowed: {_FORBIDDEN[key]} distorts "
                "the probabilities that expected values are built on; churnlab calibrates on "
                "the validation cutoff instead, so remove the key"
            )
    objective = params.get("objective", "binary")
    if objective not in ("binary", "cross_entropy", "xentropy"):
        raise ConfigError(
            f"params.yaml: train.lightgbm.objective: {objective!r} is not a binary objective; "
            "use objective: binary"
        )
    rounds = 100
    for alias in _ROUNDS_ALIASES:
        if alias in params:
            rounds = int(params.pop(alias))
    params.setdefault("objective", "binary")
    params.setdefault("verbose", -1)
    return params, rounds


# --------------------------------------------------------------------------- calibration


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
        return np.clip(np.asarray(p, dtype=float), _PROB_CLIP, 1 - _PROB_CLIP)


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
            log_loss(y, np.clip(1 / (1 + np.exp(-margin)), _PROB_CLIP, 1 - _PROB_CLIP))
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


# --------------------------------------------------------------------------- model bundle


class ModelBundle:
    """A trained task model: booster, calibrator, explicit feature list and category levels.

    Parameters
    ----------
    task : str
        "churn" or "expansion".
    booster : lightgbm.Booster
        Trained on ``features`` (in this order).
    calibrator : Calibrator
        Maps the booster's log-odds to calibrated probabilities.
    features : list of dict
        Manifest entries (name, description, group, dtype) of the model's features.
    categories : dict
        Categorical feature -> its levels seen in training (unseen levels become missing).
    reference : dict
        Numeric feature -> its median over the training rows (the "usual level" in reasons).
    info : dict
        Facts about the fit (cutoffs, best iteration, calibration, metrics).
    """

    def __init__(
        self,
        task: str,
        booster: lgb.Booster,
        calibrator: Calibrator,
        features: list[dict[str, Any]],
        categories: dict[str, list[str]],
        reference: dict[str, float],
        info: dict[str, Any] | None = None,
    ) -> None:
        self.task = task
        self.booster = booster
        self.calibrator = calibrator
        self.features = features
        self.categories = categories
        self.reference = reference
        self.info = info or {}

    @property
    def feature_names(self) -> list[str]:
        """Model features, in training order."""
        return [f["name"] for f in self.features]

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's feature matrix from any frame holding the feature columns.

        Numeric features become float64 (missing stays NaN); categoricals get the training
        levels, so codes match the booster's whatever levels the new frame has.
        """
        missing = [f for f in self.feature_names if f not in frame.columns]
        if missing:
            raise TrainError(
                f"{self.task} model: input lacks feature columns {missing[:5]}: score a frame "
                "built by the same dataset params as the training set"
            )
        cols = {}
        for name in self.feature_names:
            col = frame[name]
            if name in self.categories:
                values = col.astype(object).where(col.notna(), None)
                cols[name] = pd.Categorical(
                    values.map(lambda v: None if v is None else str(v)),
                    categories=self.categories[name],
                )
            else:
                cols[name] = pd.to_numeric(col, errors="coerce").astype("float64").to_numpy()
        return pd.DataFrame(cols, index=frame.index)

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        """Booster log-odds (uncalibrated)."""
        return np.asarray(self.booster.predict(self.matrix(frame), raw_score=True), dtype=float)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities of the task's positive label."""
        return self.calibrator.predict(self.margin(frame))

    def save(self, out: Path | str) -> Path:
        """Write the bundle to directory ``out`` (booster text, calibrator, metadata JSON)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(out / "booster.txt"))
        joblib.dump(self.calibrator, out / "calibrator.joblib")
        meta = {
            "task": self.task,
            "features": self.features,
            "categories": self.categories,
            "reference": self.reference,
            "info": self.info,
        }
        (out / "bundle.json").write_text(json.dumps(meta, indent=2, default=str))
        return out

    @classmethod
    def load(cls, path: Path | str) -> ModelBundle:
        """Read a bundle written by :meth:`save`."""
        path = Path(path)
        if not (path / "bundle.json").is_file():
            raise TrainError(f"{path}: no model bundle here: run `churnlab train` first")
        meta = json.loads((path / "bundle.json").read_text())
        booster = lgb.Booster(model_file=str(path / "booster.txt"))
        calibrator = joblib.load(path / "calibrator.joblib")
        return cls(
            meta["task"],
            booster,
            calibrator,
            meta["features"],
            meta["categories"],
            meta["reference"],
            meta["info"],
        )


def model_features(frame: pd.DataFrame, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The explicit feature list from the manifest, checked against the frame."""
    feats = [dict(f) for f in manifest.get("features", [])]
    if not feats:
        raise TrainError(
            "dataset manifest lists no features: rebuild with `churnlab build-dataset`"
        )
    missing = [f["name"] for f in feats if f["name"] not in frame.columns]
    if missing:
        raise TrainError(
            f"features in the manifest but not in the training set: {missing[:5]}; the dataset "
            "files are out of step: rebuild with `churnlab build-dataset`"
        )
    for f in feats:
        if isinstance(frame[f["name"]].dtype, pd.CategoricalDtype):
            f["dtype"] = "category"
        f.setdefault("description", f["name"])
        f.setdefault("group", "other")
    return feats


def _category_levels(frame: pd.DataFrame, feats: list[dict[str, Any]]) -> dict[str, list[str]]:
    out = {}
    for f in feats:
        if f.get("dtype") == "category":
            col = frame[f["name"]]
            out[f["name"]] = sorted({str(v) for v in col.dropna().unique()})
    return out


# --------------------------------------------------------------------------- baselines


def fit_logreg_baseline(X: pd.DataFrame, y: np.ndarray, categorical: list[str]) -> Pipeline:
    """Logistic regression on the same features: median-imputed (with missing flags), scaled
    numerics, and one-hot categoricals (missing as its own level)."""
    numeric = [c for c in X.columns if c not in categorical]
    transformers: list[tuple[str, Any, list[str]]] = [
        (
            "num",
            make_pipeline(
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
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


def _logreg_input(X: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    out = X.copy()
    for c in categorical:
        out[c] = X[c].astype(object).where(X[c].notna(), "(missing)").astype(str).to_numpy(object)
    return out


def logreg_scores(pipe: Pipeline, X: pd.DataFrame, categorical: list[str]) -> np.ndarray:
    """Baseline logistic regression probabilities."""
    return np.asarray(pipe.predict_proba(_logreg_input(X, categorical))[:, 1], dtype=float)


def heuristic_features(features: list[dict[str, Any]]) -> dict[str, str | None]:
    """Pick the recency and activity features of the heuristic baseline from the manifest.

    Recency: the first feature whose name contains ``days_since`` (engagement group first, then
    any group, e.g. days since the last order on orders-only data). Activity: the engagement
    feature named like a count (``events``, ``login``, ``count``, ``active``, ``sessions``)
    whose window in its name is closest to 30 days; if none, such a count in any group (e.g.
    ``orders_30d`` on orders-only data); else any numeric engagement feature.
    """
    numeric = [f for f in features if f.get("dtype") != "category"]

    def first(pred: Callable[[dict[str, Any]], bool]) -> str | None:
        for f in numeric:
            if pred(f):
                return str(f["name"])
        return None

    recency = first(lambda f: "days_since" in f["name"] and f.get("group") == "engagement")
    recency = recency or first(lambda f: "days_since" in f["name"])
    countish = ("events", "login", "count", "active", "orders", "sessions")

    def window(name: str) -> int:
        digits = [int(t.rstrip("d")) for t in name.split("_") if t.rstrip("d").isdigit()]
        return min(digits) if digits else 10**6

    cands = [
        f
        for f in numeric
        if f.get("group") == "engagement"
        and any(w in f["name"] for w in countish)
        and not any(w in f["name"] for w in ("days_since", "trend", "ratio", "change", "share"))
    ]
    if not cands:
        cands = [
            f
            for f in numeric
            if any(w in f["name"] for w in countish)
            and not any(w in f["name"] for w in ("days_since", "trend", "ratio", "change"))
        ]
    if not cands:
        cands = [f for f in numeric if f.get("group") == "engagement" and f["name"] != recency]
    # The window closest to 30 days: recent, but less noisy than a week.
    activity = str(min(cands, key=lambda f: abs(window(f["name"]) - 30))["name"]) if cands else None
    return {"recency": recency, "activity": activity}


def heuristic_scores(X: pd.DataFrame, task: str, chosen: dict[str, str | None]) -> np.ndarray:
    """Recency/activity heuristic: the mean of two percentile ranks.

    Churn risk ranks long inactivity (missing recency = never active = most inactive) and low
    recent activity highest; expansion ranks the reverse (recent, heavy users first).
    """
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


# --------------------------------------------------------------------------- one task


@dataclass
class TaskResult:
    """Everything one task's training produced."""

    task: str
    bundle: ModelBundle
    split: Split
    metrics: dict[str, float]
    predictions: pd.DataFrame
    calibration: dict[str, Any]
    heuristic: dict[str, str | None]
    logreg: Pipeline
    extra: dict[str, Any] = field(default_factory=dict)


def train_task(
    frame: pd.DataFrame,
    manifest: dict[str, Any],
    task: str,
    params: TrainParams,
    *,
    oracle: pd.DataFrame | None = None,
    test_cutoff: pd.Timestamp | None = None,
) -> TaskResult:
    """Split, fit, calibrate and evaluate one task, with both baselines on the same test rows.

    Parameters
    ----------
    frame, manifest
        The training set and its manifest (``dataset.read``).
    task : {"churn", "expansion"}
    params : TrainParams
        The ``train`` section of params.yaml.
    oracle : DataFrame, optional
        True probabilities of a synthetic world (``evaluate.load_oracle``).
    test_cutoff : Timestamp, optional
        Test on this cutoff instead of the latest labeled one (backtests).

    Returns
    -------
    TaskResult
        Metrics are prefixed ``test.`` (model), ``baseline_logreg.``, ``baseline_heuristic.``,
        ``valid.`` and include ``test.oracle_roc_auc``/``test.oracle_gap`` when available.
    """
    if task not in TASKS:
        raise TrainError(f"unknown task {task!r}: use one of {', '.join(TASKS)}")
    lgb_params, rounds = lightgbm_params(params)
    feats = model_features(frame, manifest)
    horizon = int(manifest.get("horizon_days", 90))
    frame = canonical_order(frame, [f["name"] for f in feats])
    split = temporal_split(frame, task, horizon, test_cutoff=test_cutoff, purge=params.purge)
    categories = _category_levels(split.train, feats)
    names = [f["name"] for f in feats]
    reference = {
        f["name"]: float(np.nanmedian(split.train[f["name"]].to_numpy(dtype=float)))
        if split.train[f["name"]].notna().any()
        else float("nan")
        for f in feats
        if f["name"] not in categories
    }
    bundle = ModelBundle(task, None, None, feats, categories, reference)  # type: ignore[arg-type]
    X_train, X_valid, X_test = (bundle.matrix(p) for p in (split.train, split.valid, split.test))
    y_train, y_valid, y_test = (
        p[task].to_numpy(dtype=float) for p in (split.train, split.valid, split.test)
    )
    dtrain = lgb.Dataset(X_train, y_train, feature_name=names, free_raw_data=False)
    dvalid = lgb.Dataset(X_valid, y_valid, reference=dtrain)
    booster = lgb.train(
        lgb_params,
        dtrain,
        num_boost_round=rounds,
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    # Keep only the trees up to the best validation iteration.
    best = booster.best_iteration or booster.current_iteration()
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    bundle.booster = booster
    margin_valid = np.asarray(booster.predict(X_valid, raw_score=True), dtype=float)
    calibrator, cal_info = fit_calibrator(
        margin_valid, y_valid, params.calibration, seed=int(lgb_params.get("seed", 0))
    )
    bundle.calibrator = calibrator

    p_test = calibrator.predict(np.asarray(booster.predict(X_test, raw_score=True), dtype=float))
    p_valid = calibrator.predict(margin_valid)
    categorical = list(categories)
    logreg = fit_logreg_baseline(X_train, y_train, categorical)
    p_logreg = logreg_scores(logreg, X_test, categorical)
    chosen = heuristic_features(feats)
    s_heur = heuristic_scores(X_test, task, chosen)
    value = split.test[TASK_VALUE[task]].to_numpy(dtype=float)

    metrics: dict[str, float] = {}
    model_m = evaluate.score_metrics(y_test, p_test, value=value)
    model_m.update(evaluate.oracle_metrics(split.test, y_test, oracle, task, model_m["roc_auc"]))
    for prefix, m in (
        ("test", model_m),
        ("valid", evaluate.score_metrics(y_valid, p_valid)),
        ("baseline_logreg", evaluate.score_metrics(y_test, p_logreg, value=value)),
        (
            "baseline_heuristic",
            evaluate.score_metrics(y_test, s_heur, value=value, probabilistic=False),
        ),
    ):
        metrics.update({f"{prefix}.{k}": v for k, v in m.items()})
    metrics["model.best_iteration"] = float(best)
    metrics["model.num_features"] = float(len(names))
    metrics["train.rows"] = float(len(split.train))
    metrics.update({k: v for k, v in cal_info.items() if isinstance(v, float)})

    bundle.info = {
        "task": task,
        "train_cutoffs": [str(c.date()) for c in split.train_cutoffs],
        "valid_cutoff": str(split.valid_cutoff.date()),
        "test_cutoff": str(split.test_cutoff.date()),
        "best_iteration": int(best),
        "horizon_days": horizon,
        "calibration": cal_info,
        "metrics": {k: v for k, v in metrics.items() if math.isfinite(v)},
    }
    predictions = pd.DataFrame(
        {
            "account_id": split.test["account_id"].astype(str).to_numpy(),
            "cutoff": split.test["cutoff"].to_numpy(),
            "y": y_test,
            "p": p_test,
            "p_logreg": p_logreg,
            "heuristic": s_heur,
            "value": value,
        },
        index=split.test.index,
    )
    return TaskResult(task, bundle, split, metrics, predictions, cal_info, chosen, logreg)


# --------------------------------------------------------------------------- pipelines


def save_bundles(bundles: dict[str, ModelBundle], out: Path | str) -> dict[str, Path]:
    """Save each task's bundle to ``<out>/<task>/`` atomically (temp dir, then swap)."""
    out = Path(out)
    paths = {}
    for task, bundle in bundles.items():
        with atomic_dir(out / task) as tmp:
            bundle.save(tmp)
        paths[task] = out / task
    return paths


def _read_dataset(dataset_dir: Path | str) -> tuple[pd.DataFrame, dict[str, Any]]:
    from churnlab import dataset

    path = Path(dataset_dir)
    if not path.exists():
        raise TrainError(
            f"training set {path} not found: run `churnlab build-dataset` first "
            "(or pass --dataset DIR)"
        )
    return dataset.read(path)


def _oracle_for(source: str, manifest: dict[str, Any]) -> pd.DataFrame | None:
    # The generator's probabilities are for its default 90-day horizon only.
    if int(manifest.get("horizon_days", 90)) != 90:
        return None
    return evaluate.load_oracle(source)


def run(
    params: Any,
    *,
    params_path: Path | str | None = None,
    dataset_dir: Path | str | None = None,
    progress: ProgressFn | None = None,
    log_kpis: bool = True,
) -> dict[str, Any]:
    """``churnlab train``: read the training set, then :func:`run_frame`.

    Parameters
    ----------
    params : churnlab.config.Params
        All of params.yaml (this orchestrates the train, explain and tracking sections).
    params_path : Path, optional
        The params.yaml file, logged as an artifact.
    dataset_dir : Path, optional
        Training set folder (default ``dataset.out``).
    progress : callable, optional
        Called with a short message at each step.
    log_kpis : bool
        Also log the retention KPIs into the parent run when ``churnlab.kpis`` is available.
    """
    ddir = Path(dataset_dir) if dataset_dir is not None else Path(params.dataset.out)
    frame, manifest = _read_dataset(ddir)
    summary = run_frame(
        params,
        frame,
        manifest,
        oracle=_oracle_for(params.data.source, manifest),
        params_path=params_path,
        progress=progress,
        log_kpis=log_kpis,
    )
    summary["dataset"] = str(ddir)
    return summary


def run_frame(
    params: Any,
    frame: pd.DataFrame,
    manifest: dict[str, Any],
    *,
    oracle: pd.DataFrame | None = None,
    params_path: Path | str | None = None,
    progress: ProgressFn | None = None,
    log_kpis: bool = True,
) -> dict[str, Any]:
    """Train every task on a training set, explain, log to MLflow, register, save bundles.

    Returns
    -------
    dict
        ``tasks`` (per task: run id, metrics, calibration, test cutoff, registered model name,
        version, promotion decision and reason), ``run_id``, ``models_dir``, ``tracking_uri``,
        ``kpis`` (status).
    """
    from churnlab import explain, tracking

    say = progress or (lambda _m: None)
    summary: dict[str, Any] = {"tasks": {}}
    bundles: dict[str, ModelBundle] = {}
    tracking.configure(params.tracking)
    with tracking.parent_run(params, params_path, manifest, name="train") as parent:
        summary["run_id"] = parent.info.run_id
        summary["kpis"] = "not requested"
        if log_kpis:
            say("retention KPIs")
            summary["kpis"] = tracking.log_kpis(params)
        for task in params.train.tasks:
            say(f"{task}: training")
            with tracking.child_run(task) as child:
                result = train_task(frame, manifest, task, params.train, oracle=oracle)
                say(f"{task}: explaining")
                with tempfile.TemporaryDirectory() as tmp:
                    expl = explain.explain_task(result, params.explain, Path(tmp))
                    say(f"{task}: logging to MLflow")
                    tracking.log_task(result, expl, Path(tmp))
                    model_uri = tracking.log_model(result.bundle, result.split.test, Path(tmp))
                say(f"{task}: registry")
                decision = tracking.register_and_promote(
                    result, model_uri, params.tracking, params.train
                )
                bundles[task] = result.bundle
                summary["tasks"][task] = {
                    "run_id": child.info.run_id,
                    "metrics": result.metrics,
                    "calibration": result.calibration["calibration.method"],
                    "test_cutoff": str(result.split.test_cutoff.date()),
                    **decision,
                }
        say("saving bundles")
        summary["models_dir"] = str(params.train.out)
        save_bundles(bundles, params.train.out)
    summary["tracking_uri"] = tracking.resolve_uri(params.tracking)
    return summary


def backtest(
    frame: pd.DataFrame,
    manifest: dict[str, Any],
    params: TrainParams,
    folds: int,
    *,
    oracle: pd.DataFrame | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, pd.DataFrame]:
    """Repeat the split for the ``folds`` latest test cutoffs of each task.

    Returns
    -------
    dict
        Task -> frame with one row per fold (``test_cutoff`` and every metric), followed by
        ``mean`` and ``std`` rows.
    """
    if folds < 1:
        raise TrainError("--folds must be at least 1")
    say = progress or (lambda _m: None)
    out: dict[str, pd.DataFrame] = {}
    for task in params.tasks:
        cutoffs = labeled_cutoffs(frame, task)
        tests = cutoffs[-folds:]
        rows = []
        for i, c in enumerate(tests, start=1):
            say(f"{task}: fold {i}/{len(tests)} (test {c.date()})")
            res = train_task(frame, manifest, task, params, oracle=oracle, test_cutoff=c)
            rows.append({"fold": str(i), "test_cutoff": str(c.date()), **res.metrics})
        table = pd.DataFrame(rows)
        num = table.drop(columns=["fold", "test_cutoff"])
        mean = {"fold": "mean", "test_cutoff": "", **num.mean().to_dict()}
        std = {"fold": "std", "test_cutoff": "", **num.std(ddof=1).to_dict()}
        out[task] = pd.concat([table, pd.DataFrame([mean, std])], ignore_index=True)
    return out


def run_backtest(
    params: Any,
    folds: int,
    *,
    params_path: Path | str | None = None,
    dataset_dir: Path | str | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """``churnlab backtest``: :func:`backtest` on the training set, logged to MLflow.

    Returns
    -------
    dict
        ``tables`` (task -> per-fold table), ``run_id`` and ``tracking_uri``.
    """
    from churnlab import tracking

    ddir = Path(dataset_dir) if dataset_dir is not None else Path(params.dataset.out)
    frame, manifest = _read_dataset(ddir)
    oracle = _oracle_for(params.data.source, manifest)
    tracking.configure(params.tracking)
    with tracking.parent_run(params, params_path, manifest, name="backtest") as parent:
        tables = backtest(frame, manifest, params.train, folds, oracle=oracle, progress=progress)
        tracking.log_backtest(tables)
    return {
        "tables": tables,
        "run_id": parent.info.run_id,
        "tracking_uri": tracking.resolve_uri(params.tracking),
    }


_SHOWN = ("roc_auc", "pr_auc", "log_loss", "ece", "lift_top10", "value_captured_top10")


def format_summary(summary: dict[str, Any]) -> list[str]:
    """Printable lines for ``churnlab train``: metrics vs baselines, promotion, where to look."""
    lines = []
    for task, info in summary["tasks"].items():
        m = info["metrics"]
        lines.append(
            f"{task}: test cutoff {info['test_cutoff']}, calibration {info['calibration']}, "
            f"registered {info['model_name']} v{info['version']} as {info['decision']} "
            f"({info['reason']})"
        )
        for prefix, label in (
            ("test", "LightGBM"),
            ("baseline_logreg", "logistic regression"),
            ("baseline_heuristic", "heuristic"),
        ):
            parts = [
                f"{k}={m[f'{prefix}.{k}']:.3f}"
                for k in _SHOWN
                if f"{prefix}.{k}" in m and math.isfinite(m[f"{prefix}.{k}"])
            ]
            lines.append(f"  {label:<20} " + " ".join(parts))
        if "test.oracle_roc_auc" in m:
            lines.append(
                f"  {'oracle (synthetic)':<20} roc_auc={m['test.oracle_roc_auc']:.3f} "
                f"gap={m['test.oracle_gap']:.3f}"
            )
    lines.append(f"models saved under {summary['models_dir']}/; KPIs: {summary.get('kpis', '-')}")
    lines.append(f"MLflow: mlflow ui --backend-store-uri {summary['tracking_uri']}")
    return lines


def format_backtest(result: dict[str, Any]) -> list[str]:
    """Printable lines for ``churnlab backtest``: per fold and mean +- std of key metrics."""
    lines = []
    keys = [f"test.{k}" for k in ("roc_auc", "pr_auc", "ece")] + [
        "baseline_logreg.roc_auc",
        "baseline_heuristic.roc_auc",
    ]
    for task, table in result["tables"].items():
        lines.append(f"{task}:")
        folds = table[~table["fold"].isin(["mean", "std"])]
        for _, row in folds.iterrows():
            vals = " ".join(f"{k}={row[k]:.3f}" for k in keys if k in row)
            lines.append(f"  fold {row['fold']} (test {row['test_cutoff']}): {vals}")
        mean = table[table["fold"] == "mean"].iloc[0]
        std = table[table["fold"] == "std"].iloc[0]
        vals = " ".join(f"{k}={mean[k]:.3f}+-{std[k]:.3f}" for k in keys if k in mean)
        lines.append(f"  mean+-std: {vals}")
    lines.append(f"MLflow: mlflow ui --backend-store-uri {result['tracking_uri']}")
    return lines

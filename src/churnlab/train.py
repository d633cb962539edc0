"""Churn and expansion models: temporal split, LightGBM, calibration, evaluation, backtest.

For each task the training set (one row per account and cutoff) is split by cutoff, never at
random. Only rows whose label window is complete and whose label is defined for the task count.
The test cutoff is the latest such cutoff (or one chosen by the backtest); the validation cutoff
is the latest earlier cutoff whose label window ends by the test cutoff, and training uses every
cutoff whose label window ends by the validation cutoff. That purge (``train.purge``) means no
label used for fitting comes from after the cutoff it is evaluated at, as in production, where a
model scored at date T can only have learnt from windows that closed by T.

Fitting (:mod:`churnlab.fitting`): LightGBM parameters are passed through from params.yaml
(``train.lightgbm``), with early stopping on the validation cutoff. Probabilities are calibrated
on the validation cutoff (isotonic or Platt on the booster's log-odds, picked by cross-fitted
validation log loss; season-aware models scale around the calendar month's base rate);
LightGBM's is_unbalance and scale_pos_weight are refused because they distort probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from churnlab import compare, drift, evaluate
from churnlab.baselines import (
    btyd_baseline,
    fit_logreg_baseline,
    heuristic_direction,
    heuristic_features,
    heuristic_scores,
    logreg_test_scores,
)
from churnlab.bundle import ModelBundle

# Calibrator is importable from here too: bundles pickled before calibration had its own
# module refer to churnlab.train.Calibrator.
from churnlab.calibration import Calibrator, fit_calibrator  # noqa: F401
from churnlab.config import Horizon, TrainParams, parse_horizon
from churnlab.errors import ChurnlabError
from churnlab.fitting import fit_amount, fit_with_season, lightgbm_params, refit_booster
from churnlab.manifest import HEURISTIC_NOT_SCORED, Feature, Manifest
from churnlab.runlog import RunLog
from churnlab.schema import LABEL_COLUMNS, TASK_VALUE, TASKS

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
    horizon_days: int | Horizon,
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
    horizon_days : int or Horizon
        Label window (from the dataset manifest; an int is days), used by the purge.
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
    window = horizon_days if isinstance(horizon_days, Horizon) else parse_horizon(horizon_days)

    def before(c: pd.Timestamp) -> list[pd.Timestamp]:
        return [x for x in cutoffs if x < c and (not purge or pd.Timestamp(window.add(x)) <= c)]

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


def split_problem(frame: pd.DataFrame, manifest: Manifest, task: str, purge: bool) -> str | None:
    """Why ``task`` has no train/validation/test split on this training set, or None."""
    try:
        temporal_split(frame, task, manifest.window, purge=purge)
    except TrainError as err:
        return str(err)
    return None


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


def model_features(frame: pd.DataFrame, manifest: Manifest) -> list[Feature]:
    """The explicit feature list from the manifest, checked against the frame."""
    feats = list(manifest.features)
    if not feats:
        raise TrainError(
            "dataset manifest lists no features: rebuild with `churnlab build-dataset`"
        )
    missing = [f.name for f in feats if f.name not in frame.columns]
    if missing:
        raise TrainError(
            f"features in the manifest but not in the training set: {missing[:5]}; the dataset "
            "files are out of step: rebuild with `churnlab build-dataset`"
        )
    return [
        replace(f, dtype="category") if isinstance(frame[f.name].dtype, pd.CategoricalDtype) else f
        for f in feats
    ]


def _category_levels(frame: pd.DataFrame, feats: list[Feature]) -> dict[str, list[str]]:
    out = {}
    for f in feats:
        if f.dtype == "category":
            out[f.name] = sorted({str(v) for v in frame[f.name].dropna().unique()})
    return out


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


def _metrics(
    test: dict[str, float],
    y_test: np.ndarray,
    scores: dict[str, np.ndarray],
    value: np.ndarray,
    y_valid: np.ndarray,
    p_valid: np.ndarray,
) -> dict[str, float]:
    """Every metric of the model (``test``, already scored) and the baselines, prefixed."""
    metrics: dict[str, float] = {}
    for prefix, m in (
        ("test", test),
        ("valid", evaluate.score_metrics(y_valid, p_valid)),
        ("baseline_logreg", evaluate.score_metrics(y_test, scores["logreg"], value=value)),
    ):
        metrics.update({f"{prefix}.{k}": v for k, v in m.items()})
    if "heuristic" in scores:  # not scored when the data has nothing it ranks by
        m = evaluate.score_metrics(y_test, scores["heuristic"], value=value, probabilistic=False)
        metrics.update({f"baseline_heuristic.{k}": v for k, v in m.items()})
    return metrics


def train_task(
    frame: pd.DataFrame,
    manifest: Manifest,
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
        The label to predict.
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
    # One BLAS thread: the logistic regression and calibrator fits are small matrices, and
    # OpenBLAS's threads spin against any other busy process (on 2 cores beside one other job,
    # a 600-account world's churn fit took 24 s instead of 2.4 s, 19 s of it in the baseline).
    # LightGBM's own threads (``num_threads``) are OpenMP and not limited by this.
    with threadpool_limits(limits=1, user_api="blas"):
        return _train_task(frame, manifest, task, params, oracle, test_cutoff)


def _train_task(
    frame: pd.DataFrame,
    manifest: Manifest,
    task: str,
    params: TrainParams,
    oracle: pd.DataFrame | None,
    test_cutoff: pd.Timestamp | None,
) -> TaskResult:
    if task not in TASKS:
        raise TrainError(f"unknown task {task!r}: use one of {', '.join(TASKS)}")
    lightgbm_params(params)  # refuse forbidden settings before any work
    feats = model_features(frame, manifest)
    frame = canonical_order(frame, [f.name for f in feats])
    split = temporal_split(
        frame, task, manifest.window, test_cutoff=test_cutoff, purge=params.purge
    )
    bundle = _empty_bundle(task, split.train, feats)
    categories = bundle.categories
    X_train, X_valid, X_test = (bundle.matrix(p) for p in (split.train, split.valid, split.test))
    y_train, y_valid, y_test = (
        p[task].to_numpy(dtype=float) for p in (split.train, split.valid, split.test)
    )
    fit = fit_with_season(
        params, split.train, split.valid, task, bundle, (X_train, X_valid), (y_train, y_valid)
    )
    best, cal_info = fit.best, fit.cal_info
    p_valid = bundle.predict(split.valid)  # the held-out fit: the validation metrics
    refit_trees = 0
    if params.refit:  # the booster and the baseline alike learn from the validation cutoff too
        bundle.booster, refit_trees = refit_booster(
            params, fit, bundle, (split.train, split.valid), (X_train, X_valid), (y_train, y_valid)
        )
    categorical = list(categories)
    logreg = fit_logreg_baseline(X_train, y_train, categorical)
    seed = int(params.lightgbm.get("seed", 0))
    o = bundle.offset
    offs = None if bundle.season is None else (o(split.train), o(split.valid), o(split.test))
    logreg_refit = (
        fit_logreg_baseline(
            pd.concat([X_train, X_valid]), np.concatenate([y_train, y_valid]), categorical
        )
        if params.refit
        else None
    )
    logreg_test, logreg_calibration = logreg_test_scores(
        logreg, (X_train, X_valid, X_test), (y_train, y_valid), categorical,
        params.calibration, seed, offs, refit=logreg_refit,
    )  # fmt: skip
    chosen = heuristic_features(feats)
    scores = {"test": bundle.predict(split.test), "logreg": logreg_test}
    reverse = False
    if any(chosen.values()):  # else a constant: nothing to compare with, so not scored
        reverse = heuristic_direction(X_valid, y_valid, task, chosen)
        scores["heuristic"] = heuristic_scores(X_test, task, chosen, reverse=reverse)
    value = split.test[TASK_VALUE[task]].to_numpy(dtype=float)
    btyd_scores = btyd_baseline(split.test, task, manifest)
    test = evaluate.score_metrics(y_test, scores["test"], value=value)
    test.update(evaluate.oracle_metrics(split.test, y_test, oracle, task, test["roc_auc"]))
    metrics = _metrics(test, y_test, scores, value, y_valid, p_valid)
    if btyd_scores is not None:
        m = evaluate.score_metrics(y_test, btyd_scores, value=value)
        metrics |= {f"baseline_btyd.{k}": v for k, v in m.items()}
    paired = {"logreg": (scores["logreg"], True)}
    if "heuristic" in scores:
        paired["heuristic"] = (scores["heuristic"], False)
    if btyd_scores is not None:
        paired["btyd"] = (btyd_scores, True)
    if (p_oracle := evaluate.oracle_probabilities(split.test, oracle, task)) is not None:
        paired["oracle"] = (p_oracle, True)  # a synthetic world: how sure the gap is
    metrics |= compare.paired_differences(y_test, scores["test"], paired, seed=seed)
    if task == "expansion":
        metrics |= fit_amount(
            params, bundle, (split.train, split.valid, split.test), (X_train, X_valid, X_test)
        )
    metrics |= {
        "model.best_iteration": float(best),
        "model.refit_trees": float(refit_trees),
        "model.num_features": float(len(feats)),
        "train.rows": float(len(split.train)),
    }
    metrics.update({k: v for k, v in cal_info.items() if isinstance(v, float)})
    metrics |= fit.metrics
    bundle.info = _fit_info(task, split, best, manifest, cal_info, metrics)
    bundle.info["reference_mean"] = _means(split.train, bundle)  # "the average" in the reasons
    if "amount.fallback_mean" in metrics:  # too few expansions for an amount regressor
        bundle.info["amount_fallback"] = metrics["amount.fallback_mean"]
    bundle.info["season"] = fit.season_note
    bundle.info["lightgbm"] = {k: v for k, v in fit.lightgbm.items() if k != "num_threads"}
    bundle.info["profile"] = drift.profile(X_train)  # the training rows, for drift at scoring
    curve = evaluate.calibration_table(y_test, scores["test"])
    bundle.info["calibration_curve"] = curve.rename(
        columns={"mean_p": "mean_predicted", "rate": "realised"}
    ).to_dict("list")
    predictions = _predictions(split.test, y_test, scores, value)
    direction = "reversed on the validation cutoff" if reverse else "as designed"
    if "heuristic" not in scores:
        direction = HEURISTIC_NOT_SCORED
    return TaskResult(
        task, bundle, split, metrics, predictions, cal_info, chosen, logreg_refit or logreg,
        extra={
            "heuristic_direction": direction, "logreg_calibration": logreg_calibration,
            "season": fit.season_note, "per_cutoff": per_cutoff_calibration(bundle, split, task),
        },
    )  # fmt: skip


def per_cutoff_calibration(bundle: ModelBundle, split: Split, task: str) -> pd.DataFrame:
    """Mean predicted against realised rate at every labelled cutoff of the split."""
    parts = []
    for role, rows in (("train", split.train), ("valid", split.valid), ("test", split.test)):
        if not len(rows):
            continue
        p = bundle.predict(rows)
        table = (
            pd.DataFrame({"cutoff": rows["cutoff"].to_numpy(), "p": p, "y": rows[task].to_numpy()})
            .groupby("cutoff", as_index=False)
            .agg(rows=("p", "size"), mean_predicted=("p", "mean"), realised=("y", "mean"))
        )
        table.insert(1, "role", role)
        parts.append(table)
    out = pd.concat(parts, ignore_index=True).sort_values("cutoff", kind="stable")
    out["cutoff"] = pd.to_datetime(out["cutoff"]).dt.strftime("%Y-%m-%d")
    out["gap"] = out["mean_predicted"] - out["realised"]
    return out.reset_index(drop=True)


CALIBRATION_WARN_POINTS = 0.05
"""``train`` warns when the test cutoff's mean prediction is this far from its realised rate..."""
CALIBRATION_WARN_Z = 3.0
"""...and the gap is more than this many binomial standard errors (beyond sampling noise)."""


def task_warnings(result: TaskResult) -> dict[str, str]:
    """The warnings a trained task carries (run tags and bundle info keys -> text)."""
    found = {
        "model_warning": flat_model_warning(result),
        "calibration_warning": calibration_warning(
            result.extra["per_cutoff"], result.extra["season"]
        ),
    }
    return {k: v for k, v in found.items() if v}


def flat_model_warning(result: TaskResult) -> str | None:
    """A warning when the booster has no split at all (every account gets one probability).

    On a small book the trees' minimum leaf size can leave no split that passes: the model is
    then a constant, and lists ranked by probability x revenue rank by revenue alone.
    """
    trees = result.bundle.booster.dump_model().get("tree_info", [])
    if any(t.get("num_leaves", 1) > 1 for t in trees):
        return None
    lgb = result.bundle.info.get("lightgbm", {})
    leaf = lgb.get("min_child_samples", "?")
    return (
        f"the {result.task} model learnt nothing: none of its trees splits, so every account "
        f"gets the same probability and the lists rank by revenue alone. On "
        f"{len(result.split.train):,} training rows, no split left the trees' minimum leaf "
        f"size (train.lightgbm.min_child_samples, {leaf} for the shape chosen) on both sides: "
        "lower it (for example to 20) or train on more data"
    )


def calibration_warning(per_cutoff: pd.DataFrame, season_note: str) -> str | None:
    """A warning when the probabilities are clearly off in level at the test cutoff, or None.

    Probability x revenue only means something when the mean prediction matches what happens.
    A model calibrated on one validation cutoff carries that cutoff's level to the test cutoff;
    when the season cannot be learnt (fewer than 12 months of labelled training cutoffs) a
    seasonal business can be far off (Online Retail II cut to 15 months: 0.33 predicted against
    0.58 churned at the December test cutoff). The warning names the gap, the validation
    cutoff and the season decision, so that users treat the scores as a ranking until the
    level holds.

    Parameters
    ----------
    per_cutoff : DataFrame
        :func:`per_cutoff_calibration` output (``cutoff``, ``role``, ``rows``,
        ``mean_predicted``, ``realised``).
    season_note : str
        The season decision (``TaskResult.extra["season"]``).

    Returns
    -------
    str or None
        None when the gap is under :data:`CALIBRATION_WARN_POINTS` or within
        :data:`CALIBRATION_WARN_Z` standard errors of the realised rate.
    """
    test = per_cutoff[per_cutoff["role"] == "test"]
    if test.empty:
        return None
    row = test.iloc[-1]
    n, realised, predicted = int(row["rows"]), float(row["realised"]), float(row["mean_predicted"])
    gap = predicted - realised
    se = math.sqrt(max(realised * (1 - realised), 1e-12) / max(n, 1))
    if abs(gap) < CALIBRATION_WARN_POINTS or abs(gap) <= CALIBRATION_WARN_Z * se:
        return None
    valid = per_cutoff[per_cutoff["role"] == "valid"]
    where = f" (calibrated on {valid['cutoff'].iloc[-1]})" if len(valid) else ""
    return (
        f"probabilities are off in level at the test cutoff {row['cutoff']}: mean predicted "
        f"{predicted:.3f} against {realised:.3f} realised on {n:,} rows{where}; season "
        f"{season_note}. Rank by the scores, but do not read them (or probability x revenue) as "
        "rates until the level holds: see evaluation/per_cutoff_calibration.csv in the run"
    )


def _predictions(
    test: pd.DataFrame, y: np.ndarray, scores: dict[str, np.ndarray], value: np.ndarray
) -> pd.DataFrame:
    """The test rows' labels and the scores of the model and both baselines."""
    return pd.DataFrame(
        {
            "account_id": test["account_id"].astype(str).to_numpy(),
            "cutoff": test["cutoff"].to_numpy(),
            "y": y,
            "p": scores["test"],
            "p_logreg": scores["logreg"],
            **({"heuristic": scores["heuristic"]} if "heuristic" in scores else {}),
            "value": value,
        },
        index=test.index,
    )


def _fit_info(
    task: str,
    split: Split,
    best: int,
    manifest: Manifest,
    cal_info: dict[str, Any],
    metrics: dict[str, float],
) -> dict[str, Any]:
    """Facts about the fit, stored in the bundle (cutoffs, trees, calibration, metrics).

    Scoring rebuilds features with exactly the stored dataset settings (windows, event types,
    mode).
    """
    return {
        "task": task,
        "train_cutoffs": [str(c.date()) for c in split.train_cutoffs],
        "valid_cutoff": str(split.valid_cutoff.date()),
        "test_cutoff": str(split.test_cutoff.date()),
        "best_iteration": best,
        "horizon_days": manifest.horizon_days,
        "calibration": cal_info,
        "metrics": {k: v for k, v in metrics.items() if math.isfinite(v)},
        "dataset": {**manifest.params, "mode": manifest.mode},
        "event_types": list(manifest.event_types),
    }


def _means(train_rows: pd.DataFrame, bundle: ModelBundle) -> dict[str, float | None]:
    """Each numeric feature's mean over the training rows (None where it has no value)."""
    out: dict[str, float | None] = {}
    for name in bundle.reference:
        v = train_rows[name].to_numpy(dtype=float)
        out[name] = float(np.nanmean(v)) if np.isfinite(v).any() else None
    return out


def _empty_bundle(task: str, train_rows: pd.DataFrame, feats: list[Feature]) -> ModelBundle:
    """A bundle with its features, category levels and usual levels, before fitting."""
    categories = _category_levels(train_rows, feats)
    reference = {
        f.name: float(np.nanmedian(train_rows[f.name].to_numpy(dtype=float)))
        if train_rows[f.name].notna().any()
        else float("nan")
        for f in feats
        if f.name not in categories
    }
    return ModelBundle(task, None, None, feats, categories, reference)  # type: ignore[arg-type]


def test_set_problem(result: TaskResult, margin: float = 1.0) -> str | None:
    """Why a model's test cutoff cannot tell whether it is good enough to be champion, or None.

    A test cutoff with one class, metrics that cannot be computed, or a positive rate far outside
    what the training cutoffs saw (more than ``margin`` in log-odds beyond their range: an
    all-churn cutoff, or one where the labels' data ended) says nothing about the model.
    """
    task, split = result.task, result.split
    y = split.test[task].to_numpy(dtype=float)
    pos, n = int(y.sum()), len(y)
    if pos in (0, n):
        return f"the test cutoff {split.test_cutoff.date()} has one class only ({pos} of {n} rows)"
    if not math.isfinite(result.metrics.get("test.roc_auc", float("nan"))):
        return f"the test metrics of cutoff {split.test_cutoff.date()} cannot be computed"
    rates = split.train.groupby("cutoff", observed=True)[task].mean().to_numpy(dtype=float)

    def logit(p: np.ndarray | float) -> np.ndarray:
        q = np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4)
        return np.log(q / (1 - q))

    rate = pos / n
    lo, hi = float(logit(rates.min())), float(logit(rates.max()))
    if not lo - margin <= float(logit(rate)) <= hi + margin:
        return (
            f"the test cutoff {split.test_cutoff.date()} has a {task} rate of {rate:.1%}, far "
            f"outside the training cutoffs' {rates.min():.1%}-{rates.max():.1%}"
        )
    return None


def backtest(
    frame: pd.DataFrame,
    manifest: Manifest,
    params: TrainParams,
    folds: int,
    *,
    oracle: pd.DataFrame | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, pd.DataFrame]:
    """Repeat the split for the ``folds`` latest test cutoffs of each task.

    Folds whose split does not fit the data (too little history before their test cutoff) are
    skipped and named in the table's ``attrs["skipped"]``; only a task with no fold at all is an
    error.

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
    skipped = []
    for task in params.tasks:
        cutoffs = labeled_cutoffs(frame, task)
        tests = cutoffs[-folds:]
        rows = []
        for i, c in enumerate(tests, start=1):
            say(f"{task}: fold {i}/{len(tests)} (test {c.date()})")
            try:
                res = train_task(frame, manifest, task, params, oracle=oracle, test_cutoff=c)
            except TrainError as err:  # too little history before this test cutoff
                skipped.append(f"{task} fold {i} (test {c.date()}) skipped: {err}")
                continue
            rows.append({"fold": str(i), "test_cutoff": str(c.date()), **res.metrics})
        if not rows:
            raise TrainError(
                f"{task}: no backtest fold fits the data ("
                + "; ".join(s for s in skipped if s.startswith(task))
                + ")"
            )
        table = pd.DataFrame(rows)
        num = table.drop(columns=["fold", "test_cutoff"])
        mean = {"fold": "mean", "test_cutoff": "", **num.mean().to_dict()}
        std = {"fold": "std", "test_cutoff": "", **num.std(ddof=1).to_dict()}
        out[task] = pd.concat([table, pd.DataFrame([mean, std])], ignore_index=True)
        out[task].attrs["skipped"] = [s for s in skipped if s.startswith(task)]
    return out


def run_log(result: TaskResult) -> RunLog:
    """What to log for one trained task: metrics, split and calibration tags, tables.

    Tables: ``features.csv`` (the model's features with their manifest fields) and
    ``evaluation/test_predictions.csv`` (labels and the scores of the model and both baselines).
    """
    cal = result.calibration
    split = result.split
    return RunLog(
        metrics=dict(result.metrics),
        tags={
            "calibration.method": cal["calibration.method"],
            "calibration.choice": cal["calibration.choice"],
            "split.train_cutoffs": ",".join(str(c.date()) for c in split.train_cutoffs),
            "split.valid_cutoff": str(split.valid_cutoff.date()),
            "split.test_cutoff": str(split.test_cutoff.date()),
            "baseline_heuristic.recency": str(result.heuristic.get("recency")),
            "baseline_heuristic.activity": str(result.heuristic.get("activity")),
            "baseline_heuristic.direction": str(result.extra.get("heuristic_direction")),
            "baseline_logreg.calibration": "on the validation cutoff, as the model",
            "season": str(result.extra.get("season")),
        },
        tables={
            "evaluation/per_cutoff_calibration.csv": result.extra["per_cutoff"],
            "features.csv": pd.DataFrame([f.to_dict() for f in result.bundle.features]),
            "evaluation/test_predictions.csv": result.predictions,
        },
    )

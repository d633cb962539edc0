"""MLflow: runs, artifacts, the pyfunc model, the registry and champion promotion.

One parent run per ``churnlab train`` (params, params.yaml, dataset manifest, git commit, KPIs)
with a child run per task (metrics of the model and both baselines, SHAP and evaluation plots,
the feature list, the model). Each task's model is logged as an ``mlflow.pyfunc`` model wrapping
the booster and the calibrator, so ``mlflow.pyfunc.load_model("models:/churnlab-churn@champion")``
returns calibrated probabilities.

Promotion: the new version takes the alias ``champion`` unless the current champion, re-scored
on the new version's test rows, beats it on ``train.promotion_metric`` by more than
``train.promotion_tolerance``; otherwise it gets ``challenger``. The decision and its reason are
tags on the run and on the model version. Runs that raise are marked FAILED (MLflow's run
context does that on any exception).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from churnlab import evaluate
from churnlab.config import TrackingParams, TrainParams, flatten
from churnlab.errors import ChurnlabError

if TYPE_CHECKING:
    from churnlab.train import ModelBundle, TaskResult

DEFAULT_URI = "sqlite:///mlflow.db"
LOWER_IS_BETTER = {"log_loss", "brier", "ece"}


def resolve_uri(params: TrackingParams) -> str:
    """Tracking URI: ``tracking.uri`` in params, else MLFLOW_TRACKING_URI, else local SQLite."""
    return params.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Silence MLflow's info/warning chatter (progress bars, pickling notes) for CLI output."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def configure(params: TrackingParams) -> str:
    """Point MLflow (tracking and registry) at the store and select the experiment."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = resolve_uri(params)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(params.experiment)
    return uri


def registered_name(params: TrackingParams, task: str) -> str:
    """Registered model name of a task, e.g. ``churnlab-churn``."""
    return f"{params.registry_prefix}-{task}"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@contextlib.contextmanager
def parent_run(
    params: Any, params_path: Path | str | None, manifest: dict[str, Any], name: str
) -> Iterator[mlflow.ActiveRun]:
    """Start the parent run and log params, params.yaml, the manifest and the git commit."""
    with mlflow.start_run(run_name=name) as run:
        flat = {k: str(v)[:6000] for k, v in flatten(params).items()}
        mlflow.log_params(flat)
        path = Path(params_path) if params_path is not None else Path("params.yaml")
        if path.is_file():
            mlflow.log_artifact(str(path))
        else:
            mlflow.log_text(yaml.safe_dump(params.model_dump(mode="json")), "params.yaml")
        mlflow.log_dict(manifest, "dataset_manifest.json")
        commit = _git_commit()
        mlflow.set_tags(
            {
                "churnlab.command": name,
                "git_commit": commit or "unknown (not a git checkout)",
                "dataset.fingerprint": str(manifest.get("data_fingerprint", "")),
                "dataset.mode": str(manifest.get("mode", "")),
            }
        )
        yield run


@contextlib.contextmanager
def child_run(task: str) -> Iterator[mlflow.ActiveRun]:
    """A nested run for one task."""
    with mlflow.start_run(run_name=task, nested=True) as run:
        mlflow.set_tag("task", task)
        yield run


def log_kpis(params: Any) -> str:
    """Log retention KPIs into the active run via ``churnlab.kpis`` when that module exists.

    Returns a short status ("logged", or why not) that is also set as the tag ``kpis.status``.
    """
    from churnlab.load import load

    try:
        import churnlab.kpis as kpis_mod
    except ImportError:
        kpis: Any = None
    else:
        kpis = kpis_mod
    log_fn = getattr(kpis, "log_to_mlflow", None)
    if kpis is None or log_fn is None:
        status = "skipped: churnlab.kpis.log_to_mlflow not available"
    else:
        try:
            con = load(params.data)
            result = kpis.compute(con, params.kpis, params.data)
            with tempfile.TemporaryDirectory() as tmp:
                log_fn(result, Path(tmp))
            status = "logged"
        except ChurnlabError as err:
            status = f"skipped: {err}"[:500]
    mlflow.set_tag("kpis.status", status)
    return status


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}


def log_task(result: TaskResult, explanation: dict[str, Any], tmp: Path) -> None:
    """Log one task's metrics, tags and artifacts into the active (child) run."""
    mlflow.log_metrics(_finite(result.metrics))
    cal = result.calibration
    mlflow.set_tags(
        {
            "calibration.method": cal["calibration.method"],
            "calibration.choice": cal["calibration.choice"],
            "split.train_cutoffs": ",".join(str(c.date()) for c in result.split.train_cutoffs),
            "split.valid_cutoff": str(result.split.valid_cutoff.date()),
            "split.test_cutoff": str(result.split.test_cutoff.date()),
            "baseline_heuristic.recency": str(result.heuristic.get("recency")),
            "baseline_heuristic.activity": str(result.heuristic.get("activity")),
        }
    )
    plots = evaluate.plot_evaluation(result.predictions, tmp / "evaluation", result.task)
    for path in plots:
        mlflow.log_artifact(str(path), "evaluation")
    features = pd.DataFrame(result.bundle.features)
    features.to_csv(tmp / "features.csv", index=False)
    mlflow.log_artifact(str(tmp / "features.csv"))
    result.predictions.to_csv(tmp / "test_predictions.csv", index=False)
    mlflow.log_artifact(str(tmp / "test_predictions.csv"), "evaluation")
    for path in explanation["files"]:
        mlflow.log_artifact(str(path), "shap")


class ChurnlabModel(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]
    """pyfunc wrapper: feature frame in, calibrated probability of the task's label out."""

    def load_context(self, context: Any) -> None:
        """Read the bundle (booster, calibrator, features, category levels) from artifacts."""
        from churnlab.train import ModelBundle

        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        """Calibrated probabilities, one per input row."""
        return self.bundle.predict(pd.DataFrame(model_input))


def model_input(bundle: ModelBundle, frame: pd.DataFrame) -> pd.DataFrame:
    """The pyfunc input form of ``frame``: model features, categoricals as plain strings."""
    X = bundle.matrix(frame)
    for c in bundle.categories:
        X[c] = X[c].astype(object).where(X[c].notna(), None)
    return X


def log_model(bundle: ModelBundle, test: pd.DataFrame, tmp: Path) -> str:
    """Log the bundle as a pyfunc model (signature, input example) in the active run.

    Returns
    -------
    str
        The logged model's URI (for registration).
    """
    from mlflow.models import infer_signature

    bundle_dir = bundle.save(tmp / "bundle")
    example = model_input(bundle, test.head(5))
    signature = infer_signature(example, bundle.predict(test.head(5)))
    import lightgbm
    import sklearn

    with quiet_mlflow():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ChurnlabModel(),
            artifacts={"bundle": str(bundle_dir)},
            signature=signature,
            input_example=example,
            pip_requirements=[
                f"lightgbm=={lightgbm.__version__}",
                f"scikit-learn=={sklearn.__version__}",
                f"pandas=={pd.__version__}",
                f"numpy=={np.__version__}",
                "churnlab",
            ],
        )
    return str(info.model_uri)


def _champion(client: MlflowClient, name: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None


def promotion_decision(
    new_score: float, champion_score: float | None, metric: str, tolerance: float
) -> tuple[bool, str]:
    """Whether the new version becomes champion, and why (one sentence).

    The new version is promoted unless it is worse than the champion by more than ``tolerance``
    on ``metric`` (lower is better for log_loss, brier and ece; higher for the rest).
    """
    if champion_score is None or not math.isfinite(champion_score):
        return True, "no champion to compare with"
    lower = metric in LOWER_IS_BETTER
    worse_by = (new_score - champion_score) if lower else (champion_score - new_score)
    verdict = (
        f"{metric} {new_score:.4f} vs champion {champion_score:.4f} on the same test rows "
        f"(tolerance {tolerance})"
    )
    if not math.isfinite(new_score):
        return False, f"{metric} of the new version is undefined"
    if worse_by > tolerance:
        return False, f"worse than the champion: {verdict}"
    return True, f"not worse than the champion: {verdict}"


def register_and_promote(
    result: TaskResult, model_uri: str, tracking: TrackingParams, train: TrainParams
) -> dict[str, Any]:
    """Register the logged model and move ``champion`` or ``challenger`` to it.

    The current champion is loaded from the registry and re-scored on this run's test rows, so
    both versions are compared on the same cutoff and accounts.

    Returns
    -------
    dict
        ``model_name``, ``version``, ``decision`` ("champion" or "challenger"), ``reason``.
    """
    client = MlflowClient()
    name = registered_name(tracking, result.task)
    metric = train.promotion_metric
    key = f"test.{metric}"
    if key not in result.metrics:
        raise ChurnlabError(
            f"params.yaml: train.promotion_metric: {metric!r} is not a test metric; use one of "
            + ", ".join(sorted(k[5:] for k in result.metrics if k.startswith("test.")))
        )
    new_score = float(result.metrics[key])
    champion = _champion(client, name)
    with quiet_mlflow():
        version = mlflow.register_model(model_uri, name).version
    champion_score: float | None = None
    reason_prefix = ""
    if champion is not None:
        try:
            with quiet_mlflow():
                old = mlflow.pyfunc.load_model(f"models:/{name}@champion")
            cols = [c.name for c in old.metadata.get_input_schema().inputs]
            from churnlab.train import ModelBundle  # noqa: F401  (pyfunc needs it importable)

            test = result.split.test
            X = test[cols].copy()
            for c in cols:
                if isinstance(X[c].dtype, pd.CategoricalDtype):
                    X[c] = X[c].astype(object).where(X[c].notna(), None)
            p_old = np.asarray(old.predict(X), dtype=float).ravel()
            y = test[result.task].to_numpy(dtype=float)
            champion_score = evaluate.score_metrics(y, p_old)[metric]
        except (KeyError, MlflowException, ChurnlabError) as err:
            reason_prefix = f"champion v{champion.version} could not score the test rows ({err}); "
            champion_score = float("nan")
    promote, reason = promotion_decision(
        new_score, champion_score, metric, train.promotion_tolerance
    )
    if reason_prefix:
        promote, reason = False, reason_prefix + "kept it; promote by hand if intended"
    decision = "champion" if promote else "challenger"
    client.set_registered_model_alias(name, decision, version)
    tags = {
        "promotion.decision": decision,
        "promotion.reason": reason,
        "promotion.metric": metric,
        "promotion.new_score": f"{new_score:.6f}",
        "promotion.champion_version": str(champion.version) if champion is not None else "none",
        "promotion.champion_score": "" if champion_score is None else f"{champion_score:.6f}",
        "registered_model": f"{name}/{version}",
    }
    mlflow.set_tags(tags)
    for k in ("promotion.decision", "promotion.reason"):
        client.set_model_version_tag(name, version, k, tags[k])
    client.set_model_version_tag(name, version, "test_cutoff", str(result.split.test_cutoff.date()))
    return {"model_name": name, "version": str(version), "decision": decision, "reason": reason}


def log_backtest(tables: dict[str, pd.DataFrame]) -> None:
    """Log backtest folds (metric steps = fold number), mean and std into child runs."""
    for task, table in tables.items():
        with child_run(task):
            folds = table[~table["fold"].isin(["mean", "std"])]
            for step, (_, row) in enumerate(folds.iterrows(), start=1):
                values = row.drop(["fold", "test_cutoff"]).to_dict()
                mlflow.log_metrics(_finite({k: float(v) for k, v in values.items()}), step=step)
            for stat in ("mean", "std"):
                row = table[table["fold"] == stat].iloc[0].drop(["fold", "test_cutoff"])
                mlflow.log_metrics(_finite({f"{stat}.{k}": float(v) for k, v in row.items()}))
            mlflow.set_tag("backtest.test_cutoffs", ",".join(folds["test_cutoff"]))
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"backtest_{task}.csv"
                table.to_csv(path, index=False)
                mlflow.log_artifact(str(path))

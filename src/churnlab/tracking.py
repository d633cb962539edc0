"""MLflow, and only here: runs, what is logged into them, the pyfunc model and the registry.

Every other module describes what to log as a :class:`~churnlab.runlog.RunLog`; the pipeline
opens runs with :func:`start` and writes the logs with :func:`log`. Each task's model is logged as
an ``mlflow.pyfunc`` model wrapping the booster and the calibrator (:class:`ChurnlabModel`), so
``mlflow.pyfunc.load_model("models:/churnlab-churn@champion")`` returns calibrated probabilities.

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
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.tracking import MlflowClient

from churnlab import compare, evaluate
from churnlab.bundle import BundleError, ModelBundle, model_input
from churnlab.config import TrackingParams, TrainParams
from churnlab.errors import ChurnlabError
from churnlab.runlog import RunLog

DEFAULT_URI = "sqlite:///mlflow.db"
LOWER_IS_BETTER = {"log_loss", "brier", "ece"}
_PARAM_MAX = 6000  # MLflow's limit on a param value


class TrackingError(ChurnlabError):
    """Logging to the tracking store is not possible as asked."""


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
    """Point MLflow (tracking and registry) at the store and select the experiment.

    Runs left RUNNING by a process that died (``kill -9``, a power cut) are marked KILLED here,
    the next time any command opens the store: MLflow does not do that itself.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = resolve_uri(params)
    store = _absolute(uri)
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    # MLflow also exports the URI to the environment; keep the user's own value there, so that
    # the next command in this process resolves the store from params and cwd again.
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
    experiment = mlflow.set_experiment(params.experiment)
    reap_dead_runs(experiment.experiment_id)
    return uri


def _absolute(uri: str) -> str:
    """A relative SQLite store as an absolute path.

    MLflow caches stores by URI, so ``sqlite:///mlflow.db`` would otherwise keep pointing at the
    first working directory's file for the rest of the process.
    """
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def _process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot; '' if unknown).

    It tells a pid reused by another process apart from the one that opened the run.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not started or _process_start(pid) in ("", started)


def reap_dead_runs(experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of this host whose process is gone; returns their ids."""
    client = MlflowClient()
    host = socket.gethostname()
    reaped = []
    runs = client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
    )
    for run in runs:
        tags = run.data.tags
        if tags.get("churnlab.host") != host or "churnlab.pid" not in tags:
            continue  # another machine's run, or not ours: its owner may still be alive
        pid = int(tags["churnlab.pid"])
        if _alive(pid, tags.get("churnlab.pid_started", "")):
            continue
        client.set_tag(
            run.info.run_id,
            "churnlab.killed",
            f"process {pid} on {host} ended without closing the run; marked KILLED by a later "
            f"command (pid {os.getpid()})",
        )
        client.set_terminated(run.info.run_id, status="KILLED")
        reaped.append(run.info.run_id)
    return reaped


def registered_name(params: TrackingParams, task: str) -> str:
    """Registered model name of a task, e.g. ``churnlab-churn``."""
    return f"{params.registry_prefix}-{task}"


@contextlib.contextmanager
def start(name: str, *, nested: bool = False) -> Iterator[str]:
    """Open a run (nested in the active one if asked); yields its run id.

    Parameters
    ----------
    name : str
        Run name; it says what ran (``train 2025-10-01 churn+expansion``).
    nested : bool
        A child of the active run.
    """
    with mlflow.start_run(run_name=name, nested=nested) as run:
        mlflow.set_tags(
            {
                "churnlab.pid": str(os.getpid()),
                "churnlab.pid_started": _process_start(os.getpid()),
                "churnlab.host": socket.gethostname(),
            }
        )
        yield run.info.run_id


def rename(name: str) -> None:
    """Rename the active run (once what ran is known, e.g. the test cutoff)."""
    mlflow.set_tag("mlflow.runName", name)


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}


def log(entry: RunLog) -> None:
    """Write a :class:`~churnlab.runlog.RunLog` into the active run.

    Non-finite metrics are skipped (never logged as 0); params are cut to MLflow's length limit.

    Raises
    ------
    TrackingError
        If there is no active run.
    """
    if mlflow.active_run() is None:
        raise TrackingError(
            "logging needs an active MLflow run (open one with churnlab.tracking.start)"
        )
    if entry.params:
        mlflow.log_params({k: str(v)[:_PARAM_MAX] for k, v in entry.params.items()})
    metrics = _finite(entry.metrics)
    if metrics:
        mlflow.log_metrics(metrics)
    if entry.tags:
        mlflow.set_tags(entry.tags)
    if entry.tables or entry.texts:
        with tempfile.TemporaryDirectory(prefix="churnlab-log-") as tmp:
            root = Path(tmp)
            for path, frame in entry.tables.items():
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                frame.to_csv(root / path, index=False)
            for path, text in entry.texts.items():
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_text(text)
            mlflow.log_artifacts(str(root))  # keeps each file's relative path
    for folder, files in entry.files.items():
        for f in files:
            mlflow.log_artifact(str(f), folder or None)


def log_to_run(run_id: str, entry: RunLog) -> None:
    """Add ``entry`` to a finished run (the report to its scoring run), leaving it FINISHED."""
    with mlflow.start_run(run_id=run_id):
        log(entry)


def log_metrics_at(metrics: dict[str, float], step: int) -> None:
    """Log metrics at a step (backtest folds)."""
    mlflow.log_metrics(_finite(metrics), step=step)


# --------------------------------------------------------------------------------------------
# The pyfunc model


class ChurnlabModel(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]
    """pyfunc wrapper: feature frame in, calibrated probability of the task's label out."""

    def load_context(self, context: Any) -> None:
        """Read the bundle (booster, calibrator, features, category levels) from artifacts."""
        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        """Calibrated probabilities, one per input row.

        Raises
        ------
        MlflowException
            With the bundle's message (INVALID_PARAMETER_VALUE) when the rows cannot be scored
            (a season-aware model's missing or invalid cutoff): the scoring server answers 400
            with that message instead of a generic error and a stack trace.
        """
        try:
            return self.bundle.predict(pd.DataFrame(model_input))
        except BundleError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from err


def log_model(bundle: ModelBundle, test: pd.DataFrame) -> str:
    """Log the bundle as a pyfunc model (signature, input example) in the active run.

    Returns
    -------
    str
        The logged model's URI (for registration).
    """
    import lightgbm
    import sklearn
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory(prefix="churnlab-model-") as tmp:
        bundle_dir = bundle.save(Path(tmp) / "bundle")
        example = model_input(bundle, test.head(5))
        signature = infer_signature(example, bundle.predict(test.head(5)))
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


# --------------------------------------------------------------------------------------------
# Registry


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


def _champion_predictions(name: str, test: pd.DataFrame) -> np.ndarray:
    """The current champion's probabilities on the new version's test rows."""
    with quiet_mlflow():
        old = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    cols = [c.name for c in old.metadata.get_input_schema().inputs]
    X = test[cols].copy()
    for c in cols:
        if isinstance(X[c].dtype, pd.CategoricalDtype):
            X[c] = X[c].astype(object).where(X[c].notna(), None)
    if "cutoff" in cols:  # a season-aware champion takes the date as text (model_input)
        X["cutoff"] = pd.to_datetime(X["cutoff"]).dt.strftime("%Y-%m-%d").to_numpy()
    return np.asarray(old.predict(X), dtype=float).ravel()


def paired_note(
    y: np.ndarray, p_new: np.ndarray, p_champion: np.ndarray, metric: str, seed: int = 0
) -> str:
    """The new-minus-champion difference on ``metric`` with its 95% paired bootstrap interval.

    Empty for a metric the bootstrap does not cover (:data:`churnlab.compare.METRICS`) or rows
    of one class. The promotion rule itself stays the tolerance on the point values; the
    interval says whether a difference is more than the noise of the test cutoff.
    """
    if metric not in compare.METRICS:
        return ""
    m = compare.paired_differences(y, p_new, {"champion": (p_champion, True)}, seed=seed)
    key = f"vs_champion.{metric}"
    if f"{key}_lo" not in m:
        return ""
    word = {"ahead": "better", "behind": "worse"}.get(
        compare.verdict(m, "champion", metric), "within noise"
    )
    return (
        f"; new minus champion {m[f'{key}_diff']:+.4f}, 95% interval {m[f'{key}_lo']:+.4f} to "
        f"{m[f'{key}_hi']:+.4f} ({word})"
    )


def _one_line(err: Exception, limit: int = 240) -> str:
    """An error's gist on one line: MLflow's schema errors embed the whole input frame."""
    text = str(err)
    if "Error: " in text:  # "Failed to enforce schema of data '<frame>' with ... Error: <why>"
        text = text.rsplit("Error: ", 1)[1]
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Decision:
    """Whether a new version becomes champion, and the facts behind it."""

    promote: bool
    reason: str
    metric: str
    new_score: float
    champion_version: str | None
    champion_score: float | None

    @property
    def alias(self) -> str:
        """The alias the new version gets: ``champion`` or ``challenger``."""
        return "champion" if self.promote else "challenger"


def decide(
    task: str,
    metrics: dict[str, float],
    test: pd.DataFrame,
    tracking: TrackingParams,
    train: TrainParams,
    blocked: str | None = None,
    p_new: np.ndarray | None = None,
) -> Decision:
    """Compare a new model with the current champion on the same test rows.

    The current champion is loaded from the registry and re-scored on the new version's test
    rows, so both are judged on the same cutoff and accounts.

    Parameters
    ----------
    task : str
        The task (label column of ``test``).
    metrics : dict
        The new model's metrics (``test.<metric>``).
    test : DataFrame
        The test rows (features and the label).
    tracking, train : TrackingParams, TrainParams
        The registry prefix; the promotion metric and tolerance.
    blocked : str, optional
        Why the new model must not be champion whatever its score (a degenerate test set).
    p_new : ndarray, optional
        The new model's probabilities on ``test``: the reason then gives the difference from
        the champion with its paired bootstrap interval (:func:`paired_note`).
    """
    name = registered_name(tracking, task)
    metric = train.promotion_metric
    key = f"test.{metric}"
    if key not in metrics:
        raise ChurnlabError(
            f"params.yaml: train.promotion_metric: {metric!r} is not a test metric; use one of "
            + ", ".join(sorted(k[5:] for k in metrics if k.startswith("test.")))
        )
    new_score = float(metrics[key])
    champion = _champion(MlflowClient(), name)
    champion_score: float | None = None
    reason_prefix = note = ""
    if champion is not None:
        try:
            p_old = _champion_predictions(name, test)
            y = test[task].to_numpy(dtype=float)
            champion_score = float(evaluate.score_metrics(y, p_old)[metric])
            if p_new is not None:
                note = paired_note(y, p_new, p_old, metric)
        except (KeyError, MlflowException, ChurnlabError) as err:
            reason_prefix = (
                f"champion v{champion.version} could not score the test rows ({_one_line(err)}); "
            )
            champion_score = float("nan")
    promote, reason = promotion_decision(
        new_score, champion_score, metric, train.promotion_tolerance
    )
    reason += note
    if reason_prefix:
        promote, reason = False, reason_prefix + "kept it; promote by hand if intended"
    if blocked:
        promote, reason = False, f"not promoted: {blocked}"
    return Decision(
        promote,
        reason,
        metric,
        new_score,
        None if champion is None else str(champion.version),
        champion_score,
    )


def register(model_uri: str, tracking: TrackingParams, task: str) -> str:
    """Register a logged model as a new version (no alias yet); returns the version."""
    with quiet_mlflow():
        return str(mlflow.register_model(model_uri, registered_name(tracking, task)).version)


def publish(
    tracking: TrackingParams, task: str, version: str, decision: Decision, test_cutoff: str
) -> dict[str, Any]:
    """Move the decision's alias to ``version`` and record the decision on run and version.

    Returns
    -------
    dict
        ``model_name``, ``version``, ``decision`` ("champion" or "challenger"), ``reason``.
    """
    client = MlflowClient()
    name = registered_name(tracking, task)
    client.set_registered_model_alias(name, decision.alias, version)
    tags = {
        "promotion.decision": decision.alias,
        "promotion.reason": decision.reason,
        "promotion.metric": decision.metric,
        "promotion.new_score": f"{decision.new_score:.6f}",
        "promotion.champion_version": decision.champion_version or "none",
        "promotion.champion_score": ""
        if decision.champion_score is None
        else f"{decision.champion_score:.6f}",
        "registered_model": f"{name}/{version}",
    }
    mlflow.set_tags(tags)
    for k in ("promotion.decision", "promotion.reason"):
        client.set_model_version_tag(name, version, k, tags[k])
    client.set_model_version_tag(name, version, "test_cutoff", test_cutoff)
    return {"model_name": name, "version": version, "decision": decision.alias,
            "reason": decision.reason}  # fmt: skip


def champion_version(tracking: TrackingParams, task: str) -> tuple[str, str, str] | None:
    """The registered name, version and run id of a task's champion, or None if it has none."""
    name = registered_name(tracking, task)
    mv = _champion(MlflowClient(), name)
    return None if mv is None else (name, str(mv.version), str(mv.run_id))


def spark_udf(spark: Any, name: str, version: str) -> Any:
    """A registered version as a Spark UDF: feature columns in, calibrated probability out.

    ``mlflow.pyfunc.spark_udf`` of ``models:/<name>/<version>`` (the URI ``score`` loads the
    champion from) in the current Python environment (``env_manager="local"``: the executors
    run the churnlab installed beside pyspark). Call it on a struct of the model's input
    columns (:func:`churnlab.bundle.model_input` names and types).

    Raises
    ------
    TrackingError
        If the registry cannot give the model (no such version, unreadable artifacts).
    """
    uri = f"models:/{name}/{version}"
    try:
        with quiet_mlflow():
            return mlflow.pyfunc.spark_udf(spark, uri, result_type="double", env_manager="local")
    except (MlflowException, OSError) as err:
        raise TrackingError(
            f"cannot load {uri} as a Spark UDF ({str(err).splitlines()[0]}): check the "
            "registry (`mlflow ui`) or retrain with `churnlab train`"
        ) from None


def download_bundle(name: str, version: str, out: Path) -> ModelBundle:
    """A registered version's bundle, from its logged model's artifacts."""
    with quiet_mlflow():
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=str(out)
            )
        )
    found = [p.parent for p in local.rglob("bundle.json")]
    if not found:
        raise TrackingError(f"{name} v{version} has no churnlab bundle in its model artifacts")
    return ModelBundle.load(found[0])

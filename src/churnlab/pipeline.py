"""The pipeline layer: composes the stages and owns the MLflow run lifecycle.

::

    load + validate -> dataset (spine, features, labels) -> train -> explain -> kpis

Each function here is one command of the CLI without its terminal output: it loads what the
stage needs, calls the stage functions (which take their own params section and plain inputs and
return typed results), opens and closes MLflow runs through :mod:`churnlab.tracking` and writes
outputs atomically. Stages never call each other's orchestration, open runs or print.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import yaml

from churnlab import (
    backscore,
    dataset,
    evaluate,
    explain,
    kpi_outputs,
    kpi_plots,
    kpis,
    tracking,
    train,
)
from churnlab.atomic import atomic_dir
from churnlab.bundle import ModelBundle
from churnlab.config import DataParams, KpiParams, Params, TrackingParams, flatten
from churnlab.coverage import coverage_warnings
from churnlab.errors import ChurnlabError
from churnlab.load import last_rows, load
from churnlab.manifest import Manifest
from churnlab.runlog import RunLog
from churnlab.sources import mask_password

ProgressFn = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


# --------------------------------------------------------------------------------------------
# build-dataset


@dataclass(frozen=True)
class DatasetRun:
    """What :func:`build_dataset` produced."""

    out: Path
    manifest: Manifest
    warnings: dict[str, str]
    coverage: tuple[str, ...] = ()


def build_dataset(
    params: Params,
    *,
    source: str | None = None,
    out: Path | str | None = None,
    progress: ProgressFn | None = None,
) -> DatasetRun:
    """Load the data, build the training set and write it (``churnlab build-dataset``).

    Parameters
    ----------
    params : Params
        All of params.yaml (the ``data`` and ``dataset`` sections are used).
    source : str, optional
        Overrides ``data.source``.
    out : Path, optional
        Overrides ``dataset.out``.
    progress : callable, optional
        Called with a short message as each stage starts.

    Returns
    -------
    DatasetRun
        The folder written, the manifest and the per-task warnings of
        :func:`churnlab.dataset.check_sufficiency` (the set is written either way).
    """
    say = progress or _quiet
    src = source or params.data.source
    say("loading and validating the data")
    con = load(params.data, src)
    try:
        coverage = coverage_warnings(
            last_rows(con), params.data.coverage_gap_days, params.data.as_of
        )
        frame, manifest = dataset.build(
            con, params.dataset, params.data, source=mask_password(src), progress=say
        )
    finally:
        con.close()
    target = Path(out if out is not None else params.dataset.out)
    say(f"writing {target}")
    dataset.write(frame, manifest, target)
    return DatasetRun(
        target, manifest, dataset.check_sufficiency(manifest, params.dataset), tuple(coverage)
    )


# --------------------------------------------------------------------------------------------
# train / backtest


def read_dataset(dataset_dir: Path | str) -> tuple[pd.DataFrame, Manifest]:
    """Read a training set, with the CLI's hint when it is missing."""
    path = Path(dataset_dir)
    if not path.exists():
        raise train.TrainError(
            f"training set {path} not found: run `churnlab build-dataset` first "
            "(or pass --dataset DIR)"
        )
    return dataset.read(path)


def _oracle_for(source: str, manifest: Manifest) -> pd.DataFrame | None:
    # The generator's probabilities are for its default 90-day horizon only.
    if manifest.horizon_days != 90:
        return None
    return evaluate.load_oracle(source)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _source_of(params: Params, manifest: Manifest) -> str:
    """The data source a training set was built from (``data.source`` if it is the same one).

    The manifest holds the source with any password masked; ``data.source`` holds the real one
    when it is the same database, so that is the one to open.
    """
    if not manifest.source or manifest.source == mask_password(params.data.source):
        return params.data.source
    return manifest.source


def _parent_log(
    params: Params, params_path: Path | str | None, manifest: Manifest, command: str
) -> RunLog:
    path = Path(params_path) if params_path is not None else Path("params.yaml")
    text = path.read_text() if path.is_file() else yaml.safe_dump(params.model_dump(mode="json"))
    import json

    return RunLog(
        params=flatten(params),
        tags={
            "churnlab.command": command,
            "git_commit": _git_commit() or "unknown (not a git checkout)",
            "dataset.fingerprint": manifest.data_fingerprint,
            "dataset.mode": manifest.mode,
            "dataset.source": manifest.source,
        },
        texts={
            "params.yaml": text,
            "dataset_manifest.json": json.dumps(manifest.to_dict(), indent=2),
        },
    )


def _latest_labeled(manifest: Manifest) -> str:
    labeled = [r["cutoff"][:10] for r in manifest.per_cutoff if r.get("labeled")]
    return labeled[-1] if labeled else "unlabeled"


def _log_kpis(params: Params, manifest: Manifest) -> str:
    """Log the retention KPIs of the data the training set was built from into the active run.

    Returns a short status ("logged", or why not), also set as the tag ``kpis.status``.
    """
    source = _source_of(params, manifest)
    try:
        con = load(params.data, source)
        try:
            result = kpis.compute(con, params.kpis, params.data)
            status = "logged"
            if manifest.data_fingerprint and dataset.fingerprint(con) != manifest.data_fingerprint:
                status = "logged (the data changed since the training set was built)"
        finally:
            con.close()
        with tempfile.TemporaryDirectory(prefix="churnlab-kpis-") as tmp:
            files = kpi_plots.plot(result, Path(tmp) / "plots")
            tracking.log(kpi_outputs.run_log(result, files))
    except ChurnlabError as err:
        status = f"skipped: {err}"[:500]
    tracking.log(RunLog(tags={"kpis.status": status}))
    return status


def _task_log(
    params: Params, result: train.TaskResult, tmp: Path, progress: ProgressFn
) -> dict[str, Any]:
    """Explain one task, log it into the active (child) run, log and register its model."""
    progress(f"{result.task}: explaining")
    expl = explain.explain_task(result.bundle, result.split.test, params.explain, tmp)
    progress(f"{result.task}: logging to MLflow")
    plots = evaluate.plot_evaluation(result.predictions, tmp / "evaluation", result.task)
    entry = train.run_log(result)
    tracking.log(
        RunLog(
            params={
                **flatten(params.train, "train."),
                **flatten(params.explain, "explain."),
                "task": result.task,
            },
            metrics=entry.metrics,
            tags=entry.tags,
            tables=entry.tables,
            files={"evaluation": plots, "shap": expl["files"]},
        )
    )
    model_uri = tracking.log_model(result.bundle, result.split.test)
    progress(f"{result.task}: registry")
    return tracking.register_and_promote(
        result.task,
        result.metrics,
        result.split.test,
        model_uri,
        params.tracking,
        params.train,
    )


def train_frame(
    params: Params,
    frame: pd.DataFrame,
    manifest: Manifest,
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
    say = progress or _quiet
    summary: dict[str, Any] = {"tasks": {}}
    bundles: dict[str, ModelBundle] = {}
    tracking.configure(params.tracking)
    name = f"train {_latest_labeled(manifest)} {'+'.join(params.train.tasks)}"
    with tracking.start(name) as run_id:
        tracking.log(_parent_log(params, params_path, manifest, "train"))
        summary["run_id"] = run_id
        summary["kpis"] = "not requested"
        if log_kpis:
            say("retention KPIs")
            summary["kpis"] = _log_kpis(params, manifest)
        for task in params.train.tasks:
            say(f"{task}: training")
            with tracking.start(task, nested=True) as child_id:
                tracking.log(RunLog(tags={"task": task}))
                result = train.train_task(frame, manifest, task, params.train, oracle=oracle)
                tracking.rename(f"{task} test {result.split.test_cutoff.date()}")
                with tempfile.TemporaryDirectory(prefix="churnlab-train-") as tmp:
                    decision = _task_log(params, result, Path(tmp), say)
                bundles[task] = result.bundle
                summary["tasks"][task] = {
                    "run_id": child_id,
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


def save_bundles(bundles: dict[str, ModelBundle], out: Path | str) -> dict[str, Path]:
    """Save each task's bundle to ``<out>/<task>/`` atomically."""
    paths = {}
    for task, bundle in bundles.items():
        with atomic_dir(Path(out) / task) as tmp:
            bundle.save(tmp)
        paths[task] = Path(out) / task
    return paths


def train_models(
    params: Params,
    *,
    params_path: Path | str | None = None,
    dataset_dir: Path | str | None = None,
    progress: ProgressFn | None = None,
    log_kpis: bool = True,
) -> dict[str, Any]:
    """``churnlab train``: read the training set, then :func:`train_frame`.

    Parameters
    ----------
    params : Params
        All of params.yaml.
    params_path : Path, optional
        The params.yaml file, logged as an artifact.
    dataset_dir : Path, optional
        Training set folder (default ``dataset.out``).
    progress : callable, optional
        Called with a short message at each step.
    log_kpis : bool
        Also log the retention KPIs of the data the training set was built from.
    """
    ddir = Path(dataset_dir) if dataset_dir is not None else Path(params.dataset.out)
    frame, manifest = read_dataset(ddir)
    summary = train_frame(
        params,
        frame,
        manifest,
        oracle=_oracle_for(_source_of(params, manifest), manifest),
        params_path=params_path,
        progress=progress,
        log_kpis=log_kpis,
    )
    summary["dataset"] = str(ddir)
    return summary


def backtest(
    params: Params,
    folds: int,
    *,
    params_path: Path | str | None = None,
    dataset_dir: Path | str | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """``churnlab backtest``: :func:`churnlab.train.backtest`, logged to MLflow.

    Returns
    -------
    dict
        ``tables`` (task -> per-fold table), ``run_id`` and ``tracking_uri``.
    """
    ddir = Path(dataset_dir) if dataset_dir is not None else Path(params.dataset.out)
    frame, manifest = read_dataset(ddir)
    oracle = _oracle_for(_source_of(params, manifest), manifest)
    tracking.configure(params.tracking)
    name = f"backtest {folds} folds {'+'.join(params.train.tasks)}"
    with tracking.start(name) as run_id:
        tracking.log(_parent_log(params, params_path, manifest, "backtest"))
        tables = train.backtest(
            frame, manifest, params.train, folds, oracle=oracle, progress=progress
        )
        for task, table in tables.items():
            with tracking.start(task, nested=True):
                _log_backtest(task, table)
    return {
        "tables": tables,
        "run_id": run_id,
        "tracking_uri": tracking.resolve_uri(params.tracking),
    }


def _log_backtest(task: str, table: pd.DataFrame) -> None:
    """Folds as metric steps (fold number), mean and std, and the table, in the active run."""
    folds = table[~table["fold"].isin(["mean", "std"])]
    for step, (_, row) in enumerate(folds.iterrows(), start=1):
        values = row.drop(["fold", "test_cutoff"]).to_dict()
        tracking.log_metrics_at({k: float(v) for k, v in values.items()}, step)
    summary: dict[str, float] = {}
    for stat in ("mean", "std"):
        row = table[table["fold"] == stat].iloc[0].drop(["fold", "test_cutoff"])
        summary.update({f"{stat}.{k}": float(v) for k, v in row.items()})
    tracking.log(
        RunLog(
            metrics=summary,
            tags={"task": task, "backtest.test_cutoffs": ",".join(folds["test_cutoff"])},
            tables={f"backtest_{task}.csv": table},
        )
    )


# --------------------------------------------------------------------------------------------
# kpis


@dataclass(frozen=True)
class KpiRun:
    """What :func:`compute_kpis` produced."""

    result: dict[str, pd.DataFrame]
    out: Path
    files: list[Path]
    plots: list[Path]
    run_id: str | None
    notes: tuple[str, ...] = ()


def _predicted_vs_realised(
    dataset_dir: Path, models_dir: Path, progress: ProgressFn
) -> tuple[dict[str, pd.DataFrame], str | None]:
    bundle_dir = models_dir / "churn"
    if not (bundle_dir / "bundle.json").is_file():
        return {}, f"predicted vs realised: skipped (no churn model in {bundle_dir})"
    if not (dataset_dir / "manifest.json").is_file():
        return {}, f"predicted vs realised: skipped (no training set in {dataset_dir})"
    progress("scoring the training set: predicted vs realised churn")
    frame, _manifest = dataset.read(dataset_dir)
    return backscore.predicted_vs_realised(frame, ModelBundle.load(bundle_dir)), None


@contextlib.contextmanager
def _connection(
    data: DataParams, source: str | None, con: duckdb.DuckDBPyConnection | None, say: ProgressFn
) -> Iterator[duckdb.DuckDBPyConnection]:
    if con is not None:
        yield con
        return
    say("loading and validating the data")
    own = load(data, source)
    try:
        yield own
    finally:
        own.close()


def compute_kpis(
    params: KpiParams,
    data: DataParams,
    tracking_params: TrackingParams | None = None,
    *,
    source: str | None = None,
    log: bool = False,
    con: duckdb.DuckDBPyConnection | None = None,
    dataset_dir: Path | str | None = None,
    models_dir: Path | str | None = None,
    progress: ProgressFn | None = None,
) -> KpiRun:
    """Load the data, compute the KPIs, write tables and plots to ``params.out``, optionally log.

    The output folder is replaced atomically: a failed run leaves the previous output in place.

    Parameters
    ----------
    params : KpiParams
        The ``kpis`` section.
    data : DataParams
        The ``data`` section (source, column mapping, as-of).
    tracking_params : TrackingParams, optional
        The ``tracking`` section; used when ``log`` is true.
    source : str, optional
        Overrides ``data.source``.
    log : bool
        Create an MLflow run (experiment ``tracking.experiment``) and log the KPIs into it.
    con : duckdb.DuckDBPyConnection, optional
        An already loaded connection (``source`` is then ignored).
    dataset_dir, models_dir : Path or str, optional
        The training set and the models folder: when both hold what ``churnlab build-dataset``
        and ``churnlab train`` write, the result also gets predicted vs realised churn for the
        churn model (else a note says why not).
    progress : callable, optional
        Called with a short label before each step.
    """
    step = progress or _quiet
    with _connection(data, source, con, step) as c:
        result = kpis.compute(c, params, data, progress=step)
    notes: list[str] = []
    if dataset_dir is not None and models_dir is not None:
        pvr, note = _predicted_vs_realised(Path(dataset_dir), Path(models_dir), step)
        result.update(pvr)
        notes += [note] if note else []
    out = Path(params.out)
    with atomic_dir(out) as tmp:
        step("writing tables")
        kpi_outputs.write(result, tmp)
        step("drawing plots")
        kpi_plots.plot(result, tmp / "plots")
    files = sorted(p for p in out.iterdir() if p.is_file())
    plots = sorted((out / "plots").glob("*.png"))
    run_id = None
    if log:
        step("logging to MLflow")
        # The same store and experiment as `churnlab train`.
        tracking.configure(tracking_params or TrackingParams())
        with tracking.start(f"kpis {params.period}") as run_id:
            tracking.log(RunLog(params=flatten(params, "kpis."), tags={"churnlab.command": "kpis"}))
            tracking.log(kpi_outputs.run_log(result, plots))
    return KpiRun(
        result=result, out=out, files=files, plots=plots, run_id=run_id, notes=tuple(notes)
    )

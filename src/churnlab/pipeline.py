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
import time
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
from churnlab.config import (
    DataParams,
    KpiParams,
    Params,
    TrackingParams,
    TrainParams,
    flatten,
)
from churnlab.coverage import coverage_warnings
from churnlab.errors import ChurnlabError
from churnlab.load import last_rows, load, subscription_end_notes
from churnlab.manifest import Manifest
from churnlab.runlog import RunLog
from churnlab.sources import mask_password

ProgressFn = Callable[[str], None]


def stopwatch(timings: dict[str, float]) -> Callable[[str], None]:
    """``lap(name)``: record in ``timings`` the seconds since the previous lap (or this call)."""
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    return lap


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
        All of params.yaml (the ``data`` and ``dataset`` sections are used, and ``spark``
        when ``dataset.engine`` is ``spark``).
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
    target = Path(out if out is not None else params.dataset.out)
    if params.dataset.engine == "spark":
        manifest, coverage = _build_on_spark(params, src, target, say)
    else:
        say("loading and validating the data")
        con = load(params.data, src)
        try:
            coverage = coverage_warnings(
                last_rows(con), params.data.coverage_gap_days, params.data.as_of
            ) + subscription_end_notes(con, params.data)
            frame, manifest = dataset.build(
                con, params.dataset, params.data, source=mask_password(src), progress=say
            )
            coverage += dataset.unused_columns(dataset.account_types(con), manifest, params)
        finally:
            con.close()
        say(f"writing {target}")
        dataset.write(frame, manifest, target)
    warnings = dataset.check_sufficiency(manifest, params.dataset)
    split = dataset.split_warning(manifest)
    if split:
        warnings = {"split": split, **warnings}
    return DatasetRun(target, manifest, warnings, tuple(coverage))


def _build_on_spark(
    params: Params, src: str, target: Path, say: ProgressFn
) -> tuple[Manifest, list[str]]:
    """The training set on Spark (``dataset.engine: spark``), from Parquet at ``src``.

    Written to ``target`` by the executors (:func:`churnlab.spark_dataset.write`), never
    collected. The tables' contract shape is checked; the full validation is
    ``churnlab validate``.
    """
    # imported here: the embedded path never needs pyspark or Java
    from churnlab import spark_dataset, spark_engine

    say(f"starting Spark ({params.spark.master})")
    with spark_engine.session_scope(params.spark) as spark:
        say("reading the data (Spark)")
        tables = spark_engine.read_tables(spark, params.data, src)
        coverage = coverage_warnings(
            tables.last_rows(), params.data.coverage_gap_days, params.data.as_of
        ) + list(tables.notes)
        manifest = spark_dataset.write(
            spark,
            tables,
            params.dataset,
            params.data,
            target,
            source=mask_password(src),
            progress=say,
        )
        types = spark_dataset.account_types(tables)
        coverage += dataset.unused_columns(types, manifest, params)
    return manifest, coverage


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

    # Passwords never reach the tracking store: not in params, not in the params.yaml copy.
    return RunLog(
        params={
            k: mask_password(v) if isinstance(v, str) else v for k, v in flatten(params).items()
        },
        tags={
            "churnlab.command": command,
            "git_commit": _git_commit() or "unknown (not a git checkout)",
            "dataset.fingerprint": manifest.data_fingerprint,
            "dataset.mode": manifest.mode,
            "dataset.source": manifest.source,
        },
        texts={
            "params.yaml": mask_password(text),
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
            if dataset.data_changed(con, manifest):
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


def _log_task(params: Params, result: train.TaskResult, tmp: Path, say: ProgressFn) -> str:
    """Explain one task and log it into the active (child) run; returns the logged model's URI."""
    say(f"{result.task}: explaining")
    expl = explain.explain_task(result.bundle, result.split.test, params.explain, tmp)
    say(f"{result.task}: logging to MLflow")
    plots = evaluate.plot_evaluation(result.predictions, tmp / "evaluation", result.task)
    plots += evaluate.plot_comparison(result.metrics, tmp / "evaluation", result.task)
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
    return tracking.log_model(result.bundle, result.split.test)


def _register(
    params: Params, result: train.TaskResult, model_uri: str, run_id: str, say: ProgressFn
) -> dict[str, Any]:
    """Decide, register, save the champion's bundle, then move the alias (in that order).

    ``models/<task>/`` only ever holds the champion's bundle, stamped with its registered name,
    version and run id. It is written after the version is registered and before the alias
    moves, so a crash in between leaves a bundle that does not match the champion, which every
    reader detects and repairs from the registry (:func:`champion_bundle`).
    """
    task = result.task
    say(f"{task}: registry")
    problem = train.test_set_problem(result)
    decision = tracking.decide(
        task, result.metrics, result.split.test, params.tracking, params.train, blocked=problem,
        p_new=result.predictions["p"].to_numpy(dtype=float),
    )  # fmt: skip
    version = tracking.register(model_uri, params.tracking, task)
    if decision.promote:
        result.bundle.info["registry"] = {
            "name": tracking.registered_name(params.tracking, task),
            "version": version,
            "run_id": run_id,
        }
        save_bundles({task: result.bundle}, params.train.out)
    return tracking.publish(
        params.tracking, task, version, decision, str(result.split.test_cutoff.date())
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

    A task that cannot be trained (no positives at all, too few, or no split that fits) is
    skipped with the reason; the other tasks still train, register and are summarised.

    Returns
    -------
    dict
        ``tasks`` (per task: run id, metrics, calibration, test cutoff, registered model name,
        version, promotion decision and reason), ``skipped`` (task -> reason), ``run_id``,
        ``models_dir``, ``tracking_uri``, ``kpis`` (status).
    """
    say = progress or _quiet
    summary: dict[str, Any] = {"tasks": {}, "skipped": {}, "models_dir": str(params.train.out)}
    cannot = {
        t: dataset.label_absent(manifest, t)
        or train.split_problem(frame, manifest, t, params.train.purge)
        for t in params.train.tasks
    }
    if all(cannot.values()):  # nothing to train: say so before opening runs or computing KPIs
        raise train.TrainError(
            "no task can be trained on this training set: "
            + "; ".join(f"{t}: {r}" for t, r in cannot.items())
            + "; "
            + dataset.horizon_hint(manifest)
        )
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
            reason = cannot[task]
            try:
                result = (
                    None
                    if reason
                    else train.train_task(frame, manifest, task, params.train, oracle=oracle)
                )
            except train.TrainError as err:
                reason = str(err)
            if result is None:
                summary["skipped"][task] = reason
                tracking.log(RunLog(tags={f"skipped.{task}": str(reason)[:5000]}))
                continue
            summary["tasks"][task] = _train_run(params, result, say)
    summary["tracking_uri"] = tracking.resolve_uri(params.tracking)
    return summary


def _train_run(params: Params, result: train.TaskResult, say: ProgressFn) -> dict[str, Any]:
    """The child run of one trained task: logs, model, registry; its summary entry."""
    with tracking.start(
        f"{result.task} test {result.split.test_cutoff.date()}", nested=True
    ) as cid:
        found = train.task_warnings(result)
        tracking.log(RunLog(tags={"task": result.task, **found}))
        # scoring with this model repeats them (actions._score_models)
        result.bundle.info.update(found)
        warning = "; and ".join(found.values()) or None
        with tempfile.TemporaryDirectory(prefix="churnlab-train-") as tmp:
            model_uri = _log_task(params, result, Path(tmp), say)
        decision = _register(params, result, model_uri, cid, say)
    return {
        "run_id": cid,
        "metrics": result.metrics,
        "calibration": result.calibration["calibration.method"],
        "season": "on" if result.bundle.season is not None else "off",
        "test_cutoff": str(result.split.test_cutoff.date()),
        "warning": warning,
        **decision,
    }


def champion_bundle(params: Params, task: str) -> tuple[ModelBundle, str | None]:
    """The champion of ``task`` as the registry says, and a note if ``models/`` had to be repaired.

    The registry is the truth: ``models/<task>/`` is a local copy of the champion's bundle. When
    it is missing or holds another version (a crash between saving and moving the alias, or an
    older churnlab), the champion's bundle is fetched from its logged model and written there.

    Raises
    ------
    ChurnlabError
        If the task has no champion.
    """
    tracking.configure(params.tracking)
    found = tracking.champion_version(params.tracking, task)
    name = tracking.registered_name(params.tracking, task)
    if found is None:
        raise ChurnlabError(
            f"no champion for {name} in the registry at {tracking.resolve_uri(params.tracking)}: "
            "run `churnlab train` first (or check tracking.uri / tracking.registry_prefix)"
        )
    _, version, run_id = found
    local = Path(params.train.out) / task
    if (local / "bundle.json").is_file():
        bundle = ModelBundle.load(local)
        reg = bundle.info.get("registry", {})
        if reg.get("name") == name and str(reg.get("version")) == version:
            return bundle, None
        held = f"v{reg['version']}" if reg.get("version") else "an unregistered bundle"
    else:
        held = "nothing"
    with tempfile.TemporaryDirectory(prefix="churnlab-champion-") as tmp:
        bundle = tracking.download_bundle(name, version, Path(tmp))
    bundle.info["registry"] = {"name": name, "version": version, "run_id": run_id}
    save_bundles({task: bundle}, params.train.out)
    return bundle, f"{local} held {held}, the champion is {name} v{version}: refreshed it"


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
    dataset.require_same_settings(manifest, params.dataset, ddir)  # before any MLflow run
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
    dataset.require_same_settings(manifest, params.dataset, ddir)  # before any MLflow run
    oracle = _oracle_for(_source_of(params, manifest), manifest)
    tracking.configure(params.tracking)
    name = f"backtest {folds} folds {'+'.join(params.train.tasks)}"
    with tracking.start(name) as run_id:
        tracking.log(_parent_log(params, params_path, manifest, "backtest"))
        tables = train.backtest(
            frame, manifest, params.train, folds, oracle=oracle, progress=progress
        )
        skipped = [note for t in tables.values() for note in t.attrs.get("skipped", [])]
        for task, table in tables.items():
            with tracking.start(task, nested=True):
                _log_backtest(task, table)
        if skipped:
            tracking.log(RunLog(tags={"backtest.skipped": " | ".join(skipped)[:5000]}))
    return {
        "tables": tables,
        "skipped": skipped,
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
    dataset_dir: Path,
    models_dir: Path,
    tracking_params: TrackingParams | None,
    progress: ProgressFn,
) -> tuple[dict[str, pd.DataFrame], str | None]:
    bundle_dir = models_dir / "churn"
    if not (bundle_dir / "bundle.json").is_file():
        return {}, f"predicted vs realised: skipped (no churn model in {bundle_dir})"
    if not (dataset_dir / "manifest.json").is_file():
        return {}, f"predicted vs realised: skipped (no training set in {dataset_dir})"
    bundle, note = ModelBundle.load(bundle_dir), None
    if tracking_params is not None:
        # The registry's champion, not whatever the folder holds (repaired if they differ).
        params = Params(tracking=tracking_params, train=TrainParams(out=str(models_dir)))
        try:
            bundle, note = champion_bundle(params, "churn")
        except ChurnlabError as err:
            note = f"predicted vs realised: the local churn bundle, not a champion ({err})"
    progress("scoring the training set: predicted vs realised churn")
    frame, _manifest = dataset.read(dataset_dir)
    return backscore.predicted_vs_realised(frame, bundle), note


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
        pvr, note = _predicted_vs_realised(
            Path(dataset_dir), Path(models_dir), tracking_params, step
        )
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

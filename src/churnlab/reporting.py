"""The ``report`` command: one HTML page for customer success and marketing.

Part of the pipeline layer. It reads what ``churnlab score`` wrote for an as-of date (the lists,
the audiences, drift, drivers, ``run.json``), the champion models' quality figures, the retention
KPIs of the data, predicted vs realised churn over the training set's cutoffs and, when ``churnlab
measure`` has run, the latest campaign measurement at or before the scoring date, and renders them
with :mod:`churnlab.report`. The page is written under ``reports/`` and logged to the scoring run.
A piece that is missing (no expansion model, no training set, KPIs of an absent table) is a note
on the page, never an error.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from churnlab import backscore, dataset, kpis, measuring, report, tracking
from churnlab.bundle import ModelBundle
from churnlab.config import Params
from churnlab.errors import ChurnlabError
from churnlab.load import load
from churnlab.pipeline import ProgressFn, champion_bundle
from churnlab.runlog import RunLog

_META = ("as_of", "model", "model_version", "model_run_id")
"""Row stamps of the lists: the page says them once, in its header."""


class ReportError(ChurnlabError):
    """There is nothing to report on."""


@dataclass(frozen=True)
class ReportRun:
    """What :func:`build_report` produced."""

    path: Path
    as_of: str
    run_id: str | None
    notes: tuple[str, ...]


def _quiet(_message: str) -> None:
    pass


def actions_folder(params: Params, as_of: dt.datetime | None) -> Path:
    """The folder ``churnlab score`` wrote for ``as_of`` (default: the latest one).

    Raises
    ------
    ReportError
        When there is none.
    """
    root = Path(params.score.out)
    if as_of is not None:
        folder = root / f"{as_of:%Y-%m-%d}"
        if not (folder / "at_risk.parquet").is_file():
            raise ReportError(
                f"no scoring for {as_of:%Y-%m-%d} in {root}: run `churnlab score --as-of "
                f"{as_of:%Y-%m-%d}` first"
            )
        return folder
    found = sorted(
        p for p in root.glob("[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]")
        if (p / "at_risk.parquet").is_file()
    )  # fmt: skip
    if not found:
        raise ReportError(f"no scoring in {root}: run `churnlab score` first")
    return found[-1]


def _read(folder: Path, name: str) -> pd.DataFrame | None:
    for suffix, reader in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return reader(path)
    return None


def _headline(at_risk: pd.DataFrame, expansion: pd.DataFrame | None) -> dict[str, Any]:
    by_band = (
        at_risk.groupby("risk_band")
        .agg(
            accounts=("account_id", "size"),
            arr=("arr", "sum"),
            revenue_at_risk=("revenue_at_risk", "sum"),
            mean_probability=("churn_probability", "mean"),
        )
        .reset_index()
    )
    return {
        "accounts_scored": len(at_risk),
        "total_arr": float(at_risk["arr"].sum()),
        "revenue_at_risk": float(at_risk["revenue_at_risk"].sum()),
        "expected_expansion_value": None
        if expansion is None
        else float(expansion["expected_expansion_value"].sum()),
        "by_band": by_band,
    }


def _model_card(bundle: ModelBundle) -> dict[str, Any]:
    reg = bundle.info.get("registry", {})
    curve = bundle.info.get("calibration_curve")
    return {
        "name": reg.get("name", bundle.task),
        "version": reg.get("version", ""),
        "run_id": reg.get("run_id", ""),
        "test_cutoff": bundle.info.get("test_cutoff", ""),
        "metrics": bundle.info.get("metrics", {}),
        "calibration": None if curve is None else pd.DataFrame(curve),
    }


def _models(params: Params, notes: list[str]) -> tuple[dict[str, Any], ModelBundle | None]:
    cards: dict[str, Any] = {}
    churn = None
    for task in ("churn", "expansion"):
        try:
            bundle, note = champion_bundle(params, task)
        except ChurnlabError as err:
            notes.append(f"no {task} model: {err}")
            continue
        notes += [note] if note else []
        cards[task] = _model_card(bundle)
        churn = bundle if task == "churn" else churn
    return cards, churn


def _kpis(params: Params, notes: list[str]) -> dict[str, pd.DataFrame] | None:
    try:
        con = load(params.data)
        try:
            return kpis.compute(con, params.kpis, params.data)
        finally:
            con.close()
    except ChurnlabError as err:
        notes.append(f"no KPIs: {err}")
        return None


def _pvr(params: Params, churn: ModelBundle | None, notes: list[str]) -> pd.DataFrame | None:
    if churn is None:
        return None
    try:
        frame, _ = dataset.read(params.dataset.out)
    except ChurnlabError:
        notes.append(f"predicted vs realised churn: no training set in {params.dataset.out}")
        return None
    return backscore.predicted_vs_realised(frame, churn)[backscore.PVR_OVERALL]


def read_measurement(params: Params, as_of: dt.datetime) -> dict[str, Any] | None:
    """The latest measurement ``churnlab measure`` wrote at or before ``as_of``, for the report.

    Returns
    -------
    dict or None
        ``campaigns``, ``warnings``, ``pending`` (its tables), ``data_end`` and ``level``; None
        when there is none.
    """
    folder = measuring.latest_measurement(params.measure.out, as_of)
    if folder is None:
        return None
    meta = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
    tables = {n: _read(folder, n) for n in ("campaigns", "warnings", "pending")}
    return {
        **tables,
        "data_end": pd.Timestamp(meta.get("data_end", folder.name)),
        "level": float(meta.get("settings", {}).get("level", params.measure.level)),
    }


def build_report(
    params: Params, *, as_of: dt.datetime | None = None, progress: ProgressFn | None = None
) -> ReportRun:
    """Write the HTML report for a scoring and log it to that scoring's MLflow run.

    Parameters
    ----------
    params : Params
        All of params.yaml.
    as_of : datetime, optional
        The scoring date (default: the latest one ``churnlab score`` wrote).
    progress : callable, optional
        Called with a short message at each step.
    """
    say = progress or _quiet
    folder = actions_folder(params, as_of)
    meta = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
    notes: list[str] = list(meta.get("notes", []))
    at_risk = _read(folder, "at_risk")
    assert at_risk is not None  # actions_folder checked it
    expansion = _read(folder, "expansion")
    say("reading the models")
    models, churn = _models(params, notes)
    say("computing KPIs")
    kpi = _kpis(params, notes)
    say("predicted vs realised churn")
    pvr = _pvr(params, churn, notes)
    drivers = {
        t: d for t in ("churn", "expansion") if (d := _read(folder, f"drivers_{t}")) is not None
    }
    at_risk_shown, expansion_shown = (
        None if f is None else f.drop(columns=[c for c in _META if c in f.columns])
        for f in (at_risk, expansion)
    )
    inputs = report.ReportInputs(
        title="churnlab: accounts at risk, expansion and campaigns",
        as_of=pd.Timestamp(folder.name),
        generated_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
        headline=_headline(at_risk, expansion),
        kpis=None if kpi is None else kpi["monthly"],
        kpi_catalogue=None if kpi is None else kpi["metrics"],
        models=models or None,
        predicted_vs_realised=pvr,
        drift=_read(folder, "drift"),
        drift_threshold=params.score.drift_warning,
        drivers=drivers or None,
        at_risk=at_risk_shown,
        expansion=expansion_shown,
        audiences=_read(folder, "audience_summary"),
        audience_rows=_read(folder, "audiences"),
        measurement=read_measurement(params, pd.Timestamp(folder.name).to_pydatetime()),
        notes=tuple(notes),
    )
    path = Path(params.score.out).parent / f"report_{folder.name}.html"
    say(f"writing {path}")
    report.write(inputs, path)
    run_id = meta.get("run_id")
    if run_id:
        tracking.configure(params.tracking)
        tracking.log_to_run(run_id, RunLog(files={"report": [path]}))
    return ReportRun(path=path, as_of=folder.name, run_id=run_id, notes=tuple(notes))

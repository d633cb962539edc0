"""KPI outputs: the tables as CSV and Parquet, each KPI's kind, and what is logged to MLflow."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from churnlab.atomic import write_file
from churnlab.backscore import PVR_BANDS, PVR_OVERALL, headline
from churnlab.kpi_catalogue import METRICS
from churnlab.runlog import RunLog


def latest_complete(result: dict[str, pd.DataFrame]) -> pd.Series | None:
    """The row of the latest complete (not partial) period, or None if every period is partial."""
    monthly = result["monthly"]
    complete = monthly[~monthly["partial"]]
    if complete.empty:
        return None
    return complete.iloc[-1]


def _flat(result: dict[str, pd.DataFrame], name: str) -> pd.DataFrame:
    frame = result[name]
    return frame.reset_index() if name == "monthly" else frame


def _csv_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda tmp: frame.to_csv(tmp, index=False)


def _parquet_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda tmp: frame.to_parquet(tmp, index=False)


def write(result: dict[str, pd.DataFrame], out_dir: Path | str) -> list[Path]:
    """Write the period table and the cohorts as CSV and Parquet, each file atomically.

    Parameters
    ----------
    result : dict of str to DataFrame
        What :func:`compute` returned.
    out_dir : Path or str
        Directory to write ``monthly.{csv,parquet}``, ``cohorts.{csv,parquet}``,
        ``metrics.csv`` (the catalogue with each metric's kind) and, when the result has them,
        ``predicted_vs_realised.csv`` and ``predicted_vs_realised_bands.csv`` into.

    Returns
    -------
    list of Path
        The files written.
    """
    out = Path(out_dir)
    paths = []
    for name in ("monthly", "cohorts"):
        frame = _flat(result, name)
        write_file(out / f"{name}.csv", _csv_writer(frame))
        write_file(out / f"{name}.parquet", _parquet_writer(frame))
        paths += [out / f"{name}.csv", out / f"{name}.parquet"]
    target = out / "metrics.csv"
    write_file(target, _csv_writer(result["metrics"]))
    paths.append(target)
    for name in (PVR_OVERALL, PVR_BANDS):
        if name in result:
            write_file(out / f"{name}.csv", _csv_writer(result[name]))
            paths.append(out / f"{name}.csv")
    return paths


def kpi_kinds(result: dict[str, pd.DataFrame]) -> dict[str, dict[str, Any]]:
    """Each KPI's kind (activity or outcome), unit, applicability and definition, by name."""
    kinds = {
        row["name"]: {
            "kind": row["kind"],
            "applicable": bool(row["applicable"]),
            "unit": row["unit"],
            "description": row["description"],
        }
        for row in result["metrics"].to_dict("records")
    }
    if PVR_OVERALL in result:
        for name, what in (("predicted_churn", "mean predicted"), ("realised_churn", "realised")):
            kinds[name] = {
                "kind": "outcome",
                "applicable": True,
                "unit": "ratio",
                "description": f"{what} churn within the horizon at the model's test cutoff "
                "(else the latest labeled cutoff)",
            }
    return kinds


def run_log(result: dict[str, pd.DataFrame], plot_files: Sequence[Path] = ()) -> RunLog:
    """What to log to MLflow for a KPI result (:func:`churnlab.tracking.log` writes it).

    Metrics: the latest complete period's KPIs as ``kpi.<name>`` (NaN and not-applicable values
    are skipped, never logged as 0). Tags: ``kpi.period`` (its start, ISO), ``kpi.period_length``,
    ``kpi.mode``, and ``kpi.outcome_metrics`` / ``kpi.activity_metrics`` (comma-separated names).
    Artifacts under ``kpis/``: ``monthly.csv``, ``cohorts.csv``, ``metrics.csv``,
    ``kpi_kinds.json`` (kind, unit and definition per metric) and the plots under ``kpis/plots``.
    When the result holds :func:`churnlab.backscore.predicted_vs_realised` tables (add them to
    the dict), they are logged too, with ``kpi.predicted_churn`` / ``kpi.realised_churn`` at the
    test cutoff.

    Parameters
    ----------
    result : dict of str to DataFrame
        What :func:`compute` returned.
    plot_files : sequence of Path
        The plot files (what :func:`churnlab.kpi_plots.plot` returned).
    """
    info = result["info"].iloc[0]
    row = latest_complete(result)
    metrics: dict[str, float] = {}
    if row is not None:
        for m in METRICS:
            value = row[m.name]
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                metrics[f"kpi.{m.name}"] = float(value)
    head = headline(result)
    if head is not None:
        # Outcome vs prediction at the test cutoff (else the latest labeled one).
        metrics["kpi.predicted_churn"] = float(head["mean_predicted"])
        metrics["kpi.realised_churn"] = float(head["realised_rate"])
    kinds = kpi_kinds(result)
    tags = {
        "kpi.period": "none" if row is None else pd.Timestamp(row.name).date().isoformat(),
        "kpi.period_length": str(info["period"]),
        "kpi.mode": str(info["mode"]),
        "kpi.outcome_metrics": ",".join(k for k, v in kinds.items() if v["kind"] == "outcome"),
        "kpi.activity_metrics": ",".join(k for k, v in kinds.items() if v["kind"] == "activity"),
    }
    tables = {
        "kpis/monthly.csv": _flat(result, "monthly"),
        "kpis/cohorts.csv": result["cohorts"],
        "kpis/metrics.csv": result["metrics"],
    }
    for name in (PVR_OVERALL, PVR_BANDS):
        if name in result:
            tables[f"kpis/{name}.csv"] = result[name]
    return RunLog(
        metrics=metrics,
        tags=tags,
        tables=tables,
        texts={"kpis/kpi_kinds.json": json.dumps(kinds, indent=2)},
        files={"kpis/plots": [Path(p) for p in plot_files]},
    )

"""Predicted vs realised churn: back-score the training set and compare with what happened.

Every row of the training set is scored with the churn model; per cutoff and per fixed risk band
the mean predicted probability is set against the realised churn rate. Only the validation, test
and later cutoffs are honest out-of-sample checks of calibration; each cutoff carries its role.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from churnlab.kpi_catalogue import KpiError

RISK_BANDS: tuple[float, ...] = (0.0, 0.05, 0.10, 0.20, 0.40, 1.0)
"""Edges of the churn-risk bands: [0, 5%), [5%, 10%), [10%, 20%), [20%, 40%), [40%, 100%]."""

PVR_OVERALL = "predicted_vs_realised"
PVR_BANDS = "predicted_vs_realised_bands"


class ChurnScorer(Protocol):
    """What :func:`predicted_vs_realised` needs of a model (``churnlab.bundle.ModelBundle``)."""

    info: dict[str, Any]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probabilities, one per row of ``frame``."""
        ...


def _band_labels(bands: Sequence[float]) -> list[str]:
    return [f"{100 * lo:g}-{100 * hi:g}%" for lo, hi in zip(bands[:-1], bands[1:], strict=True)]


def _cutoff_role(cutoff: pd.Timestamp, info: dict[str, Any]) -> str:
    day = cutoff.date().isoformat()
    if day == str(info.get("test_cutoff")):
        return "test"
    if day == str(info.get("valid_cutoff")):
        return "valid"
    if day in {str(c) for c in info.get("train_cutoffs", [])}:
        return "train"
    test = info.get("test_cutoff")
    if test is not None and day > str(test):
        return "after test"
    return "not used in training"


def predicted_vs_realised(
    frame: pd.DataFrame, model: ChurnScorer, bands: Sequence[float] = RISK_BANDS
) -> dict[str, pd.DataFrame]:
    """Mean predicted churn probability against the realised churn rate, per cutoff and risk band.

    Every row of the training set is (back-)scored with the model; a cutoff's realised rate is
    the mean ``churn`` label over its labeled rows (NaN while its label window is still open, so
    the latest cutoffs show a prediction waiting for its outcome). Bands are fixed probability
    ranges (:data:`RISK_BANDS`) so that they mean the same at every cutoff. Each cutoff carries
    its ``role`` in the model's fit (train, valid, test, after test): only valid, test and later
    cutoffs are honest out-of-sample checks of calibration.

    Parameters
    ----------
    frame : DataFrame
        The training set (``dataset.read``): ``cutoff``, ``churn``, ``labeled`` and the model's
        feature columns.
    model : ChurnScorer
        The churn model (``churnlab.train.ModelBundle`` for the churn task).
    bands : sequence of float
        Band edges from 0 to 1.

    Returns
    -------
    dict of str to DataFrame
        ``"predicted_vs_realised"``: ``cutoff``, ``role``, ``rows``, ``labeled_rows``,
        ``mean_predicted``, ``realised_rate``, ``positives``, ``difference`` (predicted -
        realised). ``"predicted_vs_realised_bands"``: the same per ``cutoff`` and ``band``.

    Raises
    ------
    KpiError
        If the frame lacks the label columns.
    """
    missing = [c for c in ("cutoff", "churn", "labeled") if c not in frame.columns]
    if missing:
        raise KpiError(
            f"predicted vs realised needs the training set's {missing} columns: pass the frame "
            "returned by churnlab.dataset.read"
        )
    edges = np.asarray(bands, dtype=float)
    p = np.asarray(model.predict(frame), dtype=float)
    labeled = frame["labeled"].to_numpy(dtype=bool) & frame["churn"].notna().to_numpy()
    rows = pd.DataFrame(
        {
            "cutoff": frame["cutoff"].to_numpy(),
            "p": p,
            "y": np.where(labeled, frame["churn"].to_numpy(dtype=float, na_value=np.nan), np.nan),
            # Right-open bands, the last one closed at 1.
            "band": np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2),
        }
    )

    def summarise(g: pd.core.groupby.DataFrameGroupBy) -> pd.DataFrame:
        out = g.agg(
            rows=("p", "size"),
            labeled_rows=("y", "count"),
            mean_predicted=("p", "mean"),
            realised_rate=("y", "mean"),
            positives=("y", "sum"),
        )
        out["positives"] = out["positives"].where(out["labeled_rows"] > 0)
        out["difference"] = out["mean_predicted"] - out["realised_rate"]
        return out.reset_index()

    overall = summarise(rows.groupby("cutoff"))
    by_band = summarise(rows.groupby(["cutoff", "band"]))
    names = _band_labels([float(e) for e in edges])
    by_band["band"] = [names[i] for i in by_band["band"]]
    for out in (overall, by_band):
        out["cutoff"] = out["cutoff"].astype("datetime64[us]")
        out.insert(1, "role", [_cutoff_role(pd.Timestamp(c), model.info) for c in out["cutoff"]])
        for col in ("rows", "labeled_rows"):
            out[col] = out[col].astype("int64")
    return {PVR_OVERALL: overall, PVR_BANDS: by_band}


def headline(result: dict[str, pd.DataFrame]) -> pd.Series | None:
    """The predicted-vs-realised row of the test cutoff (else of the latest labeled cutoff)."""
    overall = result.get(PVR_OVERALL)
    if overall is None or overall.empty:
        return None
    test = overall[overall["role"] == "test"]
    if len(test):
        return test.iloc[-1]
    labeled = overall[overall["labeled_rows"] > 0]
    return labeled.iloc[-1] if len(labeled) else None

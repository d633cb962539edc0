"""The model bundle: one trained task model with everything needed to score and explain it.

A bundle holds the LightGBM booster, its calibrator, the explicit feature list (typed
:class:`~churnlab.manifest.Feature` records), the category levels seen in training and each
numeric feature's usual level (its training median, used by the reasons' wording). It is saved as
a folder (``booster.txt``, ``calibrator.joblib``, ``bundle.json``) and wrapped as an MLflow pyfunc
model by :mod:`churnlab.tracking`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd

from churnlab import season
from churnlab.calibration import Calibrator
from churnlab.errors import ChurnlabError
from churnlab.manifest import Feature


class BundleError(ChurnlabError):
    """A model bundle cannot be read or cannot score the rows given."""


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
    features : sequence of Feature (or their manifest dicts)
        The model's features, in training order.
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
        features: Sequence[Feature | dict[str, Any]],
        categories: dict[str, list[str]],
        reference: dict[str, float],
        info: dict[str, Any] | None = None,
    ) -> None:
        self.task = task
        self.booster = booster
        self.calibrator = calibrator
        self.features: tuple[Feature, ...] = tuple(
            f if isinstance(f, Feature) else Feature.from_dict(f) for f in features
        )
        self.categories = categories
        self.reference = reference
        self.info = info or {}
        self.amount_booster: lgb.Booster | None = None
        """Expansion only: expected amount given expansion (a regressor on the positive rows)."""
        self.season: dict[int, float] | None = None
        """Calendar month -> log-odds offset the booster starts from (:mod:`churnlab.season`)."""

    @property
    def feature_names(self) -> list[str]:
        """Model features, in training order."""
        return [f.name for f in self.features]

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's feature matrix from any frame holding the feature columns.

        Numeric features become float64 (missing stays NaN); categoricals get the training
        levels, so codes match the booster's whatever levels the new frame has.
        """
        missing = [f for f in self.feature_names if f not in frame.columns]
        if missing:
            raise BundleError(
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

    def offset(self, frame: pd.DataFrame) -> np.ndarray:
        """Each row's season offset in log-odds (zeros for a model without a season).

        Raises
        ------
        BundleError
            If the model is season-aware and ``frame`` has no ``cutoff`` column.
        """
        if self.season is None:
            return np.zeros(len(frame))
        if "cutoff" not in frame.columns:
            raise BundleError(
                f"{self.task} model: it is season-aware (its base rate depends on the calendar "
                "month), so each row needs a cutoff column: the date it is scored at "
                "(YYYY-MM-DD)"
            )
        cutoffs = pd.to_datetime(frame["cutoff"], errors="coerce", format="ISO8601")
        if cutoffs.isna().any():
            raise BundleError(
                f"{self.task} model: {int(cutoffs.isna().sum())} rows have no valid cutoff date: "
                "give each row the date it is scored at (YYYY-MM-DD)"
            )
        return season.offset_of(self.season, cutoffs)

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        """Model log-odds before calibration: the season offset plus the booster's output."""
        raw = np.asarray(self.booster.predict(self.matrix(frame), raw_score=True), dtype=float)
        return raw + self.offset(frame)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities of the task's positive label."""
        offset = self.offset(frame)
        raw = np.asarray(self.booster.predict(self.matrix(frame), raw_score=True), dtype=float)
        return self.calibrator.predict(raw + offset, offset)

    @property
    def has_amount(self) -> bool:
        """Whether :meth:`expected_amount` can answer (a regressor, or the mean it fell back to)."""
        fallback = self.info.get("amount_fallback")
        return self.amount_booster is not None or (
            fallback is not None and bool(np.isfinite(fallback))
        )

    def expected_amount(self, frame: pd.DataFrame) -> np.ndarray | None:
        """The expected label amount given a positive label (expansion), or None without one.

        With too few positive rows for a regressor, training stores their mean amount
        (``info["amount_fallback"]``) and every row gets it.
        """
        if self.amount_booster is None:
            if not self.has_amount:
                return None
            return np.full(len(frame), float(self.info["amount_fallback"]))
        return np.asarray(self.amount_booster.predict(self.matrix(frame)), dtype=float)

    def save(self, out: Path | str) -> Path:
        """Write the bundle to directory ``out`` (booster text, calibrator, metadata JSON)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(out / "booster.txt"))
        if self.amount_booster is not None:
            self.amount_booster.save_model(str(out / "amount_booster.txt"))
        joblib.dump(self.calibrator, out / "calibrator.joblib")
        meta = {
            "task": self.task,
            "features": [f.to_dict() for f in self.features],
            "categories": self.categories,
            "reference": self.reference,
            "info": self.info,
            "season": self.season,
        }
        (out / "bundle.json").write_text(json.dumps(meta, indent=2, default=str))
        return out

    @classmethod
    def load(cls, path: Path | str) -> ModelBundle:
        """Read a bundle written by :meth:`save`."""
        path = Path(path)
        if not (path / "bundle.json").is_file():
            raise BundleError(f"{path}: no model bundle here: run `churnlab train` first")
        meta = json.loads((path / "bundle.json").read_text())
        booster = lgb.Booster(model_file=str(path / "booster.txt"))
        calibrator = joblib.load(path / "calibrator.joblib")
        bundle = cls(
            meta["task"],
            booster,
            calibrator,
            meta["features"],
            meta["categories"],
            meta["reference"],
            meta["info"],
        )
        if meta.get("season") is not None:
            bundle.season = {int(m): float(v) for m, v in meta["season"].items()}
        if (path / "amount_booster.txt").is_file():
            bundle.amount_booster = lgb.Booster(model_file=str(path / "amount_booster.txt"))
        return bundle


def model_input(bundle: ModelBundle, frame: pd.DataFrame) -> pd.DataFrame:
    """The pyfunc input form of ``frame``: model features, categoricals as plain strings.

    A season-aware model also takes each row's ``cutoff`` (the date it is scored at).
    """
    X = bundle.matrix(frame)
    for c in bundle.categories:
        X[c] = X[c].astype(object).where(X[c].notna(), None)
    if bundle.season is not None:
        X["cutoff"] = pd.to_datetime(frame["cutoff"]).dt.strftime("%Y-%m-%d").to_numpy()
    return X

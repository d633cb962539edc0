"""Feature drift between the rows a model was trained on and the rows it scores (PSI).

At training time :func:`profile` summarises every feature of the training rows: numeric features
by their decile edges (and the share missing), categorical ones by the share of each level. The
profile travels in the model bundle, so scoring needs no training data: :func:`psi` bins the scored
rows by the same edges and computes the population stability index per feature,
``sum((q - p) * ln(q / p))`` over bins (missing values are a bin of their own; empty bins get a
small floor so the log stays finite). Above 0.2 is the usual "significant shift" warning level,
below 0.1 is stable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

_FLOOR = 1e-4


def profile(X: pd.DataFrame, bins: int = 10) -> dict[str, dict[str, Any]]:
    """Per feature: bin edges and shares (numeric) or level shares (categorical), with missing.

    Parameters
    ----------
    X : DataFrame
        The model's feature matrix of the training rows (``ModelBundle.matrix``).
    bins : int
        Quantile bins for numeric features.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in X.columns:
        col = X[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            shares = col.astype(object).where(col.notna(), "(missing)").value_counts(normalize=True)
            out[name] = {"levels": {str(k): float(v) for k, v in shares.items()}}
            continue
        v = col.to_numpy(dtype=float)
        ok = np.isfinite(v)
        edges: np.ndarray = (
            np.unique(np.quantile(v[ok], np.linspace(0, 1, bins + 1))) if ok.any() else np.array([])
        )
        out[name] = {
            "edges": [float(e) for e in edges],
            "shares": _shares(v, edges).tolist(),
        }
    return out


def _shares(v: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of ``v`` in the bins between inner edges, plus the share missing (last)."""
    ok = np.isfinite(v)
    n = max(len(v), 1)
    inner = edges[1:-1] if len(edges) > 2 else np.array([])
    counts = np.bincount(np.searchsorted(inner, v[ok], side="right"), minlength=len(inner) + 1)
    return np.append(counts / n, (~ok).sum() / n)


def psi(prof: dict[str, dict[str, Any]], X: pd.DataFrame) -> pd.DataFrame:
    """The population stability index of every profiled feature of ``X``, largest first.

    Returns
    -------
    DataFrame
        ``feature``, ``psi`` (NaN for a feature the profile lacks).
    """
    rows = []
    for name in X.columns:
        p = prof.get(name)
        if p is None:
            rows.append({"feature": name, "psi": float("nan")})
            continue
        col = X[name]
        if "levels" in p:
            now = col.astype(object).where(col.notna(), "(missing)").astype(str)
            q_all = now.value_counts(normalize=True)
            levels = sorted(set(p["levels"]) | set(q_all.index))
            ref = np.array([p["levels"].get(k, 0.0) for k in levels])
            cur = np.array([float(q_all.get(k, 0.0)) for k in levels])
        else:
            ref = np.asarray(p["shares"], dtype=float)
            cur = _shares(col.to_numpy(dtype=float), np.asarray(p["edges"], dtype=float))
        ref, cur = np.maximum(ref, _FLOOR), np.maximum(cur, _FLOOR)
        rows.append({"feature": name, "psi": float(np.sum((cur - ref) * np.log(cur / ref)))})
    out = pd.DataFrame(rows, columns=["feature", "psi"])
    return out.sort_values("psi", ascending=False, na_position="last").reset_index(drop=True)

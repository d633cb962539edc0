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
MISSING = "(missing)"
"""The level that stands for no value in a categorical feature's profile."""
COLUMNS = ("feature", "psi", "missing_trained", "missing_now")
"""The drift table: PSI, and the share of rows without a value in training and now."""


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
            shares = col.astype(object).where(col.notna(), MISSING).value_counts(normalize=True)
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
            now = col.astype(object).where(col.notna(), MISSING).astype(str)
            q_all = now.value_counts(normalize=True)
            levels = sorted(set(p["levels"]) | set(q_all.index))
            ref = np.array([p["levels"].get(k, 0.0) for k in levels])
            cur = np.array([float(q_all.get(k, 0.0)) for k in levels])
            miss = levels.index(MISSING) if MISSING in levels else None
        else:
            ref = np.asarray(p["shares"], dtype=float)
            cur = _shares(col.to_numpy(dtype=float), np.asarray(p["edges"], dtype=float))
            miss = len(ref) - 1
        rows.append(_row(name, ref, cur, miss))
    return _table(rows)


def _row(name: str, ref: np.ndarray, cur: np.ndarray, miss: int | None) -> dict[str, Any]:
    """A feature's PSI with the shares of rows without a value, trained on and scored."""
    return {
        "feature": name,
        "psi": _index(ref, cur),
        "missing_trained": float(ref[miss]) if miss is not None else 0.0,
        "missing_now": float(cur[miss]) if miss is not None else 0.0,
    }


def missing_part(row: Any) -> float:
    """The share of a feature's PSI that the change in its rows without a value makes.

    ``row`` has ``psi``, ``missing_trained`` and ``missing_now`` (a row of :func:`psi`'s table).
    A feature whose values are distributed as before but which is empty for more or fewer rows
    (for example accounts with no history before the cutoff) gets a share near 1.
    """
    psi_value = float(row["psi"])
    if not np.isfinite(psi_value) or psi_value <= 0:
        return 0.0
    term = _index(np.array([float(row["missing_trained"])]), np.array([float(row["missing_now"])]))
    return min(term / psi_value, 1.0)


def _index(ref: np.ndarray, cur: np.ndarray) -> float:
    ref, cur = np.maximum(ref, _FLOOR), np.maximum(cur, _FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    return out.sort_values("psi", ascending=False, na_position="last").reset_index(drop=True)


def bin_counts(prof: dict[str, dict[str, Any]], X: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per feature of ``X``: the rows in each of its profile's bins (the parts of :func:`psi`).

    Numeric features count by bin number (``"0"``, ``"1"``, ...) and ``"missing"``,
    categorical ones by level (:data:`MISSING` for none). Counts of disjoint row sets add up,
    so a distributed engine counts its partitions and :func:`psi_from_counts` gives the index.
    A feature the profile lacks gets no counts.
    """
    out: dict[str, dict[str, int]] = {}
    for name in X.columns:
        p = prof.get(name)
        if p is None:
            continue
        col = X[name]
        if "levels" in p:
            now = col.astype(object).where(col.notna(), MISSING).astype(str)
            out[name] = {str(k): int(v) for k, v in now.value_counts().items()}
            continue
        v = col.to_numpy(dtype=float)
        ok = np.isfinite(v)
        edges = np.asarray(p["edges"], dtype=float)
        inner = edges[1:-1] if len(edges) > 2 else np.array([])
        counts = np.bincount(np.searchsorted(inner, v[ok], side="right"), minlength=len(inner) + 1)
        out[name] = {str(i): int(c) for i, c in enumerate(counts)} | {"missing": int((~ok).sum())}
    return out


def psi_from_counts(
    prof: dict[str, dict[str, Any]], features: list[str], counts: dict[str, dict[str, int]], n: int
) -> pd.DataFrame:
    """:func:`psi` from the :func:`bin_counts` of all ``n`` scored rows (summed over parts).

    Parameters
    ----------
    prof : dict
        The training profile (:func:`profile`).
    features : list of str
        The model's features, in its order (the table's order before sorting).
    counts : dict
        Feature -> bin or level -> rows.
    n : int
        All scored rows.

    Returns
    -------
    DataFrame
        As :func:`psi`: ``feature``, ``psi``, largest first.
    """
    rows = []
    total = max(n, 1)
    for name in features:
        p = prof.get(name)
        if p is None:
            rows.append({"feature": name, "psi": float("nan")})
            continue
        got = counts.get(name, {})
        if "levels" in p:
            q_all = {k: v / total for k, v in got.items() if v}
            levels = sorted(set(p["levels"]) | set(q_all))
            ref = np.array([p["levels"].get(k, 0.0) for k in levels])
            cur = np.array([float(q_all.get(k, 0.0)) for k in levels])
            miss = levels.index(MISSING) if MISSING in levels else None
        else:
            ref = np.asarray(p["shares"], dtype=float)
            bins = len(ref) - 1
            cur = np.array([got.get(str(i), 0) / total for i in range(bins)]
                           + [got.get("missing", 0) / total])  # fmt: skip
            miss = bins
        rows.append(_row(name, ref, cur, miss))
    return _table(rows)

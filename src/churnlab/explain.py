"""SHAP explanations (TreeSHAP only) and per-account reasons in probability points.

SHAP values come from LightGBM's ``pred_contrib=True``, which is TreeSHAP computed in C++ (the
same values as ``shap.TreeExplainer``); Kernel SHAP is never used. They are additive in the
booster's log-odds: ``base + sum(phi) = margin``.

**Reasons in probability points.** A customer-success manager needs "how many points of churn
risk does this add", on the calibrated probability the tool reports. For an account with margin
``m``, the calibrated probability is ``p = cal(m)`` and the calibrated base probability is
``p0 = cal(base)``. The difference ``p - p0`` is distributed across features in proportion to
their log-odds contributions: ``points_j = 100 * phi_j * (p - p0) / (m - base)``. The points
sum exactly to ``100 * (p - p0)``; because the calibrator is monotone the ratio is never
negative, so each feature keeps the sign of its SHAP value. When ``m - base`` is ~0 the ratio
is replaced by the calibrator's local slope (the limit of the same ratio).

Each reason is a sentence from the feature's manifest description and the account's value
against its usual level (the feature's median over the training rows, or for trend features the
account's own previous window), e.g. "logins in the last 30 days is 3 (-70% vs a usual 10): +7.9
points of churn risk" or "product events per day in the last 30 days against the previous 60
days is down 64%: +7.9 points of churn risk". Reasons are the ``top_k`` features
that raise the probability most. Points are also summed per driver group (engagement,
commercial, support, marketing, sentiment, profile).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # headless: plots are files, never windows

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from churnlab.config import ExplainParams  # noqa: E402
from churnlab.manifest import NO_VALUE_MEANS  # noqa: E402
from churnlab.schema import TASK_WORDS  # noqa: E402

if TYPE_CHECKING:
    from churnlab.bundle import ModelBundle
    from churnlab.manifest import Feature


def contributions(bundle: ModelBundle, frame: pd.DataFrame) -> np.ndarray:
    """TreeSHAP values in log-odds, shape (rows, features + 1); the last column is the base.

    A season-aware model's offset (the calendar month's base rate) is part of each row's base:
    it is the same for every account scored at a cutoff, so it is nobody's reason.

    Parameters
    ----------
    bundle : ModelBundle
        Trained task model.
    frame : DataFrame
        Rows holding the model's feature columns.
    """
    X = bundle.matrix(frame)
    contrib = np.asarray(bundle.booster.predict(X, pred_contrib=True), dtype=float)
    if bundle.season is not None and len(contrib):
        contrib[:, -1] += bundle.offset(frame)
    return contrib


def importance(bundle: ModelBundle, contrib: np.ndarray) -> pd.DataFrame:
    """Mean |SHAP| (log-odds) per feature, with description and group, largest first."""
    values = (
        np.abs(contrib[:, :-1]).mean(axis=0) if len(contrib) else np.zeros(len(bundle.features))
    )
    table = pd.DataFrame(
        {
            "feature": bundle.feature_names,
            "description": [f.description for f in bundle.features],
            "group": [f.group for f in bundle.features],
            "mean_abs_shap": values,
        }
    )
    return table.sort_values("mean_abs_shap", ascending=False, kind="stable").reset_index(drop=True)


def probability_points(
    bundle: ModelBundle, contrib: np.ndarray, offset: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-feature contributions in probability points (see the module docstring).

    ``offset`` is each row's season offset (:meth:`ModelBundle.offset`), needed for a
    season-aware model.

    Returns
    -------
    (points, p, p0)
        ``points`` (rows, features) in percentage points summing to ``100 * (p - p0)`` per row;
        ``p`` the calibrated probabilities; ``p0`` the calibrated base probability of each row
        (one value for all rows of a cutoff).
    """
    if bundle.season is not None and offset is None:
        raise ValueError("a season-aware model's probability points need the rows' offsets")
    off = np.zeros(len(contrib)) if offset is None else np.asarray(offset, dtype=float)
    phi = contrib[:, :-1]
    base = contrib[:, -1]
    margin = phi.sum(axis=1) + base

    def cal(m: np.ndarray) -> np.ndarray:
        return bundle.calibrator.predict(m, off)

    p = cal(margin)
    p0 = cal(base)
    delta = margin - base
    h = 1e-3
    slope = (cal(margin + h) - cal(margin - h)) / (2 * h)
    small = np.abs(delta) < 1e-9
    ratio = np.where(small, slope, (p - p0) / np.where(small, 1.0, delta))
    return 100.0 * phi * ratio[:, None], p, p0


def _fmt(values: np.ndarray) -> np.ndarray:
    """Short human numbers: integers plain, others with up to 3 significant digits.

    From 100 up a value is rounded to a whole number with thousands separators (``4,568``, never
    ``4.57e+03``); below that 3 significant digits (``12.3``, ``0.0456``); values under 0.001 are
    shown as ``0`` with their sign kept (``-0``), a level no reader acts on.
    """
    out = np.empty(len(values), dtype=object)
    finite = np.isfinite(values)
    is_int = finite & (np.abs(values - np.round(values)) < 1e-9) & (np.abs(values) < 1e12)
    out[is_int] = [f"{v:,.0f}" for v in values[is_int]]
    other = finite & ~is_int
    out[other] = [_short(v) for v in values[other]]
    out[~finite] = "missing"
    return out


def _short(v: float) -> str:
    """One non-integer value for :func:`_fmt`."""
    if abs(v) >= 99.95:
        return f"{v:,.0f}"
    if abs(v) < 1e-3:
        return "-0" if v < 0 else "0"
    return f"{v:.3g}"


def _value_phrases(bundle: ModelBundle, X: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per feature, a phrase for every row of ``X`` (see :func:`_feature_phrases`)."""
    return {f.name: _feature_phrases(bundle, f, X[f.name]) for f in bundle.features}


MISSING_PHRASES = {  # by measure: what a missing value means, where it is not "no data"
    measure: f"has no value yet ({why})" for measure, why in NO_VALUE_MEANS.items()
}
"""A missing purchase-cadence value is a fact about the customer (one order day so far, which
on order data is most customers), and the reasons say so instead of "has no data"."""


def _feature_phrases(bundle: ModelBundle, f: Feature, col: pd.Series) -> np.ndarray:
    """The phrase for each value of one feature, built column-wise.

    The wording follows the feature's ``kind``: ``trend`` and ``change`` features are already
    relative to the account's own earlier level ("down 64%" for a ``trend``, a rate ratio minus
    one; "down 3" for a ``change``, a difference such as the NPS change); a ``ratio`` is shown
    as a percentage; ``days`` and
    ``value`` features against their usual level ("is 45 (usually 3)"); counts and amounts
    with their relative difference ("is 3 (-70% vs a usual 10)"). The usual level is the
    feature's median over the training rows.
    """
    name = f.name
    kind = f.kind
    if name in bundle.categories:
        text = col.astype(object).where(col.notna(), None).to_numpy()
        return np.array(["has no value" if v is None else f"is {v}" for v in text], dtype=object)
    v = col.to_numpy(dtype=float)
    ok = np.isfinite(v)
    ref = float(bundle.reference.get(name, float("nan")))
    phrase = np.full(len(v), MISSING_PHRASES.get(f.measure or "", "has no data"), dtype=object)
    if kind in ("trend", "change"):
        relative = kind == "trend"
        step = np.round(v[ok] * 100) if relative else v[ok]
        unit = "%" if relative else ""
        mags = _fmt(np.abs(step))
        phrase[ok] = [
            f"is down {m}{unit}" if q < 0 else (f"is up {m}{unit}" if q > 0 else "is unchanged")
            for q, m in zip(step, mags, strict=True)
        ]
        return phrase
    if kind == "ratio":
        vs = np.array([f"{x:.0%}" for x in v[ok]], dtype=object)
        ref_s = f"{ref:.0%}" if np.isfinite(ref) else ""
    else:
        vs = _fmt(v[ok])
        ref_s = _fmt(np.array([ref]))[0] if np.isfinite(ref) else ""
    phrase[ok] = "is " + vs
    if ref_s:
        if kind in ("count", "amount") and abs(ref) > 1e-12:
            q = np.round((v[ok] - ref) / abs(ref) * 100).astype(int)
            usual = f" (the usual {ref_s}{_average(bundle, name, ref)})"
            tail = np.array(
                [f" ({d:+d}% vs a usual {ref_s})" if d else usual for d in q], dtype=object
            )
        else:
            tail = np.full(ok.sum(), f" (usually {ref_s})", dtype=object)
        phrase[ok] = phrase[ok] + tail
    return phrase


def _average(bundle: ModelBundle, name: str, usual: float) -> str:
    """``, the average 1.6`` when a count's or amount's mean is 5% or more from its median.

    A value at the usual (median) level can still raise the risk: TreeSHAP points are measured
    from the average account, and on skewed counts (one order for most customers, many for a
    few) the average is well above the median. Saying both lets a reader see why "is 1 (the
    usual 1)" is a reason. Empty for bundles trained before stop 32 (no means saved).
    """
    mean = (bundle.info or {}).get("reference_mean", {}).get(name)
    if mean is None or not np.isfinite(mean) or abs(mean - usual) < 0.05 * abs(usual):
        return ""
    return f", the average {_fmt(np.array([float(mean)]))[0]}"


def reasons(
    bundle: ModelBundle,
    frame: pd.DataFrame,
    top_k: int = 3,
    *,
    contrib: np.ndarray | None = None,
) -> pd.DataFrame:
    """Top-k reasons per account, in probability points with a plain sentence, and driver groups.

    Parameters
    ----------
    bundle : ModelBundle
        Trained task model.
    frame : DataFrame
        Rows to explain (``account_id``, ``cutoff`` if present, and the feature columns).
    top_k : int
        Reasons per account: the features that raise the probability most.
    contrib : ndarray, optional
        Precomputed :func:`contributions` for ``frame``.

    Returns
    -------
    DataFrame
        Same index as ``frame``: ``account_id``, ``cutoff``, ``p`` (calibrated probability),
        ``base_p``, ``reason_i`` (sentence), ``reason_i_feature``, ``reason_i_group``,
        ``reason_i_points`` for i in 1..k, and ``driver_<group>`` points per driver group.
    """
    if contrib is None:
        contrib = contributions(bundle, frame)
    offset = bundle.offset(frame) if bundle.season is not None else None
    points, p, p0 = probability_points(bundle, contrib, offset)
    n, nf = points.shape
    k = min(top_k, nf)
    names = np.array(bundle.feature_names, dtype=object)
    descs = np.array([f.description for f in bundle.features], dtype=object)
    groups = np.array([f.group for f in bundle.features], dtype=object)
    # Top k by points, largest first (argpartition then sort only the k picked).
    if k < nf:
        part = np.argpartition(-points, k - 1, axis=1)[:, :k]
    else:
        part = np.tile(np.arange(nf), (n, 1))
    order = np.argsort(-np.take_along_axis(points, part, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    X = bundle.matrix(frame)
    word = TASK_WORDS.get(bundle.task, bundle.task)
    out: dict[str, Any] = {}
    for key in ("account_id", "cutoff"):
        if key in frame.columns:
            out[key] = frame[key].to_numpy()
    out["p"] = p
    out["base_p"] = p0
    rows = np.arange(n)
    for i in range(k):
        j = top[:, i]
        pts = points[rows, j]
        # Phrases only for the (row, feature) pairs shown: n * k strings, not n * features.
        value = np.empty(n, dtype=object)
        for jj in np.unique(j):
            sel = np.flatnonzero(j == jj)
            f = bundle.features[int(jj)]
            value[sel] = _feature_phrases(bundle, f, X[f.name].iloc[sel])
        pts_s = np.array([f"{x:+.1f}" for x in pts], dtype=object)
        out[f"reason_{i + 1}"] = descs[j] + " " + value + ": " + pts_s + f" points of {word}"
        out[f"reason_{i + 1}_feature"] = names[j]
        out[f"reason_{i + 1}_group"] = groups[j]
        out[f"reason_{i + 1}_points"] = pts
    for g in sorted(set(groups)):
        out[f"driver_{g}"] = points[:, groups == g].sum(axis=1)
    return pd.DataFrame(out, index=frame.index)


def plot_summary(
    bundle: ModelBundle,
    contrib: np.ndarray,
    frame: pd.DataFrame,
    out_dir: Path,
    max_rows: int,
    seed: int = 0,
) -> list[Path]:
    """Global SHAP beeswarm and bar plots (PNG) from precomputed TreeSHAP values."""
    import shap

    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(frame)
    idx = np.arange(n)
    if n > max_rows:
        idx = np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))
    X = bundle.matrix(frame.iloc[idx])
    # Colour categoricals by their code: the plots need numbers.
    Xn = pd.DataFrame(
        {
            c: (
                X[c].cat.codes.where(X[c].notna()).astype(float) if c in bundle.categories else X[c]
            )
            for c in X.columns
        }
    )
    labels = [f.name for f in bundle.features]
    paths = []
    for kind, fname in (("dot", "shap_beeswarm.png"), ("bar", "shap_bar.png")):
        plt.figure()
        shap.summary_plot(
            contrib[idx, :-1],
            Xn,
            feature_names=labels,
            plot_type=kind,
            show=False,
            max_display=20,
        )
        plt.title(f"{bundle.task}: SHAP (log-odds), test cutoff")
        plt.tight_layout()
        path = out_dir / fname
        plt.savefig(path, dpi=100)
        plt.close("all")
        paths.append(path)
    return paths


def explain_task(
    bundle: ModelBundle, test: pd.DataFrame, params: ExplainParams, out_dir: Path
) -> dict[str, Any]:
    """SHAP plots, importance tables and reasons for one task's test rows, written to ``out_dir``.

    Parameters
    ----------
    bundle : ModelBundle
        The trained task model.
    test : DataFrame
        The test rows (``account_id``, ``cutoff`` and the model's features).
    params : ExplainParams
        The ``explain`` section of params.yaml.
    out_dir : Path
        Where the plots and tables go.

    Returns
    -------
    dict
        ``importance`` and ``group_importance`` (DataFrames), ``reasons`` (DataFrame), ``files``
        (paths written: PNG plots and CSV tables).
    """
    contrib = contributions(bundle, test)
    imp = importance(bundle, contrib)
    groups = (
        imp.groupby("group", as_index=False)["mean_abs_shap"]
        .sum()
        .sort_values("mean_abs_shap", ascending=False)
    )
    why = reasons(bundle, test, params.top_k, contrib=contrib)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = plot_summary(bundle, contrib, test, out_dir, params.sample_for_plots)
    imp.to_csv(out_dir / "shap_importance.csv", index=False)
    groups.to_csv(out_dir / "shap_group_importance.csv", index=False)
    top = why.sort_values("p", ascending=False).head(1000)
    top.to_csv(out_dir / "reasons_top1000.csv", index=False)
    files += [
        out_dir / "shap_importance.csv",
        out_dir / "shap_group_importance.csv",
        out_dir / "reasons_top1000.csv",
    ]
    return {"importance": imp, "group_importance": groups, "reasons": why, "files": files}

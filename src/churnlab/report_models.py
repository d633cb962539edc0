"""The model-quality and drivers sections of the report (:mod:`churnlab.report`).

Model cards against the baselines with calibration curves, predicted vs realised churn per past
cutoff, feature drift (PSI) warnings, and the top drivers in plain words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from churnlab import compare
from churnlab.report_charts import (
    _PALETTE,
    _calibration_chart,
    _clean,
    _line_chart,
    _Series,
)
from churnlab.report_format import (
    _date,
    _e,
    _finite,
    _missing_columns,
    _note,
    _num,
    _static_table,
    format_int,
    format_percent,
)
from churnlab.report_inputs import (
    _TASK_LABEL,
    DASH,
    TASKS,
    ReportInputs,
)
from churnlab.report_kpis import _period_labels

# --------------------------------------------------------------------------------------------
# Model quality

_METRIC_ROWS: tuple[tuple[str, str, str], ...] = (
    ("roc_auc", "ROC-AUC (ranking; 0.5 is chance, higher is better)", "f3"),
    ("pr_auc", "PR-AUC (higher is better)", "f3"),
    ("log_loss", "Log loss (lower is better)", "f3"),
    ("brier", "Brier score (lower is better)", "f3"),
    ("ece", "Calibration error, ECE (lower is better)", "f3"),
    ("lift_top10", "Lift in the top 10% (× the average rate)", "lift"),
    ("precision_top10", "Precision in the top 10%", "pct"),
    ("recall_top10", "Recall in the top 10%", "pct"),
    ("value_captured_top10", "Revenue captured by the top 10%", "pct"),
)


def _metric_text(v: Any, how: str) -> str:
    if not _finite(v):
        return DASH
    if how == "pct":
        return format_percent(v)
    if how == "lift":
        return f"{float(v):.2f}\u00d7"
    return f"{float(v):.3f}"


def _model_card(task: str, m: Mapping[str, Any]) -> str:
    metrics: Mapping[str, Any] = m.get("metrics") or {}
    name = m.get("name") or f"churnlab-{task}"
    bits = [f"{name}"]
    if m.get("version") not in (None, ""):
        bits.append(f"version {m['version']}")
    if m.get("run_id"):
        bits.append(f"MLflow run {str(m['run_id'])[:12]}")
    if m.get("test_cutoff") is not None:
        bits.append(f"tested on the cutoff {_date(m['test_cutoff'])}")
    out = [
        f'<div class="model" data-testid="model-{task}"><h3>{_TASK_LABEL[task]} model</h3>',
        f'<p class="meta">{_e(" · ".join(bits))}</p>',
    ]
    summary = _model_summary(task, metrics)
    if summary:
        out.append(f'<p class="summary">{_e(" ".join(summary))}</p>')
    out.append(_metrics_table(task, metrics))
    out.append(_calibration(task, m.get("calibration")))
    out.append("</div>")
    return "".join(out)


_BASELINES: tuple[tuple[str, str, str], ...] = (  # metric prefix, in sentences, column header
    ("baseline_logreg", "logistic regression", "Logistic regression"),
    ("baseline_btyd", "BG/NBD model", "BG/NBD"),  # orders-only churn (issue 13, item 2)
    ("baseline_heuristic", "recency/activity heuristic", "Heuristic"),
)


def _baselines(metrics: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The baselines to show: logistic regression always; BG/NBD and the heuristic when logged.

    The heuristic is not scored when the data has no recency or activity feature (subscriptions
    alone, for example): a constant would only show ROC-AUC 0.5.
    """
    return [
        b
        for b in _BASELINES
        if b[0] == "baseline_logreg" or any(k.startswith(f"{b[0]}.") for k in metrics)
    ]


def _model_summary(task: str, metrics: Mapping[str, Any]) -> list[str]:
    """Plain sentences: ranking against the baselines, lift in the top 10%, calibration error."""
    summary = []
    auc = _num(metrics.get("test.roc_auc"))
    if auc is not None:
        base = [
            (lbl, v)
            for prefix, lbl, _ in _baselines(metrics)
            if (v := _num(metrics.get(f"{prefix}.roc_auc"))) is not None
        ]
        if base:
            loses = [lbl for lbl, v in base if auc <= v]
            vs = ", ".join(f"{lbl} {v:.3f}" for lbl, v in base)
            if not loses:
                which = {1: "the baseline", 2: "both baselines"}.get(len(base), "every baseline")
                summary.append(f"Ranks accounts better than {which} (ROC-AUC {auc:.3f} vs {vs}).")
            else:
                summary.append(
                    f"Does not beat the {' and the '.join(loses)} on ROC-AUC "
                    f"({auc:.3f} vs {vs}): treat its ranking with care."
                )
    noise = _noise_sentence(metrics)
    if noise:
        summary.append(noise)
    lift = _num(metrics.get("test.lift_top10"))
    if lift is not None:
        word = "churn" if task == "churn" else "expansion"
        summary.append(
            f"The 10% of accounts it ranks highest {word} at {lift:.1f}× the average rate."
        )
    ece = metrics.get("test.ece")
    if _finite(ece):
        summary.append(f"Probabilities are off by {format_percent(ece)} on average (ECE).")
    return summary


def _noise_sentence(metrics: Mapping[str, Any]) -> str | None:
    """How sure the ROC-AUC comparison is: each baseline's difference and 95% interval.

    One test cutoff holds a few thousand accounts; the paired bootstrap of
    :mod:`churnlab.compare` says whether a lead (or a deficit) is more than that noise.
    """
    parts = []
    for prefix, label, _ in _baselines(metrics):
        name = prefix.removeprefix("baseline_")
        diff = _num(metrics.get(f"vs_{name}.roc_auc_diff"))
        lo, hi = (
            _num(metrics.get(f"vs_{name}.roc_auc_lo")),
            _num(metrics.get(f"vs_{name}.roc_auc_hi")),
        )
        if diff is None or lo is None or hi is None:
            continue
        word = {"ahead": "clearly ahead", "behind": "clearly behind"}.get(
            compare.verdict(metrics, name, "roc_auc"), "within the noise of one test cutoff"
        )
        parts.append(f"{label} {diff:+.3f} (95% interval {lo:+.3f} to {hi:+.3f}, {word})")
    if not parts:
        return None
    return "ROC-AUC difference from " + "; from ".join(parts) + "."


def _metrics_table(task: str, metrics: Mapping[str, Any]) -> str:
    """The test metrics of the model beside the baselines' (a note when there are none)."""
    rows = []
    base = _baselines(metrics)
    prefixes = ["test", *(b[0] for b in base)]
    for key, label, how in _METRIC_ROWS:
        vals = [metrics.get(f"{p}.{key}") for p in prefixes]
        if not _finite(vals[0]):
            continue
        rows.append([label, *(_metric_text(v, how) for v in vals)])
    oracle = _num(metrics.get("test.oracle_roc_auc"))
    if oracle is not None:
        rows.append(
            [
                "ROC-AUC of the true probabilities (synthetic data only)",
                f"{oracle:.3f}",
                *(DASH for _ in base),
            ]
        )
    if not rows:
        return _note("No test metrics were provided for this model.", f"note-metrics-{task}")
    return _static_table(
        [
            ("Metric (test cutoff)", False),
            ("This model", True),
            *((header, True) for _, _, header in base),
        ],
        rows,
        f"metrics-{task}",
    )


def _calibration(task: str, cal: Any) -> str:
    """The calibration curve as a figure (a note when it is missing or lacks its columns)."""
    if (
        isinstance(cal, pd.DataFrame)
        and not cal.empty
        and not _missing_columns(cal, ("mean_predicted", "realised"))
    ):
        return (
            '<figure class="cal" '
            f'data-testid="calibration-{task}-figure"><figcaption>Calibration: predicted '
            "vs realised rate per probability bin (on the diagonal = calibrated)</figcaption>"
            + _calibration_chart(
                f"calibration-{task}", f"{_TASK_LABEL[task]} calibration curve", cal
            )
            + "</figure>"
        )
    return _note("No calibration curve was provided.", f"note-calibration-{task}")


def _pvr(frame: pd.DataFrame | None) -> str:
    out = ["<h3>Predicted vs realised churn per past cutoff</h3>"]
    if frame is None or frame.empty:
        return "".join(out) + _note(
            "Predicted vs realised churn per cutoff was not provided.", "note-pvr"
        )
    miss = _missing_columns(frame, ("cutoff", "mean_predicted", "realised_rate"))
    if miss:
        return "".join(out) + _note(
            f"Predicted vs realised: the table lacks the columns {', '.join(miss)}.",
            "note-pvr",
            warn=True,
        )
    f = frame.sort_values("cutoff", kind="stable")
    labels = _period_labels(pd.DatetimeIndex(pd.to_datetime(f["cutoff"])))
    waiting = [not _finite(v) for v in f["realised_rate"]]
    series = [
        _Series("mean predicted", _clean(f["mean_predicted"]), _PALETTE[0], dashed=True),
        _Series("realised", _clean(f["realised_rate"]), _PALETTE[1]),
    ]
    chart = _line_chart(
        "chart-pvr",
        "Predicted vs realised churn per cutoff",
        labels,
        [False] * len(labels),
        series,
        "pct",
        zero_based=True,
        wide=True,
    )
    out.append(f'<figure class="kpi wide" data-testid="chart-pvr-figure">{chart}</figure>')
    rows = []
    for (_, r), wait in zip(f.iterrows(), waiting, strict=True):
        diff = (
            DASH
            if wait
            else f"{(float(r['mean_predicted']) - float(r['realised_rate'])) * 100:+.1f} pp"
        )
        rows.append(
            [
                _date(r["cutoff"]),
                str(r.get("role", "")) if pd.notna(r.get("role", "")) else "",
                format_int(r.get("rows")),
                format_percent(r["mean_predicted"]),
                "window still open" if wait else format_percent(r["realised_rate"]),
                diff,
            ]
        )
    out.append(
        _static_table(
            [
                ("Cutoff", False),
                ("Role", False),
                ("Accounts", True),
                ("Mean predicted", True),
                ("Realised", True),
                ("Predicted − realised", True),
            ],
            rows,
            "pvr-table",
        )
    )
    out.append(
        '<p class="hint">Only validation, test and later cutoffs are honest out-of-sample checks; '
        "training cutoffs were fitted on.</p>"
    )
    return "".join(out)


def _drift(frame: pd.DataFrame | None, threshold: float) -> str:
    out = ["<h3>Feature drift</h3>"]
    if frame is None:
        return "".join(out) + _note("Feature drift (PSI) was not provided.", "note-drift")
    if frame.empty or "psi" not in frame.columns:
        return "".join(out) + _note("Feature drift: no PSI values were provided.", "note-drift")
    f = frame.assign(_psi=pd.to_numeric(frame["psi"], errors="coerce")).sort_values(
        "_psi", ascending=False, kind="stable", na_position="last"
    )
    drifted = f[f["_psi"] > threshold]
    if len(drifted):
        names = ", ".join(
            str(r.get("description") or r.get("feature")) for _, r in drifted.head(5).iterrows()
        )
        more = f" and {len(drifted) - 5} more" if len(drifted) > 5 else ""
        out.append(
            _note(
                f"{len(drifted)} feature{'s' if len(drifted) != 1 else ''} drifted above PSI "
                f"{threshold:g} "
                f"between the training data and the scored data: {names}{more}. Scores that lean "
                "on "
                "them deserve a second look; retraining on recent data usually helps.",
                "drift-warning",
                warn=True,
            )
        )
    else:
        out.append(
            f'<p data-testid="drift-ok">No feature drifted above PSI {threshold:g}: the scored '
            "accounts look like the training data.</p>"
        )
    shown = pd.concat([drifted, f.head(10)]).drop_duplicates(
        subset=["feature"] if "feature" in f.columns else None
    )
    shown = shown.sort_values("_psi", ascending=False, kind="stable", na_position="last")
    rows, classes = [], []
    shares = {"missing_trained", "missing_now"} <= set(f.columns)  # older drift.csv files lack them
    for _, r in shown.iterrows():
        psi = r["_psi"]
        bad = _finite(psi) and float(psi) > threshold
        row = [
            str(r.get("description", "") or ""),
            str(r.get("feature", "")),
            f"{float(psi):.3f}" if _finite(psi) else DASH,
        ]
        if shares:
            row.append(_empty_shares(r["missing_trained"], r["missing_now"]))
        rows.append([*row, "drifted" if bad else "stable"])
        classes.append("drifted" if bad else "")
    headers = [("Feature", False), ("Column", False), ("PSI", True)]
    if shares:
        headers.append(("Without a value: training, now", True))
    out.append(
        _static_table(
            [*headers, ("Status", False)],
            rows,
            "drift-table",
            row_classes=classes,
        )
    )
    return "".join(out)


def _empty_shares(trained: object, now: object) -> str:
    """The shares of rows without a value, in training and scored, e.g. ``6.7%, 0.0%``."""
    a, b = pd.to_numeric(trained, errors="coerce"), pd.to_numeric(now, errors="coerce")
    if not (_finite(a) and _finite(b)):
        return DASH
    return f"{100 * float(a):.1f}%, {100 * float(b):.1f}%"


def _models(inputs: ReportInputs) -> str:
    out = ['<section id="models" data-testid="models"><h2>Model quality at a glance</h2>']
    models = inputs.models or {}
    cards = []
    for task in TASKS:
        m = models.get(task)
        if m:
            cards.append(_model_card(task, m))
        else:
            cards.append(
                f'<div class="model" data-testid="model-{task}"><h3>{_TASK_LABEL[task]} model</h3>'
                + _note(f"No {task} model in this report.", f"note-model-{task}")
                + "</div>"
            )
    out.append(f'<div class="models">{"".join(cards)}</div>')
    out.append(_pvr(inputs.predicted_vs_realised))
    out.append(_drift(inputs.drift, float(inputs.drift_threshold)))
    out.append("</section>")
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Drivers


def _drivers(inputs: ReportInputs) -> str:
    out = [
        '<section id="drivers" data-testid="drivers"><h2>What drives the scores</h2>'
        '<p class="lead">Global TreeSHAP importance: how much each input moves the model\'s '
        'predictions on average, as a share of all inputs.</p><div class="models">'
    ]
    drivers = inputs.drivers or {}
    for task in TASKS:
        frame = drivers.get(task)
        what = "churn risk" if task == "churn" else "expansion likelihood"
        out.append(
            f'<div class="drivers" data-testid="drivers-{task}"><h3>{_TASK_LABEL[task]}: top '
            f"drivers of {what}</h3>"
        )
        if not isinstance(frame, pd.DataFrame) or frame.empty:
            out.append(_note(f"No {task} drivers in this report.", f"note-drivers-{task}"))
            out.append("</div>")
            continue
        miss = _missing_columns(frame, ("mean_abs_shap",))
        if miss or not ({"feature", "description"} & set(frame.columns)):
            out.append(
                _note(
                    "The driver table lacks mean_abs_shap or feature names.",
                    f"note-drivers-{task}",
                    warn=True,
                )
            )
            out.append("</div>")
            continue
        f = frame.assign(
            _v=pd.to_numeric(frame["mean_abs_shap"], errors="coerce").fillna(0.0).abs()
        )
        f = f.sort_values("_v", ascending=False, kind="stable")
        total = float(f["_v"].sum())
        top = f.head(10)
        items = []
        for _, r in top.iterrows():
            share = float(r["_v"]) / total if total > 0 else 0.0
            desc = r.get("description")
            feat = r.get("feature")
            words = str(desc) if isinstance(desc, str) and desc.strip() else str(feat)
            group = r.get("group")
            tag = (
                f'<span class="tag">{_e(group)}</span>' if isinstance(group, str) and group else ""
            )
            col = f" <code>{_e(feat)}</code>" if isinstance(feat, str) and feat != words else ""
            items.append(
                f'<li><div class="driver"><span class="words">{_e(words)}</span>{tag}{col}</div>'
                f'<div class="meter"><span class="bar" style="width:{share * 100:.1f}%"></span>'
                f'<span class="barlabel">{_e(format_percent(share))}</span></div></li>'
            )
        out.append(f'<ol class="driverlist">{"".join(items)}</ol>')
        if "group" in f.columns:
            g = (
                f.groupby(f["group"].fillna("other").astype(str))["_v"]
                .sum()
                .sort_values(ascending=False)
            )
            rows = []
            sentence: list[str] = []
            for name, v in g.items():
                share = float(v) / total if total > 0 else 0.0
                rows.append(
                    f'<tr><th scope="row">{_e(name)}</th><td class="barcol"><span class="bar" '
                    f'style="width:{share * 100:.1f}%"></span><span class="barlabel">'
                    f"{_e(format_percent(share))}</span></td></tr>"
                )
                if len(sentence) < 2:
                    sentence.append(f"{name} ({format_percent(share)})")
            out.append(
                f"<p>By driver group, {_e(' and '.join(sentence))} weigh most.</p>"
                f'<div class="tablewrap"><table class="groups" data-testid="driver-groups-{task}">'
                '<thead><tr><th scope="col">Driver group</th><th scope="col">Share of '
                "importance</th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table></div>"
            )
        out.append("</div>")
    out.append("</div></section>")
    return "".join(out)

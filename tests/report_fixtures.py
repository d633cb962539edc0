"""Realistic inputs for the HTML report, shared by its unit and browser tests.

The KPI frames are the real output of ``churnlab.kpis.compute`` on a small synthetic world (a
contractual one, and an orders-only one without NPS and campaign tables); the lists, model
summaries and drivers are fabricated with the column names ``churnlab score`` and training
produce, and account names full of characters that must be escaped.
"""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np
import pandas as pd

from churnlab import kpis, synth
from churnlab.config import DataParams, KpiParams, SynthParams
from churnlab.load import connect_frames
from churnlab.report import ReportInputs

AS_OF = dt.date(2025, 3, 1)
GENERATED = dt.datetime(2025, 3, 2, 7, 30)

AWKWARD_NAMES = (
    "Müller & Söhne <GmbH>",
    'O\'Brien "Quotes" Ltd',
    "</script><script>window.__pwned = 1</script>",
    "<img src=x onerror=alert(1)>",
    "Ünïcødé 日本語 株式会社",
    "Tab\tand\nnewline Co.",
    "&amp; already escaped",
    "line\u2028separator Inc",
    "<!-- comment --> Corp",
    "Plain Widgets",
)
SEGMENTS = ("smb", "mid-market", "enterprise")
OWNERS = ("Ana <ana@example.com>", "Bo & Co", "Chen", "Dee 'DJ' Jones")
BANDS = (("critical", 0.4), ("high", 0.2), ("medium", 0.1), ("low", 0.0))
PLAYS = {
    "engagement": "Usage review call",
    "commercial": "Renewal & pricing check",
    "support": "Escalate open tickets",
    "sentiment": "Executive sponsor outreach",
    "marketing": "Re-engagement nurture",
}
FEATURES = (
    (
        "seat_utilisation_30d",
        "share of paid seats used by active users in the last 30 days",
        "engagement",
    ),
    (
        "events_trend_30_60",
        "product events per day in the last 30 days against the previous 60 days",
        "engagement",
    ),
    ("days_since_login", "days since the last login", "engagement"),
    ("tickets_90d", "support tickets opened in the last 90 days", "support"),
    ("urgent_tickets_90d", "urgent support tickets in the last 90 days", "support"),
    ("nps_last", "latest NPS score", "sentiment"),
    ("mrr_change_90d", "MRR change over the last 90 days", "commercial"),
    ("days_to_renewal", "days until the paid-through date", "commercial"),
    ("email_clicks_30d", "campaign clicks in the last 30 days", "marketing"),
    ("tenure_days", "days since the account was created", "profile"),
    ("plan", "subscription plan", "profile"),
    ("csat_90d", "mean CSAT of tickets in the last 90 days", "support"),
)


def band_of(p: float) -> str:
    for name, lo in BANDS:
        if p >= lo:
            return name
    return BANDS[-1][0]


@functools.cache
def _kpi_results() -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    tables, _oracle, _realised = synth.generate(
        SynthParams(accounts=150, months=14, seed=3, start=dt.date(2024, 1, 1))
    )
    # as_of in the middle of March: March is a partial period at the end of the data.
    data = DataParams(as_of=dt.datetime(2025, 3, 15))
    full = kpis.compute(connect_frames(tables), KpiParams(), data)
    orders_only = {
        k: v for k, v in tables.items() if k not in ("subscriptions", "nps", "campaign_events")
    }
    sparse = kpis.compute(connect_frames(orders_only), KpiParams(), data)
    return full, sparse


def kpi_frames(orders_only: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The monthly KPI frame and the catalogue (orders-only: without NPS/campaign columns)."""
    full, sparse = _kpi_results()
    if not orders_only:
        return full["monthly"].copy(), full["metrics"].copy()
    monthly = sparse["monthly"]
    drop = [
        c
        for c in monthly.columns
        if c.startswith(("nps", "campaign_", "promoters", "passives", "detractors"))
        or c in ("open_rate", "click_rate")
    ]
    return monthly.drop(columns=drop), sparse["metrics"].copy()


def at_risk_frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = np.clip(rng.beta(1.2, 5.0, n), 0.003, 0.97)
    arr = np.round(rng.gamma(1.6, 14000.0, n), 2)
    arr[rng.choice(n, 3, replace=False)] = np.nan  # a few accounts without a known ARR
    names = [
        AWKWARD_NAMES[i]
        if i < len(AWKWARD_NAMES)
        else f"{AWKWARD_NAMES[i % len(AWKWARD_NAMES)]} #{i}"
        for i in range(n)
    ]
    rows = []
    for i in range(n):
        picks = rng.choice(len(FEATURES), 3, replace=False)
        pts = np.sort(rng.gamma(2.0, 2.0, 3))[::-1]
        g = FEATURES[picks[0]][2]
        g = g if g in PLAYS else "engagement"
        row = {
            "account_id": f"A{i + 1:06d}",
            "name": names[i],
            "segment": SEGMENTS[int(rng.integers(0, 3))],
            "owner": OWNERS[int(rng.integers(0, len(OWNERS)))],
            "churn_probability": float(p[i]),
            "risk_band": band_of(float(p[i])),
            "arr": float(arr[i]),
            "revenue_at_risk": float(p[i] * arr[i]),
            "driver_group": g,
            "play": PLAYS[g],
        }
        for k in range(3):
            feat = FEATURES[picks[k]]
            row[f"reason_{k + 1}"] = (
                f"{feat[1]} is {rng.integers(1, 90)} (usually {rng.integers(20, 120)}) <{k}> & "
                f"more: {pts[k]:+.1f} points of churn risk"
            )
            row[f"reason_{k + 1}_points"] = float(pts[k])
            row[f"reason_{k + 1}_feature"] = feat[0]
            row[f"reason_{k + 1}_group"] = feat[2]
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.loc[5, "reason_3"] = None  # an account with only two reasons
    frame.loc[5, "reason_3_points"] = np.nan
    order = frame["revenue_at_risk"].fillna(-1).sort_values(ascending=False, kind="stable").index
    frame["rank"] = 0
    frame.loc[order, "rank"] = np.arange(1, n + 1)
    return frame.sort_values("rank").reset_index(drop=True)


def expansion_frame(n: int = 300, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.beta(2.0, 6.0, n)
    amount = rng.gamma(2.0, 3000.0, n)
    offers = ("Seat pack +10", "Analytics add-on", "Annual plan upgrade")
    frame = pd.DataFrame(
        {
            "account_id": [f"A{i + 1001:06d}" for i in range(n)],
            "name": [AWKWARD_NAMES[(i + 3) % len(AWKWARD_NAMES)] + f" x{i}" for i in range(n)],
            "segment": [SEGMENTS[i % 3] for i in range(n)],
            "owner": [OWNERS[i % len(OWNERS)] for i in range(n)],
            "expansion_probability": p,
            "expected_expansion_value": p * amount,
            "offer": [offers[i % 3] for i in range(n)],
            "reason_1": [
                f"active users grew {int(x)}% in the last 30 days: +{x / 10:.1f} points of "
                "expansion likelihood"
                for x in rng.integers(5, 80, n)
            ],
            "reason_2": [
                "seat utilisation is 96% (usually 70%): +2.1 points of expansion likelihood"
            ]
            * n,
            "reason_3": ["latest NPS score is 10 (usually 7): +1.0 points of expansion likelihood"]
            * n,
        }
    )
    frame = frame.sort_values("expected_expansion_value", ascending=False, kind="stable")
    frame["rank"] = np.arange(1, n + 1)
    return frame.reset_index(drop=True)


def by_band(at_risk: pd.DataFrame) -> pd.DataFrame:
    g = at_risk.groupby("risk_band")
    out = pd.DataFrame(
        {
            "accounts": g.size(),
            "arr": g["arr"].sum(),
            "revenue_at_risk": g["revenue_at_risk"].sum(),
            "mean_probability": g["churn_probability"].mean(),
        }
    ).reset_index()
    return out.sort_values("mean_probability", ascending=False).reset_index(drop=True)


def model_summary(task: str) -> dict:
    metrics = {
        "test.roc_auc": 0.815 if task == "churn" else 0.806,
        "test.pr_auc": 0.467,
        "test.log_loss": 0.290,
        "test.brier": 0.081,
        "test.ece": 0.010,
        "test.lift_top10": 4.17,
        "test.precision_top10": 0.52,
        "test.recall_top10": 0.41,
        "test.value_captured_top10": 0.38,
        "test.oracle_roc_auc": 0.833,
        "baseline_logreg.roc_auc": 0.801,
        "baseline_logreg.pr_auc": 0.430,
        "baseline_logreg.log_loss": 0.304,
        "baseline_logreg.ece": 0.028,
        "baseline_logreg.lift_top10": 3.97,
        "baseline_heuristic.roc_auc": 0.723,
        "baseline_heuristic.pr_auc": 0.225,
        "baseline_heuristic.lift_top10": 2.04,
    }
    mp = np.array([0.02, 0.06, 0.11, 0.18, 0.27, 0.41, 0.63])
    calibration = pd.DataFrame(
        {
            "bin": range(len(mp)),
            "mean_predicted": mp,
            "realised": mp * np.array([1.1, 0.9, 1.05, 0.97, 1.02, 0.95, 1.03]),
            "rows": [2100, 1200, 700, 450, 300, 160, 90],
        }
    )
    return {
        "name": f"churnlab-{task}",
        "version": 3 if task == "churn" else 2,
        "run_id": "0f3c9a1be4d2487cb1aa2f31c6d8e9f0",
        "test_cutoff": dt.date(2024, 10, 1),
        "metrics": metrics,
        "calibration": calibration,
    }


def predicted_vs_realised() -> pd.DataFrame:
    cutoffs = pd.date_range("2024-03-01", periods=12, freq="MS")
    roles = ["train"] * 6 + ["valid"] + ["not used in training"] + ["test"] + ["after test"] * 3
    pred = np.linspace(0.08, 0.11, 12)
    real = pred + np.array(
        [0.004, -0.006, 0.003, 0.0, -0.002, 0.005, -0.01, 0.004, 0.006, np.nan, np.nan, np.nan]
    )
    return pd.DataFrame(
        {
            "cutoff": cutoffs,
            "role": roles,
            "rows": np.arange(4200, 4800, 50),
            "mean_predicted": pred,
            "realised_rate": real,
        }
    )


def drift_frame() -> pd.DataFrame:
    psi = [0.41, 0.27, 0.12, 0.08, 0.05, 0.04, 0.03, 0.02, 0.01, 0.01, 0.005, 0.0]
    frame = pd.DataFrame(
        {"feature": [f[0] for f in FEATURES], "description": [f[1] for f in FEATURES], "psi": psi}
    )
    return frame.sort_values("psi", ascending=False).reset_index(drop=True)


def drivers_frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "feature": [f[0] for f in FEATURES],
            "description": [f[1] for f in FEATURES],
            "group": [f[2] for f in FEATURES],
            "mean_abs_shap": rng.gamma(1.5, 0.1, len(FEATURES)),
        }
    )
    return frame.sort_values("mean_abs_shap", ascending=False).reset_index(drop=True)


def audiences() -> tuple[pd.DataFrame, pd.DataFrame]:
    summary = pd.DataFrame(
        {
            "campaign": ["Save <critical> accounts", "Seat expansion Q2", "Win-back & nurture"],
            "kind": ["retention", "upsell", "retention"],
            "contacts": [120, 80, 40],
            "holdout": [12, 8, 4],
            "cost": [6000.0, 1600.0, 400.0],
            "expected_value": [48000.0, 22000.0, 300.0],
            "expected_net_value": [42000.0, 20400.0, -100.0],
        }
    )
    rows = pd.DataFrame(
        {
            "account_id": [f"A{i + 1:06d}" for i in range(240)],
            "campaign": ["Save <critical> accounts"] * 120
            + ["Seat expansion Q2"] * 80
            + ["Win-back & nurture"] * 40,
            "holdout": [i % 10 == 0 for i in range(240)],
            "expected_value": np.linspace(900.0, 5.0, 240),
        }
    )
    return summary, rows


def full_inputs(n_at_risk: int = 600) -> ReportInputs:
    ar = at_risk_frame(n_at_risk)
    ex = expansion_frame()
    monthly, catalogue = kpi_frames()
    summary, rows = audiences()
    return ReportInputs(
        title="Acme <Analytics> & Co: churn & expansion report",
        as_of=AS_OF,
        generated_at=GENERATED,
        headline={
            "accounts_scored": len(ar),
            "total_arr": float(ar["arr"].sum()),
            "revenue_at_risk": float(ar["revenue_at_risk"].sum()),
            "expected_expansion_value": float(ex["expected_expansion_value"].sum()),
            "by_band": by_band(ar),
        },
        kpis=monthly,
        kpi_catalogue=catalogue,
        models={"churn": model_summary("churn"), "expansion": model_summary("expansion")},
        predicted_vs_realised=predicted_vs_realised(),
        drift=drift_frame(),
        drivers={"churn": drivers_frame(1), "expansion": drivers_frame(2)},
        at_risk=ar,
        expansion=ex,
        audiences=summary,
        audience_rows=rows,
        notes=["Scored with the champion model v3 <trained 2025-02-01> & checked"],
        currency="$",
    )


def sparse_inputs() -> ReportInputs:
    """Missing pieces: no expansion model or list, orders-only KPIs, no drift, no audiences."""
    ar = at_risk_frame(120, seed=5)
    monthly, catalogue = kpi_frames(orders_only=True)
    return ReportInputs(
        title="Orders-only shop",
        as_of=AS_OF,
        generated_at=GENERATED,
        headline={
            "accounts_scored": 120,
            "total_arr": float(ar["arr"].sum()),
            "revenue_at_risk": float(ar["revenue_at_risk"].sum()),
            "by_band": by_band(ar),
        },
        kpis=monthly,
        kpi_catalogue=catalogue,
        models={"churn": model_summary("churn")},
        drivers={"churn": drivers_frame(1)},
        at_risk=ar,
        notes=["No subscriptions table: buyer metrics replace the subscription KPIs"],
    )


def measurement() -> dict:
    """What `churnlab measure` hands the report: a retention campaign that helps, an upsell one
    that harms (too small a holdout), one with no detectable effect, and a pending campaign."""
    nan = float("nan")

    def camp(cid, kind, o, n_t, n_c, t, h, lo, hi, verdict, gain, cost, warning=""):
        row = {"campaign_id": cid, "kind": kind, "primary_outcome": o, "n_treated": n_t,
               "n_holdout": n_c, "cost": cost, "warning": warning}  # fmt: skip
        for out in ("churn", "expansion"):
            for part in ("treated", "holdout", "diff", "ci_low", "ci_high"):
                row[f"{out}_{part}"] = nan
            row[f"{out}_verdict"] = "not measured"
        row |= {f"{o}_treated": t, f"{o}_holdout": h, f"{o}_diff": t - h, f"{o}_ci_low": lo,
                f"{o}_ci_high": hi, f"{o}_verdict": verdict}  # fmt: skip
        row["incremental_retained_arr" if o == "churn" else "incremental_expansion_value"] = gain
        return row

    campaigns = pd.DataFrame(
        [
            camp("csm-save-call-2024-10-01", "retention", "churn", 900, 100, 0.08, 0.14,
                 -0.121, -0.0104, "lowered churn", 64800.0, 135000.0),
            camp("upsell <b>&amp; 2024-10-01", "upsell", "expansion", 300, 20, 0.05, 0.25,
                 -0.42, -0.031, "lowered expansion (harmful)", -9000.0, 6000.0,
                 "holdout too small"),
            camp("referral-ask-2024-10-01", "advocacy", "churn", 400, 45, 0.05, 0.0444,
                 -0.06, 0.05, "no detectable effect", 1200.0, 2000.0),
        ]
    )  # fmt: skip
    warnings = pd.DataFrame(
        [
            {"campaign_id": "upsell <b>&amp; 2024-10-01", "segment_type": "all", "segment": "all",
             "outcome": "expansion", "n_holdout": 20, "events_holdout": 5,
             "message": "holdout too small to measure the campaign: 20 held-out accounts (need "
                        "at least 30)"},
            {"campaign_id": "upsell <b>&amp; 2024-10-01", "segment_type": "all", "segment": "all",
             "outcome": "churn", "n_holdout": 20, "events_holdout": 1,
             "message": "a warning on the other outcome"},
        ]
    )  # fmt: skip
    pending = pd.DataFrame(
        [{"campaign_id": "training-session-2025-02-01", "kind": "retention", "accounts": 250,
          "holdout_accounts": 25, "window_end": pd.Timestamp("2025-05-02"), "days_to_go": 62}]
    )  # fmt: skip
    return {"campaigns": campaigns, "warnings": warnings, "pending": pending,
            "data_end": pd.Timestamp("2025-03-01"), "level": 0.95}  # fmt: skip

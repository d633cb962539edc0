"""A fabricated training set with a planted signal, shared by model and registry tests.

It has the training-set interface of ``churnlab build-dataset``: churn falls with logins and rises
with days since the last login and with tickets; expansion rises with logins and NPS promoters.
The generating probabilities are returned as the oracle.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnlab.manifest import Feature, Manifest


def planted_training_set(n_accounts=800, n_cutoffs=12, seed=0, unlabeled=2):
    rng = np.random.default_rng(seed)
    cutoffs = pd.date_range("2025-01-01", periods=n_cutoffs, freq="MS").astype("datetime64[us]")
    rows = []
    seg = rng.choice(["smb", "mid", "ent"], n_accounts)
    base_act = rng.gamma(2.0, 10.0, n_accounts)
    for i, c in enumerate(cutoffs):
        logins = rng.poisson(base_act * rng.uniform(0.3, 1.5, n_accounts)).astype(float)
        days = np.where(
            logins > 0, rng.exponential(5, n_accounts), rng.uniform(30, 120, n_accounts)
        )
        tickets = rng.poisson(1.0, n_accounts).astype(float)
        nps = np.where(
            rng.random(n_accounts) < 0.5, rng.integers(0, 11, n_accounts), np.nan
        ).astype(float)
        mrr = rng.gamma(2, 200, n_accounts)
        z = -2.0 - 0.08 * logins + 0.02 * days + 0.3 * tickets + np.where(seg == "smb", 0.5, 0.0)
        pc = 1 / (1 + np.exp(-z))
        ze = -2.5 + 0.03 * logins + np.where(nps >= 9, 1.5, 0.0)
        pe = 1 / (1 + np.exp(-ze))
        labeled = i < n_cutoffs - unlabeled
        churn = (rng.random(n_accounts) < pc).astype(float)
        exp = (rng.random(n_accounts) < pe).astype(float)
        rows.append(
            pd.DataFrame(
                {
                    "account_id": [f"A{j:05d}" for j in range(n_accounts)],
                    "cutoff": np.repeat(c, n_accounts),
                    "logins_30d": logins,
                    "days_since_last_login": days,
                    "tickets_90d": tickets,
                    "nps_last": nps,
                    "segment": seg,
                    "churn": churn if labeled else np.nan,
                    "expansion": exp if labeled else np.nan,
                    "expansion_amount": np.where(exp == 1, mrr * 0.2, 0.0) if labeled else np.nan,
                    "mrr": mrr,
                    "arr": 12 * mrr,
                    "labeled": labeled,
                    "p_churn": pc,
                    "p_expansion": pe,
                }
            )
        )
    frame = pd.concat(rows, ignore_index=True)
    frame["segment"] = frame["segment"].astype("category")
    frame["cutoff"] = frame["cutoff"].astype("datetime64[us]")
    oracle = frame[["account_id", "cutoff", "p_churn", "p_expansion"]].copy()
    frame = frame.drop(columns=["p_churn", "p_expansion"])
    manifest = Manifest(
        mode="contractual",
        horizon_days=90,
        windows=(30, 90),
        data_end=str(cutoffs[-1]),
        cutoffs=tuple(str(c.date()) for c in cutoffs),
        per_cutoff=(),
        rows=len(frame),
        features=(
            # Logins are product events: the heuristic baseline's activity and recency.
            Feature(
                "logins_30d",
                "logins in the last 30 days",
                "engagement",
                table="events",
                measure="events",
                window=30,
            ),
            Feature(
                "days_since_last_login",
                "days since the last login",
                "engagement",
                kind="days",
                table="events",
                measure="days_since_last_event",
            ),
            Feature(
                "tickets_90d",
                "support tickets in the last 90 days",
                "support",
                table="tickets",
                measure="tickets",
                window=90,
            ),
            Feature("nps_last", "latest NPS score", "sentiment", kind="value", table="nps"),
            Feature(
                "segment",
                "segment",
                "profile",
                dtype="category",
                kind="category",
                table="accounts",
            ),
        ),
    )
    return frame, manifest, oracle

"""Benchmark: campaign audiences for 100k accounts x 4 campaigns with a binding budget.

Times ``audiences.candidate_pairs`` and ``audiences.select`` on random scored accounts (churn
probabilities from a Beta distribution, log-normal ARR, a quarter of the accounts with an
expansion score, a third with an NPS category) and prints the seconds, the objective, the LP
bound, the gap and the method that ran. The budget is ``--budget-share`` of what the
unconstrained selection would cost, so it binds. Target: both steps together in at most 10 s.

Usage: ``python benchmarks/audiences.py [--accounts N] [--campaigns K] [--budget-share S]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from churnlab import audiences
from churnlab.audiences import Campaign

BANDS = np.array(["low", "medium", "high"])
PLAYS = np.array(["adoption", "pricing", "support", "exec_sponsor"])
DRIVERS = np.array(["engagement", "commercial", "support", "marketing", "sentiment", "profile"])


def scored(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random at-risk and expansion frames of ``n`` accounts."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"acc{i:07d}" for i in range(n)])
    p = rng.beta(1.2, 8.0, n)
    arr = np.round(rng.lognormal(8.5, 1.0, n), 2)
    band = BANDS[np.searchsorted([0.1, 0.3], p, side="right")]
    at_risk = pd.DataFrame(
        {
            "account_id": ids,
            "churn_probability": p,
            "risk_band": band,
            "arr": arr,
            "revenue_at_risk": p * arr,
            "driver_group": rng.choice(DRIVERS, n),
            "play": rng.choice(PLAYS, n),
            "nps_category": pd.Series(rng.choice(["detractor", "passive", "promoter"], n)).where(
                rng.random(n) < 0.35
            ),
        }
    )
    pick = np.flatnonzero((band != "high") & (rng.random(n) < 0.25))
    q = rng.beta(2.0, 5.0, len(pick))
    expansion = pd.DataFrame(
        {
            "account_id": ids[pick],
            "expansion_probability": q,
            "expected_expansion_value": q * arr[pick] * rng.uniform(0.1, 0.5, len(pick)),
            "offer": "seats",
        }
    )
    return at_risk, expansion


def campaigns(k: int) -> list[Campaign]:
    """``k`` campaigns cycling through the four kinds, with varied costs and rates."""
    templates = [
        dict(kind="retention", cost_per_contact=40.0, rate=0.15, risk_bands=("medium", "high")),
        dict(kind="upsell", cost_per_contact=15.0, rate=0.2),
        dict(kind="advocacy", cost_per_contact=5.0, rate=0.1, value_per_response=120.0,
             nps_categories=("promoter",)),
        dict(kind="nurture", cost_per_contact=1.5, rate=0.05, value_per_response=60.0,
             max_churn_probability=0.3),
    ]  # fmt: skip
    out = []
    for i in range(k):
        t = dict(templates[i % len(templates)])
        scale = 1.0 + 0.25 * (i // len(templates))
        t["cost_per_contact"] = float(t["cost_per_contact"]) * scale  # type: ignore[arg-type]
        out.append(Campaign(name=f"{t['kind']}_{i}", **t))  # type: ignore[arg-type]
    return out


def main() -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--campaigns", type=int, default=4)
    ap.add_argument("--budget-share", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=audiences.DEFAULT_TIME_LIMIT)
    args = ap.parse_args()

    at_risk, expansion = scored(args.accounts, args.seed)
    camps = campaigns(args.campaigns)

    t0 = time.perf_counter()
    pairs = audiences.candidate_pairs(at_risk, expansion, camps)
    t_pairs = time.perf_counter() - t0

    free = audiences.select(pairs, None)
    budget = round(args.budget_share * free.cost, 2)

    t0 = time.perf_counter()
    sel = audiences.select(pairs, budget, time_limit=args.time_limit)
    t_select = time.perf_counter() - t0

    print(
        f"accounts {args.accounts:,} x campaigns {args.campaigns}: {len(pairs):,} pairs, "
        f"{sel.candidates:,} with positive net value, {sel.core_pairs:,} left after the reductions"
    )
    print(f"unconstrained cost {free.cost:,.2f}; budget {budget:,.2f} "
          f"({args.budget_share:.0%}), spent {sel.cost:,.2f}")  # fmt: skip
    print(f"candidate_pairs  {t_pairs:7.2f} s")
    print(f"audiences.select {t_select:7.2f} s  (method {sel.method}, status {sel.status})")
    print(f"total            {t_pairs + t_select:7.2f} s  (target <= 10 s)")
    print(f"objective {sel.objective:,.4f}  LP bound {sel.lp_bound:,.4f}  gap {sel.gap:.3e}")
    print(f"contacts {len(sel.chosen):,}; per campaign "
          f"{sel.chosen['campaign'].value_counts().sort_index().to_dict()}")  # fmt: skip


if __name__ == "__main__":
    main()

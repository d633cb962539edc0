"""Benchmark: every retention KPI for 100k accounts over 24 months.

Prints the wall and CPU time and the peak memory (RSS of a fresh child process, so data
generation does not count) of ``kpis.compute`` and, measured in the same child on the same
tables, of two references with the ratios: (A) one plain per-account DuckDB pass over
subscriptions and orders; (B) one such pass over every table the KPIs read (the "one pass per
table" target). CPU time is printed because a shared machine can stretch wall time.

Data: the synthetic world (``churnlab.synth``) when available, else numpy-made tables of the same
shape (monthly billing rows, plan changes, churn and returns, orders with refunds, campaigns, NPS,
tickets). Usage: ``python benchmarks/kpis.py [--accounts N] [--months M] [--numpy] [--data DIR]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

START = pd.Timestamp("2024-01-01")


def numpy_world(n: int, months: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Contract tables of a plausible subscription business, vectorised."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"acc{i:06d}" for i in range(n)])
    month_starts = pd.date_range(START, periods=months + 2, freq="MS").to_numpy("datetime64[us]")
    # A fifth of the accounts exist at the start, the rest arrive evenly.
    first = np.where(rng.random(n) < 0.2, 0, rng.integers(0, months, n))
    created = month_starts[first] + rng.integers(0, 27 * 86400, n).astype("timedelta64[s]")
    created = np.where(first == 0, month_starts[0] - np.timedelta64(400, "D"), created)
    base = rng.choice([49.0, 99.0, 299.0, 999.0], n, p=[0.4, 0.3, 0.2, 0.1])
    # Per account and month: active (churn hazard 3%, return hazard 10%) and a seat multiplier.
    active = np.zeros((n, months), dtype=bool)
    state = np.ones(n, dtype=bool)
    mult = np.ones((n, months))
    m_state = np.ones(n)
    for t in range(months):
        born = first <= t
        churn = rng.random(n) < 0.03
        back = rng.random(n) < 0.10
        state = np.where(state, ~churn, back) & born
        state[first == t] = True
        step = rng.choice([0.8, 1.0, 1.25], n, p=[0.03, 0.92, 0.05])
        m_state = m_state * step
        active[:, t] = state
        mult[:, t] = m_state
    # Accounts active in the last month have a paid-through row starting at the as-of date.
    active = np.concatenate([active, active[:, -1:]], axis=1)
    mult = np.concatenate([mult, mult[:, -1:]], axis=1)
    acc_idx, month_idx = np.nonzero(active)
    subs = pd.DataFrame(
        {
            "account_id": ids[acc_idx],
            "start_at": month_starts[month_idx],
            "end_at": month_starts[month_idx + 1],
            "mrr": np.round(base[acc_idx] * mult[acc_idx, month_idx], 2),
            "plan": pd.Series(
                np.array(["s", "m", "l", "xl"])[np.searchsorted([49, 99, 299, 999], base[acc_idx])]
            ),
            "seats": (mult[acc_idx, month_idx] * 5).round().astype("int32"),
        }
    )
    # Orders, campaigns, NPS and tickets happen before the as-of date only.
    seen = month_idx < months
    acc_idx, month_idx = acc_idx[seen], month_idx[seen]
    k = len(acc_idx)
    n_orders = k // 12
    pick = rng.integers(0, k, n_orders)
    kinds = rng.choice(
        ["upsell", "cross_sell", "services", "refund"], n_orders, p=[0.35, 0.25, 0.3, 0.1]
    )
    amounts = np.round(rng.gamma(2.0, 150.0, n_orders), 2)
    amounts = np.where(kinds == "refund", -np.round(amounts / 3, 2), amounts)
    orders = pd.DataFrame(
        {
            "account_id": ids[acc_idx[pick]],
            "ordered_at": month_starts[month_idx[pick]]
            + rng.integers(0, 27 * 86400, n_orders).astype("timedelta64[s]"),
            "amount": amounts,
            "kind": kinds,
            "product": rng.choice(["a", "b", "c"], n_orders),
        }
    )
    # Two campaigns a month, each sent to 40% of the active accounts.
    sent_mask = rng.random(k * 2) < 0.4
    row = np.tile(np.arange(k), 2)[sent_mask]
    camp = (np.repeat(np.arange(2), k)[sent_mask] + 2 * month_idx[row]).astype(str)
    sent_at = month_starts[month_idx[row]] + np.timedelta64(3, "D")
    opened = rng.random(len(row)) < 0.3
    clicked = opened & (rng.random(len(row)) < 0.2)
    ce = pd.concat(
        [
            pd.DataFrame(
                {
                    "account_id": ids[acc_idx[row]],
                    "occurred_at": sent_at,
                    "campaign_id": camp,
                    "action": "sent",
                }
            ),
            pd.DataFrame(
                {
                    "account_id": ids[acc_idx[row[opened]]],
                    "occurred_at": sent_at[opened] + np.timedelta64(1, "D"),
                    "campaign_id": camp[opened],
                    "action": "open",
                }
            ),
            pd.DataFrame(
                {
                    "account_id": ids[acc_idx[row[clicked]]],
                    "occurred_at": sent_at[clicked] + np.timedelta64(2, "D"),
                    "campaign_id": camp[clicked],
                    "action": "click",
                }
            ),
        ],
        ignore_index=True,
    )
    ce["campaign_type"] = "newsletter"
    resp = rng.random(k) < 0.07
    nps = pd.DataFrame(
        {
            "account_id": ids[acc_idx[resp]],
            "responded_at": month_starts[month_idx[resp]] + np.timedelta64(10, "D"),
            "score": rng.integers(0, 11, int(resp.sum())).astype("float64"),
            "comment": np.where(rng.random(int(resp.sum())) < 0.3, "ok", None),
        }
    )
    tick = rng.random(k) < 0.25
    tickets = pd.DataFrame(
        {
            "account_id": ids[acc_idx[tick]],
            "opened_at": month_starts[month_idx[tick]] + np.timedelta64(5, "D"),
            "closed_at": month_starts[month_idx[tick]] + np.timedelta64(7, "D"),
            "priority": rng.choice(["low", "normal", "high", "urgent"], int(tick.sum())),
            "csat": rng.integers(1, 6, int(tick.sum())).astype("float64"),
        }
    )
    accounts = pd.DataFrame({"account_id": ids, "created_at": created.astype("datetime64[us]")})
    frames = {
        "accounts": accounts,
        "subscriptions": subs,
        "orders": orders,
        "campaign_events": ce,
        "nps": nps,
        "tickets": tickets,
    }
    for f in frames.values():
        for col in f.columns:
            if str(f[col].dtype).startswith("datetime64"):
                f[col] = f[col].astype("datetime64[us]")
    return frames


def _generate(folder: Path, accounts: int, months: int, force_numpy: bool) -> str:
    if not force_numpy:
        try:
            from churnlab import synth
            from churnlab.config import SynthParams

            synth.run(
                SynthParams(accounts=accounts, months=months, seed=42, out=str(folder)), folder
            )
            return "churnlab.synth"
        except ImportError:
            pass
    from churnlab.load import write_tables

    write_tables(numpy_world(accounts, months), folder)
    return "numpy-made tables"


def _child(folder: str, as_of: str) -> None:
    from churnlab.config import DataParams, KpiParams
    from churnlab.load import typed_views
    from churnlab.sources import open_source

    data = DataParams(source=folder, as_of=dt.datetime.fromisoformat(as_of))
    con = open_source(data)
    typed_views(con, data)
    # Materialise the typed tables once so that neither measurement pays the Parquet decode
    # and casts twice.
    for t in ("accounts", "subscriptions", "orders", "campaign_events", "nps", "tickets"):
        con.execute(f"CREATE TABLE main.t_{t} AS SELECT * FROM main.{t}").fetchall()
        con.execute(f"DROP VIEW main.{t}").fetchall()
        con.execute(f"ALTER TABLE main.t_{t} RENAME TO {t}").fetchall()
    rss_tables = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = {
        t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
        for t in ("accounts", "subscriptions", "orders", "campaign_events")
    }

    def timed(run: Callable[[], object]) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        return time.perf_counter() - t0, time.process_time() - c0

    def scan(tables: dict[str, str]) -> None:
        for t, col in tables.items():
            con.execute(
                f"SELECT count(*), sum(n) FROM (SELECT account_id, count({col}) AS n FROM {t} "
                "GROUP BY account_id)"
            ).fetchall()

    # Reference A: one plain per-account pass over the two revenue tables.
    ref = timed(lambda: scan({"subscriptions": "mrr", "orders": "amount"}))
    # Reference B: one such pass over every table the KPIs read ("one pass per table").
    ref_all = timed(
        lambda: scan(
            {
                "accounts": "created_at",
                "subscriptions": "mrr",
                "orders": "amount",
                "campaign_events": "campaign_id",
                "nps": "score",
                "tickets": "opened_at",
            }
        )
    )

    from churnlab import kpis

    box: dict[str, dict] = {}
    elapsed = timed(lambda: box.update(r=kpis.compute(con, KpiParams(), data)))
    result = box["r"]
    m = result["monthly"]
    bridge = (
        (
            m["start_mrr"]
            + m["new_mrr"]
            + m["expansion_mrr"]
            - m["contraction_mrr"]
            - m["churned_mrr"]
            + m["reactivation_mrr"]
            - m["end_mrr"]
        )
        .abs()
        .max()
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "rows": rows,
                "reference_s": ref,
                "reference_all_s": ref_all,
                "kpis_s": elapsed,
                "peak_rss_mb": peak_mb,
                "rss_tables_mb": rss_tables,
                "periods": len(m),
                "max_bridge_error": float(bridge),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--numpy", action="store_true", help="use numpy-made tables, not synth")
    ap.add_argument("--data", type=Path, help="reuse this folder of contract tables")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="churnlab-kpi-bench-") as tmp:
        t0 = time.perf_counter()
        if args.data:
            folder, kind = args.data, f"existing folder {args.data}"
        else:
            folder = Path(tmp) / "world"
            kind = _generate(folder, args.accounts, args.months, args.numpy)
        gen = time.perf_counter() - t0
        as_of = (START + pd.DateOffset(months=args.months)).isoformat()
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(folder), as_of],
            check=True,
            capture_output=True,
            text=True,
        )
        res = json.loads(out.stdout.strip().splitlines()[-1])
    rows = res["rows"]
    print(
        f"data: {kind}, {args.accounts:,} accounts x {args.months} months "
        f"(generated in {gen:.1f} s)"
    )
    print("rows: " + ", ".join(f"{k} {v:,}" for k, v in rows.items()))
    (rw, rc), (aw, ac), (kw, kc) = res["reference_s"], res["reference_all_s"], res["kpis_s"]
    print(
        f"reference A, per-account pass over subscriptions + orders: "
        f"{rw:.2f} s wall, {rc:.2f} s CPU"
    )
    print(
        f"reference B, per-account pass over every table the KPIs read: "
        f"{aw:.2f} s wall, {ac:.2f} s CPU"
    )
    print(
        f"kpis.compute, {res['periods']} monthly periods, every KPI: "
        f"{kw:.2f} s wall, {kc:.2f} s CPU "
        f"({kw / rw:.1f}x reference A, {kw / aw:.1f}x reference B, wall; "
        f"{kc / rc:.1f}x / {kc / ac:.1f}x CPU)"
    )
    print(
        f"peak memory (RSS of the measuring process): {res['peak_rss_mb']:.0f} MB "
        f"(of which {res['rss_tables_mb']:.0f} MB reached while loading the tables)"
    )
    print(
        f"MRR bridge: max |start + movements - end| over all months = {res['max_bridge_error']:.2e}"
    )


if __name__ == "__main__":
    main()

"""Benchmark: train time per task and per-account reasons throughput at 100k accounts.

Builds the default synthetic world (params synth defaults) and its training set in a temporary
folder, trains each task with the default LightGBM params, then explains 100,000 accounts
(rows drawn with replacement from the training set, so the feature values are realistic).
Reference measured in the same run: one ``booster.predict`` over the same 100k rows.

Usage: .venv/bin/python benchmarks/train.py [--accounts N] [--rows R]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from churnlab import dataset, evaluate, explain, load, synth, train
from churnlab.config import DataParams, DatasetParams, SynthParams, TrainParams


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=SynthParams().accounts)
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    params = TrainParams()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "synthetic"
        t0 = time.perf_counter()
        synth.run(SynthParams(accounts=args.accounts), out)
        data = DataParams(source=str(out))
        frame, manifest = dataset.build(load.load(data), DatasetParams(), data)
        print(
            f"world: {args.accounts} accounts x {SynthParams().months} months; training set "
            f"{len(frame):,} rows x {len(manifest.features)} features "
            f"(built in {time.perf_counter() - t0:.1f} s)"
        )
        oracle = evaluate.load_oracle(out)
    threads = params.lightgbm.get("num_threads")
    print(f"LightGBM params: {dict(params.lightgbm)}")
    for task in params.tasks:
        t = time.perf_counter()
        res = train.train_task(frame, manifest, task, params, oracle=oracle)
        fit_s = time.perf_counter() - t
        b = res.bundle
        print(
            f"{task}: train+calibrate+baselines {fit_s:.2f} s on {len(res.split.train):,} rows "
            f"({res.metrics['model.best_iteration']:.0f} trees, {threads} threads), "
            f"test ROC-AUC {res.metrics['test.roc_auc']:.3f}"
        )
        rows = frame.sample(n=args.rows, replace=True, random_state=0).reset_index(drop=True)
        X = b.matrix(rows)
        t = time.perf_counter()
        b.booster.predict(X, raw_score=True)
        ref_s = time.perf_counter() - t
        t = time.perf_counter()
        contrib = explain.contributions(b, rows)
        shap_s = time.perf_counter() - t
        why = explain.reasons(b, rows, top_k=3, contrib=contrib)
        why_s = time.perf_counter() - t
        print(
            f"  reasons for {args.rows:,} accounts: {why_s:.2f} s "
            f"({args.rows / why_s:,.0f} accounts/s; target <= 60 s), of which TreeSHAP "
            f"{shap_s:.2f} s; reference one predict: {ref_s:.3f} s; ratio {why_s / ref_s:.1f}x"
        )
        print(f"  example: {why.loc[why['p'].idxmax(), 'reason_1']}")


if __name__ == "__main__":
    main()

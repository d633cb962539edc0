"""Benchmark the synthetic world: 100k accounts x 24 months by default.

Prints wall time, accounts/s, events/s (event rows written per second) and peak memory
(ru_maxrss), and as a reference the time to write the same events frame to Parquet alone
(pandas ``to_parquet``), with the ratio. Usage::

    .venv/bin/python benchmarks/synth.py [--accounts 100000] [--months 24] [--campaigns]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from churnlab import synth
from churnlab.config import SynthParams


def _peak_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / 1024 if sys.platform == "darwin" else rss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--campaigns", action="store_true", help="synth.campaigns on")
    args = ap.parse_args()
    params = SynthParams(
        accounts=args.accounts, months=args.months, seed=args.seed, campaigns=args.campaigns
    )

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "world"
        t0 = time.perf_counter()
        summary = synth.run(params, out)
        wall = time.perf_counter() - t0
        peak_run = _peak_mb()
        n_events = summary["rows"]["events"]
        total_rows = sum(summary["rows"].values())
        size_mb = sum(p.stat().st_size for p in out.rglob("*.parquet")) / 1e6

        # Reference: writing the same events frame with pandas alone.
        events = pq.read_table(out / "events.parquet").to_pandas()
        t1 = time.perf_counter()
        events.to_parquet(Path(tmp) / "events_ref.parquet", index=False)
        ref = time.perf_counter() - t1

    print(
        f"synth benchmark: {args.accounts:,} accounts x {args.months} months (seed {args.seed}"
        f"{', campaigns' if args.campaigns else ''})"
    )
    for name, n in summary["rows"].items():
        print(f"  {name:<16} {n:>12,} rows")
    print(f"  oracle           {summary['oracle_rows']:>12,} rows")
    print(f"wall time (simulate + oracle + write): {wall:8.1f} s")
    print(f"accounts/s:                            {args.accounts / wall:10,.0f}")
    print(f"events/s (event rows written):         {n_events / wall:10,.0f}")
    print(f"all rows/s:                            {total_rows / wall:10,.0f}")
    print(f"peak memory (ru_maxrss) after run:     {peak_run:8.0f} MB")
    print(f"parquet on disk:                       {size_mb:8.0f} MB")
    print(f"reference: pandas to_parquet of the events frame alone: {ref:.1f} s")
    print(f"ratio synth wall / events write:       {wall / ref:8.1f} x")
    print(
        f"rates: 90-day churn {summary['churn_90d_rate']:.1%}, "
        f"90-day expansion {summary['expansion_90d_rate']:.1%}, "
        f"mean oracle p_churn {summary['mean_oracle_p_churn']:.1%}"
    )


if __name__ == "__main__":
    main()

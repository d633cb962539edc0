"""Benchmark: the full point-in-time training set build against one plain DuckDB pass.

On the synthetic world (default 100k accounts, 24 months: tens of millions of events) this prints

- the reference: one plain DuckDB pass over the same files computing only event counts per
  account and event type in 7/30/90-day windows before a single cutoff (best of 3);
- the full build (spine, every feature family, both labels) over 12 monthly cutoffs:
  wall time and peak resident memory of the process;
- the ratio build / reference (target <= 3x, peak memory <= 4 GB);
- for context, measured in the same run: the reference query when it cannot skip row groups,
  and a floor for any 12-cutoff build (one pass reading the events the 12 cutoffs' windows
  cover, no grouping), each as a ratio.

The world is generated once into ``--world`` (skipped when it exists) in a child process, so its
memory does not count. Validation at load is skipped (the generator's output is valid); both
timings read the same typed views.

    .venv/bin/python benchmarks/features.py [--accounts 100000] [--months 24] [--world DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import resource
import threading
import time
from pathlib import Path


def _generate(accounts: int, months: int, seed: int, out: str) -> None:
    from churnlab import synth
    from churnlab.config import SynthParams

    synth.run(SynthParams(accounts=accounts, months=months, seed=seed), out=out)


def _cpu() -> float:
    """CPU seconds of this process, all threads (DuckDB runs in-process)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakRss:
    """Samples this process's resident memory every 10 ms while active."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            time.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def _best(con: object, sql: str, runs: int = 3) -> tuple[float, float]:
    """Best wall and CPU seconds of ``runs`` executions of ``sql`` (results fetched)."""
    walls, cpus = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), _cpu()
        con.execute(sql).fetchall()  # type: ignore[attr-defined]
        walls.append(time.perf_counter() - t)
        cpus.append(_cpu() - c)
    return min(walls), min(cpus)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--cutoffs", type=int, default=12)
    ap.add_argument("--world", default=None, help="world folder (default data/bench/synth_<N>)")
    args = ap.parse_args()
    world = Path(args.world or f"data/bench/synth_{args.accounts}")
    if not (world / "events.parquet").exists():
        print(f"generating the synthetic world in {world} ...", flush=True)
        t = time.perf_counter()
        p = mp.get_context("spawn").Process(
            target=_generate, args=(args.accounts, args.months, args.seed, str(world))
        )
        p.start()
        p.join()
        if p.exitcode != 0:
            raise SystemExit("world generation failed")
        print(f"  generated in {time.perf_counter() - t:.1f} s", flush=True)

    from churnlab import dataset
    from churnlab.config import DataParams, DatasetParams
    from churnlab.load import typed_views
    from churnlab.sources import open_source

    data = DataParams(source=str(world))
    con = open_source(data)
    typed_views(con, data)
    n_events = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    n_types = con.execute("SELECT count(DISTINCT event_type) FROM events").fetchall()[0][0]
    as_of = con.execute("SELECT max(start_at) FROM subscriptions").fetchall()[0][0]
    last = dt.datetime(as_of.year, as_of.month, 1)
    if last == as_of:  # the as-of month has no complete data: step back one month
        last = dt.datetime(last.year - (last.month == 1), (last.month - 2) % 12 + 1, 1)
    first = last
    for _ in range(args.cutoffs - 1):
        first = dt.datetime(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1)
    print(
        f"world: {world}  accounts {args.accounts:,}  events {n_events:,}  "
        f"event types {n_types}  cutoffs {first:%Y-%m-%d} .. {last:%Y-%m-%d}",
        flush=True,
    )

    cut = f"TIMESTAMP '{last:%Y-%m-%d}'"
    counts = f"""SELECT account_id, event_type,
               count(*) FILTER (WHERE occurred_at >= {cut} - INTERVAL 7 DAY) AS n_7d,
               count(*) FILTER (WHERE occurred_at >= {cut} - INTERVAL 30 DAY) AS n_30d,
               count(*) AS n_90d
        FROM events
        WHERE {{where}}
        GROUP BY account_id, event_type"""
    window = f"occurred_at < {cut} AND occurred_at >= {cut} - INTERVAL 90 DAY"
    ref, ref_cpu = _best(
        con, f"CREATE OR REPLACE TEMP TABLE _bench_ref AS {counts.format(where=window)}"
    )
    print(
        "reference (one cutoff, event counts per account x type, 7/30/90 d): "
        f"{ref:.2f} s wall, {ref_cpu:.2f} s CPU",
        flush=True,
    )
    # Context for the ratio, same run, same files. The reference reads only the row groups
    # that overlap its 90 days (the file is in time order). (a) The same query when no row
    # group can be skipped (a filter DuckDB cannot push into the scan), as on a file not in
    # time order. (b) A floor for any 12-cutoff build: one pass reading, without grouping, the
    # events the 12 cutoffs' windows cover and the columns the engagement features use.
    full, full_cpu = _best(
        con,
        "CREATE OR REPLACE TEMP TABLE _bench_ref AS "
        + counts.format(where=f"({window}) OR random() < 0"),
    )
    start = f"TIMESTAMP '{first:%Y-%m-%d}' - INTERVAL 90 DAY"
    floor, floor_cpu = _best(
        con,
        f"""SELECT count(*), sum(hash(account_id)), sum(hash(user_id)), sum(hash(event_type)),
                   sum(quantity), max(occurred_at)
            FROM events WHERE occurred_at >= {start} AND occurred_at < {cut}""",
    )
    print(
        f"  same query scanning every row group: {full:.2f} s wall, {full_cpu:.2f} s CPU "
        f"({full / ref:.1f}x the reference)\n"
        f"  floor, reading the events 12 cutoffs need once (no grouping): {floor:.2f} s wall, "
        f"{floor_cpu:.2f} s CPU ({floor / ref:.1f}x the reference)",
        flush=True,
    )

    params = DatasetParams(cutoff_start=first.date(), cutoff_end=last.date())
    base_rss = _rss_mb()
    with PeakRss() as mem:
        t, c = time.perf_counter(), _cpu()
        frame, manifest = dataset.build(con, params, data)
        build = time.perf_counter() - t
        build_cpu = _cpu() - c
    n_feat = len(manifest.features)
    print(
        f"full build ({len(manifest.cutoffs)} cutoffs, {len(frame):,} rows, {n_feat} "
        f"features, both labels): {build:.2f} s wall, {build_cpu:.2f} s CPU; "
        f"stages {manifest.timings_s}",
        flush=True,
    )
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(
        f"peak RSS during build: {mem.peak / 1024:.2f} GB (process before build "
        f"{base_rss / 1024:.2f} GB; ru_maxrss {maxrss:.2f} GB; target <= 4 GB)"
    )
    load = Path("/proc/loadavg").read_text().split()[0]
    print(
        f"ratio build / reference: {build / ref:.1f}x wall, {build_cpu / ref_cpu:.1f}x CPU "
        f"(target <= 3x); build / full-scan reference {build / full:.1f}x wall; "
        f"build / floor {build / floor:.1f}x wall; load average {load} on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()

"""Benchmark: the point-in-time training set build against the cost of reading its data.

On the synthetic world (default 100k accounts, 24 months: tens of millions of events) this
prints, in one run:

- the floor for the 12-cutoff build: one DuckDB pass that reads, without grouping, the events
  the windows of the 12 cutoffs cover and the columns the features use (best of 3);
- the 12-cutoff build (``dataset.build``: spine, every feature family, both labels): wall and
  CPU time, its stages, and the ratio to the floor (target <= 6x);
- the one-cutoff build (what scoring pays every time) against its own floor, the events its
  windows cover (target <= 6x);
- the per-cutoff loop a user would write (the one-cutoff build for each of the 12 cutoffs);
- the peak resident memory of the process during the 12-cutoff build (target <= 4 GB);
- where the time goes: the build's stages one by one (spine, subscription timeline, features,
  labels, data fingerprint: wall and CPU) for both builds, the features' stages and passes, in
  the same run (``dataset.build`` itself hashes the data on a worker cursor beside the other
  stages: the fingerprint's time here is what it would add alone); time per event the windows
  cover, for the scaling curve across ``--accounts``; both builds split into the events
  passes and everything else (other tables, derived features, spine, timeline, labels), each
  against its floor and the 6x budget;
- for continuity with earlier runs: the old reference (one plain pass counting events per
  account and type over a single cutoff, which skips every row group outside its 90 days).

Machines are shared: ``--repeat N`` repeats the builds (each after its floors) and prints every
ratio as a range. The world is generated once into ``--world`` (skipped when it exists) in a
child process, so its memory does not count. Validation at load is skipped (the generator's
output is valid); every timing reads the same typed views.

    .venv/bin/python benchmarks/features.py [--accounts 100000] [--months 24] [--world DIR]
        [--cutoffs 12] [--repeat 1] [--no-loop]
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
from typing import Any


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


def _best(con: Any, sql: str, runs: int = 3) -> tuple[float, float]:
    """Best wall and CPU seconds of ``runs`` executions of ``sql`` (results fetched)."""
    walls, cpus = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), _cpu()
        con.execute(sql).fetchall()
        walls.append(time.perf_counter() - t)
        cpus.append(_cpu() - c)
    return min(walls), min(cpus)


def _month_back(t: dt.datetime, n: int = 1) -> dt.datetime:
    for _ in range(n):
        t = dt.datetime(t.year - (t.month == 1), (t.month - 2) % 12 + 1, 1)
    return t


def _floor(con: Any, start: str, end: str) -> tuple[float, float]:
    """One pass reading, without grouping, the events and columns the features use."""
    return _best(
        con,
        f"""SELECT count(*), sum(hash(account_id)), sum(hash(user_id)), sum(hash(event_type)),
                   sum(quantity), max(occurred_at)
            FROM events WHERE occurred_at >= {start} AND occurred_at < {end}""",
    )


def _build(con: Any, data: Any, first: dt.datetime, last: dt.datetime) -> dict[str, Any]:
    """One ``dataset.build`` over the monthly cutoffs first .. last: time, CPU, stages."""
    from churnlab import dataset
    from churnlab.config import DatasetParams

    params = DatasetParams(cutoff_start=first.date(), cutoff_end=last.date())
    t, c = time.perf_counter(), _cpu()
    frame, manifest = dataset.build(con, params, data)
    return {
        "wall": time.perf_counter() - t,
        "cpu": _cpu() - c,
        "rows": len(frame),
        "features": len(manifest.features),
        "cutoffs": len(manifest.cutoffs),
        "stages": manifest.timings_s,
    }


def _feature_passes(con: Any, data: Any, first: dt.datetime, last: dt.datetime) -> dict:
    """The features stage alone, with its stages and passes timed (same spine).

    The worker connection is off here so that each pass's time is its own (with it on, the
    main thread's time for a pass includes waiting for the worker's queries).
    """
    from churnlab import features, spine, timeline
    from churnlab.config import DatasetParams
    from churnlab.load import data_end

    params = DatasetParams(cutoff_start=first.date(), cutoff_end=last.date())
    mode = spine.resolve_mode(con, params)
    cursor = con.cursor()
    end = data_end(cursor, data)
    cursor.close()
    sp = spine.build(con, spine.cutoffs(con, params, end, mode), mode, params)
    t, c = time.perf_counter(), _cpu()
    steps = timeline.subscription_steps(con)
    timings = {"timeline (built by dataset.build)": time.perf_counter() - t}
    timings["cpu timeline (built by dataset.build)"] = _cpu() - c
    background, features.BACKGROUND = features.BACKGROUND, False
    try:
        features.compute(con, sp, params, steps=steps, timings=timings)
    finally:
        features.BACKGROUND = background
    con.execute(f"DROP TABLE IF EXISTS {steps}")
    return timings


def _stages(con: Any, data: Any, first: dt.datetime, last: dt.datetime) -> dict[str, tuple]:
    """The build's stages one by one, as ``dataset.build`` runs them: (wall, CPU) seconds each."""
    from churnlab import dataset, features, labels, spine, timeline
    from churnlab.config import DatasetParams
    from churnlab.load import data_end, drop_temp_tables

    params = DatasetParams(cutoff_start=first.date(), cutoff_end=last.date())
    out: dict[str, tuple] = {}
    clock = [time.perf_counter(), _cpu()]

    def lap(name: str) -> None:
        now = [time.perf_counter(), _cpu()]
        out[name] = (now[0] - clock[0], now[1] - clock[1])
        clock[:] = now

    mode = spine.resolve_mode(con, params)
    cursor = con.cursor()
    end = data_end(cursor, data)
    cursor.close()
    sp = spine.build(con, spine.cutoffs(con, params, end, mode), mode, params)
    lap("spine")
    steps = timeline.subscription_steps(con, accounts=sp["account_id"])
    lap("timeline")
    features.compute(con, sp, params, steps=steps)
    lap("features")
    labels.compute(con, sp, params, mode, end, steps=steps)
    lap("labels")
    drop_temp_tables(con)
    dataset.fingerprint(con)
    lap("fingerprint")
    return out


def _split(passes: dict[str, float], stages: list[dict], floors: list[float], n: int) -> str:
    """The build's wall time split into the events passes and everything else, against 6x.

    The floor reads the events only; the build also reads and aggregates every other table,
    derives features, builds the spine, the subscription timeline and the labels. This line
    says how much of the 6x budget that other work takes alone (same run, wall seconds: the
    passes from ``features.compute`` on one connection, the rest from the build's stages).
    """
    walls = {k: v for k, v in passes.items() if not k.startswith("cpu ") and "(first" not in k}
    events = sum(v for k, v in walls.items() if k.endswith(":events"))
    tables = sum(v for k, v in walls.items() if ":" in k and not k.endswith(":events"))
    own = sum(walls.get(k, 0.0) for k in ("grid", "context", "derived", "assemble"))
    outside = min(r["spine"][0] + r["timeline"][0] + r["labels"][0] for r in stages)
    floor = min(floors)
    rest = tables + own + outside
    return (
        f"the {n}-cutoff build outside the events passes (wall seconds, same run): other tables' "
        f"passes {tables:.2f}, grid, context, derived and assembly {own:.2f}, spine, timeline "
        f"and labels {outside:.2f}: {rest:.2f} s = {rest / floor:.1f}x the floor, against a 6x "
        f"budget of {6 * floor:.2f} s for the whole build; the events passes add {events:.2f} s "
        f"({events / floor:.1f}x)"
    )


def _range(values: list[float], fmt: str = "{:.2f}") -> str:
    lo, hi = min(values), max(values)
    return fmt.format(lo) if len(values) == 1 or lo == hi else f"{fmt.format(lo)}-{fmt.format(hi)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--cutoffs", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=1, help="repeat the builds (ranges)")
    ap.add_argument("--no-loop", action="store_true", help="skip the per-cutoff loop")
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

    from churnlab.config import DataParams
    from churnlab.load import typed_views
    from churnlab.sources import open_source

    data = DataParams(source=str(world))
    con = open_source(data)
    typed_views(con, data)
    n_events = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    as_of = con.execute("SELECT max(start_at) FROM subscriptions").fetchall()[0][0]
    last = dt.datetime(as_of.year, as_of.month, 1)
    if last == as_of:  # the as-of month has no complete data: step back one month
        last = _month_back(last)
    first = _month_back(last, args.cutoffs - 1)
    cut = f"TIMESTAMP '{last:%Y-%m-%d}'"
    start = f"TIMESTAMP '{first:%Y-%m-%d}' - INTERVAL 90 DAY"
    start1 = f"{cut} - INTERVAL 90 DAY"
    covered = con.execute(
        f"SELECT count(*) FROM events WHERE occurred_at >= {start} AND occurred_at < {cut}"
    ).fetchall()[0][0]
    print(
        f"world: {world}  accounts {args.accounts:,}  events {n_events:,} ({covered:,} in the "
        f"windows of {args.cutoffs} cutoffs {first:%Y-%m-%d} .. {last:%Y-%m-%d})",
        flush=True,
    )

    builds, singles, floors, floors1, peaks = [], [], [], [], []
    for _ in range(args.repeat):
        floors.append(_floor(con, start, cut))
        floors1.append(_floor(con, start1, cut))
        base_rss = _rss_mb()
        with PeakRss() as mem:
            builds.append(_build(con, data, first, last))
        peaks.append(mem.peak / 1024)
        singles.append(_build(con, data, last, last))
    b, s = builds[-1], singles[-1]
    f12 = [f[0] for f in floors]
    f1 = [f[0] for f in floors1]
    print(
        f"floor, {args.cutoffs} cutoffs (one pass reading the events their windows cover, no "
        f"grouping): {_range(f12)} s wall, {_range([f[1] for f in floors])} s CPU\n"
        f"floor, 1 cutoff (the events its windows cover): {_range(f1)} s wall\n"
        f"{b['cutoffs']}-cutoff build ({b['rows']:,} rows, {b['features']} features, both "
        f"labels): {_range([x['wall'] for x in builds])} s wall, "
        f"{_range([x['cpu'] for x in builds])} s CPU; stages {b['stages']}, the rest "
        f"(waiting for the fingerprint, manifest) {b['wall'] - sum(b['stages'].values()):.2f}\n"
        f"1-cutoff build ({s['rows']:,} rows): {_range([x['wall'] for x in singles])} s wall, "
        f"{_range([x['cpu'] for x in singles])} s CPU; floor {_range([f[1] for f in floors1])} "
        f"s CPU; stages {s['stages']}",
        flush=True,
    )
    stage_runs = {}
    for label, a in ((f"{args.cutoffs} cutoffs", first), ("1 cutoff", last)):
        runs = stage_runs[label] = [_stages(con, data, a, last) for _ in range(args.repeat)]
        print(
            f"the build's stages, {label} (wall / CPU seconds, range over {args.repeat}): "
            + ", ".join(
                f"{k} {_range([r[k][0] for r in runs])}/{_range([r[k][1] for r in runs])}"
                for k in runs[0]
            ),
            flush=True,
        )
    loop = None
    if not args.no_loop:
        t = time.perf_counter()
        for k in range(args.cutoffs):
            c = _month_back(last, k)
            _build(con, data, c, c)
        loop = time.perf_counter() - t
        print(f"per-cutoff loop (the 1-cutoff build for each of the {args.cutoffs} cutoffs): "
              f"{loop:.2f} s wall", flush=True)  # fmt: skip
    passes = _feature_passes(con, data, first, last)
    walls = {k: v for k, v in passes.items() if not k.startswith("cpu ")}
    print(
        "where the features' time goes (features.compute alone, same spine, one connection; "
        "wall / CPU seconds): "
        + ", ".join(
            f"{k} {v:.2f}" + (f"/{passes['cpu ' + k]:.2f}" if "cpu " + k in passes else "")
            for k, v in walls.items()
        ),
        flush=True,
    )
    print(_split(passes, stage_runs[f"{args.cutoffs} cutoffs"], f12, args.cutoffs), flush=True)
    passes1 = _feature_passes(con, data, last, last)
    print(_split(passes1, stage_runs["1 cutoff"], f1, 1), flush=True)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(
        f"peak RSS during the {b['cutoffs']}-cutoff build: {_range(peaks)} GB (process before "
        f"{base_rss / 1024:.2f} GB; ru_maxrss {maxrss:.2f} GB; target <= 4 GB)\n"
        f"time per event the windows cover ({args.accounts:,} accounts): "
        f"{_range([x['wall'] / covered * 1e6 for x in builds], '{:.3f}')} us wall, "
        f"{_range([x['cpu'] / covered * 1e6 for x in builds], '{:.3f}')} us CPU",
        flush=True,
    )
    ref, _ = _best(
        con,
        f"""SELECT account_id, event_type,
               count(*) FILTER (WHERE occurred_at >= {cut} - INTERVAL 7 DAY) AS n_7d,
               count(*) FILTER (WHERE occurred_at >= {cut} - INTERVAL 30 DAY) AS n_30d,
               count(*) AS n_90d
        FROM events WHERE occurred_at < {cut} AND occurred_at >= {cut} - INTERVAL 90 DAY
        GROUP BY account_id, event_type""",
    )
    r12 = [x["wall"] / f for x, f in zip(builds, f12, strict=True)]
    r1 = [x["wall"] / f for x, f in zip(singles, f1, strict=True)]
    c12 = [x["cpu"] / f[1] for x, f in zip(builds, floors, strict=True)]
    c1 = [x["cpu"] / f[1] for x, f in zip(singles, floors1, strict=True)]
    load = Path("/proc/loadavg").read_text().split()[0]
    loop_txt = ""
    if loop is not None:
        loop_txt = f"; per-cutoff loop / {b['cutoffs']}-cutoff build {loop / b['wall']:.1f}x"
    print(
        f"ratio build / reference (the floor): {b['cutoffs']} cutoffs {_range(r12, '{:.1f}')}x "
        f"wall, {_range(c12, '{:.1f}')}x CPU (target <= 6x); 1 cutoff {_range(r1, '{:.1f}')}x "
        f"wall, {_range(c1, '{:.1f}')}x CPU its floor (target <= 6x){loop_txt}; "
        f"peak {max(peaks):.2f} GB (target <= 4 GB); the old one-cutoff counting reference "
        f"{ref:.2f} s: build / it {b['wall'] / ref:.1f}x; load average {load} on "
        f"{os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()

"""Benchmark: validation speed and memory on a large dataset (issue 2: "50 million events
validate in seconds").

Builds a dataset of ``--accounts`` accounts (default 100k) over ``--months`` months, writes it as
Parquet, then, each in a fresh process (so that peak memory is that step's own):

- the reference: ``SELECT count(*), count(DISTINCT account_id) FROM read_parquet(events)``, the
  least work any check of the events table has to do (one scan, one hash aggregate);
- ``churnlab.validate.validate_source`` over all seven tables (every contract check).

It prints rows/s, events/s, accounts/s and peak RSS of each, and the ratio validation /
reference.

Data: ``--source synth`` uses the synthetic world (churnlab.synth.run); ``--source numpy``
generates the tables directly with numpy/pyarrow with exactly ``--events`` events (default 50M);
``--source auto`` (default) uses numpy when ``--events`` is given, else synth when importable.

Usage::

    .venv/bin/python benchmarks/validate.py                       # synth, 100k x 24 months
    .venv/bin/python benchmarks/validate.py --events 50000000     # numpy, 50M events
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CHUNK = 5_000_000


def _dict_strings(index: np.ndarray, values: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), pa.array(values))


def _ts(micros: np.ndarray) -> pa.Array:
    return pa.array(micros.astype("int64"), type=pa.timestamp("us"))


def build_numpy(out: Path, accounts: int, months: int, events: int, seed: int = 7) -> dict:
    """Write a contract dataset with exactly ``events`` events; returns row counts."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01T00:00:00", "us").astype("int64")
    month_us = 30 * 24 * 3600 * 1_000_000
    end = start + months * month_us
    ids = [f"acc{i:07d}" for i in range(accounts)]
    created = rng.integers(start - 12 * month_us, end - month_us, accounts)
    counts: dict[str, int] = {}

    def write(name: str, table: pa.Table) -> None:
        pq.write_table(table, out / f"{name}.parquet")
        counts[name] = table.num_rows

    write(
        "accounts",
        pa.table(
            {
                "account_id": pa.array(ids),
                "created_at": _ts(created),
                "segment": _dict_strings(rng.integers(0, 3, accounts), ["smb", "mid", "ent"]),
            }
        ),
    )
    # monthly subscription rows: each account active for a random run of months
    first = np.maximum(0, (created - start) // month_us)
    length = rng.integers(1, months + 1, accounts)
    last = np.minimum(months, first + length)
    n_rows = np.maximum(last - first, 0)
    acc = np.repeat(np.arange(accounts), n_rows)
    offset = np.arange(acc.size) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    month = np.repeat(first, n_rows) + offset
    write(
        "subscriptions",
        pa.table(
            {
                "account_id": _dict_strings(acc, ids),
                "start_at": _ts(start + month * month_us),
                "end_at": _ts(start + (month + 1) * month_us),
                "mrr": rng.gamma(2.0, 200.0, acc.size),
                "plan": _dict_strings(rng.integers(0, 3, acc.size), ["basic", "pro", "ent"]),
                "seats": pa.array(rng.integers(1, 200, acc.size).astype(np.int32)),
            }
        ),
    )
    n = accounts * 3
    kinds = ["new", "renewal", "upsell", "cross_sell", "services", "refund"]
    kind = rng.integers(0, 6, n)
    amount = rng.gamma(2.0, 300.0, n) * np.where(kind == 5, -1, 1)
    write(
        "orders",
        pa.table(
            {
                "account_id": _dict_strings(rng.integers(0, accounts, n), ids),
                "ordered_at": _ts(rng.integers(start, end, n)),
                "amount": amount,
                "kind": _dict_strings(kind, kinds),
            }
        ),
    )
    types = ["login", "report_run", "dashboard_edit", "export", "api_call", "payment_failed"]
    users = [f"u{i}" for i in range(200_000)]
    writer = None
    done = 0
    while done < events:
        m = min(CHUNK, events - done)
        table = pa.table(
            {
                "account_id": _dict_strings(rng.integers(0, accounts, m), ids),
                "occurred_at": _ts(rng.integers(start, end, m)),
                "event_type": _dict_strings(rng.integers(0, len(types), m), types),
                "quantity": rng.integers(1, 10, m).astype(np.float64),
                "user_id": _dict_strings(rng.integers(0, len(users), m), users),
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(out / "events.parquet", table.schema)
        writer.write_table(table, row_group_size=1_000_000)
        done += m
    if writer is not None:
        writer.close()
    counts["events"] = events
    n = accounts * 20
    write(
        "campaign_events",
        pa.table(
            {
                "account_id": _dict_strings(rng.integers(0, accounts, n), ids),
                "occurred_at": _ts(rng.integers(start, end, n)),
                "campaign_id": _dict_strings(rng.integers(0, 48, n), [f"c{i}" for i in range(48)]),
                "action": _dict_strings(
                    rng.integers(0, 5, n), ["sent", "open", "click", "unsubscribe", "bounce"]
                ),
            }
        ),
    )
    n = accounts * 2
    opened = rng.integers(start, end - month_us, n)
    write(
        "tickets",
        pa.table(
            {
                "account_id": _dict_strings(rng.integers(0, accounts, n), ids),
                "opened_at": _ts(opened),
                "closed_at": _ts(opened + rng.integers(0, month_us, n)),
                "priority": _dict_strings(
                    rng.integers(0, 4, n), ["low", "normal", "high", "urgent"]
                ),
                "csat": rng.integers(1, 6, n).astype(np.float64),
            }
        ),
    )
    n = accounts * 2
    write(
        "nps",
        pa.table(
            {
                "account_id": _dict_strings(rng.integers(0, accounts, n), ids),
                "responded_at": _ts(rng.integers(start, end, n)),
                "score": rng.integers(0, 11, n).astype(np.float64),
            }
        ),
    )
    as_of = dt.datetime(2024, 1, 1) + dt.timedelta(days=30 * months)
    return {"rows": counts, "as_of": as_of.isoformat()}


def build_synth(out: Path, accounts: int, months: int) -> dict:
    """Write the synthetic world (churnlab.synth); returns row counts."""
    from churnlab.config import SynthParams
    from churnlab.synth import run

    run(SynthParams(accounts=accounts, months=months), out)
    counts = {p.stem: pq.ParquetFile(p).metadata.num_rows for p in sorted(out.glob("*.parquet"))}
    as_of = dt.datetime(2024, 1, 1)
    year, month = divmod(as_of.month - 1 + months, 12)
    return {"rows": counts, "as_of": dt.datetime(as_of.year + year, month + 1, 1).isoformat()}


def _child(mode: str, folder: str, as_of: str) -> None:
    """Run one measured step in this (fresh) process and print a JSON result."""
    # Imports first: the timings compare the work, not interpreter start-up.
    import duckdb

    from churnlab.config import DataParams
    from churnlab.validate import ValidationFailed, validate_source

    t0 = time.perf_counter()
    if mode == "reference":
        con = duckdb.connect()
        path = str(Path(folder) / "events.parquet").replace("'", "''")
        con.execute(
            f"SELECT count(*), count(DISTINCT account_id) FROM read_parquet('{path}')"
        ).fetchall()
        problems = 0
    else:
        try:
            validate_source(DataParams(source=folder, as_of=dt.datetime.fromisoformat(as_of)))
            problems = 0
        except ValidationFailed as err:  # still a full validation run: report and go on
            problems = len(err.problems)
            print(err, file=sys.stderr)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_mb": _peak_rss_mb(), "problems": problems}))


def _peak_rss_mb() -> float:
    # VmHWM is this process image's own peak; ru_maxrss would carry over the parent's peak
    # (Linux keeps it across fork and exec).
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(mode: str, folder: Path, as_of: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(folder), as_of],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{mode} step failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result.get("problems"):
        print(f"note: the data has {result['problems']} contract problem(s):\n{proc.stderr}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--events", type=int, default=None, help="numpy source: event rows")
    parser.add_argument("--source", choices=["auto", "synth", "numpy"], default="auto")
    parser.add_argument("--repeat", type=int, default=2, help="take the best of N runs")
    parser.add_argument("--keep", type=Path, help="write the data here and keep it")
    parser.add_argument("--data", type=Path, help="use this existing dataset folder (no build)")
    parser.add_argument("--as-of", default=None, help="with --data: the as-of (ISO date)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return

    source = args.source
    if source == "auto":
        try:
            import churnlab.synth  # noqa: F401

            source = "numpy" if args.events else "synth"
        except ImportError:
            source = "numpy"
    events = args.events or 50_000_000
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    tmp = args.data or args.keep or Path(tempfile.mkdtemp(prefix="churnlab-bench-validate-"))
    try:
        t0 = time.perf_counter()
        if args.data:
            source = f"existing folder {args.data}"
            counts = {p.stem: pq.ParquetFile(p).metadata.num_rows for p in tmp.glob("*.parquet")}
            as_of = args.as_of or dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat()
            built = {"rows": counts, "as_of": as_of}
        elif source == "synth":
            built = build_synth(tmp, args.accounts, args.months)
        else:
            built = build_numpy(tmp, args.accounts, args.months, events)
        build_s = time.perf_counter() - t0
        rows = built["rows"]
        total = sum(rows.values())
        size_mb = sum(p.stat().st_size for p in tmp.glob("*.parquet")) / 2**20
        print(f"data: {source}, {args.accounts:,} accounts x {args.months} months, built in "
              f"{build_s:.1f} s, {size_mb:,.0f} MB Parquet")  # fmt: skip
        print("rows: " + ", ".join(f"{k} {v:,}" for k, v in rows.items()) + f" (total {total:,})")
        ref = min((_measure("reference", tmp, built["as_of"]) for _ in range(args.repeat)),
                  key=lambda r: r["seconds"])  # fmt: skip
        val = min((_measure("validate", tmp, built["as_of"]) for _ in range(args.repeat)),
                  key=lambda r: r["seconds"])  # fmt: skip
        ev = rows.get("events", 0)
        print(
            f"reference count(*), count(DISTINCT account_id) over events: {ref['seconds']:.2f} s "
            f"({ev / ref['seconds'] / 1e6:,.1f} M events/s), peak RSS {ref['peak_mb']:,.0f} MB"
        )
        print(
            f"validate (all tables, all checks): {val['seconds']:.2f} s, "
            f"{total / val['seconds'] / 1e6:,.1f} M rows/s, {ev / val['seconds'] / 1e6:,.1f} M "
            f"events/s, {args.accounts / val['seconds']:,.0f} accounts/s, "
            f"peak RSS {val['peak_mb']:,.0f} MB"
        )
        print(f"ratio validate / reference: {val['seconds'] / ref['seconds']:.1f}x")
    finally:
        if not (args.data or args.keep):
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

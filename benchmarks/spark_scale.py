"""Benchmark: the training-set build on Spark against DuckDB, on the same data, as a curve.

For each size (``--accounts`` times 1, 4 and 16 by default: synthetic worlds of that many
accounts over ``--months``) this builds the whole training set (spine, every feature family,
both labels) with ``dataset.build`` on DuckDB and with ``spark_dataset.write`` on a Spark
session (``--master``, default ``local[2]``, driver on 127.0.0.1, no UI), the path of
``churnlab build-dataset`` (the executors write the Parquet; ``--collect`` measures
``spark_dataset.build``, which collects the set to the driver instead), and prints, in one
run: rows, events, the seconds of each and the ratio Spark / DuckDB, and the seconds of the
Spark data fingerprint on its own (one more scan of every table, part of each Spark build).
The Spark session is started once (its start-up time is printed on its own line) and warmed
up on the smallest world, so the times are builds, not JVM start-up. Each build is checked to
give the same rows.

Validation at load is skipped on both (the generator's output is valid). Worlds are generated
once into ``--worlds`` (skipped when they exist) in child processes. Machines are shared:
``--repeat N`` repeats each build and keeps the best.

    .venv/bin/python benchmarks/spark_scale.py [--accounts 1000] [--scales 1,4,16]
        [--months 14] [--worlds DIR] [--master local[2]] [--partitions 8] [--repeat 1]
        [--collect]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from pathlib import Path


def _generate(accounts: int, months: int, seed: int, out: str) -> None:
    from churnlab import synth
    from churnlab.config import SynthParams

    synth.run(SynthParams(accounts=accounts, months=months, seed=seed), out=out)


def world(folder: Path, accounts: int, months: int) -> Path:
    """The synthetic world of ``accounts`` accounts, generated in a child process if absent."""
    out = folder / f"synthetic-{accounts}-{months}"
    if not (out / "accounts.parquet").exists():
        proc = mp.get_context("spawn").Process(
            target=_generate, args=(accounts, months, 42, str(out))
        )
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"generating {out} failed")
    return out


def duckdb_build(source: Path) -> tuple[float, int, int]:
    """Seconds of ``dataset.build`` on DuckDB, its rows, and the events in the data."""
    from churnlab import dataset
    from churnlab.config import DataParams, DatasetParams
    from churnlab.load import typed_views
    from churnlab.sources import open_source

    data = DataParams(source=str(source))
    con = open_source(data)
    typed_views(con, data)
    events = int(con.execute("SELECT count(*) FROM main.events").fetchall()[0][0])
    t = time.perf_counter()
    frame, _ = dataset.build(con, DatasetParams(), data)
    seconds = time.perf_counter() - t
    con.close()
    return seconds, len(frame), events


def spark_build(spark: object, source: Path, collect: bool = False) -> tuple[float, int, float]:
    """Seconds of the Spark build (reading the Parquet included), its rows, and the seconds of
    the data fingerprint alone (computed again after the build)."""
    from churnlab import spark_dataset, spark_engine
    from churnlab.config import DataParams, DatasetParams

    data = DataParams(source=str(source))
    t = time.perf_counter()
    tables = spark_engine.read_tables(spark, data, str(source))  # type: ignore[arg-type]
    if collect:
        frame, _ = spark_dataset.build(spark, tables, DatasetParams(), data)  # type: ignore[arg-type]
        rows = len(frame)
    else:
        with tempfile.TemporaryDirectory(prefix="churnlab-bench-") as tmp:
            manifest = spark_dataset.write(
                spark,
                tables,
                DatasetParams(),
                data,
                Path(tmp) / "dataset",  # type: ignore[arg-type]
            )
        rows = manifest.rows
    seconds = time.perf_counter() - t
    t = time.perf_counter()
    spark_dataset.fingerprint(tables)
    return seconds, rows, time.perf_counter() - t


def main() -> None:
    """Run the benchmark and print the curve."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--scales", default="1,4,16")
    ap.add_argument("--months", type=int, default=14)
    ap.add_argument("--worlds", type=Path, default=Path("data/bench-spark"))
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--collect", action="store_true", help="collect instead of writing")
    args = ap.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    sizes = [args.accounts * s for s in scales]
    worlds = {n: world(args.worlds, n, args.months) for n in sizes}

    from churnlab import spark_engine
    from churnlab.config import SparkParams

    t = time.perf_counter()
    conf = {"spark.sql.shuffle.partitions": args.partitions, "spark.ui.enabled": False}
    spark = spark_engine.session(SparkParams(master=args.master, conf=conf))
    print(f"spark session start ({args.master}): {time.perf_counter() - t:.1f} s")
    spark_build(spark, worlds[sizes[0]], args.collect)  # warm-up: JIT and code generation
    print(f"{'accounts':>9} {'events':>11} {'rows':>8} {'duckdb s':>9} {'spark s':>8} "
          f"{'spark/duckdb':>12} {'spark us/event':>14} {'fingerprint s':>13}")  # fmt: skip
    ratios = []
    try:
        for scale, n in zip(scales, sizes, strict=True):
            duck = [duckdb_build(worlds[n]) for _ in range(args.repeat)]
            sp = [spark_build(spark, worlds[n], args.collect) for _ in range(args.repeat)]
            d_s, rows, events = min(duck)
            s_s, s_rows, fp_s = min(sp)
            if s_rows != rows:
                raise SystemExit(f"{n} accounts: Spark built {s_rows} rows, DuckDB {rows}")
            ratios.append(s_s / d_s)
            print(f"{n:>9,} {events:>11,} {rows:>8,} {d_s:>9.2f} {s_s:>8.2f} "
                  f"{s_s / d_s:>11.1f}x {s_s / events * 1e6:>14.2f} {fp_s:>13.2f}   ({scale}x)",
                  flush=True)  # fmt: skip
    finally:
        spark.stop()
    print("ratio spark / duckdb build: " + ", ".join(f"{r:.1f}x" for r in ratios))


if __name__ == "__main__":
    main()

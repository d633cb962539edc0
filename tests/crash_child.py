"""Run one churnlab writer and kill the process (os._exit, no cleanup) at a chosen step.

Used by tests/integration/test_crash_safety.py. A *step* is a rename or link made directly in the
watched output folder (publishing a version, moving an old folder aside, replacing the link), or
the moment the new content is complete but not yet published (step 0). ``before``/``after``
says whether the kill comes just before or just after that call.

Usage: python crash_child.py WRITER WATCHED_DIR STEP before|after JSON_ARGS
(STEP -1 runs without a kill and prints the number of steps it made.)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> None:
    writer, watched, step, when, raw = sys.argv[1:6]
    args = json.loads(raw)
    watched_dir = Path(os.path.abspath(watched))
    kill_at = int(step)
    count = [0]

    def maybe_die(k: int, moment: str) -> None:
        if k == kill_at and when == moment:
            os._exit(137)

    def hooked(real, dst_index):  # type: ignore[no-untyped-def]
        def wrapped(*a, **kw):  # type: ignore[no-untyped-def]
            counts = Path(os.path.abspath(a[dst_index])).parent == watched_dir
            if counts:
                count[0] += 1
                maybe_die(count[0], "before")
            out = real(*a, **kw)
            if counts:
                maybe_die(count[0], "after")
            return out

        return wrapped

    from churnlab import atomic

    real_publish = atomic.publish_dir

    def publish(tmp_dir, target):  # type: ignore[no-untyped-def]
        maybe_die(0, "before")
        return real_publish(tmp_dir, target)

    atomic.publish_dir = publish
    atomic.os.replace = hooked(os.replace, 1)  # type: ignore[assignment]
    atomic.os.symlink = hooked(os.symlink, 1)  # type: ignore[assignment]
    run(writer, args)
    print(json.dumps({"steps": count[0]}))


def run(writer: str, args: dict) -> None:  # type: ignore[type-arg]
    if writer == "synth":
        from churnlab import synth
        from churnlab.config import SynthParams

        synth.run(SynthParams(**args["params"]), args["out"])
    elif writer == "import":
        from churnlab.online_retail import import_online_retail

        import_online_retail(Path(args["source"]), Path(args["out"]))
    elif writer == "dataset":
        from churnlab import dataset

        frame, manifest = dataset.read(args["source"])
        dataset.write(frame, manifest, args["out"])
    elif writer == "models":
        from churnlab import pipeline
        from churnlab.bundle import ModelBundle

        bundles = {t: ModelBundle.load(p) for t, p in args["bundles"].items()}
        pipeline.save_bundles(bundles, args["out"])
    elif writer == "kpis":
        import datetime as dt

        from churnlab import pipeline
        from churnlab.config import DataParams, KpiParams

        data = DataParams(source=args["source"], as_of=dt.datetime.fromisoformat(args["as_of"]))
        pipeline.compute_kpis(KpiParams(out=args["out"]), data)
    else:
        raise SystemExit(f"unknown writer {writer}")


if __name__ == "__main__":
    main()

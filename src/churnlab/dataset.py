"""The point-in-time training set: spine + features + labels, its manifest, and its files.

``build`` runs the three stages on a DuckDB connection holding the typed contract tables and
returns the frame (one row per account and cutoff) and its :class:`~churnlab.manifest.Manifest`;
``write`` stores both atomically as ``dataset.parquet`` + ``manifest.json`` (the Spark engine
writes the same pair from its executors, ``dataset.parquet`` then a folder of part files);
``read`` brings either back with the category dtypes restored; ``fingerprint`` hashes the data
(the Spark engine has its own, tagged, hash); ``check_sufficiency`` says, per task, whether there
are enough labeled positives and negatives to train.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from churnlab import btyd, btyd_population, features, labels, spine, timeline
from churnlab.atomic import atomic_dir
from churnlab.config import DataParams, DatasetParams, Params, parse_horizon
from churnlab.errors import ChurnlabError
from churnlab.load import data_end, drop_temp_tables, present_tables
from churnlab.manifest import Feature, Manifest
from churnlab.schema import LABEL_COLUMNS, TABLES, TASKS

DATASET_FILE = "dataset.parquet"
MANIFEST_FILE = "manifest.json"


class DatasetError(ChurnlabError):
    """The training set cannot be built or read."""


class InsufficientDataError(DatasetError):
    """A task has too few labeled positives or negatives to train."""


def build(
    con: duckdb.DuckDBPyConnection,
    params: DatasetParams,
    data: DataParams,
    *,
    source: str = "",
    progress: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, Manifest]:
    """Build the training set: one row per (account_id, cutoff), features then labels.

    Parameters
    ----------
    con : DuckDBPyConnection
        Connection holding the typed contract tables (``load.load`` or ``load.connect_frames``).
    params : DatasetParams
        The ``dataset`` section of params.yaml.
    data : DataParams
        The ``data`` section (``as_of`` fixes the end of observation for label completeness).
    source : str
        The data source the connection was loaded from, recorded in the manifest (pass it with
        any password masked).
    progress : callable, optional
        Called with a short message as each stage starts (the CLI shows it).

    Returns
    -------
    (DataFrame, Manifest)
        The frame (``account_id``, ``cutoff``, features, then ``churn``, ``expansion``,
        ``expansion_amount``, ``mrr``, ``arr``, ``labeled``) and the manifest.
    """
    with _background_fingerprint(con) as hashed:
        return _build(con, params, data, source, progress or (lambda _msg: None), hashed)


@contextmanager
def _background_fingerprint(con: duckdb.DuckDBPyConnection) -> Iterator[Future[str]]:
    """The data's fingerprint, computed on a cursor in a worker thread while the build runs.

    It reads only the contract tables, not the build's temporary ones, and is a fixed cost (a
    scan of every table): on its own it took 0.6-0.7 s of a 3.3 s one-cutoff build at 100k
    accounts. The worker fills the cores the build's single-threaded array work leaves idle.
    """
    cursor = con.cursor()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="churnlab-fingerprint")
    try:
        yield pool.submit(fingerprint, cursor)
    except BaseException:
        cursor.interrupt()  # the build failed: do not wait for a hash no one will read
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        cursor.close()


def _build(
    con: duckdb.DuckDBPyConnection,
    params: DatasetParams,
    data: DataParams,
    source: str,
    say: Callable[[str], None],
    hashed: Future[str],
) -> tuple[pd.DataFrame, Manifest]:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    say("choosing cutoffs and eligible accounts")
    mode = spine.resolve_mode(con, params)
    # On a cursor: load.data_end leaves its one-row result open, which would block ``con``.
    cursor = con.cursor()
    try:
        end = data_end(cursor, data)
    finally:
        cursor.close()
    cuts = spine.cutoffs(con, params, end, mode)
    sp = spine.build(con, cuts, mode, params)
    if sp.empty:
        raise DatasetError(
            f"no eligible accounts at any cutoff ({cuts[0]:%Y-%m-%d} .. {cuts[-1]:%Y-%m-%d}, "
            f"mode {mode}): check dataset.cutoff_start/cutoff_end against the data's dates"
        )
    timings["spine"] = time.perf_counter() - t0
    say(f"computing features for {len(sp):,} rows over {len(cuts)} cutoffs")
    frame, feats = _features_and_labels(con, sp, params, mode, end, timings, say)
    btyd_fits: tuple[dict[str, Any], ...] = ()
    if mode == "orders":
        frame = _with_purchase_history(con, frame)
        say("fitting the BG/NBD baseline at each cutoff")
        t3 = time.perf_counter()
        present = sorted(pd.Timestamp(c).to_pydatetime() for c in sp["cutoff"].unique())
        btyd_fits = btyd_population.fits(btyd_population.duckdb_population(con, present))
        timings["btyd"] = time.perf_counter() - t3
    say("fingerprinting the data")
    manifest = Manifest(
        mode=mode,
        horizon_days=params.window.days,
        horizon=params.window.label,
        windows=tuple(int(w) for w in sorted(set(params.windows))),
        data_end=end.isoformat(),
        cutoffs=tuple(c.isoformat() for c in cuts),
        per_cutoff=tuple(per_cutoff(frame)),
        rows=int(len(frame)),
        features=tuple(feats),
        event_types=tuple(_event_types(feats)),
        label_columns=LABEL_COLUMNS,
        tables=tuple(present_tables(con)),
        data_fingerprint=hashed.result(),
        source=source,
        params=params.model_dump(mode="json"),
        built_at=dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        timings_s={k: round(v, 3) for k, v in timings.items()},
        btyd_fits=btyd_fits,
    )
    return frame, manifest


def _features_and_labels(
    con: duckdb.DuckDBPyConnection,
    sp: pd.DataFrame,
    params: DatasetParams,
    mode: str,
    end: dt.datetime,
    timings: dict[str, float],
    say: Callable[[str], None],
) -> tuple[pd.DataFrame, list[Feature]]:
    """Features then labels for the spine rows, side by side in one frame."""
    t1 = time.perf_counter()
    # Features and labels read the same subscription timeline: build it once for both.
    # Only the spine's accounts: a one-cutoff spine (scoring) holds under half of them.
    steps = (
        timeline.subscription_steps(con, accounts=sp["account_id"])
        if mode == "contractual"
        else None
    )
    try:
        x, feats = features.compute(con, sp, params, steps=steps)
        timings["features"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        say("computing labels")
        y = labels.compute(con, sp, params, mode, end, steps=steps)
        timings["labels"] = time.perf_counter() - t2
    finally:
        drop_temp_tables(con)
    if not (x["account_id"].equals(y["account_id"]) and x["cutoff"].equals(y["cutoff"])):
        raise DatasetError("internal error: feature and label rows are out of step")
    return pd.concat([x, y.drop(columns=["account_id", "cutoff"])], axis=1), feats


BTYD_COLUMNS = ("btyd_frequency", "btyd_recency", "btyd_T")
"""Orders-only: repeat purchase days, first-to-last and first-to-cutoff weeks before each cutoff
(the BG/NBD baseline's inputs; not model features)."""


def _with_purchase_history(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> pd.DataFrame:
    rfm = btyd.rfm_at_cutoffs(con, frame[["account_id", "cutoff"]])
    keyed = rfm.set_index(["account_id", "cutoff"])[["frequency", "recency", "T"]]
    keys = pd.MultiIndex.from_frame(frame[["account_id", "cutoff"]])
    values = keyed.reindex(keys).to_numpy(dtype=float)
    out = frame.copy()
    for j, name in enumerate(BTYD_COLUMNS):
        out[name] = values[:, j]
    return out


def _event_types(feats: list[Feature]) -> list[str]:
    """The event types counted (scoring passes them back to ``features.compute``)."""
    return sorted({f.event_type for f in feats if f.event_type is not None})


def per_cutoff(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows, labeled flag, positives, negatives and positive rate per cutoff and task."""
    out = []
    narrow = frame[["cutoff", "labeled", *TASKS]]  # grouping the wide frame copies every column
    for cutoff, g in narrow.groupby("cutoff", sort=True):
        lab = g[g["labeled"]]
        row: dict[str, Any] = {
            "cutoff": pd.Timestamp(cutoff).isoformat(),
            "rows": int(len(g)),
            "labeled": bool(len(lab) > 0),
            "labeled_rows": int(len(lab)),
        }
        for task in TASKS:
            pos = int((lab[task] == 1).sum())
            neg = int((lab[task] == 0).sum())
            row[f"{task}_positives"] = pos
            row[f"{task}_negatives"] = neg
            row[f"{task}_rate"] = pos / (pos + neg) if pos + neg else None
        out.append(row)
    return out


def fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """A hash of every present table's row count, time range and (account, time) content."""
    parts = []
    for name in present_tables(con):
        t = TABLES[name].time_column
        row = con.execute(
            f"SELECT count(*), min({t}), max({t}), sum(hash(account_id, {t}) % 1000003) "
            f"FROM main.{name}"
        ).fetchall()[0]
        parts.append(f"{name}:{row}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


SPARK_FINGERPRINT = "spark:"
"""The prefix of a fingerprint the Spark engine made (:func:`churnlab.spark_dataset.fingerprint`,
its own definition): it is compared only with one Spark computes."""


def data_changed(con: duckdb.DuckDBPyConnection, manifest: Manifest) -> bool | None:
    """Whether the data differs from what the training set was built from (DuckDB's hash).

    Returns
    -------
    bool or None
        None when the manifest cannot tell: it has no fingerprint, or one the Spark engine
        made (compared like with like: :func:`churnlab.spark_dataset.data_changed`).
    """
    recorded = manifest.data_fingerprint
    if not recorded or recorded.startswith(SPARK_FINGERPRINT):
        return None
    return fingerprint(con) != recorded


BUILD_SETTINGS = (
    "cutoff_start", "cutoff_end", "cutoff_freq", "windows", "long_windows",
    "lookback_days", "expansion_min_fraction", "max_event_types", "max_category_levels",
)  # fmt: skip
"""``dataset`` settings that shape the rows, features or labels of a training set (besides the
horizon and the mode, compared as resolved; ``min_positives``/``min_negatives`` are read when
training, ``out`` and ``engine`` change where and how, not what)."""


def settings_mismatch(manifest: Manifest, params: DatasetParams) -> str | None:
    """How params.yaml's ``dataset`` settings differ from the training set's, or None.

    None also when the manifest predates recording them. Training on a set built with another
    horizon or windows would register models that predict something else than the params
    logged with them say (and score with other windows).
    """
    if not manifest.params:
        return None
    try:
        built = DatasetParams(**manifest.params)
    except (TypeError, ValueError):
        return None  # written by another version of churnlab: nothing to compare with
    diffs = []
    mode = params.mode
    if mode == "auto":  # as the spine resolves it, from the tables the set was built from
        mode = "contractual" if "subscriptions" in manifest.tables else "orders"
    if mode != manifest.mode:
        diffs.append(f"mode {manifest.mode} there, {mode} from params.yaml")
    if built.window != params.window:
        diffs.append(f"horizon {built.window.label} there, {params.window.label} in params.yaml")
    old, new = built.model_dump(mode="json"), params.model_dump(mode="json")
    diffs += [
        f"{key} {old[key]} there, {new[key]} in params.yaml"
        for key in BUILD_SETTINGS
        if old[key] != new[key]
    ]
    if not diffs:
        return None
    return (
        "the training set was built with other dataset settings than params.yaml has now: "
        + "; ".join(diffs)
        + ". Run `churnlab build-dataset` to rebuild it with params.yaml (or set the values "
        "back), so that the models are what the logged params say"
    )


def require_same_settings(manifest: Manifest, params: DatasetParams, where: Path | str) -> None:
    """Refuse a training set built with other settings (:func:`settings_mismatch`).

    Raises
    ------
    DatasetError
        Naming the folder and each difference.
    """
    problem = settings_mismatch(manifest, params)
    if problem:
        raise DatasetError(f"{where}: {problem}")


def check_sufficiency(manifest: Manifest, params: DatasetParams) -> dict[str, str]:
    """Tasks without enough labeled positives or negatives to train, with a message each.

    Parameters
    ----------
    manifest : Manifest
        The training set's manifest (``per_cutoff`` counts).
    params : DatasetParams
        ``min_positives`` and ``min_negatives``.

    Returns
    -------
    dict
        Task name -> message naming the totals, the thresholds and the counts per labeled
        cutoff; empty when every task can be trained.
    """
    problems = {}
    labeled = [r for r in manifest.per_cutoff if r.get("labeled_rows", 0) > 0]
    for task in TASKS:
        pos = sum(r[f"{task}_positives"] for r in labeled)
        neg = sum(r[f"{task}_negatives"] for r in labeled)
        if pos >= params.min_positives and neg >= params.min_negatives:
            continue
        absent = label_absent(manifest, task)
        if absent:  # more data, earlier cutoffs or another horizon would not help
            problems[task] = f"{task}: {absent}"
            continue
        detail = (
            ", ".join(
                f"{r['cutoff'][:10]}: {r[f'{task}_positives']}+/{r[f'{task}_negatives']}-"
                for r in labeled
            )
            or "no labeled cutoff (every label window reaches past the end of the data)"
        )
        problems[task] = (
            f"{task}: too few labeled examples to train ({pos} positives, {neg} negatives; "
            f"need at least {params.min_positives} and {params.min_negatives} "
            f"(dataset.min_positives/min_negatives)). Per cutoff: {detail}. Use more data or "
            f"earlier cutoffs (dataset.cutoff_start); {horizon_hint(manifest)}"
        )
    return problems


def label_absent(manifest: Manifest, task: str) -> str | None:
    """Why a task cannot be trained at all on this training set, with the fix, or None.

    Every labeled row is a negative (no churn, or no expansion: for example one subscription
    row per account whose MRR never changes) or every one a positive: no horizon, cutoff or
    amount of data of this kind gives the model two classes to tell apart.
    """
    labeled = [r for r in manifest.per_cutoff if r.get("labeled_rows", 0) > 0]
    pos = sum(int(r.get(f"{task}_positives", 0)) for r in labeled)
    neg = sum(int(r.get(f"{task}_negatives", 0)) for r in labeled)
    if labeled and pos == 0:
        return (
            f"no {task} at all in the data (0 positives, {neg:,} negatives over "
            f"{len(labeled)} labeled cutoffs): drop it from train.tasks in params.yaml"
        )
    if labeled and neg == 0:
        return (
            f"every labeled row is a {task} ({pos:,} positives, 0 negatives): there is nothing "
            f"to tell apart; drop it from train.tasks in params.yaml"
        )
    return None


CANDIDATE_HORIZONS = ("7 days", "14 days", "30 days", "1 month", "60 days", "2 months", "90 days",
                      "3 months", "6 months")  # fmt: skip


def horizons_that_fit(manifest: Manifest) -> list[tuple[str, int]]:
    """Label windows that would give a train, validation and test cutoff on this data.

    Computed from the manifest's cutoffs and data end with the purge of
    :func:`churnlab.train.temporal_split` (each split's label windows end by the next split's
    cutoff). Returns (horizon, labeled cutoffs) for each window that fits, shortest first.
    """
    end = pd.Timestamp(manifest.data_end)
    cutoffs = sorted(pd.Timestamp(c) for c in manifest.cutoffs)
    out = []
    for text in CANDIDATE_HORIZONS:
        h = parse_horizon(text)
        labeled = [c for c in cutoffs if pd.Timestamp(h.add(c)) <= end]
        if not labeled:
            continue
        test = labeled[-1]
        valid = [c for c in labeled if pd.Timestamp(h.add(c)) <= test]
        train = [c for c in labeled if valid and pd.Timestamp(h.add(c)) <= valid[-1]]
        if train:
            out.append((text, len(labeled)))
    return out


def account_types(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The ``accounts`` columns and their DuckDB types."""
    return features.columns(con, "accounts")


def unused_columns(columns: dict[str, str], manifest: Manifest, params: Params) -> list[str]:
    """A note naming the ``accounts`` columns that did not become features, and why (or none).

    ``columns`` maps each accounts column to its type name (DuckDB's or Spark's). Only numbers
    and text with at most ``dataset.max_category_levels`` distinct values before the last cutoff
    become profile features; dates, lists and identifier-like text are left out. Columns the
    lists display (``score.account_columns``) are not named: they are known to be for people.
    """
    max_levels = params.dataset.max_category_levels
    shown = params.score.account_columns
    used = {f.name for f in manifest.features}
    left = []
    for column, ctype in columns.items():
        name = features.slug(column)
        name = f"account_{name}" if name in {"account_id", "cutoff"} else name
        if column in ("account_id", "created_at", *shown) or name in used:
            continue
        if ctype.upper() in ("VARCHAR", "STRING"):
            left.append(
                f"{column} (text with more than dataset.max_category_levels = {max_levels} "
                "distinct values before the last cutoff, or none: raise that setting if it is a "
                "category)"
            )
        else:
            left.append(
                f"{column} ({ctype.lower()}: only number and text columns become features; store "
                "it as a number, for example days since created_at, if it should count)"
            )
    return ["accounts columns not used as features: " + "; ".join(left)] if left else []


def split_warning(manifest: Manifest) -> str | None:
    """A warning when the configured horizon leaves no train/validation/test split, or None."""
    fits = [h for h, _ in horizons_that_fit(manifest)]
    window = manifest.window
    if any(parse_horizon(h) == window for h in fits):
        return None
    labeled = sum(1 for r in manifest.per_cutoff if r.get("labeled"))
    return (
        f"with horizon {window.label} only {labeled} cutoff(s) are labeled: too few for a "
        f"train, validation and test cutoff, so `churnlab train` cannot run; "
        f"{horizon_hint(manifest)}"
    )


def horizon_hint(manifest: Manifest) -> str:
    """A sentence naming the horizons that would fit, or saying that none would."""
    fits = horizons_that_fit(manifest)
    if not fits:
        return (
            f"no horizon from {CANDIDATE_HORIZONS[0]} to {CANDIDATE_HORIZONS[-1]} gives a train, "
            "validation and test cutoff on this data: it needs a longer history"
        )
    return (
        "horizons that give a train/validation/test split on this data: "
        + ", ".join(f"{h} ({n} labeled cutoffs)" for h, n in fits)
        + " (set dataset.horizon in params.yaml)"
    )


def require_sufficient(manifest: Manifest, params: DatasetParams, task: str) -> None:
    """Raise :class:`InsufficientDataError` if ``task`` cannot be trained."""
    problems = check_sufficiency(manifest, params)
    if task in problems:
        raise InsufficientDataError(problems[task])


def write(frame: pd.DataFrame, manifest: Manifest, out: Path | str) -> Path:
    """Write ``<out>/dataset.parquet`` and ``<out>/manifest.json`` atomically (both or neither)."""
    out = Path(out)
    with atomic_dir(out) as tmp:
        frame.to_parquet(tmp / DATASET_FILE, index=False)
        manifest.write(tmp / MANIFEST_FILE)
    return out


def read(out: Path | str) -> tuple[pd.DataFrame, Manifest]:
    """Read a training set, restoring category dtypes and levels.

    Written by :func:`write` (one Parquet file) or by :func:`churnlab.spark_dataset.write`
    (``dataset.parquet`` a folder of Spark's part files, in no particular row order): either
    way the frame is the one the build returned, rows sorted by (account_id, cutoff).

    Raises
    ------
    DatasetError
        If the folder or one of its two files is missing.
    """
    out = Path(out)
    data_file, manifest_file = out / DATASET_FILE, out / MANIFEST_FILE
    if not data_file.exists() or not manifest_file.exists():
        raise DatasetError(
            f"training set not found in {out} (expected {DATASET_FILE} and {MANIFEST_FILE}): "
            "run `churnlab build-dataset` first"
        )
    manifest = Manifest.read(manifest_file)
    frame = pd.read_parquet(data_file)
    frame["account_id"] = frame["account_id"].astype(str)
    frame["cutoff"] = frame["cutoff"].astype("datetime64[us]")
    if data_file.is_dir():  # part files: the order they list in is not the build's
        frame = frame.sort_values(["account_id", "cutoff"], kind="stable", ignore_index=True)
    for f in manifest.features:
        if f.dtype == "category":
            values = frame[f.name].astype(object)
            # A manifest without levels (a hand-made one) keeps the file's values: an empty
            # level list would turn every value into a missing one.
            levels = f.categories
            if levels is None:
                levels = tuple(sorted({str(v) for v in values.dropna()}))
            frame[f.name] = pd.Categorical(
                values.where(values.notna(), None), categories=list(levels)
            )
    return frame, manifest

"""Scoring on Apache Spark (``dataset.engine: spark``): the lists ``churnlab score`` writes.

The Spark counterpart of the feature rows and the two lists of :mod:`churnlab.score`, built
from the same definitions and, for everything per account, the same code:

On the cluster
    the spine at the one cutoff (:func:`churnlab.spark_dataset.build_spine`), the features
    with the training event types and category levels (:func:`churnlab.spark_features.compute`),
    MRR and ARR (:func:`churnlab.spark_dataset.compute_labels`; orders-only: the net spend of
    the 12 months before the cutoff, as the DuckDB path computes it), the calibrated
    probabilities (``mlflow.pyfunc.spark_udf`` of the registered versions,
    :func:`churnlab.tracking.spark_udf`), the reasons, plays, risk bands and the expansion
    amounts (``mapInPandas``: each batch of accounts goes through
    :func:`churnlab.explain.reasons`, :func:`churnlab.score.plays` and the rest, exactly as
    the DuckDB path runs them on the whole frame), the ranks, offers and model stamps, the
    feature drift's bin counts, and the two lists written as Parquet.
On the driver
    small facts (how many accounts are eligible, mean |TreeSHAP| per feature, drift bin counts,
    mean MRR per plan) and the two finished lists, one row per account, collected for the
    audiences, the CSV files, the report and MLflow. The events never leave the executors.

Probabilities come from the registered pyfunc (``p = cal(raw score)``), reasons from TreeSHAP
(whose sum is the same raw score): the two agree to rounding (1e-15 here), and the lists equal
the DuckDB path's (probabilities to 1e-9, texts, ranks and reasons identical;
``tests/integration/test_score_spark.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from churnlab import drift as drift_mod
from churnlab import explain, score, spine, tracking
from churnlab import spark_dataset as sd
from churnlab import spark_engine as se
from churnlab import spark_features as sf
from churnlab.bundle import ModelBundle
from churnlab.config import DatasetParams, ScoreParams
from churnlab.manifest import Feature

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

MONEY = ("_mrr", "_arr")
"""MRR and ARR at the cutoff beside the features (underscored: a feature may be called mrr)."""
STAMP = ("model", "model_version", "model_run_id")


@dataclass(frozen=True)
class SparkLists:
    """The lists scored on Spark: collected (pandas) and as Spark frames (stamped, cached).

    ``at_risk`` and ``expansion`` are the frames :func:`churnlab.score.at_risk_list` and
    :func:`churnlab.score.expansion_list` return (before the as-of and model stamps);
    ``frames`` the stamped lists on Spark, as :func:`write_lists` writes them.
    """

    cutoff: dt.datetime
    mode: str
    at_risk: pd.DataFrame
    expansion: pd.DataFrame | None
    drivers: dict[str, pd.DataFrame]
    drift: pd.DataFrame
    frames: dict[str, DataFrame]
    cached: tuple[DataFrame, ...]
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    """Seconds per step: ``spark_rows``, ``spark_predict_explain``, ``spark_lists``."""


def scoring_rows(
    spark: SparkSession,
    tables: se.SparkTables,
    cutoff: dt.datetime,
    bundles: dict[str, ModelBundle],
    dparams: DatasetParams,
    mode: str,
) -> tuple[DataFrame, list[Feature], list[DataFrame]]:
    """Feature rows at ``cutoff`` for every eligible account, with MRR and ARR, on Spark.

    The Spark counterpart of the DuckDB path's rows (``spine.build`` + ``features.compute`` +
    the money of ``labels.compute``) with the training settings and levels.

    Parameters
    ----------
    spark : SparkSession
        The session.
    tables : SparkTables
        The contract tables (:func:`churnlab.spark_engine.read_tables`).
    cutoff : datetime
        The scoring cutoff (a midnight).
    bundles : dict
        Task -> model; the churn model's event types and every model's levels are used.
    dparams : DatasetParams
        The dataset settings the models were trained with.
    mode : str
        'contractual' or 'orders'.

    Returns
    -------
    (DataFrame, list of Feature, list of DataFrame)
        ``account_id``, ``cutoff``, the features, ``_mrr`` and ``_arr`` (one row per eligible
        account, cached); the feature records; every frame cached (release them when done).

    Raises
    ------
    ScoreError
        If no account is eligible at ``cutoff``.
    """
    from pyspark.sql import functions as F

    sp = sd.build_spine(spark, tables, [cutoff], mode, dparams).persist()
    cached = [sp]
    if sp.count() == 0:
        sf.release(cached)
        raise score.no_eligible_account(cutoff, mode)
    event_types, categories = score.feature_context(bundles)
    steps = None
    if mode == "contractual":
        steps = se.subscription_steps(tables.frames["subscriptions"]).persist()
        cached.append(steps)
    with se.spark_errors():
        x, feats, more = sf.compute(
            spark, tables.frames, sp, dparams, cutoffs=[cutoff], event_types=event_types,
            categories=categories, steps=steps,
        )  # fmt: skip
        cached += more
        money = sd.compute_labels(spark, tables, sp, [cutoff], dparams, mode, cutoff, steps=steps)
        money = money.select("account_id", "cutoff", F.col("mrr").alias("_mrr"),
                             F.col("arr").alias("_arr"))  # fmt: skip
        if mode == "orders":
            money = money.drop("_arr").join(_net_spend(tables, sp, cutoff), "account_id", "left")
        rows = x.join(money, ["account_id", "cutoff"], "left").persist()
        cached.append(rows)
    return rows, feats, cached


def _net_spend(tables: se.SparkTables, sp: DataFrame, cutoff: dt.datetime) -> DataFrame:
    """Orders-only ARR: net spend (refunds negative) of the 365 days before ``cutoff``, >= 0."""
    from pyspark.sql import functions as F

    c = se.to_micros(cutoff)
    t = se.micros(F.col("ordered_at"))
    orders = tables.frames["orders"].where((t < F.lit(c)) & (t >= F.lit(c - 365 * se.US_PER_DAY)))
    signed = F.when(F.col("kind") == "refund", -F.abs(F.col("amount"))).otherwise(F.col("amount"))
    spend = orders.groupBy(F.col("account_id").cast("string").alias("account_id")).agg(
        F.sum(signed).alias("_net")
    )
    net = F.coalesce(F.col("_net"), F.lit(0.0))
    return (
        sp.select("account_id")
        .join(spend, "account_id", "left")
        .select("account_id", F.greatest(net, F.lit(0.0)).cast("double").alias("_arr"))
    )


def signature_frame(feats: Sequence[Feature]) -> pd.DataFrame:
    """An empty frame with the features' pandas types, for :func:`churnlab.score.check_signature`.

    Spark carries categories as text: their pandas type is what the DuckDB path would have.
    """
    cols: dict[str, Any] = {"account_id": pd.Series([], dtype=object),
                            "cutoff": pd.Series([], dtype="datetime64[us]")}  # fmt: skip
    for f in feats:
        cols[f.name] = (
            pd.Categorical([], categories=list(f.categories or ()))
            if f.dtype == "category"
            else pd.Series([], dtype="float64")
        )
    return pd.DataFrame(cols)


def _model_input(bundle: ModelBundle) -> Column:
    """The pyfunc input of ``bundle`` as a struct (:func:`churnlab.bundle.model_input`)."""
    from pyspark.sql import functions as F

    cols = [F.col(sf.quote_col(n)).alias(n) for n in bundle.feature_names]
    if bundle.season is not None:
        cols.append(F.date_format(F.col("cutoff"), "yyyy-MM-dd").alias("cutoff"))
    return F.struct(*cols)


def _reason_names(bundle: ModelBundle, top_k: int) -> list[str]:
    k = min(top_k, len(bundle.features))
    return [c for i in range(1, k + 1) for c in (f"reason_{i}", f"reason_{i}_points")]


def explain_batch(
    frame: pd.DataFrame,
    bundles: dict[str, ModelBundle],
    params: ScoreParams,
    top_k: int,
    annualise: float,
) -> pd.DataFrame:
    """The per-account parts of both lists for one batch of scored rows (runs on executors).

    The DuckDB path's code on a batch: TreeSHAP reasons (:func:`churnlab.explain.reasons`),
    plays, risk bands (of the pyfunc's ``churn_probability``), and for the expansion model its
    reasons (columns ``x_*``), seat pressure and yearly expected amount. Also ``|TreeSHAP|``
    per feature (``_cabs_j``, ``_xabs_j``) for the models' global drivers.

    Parameters
    ----------
    frame : DataFrame
        Rows holding ``account_id``, ``cutoff``, the features and ``churn_probability``.
    bundles : dict
        Task -> model.
    params : ScoreParams
        ``risk_bands``, ``plays``, ``seat_play``.
    top_k : int
        Reasons per account.
    annualise : float
        :func:`churnlab.score.annual_factor`.
    """
    churn = bundles["churn"]
    contrib = explain.contributions(churn, frame)
    reasons = explain.reasons(churn, frame, top_k, contrib=contrib)
    out: dict[str, Any] = {"account_id": frame["account_id"].astype(str).to_numpy()}
    body = pd.concat([score.reason_columns(reasons, top_k), score.plays(reasons, churn, params)],
                     axis=1)  # fmt: skip
    out |= {c: body[c].to_numpy() for c in body.columns}
    p = frame["churn_probability"].to_numpy(dtype=float)
    out["risk_band"] = score.risk_bands(p, params.risk_bands)
    out |= {f"_cabs_{j}": v for j, v in enumerate(np.abs(contrib[:, :-1]).T)}
    if "expansion" in bundles:
        exp = bundles["expansion"]
        econtrib = explain.contributions(exp, frame)
        ereasons = explain.reasons(exp, frame, top_k, contrib=econtrib)
        cols = score.reason_columns(ereasons, top_k)
        out |= {f"x_{c}": cols[c].to_numpy() for c in cols.columns}
        out["x_seats"] = score.seat_pressure(ereasons, exp, top_k)
        amount = exp.expected_amount(frame)
        assert amount is not None  # checked on the driver before
        out["x_amount"] = np.clip(amount, 0.0, None) * annualise
        out |= {f"_xabs_{j}": v for j, v in enumerate(np.abs(econtrib[:, :-1]).T)}
    return pd.DataFrame(out)


def _carried(predicted: DataFrame, bundles: dict[str, ModelBundle]) -> dict[str, str]:
    """Columns the lists take from the scored rows, through the explaining pass, with types."""
    carried = {f"{t}_probability": "double" for t in bundles} | dict.fromkeys(MONEY, "double")
    for name in ("plan", "nps_category"):
        if name in predicted.columns:
            carried[name] = "string"
    return carried


def _explain_schema(bundles: dict[str, ModelBundle], top_k: int, carried: dict[str, str]) -> str:
    """The DDL schema of :func:`explain_batch`'s frames with the ``carried`` columns."""
    churn = bundles["churn"]
    cols = ["account_id string", *[f"{c} {t}" for c, t in carried.items()]]
    cols += [f"{c} {'double' if c.endswith('_points') else 'string'}"
             for c in _reason_names(churn, top_k)]  # fmt: skip
    cols += ["driver_group string", "play string", "risk_band string"]
    cols += [f"_cabs_{j} double" for j in range(len(churn.features))]
    if "expansion" in bundles:
        exp = bundles["expansion"]
        cols += [f"x_{c} {'double' if c.endswith('_points') else 'string'}"
                 for c in _reason_names(exp, top_k)]  # fmt: skip
        cols += ["x_seats boolean", "x_amount double"]
        cols += [f"_xabs_{j} double" for j in range(len(exp.features))]
    return ", ".join(cols)


def _batches(
    bundles: dict[str, ModelBundle],
    params: ScoreParams,
    top_k: int,
    annualise: float,
    carried: list[str],
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            out = explain_batch(frame, bundles, params, top_k, annualise)
            for c in reversed(carried):
                out.insert(1, c, frame[c].to_numpy())
            yield out

    return run


def _drift_counts(
    bundle: ModelBundle,
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    profile = bundle.info.get("profile") or {}

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            counts = drift_mod.bin_counts(profile, bundle.matrix(frame))
            yield pd.DataFrame(
                [(f, k, n) for f, by in counts.items() for k, n in by.items()],
                columns=["feature", "bin", "n"],
            )

    return run


def _drift(rows: DataFrame, bundle: ModelBundle, n: int) -> pd.DataFrame:
    """PSI of each feature of ``bundle`` (:func:`churnlab.drift.psi`) from bin counts on Spark."""
    from pyspark.sql import functions as F

    profile = bundle.info.get("profile")
    if not profile:
        return pd.DataFrame(columns=list(drift_mod.COLUMNS))
    got = (
        rows.mapInPandas(_drift_counts(bundle), "feature string, bin string, n long")
        .groupBy("feature", "bin")
        .agg(F.sum("n").alias("n"))
        .collect()
    )
    counts: dict[str, dict[str, int]] = {}
    for r in got:
        counts.setdefault(r["feature"], {})[r["bin"]] = int(r["n"])
    return drift_mod.psi_from_counts(profile, bundle.feature_names, counts, n)


def _importance(scored: DataFrame, bundle: ModelBundle, prefix: str) -> pd.DataFrame:
    """Mean |TreeSHAP| per feature (:func:`churnlab.explain.importance`), averaged on Spark."""
    from pyspark.sql import functions as F

    n = len(bundle.features)
    row = scored.agg(*[F.avg(f"{prefix}{j}").alias(f"m{j}") for j in range(n)]).collect()[0]
    means = np.array([row[f"m{j}"] or 0.0 for j in range(n)], dtype=float)
    # explain.importance averages a contribution matrix; one row of the means gives the same
    return explain.importance(bundle, np.append(means, 0.0)[None, :])


def _ranked(frame: DataFrame, by: str) -> DataFrame:
    """``rank`` by ``by`` (largest first, ties by account id), as :func:`score._ranked`."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.orderBy(F.col(by).desc(), F.col("account_id").asc())
    return frame.withColumn("rank", F.row_number().over(w).cast("long"))


def _attributes(tables: se.SparkTables, columns: Sequence[str]) -> tuple[DataFrame | None, list]:
    from pyspark.sql import functions as F

    accounts = tables.frames["accounts"]
    keep = [c for c in columns if c in accounts.columns]
    if not keep:
        return None, []
    attrs = accounts.select(F.col("account_id").cast("string").alias("account_id"),
                            *[F.col(sf.quote_col(c)) for c in keep])  # fmt: skip
    return attrs.dropDuplicates(["account_id"]), keep


def _top_plan(rows: DataFrame) -> str | None:
    """The plan with the highest mean MRR over the scored accounts (see score._offers)."""
    from pyspark.sql import functions as F

    if "plan" not in rows.columns:
        return None
    got = (
        rows.where(F.col("plan").isNotNull())
        .groupBy(F.col("plan").cast("string").alias("plan"))
        .agg(F.sum("_mrr").alias("s"), F.count(F.lit(1)).alias("n"))
        .collect()
    )
    means = pd.Series({r["plan"]: r["s"] / r["n"] for r in got}, dtype=float).sort_index()
    top = score.top_plan(means)
    return None if top is None else str(top)


def score_lists(
    spark: SparkSession,
    tables: se.SparkTables,
    cutoff: dt.datetime,
    bundles: dict[str, ModelBundle],
    dparams: DatasetParams,
    params: ScoreParams,
    *,
    top_k: int,
    progress: Callable[[str], None] | None = None,
) -> SparkLists:
    """The at-risk and expansion lists at ``cutoff`` on Spark (see the module docstring).

    Parameters
    ----------
    spark : SparkSession
        The session.
    tables : SparkTables
        The contract tables.
    cutoff : datetime
        The scoring cutoff (a midnight).
    bundles : dict
        ``churn`` (required) and ``expansion`` (optional) models, registered: each predicts
        through the registry's pyfunc of its ``info["registry"]`` name and version.
    dparams : DatasetParams
        The dataset settings the models were trained with.
    params : ScoreParams
        The ``score`` section.
    top_k : int
        Reasons per account (``explain.top_k``).
    progress : callable, optional
        Called with a short message at each step.

    Returns
    -------
    SparkLists
        The collected lists (as the DuckDB path's), the drivers, the drift table and the
        stamped Spark lists; release them with :func:`release` when written.

    Raises
    ------
    ScoreError
        No eligible account, rows that do not match a model, an expansion model without its
        amount model.
    TrackingError
        A model the registry cannot give as a Spark UDF.
    """
    from pyspark.sql import functions as F

    say = progress or (lambda _m: None)
    churn = bundles["churn"]
    exp = bundles.get("expansion")
    if exp is not None and not exp.has_amount:
        raise score.ScoreError(
            "the expansion model has no amount model (trained by an older churnlab): retrain "
            "with `churnlab train` to get expected expansion values"
        )
    mode = churn.info.get("dataset", {}).get("mode") or spine.mode_for(tables.names, dparams)
    say(f"building feature rows at {cutoff:%Y-%m-%d} (Spark)")
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    rows, feats, cached = scoring_rows(spark, tables, cutoff, bundles, dparams, mode)
    try:
        n = rows.count()
        timings["spark_rows"] = round(time.perf_counter() - clock, 3)
        empty = signature_frame(feats)
        for bundle in bundles.values():
            score.check_signature(bundle, empty)
        say("predicting with the registered models (Spark UDF)")
        predicted = rows
        for task, bundle in bundles.items():
            name, version, _ = score.model_stamp(bundle)
            udf = tracking.spark_udf(spark, name, version)
            predicted = predicted.withColumn(f"{task}_probability", udf(_model_input(bundle)))
        say("explaining (TreeSHAP on the executors)")
        annualise = score.annual_factor(mode, dparams.horizon_days)
        names = sorted({*churn.feature_names, *(exp.feature_names if exp else [])})
        carried = _carried(predicted, bundles)
        scored = predicted.select(
            "account_id", F.col("cutoff").cast("timestamp_ntz").alias("cutoff"),
            *[F.col(sf.quote_col(n)) for n in names if n not in carried],
            *[F.col(c).cast(t) for c, t in carried.items()],
        ).mapInPandas(_batches(bundles, params, top_k, annualise, list(carried)),
                      _explain_schema(bundles, top_k, carried)).persist()  # fmt: skip
        cached.append(scored)
        scored.count()
        timings["spark_predict_explain"] = round(
            time.perf_counter() - clock - timings["spark_rows"], 3
        )
        drivers = {"churn": _importance(scored, churn, "_cabs_")}
        if exp is not None:
            drivers["expansion"] = _importance(scored, exp, "_xabs_")
        say("feature drift (Spark)")
        drift = _drift(rows, churn, n)
        attrs, keep = _attributes(tables, params.account_columns)
        base = scored if attrs is None else scored.join(attrs, "account_id", "left")
        frames = {"at_risk": _at_risk(base, churn, keep, cutoff, top_k)}
        if exp is not None:
            frames["expansion"] = _expansion(base, exp, keep, cutoff, top_k, _top_plan(rows),
                                             params.expansion_max_churn)  # fmt: skip
        frames = {k: v.persist() for k, v in frames.items()}
        cached += frames.values()
        say("collecting the lists")
        lists = {k: _collect(v) for k, v in frames.items()}
        timings["spark_lists"] = round(time.perf_counter() - clock - sum(timings.values()), 3)
    except BaseException:
        sf.release(cached)
        raise
    return SparkLists(
        cutoff=cutoff, mode=mode, at_risk=lists["at_risk"], expansion=lists.get("expansion"),
        drivers=drivers, drift=drift, frames=frames, cached=tuple(cached), timings=timings,
    )  # fmt: skip


def _stamped(frame: DataFrame, cols: list[Column], cutoff: dt.datetime, bundle: ModelBundle
             ) -> DataFrame:  # fmt: skip
    """The list's columns between the as-of (first) and the model stamps (last)."""
    from pyspark.sql import functions as F

    name, version, run_id = score.model_stamp(bundle)
    as_of = F.lit(pd.Timestamp(cutoff).to_pydatetime()).cast("timestamp_ntz")
    return frame.select(
        as_of.alias("as_of"), *cols, F.lit(name).alias("model"),
        F.lit(version).alias("model_version"), F.lit(run_id).alias("model_run_id"),
    )  # fmt: skip


def _at_risk(
    base: DataFrame, bundle: ModelBundle, keep: list[str], cutoff: dt.datetime, top_k: int
) -> DataFrame:
    """The at-risk list's columns in :func:`churnlab.score.at_risk_list`'s order, stamped."""
    from pyspark.sql import functions as F

    frame = _ranked(base.withColumn("revenue_at_risk", F.col("churn_probability") * F.col("_arr")),
                    "revenue_at_risk")  # fmt: skip
    cols = [
        F.col("account_id"), F.col("rank"), *[F.col(sf.quote_col(c)) for c in keep],
        F.col("churn_probability"), F.col("risk_band"), F.col("_arr").alias("arr"),
        F.col("revenue_at_risk"), *[F.col(c) for c in _reason_names(bundle, top_k)],
        F.col("driver_group"), F.col("play"),
    ]  # fmt: skip
    if "nps_category" in base.columns:
        cols.append(F.col("nps_category").cast("string"))
    return _stamped(frame, cols, cutoff, bundle)


def _expansion(
    base: DataFrame,
    bundle: ModelBundle,
    keep: list[str],
    cutoff: dt.datetime,
    top_k: int,
    top_plan: str | None,
    max_churn: float,
) -> DataFrame:
    """The expansion list in :func:`churnlab.score.expansion_list`'s order, stamped."""
    from pyspark.sql import functions as F

    offer = F.when(F.col("x_seats"), F.lit("seats"))
    if top_plan is not None:
        offer = offer.when(F.col("plan") == F.lit(top_plan), F.lit("cross_sell"))
    frame = (
        base.where(F.col("churn_probability") <= F.lit(float(max_churn)))
        .withColumn("expected_expansion_value", F.col("expansion_probability") * F.col("x_amount"))
        .withColumn("offer", offer.otherwise(F.lit("upsell")))
    )
    frame = _ranked(frame, "expected_expansion_value")
    cols = [
        F.col("account_id"), F.col("rank"), *[F.col(sf.quote_col(c)) for c in keep],
        F.col("expansion_probability"), F.col("x_amount").alias("expected_amount"),
        F.col("expected_expansion_value"), F.col("churn_probability"),
        *[F.col(f"x_{c}").alias(c) for c in _reason_names(bundle, top_k)], F.col("offer"),
    ]  # fmt: skip
    return _stamped(frame, cols, cutoff, bundle)


def _collect(frame: DataFrame) -> pd.DataFrame:
    """A stamped Spark list as the DuckDB path's frame before stamping: sorted by rank."""
    table = frame.toArrow()
    cols: dict[str, Any] = {}
    for name in table.column_names:
        if name == "as_of" or name in STAMP:
            continue
        col = table.column(name)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            cols[name] = np.asarray(col.to_pylist(), dtype=object)
        elif name == "rank":
            cols[name] = col.to_numpy().astype("int64")
        else:
            cols[name] = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
    out = pd.DataFrame(cols)
    return out.sort_values("rank", kind="stable").reset_index(drop=True)


def write_lists(lists: SparkLists, target: str) -> dict[str, str]:
    """Write the stamped lists as Parquet, by Spark: ``<target>/<list>.parquet`` (replaced).

    Parameters
    ----------
    lists : SparkLists
        From :func:`score_lists`.
    target : str
        A folder or URL prefix Spark can write (local, ``hdfs://``, ``s3a://``).

    Returns
    -------
    dict
        List name -> the path written (a Parquet dataset: a folder of part files, in rank
        order).
    """
    out = {}
    base = target.rstrip("/")
    for name, frame in lists.frames.items():
        path = f"{base}/{name}.parquet"
        frame.orderBy("rank").write.mode("overwrite").parquet(path)
        out[name] = path
    return out


def release(lists: SparkLists) -> None:
    """Unpersist what :func:`score_lists` cached."""
    sf.release(list(lists.cached))

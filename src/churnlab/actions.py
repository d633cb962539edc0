"""The ``score`` command: at-risk and expansion lists and audiences from the champions.

Part of the pipeline layer (:mod:`churnlab.pipeline` holds the other commands): it resolves the
models from the registry, loads the data, builds the feature rows at the as-of date with the
training code (:mod:`churnlab.score`), chooses the audiences (:mod:`churnlab.audiences`),
writes the lists (:mod:`churnlab.sinks`) and logs the scoring run with its drift.

The as-of folder also gets ``treatments.csv``: the audiences in the contract's ``treatments``
columns (campaign id ``<campaign>-<as_of>``, ``assigned_at`` = the as-of), to append to the
data's treatments table once the campaigns are sent, so that ``churnlab measure`` measures them
after the horizon. With ``target="uplift"`` the retention audiences are chosen by the uplift
model's expected saved ARR (``churnlab train-uplift``), and ``uplift.csv`` holds its predictions.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from churnlab import (
    audiences,
    drift,
    features,
    labels,
    score,
    sinks,
    spine,
    timeline,
    tracking,
    uplift,
)
from churnlab import load as load_mod
from churnlab.bundle import ModelBundle
from churnlab.config import DatasetParams, Params, ScoreParams, flatten, parse_horizon
from churnlab.errors import ChurnlabError
from churnlab.load import load
from churnlab.pipeline import ProgressFn, champion_bundle, stopwatch
from churnlab.runlog import RunLog


def _quiet(_message: str) -> None:
    pass


@dataclass(frozen=True)
class ScoreRun:
    """What :func:`score_accounts` produced."""

    as_of: dt.datetime
    at_risk: pd.DataFrame
    expansion: pd.DataFrame | None
    audiences: pd.DataFrame
    audience_summary: pd.DataFrame
    selection: Any
    drift: pd.DataFrame
    models: dict[str, dict[str, str]]
    folder: Path
    sink: str | None
    run_id: str
    notes: tuple[str, ...]
    timings: dict[str, float]
    target: str = "churn"
    uplift: pd.DataFrame | None = None
    treatments: pd.DataFrame | None = None
    spark_lists: dict[str, str] | None = None
    """``dataset.engine: spark``: list -> the Parquet dataset Spark wrote."""


TARGETS: tuple[str, ...] = ("churn", "uplift")
"""How retention audiences are chosen: by revenue at risk x save rate, or by uplift."""


def _uplift_model(params: Params) -> uplift.UpliftModel:
    """The model ``churnlab train-uplift`` wrote, with a message that says how to get one."""
    folder = Path(params.measure.uplift_out)
    try:
        return uplift.load(folder)
    except uplift.UpliftError:
        raise uplift.UpliftError(
            f"--target uplift needs an uplift model, and {folder} has none: run `churnlab "
            "train-uplift` first (it learns from the campaigns in the treatments table)"
        ) from None


def _uplift_rows(
    con: duckdb.DuckDBPyConnection, model: uplift.UpliftModel, rows: pd.DataFrame,
    cutoff: dt.datetime, params: Params,
) -> pd.DataFrame:  # fmt: skip
    """The uplift model's feature rows of the scored accounts at ``cutoff`` (its own settings)."""
    stored = model.info.get("dataset")
    dparams = DatasetParams.model_validate(stored) if stored else params.dataset
    keys = pd.DataFrame(
        {"account_id": rows["account_id"].astype(str).to_numpy(), "assigned_at": cutoff}
    ).astype({"assigned_at": "datetime64[us]"})
    frame, _ = uplift.assignment_features(
        con, dparams, keys, event_types=model.event_types, categories=dict(model.categories)
    )
    return frame


def uplift_targets(
    model: uplift.UpliftModel,
    frame: pd.DataFrame,
    at_risk: pd.DataFrame,
    campaigns: list[audiences.Campaign],
) -> pd.DataFrame:
    """Per retention campaign and account: predicted effect, expected saved ARR, harm.

    Parameters
    ----------
    model : UpliftModel
        The fitted uplift model.
    frame : DataFrame
        The model's feature rows of the scored accounts (``account_id`` and its features).
    at_risk : DataFrame
        The at-risk list (``account_id``, ``arr``).
    campaigns : list of Campaign
        The campaigns; only retention ones get predictions, each with its own kind and channel.

    Returns
    -------
    DataFrame
        ``audiences.UPLIFT_COLUMNS`` plus ``arr``, ``cost``, ``expected_net_value`` and
        ``target`` (:func:`churnlab.uplift.uplift_value`), sorted by campaign, account_id.
    """
    arr = at_risk.set_index(at_risk["account_id"].astype(str))["arr"]
    ids = frame["account_id"].astype(str)
    parts = []
    for c in campaigns:
        if c.kind != "retention":
            continue
        rows = frame.assign(campaign_kind=c.kind, campaign_channel=c.channel)
        effect = uplift.predict_effect(model, rows)
        value = uplift.uplift_value(effect, arr.reindex(ids).to_numpy(dtype=float),
                                    c.cost_per_contact)  # fmt: skip
        parts.append(
            pd.DataFrame(
                {
                    "account_id": ids.to_numpy(),
                    "campaign": c.name,
                    "effect": effect,
                    "value": value["expected_saved_arr"].to_numpy(),
                    "harmful": value["harmful"].to_numpy(),
                    "arr": value["arr"].to_numpy(),
                    "cost": value["cost"].to_numpy(),
                    "expected_net_value": value["expected_net_value"].to_numpy(),
                    "target": value["target"].to_numpy(),
                }
            )  # fmt: skip
        )
    if not parts:
        return pd.DataFrame(columns=[*audiences.UPLIFT_COLUMNS, "arr", "cost"])
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["campaign", "account_id"], kind="mergesort").reset_index(drop=True)


def _score_models(
    params: Params, versions: dict[str, str] | None, say: ProgressFn
) -> tuple[dict[str, ModelBundle], list[str]]:
    """The champion of each task (or the version asked for); the expansion model is optional."""
    bundles: dict[str, ModelBundle] = {}
    notes: list[str] = []
    for task in ("churn", "expansion"):
        say(f"resolving the {task} model")
        version = (versions or {}).get(task)
        try:
            if version is None:
                bundle, note = champion_bundle(params, task)
                notes += [note] if note else []
            else:
                bundle = _version_bundle(params, task, version)
        except ChurnlabError:
            if task == "churn":
                raise
            notes.append("no expansion model: the expansion list and upsell audiences are empty")
            continue
        bundles[task] = bundle
        for key in ("model_warning", "calibration_warning"):  # set by train (see pipeline)
            if bundle.info.get(key):
                notes.append(f"{task} model, when it was tested: {bundle.info[key]}")
    return bundles, notes


def in_sample_notes(bundles: dict[str, ModelBundle], cutoff: dt.datetime) -> list[str]:
    """A note for each model fitted on outcomes after ``cutoff``: a look back with it is biased.

    Fitting (trees, early stopping, calibration) saw the label windows of the training cutoffs
    and of the validation cutoff, so its knowledge ends at the validation cutoff plus the
    horizon. Scored before that, accounts it was fitted on are scored with their own future.
    """
    out = []
    for task, bundle in bundles.items():
        valid, ds = bundle.info.get("valid_cutoff"), bundle.info.get("dataset") or {}
        horizon = ds.get("horizon") or ds.get("horizon_days") or bundle.info.get("horizon_days")
        if not valid or not horizon:
            continue
        window = parse_horizon(horizon)
        seen = pd.Timestamp(window.add(pd.Timestamp(valid).to_pydatetime()))
        if pd.Timestamp(cutoff) >= seen:
            continue
        reg = bundle.info.get("registry") or {}
        name = f"{reg['name']} v{reg['version']}" if reg.get("name") else f"the {task} model"
        out.append(
            f"{name} was fitted on outcomes up to {seen:%Y-%m-%d} (validation cutoff "
            f"{str(valid)[:10]} plus {window.label}), after this as-of date {cutoff:%Y-%m-%d}: "
            "accounts it was fitted on are scored with knowledge of their own future, so these "
            "lists look better than they could have then; for an honest look back, train with "
            "data.as_of set to this date and score with that version"
        )
    return out


def _version_bundle(params: Params, task: str, version: str) -> ModelBundle:
    tracking.configure(params.tracking)
    name = tracking.registered_name(params.tracking, task)
    try:
        with tempfile.TemporaryDirectory(prefix="churnlab-version-") as tmp:
            bundle = tracking.download_bundle(name, version, Path(tmp))
    except Exception as err:  # a missing version is an MLflow error: say which
        raise ChurnlabError(
            f"--model-version {task}={version}: {name} has no version {version} in "
            f"{tracking.resolve_uri(params.tracking)} ({str(err).splitlines()[0]})"
        ) from None
    bundle.info["registry"] = {"name": name, "version": str(version), "run_id": ""}
    return bundle


def _scoring_rows(
    con: duckdb.DuckDBPyConnection,
    params: Params,
    cutoff: dt.datetime,
    bundles: dict[str, ModelBundle],
) -> tuple[pd.DataFrame, pd.DataFrame, str, DatasetParams]:
    """Feature rows at ``cutoff`` for every eligible account, with the training settings."""
    churn = bundles["churn"]
    dparams = _dataset_params(params, churn)
    mode = churn.info.get("dataset", {}).get("mode") or spine.resolve_mode(con, dparams)
    sp = spine.build(con, [cutoff], mode, dparams)
    if sp.empty:
        raise score.no_eligible_account(cutoff, mode)
    event_types, categories = score.feature_context(bundles)
    # Features and the money columns read the same subscription timeline: build it once.
    steps = (
        timeline.subscription_steps(con, "_cl_score_steps", accounts=sp["account_id"])
        if mode == "contractual"
        else None
    )
    try:
        rows, _ = features.compute(
            con, sp, dparams, event_types=event_types, categories=categories, steps=steps
        )
        money = labels.compute(con, sp, dparams, mode, cutoff, steps=steps)
    finally:
        if steps is not None:
            con.execute(f"DROP TABLE IF EXISTS {steps}")
    return rows, money, mode, dparams


def _dataset_params(params: Params, churn: ModelBundle) -> DatasetParams:
    """The dataset settings the churn model was trained with (else params.yaml's)."""
    stored = {k: v for k, v in churn.info.get("dataset", {}).items() if k != "mode"}
    return DatasetParams.model_validate(stored) if stored else params.dataset


def _arr(
    con: duckdb.DuckDBPyConnection, money: pd.DataFrame, mode: str, cutoff: dt.datetime
) -> np.ndarray:
    """12 x MRR at the cutoff; orders-only: net spend in the 12 months before it."""
    if mode == "contractual":
        return money["arr"].to_numpy(dtype=float)
    con.register("_arr_spine", money[["account_id"]])
    try:
        spend = con.execute(
            """SELECT s.account_id, coalesce(sum(CASE WHEN o.kind = 'refund' THEN -abs(o.amount)
                                                   ELSE o.amount END), 0) AS net
            FROM _arr_spine s LEFT JOIN main.orders o ON o.account_id = s.account_id
             AND o.ordered_at < ? AND o.ordered_at >= ? - INTERVAL 365 DAY
            GROUP BY ALL""",
            [cutoff, cutoff],
        ).df()
    finally:
        con.unregister("_arr_spine")
    by_id = dict(zip(spend["account_id"].astype(str), spend["net"].astype(float), strict=True))
    return np.array([max(by_id.get(a, 0.0), 0.0) for a in money["account_id"]], dtype=float)


def _campaigns(
    params: ScoreParams, at_risk: pd.DataFrame | None = None, notes: list[str] | None = None
) -> list[audiences.Campaign]:
    """The declared campaigns, as the audiences module takes them.

    A campaign that filters on data the company does not have is left out with a note, not an
    error: an advocacy ask for promoters needs NPS responses.
    """
    out = []
    for c in params.campaigns:
        if c.nps_categories and at_risk is not None and "nps_category" not in at_risk.columns:
            if notes is not None:
                notes.append(f"campaign {c.name} left out: it targets NPS categories, and the data "
                             "has no NPS responses")  # fmt: skip
            continue
        out.append(audiences.Campaign(**c.model_dump()))
    return out


def _stamp(frame: pd.DataFrame, cutoff: dt.datetime, bundle: ModelBundle) -> pd.DataFrame:
    """Every output row says when it was scored and by which registered model."""
    out = frame.copy()
    out.insert(0, "as_of", pd.Timestamp(cutoff).as_unit("us"))
    out["model"], out["model_version"], out["model_run_id"] = score.model_stamp(bundle)
    return out


def score_accounts(
    params: Params,
    *,
    as_of: dt.datetime | None = None,
    source: str | None = None,
    versions: dict[str, str] | None = None,
    budget: float | None | str = "params",
    sink: str | None = None,
    target: str = "churn",
    progress: ProgressFn | None = None,
) -> ScoreRun:
    """``churnlab score``: lists and audiences at ``as_of`` from the registry's champions.

    Parameters
    ----------
    params : Params
        All of params.yaml (``data``, ``score``, ``tracking``, ``train.out``, ``explain``).
    as_of : datetime, optional
        A midnight not after the data end; default the data end.
    source : str, optional
        Overrides ``data.source``.
    versions : dict, optional
        Task -> registered version to score with instead of the champion.
    budget : float, None or "params"
        The campaign budget (None: no limit; "params": ``score.budget``).
    sink : str, optional
        A ``.duckdb`` file or a SQLAlchemy URL to write the lists to as well.
    target : {"churn", "uplift"}
        How retention audiences are chosen: ``"churn"`` by revenue at risk x the campaign's
        save rate; ``"uplift"`` by the uplift model's expected saved ARR (``-effect x ARR``)
        minus cost, never contacting accounts it predicts contact would harm.
    progress : callable, optional
        Called with a short message at each step.
    """
    if target not in TARGETS:
        raise ChurnlabError(f"--target {target!r}: use one of {', '.join(TARGETS)}")
    on_spark = params.dataset.engine == "spark"
    if on_spark and target == "uplift":
        raise ChurnlabError(
            "--target uplift is not available with dataset.engine: spark (the uplift features "
            "run on DuckDB only): score with --target churn, or set dataset.engine: duckdb"
        )
    say = progress or _quiet
    timings: dict[str, float] = {}
    lap = stopwatch(timings)
    bundles, notes = _score_models(params, versions, say)
    lift_model = _uplift_model(params) if target == "uplift" else None
    lap("models")
    tracking.configure(params.tracking)
    spark_lists: dict[str, str] | None = None
    # the whole scoring is one run (FAILED if it fails); Spark, when asked, starts before it
    with _spark_session(params, say) as spark, tracking.start("score") as run_id:
        lift_rows = None
        if spark is None:
            cutoff, at_risk, expansion, drivers, drift_table, lift_rows = _duckdb_lists(
                params, source, as_of, bundles, lift_model, lap, say
            )
        else:
            on = _spark_lists(spark, params, source, as_of, bundles, say)
            cutoff, at_risk, expansion, drivers = on.cutoff, on.at_risk, on.expansion, on.drivers
            drift_table = _described(bundles["churn"], on.drift)
            lap("spark")
            timings |= on.timings
        notes += in_sample_notes(bundles, cutoff)
        p, sp = at_risk["churn_probability"].to_numpy(), params.score
        notes += [n for n in (score.band_note(p, sp.risk_bands),
                              score.expansion_note(expansion, at_risk, sp)) if n]  # fmt: skip
        say("choosing the campaign audiences")
        limit = params.score.budget if budget == "params" else budget
        audience, selection, campaigns, targets = _choose_audiences(
            params, at_risk, expansion, limit, cutoff, lift_model, lift_rows, notes, say
        )
        summary = audiences.summary(audience)
        treatments = audiences.treatments(audience, campaigns, cutoff)
        lap("audiences")
        lists = _stamped_lists(cutoff, bundles, at_risk, expansion, audience)
        models = {t: dict(b.info.get("registry", {})) for t, b in bundles.items()}
        say("writing the lists")
        extras = _extras(drift_table, summary, treatments, drivers, targets)
        meta = _run_meta(cutoff, run_id, models, notes, limit, target, lift_model)
        folder = sinks.write_files(lists, params.score.out, cutoff, extras=extras, meta=meta)
        written = sinks.write_database(lists, sink, cutoff) if sink else None
        if spark is not None:
            spark_lists = _write_spark_lists(params, on, folder, say)
        lap("write")
        log = score_run_log(params, cutoff, bundles, lists, summary, drift_table, selection,
                            timings)  # fmt: skip
        log.tags["score.target"] = target
        log.tables["actions/treatments.csv"] = treatments
        if targets is not None:
            log.tables["actions/uplift.csv"] = targets
        tracking.log(log)
    return ScoreRun(
        as_of=cutoff, at_risk=lists["at_risk"], expansion=lists.get("expansion"),
        audiences=lists["audiences"], audience_summary=summary, selection=selection,
        drift=drift_table, models=models, folder=folder, sink=written, run_id=run_id,
        notes=tuple(notes), timings=timings, target=target, uplift=targets, treatments=treatments,
        spark_lists=spark_lists,
    )  # fmt: skip


def _duckdb_lists(
    params: Params,
    source: str | None,
    as_of: dt.datetime | None,
    bundles: dict[str, ModelBundle],
    lift_model: uplift.UpliftModel | None,
    lap: Callable[[str], None],
    say: ProgressFn,
) -> tuple[dt.datetime, pd.DataFrame, pd.DataFrame | None, dict[str, pd.DataFrame], pd.DataFrame,
           pd.DataFrame | None]:  # fmt: skip
    """The embedded path: cutoff, both lists, drivers, drift and the uplift rows, on DuckDB."""
    say("loading and validating the data")
    con = load(params.data, source or params.data.source)
    try:
        cutoff = score.as_of_cutoff(as_of, load_mod.data_end(con, params.data))
        tracking.rename(f"score {cutoff:%Y-%m-%d}")
        say(f"building feature rows at {cutoff:%Y-%m-%d}")
        rows, money, mode, dparams = _scoring_rows(con, params, cutoff, bundles)
        arr = _arr(con, money, mode, cutoff)
        accounts = con.execute("SELECT * FROM main.accounts").df()
        lift_rows = None
        if lift_model is not None:
            say("uplift features")
            lift_rows = _uplift_rows(con, lift_model, rows, cutoff, params)
    finally:
        con.close()
    lap("features")
    for bundle in bundles.values():
        score.check_signature(bundle, rows)
    at_risk, expansion, drivers = _lists(params, bundles, rows, money, arr, accounts,
                                         score.annual_factor(mode, dparams.horizon_days),
                                         lap, say)  # fmt: skip
    return cutoff, at_risk, expansion, drivers, _drift(bundles["churn"], rows), lift_rows


@contextlib.contextmanager
def _spark_session(params: Params, say: ProgressFn) -> Iterator[Any]:
    """The Spark session of ``dataset.engine: spark`` for the command, else None."""
    if params.dataset.engine != "spark":
        yield None
        return
    from churnlab import spark_engine  # the embedded path never needs pyspark or Java

    say(f"starting Spark ({params.spark.master})")
    with spark_engine.session_scope(params.spark) as spark:
        yield spark


def _spark_lists(
    spark: Any,
    params: Params,
    source: str | None,
    as_of: dt.datetime | None,
    bundles: dict[str, ModelBundle],
    say: ProgressFn,
) -> Any:
    """Both lists, drivers and drift on Spark (:func:`churnlab.spark_score.score_lists`)."""
    from churnlab import spark_dataset, spark_engine, spark_score

    say("reading the data (Spark)")
    tables = spark_engine.read_tables(spark, params.data, source or params.data.source)
    cutoff = score.as_of_cutoff(as_of, spark_dataset.data_end(tables, params.data))
    tracking.rename(f"score {cutoff:%Y-%m-%d}")
    return spark_score.score_lists(
        spark, tables, cutoff, bundles, _dataset_params(params, bundles["churn"]), params.score,
        top_k=params.explain.top_k, progress=say,
    )  # fmt: skip


def _write_spark_lists(params: Params, lists: Any, folder: Path, say: ProgressFn) -> dict[str, str]:
    """The Spark lists as Parquet (``spark.lists_out`` or the as-of folder's ``spark/``)."""
    from churnlab import spark_score

    out = params.spark.lists_out
    target = f"{out.rstrip('/')}/{lists.cutoff:%Y-%m-%d}" if out else str(folder / "spark")
    say(f"writing the lists as Parquet (Spark): {target}")
    try:
        return spark_score.write_lists(lists, target)
    finally:
        spark_score.release(lists)


def _extras(
    drift_table: pd.DataFrame,
    summary: pd.DataFrame,
    treatments: pd.DataFrame,
    drivers: dict[str, pd.DataFrame],
    targets: pd.DataFrame | None,
) -> dict[str, pd.DataFrame]:
    """The as-of folder's tables beside the lists."""
    extras = {"drift": drift_table, "audience_summary": summary, "treatments": treatments}
    extras |= {f"drivers_{t}": d for t, d in drivers.items()}
    if targets is not None:
        extras["uplift"] = targets
    return extras


def _choose_audiences(
    params: Params,
    at_risk: pd.DataFrame,
    expansion: pd.DataFrame | None,
    limit: float | None | str,
    cutoff: dt.datetime,
    lift_model: uplift.UpliftModel | None,
    lift_rows: pd.DataFrame | None,
    notes: list[str],
    say: ProgressFn,
) -> tuple[pd.DataFrame, audiences.Selection, list[audiences.Campaign], pd.DataFrame | None]:
    """The audiences within the budget, their selection, the campaigns and the uplift targets.

    Retention campaigns are chosen by the uplift model's predicted effects when it is given (the
    targets are None otherwise); campaigns left out and pairs predicted to raise churn are noted.
    """
    campaigns = _campaigns(params.score, at_risk, notes)
    targets = None
    if lift_model is not None and lift_rows is not None:
        say("predicting each retention campaign's effect")
        targets = uplift_targets(lift_model, lift_rows, at_risk, campaigns)
        harmed = int(targets["harmful"].sum())
        fitted_on = len(lift_model.info.get("campaigns", []))
        notes.append(
            f"retention audiences chosen by uplift (model of {fitted_on} campaigns): "
            f"{harmed:,} account-campaign pairs predicted to raise churn were left out"
        )
    audience, selection = audiences.build(
        at_risk, expansion, campaigns, limit if not isinstance(limit, str) else None,
        holdout_share=params.score.holdout_share, as_of=cutoff, seed=params.score.seed,
        uplift=None if targets is None else targets[list(audiences.UPLIFT_COLUMNS)],
    )  # fmt: skip
    return audience, selection, campaigns, targets


def _run_meta(
    cutoff: dt.datetime,
    run_id: str,
    models: dict[str, dict[str, Any]],
    notes: list[str],
    limit: float | None | str,
    target: str,
    lift_model: uplift.UpliftModel | None,
) -> dict[str, Any]:
    """``run.json`` of the as-of folder: date, run, models, notes, budget, target, uplift model."""
    meta: dict[str, Any] = {
        "as_of": f"{cutoff:%Y-%m-%d}",
        "run_id": run_id,
        "models": models,
        "notes": notes,
        "budget": limit if not isinstance(limit, str) else None,
        "target": target,
    }
    if lift_model is not None:
        meta["uplift_model"] = {k: lift_model.info.get(k) for k in
                                ("method", "campaigns", "data_end", "run_id")}  # fmt: skip
    return meta


def _lists(
    params: Params,
    bundles: dict[str, ModelBundle],
    rows: pd.DataFrame,
    money: pd.DataFrame,
    arr: np.ndarray,
    accounts: pd.DataFrame,
    annualise: float,
    lap: Callable[[str], None],
    say: ProgressFn,
) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, pd.DataFrame]]:
    """Both lists and each model's global drivers (mean |TreeSHAP| on the scored rows)."""
    churn = bundles["churn"]
    say(f"scoring and explaining {len(rows):,} accounts: churn")
    at_risk, reasons = score.at_risk_list(
        rows, churn, arr, params.score, top_k=params.explain.top_k, accounts=accounts
    )
    drivers = {"churn": reasons.attrs["importance"]}
    lap("churn")
    expansion = None
    if "expansion" in bundles:
        say(f"scoring and explaining {len(rows):,} accounts: expansion")
        expansion, ereasons = score.expansion_list(
            rows, bundles["expansion"], at_risk.set_index("account_id").loc[
                rows["account_id"].astype(str), "churn_probability"].to_numpy(),
            money["mrr"].to_numpy(dtype=float), params.score, annualise=annualise,
            top_k=params.explain.top_k, accounts=accounts,
        )  # fmt: skip
        drivers["expansion"] = ereasons.attrs["importance"]
    lap("expansion")
    return at_risk, expansion, drivers


_DRIFT_COLUMNS = ["feature", "description", *drift.COLUMNS[1:]]


def _drift(bundle: ModelBundle, rows: pd.DataFrame) -> pd.DataFrame:
    profile = bundle.info.get("profile")
    if not profile:
        return pd.DataFrame(columns=_DRIFT_COLUMNS)
    return _described(bundle, drift.psi(profile, bundle.matrix(rows)))


def _described(bundle: ModelBundle, table: pd.DataFrame) -> pd.DataFrame:
    """The drift table with each feature's description (the empty table's columns if none)."""
    if not bundle.info.get("profile"):
        return pd.DataFrame(columns=_DRIFT_COLUMNS)
    table = table.copy()
    desc = {f.name: f.description for f in bundle.features}
    table.insert(1, "description", table["feature"].map(desc))
    return table


def _stamped_lists(
    cutoff: dt.datetime,
    bundles: dict[str, ModelBundle],
    at_risk: pd.DataFrame,
    expansion: pd.DataFrame | None,
    audience: pd.DataFrame,
) -> dict[str, pd.DataFrame]:
    churn = bundles["churn"]
    lists = {"at_risk": _stamp(at_risk, cutoff, churn)}
    if expansion is not None:
        lists["expansion"] = _stamp(expansion, cutoff, bundles["expansion"])
    by_kind = _stamp(audience, cutoff, churn)
    if "expansion" in bundles:
        upsell = by_kind["kind"] == "upsell"
        exp = _stamp(audience[upsell.to_numpy()], cutoff, bundles["expansion"])
        by_kind.loc[upsell, ["model", "model_version", "model_run_id"]] = exp[
            ["model", "model_version", "model_run_id"]
        ].to_numpy()
    lists["audiences"] = by_kind
    return lists


def score_run_log(
    params: Params,
    cutoff: dt.datetime,
    bundles: dict[str, ModelBundle],
    lists: dict[str, pd.DataFrame],
    summary: pd.DataFrame,
    drift_table: pd.DataFrame,
    selection: Any,
    timings: dict[str, float],
) -> RunLog:
    """What a scoring run logs (see :func:`score_accounts`)."""
    at_risk = lists["at_risk"]
    metrics: dict[str, float] = {
        "score.accounts": float(len(at_risk)),
        "score.total_arr": float(at_risk["arr"].sum()),
        "score.revenue_at_risk": float(at_risk["revenue_at_risk"].sum()),
    }
    for band, g in at_risk.groupby("risk_band"):
        metrics[f"score.accounts.{band}"] = float(len(g))
        metrics[f"score.revenue_at_risk.{band}"] = float(g["revenue_at_risk"].sum())
    if "expansion" in lists:
        metrics["score.expected_expansion_value"] = float(
            lists["expansion"]["expected_expansion_value"].sum()
        )
    for row in summary.itertuples():
        for col in ("contacts", "holdout", "cost", "expected_value", "expected_net_value"):
            metrics[f"audience.{row.campaign}.{col}"] = float(getattr(row, col))
    metrics["audience.optimality_gap"] = float(getattr(selection, "gap", float("nan")))
    metrics |= {f"score.seconds.{k}": v for k, v in timings.items()}
    warn = params.score.drift_warning
    drifting = drift_table[drift_table["psi"] > warn]
    if len(drift_table):
        metrics["drift.max_psi"] = float(drift_table["psi"].max())
    tags = {
        "churnlab.command": "score",
        "score.as_of": f"{cutoff:%Y-%m-%d}",
        "drift.warning": ", ".join(drifting["feature"].head(10)) or "none",
    }
    for task, b in bundles.items():
        reg = b.info.get("registry", {})
        tags[f"model.{task}"] = f"{reg.get('name', '?')} v{reg.get('version', '?')}"
    tables = {f"actions/{name}.csv": frame for name, frame in lists.items()}
    tables["actions/audience_summary.csv"] = summary
    tables["drift/psi.csv"] = drift_table
    return RunLog(metrics=metrics, tags=tags, tables=tables, params=flatten(params.score, "score."))

"""The ``measure`` and ``train-uplift`` commands: what campaigns changed, and who they change.

Part of the pipeline layer (beside :mod:`churnlab.actions` and :mod:`churnlab.reporting`).

- :func:`measure_campaigns` loads the data, takes the segments of each campaign (risk band,
  driver group and the score it was targeted by) from the audiences ``churnlab score`` wrote for
  it, when they exist, runs :func:`churnlab.measure.measure`, writes its tables and plots to
  ``measure.out/<data end>/`` in one atomic swap and logs an MLflow run.
- :func:`train_uplift` fits the uplift model (:mod:`churnlab.uplift`) on every campaign whose
  outcome windows are complete, after checking it on the latest retention campaign against
  targeting by churn risk, writes it to ``measure.uplift_out`` (``score --target uplift`` reads
  it there) and logs an MLflow run.

A scoring's audience becomes a campaign of the ``treatments`` table once its ``treatments.csv``
is appended there (campaign id ``<campaign>-<as-of>``, :func:`churnlab.audiences.campaign_id`);
that id is how a campaign finds the scoring that chose it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnlab import audiences, measure, measure_outputs, tracking, uplift, uplift_evaluation
from churnlab.atomic import atomic_dir
from churnlab.config import MeasureParams, Params, flatten
from churnlab.load import data_end, load
from churnlab.pipeline import ProgressFn, stopwatch
from churnlab.runlog import RunLog

TABLES: tuple[str, ...] = (
    "campaigns",
    "effects",
    "power",
    "pending",
    "warnings",
    "qini",
    "uplift_by_decile",
)
"""The :class:`churnlab.measure.Measurement` frames written as ``<name>.csv``."""
_DATE_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"


def _quiet(_message: str) -> None:
    pass


@dataclass(frozen=True)
class MeasureRun:
    """What :func:`measure_campaigns` produced."""

    result: measure.Measurement
    folder: Path
    run_id: str
    segments_from: tuple[str, ...]
    """The scorings (as-of dates) whose audiences gave campaigns their segments."""
    timings: dict[str, float]


@dataclass(frozen=True)
class UpliftRun:
    """What :func:`train_uplift` produced."""

    model: uplift.UpliftModel
    folder: Path
    run_id: str
    evaluation: pd.DataFrame | None
    """The check on the latest retention campaign (the summary of
    :func:`churnlab.uplift_evaluation.evaluate`)."""
    evaluated_on: str | None
    notes: tuple[str, ...]
    timings: dict[str, float]


def measure_settings(p: MeasureParams) -> measure.MeasureSettings:
    """The stage's settings from the ``measure`` params section."""
    return measure.MeasureSettings(
        level=p.level,
        rate_method=p.rate_method,
        mean_method=p.mean_method,
        n_boot=p.n_boot,
        seed=p.seed,
        detectable_diff=p.detectable_diff,
        min_holdout=p.min_holdout,
        min_events=p.min_events,
    )


def _read(folder: Path, name: str) -> pd.DataFrame | None:
    for suffix, reader in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return reader(path)
    return None


def _scoring_segments(folder: Path, campaign_ids: set[str]) -> pd.DataFrame | None:
    """Segments of one scoring's audience rows whose campaign is in ``campaign_ids``."""
    aud = _read(folder, "audiences")
    at_risk = _read(folder, "at_risk")
    if aud is None or at_risk is None or aud.empty:
        return None
    aud = aud.assign(
        account_id=aud["account_id"].astype(str),
        campaign_id=[audiences.campaign_id(str(c), folder.name) for c in aud["campaign"]],
    )
    aud = aud[aud["campaign_id"].isin(campaign_ids)]
    if aud.empty:
        return None
    risk = at_risk.assign(account_id=at_risk["account_id"].astype(str)).set_index("account_id")
    ids = aud["account_id"]
    out = pd.DataFrame(
        {
            "account_id": ids.to_numpy(),
            "campaign_id": aud["campaign_id"].to_numpy(),
            "risk_band": aud["risk_band"].to_numpy(),
            "driver_group": risk["driver_group"].reindex(ids).to_numpy()
            if "driver_group" in risk.columns
            else None,
        }
    )
    # The score each audience was targeted by (higher = chosen first): churn risk for retention,
    # expansion propensity for upsell, minus the predicted effect when targeted by uplift.
    score = np.full(len(aud), np.nan)
    kind = aud["kind"].astype(str).to_numpy()
    retention = kind == "retention"
    score[retention] = risk["churn_probability"].reindex(ids[retention]).to_numpy(dtype=float)
    expansion = _read(folder, "expansion")
    upsell = kind == "upsell"
    if expansion is not None and upsell.any():
        prob = expansion.assign(account_id=expansion["account_id"].astype(str)).set_index(
            "account_id"
        )["expansion_probability"]
        score[upsell] = prob.reindex(ids[upsell]).to_numpy(dtype=float)
    lift = _read(folder, "uplift")
    if lift is not None and not lift.empty:
        key = pd.MultiIndex.from_arrays(
            [lift["account_id"].astype(str), lift["campaign"].astype(str)]
        )
        effect = pd.Series(lift["effect"].to_numpy(dtype=float), index=key)
        mine = pd.MultiIndex.from_arrays([ids, aud["campaign"].astype(str)])
        predicted = effect.reindex(mine).to_numpy()
        by_uplift = retention & np.isfinite(predicted)
        score[by_uplift] = -predicted[by_uplift]
    out["score"] = score
    return out


def audience_segments(
    score_out: Path | str, campaign_ids: Iterable[str]
) -> tuple[pd.DataFrame | None, list[str]]:
    """Segments of the campaigns that ``churnlab score`` chose, from its as-of folders.

    Parameters
    ----------
    score_out : Path or str
        ``score.out`` (folders ``<as_of>/`` with ``audiences``, ``at_risk``, optionally
        ``expansion`` and ``uplift``).
    campaign_ids : iterable of str
        The campaign ids of the treatments table.

    Returns
    -------
    (DataFrame or None, list of str)
        One row per (``account_id``, ``campaign_id``) of the audiences whose campaign id
        (:func:`churnlab.audiences.campaign_id`) is a treatments campaign: ``risk_band``,
        ``driver_group`` (the at-risk list's, at scoring) and ``score`` (the score the account
        was targeted by: churn probability for retention, expansion probability for upsell,
        ``-effect`` for retention chosen by uplift; missing for other kinds); None when no
        scoring matches. And the as-of dates of the scorings used.
    """
    wanted = {str(c) for c in campaign_ids}
    parts, used = [], []
    for folder in sorted(Path(score_out).glob(_DATE_GLOB)):
        seg = _scoring_segments(folder, wanted)
        if seg is not None:
            parts.append(seg)
            used.append(folder.name)
    if not parts:
        return None, used
    return pd.concat(parts, ignore_index=True), used


def _write(result: measure.Measurement, folder: Path, meta: dict[str, Any]) -> list[Path]:
    """Tables, plots and ``run.json`` into ``folder`` in one atomic swap; the final plot paths."""
    with atomic_dir(folder) as tmp:
        for name in TABLES:
            getattr(result, name).to_csv(tmp / f"{name}.csv", index=False)
        plots = measure_outputs.plot(result, tmp / "plots")
        (tmp / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return [folder / "plots" / p.name for p in plots]


def measure_campaigns(
    params: Params,
    *,
    as_of: dt.datetime | None = None,
    source: str | None = None,
    progress: ProgressFn | None = None,
) -> MeasureRun:
    """``churnlab measure``: every campaign's effect from its holdout, written and logged.

    Parameters
    ----------
    params : Params
        All of params.yaml (``data``, ``dataset``: the label definitions, ``measure``,
        ``score.out``: where the audiences are, ``tracking``).
    as_of : datetime, optional
        Measure as of this date (only windows closed by then count); default the data end.
    source : str, optional
        Overrides ``data.source``.
    progress : callable, optional
        Called with a short message at each step.

    Raises
    ------
    MeasureError
        Without a treatments table, or with ``as_of`` after the data end.
    """
    say = progress or _quiet
    timings: dict[str, float] = {}
    lap = stopwatch(timings)

    tracking.configure(params.tracking)
    with tracking.start("measure") as run_id:
        say("loading and validating the data")
        con = load(params.data, source or params.data.source)
        try:
            data = params.data
            end = data_end(con, data)
            if as_of is not None:
                if as_of > end:
                    raise measure.MeasureError(
                        f"--as-of {as_of:%Y-%m-%d} is after the data end {end:%Y-%m-%d}: "
                        "outcomes after it are not observed; give an earlier date"
                    )
                data = data.model_copy(update={"as_of": as_of})
            ids = set(measure.read_treatments(con)["campaign_id"])
            lap("load")
            say("reading the audiences the scorings chose")
            segments, used = audience_segments(params.score.out, ids)
            say(f"measuring {len(ids):,} campaigns")
            result = measure.measure(
                con, params.dataset, data, segments=segments,
                settings=measure_settings(params.measure),
            )  # fmt: skip
        finally:
            con.close()
        lap("measure")
        tracking.rename(f"measure {result.data_end:%Y-%m-%d}")
        folder = Path(params.measure.out) / f"{result.data_end:%Y-%m-%d}"
        say(f"writing {folder}")
        meta = {
            "run_id": run_id,
            "data_end": f"{result.data_end:%Y-%m-%d}",
            "mode": result.mode,
            "measured": list(map(str, result.campaigns["campaign_id"])),
            "pending": list(map(str, result.pending["campaign_id"])),
            "segments_from": used,
            "settings": dataclasses.asdict(result.settings),
        }
        plots = _write(result, folder, meta)
        lap("write")
        tracking.log(
            RunLog(
                params=flatten(params.measure, "measure."),
                tags={"churnlab.command": "measure", "measure.segments_from": ",".join(used)},
                metrics={f"measure.seconds.{k}": v for k, v in timings.items()},
            )
        )
        tracking.log(measure_outputs.run_log(result, plots))
    return MeasureRun(result, folder, run_id, tuple(used), timings)


def latest_measurement(out: Path | str, on_or_before: dt.datetime | None = None) -> Path | None:
    """The newest ``measure.out/<date>/`` folder (at or before ``on_or_before``), if any."""
    found = sorted(
        p for p in Path(out).glob(_DATE_GLOB) if (p / "campaigns.csv").is_file()
    )  # fmt: skip
    if on_or_before is not None:
        found = [p for p in found if p.name <= f"{on_or_before:%Y-%m-%d}"]
    return found[-1] if found else None


def _evaluate_latest(
    rows: pd.DataFrame, feats: list[Any], settings: uplift.UpliftSettings, horizon: int
) -> tuple[pd.DataFrame | None, str | None, str | None]:
    """Fit on the campaigns before the latest retention one, score that one; (summary, id, note)."""
    retention = rows[rows["campaign_kind"].map(measure.primary_outcome) == "churn"]
    if retention.empty:
        return None, None, "no retention campaign to check the uplift model on"
    latest = str(retention.sort_values("assigned_at")["campaign_id"].iloc[-1])
    try:
        train, test = uplift.time_split(rows, latest, horizon)
        model = uplift.fit(train, feats, settings)
    except uplift.UpliftError as err:
        return None, latest, f"uplift model not checked on {latest}: {err}"
    # Churn risk: the churn probability the model's two classifiers (fitted on the same earlier
    # rows) give at the campaigns' mix of contacted and held-out accounts; the holdout's own
    # classifier alone is often a constant on a few hundred rows.
    arms = uplift.predict_arms(model, test)
    e = model.treated_share
    risk = (e * arms["p_treated"] + (1 - e) * arms["p_control"]).to_numpy()
    evaluation = uplift_evaluation.evaluate(model, test, churn_risk=risk)
    return evaluation.summary, latest, None


def train_uplift(
    params: Params, *, source: str | None = None, progress: ProgressFn | None = None
) -> UpliftRun:
    """``churnlab train-uplift``: fit the uplift model on every measured campaign and save it.

    First the model is fitted on the campaigns whose windows closed before the latest retention
    campaign and evaluated on that one (Qini coefficient and AUUC against targeting by churn
    risk, :func:`churnlab.uplift_evaluation.evaluate`); then it is fitted on all of them and
    written to ``measure.uplift_out`` (atomically), which ``score --target uplift`` reads.

    Parameters
    ----------
    params : Params
        All of params.yaml (``data``, ``dataset``, ``measure``, ``tracking``).
    source : str, optional
        Overrides ``data.source``.
    progress : callable, optional
        Called with a short message at each step.

    Raises
    ------
    UpliftError
        When no campaign has a complete window, or an arm is too small to learn from.
    """
    say = progress or _quiet
    timings: dict[str, float] = {}
    lap = stopwatch(timings)

    settings = uplift.UpliftSettings(method=params.measure.uplift_method)
    notes: list[str] = []
    tracking.configure(params.tracking)
    with tracking.start("train-uplift") as run_id:
        say("loading and validating the data")
        con = load(params.data, source or params.data.source)
        try:
            end = data_end(con, params.data)
            say("features and outcomes of every measured assignment")
            rows, feats = uplift.training_rows(con, params.dataset, end)
        finally:
            con.close()
        feats = [*feats, *uplift.campaign_features(rows)]
        lap("rows")
        say("checking the model on the latest retention campaign")
        summary, latest, note = _evaluate_latest(rows, feats, settings, params.dataset.horizon_days)
        notes += [note] if note else []
        lap("evaluate")
        say(f"fitting the {settings.method}-learner on {len(rows):,} assignments")
        model = uplift.fit(rows, feats, settings)
        model = dataclasses.replace(
            model,
            info={**model.info, "dataset": params.dataset.model_dump(mode="json"),
                  "data_end": f"{end:%Y-%m-%d}", "run_id": run_id},
        )  # fmt: skip
        lap("fit")
        folder = Path(params.measure.uplift_out)
        with atomic_dir(folder) as tmp:
            uplift.save(model, tmp)
        tracking.rename(f"train-uplift {end:%Y-%m-%d}")
        metrics = {
            "uplift.rows_treated": float(model.info["rows_treated"]),
            "uplift.rows_control": float(model.info["rows_control"]),
            "uplift.campaigns": float(len(model.info["campaigns"])),
        } | {f"uplift.seconds.{k}": v for k, v in timings.items()}
        tables = {}
        if summary is not None:
            for r in summary.itertuples():
                metrics[f"uplift.eval.{r.targeting}.qini_coefficient"] = float(r.qini_coefficient)
                metrics[f"uplift.eval.{r.targeting}.auuc"] = float(r.auuc)
            tables["uplift/evaluation.csv"] = summary
        tracking.log(
            RunLog(
                params=flatten(params.measure, "measure."),
                metrics=metrics,
                tags={"churnlab.command": "train-uplift", "uplift.evaluated_on": latest or ""},
                tables=tables,
                files={"uplift/model": sorted(p for p in folder.iterdir() if p.is_file())},
            )
        )
    return UpliftRun(model, folder, run_id, summary, latest, tuple(notes), timings)


# ---------------------------------------------------------------------------------------------
# what the command prints (plain text, so that it is the same in a terminal, a log and a test)

WIDTH = 100
"""Every line of :func:`summary_lines` fits this many columns."""
_VERDICT_WORD = {"no detectable effect": "no detectable effect", "not measured": "not measured"}


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "~"


def _pts(v: Any) -> str:
    return "" if v is None or not np.isfinite(float(v)) else f"{100 * float(v):+.1f}"


def _short_verdict(verdict: str) -> str:
    if verdict in _VERDICT_WORD:
        return _VERDICT_WORD[verdict]
    return "HARMS" if "harmful" in verdict else "helps"


def summary_lines(result: measure.Measurement) -> list[str]:
    """The per-campaign table ``churnlab measure`` prints, then warnings and pending campaigns.

    One row per measured campaign: its id, contacted and held-out accounts, the outcome it was
    meant to move (churn for retention, expansion for upsell), the treated-minus-holdout
    difference in rate points with its interval, and the verdict (``helps``, ``HARMS``, ``no
    detectable effect``). Campaigns whose holdout is too small for that outcome are starred and
    their counts follow; pending campaigns are listed with the date their last window closes.
    Every line fits ``WIDTH`` columns.

    Parameters
    ----------
    result : Measurement
        What :func:`churnlab.measure.measure` returned.

    Returns
    -------
    list of str
    """
    level = int(round(100 * result.settings.level))
    head = (
        f"{'campaign':<28} {'treated':>7} {'held':>5} {'outcome':<9} "
        f"{'effect':>6} {f'{level}% CI (pts)':<15} verdict"
    )
    lines = [
        f"{len(result.campaigns):,} campaign(s) measured, {len(result.pending):,} pending "
        f"(data end {result.data_end:%Y-%m-%d}); effect = treated - holdout, in rate points",
        head,
        "-" * len(head.rstrip()),
    ]
    # The warnings on each campaign's own outcome (the other outcome's are in warnings.csv).
    primary = dict(zip(result.campaigns["campaign_id"], result.campaigns["primary_outcome"],
                       strict=True))  # fmt: skip
    overall = result.warnings[
        (result.warnings["segment_type"] == measure.OVERALL)
        & (result.warnings["outcome"] == result.warnings["campaign_id"].map(primary))
    ]
    flagged = set(overall["campaign_id"])
    for _, r in result.campaigns.iterrows():
        o = str(r["primary_outcome"])
        star = "*" if r["campaign_id"] in flagged else ""
        ci = f"[{_pts(r[f'{o}_ci_low'])}, {_pts(r[f'{o}_ci_high'])}]"
        if not _pts(r[f"{o}_ci_low"]):
            ci = ""
        row = (
            f"{_cut(str(r['campaign_id']) + star, 28):<28} "
            f"{int(r['n_treated']):>7,} {int(r['n_holdout']):>5,} {o:<9} "
            f"{_pts(r[f'{o}_diff']):>6} {ci:<15} {_short_verdict(str(r[f'{o}_verdict']))}"
        )
        lines.append(_cut(row, WIDTH))
    for _, w in overall.iterrows():
        lines += _wrapped(f"* {w['campaign_id']} ({w['outcome']}): {w['message']}")
    for _, p in result.pending.iterrows():
        lines += _wrapped(
            f"pending: {p['campaign_id']} ({int(p['accounts']):,} accounts) until "
            f"{pd.Timestamp(p['window_end']):%Y-%m-%d}, {int(p['days_to_go']):,} days to go"
        )
    return lines


def _wrapped(text: str) -> list[str]:
    """``text`` in lines of at most ``WIDTH`` columns, continuation lines indented."""
    words, lines, line = text.split(" "), [], ""
    for word in words:
        candidate = f"{line} {word}" if line else word
        if len(candidate) > WIDTH and line:
            lines.append(line)
            line = "    " + word
        else:
            line = candidate
    lines.append(line)
    return [_cut(x, WIDTH) for x in lines]

"""The commands that act on the champion models and measure what the campaigns did.

``score`` (the lists and audiences), ``report`` (the HTML page), ``measure`` (campaign effects
from their holdouts) and ``train-uplift`` (the uplift model). They are registered on the app in
:mod:`churnlab.cli`, in pipeline order.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.markup import escape

from churnlab.cli_app import (
    ParamsOpt,
    SourceOpt,
    console,
    expected_errors,
    get_params,
    spinner,
)
from churnlab.errors import ChurnlabError


def _versions(values: list[str] | None) -> dict[str, str]:
    out = {}
    for v in values or []:
        task, sep, version = v.partition("=")
        if not sep or task not in ("churn", "expansion") or not version.strip().isdigit():
            raise ChurnlabError(
                f"--model-version {v!r}: use TASK=VERSION with TASK churn or expansion, e.g. "
                "--model-version churn=3"
            )
        out[task] = version.strip()
    return out


def _budget(value: str | None) -> float | None | str:
    if value is None:
        return "params"
    if value.strip().lower() in ("none", "unlimited"):
        return None
    try:
        budget = float(value)
    except ValueError:
        raise ChurnlabError(
            f"--budget {value!r} is not a number: give an amount, e.g. --budget 25000, or "
            "--budget none for no limit"
        ) from None
    if budget < 0:
        raise ChurnlabError(f"--budget {value} is negative: give an amount >= 0")
    return budget


@expected_errors
def score(
    as_of: Annotated[
        dt.datetime | None,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%d"],
            help="Score the accounts eligible at this date, from data strictly before it "
            "(default: the data end).",
        ),
    ] = None,
    model_version: Annotated[
        list[str] | None,
        typer.Option(
            "--model-version",
            help="Score with a registered version instead of the champion, e.g. "
            "`--model-version churn=3` (repeat for each task).",
        ),
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option(
            "--budget",
            help="Campaign budget for the audiences, e.g. 25000, or `none` for no limit "
            "(default: score.budget).",
        ),
    ] = None,
    sink: Annotated[
        str | None,
        typer.Option(
            "--sink",
            help="Also write the lists to a DuckDB file (PATH.duckdb) or a database URL "
            "(tables churnlab_at_risk, churnlab_expansion, churnlab_audiences; re-running an "
            "as-of replaces its rows).",
        ),
    ] = None,
    top: Annotated[
        int | None,
        typer.Option("--top", min=1, help="Rows of each list shown here (default: score.top)."),
    ] = None,
    target: Annotated[
        str,
        typer.Option(
            "--target",
            help="Choose retention audiences by `churn` risk (revenue at risk x save rate) or "
            "by `uplift`: expected saved ARR (-effect x ARR) minus cost from the model "
            "`churnlab train-uplift` wrote, never contacting accounts it predicts would churn "
            "more.",
        ),
    ] = "churn",
    source: SourceOpt = None,
    params: ParamsOpt = None,
) -> None:
    """Score every current account: the at-risk list, the expansion list and campaign audiences.

    Uses the registry's champion models (PREFIX-churn, PREFIX-expansion), builds each eligible
    account's features at the as-of date with the training code, and writes
    at_risk, expansion and audiences (CSV and Parquet) to score.out/AS_OF/. The at-risk list has
    every account ranked by revenue at risk (probability x ARR) with its top reasons and a play;
    the expansion list ranks expected expansion value; the audiences pick at most one campaign per
    account within the budget, with a random holdout per campaign and risk band to measure the
    effect later. The run, with feature drift against the training rows, is logged to MLflow.
    treatments.csv holds the audiences in the treatments table's columns (campaign id
    CAMPAIGN-AS_OF): append it to your treatments table when the campaigns go out, and
    `churnlab measure` measures them after the horizon.

    Examples: `churnlab score`, `churnlab score --as-of 2025-10-01 --budget 10000`,
    `churnlab score --model-version churn=2 --sink crm.duckdb`, `churnlab score --target uplift`.
    """
    from churnlab import actions, terminal

    p = get_params(params)
    versions = _versions(model_version)
    with spinner("scoring") as progress:
        run = actions.score_accounts(
            p, as_of=as_of, source=source, versions=versions, budget=_budget(budget),
            sink=sink, target=target, progress=progress,
        )  # fmt: skip
    n = top if top is not None else p.score.top
    for renderable in terminal.score_summary(run, n, p.score.drift_warning):
        console.print(renderable, highlight=False, soft_wrap=True)
    for name, path in (run.spark_lists or {}).items():
        console.print(f"{name} list as Parquet (written by Spark): {path}", highlight=False,
                      soft_wrap=True)  # fmt: skip


@expected_errors
def report(
    as_of: Annotated[
        dt.datetime | None,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%d"],
            help="The scoring to report on (default: the latest `churnlab score` wrote).",
        ),
    ] = None,
    params: ParamsOpt = None,
) -> None:
    """Write one self-contained HTML page for customer success and marketing.

    Headline money by risk band, KPI trends (outcome and activity metrics), model quality against
    the baselines with calibration and predicted vs realised churn, drift warnings, the top drivers
    in plain words, the at-risk and expansion lists (sortable, filterable, each row expands to its
    reasons) and the campaign audiences. No network is needed to open it. Written next to the
    action lists (reports/report_AS_OF.html) and logged to the scoring run in MLflow.
    """
    from churnlab import reporting

    p = get_params(params)
    with spinner("building the report") as progress:
        done = reporting.build_report(p, as_of=as_of, progress=progress)
    for note in done.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    console.print("report written; open it in a browser:", highlight=False)
    console.print(str(done.path.resolve()), highlight=False, soft_wrap=True)


@expected_errors
def measure(
    as_of: Annotated[
        dt.datetime | None,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%d"],
            help="Measure as of this date: only outcome windows closed by then count "
            "(default: the data end).",
        ),
    ] = None,
    source: SourceOpt = None,
    params: ParamsOpt = None,
) -> None:
    """Measure what each campaign in the treatments table changed, from its holdout.

    For every campaign whose outcome windows are complete (assigned_at + horizon): treated vs
    holdout churn and expansion rates, retained ARR and expansion value, each difference with a
    95% interval (Newcombe for rates, Welch for means; see `measure` in params.yaml), per
    campaign, risk band and driver group (from the audiences `churnlab score` wrote, when the
    campaign came from one), the power table and the Qini curve of the targeting score. Tables
    and plots go to measure.out/DATA_END/, the run to MLflow. Too-small holdouts are flagged
    with their counts; campaigns still in their window are listed as pending.
    """
    from churnlab import measuring

    p = get_params(params)
    with spinner("measuring") as progress:
        run = measuring.measure_campaigns(p, as_of=as_of, source=source, progress=progress)
    for line in measuring.summary_lines(run.result):
        console.print(escape(line), highlight=False, soft_wrap=True)
    console.print(f"MLflow run {run.run_id}; tables and plots in:", highlight=False)
    console.print(f"{run.folder}/", highlight=False, soft_wrap=True)


@expected_errors
def train_uplift(source: SourceOpt = None, params: ParamsOpt = None) -> None:
    """Fit the uplift model (effect of contact on churn) on the measured campaigns.

    An X-learner (or T-learner, measure.uplift_method) on LightGBM learns each account's effect
    from past randomised campaigns; it is first checked on the latest retention campaign
    against targeting by churn risk (Qini coefficient, AUUC), then fitted on every campaign
    with a complete window and written to measure.uplift_out, which `churnlab score --target
    uplift` reads. The run goes to MLflow.
    """
    from churnlab import measuring

    p = get_params(params)
    with spinner("training the uplift model") as progress:
        run = measuring.train_uplift(p, source=source, progress=progress)
    info = run.model.info
    console.print(
        f"{run.model.method}-learner on {info['rows_treated']:,} contacted and "
        f"{info['rows_control']:,} held-out assignments of {len(info['campaigns'])} campaigns "
        f"-> {run.folder}/",
        highlight=False,
        soft_wrap=True,
    )
    if run.evaluation is not None:
        console.print(f"checked on {run.evaluated_on} (fitted on earlier campaigns):")
        for r in run.evaluation.itertuples():
            console.print(
                f"  {r.targeting:<11} Qini coefficient {r.qini_coefficient:+.3f}  "
                f"AUUC {r.auuc:+.2f}",
                highlight=False,
            )
    for note in run.notes:
        console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)

"""`churnlab score` on a small synthetic company: lists, reasons, plays, point in time, sinks."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from churnlab import actions, dataset, explain, load, pipeline, score, sinks, synth
from churnlab.cli import app
from churnlab.config import DEFAULT_PLAYS, Params, ScoreParams, SynthParams, load_params

LGB = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 7,
    "n_estimators": 60,
    "verbose": -1,
    "seed": 7,
    "num_threads": 2,
    "min_child_samples": 20,
}


@pytest.fixture(scope="module")
def company(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A synthetic world, its training set and both models trained and registered."""
    root = tmp_path_factory.mktemp("score")
    world = root / "world"
    synth.run(SynthParams(accounts=800, months=15, seed=3), world)
    raw = {
        "data": {"source": str(world)},
        "dataset": {"out": str(root / "ds")},
        "train": {"lightgbm": LGB, "early_stopping_rounds": 10, "out": str(root / "models")},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "score-test"},
        "explain": {"sample_for_plots": 200},
        "score": {"out": str(root / "actions")},
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    params = load_params(path)
    run = pipeline.build_dataset(params)
    summary = pipeline.train_models(params, log_kpis=False)
    assert set(summary["tasks"]) == {"churn", "expansion"}, summary["skipped"]
    return {"root": root, "world": world, "params": params, "path": path, "manifest": run.manifest}


@pytest.fixture(scope="module")
def scored(company: dict) -> actions.ScoreRun:
    return actions.score_accounts(company["params"])


def test_the_lists_cover_every_current_customer_ranked_with_money(scored, company) -> None:
    at_risk = scored.at_risk
    con = load.load(company["params"].data)
    active = con.execute(
        "SELECT count(DISTINCT account_id) FROM subscriptions WHERE start_at <= ? AND "
        "(end_at IS NULL OR end_at > ?)",
        [scored.as_of, scored.as_of],
    ).fetchall()[0][0]
    assert len(at_risk) == active and at_risk["account_id"].is_unique  # no churned accounts
    assert (at_risk["rank"] == np.arange(1, len(at_risk) + 1)).all()
    assert at_risk["revenue_at_risk"].is_monotonic_decreasing
    np.testing.assert_allclose(
        at_risk["revenue_at_risk"], at_risk["churn_probability"] * at_risk["arr"], rtol=1e-12
    )
    mrr = con.execute(
        "SELECT account_id, sum(mrr) FROM subscriptions WHERE start_at <= ? AND "
        "(end_at IS NULL OR end_at > ?) GROUP BY 1",
        [scored.as_of, scored.as_of],
    ).df()
    by_id = dict(zip(mrr.iloc[:, 0], mrr.iloc[:, 1], strict=True))
    np.testing.assert_allclose(at_risk["arr"], [12 * by_id[a] for a in at_risk["account_id"]])
    bands = ScoreParams().risk_bands
    p = at_risk["churn_probability"]
    assert (at_risk.loc[p >= bands["high"], "risk_band"] == "high").all()
    assert (at_risk.loc[p < bands["medium"], "risk_band"] == "low").all()
    for frame in (at_risk, scored.expansion, scored.audiences):
        assert (frame["as_of"] == pd.Timestamp(scored.as_of)).all()
        assert frame["model_version"].str.fullmatch(r"\d+").all() and frame["model"].notna().all()
    exp = scored.expansion
    assert exp["expected_expansion_value"].is_monotonic_decreasing
    assert (exp["churn_probability"] <= ScoreParams().expansion_max_churn).all()
    assert set(exp["offer"]) <= {"upsell", "cross_sell", "seats"}
    assert (exp["expected_amount"] >= 0).all()
    for name in ("at_risk", "expansion", "audiences"):
        back = pd.read_parquet(scored.folder / f"{name}.parquet")
        assert len(back) == len(getattr(scored, name))
        assert (scored.folder / f"{name}.csv").is_file()


def test_reasons_sum_to_the_probability_and_every_driver_group_has_its_play(scored, company):
    bundle, _ = pipeline.champion_bundle(company["params"], "churn")
    rows, *_ = _rows(company, scored.as_of)
    contrib = explain.contributions(bundle, rows)
    points, p, p0 = explain.probability_points(bundle, contrib)
    np.testing.assert_allclose(100 * p0 + points.sum(axis=1), 100 * p, atol=1e-9)
    at_risk = scored.at_risk.set_index("account_id")
    mine = pd.Series(p, index=rows["account_id"].to_numpy())
    np.testing.assert_allclose(at_risk.loc[mine.index, "churn_probability"], mine, rtol=1e-12)
    # Each driver group maps to its play, and low seat use to the adoption workshop.
    params = ScoreParams()
    groups = list(DEFAULT_PLAYS)
    reasons = pd.DataFrame(
        {
            "reason_1_group": [*groups, "engagement", "support"],
            "reason_1_points": [5.0] * len(groups) + [4.0, -1.0],
            "reason_1_feature": ["x"] * len(groups) + ["seat_utilisation_30d", "x"],
        }
    )
    seat = next(f for f in bundle.features if f.measure == "seat_utilisation")
    reasons.loc[len(groups), "reason_1_feature"] = seat.name
    got = score.plays(reasons, bundle, params)
    assert list(got["play"][: len(groups)]) == [DEFAULT_PLAYS[g] for g in groups]
    assert got["play"].iloc[len(groups)] == params.seat_play
    assert pd.isna(got["play"].iloc[-1])  # nothing raises the risk: no play
    # On orders-only data a commercial reason is the purchase pattern, not billing.
    orders = copy.copy(bundle)
    orders.info = {**bundle.info, "dataset": {**bundle.info["dataset"], "mode": "orders"}}
    got = score.plays(reasons, orders, params)
    want = [params.purchase_play if g == "commercial" else DEFAULT_PLAYS[g] for g in groups]
    assert list(got["play"][: len(groups)]) == want and params.purchase_play == "win-back offer"
    top = scored.at_risk.iloc[0]
    assert top["reason_1"].endswith("points of churn risk") and top["reason_1_points"] > 0


def test_audiences_fit_the_budget_with_holdouts_that_cost_nothing(scored) -> None:
    au = scored.audiences
    assert au.loc[~au["holdout"], "cost"].sum() <= ScoreParams().budget
    assert (au.loc[au["holdout"], "cost"] == 0).all()
    assert au.groupby("account_id")["campaign"].nunique().max() == 1
    assert set(scored.audience_summary["campaign"]) <= {c.name for c in ScoreParams().campaigns}


def _rows(company: dict, as_of: dt.datetime):
    con = load.load(company["params"].data)
    bundles = {t: pipeline.champion_bundle(company["params"], t)[0] for t in ("churn",)}
    return actions._scoring_rows(con, company["params"], as_of, bundles)


def test_scored_rows_are_the_training_rows_of_the_same_cutoff(scored, company) -> None:
    frame, manifest = dataset.read(company["params"].dataset.out)
    cutoff = pd.Timestamp(manifest.cutoffs[-3])
    rows, *_ = _rows(company, cutoff.to_pydatetime())
    train_rows = frame[frame["cutoff"] == cutoff].set_index("account_id")
    names = manifest.feature_names
    got = rows.set_index("account_id")[names]
    assert set(got.index) == set(train_rows.index)
    pd.testing.assert_frame_equal(got.sort_index(), train_rows.loc[got.index, names].sort_index())


def test_data_at_or_after_the_as_of_changes_nothing(company, tmp_path) -> None:
    as_of = pd.Timestamp(company["manifest"].cutoffs[-3])
    mutated = tmp_path / "world"
    shutil.copytree(company["world"], mutated, symlinks=False)
    moved = {
        "events": ["occurred_at"],
        "orders": ["ordered_at"],
        "tickets": ["opened_at", "closed_at"],
    }
    for name, cols in moved.items():
        f = mutated / f"{name}.parquet"
        t = pd.read_parquet(f)
        later = t[cols[0]] >= as_of
        keep = ~later | (np.arange(len(t)) % 2 == 0)  # delete half of what comes later
        t, later = t[keep].copy(), later[keep]
        for c in cols:  # and move the rest
            t.loc[later, c] = t.loc[later, c] + pd.Timedelta(hours=7)
        t.to_parquet(f, index=False)
    params = company["params"].model_copy(
        update={"data": company["params"].data.model_copy(update={"source": str(mutated)})}
    )
    base, *_ = _rows(company, as_of.to_pydatetime())
    con = load.load(params.data)
    bundles = {"churn": pipeline.champion_bundle(params, "churn")[0]}
    after, *_ = actions._scoring_rows(con, params, as_of.to_pydatetime(), bundles)
    pd.testing.assert_frame_equal(base, after)


def test_a_signature_mismatch_is_refused_naming_the_features(company) -> None:
    bundle, _ = pipeline.champion_bundle(company["params"], "churn")
    rows, *_ = _rows(company, pd.Timestamp(company["manifest"].cutoffs[-1]).to_pydatetime())
    first, second = bundle.feature_names[:2]
    broken = rows.drop(columns=[first]).assign(brand_new_feature=1.0)
    broken[second] = broken[second].astype("category")
    with pytest.raises(score.ScoreError) as err:
        score.check_signature(bundle, broken)
    msg = str(err.value)
    assert f"missing: {first}" in msg and "extra: brand_new_feature" in msg
    assert f"mistyped: {second} (category, model: float64)" in msg and "retrain" in msg


def test_a_look_back_with_a_model_fitted_on_later_outcomes_says_so(company, scored) -> None:
    # At the data end the champion's fitting (training and validation label windows) is in
    # the past: no note. Three months earlier its validation labels are still ahead.
    assert not any("fitted on outcomes" in n for n in scored.notes)
    bundle, _ = pipeline.champion_bundle(company["params"], "churn")
    valid = pd.Timestamp(bundle.info["valid_cutoff"])
    seen = valid + pd.Timedelta(days=bundle.info["horizon_days"])
    early = actions.score_accounts(company["params"], as_of=valid.to_pydatetime(), budget=None)
    notes = [n for n in early.notes if "fitted on outcomes" in n]
    assert len(notes) == 2, early.notes  # both models
    name = bundle.info["registry"]["name"]
    assert notes[0].startswith(
        f"{name} v{bundle.info['registry']['version']} was fitted on outcomes up to "
        f"{seen:%Y-%m-%d} (validation cutoff {valid:%Y-%m-%d} plus 90 days), after this as-of "
        f"date {valid:%Y-%m-%d}: "
    ), notes[0]
    assert "data.as_of" in notes[0]
    meta = json.loads((early.folder / "run.json").read_text())
    assert notes[0] in meta["notes"]  # the report shows run.json's notes


def test_a_top_band_holding_most_accounts_says_so_with_thresholds_from_the_data(
    company, scored
) -> None:
    # The default bands single out the riskiest accounts here: no note.
    assert not any("risk band" in n for n in scored.notes), scored.notes
    p = scored.at_risk["churn_probability"].to_numpy()
    low = float(np.quantile(p, 0.2))  # a top threshold 80% of the accounts reach
    params = company["params"]
    params = params.model_copy(
        update={"score": params.score.model_copy(update={"risk_bands": {"high": low}})}
    )
    run = actions.score_accounts(params, budget=None)
    notes = [n for n in run.notes if "risk band" in n]
    assert len(notes) == 1, run.notes
    share = float(np.mean(p >= low))
    assert notes[0].startswith(
        f"{share:.0%} of the {len(p):,} scored accounts are in the 'high' risk band (churn "
        f"probability >= {low:g}): "
    ), notes[0]
    top10 = round(float(np.quantile(p, 0.9)), 2)
    assert notes[0].endswith(f"set score.risk_bands: {{high: {top10:.2f}}}"), notes[0]
    meta = json.loads((run.folder / "run.json").read_text())
    assert notes[0] in meta["notes"]
    # the suggestion, applied, bands about a tenth of the accounts as high and gives no note
    again = params.model_copy(
        update={"score": params.score.model_copy(update={"risk_bands": {"high": top10}})}
    )
    rerun = actions.score_accounts(again, budget=None)
    assert not any("risk band" in n for n in rerun.notes), rerun.notes
    assert 0.05 <= (rerun.at_risk["risk_band"] == "high").mean() <= 0.15


def test_band_note_suggests_one_threshold_per_band_from_the_top() -> None:
    p = np.linspace(0.0, 1.0, 101)  # quantiles are the probabilities themselves
    note = score.band_note(p, {"high": 0.3, "medium": 0.1})
    assert note is not None and note.startswith("70% of the 101 scored accounts")
    assert note.endswith("set score.risk_bands: {high: 0.90, medium: 0.70}"), note
    assert score.band_note(p, {"high": 0.6, "medium": 0.1}) is None  # 40% in the top band
    assert score.band_note(p[:10], {"high": 0.0}) is None  # too few accounts to say
    assert score.band_note(p, {}) is None
    # a book where nearly everyone churns (98-100%): two decimals would give high: 0.99,
    # medium: 0.99; enough digits keep the bands apart and their shares near 10% and 30%
    tight = 0.98 + 0.02 * np.linspace(0.0, 1.0, 1001) ** 3
    note = score.band_note(tight, {"high": 0.35, "medium": 0.15})
    assert note is not None and note.startswith("100% of the 1,001 scored accounts")
    got = note.split("set score.risk_bands: {")[1].rstrip("}")
    values = dict(part.split(": ") for part in got.split(", "))
    high, medium = float(values["high"]), float(values["medium"])
    assert high > medium and len(values["high"].split(".")[1]) > 2, got
    assert np.mean(tight >= high) == pytest.approx(0.1, abs=0.02)
    assert np.mean(tight >= medium) == pytest.approx(0.3, abs=0.02)


def test_the_cli_says_why_the_expansion_list_is_empty(company) -> None:
    raw = yaml.safe_load(company["path"].read_text())
    out = str(company["root"] / "actions_no_expansion")  # the other tests' lists stay as they are
    raw["score"] = {**raw["score"], "expansion_max_churn": 0.0, "out": out}  # nobody is that safe
    path = company["root"] / "params_no_expansion.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["score", "--params", str(path)], terminal_width=100)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "expansion list: empty (see the note below)" in text
    assert "no expansion model" not in text
    assert "note: the expansion list is empty: all " in text
    assert "above score.expansion_max_churn = 0 (accounts" in text


def test_an_empty_expansion_list_says_why() -> None:
    at_risk = pd.DataFrame({"account_id": ["a", "b"], "churn_probability": [0.97, 0.99]})
    empty = pd.DataFrame(columns=["account_id", "expected_expansion_value"])
    note = score.expansion_note(empty, at_risk, ScoreParams())
    assert note == (
        "the expansion list is empty: all 2 scored accounts have a churn probability above "
        "score.expansion_max_churn = 0.35 (accounts likely to leave are not offered more); "
        "raise it to list them anyway"
    )
    assert score.expansion_note(None, at_risk, ScoreParams()) is None  # no model: said elsewhere
    assert score.expansion_note(at_risk, at_risk, ScoreParams()) is None


def test_scoring_with_another_version_and_the_cli(company) -> None:
    # A second training run of churn only: version 2 becomes champion; score with v1 too.
    params = company["params"]
    only_churn = params.model_copy(
        update={"train": params.train.model_copy(update={"tasks": ("churn",)})}
    )
    pipeline.train_models(only_churn, log_kpis=False)
    old = actions.score_accounts(params, versions={"churn": "1"}, budget=None)
    new = actions.score_accounts(params)
    assert (old.at_risk["model_version"] == "1").all() and (
        new.at_risk["model_version"] == "2"
    ).all()
    result = CliRunner().invoke(
        app,
        [
            "score",
            "--params",
            str(company["path"]),
            "--model-version",
            "churn=1",
            "--top",
            "3",
            "--budget",
            "5000",
        ],  # fmt: skip
        terminal_width=100,
    )
    assert result.exit_code == 0, result.output
    assert "Top 3 at-risk accounts" in result.output and "Campaign audiences" in result.output
    assert "churnlab-churn v1" in result.output and "…" not in result.output
    bad = CliRunner().invoke(
        app, ["score", "--params", str(company["path"]), "--model-version", "churn=99"]
    )
    assert bad.exit_code == 1 and "has no version 99" in bad.output
    late = CliRunner().invoke(
        app, ["score", "--params", str(company["path"]), "--as-of", "2031-01-01"]
    )
    assert late.exit_code == 1 and "is after the data end" in late.output


def _lists(n: int, as_of: dt.datetime) -> dict[str, pd.DataFrame]:
    base = pd.DataFrame({"as_of": pd.Timestamp(as_of), "account_id": [f"a{i}" for i in range(n)]})
    return {
        "at_risk": base.assign(churn_probability=0.5, arr=100.0),
        "expansion": base.assign(expansion_probability=0.2),
        "audiences": base.assign(campaign="c", holdout=False, cost=1.0),
    }


def _counts(con, as_of=None) -> dict[str, int]:
    return {
        t: con.execute(f"SELECT count(*) FROM churnlab_{t}").fetchall()[0][0] for t in sinks.TABLES
    }


def test_duckdb_sink_replaces_an_as_of_and_survives_a_failed_write(tmp_path, monkeypatch) -> None:
    target = str(tmp_path / "crm.duckdb")
    d1, d2 = dt.datetime(2025, 1, 1), dt.datetime(2025, 2, 1)
    sinks.write_database(_lists(3, d1), target, d1)
    sinks.write_database(_lists(4, d1), target, d1)  # the same as-of again: replaced
    sinks.write_database(_lists(2, d2), target, d2)
    with duckdb.connect(target) as con:
        assert _counts(con) == {"at_risk": 6, "expansion": 6, "audiences": 6}
    real = sinks.pd.DataFrame.to_sql

    class Boom(RuntimeError):
        pass

    original_execute = duckdb.DuckDBPyConnection.execute

    def failing(self, query, *a, **kw):  # fail while inserting the third table
        if "INSERT INTO churnlab_audiences" in str(query):
            raise Boom("disk full")
        return original_execute(self, query, *a, **kw)

    monkeypatch.setattr(duckdb.DuckDBPyConnection, "execute", failing)
    with pytest.raises(sinks.SinkError, match="disk full"):
        sinks.write_database(_lists(9, d1), target, d1)
    monkeypatch.setattr(duckdb.DuckDBPyConnection, "execute", original_execute)
    with duckdb.connect(target) as con:
        assert _counts(con) == {"at_risk": 6, "expansion": 6, "audiences": 6}
    del real


def test_files_of_an_as_of_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch) -> None:
    d1 = dt.datetime(2025, 1, 1)
    folder = sinks.write_files(_lists(3, d1), tmp_path, d1)
    original = pd.DataFrame.to_parquet

    def failing(self, path, *a, **kw):
        if "audiences" in str(path):
            raise OSError("disk full")
        return original(self, path, *a, **kw)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", failing)
    with pytest.raises(OSError):
        sinks.write_files(_lists(7, d1), tmp_path, d1)
    monkeypatch.setattr(pd.DataFrame, "to_parquet", original)
    assert len(pd.read_parquet(folder / "at_risk.parquet")) == 3


@pytest.mark.postgres
def test_postgres_sink_replaces_an_as_of_and_survives_a_failed_write(
    postgres_server: str, monkeypatch
) -> None:
    url = sa.engine.make_url(postgres_server)
    name = "t_sink"
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    target = url.set(database=name).render_as_string(hide_password=False)
    d1, d2 = dt.datetime(2025, 1, 1), dt.datetime(2025, 2, 1)
    sinks.write_database(_lists(3, d1), target, d1)
    sinks.write_database(_lists(4, d1), target, d1)
    sinks.write_database(_lists(2, d2), target, d2)
    engine = sa.create_engine(target)

    def counts() -> dict[str, int]:
        with engine.connect() as conn:
            return {
                t: conn.execute(sa.text(f"SELECT count(*) FROM churnlab_{t}")).scalar_one()
                for t in sinks.TABLES
            }

    assert counts() == {"at_risk": 6, "expansion": 6, "audiences": 6}
    original = pd.DataFrame.to_sql

    def failing(self, table, *a, **kw):
        if table == "churnlab_audiences":
            raise OSError("connection lost")
        return original(self, table, *a, **kw)

    monkeypatch.setattr(pd.DataFrame, "to_sql", failing)
    with pytest.raises(sinks.SinkError, match="connection lost"):
        sinks.write_database(_lists(9, d1), target, d1)
    monkeypatch.setattr(pd.DataFrame, "to_sql", original)
    assert counts() == {"at_risk": 6, "expansion": 6, "audiences": 6}
    engine.dispose()


def test_params_campaigns_build_the_audience_campaigns() -> None:
    campaigns = actions._campaigns(Params().score)
    assert [c.kind for c in campaigns] == ["retention", "retention", "upsell", "advocacy"]
    assert dataclasses.replace(campaigns[0]).name == "csm-save-call"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_with_the_same_probabilities_as_score(company, scored) -> None:
    import json
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    from churnlab.bundle import model_input

    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "churnlab",
            "serve",
            "--port",
            str(port),
            "--params",
            str(company["path"]),
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in __import__("os").environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=1)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                time.sleep(0.5)
        else:
            pytest.fail("the model server did not start within 60 s")
        bundle, _ = pipeline.champion_bundle(company["params"], "churn")
        rows, *_ = _rows(company, scored.as_of)
        sample = rows.head(25)
        frame = model_input(bundle, sample)

        def post(x: pd.DataFrame) -> tuple[int, dict]:
            body = {"dataframe_split": json.loads(x.to_json(orient="split", index=False))}
            req = urllib.request.Request(
                f"{url}/invocations",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read() or b"{}")

        status, answer = post(frame)
        assert status == 200, answer
        got = np.asarray(answer["predictions"], dtype=float)
        want = scored.at_risk.set_index("account_id").loc[
            sample["account_id"].astype(str), "churn_probability"
        ]
        np.testing.assert_allclose(got, want.to_numpy(), rtol=1e-9)
        status, answer = post(frame.drop(columns=[frame.columns[0]]))
        assert 400 <= status < 500 and answer.get("message"), (status, answer)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()

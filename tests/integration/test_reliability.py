"""Nothing silently wrong, nothing left half-done (issue 10): one test per case found.

Each test builds a small world with one fault and checks that it becomes a clear error or a
documented behaviour. The crash-injection tests for every writer are in test_crash_safety.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from churnlab import dataset, kpis, labels, load, pipeline, sources, synth, tracking, validate
from churnlab.bundle import ModelBundle
from churnlab.config import DataParams, DatasetParams, KpiParams, Params, parse_params
from churnlab.load import connect_frames, write_tables
from churnlab.manifest import Manifest
from planted import planted_training_set

SMALL = {"accounts": 300, "months": 15, "seed": 5}
NOW = dt.datetime(2025, 1, 1)
LGB = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 7,
    "n_estimators": 40,
    "verbose": -1,
    "seed": 7,
    "num_threads": 1,
    "min_child_samples": 20,
}


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # a SQLite store puts artifacts beside the working directory
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _params(store: str, tmp_path: Path, **sections: dict) -> Params:
    raw = {
        "train": {
            "lightgbm": LGB,
            "early_stopping_rounds": 10,
            "out": str(tmp_path / "models"),
            "tasks": ["churn"],
        },
        "tracking": {"uri": store, "experiment": "rel", "registry_prefix": "r"},
        "explain": {"sample_for_plots": 200},
    }
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v}
    return parse_params(raw)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    from churnlab.config import SynthParams

    return synth.generate(SynthParams(**SMALL))[0]


# 1 ------------------------------------------------------------------------------------------


def test_1_a_table_running_past_the_others_moves_neither_labels_nor_kpis(world, tmp_path) -> None:
    frames = dict(world)
    end = min(frames["subscriptions"]["start_at"].max(), frames["orders"]["ordered_at"].max())
    late = frames["events"].sample(200, random_state=0).copy()
    late["occurred_at"] = late["occurred_at"] + pd.Timedelta(days=500)
    frames["events"] = pd.concat([frames["events"], late], ignore_index=True)
    folder = tmp_path / "late"
    write_tables(frames, folder)
    as_of = dt.datetime(2030, 1, 1)  # the future check passes; the coverage rule is the subject
    summary = validate.validate_source(DataParams(source=str(folder)), now=as_of)
    assert any(
        w.startswith("events runs to") and "days past" in w and "data.as_of" in w
        for w in summary["warnings"]
    ), summary["warnings"]
    con = load.load(DataParams(source=str(folder)), now=as_of)
    observed = load.data_end(con, DataParams())
    assert observed == (end + pd.Timedelta(days=1)).normalize().to_pydatetime()
    frame, manifest = dataset.build(con, DatasetParams(), DataParams())
    assert max(pd.Timestamp(c) for c in manifest.cutoffs) <= pd.Timestamp(observed)
    for row in manifest.per_cutoff:  # no all-churn cutoff from the rows past the end
        if row["labeled"]:
            assert row["churn_rate"] < 0.5, row
    res = kpis.compute(con, KpiParams(), DataParams())
    assert res["info"]["observed_to"].iloc[0] == pd.Timestamp(observed)


# 2 ------------------------------------------------------------------------------------------


def test_2_a_degenerate_test_cutoff_is_never_promoted(store, tmp_path) -> None:
    frame, manifest, _ = planted_training_set(n_accounts=500, n_cutoffs=10, seed=3)
    test_cutoff = frame.loc[frame["labeled"], "cutoff"].max()
    broken = frame.copy()
    broken.loc[broken["cutoff"] == test_cutoff, "churn"] = 1.0  # an all-churn test cutoff
    params = _params(store, tmp_path)
    out = pipeline.train_frame(params, broken, manifest, log_kpis=False)["tasks"]["churn"]
    assert out["decision"] == "challenger"
    assert (
        out["reason"].startswith("not promoted: the test cutoff") and "one class" in out["reason"]
    )
    client = MlflowClient(store)
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias("r-churn", "champion")
    assert not (tmp_path / "models" / "churn").exists()  # only a champion's bundle is kept
    # A test rate far outside what training saw (most churn, a few stay) is blocked too.
    rng = np.random.default_rng(0)
    tilted = frame.copy()
    rows = tilted["cutoff"] == test_cutoff
    tilted.loc[rows, "churn"] = (rng.random(rows.sum()) < 0.9).astype(float)
    out = pipeline.train_frame(params, tilted, manifest, log_kpis=False)["tasks"]["churn"]
    assert out["decision"] == "challenger" and "far outside the training cutoffs" in out["reason"]


# 3 ------------------------------------------------------------------------------------------


def _subs_world(rows: list[tuple[str, str, str | None, float, str]]) -> dict[str, pd.DataFrame]:
    subs = pd.DataFrame(rows, columns=["account_id", "start_at", "end_at", "mrr", "plan"])
    for c in ("start_at", "end_at"):
        subs[c] = pd.to_datetime(subs[c]).astype("datetime64[us]")
    subs["seats"] = pd.array([None] * len(subs), dtype="Int32")
    accounts = pd.DataFrame({"account_id": sorted(set(subs["account_id"]))})
    accounts["created_at"] = pd.Timestamp("2023-01-01")
    return {"accounts": accounts, "subscriptions": subs}


def test_3_overlapping_rows_of_one_plan_are_an_error_different_plans_are_summed(tmp_path) -> None:
    bad = _subs_world(
        [
            ("a", "2024-01-01", "2024-07-01", 100.0, "pro"),
            ("a", "2024-03-01", None, 100.0, "pro"),  # overlaps the row above
            ("b", "2024-01-01", "2024-02-01", 50.0, "pro"),
            ("b", "2024-02-01", None, 50.0, "pro"),  # touches: a monthly renewal, fine
        ]
    )
    write_tables(bad, tmp_path / "bad")
    with pytest.raises(validate.ValidationFailed) as err:
        validate.validate_source(DataParams(source=str(tmp_path / "bad")), now=NOW)
    (problem,) = err.value.problems
    assert problem.where == "subscriptions.start_at" and problem.rows == 1
    assert "overlapping periods for the same account and plan" in problem.what
    assert problem.examples[0]["account_id"] == "a" and "different plan" in problem.fix
    multi = _subs_world(
        [("a", "2024-01-01", None, 100.0, "core"), ("a", "2024-03-01", None, 30.0, "addon")]
    )
    write_tables(multi, tmp_path / "multi")
    validate.validate_source(DataParams(source=str(tmp_path / "multi")), now=NOW)
    con = load.load(DataParams(source=str(tmp_path / "multi")), now=NOW)
    spine = pd.DataFrame({"account_id": ["a"], "cutoff": [pd.Timestamp("2024-06-01")]})
    y = labels.compute(
        con, spine, DatasetParams(horizon_days=30), "contractual", dt.datetime(2025, 1, 1)
    )
    assert y["mrr"].iloc[0] == 130.0  # both products count


# 4 ------------------------------------------------------------------------------------------


def test_4_day_level_data_ends_at_the_end_of_its_last_day_for_labels_and_kpis() -> None:
    # Monthly billing rows: the last one starts on the last day of the data.
    frames = _subs_world(
        [("a", "2024-01-01", "2024-03-31", 10.0, "p"), ("a", "2024-03-31", None, 10.0, "p")]
    )
    frames["orders"] = pd.DataFrame(
        {
            "account_id": ["a"],
            "ordered_at": pd.to_datetime(["2024-03-31"]).astype("datetime64[us]"),
            "amount": [5.0],
            "kind": ["renewal"],
        }
    )
    con = connect_frames(frames)
    end = load.data_end(con, DataParams())
    assert end == dt.datetime(2024, 4, 1)  # 2024-03-31 is observed to its end
    res = kpis.compute(con, KpiParams(), DataParams())
    assert res["info"]["observed_to"].iloc[0] == pd.Timestamp(end)
    assert not res["monthly"].loc[pd.Timestamp("2024-03-01"), "partial"]  # March complete
    spine = pd.DataFrame({"account_id": ["a"], "cutoff": [pd.Timestamp("2024-03-02")]})
    y = labels.compute(con, spine, DatasetParams(horizon_days=30), "contractual", end)
    assert bool(y["labeled"].iloc[0])  # its window [Mar 2, Apr 1) is inside the observed data


# 5 ------------------------------------------------------------------------------------------


def test_5_a_task_that_cannot_be_trained_is_skipped_the_other_trains(store, tmp_path) -> None:
    frame, manifest, _ = planted_training_set(n_accounts=400, n_cutoffs=10, seed=4)
    frame.loc[frame["labeled"], "expansion"] = 0.0  # no expansion at all
    per_cutoff = tuple(dataset.per_cutoff(frame))
    manifest = dataclasses.replace(manifest, per_cutoff=per_cutoff)
    ddir = dataset.write(frame, manifest, tmp_path / "ds")
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "train": {
                    "lightgbm": LGB,
                    "early_stopping_rounds": 10,
                    "out": str(tmp_path / "m"),
                    "tasks": ["churn", "expansion"],
                },  # fmt: skip
                "tracking": {"uri": store, "experiment": "rel", "registry_prefix": "r"},
                "explain": {"sample_for_plots": 200},
            }
        )
    )
    from churnlab.cli import app

    result = CliRunner().invoke(
        app, ["train", "--params", str(params), "--dataset", str(ddir)], catch_exceptions=False
    )
    assert result.exit_code == 3, result.output
    assert "expansion: skipped: no expansion at all in the data" in result.output
    assert "drop it from train.tasks" in result.output
    assert "registered r-churn v1 as champion" in result.output
    assert (tmp_path / "m" / "churn" / "bundle.json").is_file()
    assert not (tmp_path / "m" / "expansion").exists()
    client = MlflowClient(store)
    assert str(client.get_model_version_by_alias("r-churn", "champion").version) == "1"


# 6 ------------------------------------------------------------------------------------------


def test_6_backtest_folds_that_do_not_fit_are_skipped_with_a_note(tmp_path, store) -> None:
    from churnlab.config import SynthParams

    synth.run(SynthParams(accounts=300, months=5, seed=2), tmp_path / "w")
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "data": {"source": str(tmp_path / "w")},
                "dataset": {
                    "horizon_days": 30,
                    "windows": [7, 30],
                    "out": str(tmp_path / "ds"),
                    "min_positives": 1,
                    "min_negatives": 1,
                },  # fmt: skip
                "train": {"lightgbm": LGB, "early_stopping_rounds": 10, "tasks": ["churn"]},
                "tracking": {"uri": store, "experiment": "rel"},
            }
        )
    )
    from churnlab.cli import app

    built = CliRunner().invoke(app, ["build-dataset", "--params", str(params)])
    assert built.exit_code == 0, built.output
    result = CliRunner().invoke(app, ["backtest", "--folds", "2", "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert "fold 1 (test" in result.output and "skipped" in result.output


# 7 ------------------------------------------------------------------------------------------


def test_7_runs_of_a_killed_process_are_marked_killed(store) -> None:
    code = (
        "import os\n"
        "from churnlab import tracking\n"
        "from churnlab.config import TrackingParams\n"
        f"tracking.configure(TrackingParams(uri={store!r}, experiment='rel'))\n"
        "with tracking.start('doomed') as run_id:\n"
        "    print(run_id, flush=True)\n"
        "    os._exit(137)\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert child.returncode == 137, child.stderr
    run_id = child.stdout.strip()
    client = MlflowClient(store)
    assert client.get_run(run_id).info.status == "RUNNING"  # what MLflow leaves behind
    from churnlab.config import TrackingParams

    tracking.configure(TrackingParams(uri=store, experiment="rel"))  # any next command
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert "ended without closing the run" in run.data.tags["churnlab.killed"]
    assert run.data.tags["churnlab.pid"] != str(os.getpid())


# 8 ------------------------------------------------------------------------------------------


def test_8_models_holds_only_the_champion_and_a_mismatch_is_repaired(store, tmp_path) -> None:
    frame, manifest, _ = planted_training_set(n_accounts=500, n_cutoffs=10, seed=6)
    params = _params(store, tmp_path)
    first = pipeline.train_frame(params, frame, manifest, log_kpis=False)["tasks"]["churn"]
    weak = dataclasses.replace(
        manifest, features=tuple(f for f in manifest.features if f.name == "segment")
    )
    second = pipeline.train_frame(params, frame, weak, log_kpis=False)["tasks"]["churn"]
    assert (first["decision"], second["decision"]) == ("champion", "challenger")
    local = ModelBundle.load(tmp_path / "models" / "churn")
    assert local.info["registry"] == {"name": "r-churn", "version": "1", "run_id": first["run_id"]}
    assert len(local.features) == len(manifest.features)  # not the 1-feature challenger
    # A crash after a bundle was written but before its alias moved: models/ and the registry
    # disagree. Readers trust the registry and repair the folder.
    impostor = dataclasses.replace(weak)
    challenger = pipeline.train_frame(params, frame, impostor, log_kpis=False)
    del challenger
    wrong = ModelBundle.load(tmp_path / "models" / "churn")
    wrong.info["registry"] = {"name": "r-churn", "version": "3", "run_id": "x"}
    pipeline.save_bundles({"churn": wrong}, tmp_path / "models")
    bundle, note = pipeline.champion_bundle(params, "churn")
    assert bundle.info["registry"]["version"] == "1" and note and "refreshed" in note
    assert ModelBundle.load(tmp_path / "models" / "churn").info["registry"]["version"] == "1"
    assert pipeline.champion_bundle(params, "churn")[1] is None  # consistent now


# 10 -----------------------------------------------------------------------------------------


def test_10_a_latin1_csv_names_file_line_and_fix_and_the_setting_reads_it(tmp_path) -> None:
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "accounts.csv").write_bytes(
        "account_id,created_at,name\na1,2024-01-01,Café Müller\n".encode("latin-1")
    )
    (folder / "subscriptions.csv").write_text("account_id,start_at,end_at,mrr\na1,2024-01-01,,10\n")
    with pytest.raises(sources.SourceError) as err:
        load.load(DataParams(source=str(folder)), now=NOW)
    msg = str(err.value)
    assert "accounts.csv is not utf-8 text (line" in msg
    assert "re-save it as UTF-8" in msg and "data.encoding" in msg
    con = load.load(DataParams(source=str(folder), encoding="latin-1"), now=NOW)
    assert con.execute("SELECT name FROM accounts").fetchall() == [("Café Müller",)]
    assert parse_params({"data": {"encoding": "latin1"}}).data.encoding == "latin-1"


# 11 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [40, 80])
def test_11_messages_do_not_depend_on_path_length_or_terminal_width(
    valid_csv_dir: Path, tmp_path: Path, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "with-more-nesting" / "data"
    shutil.copytree(valid_csv_dir, deep)
    monkeypatch.setenv("COLUMNS", str(width))
    from churnlab.cli import app

    result = CliRunner().invoke(
        app, ["validate", str(deep)], terminal_width=width, env={"COLUMNS": str(width)}
    )
    assert result.exit_code == 0, result.output
    assert "The data meets the data contract." in result.output
    assert str(deep) in result.output.replace("\n", "")  # the path is there, whole


# 12 -----------------------------------------------------------------------------------------


def test_12_quoted_iso_dates_in_params_are_dates(tmp_path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(
        "dataset:\n  cutoff_start: \"2020-02-01\"\n  cutoff_end: '2020-06-01'\n"
        'data:\n  as_of: "2020-07-01T12:00:00"\nkpis:\n  date_from: "2020-01-01"\n'
        'synth:\n  start: "2019-01-01"\n'
    )
    from churnlab.config import load_params

    p = load_params(f)
    assert p.dataset.cutoff_start == dt.date(2020, 2, 1)
    assert p.dataset.cutoff_end == dt.date(2020, 6, 1)
    assert p.data.as_of == dt.datetime(2020, 7, 1, 12)
    assert p.kpis.date_from == dt.date(2020, 1, 1) and p.synth.start == dt.date(2019, 1, 1)
    f.write_text('dataset:\n  cutoff_start: "2020-02-31"\n')
    from churnlab.config import ConfigError

    with pytest.raises(ConfigError, match=r"dataset.cutoff_start: not a date: use YYYY-MM-DD"):
        load_params(f)


# 13 -----------------------------------------------------------------------------------------

SECRET = "s3cr3t-Pa55word"


@pytest.mark.postgres
def test_13_a_password_in_the_url_leaves_no_trace(
    postgres_server: str, world, tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    url = sa.engine.make_url(postgres_server)
    dbname = "t_secret_run"
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{dbname}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{dbname}"'))
    admin.dispose()
    plain = url.set(database=dbname)
    engine = sa.create_engine(plain)
    with engine.begin() as conn:
        for name, frame in world.items():
            frame.to_sql(name, conn, index=False)
    engine.dispose()
    # The test server trusts 127.0.0.1, so any password connects: it must not be stored anywhere.
    secret_url = plain.set(password=SECRET).render_as_string(hide_password=False)
    assert SECRET in secret_url
    monkeypatch.setenv("CL_TEST_PASSWORD", SECRET)
    env_url = secret_url.replace(SECRET, "${CL_TEST_PASSWORD}")
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "data": {"source": secret_url},
                "dataset": {"out": str(tmp_path / "ds")},
                "train": {
                    "lightgbm": LGB,
                    "early_stopping_rounds": 10,
                    "tasks": ["churn"],
                    "out": str(tmp_path / "m"),
                },  # fmt: skip
                "tracking": {"uri": store, "experiment": "secret"},
                "explain": {"sample_for_plots": 200},
            }
        )
    )
    from churnlab.cli import app

    outputs = []
    for args in (["validate"], ["build-dataset"], ["train"], ["kpis", "--log"]):
        r = CliRunner().invoke(app, [*args, "--params", str(params)] if args[0] != "validate"
                               else ["validate", "--params", str(params)])  # fmt: skip
        assert r.exit_code == 0, r.output
        outputs.append(r.output)
    # And the ${ENV} form reads the password from the environment.
    params_env = tmp_path / "params_env.yaml"
    params_env.write_text(params.read_text().replace(secret_url, env_url))
    r = CliRunner().invoke(app, ["validate", "--params", str(params_env)])
    assert r.exit_code == 0, r.output
    outputs.append(r.output)
    assert not any(SECRET in o for o in outputs)
    leaks = []
    for path in tmp_path.rglob("*"):
        mine = path.name in ("params.yaml", "params_env.yaml")  # the user's own files
        if path.is_file() and not mine and SECRET.encode() in path.read_bytes():
            leaks.append(str(path.relative_to(tmp_path)))
    assert leaks == [], f"password found in {leaks}"
    manifest = Manifest.read(tmp_path / "ds" / "manifest.json")
    assert "***" in manifest.source and SECRET not in manifest.source
    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=["secret"])
    assert len(runs) >= 2 and "***" in runs["params.data.source"].dropna().iloc[0]

"""Account columns that do not become features are named, with the reason, by build-dataset.

Only numbers and text with at most ``dataset.max_category_levels`` distinct values become
profile features. Before, a date column (a renewal date, a signup date) or an identifier-like
text column was dropped without a word, and a user could not tell why a column they expected to
matter was not in the model. Columns the lists display (``score.account_columns``, such as
``csm``) are left out of the note: they are there for people.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from churnlab import pipeline, synth
from churnlab.config import SynthParams, load_params


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("account_columns")
    synth.run(SynthParams(accounts=300, months=14, seed=5), out=root / "world")
    path = root / "world" / "accounts.parquet"
    accounts = pd.read_parquet(path)
    n = len(accounts)
    accounts["email"] = [f"owner{i}@example.com" for i in range(n)]  # one value per account
    accounts["renewal_date"] = (accounts["created_at"] + pd.Timedelta(days=365)).dt.date
    accounts["csm"] = [f"CSM {i}" for i in range(n)]  # displayed in the lists: not named
    accounts["seats_bought"] = (pd.Series(range(n)) % 7 + 1).astype("int64")  # a feature
    accounts.to_parquet(path)
    return root


def _params(root: Path, engine: str = "duckdb"):
    path = root / f"params_{engine}.yaml"
    raw = {
        "data": {"source": str(root / "world")},
        "dataset": {"out": str(root / f"ds_{engine}"), "engine": engine},
    }
    path.write_text(yaml.safe_dump(raw))
    return load_params(path)


def _check(run) -> None:
    names = {f.name for f in run.manifest.features}
    assert "seats_bought" in names and "segment" in names
    assert not {"email", "renewal_date", "csm"} & names
    notes = [c for c in run.coverage if c.startswith("accounts columns not used as features")]
    assert len(notes) == 1, run.coverage
    note = notes[0]
    assert "email (text with more than dataset.max_category_levels = 50 distinct values" in note
    assert "renewal_date (" in note and "only number and text columns become features" in note
    assert "csm" not in note and "seats_bought" not in note and "segment" not in note


def test_build_dataset_names_the_columns_left_out(world) -> None:
    _check(pipeline.build_dataset(_params(world)))


def test_the_cli_prints_it(world) -> None:
    from typer.testing import CliRunner

    from churnlab.cli import app

    params = world / "params_duckdb.yaml"
    result = CliRunner().invoke(app, ["build-dataset", "--params", str(params)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning: accounts columns not used as features: email (text" in text


def test_no_note_when_every_column_is_used(tmp_path) -> None:
    synth.run(SynthParams(accounts=300, months=14, seed=5), out=tmp_path / "world")
    run = pipeline.build_dataset(_params(tmp_path))
    assert not [c for c in run.coverage if c.startswith("accounts columns")], run.coverage


@pytest.mark.spark
def test_spark_column_types_name_the_same_columns(world, spark) -> None:
    # what build-dataset on Spark does after its build, without the build (about 60 s)
    from churnlab import dataset, spark_dataset, spark_engine

    duck = pipeline.build_dataset(_params(world))
    params = _params(world, "spark")
    tables = spark_engine.read_tables(spark, params.data, params.data.source)
    types = spark_dataset.account_types(tables)
    assert types["renewal_date"] == "date" and types["email"] == "string"
    got = dataset.unused_columns(types, duck.manifest, params)
    assert got == [c for c in duck.coverage if c.startswith("accounts columns not used")]


@pytest.mark.slow
@pytest.mark.spark
def test_spark_names_the_same_columns(world, spark) -> None:
    _check(pipeline.build_dataset(_params(world, "spark")))

"""params.yaml -> frozen typed config: defaults, strictness, messages that name key and file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydantic import ValidationError

from churnlab.config import ConfigError, Params, flatten, load_params, parse_params

REPO = Path(__file__).resolve().parents[2]


def test_repository_params_yaml_loads_and_matches_defaults() -> None:
    p = load_params(REPO / "params.yaml")
    assert p == Params(), "params.yaml and the config defaults have drifted apart"


def test_unknown_key_is_rejected_with_key_and_file(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("dataset:\n  horizon_dayz: 30\n")
    with pytest.raises(ConfigError) as err:
        load_params(f)
    msg = str(err.value)
    assert str(f) in msg and "dataset.horizon_dayz" in msg and "unknown key" in msg


def test_unknown_section_is_rejected(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("trainn: {}\n")
    with pytest.raises(ConfigError, match="trainn: unknown key"):
        load_params(f)


def test_wrong_type_is_rejected_with_value(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("dataset:\n  horizon_days: '90'\n")
    with pytest.raises(ConfigError) as err:
        load_params(f)
    assert "dataset.horizon_days" in str(err.value) and "'90'" in str(err.value)


def test_out_of_range_is_rejected() -> None:
    with pytest.raises(ConfigError, match="synth.accounts"):
        parse_params({"synth": {"accounts": 0}})


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ({"windows": [0, 30]}, r"dataset.windows: .* must be positive .* \(got \[0, 30\]\)"),
        ({"windows": []}, r"dataset.windows: .*\(got \[\]\)"),
        (
            {"cutoff_start": dt.date(2025, 6, 1), "cutoff_end": dt.date(2025, 1, 1)},
            "dataset: cutoff_start 2025-06-01 is after cutoff_end 2025-01-01",
        ),
    ],
)
def test_inconsistent_dataset_settings_are_rejected_up_front(dataset, expected) -> None:
    with pytest.raises(ConfigError, match=expected) as err:
        parse_params({"dataset": dataset}, Path("my.yaml"))
    assert str(err.value).startswith("my.yaml: ") and "Value error" not in str(err.value)


def test_yaml_dates_and_lists_are_accepted() -> None:
    p = parse_params(
        {
            "dataset": {"windows": [14, 28], "cutoff_start": dt.date(2024, 6, 1)},
            "data": {"as_of": dt.date(2025, 1, 1)},
        }
    )
    assert p.dataset.windows == (14, 28)
    assert p.dataset.cutoff_start == dt.date(2024, 6, 1)
    assert p.data.as_of == dt.datetime(2025, 1, 1)


def test_config_is_frozen() -> None:
    p = Params()
    with pytest.raises(ValidationError):
        p.dataset.horizon_days = 30  # type: ignore[misc]


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_invalid_yaml_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(f)


def test_flatten_gives_dotted_keys() -> None:
    flat = flatten(Params())
    assert flat["dataset.horizon_days"] == 90
    assert flat["train.lightgbm.num_leaves"] == 15


def test_long_windows_default_yaml_lists_and_stored_json() -> None:
    from churnlab.config import DatasetParams

    assert DatasetParams().long_windows == {"orders": (180, 365)}
    p = parse_params({"dataset": {"long_windows": {"orders": [365, 120, 365]}}})
    assert p.dataset.long_windows == {"orders": (120, 365)}  # sorted, duplicates dropped
    assert parse_params({"dataset": {"long_windows": {}}}).dataset.long_windows == {}
    # a bundle stores the section as JSON (lists) and scoring validates it back
    stored = p.dataset.model_dump(mode="json")
    assert stored["long_windows"] == {"orders": [120, 365]}
    assert DatasetParams.model_validate(stored) == p.dataset
    assert flatten(p)["dataset.long_windows.orders"] == (120, 365)


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        (
            {"long_windows": {"orders": [60, 400]}},
            r"my.yaml: dataset: long_windows.orders: \[60\] is not longer than the largest of "
            r"dataset.windows \(90 days\): set dataset.long_windows to windows above 90 days",
        ),
        (  # the default long windows against longer windows: the message says what to set
            {"windows": [7, 30, 200]},
            r"long_windows.orders: \[180\] is not longer .* \(200 days\).* e.g. "
            r"\{orders: \[400\]\}",
        ),
        (
            {"long_windows": {"orders": [0, 180]}},
            r"dataset.long_windows: orders: long windows must be positive whole days \(got \[0, ",
        ),
        (
            {"long_windows": {"order": [180]}},
            r"dataset.long_windows: 'order' is not a contract table: long windows apply to orders",
        ),
        (
            {"long_windows": {"events": [180]}},
            r"dataset.long_windows: 'events' has no long-window features",
        ),
        ({"long_windows": {"orders": 180}}, r"dataset.long_windows: orders: give a list of days"),
        ({"long_windows": {"orders": [1.5]}}, r"dataset.long_windows.orders.0: .*\(got 1.5\)"),
        ({"long_windows": {"orders": [True]}}, r"dataset.long_windows.orders.0: .*\(got True\)"),
        ({"long_windows": [180]}, r"dataset.long_windows: .*dictionary"),
    ],
)
def test_bad_long_windows_name_the_key(dataset, expected) -> None:
    with pytest.raises(ConfigError, match=expected) as err:
        parse_params({"dataset": dataset}, Path("my.yaml"))
    assert "Value error" not in str(err.value)


def test_long_window_tables_are_the_tables_with_long_window_specs() -> None:
    from churnlab.config import LONG_WINDOW_TABLES
    from churnlab.feature_specs import FAMILIES, LONG, LONG_PAIRS, SOURCES

    declared = {
        SOURCES[s.source].table
        for f in FAMILIES
        for b in f.blocks
        for s in b.specs
        if s.windows in (LONG, LONG_PAIRS)
    }
    assert declared == set(LONG_WINDOW_TABLES)


def test_dataset_engine_defaults_to_duckdb_and_accepts_spark() -> None:
    assert Params().dataset.engine == "duckdb"
    p = parse_params({"dataset": {"engine": "spark"}, "spark": {"master": "local[4]"}})
    assert p.dataset.engine == "spark" and p.spark.master == "local[4]"
    assert p.spark.conf == {"spark.sql.shuffle.partitions": 8}
    with pytest.raises(ConfigError, match=r"dataset.engine: .*\(got 'polars'\)"):
        parse_params({"dataset": {"engine": "polars"}})


@pytest.mark.parametrize(
    ("key", "value"),
    [("spark.sql.session.timeZone", "Europe/Paris"), ("spark.sql.ansi.enabled", True)],
)
def test_spark_conf_keeps_the_settings_the_definitions_rely_on(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"spark: conf {key} must be"):
        parse_params({"spark": {"conf": {key: value}}})
    # the values they must have anyway are accepted
    fixed = {"spark.sql.session.timeZone": "UTC", "spark.sql.ansi.enabled": False}
    assert parse_params({"spark": {"conf": {key: fixed[key]}}}).spark.conf[key] == fixed[key]

"""validate(): each rule on tiny typed inputs, exact counts and examples, the report format."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from churnlab import load, sources
from churnlab.config import DataParams
from churnlab.errors import ChurnlabError
from churnlab.terminal import report_ok
from churnlab.validate import (
    MAX_EXAMPLES,
    Problem,
    ValidationFailed,
    validate,
    validate_source,
)

NOW = dt.datetime(2026, 1, 1)


def problems_for(
    frames: dict[str, pd.DataFrame], tmp_path: Path, now: dt.datetime = NOW, **data_kw
) -> list[Problem]:
    folder = tmp_path / "src"
    load.write_tables(frames, folder)
    data = DataParams(source=str(folder), **data_kw)
    con = sources.open_source(data)
    try:
        return validate(con, data, now=now)
    finally:
        con.close()


def keys(problems: list[Problem]) -> list[tuple[str, str, int]]:
    return [(p.where, p.what, p.rows) for p in problems]


def test_valid_frames_have_no_problems(
    contract_frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    assert problems_for(contract_frames, tmp_path) == []


def test_refunds_may_be_negative_other_orders_not(
    contract_frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    orders = contract_frames["orders"].copy()
    orders.loc[0, "amount"] = -1.0  # kind 'new'
    orders.loc[1, "kind"] = None
    orders.loc[1, "amount"] = -2.0  # no kind: not a refund either
    frames = {"accounts": contract_frames["accounts"], "orders": orders}
    [problem] = problems_for(frames, tmp_path)
    assert (problem.where, problem.rows) == ("orders.amount", 2)
    assert problem.examples == (
        {"account_id": "a1", "amount": "-1.0", "kind": "new"},
        {"account_id": "a2", "amount": "-2.0", "kind": None},
    )


def test_as_of_setting_wins_over_now_and_end_at_may_be_later(
    contract_frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    # end_at 2025-03-01 is after this as-of: a paid-through date, not an error.
    as_of = dt.datetime(2024, 6, 1)
    found = problems_for(contract_frames, tmp_path, now=dt.datetime(2030, 1, 1), as_of=as_of)
    assert {(p.where, p.rows) for p in found} == {
        ("orders.ordered_at", 1),  # 2024-06-01 08:00
        ("nps.responded_at", 2),
    }
    assert all("after the as-of date 2024-06-01 00:00:00" in p.what for p in found)


def test_now_is_the_default_as_of(contract_frames: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    found = problems_for(contract_frames, tmp_path, now=dt.datetime(2024, 6, 30, 12))
    assert keys(found) == [
        ("nps.responded_at", "timestamps after the as-of date 2024-06-30 12:00:00", 1)
    ]


def test_numeric_ids_match_text_ids(tmp_path: Path) -> None:
    accounts = pd.DataFrame(
        {"account_id": [1, 2], "created_at": pd.to_datetime(["2024-01-01"] * 2)}
    )
    orders = pd.DataFrame(
        {"account_id": ["1", "3"], "ordered_at": pd.to_datetime(["2024-02-01"] * 2), "amount": 1.0}
    )
    found = problems_for({"accounts": accounts, "orders": orders}, tmp_path)
    assert keys(found) == [("orders.account_id", "account ids not found in accounts", 1)]
    assert found[0].examples == ("'3' (1 row)",)


def test_ids_stored_as_decimal_numbers_get_a_hint(tmp_path: Path) -> None:
    # Online Retail II's raw Customer ID is a float: 12346.0 in one table, 12346 in the other
    accounts = pd.DataFrame(
        {"account_id": [12346.0, 12347.0], "created_at": pd.to_datetime(["2024-01-01"] * 2)}
    )
    orders = pd.DataFrame(
        {"account_id": [12346, 12347, 9], "ordered_at": pd.to_datetime(["2024-02-01"] * 3),
         "amount": 1.0}
    )  # fmt: skip
    found = problems_for({"accounts": accounts, "orders": orders}, tmp_path)
    assert keys(found) == [("orders.account_id", "account ids not found in accounts", 3)]
    assert found[0].fix.startswith("2 of these ids match an account once a trailing '.0' is")
    # ids that differ otherwise keep the plain advice
    orders["account_id"] = [5, 6, 9]
    found = problems_for({"accounts": accounts, "orders": orders}, tmp_path)
    assert found[0].fix.startswith("add these accounts to accounts")


def test_counts_are_exact_and_examples_capped(tmp_path: Path) -> None:
    n = 12
    accounts = pd.DataFrame(
        {"account_id": [f"a{i:02d}" for i in range(n)], "created_at": pd.Timestamp("2024-01-01")}
    )
    subs = pd.DataFrame(
        {
            "account_id": accounts["account_id"],
            "start_at": pd.Timestamp("2024-01-01"),
            "end_at": pd.NaT,
            "mrr": -np.arange(1.0, n + 1),
        }
    )
    [problem] = problems_for({"accounts": accounts, "subscriptions": subs}, tmp_path)
    assert problem.rows == n
    assert len(problem.examples) == MAX_EXAMPLES
    assert problem.examples[0] == {"account_id": "a00", "mrr": "-1.0"}


def test_not_finite_and_nested_values(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "accounts.csv").write_text("account_id,created_at\na1,2024-01-01\n")
    (folder / "subscriptions.csv").write_text(
        "account_id,start_at,end_at,mrr\na1,2024-01-01,2024-02-01,nan\na1,2024-02-01,2024-03-01,inf\n"
        "a1,2024-03-01,,1\n"
    )
    events = pd.DataFrame(
        {
            "account_id": ["a1"],
            "occurred_at": [pd.Timestamp("2024-01-02")],
            "event_type": [["login", "click"]],  # a list: cannot hold text values
        }
    )
    load.write_tables({"events": events}, folder)
    data = DataParams(source=str(folder))
    con = sources.open_source(data)
    found = validate(con, data, now=NOW)
    assert [(p.where, p.rows) for p in found] == [
        ("subscriptions.mrr", 2),
        ("events.event_type", 0),
    ]
    assert found[0].what == "values that are not numbers"
    assert "has type VARCHAR[]" in found[1].what


def test_duplicates_count_every_row_sharing_an_id(tmp_path: Path) -> None:
    accounts = pd.DataFrame(
        {"account_id": ["a", "a", "a", "b", "c", "c"], "created_at": pd.Timestamp("2024-01-01")}
    )
    orders = pd.DataFrame(
        {"account_id": ["a"], "ordered_at": [pd.Timestamp("2024-01-02")], "amount": 1.0}
    )
    [problem] = problems_for({"accounts": accounts, "orders": orders}, tmp_path)
    assert (problem.where, problem.what, problem.rows) == (
        "accounts.account_id",
        "duplicate account ids",
        5,
    )
    assert problem.examples == ("'a' (3 rows)", "'c' (2 rows)")


def test_mapped_columns_are_checked_under_their_contract_names(tmp_path: Path) -> None:
    accounts = pd.DataFrame({"cust": ["a1"], "since": [pd.Timestamp("2024-01-01")]})
    nps = pd.DataFrame(
        {"cust": ["a1", "a1"], "when": pd.to_datetime(["2024-02-01"] * 2), "rating": [10.0, 10.5]}
    )
    orders = pd.DataFrame(
        {"cust": ["a1"], "ordered_at": [pd.Timestamp("2024-01-02")], "amount": 1.0}
    )
    mapping = {
        "accounts": {"account_id": "cust", "created_at": "since"},
        "nps": {"account_id": "cust", "responded_at": "when", "score": "rating"},
        "orders": {"account_id": "cust"},
    }
    found = problems_for(
        {"accounts": accounts, "nps": nps, "orders": orders}, tmp_path, columns=mapping
    )
    assert keys(found) == [("nps.score", "score outside 0-10", 1)]
    assert found[0].examples == ({"cust": "a1", "rating": "10.5"},)  # the user's names


def test_hostile_mapping_values_are_reported_not_executed(
    contract_frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    mapping = {"orders": {"amount": 'amount" FROM orders; --'}, "nosuch": {"x": "y"}}
    found = problems_for(contract_frames, tmp_path, columns=mapping)
    assert [p.where for p in found] == ["orders.amount", "nosuch"]
    assert "is not a plain column name" in found[0].what
    assert "not a contract table" in found[1].what


def test_report_format_and_error_type() -> None:
    problems = [
        Problem(
            "nps", "score", "score outside 0-10", 3, ({"account_id": "a", "score": "11"},), "fix it"
        ),
        Problem("accounts", "", "required table missing", fix="add accounts.csv"),
    ]
    err = ValidationFailed(problems, "data/x")
    assert isinstance(err, ChurnlabError)
    assert err.problems == problems
    lines = str(err).splitlines()
    assert lines[0].startswith(
        "the data in data/x does not meet the churnlab data contract: 2 problems"
    )
    assert lines[1] == (
        "  nps.score: score outside 0-10 (3 rows), e.g. rows: "
        "[{'account_id': 'a', 'score': '11'}]; fix: fix it"
    )
    assert lines[2] == "  accounts: required table missing; fix: add accounts.csv"


def test_validate_source_summary_and_rich_report(valid_csv_dir: Path) -> None:
    summary = validate_source(DataParams(source="unused"), str(valid_csv_dir), now=NOW)
    assert summary["as_of"] == "2026-01-01T00:00:00"
    assert summary["kind"] == "folder"
    assert summary["tables"] == {
        "accounts": 3,
        "subscriptions": 4,
        "orders": 3,
        "events": 3,
        "campaign_events": 3,
        "tickets": 2,
        "nps": 2,
        "treatments": 2,
    }
    assert summary["time_range"]["accounts"] == ["2024-01-01T00:00:00", "2024-02-29T22:00:00"]
    console = Console(record=True, width=120)
    report_ok(summary, console)
    text = console.export_text()
    assert "meets the data contract" in text and "campaign_events" in text


def test_zoned_now_is_converted(contract_frames: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    # 01:00 at UTC+2 is 23:00 UTC the day before: the 23:59:59 NPS response is after it.
    berlin = dt.timezone(dt.timedelta(hours=2))
    found = problems_for(
        contract_frames, tmp_path, now=dt.datetime(2024, 7, 1, 1, 0, tzinfo=berlin)
    )
    assert keys(found) == [
        ("nps.responded_at", "timestamps after the as-of date 2024-06-30 23:00:00", 1)
    ]


@pytest.mark.parametrize("table", ["subscriptions", "orders"])
def test_either_revenue_table_is_enough(
    contract_frames: dict[str, pd.DataFrame], tmp_path: Path, table: str
) -> None:
    frames = {"accounts": contract_frames["accounts"], table: contract_frames[table]}
    assert problems_for(frames, tmp_path) == []

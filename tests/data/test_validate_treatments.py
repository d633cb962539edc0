"""validate() on the treatments table: one assignment per account and campaign, the holdout
flag present, no assignment after the as-of date; exact counts, examples and fixes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from churnlab import load, sources
from churnlab.config import DataParams
from churnlab.validate import Problem, validate

NOW = dt.datetime(2026, 1, 1)


def problems_for(
    treatments: pd.DataFrame, tmp_path: Path, now: dt.datetime = NOW, **data_kw
) -> list[Problem]:
    accounts = pd.DataFrame(
        {"account_id": ["a1", "a2", "a3"], "created_at": pd.Timestamp("2024-01-01")}
    )
    subs = pd.DataFrame(
        {
            "account_id": ["a1", "a2", "a3"],
            "start_at": pd.Timestamp("2024-01-01"),
            "end_at": pd.NaT,
            "mrr": 100.0,
        }
    )
    folder = tmp_path / "src"
    load.write_tables(
        {"accounts": accounts, "subscriptions": subs, "treatments": treatments}, folder
    )
    data = DataParams(source=str(folder), **data_kw)
    con = sources.open_source(data)
    try:
        return validate(con, data, now=now)
    finally:
        con.close()


def tr(rows: list[tuple[str, str, str, bool | None]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": [r[0] for r in rows],
            "campaign_id": [r[1] for r in rows],
            "assigned_at": pd.to_datetime([r[2] for r in rows]),
            "holdout": pd.Series([r[3] for r in rows], dtype="boolean"),
        }
    )


def test_valid_assignments_have_no_problems(tmp_path: Path) -> None:
    # The same account in two campaigns, and the same campaign on two days, are fine.
    rows = [
        ("a1", "c1", "2024-04-01", False),
        ("a1", "c2", "2024-04-01", True),
        ("a2", "c1", "2024-04-02", True),
    ]
    assert problems_for(tr(rows), tmp_path) == []


def test_repeated_account_and_campaign_counts_every_row(tmp_path: Path) -> None:
    rows = [
        ("a1", "c1", "2024-04-01", False),
        ("a1", "c1", "2024-04-02", True),  # both arms: a1 is in treated and holdout of c1
        ("a1", "c1", "2024-04-03", False),
        ("a2", "c1", "2024-04-01", False),
        ("a2", "c1", "2024-04-01", False),  # an exact duplicate row
        ("a3", "c1", "2024-04-01", True),
        ("a2", "c2", "2024-04-01", False),
    ]
    [problem] = problems_for(tr(rows), tmp_path)
    assert (problem.where, problem.rows) == ("treatments.campaign_id", 5)
    assert problem.what == (
        "accounts assigned to the same campaign more than once (2 account and campaign pairs)"
    )
    assert problem.examples == (
        "'a1' in 'c1' (3 rows, both held out and contacted)",
        "'a2' in 'c1' (2 rows)",
    )
    assert "one row per account and campaign" in problem.fix
    assert "new campaign_id" in problem.fix


def test_one_repeated_pair_is_singular(tmp_path: Path) -> None:
    rows = [("a1", "c1", "2024-04-01", False), ("a1", "c1", "2024-04-01", False)]
    [problem] = problems_for(tr(rows), tmp_path)
    assert problem.what.endswith("(1 account and campaign pair)")
    assert problem.rows == 2


def test_missing_holdout_flag(tmp_path: Path) -> None:
    rows = [
        ("a1", "c1", "2024-04-01", False),
        ("a2", "c1", "2024-04-01", None),
        ("a3", "c1", "2024-04-01", None),
    ]
    [problem] = problems_for(tr(rows), tmp_path)
    assert (problem.where, problem.rows) == ("treatments.holdout", 2)
    assert problem.what == "missing holdout flag (null): the assignment's arm is unknown"
    assert problem.examples == (
        {"account_id": "a2", "campaign_id": "c1", "assigned_at": "2024-04-01 00:00:00"},
        {"account_id": "a3", "campaign_id": "c1", "assigned_at": "2024-04-01 00:00:00"},
    )
    assert "true for accounts deliberately not contacted" in problem.fix


def test_missing_holdout_column_is_a_missing_required_column(tmp_path: Path) -> None:
    frame = tr([("a1", "c1", "2024-04-01", False)]).drop(columns=["holdout"])
    [problem] = problems_for(frame, tmp_path)
    assert problem.where == "treatments.holdout"
    assert problem.what.startswith("required column missing")


def test_assignment_after_the_as_of(tmp_path: Path) -> None:
    rows = [
        ("a1", "c1", "2025-12-31 23:59:59", False),  # before: fine
        ("a2", "c1", "2026-01-01 00:00:00", False),  # at the as-of: fine (not after it)
        ("a3", "c1", "2026-01-01 00:00:01", True),
    ]
    [problem] = problems_for(tr(rows), tmp_path)
    assert (problem.where, problem.rows) == ("treatments.assigned_at", 1)
    assert problem.what == "assignments after the as-of date 2026-01-01 00:00:00"
    assert problem.examples == ({"account_id": "a3", "assigned_at": "2026-01-01 00:00:01"},)
    assert "treatments.csv" in problem.fix and "data.as_of" in problem.fix


def test_as_of_setting_decides_the_future(tmp_path: Path) -> None:
    rows = [("a1", "c1", "2024-04-01", False), ("a2", "c1", "2024-05-01", True)]
    [problem] = problems_for(tr(rows), tmp_path, as_of=dt.datetime(2024, 4, 15))
    assert (problem.where, problem.rows) == ("treatments.assigned_at", 1)


def test_every_treatment_rule_at_once(tmp_path: Path) -> None:
    rows = [
        ("a1", "c1", "2024-04-01", False),
        ("a1", "c1", "2024-04-01", None),
        ("a2", "c1", "2027-01-01", True),
    ]
    found = problems_for(tr(rows), tmp_path)
    assert sorted((p.where, p.rows) for p in found) == [
        ("treatments.assigned_at", 1),
        ("treatments.campaign_id", 2),
        ("treatments.holdout", 1),
    ]
    assert all(p.fix for p in found)

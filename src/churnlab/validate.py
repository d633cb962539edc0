"""Validation of raw contract tables: every problem at once, all in DuckDB SQL.

:func:`validate` runs over the raw views made by :func:`churnlab.sources.open_source` (schema
``raw``, the user's own column names) and returns one :class:`Problem` per kind of violation:
table, column, what is wrong, how many rows, up to five examples and how to fix it. The checks
follow the data contract of DESIGN.md section 3 and the column definitions in
:mod:`churnlab.schema`:

- the column/table mapping in params.yaml (``data.columns``, ``data.tables``): keys must be
  contract tables and columns, values plain identifiers (user strings are never put into SQL
  unchecked; checked names are quoted);
- required tables (accounts, and subscriptions or orders) and required columns exist, required
  tables are not empty;
- values coerce to the contract type (numbers finite, seats whole numbers, timestamps parseable,
  booleans true/false);
- account ids are present and unique in accounts, and every other table's account ids exist there;
- event timestamps (the ``event_time`` columns of the schema, never ``end_at``) are not after the
  as-of date; ``end_at`` is not before ``start_at`` (``closed_at`` not before ``opened_at``);
- value ranges: mrr, seats >= 0, amount >= 0 unless the order's kind is 'refund', NPS 0-10,
  CSAT 1-5; enumerated columns hold known values only.
- treatments (campaign assignments): one row per account and campaign (every row of a repeated
  pair is counted), the holdout flag present in every row, no assignment after the as-of date.

Each table is checked in one aggregate pass (one ``count(*) FILTER (WHERE ...)`` per check, the
account-id lookup as a hash join against the distinct account ids); example rows are fetched only
for checks that failed. Nothing is done row by row in Python, so tens of millions of events
validate in seconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb

from churnlab.config import DataParams
from churnlab.contract_checks import (
    MAX_EXAMPLES,
    Problem,
    TableResult,
    check_table,
    short,
    usable_column,
)
from churnlab.coverage import coverage_warnings, observed_end
from churnlab.errors import ChurnlabError
from churnlab.schema import REVENUE_TABLES, TABLES
from churnlab.sources import (
    is_identifier,
    mask_password,
    open_source,
    raw_tables,
    raw_types,
    source_kind,
)

__all__ = ["MAX_EXAMPLES", "Problem", "ValidationFailed", "validate", "validate_source"]


class ValidationFailed(ChurnlabError):
    """The data breaks the contract; ``.problems`` holds every problem found."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = list(problems)
        self.source = mask_password(source)
        super().__init__(self._report())

    def _report(self) -> str:
        n = len(self.problems)
        where = f" in {self.source}" if self.source else ""
        head = (
            f"the data{where} does not meet the churnlab data contract: "
            f"{n} problem{'s' if n != 1 else ''} found (fix them and run `churnlab validate` again)"
        )
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


def as_of_for(data: DataParams, now: dt.datetime | None = None) -> dt.datetime:
    """The as-of date for the "timestamp in the future" check, as naive UTC.

    ``data.as_of`` if set, else ``now``, else the current UTC time.
    """
    value = data.as_of or now or dt.datetime.now(dt.UTC)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def validate(
    con: duckdb.DuckDBPyConnection,
    data: DataParams,
    now: dt.datetime | None = None,
    *,
    source: str | None = None,
) -> list[Problem]:
    """Check the raw views of ``con`` against the data contract.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A connection made by :func:`churnlab.sources.open_source` (raw views in schema ``raw``).
    data : DataParams
        The ``data`` section of params.yaml: column mapping (contract column -> user column),
        table mapping, as-of date.
    now : datetime, optional
        The as-of date when ``data.as_of`` is not set (default: the current UTC time).
    source : str, optional
        The source that was opened, when it overrides ``data.source`` (used in messages).

    Returns
    -------
    list of Problem
        Every problem found, empty if the data meets the contract.
    """
    problems, _ = _run(con, data, now, source or data.source)
    return problems


def validate_or_raise(
    con: duckdb.DuckDBPyConnection,
    data: DataParams,
    now: dt.datetime | None = None,
    *,
    source: str | None = None,
) -> None:
    """Run :func:`validate` and raise :class:`ValidationFailed` listing every problem found."""
    problems = validate(con, data, now, source=source)
    if problems:
        raise ValidationFailed(problems, source or data.source)


def validate_source(
    data: DataParams, source: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Open a data source, validate it, and summarise it.

    Parameters
    ----------
    data : DataParams
        The ``data`` section of params.yaml.
    source : str, optional
        A folder, DuckDB file or database URL; overrides ``data.source``.
    now : datetime, optional
        The as-of date when ``data.as_of`` is not set (default: the current UTC time).

    Returns
    -------
    dict
        ``source``, ``kind`` (folder/duckdb/url), ``as_of`` (ISO string, the date used for the
        future-timestamp check), ``tables`` (table -> row count) and ``time_range``
        (table -> [first, last] ISO timestamps of its time column, or None when empty).

    Raises
    ------
    ValidationFailed
        With every problem found.
    """
    source = source or data.source
    con = open_source(data, source)
    try:
        problems, results = _run(con, data, now, source)
    finally:
        con.close()
    if problems:
        raise ValidationFailed(problems, source)
    last = {name: r.last for name, r in results.items()}
    end = data.as_of or observed_end(last)
    return {
        "source": mask_password(source),
        "kind": source_kind(source),
        "data_end": None if end is None else end.isoformat(timespec="seconds"),
        "warnings": coverage_warnings(last, data.coverage_gap_days, data.as_of),
        "as_of": as_of_for(data, now).isoformat(timespec="seconds"),
        "tables": {name: r.rows for name, r in results.items()},
        "time_range": {
            name: [r.first.isoformat(timespec="seconds"), r.last.isoformat(timespec="seconds")]
            if r.first is not None and r.last is not None
            else None
            for name, r in results.items()
        },
    }


def _run(
    con: duckdb.DuckDBPyConnection, data: DataParams, now: dt.datetime | None, source: str
) -> tuple[list[Problem], dict[str, TableResult]]:
    as_of = as_of_for(data, now)
    problems = _mapping_problems(data)
    bad_table_maps = {t for t, u in data.tables.items() if t in TABLES and not is_identifier(u)}
    present = raw_tables(con)
    if "accounts" not in present and "accounts" not in bad_table_maps:
        problems.append(
            Problem(
                "accounts",
                "",
                "required table missing",
                fix=_missing_table_fix(source, data, "accounts"),
            )
        )
    if not any(t in present for t in REVENUE_TABLES):
        problems.append(
            Problem(
                "subscriptions/orders",
                "",
                "no revenue table: at least one of subscriptions and orders is required",
                fix="add subscriptions (contractual revenue) and/or orders (purchases): "
                + "; ".join(_missing_table_fix(source, data, t) for t in REVENUE_TABLES),
            )
        )
    types = {name: raw_types(con, name) for name in present}
    account_key = usable_column(data, "accounts", "account_id", types.get("accounts"))
    results: dict[str, TableResult] = {}
    for name in present:
        results[name] = check_table(con, data, name, types[name], as_of, account_key)
        problems += results[name].problems
    problems += _empty_table_problems(results)
    return problems, results


def _mapping_problems(data: DataParams) -> list[Problem]:
    out = []
    known = ", ".join(TABLES)
    for table, user in data.tables.items():
        if table not in TABLES:
            out.append(
                Problem(
                    table,
                    "",
                    f"data.tables maps {table!r}, which is not a contract table",
                    fix=f"use one of: {known} (the mapping goes contract table -> your table)",
                )
            )
        elif not is_identifier(user):
            out.append(
                Problem(
                    table,
                    "",
                    f"data.tables.{table} = {short(user)!r} is not a plain table name",
                    fix="use letters, digits and underscores only (or create a view with a "
                    "plain name)",
                )
            )
    for table, mapping in data.columns.items():
        if table not in TABLES:
            out.append(
                Problem(
                    table,
                    "",
                    f"data.columns maps {table!r}, which is not a contract table",
                    fix=f"use one of: {known}",
                )
            )
            continue
        contract = TABLES[table]
        for col, user in mapping.items():
            if col not in contract.column_names:
                out.append(
                    Problem(
                        table,
                        col,
                        f"data.columns.{table} maps {col!r}, which is not a contract column "
                        f"of {table}",
                        fix=f"contract columns of {table}: {', '.join(contract.column_names)} "
                        "(the mapping goes contract column -> your column)",
                    )
                )
            elif not is_identifier(user):
                out.append(
                    Problem(
                        table,
                        col,
                        f"data.columns.{table}.{col} = {short(user)!r} is not a plain column name",
                        fix="use letters, digits and underscores only; rename the column in "
                        "your data if it has other characters",
                    )
                )
    return out


def _missing_table_fix(source: str, data: DataParams, table: str) -> str:
    user = data.tables.get(table, table)
    try:
        folder = source_kind(source) == "folder"
    except ChurnlabError:
        folder = False
    if folder:
        return f"add {user}.parquet or {user}.csv to the folder"
    if user != table:
        return f"table {user!r} (data.tables.{table} in params.yaml) was not found; check the name"
    return f"create a table named {table}, or map yours with data.tables.{table} in params.yaml"


def _empty_table_problems(results: dict[str, TableResult]) -> list[Problem]:
    out = []
    fix = "this table is required and needs rows; check the export that produced it"
    if "accounts" in results and results["accounts"].rows == 0:
        out.append(Problem("accounts", "", "required table is empty", fix=fix))
    revenue = [t for t in REVENUE_TABLES if t in results]
    for t in revenue:
        # An empty subscriptions table would switch the pipeline to contractual mode with
        # nobody active; an empty orders table next to subscriptions is harmless.
        if results[t].rows == 0 and (t == "subscriptions" or len(revenue) == 1):
            out.append(
                Problem(
                    t,
                    "",
                    "revenue table is empty",
                    fix=f"fill {t}, or remove it so that the other revenue table is used"
                    if len(revenue) > 1
                    else f"fill {t}: at least one revenue table needs rows",
                )
            )
    return out

"""Validation of raw contract tables: every problem at once, all in DuckDB SQL.

:func:`validate` runs over the raw views made by :func:`churnlab.load.open_source` (schema
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

Each table is checked in one aggregate pass (one ``count(*) FILTER (WHERE ...)`` per check, the
account-id lookup as a hash join against the distinct account ids); example rows are fetched only
for checks that failed. Nothing is done row by row in Python, so tens of millions of events
validate in seconds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import duckdb
from rich.console import Console
from rich.table import Table as RichTable

from churnlab.config import DataParams
from churnlab.errors import ChurnlabError
from churnlab.load import (
    RAW,
    is_identifier,
    open_source,
    quote,
    raw_tables,
    raw_types,
    source_kind,
    timestamp_expr,
)
from churnlab.schema import REVENUE_TABLES, TABLES, Column

MAX_EXAMPLES = 5
_TEXT_MAX = 60
_NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
)
_INTEGER_TYPES = tuple(t for t in _NUMERIC_TYPES if t not in ("FLOAT", "DOUBLE", "DECIMAL"))
_NESTED_MARKERS = ("[", "STRUCT", "MAP", "UNION")


@dataclass(frozen=True)
class Problem:
    """One contract violation.

    Attributes
    ----------
    table : str
        Contract table (or ``"subscriptions/orders"`` when neither revenue table exists).
    column : str
        Contract column, or ``""`` for a table-level problem.
    what : str
        What is wrong.
    rows : int
        How many rows are affected (0 for problems that are not about rows).
    examples : tuple
        Up to five offending rows (dicts of the user's column names to text) or short strings.
    fix : str
        How to fix it.
    """

    table: str
    column: str
    what: str
    rows: int = 0
    examples: tuple[dict[str, Any] | str, ...] = ()
    fix: str = ""

    @property
    def where(self) -> str:
        """``table.column`` (or just ``table``)."""
        return f"{self.table}.{self.column}" if self.column else self.table

    def __str__(self) -> str:
        text = f"{self.where}: {self.what}"
        if self.rows:
            text += f" ({self.rows:,} row{'s' if self.rows != 1 else ''})"
        if self.examples:
            text += f", e.g. rows: {list(self.examples)!r}"
        if self.fix:
            text += f"; fix: {self.fix}"
        return text


class ValidationFailed(ChurnlabError):
    """The data breaks the contract; ``.problems`` holds every problem found."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(self._report())

    def _report(self) -> str:
        n = len(self.problems)
        where = f" in {self.source}" if self.source else ""
        head = (
            f"the data{where} does not meet the churnlab data contract: "
            f"{n} problem{'s' if n != 1 else ''} found (fix them and run `churnlab validate` again)"
        )
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


@dataclass
class _Check:
    column: str
    what: str
    fix: str
    cond: str  # SQL condition over the prepared projection (r_<col>, v_<col>)
    show: tuple[str, ...]  # contract columns to show in example rows
    distinct: str | None = None  # show distinct values of this column with counts instead
    agg: str | None = None  # a cheaper aggregate counting the same rows as ``cond``


@dataclass
class _TableResult:
    problems: list[Problem] = field(default_factory=list)
    rows: int = 0
    first: dt.datetime | None = None
    last: dt.datetime | None = None


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
        A connection made by :func:`churnlab.load.open_source` (raw views in schema ``raw``).
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
    return {
        "source": source,
        "kind": source_kind(source),
        "as_of": as_of_for(data, now).isoformat(timespec="seconds"),
        "tables": {name: r.rows for name, r in results.items()},
        "time_range": {
            name: [r.first.isoformat(timespec="seconds"), r.last.isoformat(timespec="seconds")]
            if r.first is not None and r.last is not None
            else None
            for name, r in results.items()
        },
    }


def report_ok(summary: dict[str, Any], console: Console) -> None:
    """Print the summary of a dataset that passed validation as a rich table."""
    table = RichTable(title=f"{summary['source']}: meets the data contract", title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("first")
    table.add_column("last")
    for name, rows in summary["tables"].items():
        span = summary["time_range"].get(name) or ["", ""]
        table.add_row(name, f"{rows:,}", span[0], span[1])
    console.print(table)
    console.print(f"as-of used for the future-timestamp check: {summary['as_of']}")


def print_problems(err: ValidationFailed, console: Console) -> None:
    """Print a validation report: one block per problem (no markup from the data is rendered)."""
    from rich.text import Text

    head = str(err).splitlines()[0]
    console.print(Text.assemble(("error: ", "bold red"), head), soft_wrap=True)
    for p in err.problems:
        line = Text("  ")
        line.append(p.where, style="bold")
        line.append(f": {p.what}")
        if p.rows:
            line.append(f" ({p.rows:,} row{'s' if p.rows != 1 else ''})")
        if p.examples:
            line.append(f", e.g. rows: {list(p.examples)!r}", style="dim")
        if p.fix:
            line.append("; fix: ", style="green")
            line.append(p.fix)
        console.print(line, soft_wrap=True)


# ---------------------------------------------------------------------------------------------
# the checks


def _run(
    con: duckdb.DuckDBPyConnection, data: DataParams, now: dt.datetime | None, source: str
) -> tuple[list[Problem], dict[str, _TableResult]]:
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
                fix="add subscriptions (contractual revenue) and/or orders (purchases); "
                + _missing_table_fix(source, data, "subscriptions"),
            )
        )
    types = {name: raw_types(con, name) for name in present}
    account_key = _usable_column(data, "accounts", "account_id", types.get("accounts"))
    results: dict[str, _TableResult] = {}
    for name in present:
        results[name] = _check_table(con, data, name, types[name], as_of, account_key)
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
                    f"data.tables.{table} = {_short(user)!r} is not a plain table name",
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
                        f"data.columns.{table}.{col} = {_short(user)!r} is not a plain column name",
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


def _user_column(data: DataParams, table: str, column: str) -> str | None:
    """The user's column for a contract column; None if the mapping is not a plain name."""
    user = data.columns.get(table, {}).get(column, column)
    return user if is_identifier(user) else None


def _usable_column(
    data: DataParams, table: str, column: str, types: dict[str, str] | None
) -> str | None:
    user = _user_column(data, table, column)
    if types is None or user is None or user not in types:
        return None
    return user


def _type_ok(col: Column, raw_type: str) -> bool:
    if any(m in raw_type for m in _NESTED_MARKERS):
        return False
    if col.dtype == "TIMESTAMP":
        return raw_type == "VARCHAR" or raw_type.startswith(("TIMESTAMP", "DATE"))
    if col.dtype in ("DOUBLE", "INTEGER"):
        return raw_type == "VARCHAR" or raw_type.startswith(_NUMERIC_TYPES)
    if col.dtype == "BOOLEAN":
        return raw_type in ("BOOLEAN", "VARCHAR") or raw_type.startswith(_INTEGER_TYPES)
    return True


def _value_expr(col: Column, ref: str, raw_type: str) -> str:
    if col.dtype == "TIMESTAMP":
        return timestamp_expr(ref, try_=True, source_type=raw_type)
    if col.dtype in ("DOUBLE", "INTEGER"):
        # Integers are checked as doubles first so that 2.5 seats is reported, not rounded.
        return f"TRY_CAST({ref} AS DOUBLE)"
    if col.dtype == "BOOLEAN":
        if raw_type.startswith(_INTEGER_TYPES):
            # Only 0 and 1 are booleans; a cast would read any other number as true.
            return f"(CASE WHEN {ref} = 1 THEN true WHEN {ref} = 0 THEN false END)"
        # Text: true/false, t/f, yes/no, y/n, 1/0 (DuckDB's own boolean parsing).
        return f"TRY_CAST({ref} AS BOOLEAN)"
    return f"CAST({ref} AS VARCHAR)"


def _check_table(
    con: duckdb.DuckDBPyConnection,
    data: DataParams,
    name: str,
    types: dict[str, str],
    as_of: dt.datetime,
    account_key: str | None,
) -> _TableResult:
    table = TABLES[name]
    result = _TableResult()
    users: dict[str, str] = {}  # contract column -> user column, for usable columns only
    for col in table.columns:
        user = _user_column(data, name, col.name)
        if user is None:
            continue  # already reported as a mapping problem
        if user not in types:
            if col.required:
                mapped = f" (mapped to {user!r})" if user != col.name else ""
                result.problems.append(
                    Problem(
                        name,
                        col.name,
                        f"required column missing{mapped}; columns found: "
                        f"{', '.join(types) or 'none'}",
                        fix=f"add a column {col.name} ({col.dtype.lower()}), or map your "
                        f"column with data.columns.{name}.{col.name} in params.yaml",
                    )
                )
            continue
        if not _type_ok(col, types[user]):
            result.problems.append(
                Problem(
                    name,
                    col.name,
                    f"column {user!r} has type {types[user]}, which cannot hold {_type_word(col)}",
                    fix=f"store {col.name} as {_type_word(col)}",
                )
            )
            continue
        users[col.name] = user

    select = [f"t.{quote(u)} AS r_{c}" for c, u in users.items()]
    select += [
        f"{_value_expr(table.column(c), f't.{quote(u)}', types[u])} AS v_{c}"
        for c, u in users.items()
    ]
    prepared = f"SELECT {', '.join(select) or '1 AS _one'} FROM {RAW}.{name} AS t"

    # Row checks: one flat aggregate pass (cheap per row: no joins, no string functions).
    checks = _checks(name, users, as_of)
    aggs = ["count(*)"] + [c.agg or f"count(*) FILTER (WHERE {c.cond})" for c in checks]
    time_col = table.time_column
    has_time = time_col is not None and time_col in users
    if has_time:
        aggs += [f"min(v_{time_col})", f"max(v_{time_col})"]
    row = con.execute(f"SELECT {', '.join(aggs)} FROM ({prepared})").fetchall()[0]
    result.rows = int(row[0])
    if has_time:
        result.first, result.last = row[-2], row[-1]
    if "account_id" in users:
        result.problems += _key_problems(con, name, users, account_key, prepared)
    counts = row[1 : 1 + len(checks)]
    for check, n in zip(checks, counts, strict=True):
        if n:
            result.problems.append(
                Problem(
                    name,
                    check.column,
                    check.what,
                    rows=int(n),
                    examples=_examples(con, prepared, check, users),
                    fix=check.fix,
                )
            )
    return result


def _key_problems(
    con: duckdb.DuckDBPyConnection,
    name: str,
    users: dict[str, str],
    account_key: str | None,
    prepared: str,
) -> list[Problem]:
    """Null/blank, unknown and duplicate account ids, from one GROUP BY account_id pass.

    Grouping first turns the per-row work (string trimming, the lookup in accounts) into work
    per distinct id: on 50M events that is the difference between seconds and tens of seconds.
    """
    aid = quote(users["account_id"])
    lookup = name != "accounts" and account_key is not None
    ctes = [
        f"g AS (SELECT CAST({aid} AS VARCHAR) AS k, count(*) AS n FROM {RAW}.{name} GROUP BY 1)"
    ]
    if lookup:
        assert account_key is not None
        key = quote(account_key)
        ctes.append(
            f"acc AS (SELECT DISTINCT CAST({key} AS VARCHAR) AS id FROM {RAW}.accounts "
            f"WHERE {key} IS NOT NULL)"
        )
        ctes.append(
            "h AS (SELECT g.k, g.n, (g.k IS NULL OR trim(g.k) = '') AS blank, "
            "acc.id IS NULL AS unknown FROM g LEFT JOIN acc ON acc.id = g.k)"
        )
    else:
        ctes.append(
            "h AS (SELECT k, n, (k IS NULL OR trim(k) = '') AS blank, false AS unknown FROM g)"
        )
    with_sql = "WITH " + ", ".join(ctes)
    conds = {
        "blank": "blank",
        "unknown": "NOT blank AND unknown",
        "duplicate": "NOT blank AND n > 1" if name == "accounts" else "false",
    }
    sums = ", ".join(f"coalesce(sum(n) FILTER (WHERE {c}), 0)" for c in conds.values())
    blank_n, unknown_n, dup_n = con.execute(f"{with_sql} SELECT {sums} FROM h").fetchall()[0]

    def distinct_examples(cond: str) -> tuple[str, ...]:
        rows = con.execute(
            f"{with_sql} SELECT k, n FROM h WHERE {cond} ORDER BY n DESC, k LIMIT {MAX_EXAMPLES}"
        ).fetchall()
        return tuple(f"{_short(k)!r} ({n:,} row{'s' if n != 1 else ''})" for k, n in rows)

    out = []
    if blank_n:
        check = _Check(
            "account_id",
            "null or empty account id",
            "every row needs an account id"
            + (" (each account exactly once)" if name == "accounts" else ""),
            "r_account_id IS NULL OR trim(v_account_id) = ''",
            tuple(users)[:4],
        )
        out.append(
            Problem(
                name,
                "account_id",
                check.what,
                rows=int(blank_n),
                examples=_examples(con, prepared, check, users),
                fix=check.fix,
            )
        )
    if unknown_n:
        out.append(
            Problem(
                name,
                "account_id",
                "account ids not found in accounts",
                rows=int(unknown_n),
                examples=distinct_examples(conds["unknown"]),
                fix="add these accounts to accounts, or drop their rows (ids must match exactly, "
                "including case and leading zeros)",
            )
        )
    if dup_n:
        out.append(
            Problem(
                name,
                "account_id",
                "duplicate account ids",
                rows=int(dup_n),
                examples=distinct_examples(conds["duplicate"]),
                fix="keep one row per account in accounts (put changing attributes in the "
                "other tables)",
            )
        )
    return out


def _type_word(col: Column) -> str:
    return {
        "TIMESTAMP": "timestamps (text, date or timestamp)",
        "DOUBLE": "numbers",
        "INTEGER": "whole numbers",
        "BOOLEAN": "true/false values",
    }.get(col.dtype, "text")


def _checks(name: str, users: dict[str, str], as_of: dt.datetime) -> list[_Check]:
    """Row-level checks for the flat pass (account-id checks are in :func:`_key_problems`)."""
    table = TABLES[name]
    as_of_sql = f"TIMESTAMP '{as_of.isoformat(sep=' ')}'"
    as_of_text = as_of.isoformat(sep=" ", timespec="seconds")
    checks: list[_Check] = []
    for c in users:
        col = table.column(c)
        r, v = f"r_{c}", f"v_{c}"
        show = ("account_id", c) if c != "account_id" and "account_id" in users else (c,)
        # account_id nulls are checked per distinct id in _key_problems
        if c != "account_id" and not col.nullable:
            checks.append(
                _Check(
                    c,
                    "missing values (null)",
                    f"fill {c} in every row or drop those rows",
                    f"{r} IS NULL",
                    tuple(dict.fromkeys(("account_id", *tuple(users)[:3]))),
                    # count(col) can come from Parquet statistics without reading the column
                    agg=f"count(*) - count({r})",
                )
            )
        if col.dtype == "TIMESTAMP":
            checks.append(
                _Check(
                    c,
                    "unparseable timestamps",
                    "use ISO 8601 (2024-01-31 or 2024-01-31T12:00:00, optionally with a UTC "
                    "offset such as +02:00; times without an offset are read as UTC)",
                    f"{r} IS NOT NULL AND {v} IS NULL",
                    show,
                )
            )
            if col.event_time:
                checks.append(
                    _Check(
                        c,
                        f"timestamps after the as-of date {as_of_text}",
                        "remove rows from the future or correct their time zone; set "
                        "data.as_of in params.yaml if the data's as-of date is later",
                        f"{v} > {as_of_sql}",
                        show,
                    )
                )
        elif col.dtype in ("DOUBLE", "INTEGER"):
            whole = col.dtype == "INTEGER"
            checks.append(
                _Check(
                    c,
                    "values that are not whole numbers" if whole else "values that are not numbers",
                    f"{c} must be a {'whole ' if whole else ''}number (no units, thousands "
                    "separators or text; use . as the decimal point)",
                    f"{r} IS NOT NULL AND ({v} IS NULL OR NOT isfinite({v})"
                    + (f" OR {v} <> floor({v}))" if whole else ")"),
                    show,
                )
            )
        elif col.dtype == "BOOLEAN":
            checks.append(
                _Check(
                    c,
                    "values that are not true/false",
                    f"{c} must be true or false (or 1/0, yes/no)",
                    f"{r} IS NOT NULL AND {v} IS NULL",
                    show,
                )
            )
        if col.enum is not None:
            allowed = ", ".join(col.enum)
            checks.append(
                _Check(
                    c,
                    f"unknown {c} values (allowed: {allowed})",
                    f"map your values onto {allowed} (lower case) or drop those rows",
                    f"{r} IS NOT NULL AND {v} NOT IN ({', '.join(repr(e) for e in col.enum)})",
                    (c,),
                    distinct=c,
                )
            )
    checks += _range_checks(name, users)
    for start, end in (("start_at", "end_at"), ("opened_at", "closed_at")):
        if start in users and end in users:
            checks.append(
                _Check(
                    end,
                    f"{end} before {start}",
                    f"{end} must be on or after {start} (swap them if they were swapped; "
                    f"leave {end} empty if unknown)",
                    f"v_{end} < v_{start}",
                    ("account_id", start, end) if "account_id" in users else (start, end),
                )
            )
    return checks


def _range_checks(name: str, users: dict[str, str]) -> list[_Check]:
    checks = []
    table = TABLES[name]
    for c in users:
        col = table.column(c)
        v = f"v_{c}"
        finite = f"{v} IS NOT NULL AND isfinite({v})"
        show = ("account_id", c) if "account_id" in users else (c,)
        if name == "orders" and c == "amount":
            refund = "'refund'"
            if "kind" in users:
                cond = f"{finite} AND {v} < 0 AND (v_kind IS NULL OR v_kind <> {refund})"
                show = (*show, "kind")
            else:
                cond = f"{finite} AND {v} < 0"
            checks.append(
                _Check(
                    c,
                    "negative amount (only refunds may be negative)",
                    "give refunds kind 'refund' (add a kind column if needed); other orders "
                    "need amount >= 0",
                    cond,
                    show,
                )
            )
            continue
        lo, hi = col.min_value, col.max_value
        if lo is None and hi is None:
            continue
        if lo is not None and hi is not None:
            what = f"{c} outside {lo:g}-{hi:g}"
            cond = f"{finite} AND ({v} < {lo!r} OR {v} > {hi!r})"
            fix = f"{c} must be between {lo:g} and {hi:g}; rescale it or drop those rows"
        elif lo == 0:
            what = f"negative {c}"
            cond = f"{finite} AND {v} < 0"
            fix = f"{c} must be >= 0"
        else:
            what = f"{c} below {lo:g}"
            cond = f"{finite} AND {v} < {lo!r}"
            fix = f"{c} must be >= {lo:g}"
        checks.append(_Check(c, what, fix, cond, show))
    return checks


def _examples(
    con: duckdb.DuckDBPyConnection, prepared: str, check: _Check, users: dict[str, str]
) -> tuple[dict[str, Any] | str, ...]:
    if check.distinct is not None:
        sql = (
            f"WITH p AS ({prepared}) SELECT CAST(r_{check.distinct} AS VARCHAR) AS value, "
            f"count(*) AS n FROM p WHERE {check.cond} GROUP BY 1 ORDER BY n DESC, value "
            f"LIMIT {MAX_EXAMPLES}"
        )
        return tuple(
            f"{_short(value)!r} ({n:,} row{'s' if n != 1 else ''})"
            for value, n in con.execute(sql).fetchall()
        )
    cols = [c for c in dict.fromkeys(check.show) if c in users]
    exprs = ", ".join(f"CAST(r_{c} AS VARCHAR)" for c in cols)
    sql = (
        f"WITH p AS ({prepared}) SELECT {exprs} FROM p WHERE {check.cond} "
        f"ORDER BY ALL LIMIT {MAX_EXAMPLES}"
    )
    return tuple(
        {users[c]: (None if v is None else _short(v)) for c, v in zip(cols, row, strict=True)}
        for row in con.execute(sql).fetchall()
    )


def _empty_table_problems(results: dict[str, _TableResult]) -> list[Problem]:
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


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _TEXT_MAX else text[: _TEXT_MAX - 3] + "..."

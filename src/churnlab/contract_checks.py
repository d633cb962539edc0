"""The per-table contract checks behind :mod:`churnlab.validate`: one aggregate pass per table.

Each table is checked in one aggregate pass (one ``count(*) FILTER (WHERE ...)`` per check, the
account-id lookup as a hash join against the distinct account ids); example rows are fetched only
for checks that failed. Nothing is done row by row in Python.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import duckdb

from churnlab.config import DataParams
from churnlab.schema import TABLES, Column
from churnlab.sources import RAW, is_identifier, quote, timestamp_expr

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


@dataclass
class Check:
    """One row-level check of a table: the SQL condition and how to report it."""

    column: str
    what: str
    fix: str
    cond: str  # SQL condition over the prepared projection (r_<col>, v_<col>)
    show: tuple[str, ...]  # contract columns to show in example rows
    distinct: str | None = None  # show distinct values of this column with counts instead
    agg: str | None = None  # a cheaper aggregate counting the same rows as ``cond``


@dataclass
class TableResult:
    """What checking one table found: problems, rows and the range of its time column."""

    problems: list[Problem] = field(default_factory=list)
    rows: int = 0
    first: dt.datetime | None = None
    last: dt.datetime | None = None


def _user_column(data: DataParams, table: str, column: str) -> str | None:
    """The user's column for a contract column; None if the mapping is not a plain name."""
    user = data.columns.get(table, {}).get(column, column)
    return user if is_identifier(user) else None


def usable_column(
    data: DataParams, table: str, column: str, types: dict[str, str] | None
) -> str | None:
    """The user's column for a contract column, if it exists with a usable type."""
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


def check_table(
    con: duckdb.DuckDBPyConnection,
    data: DataParams,
    name: str,
    types: dict[str, str],
    as_of: dt.datetime,
    account_key: str | None,
) -> TableResult:
    """Check one raw table against its contract in one aggregate pass."""
    table = TABLES[name]
    result = TableResult()
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
    if name == "subscriptions" and {"account_id", "start_at", "end_at"} <= set(users):
        result.problems += _overlap_problems(con, users, prepared)
    if name == "treatments" and {"account_id", "campaign_id"} <= set(users):
        result.problems += _assignment_problems(con, users, prepared)
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


def _overlap_problems(
    con: duckdb.DuckDBPyConnection, users: dict[str, str], prepared: str
) -> list[Problem]:
    """Rows of the same account and plan whose periods overlap (their MRR would be summed twice).

    One pass with a window per (account, plan): a row overlaps when it starts before the latest
    end of the rows that started before it (an open end counts as never). Rows that touch (one
    ends where the next starts, as monthly billing rows do) do not overlap. Rows of different
    plans may run side by side (multi-product accounts): they are summed on purpose.
    """
    plan = "coalesce(v_plan, '')" if "plan" in users else "''"
    sql = f"""
        WITH s AS (
            SELECT v_account_id AS a, {plan} AS p, v_start_at AS st,
                   coalesce(v_end_at, TIMESTAMP 'infinity') AS en, v_start_at AS shown_start,
                   v_end_at AS shown_end
            FROM ({prepared})
            WHERE v_account_id IS NOT NULL AND v_start_at IS NOT NULL
              AND (v_end_at IS NULL OR v_end_at >= v_start_at)),
        w AS (
            SELECT *, max(en) OVER (PARTITION BY a, p ORDER BY st, en
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
            FROM s)
        SELECT a, p, shown_start, shown_end, prev_end FROM w WHERE st < prev_end"""
    n = int(con.execute(f"SELECT count(*) FROM ({sql})").fetchall()[0][0])
    if not n:
        return []
    rows = con.execute(f"{sql} ORDER BY a, p, shown_start LIMIT {MAX_EXAMPLES}").fetchall()
    examples = tuple(
        {
            users["account_id"]: short(a),
            **({users["plan"]: short(p)} if "plan" in users else {}),
            users["start_at"]: str(st),
            users["end_at"]: "open" if en is None else str(en),
            "overlaps a row running to": "open" if pe.year > 9000 else str(pe),
        }
        for a, p, st, en, pe in rows
    )
    return [
        Problem(
            "subscriptions",
            "start_at",
            "overlapping periods for the same account and plan (their MRR and seats would be "
            "counted twice)",
            rows=n,
            examples=examples,
            fix="end each row where the next one of that account and plan starts, or merge "
            "them; give concurrent subscriptions of different products different plan values",
        )
    ]


def _assignment_problems(
    con: duckdb.DuckDBPyConnection, users: dict[str, str], prepared: str
) -> list[Problem]:
    """Accounts assigned to the same campaign more than once (one GROUP BY pass).

    A campaign's effect is treated minus holdout per account; a second row for the same account
    and campaign would count the account twice, or in both arms. Every row sharing a pair is
    counted, as for duplicate account ids.
    """
    sql = f"""
        SELECT CAST(v_account_id AS VARCHAR) AS a, CAST(v_campaign_id AS VARCHAR) AS c,
               count(*) AS n,
               count(DISTINCT v_holdout) AS arms
        FROM ({prepared})
        WHERE v_account_id IS NOT NULL AND v_campaign_id IS NOT NULL
        GROUP BY 1, 2 HAVING count(*) > 1"""
    if "holdout" not in users:
        sql = sql.replace("count(DISTINCT v_holdout)", "0")
    n, pairs = con.execute(f"SELECT coalesce(sum(n), 0), count(*) FROM ({sql})").fetchall()[0]
    if not n:
        return []
    rows = con.execute(f"{sql} ORDER BY n DESC, a, c LIMIT {MAX_EXAMPLES}").fetchall()
    examples = tuple(
        f"{short(a)!r} in {short(c)!r} ({k:,} rows"
        + (", both held out and contacted)" if arms > 1 else ")")
        for a, c, k, arms in rows
    )
    return [
        Problem(
            "treatments",
            "campaign_id",
            f"accounts assigned to the same campaign more than once ({int(pairs):,} account "
            "and campaign pair" + ("s" if pairs != 1 else "") + ")",
            rows=int(n),
            examples=examples,
            fix="keep one row per account and campaign (the first assignment, with its "
            "holdout flag); give a campaign that was re-sent a new campaign_id",
        )
    ]


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
    with_sql, conds = _key_sql(name, users, account_key)
    sums = ", ".join(f"coalesce(sum(n) FILTER (WHERE {c}), 0)" for c in conds.values())
    blank_n, unknown_n, dup_n = con.execute(f"{with_sql} SELECT {sums} FROM h").fetchall()[0]

    def distinct_examples(cond: str) -> tuple[str, ...]:
        rows = con.execute(
            f"{with_sql} SELECT k, n FROM h WHERE {cond} ORDER BY n DESC, k LIMIT {MAX_EXAMPLES}"
        ).fetchall()
        return tuple(f"{short(k)!r} ({n:,} row{'s' if n != 1 else ''})" for k, n in rows)

    out = []
    if blank_n:
        check = Check(
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
        fix = (
            "add these accounts to accounts, or drop their rows (ids must match exactly, "
            "including case and leading zeros)"
        )
        # a common export slip: ids written as decimal numbers (12346.0) in one table
        decimal = r"regexp_replace(%s, '\.0+$', '')"
        matched = con.execute(
            f"""{with_sql}, accn AS (SELECT DISTINCT {decimal % "id"} AS id FROM acc)
            SELECT count(*) FROM h JOIN accn ON accn.id = {decimal % "h.k"}
            WHERE {conds["unknown"]}"""
        ).fetchall()[0][0]
        if matched:
            fix = (
                f"{int(matched):,} of these ids match an account once a trailing '.0' is "
                "dropped: one of the tables stores the ids as decimal numbers (12346.0); store "
                "them as text or whole numbers in both"
            )
        out.append(
            Problem(
                name,
                "account_id",
                "account ids not found in accounts",
                rows=int(unknown_n),
                examples=distinct_examples(conds["unknown"]),
                fix=fix,
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


def _key_sql(
    name: str, users: dict[str, str], account_key: str | None
) -> tuple[str, dict[str, str]]:
    """The WITH clause grouping a table by account id, and the conditions of its three checks."""
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
    return with_sql, conds


def _type_word(col: Column) -> str:
    return {
        "TIMESTAMP": "timestamps (text, date or timestamp)",
        "DOUBLE": "numbers",
        "INTEGER": "whole numbers",
        "BOOLEAN": "true/false values",
    }.get(col.dtype, "text")


def _checks(name: str, users: dict[str, str], as_of: dt.datetime) -> list[Check]:
    """Row-level checks for the flat pass (account-id checks are in :func:`_key_problems`)."""
    table = TABLES[name]
    as_of_sql = f"TIMESTAMP '{as_of.isoformat(sep=' ')}'"
    as_of_text = as_of.isoformat(sep=" ", timespec="seconds")
    checks: list[Check] = []
    for c in users:
        checks += _column_checks(c, table.column(c), users, as_of_sql, as_of_text)
    if name == "treatments":
        checks = [_treatment_wording(check, as_of_text) for check in checks]
    checks += _range_checks(name, users)
    for start, end in (("start_at", "end_at"), ("opened_at", "closed_at")):
        if start in users and end in users:
            checks.append(
                Check(
                    end,
                    f"{end} before {start}",
                    f"{end} must be on or after {start} (swap them if they were swapped; "
                    f"leave {end} empty if unknown)",
                    f"v_{end} < v_{start}",
                    ("account_id", start, end) if "account_id" in users else (start, end),
                )
            )
    return checks


def _treatment_wording(check: Check, as_of_text: str) -> Check:
    """The generic null and future checks, worded for campaign assignments."""
    if check.column == "holdout" and check.what == "missing values (null)":
        check.what = "missing holdout flag (null): the assignment's arm is unknown"
        check.fix = (
            "set holdout to true for accounts deliberately not contacted (the randomised "
            "control) and false for contacted ones; drop assignments whose arm is unknown "
            "(they cannot be measured)"
        )
    elif check.column == "assigned_at" and check.what.startswith("timestamps after"):
        check.what = f"assignments after the as-of date {as_of_text}"
        check.fix = (
            "record an assignment when its audience is sent, not ahead of it (append the "
            "treatments.csv that `churnlab score` writes on the send date); correct the time "
            "zone, or set data.as_of in params.yaml if the data's as-of date is later"
        )
    return check


def _column_checks(
    c: str, col: Column, users: dict[str, str], as_of_sql: str, as_of_text: str
) -> list[Check]:
    """Missing values, types, the as-of date and enumerated values of one column."""
    checks: list[Check] = []
    r, v = f"r_{c}", f"v_{c}"
    show = ("account_id", c) if c != "account_id" and "account_id" in users else (c,)
    # account_id nulls are checked per distinct id in _key_problems
    if c != "account_id" and not col.nullable:
        checks.append(
            Check(
                c,
                "missing values (null)",
                f"fill {c} in every row or drop those rows"
                + (
                    " (an account's first order or subscription start is a fair stand-in)"
                    if c == "created_at"
                    else ""
                ),
                f"{r} IS NULL",
                tuple(dict.fromkeys(("account_id", *tuple(users)[:3]))),
                # count(col) can come from Parquet statistics without reading the column
                agg=f"count(*) - count({r})",
            )
        )
    if col.dtype == "TIMESTAMP":
        checks.append(
            Check(
                c,
                "unparseable timestamps",
                "use ISO 8601 (2024-01-31 or 2024-01-31T12:00:00, optionally with a UTC "
                "offset such as +02:00; times without an offset are read as UTC); dates such "
                "as 01/31/2024, 31.01.2024 or 20240131 are not read: convert them first, e.g. "
                "pandas.to_datetime(column, format='%m/%d/%Y')",
                f"{r} IS NOT NULL AND {v} IS NULL",
                show,
            )
        )
        if col.event_time:
            checks.append(
                Check(
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
            Check(
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
            Check(
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
            Check(
                c,
                f"unknown {c} values (allowed: {allowed})",
                f"map your values onto {allowed} (lower case) or drop those rows",
                f"{r} IS NOT NULL AND {v} NOT IN ({', '.join(repr(e) for e in col.enum)})",
                (c,),
                distinct=c,
            )
        )
    return checks


def _range_checks(name: str, users: dict[str, str]) -> list[Check]:
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
                Check(
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
        checks.append(Check(c, what, fix, cond, show))
    return checks


def _examples(
    con: duckdb.DuckDBPyConnection, prepared: str, check: Check, users: dict[str, str]
) -> tuple[dict[str, Any] | str, ...]:
    if check.distinct is not None:
        sql = (
            f"WITH p AS ({prepared}) SELECT CAST(r_{check.distinct} AS VARCHAR) AS value, "
            f"count(*) AS n FROM p WHERE {check.cond} GROUP BY 1 ORDER BY n DESC, value "
            f"LIMIT {MAX_EXAMPLES}"
        )
        return tuple(
            f"{short(value)!r} ({n:,} row{'s' if n != 1 else ''})"
            for value, n in con.execute(sql).fetchall()
        )
    cols = [c for c in dict.fromkeys(check.show) if c in users]
    exprs = ", ".join(f"CAST(r_{c} AS VARCHAR)" for c in cols)
    sql = (
        f"WITH p AS ({prepared}) SELECT {exprs} FROM p WHERE {check.cond} "
        f"ORDER BY ALL LIMIT {MAX_EXAMPLES}"
    )
    return tuple(
        {users[c]: (None if v is None else short(v)) for c, v in zip(cols, row, strict=True)}
        for row in con.execute(sql).fetchall()
    )


def short(value: Any) -> str:
    """A value as text, cut to a length that fits a message."""
    text = str(value)
    return text if len(text) <= _TEXT_MAX else text[: _TEXT_MAX - 3] + "..."

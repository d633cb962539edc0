"""Import the UCI Online Retail II transactions into contract tables (``accounts``, ``orders``).

Online Retail II (Chen, 2019; UCI Machine Learning Repository #502, CC BY 4.0) holds about one
million invoice lines of a UK online giftware retailer, 2009-12-01 to 2011-12-09. It has purchase
history only, so it exercises the orders-only (non-contractual) path of the pipeline.

Accepted inputs
---------------
- The shared Parquet (``invoice, stock_code, description, quantity, invoice_date, unit_price,
  customer_id, country, source_sheet``).
- The original workbook's column names (``Invoice, StockCode, Description, Quantity, InvoiceDate,
  Price, Customer ID, Country``) in a ``.csv``, ``.parquet`` or ``.xlsx`` file, and the older
  Online Retail names (``InvoiceNo, UnitPrice, CustomerID``). Names are matched ignoring case,
  spaces and underscores. Text dates may be ISO (``2009-12-01 07:45:00``) or spreadsheet style
  (``12/1/2009 7:45``): month first is assumed unless some date only parses day first, so a file
  whose days are all <= 12 is read month first. ``.xlsx`` needs openpyxl (not a churnlab
  dependency); every sheet is read and, because the workbook's two sheets share nine days, each
  sheet keeps only its rows before the first timestamp of the next sheet.

Mapping
-------
Lines are aggregated to invoices with DuckDB SQL.

- **Dropped lines**, each counted in the summary: lines without a customer id (guest checkouts,
  about 22%); bad-debt adjustment lines (invoice prefix ``A``), which are bookkeeping, not customer
  orders, and are dropped even if they carry a customer id (in the real file all six lack one, so
  they are also inside the no-customer count); lines missing an invoice number, date, quantity or
  price.
- **accounts**: one row per customer id left. ``account_id`` is the id as text (``13085``, never
  ``13085.0``); ``created_at`` is the customer's first invoice timestamp (any invoice, including
  cancellations); ``country`` is the country of that first invoice. The first country, not the
  customer's most frequent one, because a static attribute computed over the whole history would
  leak later information into features at earlier cutoffs (13 customers have two countries).
- **orders**: one row per invoice (invoice number and customer). ``ordered_at`` is the invoice's
  earliest line timestamp (65 invoices span two adjacent minutes); ``amount`` is
  ``sum(quantity * unit_price)`` in GBP, rounded to 4 decimals (some prices are 0.001) to remove
  float summation noise. Non-product codes (POST, M, D, DOT, BANK CHARGES, AMAZONFEE, ...) stay in
  the amount: they are real charges or credits on the customer's invoice. Exact duplicate lines
  are kept, as in the published figures: the source cannot tell a double scan from a repeat.
- **kind**: ``refund`` for cancellation invoices (prefix ``C``; the amount stays negative);
  ``new`` for the customer's first purchase (earliest non-cancellation invoice, ties broken by
  invoice number); ``renewal`` for every later purchase: a repeat order, the contract's closest
  kind. Every row has a kind, so filters such as ``kind <> 'refund'`` keep all purchases (a NULL
  kind would silently drop them in SQL). Orders-only labels use order presence and spend, not kind.
- **Zero and wrong-sign invoices** are dropped and counted: a purchase whose amount is <= 0 (6 free
  invoices in the real file; the contract allows negative amounts only for refunds) and a
  cancellation whose amount is >= 0 (none in the real file). Their timestamps still count for
  ``created_at``.
- ``product`` is left out (NULL after loading): an invoice is a basket of many stock codes and any
  single code would be arbitrary.
- **Time**: ``invoice_date`` is UK local time in the source (GMT in winter, BST = UTC+1 in
  summer). It is written unchanged as a naive timestamp, which the contract reads as UTC: at most
  one hour off, immaterial for daily and monthly windows. The data ends 2011-12-09 12:50, so
  ``data.as_of`` can stay unset (the latest timestamp is used) or be set to that date.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from churnlab import load, sources
from churnlab.atomic import atomic_dir
from churnlab.errors import ChurnlabError


class OnlineRetailError(ChurnlabError):
    """The Online Retail input cannot be read or has an unknown layout."""


# Canonical column -> accepted names, normalised (lower case, no spaces/underscores).
_ALIASES: dict[str, tuple[str, ...]] = {
    "invoice": ("invoice", "invoiceno"),
    "quantity": ("quantity",),
    "invoice_date": ("invoicedate",),
    "unit_price": ("unitprice", "price"),
    "customer_id": ("customerid",),
    "country": ("country",),
}
_ORIGINAL_NAMES = {
    "invoice": "Invoice",
    "quantity": "Quantity",
    "invoice_date": "InvoiceDate",
    "unit_price": "Price",
    "customer_id": "Customer ID",
    "country": "Country",
}
# Read as text whatever the sniffer thinks: a 'C' or 'A' prefix may first appear after the
# sniffer's sample, and ids must keep their spelling.
_TEXT_COLUMNS = ("invoice", "customer_id", "country")
_NUMBER_COLUMNS = ("quantity", "unit_price")

STEPS = ("read", "lines", "invoices", "accounts", "write")
"""The named steps reported to the ``progress`` callback of :func:`import_online_retail`."""


def _normalise(name: str) -> str:
    return re.sub(r"[\s_]+", "", str(name)).lower()


def _resolve_columns(columns: list[str], path: Path) -> dict[str, str]:
    """Map canonical names to the file's column names, or raise naming every missing one."""
    by_norm: dict[str, str] = {}
    for col in columns:
        by_norm.setdefault(_normalise(col), col)
    found: dict[str, str] = {}
    missing: list[str] = []
    for canonical, aliases in _ALIASES.items():
        match = next((by_norm[a] for a in aliases if a in by_norm), None)
        if match is None:
            missing.append(f"{canonical} (or {_ORIGINAL_NAMES[canonical]!r})")
        else:
            found[canonical] = match
    if missing:
        raise OnlineRetailError(
            f"{path}: not an Online Retail II layout: missing column(s) {', '.join(missing)}; "
            f"found {', '.join(repr(c) for c in columns) or 'no columns'}. Give the shared "
            "transactions.parquet or the workbook export with its original column names"
        )
    return found


def _file_columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[str]:
    return [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]


def _read_excel(path: Path) -> pd.DataFrame:
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        raise OnlineRetailError(
            f"{path}: reading .xlsx needs the openpyxl package, which is not installed; "
            "install it (pip install openpyxl) or save the workbook's sheets as one CSV file "
            "and import that"
        ) from None
    sheets = pd.read_excel(path, sheet_name=None, dtype=object)
    frames: list[pd.DataFrame] = []
    names = list(sheets)
    for i, name in enumerate(names):
        frame = sheets[name]
        if i + 1 < len(names):
            # The original workbook's sheets overlap (2010-12-01..09): keep the later sheet's copy.
            nxt = sheets[names[i + 1]]
            date_col = _resolve_columns(list(nxt.columns), path)["invoice_date"]
            start = pd.to_datetime(nxt[date_col]).min()
            own = _resolve_columns(list(frame.columns), path)["invoice_date"]
            frame = frame[pd.to_datetime(frame[own]) < start]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _open_lines(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Create the view ``lines`` with canonical names and types from any accepted input."""
    suffix = path.suffix.lower()
    # Relations, not SQL text: the path is never interpolated into SQL.
    if suffix == ".parquet":
        con.read_parquet(str(path)).create_view("src")
    elif suffix in {".csv", ".txt", ".gz"}:
        cols = con.read_csv(str(path), header=True).columns
        mapping = _resolve_columns(cols, path)
        types = {mapping[c]: "VARCHAR" for c in _TEXT_COLUMNS}
        types.update({mapping[c]: "DOUBLE" for c in _NUMBER_COLUMNS})
        con.read_csv(str(path), header=True, dtype=types).create_view("src")
    elif suffix in {".xlsx", ".xlsm"}:
        con.register("_excel", _read_excel(path))
        con.execute("CREATE VIEW src AS SELECT * FROM _excel")
    else:
        raise OnlineRetailError(
            f"{path}: unsupported file type {path.suffix!r}; give a .parquet, .csv or .xlsx file"
        )
    m = {k: sources.quote(v) for k, v in _resolve_columns(_file_columns(con, "src"), path).items()}
    # Ids: text without a float's trailing '.0' (CSV exports of a nullable int column write
    # 13085.0); blanks are missing.
    customer = (
        f"NULLIF(regexp_replace(trim(CAST({m['customer_id']} AS VARCHAR)), '\\.0+$', ''), '')"
    )
    con.execute(
        f"""
        CREATE VIEW lines AS SELECT
            NULLIF(upper(trim(CAST({m["invoice"]} AS VARCHAR))), '') AS invoice,
            CAST({m["quantity"]} AS DOUBLE) AS quantity,
            {_date_expr(con, m["invoice_date"], path)} AS invoice_date,
            CAST({m["unit_price"]} AS DOUBLE) AS unit_price,
            {customer} AS customer_id,
            NULLIF(trim(CAST({m["country"]} AS VARCHAR)), '') AS country
        FROM src
        """
    )


# Text dates that are not ISO: spreadsheet exports write e.g. 12/1/2009 7:45. Month first is
# tried first (Excel's US default, used by the common CSV copies), day first if that fails.
_TEXT_DATE_FORMATS = {
    "month first": ["%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%y %H:%M"],
    "day first": ["%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%y %H:%M"],
}


def _date_expr(con: duckdb.DuckDBPyConnection, col: str, path: Path) -> str:
    """SQL turning the invoice date column into a TIMESTAMP, choosing a text format if needed."""
    types = {sources.quote(r[0]): r[1] for r in con.execute("DESCRIBE src").fetchall()}
    if types[col] != "VARCHAR":
        return f"CAST({col} AS TIMESTAMP)"
    text = f"NULLIF(trim({col}), '')"
    candidates = [f"TRY_CAST({text} AS TIMESTAMP)"] + [
        f"try_strptime({text}, {formats!r})" for formats in _TEXT_DATE_FORMATS.values()
    ]
    failures = _query(
        con,
        "SELECT "
        + ", ".join(
            f"count(*) FILTER (WHERE {text} IS NOT NULL AND {e} IS NULL)" for e in candidates
        )
        + " FROM src",
    )
    for expr, failed in zip(candidates, failures, strict=True):
        if failed == 0:
            return expr
    example = con.execute(
        f"SELECT {col} FROM src WHERE {text} IS NOT NULL AND {candidates[0]} IS NULL LIMIT 1"
    ).fetchone()
    raise OnlineRetailError(
        f"{path}: cannot read invoice dates such as {example[0] if example else None!r}; "
        "write them as YYYY-MM-DD HH:MM[:SS] or MM/DD/YYYY HH:MM"
    )


def _query(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = con.execute(sql).fetchone()
    assert row is not None  # aggregates always return one row
    return row


def import_online_retail(
    path: Path,
    out: Path | None,
    *,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Turn Online Retail II invoice lines into contract tables ``accounts`` and ``orders``.

    See the module docstring for the mapping. Writes ``<out>/accounts.parquet`` and
    ``<out>/orders.parquet`` atomically: the folder is written in full under a temporary name and
    then swapped in, so a failed run leaves an earlier import untouched.

    Parameters
    ----------
    path : Path
        The shared ``transactions.parquet`` or a ``.csv``/``.xlsx``/``.parquet`` with the original
        workbook column names.
    out : Path or None
        Output folder (replaced as a whole). None: build and summarise without writing.
    progress : callable, optional
        Called with each step name of :data:`STEPS` as it completes (the CLI's progress bar).

    Returns
    -------
    dict
        Summary: ``lines_read``, ``lines_dropped_no_customer``, ``share_dropped_no_customer``,
        ``adjustment_lines_dropped``, ``incomplete_lines_dropped``, ``lines_used``, ``customers``,
        ``invoices`` (orders written), ``purchases``, ``refunds``,
        ``invoices_dropped_zero_or_wrong_sign``, ``first_order``, ``last_order`` (ISO strings),
        ``source`` and ``out``.

    Raises
    ------
    OnlineRetailError
        If the file is missing, of an unsupported type, has an unknown layout or unreadable values.
    """
    path = Path(path)
    if not path.is_file():
        raise OnlineRetailError(f"{path}: file not found (give the path to transactions.parquet)")
    step = progress or (lambda _name: None)
    con = duckdb.connect()
    try:
        return _import(con, path, out, step)
    except duckdb.Error as err:
        first = str(err).strip().splitlines()[0]
        raise OnlineRetailError(
            f"{path}: cannot read the invoice lines: {first} (check that dates, quantities and "
            "prices are well-formed)"
        ) from None
    finally:
        con.close()


def _import(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    out: Path | None,
    step: Callable[[str], None],
) -> dict[str, Any]:
    _open_lines(con, path)
    con.execute("CREATE TABLE all_lines AS SELECT * FROM lines")
    step("read")

    lines_read, no_customer, adjustments, incomplete = _query(
        con,
        """
        SELECT
            count(*),
            count(*) FILTER (WHERE customer_id IS NULL),
            count(*) FILTER (WHERE starts_with(invoice, 'A')),
            count(*) FILTER (WHERE customer_id IS NOT NULL AND NOT coalesce(starts_with(invoice,
                'A'), false) AND (invoice IS NULL OR invoice_date IS NULL OR quantity IS NULL
                OR unit_price IS NULL))
        FROM all_lines
        """,
    )
    con.execute(
        """
        CREATE TABLE kept AS SELECT * FROM all_lines
        WHERE customer_id IS NOT NULL AND invoice IS NOT NULL AND NOT starts_with(invoice, 'A')
          AND invoice_date IS NOT NULL AND quantity IS NOT NULL AND unit_price IS NOT NULL
        """
    )
    step("lines")
    orders, wrong_sign = _orders(con)
    step("invoices")
    accounts = _accounts(con, path)
    step("accounts")
    orders = _contract_types(
        orders, {"account_id": "str", "ordered_at": "ts", "amount": "float", "kind": "str"}
    )
    if out is not None:
        _write(out, {"accounts": accounts, "orders": orders})
    step("write")

    purchases = int((orders["kind"] != "refund").sum())
    return {
        "source": str(path),
        "out": None if out is None else str(out),
        "lines_read": int(lines_read),
        "lines_dropped_no_customer": int(no_customer),
        "share_dropped_no_customer": (no_customer / lines_read) if lines_read else 0.0,
        "adjustment_lines_dropped": int(adjustments),
        "incomplete_lines_dropped": int(incomplete),
        "lines_used": int(_query(con, "SELECT count(*) FROM kept")[0]),
        "customers": len(accounts),
        "invoices": len(orders),
        "purchases": purchases,
        "refunds": len(orders) - purchases,
        "invoices_dropped_zero_or_wrong_sign": int(wrong_sign),
        "first_order": None if orders.empty else orders["ordered_at"].min().isoformat(),
        "last_order": None if orders.empty else orders["ordered_at"].max().isoformat(),
    }


def _orders(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, int]:
    """Invoices of the kept lines as orders (cancellations as refunds), and the dropped count."""
    con.execute(
        """
        CREATE TABLE invoices AS
        SELECT
            invoice,
            customer_id AS account_id,
            min(invoice_date) AS ordered_at,
            round(sum(quantity * unit_price), 4) AS amount,
            starts_with(invoice, 'C') AS is_refund
        FROM kept
        GROUP BY invoice, customer_id
        """
    )
    (wrong_sign,) = _query(
        con,
        "SELECT count(*) FROM invoices "
        "WHERE (is_refund AND amount >= 0) OR (NOT is_refund AND amount <= 0)",
    )
    orders = con.execute(
        """
        WITH valid AS (
            SELECT * FROM invoices
            WHERE (is_refund AND amount < 0) OR (NOT is_refund AND amount > 0)
        ), ranked AS (
            SELECT *,
                CASE WHEN NOT is_refund THEN row_number() OVER (
                    PARTITION BY account_id, is_refund ORDER BY ordered_at, invoice) END AS nth
            FROM valid
        )
        SELECT
            account_id,
            CAST(ordered_at AS TIMESTAMP) AS ordered_at,
            amount,
            CASE WHEN is_refund THEN 'refund' WHEN nth = 1 THEN 'new' ELSE 'renewal' END AS kind
        FROM ranked
        ORDER BY ordered_at, account_id, invoice
        """
    ).df()
    return orders, int(wrong_sign)


def _accounts(con: duckdb.DuckDBPyConnection, path: Path) -> pd.DataFrame:
    """One account per customer id: first invoice date and the country of that invoice."""
    accounts = con.execute(
        """
        SELECT
            customer_id AS account_id,
            CAST(min(invoice_date) AS TIMESTAMP) AS created_at,
            arg_min(country, (invoice_date, invoice)) AS country
        FROM kept
        GROUP BY customer_id
        ORDER BY customer_id
        """
    ).df()
    if accounts.empty:
        raise OnlineRetailError(
            f"{path}: no invoice line has a customer id, so there is nothing to import"
        )
    return _contract_types(accounts, {"account_id": "str", "created_at": "ts", "country": "str"})


def _contract_types(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Give the frame the dtypes the loader expects (str ids, datetime64[us], float64)."""
    cast: dict[str, Any] = {}
    for col, kind in kinds.items():
        cast[col] = {"str": "str", "ts": "datetime64[us]", "float": "float64"}[kind]
    return frame.astype(cast)


def _write(out: Path, frames: dict[str, pd.DataFrame]) -> None:
    with atomic_dir(out) as tmp:
        load.write_tables(frames, tmp)


def format_summary(summary: dict[str, Any]) -> list[str]:
    """Human-readable lines for the CLI (and notebooks)."""
    lines = [
        f"read {summary['lines_read']:,} invoice lines from {summary['source']}",
        f"dropped {summary['lines_dropped_no_customer']:,} lines without a customer id "
        f"({summary['share_dropped_no_customer']:.1%} of lines)",
    ]
    if summary["adjustment_lines_dropped"]:
        lines.append(
            f"dropped {summary['adjustment_lines_dropped']:,} bad-debt adjustment lines "
            "(invoice prefix A, not customer orders; counted above if they lack a customer id)"
        )
    if summary["incomplete_lines_dropped"]:
        lines.append(
            f"dropped {summary['incomplete_lines_dropped']:,} lines missing an invoice number, "
            "date, quantity or price"
        )
    if summary["invoices_dropped_zero_or_wrong_sign"]:
        lines.append(
            f"dropped {summary['invoices_dropped_zero_or_wrong_sign']:,} invoices with a zero "
            "or wrong-sign total (free purchases, non-negative cancellations)"
        )
    lines.append(
        f"{summary['customers']:,} accounts, {summary['invoices']:,} orders "
        f"({summary['purchases']:,} purchases, {summary['refunds']:,} refunds), "
        f"{summary['first_order']} to {summary['last_order']}"
    )
    if summary["out"]:
        lines.append(f"wrote accounts.parquet and orders.parquet to {summary['out']}")
        lines.append(
            f"use it with data.source: {summary['out']} and data.as_of: {summary['last_order']} "
            "(the data's own end)"
        )
    return lines

"""Import the CDNOW purchase histories into contract tables (``accounts``, ``orders``).

CDNOW (Fader and Hardie's copy of the CDNOW online music store's records, the standard dataset of
the buy-till-you-die literature: Fader, Hardie and Lee 2005, "Counting your customers the easy
way") holds the purchases, January 1997 to June 1998, of the 23,570 customers whose first-ever
purchase at CDNOW was in the first quarter of 1997: 69,659 transactions. It is published as
``CDNOW_master.txt`` on Bruce Hardie's website and ships inside the ``lifetimes`` package
(``lifetimes/datasets/CDNOW_master.txt``; ``pip download lifetimes --no-deps`` and unzip the
wheel). Like Online Retail II it is purchase history only, so it exercises the orders-only
(non-contractual) path; unlike it, the customers are one acquisition cohort.

The file
--------
One transaction per line, four fields separated by spaces: customer id (``00001``), date
(``19970101``, YYYYMMDD), number of CDs and dollar value (``11.77``). The ``lifetimes`` copy has a
header line (``customer_id date number_of_cds dollar_value``) and Windows line ends; both are
accepted. ``CDNOW_sample.txt``, the published 1/10 sample (2,357 customers), has a fifth field
after the first, the customer's id within the sample (``00004 0001 19970101 2 29.33``); its
accounts keep the master file's id (the first field), so they match the same customers there.
The first transaction line sets which of the two layouts the file has.

Mapping
-------
- **accounts**: one row per customer id, kept as text with its leading zeros (``00001``);
  ``created_at`` is the date of the customer's first transaction (the file has no sign-up date,
  and by construction every customer's first purchase is their first at CDNOW).
- **orders**: one row per transaction line; ``ordered_at`` is its date (midnight UTC: the file has
  no time of day); ``amount`` its dollar value. The 80 transactions of $0.00 (CDs at no charge)
  are kept, as the published BG/NBD analyses of this file count every transaction: they are
  purchases, and they count for the churn label (no order in the horizon). The number of CDs is not
  a contract column and is left out.
- **kind**: ``new`` for each customer's first line (earliest date, then file order) and
  ``renewal`` for every later one, as the Online Retail II importer does, so that filters such as
  ``kind <> 'refund'`` keep every purchase. The file has no refunds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from churnlab import load
from churnlab.atomic import atomic_dir
from churnlab.errors import ChurnlabError


class CdnowError(ChurnlabError):
    """The CDNOW file cannot be read or has lines of another layout."""


_FIELDS = "customer id, date as YYYYMMDD, number of CDs, dollar value"
_AMOUNT = r"(\d+(?:\.\d*)?|\.\d+)"
_LINE = re.compile(r"^(\S+)\s+(\d{8})\s+(\d+)\s+" + _AMOUNT + "$")
_SAMPLE_LINE = re.compile(r"^(\S+)\s+\S+\s+(\d{8})\s+(\d+)\s+" + _AMOUNT + "$")
"""The 1/10 sample's layout: master id, sample id (dropped), date, CDs, dollars."""
_HEADER = re.compile(r"^\s*customer", re.IGNORECASE)
_EXAMPLES = 3


def _lines(n: int) -> str:
    """``1 line has`` / ``3 lines have``: the count of offending lines in a message."""
    return f"{n:,} line has" if n == 1 else f"{n:,} lines have"


def read_transactions(path: Path) -> pd.DataFrame:
    """The transaction lines of a CDNOW file: ``account_id``, ``ordered_at``, ``cds``, ``amount``.

    Raises
    ------
    CdnowError
        If the file is missing, empty, or has lines that are not the CDNOW fields or whose
        date is not a calendar date (the first few offending lines are quoted with their numbers).
    """
    path = Path(path)
    if not path.is_file():
        raise CdnowError(f"{path}: file not found (give the path to CDNOW_master.txt)")
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError as err:
        raise CdnowError(
            f"{path}: byte {err.start} is not plain ASCII text; CDNOW_master.txt is four "
            f"space-separated fields per line ({_FIELDS})"
        ) from None
    rows: list[tuple[str, ...]] = []
    bad: list[tuple[int, str]] = []
    layout: re.Pattern[str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or (number == 1 and _HEADER.match(line)):
            continue
        if layout is None:  # the first transaction line: the master file's or the sample's
            layout = _SAMPLE_LINE if len(line.split()) == 5 else _LINE
        match = layout.match(line)
        if match is None:
            bad.append((number, raw))
        else:
            rows.append(match.groups())
    if bad:
        sample = layout is _SAMPLE_LINE
        fields = "five" if sample else "four"
        names = (
            _FIELDS.replace("customer id", "customer id, id in the sample") if sample else _FIELDS
        )
        shown = "; ".join(f"line {n}: {line.strip()[:60]!r}" for n, line in bad[:_EXAMPLES])
        raise CdnowError(
            f"{path}: {_lines(len(bad))} something other than the {fields} CDNOW fields "
            f"({names}), for example {shown}. Fix or remove those lines; the files from "
            "Bruce Hardie's site or the lifetimes package read as they are"
        )
    if not rows:
        raise CdnowError(f"{path}: no transaction lines ({_FIELDS}, one per line)")
    frame = pd.DataFrame(rows, columns=["account_id", "date", "cds", "amount"])
    dates = pd.to_datetime(frame["date"], format="%Y%m%d", errors="coerce")
    if dates.isna().any():
        wrong = frame.loc[dates.isna(), "date"]
        first = ", ".join(sorted(set(wrong))[:_EXAMPLES])
        raise CdnowError(
            f"{path}: {_lines(len(wrong))} no calendar date as YYYYMMDD (for example "
            f"{first}); fix those lines"
        )
    return pd.DataFrame(
        {
            "account_id": frame["account_id"].astype(str),
            "ordered_at": dates.astype("datetime64[us]"),
            "cds": frame["cds"].astype("int64"),
            "amount": frame["amount"].astype("float64"),
        }
    )


def import_cdnow(path: Path, out: Path | None) -> dict[str, Any]:
    """Turn ``CDNOW_master.txt`` into contract tables ``accounts`` and ``orders``.

    See the module docstring for the mapping. Writes ``<out>/accounts.parquet`` and
    ``<out>/orders.parquet`` as one folder swapped in whole, so a failed run leaves an earlier
    import untouched.

    Parameters
    ----------
    path : Path
        ``CDNOW_master.txt``, or ``CDNOW_sample.txt`` (see the module docstring).
    out : Path or None
        Output folder (replaced as a whole). None: read and summarise without writing.

    Returns
    -------
    dict
        Summary: ``transactions``, ``customers``, ``zero_amount`` (kept), ``cds``,
        ``first_order``, ``last_order`` (ISO dates), ``source`` and ``out``.
    """
    lines = read_transactions(path)
    order = lines.reset_index(names="line").sort_values(
        ["account_id", "ordered_at", "line"], kind="stable"
    )
    first = ~order["account_id"].duplicated()
    orders = pd.DataFrame(
        {
            "account_id": order["account_id"],
            "ordered_at": order["ordered_at"],
            "amount": order["amount"],
            "kind": first.map({True: "new", False: "renewal"}).astype(str),
        }
    ).sort_values(["ordered_at", "account_id"], kind="stable")
    accounts = (
        order.loc[first, ["account_id", "ordered_at"]]
        .rename(columns={"ordered_at": "created_at"})
        .sort_values("account_id")
    )
    if out is not None:
        with atomic_dir(Path(out)) as tmp:
            load.write_tables(
                {
                    "accounts": accounts.reset_index(drop=True),
                    "orders": orders.reset_index(drop=True),
                },
                tmp,
            )
    return {
        "transactions": len(lines),
        "customers": int(accounts["account_id"].nunique()),
        "zero_amount": int((lines["amount"] == 0).sum()),
        "cds": int(lines["cds"].sum()),
        "first_order": lines["ordered_at"].min().date().isoformat(),
        "last_order": lines["ordered_at"].max().date().isoformat(),
        "source": str(path),
        "out": str(out) if out is not None else None,
    }


def format_summary(summary: dict[str, Any]) -> list[str]:
    """Human-readable lines for the CLI (and notebooks)."""
    lines = [
        f"read {summary['transactions']:,} transactions ({summary['cds']:,} CDs) of "
        f"{summary['customers']:,} customers from {summary['source']}, "
        f"{summary['first_order']} to {summary['last_order']}",
    ]
    if summary["zero_amount"]:
        lines.append(
            f"kept {summary['zero_amount']:,} transactions of $0.00 as orders (CDs at no charge "
            "are purchases)"
        )
    if summary["out"]:
        lines.append(f"wrote accounts.parquet and orders.parquet to {summary['out']}")
        lines.append(
            f"use it with data.source: {summary['out']} (the data ends {summary['last_order']}; "
            "data.as_of can stay unset)"
        )
    return lines

"""Online Retail II importer on tiny literal invoice lines: exact accounts and orders."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from churnlab.online_retail import OnlineRetailError, import_online_retail

ORIGINAL_NAMES = {
    "invoice": "Invoice",
    "stock_code": "StockCode",
    "description": "Description",
    "quantity": "Quantity",
    "invoice_date": "InvoiceDate",
    "unit_price": "Price",
    "customer_id": "Customer ID",
    "country": "Country",
}


def _lines() -> pd.DataFrame:
    rows = [
        # invoice, stock_code, quantity, invoice_date, unit_price, customer_id, country
        # Customer 1: first purchase spans two minutes; then a cancellation and a repeat order
        # from another country (country stays the first invoice's).
        ("100", "A1", 2, "2010-01-05 10:00", 1.5, 1, "France"),
        ("100", "POST", 1, "2010-01-05 10:01", 18.0, 1, "France"),
        ("C101", "A1", -1, "2010-01-06 09:00", 1.5, 1, "France"),
        ("102", "A1", 10, "2010-02-01 12:00", 1.25, 1, "Germany"),
        # Customer 2: a cancellation of an older purchase is its first invoice.
        ("C200", "B2", -3, "2010-01-02 08:00", 2.0, 2, "United Kingdom"),
        ("201", "B2", 4, "2010-03-01 08:00", 2.0, 2, "United Kingdom"),
        ("202", "B2", 1, "2010-03-02 08:00", 0.001, 2, "United Kingdom"),
        # Customer 3: only a free invoice (amount 0): an account, but no order.
        ("300", "B2", 5, "2010-01-03 08:00", 0.0, 3, "EIRE"),
        # Guest checkout and a bad-debt adjustment (one with, one without a customer id).
        ("400", "A1", 1, "2010-01-04 08:00", 9.0, None, "United Kingdom"),
        ("A500", "B", 1, "2010-01-04 09:00", -100.0, None, "United Kingdom"),
        ("A501", "B", 1, "2010-01-04 09:00", -100.0, 1, "United Kingdom"),
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            "invoice",
            "stock_code",
            "quantity",
            "invoice_date",
            "unit_price",
            "customer_id",
            "country",
        ],
    )
    frame.insert(2, "description", "item")
    return frame.astype(
        {
            "quantity": "int32",
            "invoice_date": "datetime64[ms]",
            "customer_id": "Int32",
            "unit_price": "float64",
        }
    )


EXPECTED_ACCOUNTS = pd.DataFrame(
    {
        "account_id": ["1", "2", "3"],
        "created_at": pd.to_datetime(
            ["2010-01-05 10:00", "2010-01-02 08:00", "2010-01-03 08:00"]
        ).astype("datetime64[us]"),
        "country": ["France", "United Kingdom", "EIRE"],
    }
).astype({"account_id": "str", "country": "str"})

EXPECTED_ORDERS = pd.DataFrame(
    {
        "account_id": ["2", "1", "1", "1", "2", "2"],
        "ordered_at": pd.to_datetime(
            [
                "2010-01-02 08:00",
                "2010-01-05 10:00",
                "2010-01-06 09:00",
                "2010-02-01 12:00",
                "2010-03-01 08:00",
                "2010-03-02 08:00",
            ]
        ).astype("datetime64[us]"),
        "amount": [-6.0, 21.0, -1.5, 12.5, 8.0, 0.001],
        "kind": ["refund", "new", "refund", "renewal", "new", "renewal"],
    }
).astype({"account_id": "str", "kind": "str"})


def _read(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(out / "accounts.parquet"), pd.read_parquet(out / "orders.parquet")


def test_parquet_lines_map_to_exact_accounts_and_orders(tmp_path: Path) -> None:
    src = tmp_path / "lines.parquet"
    _lines().to_parquet(src, index=False)
    summary = import_online_retail(src, tmp_path / "out")
    accounts, orders = _read(tmp_path / "out")
    pd.testing.assert_frame_equal(accounts, EXPECTED_ACCOUNTS)
    pd.testing.assert_frame_equal(orders, EXPECTED_ORDERS)
    assert summary["lines_read"] == 11
    assert summary["lines_dropped_no_customer"] == 2
    assert summary["share_dropped_no_customer"] == pytest.approx(2 / 11)
    assert summary["adjustment_lines_dropped"] == 2
    assert summary["lines_used"] == 8
    assert summary["customers"] == 3
    assert summary["invoices"] == 6
    assert summary["purchases"] == 4
    assert summary["refunds"] == 2
    assert summary["invoices_dropped_zero_or_wrong_sign"] == 1
    assert summary["first_order"] == "2010-01-02T08:00:00"
    assert summary["last_order"] == "2010-03-02T08:00:00"


def test_original_column_names_in_csv_give_the_same_tables(tmp_path: Path) -> None:
    lines = _lines().rename(columns=ORIGINAL_NAMES)
    # The workbook's CSV exports write the nullable id as a float (1.0) and blanks for missing.
    lines["Customer ID"] = lines["Customer ID"].astype("float64")
    src = tmp_path / "online_retail_II.csv"
    lines.to_csv(src, index=False)
    import_online_retail(src, tmp_path / "out")
    accounts, orders = _read(tmp_path / "out")
    pd.testing.assert_frame_equal(accounts, EXPECTED_ACCOUNTS)
    pd.testing.assert_frame_equal(orders, EXPECTED_ORDERS)


def test_older_online_retail_names_are_accepted(tmp_path: Path) -> None:
    lines = _lines().rename(
        columns={
            "invoice": "InvoiceNo",
            "invoice_date": "InvoiceDate",
            "unit_price": "UnitPrice",
            "customer_id": "CustomerID",
            "quantity": "Quantity",
            "country": "Country",
        }
    )
    src = tmp_path / "online_retail.csv"
    lines.to_csv(src, index=False)
    import_online_retail(src, tmp_path / "out")
    _, orders = _read(tmp_path / "out")
    pd.testing.assert_frame_equal(orders, EXPECTED_ORDERS)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    src = tmp_path / "wrong.csv"
    _lines()[["invoice", "quantity", "country"]].to_csv(src, index=False)
    with pytest.raises(OnlineRetailError) as err:
        import_online_retail(src, tmp_path / "out")
    msg = str(err.value)
    assert "missing column(s)" in msg
    for name in ("invoice_date", "'InvoiceDate'", "unit_price", "'Price'", "customer_id"):
        assert name in msg
    assert "'quantity'" not in msg.split("found")[0]
    assert not (tmp_path / "out").exists()


def test_unreadable_dates_become_a_clear_error(tmp_path: Path) -> None:
    lines = _lines().astype({"invoice_date": "str"})
    lines.loc[3, "invoice_date"] = "not a date"
    src = tmp_path / "bad_dates.parquet"
    lines.to_parquet(src, index=False)
    with pytest.raises(OnlineRetailError, match="cannot read invoice dates such as 'not a date'"):
        import_online_retail(src, tmp_path / "out")


def test_unreadable_numbers_become_a_clear_error(tmp_path: Path) -> None:
    lines = _lines().rename(columns=ORIGINAL_NAMES).astype({"Price": "str"})
    lines.loc[3, "Price"] = "1,25"
    src = tmp_path / "bad_price.csv"
    lines.to_csv(src, index=False)
    with pytest.raises(OnlineRetailError, match="cannot read the invoice lines: .*Line: 5"):
        import_online_retail(src, tmp_path / "out")


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["2010-01-25 10:00:00", "2010-02-03 08:00:00"], ["2010-01-25 10:00", "2010-02-03 08:00"]),
        (["1/25/2010 10:00", "2/3/2010 8:00"], ["2010-01-25 10:00", "2010-02-03 08:00"]),
        (["25/01/2010 10:00", "03/02/2010 08:00"], ["2010-01-25 10:00", "2010-02-03 08:00"]),
        # Ambiguous (every day <= 12): read month first, as documented.
        (["01/02/2010 10:00", "03/02/2010 08:00"], ["2010-01-02 10:00", "2010-03-02 08:00"]),
    ],
)
def test_text_dates_in_csv(tmp_path: Path, texts: list[str], expected: list[str]) -> None:
    src = tmp_path / "dates.csv"
    pd.DataFrame(
        {
            "Invoice": ["1", "2"],
            "Quantity": [1, 2],
            "InvoiceDate": texts,
            "Price": [3.0, 4.0],
            "Customer ID": ["7", "7"],
            "Country": ["Spain", "Spain"],
        }
    ).to_csv(src, index=False)
    import_online_retail(src, tmp_path / "out")
    _, orders = _read(tmp_path / "out")
    assert list(orders["ordered_at"]) == [pd.Timestamp(t) for t in expected]
    assert list(orders["kind"]) == ["new", "renewal"]


def test_failed_import_keeps_earlier_output(tmp_path: Path) -> None:
    good = tmp_path / "lines.parquet"
    _lines().to_parquet(good, index=False)
    import_online_retail(good, tmp_path / "out")
    bad = tmp_path / "bad.csv"
    _lines()[["invoice"]].to_csv(bad, index=False)
    with pytest.raises(OnlineRetailError):
        import_online_retail(bad, tmp_path / "out")
    accounts, orders = _read(tmp_path / "out")
    pd.testing.assert_frame_equal(orders, EXPECTED_ORDERS)
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert visible == ["bad.csv", "lines.parquet", "out"]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".link-" in p.name]


def test_no_customer_ids_at_all_is_an_error(tmp_path: Path) -> None:
    lines = _lines()
    lines["customer_id"] = pd.array([None] * len(lines), dtype="Int32")
    src = tmp_path / "guests.parquet"
    lines.to_parquet(src, index=False)
    with pytest.raises(OnlineRetailError, match="no invoice line has a customer id"):
        import_online_retail(src, tmp_path / "out")


def test_unsupported_file_type_and_missing_file(tmp_path: Path) -> None:
    other = tmp_path / "lines.json"
    other.write_text("{}")
    with pytest.raises(OnlineRetailError, match=r"unsupported file type '\.json'"):
        import_online_retail(other, None)
    with pytest.raises(OnlineRetailError, match="file not found"):
        import_online_retail(tmp_path / "absent.parquet", None)


def test_xlsx_needs_openpyxl_or_reads_every_sheet(tmp_path: Path) -> None:
    src = tmp_path / "online_retail_II.xlsx"
    lines = _lines().rename(columns=ORIGINAL_NAMES)
    if importlib.util.find_spec("openpyxl") is None:
        src.write_bytes(b"PK\x03\x04 not really a workbook")
        with pytest.raises(OnlineRetailError, match="openpyxl") as err:
            import_online_retail(src, tmp_path / "out")
        assert "CSV" in str(err.value)
        return
    # Two date-sorted sheets sharing some days, as in the original workbook: kept once.
    lines = lines.sort_values("InvoiceDate", kind="stable")
    first = lines[lines["InvoiceDate"] < "2010-01-06"]
    second = lines[lines["InvoiceDate"] >= "2010-01-04"]
    assert len(first) + len(second) > len(lines)
    with pd.ExcelWriter(src) as writer:
        first.to_excel(writer, sheet_name="Year 2009-2010", index=False)
        second.to_excel(writer, sheet_name="Year 2010-2011", index=False)
    import_online_retail(src, tmp_path / "out")
    accounts, orders = _read(tmp_path / "out")
    pd.testing.assert_frame_equal(orders, EXPECTED_ORDERS)

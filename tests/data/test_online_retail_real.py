"""The Online Retail II import on the real shared file: counts, contract, CLI.

Expected figures are recomputed here with plain pandas from the raw lines, independently of the
importer's DuckDB SQL, and the headline numbers are also pinned as literals.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from churnlab import load
from churnlab.cli import app
from churnlab.config import DataParams
from churnlab.coverage import end_of_day
from churnlab.online_retail import import_online_retail
from churnlab.schema import TABLES

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "online_retail"
TRANSACTIONS = SHARED / "transactions.parquet"

CUSTOMERS = 5942
LINES = 1_044_847
LINES_WITHOUT_CUSTOMER = 235_287


def _require_file() -> Path:
    if not TRANSACTIONS.is_file():
        pytest.fail(
            f"the shared Online Retail II file is missing: expected {TRANSACTIONS} (the repo's "
            "sibling folder shared/data/online_retail/transactions.parquet; see its README)"
        )
    return TRANSACTIONS


@pytest.fixture(scope="session")
def raw() -> pd.DataFrame:
    return pq.read_table(_require_file()).to_pandas()


@pytest.fixture(scope="session")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("online_retail") / "tables"
    summary = import_online_retail(_require_file(), out)
    return {
        "out": out,
        "summary": summary,
        "accounts": pd.read_parquet(out / "accounts.parquet"),
        "orders": pd.read_parquet(out / "orders.parquet"),
    }


@pytest.fixture(scope="session")
def expected_invoices(raw: pd.DataFrame) -> pd.DataFrame:
    """Invoices recomputed with pandas: customer lines, no adjustments, right-signed totals."""
    lines = raw[raw["customer_id"].notna() & ~raw["invoice"].str.startswith("A")].copy()
    lines["value"] = lines["quantity"].astype("float64") * lines["unit_price"]
    inv = lines.groupby("invoice", as_index=False).agg(
        customer_id=("customer_id", "first"),
        ordered_at=("invoice_date", "min"),
        amount=("value", "sum"),
    )
    inv["refund"] = inv["invoice"].str.startswith("C")
    keep = (inv["refund"] & (inv["amount"] < -1e-9)) | (~inv["refund"] & (inv["amount"] > 1e-9))
    inv = inv[keep].copy()
    inv["account_id"] = inv["customer_id"].astype("int64").astype("str")
    return inv


def test_headline_counts(imported: dict[str, Any], raw: pd.DataFrame) -> None:
    s = imported["summary"]
    assert len(raw) == LINES
    assert s["lines_read"] == LINES
    assert int(raw["customer_id"].isna().sum()) == LINES_WITHOUT_CUSTOMER
    assert s["lines_dropped_no_customer"] == LINES_WITHOUT_CUSTOMER
    assert s["share_dropped_no_customer"] == pytest.approx(LINES_WITHOUT_CUSTOMER / LINES)
    assert s["adjustment_lines_dropped"] == int(raw["invoice"].str.startswith("A").sum()) == 6
    assert s["customers"] == CUSTOMERS == len(imported["accounts"])
    assert raw["customer_id"].nunique() == CUSTOMERS
    assert s["first_order"] == "2009-12-01T07:45:00"
    assert s["last_order"] == "2011-12-09T12:50:00"


def test_invoice_counts_match_an_independent_pandas_count(
    imported: dict[str, Any], expected_invoices: pd.DataFrame, raw: pd.DataFrame
) -> None:
    orders, s = imported["orders"], imported["summary"]
    inv = expected_invoices
    assert len(orders) == s["invoices"] == len(inv)
    assert s["refunds"] == int(inv["refund"].sum()) == int((orders["kind"] == "refund").sum())
    assert s["purchases"] == int((~inv["refund"]).sum())
    all_customer_invoices = raw.loc[
        raw["customer_id"].notna() & ~raw["invoice"].str.startswith("A"), "invoice"
    ].nunique()
    assert s["invoices_dropped_zero_or_wrong_sign"] == all_customer_invoices - len(inv)
    # Per account: number of orders, total amount, first and last order time.
    got = orders.groupby("account_id").agg(
        n=("amount", "size"),
        total=("amount", "sum"),
        first=("ordered_at", "min"),
        last=("ordered_at", "max"),
    )
    want = inv.groupby("account_id").agg(
        n=("amount", "size"),
        total=("amount", "sum"),
        first=("ordered_at", "min"),
        last=("ordered_at", "max"),
    )
    want.index = want.index.astype("str")
    got, want = got.sort_index(), want.sort_index()
    assert got.index.equals(want.index)
    assert (got["n"].to_numpy() == want["n"].to_numpy()).all()
    pd.testing.assert_series_equal(got["total"], want["total"], check_exact=False, atol=1e-3)
    assert (got["first"].to_numpy() == want["first"].astype("datetime64[us]").to_numpy()).all()
    assert (got["last"].to_numpy() == want["last"].astype("datetime64[us]").to_numpy()).all()


def test_refunds_are_negative_and_purchases_positive(imported: dict[str, Any]) -> None:
    orders = imported["orders"]
    refunds = orders[orders["kind"] == "refund"]
    assert len(refunds) > 7000
    assert (refunds["amount"] < 0).all()
    assert (orders.loc[orders["kind"] != "refund", "amount"] > 0).all()
    assert set(orders["kind"]) == {"new", "renewal", "refund"}


def test_each_buyer_has_one_new_order_and_it_is_the_first_purchase(
    imported: dict[str, Any],
) -> None:
    orders = imported["orders"]
    purchases = orders[orders["kind"] != "refund"]
    first = purchases.groupby("account_id")["ordered_at"].min()
    new = purchases[purchases["kind"] == "new"].set_index("account_id")["ordered_at"]
    assert new.index.is_unique
    pd.testing.assert_series_equal(new.sort_index(), first.sort_index(), check_names=False)


def test_accounts_are_created_at_their_first_invoice(
    imported: dict[str, Any], raw: pd.DataFrame
) -> None:
    accounts = imported["accounts"].set_index("account_id")
    lines = raw[raw["customer_id"].notna()]
    first = lines.sort_values(["invoice_date", "invoice"], kind="stable").groupby("customer_id")
    want_created = first["invoice_date"].min()
    want_created.index = want_created.index.astype("int64").astype("str")
    want_country = first["country"].first()
    want_country.index = want_country.index.astype("int64").astype("str")
    assert not accounts.index.str.endswith(".0").any()
    assert (
        accounts["created_at"].sort_index().to_numpy()
        == want_created.sort_index().astype("datetime64[us]").to_numpy()
    ).all()
    assert (accounts["country"].sort_index().to_numpy() == want_country.sort_index()).all()
    orders = imported["orders"]
    first_order = orders.groupby("account_id")["ordered_at"].min()
    assert (accounts.loc[first_order.index, "created_at"] <= first_order).all()


def test_output_has_contract_columns_and_types(imported: dict[str, Any]) -> None:
    for name, frame in (("accounts", imported["accounts"]), ("orders", imported["orders"])):
        table = TABLES[name]
        assert set(table.required_columns) <= set(frame.columns)
        if not table.extra_columns_allowed:
            assert set(frame.columns) <= set(table.column_names)
        assert frame["account_id"].notna().all()
    assert imported["accounts"]["account_id"].is_unique
    assert set(imported["orders"]["account_id"]) <= set(imported["accounts"]["account_id"])
    assert str(imported["orders"]["ordered_at"].dtype) == "datetime64[us]"
    assert str(imported["orders"]["amount"].dtype) == "float64"
    assert imported["orders"]["ordered_at"].max() <= pd.Timestamp("2011-12-09 12:50")


def test_output_validates_and_loads(imported: dict[str, Any]) -> None:
    # as_of = the data's own end: nothing may lie after it (validation's future-timestamp check).
    as_of = dt.datetime(2011, 12, 9, 12, 50)
    con = load.load(DataParams(source=str(imported["out"]), as_of=as_of))
    assert load.present_tables(con) == ["accounts", "orders"]
    n_accounts, n_orders, n_refunds = con.execute(
        "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM orders), "
        "(SELECT count(*) FROM orders WHERE kind = 'refund')"
    ).fetchone()  # type: ignore[misc]
    assert (n_accounts, n_orders) == (CUSTOMERS, imported["summary"]["invoices"])
    assert n_refunds == imported["summary"]["refunds"]
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE orders)").fetchall())
    assert types["ordered_at"] == "TIMESTAMP"
    assert types["amount"] == "DOUBLE"
    # The last order's day is observed to its end (churnlab.coverage).
    assert load.data_end(con, DataParams()) == end_of_day(as_of)


def test_original_names_in_csv_import_like_the_parquet(tmp_path: Path, raw: pd.DataFrame) -> None:
    # A few hundred real rows with guests, cancellations and adjustments in them.
    rows = pd.concat(
        [
            raw.iloc[:300],
            raw[raw["invoice"].str.startswith("C")].iloc[:80],
            raw[raw["invoice"].str.startswith("A")],
        ]
    )
    assert rows["customer_id"].isna().any()
    parquet = tmp_path / "rows.parquet"
    rows.to_parquet(parquet, index=False)
    workbook = rows.drop(columns="source_sheet").rename(
        columns={
            "invoice": "Invoice",
            "stock_code": "StockCode",
            "description": "Description",
            "quantity": "Quantity",
            "invoice_date": "InvoiceDate",
            "unit_price": "Price",
            "customer_id": "Customer ID",
            "country": "Country",
        }
    )
    # As in the usual CSV export of the workbook: ids as floats (13085.0), blanks for guests.
    workbook["Customer ID"] = workbook["Customer ID"].astype("float64")
    csv = tmp_path / "online_retail_II.csv"
    workbook.to_csv(csv, index=False)

    s_parquet = import_online_retail(parquet, tmp_path / "from_parquet")
    s_csv = import_online_retail(csv, tmp_path / "from_csv")
    for name in ("accounts", "orders"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "from_csv" / f"{name}.parquet"),
            pd.read_parquet(tmp_path / "from_parquet" / f"{name}.parquet"),
        )
    drop = {"source", "out"}
    assert {k: v for k, v in s_csv.items() if k not in drop} == {
        k: v for k, v in s_parquet.items() if k not in drop
    }
    assert s_csv["refunds"] > 0 and s_csv["lines_dropped_no_customer"] > 0


def test_cli_prints_dropped_lines_and_exits_zero(tmp_path: Path) -> None:
    out = tmp_path / "cli_out"
    result = CliRunner().invoke(
        app, ["import", "online-retail", str(_require_file()), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"dropped {LINES_WITHOUT_CUSTOMER:,} lines without a customer id" in result.stdout
    assert "22.5% of lines" in result.stdout
    assert f"{CUSTOMERS:,} accounts" in result.stdout
    assert (out / "accounts.parquet").is_file() and (out / "orders.parquet").is_file()


def test_cli_default_out_comes_from_params(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    target = tmp_path / "from_params"
    params.write_text(f"imports:\n  online_retail_out: {target}\n")
    src = tmp_path / "few.parquet"
    pq.read_table(_require_file()).slice(0, 500).to_pandas().to_parquet(src, index=False)
    result = CliRunner().invoke(app, ["import", "online-retail", str(src), "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert (target / "orders.parquet").is_file()


def test_cli_missing_columns_is_one_line_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "export.csv"
    bad.write_text("Invoice,StockCode,Quantity\n489434,85048,12\n")
    exe = Path(sys.executable).parent / "churnlab"
    proc = subprocess.run(
        [str(exe), "import", "online-retail", str(bad), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "400", "PATH": str(exe.parent), "HOME": str(tmp_path)},
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "missing column(s)" in errors[0]
    assert "'InvoiceDate'" in errors[0] and "'Customer ID'" in errors[0]
    assert not (tmp_path / "out").exists()

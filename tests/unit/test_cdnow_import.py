"""CDNOW importer on tiny literal transaction files: exact accounts and orders, clear errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnlab.cdnow import CdnowError, format_summary, import_cdnow
from churnlab.cli import app
from churnlab.config import DataParams
from churnlab.validate import validate_source

# The lifetimes copy's layout: a header line, fields padded with spaces, Windows line ends.
LINES = [
    " 00002 19970112  1   12.00",
    " 00001 19970101  1   11.77",
    " 00002 19970112  5   77.00",  # a second transaction on the first day: a renewal
    " 00003 19970102  2    0.00",  # CDs at no charge: kept
    " 00002 19970602  2   20.76",
    " 00001 19980630  3   43.5",
]
HEADER = " customer_id  date number_of_cds  dollar_value"


def _write(path: Path, lines: list[str], header: bool = True, end: str = "\r\n") -> Path:
    path.write_text(end.join(([HEADER] if header else []) + lines) + end, encoding="ascii")
    return path


def _read(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(out / "accounts.parquet"), pd.read_parquet(out / "orders.parquet")


EXPECTED_ACCOUNTS = pd.DataFrame(
    {
        "account_id": ["00001", "00002", "00003"],
        "created_at": pd.to_datetime(["1997-01-01", "1997-01-12", "1997-01-02"]).astype(
            "datetime64[us]"
        ),
    }
)
EXPECTED_ORDERS = pd.DataFrame(
    {
        "account_id": ["00001", "00003", "00002", "00002", "00002", "00001"],
        "ordered_at": pd.to_datetime(
            ["1997-01-01", "1997-01-02", "1997-01-12", "1997-01-12", "1997-06-02", "1998-06-30"]
        ).astype("datetime64[us]"),
        "amount": [11.77, 0.0, 12.0, 77.0, 20.76, 43.5],
        "kind": ["new", "new", "new", "renewal", "renewal", "renewal"],
    }
)


def test_transactions_map_to_exact_accounts_and_orders(tmp_path: Path) -> None:
    summary = import_cdnow(_write(tmp_path / "CDNOW_master.txt", LINES), tmp_path / "out")
    accounts, orders = _read(tmp_path / "out")
    pd.testing.assert_frame_equal(accounts, EXPECTED_ACCOUNTS, check_dtype=False)
    pd.testing.assert_frame_equal(orders, EXPECTED_ORDERS, check_dtype=False)
    assert accounts["created_at"].dtype == orders["ordered_at"].dtype == "datetime64[us]"
    assert summary == {
        "transactions": 6,
        "customers": 3,
        "zero_amount": 1,
        "cds": 14,
        "first_order": "1997-01-01",
        "last_order": "1998-06-30",
        "source": str(tmp_path / "CDNOW_master.txt"),
        "out": str(tmp_path / "out"),
    }
    text = "\n".join(format_summary(summary))
    assert "read 6 transactions (14 CDs) of 3 customers" in text
    assert "kept 1 transactions of $0.00" in text


def test_the_original_file_without_header_or_windows_line_ends_gives_the_same_tables(
    tmp_path: Path,
) -> None:
    import_cdnow(_write(tmp_path / "a.txt", LINES), tmp_path / "a")
    import_cdnow(_write(tmp_path / "b.txt", LINES, header=False, end="\n"), tmp_path / "b")
    for left, right in zip(_read(tmp_path / "a"), _read(tmp_path / "b"), strict=True):
        pd.testing.assert_frame_equal(left, right)


def test_the_import_meets_the_data_contract(tmp_path: Path) -> None:
    import_cdnow(_write(tmp_path / "CDNOW_master.txt", LINES), tmp_path / "out")
    summary = validate_source(DataParams(), str(tmp_path / "out"))
    assert summary["tables"] == {"accounts": 3, "orders": 6}
    assert summary["warnings"] == []
    assert summary["data_end"] == "1998-07-01T00:00:00"  # the end of the last order day


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            ["00001 19970101 1 11.77", "00002 1997-01-12 1 12.00", "00003 19970102 1"],
            r"2 lines have something other than the four CDNOW fields .*line 3: "
            r"'00002 1997-01-12 1 12.00'; line 4: '00003 19970102 1'",
        ),
        (["00001 19970101 1 $11.77"], r"1 line has something other .*line 2: '00001 19970101"),
        (
            ["00001 19970101 1 11.77", "00002 19971301 1 2"],
            r"1 line has no calendar date.*19971301",
        ),
        ([], r"no transaction lines"),
    ],
)
def test_lines_of_another_layout_are_named_with_their_numbers(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    with pytest.raises(CdnowError, match=message):
        import_cdnow(_write(tmp_path / "x.txt", lines, end="\n"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_and_non_text_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CdnowError, match="file not found"):
        import_cdnow(tmp_path / "nope.txt", tmp_path / "out")
    binary = tmp_path / "CDNOW.zip"
    binary.write_bytes(b"PK\x03\x04\xff\xfe")
    with pytest.raises(CdnowError, match="not plain ASCII text"):
        import_cdnow(binary, tmp_path / "out")


def test_failed_import_keeps_earlier_output(tmp_path: Path) -> None:
    import_cdnow(_write(tmp_path / "good.txt", LINES), tmp_path / "out")
    with pytest.raises(CdnowError):
        import_cdnow(_write(tmp_path / "bad.txt", ["00001 1997 1 2"]), tmp_path / "out")
    accounts, orders = _read(tmp_path / "out")
    pd.testing.assert_frame_equal(orders, EXPECTED_ORDERS, check_dtype=False)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".link-" in p.name]


def test_cli_imports_and_refuses_with_exit_code_1(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "CDNOW_master.txt", LINES)
    result = CliRunner().invoke(app, ["import", "cdnow", "CDNOW_master.txt"])
    assert result.exit_code == 0, result.output
    assert "wrote accounts.parquet and orders.parquet to data/cdnow" in result.output
    assert len(_read(tmp_path / "data" / "cdnow")[1]) == 6
    result = CliRunner().invoke(app, ["import", "cdnow", "missing.txt", "--out", "x"])
    assert result.exit_code == 1
    assert "missing.txt: file not found" in result.output
    assert "Traceback" not in result.output


def test_the_one_in_ten_sample_keeps_the_master_ids(tmp_path: Path) -> None:
    """CDNOW_sample.txt: master id, id in the sample, date, CDs, dollars."""
    sample = [f"{line.split()[0]} {i:04d} {' '.join(line.split()[1:])}" for i, line in
              enumerate(LINES, start=1)]  # fmt: skip
    import_cdnow(_write(tmp_path / "CDNOW_sample.txt", sample, header=False), tmp_path / "s")
    accounts, orders = _read(tmp_path / "s")
    pd.testing.assert_frame_equal(accounts, EXPECTED_ACCOUNTS, check_dtype=False)
    pd.testing.assert_frame_equal(orders, EXPECTED_ORDERS, check_dtype=False)
    mixed = [*sample[:2], LINES[2]]  # a master-file line in a sample file
    with pytest.raises(
        CdnowError,
        match=r"1 line has something other than the five CDNOW "
        r"fields \(customer id, id in the sample, date .*line 3: '00002 19970112",
    ):
        import_cdnow(_write(tmp_path / "mixed.txt", mixed, header=False), tmp_path / "m")

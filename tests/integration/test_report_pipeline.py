"""The report the pipeline makes, in a real browser: the demo's and an orders-only one.

Complements test_report_browser.py (which renders fixtures): here the page is what `churnlab
demo` and `churnlab report` write from real scoring runs, on the synthetic company and on the real
Online Retail II purchase history (orders only: no subscriptions, no expansion list if it cannot
be trained, buyer KPIs instead of MRR).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_report_browser import browser, count, open_report, visible  # noqa: F401
from typer.testing import CliRunner

from churnlab.cli import app

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
RETAIL = REPO.parent / "shared" / "data" / "online_retail" / "transactions.parquet"


def _check_page(browser, path: Path, lists: Path, shot: Path) -> None:  # noqa: F811
    at_risk = pd.read_parquet(lists / "at_risk.parquet")
    o = open_report(browser, path)
    page = o.page
    try:
        _, matching, total = count(page, "at-risk")
        assert (matching, total) == (len(at_risk), len(at_risk)), shot
        assert (
            visible(page, "at-risk", "account_id")[:10] == at_risk["account_id"].head(10).tolist()
        )
        page.locator("table#at-risk th[data-key=revenue_at_risk]").click()
        ids = visible(page, "at-risk", "account_id")
        rar = at_risk.set_index("account_id")["revenue_at_risk"].loc[ids].to_numpy()
        assert list(rar) == sorted(rar, reverse=True), shot
        band = at_risk["risk_band"].value_counts().index[0]
        n = int((at_risk["risk_band"] == band).sum())
        page.select_option("#at-risk-band", label=f"{band} ({n:,})")
        assert count(page, "at-risk")[1] == n, shot
        assert set(visible(page, "at-risk", "risk_band")) == {band}, shot
        page.screenshot(path=str(shot), full_page=True)
        o.assert_clean(shot)
    finally:
        page.close()


def test_the_demo_report_in_a_browser(browser, tmp_path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    result = CliRunner().invoke(app, ["demo", "--accounts", "400", "--months", "15"])
    assert result.exit_code == 0, result.output
    page = next((tmp_path / "reports").glob("report_*.html"))
    lists = next((tmp_path / "reports" / "actions").glob("[!.]*/"))
    _check_page(browser, page, lists, tmp_path / "demo-report.png")


@pytest.mark.skipif(
    not RETAIL.is_file(), reason="../shared/data/online_retail is not beside the repo"
)
def test_an_orders_only_online_retail_report_in_a_browser(browser, tmp_path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "data": {"source": str(tmp_path / "retail")},
                "imports": {"online_retail_out": str(tmp_path / "retail")},
                "train": {
                    "lightgbm": {
                        "objective": "binary",
                        "learning_rate": 0.05,
                        "num_leaves": 15,
                        "n_estimators": 300,
                        "verbose": -1,
                        "seed": 7,
                        "num_threads": 2,
                    }
                },  # fmt: skip
            }
        )
    )
    runner = CliRunner()
    for args in (
        ["import", "online-retail", str(RETAIL)],
        ["build-dataset"],
        ["train"],
        ["score"],
        ["report"],
    ):
        r = runner.invoke(app, [*args, "--params", str(params)])
        assert r.exit_code in (0, 3), (args, r.output)
    page = next((tmp_path / "reports").glob("report_*.html"))
    lists = next((tmp_path / "reports" / "actions").glob("[!.]*/"))
    _check_page(browser, page, lists, tmp_path / "retail-report.png")

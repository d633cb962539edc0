"""KPIs on the real Online Retail II data (orders only), checked against plain pandas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnlab import kpis
from churnlab.config import DataParams, KpiParams
from churnlab.load import connect_frames
from churnlab.online_retail import import_online_retail

TRANSACTIONS = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "data"
    / "online_retail"
    / "transactions.parquet"
)


@pytest.fixture(scope="module")
def retail(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, pd.DataFrame]]:
    if not TRANSACTIONS.is_file():
        pytest.fail(f"the shared Online Retail II file is missing: expected {TRANSACTIONS}")
    out = tmp_path_factory.mktemp("kpi_retail") / "tables"
    import_online_retail(TRANSACTIONS, out)
    frames = {t: pd.read_parquet(out / f"{t}.parquet") for t in ("accounts", "orders")}
    result = kpis.compute(connect_frames(frames), KpiParams(), DataParams())
    return result, frames


def test_orders_only_mode_and_partial_edges(retail):
    result, _ = retail
    m = result["monthly"]
    assert result["info"]["mode"].iloc[0] == "orders"
    # 2009-12-01 to 2011-12-09: the first month is complete (data starts on its first day), the
    # last one is partial.
    assert m.index[0] == pd.Timestamp("2009-12-01") and m.index[-1] == pd.Timestamp("2011-12-01")
    assert not m["partial"].iloc[:-1].any() and m["partial"].iloc[-1]
    assert result["info"]["latest_complete"].iloc[0] == pd.Timestamp("2011-11-01")
    for name in ("churn_rate", "start_mrr", "grr", "nrr", "nps", "open_rate"):
        assert m[name].isna().all(), name


def test_revenue_and_buyers_match_pandas(retail):
    result, frames = retail
    m = result["monthly"]
    o = frames["orders"].copy()
    refund = o["kind"] == "refund"
    o["net"] = np.where(refund, -o["amount"].abs(), o["amount"])
    o["period"] = o["ordered_at"].dt.to_period("M").dt.start_time
    by_month = o.groupby("period")["net"].sum()
    np.testing.assert_allclose(m["revenue"], by_month.loc[m.index], rtol=1e-9)
    buyers = o[~refund].groupby("period")["account_id"].nunique()
    np.testing.assert_array_equal(m["buyers"], buyers.loc[m.index])
    # Active-customer churn for November 2011: October buyers who did not buy in November.
    oct_, nov = (
        set(o.loc[~refund & (o["period"] == pd.Timestamp(f"2011-{k}-01")), "account_id"])
        for k in (10, 11)
    )
    nov_row = m.loc[pd.Timestamp("2011-11-01")]
    assert nov_row["buyers_prev"] == len(oct_)
    assert nov_row["active_customer_churn_rate"] == pytest.approx(len(oct_ - nov) / len(oct_))
    assert m["active_customer_churn_rate"].iloc[1:].between(0, 1).all()


def test_cohorts_start_complete(retail):
    result, frames = retail
    c = result["cohorts"]
    first = c[c["periods_since_signup"] == 0]
    accounts = frames["accounts"]
    sizes = accounts.groupby(accounts["created_at"].dt.to_period("M").dt.start_time).size()
    np.testing.assert_array_equal(first["cohort_size"], sizes.loc[first["cohort"]])
    assert (first["retention"] > 0.9).all()  # sign-up month = first purchase month

"""KPIs on the synthetic world: the MRR bridge holds and logo churn is what the generator did."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churnlab import kpis, synth
from churnlab.config import DataParams, KpiParams, SynthParams
from churnlab.load import connect_frames

MONTHS = 12
START = dt.date(2024, 1, 1)


@pytest.fixture(scope="session")
def kpi_world() -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    tables, _oracle, realised = synth.generate(
        SynthParams(accounts=400, months=MONTHS, seed=11, start=START)
    )
    as_of = dt.datetime(2025, 1, 1)
    result = kpis.compute(connect_frames(tables), KpiParams(), DataParams(as_of=as_of))
    return result, realised


def test_every_month_is_complete(kpi_world):
    result, _ = kpi_world
    m = result["monthly"]
    assert list(m.index) == list(pd.date_range("2024-01-01", periods=MONTHS, freq="MS"))
    assert not m["partial"].any()


def test_mrr_bridge_holds_exactly_every_month(kpi_world):
    result, _ = kpi_world
    m = result["monthly"]
    assert (m["start_mrr"] > 0).all() and (m["churned_mrr"] > 0).any()
    assert (m["expansion_mrr"] > 0).any() and (m["contraction_mrr"] > 0).any()
    assert (m["new_mrr"] > 0).any() and (m["reactivation_mrr"] > 0).any()
    bridge = (
        m["start_mrr"]
        + m["new_mrr"]
        + m["expansion_mrr"]
        - m["contraction_mrr"]
        - m["churned_mrr"]
        + m["reactivation_mrr"]
    )
    # Exact decimal sums turned into floats: equal to the last representable digit.
    np.testing.assert_allclose(bridge, m["end_mrr"], rtol=1e-13, atol=0)
    np.testing.assert_array_equal(m["end_mrr"].iloc[:-1].to_numpy(), m["start_mrr"].iloc[1:])


def test_logo_churn_equals_the_generators_realised_rate(kpi_world):
    result, realised = kpi_world
    m = result["monthly"]
    active = realised[realised["active"]]
    expected = active.groupby("cutoff")["churned_in_month"].agg(["mean", "sum", "size"])
    expected = expected.loc[m.index]
    assert (m["churned"] > 0).all()
    np.testing.assert_array_equal(m["customers_start"], expected["size"])
    np.testing.assert_array_equal(m["churned"], expected["sum"])
    np.testing.assert_allclose(m["churn_rate"], expected["mean"], rtol=1e-12)


def test_start_mrr_equals_the_generators_mrr(kpi_world):
    result, realised = kpi_world
    m = result["monthly"]
    expected = realised.groupby("cutoff")["mrr"].sum().loc[m.index]
    np.testing.assert_allclose(m["start_mrr"], expected, rtol=1e-9)


def test_rates_are_plausible_and_defined(kpi_world):
    result, _ = kpi_world
    m = result["monthly"]
    for col in (
        "churn_rate",
        "grr",
        "nrr",
        "open_rate",
        "click_rate",
        "nps",
        "upsell_revenue_share",
        "existing_customer_revenue_share",
    ):
        assert m[col].notna().all(), col
    assert ((m["grr"] > 0.8) & (m["grr"] <= 1)).all()
    assert (m["nrr"] >= m["grr"]).all()
    assert ((m["click_rate"] <= m["open_rate"]) & (m["open_rate"] <= 1)).all()
    assert ((m["upsell_revenue_share"] > 0) & (m["upsell_revenue_share"] < 1)).all()
    # Twelve months of history: only December's trailing window (Jan 1 to Jan 1) is observed.
    assert m["grr_12m"].iloc[:-1].isna().all() and m["nrr_12m"].iloc[:-1].isna().all()
    assert 0 < m["grr_12m"].iloc[-1] <= m["nrr_12m"].iloc[-1]


def test_one_calendar_month_churn_labels_equal_the_kpis_churned_count() -> None:
    """With ``horizon: 1 month`` and monthly cutoffs, the labels count the KPIs' churn.

    (With a 30-day horizon they do not: months have 28 to 31 days, so a 30-day window misses
    the last day of a long month and reaches into the next after a short one.)
    """
    from churnlab import dataset
    from churnlab.config import DatasetParams

    tables, _, _ = synth.generate(SynthParams(accounts=600, months=MONTHS, seed=12, start=START))
    con = connect_frames(tables)
    as_of = dt.datetime(2025, 1, 1)
    data = DataParams(as_of=as_of)
    frame, manifest = dataset.build(
        con, DatasetParams(horizon="1 month", windows=(7, 30), cutoff_start=dt.date(2024, 2, 1)),
        data,
    )  # fmt: skip
    assert manifest.horizon == "1 month"
    churned = kpis.compute(con, KpiParams(), data)["monthly"]["churned"]
    labeled = frame[frame["labeled"]]
    per_cutoff = labeled.groupby("cutoff")["churn"].sum()
    assert len(per_cutoff) >= 10
    for cutoff, n in per_cutoff.items():
        assert n == churned.loc[pd.Timestamp(cutoff)], cutoff
    # A 30-day window is not the month: on this world it differs in some month.
    thirty, _ = dataset.build(
        con, DatasetParams(horizon_days=30, windows=(7, 30), cutoff_start=dt.date(2024, 2, 1)),
        data,
    )  # fmt: skip
    by30 = thirty[thirty["labeled"]].groupby("cutoff")["churn"].sum()
    assert any(by30.loc[c] != churned.loc[pd.Timestamp(c)] for c in by30.index)

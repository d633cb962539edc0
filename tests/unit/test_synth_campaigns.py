"""Synthetic campaigns (synth.campaigns): treatments table, holdouts, planted effects, the truth.

The planted effects are checked against subgroups computed from the contract tables (what a
marketer could see before the assignment), not against the planted shifts themselves.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnlab import effects, load, synth, uplift_curves
from churnlab.config import DataParams, SynthParams
from churnlab.schema import TABLES

PARAMS = SynthParams(accounts=3000, months=16, seed=7, campaigns=True)
EFFECT_COLUMNS = [
    "account_id",
    "campaign_id",
    "assigned_at",
    "holdout",
    "true_effect_churn",
    "true_effect_expansion",
    "shift_churn",
    "shift_expansion",
    "p_churn_treated",
    "p_churn_untreated",
    "p_expansion_treated",
    "p_expansion_untreated",
    "churn_90d",
    "expansion_90d",
]


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.parquet"))
    }


@pytest.fixture(scope="module")
def world() -> synth.World:
    return synth.simulate(PARAMS)


@pytest.fixture(scope="module")
def frames(world: synth.World) -> dict[str, pd.DataFrame]:
    out = {name: synth.to_pandas(t) for name, t in world.tables.items()}
    assert world.effects is not None
    out["effects"] = synth.to_pandas(world.effects)
    return out


@pytest.fixture(scope="module")
def observed(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return _observed(frames)


def _observed(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Effects rows with what the tables showed before the assignment month."""
    eff = frames["effects"].copy()
    eff["offer"] = eff["campaign_id"].str.rsplit("-", n=1).str[1]
    start = eff["assigned_at"]
    prev = start - pd.DateOffset(months=1)
    # Seat utilisation last month: distinct active users / paid seats.
    ev = frames["events"]
    usage = ev[ev.event_type != "payment_failed"]
    users = (
        usage.assign(month=usage.occurred_at.dt.to_period("M").dt.start_time)
        .groupby(["account_id", "month"])
        .user_id.nunique()
        .rename("users")
    )
    seats = frames["subscriptions"].set_index(["account_id", "start_at"]).seats
    key = pd.MultiIndex.from_arrays([eff.account_id, prev])
    eff["util"] = users.reindex(key, fill_value=0).to_numpy() / seats.reindex(key).to_numpy()
    # A failed payment in the three months before the assignment.
    fails = ev[ev.event_type == "payment_failed"][["account_id", "occurred_at"]]
    pairs = eff[["account_id", "assigned_at"]].drop_duplicates().merge(fails, on="account_id")
    recent = pairs[
        (pairs.occurred_at < pairs.assigned_at)
        & (pairs.occurred_at >= pairs.assigned_at - pd.DateOffset(months=3))
    ]
    flagged = set(zip(recent.account_id, recent.assigned_at, strict=True))
    eff["failed_payment"] = [
        (a, t) in flagged for a, t in zip(eff.account_id, eff.assigned_at, strict=True)
    ]
    segment = frames["accounts"].set_index("account_id").segment
    eff["segment"] = eff.account_id.map(segment)
    return eff


def test_campaigns_off_writes_the_default_world(tmp_path: Path) -> None:
    small = SynthParams(accounts=300, months=8, seed=3)
    synth.run(small, tmp_path / "default")
    synth.run(small.model_copy(update={"campaigns": False}), tmp_path / "off")
    first = _hashes(tmp_path / "default")
    assert first == _hashes(tmp_path / "off")
    assert "treatments.parquet" not in first and len(first) == 9


def test_campaign_streams_leave_the_world_untouched_until_the_first_campaign() -> None:
    # Campaigns draw from their own generators: before the first assignment (month 6) the world
    # with campaigns is the world without them, row for row.
    params = SynthParams(accounts=800, months=9, seed=11)
    off = synth.simulate(params)
    on = synth.simulate(params.model_copy(update={"campaigns": True}))
    first = pd.Timestamp("2024-07-01")
    assert on.tables["accounts"].equals(off.tables["accounts"])
    for name in ("subscriptions", "orders", "events", "campaign_events", "tickets", "nps"):
        col = TABLES[name].time_column
        a, b = synth.to_pandas(on.tables[name]), synth.to_pandas(off.tables[name])
        a = a[a[col] < first].reset_index(drop=True)
        b = b[b[col] < first].reset_index(drop=True)
        assert len(a) > 0, name
        pd.testing.assert_frame_equal(a, b, obj=name)
    oracle_on, oracle_off = synth.to_pandas(on.oracle), synth.to_pandas(off.oracle)
    pd.testing.assert_frame_equal(
        oracle_on[oracle_on.cutoff < first].reset_index(drop=True),
        oracle_off[oracle_off.cutoff < first].reset_index(drop=True),
    )
    # ...and from then on the campaigns change who churns.
    assert not on.tables["subscriptions"].equals(off.tables["subscriptions"])


def test_treatments_validate_and_load_with_contract_types(world: synth.World, tmp_path) -> None:
    out = tmp_path / "world"
    synth.write(world, out)
    assert (out / "treatments.parquet").exists()
    assert (out / "oracle" / "treatment_effects.parquet").exists()
    con = load.load(DataParams(source=str(out)))
    assert load.present_tables(con) == list(TABLES)
    tr = load.read_frames(con)["treatments"]
    assert list(tr.columns) == list(TABLES["treatments"].column_names)
    assert {c: str(t) for c, t in tr.dtypes.items()} == {
        "account_id": "str",
        "campaign_id": "str",
        "assigned_at": "datetime64[us]",
        "holdout": "bool",
        "kind": "str",
        "channel": "str",
        "cost": "float64",
    }
    assert tr.notna().all().all()
    assert not tr.duplicated(["account_id", "campaign_id"]).any()
    con.close()


def test_campaign_schedule_audiences_and_costs(frames: dict[str, pd.DataFrame]) -> None:
    tr = frames["treatments"]
    # Months 6, 9, 12 and 15 of a world starting 2024-01, a retention and an upsell campaign each.
    assert sorted(tr.campaign_id.unique()) == [
        "RET-2024-07-training",
        "RET-2024-10-discount",
        "RET-2025-01-training",
        "RET-2025-04-discount",
        "UPS-2024-07-upgrade",
        "UPS-2024-10-upgrade",
        "UPS-2025-01-upgrade",
        "UPS-2025-04-upgrade",
    ]
    # Audiences are frozen at the first instant of the month.
    assert set(tr.assigned_at) == {
        pd.Timestamp(d) for d in ("2024-07-01", "2024-10-01", "2025-01-01", "2025-04-01")
    }
    assert (tr.kind == np.where(tr.campaign_id.str.startswith("RET"), "retention", "upsell")).all()
    channel = tr.campaign_id.str.rsplit("-", n=1).str[1].map(synth.OFFER_CHANNEL)
    assert (tr.channel == channel).all()
    # Nobody is in both campaigns of a month; every assignee was a customer then.
    assert not tr.duplicated(["account_id", "assigned_at"]).any()
    subs = frames["subscriptions"][["account_id", "start_at"]].rename(
        columns={"start_at": "assigned_at"}
    )
    active = tr.merge(subs, on=["account_id", "assigned_at"])
    assert len(active) == len(tr)
    # The holdout costs nothing; contacts cost the offer's price.
    assert (tr.loc[tr.holdout, "cost"] == 0).all()
    contacted = tr[~tr.holdout]
    assert (contacted.loc[contacted.campaign_id.str.endswith("training"), "cost"] == 120).all()
    assert (contacted.loc[contacted.kind == "upsell", "cost"] == 5).all()
    assert (contacted.loc[contacted.campaign_id.str.endswith("discount"), "cost"] > 0).all()


def test_holdout_share_is_about_a_fifth(frames: dict[str, pd.DataFrame]) -> None:
    tr = frames["treatments"]
    n = len(tr)
    assert n > 1500
    assert abs(tr.holdout.mean() - synth.HOLDOUT_SHARE) < 3 * np.sqrt(0.2 * 0.8 / n)
    for _, g in tr.groupby("campaign_id"):
        assert 0.1 < g.holdout.mean() < 0.3


def test_effects_rows_match_treatments(frames: dict[str, pd.DataFrame]) -> None:
    tr, eff = frames["treatments"], frames["effects"]
    assert list(eff.columns) == EFFECT_COLUMNS
    keys = ["account_id", "campaign_id", "assigned_at", "holdout"]
    pd.testing.assert_frame_equal(eff[keys], tr[keys])
    for col in ("p_churn_treated", "p_churn_untreated", "p_expansion_treated"):
        assert eff[col].between(0, 1).all()
    assert np.allclose(eff.true_effect_churn, eff.p_churn_treated - eff.p_churn_untreated)
    # Realised labels exist exactly for windows that end by the as-of (2025-05-01).
    ends = eff.assigned_at + pd.Timedelta(days=90)
    assert (eff.churn_90d.notna() == (ends <= pd.Timestamp("2025-05-01"))).all()
    assert set(eff.churn_90d.dropna()) == {0.0, 1.0}


def test_no_shift_means_exactly_no_effect(frames: dict[str, pd.DataFrame]) -> None:
    # Both arms run on the same paths: an account the offer does not move has effect 0.
    eff = frames["effects"]
    none = eff[(eff.shift_churn == 0) & (eff.shift_expansion == 0)]
    assert len(none) > 50
    assert (none.true_effect_churn == 0).all() and (none.true_effect_expansion == 0).all()
    moved = eff[eff.shift_churn != 0]
    assert (np.sign(moved.true_effect_churn) == np.sign(moved.shift_churn)).mean() > 0.99


def test_training_helps_adoption_problems_not_failed_payments(observed: pd.DataFrame) -> None:
    tr = observed[observed.offer == "training"]
    adoption = tr[(tr.util < 0.5) & ~tr.failed_payment]
    healthy = tr[(tr.util >= 0.8) & ~tr.failed_payment]
    billing = tr[tr.failed_payment]
    assert min(len(adoption), len(healthy), len(billing)) >= 30
    assert adoption.true_effect_churn.mean() < -0.1
    assert adoption.true_effect_churn.mean() < healthy.true_effect_churn.mean() - 0.05
    # Accounts whose risk is billing: no effect, except the latent few who resent any contact.
    assert billing.true_effect_churn.median() == 0.0
    assert billing.true_effect_churn.mean() >= 0.0


def test_discount_helps_price_sensitive_smb_most(observed: pd.DataFrame) -> None:
    d = observed[observed.offer == "discount"]
    smb, larger = d[d.segment == "smb"], d[d.segment != "smb"]
    assert min(len(smb), len(larger)) >= 30
    assert smb.true_effect_churn.mean() < -0.05
    assert smb.true_effect_churn.mean() < larger.true_effect_churn.mean() - 0.04


def test_upsell_lifts_expansion_of_full_licences_only(observed: pd.DataFrame) -> None:
    up = observed[observed.offer == "upgrade"]
    full, low = up[up.util >= 0.8], up[up.util < 0.6]
    assert min(len(full), len(low)) >= 20
    # The planted shift is a function of the utilisation the tables show.
    seen = up[up.util.notna()]
    planted = np.where(seen.util >= 0.8, 1.1, np.where(seen.util >= 0.6, 0.4, 0.0))
    assert len(seen) > 500 and np.allclose(seen.shift_expansion, planted)
    assert full.true_effect_expansion.mean() > 0.1
    assert abs(low.true_effect_expansion.mean()) < 0.01
    # Some contacts do harm: they raise churn.
    assert (up.true_effect_churn > 0).mean() > 0.05


def test_some_true_effects_are_harmful(frames: dict[str, pd.DataFrame]) -> None:
    eff = frames["effects"]
    retention = eff[eff.campaign_id.str.startswith("RET")]
    harmful = (retention.true_effect_churn > 0).mean()
    assert 0.03 < harmful < 0.3
    assert retention.true_effect_churn.mean() < -0.05


def _agreement(eff: pd.DataFrame, label: str, effect: str) -> tuple[float, float, float]:
    """Realised treated-minus-holdout difference, its standard error, and the mean true effect."""
    lab = eff[eff[label].notna()]
    t, c = lab.loc[~lab.holdout, label], lab.loc[lab.holdout, label]
    se = float(np.sqrt(t.var() / len(t) + c.var() / len(c)))
    return float(t.mean() - c.mean()), se, float(lab[effect].mean())


def _arm_calibration(eff: pd.DataFrame, label: str, kind: str) -> float:
    """z of realised minus predicted label rate, each row against its own arm's probability."""
    lab = eff[eff[label].notna()]
    p = np.where(lab.holdout, lab[f"p_{kind}_untreated"], lab[f"p_{kind}_treated"])
    return float((lab[label] - p).sum() / np.sqrt((p * (1 - p)).sum()))


def test_realised_differences_agree_with_true_effects_small(
    frames: dict[str, pd.DataFrame],
) -> None:
    eff = frames["effects"]
    retention = eff[eff.campaign_id.str.startswith("RET")]
    diff, se, true = _agreement(retention, "churn_90d", "true_effect_churn")
    assert abs(diff - true) < 3 * se
    upsell = eff[eff.campaign_id.str.startswith("UPS")]
    diff, se, true = _agreement(upsell, "expansion_90d", "true_effect_expansion")
    assert abs(diff - true) < 3 * se
    assert diff > 2 * se  # the upsell effect is visible even in a small world
    for label, kind in (("churn_90d", "churn"), ("expansion_90d", "expansion")):
        assert abs(_arm_calibration(eff, label, kind)) < 3
    # What a measurement from the holdout would report covers the truth. Since contact harms
    # the sleeping dogs (a fifth of each retention audience), the average saving is too small
    # for this world's 160 holdout accounts to show it (the large world's test does).
    lab = retention[retention.churn_90d.notna()]
    measured = effects.difference_in_rates(
        lab.loc[~lab.holdout, "churn_90d"], lab.loc[lab.holdout, "churn_90d"]
    )
    assert measured.ci_low < lab.true_effect_churn.mean() < measured.ci_high
    assert lab.true_effect_churn.mean() < 0 and measured.diff < 0


@pytest.mark.slow
def test_realised_differences_agree_with_true_effects_large() -> None:
    world = synth.simulate(SynthParams(accounts=30000, months=18, seed=1, campaigns=True))
    assert world.effects is not None
    eff = synth.to_pandas(world.effects)
    eff["offer"] = eff["campaign_id"].str.rsplit("-", n=1).str[1]
    for offer, rows in eff.groupby("offer"):
        for label, effect in (
            ("churn_90d", "true_effect_churn"),
            ("expansion_90d", "true_effect_expansion"),
        ):
            diff, se, true = _agreement(rows, label, effect)
            assert abs(diff - true) < 3 * se, (offer, label, diff, se, true)
        for label, kind in (("churn_90d", "churn"), ("expansion_90d", "expansion")):
            assert abs(_arm_calibration(rows, label, kind)) < 3, (offer, label)
    retention = eff[eff.offer != "upgrade"]
    diff, se, _ = _agreement(retention, "churn_90d", "true_effect_churn")
    assert diff < -3 * se  # the retention campaigns measurably save customers
    # Targeting by the true effect beats random targeting on the realised outcomes (random
    # scores give about 0 with a spread of about 0.01 at this size).
    lab = retention[retention.churn_90d.notna()]
    saved = 1 - lab.churn_90d
    assert uplift_curves.qini_auc(-lab.true_effect_churn, ~lab.holdout, saved) > 0.03
    up = eff[(eff.offer == "upgrade") & eff.expansion_90d.notna()]
    assert uplift_curves.qini_auc(up.true_effect_expansion, ~up.holdout, up.expansion_90d) > 0.03

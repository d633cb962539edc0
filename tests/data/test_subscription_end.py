"""Inclusive subscription end dates (``data.subscription_end``): read as the contract's ends.

Billing exports often write ``end_at`` as the last day of service (a monthly row 2024-01-01 ..
2024-01-31, the next from 2024-02-01). Read as the contract's exclusive end, every such account
has a one-day gap at each renewal, and at cutoffs whose label window ends on such a day nearly
every account "churns" (94% instead of 14% on the synthetic world). ``auto`` recognises the
pattern and adds the day; the training set is then the one the exclusive data gives.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from churnlab import dataset, load, synth
from churnlab.config import DataParams, DatasetParams, SynthParams
from churnlab.coverage import INCLUSIVE_MIN_PAIRS, INCLUSIVE_SHARE, end_is_inclusive


def test_the_rule() -> None:
    assert end_is_inclusive("auto", 100, 90, 5)
    assert not end_is_inclusive("auto", 100, 40, 5)  # under half the renewals
    assert not end_is_inclusive("auto", 100, 50, 50)  # as many touch as leave a day
    assert not end_is_inclusive("auto", 0, 0, 0)  # one row per account: nothing to tell
    assert not end_is_inclusive("auto", 9, 9, 0)  # a few lapses of a day decide nothing
    assert end_is_inclusive("auto", 10, 9, 0)
    assert end_is_inclusive("inclusive", 0, 0, 0) and not end_is_inclusive("exclusive", 9, 9, 0)
    assert (INCLUSIVE_SHARE, INCLUSIVE_MIN_PAIRS) == (0.5, 10)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ends")
    exclusive = root / "exclusive"
    synth.run(SynthParams(accounts=400, months=14, seed=8), out=exclusive)
    inclusive = root / "inclusive"
    shutil.copytree(exclusive, inclusive, ignore=shutil.ignore_patterns("oracle"))
    subs = pd.read_parquet(exclusive / "subscriptions.parquet")
    subs["end_at"] = subs["end_at"] - pd.Timedelta(days=1)  # the last day of service
    subs.to_parquet(inclusive / "subscriptions.parquet")
    return exclusive, inclusive


def _build(source: Path, **data_kw) -> tuple[pd.DataFrame, object, list[str]]:
    data = DataParams(source=str(source), **data_kw)
    con = load.load(data)
    try:
        notes = load.subscription_end_notes(con, data)
        frame, manifest = dataset.build(con, DatasetParams(), data)
    finally:
        con.close()
    return frame.sort_values(["account_id", "cutoff"]).reset_index(drop=True), manifest, notes


def test_inclusive_ends_give_the_training_set_of_exclusive_ones(worlds) -> None:
    exclusive, inclusive = worlds
    want, wm, notes = _build(exclusive)
    assert notes == []  # the contract's own ends: nothing is changed or said
    got, gm, notes = _build(inclusive)
    assert len(notes) == 1 and notes[0].startswith("subscriptions.end_at read as the last day")
    assert "set data.subscription_end: exclusive" in notes[0]
    pd.testing.assert_frame_equal(got, want)
    assert gm.per_cutoff == wm.per_cutoff
    # read as written, the labels are wrong at the cutoffs whose window ends on a renewal day
    raw, rm, notes = _build(inclusive, subscription_end="exclusive")
    assert notes == []
    rates = {r["cutoff"]: r["churn_rate"] for r in rm.per_cutoff if r["labeled"]}
    good = {r["cutoff"]: r["churn_rate"] for r in wm.per_cutoff if r["labeled"]}
    assert max(rates[c] - good[c] for c in good) > 0.5


def test_validate_says_what_it_did(worlds, tmp_path) -> None:
    from typer.testing import CliRunner

    from churnlab.cli import app

    _, inclusive = worlds
    result = CliRunner().invoke(app, ["validate", str(inclusive)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning: subscriptions.end_at read as the last day of service (" in text
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  subscription_end: exclusive\n")
    result = CliRunner().invoke(app, ["validate", str(inclusive), "--params", str(params)])
    assert result.exit_code == 0 and "last day of service" not in result.output

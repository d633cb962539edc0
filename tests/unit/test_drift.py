"""Feature drift (PSI): exact values, the share without a value, and the engine-neutral counts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from churnlab import drift
from churnlab.terminal import drift_text


def _psi(ref: list[float], cur: list[float]) -> float:
    """The index by hand: sum (q - p) ln(q / p), empty bins floored at 1e-4."""
    return sum(
        (max(q, 1e-4) - max(p, 1e-4)) * math.log(max(q, 1e-4) / max(p, 1e-4))
        for p, q in zip(ref, cur, strict=True)
    )


def test_numeric_psi_equals_the_formula_on_the_training_bins() -> None:
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, np.nan]})
    prof = drift.profile(train, bins=2)  # edges 1, 2.5, 4: bins [.., 2.5) [2.5, ..), missing
    assert prof["x"]["edges"] == [1.0, 2.5, 4.0]
    assert prof["x"]["shares"] == pytest.approx([0.4, 0.4, 0.2])
    now = pd.DataFrame({"x": [1.0, 3.0, 3.5, 9.0]})
    table = drift.psi(prof, now)
    row = table.iloc[0]
    assert row["psi"] == pytest.approx(_psi([0.4, 0.4, 0.2], [0.25, 0.75, 0.0]), rel=1e-12)
    assert (row["missing_trained"], row["missing_now"]) == pytest.approx((0.2, 0.0))
    same = drift.psi(prof, train)
    assert same.iloc[0]["psi"] == pytest.approx(0.0, abs=1e-15)


def test_categorical_psi_and_a_level_new_at_scoring() -> None:
    train = pd.DataFrame({"plan": pd.Categorical(["a", "a", "b", None])})
    prof = drift.profile(train)
    assert prof["plan"]["levels"] == pytest.approx({"a": 0.5, "b": 0.25, drift.MISSING: 0.25})
    now = pd.DataFrame({"plan": pd.Categorical(["a", "c", "b", "b"])})
    row = drift.psi(prof, now).iloc[0]
    # levels sorted: (missing), a, b, c
    assert row["psi"] == pytest.approx(_psi([0.25, 0.5, 0.25, 0.0], [0.0, 0.25, 0.5, 0.25]))
    assert (row["missing_trained"], row["missing_now"]) == pytest.approx((0.25, 0.0))


def test_a_feature_only_emptier_in_training_is_drift_of_its_missing_share() -> None:
    """The demo's case: training rows of accounts with no history, none at scoring."""
    levels = ["starter"] * 50 + ["growth"] * 40 + ["scale"] * 10
    train = pd.DataFrame({"plan": pd.Categorical(levels + [None] * 7),
                          "mrr": [float(i) for i in range(100)] + [np.nan] * 7})  # fmt: skip
    now = pd.DataFrame({"plan": pd.Categorical(levels), "mrr": [float(i) for i in range(100)]})
    table = drift.psi(drift.profile(train), now).set_index("feature")
    for name in ("plan", "mrr"):
        row = table.loc[name]
        assert row["psi"] > 0.2, row  # the warning fires ...
        assert drift.missing_part(row) > 0.95, row  # ... and nearly all of it is the missing share
        assert row["missing_trained"] == pytest.approx(7 / 107)
        assert row["missing_now"] == 0.0
    shifted = pd.DataFrame({"plan": pd.Categorical(["scale"] * 60 + ["starter"] * 40),
                            "mrr": [float(i) for i in range(100)]})  # fmt: skip
    mix = drift.psi(drift.profile(now), shifted).set_index("feature").loc["plan"]
    assert mix["psi"] > 0.2 and drift.missing_part(mix) == 0.0  # a change of the mix itself


def test_counts_give_the_same_table_as_the_rows() -> None:
    rng = np.random.default_rng(3)
    train = pd.DataFrame(
        {"x": rng.normal(size=500), "c": pd.Categorical(rng.choice(["u", "v"], 500))}
    )
    train.loc[::9, "x"] = np.nan
    now = pd.DataFrame({"x": rng.normal(0.5, 1, size=300),
                        "c": pd.Categorical(rng.choice(["u", "v", "w"], 300))})  # fmt: skip
    now.loc[::4, "c"] = None
    prof = drift.profile(train)
    direct = drift.psi(prof, now)
    halves = [drift.bin_counts(prof, now.iloc[:120]), drift.bin_counts(prof, now.iloc[120:])]
    summed: dict[str, dict[str, int]] = {}
    for part in halves:
        for f, bins in part.items():
            for k, v in bins.items():
                summed.setdefault(f, {})[k] = summed.get(f, {}).get(k, 0) + v
    counted = drift.psi_from_counts(prof, list(now.columns), summed, len(now))
    pd.testing.assert_frame_equal(direct, counted, check_exact=False, rtol=1e-12)
    assert list(direct.columns) == list(drift.COLUMNS)


def test_the_warning_names_a_missing_share_and_what_it_usually_is() -> None:
    drifting = pd.DataFrame(
        {"feature": ["plan", "overdue_ratio"], "psi": [0.48, 0.36],
         "missing_trained": [0.0669, 0.01], "missing_now": [0.0, 0.012]}
    )  # fmt: skip
    text = drift_text(drifting, 0.2)
    assert text.startswith(
        "feature drift since training (PSI > 0.2): plan 0.48 (mostly the share without a value: "
        "6.7% of the training rows, 0.0% now), overdue_ratio 0.36; a changed share without a "
        "value is often accounts with no history before the cutoff"
    ), text
    plain = drift_text(drifting.iloc[1:], 0.2)
    assert plain == "feature drift since training (PSI > 0.2): overdue_ratio 0.36"


def test_an_emptier_purchase_gap_is_said_to_be_customers_with_too_few_order_days() -> None:
    drifting = pd.DataFrame(
        {"feature": ["mean_gap_days", "gap_spread_days", "overdue_ratio", "orders_lifetime"],
         "psi": [5.37, 3.1, 2.9, 5.40], "missing_trained": [0.499, 0.70, 0.499, 0.0],
         "missing_now": [0.0, 0.0, 0.0, 0.0]}
    )  # fmt: skip
    text = drift_text(drifting, 0.2)
    assert text.endswith(
        "orders_lifetime 5.40; without a value, mean_gap_days and overdue_ratio mean fewer than "
        "two days with an order so far, gap_spread_days means fewer than three days with an "
        "order so far: their drift is a change in how many such customers are scored, not in "
        "anyone's purchase gaps"
    ), text
    assert "subscriptions that start on them" not in text  # that is the other cause
    one = drift_text(drifting.iloc[[0, 3]], 0.2)
    assert (
        "; without a value, mean_gap_days means fewer than two days with an order so far: "
        "its drift" in one
    ), one
    both = drift_text(
        pd.concat([drifting.iloc[[0]], pd.DataFrame(
            {"feature": ["plan"], "psi": [0.48], "missing_trained": [0.067], "missing_now": [0.0]}
        )]), 0.2,
    )  # fmt: skip
    assert both.endswith("not a change in the values") and "purchase gaps; a changed share" in both, both

"""Segments of a campaign from the scoring that chose it: literal as-of folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from churnlab import measuring


def scoring(root: Path, day: str, *, uplift: bool = False) -> None:
    folder = root / day
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d"],
            "campaign": ["save", "save", "upsell-offer", "referral"],
            "kind": ["retention", "retention", "upsell", "advocacy"],
            "risk_band": ["high", "medium", "low", "low"],
            "holdout": [False, True, False, False],
        }
    ).to_parquet(folder / "audiences.parquet")
    pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d", "e"],
            "churn_probability": [0.6, 0.3, 0.1, 0.05, 0.2],
            "driver_group": ["support", "engagement", "profile", None, "support"],
        }
    ).to_parquet(folder / "at_risk.parquet")
    pd.DataFrame({"account_id": ["c", "d"], "expansion_probability": [0.7, 0.4]}).to_parquet(
        folder / "expansion.parquet"
    )
    if uplift:
        pd.DataFrame(
            {"account_id": ["a", "b", "a"], "campaign": ["save", "save", "other"],
             "effect": [-0.04, -0.01, 0.2]}
        ).to_csv(folder / "uplift.csv", index=False)  # fmt: skip


def test_segments_and_targeting_scores_of_the_campaigns_in_treatments(tmp_path: Path) -> None:
    scoring(tmp_path, "2025-01-01")
    scoring(tmp_path, "2025-02-01", uplift=True)
    (tmp_path / "not-a-date").mkdir()
    wanted = ["save-2025-01-01", "upsell-offer-2025-01-01", "referral-2025-01-01",
              "save-2025-02-01", "RET-synthetic"]  # fmt: skip
    seg, used = measuring.audience_segments(tmp_path, wanted)
    assert used == ["2025-01-01", "2025-02-01"]
    assert seg is not None
    seg = seg.set_index(["campaign_id", "account_id"])
    # By churn risk in January, by uplift (minus the effect) in February.
    assert seg.loc[("save-2025-01-01", "a"), "score"] == 0.6
    assert seg.loc[("save-2025-02-01", "a"), "score"] == 0.04
    assert seg.loc[("save-2025-02-01", "b"), "score"] == 0.01
    assert seg.loc[("upsell-offer-2025-01-01", "c"), "score"] == 0.7
    assert np.isnan(seg.loc[("referral-2025-01-01", "d"), "score"])  # no targeting score
    assert seg.loc[("save-2025-01-01", "b"), "risk_band"] == "medium"
    assert seg.loc[("save-2025-01-01", "b"), "driver_group"] == "engagement"
    # upsell-offer-2025-02-01 is not in treatments (never sent): left out.
    assert len(seg) == 6


def test_no_matching_scoring_gives_no_segments(tmp_path: Path) -> None:
    scoring(tmp_path, "2025-01-01")
    assert measuring.audience_segments(tmp_path, ["RET-1"]) == (None, [])
    assert measuring.audience_segments(tmp_path / "missing", ["RET-1"]) == (None, [])

"""Model behaviour on a fabricated training set with a planted signal (fast).

The set has the training-set interface of ``churnlab build-dataset``; churn falls with logins and
rises with days since the last login and with tickets, expansion rises with logins and NPS
promoters. The same checks on the real synthetic pipeline are in test_train_synthetic.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnlab import train
from churnlab.config import TrainParams


def _planted(n_accounts=800, n_cutoffs=12, seed=0, unlabeled=2):
    rng = np.random.default_rng(seed)
    cutoffs = pd.date_range("2025-01-01", periods=n_cutoffs, freq="MS").astype("datetime64[us]")
    rows = []
    seg = rng.choice(["smb", "mid", "ent"], n_accounts)
    base_act = rng.gamma(2.0, 10.0, n_accounts)
    for i, c in enumerate(cutoffs):
        logins = rng.poisson(base_act * rng.uniform(0.3, 1.5, n_accounts)).astype(float)
        days = np.where(
            logins > 0, rng.exponential(5, n_accounts), rng.uniform(30, 120, n_accounts)
        )
        tickets = rng.poisson(1.0, n_accounts).astype(float)
        nps = np.where(
            rng.random(n_accounts) < 0.5, rng.integers(0, 11, n_accounts), np.nan
        ).astype(float)
        mrr = rng.gamma(2, 200, n_accounts)
        z = -2.0 - 0.08 * logins + 0.02 * days + 0.3 * tickets + np.where(seg == "smb", 0.5, 0.0)
        pc = 1 / (1 + np.exp(-z))
        ze = -2.5 + 0.03 * logins + np.where(nps >= 9, 1.5, 0.0)
        pe = 1 / (1 + np.exp(-ze))
        labeled = i < n_cutoffs - unlabeled
        churn = (rng.random(n_accounts) < pc).astype(float)
        exp = (rng.random(n_accounts) < pe).astype(float)
        rows.append(
            pd.DataFrame(
                {
                    "account_id": [f"A{j:05d}" for j in range(n_accounts)],
                    "cutoff": np.repeat(c, n_accounts),
                    "logins_30d": logins,
                    "days_since_last_login": days,
                    "tickets_90d": tickets,
                    "nps_last": nps,
                    "segment": seg,
                    "churn": churn if labeled else np.nan,
                    "expansion": exp if labeled else np.nan,
                    "expansion_amount": np.where(exp == 1, mrr * 0.2, 0.0) if labeled else np.nan,
                    "mrr": mrr,
                    "arr": 12 * mrr,
                    "labeled": labeled,
                    "p_churn": pc,
                    "p_expansion": pe,
                }
            )
        )
    frame = pd.concat(rows, ignore_index=True)
    frame["segment"] = frame["segment"].astype("category")
    frame["cutoff"] = frame["cutoff"].astype("datetime64[us]")
    oracle = frame[["account_id", "cutoff", "p_churn", "p_expansion"]].copy()
    frame = frame.drop(columns=["p_churn", "p_expansion"])
    manifest = {
        "mode": "contractual",
        "horizon_days": 90,
        "features": [
            {
                "name": "logins_30d",
                "description": "logins in the last 30 days",
                "group": "engagement",
                "dtype": "float64",
            },
            {
                "name": "days_since_last_login",
                "description": "days since the last login",
                "group": "engagement",
                "dtype": "float64",
            },
            {
                "name": "tickets_90d",
                "description": "support tickets in the last 90 days",
                "group": "support",
                "dtype": "float64",
            },
            {
                "name": "nps_last",
                "description": "latest NPS score",
                "group": "sentiment",
                "dtype": "float64",
            },
            {"name": "segment", "description": "segment", "group": "profile", "dtype": "category"},
        ],
        "cutoffs": [str(c.date()) for c in cutoffs],
    }
    return frame, manifest, oracle


# One LightGBM thread: on a busy 2-core machine (the whole suite runs in parallel) two
# threads are several times slower, and the results are identical.
PARAMS = TrainParams(lightgbm={**TrainParams().lightgbm, "num_threads": 1})


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    return _planted(n_accounts=2000, n_cutoffs=12)


@pytest.fixture(scope="module")
def churn(data) -> train.TaskResult:
    frame, manifest, oracle = data
    return train.train_task(frame, manifest, "churn", PARAMS, oracle=oracle)


@pytest.fixture(scope="module")
def expansion(data) -> train.TaskResult:
    frame, manifest, oracle = data
    return train.train_task(frame, manifest, "expansion", PARAMS, oracle=oracle)


def test_uses_only_labeled_eligible_rows_and_the_latest_labeled_cutoff(churn, data) -> None:
    frame = data[0]
    assert churn.split.test_cutoff == frame.loc[frame["labeled"], "cutoff"].max()
    for part in (churn.split.train, churn.split.valid, churn.split.test):
        assert part["labeled"].all() and part["churn"].notna().all()
    assert max(churn.split.train_cutoffs) < churn.split.valid_cutoff < churn.split.test_cutoff


def test_model_is_close_to_the_oracle_and_beats_the_heuristic(churn, expansion) -> None:
    for res in (churn, expansion):
        m = res.metrics
        assert m["test.oracle_gap"] < 0.03, res.task
        assert m["test.roc_auc"] > m["baseline_heuristic.roc_auc"], res.task
        assert m["test.ece"] < 0.04, res.task
        # Calibrated on validation: much better log loss than a constant base rate.
        base = m["test.positive_rate"]
        const = -(base * np.log(base) + (1 - base) * np.log(1 - base))
        assert m["test.log_loss"] < const, res.task


def test_direction_less_usage_raises_churn_score(churn) -> None:
    test = churn.split.test
    less = test.assign(logins_30d=test["logins_30d"] * 0.25, days_since_last_login=60.0)
    assert churn.bundle.predict(less).mean() > churn.bundle.predict(test).mean() + 0.02
    assert (churn.bundle.predict(less) >= churn.bundle.predict(test) - 1e-9).mean() > 0.9


def test_direction_promoters_get_higher_expansion_score(expansion) -> None:
    test = expansion.split.test
    promoter = expansion.bundle.predict(test.assign(nps_last=10.0))
    detractor = expansion.bundle.predict(test.assign(nps_last=3.0))
    assert promoter.mean() > detractor.mean() + 0.05


def test_invariant_to_row_order_and_account_relabelling(data, churn) -> None:
    frame, manifest, _ = data
    shuffled = frame.sample(frac=1.0, random_state=3)
    relabel = {
        a: f"Z{i:06d}"
        for i, a in enumerate(np.random.default_rng(4).permutation(frame["account_id"].unique()))
    }
    renamed = frame.assign(account_id=frame["account_id"].map(relabel))
    for variant in (shuffled, renamed):
        res = train.train_task(variant, manifest, "churn", PARAMS)
        for k, v in churn.metrics.items():
            if "oracle" not in k:
                assert res.metrics[k] == pytest.approx(v, rel=1e-9, abs=1e-12, nan_ok=True), k
    res = train.train_task(shuffled, manifest, "churn", PARAMS)
    a = churn.predictions.set_index("account_id")["p"].sort_index()
    b = res.predictions.set_index("account_id")["p"].sort_index()
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-12)


def test_same_seed_same_metrics(data, churn) -> None:
    frame, manifest, oracle = data
    again = train.train_task(frame, manifest, "churn", PARAMS, oracle=oracle)
    assert again.metrics == churn.metrics


def test_bundle_round_trip(tmp_path, churn) -> None:
    churn.bundle.save(tmp_path / "b")
    loaded = train.ModelBundle.load(tmp_path / "b")
    test = churn.split.test
    np.testing.assert_array_equal(loaded.predict(test), churn.bundle.predict(test))
    assert loaded.feature_names == churn.bundle.feature_names
    assert loaded.categories == {"segment": ["ent", "mid", "smb"]}


def test_backtest_folds_mean_and_std(data) -> None:
    frame, manifest, _ = data
    tables = train.backtest(frame, manifest, PARAMS.model_copy(update={"tasks": ("churn",)}), 2)
    t = tables["churn"]
    assert t["fold"].tolist() == ["1", "2", "mean", "std"]
    assert t["test_cutoff"].tolist()[:2] == ["2025-09-01", "2025-10-01"]
    folds = t.iloc[:2]["test.roc_auc"].astype(float)
    assert t.iloc[2]["test.roc_auc"] == pytest.approx(folds.mean())
    assert t.iloc[3]["test.roc_auc"] == pytest.approx(folds.std(ddof=1))

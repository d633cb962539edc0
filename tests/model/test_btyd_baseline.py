"""The BG/NBD baseline on a world simulated from the BG/NBD model itself.

There the model is the truth, so its fit must recover the parameters and its probabilities must
be calibrated. Fitted on the training rows (recent buyers only, the orders-only eligibility), it
found no dropout at all (a = 8e-7) and predicted 0.41 churn against 0.56 (ECE 0.152); fitted on
every customer before the cutoff it is within noise of the truth.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from churnlab import baselines, btyd_population, dataset, load, train
from churnlab.config import DataParams, DatasetParams, TrainParams

TRUE = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # CDNOW, in weeks


def _simulate(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """First purchases in the first 12 weeks of 2024, observed to 2025-06-30 (BG/NBD)."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(TRUE["r"], 1 / TRUE["alpha"], n)  # purchases per week while alive
    p = rng.beta(TRUE["a"], TRUE["b"], n)  # drop-out chance after each repeat purchase
    start, end = pd.Timestamp("2024-01-01"), pd.Timestamp("2025-06-30")
    span = (end - start).days
    first = rng.integers(0, 84, n)
    ids, days = [], []
    for i in range(n):
        t = float(first[i])
        ids.append(i)
        days.append(int(t))
        while True:
            t += rng.exponential(7.0 / lam[i])
            if t >= span:
                break
            ids.append(i)
            days.append(int(t))
            if rng.random() < p[i]:
                break
    orders = pd.DataFrame(
        {
            "account_id": [f"c{i}" for i in ids],
            "ordered_at": start + pd.to_timedelta(days, unit="D"),
            "amount": np.round(rng.lognormal(3.3, 0.8, len(ids)), 2),
        }
    )
    accounts = orders.groupby("account_id", as_index=False)["ordered_at"].min()
    return accounts.rename(columns={"ordered_at": "created_at"}), orders


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("btyd-world")
    accounts, orders = _simulate(4000, seed=5)
    accounts.to_parquet(root / "accounts.parquet")
    orders.to_parquet(root / "orders.parquet")
    data = DataParams(source=str(root))
    con = load.load(data, str(root))
    try:
        frame, manifest = dataset.build(con, DatasetParams(), data)
    finally:
        con.close()
    return frame, manifest


def test_the_fit_at_a_cutoff_recovers_the_simulated_parameters(built) -> None:
    frame, manifest = built
    assert manifest.mode == "orders"
    last = manifest.btyd_fits[-1]
    assert last["cutoff"] == manifest.cutoffs[-1]
    assert last["customers"] == 4000  # everyone bought before the last cutoff, not only recently
    fitted = btyd_population.params_at(manifest.btyd_fits, pd.Timestamp(last["cutoff"]))
    assert fitted is not None
    for name, tol in (("r", 0.3), ("alpha", 0.3), ("a", 0.4), ("b", 0.4)):
        got = getattr(fitted, name)
        assert abs(got / TRUE[name] - 1) <= tol, (name, got, TRUE[name])
    # the training set's own rows at that cutoff are far fewer: the recent buyers
    assert (frame["cutoff"] == pd.Timestamp(last["cutoff"])).sum() < 0.5 * last["customers"]


def test_the_baseline_is_calibrated_where_the_model_is_the_truth(built) -> None:
    frame, manifest = built
    result = train.train_task(frame, manifest, "churn", TrainParams())
    m = result.metrics
    test = result.split.test
    p = baselines.btyd_baseline(test, "churn", manifest)
    assert p is not None and len(p) == len(test)
    rate = float(test["churn"].mean())
    se = float(np.sqrt(rate * (1 - rate) / len(test)))  # about 0.022 on its 529 rows
    assert abs(p.mean() - rate) <= 3 * se, (p.mean(), rate)  # (on the training rows: 0.41, 0.56)
    assert m["baseline_btyd.ece"] <= 0.07, m["baseline_btyd.ece"]
    assert m["baseline_btyd.roc_auc"] > m["baseline_heuristic.roc_auc"]
    # a training set without the fits (built before them) has no BG/NBD baseline, none faked
    without = dataclasses.replace(manifest, btyd_fits=())
    assert baselines.btyd_baseline(test, "churn", without) is None

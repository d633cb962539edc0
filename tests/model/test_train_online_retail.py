"""Real data (issue 4, point 7): Online Retail II, orders only, 90-day horizon.

Imports the shared transactions file into a temporary folder, builds the training set and trains
both tasks at the latest complete cutoff. Checks the split and that LightGBM ranks better than
the recency/activity heuristic and at least as well as the logistic regression (within 0.01).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from churnlab import dataset, load, online_retail, train
from churnlab.config import DataParams, DatasetParams, TrainParams
from churnlab.schema import TASKS

SOURCE = Path("/work/shared/data/online_retail/transactions.parquet")
PARAMS = TrainParams(lightgbm={**TrainParams().lightgbm, "num_threads": 1})

pytestmark = pytest.mark.skipif(not SOURCE.exists(), reason="Online Retail II file not present")


@pytest.fixture(scope="module")
def retail(tmp_path_factory: pytest.TempPathFactory) -> dict[str, train.TaskResult]:
    out = tmp_path_factory.mktemp("online_retail")
    online_retail.import_online_retail(SOURCE, out)
    data = DataParams(source=str(out), as_of=dt.datetime(2011, 12, 9, 12, 50))
    frame, manifest = dataset.build(load.load(data), DatasetParams(), data)
    assert manifest.mode == "orders" and manifest.horizon_days == 90
    return {t: train.train_task(frame, manifest, t, PARAMS) for t in TASKS}


def test_latest_complete_cutoff_and_purged_split(retail) -> None:
    for res in retail.values():
        # 2011-09-01 + 90 days = 2011-11-30, the last window that ends before 2011-12-09.
        assert res.split.test_cutoff == dt.datetime(2011, 9, 1)
        assert res.split.valid_cutoff == dt.datetime(2011, 6, 1)
        assert max(res.split.train_cutoffs) == dt.datetime(2011, 3, 1)
        assert res.heuristic == {"recency": "days_since_last_order", "activity": "orders_30d"}


@pytest.mark.parametrize("task", TASKS)
def test_lightgbm_ranks_better_than_the_baselines(retail, task: str) -> None:
    m = retail[task].metrics
    assert m["test.roc_auc"] > m["baseline_heuristic.roc_auc"] + 0.05
    assert m["test.roc_auc"] > m["baseline_logreg.roc_auc"] - 0.01
    assert m["test.pr_auc"] > m["baseline_heuristic.pr_auc"]


def test_churn_is_compared_with_a_bg_nbd_baseline(retail) -> None:
    """The purchase-only reference a BTYD user would reach for (issue 13): a BG/NBD model fitted
    on the training cutoffs, scored as P(no purchase in the horizon) at the test cutoff."""
    m = retail["churn"].metrics
    assert 0.5 < m["baseline_btyd.roc_auc"] < 1.0
    assert m["test.roc_auc"] > m["baseline_btyd.roc_auc"]
    assert "baseline_btyd.roc_auc" not in retail["expansion"].metrics

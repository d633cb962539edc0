"""What a stage hands to tracking: metrics, tags, tables, texts and files for one MLflow run.

Stages never import MLflow. A stage that has something to log describes it as a :class:`RunLog`
(for example :func:`churnlab.kpis.run_log`), and :func:`churnlab.tracking.log` writes it into
the active run. This keeps MLflow in one module and makes what is logged testable without a
tracking store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class RunLog:
    """Everything to log into one run.

    Attributes
    ----------
    metrics : dict of str to float
        Metric name -> value (non-finite values are never logged).
    tags : dict of str to str
        Run tags.
    params : dict of str to Any
        Run params (flattened names).
    tables : dict of str to DataFrame
        Artifact path (``kpis/monthly.csv``) -> frame, written as CSV.
    texts : dict of str to str
        Artifact path -> text content (JSON, YAML, Markdown).
    files : dict of str to list of Path
        Artifact folder -> existing files to copy there (plots).
    """

    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)

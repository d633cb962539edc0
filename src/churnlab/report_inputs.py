"""What the HTML report shows: :class:`ReportInputs`, its checks, and the shared vocabulary.

The bottom of the report modules (:mod:`churnlab.report` renders; the ``report_*`` modules draw
its sections); it imports nothing from them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from churnlab.errors import ChurnlabError

ColType = Literal["text", "int", "num", "money", "pct", "points"]

DASH = "\u2014"
TASKS = ("churn", "expansion")
_TASK_LABEL = {"churn": "Churn", "expansion": "Expansion"}


MEASUREMENT_KEYS: tuple[str, ...] = ("campaigns", "warnings", "pending", "data_end", "level")
"""What ``ReportInputs.measurement`` holds (``campaigns`` required, the others optional)."""


class ReportError(ChurnlabError):
    """The report cannot be rendered or written from the given inputs."""


# eq=False: field-wise equality (and hashing) of DataFrames is ambiguous; compare by identity.
@dataclass(frozen=True, eq=False)
class ReportInputs:
    """Everything the report shows; every piece but the title and the dates is optional.

    A missing piece (``None``) renders as a note in its section. Frames keep the column names
    of the stages that produce them (``churnlab score``, ``churnlab.kpis.compute``, training).

    Attributes
    ----------
    title : str
        Page title.
    as_of : date or datetime
        The scoring date the lists refer to.
    generated_at : datetime
        When the report was produced (shown in the header, UTC if naive).
    headline : mapping, optional
        ``accounts_scored``, ``total_arr``, ``revenue_at_risk``, ``expected_expansion_value``
        and ``by_band``: DataFrame(risk_band, accounts, arr, revenue_at_risk, mean_probability).
    kpis : DataFrame, optional
        The ``"monthly"`` frame of ``churnlab.kpis.compute``: indexed by period start, with a
        ``partial`` column and one column per metric (NaN where a metric does not apply).
    kpi_catalogue : DataFrame, optional
        The metric catalogue: name, kind ('outcome' or 'activity'), applicable, unit,
        description (and ``applies_to`` when present, used to explain absent metrics).
    models : mapping, optional
        Per task (``"churn"``, ``"expansion"``): name, version, run_id, test_cutoff, metrics
        (``test.roc_auc``, ``baseline_logreg.roc_auc``, ...) and calibration:
        DataFrame(bin, mean_predicted, realised, rows).
    predicted_vs_realised : DataFrame, optional
        Past cutoffs: cutoff, role, rows, mean_predicted, realised_rate.
    drift : DataFrame, optional
        feature, description, psi (sorted by psi, largest first).
    drift_threshold : float
        PSI above which a feature is flagged as drifted.
    drivers : mapping, optional
        Per task: DataFrame(feature, description, group, mean_abs_shap).
    at_risk : DataFrame, optional
        account_id, attributes (name, segment, owner, ...), churn_probability, risk_band, arr,
        revenue_at_risk, reason_1..reason_3, reason_1_points..reason_3_points, driver_group,
        play, rank.
    expansion : DataFrame, optional
        account_id, attributes, expansion_probability, expected_expansion_value,
        reason_1..reason_3, offer, rank.
    audiences : DataFrame, optional
        Per campaign: campaign, kind, contacts, holdout, cost, expected_value,
        expected_net_value.
    audience_rows : DataFrame, optional
        The audience members (account_id, campaign, holdout, ...), shown as a paged table.
    measurement : mapping, optional
        What ``churnlab measure`` found: ``campaigns`` (its campaigns table: campaign_id,
        kind, primary_outcome, n_treated, n_holdout and per outcome ``<o>_treated``,
        ``<o>_holdout``, ``<o>_diff``, ``<o>_ci_low``, ``<o>_ci_high``, ``<o>_verdict``,
        incremental ARR, cost, warning), ``warnings`` and ``pending`` (its tables), ``data_end``
        and ``level``. None renders as a note on how to measure.
    notes : sequence of str
        Warnings shown at the top of the page.
    currency : str
        Prefix for money values (e.g. ``"$"``); empty by default.
    page_size : int
        Rows per page of the large tables.
    """

    title: str
    as_of: dt.date | dt.datetime | pd.Timestamp
    generated_at: dt.datetime | pd.Timestamp
    headline: Mapping[str, Any] | None = None
    kpis: pd.DataFrame | None = None
    kpi_catalogue: pd.DataFrame | None = None
    models: Mapping[str, Mapping[str, Any]] | None = None
    predicted_vs_realised: pd.DataFrame | None = None
    drift: pd.DataFrame | None = None
    drift_threshold: float = 0.2
    drivers: Mapping[str, pd.DataFrame] | None = None
    at_risk: pd.DataFrame | None = None
    expansion: pd.DataFrame | None = None
    audiences: pd.DataFrame | None = None
    audience_rows: pd.DataFrame | None = None
    measurement: Mapping[str, Any] | None = None
    notes: Sequence[str] = ()
    currency: str = ""
    page_size: int = 50

    def __post_init__(self) -> None:
        if not str(self.title).strip():
            raise ReportError("ReportInputs.title is empty: give the report a title")
        if not (isinstance(self.page_size, int) and self.page_size >= 1):
            raise ReportError(
                f"ReportInputs.page_size must be a positive integer, got {self.page_size!r}"
            )
        if not (isinstance(self.drift_threshold, int | float) and self.drift_threshold > 0):
            raise ReportError(
                "ReportInputs.drift_threshold must be a positive number, got "
                f"{self.drift_threshold!r}"
            )
        for name in (
            "kpis",
            "kpi_catalogue",
            "predicted_vs_realised",
            "drift",
            "at_risk",
            "expansion",
            "audiences",
            "audience_rows",
        ):
            value = getattr(self, name)
            if value is not None and not isinstance(value, pd.DataFrame):
                raise ReportError(
                    f"ReportInputs.{name} must be a pandas DataFrame or None, got "
                    f"{type(value).__name__}"
                )
        for name in ("headline", "models", "drivers", "measurement"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise ReportError(
                    f"ReportInputs.{name} must be a mapping or None, got {type(value).__name__}"
                )
        if isinstance(self.notes, str):
            raise ReportError("ReportInputs.notes must be a list of strings, not one string")
        if self.measurement is not None:
            check_measurement(self.measurement)


def check_measurement(m: Mapping[str, Any]) -> None:
    """Refuse a measurement the section cannot show (unknown keys, a campaigns table missing).

    Raises
    ------
    ReportError
        What is wrong, and what the mapping should hold.
    """
    unknown = sorted(set(m) - set(MEASUREMENT_KEYS))
    if unknown:
        raise ReportError(
            f"ReportInputs.measurement has unknown keys {unknown}; use "
            f"{', '.join(MEASUREMENT_KEYS)}"
        )
    for key in ("campaigns", "warnings", "pending"):
        value = m.get(key)
        if value is not None and not isinstance(value, pd.DataFrame):
            raise ReportError(
                f"ReportInputs.measurement[{key!r}] must be a pandas DataFrame or None, got "
                f"{type(value).__name__}"
            )
    if m.get("campaigns") is None:
        raise ReportError(
            "ReportInputs.measurement needs 'campaigns' (churnlab measure's campaigns table)"
        )

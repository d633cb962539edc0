"""Typed, frozen configuration loaded once from params.yaml.

Every pipeline stage has its own section; the CLI loads the file once with :func:`load_params`
and hands each stage only its own section. Unknown keys and wrong types are rejected with a
message that names the key and the file, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from churnlab.errors import ChurnlabError
from churnlab.schema import TABLES

DEFAULT_PARAMS = Path("params.yaml")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _iso_date(v: Any) -> Any:
    """An ISO date string (quoted in YAML, "2024-01-31") read as the date it names."""
    if isinstance(v, str):
        try:
            return dt.date.fromisoformat(v.strip())
        except ValueError:
            raise ValueError(f"not a date: use YYYY-MM-DD, e.g. 2024-01-31 (got {v!r})") from None
    return v


def _iso_datetime(v: Any) -> Any:
    """An ISO date or date-time string, or a YAML date, read as a (naive UTC) datetime."""
    if isinstance(v, str):
        try:
            v = dt.datetime.fromisoformat(v.strip())
        except ValueError:
            raise ValueError(
                f"not a date-time: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS, e.g. 2024-01-31 "
                f"(got {v!r})"
            ) from None
        if v.tzinfo is not None:
            v = v.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
        return dt.datetime(v.year, v.month, v.day)
    return v


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]
"""A date; in params.yaml plain (2024-01-31) or quoted ("2024-01-31")."""
IsoDateTime = Annotated[dt.datetime, BeforeValidator(_iso_datetime)]
"""A date-time (UTC); a date means its midnight."""


class _Section(BaseModel):
    """Base for every params section: frozen, strict, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataParams(_Section):
    """Where the contract tables come from and how user columns map onto the contract."""

    source: str = "data/synthetic"
    """A folder of <table>.parquet / <table>.csv files, a DuckDB file, or a SQLAlchemy URL.

    ``${NAME}`` is replaced by the environment variable NAME when params load, so a password
    need not sit in the file (``postgresql://analytics:${PGPASSWORD}@db/crm``)."""
    as_of: IsoDateTime | None = None
    """The data's as-of time (UTC). Default: the end of the day of the last row of the tables
    that define the labels (subscriptions, orders)."""
    encoding: Literal["utf-8", "latin-1", "utf-16"] = "utf-8"
    """Text encoding of CSV files (what DuckDB's CSV reader supports without extensions)."""
    coverage_gap_days: int = Field(31, ge=0)
    """Warn when tables' last rows are further apart than this many days."""
    subscription_end: Literal["auto", "exclusive", "inclusive"] = "auto"
    """How ``subscriptions.end_at`` is meant: ``exclusive`` (the first moment not covered, the
    contract's meaning), ``inclusive`` (the last day of service, as many billing exports write
    it: one day is added) or ``auto`` (inclusive when most renewals start exactly one day after
    the previous row ends, see :func:`churnlab.coverage.end_is_inclusive`)."""
    tables: dict[str, str] = Field(default_factory=dict)
    """Contract table name -> the user's table name (database sources)."""
    columns: dict[str, dict[str, str]] = Field(default_factory=dict)
    """Contract table -> {contract column: user column}."""

    @field_validator("encoding", mode="before")
    @classmethod
    def _encoding_alias(cls, v: Any) -> Any:
        aliases = {"utf8": "utf-8", "latin1": "latin-1", "iso-8859-1": "latin-1", "utf16": "utf-16"}
        return aliases.get(v.lower(), v.lower()) if isinstance(v, str) else v

    @field_validator("source", mode="before")
    @classmethod
    def _environment(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v

        def value(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise ValueError(
                    f"refers to the environment variable {name}, which is not set: "
                    f"export {name}=... before running churnlab"
                )
            return os.environ[name]

        return _ENV_REF.sub(value, v)


class SynthParams(_Section):
    """The synthetic B2B SaaS world."""

    accounts: int = Field(10000, gt=0)
    months: int = Field(24, gt=0)
    seed: int = 42
    start: IsoDate = dt.date(2024, 1, 1)
    out: str = "data/synthetic"
    oracle_draws: int = Field(32, gt=0)
    """Monte Carlo paths per account and cutoff for the oracle probabilities."""
    campaigns: bool = False
    """Also run past retention and upsell campaigns with randomised holdouts and planted,
    heterogeneous effects: writes treatments.parquet and oracle/treatment_effects.parquet."""


class ImportParams(_Section):
    """Real-data importers."""

    online_retail_out: str = "data/online_retail"
    cdnow_out: str = "data/cdnow"


_HORIZON = re.compile(r"^\s*(\d+)\s*(day|days|d|week|weeks|w|month|months|m)\s*$", re.IGNORECASE)
_UNITS = {"d": "day", "w": "week", "m": "month"}


@dataclass(frozen=True)
class Horizon:
    """A label window length: whole days, weeks or calendar months.

    Calendar months follow the calendar (a cutoff on the 1st ends on the 1st of a later month),
    so that churn within "1 month" of a monthly cutoff is the KPIs' churn of that month.
    """

    n: int
    unit: Literal["day", "week", "month"]

    @property
    def days(self) -> int:
        """Nominal length in days (calendar months count as 30.44 days)."""
        per = {"day": 1.0, "week": 7.0, "month": 365.25 / 12}[self.unit]
        return round(self.n * per)

    @property
    def label(self) -> str:
        """``90 days``, ``1 month``, ``3 months``."""
        return f"{self.n} {self.unit}{'' if self.n == 1 else 's'}"

    def add(self, t: dt.datetime, sign: int = 1) -> dt.datetime:
        """``t`` plus (or minus) the horizon."""
        if self.unit == "month":
            import pandas as pd

            return (pd.Timestamp(t) + sign * pd.DateOffset(months=self.n)).to_pydatetime()
        return t + sign * dt.timedelta(days=self.n * (7 if self.unit == "week" else 1))

    def sql(self, expr: str, sign: str = "+") -> str:
        """SQL for ``expr`` plus (or minus) the horizon (DuckDB interval arithmetic)."""
        unit = {"day": "DAY", "week": "WEEK", "month": "MONTH"}[self.unit]
        return f"({expr} {sign} INTERVAL {self.n} {unit})"


def parse_horizon(value: int | str) -> Horizon:
    """``90`` (days), ``"90 days"``, ``"13 weeks"``, ``"1 month"``, ``"3 months"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"a horizon must be positive (got {value})")
        return Horizon(value, "day")
    m = _HORIZON.match(str(value))
    if not m or int(m.group(1)) <= 0:
        raise ValueError(
            f'not a horizon: use whole days, weeks or months, e.g. 90, "90 days", "1 month", '
            f'"3 months" (got {value!r})'
        )
    unit = m.group(2).lower().rstrip("s")
    return Horizon(int(m.group(1)), _UNITS.get(unit, unit))  # type: ignore[arg-type]


LONG_WINDOW_TABLES = ("orders",)
"""Contract tables with features over ``dataset.long_windows`` (the feature specs declare them
with windows ``long`` / ``long_pairs``; a test keeps the two in step)."""


def _default_long_windows() -> dict[str, tuple[int, ...]]:
    return {"orders": (180, 365)}


class DatasetParams(_Section):
    """Point-in-time training set: spine, feature windows, labels."""

    mode: Literal["auto", "contractual", "orders"] = "auto"
    cutoff_start: IsoDate | None = None
    cutoff_end: IsoDate | None = None
    cutoff_freq: Literal["monthly", "weekly"] = "monthly"
    windows: tuple[int, ...] = (7, 30, 90)
    long_windows: dict[str, tuple[int, ...]] = Field(default_factory=_default_long_windows)
    """Contract table -> extra, longer feature windows in days for its windowed features
    (orders: order counts, spend and order days; purchases are rarer than product events).
    Each must be longer than the largest of ``windows``; they do not move the default first
    cutoff, which keeps a full largest window of ``windows`` (at early cutoffs a long window
    sees less history, as for a young account). Tables: :data:`LONG_WINDOW_TABLES`."""
    horizon_days: int = Field(90, gt=0)
    """Label window in days (used when ``horizon`` is not set)."""
    horizon: int | str | None = None
    """Label window as days, weeks or calendar months (``"1 month"``, ``"3 months"``); overrides
    ``horizon_days``."""
    lookback_days: int = Field(90, gt=0)
    expansion_min_fraction: float = Field(0.1, ge=0)
    min_positives: int = Field(20, ge=0)
    min_negatives: int = Field(20, ge=0)
    max_event_types: int = Field(20, gt=0)
    """Event types counted as their own features (the most frequent ones)."""
    max_category_levels: int = Field(50, gt=0)
    """Text account attributes with more distinct values are skipped (identifier-like)."""
    engine: Literal["duckdb", "spark"] = "duckdb"
    """Which engine builds the training set: ``duckdb`` (embedded, the default) or ``spark``
    (scale-out: the same feature, spine and label definitions compiled to Apache Spark, with
    the session of the ``spark`` section; needs ``pip install 'churnlab[spark]'`` and Java 17+)."""
    out: str = "data/dataset"

    @field_validator("windows", mode="before")
    @classmethod
    def _list_to_tuple(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    @field_validator("long_windows", mode="before")
    @classmethod
    def _lists_to_tuples(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        for table, ws in v.items():
            if isinstance(ws, int | float | str):  # a single number where a list belongs
                raise ValueError(f"{table}: give a list of days, e.g. [180, 365] (got {ws!r})")
        return {k: tuple(w) if isinstance(w, list) else w for k, w in v.items()}

    @field_validator("long_windows")
    @classmethod
    def _long_window_tables(cls, v: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        for table, ws in v.items():
            if table not in LONG_WINDOW_TABLES:
                known = table in TABLES
                what = "has no long-window features" if known else "is not a contract table"
                raise ValueError(
                    f"{table!r} {what}: long windows apply to "
                    f"{', '.join(LONG_WINDOW_TABLES)} (e.g. {{orders: [180, 365]}})"
                )
            if any(w <= 0 for w in ws):
                raise ValueError(
                    f"{table}: long windows must be positive whole days (got {list(ws)})"
                )
        return {table: tuple(sorted(set(ws))) for table, ws in v.items()}

    @field_validator("windows")
    @classmethod
    def _positive_windows(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or min(v) <= 0:
            raise ValueError(
                f"feature windows must be positive whole days, e.g. [7, 30, 90] (got {list(v)})"
            )
        return v

    @property
    def window(self) -> Horizon:
        """The label window: ``horizon`` if set, else ``horizon_days`` days."""
        return parse_horizon(self.horizon if self.horizon is not None else self.horizon_days)

    @field_validator("horizon")
    @classmethod
    def _horizon_parses(cls, v: int | str | None) -> int | str | None:
        if v is not None:
            parse_horizon(v)
        return v

    @model_validator(mode="after")
    def _long_windows_beyond_windows(self) -> DatasetParams:
        largest = max(self.windows)
        for table, ws in self.long_windows.items():
            short = [w for w in ws if w <= largest]
            if short:
                raise ValueError(
                    f"long_windows.{table}: {short} is not longer than the largest of "
                    f"dataset.windows ({largest} days): set dataset.long_windows to windows "
                    f"above {largest} days, e.g. {{{table}: [{2 * largest}]}}, or to {{}} for none"
                )
        return self

    @model_validator(mode="after")
    def _cutoffs_in_order(self) -> DatasetParams:
        if self.cutoff_start and self.cutoff_end and self.cutoff_start > self.cutoff_end:
            raise ValueError(
                f"cutoff_start {self.cutoff_start} is after cutoff_end {self.cutoff_end}: "
                "swap them or leave one out"
            )
        return self


class TrainParams(_Section):
    """LightGBM models, temporal split, calibration, promotion."""

    lightgbm: dict[str, Any] = Field(
        default_factory=lambda: {
            "objective": "binary",
            "learning_rate": 0.03,
            "num_leaves": 15,
            "max_depth": 5,
            "min_child_samples": 100,
            "feature_fraction": 0.3,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 10.0,
            "n_estimators": 1000,
            "verbose": -1,
            "seed": 7,
            "num_threads": 2,
        }
    )
    shapes: tuple[dict[str, Any], ...] = Field(
        default_factory=lambda: ({}, {"num_leaves": 7, "max_depth": 3, "min_child_samples": 200})
    )
    """Tree shapes tried on top of ``lightgbm`` (each a dict of LightGBM settings, ``{}`` being
    ``lightgbm`` as it is); the one with the lowest cross-fitted, calibrated validation log loss
    is kept. ``[{}]`` fits ``lightgbm`` alone."""
    early_stopping_rounds: int = Field(50, gt=0)
    calibration: Literal["auto", "isotonic", "sigmoid"] = "auto"
    season: Literal["auto", "on", "off"] = "auto"
    """Start from the calendar month's base rate (auto: unless clearly worse on the validation
    cutoff, by more than 2 standard errors of its log loss)."""
    tasks: tuple[Literal["churn", "expansion"], ...] = ("churn", "expansion")
    promotion_metric: str = "roc_auc"
    promotion_tolerance: float = Field(0.005, ge=0)
    backtest_folds: int = Field(3, gt=0)
    purge: bool = True
    """Train/validation cutoffs must have label windows that end by the next split's cutoff."""
    refit: bool = True
    """Once the trees, shape, season and calibrator are chosen, fit the booster again on the
    training and validation rows (the most recent labelled cutoff), with as many trees per row;
    the logistic regression baseline gets the same treatment."""
    out: str = "models"

    @field_validator("tasks", "shapes", mode="before")
    @classmethod
    def _list_to_tuple(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    @field_validator("shapes")
    @classmethod
    def _some_shape(cls, v: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        if not v:
            raise ValueError("list at least one tree shape; [{}] fits train.lightgbm as it is")
        return v


class ExplainParams(_Section):
    """SHAP explanations and per-account reasons."""

    top_k: int = Field(3, gt=0)
    sample_for_plots: int = Field(5000, gt=0)


class CampaignParams(_Section):
    """One campaign the audiences can be chosen for (see :class:`churnlab.audiences.Campaign`)."""

    name: str
    kind: Literal["retention", "upsell", "advocacy", "nurture"]
    cost_per_contact: float = Field(ge=0)
    rate: float = Field(ge=0, le=1)
    """Retention: the share of the revenue at risk a contact saves; others: response rate."""
    value_per_response: float | None = None
    """Advocacy and nurture: what one response is worth (their value is not from a model)."""
    risk_bands: tuple[str, ...] | None = None
    min_churn_probability: float | None = None
    max_churn_probability: float | None = None
    plays: tuple[str, ...] | None = None
    nps_categories: tuple[str, ...] | None = None
    channel: str | None = None
    """How the campaign reaches accounts (csm_call, email, in_app, ...): written to the
    treatments rows and, with ``score --target uplift``, the channel the effect is predicted for."""

    @field_validator("risk_bands", "plays", "nps_categories", mode="before")
    @classmethod
    def _list_to_tuple(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    @field_validator("cost_per_contact", "rate", "value_per_response", mode="before")
    @classmethod
    def _int_to_float(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def _default_campaigns() -> tuple[CampaignParams, ...]:
    return (
        CampaignParams(
            name="csm-save-call",
            kind="retention",
            cost_per_contact=150.0,
            rate=0.25,
            risk_bands=("high", "medium"),
            channel="csm_call",
        ),
        CampaignParams(
            name="training-session",
            kind="retention",
            cost_per_contact=60.0,
            rate=0.15,
            plays=("training / onboarding session", "adoption workshop"),
            channel="csm_call",
        ),
        CampaignParams(
            name="upsell-offer", kind="upsell", cost_per_contact=20.0, rate=0.2, channel="in_app"
        ),
        CampaignParams(
            name="referral-ask",
            kind="advocacy",
            cost_per_contact=5.0,
            rate=0.05,
            value_per_response=500.0,
            risk_bands=("low",),
            nps_categories=("promoter",),
            channel="email",
        ),
    )


DEFAULT_PLAYS = {
    "support": "escalation review",
    "engagement": "training / onboarding session",
    "commercial": "payment outreach",
    "sentiment": "executive call",
    "marketing": "re-engagement email",
    "profile": "account review",
}
"""Driver group of the largest positive reason -> what the CSM does about it."""


class ScoreParams(_Section):
    """Scoring the latest data: at-risk and expansion lists, campaign audiences."""

    risk_bands: dict[str, float] = Field(default_factory=lambda: {"high": 0.35, "medium": 0.15})
    """Band name -> lowest churn probability in it (the rest is ``low``)."""
    plays: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_PLAYS))
    """Driver group -> play; the low seat-use driver gets ``seat_play``."""
    seat_play: str = "adoption workshop"
    """The play when the largest reason is low seat utilisation or few active users."""
    purchase_play: str = "win-back offer"
    """Orders-only data: the play for a commercial reason (there it is the purchase pattern:
    recency, frequency, gaps, spend), instead of ``plays["commercial"]``, which is billing."""
    account_columns: tuple[str, ...] = ("name", "segment", "owner", "csm", "industry", "country")
    """Account attributes copied into the lists when the accounts table has them."""
    expansion_max_churn: float = Field(0.35, ge=0, le=1)
    """Accounts with a higher churn probability belong to the at-risk list, not the expansion
    list."""
    budget: float | None = Field(20000.0, ge=0)
    """Total campaign budget (None: no limit)."""
    holdout_share: float = Field(0.1, ge=0, lt=1)
    campaigns: tuple[CampaignParams, ...] = Field(default_factory=_default_campaigns)
    seed: int = 0
    out: str = "reports/actions"
    top: int = Field(10, gt=0)
    """Rows shown per list in the terminal."""
    drift_warning: float = Field(0.2, gt=0)
    """PSI above which a feature's drift is a warning."""

    @field_validator("account_columns", "campaigns", mode="before")
    @classmethod
    def _list_to_tuple(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    @field_validator("budget", "expansion_max_churn", "holdout_share", mode="before")
    @classmethod
    def _int_to_float(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _bands_in_order(self) -> ScoreParams:
        if not self.risk_bands or any(not 0 < v <= 1 for v in self.risk_bands.values()):
            raise ValueError(
                "risk_bands must map band names to thresholds in (0, 1], e.g. "
                "{high: 0.35, medium: 0.15}"
            )
        names = [c.name for c in self.campaigns]
        if len(set(names)) != len(names):
            raise ValueError(f"campaign names must be unique (got {names})")
        return self


class MeasureParams(_Section):
    """Campaign effects from holdouts (``measure``) and the uplift model (``train-uplift``)."""

    level: float = Field(0.95, gt=0, lt=1)
    """Confidence level of every interval."""
    rate_method: Literal["newcombe", "bootstrap"] = "newcombe"
    mean_method: Literal["welch", "bootstrap"] = "welch"
    n_boot: int = Field(2000, gt=0)
    seed: int = 0
    detectable_diff: float = Field(0.05, gt=0, lt=1)
    """Effect (rate points) the power table plans for."""
    min_holdout: int = Field(30, ge=1)
    """Fewer held-out accounts than this: a too-small warning."""
    min_events: int = Field(5, ge=0)
    """Fewer holdout outcome events (churned or expanded accounts) than this: a warning."""
    out: str = "reports/measure"
    uplift_method: Literal["x", "t"] = "x"
    """X-learner or T-learner."""
    uplift_out: str = "models/uplift"
    """Where ``train-uplift`` writes the model that ``score --target uplift`` reads."""

    @field_validator("level", "detectable_diff", mode="before")
    @classmethod
    def _int_to_float(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


class KpiParams(_Section):
    """Retention KPIs."""

    period: Literal["month", "quarter", "week"] = "month"
    date_from: IsoDate | None = None
    date_to: IsoDate | None = None
    out: str = "reports/kpis"


class TrackingParams(_Section):
    """MLflow tracking store and registry."""

    uri: str | None = None
    """Tracking URI; MLFLOW_TRACKING_URI overrides; default sqlite:///mlflow.db."""
    experiment: str = "churnlab"
    registry_prefix: str = "churnlab"


def _default_spark_conf() -> dict[str, str | int | float | bool]:
    return {"spark.sql.shuffle.partitions": 8}


class SparkParams(_Section):
    """The Spark session of ``dataset.engine: spark`` (:func:`churnlab.spark_engine.session`)."""

    master: str = "local[2]"
    """Spark master URL: ``local[N]`` on one machine, ``yarn``, ``k8s://...``, ``spark://...``."""
    app_name: str = "churnlab"
    conf: dict[str, str | int | float | bool] = Field(default_factory=_default_spark_conf)
    """Spark configuration (``spark.executor.memory``, ``spark.sql.shuffle.partitions``, ...).
    ``spark.sql.session.timeZone`` must stay UTC and ``spark.sql.ansi.enabled`` false: the
    features are defined on UTC days and on SQL that gives NULL, not an error, where DuckDB
    gives NULL."""
    lists_out: str | None = None
    """Where ``churnlab score`` on Spark writes the at-risk and expansion lists as Parquet: any
    path Spark can write (``hdfs://...``, ``s3a://...``), as ``<lists_out>/<as_of>/<list>.parquet``;
    default the as-of folder's ``spark/`` subfolder (``score.out/<as_of>/spark/``)."""

    @model_validator(mode="after")
    def _engine_invariants(self) -> SparkParams:
        fixed = {"spark.sql.session.timeZone": "UTC", "spark.sql.ansi.enabled": "false"}
        for key, want in fixed.items():
            if key in self.conf and str(self.conf[key]).lower() != want.lower():
                raise ValueError(
                    f"conf {key} must be {want} (got {self.conf[key]!r}): churnlab's features "
                    "are defined on UTC days and DuckDB's NULL semantics; remove the key"
                )
        return self


class Params(_Section):
    """All of params.yaml."""

    data: DataParams = Field(default_factory=DataParams)
    synth: SynthParams = Field(default_factory=SynthParams)
    imports: ImportParams = Field(default_factory=ImportParams)
    dataset: DatasetParams = Field(default_factory=DatasetParams)
    spark: SparkParams = Field(default_factory=SparkParams)
    train: TrainParams = Field(default_factory=TrainParams)
    explain: ExplainParams = Field(default_factory=ExplainParams)
    kpis: KpiParams = Field(default_factory=KpiParams)
    score: ScoreParams = Field(default_factory=ScoreParams)
    measure: MeasureParams = Field(default_factory=MeasureParams)
    tracking: TrackingParams = Field(default_factory=TrackingParams)


class ConfigError(ChurnlabError):
    """params.yaml is missing, unreadable or invalid."""


def _describe(err: ValidationError, path: Path) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; the repository's params.yaml lists valid keys)"
        elif e["type"] == "value_error":  # our own checks: the message says what was given
            msg = str(e["msg"]).removeprefix("Value error, ")
        else:
            msg = f"{e['msg']} (got {e.get('input')!r})"
        lines.append(f"{path}: {key}: {msg}")
    return "; ".join(lines)


def parse_params(raw: dict[str, Any] | None, path: Path = DEFAULT_PARAMS) -> Params:
    """Validate a params mapping into frozen typed config.

    Parameters
    ----------
    raw : dict or None
        The parsed YAML mapping (None means all defaults).
    path : Path
        The file it came from, named in error messages.

    Raises
    ------
    ConfigError
        On unknown keys or wrong types, naming each offending key and the file.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    # Strict mode: YAML's own types must match (a quoted "5" is not an int); the per-field
    # validators above accept the two shapes YAML legitimately produces (dates, lists).
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_describe(err, path)) from None


def load_params(path: Path | str | None = None) -> Params:
    """Load params.yaml (or defaults if the default file does not exist).

    Parameters
    ----------
    path : Path or str, optional
        File to read. If None, ``params.yaml`` in the working directory is read when present.
    """
    if path is None:
        path = DEFAULT_PARAMS
        if not path.exists():
            return Params()
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found (pass --params PATH to an existing file)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return parse_params(raw, path)


def flatten(params: BaseModel, prefix: str = "") -> dict[str, Any]:
    """Flatten a params object to dotted keys (for MLflow params)."""
    out: dict[str, Any] = {}
    for key, value in params.model_dump().items():
        _flatten_into(out, f"{prefix}{key}", value)
    return out


def _flatten_into(out: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten_into(out, f"{key}.{k}", v)
    else:
        out[key] = value

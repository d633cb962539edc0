"""The input data contract (DESIGN.md section 3) as data.

Every contract table is described once here: its columns, their DuckDB types, which are required,
which hold event timestamps (checked against the as-of date), and which take enumerated values.
Loading, validation, features and KPIs all read these definitions instead of repeating them.

Conventions
-----------
- ``account_id`` is a string (VARCHAR) in every table.
- Timestamps are naive and mean UTC (``TIMESTAMP``, microsecond precision). Loading converts
  time-zone-aware inputs to UTC.
- Failed payments are product events with ``event_type = 'payment_failed'`` (the contract has no
  payments table); the synthetic world writes them that way and the commercial features count them.
- ``treatments`` (optional) records campaign assignments: one row per account and campaign it was
  assigned to, ``holdout`` (BOOLEAN, never null) true for the randomised control that was not
  contacted. Campaign effects are measured from it after the outcome window.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    """One contract column."""

    name: str
    dtype: str  # DuckDB type: VARCHAR, TIMESTAMP, DOUBLE, INTEGER, BOOLEAN
    required: bool = True
    nullable: bool = False
    event_time: bool = False  # must not be after the data's as-of date
    enum: tuple[str, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True)
class Table:
    """One contract table."""

    name: str
    columns: tuple[Column, ...]
    required: bool = False
    time_column: str | None = None  # the column that places a row in time
    extra_columns_allowed: bool = False  # accounts keep any static attributes
    description: str = ""
    _by_name: dict[str, Column] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({c.name: c for c in self.columns})

    def column(self, name: str) -> Column:
        """The contract column called ``name``."""
        return self._by_name[name]

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Names of the required columns."""
        return tuple(c.name for c in self.columns if c.required)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Names of every contract column, in order."""
        return tuple(c.name for c in self.columns)


ORDER_KINDS = ("new", "renewal", "upsell", "cross_sell", "services", "refund")
UPSELL_KINDS = ("upsell", "cross_sell")
"""Order kinds that are expansion revenue (upsell revenue share, the expansion label)."""
CAMPAIGN_ACTIONS = ("sent", "open", "click", "unsubscribe", "bounce")
TICKET_PRIORITIES = ("low", "normal", "high", "urgent")
FAILED_PAYMENT_EVENT = "payment_failed"

# Vocabulary of the training set and the models, shared by every stage.
TASKS = ("churn", "expansion")
"""The prediction tasks; each is a label column of the training set."""
KEY_COLUMNS = ("account_id", "cutoff")
"""The key of every training and scoring row."""
LABEL_COLUMNS = ("churn", "expansion", "expansion_amount", "mrr", "arr", "labeled")
"""Columns of the training set that are outcomes or revenue, never features."""
TASK_VALUE = {"churn": "arr", "expansion": "expansion_amount"}
"""The money behind each task (what "value captured in the top k%" sums)."""
TASK_WORDS = {"churn": "churn risk", "expansion": "expansion likelihood"}
"""How a task's probability is named in sentences."""
DRIVER_GROUPS = ("engagement", "commercial", "support", "marketing", "sentiment", "profile")
"""Driver groups of features, in display order."""


def sql_list(values: tuple[str, ...]) -> str:
    """A SQL list literal of contract values, e.g. ``('upsell', 'cross_sell')``."""
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


ACCOUNTS = Table(
    "accounts",
    (
        Column("account_id", "VARCHAR"),
        Column("created_at", "TIMESTAMP", event_time=True),
    ),
    required=True,
    time_column="created_at",
    extra_columns_allowed=True,
    description="one row per customer account, with any static attributes",
)
SUBSCRIPTIONS = Table(
    "subscriptions",
    (
        Column("account_id", "VARCHAR"),
        Column("start_at", "TIMESTAMP", event_time=True),
        Column("end_at", "TIMESTAMP", nullable=True),
        Column("mrr", "DOUBLE", min_value=0),
        Column("plan", "VARCHAR", required=False, nullable=True),
        Column("seats", "INTEGER", required=False, nullable=True, min_value=0),
    ),
    time_column="start_at",
    description="contractual revenue: one row per period at one price/plan/seat count",
)
ORDERS = Table(
    "orders",
    (
        Column("account_id", "VARCHAR"),
        Column("ordered_at", "TIMESTAMP", event_time=True),
        Column("amount", "DOUBLE"),
        Column("kind", "VARCHAR", required=False, nullable=True, enum=ORDER_KINDS),
        Column("product", "VARCHAR", required=False, nullable=True),
    ),
    time_column="ordered_at",
    description="purchase history; refunds have kind 'refund' and may be negative",
)
EVENTS = Table(
    "events",
    (
        Column("account_id", "VARCHAR"),
        Column("occurred_at", "TIMESTAMP", event_time=True),
        Column("event_type", "VARCHAR"),
        Column("quantity", "DOUBLE", required=False, nullable=True),
        Column("user_id", "VARCHAR", required=False, nullable=True),
    ),
    time_column="occurred_at",
    description="product usage / engagement",
)
CAMPAIGN_EVENTS = Table(
    "campaign_events",
    (
        Column("account_id", "VARCHAR"),
        Column("occurred_at", "TIMESTAMP", event_time=True),
        Column("campaign_id", "VARCHAR"),
        Column("action", "VARCHAR", enum=CAMPAIGN_ACTIONS),
        Column("campaign_type", "VARCHAR", required=False, nullable=True),
    ),
    time_column="occurred_at",
    description="marketing engagement with customer campaigns",
)
TICKETS = Table(
    "tickets",
    (
        Column("account_id", "VARCHAR"),
        Column("opened_at", "TIMESTAMP", event_time=True),
        Column("closed_at", "TIMESTAMP", required=False, nullable=True),
        Column("priority", "VARCHAR", required=False, nullable=True, enum=TICKET_PRIORITIES),
        Column("csat", "DOUBLE", required=False, nullable=True, min_value=1, max_value=5),
    ),
    time_column="opened_at",
    description="support history",
)
NPS = Table(
    "nps",
    (
        Column("account_id", "VARCHAR"),
        Column("responded_at", "TIMESTAMP", event_time=True),
        Column("score", "DOUBLE", min_value=0, max_value=10),
        Column("comment", "VARCHAR", required=False, nullable=True),
    ),
    time_column="responded_at",
    description="NPS survey responses",
)

TREATMENTS = Table(
    "treatments",
    (
        Column("account_id", "VARCHAR"),
        Column("campaign_id", "VARCHAR"),
        Column("assigned_at", "TIMESTAMP", event_time=True),
        # True: assigned to the campaign's audience but deliberately not contacted (the control).
        Column("holdout", "BOOLEAN"),
        Column("kind", "VARCHAR", required=False, nullable=True),
        Column("channel", "VARCHAR", required=False, nullable=True),
        Column("cost", "DOUBLE", required=False, nullable=True, min_value=0),
    ),
    time_column="assigned_at",
    description="who a campaign was assigned to, and who was held out (randomised control)",
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (ACCOUNTS, SUBSCRIPTIONS, ORDERS, EVENTS, CAMPAIGN_EVENTS, TICKETS, NPS, TREATMENTS)
}
"""All contract tables by name, in dependency order (accounts first)."""

REVENUE_TABLES = ("subscriptions", "orders")
"""At least one of these must be present."""

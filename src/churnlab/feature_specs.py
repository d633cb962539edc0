"""The feature families, declared as data: one table of feature specs per family.

A :class:`Spec` says what one feature (or one feature per window, per event type, per ticket
priority) measures: the source rows it reads, the filter on them, the aggregate, the windows,
its kind, description and driver group. Nothing here knows how it is computed: an engine
(:mod:`churnlab.feature_engine` for DuckDB + NumPy) compiles the expanded specs to queries. The
filters and values are small SQL expressions over one source row, written in the common subset
of SQL that DuckDB and Spark SQL share (comparisons, ``IN``, ``coalesce``, ``abs``, ``CASE``,
``CAST(... AS DECIMAL(38, 6))``); derived features are SQL over other feature columns.

Aggregates (``Spec.agg``):

- ``count``: rows matching ``where`` in the window; ``sum``: the sum of ``value`` over them
  (``decimal=True``: summed exactly at 6 decimals, as money is);
- ``days``: distinct calendar days with a matching row; ``distinct``: distinct non-null values
  of ``value`` (active users);
- ``last``: days since the latest matching row before the cutoff; ``first``: days since the
  earliest one;
- ``gap_sd``: the sample standard deviation of the whole days between consecutive distinct
  calendar days with a matching row (missing with fewer than three such days);
- ``last_day``: the sum of ``value`` over the matching rows of the latest calendar day with one
  before the cutoff;
- ``latest``: ``value`` on the latest row of the source before the cutoff (a source with
  ``per_instant`` aggregates first combines rows sharing an account and instant);
- ``mean``: mean of ``value`` over rows in the window whose value is ``known`` before the
  cutoff; ``mean_days``: mean days from the row's time to ``value`` (a timestamp) over rows
  where that timestamp is before the cutoff;
- ``open``: rows that started before the cutoff and whose ``value`` (an end time) is missing or
  not before it;
- ``age``: days since the account row's time (tenure); ``attribute``: an account column, hidden
  before the account row exists;
- ``derived``: ``value`` is SQL over other features of the same row.

Windows (``Spec.windows``): ``each`` window of ``dataset.windows``, only the largest (``max``),
``pairs`` of consecutive windows (trends), ``long`` (each window and the source table's
``dataset.long_windows``), ``long_pairs`` (consecutive pairs of those), or ``none`` (point in
time, or lifetime for counts, sums and days).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from churnlab.errors import ChurnlabError
from churnlab.manifest import Feature
from churnlab.schema import FAILED_PAYMENT_EVENT, TICKET_PRIORITIES, UPSELL_KINDS, sql_list


class FeatureError(ChurnlabError):
    """Features cannot be computed for the spine, params or data given."""


EACH, MAX, PAIRS, NONE = "each", "max", "pairs", "none"
LONG, LONG_PAIRS = "long", "long_pairs"
WINDOWS = (EACH, MAX, PAIRS, NONE, LONG, LONG_PAIRS)
DAILY = ("first", "gap_sd", "last_day")
"""Aggregates over a table's distinct (account, calendar day) pairs, over its whole history."""
BUCKETED = ("count", "sum", "days", "last", *DAILY)
"""Aggregates over rows bucketed by day (windows, lifetime totals, latest time)."""
AGGS = (*BUCKETED, "distinct", "latest", "mean", "mean_days", "open", "age", "attribute", "derived")
NPS_CATEGORIES = ("detractor", "passive", "promoter")


@dataclass(frozen=True)
class Source:
    """Rows a spec reads: a contract table (or the subscription timeline) and its time.

    Attributes
    ----------
    name : str
        Key the specs refer to.
    table : str
        The contract table the rows come from (``Feature.table``).
    time : str
        When a row becomes known (SQL over the row); only rows with ``time < cutoff`` count.
    relation : str or None
        What to read: ``None`` for the table itself, ``"steps"`` for the subscription
        timeline (:func:`churnlab.timeline.subscription_steps`).
    where : str or None
        Rows kept before anything else (e.g. rated tickets only).
    per_instant : dict
        Column -> aggregate over the rows of one account at one instant, for ``latest``
        sources (several NPS responses at the same time count as their mean).
    previous : tuple of str
        Columns whose value on the previous instant is also kept, as ``prev_<column>``.
    """

    name: str
    table: str
    time: str
    relation: str | None = None
    where: str | None = None
    per_instant: dict[str, str] = field(default_factory=dict)
    previous: tuple[str, ...] = ()


@dataclass(frozen=True)
class Spec:
    """One row of a family table: a feature, or one per window / event type / priority.

    ``name``, ``description``, ``measure``, ``where`` and ``value`` are templates: ``{w}``
    (the window), ``{a}``, ``{b}``, ``{span}`` (a pair of windows and the days between them),
    ``{type}``, ``{slug}``, ``{type_sql}`` (an event type, its column-safe form, its SQL
    literal), ``{p}`` (a ticket priority), ``{column}`` and ``{label}`` (an account column's
    feature name and words). ``join`` repeats ``value`` for every event type and adds them up
    (``0`` without types); ``levels`` names the category levels the caller resolved.
    """

    name: str
    description: str
    group: str
    agg: str
    source: str
    where: str | None = None
    value: str | None = None
    windows: str = NONE
    kind: str = "count"
    measure: str | None = None
    fill_zero: bool = False
    decimal: bool = False
    known: str | None = None
    dtype: str = "float64"
    categories: tuple[str, ...] | None = None
    each: str | None = None  # "event_type" | "priority" | "column"
    join: str | None = None  # "event_type": value repeated per type, joined with " + "
    levels: str | None = None  # key of the category levels in Context.categories
    needs: tuple[str, ...] = ()  # "table.column" that must have values

    def __post_init__(self) -> None:
        if self.agg not in AGGS:
            raise ValueError(f"spec {self.name}: unknown aggregate {self.agg!r}")
        if self.windows not in WINDOWS:
            raise ValueError(f"spec {self.name}: unknown windows {self.windows!r}")


@dataclass(frozen=True)
class Block:
    """Specs expanded together: windows (or pairs) outermost when ``by_window``, else per spec."""

    specs: tuple[Spec, ...]
    by_window: bool = True


@dataclass(frozen=True)
class Family:
    """A feature family: its name and its table of specs, in output order."""

    name: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Planned:
    """An expanded spec: the feature record and what the engine computes for it."""

    feature: Feature
    spec: Spec
    source: Source
    window: int | None
    where: str | None
    value: str | None


@dataclass(frozen=True)
class Account:
    """An account attribute column usable as a profile feature."""

    column: str
    name: str
    dtype: str  # "category" or "float64"
    levels: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Context:
    """Facts about the data the expansion depends on (resolved by the caller, engine-side)."""

    windows: tuple[int, ...]
    tables: frozenset[str]
    has_values: frozenset[str]  # "table.column" with values before the last cutoff
    event_types: tuple[str, ...]
    slugs: dict[str, str]
    categories: dict[str, tuple[str, ...]]  # levels of categorical features (plan)
    account_columns: tuple[Account, ...] = ()
    long_windows: dict[str, tuple[int, ...]] = field(default_factory=dict)  # per table


# --------------------------------------------------------------------------------------------
# Sources and families
# --------------------------------------------------------------------------------------------

USAGE = f"event_type <> '{FAILED_PAYMENT_EVENT}'"
REFUND = "coalesce(kind, '') = 'refund'"
NOT_REFUND = f"NOT {REFUND}"
KNOWN_AT = "greatest(opened_at, coalesce(closed_at, opened_at))"
"""CSAT is given when a ticket closes: known from closed_at (opened_at if never closed)."""
_RATIO = "CASE WHEN {den} > 0 THEN CAST({num} AS DOUBLE) / {den} END"
_TREND = (
    "CASE WHEN {col}_{b}d - {col}_{a}d > 0 THEN ({col}_{a}d / {a}) / "
    "(({col}_{b}d - {col}_{a}d) / {span}) - 1 END"
)
_MEAN_GAP = (
    "CASE WHEN order_days_lifetime >= 2 THEN (days_since_first_order - days_since_last_order) / "
    "(order_days_lifetime - 1) END"
)
"""Mean days between consecutive order days: first to last order over the gaps between them."""


def ratio(num: str, den: str) -> str:
    """SQL for ``num / den`` as a double, missing when ``den`` is not positive."""
    return _RATIO.format(num=num, den=den)


SOURCES = {
    s.name: s
    for s in (
        Source("events", "events", "occurred_at"),
        Source("accounts", "accounts", "created_at"),
        Source("steps", "subscriptions", "step_at", relation="steps"),
        Source(
            "plans",
            "subscriptions",
            "start_at",
            where="plan IS NOT NULL",
            # rows starting at the same instant resolve to the higher MRR, then the plan name
            per_instant={"plan": "first(plan ORDER BY mrr DESC, plan)"},
        ),
        Source("orders", "orders", "ordered_at"),
        Source("tickets", "tickets", "opened_at"),
        Source(
            "ratings",
            "tickets",
            KNOWN_AT,
            where="csat IS NOT NULL",
            per_instant={"csat": "CAST(avg(CAST(csat AS DECIMAL(18, 6))) AS DOUBLE)"},
        ),
        Source("campaigns", "campaign_events", "occurred_at"),
        Source(
            "responses",
            "nps",
            "responded_at",
            per_instant={"score": "CAST(avg(CAST(score AS DECIMAL(18, 6))) AS DOUBLE)"},
            previous=("score",),
        ),
    )
}

_E, _C = "engagement", "commercial"
ENGAGEMENT = Family(
    "engagement",
    (
        Block(
            (
                Spec("events_{w}d", "product events in the last {w} days", _E, "count", "events",
                     USAGE, windows=EACH, measure="events", fill_zero=True),
                Spec("events_{slug}_{w}d", "{type} events in the last {w} days", _E, "count",
                     "events", "event_type = {type_sql}", windows=EACH, measure="events",
                     fill_zero=True, each="event_type"),
                Spec("active_days_{w}d", "days with product activity in the last {w} days", _E,
                     "days", "events", USAGE, windows=EACH, measure="active_days",
                     fill_zero=True),
                Spec("event_quantity_{w}d",
                     "units of product use (summed event quantity) in the last {w} days", _E,
                     "sum", "events", USAGE, "quantity", windows=EACH, kind="amount",
                     measure="event_quantity", fill_zero=True, needs=("events.quantity",)),
            )
        ),
        Block(
            (
                Spec("failed_payments_{w}d", "failed payments in the last {w} days", _C, "count",
                     "events", f"event_type = '{FAILED_PAYMENT_EVENT}'", windows=EACH,
                     measure="failed_payments", fill_zero=True),
            )
        ),
        Block(
            (
                Spec("days_since_last_event", "days since the last product event", _E, "last",
                     "events", USAGE, kind="days", measure="days_since_last_event"),
            )
        ),
        Block(
            (
                Spec("active_users_{w}d", "active users in the last {w} days", _E, "distinct",
                     "events", USAGE, "user_id", windows=EACH, measure="active_users",
                     fill_zero=True, needs=("events.user_id",)),
            )
        ),
        Block(
            (
                Spec("quantity_per_event_{w}d",
                     "units of product use per event in the last {w} days", _E, "derived",
                     "events", value=ratio("event_quantity_{w}d", "events_{w}d"),
                     windows=EACH, kind="value", measure="quantity_per_event",
                     needs=("events.quantity",)),
                Spec("event_types_{w}d",
                     "distinct product features (event types) used in the last {w} days", _E,
                     "derived", "events", value="(events_{slug}_{w}d > 0)::INTEGER",
                     windows=EACH, measure="event_types", join="event_type"),
            )
        ),
        Block(
            (
                Spec("events_trend_{a}d",
                     "product events per day in the last {a} days against the previous {span} days",
                     _E, "derived", "events", value=_TREND.replace("{col}", "events"),
                     windows=PAIRS, kind="trend", measure="events_trend"),
                Spec("events_{slug}_trend_{a}d",
                     "{type} events per day in the last {a} days against the previous {span} days",
                     _E, "derived", "events", value=_TREND.replace("{col}", "events_{slug}"),
                     windows=PAIRS, kind="trend", measure="events_trend", each="event_type"),
            )
        ),
        Block(
            (
                Spec("events_per_active_user_{w}d",
                     "product events per active user in the last {w} days", _E, "derived",
                     "events", value=ratio("events_{w}d", "active_users_{w}d"), windows=EACH,
                     kind="value", measure="events_per_active_user", needs=("events.user_id",)),
            )
        ),
        Block(
            (
                Spec("seat_utilisation_{w}d",
                     "share of paid seats used by active users in the last {w} days", _E,
                     "derived", "events", value=ratio("active_users_{w}d", "seats"),
                     windows=EACH, kind="ratio", measure="seat_utilisation",
                     needs=("events.user_id", "subscriptions.seats")),
            )
        ),
    ),
)  # fmt: skip

COMMERCIAL = Family(
    "commercial",
    (
        Block((Spec("tenure_days", "days since the account was created", _C, "age", "accounts",
                    kind="days"),)),
        Block(
            (
                Spec("mrr_change_{w}d", "change in MRR over the last {w} days", _C, "sum",
                     "steps", value="dm", windows=EACH, kind="amount", measure="mrr_change",
                     fill_zero=True, decimal=True),
                # an upgrade/downgrade changes MRR of a paying account without ending it
                Spec("upgrades_{w}d", "subscription upgrades in the last {w} days", _C, "count",
                     "steps", "dm > 0 AND mrr_after - dm > 0", windows=EACH, measure="upgrades",
                     fill_zero=True),
                Spec("downgrades_{w}d", "subscription downgrades in the last {w} days", _C,
                     "count", "steps", "dm < 0 AND mrr_after > 0", windows=EACH,
                     measure="downgrades", fill_zero=True),
            )
        ),
        Block(
            (
                Spec("mrr_current", "MRR just before the cutoff", _C, "latest", "steps",
                     value="mrr_after", kind="amount", fill_zero=True),
                Spec("seats", "paid seats just before the cutoff", _C, "latest", "steps",
                     value="seats_after", kind="value", fill_zero=True,
                     needs=("subscriptions.seats",)),
                Spec("plan", "subscription plan", _C, "latest", "plans", value="plan",
                     kind="category", dtype="category", levels="plan",
                     needs=("subscriptions.plan",)),
            ),
            by_window=False,
        ),
        Block(
            (
                Spec("orders_{w}d", "orders in the last {w} days", _C, "count", "orders",
                     NOT_REFUND, windows=LONG, measure="orders", fill_zero=True),
                Spec("spend_{w}d", "order spend in the last {w} days", _C, "sum", "orders",
                     NOT_REFUND, "CAST(amount AS DECIMAL(38, 6))", windows=LONG, kind="amount",
                     measure="spend", fill_zero=True, decimal=True),
                Spec("order_days_{w}d", "days with an order in the last {w} days", _C, "days",
                     "orders", NOT_REFUND, windows=LONG, measure="order_days", fill_zero=True),
            )
        ),
        Block(
            (
                Spec("refunds_{w}d", "refunds in the last {w} days", _C, "count", "orders",
                     REFUND, windows=MAX, measure="refunds", fill_zero=True),
                Spec("refund_amount_{w}d", "amount refunded in the last {w} days", _C, "sum",
                     "orders", REFUND, "abs(CAST(amount AS DECIMAL(38, 6)))", windows=MAX,
                     kind="amount", measure="refund_amount", fill_zero=True, decimal=True),
                Spec("upsell_orders_{w}d", "upsell and cross-sell orders in the last {w} days",
                     _C, "count", "orders", f"kind IN {sql_list(UPSELL_KINDS)}", windows=MAX,
                     measure="upsell_orders", fill_zero=True),
                Spec("orders_lifetime", "orders placed since the account started", _C, "count",
                     "orders", NOT_REFUND, fill_zero=True),
                Spec("spend_lifetime", "total order spend since the account started", _C, "sum",
                     "orders", NOT_REFUND, "CAST(amount AS DECIMAL(38, 6))", kind="amount",
                     fill_zero=True, decimal=True),
                Spec("days_since_last_order", "days since the last order", _C, "last", "orders",
                     NOT_REFUND, kind="days", measure="days_since_last_order"),
                Spec("avg_order_value_{w}d", "average order value in the last {w} days", _C,
                     "derived", "orders", value=ratio("spend_{w}d", "orders_{w}d"), windows=MAX,
                     kind="amount", measure="avg_order_value"),
            ),
            by_window=False,
        ),
        # purchase cadence: recency, frequency, monetary value, tenure, gaps between order days
        Block(
            (
                Spec("order_days_lifetime", "days with an order since the account started", _C,
                     "days", "orders", NOT_REFUND, measure="order_days", fill_zero=True),
                Spec("days_since_first_order", "days since the first order", _C, "first",
                     "orders", NOT_REFUND, kind="days", measure="days_since_first_order"),
                Spec("mean_order_value_lifetime", "average order value since the account started",
                     _C, "derived", "orders", value=ratio("spend_lifetime", "orders_lifetime"),
                     kind="amount", measure="avg_order_value"),
                # a day, not an instant: the unit the gaps and order days count in (an invoice
                # split over several instants of a day is one purchase occasion)
                Spec("last_order_value", "spend on the last day with an order", _C, "last_day",
                     "orders", NOT_REFUND, "CAST(amount AS DECIMAL(38, 6))", kind="amount",
                     measure="last_order_value", decimal=True),
                Spec("mean_gap_days", "mean days between consecutive order days", _C, "derived",
                     "orders", value=_MEAN_GAP, kind="days", measure="mean_gap_days"),
                Spec("gap_spread_days",
                     "standard deviation of the days between consecutive order days", _C,
                     "gap_sd", "orders", NOT_REFUND, kind="days", measure="gap_spread_days"),
                Spec("overdue_ratio",
                     "days since the last order relative to the mean gap between order days", _C,
                     "derived", "orders",
                     value="CASE WHEN mean_gap_days > 0 THEN days_since_last_order / "
                     "mean_gap_days END", kind="value", measure="overdue_ratio"),
            ),
            by_window=False,
        ),
        Block(
            (
                Spec("spend_trend_{a}d",
                     "order spend per day in the last {a} days against the previous {span} days",
                     _C, "derived", "orders", value=_TREND.replace("{col}", "spend"),
                     windows=LONG_PAIRS, kind="trend", measure="spend_trend"),
            )
        ),
    ),
)  # fmt: skip

_S = "support"
SUPPORT = Family(
    "support",
    (
        Block((Spec("tickets_{w}d", "support tickets opened in the last {w} days", _S, "count",
                    "tickets", windows=EACH, measure="tickets", fill_zero=True),)),
        Block(
            (
                Spec("tickets_{p}_{w}d", "{p}-priority support tickets in the last {w} days", _S,
                     "count", "tickets", "priority = '{p}'", windows=MAX, measure="tickets_{p}",
                     fill_zero=True, each="priority"),
                Spec("days_to_close_mean",
                     "mean days to close support tickets opened in the last {w} days", _S,
                     "mean_days", "tickets", value="closed_at", windows=MAX, kind="days"),
                Spec("csat_mean_{w}d", "mean CSAT of support tickets in the last {w} days", _S,
                     "mean", "tickets", value="csat", known=KNOWN_AT, windows=MAX, kind="value",
                     measure="csat_mean"),
                Spec("tickets_open", "support tickets open at the cutoff", _S, "open", "tickets",
                     value="closed_at", fill_zero=True),
                Spec("days_since_last_ticket", "days since the last support ticket", _S, "last",
                     "tickets", kind="days"),
                Spec("csat_last", "CSAT of the latest rated support ticket", _S, "latest",
                     "ratings", value="csat", kind="value"),
            ),
            by_window=False,
        ),
    ),
)  # fmt: skip

_M = "marketing"
MARKETING = Family(
    "marketing",
    (
        Block(
            (
                Spec("sends_{w}d", "campaign emails sent in the last {w} days", _M, "count",
                     "campaigns", "action = 'sent'", windows=EACH, measure="sends",
                     fill_zero=True),
                Spec("opens_{w}d", "campaign email opens in the last {w} days", _M, "count",
                     "campaigns", "action = 'open'", windows=EACH, measure="opens",
                     fill_zero=True),
                Spec("clicks_{w}d", "campaign email clicks in the last {w} days", _M, "count",
                     "campaigns", "action = 'click'", windows=EACH, measure="clicks",
                     fill_zero=True),
            )
        ),
        Block(
            (
                Spec("unsubscribes_{w}d", "campaign unsubscribes in the last {w} days", _M,
                     "count", "campaigns", "action = 'unsubscribe'", windows=MAX,
                     measure="unsubscribes", fill_zero=True),
                Spec("days_since_last_click", "days since the last campaign click", _M, "last",
                     "campaigns", "action = 'click'", kind="days"),
                Spec("open_rate_{w}d", "campaign opens per email sent in the last {w} days", _M,
                     "derived", "campaigns", value=ratio("opens_{w}d", "sends_{w}d"), windows=MAX,
                     kind="ratio", measure="open_rate"),
                Spec("click_rate_{w}d", "campaign clicks per email sent in the last {w} days", _M,
                     "derived", "campaigns", value=ratio("clicks_{w}d", "sends_{w}d"),
                     windows=MAX, kind="ratio", measure="click_rate"),
            ),
            by_window=False,
        ),
    ),
)  # fmt: skip

_N = "sentiment"
SENTIMENT = Family(
    "sentiment",
    (
        Block(
            (
                Spec("nps_last", "latest NPS score (0-10)", _N, "latest", "responses",
                     value="score", kind="value"),
                Spec("nps_change", "change in NPS score from the previous response", _N,
                     "latest", "responses", value="score - prev_score", kind="change"),
                Spec("days_since_nps", "days since the latest NPS response", _N, "last",
                     "responses", kind="days"),
                Spec("nps_category", f"latest NPS category ({', '.join(NPS_CATEGORIES)})", _N,
                     "latest", "responses",
                     value="CASE WHEN score IS NULL THEN NULL WHEN score <= 6 THEN 'detractor' "
                     "WHEN score <= 8 THEN 'passive' ELSE 'promoter' END",
                     kind="category", dtype="category", categories=NPS_CATEGORIES),
            ),
            by_window=False,
        ),
    ),
)  # fmt: skip

PROFILE = Family(
    "profile",
    (Block((Spec("{column}", "account {label}", "profile", "attribute", "accounts",
                 value="{column}", kind="value", each="column"),)),),
)  # fmt: skip

FAMILIES = (ENGAGEMENT, COMMERCIAL, SUPPORT, MARKETING, SENTIMENT, PROFILE)


# --------------------------------------------------------------------------------------------
# Expansion
# --------------------------------------------------------------------------------------------


def _values(spec: Spec, ctx: Context) -> Iterator[dict[str, object]]:
    """Template fields for each value of ``spec.each`` (one empty set without ``each``)."""
    if spec.each == "event_type":
        for t in ctx.event_types:
            yield {"type": t, "slug": ctx.slugs[t], "type_sql": "'" + t.replace("'", "''") + "'"}
    elif spec.each == "priority":
        for p in TICKET_PRIORITIES:
            yield {"p": p}
    elif spec.each == "column":
        for a in ctx.account_columns:
            yield {"column": a.name, "label": a.column.replace("_", " "), "account": a}
    else:
        yield {}


def _windows(spec: Spec, ctx: Context) -> list[dict[str, object]]:
    ws = ctx.windows
    if spec.windows in (LONG, LONG_PAIRS):
        ws = tuple(sorted({*ws, *ctx.long_windows.get(SOURCES[spec.source].table, ())}))
    if spec.windows in (EACH, LONG):
        return [{"w": w} for w in ws]
    if spec.windows == MAX:
        return [{"w": ws[-1]}]
    if spec.windows in (PAIRS, LONG_PAIRS):
        return [{"a": a, "b": b, "span": b - a} for a, b in zip(ws, ws[1:], strict=False)]
    return [{}]


def _available(spec: Spec, ctx: Context) -> bool:
    table = SOURCES[spec.source].table
    if table not in ctx.tables:
        return False
    return all(n.split(".")[0] in ctx.tables and n in ctx.has_values for n in spec.needs)


def _plan(spec: Spec, family: str, fields: dict[str, object], ctx: Context) -> Planned:
    """One feature record and its computation from a spec and its template fields."""

    def fmt(template: str | None, extra: dict[str, object] | None = None) -> str | None:
        return None if template is None else template.format(**(fields | (extra or {})))

    value: str | None = fmt(spec.value) if spec.join is None else None
    if spec.join == "event_type":
        parts = [fmt(spec.value, {"slug": ctx.slugs[t]}) for t in ctx.event_types]
        value = " + ".join(str(v) for v in parts) or "0"
    dtype, kind, categories = spec.dtype, spec.kind, spec.categories
    if spec.levels is not None:
        categories = ctx.categories.get(spec.levels, ())
    account = fields.get("account")
    if isinstance(account, Account):  # a profile column: its type decides the feature's
        dtype, categories, value = account.dtype, account.levels, account.column
        kind = "category" if dtype == "category" else "value"
    window = fields.get("w", fields.get("a"))
    feature = Feature(
        name=str(fmt(spec.name)),
        description=str(fmt(spec.description)),
        group=spec.group,
        dtype=dtype,
        kind=kind,
        table=SOURCES[spec.source].table,
        family=family,
        window=window if isinstance(window, int) else None,
        measure=fmt(spec.measure),
        categories=categories,
        event_type=str(fields["type"]) if "type" in fields else None,
        fill_zero=spec.fill_zero,
        expr=value if spec.agg == "derived" else None,
    )
    return Planned(feature, spec, SOURCES[spec.source], feature.window, fmt(spec.where), value)


def expand(ctx: Context, families: tuple[Family, ...] = FAMILIES) -> list[Planned]:
    """Every feature the families define on this data, in family and declaration order.

    Specs whose source table is absent, or that need a column without values, are left out.
    A block with ``by_window`` loops over windows (or window pairs) outermost, then its specs,
    then the spec's ``each`` values; otherwise each spec is expanded in turn.
    """
    out: list[Planned] = []
    for family in families:
        for block in family.blocks:
            specs = [s for s in block.specs if _available(s, ctx)]
            if block.by_window:
                loops = {s.windows for s in specs}
                if len(loops) > 1:
                    raise ValueError(f"{family.name}: a by-window block mixes {sorted(loops)}")
                ws = _windows(specs[0], ctx) if specs else []
                order = [(s, w) for w in ws for s in specs]
            else:
                order = [(s, w) for s in specs for w in _windows(s, ctx)]
            for spec, wfields in order:
                for efields in _values(spec, ctx):
                    out.append(_plan(spec, family.name, {**wfields, **efields}, ctx))
    return out

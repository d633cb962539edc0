"""The catalogue of retention KPIs: name, kind (outcome or activity), data, unit, definition.

Every metric's definition follows DESIGN.md section 5 and quotes it where it is defined.

:mod:`churnlab.kpis` computes them per period; the catalogue is what the tables, plots, MLflow
tags and the report read to label a metric as an outcome or an activity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from churnlab.errors import ChurnlabError

Period = Literal["month", "quarter", "week"]
Kind = Literal["outcome", "activity"]

TRAILING_PERIODS: dict[str, int] = {"month": 12, "quarter": 4, "week": 52}
"""Periods in the trailing-12-month window (52 weeks for weekly periods)."""


class KpiError(ChurnlabError):
    """The KPIs cannot be computed from the given data or parameters."""


@dataclass(frozen=True)
class Metric:
    """One column of the period table."""

    name: str
    kind: Kind
    applies_to: Literal[
        "subscriptions",
        "orders",
        "orders_only",
        "upsell_orders",
        "any",
        "nps",
        "campaign_events",
        "tickets",
    ]
    """The data the metric needs; ``orders_only``: orders and no subscriptions (buyer metrics
    describe a non-contractual business; beside subscriptions, orders are add-on purchases);
    ``upsell_orders``: some orders of kind upsell or cross_sell (else upsell revenue cannot be
    told apart)."""
    unit: str
    description: str


METRICS: tuple[Metric, ...] = (
    Metric(
        "customers_start",
        "outcome",
        "subscriptions",
        "accounts",
        "customers active at the start of the period (an active subscription)",
    ),
    Metric(
        "customers_end",
        "outcome",
        "subscriptions",
        "accounts",
        "customers active at the end of the period",
    ),
    Metric(
        "new_customers",
        "outcome",
        "subscriptions",
        "accounts",
        "customers active at the end who were not at the start",
    ),
    Metric(
        "churned",
        "outcome",
        "subscriptions",
        "accounts",
        "customers lost in the period: active at the start, not at the end",
    ),
    Metric(
        "churn_rate",
        "outcome",
        "subscriptions",
        "ratio",
        "customer (logo) churn rate: customers lost in the period / customers active at the "
        "start of the period",
    ),
    Metric(
        "retention_rate",
        "outcome",
        "subscriptions",
        "ratio",
        "customer retention rate: 1 - customer churn rate, i.e. share of start-of-period "
        "customers still active at its end",
    ),
    Metric("start_mrr", "outcome", "subscriptions", "currency/month", "MRR at the period start"),
    Metric(
        "new_mrr",
        "outcome",
        "subscriptions",
        "currency/month",
        "MRR at the end of accounts that never paid before the period",
    ),
    Metric(
        "expansion_mrr",
        "outcome",
        "subscriptions",
        "currency/month",
        "MRR increase of accounts paying at both start and end",
    ),
    Metric(
        "contraction_mrr",
        "outcome",
        "subscriptions",
        "currency/month",
        "MRR decrease of accounts paying at both start and end",
    ),
    Metric(
        "churned_mrr",
        "outcome",
        "subscriptions",
        "currency/month",
        "start MRR of accounts paying at the start and not at the end",
    ),
    Metric(
        "reactivation_mrr",
        "outcome",
        "subscriptions",
        "currency/month",
        "MRR at the end of accounts that paid before, but not at the period start",
    ),
    Metric("end_mrr", "outcome", "subscriptions", "currency/month", "MRR at the period end"),
    Metric(
        "grr",
        "outcome",
        "subscriptions",
        "ratio",
        "gross revenue retention: (start MRR - churned MRR - contraction MRR) / start MRR, "
        "for start-of-period customers",
    ),
    Metric(
        "nrr",
        "outcome",
        "subscriptions",
        "ratio",
        "net revenue retention: (start MRR + expansion MRR - contraction MRR - churned MRR) / "
        "start MRR",
    ),
    Metric(
        "grr_12m",
        "outcome",
        "subscriptions",
        "ratio",
        "GRR over the trailing 12 months ending at the period end (snapshots 12 months "
        "apart; 52 weeks, 4 quarters)",
    ),
    Metric(
        "nrr_12m",
        "outcome",
        "subscriptions",
        "ratio",
        "NRR over the trailing 12 months ending at the period end",
    ),
    Metric(
        "buyers_prev",
        "outcome",
        "orders_only",
        "accounts",
        "active customers of the previous period (at least one non-refund order in it)",
    ),
    Metric(
        "buyers_retained",
        "outcome",
        "orders_only",
        "accounts",
        "previous-period buyers who ordered again in this period",
    ),
    Metric(
        "active_customer_churn_rate",
        "outcome",
        "orders_only",
        "ratio",
        "active-customer churn: ordered in the previous period, not in this one / ordered in "
        "the previous period",
    ),
    Metric("buyers", "outcome", "orders_only", "accounts", "accounts with a non-refund order"),
    Metric(
        "repeat_buyers",
        "outcome",
        "orders_only",
        "accounts",
        "buyers of the period who had ordered before the period start",
    ),
    Metric(
        "repeat_purchase_rate",
        "outcome",
        "orders_only",
        "ratio",
        "repeat buyers / buyers of the period",
    ),
    Metric(
        "spend_retention",
        "outcome",
        "orders_only",
        "ratio",
        "net order spend in this period of the previous period's buyers / their net spend in "
        "the previous period",
    ),
    Metric(
        "revenue",
        "outcome",
        "any",
        "currency",
        "total revenue: subscription revenue (pro rata MRR) + net order revenue",
    ),
    Metric(
        "subscription_revenue",
        "outcome",
        "subscriptions",
        "currency",
        "MRR recognised pro rata over the period",
    ),
    Metric("order_revenue", "outcome", "orders", "currency", "order amounts net of refunds"),
    Metric("refunds", "outcome", "orders", "currency", "refunded amounts (positive)"),
    Metric(
        "upsell_revenue",
        "outcome",
        "upsell_orders",
        "currency",
        "amounts of orders of kind upsell or cross_sell",
    ),
    Metric(
        "upsell_revenue_share",
        "outcome",
        "upsell_orders",
        "ratio",
        "upsell revenue share: upsell + cross-sell revenue / total revenue in the period",
    ),
    Metric(
        "existing_customer_revenue_share",
        "outcome",
        "any",
        "ratio",
        "revenue from existing customers: revenue from customers older than the period start "
        "(who first paid before it: a paying subscription or a purchase) / total revenue",
    ),
    Metric(
        "nps",
        "outcome",
        "nps",
        "points (-100..100)",
        "NPS: % promoters (9-10) - % detractors (0-6) among responses in the period",
    ),
    Metric("nps_responses", "activity", "nps", "responses", "NPS responses in the period"),
    Metric("promoters", "activity", "nps", "responses", "responses scoring 9-10"),
    Metric("passives", "activity", "nps", "responses", "responses scoring 7-8"),
    Metric("detractors", "activity", "nps", "responses", "responses scoring 0-6"),
    Metric("nps_comments", "activity", "nps", "responses", "responses with a non-empty comment"),
    Metric(
        "campaign_sent",
        "activity",
        "campaign_events",
        "(account, campaign) pairs",
        "campaign sends to current customers, unique per account and campaign",
    ),
    Metric(
        "campaign_opened",
        "activity",
        "campaign_events",
        "(account, campaign) pairs",
        "sent pairs with an open (or a click)",
    ),
    Metric(
        "campaign_clicked",
        "activity",
        "campaign_events",
        "(account, campaign) pairs",
        "sent pairs with a click",
    ),
    Metric(
        "campaign_unsubscribed",
        "activity",
        "campaign_events",
        "(account, campaign) pairs",
        "sent pairs with an unsubscribe",
    ),
    Metric(
        "open_rate",
        "activity",
        "campaign_events",
        "ratio",
        "customer campaign open rate: opens / sent, over campaigns sent to current customers "
        "(unique per account and campaign)",
    ),
    Metric(
        "click_rate",
        "activity",
        "campaign_events",
        "ratio",
        "customer campaign click rate: clicks / sent, over campaigns sent to current "
        "customers (unique per account and campaign)",
    ),
    Metric("tickets_opened", "activity", "tickets", "tickets", "support tickets opened"),
    Metric(
        "csat_mean",
        "activity",
        "tickets",
        "score (1-5)",
        "mean CSAT of tickets opened in the period",
    ),
)
"""Every KPI column with its kind (DESIGN.md section 5: activity metrics are easy to capture;
outcome metrics are what the business cares about), the table it needs, unit and definition."""

METRIC_KINDS: dict[str, Kind] = {m.name: m.kind for m in METRICS}

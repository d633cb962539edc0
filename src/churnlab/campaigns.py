"""A campaign as declared in params (``score.campaigns``): the :class:`Campaign` record.

Its fields are checked when it is built, so that a campaign that could never be chosen or measured
(an unknown kind, a rate outside [0, 1], a missing value per response, an empty filter) is an error
that names the campaign and the field. :mod:`churnlab.audiences` chooses who gets each campaign.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

from churnlab.errors import ChurnlabError

KINDS: tuple[str, ...] = ("retention", "upsell", "advocacy", "nurture")
NPS_CATEGORIES: tuple[str, ...] = ("detractor", "passive", "promoter")


@dataclass(frozen=True)
class Campaign:
    """One campaign as declared in params.

    Parameters
    ----------
    name : str
        Unique campaign name (it is the ``campaign`` column of the audiences table).
    kind : str
        ``"retention"``, ``"upsell"``, ``"advocacy"`` or ``"nurture"``; decides what a response is
        worth (see the module docstring).
    cost_per_contact : float
        Cost of contacting one account, >= 0.
    rate : float
        In [0, 1]. Retention: the expected save rate (share of the revenue at risk a contact
        saves). Other kinds: the expected response rate.
    value_per_response : float or None
        What one response is worth, >= 0. Required for advocacy and nurture (their value is not
        from a model); must be None for retention and upsell, whose value comes from the models.
    risk_bands : tuple of str or None
        Allowed ``risk_band`` values; None = any band.
    min_churn_probability, max_churn_probability : float or None
        Inclusive bounds on ``churn_probability`` in [0, 1]; None = no bound. An account with a
        missing probability is not eligible when a bound is set.
    plays : tuple of str or None
        Allowed ``play`` values; None = any play.
    nps_categories : tuple of str or None
        Allowed ``nps_category`` values (detractor, passive, promoter), e.g. ``("promoter",)``
        for advocacy; None = any, including accounts without an NPS response.
    channel : str or None
        How the campaign reaches accounts (``csm_call``, ``email``, ...): copied to the
        treatments rows; None = not recorded.
    """

    name: str
    kind: str
    cost_per_contact: float
    rate: float
    value_per_response: float | None = None
    risk_bands: tuple[str, ...] | None = None
    min_churn_probability: float | None = None
    max_churn_probability: float | None = None
    plays: tuple[str, ...] | None = None
    nps_categories: tuple[str, ...] | None = None
    channel: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ChurnlabError(
                f"campaign name must be a non-empty string, got {self.name!r}; give every "
                "campaign a unique name"
            )
        if self.kind not in KINDS:
            self._fail("kind", f"must be one of {', '.join(KINDS)}, got {self.kind!r}")
        self._number("cost_per_contact", self.cost_per_contact, low=0.0)
        self._number("rate", self.rate, low=0.0, high=1.0)
        if self.kind in ("advocacy", "nurture"):
            if self.value_per_response is None:
                self._fail(
                    "value_per_response",
                    f"is required for a {self.kind} campaign (what one response is worth, >= 0)",
                )
            self._number("value_per_response", self.value_per_response, low=0.0)
        elif self.value_per_response is not None:
            source = "revenue_at_risk" if self.kind == "retention" else "expected_expansion_value"
            self._fail(
                "value_per_response",
                f"must not be set for a {self.kind} campaign: its value is the model's "
                f"{source}; remove the field",
            )
        for name in ("min_churn_probability", "max_churn_probability"):
            if getattr(self, name) is not None:
                self._number(name, getattr(self, name), low=0.0, high=1.0)
        lo, hi = self.min_churn_probability, self.max_churn_probability
        if lo is not None and hi is not None and lo > hi:
            self._fail(
                "min_churn_probability",
                f"({lo}) is above max_churn_probability ({hi}); no account could be eligible",
            )
        for name in ("risk_bands", "plays", "nps_categories"):
            self._labels(name)
        if self.channel is not None and (
            not isinstance(self.channel, str) or not self.channel.strip()
        ):
            self._fail("channel", f"must be a non-empty string or null, got {self.channel!r}")
        if self.nps_categories is not None:
            unknown = sorted(set(self.nps_categories) - set(NPS_CATEGORIES))
            if unknown:
                self._fail(
                    "nps_categories",
                    f"has unknown values {unknown}; use {', '.join(NPS_CATEGORIES)}",
                )

    def _fail(self, name: str, problem: str) -> None:
        raise ChurnlabError(f"campaign {self.name!r}: {name} {problem}")

    def _number(self, name: str, value: Any, *, low: float, high: float | None = None) -> None:
        ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < low or (high is not None and value > high):
            bounds = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
            self._fail(name, f"must be a finite number {bounds}, got {value!r}")

    def _labels(self, name: str) -> None:
        value = getattr(self, name)
        if value is None:
            return
        if isinstance(value, str) or not isinstance(value, Sequence):
            self._fail(name, f"must be a list of strings or null (= any), got {value!r}")
        items = tuple(value)
        if not items:
            self._fail(name, "is empty, so no account could be eligible; use null for any")
        if not all(isinstance(v, str) and v for v in items):
            self._fail(name, f"must hold non-empty strings, got {list(items)!r}")
        # Lists from YAML become tuples so that the record stays hashable and immutable.
        object.__setattr__(self, name, items)

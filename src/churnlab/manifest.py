"""Typed contracts between stages: what a feature is, and what a training set holds.

A :class:`Feature` says what one column measures (source table, family, window, kind, driver
group) so that every later stage (the baselines, the reasons' wording, the scoring signature)
chooses features by these fields, never by parsing column names. A :class:`Manifest` describes a
training set (mode, horizon, cutoffs, counts per cutoff, features, the source it was built from)
and is stored beside it as ``manifest.json``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from churnlab.config import Horizon, parse_horizon

KINDS = ("count", "amount", "days", "ratio", "trend", "change", "value", "category")
"""What a feature's number is, which decides how a sentence words it:

- ``count``: things that happened (events, tickets), 0 when nothing did;
- ``amount``: money or units summed;
- ``days``: a duration (days since, days to close);
- ``ratio``: a share between 0 and 1, worded as a percentage;
- ``trend``: a relative change of a rate against the account's own earlier level (-0.64 = down
  64%);
- ``change``: a difference from the account's previous value (NPS change);
- ``value``: a level with a unit of its own (a score, seats, a rate per event);
- ``category``: a label (plan, segment).
"""

RECENCY_MEASURES = ("days_since_last_event", "days_since_last_order")
"""Measures of how recently an account was active, in order of preference (heuristic baseline)."""
ACTIVITY_MEASURES = ("events", "orders")
"""Measures of how active an account was in a window, in order of preference."""
HEURISTIC_NOT_SCORED = "not scored: the data has no recency or activity feature to rank by"
"""The heuristic baseline's logged direction and printed row when it has nothing to rank by."""
NO_VALUE_MEANS = {
    "mean_gap_days": "fewer than two days with an order",
    "overdue_ratio": "fewer than two days with an order",
    "gap_spread_days": "fewer than three days with an order",
}
"""Measures whose missing value is a fact about the customer, not missing data: what it means.

The purchase-cadence gaps need two (three) order days; on order data most customers have fewer.
The reasons and the drift warning say so instead of "no data"."""


@dataclass(frozen=True)
class Feature:
    """One feature column and what it means.

    Attributes
    ----------
    name : str
        Column name.
    description : str
        Reads well inside a sentence ("logins in the last 30 days").
    group : str
        Driver group (:data:`churnlab.schema.DRIVER_GROUPS`).
    dtype : str
        ``float64`` or ``category``.
    kind : str
        One of :data:`KINDS`.
    table : str or None
        The contract table it is computed from (None for features derived from several).
    family : str or None
        The feature family that computes it (engagement, commercial, support, ...).
    window : int or None
        Days before the cutoff it looks at; None for point-in-time or lifetime features.
    measure : str or None
        What is measured, independent of the window (``events_30d`` and ``events_90d`` both
        measure ``events``).
    categories : tuple of str or None
        Levels of a categorical feature.
    event_type : str or None
        The event type counted, for per-type engagement features.
    fill_zero : bool
        Computation detail: 0 (not missing) when the table is present and nothing happened.
    expr : str or None
        Computation detail: SQL over other feature columns for derived features.
    """

    name: str
    description: str
    group: str
    dtype: str = "float64"
    kind: str = "count"
    table: str | None = None
    family: str | None = None
    window: int | None = None
    measure: str | None = None
    categories: tuple[str, ...] | None = None
    event_type: str | None = None
    fill_zero: bool = field(default=False, compare=False)
    expr: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"feature {self.name}: unknown kind {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry (JSON-serialisable; computation details left out)."""
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "group": self.group,
            "dtype": self.dtype,
            "kind": self.kind,
        }
        for key in ("table", "family", "window", "measure", "event_type"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.categories is not None:
            out["categories"] = list(self.categories)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Feature:
        """Read a manifest entry (entries written before a field existed get its default)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"fill_zero", "expr"}
        args = {k: v for k, v in d.items() if k in known}
        if args.get("categories") is not None:
            args["categories"] = tuple(args["categories"])
        args.setdefault("description", d["name"])
        args.setdefault("group", "other")
        if args.get("kind") == "change" and "window" not in d and "_trend_" in d["name"]:
            args["kind"] = "trend"  # bundles written before "trend" was its own kind
        return cls(**args)


@dataclass(frozen=True)
class Manifest:
    """What a training set holds; stored beside it as ``manifest.json``.

    Attributes
    ----------
    mode : str
        ``contractual`` or ``orders``.
    horizon_days : int
        Label window length in days (nominal for calendar months).
    horizon : str
        Label window as configured (``90 days``, ``1 month``).
    windows : tuple of int
        Feature windows in days.
    data_end : str
        End of observation (ISO timestamp) that labels were judged against.
    cutoffs : tuple of str
        Every cutoff (ISO timestamps).
    per_cutoff : tuple of dict
        Rows, labeled flag, positives and negatives per cutoff and task.
    rows : int
        Rows in the training set.
    features : tuple of Feature
        The model features, in column order.
    event_types : tuple of str
        Event types counted as their own features (scoring passes them back).
    label_columns : tuple of str
        Outcome and revenue columns.
    tables : tuple of str
        Contract tables present in the data.
    data_fingerprint : str
        Hash of the data's tables (row counts, time ranges, content).
    source : str
        The data source it was built from (any password masked).
    params : dict
        The ``dataset`` section it was built with.
    built_at : str
        When (UTC, ISO).
    timings_s : dict
        Seconds per stage.
    btyd_fits : tuple of dict
        Orders-only: the BG/NBD baseline's parameters at each cutoff, fitted on every customer
        with a purchase before it (:func:`churnlab.btyd_population.fits`).
    """

    mode: str
    horizon_days: int
    windows: tuple[int, ...]
    data_end: str
    cutoffs: tuple[str, ...]
    per_cutoff: tuple[dict[str, Any], ...]
    rows: int
    features: tuple[Feature, ...]
    horizon: str = ""
    event_types: tuple[str, ...] = ()
    label_columns: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    data_fingerprint: str = ""
    source: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    built_at: str = ""
    timings_s: dict[str, float] = field(default_factory=dict)
    btyd_fits: tuple[dict[str, Any], ...] = ()

    @property
    def window(self) -> Horizon:
        """The label window (``horizon``, else ``horizon_days`` days)."""
        return parse_horizon(self.horizon or self.horizon_days)

    def feature(self, name: str) -> Feature:
        """The feature called ``name``.

        Raises
        ------
        KeyError
            If there is none.
        """
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def feature_names(self) -> list[str]:
        """Feature column names, in order."""
        return [f.name for f in self.features]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what ``manifest.json`` holds)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["features"] = [f.to_dict() for f in self.features]
        for key in ("windows", "cutoffs", "event_types", "label_columns", "tables"):
            out[key] = list(out[key])
        out["per_cutoff"] = [dict(r) for r in self.per_cutoff]
        out["btyd_fits"] = [dict(r) for r in self.btyd_fits]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        """Read the JSON form (keys written before a field existed get its default)."""
        known = {f.name for f in dataclasses.fields(cls)}
        args = {k: v for k, v in d.items() if k in known}
        args["features"] = tuple(Feature.from_dict(f) for f in d.get("features", []))
        for key in ("windows", "cutoffs", "event_types", "label_columns", "tables"):
            if key in args:
                args[key] = tuple(args[key])
        args["per_cutoff"] = tuple(dict(r) for r in d.get("per_cutoff", []))
        args["btyd_fits"] = tuple(dict(r) for r in d.get("btyd_fits", []))
        return cls(**args)

    def write(self, path: Path | str) -> None:
        """Write as JSON to ``path`` (callers make it atomic)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path | str) -> Manifest:
        """Read a ``manifest.json``."""
        return cls.from_dict(json.loads(Path(path).read_text()))

"""How far the data is observed: one definition of the data end, used by labels and KPIs alike.

**Data end.** ``data.as_of`` when set. Otherwise the end of the last day on which *every* table
that defines a label (subscriptions, orders) still has rows: the earliest of those tables' last
timestamps, rounded up to the next midnight. A row on a day says that day was observed; with
day-level timestamps (``2024-03-31``) the last day therefore counts as observed, for labels and
KPIs the same way. Tables that do not define a label (events, tickets, NPS, campaigns) never move
the data end: when they run further, the extra rows are simply after it.

**Coverage check.** Tables that were extracted at different times end at different dates; a gap
larger than ``data.coverage_gap_days`` between a table's last row and the data end is reported
(by ``churnlab validate`` and ``build-dataset``) with the dates and the ``data.as_of`` fix.
"""

from __future__ import annotations

import datetime as dt

from churnlab.schema import REVENUE_TABLES

LABEL_TABLES = REVENUE_TABLES
"""Tables that define the labels: their coverage decides where labels and KPIs end."""


def end_of_day(t: dt.datetime) -> dt.datetime:
    """The midnight after the day of ``t`` (a row on a day means that day was observed)."""
    return dt.datetime(t.year, t.month, t.day) + dt.timedelta(days=1)


def observed_end(last: dict[str, dt.datetime | None]) -> dt.datetime | None:
    """The data end from each table's last timestamp (see the module docstring).

    Parameters
    ----------
    last : dict
        Table -> timestamp of its last row (None for an empty table).

    Returns
    -------
    datetime or None
        None when no table has a row.
    """
    label = [t for name, t in last.items() if name in LABEL_TABLES and t is not None]
    if label:
        return end_of_day(min(label))
    others = [t for t in last.values() if t is not None]  # no label rows: the latest of any
    return end_of_day(max(others)) if others else None


def coverage_warnings(
    last: dict[str, dt.datetime | None], gap_days: int, as_of: dt.datetime | None = None
) -> list[str]:
    """Tables whose last rows are more than ``gap_days`` from the data end, with the fix.

    Parameters
    ----------
    last : dict
        Table -> timestamp of its last row (None for an empty table). ``accounts`` is ignored:
        sign-ups stop long before the data ends.
    gap_days : int
        Allowed distance in days.
    as_of : datetime, optional
        ``data.as_of``; when set it is the data end, and tables ending long before it are
        reported.

    Returns
    -------
    list of str
        One sentence per table, naming the tables and dates.
    """
    end = as_of if as_of is not None else observed_end(last)
    if end is None:
        return []
    basis = (
        f"data.as_of {end:%Y-%m-%d}"
        if as_of is not None
        else f"the data end {end:%Y-%m-%d} (end of the last day that "
        + " and ".join(t for t in LABEL_TABLES if last.get(t) is not None)
        + " cover)"
    )
    out = []
    for table, t in last.items():
        if table == "accounts" or t is None:
            continue
        gap = (end_of_day(t) - end).days
        if gap > gap_days:
            out.append(
                f"{table} runs to {t:%Y-%m-%d}, {gap} days past {basis}: its later rows are "
                "ignored by labels and KPIs; if the tables were exported at different times, set "
                f"data.as_of in params.yaml to the last day every table covers (e.g. "
                f"data.as_of: {end - dt.timedelta(days=1):%Y-%m-%d})"
            )
        elif -gap > gap_days:
            out.append(
                f"{table} ends on {t:%Y-%m-%d}, {-gap} days before {basis}: features from "
                f"{table} will look like no activity at later cutoffs; check that export, or set "
                f"data.as_of: {t:%Y-%m-%d} in params.yaml to stop the data there"
            )
    return out


INCLUSIVE_SHARE = 0.5
"""``auto`` reads ``subscriptions.end_at`` as inclusive when at least this share of an
account's consecutive rows start exactly one day after the previous one ends (and more of them
do than start the moment it ends)..."""
INCLUSIVE_MIN_PAIRS = 10
"""...among at least this many consecutive pairs (a few real one-day lapses decide nothing)."""


def end_is_inclusive(setting: str, pairs: int, one_day: int, touching: int) -> bool:
    """Whether ``subscriptions.end_at`` is the last day of service (``data.subscription_end``).

    Parameters
    ----------
    setting : {"auto", "exclusive", "inclusive"}
        ``data.subscription_end``.
    pairs, one_day, touching : int
        Consecutive row pairs of an account; of them, the next row starting exactly one day
        after ``end_at``; and starting at ``end_at`` (contiguous in the contract's meaning).
    """
    if setting != "auto":
        return setting == "inclusive"
    return (
        pairs >= INCLUSIVE_MIN_PAIRS and one_day >= INCLUSIVE_SHARE * pairs and one_day > touching
    )


def inclusive_note(setting: str, pairs: int, one_day: int) -> str:
    """What was done with inclusive end dates, for validate and build-dataset to print."""
    why = (
        f"{one_day:,} of {pairs:,} renewals ({one_day / pairs:.0%}) start the day after the "
        "previous row ends"
        if pairs
        else "data.subscription_end: inclusive"
    )
    return (
        f"subscriptions.end_at read as the last day of service ({why}), so one day is added to "
        "every end_at; without it each such account would look churned for a day and the "
        "labels of cutoffs whose window ends on that day would be wrong"
        + (
            "; set data.subscription_end: exclusive to keep them as written"
            if setting == "auto"
            else ""
        )  # fmt: skip
    )

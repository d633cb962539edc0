"""Window aggregates for every (account, cutoff) row from one pass over a table's rows, in NumPy.

The rows of a table arrive as arrays: the account's index, the day (offset from the first day
any window covers; -1 for older rows), a class (which filters the row matches), values, times.
Cutoffs are midnights and windows whole days, so the timeline is cut into *segments* at every
``cutoff - w`` (and every cutoff): each window of each cutoff is a run of whole segments.
One ``bincount`` per value sums the rows into (segment, account, class) cells; a cumulative sum
over segments then gives every window of every cutoff as one difference, and lifetime totals
(segment 0 holds the older rows) as one lookup. Distinct days come from a (day, account)
presence table, the latest time before a cutoff from the last active day (or, for few rows,
from the rows sorted by account and time), distinct users from per-(account, user) bit masks of
the segments they were active in. All of it is exact: integers stay integers (float64 holds
them exactly below 2**53, and larger integer sums are split in two), money is summed as integer
micro-units. Arrays are segment- or day-major so that cumulative sums run over contiguous rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

US_PER_DAY = 86_400_000_000
MASK_BITS = 64
_EXACT_FLOAT = 2**53  # integers below this add exactly in float64
_SPLIT = 2**26
SORT_ROWS = 4_000_000
"""Up to this many rows, a table's windows come from its rows sorted by account and time
(:class:`Runs`); beyond, from dense (segment, account) sums and (day, account) presence."""


@dataclass(frozen=True)
class Grid:
    """The spine laid out for array work.

    Attributes
    ----------
    acc, cut : ndarray
        Per spine row: the account's index (0 .. accounts-1) and the cutoff's index.
    cutoffs : tuple of datetime
        Sorted distinct cutoffs (midnights).
    accounts : int
        Number of distinct spine accounts.
    windows : tuple of int
        Sorted windows in days.
    start : datetime
        First day any window covers: the earliest cutoff minus the largest window.
    bounds : ndarray
        Day offsets (from ``start``) of the segment boundaries, ascending, from 0 to the last
        cutoff. Segment ``s`` (1-based) is ``[bounds[s-1], bounds[s])``; segment 0 is before
        ``start``.
    """

    acc: np.ndarray
    cut: np.ndarray
    cutoffs: tuple[dt.datetime, ...]
    accounts: int
    windows: tuple[int, ...]
    start: dt.datetime
    bounds: np.ndarray

    @property
    def n(self) -> int:
        """Spine rows."""
        return len(self.acc)

    @property
    def ndays(self) -> int:
        """Days in the grid."""
        return int(self.bounds[-1])

    @property
    def segments(self) -> int:
        """Segments including segment 0."""
        return len(self.bounds)

    @cached_property
    def _cutoff_day(self) -> np.ndarray:
        days = np.array([(c - self.start).days for c in self.cutoffs], dtype=np.int64)
        return days[self.cut]

    def cutoff_day(self) -> np.ndarray:
        """Per spine row: the day offset of its cutoff (do not modify)."""
        return self._cutoff_day

    def segment_of_day(self) -> np.ndarray:
        """Lookup: index ``d + 1`` (``d`` = day offset, -1 for older rows) -> segment."""
        days = np.arange(-1, self.ndays, dtype=np.int64)
        seg = np.searchsorted(self.bounds, days, side="right")
        return seg.astype(np.int16 if len(self.bounds) < 2**15 else np.int32)

    def window_segments(self, window: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Per spine row: the cumulative-sum planes at the window's end and start.

        With ``C[m]`` the sum of segments ``0 .. m-1``, a window's value is ``C[hi] - C[lo]``
        and a lifetime value ``C[hi]`` (``lo`` is None for ``window=None``).
        """
        cday = self.cutoff_day()
        hi = np.searchsorted(self.bounds, cday) + 1
        if window is None:
            return hi, None
        return hi, np.searchsorted(self.bounds, cday - window) + 1

    def cutoff_us(self) -> np.ndarray:
        """Per spine row: its cutoff in epoch microseconds."""
        epoch = dt.datetime(1970, 1, 1)
        us = np.array([(c - epoch) // dt.timedelta(microseconds=1) for c in self.cutoffs])
        return us.astype(np.int64)[self.cut]


def make_grid(
    acc: np.ndarray, cut: np.ndarray, cutoffs: tuple[dt.datetime, ...], windows: tuple[int, ...]
) -> Grid:
    """The grid of a spine: segment boundaries at every ``cutoff - w`` and every cutoff."""
    start = cutoffs[0] - dt.timedelta(days=windows[-1])
    points = {(c - start).days - w for c in cutoffs for w in (0, *windows)}
    return Grid(
        acc=acc,
        cut=cut,
        cutoffs=cutoffs,
        accounts=int(acc.max()) + 1 if len(acc) else 0,
        windows=windows,
        start=start,
        bounds=np.array(sorted(points), dtype=np.int64),
    )


def dense_classes(bits: np.ndarray, nbits: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows' filter bit sets -> dense class ids, and the bit set of each class."""
    if nbits == 0 or not len(bits):
        return np.zeros(len(bits), dtype=np.int8), np.zeros(1, dtype=np.int64)
    if nbits <= 22:
        seen = np.zeros(1 << nbits, dtype=bool)
        seen[bits] = True  # (fancy indexing casts the index in chunks; bincount copies it)
        combos = np.flatnonzero(seen)
    else:  # too many filters for a lookup table the size of every combination
        combos = np.unique(bits)
    lut = np.zeros(int(combos[-1]) + 1, dtype=np.int16)
    lut[combos] = np.arange(len(combos), dtype=np.int16)
    return lut[bits], combos.astype(np.int64)


@dataclass
class Rows:
    """One table's rows as arrays (see the module docstring)."""

    acc: np.ndarray  # int32
    day: np.ndarray  # int16/int32, -1 for rows before the grid's start
    cls: np.ndarray  # dense class id
    combos: np.ndarray  # bit set of each class
    values: dict[str, np.ndarray]  # float64 (NaN for missing) or int64 micro-units
    time: np.ndarray | None = None  # int64 epoch microseconds

    def classes_with(self, bit: int | None) -> np.ndarray:
        """Classes whose rows match filter ``bit`` (None: every class)."""
        if bit is None:
            return np.arange(len(self.combos))
        return np.flatnonzero(self.combos & (1 << bit))

    def class_mask(self, bit: int | None) -> np.ndarray:
        """Per class: whether its rows match filter ``bit``."""
        match = np.zeros(len(self.combos), dtype=bool)
        match[self.classes_with(bit)] = True
        return match

    def rows_with(self, bit: int | None) -> np.ndarray:
        """Boolean mask of the rows matching filter ``bit``."""
        return self.class_mask(bit)[self.cls]


@dataclass(frozen=True)
class Sums:
    """Running (segment, account) sums of several measures.

    ``per_class[s, a, k]`` counts the rows of class ``k`` of account ``a`` in segments
    ``0 .. s``; a count measure is a 0/1 combination of classes (``select``), applied only to
    the values gathered for the spine rows. ``sums[m]`` holds the running sums of measure
    ``m``'s values the same way (two planes for large integers: low and high parts).
    """

    per_class: np.ndarray | None
    select: np.ndarray
    counts: dict[str, int]
    sums: dict[str, list[np.ndarray]]
    ends: dict[str, np.ndarray] = field(default_factory=dict)  # gathered at the cutoffs


def _weights(rows: Rows, column: str, accounts: int) -> list[np.ndarray]:
    """Weights of a sum: the values, or the low and high parts of large integers.

    NaN counts as 0; integers that could pass 2**53 for one account are split in two parts.
    """
    v = rows.values[column]
    if v.dtype != np.int64:
        missing = np.isnan(v)
        return [np.where(missing, 0.0, v)] if missing.any() else [v]
    per_account = np.bincount(rows.acc, weights=np.abs(v).astype(np.float64), minlength=accounts)
    if not len(v) or per_account.max() < _EXACT_FLOAT / 2:
        return [v.astype(np.float64)]
    high, low = np.divmod(v, _SPLIT)
    return [low.astype(np.float64), high.astype(np.float64)]


def _running(planes: np.ndarray) -> np.ndarray:
    """In place: each segment plane plus all earlier ones (faster than cumsum on axis 0)."""
    for s in range(1, len(planes)):
        planes[s] += planes[s - 1]
    return planes


def segment_sums(
    grid: Grid, rows: Rows, measures: dict[str, tuple[int | None, str | None]]
) -> Sums:
    """Running (segment, account) sums of each measure (see :class:`Sums`).

    ``measures`` maps a measure to (filter bit, value column or None for a row count). Row
    counts share one ``bincount`` per (segment, account, class) cell; each sum is one
    ``bincount`` of its masked values per (segment, account) cell. Index arrays are int64 from
    the start: ``bincount`` would otherwise copy them.
    """
    nseg, ncls, na = grid.segments, len(rows.combos), grid.accounts
    # (segment, account) cell of each row in one lookup: day d at index d, day -1 (older rows)
    # at the last index
    offsets = grid.segment_of_day().astype(np.int64) * na
    cell = np.roll(offsets, -1)[rows.day]
    cell += rows.acc
    sums: dict[str, list[np.ndarray]] = {}
    for m, (bit, col) in measures.items():
        if col is not None:
            if bit is not None:
                raise ValueError(f"{m}: filter sums in the projection (their values)")
            parts = _weights(rows, col, na)
            sums[m] = [
                _running(np.bincount(cell, weights=w, minlength=nseg * na).reshape(nseg, na))
                for w in parts
            ]
    counts = [m for m, (_, col) in measures.items() if col is None]
    select = np.zeros((ncls, len(counts)), dtype=np.int64)
    for j, m in enumerate(counts):
        select[rows.classes_with(measures[m][0]), j] = 1
    per_class = None
    if counts:
        cell *= ncls
        cell += rows.cls
        per_class = _running(np.bincount(cell, minlength=nseg * na * ncls).reshape(nseg, na, ncls))
    return Sums(per_class, select, {m: j for j, m in enumerate(counts)}, sums)


def window_sums(grid: Grid, sums: Sums, window: int | None) -> dict[str, np.ndarray]:
    """Per spine row and measure: the window's (or the lifetime's) sum.

    Counts and split integers come back as int64, other sums as float64. The values at the
    windows' common end (the cutoff) are gathered once and kept in ``sums.ends``.
    """
    hi, lo = grid.window_segments(window)  # planes of running sums are C[m] = planes[m - 1]
    if not sums.ends:
        if sums.per_class is not None:
            sums.ends["per_class"] = sums.per_class[hi - 1, grid.acc]
        for m, parts in sums.sums.items():
            sums.ends.update({f"{m}|{k}": p[hi - 1, grid.acc] for k, p in enumerate(parts)})

    def window_of(key: str, planes: np.ndarray) -> np.ndarray:
        end = sums.ends[key]
        return end.copy() if lo is None else end - planes[lo - 1, grid.acc]

    out: dict[str, np.ndarray] = {}
    if sums.per_class is not None:
        per_class = window_of("per_class", sums.per_class)
        for m, j in sums.counts.items():
            # a count is a sum of classes' counts: most counts are one class (an event type),
            # a column as it is; a sum of a few columns beats a matrix product of 0/1 weights
            classes = np.flatnonzero(sums.select[:, j])
            if len(classes) == 1:
                out[m] = per_class[:, classes[0]]
            elif len(classes) == 0:
                out[m] = np.zeros(len(per_class), dtype=np.int64)
            else:
                total = per_class[:, classes[0]].copy()
                for k in classes[1:]:
                    total += per_class[:, k]
                out[m] = total
    for m, parts in sums.sums.items():
        values = [window_of(f"{m}|{k}", p) for k, p in enumerate(parts)]
        if len(values) == 1:
            out[m] = values[0]
        else:
            low, high = (np.rint(v).astype(np.int64) for v in values)
            out[m] = high * _SPLIT + low
    return out


def day_cells(grid: Grid, rows: Rows) -> np.ndarray:
    """Per row: its (day, account) cell of the grid, -1 for rows before the start."""
    itype = np.dtype(np.int32 if grid.accounts * grid.ndays < 2**31 else np.int64)
    cell = rows.day.astype(itype) * grid.accounts
    cell += rows.acc
    if len(rows.day) and rows.day.min() < 0:
        cell[rows.day < 0] = -1
    return cell


def active_day_counts(grid: Grid, cells: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Cumulative active days: ``[j, a]`` = days before day ``j`` with a row in ``mask``."""
    present = np.zeros(grid.ndays * grid.accounts, dtype=bool)
    present[cells[mask & (cells >= 0)]] = True
    cum = np.empty((grid.ndays + 1, grid.accounts), dtype=np.int32)
    cum[0] = 0
    days = present.reshape(grid.ndays, grid.accounts)
    for d in range(grid.ndays):  # plane by plane: faster than cumsum on axis 0
        np.add(cum[d], days[d], out=cum[d + 1])
    return cum


def active_days(grid: Grid, cum: np.ndarray, window: int) -> np.ndarray:
    """Per spine row: days with a row in ``[cutoff - window, cutoff)``."""
    cday = grid.cutoff_day()
    return (cum[cday, grid.acc] - cum[cday - window, grid.acc]).astype(np.float64)


def latest_by_day(
    grid: Grid, rows: Rows, cells: np.ndarray, mask: np.ndarray, cum: np.ndarray
) -> np.ndarray:
    """Per spine row: the latest row time (epoch us) in ``mask`` before the cutoff; -1 if none.

    For many rows: only rows on or after the grid's start are looked at (older ones:
    :func:`older_times`). The last active day before the cutoff is found by bisecting the
    account's cumulative active days (``cum``); the time within that day is the maximum over the
    rows of just the (day, account) cells needed.
    """
    assert rows.time is not None
    cday = grid.cutoff_day()
    before = cum[cday, grid.acc]
    lo, hi = np.zeros(grid.n, dtype=np.int64), cday.copy()
    while (lo < hi).any():  # smallest j with cum[j] == before: the last active day is j - 1
        mid = (lo + hi) // 2
        go = cum[mid, grid.acc] < before
        lo, hi = np.where(go, mid + 1, lo), np.where(go, hi, mid)
    found = np.flatnonzero(before > 0)
    out = np.full(grid.n, -1, dtype=np.int64)
    if not len(found):
        return out
    need = (lo[found] - 1) * grid.accounts + grid.acc[found]
    wanted, inverse = np.unique(need, return_inverse=True)
    # rows in a needed (day, account) cell: a flag per cell (the extra last one answers cell -1,
    # rows before the start), then a binary search for the few rows flagged
    needed = np.zeros(grid.ndays * grid.accounts + 1, dtype=bool)
    needed[wanted] = True
    hit = np.flatnonzero(needed[cells] & mask)
    pos = np.searchsorted(wanted, cells[hit])
    best = np.full(len(wanted), -1, dtype=np.int64)
    np.maximum.at(best, pos, rows.time[hit])
    out[found] = best[inverse]
    return out


@dataclass(frozen=True)
class Runs:
    """A table's rows sorted by (account, day, time), with running sums of each measure.

    For few rows this beats dense grids: a window of a spine row is two binary searches in the
    sorted keys (``account * (days + 1) + day + 1``; older rows have day -1) and one difference
    of running sums. Running sums stay exact because only counts and integer micro-units are
    summed this way (int64).
    """

    key: np.ndarray
    order: np.ndarray  # sorted position -> row
    cum: dict[str, np.ndarray]
    cls: np.ndarray
    positions: dict[int | None, np.ndarray] = field(default_factory=dict)  # by window back


def sort_runs(grid: Grid, rows: Rows, measures: dict[str, tuple[int | None, str | None]]) -> Runs:
    """Sort the rows and take the running sum of each measure (see :class:`Runs`)."""
    key = rows.acc.astype(np.int64) * (grid.ndays + 1) + (rows.day.astype(np.int64) + 1)
    order = np.argsort(key, kind="stable") if rows.time is None else np.lexsort((rows.time, key))
    cum = {}
    for name, (bit, column) in measures.items():
        match = rows.rows_with(bit)[order]
        if column is None:
            v = match.astype(np.int64)
        else:
            values = rows.values[column]
            if values.dtype != np.int64:
                raise TypeError(f"{name}: running sums are exact for integers only")
            v = np.where(match, values[order], 0)
        out = np.zeros(len(v) + 1, dtype=np.int64)
        np.cumsum(v, out=out[1:])
        cum[name] = out
    return Runs(key[order], order, cum, rows.cls[order])


def _run_position(grid: Grid, runs: Runs, back: int | None) -> np.ndarray:
    """Per spine row: rows of earlier accounts, plus its own rows before ``cutoff - back`` days.

    ``back`` None counts none of its own rows. Cached: a few distinct ``back`` serve every
    feature.
    """
    if back not in runs.positions:
        base = grid.acc.astype(np.int64) * (grid.ndays + 1)
        if back is not None:
            base += grid.cutoff_day() - back + 1
        runs.positions[back] = np.searchsorted(runs.key, base)
    return runs.positions[back]


def runs_window(grid: Grid, runs: Runs, measure: str, window: int | None) -> np.ndarray:
    """Per spine row: a measure summed over the window (None: every row before the cutoff)."""
    cum = runs.cum[measure]
    return cum[_run_position(grid, runs, 0)] - cum[_run_position(grid, runs, window)]


def runs_latest(grid: Grid, runs: Runs, match: np.ndarray | None) -> np.ndarray:
    """Per spine row: the index (into the unsorted rows) of the latest matching row, or -1.

    Only rows before the cutoff are candidates.

    ``match`` says which sorted rows count (None: all); the last matching row before a
    position is a running maximum of positions.
    """
    positions = np.arange(len(runs.key))
    last = positions if match is None else np.maximum.accumulate(np.where(match, positions, -1))
    hi = _run_position(grid, runs, 0)
    start = _run_position(grid, runs, None)
    out = np.full(grid.n, -1, dtype=np.int64)
    if not len(last):
        return out
    j = np.where(hi > 0, last[np.maximum(hi - 1, 0)], -1)
    ok = (j >= start) & (j >= 0)
    out[ok] = runs.order[j[ok]]
    return out


@dataclass(frozen=True)
class DayRuns:
    """A table's distinct (account, calendar day) pairs over its whole history, sorted.

    For aggregates over the days with a row rather than the rows: distinct days in a window or
    the lifetime, the gaps between consecutive days, the first time, the latest day's totals.
    ``key`` is ``account * span + (day - base)`` (``day`` counted from the grid's start, negative
    before it, so rows older than the windows keep their day); per spine row, its account's days
    before the cutoff are the entries between two binary searches. Everything is integer
    arithmetic on exact values (days, micro-units), so it is exact.

    Attributes
    ----------
    key : ndarray
        Sorted distinct keys (int64).
    day : ndarray
        Day of each entry (offset from the grid's start).
    base, span : int
        The earliest day, and the number of days from it to the latest (key arithmetic).
    gap2 : ndarray
        Running sums of the squared gap (in days) from each entry to the previous day of the
        same account (0 for an account's first day): ``gap2[j]`` sums entries ``0 .. j-1``.
    first_time : ndarray
        Per entry: the earliest row time (epoch us) of that day.
    sums : dict
        Value column -> per entry, the sum of its values over the day's rows.
    """

    key: np.ndarray
    day: np.ndarray
    base: int
    span: int
    gap2: np.ndarray
    first_time: np.ndarray
    sums: dict[str, np.ndarray]
    positions: dict[int | None, np.ndarray] = field(default_factory=dict)  # by window back


def day_runs(grid: Grid, rows: Rows, mask: np.ndarray, columns: tuple[str, ...] = ()) -> DayRuns:
    """The distinct (account, day) pairs of the rows in ``mask`` (see :class:`DayRuns`).

    Needs the rows' times (``rows.time``): their day is recomputed from them, whole history.
    """
    assert rows.time is not None
    epoch = dt.datetime(1970, 1, 1)
    start_us = (grid.start - epoch) // dt.timedelta(microseconds=1)
    time = rows.time[mask]
    day = (time - start_us) // US_PER_DAY  # floor: days before the start are negative
    base = int(day.min()) if len(day) else 0
    span = int(day.max()) - base + 1 if len(day) else 1
    key = rows.acc[mask].astype(np.int64) * span + (day - base)
    order = np.argsort(key, kind="stable")
    key = key[order]
    new = np.ones(len(key), dtype=bool)
    new[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(new)
    ukey = key[starts]
    uday = ukey % span + base
    gap = np.zeros(len(ukey), dtype=np.int64)
    same = ukey[1:] // span == ukey[:-1] // span  # the previous entry is the same account's
    gap[1:] = np.where(same, uday[1:] - uday[:-1], 0)
    gap2 = np.zeros(len(ukey) + 1, dtype=np.int64)
    np.cumsum(gap * gap, out=gap2[1:])
    if len(starts):
        first_time = np.minimum.reduceat(time[order], starts)
        sums = {c: np.add.reduceat(rows.values[c][mask][order], starts) for c in columns}
    else:
        first_time = np.zeros(0, dtype=np.int64)
        sums = {c: np.zeros(0, dtype=rows.values[c].dtype) for c in columns}
    return DayRuns(ukey, uday, base, span, gap2, first_time, sums)


def _day_position(grid: Grid, runs: DayRuns, back: int | None) -> np.ndarray:
    """Per spine row: the position of its account's first day at or after ``cutoff - back``.

    That is, the entries of earlier accounts plus its own days before ``cutoff - back`` (None:
    none of its own days). Cached per ``back``.
    """
    if back not in runs.positions:
        base = grid.acc.astype(np.int64) * runs.span
        if back is not None:
            base += np.clip(grid.cutoff_day() - back - runs.base, 0, runs.span)
        runs.positions[back] = np.searchsorted(runs.key, base)
    return runs.positions[back]


def distinct_days(grid: Grid, runs: DayRuns, window: int | None) -> np.ndarray:
    """Per spine row: days with a row in ``[cutoff - window, cutoff)`` (None: before it)."""
    hi = _day_position(grid, runs, 0)
    return (hi - _day_position(grid, runs, window)).astype(np.float64)


def first_times(grid: Grid, runs: DayRuns) -> np.ndarray:
    """Per spine row: the earliest row time (epoch us) before the cutoff; -1 if none."""
    hi, lo = _day_position(grid, runs, 0), _day_position(grid, runs, None)
    out = np.full(grid.n, -1, dtype=np.int64)
    ok = hi > lo
    out[ok] = runs.first_time[lo[ok]]
    return out


def latest_day_sums(grid: Grid, runs: DayRuns, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Per spine row: the sum of ``column`` on the latest day with a row before the cutoff.

    Also returns whether there is such a day (the sum is 0 where there is not).
    """
    hi, lo = _day_position(grid, runs, 0), _day_position(grid, runs, None)
    values = runs.sums[column]
    out = np.zeros(grid.n, dtype=values.dtype)
    ok = hi > lo
    out[ok] = values[hi[ok] - 1]
    return out, ok


def gap_spread(grid: Grid, runs: DayRuns) -> np.ndarray:
    """Per spine row: the sample standard deviation of the gaps between its days with a row.

    Gaps are whole days between consecutive distinct days before the cutoff; NaN with fewer
    than three such days (fewer than two gaps).

    With ``m`` gaps summing to ``D`` (first to last day) and squares summing to ``S``, the
    variance is ``(m S - D^2) / (m (m - 1))``: the numerator is exact in integers.
    """
    hi, lo = _day_position(grid, runs, 0), _day_position(grid, runs, None)
    m = hi - lo - 1
    out = np.full(grid.n, np.nan)
    ok = m >= 2
    h, l_, mm = hi[ok], lo[ok], m[ok]
    span = runs.day[h - 1] - runs.day[l_]
    squares = runs.gap2[h] - runs.gap2[l_ + 1]  # gaps of entries l+1 .. h-1
    num = mm * squares - span * span
    out[ok] = np.sqrt(num / (mm * (mm - 1)))
    return out


def older_times(grid: Grid, rows: Rows, mask: np.ndarray) -> np.ndarray:
    """Per account: the latest time (epoch us) of a row in ``mask`` before the start; -1 if none."""
    assert rows.time is not None
    keep = mask & (rows.day < 0)
    best = np.full(grid.accounts, -1, dtype=np.int64)
    np.maximum.at(best, rows.acc[keep], rows.time[keep])
    return best


def days_since(grid: Grid, times: np.ndarray) -> np.ndarray:
    """Per spine row: days from ``times`` (epoch us; -1 = none) to the cutoff, NaN for none.

    Computed as the SQL engines do: integer microseconds first, then one division.
    """
    diff = (grid.cutoff_us() - times).astype(np.float64) / US_PER_DAY
    return np.where(times >= 0, diff, np.nan)


def segment_masks(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Per day offset: the 64-segment chunk of its segment and the segment's bit in it."""
    seg = grid.segment_of_day()[1:].astype(np.int64)
    bit = np.left_shift(np.uint64(1), (seg % MASK_BITS).astype(np.uint64))
    return (seg // MASK_BITS).astype(np.int32), bit


def distinct_counts(grid: Grid, acc: np.ndarray, masks: np.ndarray, window: int) -> np.ndarray:
    """Per spine row: distinct values active in the window, from per-(account, value) masks.

    ``masks`` has one column per 64-segment chunk: bit ``s % 64`` of chunk ``s // 64`` is set
    when the value had a row in segment ``s``.
    """
    out = np.zeros(grid.n, dtype=np.float64)
    hi, lo = grid.window_segments(window)
    assert lo is not None
    for k in range(len(grid.cutoffs)):
        rows = np.flatnonzero(grid.cut == k)
        if not len(rows):
            continue
        # the window is segments lo .. hi-1 (see Grid.window_segments)
        first, last = int(lo[rows[0]]), int(hi[rows[0]])
        active = np.zeros(len(acc), dtype=bool)
        for chunk in range(masks.shape[1]):
            m = 0
            for s in range(max(first, chunk * MASK_BITS), min(last, (chunk + 1) * MASK_BITS)):
                m |= 1 << (s % MASK_BITS)
            if m:
                active |= (masks[:, chunk] & np.uint64(m)) != 0
        counts = np.bincount(acc[active], minlength=grid.accounts)
        out[rows] = counts[grid.acc[rows]]
    return out

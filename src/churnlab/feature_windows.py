"""Window aggregates for every (account, cutoff) row from one pass over a table's rows, in NumPy.

The rows of a table arrive as arrays: the account's index, the day (offset from the first day
any window covers; -1 for older rows), a class (which filters the row matches), values, times.
Cutoffs are midnights and windows whole days, so the timeline is cut into *segments* at every
``cutoff - w`` (and every cutoff): each window of each cutoff is a run of whole segments.
One ``bincount`` per pass sums the rows into (account, segment, class) cells; a cumulative sum
over segments then gives every window of every cutoff as one difference, and lifetime totals
(segment 0 holds the older rows) as one lookup. Distinct days come from a per-(account, day)
presence table, the latest time before a cutoff from its last active day, distinct users from
per-(account, user) bit masks of the segments they were active in. All of it is exact:
integers stay integers, money is summed as integer micro-units.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

US_PER_DAY = 86_400_000_000
_EXACT_FLOAT = 2**53  # integers below this add exactly in float64
MASK_BITS = 64


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
        return len(self.acc)

    @property
    def ndays(self) -> int:
        return int(self.bounds[-1])

    @property
    def segments(self) -> int:
        """Segments including segment 0."""
        return len(self.bounds)

    def cutoff_day(self) -> np.ndarray:
        """Day offset of each cutoff."""
        return np.array([(c - self.start).days for c in self.cutoffs], dtype=np.int64)

    def segment_of_day(self) -> np.ndarray:
        """Lookup: index ``d + 1`` (``d`` = day offset, -1 for older rows) -> segment."""
        days = np.arange(-1, self.ndays, dtype=np.int64)
        seg = np.searchsorted(self.bounds, days, side="right")
        return seg.astype(np.int16 if len(self.bounds) < 2**15 else np.int32)

    def window_columns(self, window: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Per spine row: cumulative-sum columns of the window's end and start (None: lifetime).

        With ``C[:, m]`` the sum of segments ``0 .. m-1``, a window's value is
        ``C[:, hi] - C[:, lo]`` and a lifetime value ``C[:, hi]``.
        """
        cday = self.cutoff_day()
        hi = np.searchsorted(self.bounds, cday) + 1
        if window is None:
            return hi[self.cut], None
        lo = np.searchsorted(self.bounds, cday - window) + 1
        return hi[self.cut], lo[self.cut]


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
        combos = np.flatnonzero(np.bincount(bits, minlength=1 << nbits))
    else:  # too many filters for a lookup table the size of every combination
        combos = np.unique(bits)
    lut = np.zeros(int(combos[-1]) + 1 if len(combos) else 1, dtype=np.int16)
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

    def rows_with(self, bit: int | None) -> np.ndarray:
        """Boolean mask of the rows matching filter ``bit``."""
        match = np.zeros(len(self.combos), dtype=bool)
        match[self.classes_with(bit)] = True
        return match[self.cls]


_SPLIT = 2**26


@dataclass(frozen=True)
class Sums:
    """Cumulative (account, segment) sums of several measures.

    ``cum[a, m, k]`` is measure ``k`` of account ``a`` summed over segments ``0 .. m-1``, so
    a window is the difference of two columns and a lifetime total one column. Float64 holds
    every integer sum exactly below 2**53; integer values that could exceed it per account are
    summed as a high and a low part (``split``) and recombined exactly by :func:`window_sums`.
    """

    cum: np.ndarray
    index: dict[str, int]
    split: dict[str, int]  # measure -> column of its high part (``index`` has the low part)


def _weights(rows: Rows, column: str, accounts: int) -> list[np.ndarray]:
    """Weight columns for one value: itself, or low and high parts of large integers."""
    v = rows.values[column]
    if v.dtype != np.int64:
        return [np.where(np.isnan(v), 0.0, v)]
    per_account = np.bincount(rows.acc, weights=np.abs(v).astype(np.float64), minlength=accounts)
    if not len(v) or per_account.max() < _EXACT_FLOAT / 2:
        return [v.astype(np.float64)]
    high, low = np.divmod(v, _SPLIT)
    return [low.astype(np.float64), high.astype(np.float64)]


def segment_sums(
    grid: Grid, rows: Rows, measures: dict[str, tuple[int | None, str | None]]
) -> Sums:
    """Cumulative (account, segment) sums of each measure, from one ``bincount`` per value.

    ``measures`` maps a measure to (filter bit, value column or None for a row count). Each
    value is summed per (account, segment, class) once; a 0/1 matrix of which classes each
    measure takes then gives all its measures in one matrix product.
    """
    nseg, ncls = grid.segments, len(rows.combos)
    seg = grid.segment_of_day()[rows.day.astype(np.int64) + 1]
    cells = grid.accounts * nseg * ncls
    itype = np.dtype(np.int32 if cells < 2**31 else np.int64)
    # Python ints are weak scalars: the products stay in ``itype``
    flat = rows.acc.astype(itype) * (nseg * ncls) + seg.astype(itype) * ncls
    flat += rows.cls.astype(itype)
    by_value: dict[str | None, list[str]] = {}
    for name, (_, column) in measures.items():
        by_value.setdefault(column, []).append(name)
    parts: list[np.ndarray] = []
    index: dict[str, int] = {}
    split: dict[str, int] = {}
    width = 0
    for column, names in by_value.items():
        select = np.zeros((ncls, len(names)))
        for j, name in enumerate(names):
            select[rows.classes_with(measures[name][0]), j] = 1.0
        weights = [None] if column is None else _weights(rows, column, grid.accounts)
        for part, w in enumerate(weights):
            per_class = np.bincount(flat, weights=w, minlength=cells).astype(np.float64)
            # einsum, not matmul: BLAS is slow (and threads) on this tall, thin product
            picked = np.einsum("ck,km->cm", per_class.reshape(-1, ncls), select)
            parts.append(picked.reshape(grid.accounts, nseg, len(names)))
            for j, name in enumerate(names):
                (split if part else index)[name] = width + j
            width += len(names)
    cum = np.zeros((grid.accounts, nseg + 1, width))
    np.cumsum(np.concatenate(parts, axis=2), axis=1, out=cum[:, 1:, :])
    return Sums(cum, index, split)


def window_sums(grid: Grid, sums: Sums, window: int | None) -> dict[str, np.ndarray]:
    """Per spine row and measure: the window's (or the lifetime's) sum.

    Integer measures come back as int64, exactly; others as float64.
    """
    hi, lo = grid.window_columns(window)
    m = sums.cum[grid.acc, hi]
    if lo is not None:
        m -= sums.cum[grid.acc, lo]
    out = {name: m[:, k] for name, k in sums.index.items()}
    for name, k in sums.split.items():
        out[name] = np.rint(m[:, k]).astype(np.int64) * _SPLIT + np.rint(out[name]).astype(np.int64)
    return out


def day_cells(grid: Grid, rows: Rows) -> np.ndarray:
    """Per row: its (account, day) cell of the grid, -1 for rows before the start."""
    itype = np.dtype(np.int32 if grid.accounts * grid.ndays < 2**31 else np.int64)
    cell = rows.acc.astype(itype) * grid.ndays + rows.day.astype(itype)
    cell[rows.day < 0] = -1
    return cell


def active_day_counts(grid: Grid, cells: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Cumulative active days: ``[a, j]`` = days before day ``j`` with a row in ``mask``."""
    present = np.zeros(grid.accounts * grid.ndays, dtype=bool)
    present[cells[mask & (cells >= 0)]] = True
    cum = np.zeros((grid.accounts, grid.ndays + 1), dtype=np.int32)
    np.cumsum(present.reshape(grid.accounts, grid.ndays), axis=1, out=cum[:, 1:])
    return cum


def active_days(grid: Grid, cum: np.ndarray, window: int) -> np.ndarray:
    """Per spine row: days with a row in ``[cutoff - window, cutoff)``."""
    cday = grid.cutoff_day()[grid.cut]
    return (cum[grid.acc, cday] - cum[grid.acc, cday - window]).astype(np.float64)


def latest_times(
    grid: Grid, rows: Rows, cells: np.ndarray, mask: np.ndarray, cum: np.ndarray
) -> np.ndarray:
    """Per spine row: the latest row time (epoch us) in ``mask`` before the cutoff; -1 if none.

    Only rows on or after the grid's start are looked at (older ones: :func:`older_times`).
    The last active day before the cutoff is found by bisecting the account's cumulative
    active days (``cum``); the time within that day is the maximum over the rows of the
    (account, day) cells actually needed.
    """
    assert rows.time is not None
    cday = grid.cutoff_day()[grid.cut]
    before = cum[grid.acc, cday]
    lo, hi = np.zeros(grid.n, dtype=np.int64), cday.copy()
    while (lo < hi).any():  # smallest j with cum[a, j] == before: the last active day is j - 1
        mid = (lo + hi) // 2
        go = cum[grid.acc, mid] < before
        lo, hi = np.where(go, mid + 1, lo), np.where(go, hi, mid)
    found = before > 0
    out = np.full(grid.n, -1, dtype=np.int64)
    if not found.any():
        return out
    need = grid.acc[found].astype(np.int64) * grid.ndays + (lo[found] - 1)
    wanted, inverse = np.unique(need, return_inverse=True)
    slot = np.full(grid.accounts * grid.ndays, -1, dtype=np.int32)
    slot[wanted] = np.arange(len(wanted), dtype=np.int32)
    keep = np.flatnonzero(mask & (cells >= 0))
    pos = slot[cells[keep]]
    hit = pos >= 0
    best = np.full(len(wanted), -1, dtype=np.int64)
    np.maximum.at(best, pos[hit], rows.time[keep[hit]])
    out[found] = best[inverse]
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
    epoch = dt.datetime(1970, 1, 1)
    cut_us = np.array([(c - epoch) // dt.timedelta(microseconds=1) for c in grid.cutoffs])
    diff = (cut_us[grid.cut] - times).astype(np.float64) / US_PER_DAY
    return np.where(times >= 0, diff, np.nan)


def segment_masks(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Per day offset: the 64-segment chunk of its segment and the segment's bit in it."""
    seg = grid.segment_of_day()[1:].astype(np.int64)
    return (seg // MASK_BITS).astype(np.int32), np.left_shift(
        np.uint64(1), (seg % MASK_BITS).astype(np.uint64)
    )


def distinct_counts(grid: Grid, acc: np.ndarray, masks: np.ndarray, window: int) -> np.ndarray:
    """Per spine row: distinct values active in the window, from per-(account, value) masks.

    ``masks`` has one column per 64-segment chunk: bit ``s % 64`` of chunk ``s // 64`` is set
    when the value had a row in segment ``s``.
    """
    out = np.zeros(grid.n, dtype=np.float64)
    hi, lo = grid.window_columns(window)
    cday = grid.cutoff_day()
    for k in range(len(grid.cutoffs)):
        rows = np.flatnonzero(grid.cut == k)
        if not len(rows):
            continue
        # segments lo-1 .. hi-2 (1-based segment numbers) form the window
        first = int(np.searchsorted(grid.bounds, cday[k] - window)) + 1
        last = int(np.searchsorted(grid.bounds, cday[k]))
        active = np.zeros(len(acc), dtype=bool)
        for chunk in range(masks.shape[1]):
            m = 0
            for s in range(first, last + 1):
                if s // MASK_BITS == chunk:
                    m |= 1 << (s % MASK_BITS)
            if m:
                active |= (masks[:, chunk] & np.uint64(m)) != 0
        counts = np.bincount(acc[active], minlength=grid.accounts)
        out[rows] = counts[grid.acc[rows]]
    del hi, lo
    return out

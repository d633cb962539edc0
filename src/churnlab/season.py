"""Season offsets: the calendar month's base rate as a fixed part of the model's log-odds.

Churn and expansion rates move with the calendar (the run-up to Christmas on a retailer's
purchase data; renewals bunched in January on contract data), and a booster calibrated on one
validation cutoff carries that cutoff's level to the test cutoff: on Online Retail II a June
calibration over-predicted September's churn by ten points. A season-aware model starts every
row from the log-odds of the positive rate its task had at training cutoffs in the same calendar
month (LightGBM's ``init_score``) and the trees learn what the features add on top of it; the
same offset is added at scoring, from the month of the row's cutoff.

Offsets are read from training cutoffs only, and only when those cover every calendar month (a
month that was never seen has no rate). Training decides on the validation cutoff whether the
offsets help (:func:`churnlab.train.train_task`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MONTHS = tuple(range(1, 13))


def _logit(p: np.ndarray | float) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4)
    return np.asarray(np.log(q / (1 - q)), dtype=float)


def coverage_problem(train_rows: pd.DataFrame) -> str | None:
    """Why the training cutoffs cannot give a season offset for every month, or None."""
    months = set(pd.DatetimeIndex(train_rows["cutoff"]).month)
    missing = [m for m in MONTHS if m not in months]
    if missing:
        return (
            f"the training cutoffs cover {12 - len(missing)} of the 12 calendar months "
            "(a season needs at least a year of labelled cutoffs before the validation cutoff)"
        )
    return None


def offsets(train_rows: pd.DataFrame, task: str) -> dict[int, float]:
    """Calendar month -> log-odds of the task's positive rate at training cutoffs in that month.

    Each month's log-odds is shrunk toward the months' mean as far as its difference could be
    sampling noise (empirical Bayes), so small worlds do not carry one month's luck forward.

    Raises
    ------
    ValueError
        If a calendar month has no training row (check :func:`coverage_problem` first).
    """
    months = pd.DatetimeIndex(train_rows["cutoff"]).month
    y = train_rows[task].astype(float)
    stats = y.groupby(np.asarray(months)).agg(["mean", "size"])
    missing = [m for m in MONTHS if m not in stats.index]
    if missing:
        raise ValueError(f"no training rows in calendar months {missing}")
    stats = stats.loc[list(MONTHS)]
    rate, n = stats["mean"].to_numpy(dtype=float), stats["size"].to_numpy(dtype=float)
    level = _logit(rate)
    # Empirical Bayes: each month's log-odds is shrunk toward the mean of the months by the
    # share of their spread that sampling noise (binomial, on the log-odds scale) does not
    # explain; a world without a season gets offsets close to one common level.
    q = np.clip(rate, 1e-4, 1 - 1e-4)
    noise = 1.0 / (n * q * (1 - q))
    centre = float(np.mean(level))
    spread = max(0.0, float(np.var(level, ddof=1)) - float(np.mean(noise)))
    weight = spread / (spread + noise) if spread > 0 else np.zeros_like(noise)
    shrunk = centre + weight * (level - centre)
    return {m: float(v) for m, v in zip(MONTHS, shrunk, strict=True)}


def offset_of(table: dict[int, float], cutoffs: pd.Series | np.ndarray) -> np.ndarray:
    """The offset of each row, from the calendar month of its cutoff."""
    months = pd.DatetimeIndex(pd.to_datetime(np.asarray(cutoffs))).month
    lookup = np.array([np.nan, *(table[m] for m in MONTHS)], dtype=float)
    return np.asarray(lookup[np.asarray(months, dtype=int)], dtype=float)

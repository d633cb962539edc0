"""Measuring campaigns from their randomised holdouts: pure statistics, no I/O.

A campaign's audience is split at random into a treated group (contacted) and a holdout (not
contacted); after the outcome window the effect of the campaign is the difference between the
two groups. This module turns those outcomes into estimates with confidence intervals and plans
holdout sizes; :mod:`churnlab.uplift_curves` scores uplift rankings with Qini curves.

Conventions
-----------
- Differences are always **treated minus control** (holdout). For churn a negative difference
  means the campaign kept customers.
- Outcomes are 0/1 arrays (booleans or numbers) for rates, any finite numbers for means
  (retained ARR, expansion value per account). Missing values are an error: drop accounts whose
  outcome window is not complete before calling.

Intervals
---------
- :func:`difference_in_rates` defaults to Newcombe's hybrid score interval (method 10 of
  Newcombe 1998, built from the two Wilson score intervals without continuity correction); it
  keeps close to its nominal coverage with small groups and rates near 0 or 1, where the Wald
  interval does not. ``method="bootstrap"`` gives a seeded percentile bootstrap that resamples
  each group separately.
- :func:`difference_in_means` defaults to Welch's t interval (unequal variances,
  Welch-Satterthwaite degrees of freedom), with the same bootstrap option.

References
----------
Newcombe, R. G. (1998). Interval estimation for the difference between independent proportions:
comparison of eleven methods. Statistics in Medicine 17, 873-890.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, stats

from churnlab.errors import ChurnlabError

DEFAULT_BOOT = 2000
# Bootstrap replicates are drawn in chunks of at most this many resampled values at once.
_BOOT_CHUNK = 4_000_000


class EffectsError(ChurnlabError):
    """Inputs that cannot be measured (empty groups, missing or non-binary outcomes, ...)."""


@dataclass(frozen=True)
class RateDifference:
    """A difference between the event rates of a treated group and its control group.

    Attributes
    ----------
    rate_t, rate_c : float
        Event rates of the treated and the control group.
    diff : float
        ``rate_t - rate_c``.
    ci_low, ci_high : float
        Confidence interval for ``diff`` at ``level``.
    n_t, n_c : int
        Group sizes.
    events_t, events_c : int
        Events (outcome 1) per group.
    method : str
        ``"newcombe"`` (hybrid score, Newcombe 1998 method 10) or ``"bootstrap"``.
    level : float
        Confidence level.
    """

    rate_t: float
    rate_c: float
    diff: float
    ci_low: float
    ci_high: float
    n_t: int
    n_c: int
    events_t: int
    events_c: int
    method: str
    level: float


@dataclass(frozen=True)
class MeanDifference:
    """A difference between the mean outcomes of a treated group and its control group.

    Attributes
    ----------
    mean_t, mean_c : float
        Group means.
    diff : float
        ``mean_t - mean_c``.
    ci_low, ci_high : float
        Confidence interval for ``diff`` at ``level``.
    n_t, n_c : int
        Group sizes.
    se : float
        Standard error of ``diff`` (Welch's; the bootstrap replicates' standard deviation for
        ``method="bootstrap"``).
    df : float
        Welch-Satterthwaite degrees of freedom (NaN for the bootstrap, or when both groups have
        zero variance).
    method : str
        ``"welch"`` or ``"bootstrap"``.
    level : float
        Confidence level.
    """

    mean_t: float
    mean_c: float
    diff: float
    ci_low: float
    ci_high: float
    n_t: int
    n_c: int
    se: float
    df: float
    method: str
    level: float


@dataclass(frozen=True)
class SampleSize:
    """Accounts a holdout test needs (see :func:`required_sample_size`).

    Attributes
    ----------
    n_total, n_treated, n_control : int
        Accounts in the whole audience, contacted and held out.
    base_rate, detectable_diff, alpha, power, holdout_share : float
        The inputs, for reporting.
    """

    n_total: int
    n_treated: int
    n_control: int
    base_rate: float
    detectable_diff: float
    alpha: float
    power: float
    holdout_share: float


# ---------------------------------------------------------------------------------------------
# inputs


def _values(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise EffectsError(f"{name}: expected a one-dimensional array, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.float64)
    try:
        out = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise EffectsError(f"{name}: values must be numbers or booleans") from None
    bad = ~np.isfinite(out)
    if bad.any():
        raise EffectsError(
            f"{name}: {int(bad.sum())} missing or infinite value(s) (first at position "
            f"{int(np.flatnonzero(bad)[0])}); drop accounts whose outcome is not known yet"
        )
    return out


def _binary(values: ArrayLike, name: str) -> np.ndarray:
    out = _values(values, name)
    bad = (out != 0) & (out != 1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise EffectsError(
            f"{name}: outcomes must be 0/1 (or booleans); {int(bad.sum())} value(s) are not, "
            f"e.g. {out[first]:g} at position {first}"
        )
    return out


def _nonempty(n: int, name: str) -> None:
    if n == 0:
        raise EffectsError(f"{name}: no accounts; both groups need at least one")


def _level(level: float) -> float:
    if not 0 < level < 1:
        raise EffectsError(f"level must be between 0 and 1 (exclusive), got {level}")
    return float(stats.norm.ppf(0.5 + level / 2))


def _check_boot(n_boot: int) -> None:
    if n_boot < 100:
        raise EffectsError(f"n_boot must be at least 100 for a percentile interval, got {n_boot}")


# ---------------------------------------------------------------------------------------------
# rates


def _wilson(events: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval for events / n (no continuity correction)."""
    p = events / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denom = 1 + z * z / n
    return max(0.0, (centre - half) / denom), min(1.0, (centre + half) / denom)


def _newcombe(events_t: int, n_t: int, events_c: int, n_c: int, z: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p_t - p_c (1998, method 10)."""
    p_t, p_c = events_t / n_t, events_c / n_c
    l_t, u_t = _wilson(events_t, n_t, z)
    l_c, u_c = _wilson(events_c, n_c, z)
    d = p_t - p_c
    low = d - math.sqrt((p_t - l_t) ** 2 + (u_c - p_c) ** 2)
    high = d + math.sqrt((u_t - p_t) ** 2 + (p_c - l_c) ** 2)
    return low, high


def difference_in_rates(
    treated_outcomes: ArrayLike,
    control_outcomes: ArrayLike,
    *,
    level: float = 0.95,
    method: Literal["newcombe", "bootstrap"] = "newcombe",
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
) -> RateDifference:
    """Difference in event rates, treated minus control, with a confidence interval.

    Parameters
    ----------
    treated_outcomes, control_outcomes : array-like of 0/1 or bool
        One outcome per account (e.g. churned within the window) in the contacted group and in
        the holdout.
    level : float
        Confidence level, default 0.95.
    method : {"newcombe", "bootstrap"}
        ``"newcombe"`` (default): Newcombe's hybrid score interval, method 10 of Newcombe (1998):
        with Wilson score intervals ``(l_t, u_t)`` and ``(l_c, u_c)`` for the two rates, the
        interval is ``d - sqrt((p_t - l_t)^2 + (u_c - p_c)^2)`` to
        ``d + sqrt((u_t - p_t)^2 + (p_c - l_c)^2)``. ``"bootstrap"``: percentile interval of
        ``n_boot`` replicates that resample each group with replacement, separately (for 0/1
        outcomes a resampled group's event count is Binomial(n, observed rate), which is how it
        is drawn).
    n_boot : int
        Bootstrap replicates (``method="bootstrap"`` only).
    seed : int
        Seed of the bootstrap's generator: the same seed gives the same interval.

    Returns
    -------
    RateDifference

    Raises
    ------
    EffectsError
        If a group is empty or holds values other than 0/1.
    """
    t = _binary(treated_outcomes, "treated_outcomes")
    c = _binary(control_outcomes, "control_outcomes")
    _nonempty(len(t), "treated_outcomes")
    _nonempty(len(c), "control_outcomes")
    z = _level(level)
    n_t, n_c = len(t), len(c)
    e_t, e_c = int(t.sum()), int(c.sum())
    p_t, p_c = e_t / n_t, e_c / n_c
    if method == "newcombe":
        low, high = _newcombe(e_t, n_t, e_c, n_c, z)
    elif method == "bootstrap":
        _check_boot(n_boot)
        rng = np.random.default_rng(seed)
        diffs = rng.binomial(n_t, p_t, n_boot) / n_t - rng.binomial(n_c, p_c, n_boot) / n_c
        low, high = _percentiles(diffs, level)
    else:
        raise EffectsError(f"method must be 'newcombe' or 'bootstrap', got {method!r}")
    return RateDifference(p_t, p_c, p_t - p_c, low, high, n_t, n_c, e_t, e_c, method, level)


def _percentiles(replicates: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return float(low), float(high)


# ---------------------------------------------------------------------------------------------
# means


def _boot_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    n = len(values)
    out = np.empty(n_boot)
    step = max(1, _BOOT_CHUNK // max(n, 1))
    for start in range(0, n_boot, step):
        k = min(step, n_boot - start)
        out[start : start + k] = values[rng.integers(0, n, (k, n))].mean(axis=1)
    return out


def difference_in_means(
    treated_values: ArrayLike,
    control_values: ArrayLike,
    *,
    level: float = 0.95,
    method: Literal["welch", "bootstrap"] = "welch",
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
) -> MeanDifference:
    """Difference in mean outcome per account, treated minus control, with a confidence interval.

    For outcomes such as retained ARR or expansion value per account (accounts without any count
    as 0, not as missing).

    Parameters
    ----------
    treated_values, control_values : array-like of float
        One value per account in the contacted group and in the holdout.
    level : float
        Confidence level, default 0.95.
    method : {"welch", "bootstrap"}
        ``"welch"`` (default): ``diff +/- t_{df, (1 + level) / 2} * se`` with
        ``se = sqrt(s_t^2 / n_t + s_c^2 / n_c)`` (sample variances) and Welch-Satterthwaite
        ``df``; needs at least two accounts per group. ``"bootstrap"``: percentile interval of
        ``n_boot`` replicates that resample each group with replacement, separately.
    n_boot : int
        Bootstrap replicates (``method="bootstrap"`` only).
    seed : int
        Seed of the bootstrap's generator.

    Returns
    -------
    MeanDifference

    Raises
    ------
    EffectsError
        If a group is empty (or, for Welch, has a single account) or holds missing values.
    """
    t = _values(treated_values, "treated_values")
    c = _values(control_values, "control_values")
    _nonempty(len(t), "treated_values")
    _nonempty(len(c), "control_values")
    _level(level)
    n_t, n_c = len(t), len(c)
    m_t, m_c = float(t.mean()), float(c.mean())
    diff = m_t - m_c
    if method == "welch":
        if min(n_t, n_c) < 2:
            raise EffectsError(
                f"Welch's interval needs at least 2 accounts per group (treated {n_t}, control "
                f"{n_c}); use method='bootstrap' or collect more"
            )
        v_t, v_c = float(t.var(ddof=1)) / n_t, float(c.var(ddof=1)) / n_c
        se = math.sqrt(v_t + v_c)
        if se == 0:
            low = high = diff
            df = float("nan")
        else:
            df = (v_t + v_c) ** 2 / (v_t**2 / (n_t - 1) + v_c**2 / (n_c - 1))
            half = float(stats.t.ppf(0.5 + level / 2, df)) * se
            low, high = diff - half, diff + half
    elif method == "bootstrap":
        _check_boot(n_boot)
        rng = np.random.default_rng(seed)
        reps = _boot_means(t, n_boot, rng) - _boot_means(c, n_boot, rng)
        low, high = _percentiles(reps, level)
        se, df = float(reps.std(ddof=1)), float("nan")
    else:
        raise EffectsError(f"method must be 'welch' or 'bootstrap', got {method!r}")
    return MeanDifference(m_t, m_c, diff, low, high, n_t, n_c, se, df, method, level)


# ---------------------------------------------------------------------------------------------
# planning


def _check_rate(name: str, p: float) -> None:
    if not 0 < p < 1:
        raise EffectsError(f"{name} must be strictly between 0 and 1, got {p}")


def _check_alpha_power(alpha: float, power: float) -> tuple[float, float]:
    if not 0 < alpha < 1:
        raise EffectsError(f"alpha must be between 0 and 1, got {alpha}")
    if not 0 < power < 1:
        raise EffectsError(f"power must be between 0 and 1, got {power}")
    return float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))


def _needed_diff(
    p_c: float, d: float, share_t: float, share_c: float, za: float, zb: float
) -> float:
    """``z_a sigma_0 + z_b sigma_1`` for one account in total (shares of the audience per arm).

    sigma_0: standard error of the difference under H0 (pooled rate at this allocation);
    sigma_1: under the alternative ``p_t = p_c + d``. The two-sided test at level alpha has the
    requested power when ``|d| = (z_a sigma_0 + z_b sigma_1) / sqrt(N)``.
    """
    p_t = p_c + d
    pooled = share_t * p_t + share_c * p_c
    s0 = math.sqrt(pooled * (1 - pooled) * (1 / share_t + 1 / share_c))
    s1 = math.sqrt(p_t * (1 - p_t) / share_t + p_c * (1 - p_c) / share_c)
    return za * s0 + zb * s1


def required_sample_size(
    base_rate: float,
    detectable_diff: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    holdout_share: float,
) -> SampleSize:
    """Audience size a holdout test needs to detect a difference in rates.

    Two-sided two-proportion z-test (pooled variance under the null, no continuity correction),
    with a share ``holdout_share`` of the audience held out: the total ``N`` solves
    ``|d| sqrt(N) = z_{1-alpha/2} sqrt(pbar (1 - pbar) (1/(1-h) + 1/h))
    + z_{power} sqrt(p_t (1 - p_t)/(1-h) + p_c (1 - p_c)/h)``, with ``p_c = base_rate``,
    ``p_t = base_rate + detectable_diff`` and ``pbar = (1-h) p_t + h p_c``. Each arm is rounded up
    to a whole account. With ``h = 0.5`` this is the textbook per-group formula (e.g. 0.4 vs 0.6
    needs 97 per group at alpha 0.05 and power 0.8).

    Parameters
    ----------
    base_rate : float
        The control group's expected rate (e.g. churn without the campaign).
    detectable_diff : float
        The treated-minus-control difference to detect (negative for a churn reduction).
    alpha : float
        Two-sided significance level.
    power : float
        Probability of detecting a true difference of that size.
    holdout_share : float
        Share of the audience held out, between 0 and 1.

    Returns
    -------
    SampleSize

    Raises
    ------
    EffectsError
        If a rate is not strictly between 0 and 1, the difference is 0, or the shares are not
        between 0 and 1.
    """
    _check_rate("base_rate", base_rate)
    if detectable_diff == 0:
        raise EffectsError("detectable_diff must not be 0: no sample size detects no difference")
    _check_rate("base_rate + detectable_diff", base_rate + detectable_diff)
    _check_rate("holdout_share", holdout_share)
    za, zb = _check_alpha_power(alpha, power)
    share_c = holdout_share
    share_t = 1 - holdout_share
    total = (
        _needed_diff(base_rate, detectable_diff, share_t, share_c, za, zb) / detectable_diff
    ) ** 2
    # A hair of tolerance so that an exact whole number is not pushed up by rounding error.
    n_t = math.ceil(total * share_t - 1e-9)
    n_c = math.ceil(total * share_c - 1e-9)
    return SampleSize(n_t + n_c, n_t, n_c, base_rate, detectable_diff, alpha, power, holdout_share)


def minimum_detectable_effect(
    n_t: int,
    n_c: int,
    base_rate: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: Literal["increase", "decrease"] = "increase",
) -> float:
    """Smallest difference in rates a holdout test of this size detects with the given power.

    The inverse of :func:`required_sample_size` (same test and formula) for fixed group sizes,
    solved numerically: the returned ``d`` satisfies
    ``|d| = (z_{1-alpha/2} sigma_0(d) + z_power sigma_1(d))`` for ``n_t`` and ``n_c`` accounts.

    Parameters
    ----------
    n_t, n_c : int
        Accounts contacted and held out.
    base_rate : float
        The control group's expected rate.
    alpha : float
        Two-sided significance level.
    power : float
        Required power.
    alternative : {"increase", "decrease"}
        Whether the campaign should raise the rate (``d > 0``, e.g. saved or expanded) or lower
        it (``d < 0``, e.g. churn).

    Returns
    -------
    float
        The signed treated-minus-control difference, or NaN when even the largest possible
        difference (to a rate of 1 or 0) cannot be detected.

    Raises
    ------
    EffectsError
        If a group is empty or the base rate is not strictly between 0 and 1.
    """
    if n_t < 1 or n_c < 1:
        raise EffectsError(f"both groups need at least one account (treated {n_t}, control {n_c})")
    _check_rate("base_rate", base_rate)
    za, zb = _check_alpha_power(alpha, power)
    if alternative not in ("increase", "decrease"):
        raise EffectsError(f"alternative must be 'increase' or 'decrease', got {alternative!r}")
    sign = 1.0 if alternative == "increase" else -1.0
    total = n_t + n_c
    share_t, share_c = n_t / total, n_c / total
    room = (1 - base_rate) if sign > 0 else base_rate

    def gap(size: float) -> float:
        d = sign * size
        return size * math.sqrt(total) - _needed_diff(base_rate, d, share_t, share_c, za, zb)

    hi = room * (1 - 1e-12)
    if gap(hi) < 0:
        return float("nan")
    size = optimize.brentq(gap, 1e-12, hi, xtol=1e-12)
    return sign * float(size)


# ---------------------------------------------------------------------------------------------
# guard rails


def too_small(
    n_holdout: int, events_holdout: int, *, min_holdout: int = 30, min_events: int = 5
) -> str | None:
    """Return a warning when a holdout is too small to measure a campaign, else None.

    Parameters
    ----------
    n_holdout : int
        Accounts held out.
    events_holdout : int
        Outcome events among them (e.g. churned accounts).
    min_holdout : int
        Fewest held-out accounts worth measuring.
    min_events : int
        Fewest events worth measuring: with fewer, the control's rate is mostly noise.

    Returns
    -------
    str or None
        A sentence with the counts and the thresholds they miss, or None when both are met.

    Raises
    ------
    EffectsError
        If a count is negative or there are more events than accounts.
    """
    if n_holdout < 0 or events_holdout < 0:
        raise EffectsError(
            f"counts must not be negative (holdout {n_holdout}, events {events_holdout})"
        )
    if events_holdout > n_holdout:
        raise EffectsError(f"more events ({events_holdout}) than held-out accounts ({n_holdout})")
    misses = []
    if n_holdout < min_holdout:
        misses.append(f"{_count(n_holdout, 'held-out account')} (need at least {min_holdout})")
    if events_holdout < min_events:
        misses.append(f"{_count(events_holdout, 'event')} among them (need at least {min_events})")
    if not misses:
        return None
    return "holdout too small to measure the campaign: " + " and ".join(misses)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"

"""The multiple-choice knapsack behind the campaign audiences: the best assignment within a budget.

:func:`select` takes one row per (account, campaign) pair with its cost and expected net value
and chooses at most one pair per account, maximising the total expected net value while the
exact sum of the chosen costs stays within the budget. :mod:`churnlab.audiences` builds the
pairs and assigns the holdouts; this module only solves (frames in, a :class:`Selection` out).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from churnlab.errors import ChurnlabError

__all__ = ["DEFAULT_TIME_LIMIT", "Selection", "select"]

# select(): how long HiGHS may search by default, and how many times a solution that HiGHS accepts
# within its feasibility tolerance but that exceeds the budget in exact arithmetic is cut off and
# the core solved again before the best exactly feasible solution found is returned.
DEFAULT_TIME_LIMIT = 5.0
_MAX_CUTS = 50
# Largest core (variables) handed to HiGHS to prove optimality. Measured with
# benchmarks/audiences.py (2 cores): cores of 2,800 / 5,000 / 10,000 variables proved in 0.3 /
# 2.4 / 4.8 s, one of 28,000 not in 60 s. Larger cores get the LP rounding.
_CORE_VARS = 8000


@dataclass(frozen=True, eq=False)
class Selection:
    """The chosen (account, campaign) pairs and how they were chosen.

    Attributes
    ----------
    chosen : DataFrame
        The chosen rows of the pairs frame (all its columns), sorted by account_id, campaign.
    objective : float
        Total expected net value of the chosen rows.
    lp_bound : float
        The LP-relaxation bound: no assignment within the budget can beat it.
    gap : float
        ``(lp_bound - objective) / lp_bound`` (0 when the bound is 0): an upper bound on how far
        the objective can be from the optimum. With status "optimal" the objective *is* the
        optimum and the gap only measures the LP's slack.
    method : str
        "none" (no pair has a positive expected net value), "unconstrained" (no budget, or it
        does not bind: every account takes its best pair), "milp" (the knapsack solved by
        HiGHS on the core left after exact reductions) or "lp-rounding" (the LP solution
        rounded down and filled greedily: the core was too large for HiGHS, or HiGHS did not
        finish within the time limit).
    status : str
        "optimal" (proven: always for none, unconstrained and milp, and for lp-rounding when the
        reductions leave nothing else) or "feasible" (lp-rounding: within the budget, at most
        ``gap`` below the optimum, not proven optimal).
    budget : float or None
        The budget (None = unlimited).
    cost : float
        Total cost of the chosen rows (never above the budget).
    core_pairs : int
        Pairs left after the exact reductions (0 when no budget binds). HiGHS solved them when
        the method is "milp"; with "lp-rounding" they were too many or HiGHS ran out of time.
    candidates : int
        Pairs with a positive expected net value that fit the budget, before the reductions.
    """

    chosen: pd.DataFrame
    objective: float
    lp_bound: float
    gap: float
    method: str
    status: str
    budget: float | None
    cost: float
    core_pairs: int = 0
    candidates: int = 0


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ChurnlabError(
            f"the {what} frame lacks the columns {missing} (it has {list(frame.columns)}); "
            f"it needs {list(columns)}"
        )


def select(
    pairs: pd.DataFrame,
    budget: float | None,
    *,
    time_limit: float = DEFAULT_TIME_LIMIT,
) -> Selection:
    """Choose the campaign assignment with the largest total expected net value within a budget.

    Maximises the sum of ``expected_net_value`` over the chosen pairs subject to: the sum of their
    ``cost`` is at most ``budget``, each account is in at most one campaign, and no pair with an
    expected net value <= 0 (or missing) is chosen. The budget check is exact: the correctly
    rounded sum of the chosen costs (``math.fsum``) is <= ``budget``, with no tolerance.

    This is a multiple-choice knapsack, solved exactly:

    1. Drop pairs with a non-positive value or a cost above the budget, and, per account, pairs
       dominated by another (cost >= and value <= it).
    2. If the budget is None or every account's best pair fits, take those ("unconstrained").
    3. Otherwise the Lagrangian dual of the budget constraint, minimised by bisection on the
       budget's price, gives the LP-relaxation bound (the per-account problems' LP relaxations
       are integral, so the two coincide) and the LP solution; rounded down and filled greedily
       it is the first solution. By weak duality, a pair whose reduced cost exceeds (bound -
       that solution) cannot be in a better one, so such pairs are removed; accounts left with
       one option are fixed.
    4. ``scipy.optimize.milp`` (HiGHS, gap 0) solves the core that remains, if it has at most
       ``_CORE_VARS`` pairs. A core solution that exceeds the budget in exact arithmetic (HiGHS
       allows 1e-6) is cut off and the core solved again.
    5. A larger core, or one HiGHS does not finish within ``time_limit``, gets the LP rounding
       of step 3 (method "lp-rounding", status "feasible"), with its gap to the LP bound.
       HiGHS's LP bound cannot see that costs come in steps (a budget that contacts at 40, 15
       and 5 cannot fill exactly), so on large cores it enumerates for minutes. On random data
       at 100,000 accounts x 4 campaigns the core is about 100,000 pairs and the rounding is
       within 5e-6 of the bound (``benchmarks/audiences.py``); cores up to about 10,000 pairs
       are proved in under 5 s.

    The input is sorted by account_id, campaign first, so the same pairs in any row order give
    the same answer, ties included: per account, of two pairs with equal value the cheaper (then
    the campaign that sorts first) is kept; between equally good assignments HiGHS, which is
    deterministic, decides. A solution HiGHS found before a time limit is not used, because it
    would depend on the machine's speed.

    Parameters
    ----------
    pairs : DataFrame
        At least ``account_id``, ``campaign``, ``cost`` (finite, >= 0) and
        ``expected_net_value``, one row per (account, campaign); typically from
        :func:`candidate_pairs`. Other columns are carried into ``Selection.chosen``.
    budget : float or None
        Total cost allowed, >= 0; None = unlimited.
    time_limit : float
        Seconds HiGHS may take, counted from the start of the call (> 0). If it has not proven
        optimality by then, the LP rounding is returned with status "feasible" and its gap.
        HiGHS checks the limit between steps, so a call can overrun it somewhat.

    Returns
    -------
    Selection
        The chosen rows and the objective, LP bound, gap, method and status.

    Raises
    ------
    ChurnlabError
        A required column is missing, a pair appears twice, a cost is negative or not finite,
        or the budget or time limit is invalid.
    """
    start = time.perf_counter()
    _require(pairs, ("account_id", "campaign", "cost", "expected_net_value"), "pairs")
    budget = _check_budget(budget)
    if not (isinstance(time_limit, Real) and time_limit > 0):
        raise ChurnlabError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    if pairs.duplicated(["account_id", "campaign"]).any():
        dup = pairs.loc[pairs.duplicated(["account_id", "campaign"]), ["account_id", "campaign"]]
        raise ChurnlabError(
            "pairs must have one row per (account_id, campaign); repeated: "
            f"{list(dup.head(3).itertuples(index=False, name=None))}"
        )
    costs_all = pairs["cost"].to_numpy(dtype=float)
    if not np.isfinite(costs_all).all() or (costs_all < 0).any():
        raise ChurnlabError("pairs.cost must be finite and >= 0 in every row")

    ordered = pairs.sort_values(["account_id", "campaign"], kind="mergesort").reset_index(drop=True)
    env = ordered["expected_net_value"].to_numpy(dtype=float)
    cost = ordered["cost"].to_numpy(dtype=float)
    keep = env > 0  # NaN compares False
    if budget is not None:
        keep &= cost <= budget
    rows = np.flatnonzero(keep)
    n_candidates = len(rows)
    if n_candidates == 0:
        return Selection(ordered.iloc[0:0], 0.0, 0.0, 0.0, "none", "optimal", budget, 0.0)

    problem = _Problem.build(ordered["account_id"].to_numpy()[rows], env[rows], cost[rows], rows)
    best = problem.best()
    if budget is None or _fsum(problem.chosen_costs(best)) <= budget:
        return _finish(
            ordered, problem, best, None, "unconstrained", "optimal", budget, n_candidates
        )

    lam, lp_bound, incumbent = problem.lagrangian(budget)
    choice, method, status, core = _solve_core(
        problem, budget, lam, lp_bound, incumbent, start + time_limit
    )
    return _finish(ordered, problem, choice, lp_bound, method, status, budget, n_candidates, core)


def _check_budget(budget: float | None) -> float | None:
    if budget is None:
        return None
    ok = isinstance(budget, Real) and not isinstance(budget, bool) and math.isfinite(budget)
    if not ok or budget < 0:
        raise ChurnlabError(
            f"budget must be a finite number >= 0, or None for no limit; got {budget!r}"
        )
    return float(budget)


def _fsum(values: np.ndarray) -> float:
    return math.fsum(values.tolist())


@dataclass(frozen=True)
class _Problem:
    """The reduced knapsack as dense (account x option) arrays.

    Options of an account are sorted by cost ascending with strictly increasing value (dominated
    ones removed); padding has value -inf. A choice is one option index per account, -1 = none.
    """

    E: np.ndarray  # expected net value
    C: np.ndarray  # cost
    R: np.ndarray  # row of the option in the sorted pairs frame, -1 for padding

    @classmethod
    def build(
        cls, account: np.ndarray, env: np.ndarray, cost: np.ndarray, rows: np.ndarray
    ) -> _Problem:
        # Accounts come sorted, so factorize's codes follow account_id order.
        codes, _ = pd.factorize(account, sort=False)
        order = np.lexsort((-env, cost, codes))  # stable: ties keep the campaign order
        codes, env, cost, rows = codes[order], env[order], cost[order], rows[order]
        running = pd.Series(env).groupby(codes).cummax().to_numpy()
        first = np.r_[True, codes[1:] != codes[:-1]]
        prev = np.r_[-np.inf, running[:-1]]
        # Sorted by cost then value, a pair survives only if it is worth strictly more than
        # every cheaper-or-equal pair of its account.
        keep = first | (env > prev)
        codes, env, cost, rows = codes[keep], env[keep], cost[keep], rows[keep]
        first = np.r_[True, codes[1:] != codes[:-1]]
        starts = np.flatnonzero(first)
        pos = np.arange(len(codes)) - np.repeat(starts, np.diff(np.r_[starts, len(codes)]))
        n_acc, k = int(codes.max()) + 1, int(pos.max()) + 1
        E = np.full((n_acc, k), -np.inf)
        C = np.zeros((n_acc, k))
        R = np.full((n_acc, k), -1, dtype=np.int64)
        E[codes, pos], C[codes, pos], R[codes, pos] = env, cost, rows
        return cls(E, C, R)

    @property
    def n_accounts(self) -> int:
        return int(self.E.shape[0])

    def best(self) -> np.ndarray:
        # The most valuable option is the last one (values increase with the option index).
        return (np.isfinite(self.E).sum(axis=1) - 1).astype(np.int64)

    def chosen_costs(self, choice: np.ndarray) -> np.ndarray:
        r = np.flatnonzero(choice >= 0)
        return self.C[r, choice[r]]

    def chosen_values(self, choice: np.ndarray) -> np.ndarray:
        r = np.flatnonzero(choice >= 0)
        return self.E[r, choice[r]]

    def at_price(self, lam: float) -> tuple[np.ndarray, np.ndarray]:
        """Each account's best option at budget price ``lam`` (cheapest on ties) and its score."""
        score = self.E - lam * self.C
        j = np.argmax(score, axis=1)
        s = score[np.arange(self.n_accounts), j]
        return np.where(s > 0, j, -1), np.maximum(s, 0.0)

    def dual(self, lam: float, budget: float) -> float:
        return float(lam * budget + self.at_price(lam)[1].sum())

    def lagrangian(self, budget: float) -> tuple[float, float, np.ndarray]:
        """Budget price, LP bound, and the LP solution rounded down then filled greedily."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(self.C > 0, self.E / self.C, 0.0)
        # Above the best value-per-cost ratio only free options score > 0, so the choice costs 0.
        hi = max(float(ratio[np.isfinite(ratio)].max(initial=0.0)) * (1 + 1e-9), 1e-300)
        lo = 0.0
        # The cost of the price-optimal choice falls as the price rises; the LP optimum is at the
        # price where it crosses the budget.
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if mid <= lo or mid >= hi or hi - lo <= 1e-15 * hi:
                break
            if self.chosen_costs(self.at_price(mid)[0]).sum() <= budget:
                hi = mid
            else:
                lo = mid
        d_lo, d_hi = self.dual(lo, budget), self.dual(hi, budget)
        lam, bound = (lo, d_lo) if d_lo < d_hi else (hi, d_hi)
        return lam, bound, self.fill(self.at_price(hi)[0], budget)

    def fill(self, choice: np.ndarray, budget: float) -> np.ndarray:
        """Upgrade accounts greedily (best value per extra cost first) within the budget left."""
        choice = self.repair(choice.copy(), budget)
        r = np.arange(self.n_accounts)
        has = choice >= 0
        cur_e = np.where(has, self.E[r, np.maximum(choice, 0)], 0.0)
        cur_c = np.where(has, self.C[r, np.maximum(choice, 0)], 0.0)
        left = budget - _fsum(cur_c)
        d_e = self.E - cur_e[:, None]
        d_c = self.C - cur_c[:, None]
        ii, jj = np.nonzero((d_e > 0) & (d_c <= left))
        if len(ii) == 0:
            return choice
        de, dc = d_e[ii, jj], d_c[ii, jj]
        with np.errstate(divide="ignore"):
            eff = np.where(dc > 0, de / dc, np.inf)
        order = np.lexsort((jj, ii, -de, -eff))
        done = np.zeros(self.n_accounts, dtype=bool)
        applied: list[tuple[int, int]] = []
        for t in order.tolist():
            i = int(ii[t])
            if done[i] or dc[t] > left:
                continue
            applied.append((i, int(choice[i])))
            choice[i] = jj[t]
            left -= dc[t]
            done[i] = True
        # The running remainder is rounded; undo upgrades (last first) until the exact sum fits.
        while applied and _fsum(self.chosen_costs(choice)) > budget:
            i, old = applied.pop()
            choice[i] = old
        return choice

    def repair(self, choice: np.ndarray, budget: float) -> np.ndarray:
        """Drop the least value-per-cost options until the exact cost sum fits the budget."""
        while _fsum(self.chosen_costs(choice)) > budget:
            r = np.flatnonzero(
                (choice >= 0) & (self.C[np.arange(self.n_accounts), np.maximum(choice, 0)] > 0)
            )
            e, c = self.E[r, choice[r]], self.C[r, choice[r]]
            choice[r[np.lexsort((r, e / c))[0]]] = -1
        return choice


def _solve_core(
    problem: _Problem,
    budget: float,
    lam: float,
    lp_bound: float,
    incumbent: np.ndarray,
    deadline: float,
) -> tuple[np.ndarray, str, str, int]:
    """Reduced-cost fixing, then HiGHS on the core (see :func:`select`).

    Returns the choice, the method, the status and the number of pairs in the core.
    """
    E, C = problem.E, problem.C
    score = E - lam * C
    u = np.maximum(score.max(axis=1), 0.0)
    # Reduced cost of each option (and of "none", which is u) at price lam. Any assignment is
    # worth at most lp_bound minus the sum of its reduced costs, so only options whose reduced
    # cost is at most (lp_bound - incumbent) can be part of a better one. The margin only keeps
    # more options than needed, against rounding in these sums.
    rc = np.where(np.isfinite(E), u[:, None] - score, np.inf)
    margin = 1e-9 * (1.0 + abs(lp_bound) + float(np.abs(E[np.isfinite(E)]).max()))
    z_inc = _fsum(problem.chosen_values(incumbent))
    slack = lp_bound - z_inc + margin
    allowed = rc <= slack
    none_allowed = u <= slack
    # The incumbent's own options always pass (its reduced costs sum to at most the slack), so
    # every account keeps at least one option and an account left with one is fixed to the
    # incumbent's choice. Were rounding to leave an account with none, the core MILP would be
    # infeasible and the incumbent returned, which is then right.
    n_allowed = allowed.sum(axis=1) + none_allowed
    fixed = n_allowed == 1
    fixed_choice = np.where(fixed & ~none_allowed, np.argmax(allowed, axis=1), -1)
    core = np.flatnonzero(~fixed)
    n_core = int(allowed[core].sum())
    if n_core == 0:
        # Nothing but the incumbent's own options is left: the bound proves it optimal.
        return incumbent, "lp-rounding", "optimal", 0
    if n_core > _CORE_VARS:
        # HiGHS would not prove this in time (its LP bound cannot see that costs come in steps,
        # so it enumerates); the LP rounding is returned with its gap.
        return incumbent, "lp-rounding", "feasible", n_core
    # Every better assignment lies in this core: solving it proves optimality.
    choice, status = _core_milp(
        problem, core, allowed, ~none_allowed, fixed_choice, budget, deadline
    )
    if status != "optimal":
        # A solution found before the time limit depends on the machine's speed; the LP
        # rounding does not, so the same input still gives the same output.
        return incumbent, "lp-rounding", "feasible", n_core
    if choice is not None and _fsum(problem.chosen_values(choice)) > z_inc:
        return choice, "milp", "optimal", n_core
    return incumbent, "milp", "optimal", n_core


def _core_milp(
    problem: _Problem,
    accounts: np.ndarray,
    allowed: np.ndarray,
    must: np.ndarray,
    base: np.ndarray,
    budget: float,
    deadline: float,
) -> tuple[np.ndarray | None, str]:
    """Best exactly-feasible choice with ``accounts`` free (allowed options) and the rest at base.

    ``must`` marks accounts that have to take an option. Returns (choice or None, status);
    status is "optimal" (also when nothing is feasible: choice None), "time_limit" or
    "solver_error".
    """
    ai, oj = np.nonzero(allowed[accounts])  # row-major: grouped by account, options by cost
    acc = accounts[ai]
    v, c = problem.E[acc, oj], problem.C[acc, oj]
    n = len(v)
    base_cost = _fsum(problem.chosen_costs(base))
    per = np.bincount(ai, minlength=len(accounts))
    need = must[accounts]
    has_row = (per > 1) | need
    row_of = np.cumsum(has_row) - 1
    sel = has_row[ai]
    A_acc = sp.csr_matrix(
        (np.ones(int(sel.sum())), (row_of[ai[sel]], np.flatnonzero(sel))),
        shape=(int(has_row.sum()), n),
    )
    acc_lb = np.where(need[has_row], 1.0, -np.inf)
    cuts: list[sp.csr_matrix] = []
    for _ in range(_MAX_CUTS):
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return None, "time_limit"
        A = sp.vstack([sp.csr_matrix(c[None, :]), A_acc, *cuts]).tocsr()
        lb = np.r_[-np.inf, acc_lb, np.full(len(cuts), -np.inf)]
        ub = np.r_[budget - base_cost, np.ones(A_acc.shape[0]), [r.sum() - 1.0 for r in cuts]]
        with warnings.catch_warnings():
            # mip_abs_gap goes to HiGHS verbatim (scipy warns about options it does not list);
            # HiGHS' default of 1e-6 could stop short of the optimum.
            warnings.simplefilter("ignore", RuntimeWarning)
            res = milp(
                -v,
                integrality=np.ones(n),
                bounds=Bounds(0, 1),
                constraints=LinearConstraint(A, lb, ub),
                options={
                    "time_limit": remaining,
                    "mip_rel_gap": 0.0,
                    "mip_abs_gap": 0.0,
                },
            )
        if res.status == 2:
            return None, "optimal"
        if res.status not in (0, 1):
            return None, "solver_error"
        if res.x is None:
            return None, "time_limit"
        x = res.x > 0.5
        choice = base.copy()
        choice[acc[x]] = oj[x]
        if _fsum(problem.chosen_costs(choice)) <= budget:
            return choice, ("optimal" if res.status == 0 else "time_limit")
        # HiGHS accepted a solution over the budget within its tolerance: exclude it, solve again.
        cuts.append(sp.csr_matrix(x.astype(float)[None, :]))
    return None, "time_limit"


def _finish(
    ordered: pd.DataFrame,
    problem: _Problem,
    choice: np.ndarray,
    lp_bound: float | None,
    method: str,
    status: str,
    budget: float | None,
    candidates: int,
    core: int = 0,
) -> Selection:
    r = np.flatnonzero(choice >= 0)
    rows = np.sort(problem.R[r, choice[r]])
    chosen = ordered.iloc[rows].reset_index(drop=True)
    objective = _fsum(chosen["expected_net_value"].to_numpy(dtype=float))
    total_cost = _fsum(chosen["cost"].to_numpy(dtype=float))
    if budget is not None and total_cost > budget:  # never: every path checks it exactly
        raise AssertionError(f"selection costs {total_cost!r}, above the budget {budget!r}")
    # The bound is exact in theory; rounding in it must not show as a negative gap.
    bound = objective if lp_bound is None else max(float(lp_bound), objective)
    gap = (bound - objective) / bound if bound > 0 else 0.0
    return Selection(
        chosen, objective, bound, gap, method, status, budget, total_cost, core, candidates
    )

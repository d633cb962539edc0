"""A synthetic B2B SaaS company with planted churn and expansion mechanisms and a known oracle.

The world is simulated month by month over all accounts at once (vectorised numpy; no Python
loop over accounts or events) and is fully determined by the seed: the same parameters give
byte-identical Parquet files.

Output (:func:`run`)
--------------------
``<out>/<table>.parquet`` for the seven contract tables (accounts, subscriptions, orders, events,
campaign_events, tickets, nps; with ``synth.campaigns`` also the optional ``treatments``) and,
outside the contract (loading ignores the folder):

- ``<out>/oracle/oracle.parquet``: ``account_id``, ``cutoff`` (every month start from the start
  to the as-of, inclusive), ``p_churn``, ``p_expansion``: for every account active at the
  cutoff, the true probability, given the world's full state at that instant, that it has no
  active subscription 90 days later, and that it expands within those 90 days (DESIGN.md
  section 4 labels, horizon 90 days).
- ``<out>/oracle/realised.parquet``: ``account_id``, ``cutoff``, ``active`` (bool),
  ``churned_in_month``, ``churn_90d``, ``expansion_90d`` (float 0/1, NaN when not eligible or
  when the window runs past the as-of), ``mrr`` (MRR at the cutoff, 0 when inactive), one row
  per account created before the cutoff.
- ``<out>/oracle/treatment_effects.parquet`` (only with ``synth.campaigns``), one row per
  treatments row: ``account_id``, ``campaign_id``, ``assigned_at``, ``holdout``;
  ``true_effect_churn`` and ``true_effect_expansion``, the treated minus the untreated
  probability of the churn label (no active subscription at ``assigned_at`` + 90 days) and of
  the expansion label (an upsell or cross-sell order in ``[assigned_at, assigned_at + 90 days)``),
  for that account from its state at assignment, whichever arm it was in; ``shift_churn`` and
  ``shift_expansion``, the planted log-odds shifts of its monthly churn and expansion hazards
  if contacted; ``p_churn_treated``, ``p_churn_untreated``, ``p_expansion_treated``,
  ``p_expansion_untreated``, the two arms' probabilities; ``churn_90d``, ``expansion_90d``,
  the realised labels (float 0/1, NaN when the window runs past the as-of).

Timeline
--------
Month ``t`` runs over ``[ms[t], ms[t+1])``. The as-of date is ``start + months`` months. An
account active in month ``t`` has one subscription row ``[ms[t], ms[t+1])``; accounts still
active at the as-of have a row for the as-of month too (it ends after the as-of: a paid-through
date). Events, tickets, NPS, campaigns and orders all happen before the as-of. Some accounts
exist at the start (created up to three years earlier); the rest arrive every month.

Planted mechanisms
------------------
Each account carries a latent **health** ``h``: a slowly drifting stationary AR(1)
(``h_t = 0.95 h_{t-1} + 0.31 e_t``, sd 1) with occasional "champion left" shocks (-1.2, 2% a
month), a latent **seat demand** ``g`` (AR(1), relieved by seat expansions) and a static
**sophistication** ``s``.

What the data shows (the observable channels), month ``t``:

- *Usage*: ``A_t ~ Binomial(seats, sigmoid(0.4 + 1.1 h + 0.8 g))`` users are active (seat
  utilisation ``util_t = A_t / seats``); each active user has at least one login row, plus
  ``Poisson(A_t exp(-0.45 + h) * season)`` more daily rows (one row per user, day and event
  type) whose ``quantity`` is ``1 + Poisson(k_type exp(0.8 h))``. Intensity
  ``I_t = log((1 + rows) / (1 + A_t))`` (rows per active user). Event types are drawn with
  weights that favour the advanced features (api_call, integration_sync, dashboard_edit,
  export) when ``h + s`` is high, so breadth of feature use reflects health and sophistication.
  Usage volume is seasonal (dips in August and December, a little up in spring and autumn); the
  hazards use intensity relative to the season (``extra / season``), since a quiet August is
  holidays, not disengagement.
- *Support*: ``Poisson(base_segment * exp(-0.7 h))`` tickets a month, urgent more likely when
  unhealthy; time to close and CSAT worsen with low health.
- *NPS*: surveyed once a quarter (account-specific phase), answered more by healthy accounts;
  ``score = round(7 + 1.5 h + N(0, 1.2))`` clipped to 0-10; a third leave a short comment.
- *Failed payments*: ``payment_failed`` events (1-3 retries, user_id null) with probability
  ``sigmoid(base_segment - 0.5 h)``, or 0.35 in the month after a failure (failures come in
  streaks, like an expired card); 30% are never recovered (involuntary churn).

Monthly hazards, decided at the end of month ``t`` (``h`` is this month's health; lagged terms
are what the tables showed last month):

- **Churn** ``logit q = -5.35 + segment + channel + season - 0.1 h + 1.5 max(0, 0.75 - I_{t-1})
  + 2.5 max(0, 0.6 - util_{t-1}) + 1.5 [util_{t-1} < 0.3] + 1.0 max(0, I_{t-3} - I_{t-1})
  + 0.1 max(0, h_{t-3} - h) + 0.35 min(tickets_t, 4) + 0.5 min(tickets_{t-1}, 3)
  + 0.4 min(urgent_t, 2) + 1.0 [urgent_{t-1} >= 2] + 0.55 [last NPS detractor]
  - 0.4 [last NPS promoter] + 0.35 [failed payment in the 3 months before] + 1.2 [failed
  payments in 2 or more of the last 3 months] + 0.8 exp(-tenure / 6)``; an unrecovered failed
  payment this month churns the account (``q = 1 - (1 - q_vol)(1 - 0.3 [failed])``). January
  and December (renewals and budget cuts) raise it; SMB and paid-search accounts churn more,
  enterprise and partner less.
- **Expansion** ``logit e = -4.35 + segment + season + 0.15 h + 0.6 (I_{t-1} - 0.75)
  + 3.5 max(0, util_{t-1} - 0.5) + 1.0 [util_{t-1} >= 0.9] + 0.2 s - 0.5 [last NPS detractor]
  + 1.2 [promoter and util_{t-1} >= 0.7]``: a plan upgrade, a seat expansion of 15-60% (both
  with an ``upsell`` order of 12 x the MRR increase) or an add-on (``cross_sell`` order). An
  account that churns that month does not expand. Its calendar term is a mild, smooth Q4
  budget flush (``0.03 cos``, peak in mid-December), small enough that the base rate moves
  little between cutoffs a quarter apart.
- **Non-linear structure** (thresholds and interactions real accounts show, all through
  observable channels): churn rises with usage and utilisation only below normal (hinges; heavy
  use protects no further), sharply below 30% seat utilisation; several urgent tickets in one
  month is an escalation; one failed payment matters little, repeated ones a lot; a nearly
  full licence (>= 90%) triggers seat expansions, and a promoter expands mostly when the team
  uses at least 70% of its seats. A logistic regression on the features therefore misses part
  of the signal that a tree model finds.
- **Downgrade** (15-40% fewer seats, or one plan down) when health or utilisation is low.
- **Reactivation**: a churned account returns with 2% a month during its first year away
  (a new subscription row and a ``new`` order for the reactivation fee).
- **Campaigns** (only with ``synth.campaigns``; off, the world is byte-identical to one made
  without the switch, and everything campaign-related draws from its own streams spawned from
  the seed). In months 6, 9, 12, ... of the simulation (before the as-of) two past campaigns
  are assigned at the first instant of the month, each to an audience of active accounts that
  no running campaign covers: a **retention** campaign (the 15% with the highest churn hazard
  that month plus 5% of the rest at random), whose offer alternates between ``training``
  (channel csm_call, cost 120) and a ``discount`` (email, cost 20% of three months' MRR), and
  an **upsell** campaign (``upgrade``, in_app, cost 5: the 12% of the remaining accounts with the
  highest expansion hazard plus 5% of the rest). Each audience member is held out with
  probability 0.2 (``holdout``, cost 0). A contacted account's hazards are shifted in log-odds at
  every month end inside its 90-day window (months ``t .. t + 2``, or ``t + 1`` when the three
  months have more than 90 days), by amounts that depend on what the tables showed before the
  assignment: training -1.0 for accounts with low seat utilisation (< 0.5 last month) or falling
  usage intensity (down > 0.1 over three months), -0.2 for the others, and 0 for accounts with
  a failed payment in the last three months (their risk is billing, not adoption); the discount
  -0.8 for price-sensitive accounts (SMB, or downgraded in the last six months) and -0.15 for
  the others; the upgrade offer +1.1 on the expansion hazard at >= 80% seat utilisation, +0.4
  at 60-80%, 0 below, and +0.6 on the churn hazard after an urgent ticket last month (a sales
  pitch during an escalation). Some accounts churn *more* when contacted ("sleeping dogs"):
  any contact adds +0.9 to the churn hazard of an account that used under 25% of its seats
  last month and opened no support ticket (a reminder of a subscription it no longer uses), so
  that a discount harms them and training about breaks even; a latent trait (3% of accounts,
  no observable trace) adds another +0.9, so that no ranking from the tables reaches the
  oracle. (Until this was changed the harm was the latent trait alone, on 12% of accounts,
  which left no ranking from the data much past two thirds of the oracle; the effects are
  meant to depend on observable state.) The shifts move the voluntary churn hazard only (a
  failed payment churns as before). Campaigns leave no other trace in the tables (no
  campaign_events rows).

Other orders: ``new`` onboarding fee when an account starts, an annual ``renewal`` support fee,
occasional ``services`` (training, consulting, implementation), and ``refund`` (negative)
after some churns. Email campaigns (monthly newsletter plus a rotating product_update /
upsell_offer / webinar / winback campaign; sent, open, click, unsubscribe, bounce) weakly
reflect health.

The hazards depend on the latent state mostly through what the tables show over the previous
90 days (usage intensity and its trend, utilisation, tickets, NPS, failed payments, tenure,
segment), so a model on 7/30/90-day features can get close to the oracle; the month's fresh
innovations, ticket and payment draws and the final coin flips keep it from being separable.
Measured with the team pipeline (dataset + train, test cutoff 2025-10-01, ~5000 rows) on the
default 10,000-account world, seeds 42 / 1 / 2: churn ROC-AUC 0.816 / 0.817 / 0.831 vs oracle
0.833 / 0.823 / 0.850; expansion 0.816 / 0.828 / 0.839 vs 0.830 / 0.841 / 0.852. Smaller
worlds give test cutoffs too small for an expected calibration error below 0.02 (the oracle's
own ECE on ~1000 rows is 0.02-0.04).

Oracle
------
Exact up to Monte Carlo error over the latent path, with Rao-Blackwellised outcomes: from each
active account's state at the cutoff, ``oracle_draws`` future paths of the latent state and
the monthly draws (tickets, NPS, payments, utilisation, downgrades) are simulated with the same
code as the world, as if the account stayed active and did not expand. Along each path the
churn and expansion outcomes are then integrated exactly with a small Markov chain
(active / months since churn) using that path's monthly probabilities ``q``, ``e`` and the
reactivation probability, and the fraction of the last month that falls inside the 90 days
(orders are uniform in time within a month). Only paths that churn, return and churn again
inside 90 days use an as-if-active state after the return (negligible).

With campaigns, the oracle adds the planted shifts of the campaigns running at the cutoff,
including those assigned at it (an audience is frozen at a month start); it does not
anticipate later campaigns. The true effects use the same machinery for both arms on the same
paths (common random numbers) from the account's state at assignment, with that month's draws
taken from the world (its hazards chose the audience). Like the oracle, the paths continue as if
the account did not expand, so an expansion's later effect on churn is left out. Measured on
30,000-account worlds over 18 months (seeds 1-4, 12 campaigns each), the realised
treated-minus-holdout difference per offer (training, discount, upgrade) and label agrees with
the mean true effect within 2 standard errors in 22 of the 24 comparisons (largest 2.6).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy.special import expit

from churnlab.atomic import atomic_dir
from churnlab.config import SynthParams
from churnlab.schema import TABLES

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total)."""

HORIZON_DAYS = 90
EXPANSION_MIN_FRACTION = 0.1

SEGMENTS = np.array(["smb", "mid", "enterprise"])
SEGMENT_P = [0.6, 0.3, 0.1]
INDUSTRIES = np.array(
    [
        "software",
        "retail",
        "finance",
        "healthcare",
        "manufacturing",
        "education",
        "media",
        "logistics",
    ]
)
COUNTRIES = np.array(["US", "GB", "DE", "FR", "NL", "CA", "AU", "ES", "SE", "JP"])
COUNTRY_P = [0.38, 0.14, 0.1, 0.08, 0.06, 0.07, 0.05, 0.05, 0.04, 0.03]
CHANNELS = np.array(["organic", "paid_search", "partner", "outbound", "referral"])
CHANNEL_P = [0.3, 0.25, 0.15, 0.2, 0.1]
CHANNEL_CHURN = np.array([0.0, 0.25, -0.2, 0.1, -0.25])
PLANS = np.array(["starter", "growth", "scale"])
PLAN_PRICE = np.array([12.0, 29.0, 59.0])  # per seat per month
PLAN_P = np.array([[0.7, 0.3, 0.0], [0.3, 0.55, 0.15], [0.0, 0.4, 0.6]])

EVENT_TYPES = np.array(
    [
        "login",
        "report_view",
        "dashboard_edit",
        "export",
        "api_call",
        "integration_sync",
        "invite_user",
        "payment_failed",
    ]
)
USAGE_TYPES = 7  # the first seven are product usage; payment_failed is billing
TYPE_BASE = np.array([1.0, 0.9, -0.2, -0.4, -1.0, -1.3, -2.2])
TYPE_SLOPE = np.array([0.0, 0.1, 0.35, 0.25, 0.7, 0.7, 0.3])
TYPE_QTY = np.array([2.0, 3.0, 2.0, 2.0, 4.0, 3.0, 1.0])

SEG_CHURN = np.array([0.45, 0.0, -0.6])
SEG_EXP = np.array([-0.2, 0.0, 0.3])
SEG_TICKETS = np.array([0.12, 0.3, 0.7])
SEG_FAIL = np.array([-3.3, -3.9, -4.6])
# Calendar month 1..12 -> logit shifts. Jan/Dec: renewals and budget cuts. Expansion's own
# calendar term is a mild, smooth Q4 budget flush: a strong one would move the expansion base rate
# between the validation cutoff (where models are calibrated) and the test cutoff 90 days later,
# which no cutoff-level feature can explain. Most of expansion's seasonality comes through usage.
SEASON_CHURN = np.array([0.3, 0.0, 0.0, 0.05, 0.0, 0.0, 0.0, 0.0, 0.05, 0.0, 0.0, 0.2])
SEASON_EXP = 0.03 * np.cos(2 * np.pi * (np.arange(1, 13) - 11.5) / 12)
SEASON_USAGE = np.array([1.0, 1.02, 1.04, 1.0, 1.0, 0.97, 0.92, 0.82, 1.0, 1.03, 1.0, 0.8])

RHO_H, SIG_H = 0.95, float(np.sqrt(1 - 0.95**2))
RHO_G, SIG_G = 0.85, 0.5 * float(np.sqrt(1 - 0.85**2))
P_SHOCK, SHOCK = 0.02, 1.2
P_INVOLUNTARY = 0.3
P_FAIL_AGAIN = 0.35
P_REACTIVATE, REACTIVATE_MONTHS = 0.02, 12
C_CHURN, C_EXP, C_DOWN = -5.35, -4.35, -4.4
NPS_CHURN = np.array([0.0, 0.55, 0.0, -0.4])  # none, detractor, passive, promoter
NPS_EXP = np.array([0.0, -0.5, 0.0, 0.0])
# Failed months among the last three (a 3-bit history) -> how many.
POPCOUNT3 = np.array([0, 1, 1, 2, 1, 2, 2, 3])

ADDONS = np.array(["analytics_addon", "sso_security", "data_warehouse_sync", "ai_assistant"])
ADDON_PRICE = np.array([600.0, 2400.0, 12000.0])  # by segment
SERVICES = np.array(["training", "consulting", "implementation"])
CAMPAIGN_ROTATION = ("product_update", "upsell_offer", "webinar", "winback")
# Past campaigns (synth.campaigns). A retention and an upsell campaign are assigned in months
# CAMPAIGN_FIRST, CAMPAIGN_FIRST + CAMPAIGN_EVERY, ... of the simulation; the retention offer
# alternates between training and a discount.
CAMPAIGN_FIRST, CAMPAIGN_EVERY = 6, 3
RETENTION_OFFERS = ("training", "discount")
RETENTION_TOP = 0.15  # share of the free active accounts with the highest churn hazard
RETENTION_RANDOM = 0.05  # and this share of the others, at random
UPSELL_TOP = 0.12  # share of the remaining ones with the highest expansion hazard
UPSELL_RANDOM = 0.05  # and this share of the others, at random
HOLDOUT_SHARE = 0.2
OFFER_CHANNEL = {"training": "csm_call", "discount": "email", "upgrade": "in_app"}
TRAINING_COST, UPGRADE_COST = 120.0, 5.0  # per contacted account; a discount costs 20% x 3 MRR
# Planted log-odds shifts (treated accounts, every month end inside the 90-day window).
# "Sleeping dogs": an account that barely uses its seats and has not contacted support is one
# a contact reminds to cancel; contact of any kind raises its churn hazard.
SLEEPING_UTIL = 0.25  # last month's seat utilisation below this, and no ticket last month
SLEEPING_CHURN = 0.9
P_ANNOYED = 0.03  # a small latent remainder (no observable trace) with the same harm
ANNOYED_CHURN = 0.9
TRAINING_ENGAGED, TRAINING_OTHER = -1.0, -0.2  # falling usage or low utilisation; the rest
FALLING_INTENSITY, LOW_UTIL = 0.1, 0.5
DISCOUNT_SENSITIVE, DISCOUNT_OTHER = -0.8, -0.15  # SMB or downgraded in the last six months
URGENT_UPSELL_CHURN = 0.6  # an upsell pitch during an escalation
UPSELL_HIGH, UPSELL_MID = 1.1, 0.4  # expansion shift at utilisation >= 0.8, >= 0.6

COMMENTS = {
    1: [
        "Too expensive for what we use",
        "Support takes too long to respond",
        "Missing the integrations we need",
        "The product is slow and buggy",
        "Hard to get the team to adopt it",
        "Reports are confusing",
    ],
    2: [
        "Works fine for our needs",
        "Good product, some features missing",
        "Decent, pricing could be better",
        "Does the job",
    ],
    3: [
        "Great product, the team loves it",
        "Excellent support and onboarding",
        "Indispensable for our reporting",
        "The API and integrations are fantastic",
        "Saves us hours every week",
    ],
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(expit(x))


@dataclass
class _State:
    """Per-account dynamic state at a month start (arrays of equal length)."""

    seg: np.ndarray  # int8 segment code
    chan: np.ndarray  # float channel churn offset
    s: np.ndarray  # static sophistication
    phase: np.ndarray  # NPS survey phase 0..2
    h: np.ndarray  # health of the last month (h_{t-1})
    h2: np.ndarray  # h_{t-2}
    h3: np.ndarray  # h_{t-3}
    g: np.ndarray  # seat demand
    util: np.ndarray  # last month's realised seat utilisation
    inten: np.ndarray  # last month's realised usage intensity (log rows per active user)
    inten2: np.ndarray  # the month before
    inten3: np.ndarray  # three months back
    tix: np.ndarray  # last month's support tickets
    urg: np.ndarray  # last month's urgent support tickets
    tenure: np.ndarray  # months since creation
    nps: np.ndarray  # last NPS category: 0 none, 1 detractor, 2 passive, 3 promoter
    fp_age: np.ndarray  # months since the last failed payment (99: never)
    fp_bits: np.ndarray  # failed-payment months among the last three, bit 0 = last month
    seats: np.ndarray
    plan: np.ndarray
    price: np.ndarray  # static price factor (discount)

    def take(self, idx: np.ndarray) -> _State:
        return _State(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


@dataclass
class _Month:
    """One month's draws and probabilities for a set of accounts (as if active)."""

    h: np.ndarray
    g: np.ndarray
    active_users: np.ndarray
    extra_rows: np.ndarray  # usage rows beyond each active user's first login
    util: np.ndarray
    inten: np.ndarray
    tickets: np.ndarray
    urgent: np.ndarray
    responded: np.ndarray
    score: np.ndarray
    failed: np.ndarray
    q: np.ndarray  # churn probability at the end of the month
    e: np.ndarray  # expansion probability in the month
    d: np.ndarray  # downgrade probability
    lq: np.ndarray  # log-odds of voluntary churn (q without involuntary churn)
    le: np.ndarray  # log-odds of expansion

    def take(self, idx: np.ndarray) -> _Month:
        return _Month(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def shift(self, idx: np.ndarray, churn: np.ndarray, expansion: np.ndarray) -> None:
        """Add campaign log-odds shifts to the hazards of accounts ``idx`` (in place).

        The churn shift moves the voluntary hazard only: a campaign does not fix an expired card.
        """
        self.q[idx] = 1.0 - (1.0 - _sigmoid(self.lq[idx] + churn)) * (
            1.0 - P_INVOLUNTARY * self.failed[idx]
        )
        self.e[idx] = _sigmoid(self.le[idx] + expansion)


def _draw_month(
    st: _State, cal: int, t: int, rng: np.random.Generator, usage: bool = True
) -> _Month:
    """Draw month ``t`` (calendar month ``cal`` 1..12) for every account in ``st``.

    Shared by the world and the oracle, so both follow exactly the same dynamics. The month's
    hazards use only last month's usage, so the oracle skips the usage draws (``usage=False``)
    for the last month of its horizon.
    """
    n = len(st.h)
    shock = rng.random(n) < P_SHOCK
    h = RHO_H * st.h + SIG_H * rng.standard_normal(n) - SHOCK * shock
    g = RHO_G * st.g + SIG_G * rng.standard_normal(n)
    if usage:
        users = rng.binomial(st.seats, _sigmoid(0.4 + 1.1 * h + 0.8 * g))
        util = users / np.maximum(st.seats, 1)
        season = SEASON_USAGE[cal - 1]
        extra = rng.poisson(users * np.exp(-0.45 + 1.0 * h) * season)
        # Intensity relative to the season's norm: a quiet August is everyone on holiday, not
        # disengagement, so the hazards react to usage below what the season predicts. (The
        # seasonal swing of the raw volume would otherwise move the base rates between cutoffs
        # in a way no feature at the cutoff can see.)
        inten = np.log((1.0 + users + extra / season) / (1.0 + users))
    else:
        users = extra = np.zeros(n, dtype=np.int64)
        util, inten = st.util, st.inten
    tickets = rng.poisson(SEG_TICKETS[st.seg] * np.exp(-0.7 * h))
    urgent = np.zeros(n, dtype=np.int64)
    some = np.flatnonzero(tickets)
    urgent[some] = rng.binomial(tickets[some], _sigmoid(-2.3 - 0.6 * h[some]))
    surveyed = (t + st.phase) % 3 == 0
    responded = surveyed & (rng.random(n) < _sigmoid(-0.5 + 0.3 * h))
    score = np.clip(np.rint(7.0 + 1.5 * h + 1.2 * rng.standard_normal(n)), 0, 10)
    # Failures come in streaks (an expired card fails again until someone updates it).
    p_fail = np.where(st.fp_age == 0, P_FAIL_AGAIN, _sigmoid(SEG_FAIL[st.seg] - 0.5 * h))
    failed = rng.random(n) < p_fail
    cat = np.where(score <= 6, 1, np.where(score <= 8, 2, 3))
    nps = np.where(responded, cat, st.nps)
    drop = np.maximum(st.h3 - h, 0.0)
    logit_q = (
        C_CHURN
        + SEG_CHURN[st.seg]
        + st.chan
        + SEASON_CHURN[cal - 1]
        - 0.1 * h
        + 1.5 * np.maximum(0.75 - st.inten, 0.0)
        + 2.5 * np.maximum(0.6 - st.util, 0.0)
        + 1.0 * np.maximum(st.inten3 - st.inten, 0.0)
        + 0.1 * drop
        # Thresholds real churn has: a mostly unused licence is a cancellation waiting for the
        # renewal; several urgent tickets in one month is an escalation; one failed payment is
        # usually an expired card, repeated failures are a customer who stopped paying.
        + 1.5 * (st.util < 0.3)
        + 0.35 * np.minimum(tickets, 4)
        + 0.5 * np.minimum(st.tix, 3)
        + 0.4 * np.minimum(urgent, 2)
        + 1.0 * (st.urg >= 2)
        + NPS_CHURN[nps]
        + 0.35 * (st.fp_age <= 2)
        + 1.2 * (POPCOUNT3[st.fp_bits] >= 2)
        + 0.8 * np.exp(-st.tenure / 6.0)
    )
    q = 1.0 - (1.0 - _sigmoid(logit_q)) * (1.0 - P_INVOLUNTARY * failed)
    logit_e = (
        C_EXP
        + SEG_EXP[st.seg]
        + SEASON_EXP[cal - 1]
        + 0.15 * h
        + 0.6 * (st.inten - 0.75)
        + 3.5 * np.maximum(st.util - 0.5, 0.0)
        # Seat pressure: a nearly full licence is what triggers a seat expansion; a promoter
        # expands mostly when the team actually uses the product.
        + 1.0 * (st.util >= 0.9)
        + 0.2 * st.s
        + NPS_EXP[nps]
        + 1.2 * ((nps == 3) & (st.util >= 0.7))
    )
    e = _sigmoid(logit_e)
    d = _sigmoid(C_DOWN - 0.6 * h + 1.0 * (util < 0.35))
    return _Month(
        h, g, users, extra, util, inten, tickets, urgent, responded, score, failed, q, e, d,
        logit_q, logit_e,
    )  # fmt: skip


def _downgrade(st: _State, idx: np.ndarray, rng: np.random.Generator) -> None:
    """Apply a downgrade in place: one plan down (30% if possible) or 15-40% fewer seats."""
    n = len(idx)
    by_plan = (st.plan[idx] > 0) & (rng.random(n) < 0.3)
    factor = rng.uniform(0.6, 0.85, n)
    st.plan[idx] = np.where(by_plan, st.plan[idx] - 1, st.plan[idx])
    new_seats = np.maximum(np.floor(st.seats[idx] * factor), 1).astype(st.seats.dtype)
    st.seats[idx] = np.where(by_plan, st.seats[idx], new_seats)


def _advance(st: _State, m: _Month) -> None:
    """Roll the state forward by one month in place (expansion and churn handled by callers)."""
    st.h3, st.h2, st.h = st.h2, st.h, m.h
    st.g = m.g
    st.util = m.util
    st.inten3, st.inten2, st.inten = st.inten2, st.inten, m.inten
    st.tix = m.tickets
    st.urg = m.urgent
    st.tenure = st.tenure + 1
    cat = np.where(m.score <= 6, 1, np.where(m.score <= 8, 2, 3)).astype(np.int8)
    st.nps = np.where(m.responded, cat, st.nps).astype(np.int8)
    st.fp_age = np.where(m.failed, 0, np.minimum(st.fp_age + 1, 99)).astype(np.int16)
    st.fp_bits = (((st.fp_bits << 1) | m.failed) & 7).astype(np.int8)


def _mrr(st: _State) -> np.ndarray:
    return np.round(st.seats * PLAN_PRICE[st.plan] * st.price, 2)


def _reactivation_p(inactive_months: np.ndarray) -> np.ndarray:
    return np.where(
        (inactive_months >= 1) & (inactive_months <= REACTIVATE_MONTHS), P_REACTIVATE, 0.0
    )


class _Chain:
    """Exact churn and expansion outcomes along simulated paths (see Oracle in the docstring).

    Churn chain: active, then inactive for 1..k months. Expansion chain: the same, restricted to
    paths that have not expanded yet; expansion mass is absorbed into ``p_exp``.
    """

    def __init__(self, size: int, k: int) -> None:
        self.c_act = np.ones(size)
        self.c_off = np.zeros((k + 1, size))
        self.x_act = np.ones(size)
        self.x_off = np.zeros((k + 1, size))
        self.p_exp = np.zeros(size)
        self.k = k

    def expand(self, q: np.ndarray, e: np.ndarray, share: float) -> None:
        """Expansion in the month; ``share`` is the part of the month inside the window."""
        self.p_exp += self.x_act * e * (1.0 - q) * share

    def step(self, q: np.ndarray, e: np.ndarray) -> None:
        """End-of-month transitions: churn q; return after i inactive months with r_i."""
        k = self.k
        r = _reactivation_p(np.arange(k + 1))
        back_c = (self.c_off * r[:, None]).sum(axis=0)
        back_x = (self.x_off * r[:, None]).sum(axis=0)
        new_c_off = np.zeros_like(self.c_off)
        new_x_off = np.zeros_like(self.x_off)
        new_c_off[1] = self.c_act * q
        new_x_off[1] = self.x_act * q
        new_c_off[2:] = self.c_off[1:-1] * (1.0 - r[1:-1, None])
        new_x_off[2:] = self.x_off[1:-1] * (1.0 - r[1:-1, None])
        self.c_act = self.c_act * (1.0 - q) + back_c
        self.x_act = self.x_act * (1.0 - q) * (1.0 - e) + back_x
        self.c_off, self.x_off = new_c_off, new_x_off

    @property
    def p_churn(self) -> np.ndarray:
        return 1.0 - self.c_act


def _oracle(
    st: _State,
    t: int,
    k: int,
    w: float,
    start_cal: int,
    draws: int,
    rng: np.random.Generator,
    running: _Running | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Oracle churn and expansion probabilities for accounts active at the start of month t.

    ``k`` is the number of month ends between the cutoff and the month holding cutoff + 90 days;
    ``w`` is the share of that last month that lies inside the 90 days. ``running`` holds the
    campaign effects already running at the cutoff (their log-odds shifts and how many more
    months they last); campaigns assigned after the cutoff are not anticipated.
    """
    n = len(st.h)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    sim = st.take(np.repeat(np.arange(n), draws))
    size = n * draws
    chain = _Chain(size, k)
    if running is not None:
        running = running.take(np.repeat(np.arange(n), draws))
    for j in range(k + 1):
        m = _draw_month(sim, (start_cal + t + j - 1) % 12 + 1, t + j, rng, usage=j < k)
        if running is not None:
            on = np.flatnonzero(running.months > j)
            m.shift(on, running.churn[on], running.expansion[on])
        chain.expand(m.q, m.e, w if j == k else 1.0)
        if j == k:
            break
        chain.step(m.q, m.e)
        down = rng.random(size) < m.d
        _downgrade(sim, np.flatnonzero(down), rng)
        _advance(sim, m)
    return (
        chain.p_churn.reshape(n, draws).mean(axis=1),
        chain.p_exp.reshape(n, draws).mean(axis=1),
    )


@dataclass
class _Running:
    """Campaign effects running for a set of accounts: log-odds shifts and months left."""

    churn: np.ndarray
    expansion: np.ndarray
    months: np.ndarray

    def take(self, idx: np.ndarray) -> _Running:
        return _Running(self.churn[idx], self.expansion[idx], self.months[idx])


def _month_starts(start: dt.date, count: int) -> np.ndarray:
    y, m = start.year, start.month
    out = []
    for i in range(count):
        mm = m - 1 + i
        out.append(np.datetime64(f"{y + mm // 12:04d}-{mm % 12 + 1:02d}-01", "us"))
    return np.array(out, dtype="datetime64[us]")


US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000


class _Rows:
    """Accumulates column chunks per table (numpy arrays), concatenated once at the end."""

    def __init__(self) -> None:
        self.parts: dict[str, list[dict[str, np.ndarray]]] = {}

    def add(self, table: str, **cols: np.ndarray) -> None:
        self.parts.setdefault(table, []).append(cols)

    def cat(self, table: str) -> dict[str, np.ndarray]:
        chunks = self.parts.get(table, [])
        if not chunks:
            return {}
        return {c: np.concatenate([ch[c] for ch in chunks]) for c in chunks[0]}


def _planted_shifts(
    offer: str, st: _State, idx: np.ndarray, down_age: np.ndarray, annoyed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Log-odds shifts of the churn and expansion hazards if accounts ``idx`` are contacted.

    ``st`` is the state at the start of the assignment month, so everything but the latent
    ``annoyed`` trait (a small remainder) is what the tables showed up to then.
    """
    util = st.util[idx]
    sleeping = (util < SLEEPING_UTIL) & (st.tix[idx] == 0)
    churn = SLEEPING_CHURN * sleeping + ANNOYED_CHURN * annoyed[idx]
    expansion = np.zeros(len(idx))
    if offer == "training":
        engagement = (util < LOW_UTIL) | (st.inten3[idx] - st.inten[idx] > FALLING_INTENSITY)
        # Training does nothing for a customer whose card keeps failing.
        payment = st.fp_age[idx] <= 2
        churn = churn + np.where(
            payment, 0.0, np.where(engagement, TRAINING_ENGAGED, TRAINING_OTHER)
        )
    elif offer == "discount":
        sensitive = (st.seg[idx] == 0) | (down_age[idx] <= 5)
        churn = churn + np.where(sensitive, DISCOUNT_SENSITIVE, DISCOUNT_OTHER)
    else:
        churn = churn + URGENT_UPSELL_CHURN * (st.urg[idx] >= 1)
        expansion = np.where(util >= 0.8, UPSELL_HIGH, np.where(util >= 0.6, UPSELL_MID, 0.0))
    return churn, expansion


def _potential_outcomes(
    st: _State,
    m: _Month,
    t: int,
    k: int,
    w: float,
    start_cal: int,
    draws: int,
    rng: np.random.Generator,
    churn: np.ndarray,
    expansion: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Label probabilities of accounts assigned at the start of month ``t``, treated and not.

    The oracle's computation for a cutoff at the start of month ``t`` (``k`` and ``w`` as there),
    with two differences: month ``t`` is the world's own (``m``, its draws for these accounts,
    whose hazards chose the audience), and there are two arms on the same simulated paths
    (common random numbers), the treated one with the log-odds shifts added to the hazards of
    the month ends ``t .. t + k - 1`` inside the window. ``st`` is the accounts' state at the
    start of month ``t``.

    Returns
    -------
    tuple of ndarray
        ``p_churn`` treated, ``p_churn`` untreated, ``p_expansion`` treated, untreated.
    """
    n = len(churn)
    rep = np.repeat(np.arange(n), draws)
    sim = st.take(rep)
    size = n * draws
    every = np.arange(size)
    s_churn, s_exp = churn[rep], expansion[rep]
    control, treated = _Chain(size, k), _Chain(size, k)
    for j in range(k + 1):
        if j == 0:
            mj = m.take(rep)
        else:
            mj = _draw_month(sim, (start_cal + t + j - 1) % 12 + 1, t + j, rng, usage=j < k)
        share = w if j == k else 1.0
        q0, e0 = mj.q.copy(), mj.e.copy()
        if j < k:
            mj.shift(every, s_churn, s_exp)
        control.expand(q0, e0, share)
        treated.expand(mj.q, mj.e, share)
        if j == k:
            break
        control.step(q0, e0)
        treated.step(mj.q, mj.e)
        down = rng.random(size) < mj.d
        _downgrade(sim, np.flatnonzero(down), rng)
        _advance(sim, mj)
    return tuple(  # type: ignore[return-value]
        a.reshape(n, draws).mean(axis=1)
        for a in (treated.p_churn, control.p_churn, treated.p_exp, control.p_exp)
    )


class _Campaigns:
    """Past campaigns (``synth.campaigns``): audiences, holdouts, planted effects and the truth.

    Everything random here comes from its own generators (``rng`` for audiences, holdouts,
    dates and the latent trait; ``mc`` for the Monte Carlo of the true effects), so the world's
    own stream is untouched until a campaign changes who churns or expands.
    """

    def __init__(
        self, n_acc: int, rng: np.random.Generator, mc: np.random.Generator, draws: int
    ) -> None:
        self.rng, self.mc, self.draws = rng, mc, draws
        self.annoyed = rng.random(n_acc) < P_ANNOYED
        self.down_age = np.full(n_acc, 99, dtype=np.int16)  # months since a downgrade (active)
        self.churn = np.zeros(n_acc)  # running effects: log-odds shifts...
        self.expansion = np.zeros(n_acc)
        self.until = np.full(n_acc, -1, dtype=np.int64)  # ...and the last month they apply to
        self.parts: list[dict[str, Any]] = []

    @staticmethod
    def due(t: int, n_months: int) -> bool:
        """Whether campaigns are assigned in month ``t``."""
        return t < n_months and t >= CAMPAIGN_FIRST and (t - CAMPAIGN_FIRST) % CAMPAIGN_EVERY == 0

    def running(self, idx: np.ndarray, t: int) -> _Running | None:
        """Effects running at the start of month ``t`` for accounts ``idx`` (None if none)."""
        months = self.until[idx] - t + 1
        if not (months > 0).any():
            return None
        return _Running(self.churn[idx], self.expansion[idx], np.maximum(months, 0))

    def assign(
        self,
        t: int,
        st: _State,
        m: _Month,
        idx_act: np.ndarray,
        mrr_now: np.ndarray,
        ms: np.ndarray,
        start_cal: int,
    ) -> None:
        """Assign month ``t``'s retention and upsell campaigns and compute their true effects."""
        rng = self.rng
        free = idx_act[self.until[idx_act] < t]
        by_risk = free[np.argsort(-m.q[free], kind="stable")]
        n_top = int(round(RETENTION_TOP * len(free)))
        rest = by_risk[n_top:]
        retention = np.sort(
            np.concatenate([by_risk[:n_top], rest[rng.random(len(rest)) < RETENTION_RANDOM]])
        )
        left = np.setdiff1d(free, retention)
        by_growth = left[np.argsort(-m.e[left], kind="stable")]
        n_top = int(round(UPSELL_TOP * len(left)))
        rest = by_growth[n_top:]
        upsell = np.sort(
            np.concatenate([by_growth[:n_top], rest[rng.random(len(rest)) < UPSELL_RANDOM]])
        )
        offer = RETENTION_OFFERS[len(self.parts) // 2 % len(RETENTION_OFFERS)]
        # The audience is frozen at the first instant of the month, so the 90-day window starts
        # with the month as the oracle's windows do. (A window starting later would count the
        # orders of accounts that expanded earlier that month, and those accounts' state after
        # their expansion is what the oracle's machinery does not follow.)
        at = ms[t]
        end = at + np.timedelta64(HORIZON_DAYS, "D")
        m90 = int(np.searchsorted(ms, end, side="right") - 1)
        w = float((end - ms[m90]) / (ms[m90 + 1] - ms[m90]))
        month = str(ms[t])[:7]
        for kind, name, aud in (("retention", offer, retention), ("upsell", "upgrade", upsell)):
            holdout = rng.random(len(aud)) < HOLDOUT_SHARE
            churn, expansion = _planted_shifts(name, st, aud, self.down_age, self.annoyed)
            pc1, pc0, pe1, pe0 = _potential_outcomes(
                st.take(aud), m.take(aud), t, m90 - t, w, start_cal, self.draws, self.mc,
                churn, expansion,
            )  # fmt: skip
            if name == "training":
                cost = np.full(len(aud), TRAINING_COST)
            elif name == "discount":
                cost = np.round(0.2 * 3 * mrr_now[aud], 2)
            else:
                cost = np.full(len(aud), UPGRADE_COST)
            self.parts.append(
                {
                    "acc": aud,
                    "campaign_id": f"{'RET' if kind == 'retention' else 'UPS'}-{month}-{name}",
                    "assigned_at": int(at.astype("datetime64[us]").astype(np.int64)),
                    "t": t,
                    "m90": m90,
                    "kind": kind,
                    "channel": OFFER_CHANNEL[name],
                    "holdout": holdout,
                    "cost": np.where(holdout, 0.0, cost),
                    "shift_churn": churn,
                    "shift_expansion": expansion,
                    "p": (pc1, pc0, pe1, pe0),
                }
            )
            treated = aud[~holdout]
            self.churn[treated] = churn[~holdout]
            self.expansion[treated] = expansion[~holdout]
            self.until[treated] = m90 - 1

    def apply(self, m: _Month, t: int, n: int) -> None:
        """Shift month ``t``'s hazards of treated accounts inside their windows (in place)."""
        on = np.flatnonzero(self.until[:n] >= t)
        if len(on):
            m.shift(on, self.churn[on], self.expansion[on])

    def month_end(self, downgraded: np.ndarray) -> None:
        """Age the months-since-downgrade counter (``downgraded``: active accounts this month)."""
        n = len(downgraded)
        self.down_age[:n] = np.where(downgraded, 0, np.minimum(self.down_age[:n] + 1, 99))

    def tables(
        self,
        ids: pa.Array,
        act_hist: np.ndarray,
        exp_orders: list[tuple[np.ndarray, np.ndarray]],
        as_of_us: int,
    ) -> tuple[pa.Table, pa.Table]:
        """The treatments table and the truth (oracle/treatment_effects), with realised labels.

        Rows are in assignment order (campaign by campaign, accounts in id order).
        """
        parts = self.parts
        if exp_orders:
            o_acc = np.concatenate([a for a, _ in exp_orders])
            o_time = np.concatenate([w for _, w in exp_orders])
        else:
            o_acc = o_time = np.zeros(0, dtype=np.int64)
        horizon_us = HORIZON_DAYS * US_PER_DAY
        churn_90d, expansion_90d = [], []
        for part in parts:
            acc, at = part["acc"], part["assigned_at"]
            if at + horizon_us > as_of_us:  # the window runs past the as-of: no label yet
                churn_90d.append(np.full(len(acc), np.nan))
                expansion_90d.append(np.full(len(acc), np.nan))
                continue
            # Active at assigned_at + 90 days = active in the month holding it.
            churn_90d.append((~act_hist[part["m90"], acc]).astype(np.float64))
            inside = (o_time >= at) & (o_time < at + horizon_us)
            grew = np.zeros(act_hist.shape[1], dtype=bool)
            grew[o_acc[inside]] = True
            expansion_90d.append(grew[acc].astype(np.float64))

        def cat(values: list[np.ndarray], dtype: Any = np.float64) -> np.ndarray:
            return np.concatenate(values) if values else np.zeros(0, dtype=dtype)

        sizes = [len(p["acc"]) for p in parts]
        campaign = np.repeat(np.arange(len(parts)), sizes)
        channels = list(OFFER_CHANNEL.values())
        keys = {
            "account_id": _dict_take(ids, cat([p["acc"] for p in parts], np.int64)),
            "campaign_id": _dict_take(np.array([p["campaign_id"] for p in parts]), campaign),
            "assigned_at": _ts(np.repeat([p["assigned_at"] for p in parts], sizes)),
            "holdout": pa.array(cat([p["holdout"] for p in parts], bool), pa.bool_()),
        }
        treatments = pa.table(
            {
                **keys,
                "kind": _dict_take(
                    np.array(["retention", "upsell"]),
                    np.repeat([int(p["kind"] == "upsell") for p in parts], sizes),
                ),
                "channel": _dict_take(
                    np.array(channels),
                    np.repeat([channels.index(p["channel"]) for p in parts], sizes),
                ),
                "cost": pa.array(cat([p["cost"] for p in parts]), pa.float64()),
            }
        )
        p_churn_t, p_churn_u, p_exp_t, p_exp_u = (cat([p["p"][i] for p in parts]) for i in range(4))
        truth = {
            "true_effect_churn": p_churn_t - p_churn_u,
            "true_effect_expansion": p_exp_t - p_exp_u,
            "shift_churn": cat([p["shift_churn"] for p in parts]),
            "shift_expansion": cat([p["shift_expansion"] for p in parts]),
            "p_churn_treated": p_churn_t,
            "p_churn_untreated": p_churn_u,
            "p_expansion_treated": p_exp_t,
            "p_expansion_untreated": p_exp_u,
            "churn_90d": cat(churn_90d),
            "expansion_90d": cat(expansion_90d),
        }
        effects = pa.table(
            {**keys, **{k: pa.array(v, pa.float64(), from_pandas=True) for k, v in truth.items()}}
        )
        return treatments, effects


@dataclass
class World:
    """The simulated world as Arrow tables (fast to write; convert with :func:`to_pandas`)."""

    tables: dict[str, pa.Table]
    oracle: pa.Table
    realised: pa.Table
    as_of: dt.datetime
    effects: pa.Table | None = None
    """``oracle/treatment_effects.parquet`` (only with ``synth.campaigns``)."""


def simulate(params: SynthParams, progress: Progress | None = None) -> World:
    """Simulate the world as Arrow tables.

    Parameters
    ----------
    params : SynthParams
        Size (accounts, months), seed and start date.
    progress : callable, optional
        ``progress(stage, done, total)`` called after each simulated month.

    Returns
    -------
    World
        Contract tables, oracle and realised outcomes as ``pyarrow.Table`` objects.
    """
    n_acc, n_months = params.accounts, params.months
    root = np.random.SeedSequence(params.seed)
    # Children are numbered: spawning five keeps the first three (and the world) as they were.
    attr_ss, world_ss, oracle_ss, camp_ss, effect_ss = root.spawn(5)
    ar = np.random.default_rng(attr_ss)
    rng = np.random.default_rng(world_ss)
    orng = np.random.default_rng(oracle_ss)

    ms = _month_starts(params.start, n_months + 6)
    as_of = ms[n_months]
    start_cal = params.start.month
    days_in = ((ms[1:] - ms[:-1]) // np.timedelta64(1, "D")).astype(np.int64)

    # --- static attributes; accounts sorted by first billed month so arrivals are a prefix.
    n_init = max(1, int(round(n_acc * 0.4))) if n_months > 1 else n_acc
    first = np.zeros(n_acc, dtype=np.int64)
    if n_months > 1:
        # Arrivals grow slowly over time (a company that keeps acquiring customers).
        weights = np.linspace(1.0, 1.5, n_months - 1)
        first[n_init:] = np.sort(
            ar.choice(np.arange(1, n_months), n_acc - n_init, p=weights / weights.sum())
        )
    seg = ar.choice(3, n_acc, p=SEGMENT_P).astype(np.int8)
    chan_code = ar.choice(len(CHANNELS), n_acc, p=CHANNEL_P)
    ind_code = ar.integers(0, len(INDUSTRIES), n_acc)
    country_code = ar.choice(len(COUNTRIES), n_acc, p=COUNTRY_P)
    start_us = ms[first].astype(np.int64)
    back_days = np.where(first == 0, ar.integers(30, 3 * 365, n_acc), ar.integers(1, 15, n_acc))
    created_us = start_us - back_days * US_PER_DAY + ar.integers(0, US_PER_DAY, n_acc)
    created_us = (created_us // 1_000_000) * 1_000_000
    tenure0 = np.where(first == 0, back_days // 30, 0).astype(np.float64)

    seats0 = np.where(
        seg == 0,
        3 + ar.poisson(4, n_acc),
        np.where(
            seg == 1,
            8 + ar.poisson(12, n_acc),
            25 + np.rint(ar.lognormal(np.log(45), 0.5, n_acc)),
        ),
    ).astype(np.int64)
    u = ar.random(n_acc)
    plan0 = (u[:, None] > np.cumsum(PLAN_P[seg], axis=1)[:, :-1]).sum(axis=1).astype(np.int8)
    price = np.where(
        seg == 0, 1.0, np.where(seg == 1, ar.uniform(0.9, 1.0, n_acc), ar.uniform(0.7, 0.9, n_acc))
    ).round(2)
    s = ar.standard_normal(n_acc)
    h3 = np.where(first == 0, ar.standard_normal(n_acc), 0.2 + ar.standard_normal(n_acc))
    h2 = np.where(first == 0, RHO_H * h3 + SIG_H * ar.standard_normal(n_acc), h3)
    h1 = np.where(first == 0, RHO_H * h2 + SIG_H * ar.standard_normal(n_acc), h3)
    g0 = 0.5 * ar.standard_normal(n_acc)
    st = _State(
        seg=seg,
        chan=CHANNEL_CHURN[chan_code],
        s=s,
        phase=ar.integers(0, 3, n_acc).astype(np.int8),
        h=h1,
        h2=h2,
        h3=h3,
        g=g0,
        # New arrivals have no usage yet: their lagged observables start at typical values
        # (not at values that would reveal their hidden health).
        util=np.where(first == 0, _sigmoid(0.4 + 1.1 * h1 + 0.8 * g0), 0.6),
        inten=np.where(first == 0, np.log1p(np.exp(-0.45 + 1.0 * h1)), 0.75),
        inten2=np.where(first == 0, np.log1p(np.exp(-0.45 + 1.0 * h2)), 0.75),
        inten3=np.where(first == 0, np.log1p(np.exp(-0.45 + 1.0 * h3)), 0.75),
        tix=np.zeros(n_acc, dtype=np.int64),
        urg=np.zeros(n_acc, dtype=np.int64),
        tenure=tenure0,
        nps=np.zeros(n_acc, dtype=np.int8),
        fp_age=np.full(n_acc, 99, dtype=np.int16),
        fp_bits=np.zeros(n_acc, dtype=np.int8),
        seats=seats0,
        plan=plan0,
        price=price,
    )
    unsub = np.zeros(n_acc, dtype=bool)
    active = np.zeros(n_acc, dtype=bool)
    off_months = np.zeros(n_acc, dtype=np.int64)  # months inactive (0 while active)

    # History kept for realised labels: activity and MRR at every month start 0..M.
    act_hist = np.zeros((n_months + 1, n_acc), dtype=bool)
    mrr_hist = np.zeros((n_months + 1, n_acc))
    exp_orders: list[tuple[np.ndarray, np.ndarray]] = []  # (account index, time us)
    rows = _Rows()
    oracle_parts: list[tuple[np.ndarray, int, np.ndarray, np.ndarray]] = []

    horizon = np.timedelta64(HORIZON_DAYS, "D")
    camps = (
        _Campaigns(
            n_acc,
            np.random.default_rng(camp_ss),
            np.random.default_rng(effect_ss),
            params.oracle_draws,
        )
        if params.campaigns
        else None
    )

    def oracle_for(t: int, idx: np.ndarray) -> None:
        end = ms[t] + horizon
        m90 = int(np.searchsorted(ms, end, side="right") - 1)
        w = float((end - ms[m90]) / (ms[m90 + 1] - ms[m90]))
        running = camps.running(idx, t) if camps is not None else None
        pc_, pe_ = _oracle(
            st.take(idx), t, m90 - t, w, start_cal, params.oracle_draws, orng, running
        )
        oracle_parts.append((idx, t, pc_, pe_))

    for t in range(n_months):
        cal = (start_cal + t - 1) % 12 + 1
        m0 = int(ms[t].astype(np.int64))
        n_arr = int(np.searchsorted(first, t, side="right"))
        new = np.flatnonzero(first[:n_arr] == t)
        active[new] = True
        idx_act = np.flatnonzero(active[:n_arr])
        act_hist[t] = active
        mrr_now = _mrr(st.take(np.arange(n_arr)))
        mrr_hist[t, :n_arr] = np.where(active[:n_arr], mrr_now, 0.0)

        rows.add(
            "subscriptions",
            acc=idx_act,
            start=np.full(len(idx_act), m0),
            end=np.full(len(idx_act), int(ms[t + 1].astype(np.int64))),
            mrr=mrr_now[idx_act],
            plan=st.plan[idx_act].copy(),
            seats=st.seats[idx_act].copy(),
        )
        if len(new):
            fee = np.round(2 * mrr_now[new], 2)
            rows.add(
                "orders",
                acc=new,
                time=m0 + rng.integers(0, 3 * US_PER_DAY // 1_000_000, len(new)) * 1_000_000,
                amount=fee,
                kind=np.zeros(len(new), dtype=np.int8),
                product=np.zeros(len(new), dtype=np.int8),
            )

        sub = st.take(np.arange(n_arr))
        m = _draw_month(sub, cal, t, rng)
        if camps is not None:
            if camps.due(t, n_months):
                camps.assign(t, sub, m, idx_act, mrr_now, ms, start_cal)
            camps.apply(m, t, n_arr)
        # After the month's assignments (audiences are frozen at the month start, the cutoff),
        # before its end-of-month decisions change the state. The oracle has its own stream.
        oracle_for(t, idx_act)
        mon_us = int(days_in[t]) * US_PER_DAY
        _emit_usage(rows, rng, idx_act, m, sub, cal, m0, days_in[t], as_of)
        _emit_support(rows, rng, idx_act, m, m0, mon_us, int(as_of.astype(np.int64)))
        _emit_campaigns(
            rows,
            rng,
            t,
            cal,
            m0,
            mon_us,
            active[:n_arr],
            off_months[:n_arr],
            unsub,
            m,
            int(as_of.astype(np.int64)),
        )

        # Decisions at the end of the month.
        act = active[:n_arr]
        churn = act & (rng.random(n_arr) < m.q)
        expand = act & ~churn & (rng.random(n_arr) < m.e)
        down = ~expand & (rng.random(n_arr) < m.d)
        back = ~act & (rng.random(n_arr) < _reactivation_p(off_months[:n_arr]))

        _downgrade(st, np.flatnonzero(down), rng)
        if camps is not None:
            camps.month_end(down & act)
        relief = _emit_expansion(rows, rng, st, np.flatnonzero(expand), m0, mon_us, exp_orders)
        _emit_other_orders(rows, rng, st, act, churn, mrr_now, m0, mon_us, as_of)

        full = st.take(np.arange(n_arr))
        _advance(full, m)
        for f in fields(st):
            getattr(st, f.name)[:n_arr] = getattr(full, f.name)
        st.g[np.flatnonzero(expand)] -= relief
        off_months[:n_arr] = np.where(act & ~churn, 0, np.where(back, 0, off_months[:n_arr] + 1))
        off_months[:n_arr] = np.where(act & churn, 1, off_months[:n_arr])
        active[:n_arr] = (act & ~churn) | back
        back_idx = np.flatnonzero(back)
        if len(back_idx):
            rows.add(
                "orders",
                acc=back_idx,
                # Signed in the last days of the month; billing restarts next month.
                time=int(ms[t + 1].astype(np.int64))
                - rng.integers(1, 3 * US_PER_DAY // 1_000_000, len(back_idx)) * 1_000_000,
                amount=np.round(_mrr(st.take(back_idx)), 2),
                kind=np.zeros(len(back_idx), dtype=np.int8),
                product=np.full(len(back_idx), 1, dtype=np.int8),
            )
        if progress is not None:
            progress("simulate", t + 1, n_months)

    # The as-of month: who is active (paid through the end of that month).
    t = n_months
    idx_act = np.flatnonzero(active)
    act_hist[t] = active
    mrr_end = _mrr(st)
    mrr_hist[t] = np.where(active, mrr_end, 0.0)
    oracle_for(t, idx_act)
    rows.add(
        "subscriptions",
        acc=idx_act,
        start=np.full(len(idx_act), int(ms[t].astype(np.int64))),
        end=np.full(len(idx_act), int(ms[t + 1].astype(np.int64))),
        mrr=mrr_end[idx_act],
        plan=st.plan[idx_act].copy(),
        seats=st.seats[idx_act].copy(),
    )

    ids = _account_ids(n_acc)
    tables = _build_tables(
        rows, ids, created_us, seg, ind_code, country_code, chan_code, int(as_of.astype(np.int64))
    )
    oracle = _build_oracle(oracle_parts, ids, ms)
    realised = _build_realised(act_hist, mrr_hist, exp_orders, ids, created_us, ms, n_months)
    as_of_dt = pd.Timestamp(as_of).to_pydatetime()
    effects = None
    if camps is not None:
        tables["treatments"], effects = camps.tables(
            ids, act_hist, exp_orders, int(as_of.astype(np.int64))
        )
    return World(tables, oracle, realised, as_of_dt, effects)


def _emit_usage(
    rows: _Rows,
    rng: np.random.Generator,
    idx: np.ndarray,
    m: _Month,
    sub: _State,
    cal: int,
    m0: int,
    days: np.int64,
    as_of: np.datetime64,
) -> None:
    """Daily usage rows (one per user, day and event type) and failed-payment events."""
    users = m.active_users[idx]
    hs = m.h[idx]
    extra = m.extra_rows[idx]
    # Type weights for the extra rows: advanced features for healthy, sophisticated accounts.
    logits = TYPE_BASE[None, :] + TYPE_SLOPE[None, :] * (hs + sub.s[idx])[:, None]
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    counts = rng.multinomial(extra, p)  # (n, 7)
    counts[:, 0] += users  # every active user logs in at least once
    total = counts.sum(axis=1)
    n_rows = int(total.sum())
    acc = np.repeat(idx, total)
    etype = np.repeat(np.tile(np.arange(USAGE_TYPES, dtype=np.int8), len(idx)), counts.ravel())
    # The first `users` rows of each account (its logins) go to users 0..users-1 so that every
    # active user appears; the rest go to random active users.
    offsets = np.repeat(np.cumsum(total) - total, total)
    rank = np.arange(n_rows) - offsets
    u_acc = np.repeat(users, total)
    user = np.where(rank < u_acc, rank, np.floor(rng.random(n_rows) * u_acc)).astype(np.int64)
    day = rng.integers(0, int(days), n_rows)
    # Working hours, 07:00-19:00.
    tod = rng.integers(7 * 3600, 19 * 3600, n_rows) * 1_000_000
    when = m0 + day * US_PER_DAY + tod
    qmean = TYPE_QTY[etype] * np.exp(0.8 * np.repeat(hs, total))
    qty = 1.0 + rng.poisson(qmean)
    rows.add("events", acc=acc, time=when, etype=etype, qty=qty, user=user)

    fail = idx[m.failed[idx]]
    if len(fail):
        tries = rng.integers(1, 4, len(fail))
        acc_f = np.repeat(fail, tries)
        k = np.arange(len(acc_f)) - np.repeat(np.cumsum(tries) - tries, tries)
        # Card declined on the billing day (1st-3rd), retried every three days.
        when_f = (
            m0
            + rng.integers(0, 3, len(acc_f)) * US_PER_DAY
            + k * 3 * US_PER_DAY
            + rng.integers(0, US_PER_DAY, len(acc_f)) // 1_000_000 * 1_000_000
        )
        rows.add(
            "events",
            acc=acc_f,
            time=when_f,
            etype=np.full(len(acc_f), USAGE_TYPES, dtype=np.int8),
            qty=np.ones(len(acc_f)),
            user=np.full(len(acc_f), -1, dtype=np.int64),
        )


def _emit_support(
    rows: _Rows,
    rng: np.random.Generator,
    idx: np.ndarray,
    m: _Month,
    m0: int,
    mon_us: int,
    as_of_us: int,
) -> None:
    """Tickets (priority, time to close, CSAT) and NPS responses of active accounts."""
    n_t = m.tickets[idx]
    acc = np.repeat(idx, n_t)
    k = np.arange(len(acc)) - np.repeat(np.cumsum(n_t) - n_t, n_t)
    urgent = k < np.repeat(m.urgent[idx], n_t)
    hs = m.h[acc]
    other = rng.choice(3, len(acc), p=[0.25, 0.55, 0.2])  # low, normal, high
    prio = np.where(urgent, 3, other).astype(np.int8)
    opened = m0 + (rng.random(len(acc)) * mon_us).astype(np.int64) // 1_000_000 * 1_000_000
    mean_hours = np.array([96.0, 48.0, 20.0, 6.0])[prio] * np.exp(-0.3 * hs)
    hours = rng.exponential(mean_hours)
    closed = opened + (hours * US_PER_HOUR).astype(np.int64) // 1_000_000 * 1_000_000
    is_closed = closed < as_of_us
    rated = is_closed & (rng.random(len(acc)) < 0.65)
    csat = np.clip(
        np.rint(3.7 + 0.8 * hs - 0.3 * np.log1p(hours / 24) + 0.9 * rng.standard_normal(len(acc))),
        1,
        5,
    )
    rows.add(
        "tickets",
        acc=acc,
        opened=opened,
        closed=np.where(is_closed, closed, -1),
        prio=prio,
        csat=np.where(rated, csat, np.nan),
    )

    resp = idx[m.responded[idx]]
    score = m.score[resp]
    cat = np.where(score <= 6, 1, np.where(score <= 8, 2, 3))
    has_comment = rng.random(len(resp)) < 0.35
    pick = rng.random(len(resp))
    comment_code = np.full(len(resp), -1, dtype=np.int64)
    base = 0
    for c in (1, 2, 3):
        n_c = len(COMMENTS[c])
        sel = has_comment & (cat == c)
        comment_code[sel] = base + (pick[sel] * n_c).astype(np.int64)
        base += n_c
    rows.add(
        "nps",
        acc=resp,
        time=m0 + (rng.random(len(resp)) * mon_us).astype(np.int64) // 1_000_000 * 1_000_000,
        score=score.astype(np.float64),
        comment=comment_code,
    )


def _emit_campaigns(
    rows: _Rows,
    rng: np.random.Generator,
    t: int,
    cal: int,
    m0: int,
    mon_us: int,
    act: np.ndarray,
    off_months: np.ndarray,
    unsub: np.ndarray,
    m: _Month,
    as_of_us: int,
) -> None:
    """A monthly newsletter to customers and a rotating targeted campaign."""
    n = len(act)
    kind = CAMPAIGN_ROTATION[t % len(CAMPAIGN_ROTATION)]
    reach = ~unsub[:n]
    if kind == "winback":
        target = ~act & (off_months >= 1) & (off_months <= 12) & reach
    elif kind == "upsell_offer":
        target = act & reach & (rng.random(n) < 0.5)
    else:
        target = act & reach
    for c, (ctype, recipients) in enumerate(
        (("newsletter", np.flatnonzero(act & reach)), (kind, np.flatnonzero(target)))
    ):
        if len(recipients) == 0:
            continue
        code = t * 2 + c
        sent = m0 + (3 + 11 * c) * US_PER_DAY + 10 * US_PER_HOUR
        sent = min(sent, m0 + mon_us - US_PER_HOUR)
        k = len(recipients)
        hs = m.h[recipients]
        bounce = rng.random(k) < 0.02
        opened = ~bounce & (rng.random(k) < _sigmoid(-0.8 + 0.45 * hs))
        clicked = opened & (rng.random(k) < _sigmoid(-1.6 + 0.4 * hs))
        unsubbed = opened & (rng.random(k) < _sigmoid(-4.5 - 0.6 * hs))
        t_open = sent + (rng.exponential(30.0, k) * US_PER_HOUR).astype(np.int64)
        t_click = t_open + (rng.exponential(0.3, k) * US_PER_HOUR).astype(np.int64)
        parts = [
            (recipients, np.full(k, sent), 0, np.ones(k, dtype=bool)),
            (recipients, t_open, 1, opened),
            (recipients, t_click, 2, clicked),
            (recipients, t_click + US_PER_HOUR, 3, unsubbed),
            (recipients, np.full(k, sent + 60_000_000), 4, bounce),
        ]
        for acc, when, action, mask in parts:
            when = when // 1_000_000 * 1_000_000
            keep = mask & (when < as_of_us)
            rows.add(
                "campaign_events",
                acc=acc[keep],
                time=when[keep],
                campaign=np.full(int(keep.sum()), code, dtype=np.int64),
                action=np.full(int(keep.sum()), action, dtype=np.int8),
                ctype=np.full(int(keep.sum()), _CAMPAIGN_TYPES.index(ctype), dtype=np.int8),
            )
        unsub[recipients[unsubbed]] = True


_CAMPAIGN_TYPES = ["newsletter", *CAMPAIGN_ROTATION]
ORDER_KINDS = np.array(["new", "renewal", "upsell", "cross_sell", "services", "refund"])
ORDER_PRODUCTS = np.array(
    [
        "onboarding",
        "reactivation",
        "premium_support",
        "seats",
        "plan_growth",
        "plan_scale",
        *ADDONS,
        *SERVICES,
        "subscription_refund",
    ]
)
_P_ONBOARD, _P_REACT, _P_SUPPORT, _P_SEATS, _P_PLAN = 0, 1, 2, 3, 4
_P_ADDON = 6
_P_SERVICE = 6 + len(ADDONS)
_P_REFUND = _P_SERVICE + len(SERVICES)


def _emit_expansion(
    rows: _Rows,
    rng: np.random.Generator,
    st: _State,
    idx: np.ndarray,
    m0: int,
    mon_us: int,
    exp_orders: list[tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Plan upgrades, seat expansions (upsell orders) and add-ons (cross-sell orders).

    Returns the drop in seat demand ``g`` per expanding account (applied after the month's
    latent update).
    """
    n = len(idx)
    if n == 0:
        return np.zeros(0)
    before = _mrr(st.take(idx))
    u = rng.random(n)
    plan_up = (st.plan[idx] < 2) & (u < 0.35)
    seats_up = ~plan_up & (u < 0.75)
    addon = ~plan_up & ~seats_up
    factor = rng.uniform(1.15, 1.6, n)
    st.plan[idx] = np.where(plan_up, st.plan[idx] + 1, st.plan[idx])
    st.seats[idx] = np.where(
        seats_up, np.ceil(st.seats[idx] * factor).astype(st.seats.dtype), st.seats[idx]
    )
    after = _mrr(st.take(idx))
    amount = np.where(
        addon,
        np.round(ADDON_PRICE[st.seg[idx]] * rng.uniform(0.7, 1.3, n), 2),
        np.round(12 * (after - before), 2),
    )
    kind = np.where(addon, 3, 2).astype(np.int8)
    product = np.where(
        plan_up,
        _P_PLAN + st.plan[idx] - 1,
        np.where(seats_up, _P_SEATS, _P_ADDON + rng.integers(0, len(ADDONS), n)),
    ).astype(np.int8)
    when = m0 + (rng.random(n) * mon_us).astype(np.int64) // 1_000_000 * 1_000_000
    rows.add("orders", acc=idx, time=when, amount=amount, kind=kind, product=product)
    exp_orders.append((idx, when))
    # Seat pressure is relieved by new seats.
    return np.where(seats_up, 2.0 * np.log(factor), 0.0)


def _emit_other_orders(
    rows: _Rows,
    rng: np.random.Generator,
    st: _State,
    act: np.ndarray,
    churn: np.ndarray,
    mrr_now: np.ndarray,
    m0: int,
    mon_us: int,
    as_of: np.datetime64,
) -> None:
    """Annual renewal fees, services, and refunds after some churns."""
    n = len(act)
    renew = np.flatnonzero(act & (st.tenure[:n] > 0) & (st.tenure[:n] % 12 == 0))
    if len(renew):
        rows.add(
            "orders",
            acc=renew,
            time=m0 + rng.integers(0, 5 * US_PER_DAY, len(renew)) // 1_000_000 * 1_000_000,
            amount=np.round(mrr_now[renew] * 1.0, 2),
            kind=np.full(len(renew), 1, dtype=np.int8),
            product=np.full(len(renew), _P_SUPPORT, dtype=np.int8),
        )
    p_serv = np.array([0.01, 0.03, 0.07])[st.seg[:n]]
    serv = np.flatnonzero(act & (rng.random(n) < p_serv))
    if len(serv):
        rows.add(
            "orders",
            acc=serv,
            time=m0 + (rng.random(len(serv)) * mon_us).astype(np.int64) // 1_000_000 * 1_000_000,
            amount=np.round(
                np.array([800.0, 3000.0, 12000.0])[st.seg[serv]] * rng.lognormal(0, 0.4, len(serv)),
                2,
            ),
            kind=np.full(len(serv), 4, dtype=np.int8),
            product=(_P_SERVICE + rng.integers(0, len(SERVICES), len(serv))).astype(np.int8),
        )
    ref = np.flatnonzero(churn & (rng.random(n) < 0.25))
    when = m0 + mon_us + rng.integers(1, 10, len(ref)) * US_PER_DAY
    keep = when < int(as_of.astype(np.int64))
    ref, when = ref[keep], when[keep]
    if len(ref):
        rows.add(
            "orders",
            acc=ref,
            time=when,
            amount=-np.round(mrr_now[ref] * rng.uniform(0.2, 1.0, len(ref)), 2),
            kind=np.full(len(ref), 5, dtype=np.int8),
            product=np.full(len(ref), _P_REFUND, dtype=np.int8),
        )


def _account_ids(n: int) -> pa.Array:
    width = max(6, len(str(n)))
    return pa.array([f"A{i + 1:0{width}d}" for i in range(n)], pa.string())


def _dict_take(dictionary: pa.Array | np.ndarray, codes: np.ndarray) -> pa.Array:
    """Strings by code (-1 -> null), built in Arrow (no per-row Python objects)."""
    if not isinstance(dictionary, pa.Array):
        dictionary = pa.array(list(dictionary), pa.string())
    codes = np.asarray(codes)
    mask = codes < 0
    indices = pa.array(np.where(mask, 0, codes).astype(np.int32), mask=mask if mask.any() else None)
    return pc.take(dictionary, indices)


def _ts(us: np.ndarray) -> pa.Array:
    us = np.asarray(us, dtype=np.int64)
    mask = us < 0
    return pa.array(
        us.view("datetime64[us]"), pa.timestamp("us"), mask=mask if mask.any() else None
    )


def _build_tables(
    rows: _Rows,
    ids: pa.Array,
    created_us: np.ndarray,
    seg: np.ndarray,
    ind: np.ndarray,
    country: np.ndarray,
    chan: np.ndarray,
    as_of_us: int,
) -> dict[str, pa.Table]:
    out: dict[str, pa.Table] = {}
    out["accounts"] = pa.table(
        {
            "account_id": ids,
            "created_at": _ts(created_us),
            "segment": _dict_take(SEGMENTS, seg),
            "industry": _dict_take(INDUSTRIES, ind),
            "country": _dict_take(COUNTRIES, country),
            "acquisition_channel": _dict_take(CHANNELS, chan),
        }
    )
    s = rows.cat("subscriptions")
    out["subscriptions"] = pa.table(
        {
            "account_id": _dict_take(ids, s["acc"]),
            "start_at": _ts(s["start"]),
            "end_at": _ts(s["end"]),
            "mrr": pa.array(s["mrr"], pa.float64()),
            "plan": _dict_take(PLANS, s["plan"]),
            "seats": pa.array(s["seats"].astype(np.int32), pa.int32()),
        }
    )
    o = rows.cat("orders")
    order = np.lexsort((o["acc"], o["time"]))
    o = {k: v[order] for k, v in o.items()}
    out["orders"] = pa.table(
        {
            "account_id": _dict_take(ids, o["acc"]),
            "ordered_at": _ts(o["time"]),
            "amount": pa.array(o["amount"], pa.float64()),
            "kind": _dict_take(ORDER_KINDS, o["kind"]),
            "product": _dict_take(ORDER_PRODUCTS, o["product"]),
        }
    )
    e = rows.cat("events")
    rows.parts.pop("events", None)  # free the chunks early: events dominate memory
    user_code = np.where(e["user"] < 0, -1, e["user"] + 1)
    width = max(3, len(str(int(user_code.max()) if len(user_code) else 1)))
    users = pa.array([f"-U{i:0{width}d}" for i in range(int(user_code.max(initial=0)) + 1)])
    acc_str = _dict_take(ids, e["acc"])
    user_str = pc.binary_join_element_wise(
        acc_str, _dict_take(users, np.where(user_code < 0, -1, user_code)), ""
    )
    out["events"] = pa.table(
        {
            "account_id": acc_str,
            "occurred_at": _ts(e["time"]),
            "event_type": _dict_take(EVENT_TYPES, e["etype"]),
            "quantity": pa.array(e["qty"], pa.float64()),
            "user_id": user_str,
        }
    )
    c = rows.cat("campaign_events")
    order = np.lexsort((c["action"], c["acc"], c["time"]))
    c = {k: v[order] for k, v in c.items()}
    camp_ids = _campaign_ids(c["campaign"], c["ctype"], as_of_us)
    out["campaign_events"] = pa.table(
        {
            "account_id": _dict_take(ids, c["acc"]),
            "occurred_at": _ts(c["time"]),
            "campaign_id": camp_ids,
            "action": _dict_take(np.array(_ACTIONS), c["action"]),
            "campaign_type": _dict_take(np.array(_CAMPAIGN_TYPES), c["ctype"]),
        }
    )
    k = rows.cat("tickets")
    out["tickets"] = pa.table(
        {
            "account_id": _dict_take(ids, k["acc"]),
            "opened_at": _ts(k["opened"]),
            "closed_at": _ts(k["closed"]),
            "priority": _dict_take(np.array(["low", "normal", "high", "urgent"]), k["prio"]),
            "csat": pa.array(k["csat"], pa.float64(), from_pandas=True),
        }
    )
    n = rows.cat("nps")
    comments = [c for cat in (1, 2, 3) for c in COMMENTS[cat]]
    out["nps"] = pa.table(
        {
            "account_id": _dict_take(ids, n["acc"]),
            "responded_at": _ts(n["time"]),
            "score": pa.array(n["score"], pa.float64()),
            "comment": _dict_take(np.array(comments), n["comment"]),
        }
    )
    for name, table in out.items():
        expected = list(TABLES[name].column_names)
        assert table.column_names[: len(expected)] == expected, name
    return out


_ACTIONS = ("sent", "open", "click", "unsubscribe", "bounce")


def _campaign_ids(code: np.ndarray, ctype: np.ndarray, as_of_us: int) -> pa.Array:
    # code = month index * 2 + slot; ids like CMP-0007-product_update are stable per world.
    n_codes = int(code.max(initial=-1)) + 1
    type_of = np.zeros(max(n_codes, 1), dtype=np.int64)
    type_of[code] = ctype
    names = pa.array(
        [f"CMP-{i // 2 + 1:04d}-{_CAMPAIGN_TYPES[type_of[i]]}" for i in range(max(n_codes, 1))]
    )
    return _dict_take(names, code)


def _build_oracle(
    parts: list[tuple[np.ndarray, int, np.ndarray, np.ndarray]], ids: pa.Array, ms: np.ndarray
) -> pa.Table:
    acc = np.concatenate([p[0] for p in parts])
    cutoff = np.concatenate([np.full(len(p[0]), ms[p[1]].astype(np.int64)) for p in parts])
    order = np.lexsort((cutoff, acc))
    return pa.table(
        {
            "account_id": _dict_take(ids, acc[order]),
            "cutoff": _ts(cutoff[order]),
            "p_churn": pa.array(np.concatenate([p[2] for p in parts])[order]),
            "p_expansion": pa.array(np.concatenate([p[3] for p in parts])[order]),
        }
    )


def _build_realised(
    act: np.ndarray,
    mrr: np.ndarray,
    exp_orders: list[tuple[np.ndarray, np.ndarray]],
    ids: pa.Array,
    created_us: np.ndarray,
    ms: np.ndarray,
    n_months: int,
) -> pa.Table:
    """Realised outcomes per account and month start, from the world's own records."""
    n_acc = act.shape[1]
    cut_us = ms[: n_months + 1].astype(np.int64)
    ends = ms[: n_months + 1] + np.timedelta64(HORIZON_DAYS, "D")
    m90 = np.searchsorted(ms, ends, side="right") - 1
    labelled = ends <= ms[n_months]  # the label needs the world up to T + 90 days
    # Expansion orders: flag every cutoff T with T <= time < T + 90 days.
    has_order = np.zeros((n_months + 1, n_acc), dtype=bool)
    if exp_orders:
        o_acc = np.concatenate([a for a, _ in exp_orders])
        o_time = np.concatenate([w for _, w in exp_orders])
        horizon_us = HORIZON_DAYS * US_PER_DAY
        for t in range(n_months + 1):
            inside = (o_time >= cut_us[t]) & (o_time < cut_us[t] + horizon_us)
            has_order[t, o_acc[inside]] = True
    rows_t, rows_a = np.nonzero(created_us[None, :] < cut_us[:, None])
    a_t = act[rows_t, rows_a]
    nxt = np.minimum(rows_t + 1, n_months)
    churned_month = np.where(
        a_t & (rows_t < n_months), (~act[nxt, rows_a]).astype(np.float64), np.nan
    )
    lab = a_t & labelled[rows_t]
    m90_r = np.minimum(m90[rows_t], n_months)
    churn = np.where(lab, (~act[m90_r, rows_a]).astype(np.float64), np.nan)
    grew = mrr[m90_r, rows_a] >= (1 + EXPANSION_MIN_FRACTION) * mrr[rows_t, rows_a]
    expansion = np.where(lab, (grew | has_order[rows_t, rows_a]).astype(np.float64), np.nan)
    order = np.lexsort((rows_t, rows_a))
    return pa.table(
        {
            "account_id": _dict_take(ids, rows_a[order]),
            "cutoff": _ts(cut_us[rows_t][order]),
            "active": pa.array(a_t[order]),
            "churned_in_month": pa.array(churned_month[order], from_pandas=True),
            "churn_90d": pa.array(churn[order], from_pandas=True),
            "expansion_90d": pa.array(expansion[order], from_pandas=True),
            "mrr": pa.array(mrr[rows_t, rows_a][order]),
        }
    )


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as a pandas frame with contract dtypes (str ids, datetime64[us])."""
    frame = table.to_pandas()
    if "seats" in frame.columns:
        # Nullable in the contract, never null here: keep a plain integer column.
        frame["seats"] = frame["seats"].astype("int32")
    return frame


def generate(params: SynthParams) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, pd.DataFrame]:
    """Generate the synthetic world in memory.

    Parameters
    ----------
    params : SynthParams
        The ``synth`` section of params.yaml.

    Returns
    -------
    tables : dict of str to DataFrame
        The seven contract tables, with contract column names and dtypes.
    oracle : DataFrame
        ``account_id``, ``cutoff``, ``p_churn``, ``p_expansion`` per active account and month start.
    realised : DataFrame
        ``account_id``, ``cutoff``, ``active``, ``churned_in_month``, ``churn_90d``,
        ``expansion_90d``, ``mrr``.
    """
    world = simulate(params)
    tables = {name: to_pandas(t) for name, t in world.tables.items()}
    return tables, to_pandas(world.oracle), to_pandas(world.realised)


def write(world: World, out: Path | str) -> None:
    """Write a world to ``out`` atomically: a temporary sibling folder, then swapped in."""
    with atomic_dir(out) as tmp:
        (tmp / "oracle").mkdir()
        for name, table in world.tables.items():
            pq.write_table(table, tmp / f"{name}.parquet")
        pq.write_table(world.oracle, tmp / "oracle" / "oracle.parquet")
        pq.write_table(world.realised, tmp / "oracle" / "realised.parquet")
        if world.effects is not None:
            pq.write_table(world.effects, tmp / "oracle" / "treatment_effects.parquet")


def summarise(world: World) -> dict[str, Any]:
    """Row counts and headline rates of a world (JSON-serialisable)."""
    real = world.realised
    churn = real.column("churn_90d").to_numpy(zero_copy_only=False)
    exp = real.column("expansion_90d").to_numpy(zero_copy_only=False)
    act = real.column("active").to_numpy(zero_copy_only=False)
    oracle_p = world.oracle.column("p_churn").to_numpy()
    return {
        "as_of": world.as_of.isoformat(),
        "rows": {name: t.num_rows for name, t in world.tables.items()},
        "oracle_rows": world.oracle.num_rows,
        "active_account_months": int(act.sum()),
        "churn_90d_rate": float(np.nanmean(churn)) if np.isfinite(churn).any() else None,
        "expansion_90d_rate": float(np.nanmean(exp)) if np.isfinite(exp).any() else None,
        "mean_oracle_p_churn": float(oracle_p.mean()) if len(oracle_p) else None,
    }


def run(
    params: SynthParams, out: Path | str | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Generate the world and write it to ``out`` (default ``params.out``).

    Parameters
    ----------
    params : SynthParams
        The ``synth`` section of params.yaml.
    out : Path, optional
        Target folder; replaced atomically (earlier output survives a failure).
    progress : callable, optional
        ``progress(stage, done, total)``; stages ``simulate`` then ``write``.

    Returns
    -------
    dict
        Summary: ``out``, ``as_of``, ``rows`` per table, ``oracle_rows``,
        ``active_account_months``, ``churn_90d_rate``, ``expansion_90d_rate``,
        ``mean_oracle_p_churn``.
    """
    target = Path(out if out is not None else params.out)
    world = simulate(params, progress)
    if progress is not None:
        progress("write", 0, 1)
    write(world, target)
    if progress is not None:
        progress("write", 1, 1)
    return {"out": str(target), **summarise(world)}

# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 Target campaigns: the at-risk list, audiences within a budget, holdouts
#
# For customer success and marketing: score every current account with the champion models, read
# the at-risk list and its reasons, choose campaign audiences under several budgets and see what
# each extra unit of budget buys, and check that the holdouts are large enough to measure the
# campaigns afterwards.
#
# It first trains the models exactly as notebook 02 does (at the default size that takes a few
# minutes; CI runs a small world). Everything is written under `OUTPUTS/03_target_campaigns/`.

# %% tags=["parameters"]
ACCOUNTS = 10_000
MONTHS = 24
OUTPUTS = "outputs"

# %%
import logging
import os
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from churnlab import actions, audiences, effects, pipeline, synth
from churnlab.config import parse_params

# importing churnlab.explain selects matplotlib's file-only Agg backend: back to inline plots
# %matplotlib inline

WORK = Path(OUTPUTS).resolve() / "03_target_campaigns"
shutil.rmtree(WORK, ignore_errors=True)
WORK.mkdir(parents=True)
os.chdir(WORK)  # relative paths in params (data/, models/, reports/) and ./mlruns land in WORK

params = parse_params({
    "synth": {"accounts": ACCOUNTS, "months": MONTHS},
    "tracking": {"uri": f"sqlite:///{WORK / 'mlflow.db'}"},
})
pd.set_option("display.max_colwidth", 100)
logging.getLogger("mlflow").setLevel(logging.WARNING)

synth.run(params.synth)
pipeline.build_dataset(params)
trained = pipeline.train_models(params, log_kpis=False)
{task: round(done["metrics"]["test.roc_auc"], 3) for task, done in trained["tasks"].items()}

# %% [markdown]
# ## Score: the at-risk list
#
# `score_accounts` is `churnlab score`: it resolves the champions from the registry, builds the
# features of every current customer at the data end with the training code, and writes the
# at-risk list, the expansion list and the audiences to `score.out/<as_of>/` (CSV and Parquet)
# and to one MLflow run. Each row carries the calibrated churn probability, the ARR, the revenue
# at risk (probability x ARR), the three largest reasons in probability points and the play for
# the largest one.

# %%
run = actions.score_accounts(params)
print(f"scored {len(run.at_risk):,} accounts at {run.as_of:%Y-%m-%d} into {run.folder}")
run.at_risk[["rank", "account_id", "segment", "churn_probability", "risk_band", "arr",
             "revenue_at_risk", "reason_1", "play"]].head(8).round(3)

# %%
run.at_risk.groupby("risk_band").agg(
    accounts=("account_id", "size"),
    mean_churn_probability=("churn_probability", "mean"),
    arr=("arr", "sum"),
    revenue_at_risk=("revenue_at_risk", "sum"),
).round(3)

# %% [markdown]
# The list is sorted by revenue at risk, not by probability: a large account at low risk can
# come before a small one at high risk. For an account near the base rate the largest reason is
# worth a fraction of a point and says little; the reasons matter in the high and medium bands.
# The play follows the driver group of the largest reason (`score.plays` in `params.yaml`, with
# `score.seat_play` for low seat use); how often each comes up in those two bands:

# %%
run.at_risk.loc[run.at_risk["risk_band"] != "low", "play"].value_counts()

# %% [markdown]
# The expansion list is the other side: accounts likely to buy more, with the expected ARR
# increase and a suggested offer. Accounts above `score.expansion_max_churn` churn risk are left
# to the at-risk list.

# %%
run.expansion[["account_id", "expansion_probability", "expected_expansion_value", "offer",
               "reason_1"]].head(5).round(3)

# %% [markdown]
# ## Audiences within a budget
#
# Campaigns are declared in `score.campaigns`: a retention call for high and medium risk, a
# training session for adoption problems, an upsell offer, and a referral ask for low-risk
# promoters, each with a cost per contact and a save or response rate. Each account gets at most
# one campaign, chosen so that the total expected net value (value x rate - cost) is as large as
# possible without exceeding the budget. At `score.budget`:

# %%
print(f"budget {params.score.budget:,.0f}: {run.selection.method}, {run.selection.status}, "
      f"expected net value {run.selection.objective:,.0f}")
run.audience_summary.round(0)

# %% [markdown]
# What does more budget buy? The same choice for a range of budgets, up to the spend at which
# every account with a positive expected net value is contacted (beyond that, more budget buys
# nothing). Holdouts are not contacted, so the value of the contacts is about 10% below the
# plan.

# %%
campaigns = [audiences.Campaign(**c.model_dump()) for c in params.score.campaigns]
lists = {"at_risk": run.at_risk, "expansion": run.expansion, "campaigns": campaigns}
options = {"holdout_share": params.score.holdout_share, "as_of": run.as_of,
           "seed": params.score.seed}
full_spend = audiences.build(**lists, budget=None, **options)[1].chosen["cost"].sum()

sweep = []
for share in (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0):
    audience, selection = audiences.build(**lists, budget=share * full_spend, **options)
    contacted = audiences.summary(audience)
    sweep.append({
        "budget": share * full_spend,
        "spent": selection.chosen["cost"].sum(),
        "planned net value": selection.objective,
        "net value of the contacts": contacted["expected_net_value"].sum(),
        "contacts": contacted["contacts"].sum(),
        **dict(zip("contacts: " + contacted["campaign"], contacted["contacts"], strict=True)),
    })
sweep = pd.DataFrame(sweep).fillna(0)
sweep.round(0)

# %%
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(sweep["budget"], sweep["planned net value"], marker="o", label="planned (all chosen)")
ax.plot(sweep["budget"], sweep["net value of the contacts"], marker="o",
        label="contacted (holdouts excluded)")
ax.axvline(params.score.budget, color="grey", linestyle=":", label="score.budget")
ax.set(xlabel="budget", ylabel="expected net value", title="what each budget buys")
ax.set_ylim(bottom=0)
ax.legend()
plt.show()

# %% [markdown]
# The curve is concave: the optimiser spends the first money on the contacts with the best
# value per unit of cost (retention calls to large accounts at high risk, cheap upsell offers to
# likely expanders), so each further unit of budget buys less. Where the curve flattens, more
# budget is better spent elsewhere. All of it is *expected* value: it assumes the save and
# response rates declared in `params.yaml`, which only the holdouts can confirm.

# %% [markdown]
# ## Holdouts: how the effect will be read
#
# Within each campaign and risk band, a reproducible random 10% (`score.holdout_share`) is held
# out: chosen, but not contacted (`holdout = true`, cost 0). After the 90-day horizon the churn
# (or expansion) rate of the contacted accounts minus that of their holdout is the campaign's
# effect, with a 95% interval (`churnlab.effects.difference_in_rates`, Newcombe's score
# interval); `churnlab.measure` does this for every campaign in the `treatments` table once all
# its outcome windows have closed.
#
# Before spending the budget, check that the test can see the effect the plan assumes. For a
# retention campaign the plan assumes a contact removes `rate` of the churn risk, so the
# expected effect on the churn rate is about `-rate x mean churn probability`; the smallest
# effect the test detects with 80% power at these group sizes is the minimum detectable effect.

# %%
chosen = run.audiences.merge(
    run.at_risk[["account_id", "churn_probability"]], on="account_id", how="left"
)
power = []
for (name, kind), group in chosen.groupby(["campaign", "kind"]):
    n_c = int(group["holdout"].sum())
    n_t = len(group) - n_c
    base = group["churn_probability"].mean()
    retention = kind == "retention"
    rate = group["rate"].mean()
    power.append({
        "campaign": name, "kind": kind, "contacted": n_t, "held out": n_c,
        "mean churn probability": base,
        "assumed effect on churn": -rate * base if retention else float("nan"),
        "minimum detectable effect": effects.minimum_detectable_effect(
            n_t, n_c, base, alternative="decrease") if retention and n_c else float("nan"),
        "audience needed for the assumed effect": effects.required_sample_size(
            base, -rate * base, holdout_share=params.score.holdout_share).n_total
            if retention else float("nan"),
        "warning": effects.too_small(n_c, round(n_c * base)) if retention else None,
    })
pd.DataFrame(power).round(3)

# %% [markdown]
# When the minimum detectable effect is larger (more negative) than the assumed one, the
# holdout cannot confirm the plan at this size: after the horizon the interval will most likely
# include 0 whatever the campaign did. The warning column applies churnlab's own rule (fewer than
# 30 held-out accounts or 5 expected churn events in the holdout). At `score.budget` the
# retention campaigns go to the few accounts where a contact is worth most, so their holdouts
# are small; the remedies are a larger audience (the audience-needed column), a larger holdout
# share, or pooling several rounds of the same campaign before reading it. Upsell campaigns are
# read the same way, on the expansion rate.
#
# To measure it later, the audiences go back into the data as the contract's `treatments`
# table, one row per assignment:

# %%
treatments = run.audiences.rename(columns={"campaign": "campaign_id"}).assign(
    assigned_at=run.as_of
)[["account_id", "campaign_id", "assigned_at", "holdout", "kind", "cost"]]
treatments.head()

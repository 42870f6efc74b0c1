# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # LiPO: Listwise Preference Optimization
#
# Liu, Qin, Wu, Shen, Khalman, Joshi, Zhao, Saleh, Baumgartner, Liu, Liu, Wang (2024). *LiPO: Listwise Preference
# Optimization through Learning-to-Rank.* NAACL 2025, [arXiv:2402.01878](https://arxiv.org/abs/2402.01878).
#
# **Idea.** Preference data often comes as a ranked *list* of K responses per prompt, not a pair. DPO turns a list
# into pairs: all of them (DPO_BT) or just the best against the worst. Learning-to-rank has long known that pairs are
# not equally important: swapping the top two responses matters more than swapping the last two. LiPO-λ keeps DPO's
# pairwise logistic loss on the implicit rewards s = β log π/π_ref but weighs every pair by λ_ij, how much the
# list's DCG would change if the model swapped the two (LambdaLoss). At K = 2 every variant is DPO; the paper's claim
# is that on the same lists LiPO-λ beats DPO_BT and the gap widens as lists grow.
#
# **Where we run it.** The default `toy` profile is offline: the string-operations world of `01_dpo` (reverse / sort
# / shift / dedupe letters a-h, writing each intermediate result), its exact graded oracle, and the same
# ~0.5M-parameter SFT Llama trained from scratch on noisy demonstrations. Lists are K samples of that SFT policy per
# prompt, ranked by their exact oracle scores (the labels ψ). The `hf` profile trains LiPO-λ on any causal LM in
# 4-bit + LoRA from a file of ranked lists; it has no oracle, so it reports held-out ranking metrics and samples and
# asserts no claims.

# %% [markdown]
# ## Claims tested here
#
# | id | kind | claim | source |
# |---|---|---|---|
# | G1 | gate | LiPO-λ fits its training lists: implicit-reward accuracy on their preferred pairs > 0.6 (K = 8) | what the loss optimises |
# | H1 | headline | on identical lists, LiPO-λ reaches a higher oracle score than DPO on all pairs (DPO_BT) at K = 8 | LiPO paper, main results (LiPO-λ > DPO_BT) |
# | H2 | headline | on identical lists, LiPO-λ reaches a higher oracle score than DPO under Plackett-Luce (DPO_PL) at K = 8 | LiPO paper, main results (LiPO-λ > DPO_PL) |
# | H3 | headline | LiPO-λ's advantage over DPO_BT grows with K: larger at K = 8 than at K = 2 | LiPO paper, Fig. 1 (performance vs list size) |
# | S1 | secondary | DPO on all pairs beats DPO on best-vs-worst at K = 8 | the paper's premise: the whole list carries more signal than one pair of it |
#
# A fixed budget of sampled responses per seed is split into lists of K = 2, 4 or 8 (budget / K prompts), so a
# larger K means fewer prompts but more comparisons per prompt: a trade, not just more data. All arms at one K and
# seed train on the very same lists, with the same β, learning rate, steps and responses per step; they differ only
# in how the list's pairs are weighted. A seed draws the prompts, the lists, the batch order and the evaluation
# samples; the SFT base is shared across seeds (training it is the longest step). Every comparison is paired per
# evaluation prompt: two arms' samples for the same held-out prompt, scored by the oracle. KL(π || π_ref) is recorded
# for every arm (in an earlier run of this notebook LiPO-λ moved furthest from its reference at K = 8): a score
# difference bought with a much larger KL is a different trade, not a better use of the lists.

# %% tags=["parameters"]
seed = 0  # first seed; seeds are seed, seed + 1, ...
n_seeds = 3  # seeds per claim
smoke = False  # True: a < 90 s run on 2 CPU cores that checks the pipeline and the claims meaningful at that size
profile = "toy"  # "toy" (offline world with an oracle) or "hf" (a Hugging Face causal LM, 4-bit + LoRA)
model_name = ""  # hf profile: model id or local folder
quantize = "4bit"  # hf profile: "4bit" or "none"
dataset = ""  # hf profile: local .json/.jsonl (or a dataset id) with prompt/responses/scores columns
device = "auto"  # "auto", "cpu" or "cuda"
out_dir = "../reproductions/lipo"  # where figures and result.json go
beta = 0.1  # β for every arm; fixed before any run (the paper's 0.05 is for its T5 policies; 0.1 is 01_dpo's β)
lr = 1e-4  # AdamW learning rate for full fine-tuning of the toy model (as in 01_dpo)
lora_lr = 1e-3  # learning rate for LoRA adapters (hf profile)
lora_r = 16  # LoRA rank
budget = 3072  # sampled responses per seed at every K: budget // K prompts with K responses each
responses_per_step = 64  # responses per training step at every K (responses_per_step // K lists): equal compute
steps = 96  # training steps per arm: two passes over the lists, 48 steps each at the default budget

# %% tags=["install"]
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

if importlib.util.find_spec("prefkit") is None:  # a kernel without prefkit (e.g. Colab): install it first
    clone = next((d for d in (Path.cwd(), *Path.cwd().parents) if (d / "prefkit" / "__init__.py").is_file()), None)
    source = os.environ.get("PREFKIT_SOURCE") or (clone and str(clone))  # see the README, "Colab"
    if not source:
        raise RuntimeError(
            "prefkit is not installed and this notebook is not inside a prefkit clone, so it cannot tell where to "
            "install prefkit from: set PREFKIT_SOURCE to a pip source, e.g. run "
            "os.environ['PREFKIT_SOURCE'] = 'git+https://github.com/<owner>/<repo>' (or a clone's path), then this cell"
        )
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", source])
    importlib.invalidate_caches()

# %%
import inspect
import os
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from IPython.display import display

from prefkit import plot
from prefkit.data import listwise_to_pairwise, load_listwise, split_held_out
from prefkit.evaluate import ranking_report
from prefkit.losses import all_pairs_dpo_loss, best_worst_dpo_loss, lipo_lambda_loss, plackett_luce_loss
from prefkit.losses.listwise import lambda_weights, preferred_pairs, ranking_pair_loss
from prefkit.models import LoraSpec, Reference, resolve_device
from prefkit.evaluate import pair_logps
from prefkit.repro import claims_table, compare, gate, per_seed, seed_everything, write_result
from prefkit.train import TrainConfig

from prefkit.repro import torch_threads

torch.set_num_threads(torch_threads())
dev = resolve_device(device)
list_sizes = [2, 4, 8]  # the paper's list sizes
if smoke:  # a quick pass over every cell: fewer seeds, responses, list sizes and steps (see the claims section)
    n_seeds, budget, steps = 1, min(budget, 512), min(steps, 16)
    responses_per_step, list_sizes = min(responses_per_step, 32), [2, 8]
seeds = list(range(seed, seed + n_seeds))
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
seed_everything(seed)
print(f"profile={profile} smoke={smoke} device={dev} seeds={seeds} budget={budget} steps={steps}")

# %% [markdown]
# ## The loss
#
# For a list of K responses with labels ψ (higher is better) and implicit rewards s_i = β log π(y_i|x)/π_ref(y_i|x),
# the pairwise family is one formula with different pair weights W_ij:
#
# $$\mathcal{L} = -\sum_{\psi_i > \psi_j} W_{ij} \log \sigma(s_i - s_j)$$
#
# - **LiPO-λ** (Eq. 9): W_ij = Δ_ij, the LambdaLoss weight
#   $$\Delta_{ij} = |G_i - G_j| \left|\frac{1}{D(\tau_i)} - \frac{1}{D(\tau_j)}\right|, \qquad G_i = 2^{\psi_i} - 1,
#   \qquad D(\tau) = \log(1 + \tau),$$
#   with τ_i the rank of response i when the list is sorted by the current rewards s (no gradient flows through τ).
#   Pairs with a large label gap near the top of the list weigh most.
# - **DPO on all pairs** (DPO_BT): W_ij = 1 for every ordered pair.
# - **DPO best-vs-worst**: one pair, the best-scored response against the worst.
#
# - **DPO_PL** (the Plackett-Luce form of DPO, Rafailov et al. App. A.3, which the paper also compares with): each
#   response must beat every response ranked below it, -Σ_k [s_k - log Σ_{ψ_j ≤ ψ_k} exp(s_j)].
#
# **Scale.** As in the paper, a list's loss is the W-weighted *sum* over its pairs, so a list with large label gaps
# near the top weighs more than one whose responses are nearly equal: that weighting *across* lists is part of what
# λ does. (Dividing each list's loss by its own Σ W_ij would remove it, and make LiPO-λ at K = 2 exactly DPO.) A sum
# over 28 pairs at K = 8 is, however, a much larger step than one pair, and λ weights are much smaller than 1, so at
# one learning rate the arms would differ mostly in step size. We therefore divide each arm's loss by **one constant
# per arm, list size and seed**: the mean over that seed's training lists of the arm's total weight at step 0 (for
# LiPO-λ the Σ Δ_ij at the reference, where τ is the labels' order; the number of preferred pairs for DPO on all
# pairs; the number of responses that beat some other response for DPO_PL; 1 for best-vs-worst). The constant is
# computed from the lists before training, never from the model, and it leaves the relative weight of lists and pairs
# untouched; only the average step size is equalised. The paper (fixed β = 0.05 and learning rate for every method)
# sums without it; we list it with the deviations. Tied labels form no pair; a list whose responses all tie
# contributes zero loss in every arm. At step 0 the policy is its reference, all s_i = 0, and the training loop checks
# the loss against its value at the reference.

# %%
for fn in (lipo_lambda_loss, lambda_weights, ranking_pair_loss, all_pairs_dpo_loss, best_worst_dpo_loss):
    print(inspect.getsource(fn))


def step0_weight(arm, scores):
    """(N, K) labels -> (N,) each list's total pair weight at step 0 (policy = reference) under ``arm``."""
    if arm == "LiPO-λ":
        return lambda_weights(torch.zeros_like(scores), scores).sum((1, 2))  # τ: the labels' order at s = 0
    if arm == "DPO all pairs":
        return preferred_pairs(scores).sum((1, 2))
    if arm == "DPO_PL":
        return (scores[:, :, None] > scores[:, None, :]).any(-1).sum(-1).to(scores.dtype)
    return (scores.amax(-1) > scores.amin(-1)).to(scores.dtype)  # best-vs-worst: one pair per list with a pair


def scaled(loss, c):
    """``loss`` divided by the constant ``c`` (the scale above): the same gradient directions, one average step."""

    def scaled_loss(policy_logps, ref_logps, scores, beta=0.1):
        losses, rewards = loss(policy_logps, ref_logps, scores, beta=beta)
        return losses / c, rewards

    return scaled_loss


# %% [markdown]
# ## Data and the SFT policy
#
# `toy`: the SFT base of `01_dpo` (trained from scratch on noisy demonstrations, cached on disk). Each seed shuffles
# the training prompts once; a list size K takes the first budget / K of them, so the prompts at K = 8 are a subset of
# those at K = 4 and K = 2. Each prompt gets K samples from the SFT policy, labelled with their exact oracle scores.
# Identical samples stay in the list (they tie). `hf`: the model is loaded in 4-bit with fresh LoRA adapters; the
# ranked lists are validated and split into training and held-out rows.

# %%
from prefkit.generate import sample, sample_table
from prefkit.models import TinyLlamaConfig, load_lm
from prefkit.toy import OracleEval, ToyBaseConfig, describe, run_arm, sample_lists, sft_base
from prefkit.worlds import StringWorld

if profile == "toy":
    world = StringWorld(seed=0, n_train=400 if smoke else 2000, n_eval=64 if smoke else 512)
    tok = world.tokenizer
    base_cfg = ToyBaseConfig(steps=150 if smoke else 800, model=TinyLlamaConfig())
    base = sft_base(world, base_cfg).to(dev)
    eval_prompts = world.eval_prompts
    lists = {}
    for s in seeds:
        order = random.Random(s).sample(world.train_prompts, budget // min(list_sizes))  # this seed's prompts
        for k in list_sizes:
            lists[(s, k)] = sample_lists(world, base, order[: budget // k], k, seed=1000 * s + k)
    ref_samples = {s: [r[0] for r in sample(base, tok, eval_prompts, seed=10_000 + s)] for s in seeds}
    print(describe(base))
    stats = pd.DataFrame(
        [
            {
                "seed": s,
                "K": k,
                "lists": len(rows),
                "mean ψ": np.mean([r["scores"] for r in rows]),
                "best ψ": np.mean([max(r["scores"]) for r in rows]),
                "distinct responses": np.mean([len(set(r["responses"])) for r in rows]),
                "preferred pairs": np.mean([sum(a > b for a in r["scores"] for b in r["scores"]) for r in rows]),
                "all tied": np.mean([len(set(r["scores"])) == 1 for r in rows]),
            }
            for (s, k), rows in lists.items()
        ]
    )
    display(stats.groupby("K").mean().drop(columns="seed").round(3))
    display(pd.DataFrame(lists[(seeds[0], 8)][:1]).explode(["responses", "scores"]))  # one list
else:
    base, tok = load_lm(model_name, quantize=quantize, lora=LoraSpec(r=lora_r), device=device)
    rows = load_listwise(dataset, limit=200 if smoke else None)
    k_hf = int(
        pd.Series([len(r["responses"]) for r in rows]).mode()[0]
    )  # a batch needs one list size: keep the usual one
    n_loaded, rows = len(rows), [r for r in rows if len(r["responses"]) == k_hf]
    train_rows, held_out = split_held_out(rows, min_rows=4)
    lists = {(seeds[0], k_hf): train_rows}
    print(
        f"{len(train_rows)} training lists of K={k_hf}, {len(held_out)} held out ({n_loaded - len(rows)} rows dropped)"
    )

# %% [markdown]
# ## Training: four list losses at K = 2, 4, 8
#
# Every arm fine-tunes a fresh copy of the SFT base for `steps` steps of `responses_per_step` responses
# (`responses_per_step / K` lists), so every arm and list size does the same compute per step and passes over its
# lists the same number of times. π_ref's log-probs of the lists are computed once per arm. At the end each policy
# samples one response per held-out prompt: mean oracle score, win rate against a reference sample (ties count half)
# and KL(π || π_ref) estimated from the policy's samples; and on 256 preferred pairs drawn from its training lists,
# the implicit-reward accuracy (how often s_i > s_j where ψ_i > ψ_j; 0.5 at step 0) and the likelihood ranking
# accuracy π(y_i|x) > π(y_j|x). Smoke mode trains only LiPO-λ and DPO on all pairs.

# %%
arms = {
    "LiPO-λ": lipo_lambda_loss,
    "DPO all pairs": all_pairs_dpo_loss,  # DPO_BT
    "DPO_PL": plackett_luce_loss,
    "DPO best-vs-worst": best_worst_dpo_loss,
}
if smoke:
    arms = {k: arms[k] for k in ("LiPO-λ", "DPO all pairs")}
n_rank = 256  # preferred pairs from the training lists used for the accuracies
final, units, fit_units = [], {}, {}  # units[(arm, K, seed)]: per-prompt values of the final evaluation
if profile == "toy":
    for s in seeds:
        for k in list_sizes:
            pairs = listwise_to_pairwise(lists[(s, k)], "all", allow_empty=True, allow_all_tied=True)  # ψ_i > ψ_j
            rank_pairs = random.Random(s).sample(pairs, min(n_rank, len(pairs)))
            labels = torch.tensor([r["scores"] for r in lists[(s, k)]], dtype=torch.float32)
            for name, loss in arms.items():
                c = float(step0_weight(name, labels).mean())  # the scale constant of this arm, K and seed
                cfg = TrainConfig(steps=steps, lr=lr, seed=s, desc=f"{name} K={k} s{s}")
                ev = OracleEval(world, eval_prompts, ref_samples[s], rank_pairs, beta, s)
                bs = responses_per_step // k
                policy, ref, hist = run_arm(
                    base, tok, lists[(s, k)], scaled(loss, c), cfg, ev, batch_size=bs, beta=beta
                )
                final.append({"arm": name, "K": k, "seed": s, "scale": c, **hist.evals.iloc[-1].to_dict()})
                units[(name, k, s)] = ev.last_per_prompt
                if name == "LiPO-λ" and k == max(list_sizes):  # per-pair units of the gate G1
                    lp = pair_logps(policy, ref, tok, rank_pairs)
                    a, b = lp["pc"] - lp["rc"], lp["pr"] - lp["rr"]
                    fit_units[s] = np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))  # ties count half, as reward_acc
                del policy, ref
    final = pd.DataFrame(final)
    cols = ["score", "win_rate", "kl", "reward_acc", "ranking_acc", "length", "scale"]
    display(final.groupby(["K", "arm"], sort=False)[cols].agg(["mean", "std"]).round(3))

# %% [markdown]
# ## Oracle score vs list size (H1-H3, S1)
#
# Left: the final oracle score of each arm's samples, mean ± one standard deviation over seeds; the dashed line is
# the SFT reference. Right: the paired difference to DPO on all pairs (DPO_BT; same seed, same lists, same evaluation
# prompts), which is what H1-H3 test. At K = 2 a list has at most one pair: DPO_BT and best-vs-worst are then the
# same loss; DPO_PL is too on lists with a pair, but on a list whose two responses tie it still pulls their rewards
# together (the tied responses share a risk set); LiPO-λ differs from DPO_BT only in weighing lists by their label gap.

# %%
figures = []
if profile == "toy":
    fig, axes = plot.figure(ncols=2, width=4.8, height=3.6)
    wide = final.pivot_table(index=["seed", "K"], columns="arm", values="score")
    for n, name in enumerate(arms):
        m = final[final.arm == name].groupby("K")["score"].agg(["mean", "std"])
        x = np.array(m.index) * 2 ** (0.04 * (n - 1.5))  # a small offset per arm on the log axis
        axes[0].errorbar(x, m["mean"], yerr=m["std"], marker="o", capsize=2, label=f"{name} (n={len(seeds)} seeds)")
        if name != "DPO all pairs":
            d = (wide[name] - wide["DPO all pairs"]).groupby("K").agg(["mean", "std"])
            axes[1].errorbar(x, d["mean"], yerr=d["std"], marker="o", capsize=2, color=plot.PALETTE[n], label=name)
    axes[0].axhline(final["ref_score"].mean(), color="gray", ls="--", label="SFT reference")
    axes[0].set(ylabel="oracle score of samples", title=f"Same lists, β={beta}, {steps} steps")
    axes[1].axhline(0, color="gray", lw=1)
    axes[1].set(ylabel="score difference (same seed)", title="Paired advantage over DPO on all pairs")
    for a in axes:
        a.set_xscale("log", base=2)
        a.set_xticks(list_sizes, [str(k) for k in list_sizes])
        a.set_xlabel("list size K (budget / K prompts)")
        a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2)
    fig.tight_layout()
    figures.append(plot.save(fig, out, "score_vs_list_size.png"))

# %% [markdown]
# ## Reward vs KL
#
# Each point is one (arm, K, seed) run: the oracle score of its samples against its KL(π || π_ref). At K = 2 DPO on
# all pairs and best-vs-worst are the same loss, so their points coincide. All arms share one β, learning rate and average step size,
# but not necessarily one KL: weights that concentrate on a few pairs of each list (λ puts most of it near the top)
# push those pairs' log-ratios harder. In this world, as in `01_dpo`, a policy that moves far from π_ref tends to lose oracle score, so
# compare arms at similar KL as well as at equal hyper-parameters; a better use of the lists shows as a higher score
# at the same KL.

# %%
if profile == "toy":
    fig, (ax,) = plot.figure(width=5.4, height=3.8)
    markers = dict(zip(list_sizes, ["o", "s", "^"]))
    for n, name in enumerate(arms):
        for k in list_sizes:
            g = final[(final.arm == name) & (final.K == k)]
            ax.scatter(g["kl"], g["score"], color=plot.PALETTE[n], marker=markers[k], s=22, alpha=0.8)
    for n, name in enumerate(arms):
        ax.scatter([], [], color=plot.PALETTE[n], marker="o", label=name)
    for k in list_sizes:
        ax.scatter([], [], color="gray", marker=markers[k], label=f"K={k}")
    ax.axhline(final["ref_score"].mean(), color="gray", ls="--", label="SFT reference")
    ax.set(xlabel="KL(π || π_ref) [nats / response]", ylabel="oracle score of samples", title="Score vs KL, every run")
    ax.legend(fontsize=7, ncols=2)
    figures.append(plot.save(fig, out, "score_vs_kl.png"))

# %% [markdown]
# ## `hf` profile: LiPO-λ on your model
#
# No oracle here: the run is judged on the held-out lists (implicit-reward and likelihood ranking accuracy over their
# preferred pairs, reward margin) before and after training, and by reading samples. No claim is asserted in this
# profile.

# %%
if profile == "hf":
    ref = Reference(base, mode="adapters_off")
    held_pairs = listwise_to_pairwise(held_out)
    before = ranking_report(base, ref, tok, held_pairs, beta)
    cfg = TrainConfig(steps=min(steps, 10) if smoke else steps, lr=lora_lr, seed=seeds[0], desc="LiPO-λ (hf)")
    train_rows, bs = lists[(seeds[0], k_hf)], max(1, 16 // k_hf)  # at most 16 responses per step
    c = float(step0_weight("LiPO-λ", torch.tensor([r["scores"] for r in train_rows], dtype=torch.float32)).mean())
    _, _, hist = run_arm(base, tok, train_rows, scaled(lipo_lambda_loss, c), cfg, None, "adapters_off", bs, beta=beta)
    after = ranking_report(base, ref, tok, held_pairs, beta)
    display(pd.DataFrame({"before": before, "after": after}))
    fig = plot.training_curves(
        hist.steps,
        {"loss": "LiPO-λ loss", "rewards/pair_accuracy": "pair accuracy (batch)"},
        f"{model_name}: LiPO-λ β={beta}, K={k_hf}",
    )
    figures.append(plot.save(fig, out, "hf_training.png"))
    display(sample_table(base, tok, [r["prompt"] for r in held_out[:3]], seed=seeds[0]))

# %% [markdown]
# ## Deviations from the paper
#
# | ours | the paper | why | expected effect |
# |---|---|---|---|
# | a 0.5M-parameter Llama trained from scratch on string operations | T5-large / T5-XXL policies on Reddit TL;DR and AnthropicHH | offline, minutes on a CPU, with an exact oracle | the sizes of the effects are not comparable, only their direction |
# | labels ψ are exact oracle scores in [0, 1] | labels from a trained pairwise ranking model | the oracle is the world's ground truth | no label noise: a weighting that protects against noisy pairs gets no credit here |
# | each arm's loss divided by one constant per arm, K and seed (the scale above) | the sum, with one learning rate for every method | at one learning rate the arms would differ mostly in step size | the arms compare how they weigh pairs and lists, not how large a step they take |
# | β = 0.1 for every arm | β = 0.05 | 0.1 is the β of `01_dpo` in this world | one β for all arms either way; the comparison is unaffected |
# | a fixed budget of responses split into budget / K lists | a fixed set of prompts, K responses each | more responses at larger K would confound list size with data size | larger K trades prompts for comparisons |
# | oracle score of one sample per held-out prompt | win rates judged by a large model, and proxy rewards | exact and free in this world | no judge bias; the metric is the world's own |

# %% [markdown]
# ## Claims: paper vs ours
#
# Fixed before the full run. Every comparison is paired per evaluation prompt and judged with `prefkit.claims`
# (hierarchical bootstrap over seeds, then prompts): *reproduced* needs the 95% interval above 0 and an estimate of at
# least **delta = 0.02 oracle score**. Why 0.02: the oracle gives partial credit in [0, 1], and the whole gain of
# preference tuning over the SFT base in this world is a few hundredths (see `01_dpo`), so a difference of 0.02
# between two ways of using the same lists is a sizeable share of what any of them can gain, the smallest a reader
# choosing a loss would act on; it is also about 1.5 times the paired noise of one sample per prompt on 512 prompts.
# H3 compares two paired differences (the advantage at K = 8 minus the advantage at K = 2, per prompt), with the same
# delta. The gate G1 checks the mechanism first: if LiPO-λ does not even order its own training pairs (implicit-reward
# accuracy on 256 of them, K = 8, interval above 0.6), the claims about what it does with them are *not testable*.
# In smoke mode (K = 2 and 8, two arms, 16 steps of 32 responses on a briefly trained base, 64 evaluation prompts) only
# G1 is asserted; the score differences between arms need the full run to rise above sampling noise.

# %%
claims = []
DELTA = 0.02  # oracle score (see above)
if profile == "toy":
    K = max(list_sizes)
    u = lambda arm, k=K, key="score": [units[(arm, k, s)][key] for s in seeds]  # noqa: E731
    kl = {a: final[(final.arm == a) & (final.K == K)]["kl"].round(3).tolist() for a in arms}
    claims.append(gate(
        "G1", f"LiPO-λ (β={beta}) fits its training lists (K={K})",
        "implicit-reward accuracy on 256 preferred pairs of the training lists", [fit_units[s] for s in seeds], 0.6,
        paper="LiPO-λ is a ranking loss on the implicit rewards β log π/π_ref",
    ))  # fmt: skip
    paper_main = "LiPO-λ beats DPO_BT and DPO_PL on Reddit TL;DR and AnthropicHH (the paper's main results, K = 8)"
    claims.append(compare(
        "H1", f"on identical lists, LiPO-λ reaches a higher oracle score than DPO on all pairs (K={K})",
        "oracle score: LiPO-λ - DPO all pairs", u("LiPO-λ"), u("DPO all pairs"), delta=DELTA, requires=["G1"],
        asserted=not smoke, paper=paper_main, extra={"kl_per_seed": kl},
    ))  # fmt: skip
    if not smoke:
        claims.append(compare(
            "H2", f"on identical lists, LiPO-λ reaches a higher oracle score than DPO_PL (K={K})",
            "oracle score: LiPO-λ - DPO_PL", u("LiPO-λ"), u("DPO_PL"), delta=DELTA, requires=["G1"],
            paper=paper_main, extra={"kl_per_seed": kl},
        ))  # fmt: skip
    adv = {k: [np.subtract(a, b) for a, b in zip(u("LiPO-λ", k), u("DPO all pairs", k))] for k in list_sizes}
    claims.append(compare(
        "H3", "LiPO-λ's advantage over DPO on all pairs grows with list size",
        f"per prompt: (LiPO-λ - DPO all pairs) at K={K} - the same at K={min(list_sizes)}", adv[K],
        adv[min(list_sizes)], delta=DELTA, requires=["G1"], asserted=not smoke,
        paper="LiPO-λ gains more, and monotonically, from larger lists than DPO_BT and DPO_PL (Fig. 1)",
        extra={f"advantage K={k}": [float(np.mean(a)) for a in adv[k]] for k in list_sizes},
    ))  # fmt: skip
    if not smoke:
        claims.append(compare(
            "S1", f"DPO on all pairs reaches a higher oracle score than DPO on best-vs-worst (K={K})",
            "oracle score: DPO all pairs - DPO best-vs-worst", u("DPO all pairs"), u("DPO best-vs-worst"),
            delta=DELTA, kind="secondary",
            paper="using the whole ranked list beats reducing it to one pair (every method gains from K > 2, Fig. 1)",
            extra={"kl_per_seed": kl},
        ))  # fmt: skip
else:
    claims.append(per_seed(
        "hf-heldout", "held-out implicit-reward accuracy after LiPO-λ (no oracle: not asserted)",
        "reward accuracy on held-out preferred pairs", [after["reward_acc"]], 0.5, delta=0.03, asserted=False,
    ))  # fmt: skip

display(claims_table(claims))

# %%
params = {
    k: globals()[k]
    for k in (
        "seed",
        "n_seeds",
        "smoke",
        "profile",
        "model_name",
        "quantize",
        "dataset",
        "beta",
        "lr",
        "lora_lr",
        "lora_r",
        "budget",
        "responses_per_step",
        "steps",
    )
}
extra = {"notebook": "02_lipo"}
if profile == "toy":
    params.update(
        base=asdict(base_cfg),
        world={"seed": world.seed, "n_train": world.n_train, "n_eval": world.n_eval, "demo_noise": world.demo_noise},
        list_sizes=list_sizes,
        scale="sum over pairs / (mean step-0 weight per list of the arm, K and seed); see extra.arms[].scale",
        claim_delta=DELTA,
    )
    extra["model"] = describe(base)
    extra["lists"] = stats.to_dict("records")
    extra["arms"] = final.drop(columns=[c for c in final.columns if c.startswith("flipped")]).to_dict("records")
path = write_result(
    out,
    "lipo",
    {
        "arxiv": "2402.01878",
        "title": "LiPO: Listwise Preference Optimization through Learning-to-Rank",
        "claim": "on ranked lists LiPO-λ beats DPO_BT and DPO_PL, and gains more from larger lists",
        "number": "see the paper's main results table and Fig. 1 (T5 policies, Reddit TL;DR and AnthropicHH)",
    },
    claims,
    params,
    figures,
    smoke=smoke,
    seeds=seeds,
    extra=extra,
)
print(f"wrote {path}")

# %% [markdown] tags=["findings"]
# ## What we found
#
# The claims as this run judged them, read back from `result.json` (no number here is typed by hand), with our note on
# each claim that did not reproduce. A note names the status it was written for and is withdrawn if a re-run changes
# that status.

# %% tags=["findings"]
from IPython.display import Markdown

from prefkit.repro import what_we_found

why = {  # claim id -> (the status a note was written for, why the claim came out that way in the toy setting)
    "H1": ("not reproduced", "LiPO-λ scored below DPO on all pairs on average, at every list size, while moving "
           "furthest from π_ref of the four arms (`kl_per_seed` in the claim's record; the arms table has all of "
           "them); the interval reaches 0, so the deficit is not established, but it excludes a gain of delta. Its "
           "λ weights are small and uneven across lists: once our scale constant equalises the average step, the "
           "lists with large label gaps near the top take steps several times larger than the rest. In this world "
           "a policy loses oracle score as it moves past a few nats of KL (see `01_dpo`'s frontier and "
           "over-optimisation run), so the larger step costs more than the better choice of pairs gains. The "
           "previous run of the same code, in an earlier environment (another machine, transformers 5.24), "
           "trained a different SFT base and had the deficit's interval below 0. The comparison is at equal "
           "hyper-parameters, as in the paper; we did not run the comparison at equal KL (a larger β for LiPO-λ) "
           "that would separate a worse use of the lists from a larger step."),
    "H2": ("reversed", "the same as H1, more so: DPO_PL had the lowest KL of the four arms at K = 8 and the highest "
           "score. Its Plackett-Luce terms spread the list's weight over every rank, where λ concentrates it on a "
           "few pairs."),
    "H3": ("not reproduced", "LiPO-λ's gap to DPO on all pairs was about the same at K = 2 and at K = 8, and the "
           "interval excludes a growth of delta. With a fixed budget of responses a larger K means fewer prompts "
           "(the paper keeps the prompts and adds responses), so in our design a larger list is a trade, and "
           "neither λ loss nor DPO on all pairs gained from larger lists here."),
    "S1": ("inconclusive", "DPO on all pairs scored above best-vs-worst at K = 8, but the interval spans both 0 and "
           "delta: three seeds of one sample per prompt cannot tell a difference of this size from noise."),
}  # fmt: skip
display(Markdown(what_we_found(path, why if profile == "toy" and not smoke else {})))

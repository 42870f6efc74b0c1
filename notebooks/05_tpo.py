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
# # TPO: two methods, one name
#
# Two 2024 papers are both called TPO. They share nothing but the acronym, so this notebook covers them in two
# separate parts.
#
# **Part A: Tree Preference Optimization.** Liao, Chu, Wang (2024). *TPO: Aligning Large Language Models with
# Multi-branch & Multi-step Preference Trees.* ICLR 2025, [arXiv:2410.12854](https://arxiv.org/abs/2410.12854).
# Multi-step answers are sampled as a *tree*: each step is continued by several sampled next steps, so the leaves
# share prefixes. DPO on the best and worst leaf throws most of the tree away; Tree-PO ranks all leaves with a
# listwise learning-to-rank loss (LiPO-λ, Liu et al. 2024) and adds an *Adaptive Step Reward* (ASR): each step's
# log-ratio is reweighted by how similar that step is to the same step of the best leaf, so the steps the leaves
# share stop dominating the reward of the steps where they differ.
#
# **Part B: Triple Preference Optimization.** Saeidi, Verma, RRV, Baral (2024). *Triple Preference Optimization:
# Achieving Better Alignment using a Single Step Optimization.* [arXiv:2405.16681](https://arxiv.org/abs/2405.16681).
# One step from a base model instead of SFT then DPO: on triples (gold, chosen, rejected), a reference-free
# preference term on chosen vs rejected plus a behavioural-cloning (NLL) term on the gold response. The NLL term
# alone is supervised fine-tuning on the gold responses, so the decisive baseline is SFT on the gold responses
# alone, at equal steps: if TPO does not beat it, the preference term is not what helps.
#
# **Where we run it.** `toy`: the string-operations world of `01_dpo` (multi-op prompts such as
# `reverse sort shift : c a b =`, each intermediate string written as a step, `|` between steps), whose oracle grades
# every step, so step rewards, leaf rankings and exact-match accuracy are exact. `hf`: Part B on your model (4-bit +
# LoRA) and your triples (`prompt`, `gold`, `chosen`, `rejected`); Part A needs step rewards for sampled steps, which
# an arbitrary dataset does not have, so it runs in the toy profile only. No claim is asserted in the `hf` profile.

# %% [markdown]
# ## Claims tested here
#
# | id | kind | claim | source |
# |---|---|---|---|
# | A0 | headline | Tree-PO (ASR weights rescaled to mean 1, our scale control) raises exact match on held-out 3-op prompts above the SFT base it starts from | Liao et al., Tab. 1-2 |
# | A1 | headline | Tree-PO (ASR at mean 1) beats DPO on the best-vs-worst leaf: higher exact match | Liao et al., Tab. 1-2 (TPO > DPO on math reasoning) |
# | A2 | headline | ASR helps at matched scale: λ loss + ASR (at mean 1) beats the λ loss alone | Liao et al., ablation of ASR |
# | A1r, A2r | secondary | A1 and A2 with the raw ASR weights w ∈ [0, 2] (implicit rewards about twice the scale of the other arms') | as A1, A2; shows what the scale does |
# | A3 | secondary | the listwise λ loss beats DPO on all pairs of leaves (same data, same pair-loss form) | Liu et al. (LiPO), used by Liao et al. |
# | A0r, A0l, A0p, A0b | secondary | raw Tree-PO, λ only, DPO on all pairs and DPO best vs worst each raise exact match above the SFT base | as A0, for every other arm: every A-comparison can be read against the base |
# | S1 | gate | Triple-PO trains: its loss falls below 0.9 x its step-0 value | mechanism (asserted in smoke mode too) |
# | S2 | gate | at β = `tpo_beta_high` the preference term acts: the chosen-minus-rejected log-prob margin on the clean training batches exceeds that at β = `tpo_beta` by more than 1 nat | mechanism, for B3b |
# | B1 | headline | Triple-PO beats SFT then DPO at equal total steps (oracle score of samples; SFT then DPO has 150 SFT steps to Triple-PO's 300 NLL steps, see B4-B5) | Saeidi et al., Tab. 1 (TPO > SFT+DPO) |
# | B2 | headline | Triple-PO beats SFT on the gold responses alone at equal steps | the baseline that isolates the preference term |
# | B3 | secondary | under 40% flipped preference labels, Triple-PO (β = `tpo_beta`) loses less score than SFT then DPO | ours: Triple-PO's gold term never sees the flipped labels |
# | B3b | secondary | B3 at β = `tpo_beta_high`, where the preference term acts (S2) | ours: B3 at `tpo_beta` may hold only because its preference term is inert |
# | B4 | secondary | the DPO stage of SFT then DPO raises the score above the SFT(150) model it starts from (SFT on gold for half of `tpo_steps`) | the two-stage recipe B1 compares with |
# | B5 | secondary | SFT on gold for all 300 steps beats SFT(150) | ours: the size of B1's step confound |
#
# A seed draws the trees or triples, the label flips, the batch order and the evaluation samples; the toy bases are
# shared across seeds. Every comparison is paired per evaluation prompt (the same held-out prompts under both arms)
# and judged with an interval over seeds and prompts and a minimum effect fixed before the run (see "Claims: paper vs
# ours" below). Gates check a mechanism; a claim that names a failed gate is *not testable*.

# %% tags=["parameters"]
seed = 0  # first seed; seeds are seed, seed + 1, ...
n_seeds = 3  # seeds per claim
smoke = False  # True: a < 90 s run on 2 CPU cores that checks the pipeline and the claims meaningful at that size
profile = "toy"  # "toy" (offline world with an oracle) or "hf" (a Hugging Face causal LM, 4-bit + LoRA)
model_name = ""  # hf profile: model id or local folder
quantize = "4bit"  # hf profile: "4bit" or "none"
dataset = ""  # hf profile: .json/.jsonl (or hub id) with prompt/gold/chosen/rejected columns
device = "auto"  # "auto", "cpu" or "cuda"
out_dir = "../reproductions/tpo"  # where figures and result.json go
branching = 2  # Part A: sampled continuations per tree node; 3-op prompts give branching**3 leaves
tree_beta = 0.1  # Part A: β of every arm (the DPO value used in 01_dpo)
tree_lr = 1e-4  # Part A: AdamW learning rate (full fine-tuning of the toy SFT model, as in 01_dpo)
tree_steps = 150  # Part A: training steps per arm
lists_per_step = 8  # Part A: trees (lists of leaves) per step
tpo_beta = 0.01  # Part B: Triple-PO β (Saeidi et al.'s README and run script; TRL's default)
tpo_alpha = 1.0  # Part B: weight α of the gold NLL (same sources)
tpo_beta_high = 0.1  # Part B: a second Triple-PO β at which the preference term acts (B3b; official config's β)
tpol_beta = 2.0  # Part B: TPO-L β (official README's table for a base model)
tpol_gamma = 0.5  # Part B: TPO-L margin γ (TRL's default)
tpo_lr = 1e-3  # Part B: learning rate for every arm trained from the base (TPO, TPO-L, SFT)
dpo_beta = 0.1  # Part B: β of the DPO stage of SFT then DPO
dpo_lr = 1e-4  # Part B: learning rate of that DPO stage (as in 01_dpo)
tpo_steps = 300  # Part B: total training steps per arm (SFT then DPO: half and half)
triples_per_step = 16  # Part B: triples per step
lora_r = 16  # hf profile: LoRA rank
lora_lr = 1e-4  # hf profile: learning rate for the LoRA adapters

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
import copy
import inspect
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from IPython.display import display

from prefkit import plot
from prefkit.evaluate import oracle_eval
from prefkit.losses import all_pairs_dpo_loss, best_worst_dpo_loss, dpo_loss, tree_po_loss, triple_po_loss
from prefkit.losses.listwise import adaptive_step_weights
from prefkit.models import resolve_device
from prefkit.repro import claims_table, compare, gate, per_seed, seed_everything, write_result
from prefkit.train import StepBatches, TrainConfig, preference_objective, sft_objective, train

from prefkit.repro import torch_threads

torch.set_num_threads(torch_threads())
dev = resolve_device(device)
if smoke:  # a quick pass over every cell: fewer seeds, steps, prompts and arms (see the claims section)
    n_seeds, tree_steps, tpo_steps = 1, min(tree_steps, 20), min(tpo_steps, 20)
seeds = list(range(seed, seed + n_seeds))
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
seed_everything(seed)
figures = []
print(f"profile={profile} smoke={smoke} device={dev} seeds={seeds}")

# %% [markdown]
# # Part A: Tree Preference Optimization
#
# ## The loss
#
# Leaf k of a tree is a response y_k = (step 1, ..., step S) with score ψ_k. Its implicit reward sums its steps'
# log-ratios, each weighted by the Adaptive Step Reward:
#
# $$s_k = \beta \sum_{t} w_{k,t} \log \frac{\pi(y_k^{(t)} \mid x, y_k^{(<t)})}{\pi_\text{ref}(y_k^{(t)} \mid x, y_k^{(<t)})},
# \qquad w_{k,t} = 1 + \cos\big(\bar h_{k,t}, \bar h_{\text{best},t}\big)$$
#
# where $\bar h_{k,t}$ is the last layer's hidden state averaged over the tokens of step t. The leaves are ranked
# with the LiPO-λ loss, each preferred pair weighted by how much swapping it would change the list's DCG:
#
# $$\mathcal{L} = -\sum_{\psi_i > \psi_j} \Delta_{ij} \log \sigma(s_i - s_j), \qquad
# \Delta_{ij} = |G_i - G_j| \left|\frac{1}{D(\tau_i)} - \frac{1}{D(\tau_j)}\right|, \quad G = 2^\psi - 1,\;
# D(\tau) = \log(1 + \tau)$$
#
# with τ the rank of each leaf under the current rewards s. Without ASR (w = 1) s is the ordinary sequence
# log-ratio and this is LiPO-λ on the leaves. We normalise each tree's loss by Σ Δ_ij (a weighted mean over pairs;
# `normalize=True`), and do the same for DPO on all pairs, so that every arm's loss is a mean of pairwise DPO terms
# and one learning rate serves all of them.
#
# **Where this differs from the official code** (github.com/MrBlankness/TPO): we implement the paper's loss. The
# repository has two training paths and both depart from it: (1) both wrap the ranking loss as
# $-\log\sigma(\beta \mathcal{L})$; since $\mathcal{L}$ is itself a loss (positive, smaller is better),
# minimising that *raises* $\mathcal{L}$; (2) the standalone script gathers token log-probs without the one-token
# shift (and reads every token's log-prob from the distribution at position 0); (3) its dataset code appends each
# response to the same token list in place, so every later response carries all earlier ones in its context
# (aliased prefixes); (4) neither path has the gain 2^ψ - 1 or the 1/log(1+τ) discount: the script uses plain
# RankNet over all ordered pairs, the TRL-style trainer uses list positions as labels and indexes the scores in the
# wrong order; (5) in the trainer the step weights are written into a boolean mask, so ASR is in effect off. Our ASR
# weight 1 + cos(·) is the form of the script (we could not check the paper's equation itself); we detach it (it
# reweights, it is not a training signal) and, unlike the script, sum the weighted step log-ratios instead of
# averaging per-token means. β = `tree_beta` for every arm.
#
# **The scale control (ours).** Because we sum, and w = 1 + cos is close to 2 wherever a step resembles the best
# leaf's (and exactly 2 on the best leaf itself), the raw ASR rewards are about twice the plain log-ratio: at the same
# β, raw Tree-PO takes larger steps than λ only and the DPO arms, as if its β were doubled. So that A1 and A2 compare
# methods rather than step sizes, the headline Tree-PO arm divides each response's weights by their mean over its
# steps (`tree_po_mean1_loss` below, a wrapper in this notebook around the prefkit functions; prefkit's
# `tree_po_loss` is unchanged): the rewards keep the scale of the sequence log-ratio and only ASR's relative
# weighting of the steps remains. The raw arm is kept (A1r, A2r), and every arm's KL to the SFT base is recorded.

# %%
print(inspect.getsource(adaptive_step_weights))
print(inspect.getsource(tree_po_loss))


def tree_po_mean1_loss(policy_step_logps, ref_step_logps, scores, step_hidden, step_mask, beta, normalize=False):
    """Tree-PO with each response's ASR weights rescaled to mean 1 over its steps (the scale control)."""
    w = adaptive_step_weights(step_hidden, step_mask, scores)  # (B, K, S), in [0, 2]
    w = w * step_mask.sum(-1, keepdim=True) / w.sum(-1, keepdim=True).clamp(min=1e-6)  # mean 1 per response
    weighted = ref_step_logps + w * (policy_step_logps - ref_step_logps)  # so that log π/π_ref becomes w log π/π_ref
    return tree_po_loss(weighted, ref_step_logps, scores, beta=beta, normalize=normalize, asr=False)


# %% [markdown]
# ## Data: preference trees from the SFT policy
#
# The SFT base is trained from scratch on noisy demonstrations (as in `01_dpo`; cached on disk). For each 3-op
# training prompt, each seed grows a tree: `branching` sampled first steps, each continued by `branching` sampled
# second steps, and so on (sampling stops at `|` or at the end of the response). Step rewards are the oracle's
# per-step scores; a leaf's score is the oracle score of the whole response. Trees with fewer leaves (a response
# that ended early) are counted and left out, so every list has the same length. DPO baselines see the same
# leaves: best vs worst, or all pairs.

# %%
from prefkit.generate import greedy, sample
from prefkit.models import TinyLlamaConfig
from prefkit.toy import ToyBaseConfig, describe, run_arm, sample_trees, sft_base, step_accuracy, tree_rows
from prefkit.worlds import StringWorld


def evaluate(w, model, prompts, s, reference=None, ref_samples=None):
    """Means and per-prompt values (the units of the claims): oracle score of one sample per prompt (with KL and the
    reference's sample score when given a reference) and exact match of the greedy answer, per step and overall."""
    ev = oracle_eval(w.score, model, w.tokenizer, prompts, reference, ref_samples, seed=10_000 + s)
    answers = greedy(model, w.tokenizer, prompts)
    per_prompt = {**ev["per_prompt"], "exact_match": [float(w.score(p, y) == 1.0) for p, y in zip(prompts, answers)]}
    return {k: ev[k] for k in ("score", "kl") if k in ev} | step_accuracy(w, prompts, answers), per_prompt


if profile == "toy":
    world = StringWorld(seed=0, n_train=400 if smoke else 2000, n_eval=64 if smoke else 512)
    tok = world.tokenizer
    base_cfg = ToyBaseConfig(steps=150 if smoke else 800, model=TinyLlamaConfig())
    base = sft_base(world, base_cfg).to(dev)
    tree_prompts = world.prompts_with_ops(3, "train")[: 64 if smoke else None]
    test3 = world.fresh_prompts(64 if smoke else 512, n_ops=3)  # held-out 3-op prompts for exact match
    trees, lists, short = {}, {}, {}
    for s in seeds:
        trees[s], short[s] = sample_trees(world, base, tree_prompts, branching=(branching,) * 3, seed=s)
        lists[s] = tree_rows(world, [t for t in trees[s] if len(t.paths()) == branching**3], tok)
    print(describe(base), {s: (len(lists[s]), short[s]) for s in seeds})
    print(trees[seeds[0]][0].render())
    base_eval, base_units = evaluate(world, base, test3, seeds[0])  # greedy exact match: the same for every seed
    base_samples = {s: [ys[0] for ys in sample(base, tok, test3, seed=10_000 + s)] for s in seeds}  # win rate, KL
    display(pd.DataFrame([base_eval], index=["SFT base"]))

# %% [markdown]
# ## Training: five arms on the same leaves
#
# Each arm fine-tunes a fresh copy of the SFT base for `tree_steps` steps of `lists_per_step` trees; π_ref is the SFT
# base. Evaluation on held-out 3-op prompts: greedy answers scored step by step (exact match per step and of the whole
# answer, kept per prompt for the claims), the mean oracle score of sampled answers, and KL(π || π_ref) to the SFT
# base on those samples (how far the arm moved: the step size that A1r and A2r do not control). Smoke mode runs two
# arms.

# %%
tree_arms = {
    "Tree-PO (ASR at mean 1)": (tree_po_mean1_loss, dict(normalize=True)),
    "Tree-PO (raw ASR)": (tree_po_loss, dict(asr=True, normalize=True)),
    "λ only (LiPO-λ)": (tree_po_loss, dict(asr=False, normalize=True)),
    "DPO all pairs": (all_pairs_dpo_loss, dict(normalize=True)),
    "DPO best vs worst": (best_worst_dpo_loss, {}),
}
if smoke:
    tree_arms = {k: tree_arms[k] for k in ("Tree-PO (ASR at mean 1)", "DPO best vs worst")}
tree_final, units = [], {}  # units[(arm, seed)]: per-prompt values of the final evaluation
if profile == "toy":
    for s in seeds:
        for name, (loss, hp) in tree_arms.items():
            # DPO arms score whole responses: no step spans
            rows = (
                lists[s]
                if loss in (tree_po_loss, tree_po_mean1_loss)
                else [{k: v for k, v in r.items() if k != "step_spans"} for r in lists[s]]
            )
            cfg = TrainConfig(steps=tree_steps, lr=tree_lr, seed=s, desc=f"{name} s{s}")
            policy, ref, hist = run_arm(base, tok, rows, loss, cfg, batch_size=lists_per_step, beta=tree_beta, **hp)
            res, units[(name, s)] = evaluate(world, policy, test3, s, ref, base_samples[s])
            tree_final.append(
                {"arm": name, "seed": s, **res, "pair_acc": hist.steps["rewards/pair_accuracy"].iloc[-10:].mean()}
            )
    tree_final = pd.DataFrame(tree_final)
    display(tree_final.groupby("arm", sort=False).agg(["mean", "std"]).drop(columns="seed").round(3))

# %% [markdown]
# ### Per-step accuracy (A0-A3)
#
# Exact match of each step of the greedy answer on held-out 3-op prompts, mean ± std over seeds; the dashed line is
# the SFT base (every A-claim can be read against it: A0, A0r, A0l, A0p, A0b). An error in step 1 usually carries
# into steps 2 and 3 (each step transforms the previous string).

# %%
if profile == "toy":
    cols = ["step_1", "step_2", "step_3", "exact_match"]
    fig, (ax,) = plot.figure(width=6.4, height=3.6)
    width = 0.8 / len(tree_arms)
    for i, name in enumerate(tree_arms):
        g = tree_final[tree_final.arm == name][cols]
        xs = [c + (i - (len(tree_arms) - 1) / 2) * width for c in range(len(cols))]
        ax.bar(xs, g.mean(), width, yerr=g.std() if len(g) > 1 else None, capsize=2, label=f"{name} (n={len(g)})")
    for c, col in enumerate(cols):
        ax.hlines(base_eval[col], c - 0.4, c + 0.4, colors="gray", linestyles="--")
    ax.set_xticks(range(len(cols)), ["step 1", "step 2", "step 3", "whole answer"])
    ax.set(ylabel="exact match (greedy, held-out 3-op prompts)", title="Tree-PO vs DPO on the same trees")
    ax.legend(fontsize=7)
    figures.append(plot.save(fig, out, "tree_step_accuracy.png"))

# %% [markdown]
# # Part B: Triple Preference Optimization
#
# ## The loss
#
# $$\mathcal{L}_\text{TPO} = -\log \sigma\big(\beta \log \pi(y_w \mid x) - \beta \log \pi(y_l \mid x)\big)
# + \alpha \, \mathrm{NLL}(y_\text{gold} \mid x)$$
#
# with the NLL per token of the gold response; no reference model. TPO-L averages the log-probs over tokens and
# asks for a margin γ: $-\log\sigma\big(\tfrac{\beta}{|y_w|}\log\pi(y_w|x) - \tfrac{\beta}{|y_l|}\log\pi(y_l|x) -
# \gamma\big) + \alpha\,\mathrm{NLL}$.
#
# **Hyper-parameters.** The sources disagree: the official config class has β = 0.1, α = 0.05; the official README
# and run script (Llama-3 base) use β = 0.01, α = 1; TRL's `TPOTrainer` defaults to β = 0.01, α = 1, γ = 0.5; the
# README's table lists TPO-L with β = 2 and γ from 0.3 to 10. We use β = `tpo_beta`, α = `tpo_alpha` for TPO and
# β = `tpol_beta`, γ = `tpol_gamma` for TPO-L. With β = 0.01 and summed log-probs of a few tens of nats the
# preference term stays near ln 2 and its gradient is small next to the NLL term's, which is exactly why SFT on the
# gold alone is the baseline to beat.
#
# **A second β, where the preference term acts.** On a summed log-prob, the preference term's gradient is
# β σ(-β m) ≤ β/2 (m the chosen-minus-rejected margin) and the per-token NLL's is α/|y_gold|, about 1/12 for our
# answers of about 12 tokens. At β = 0.01 the preference term weighs about 1/16 of the NLL term, so a claim about
# how Triple-PO handles preference labels (B3) may hold only because it hardly uses them. We also train Triple-PO
# at β = `tpo_beta_high` = 0.1, the official config class's β and the β of our DPO stage, chosen by this argument
# before any run: there the two gradients are of the same order. Gate S2 checks that the preference term does act
# there, and B3b repeats B3 at that β (clean and 40% flipped labels only).

# %%
print(inspect.getsource(triple_po_loss))

# %% [markdown]
# ## Data and the base model
#
# The paper starts from a *base* model (no instruction tuning). Our base has learned each operation alone (1-op
# prompts, noisy demonstrations) but has never seen a multi-step answer; all Part B arms train it on 2- and 3-op
# prompts. Triples come from the Part A SFT model (standing in for the models that wrote UltraFeedback's
# responses): four samples per prompt, ranked by the oracle; best = gold, second = chosen, worst = rejected, and a
# fraction `flip` of the chosen/rejected labels is swapped (annotator noise; gold is untouched).

# %%
from prefkit.toy import flip_labels, sample_triples

flips = [0.0, 0.4] if smoke else [0.0, 0.2, 0.4]
if profile == "toy":
    world1 = StringWorld(seed=0, min_ops=1, max_ops=1, n_train=400 if smoke else 2000, n_eval=16)
    base1 = sft_base(world1, ToyBaseConfig(steps=60 if smoke else 400, model=TinyLlamaConfig())).to(dev)
    world23 = StringWorld(seed=0, min_ops=2, max_ops=3, n_train=400 if smoke else 2000, n_eval=64 if smoke else 512)
    triples, dropped = {}, {}
    for s in seeds:  # one set of triples per seed; the noise levels differ only in which labels are flipped
        clean, dropped[s] = sample_triples(world23, base, world23.train_prompts, seed=s)
        for f in flips:
            triples[(s, f)] = flip_labels(clean, f, seed=s)
    base1_eval, _ = evaluate(world23, base1, world23.eval_prompts, seeds[0])
    print({s: (len(triples[(s, 0.0)]), dropped[s]) for s in seeds})
    display(pd.DataFrame(triples[(seeds[0], 0.0)][:3]))
    display(pd.DataFrame([base1_eval], index=["1-op base on 2-3-op prompts"]))
else:
    from prefkit.data import PreferenceDataError, load_pairwise, split_held_out
    from prefkit.models import LoraSpec, load_lm

    base1, tok = load_lm(model_name, quantize=quantize, lora=LoraSpec(r=lora_r), device=device)
    rows = load_pairwise(dataset, limit=200 if smoke else None)
    for i, r in enumerate(rows):  # load_pairwise checks a gold response when there is one; Triple-PO needs it
        if "gold" not in r:
            raise PreferenceDataError(i, "gold", "is missing (Triple-PO needs a gold response per row)")
    train_rows, held_out = split_held_out(rows)
    triples = {(seeds[0], 0.0): train_rows}
    print(f"{len(train_rows)} training triples, {len(held_out)} held out")

# %% [markdown]
# ## Training: Triple-PO, TPO-L, SFT on gold, SFT then DPO
#
# Every arm starts from the same base and takes `tpo_steps` steps of `triples_per_step` examples. SFT on gold sees
# only the gold responses (so label flips cannot touch it: it is trained once per seed). SFT then DPO spends half the
# steps on SFT on gold and half on DPO on chosen vs rejected, with the SFT model as π_ref; its SFT half is trained
# once per seed and is itself an arm, SFT(150) (B4, B5: Triple-PO's NLL term gets all 300 steps, the two-stage
# recipe's SFT only 150). Triple-PO at β = `tpo_beta_high` runs on clean and 40%-flipped labels, TPO-L without
# label noise only; smoke mode evaluates none of these three.


# %%
def fit(model, loss_fn, rows, kind, steps, lr, s, desc):
    cfg = TrainConfig(steps=steps, lr=lr, warmup_steps=min(20, steps // 5), seed=s, desc=desc)
    return train(model, loss_fn, StepBatches(rows, tok, triples_per_step, seed=s, kind=kind), cfg)


hi_flip = max(flips)
SFT_HALF = f"SFT({tpo_steps // 2})"  # SFT on gold for half the steps: the first stage of SFT then DPO
triple_final, tpo_hist, bunits = [], {}, {}  # bunits[(arm, flip, seed)]: per-prompt values
tpo_hp = {
    "Triple-PO": dict(beta=tpo_beta, alpha=tpo_alpha),
    f"Triple-PO β={tpo_beta_high}": dict(beta=tpo_beta_high, alpha=tpo_alpha),
    "TPO-L": dict(beta=tpol_beta, alpha=tpo_alpha, gamma=tpol_gamma, length_normalize=True),
}
if profile == "toy":
    for s in seeds:
        gold_rows = [{"prompt": r["prompt"], "response": r["gold"]} for r in triples[(s, 0.0)]]
        sft_half = copy.deepcopy(base1)
        fit(sft_half, sft_objective(), gold_rows, "sft", tpo_steps // 2, tpo_lr, s, f"SFT half s{s}")
        arms = [("SFT on gold", 0.0)] + [(a, f) for f in flips for a in ("Triple-PO", "SFT then DPO")]
        if not smoke:
            arms += [(SFT_HALF, 0.0)] + [(f"Triple-PO β={tpo_beta_high}", f) for f in (0.0, hi_flip)] + [("TPO-L", 0.0)]
        for name, f in arms:
            m = sft_half if name == SFT_HALF else copy.deepcopy(base1)
            if name == "SFT on gold":
                fit(m, sft_objective(), gold_rows, "sft", tpo_steps, tpo_lr, s, f"SFT s{s}")
            elif name in tpo_hp:
                objective = preference_objective(triple_po_loss, **tpo_hp[name])
                h = fit(m, objective, triples[(s, f)], "pairwise", tpo_steps, tpo_lr, s, f"{name} {f} s{s}")
                tpo_hist[(name, f, s)] = h.steps
            elif name == "SFT then DPO":  # DPO from the SFT half (run_arm trains a copy; π_ref = the SFT half)
                cfg = TrainConfig(steps=tpo_steps - tpo_steps // 2, lr=dpo_lr, seed=s, desc=f"DPO {f} s{s}")
                pairs = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in triples[(s, f)]]
                m, _, _ = run_arm(sft_half, tok, pairs, dpo_loss, cfg, batch_size=triples_per_step, beta=dpo_beta)
            res, bunits[(name, f, s)] = evaluate(world23, m, world23.eval_prompts, s)
            triple_final.append({"arm": name, "flip": f, "seed": s, **res})
    triple_final = pd.DataFrame(triple_final)
    display(triple_final.groupby(["arm", "flip"], sort=False).agg(["mean", "std"]).drop(columns="seed").round(3))

# %% [markdown]
# ### Score vs label noise (B1-B5)
#
# Mean oracle score of sampled answers on held-out 2-3-op prompts, mean ± std over seeds, against the fraction of
# flipped chosen/rejected labels. SFT on gold and SFT(150) never see those labels (flat lines); the dashed line is the
# 1-op base. Right: the training loss of both Triple-PO arms on the first seed.

# %%
if profile == "toy":
    fig, axes = plot.figure(ncols=2, width=4.6, height=3.4)
    for name, g in triple_final.groupby("arm", sort=False):
        m = g.groupby("flip")["score"].agg(["mean", "std"])
        if name.startswith("SFT") and "DPO" not in name:
            m = pd.DataFrame({"mean": m["mean"].iloc[0], "std": m["std"].iloc[0]}, index=flips)
        axes[0].errorbar(m.index, m["mean"], yerr=m["std"], marker="o", capsize=2, label=f"{name} (n={len(seeds)})")
    axes[0].axhline(base1_eval["score"], color="gray", ls="--", label="1-op base")
    axes[0].set(xlabel="fraction of flipped labels", ylabel="oracle score of samples", title="Triple-PO vs baselines")
    axes[0].legend(fontsize=7)
    for (name, f, s), h in tpo_hist.items():
        if name.startswith("Triple-PO") and s == seeds[0]:
            axes[1].plot(h["step"], h["loss"], label=f"{name}, flip {f:.0%}")
    axes[1].set(xlabel="step", ylabel="Triple-PO loss", title=f"training loss (seed {seeds[0]})")
    axes[1].legend(fontsize=7)
    figures.append(plot.save(fig, out, "triple_noise.png"))

# %% [markdown]
# ## `hf` profile: Triple-PO on your model and triples
#
# No oracle: the run is judged on held-out triples before and after training: how often the policy's log-probs rank
# chosen above rejected, and the gold responses' per-token NLL, and by reading samples. No claim is asserted.

# %%
if profile == "hf":
    from prefkit.evaluate import response_logps
    from prefkit.generate import sample_table

    def heldout_report(model):
        lp = {k: response_logps(model, tok, [r["prompt"] for r in held_out], [r[k] for r in held_out])
              for k in ("chosen", "rejected", "gold")}  # fmt: skip
        acc = float((lp["chosen"][0] > lp["rejected"][0]).mean())
        return {"pref_accuracy": acc, "gold_nll": float(-lp["gold"][0].sum() / lp["gold"][1].sum())}

    before = heldout_report(base1)
    steps_hf = min(tpo_steps, 10) if smoke else tpo_steps
    hp = dict(beta=tpo_beta, alpha=tpo_alpha)
    h = fit(
        base1,
        preference_objective(triple_po_loss, **hp),
        triples[(seeds[0], 0.0)],
        "pairwise",
        steps_hf,
        lora_lr,
        seeds[0],
        "Triple-PO (hf)",
    )
    after = heldout_report(base1)
    display(pd.DataFrame({"before": before, "after": after}))
    fig = plot.training_curves(
        h.steps, {"loss": "Triple-PO loss"}, f"{model_name}: Triple-PO β={tpo_beta}, α={tpo_alpha}"
    )
    figures.append(plot.save(fig, out, "hf_training.png"))
    display(sample_table(base1, tok, [r["prompt"] for r in held_out[:3]], seed=seeds[0]))

# %% [markdown]
# ## Claims: paper vs ours
#
# Fixed before the full run. Every comparison is paired per held-out prompt and judged with `prefkit.claims`
# (hierarchical bootstrap over seeds, then prompts): *reproduced* needs the 95% interval of the difference above 0 and
# an estimate of at least the minimum effect delta; *not reproduced* means the interval lies below delta.
#
# - **Part A, delta = 0.03 exact match** (3 points: 15 of the 512 held-out 3-op prompts per seed). Exact match of the
#   greedy answer is 0 or 1 per prompt, so arms differ in whole prompts; the standard error of a paired difference is
#   at most √(d / n) for a share d of prompts on which the two arms disagree, about 1.5 points over 3 x 512 prompts
#   even if they disagree on a third of them, so 3 points is outside one evaluation's noise. It is also the smallest
#   change in the share of fully solved 3-op problems that would make a reader prefer one method to another. The SFT
#   base's greedy answers are deterministic, so the A0 claims pair each arm's answers with the same base answers on
#   every seed (the base is shared across seeds, as are the trees' prompts).
# - **Part B, delta = 0.02 oracle score** (one sample per prompt, partial credit in [0, 1], as in `04_delta`). On a
#   2-3-op prompt a step carries a quarter to two thirds of the credit, so 0.02 is about one more correct step on one
#   prompt in 20, and the standard error of a paired difference of one sample per prompt is at most
#   0.5 √2 / √(3 x 512) ≈ 0.018. B3 and B3b compare the *drop* in score from clean to 40% flipped labels (per prompt,
#   clean minus noisy), in the same units and with the same delta; each of their units combines four samples, so
#   their noise is about twice that of a single comparison and they are the likeliest to come out *inconclusive*.
# - **Gates.** S1 (Triple-PO trains): each of the last 5 steps' loss over the step-0 loss, interval below 0.9. S2 (the
#   preference term acts at β = `tpo_beta_high`): on the same clean training batches (same seed, same rows, so the
#   same batch at every step), the chosen-minus-rejected log-prob margin of the β = `tpo_beta_high` arm minus that of
#   the β = `tpo_beta` arm over the last 20 steps, interval above 1 nat (the preference term's own push changes the
#   odds of chosen over rejected by at least a factor e). B1-B3 require S1, B3b requires S2.
#
# **Every Part A claim can be read against the SFT base.** A0 (headline, the scale-controlled Tree-PO arm) and A0r,
# A0l, A0p, A0b (secondary, the other arms) compare each arm with the SFT base, and each A1-A3 claim's record keeps
# both arms' gaps to the base and their KL to it (`extra`), so a comparison between two arms that both fall below the
# base is visible as such.
#
# **Deviations from a clean comparison, stated here.** The toy bases are shared across seeds. A1r and A2r compare at
# unequal reward scale (raw ASR). SFT then DPO gets half of Triple-PO's supervised steps (B1); B4 and B5 measure what
# that costs it. In smoke mode (20 steps on briefly trained bases, two of the five Part A arms, no SFT(150), no
# Triple-PO at `tpo_beta_high`, no TPO-L) only the gate S1 is asserted; the comparisons it can make are recorded as
# *not asserted*.

# %%
claims = []
DELTA_EM, DELTA_SCORE = 0.03, 0.02  # exact match (Part A), oracle score (Part B): see above
if profile == "toy":
    a0_ids = {"Tree-PO (ASR at mean 1)": "A0", "Tree-PO (raw ASR)": "A0r", "λ only (LiPO-λ)": "A0l",
              "DPO all pairs": "A0p", "DPO best vs worst": "A0b"}  # fmt: skip
    ASR1, ASR, LAM, ALL, BW = a0_ids  # the five Part A arms
    em = lambda a: [units[(a, s)]["exact_match"] for s in seeds]  # noqa: E731
    arm_kl = lambda a: [float(np.mean(units[(a, s)]["log_ratio"])) for s in seeds]  # noqa: E731
    base_em = [base_units["exact_match"]] * len(seeds)  # greedy answers: the same on every seed

    def gap_kl(*arms):  # each arm's exact-match gap to the SFT base and KL to it, per seed (claims' extra)
        gap = {a: [float(np.mean(u) - np.mean(base_em[0])) for u in em(a)] for a in arms}
        return {a: {"gap_to_sft_base": gap[a], "kl_to_sft_base": arm_kl(a)} for a in arms}

    for a, cid in a0_ids.items():
        if a in tree_arms:
            claims.append(compare(
                cid, f"{a} raises exact match above the SFT base it starts from", f"exact match: {a} - SFT base",
                em(a), base_em, delta=DELTA_EM, kind="headline" if a == ASR1 else "secondary", asserted=not smoke,
                paper="Tab. 1-2: TPO improves over the SFT model it starts from", extra=gap_kl(a),
            ))  # fmt: skip
    for cid, a, b, kind, paper in [
        ("A1", ASR1, BW, "headline", "Tab. 1-2: TPO > DPO (math reasoning)"),
        ("A2", ASR1, LAM, "headline", "ablation: ASR improves TPO"),
        ("A1r", ASR, BW, "secondary", "Tab. 1-2: TPO > DPO (math reasoning)"),
        ("A2r", ASR, LAM, "secondary", "ablation: ASR improves TPO"),
        ("A3", LAM, ALL, "secondary", "LiPO: listwise > pairwise"),
    ]:
        if a in tree_arms and b in tree_arms:
            claims.append(compare(
                cid, f"{a} beats {b} on exact match (each against the SFT base: {a0_ids[a]}, {a0_ids[b]})",
                f"exact match: {a} - {b}", em(a), em(b), delta=DELTA_EM, kind=kind, asserted=not smoke, paper=paper,
                extra=gap_kl(a, b),
            ))  # fmt: skip
    TPO_HI = f"Triple-PO β={tpo_beta_high}"
    sc = lambda a, f=0.0: [bunits[(a, f, s)]["score"] for s in seeds]  # noqa: E731
    drop = lambda a: [np.subtract(x, y) for x, y in zip(sc(a), sc(a, hi_flip))]  # clean - noisy  # noqa: E731
    curve = lambda a, s: tpo_hist[(a, 0.0, s)]["loss"]  # noqa: E731
    claims.append(gate(
        "S1", "Triple-PO trains: its loss falls", "loss of each of the last 5 steps / step-0 loss (clean labels)",
        [curve("Triple-PO", s).iloc[-5:].to_numpy() / curve("Triple-PO", s).iloc[0] for s in seeds], 0.9,
        direction="less", paper="mechanism",
    ))  # fmt: skip
    if not smoke:
        margin = lambda a, s: tpo_hist[(a, 0.0, s)]["logps/chosen"] - tpo_hist[(a, 0.0, s)]["logps/rejected"]  # noqa: E731
        claims.append(gate(
            "S2", f"at β = {tpo_beta_high} Triple-PO's preference term acts", f"log π(chosen) - log π(rejected) "
            f"on the clean training batches, β = {tpo_beta_high} minus β = {tpo_beta} (nats, last 20 steps)",
            [(margin(TPO_HI, s) - margin("Triple-PO", s)).iloc[-20:].to_numpy() for s in seeds], 1.0,
            paper="mechanism (for B3b)",
        ))  # fmt: skip
    b = dict(delta=DELTA_SCORE, requires=["S1"], asserted=not smoke)
    claims.append(compare(
        "B1", f"Triple-PO beats SFT then DPO at equal total steps, no label noise (SFT then DPO has {tpo_steps // 2} "
        f"SFT steps to Triple-PO's {tpo_steps} NLL steps: B4, B5)", "oracle score: Triple-PO - (SFT → DPO)",
        sc("Triple-PO"), sc("SFT then DPO"), **b, paper="Tab. 1: TPO above SFT+DPO on MT-Bench / Open LLM leaderboard",
    ))  # fmt: skip
    claims.append(compare(
        "B2", "Triple-PO beats SFT on the gold responses alone at equal steps", "oracle score: Triple-PO - SFT(gold)",
        sc("Triple-PO"), sc("SFT on gold"), **b,
        paper="(the paper's comparisons include SFT; the NLL term alone is SFT on gold)",
    ))  # fmt: skip
    drops = lambda *arms: {f"drop {a}": [float(np.mean(d)) for d in drop(a)] for a in arms}  # noqa: E731
    claims.append(compare(
        "B3", f"with {hi_flip:.0%} flipped labels Triple-PO (β = {tpo_beta}) loses less score than SFT then DPO",
        "score drop clean → noisy: (SFT → DPO) - Triple-PO", drop("SFT then DPO"), drop("Triple-PO"),
        kind="secondary", **b, paper="—", extra=drops("SFT then DPO", "Triple-PO"),
    ))  # fmt: skip
    if not smoke:
        claims.append(compare(
            "B3b", f"with {hi_flip:.0%} flipped labels Triple-PO at β = {tpo_beta_high} (its preference term acts) "
            "loses less score than SFT then DPO", f"score drop clean → noisy: (SFT → DPO) - {TPO_HI}",
            drop("SFT then DPO"), drop(TPO_HI), delta=DELTA_SCORE, kind="secondary", requires=["S2"], paper="—",
            extra=drops("SFT then DPO", TPO_HI),
        ))  # fmt: skip
        claims.append(compare(
            "B4", f"the DPO stage raises the score above the {SFT_HALF} model it starts from",
            f"oracle score: (SFT → DPO) - {SFT_HALF}", sc("SFT then DPO"), sc(SFT_HALF), delta=DELTA_SCORE,
            kind="secondary", paper="the two-stage recipe Triple-PO replaces (DPO after SFT helps)",
        ))  # fmt: skip
        claims.append(compare(
            "B5", f"SFT on gold for {tpo_steps} steps beats {SFT_HALF} (the size of B1's step confound)",
            f"oracle score: SFT({tpo_steps}) - {SFT_HALF}", sc("SFT on gold"), sc(SFT_HALF), delta=DELTA_SCORE,
            kind="secondary", paper="—",
        ))  # fmt: skip
else:
    claims.append(per_seed(
        "hf-heldout", "held-out preference accuracy after Triple-PO (no oracle: not asserted)", "pref accuracy",
        [after["pref_accuracy"]], 0.5, delta=0.03, asserted=False,
    ))  # fmt: skip

display(claims_table(claims))

# %%
names = ["seed", "n_seeds", "smoke", "profile", "model_name", "quantize", "dataset", "branching", "tree_beta",
         "tree_lr", "tree_steps", "lists_per_step", "tpo_beta", "tpo_alpha", "tpo_beta_high", "tpol_beta",
         "tpol_gamma", "tpo_lr", "dpo_beta", "dpo_lr", "tpo_steps", "triples_per_step", "lora_r", "lora_lr"]  # fmt: skip
params = {k: globals()[k] for k in names}
params.update(claim_delta_exact_match=DELTA_EM, claim_delta_score=DELTA_SCORE)
extra = {"notebook": "05_tpo"}
if profile == "toy":
    params.update(base=asdict(base_cfg), flips=flips, world={"seed": world.seed, "demo_noise": world.demo_noise})
    extra.update(model=describe(base), trees={s: [len(lists[s]), short[s]] for s in seeds},
                 triples={s: [len(triples[(s, 0.0)]), dropped[s]] for s in seeds},
                 tree_arms=tree_final.to_dict("records"), triple_arms=triple_final.to_dict("records"),
                 sft_base_3op=base_eval, base_1op=base1_eval)  # fmt: skip
path = write_result(
    out,
    "tpo",
    {
        "arxiv": "2410.12854 (Tree PO); 2405.16681 (Triple PO)",
        "title": "TPO: Tree Preference Optimization (Liao et al.) and Triple Preference Optimization (Saeidi et al.)",
        "claim": "Tree-PO (listwise λ loss + ASR) beats DPO on multi-step reasoning; Triple-PO in one step beats SFT+DPO",
        "number": "see Liao et al. Tab. 1-2 and Saeidi et al. Tab. 1 (7-8B models; not comparable to toy scale)",
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

A0_NOTE = (
    "on average every Part A arm but one ends below the SFT base on exact match (A0, A0l-A0b); the exception, raw "
    "ASR, ends level with it (A0r). The arms move far from the base (`kl_to_sft_base` in the A1-A3 records), and a "
    "3-op answer is exactly right only if every step is, so drift in how steps are written costs exact match; the "
    "arm that moved least (raw ASR, the largest effective β) lost least. We have not isolated which changes break "
    "the answers."
)
why = {  # claim id -> (the status a note was written for, why the claim came out that way in the toy setting)
    "A0": ("reversed", A0_NOTE),
    "A0r": ("not reproduced", A0_NOTE),
    "A0l": ("reversed", A0_NOTE),
    "A0p": ("reversed", A0_NOTE),
    "A0b": ("reversed", A0_NOTE),
    "A1": ("reversed", "at equal reward scale Tree-PO moved further from the base than DPO on the best-vs-worst leaf "
           "and lost more exact match; both end below the base (A0, A0b). The raw-ASR arm does beat DPO (A1r), but "
           "its weights 1 + cos lie in [0, 2], near 2 wherever a step resembles the best leaf's, so summing them "
           "raises the effective β up to twofold: that arm moved about half as far from the base and lost less. "
           "Rescaled to mean 1, the advantage is gone; what A1r measured was the step size, not the tree."),
    "A2": ("not reproduced", "with the ASR weights rescaled to mean 1, Tree-PO and the λ loss alone end within noise "
           "of each other: the ablation's gain (A2r) is the doubled reward scale, as in A1."),
    "A3": ("reversed", "DPO on all pairs of leaves moved less far from the base than the λ loss and lost less exact "
           "match; like every Part A arm at mean-1 scale it ends below the base (A0p, A0l)."),
    "B1": ("reproduced", "the comparison is as the paper sets it (equal total steps), but SFT on gold for 300 steps "
           "(the SFT budget Triple-PO's NLL term gets) scored at Triple-PO's level (B2), and B5 shows that 300 steps "
           "of SFT beat 150 by more than Triple-PO beats SFT then DPO, although the DPO stage does add to its SFT "
           "start (B4). So B1's gain is accounted for by Triple-PO's extra supervised steps."),
    "B2": ("not reproduced", "Triple-PO ended no higher than SFT on gold for the same steps: at β = 0.01 the "
           "preference term is nearly inert, and Triple-PO is mostly its NLL term, which is SFT on gold."),
    "B3": ("reproduced", "Triple-PO kept its score under 40% flipped labels while SFT then DPO lost some, but at "
           "β = 0.01 Triple-PO barely reads the labels (B2), so flipping them has little to act on. The variant "
           "whose preference term acts (β = 0.1, B3b) is the fair test of robustness, and its gate failed."),
    "B3b": ("not testable", "gate S2 failed: at β = 0.1 the preference term widened the chosen-over-rejected margin by "
            "less than the 1 nat the gate asks, so this run cannot say that the label-noise comparison exercises "
            "the preference term. It did change the outcome: at β = 0.1 Triple-PO scored below its β = 0.01 run even on "
            "clean labels (the figure), so the gate's threshold on the margin may be the wrong measure of \"acts\"; "
            "we leave it as fixed before the run."),
}  # fmt: skip
display(Markdown(what_we_found(path, why if profile == "toy" and not smoke else {})))

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
# | id | claim | source |
# |---|---|---|
# | A0 | Tree-PO raises exact match on held-out 3-op prompts above the SFT model it starts from | Liao et al., Tab. 1-2 |
# | A1 | Tree-PO (λ loss + ASR) beats DPO on the best-vs-worst leaf: higher exact match on held-out 3-op prompts | Liao et al., Tab. 1-2 (TPO > DPO on math reasoning) |
# | A2 | ASR helps: λ loss + ASR beats the λ loss alone on exact match | Liao et al., ablation of ASR |
# | A3 | the listwise λ loss beats DPO on all pairs of leaves (same data, same pair-loss form) | Liao et al. / Liu et al. (LiPO) |
# | B1 | Triple-PO beats SFT then DPO at equal steps (oracle score of samples) | Saeidi et al., Tab. 1 (TPO > SFT+DPO) |
# | B2 | Triple-PO beats SFT on the gold responses alone at equal steps | the baseline that isolates the preference term |
# | B3 | under 40% flipped preference labels, Triple-PO loses less score than SFT then DPO | ours: Triple-PO's gold term never sees the flipped labels |
# | S1 | Triple-PO trains: its loss falls below 0.9 x its step-0 value | sanity (asserted in smoke mode too) |
#
# Every claim is measured over `n_seeds` seeds (a seed draws the trees or triples, the label flips, the batch order
# and the evaluation samples; the toy bases are shared) and its rule is applied to each seed separately.

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
tpol_beta = 2.0  # Part B: TPO-L β (official README's table for a base model)
tpol_gamma = 0.5  # Part B: TPO-L margin γ (TRL's default)
tpo_lr = 1e-3  # Part B: learning rate for every arm trained from the base (TPO, TPO-L, SFT)
dpo_beta = 0.1  # Part B: β of the DPO stage of SFT then DPO
dpo_lr = 1e-4  # Part B: learning rate of that DPO stage (as in 01_dpo)
tpo_steps = 300  # Part B: total training steps per arm (SFT then DPO: half and half)
triples_per_step = 16  # Part B: triples per step
lora_r = 16  # hf profile: LoRA rank
lora_lr = 1e-4  # hf profile: learning rate for the LoRA adapters

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("prefkit") is None:  # Colab or a bare kernel: install prefkit from its repository
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/prefkit/prefkit"])

# %%
import copy
import inspect
import os
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
from IPython.display import display

from prefkit import plot
from prefkit.losses import all_pairs_dpo_loss, best_worst_dpo_loss, dpo_loss, tree_po_loss, triple_po_loss
from prefkit.losses.listwise import adaptive_step_weights
from prefkit.models import resolve_device
from prefkit.repro import claims_table, make_claim, seed_everything, write_result
from prefkit.train import StepBatches, TrainConfig, preference_objective, sft_objective, train

from prefkit.repro import torch_threads

torch.set_num_threads(torch_threads())
dev = resolve_device(device)
if smoke:  # a quick pass over every cell: fewer seeds, steps and prompts (see the claims section)
    n_seeds, tree_steps, tpo_steps = (1 if profile == "hf" else 2), min(tree_steps, 20), min(tpo_steps, 20)
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

# %%
print(inspect.getsource(adaptive_step_weights))
print(inspect.getsource(tree_po_loss))

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
from prefkit.generate import greedy
from prefkit.models import TinyLlamaConfig
from prefkit.toy import ToyBaseConfig, describe, oracle_summary, run_arm, sample_trees, sft_base, tree_rows
from prefkit.worlds import StringWorld

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
    base_eval = oracle_summary(world, base, test3, seed=seeds[0])
    display(pd.DataFrame([base_eval], index=["SFT base"]))

# %% [markdown]
# ## Training: four arms on the same leaves
#
# Each arm fine-tunes a fresh copy of the SFT base for `tree_steps` steps of `lists_per_step` trees; π_ref is the SFT
# base and its log-probs (per step, for Tree-PO) are computed once. Evaluation: greedy answers to held-out 3-op
# prompts, scored step by step (exact match per step and of the whole answer), and the mean oracle score of sampled
# answers.

# %%
tree_arms = {
    "Tree-PO (λ + ASR)": (tree_po_loss, dict(asr=True, normalize=True)),
    "λ only (LiPO-λ)": (tree_po_loss, dict(asr=False, normalize=True)),
    "DPO all pairs": (all_pairs_dpo_loss, dict(normalize=True)),
    "DPO best vs worst": (best_worst_dpo_loss, {}),
}
if smoke:
    tree_arms = {k: tree_arms[k] for k in ("Tree-PO (λ + ASR)", "DPO best vs worst")}
tree_final = []
if profile == "toy":
    for s in seeds:
        for name, (loss, hp) in tree_arms.items():
            # DPO arms score whole responses: no step spans
            rows = (
                lists[s]
                if loss is tree_po_loss
                else [{k: v for k, v in r.items() if k != "step_spans"} for r in lists[s]]
            )
            cfg = TrainConfig(steps=tree_steps, lr=tree_lr, seed=s, desc=f"{name} s{s}")
            policy, _, hist = run_arm(base, tok, rows, loss, cfg, batch_size=lists_per_step, beta=tree_beta, **hp)
            res = oracle_summary(world, policy, test3, seed=10_000 + s)
            tree_final.append(
                {"arm": name, "seed": s, **res, "pair_acc": hist.steps["rewards/pair_accuracy"].iloc[-10:].mean()}
            )
    tree_final = pd.DataFrame(tree_final)
    display(tree_final.groupby("arm", sort=False).agg(["mean", "std"]).drop(columns="seed"))

# %% [markdown]
# ### Per-step accuracy (A1-A3)
#
# Exact match of each step of the greedy answer on held-out 3-op prompts, mean ± std over seeds; the dashed line is
# the SFT base. An error in step 1 usually carries into steps 2 and 3 (each step transforms the previous string).

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
    base1_eval = oracle_summary(world23, base1, world23.eval_prompts, seed=seeds[0])
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
# steps on SFT on gold and half on DPO on chosen vs rejected, with the SFT model as π_ref. TPO-L runs without label
# noise only.


# %%
def fit(model, loss_fn, rows, kind, steps, lr, s, desc):
    cfg = TrainConfig(steps=steps, lr=lr, warmup_steps=min(20, steps // 5), seed=s, desc=desc)
    return train(model, loss_fn, StepBatches(rows, tok, triples_per_step, seed=s, kind=kind), cfg)


triple_final, tpo_hist = [], {}
if profile == "toy":
    for s in seeds:
        gold_rows = [{"prompt": r["prompt"], "response": r["gold"]} for r in triples[(s, 0.0)]]
        arms = [("SFT on gold", 0.0)] + [(a, f) for f in flips for a in ("Triple-PO", "SFT then DPO")]
        arms += [] if smoke else [("TPO-L", 0.0)]
        for name, f in arms:
            m = copy.deepcopy(base1)
            if name == "SFT on gold":
                fit(m, sft_objective(), gold_rows, "sft", tpo_steps, tpo_lr, s, f"SFT s{s}")
            elif name in ("Triple-PO", "TPO-L"):
                hp = (
                    dict(beta=tpo_beta, alpha=tpo_alpha)
                    if name == "Triple-PO"
                    else dict(beta=tpol_beta, alpha=tpo_alpha, gamma=tpol_gamma, length_normalize=True)
                )
                h = fit(
                    m,
                    preference_objective(triple_po_loss, **hp),
                    triples[(s, f)],
                    "pairwise",
                    tpo_steps,
                    tpo_lr,
                    s,
                    f"{name} {f} s{s}",
                )
                tpo_hist[(name, f, s)] = h.steps
            else:
                fit(m, sft_objective(), gold_rows, "sft", tpo_steps // 2, tpo_lr, s, f"SFT half s{s}")
                cfg = TrainConfig(steps=tpo_steps - tpo_steps // 2, lr=dpo_lr, seed=s, desc=f"DPO {f} s{s}")
                pairs = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in triples[(s, f)]]
                m, _, _ = run_arm(m, tok, pairs, dpo_loss, cfg, batch_size=triples_per_step, beta=dpo_beta)
            res = oracle_summary(world23, m, world23.eval_prompts, seed=10_000 + s)
            triple_final.append({"arm": name, "flip": f, "seed": s, **res})
    triple_final = pd.DataFrame(triple_final)
    display(triple_final.groupby(["arm", "flip"], sort=False).agg(["mean", "std"]).drop(columns="seed"))

# %% [markdown]
# ### Score vs label noise (B1-B3)
#
# Mean oracle score of sampled answers on held-out 2-3-op prompts, mean ± std over seeds, against the fraction of
# flipped chosen/rejected labels. SFT on gold never sees those labels (flat line); the dashed line is the 1-op base.

# %%
if profile == "toy":
    fig, axes = plot.figure(ncols=2, width=4.6, height=3.4)
    for name, g in triple_final.groupby("arm", sort=False):
        m = g.groupby("flip")["score"].agg(["mean", "std"])
        if name == "SFT on gold":
            m = pd.DataFrame({"mean": m["mean"].iloc[0], "std": m["std"].iloc[0]}, index=flips)
        axes[0].errorbar(m.index, m["mean"], yerr=m["std"], marker="o", capsize=2, label=f"{name} (n={len(seeds)})")
    axes[0].axhline(base1_eval["score"], color="gray", ls="--", label="1-op base")
    axes[0].set(xlabel="fraction of flipped labels", ylabel="oracle score of samples", title="Triple-PO vs baselines")
    axes[0].legend(fontsize=7)
    for (name, f, s), h in tpo_hist.items():
        if name == "Triple-PO" and s == seeds[0]:
            axes[1].plot(h["step"], h["loss"], label=f"flip {f:.0%}")
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
# Each rule is applied to every seed. The ledger records how many seeds passed (*old rule: k/n seeds*); a sign that
# holds on every seed is not evidence, and these claims are to be restated with intervals and minimum effects
# (`prefkit.claims`). The rules were fixed before the runs: "beats" means a higher seed-level value, with no margin. In
# smoke mode (20 steps on briefly trained bases, half the arms) only S1 is asserted; the comparisons are recorded as
# *not asserted*.

# %%
claims = []


def arm(df, name, col, **where):
    g = df[df.arm == name]
    for k, v in where.items():
        g = g[g[k] == v]
    return g.set_index("seed").loc[seeds, col]


if profile == "toy":
    asr = "Tree-PO (λ + ASR)"
    em = lambda name: arm(tree_final, name, "exact_match")  # noqa: E731
    tree_claims = [
        ("A1", f"{asr} beats DPO best vs worst on exact match", asr, "DPO best vs worst", "Tab. 1-2: TPO > DPO"),
        ("A2", "ASR helps: λ + ASR beats λ alone on exact match", asr, "λ only (LiPO-λ)", "ablation: ASR improves TPO"),
        (
            "A3",
            "the λ loss beats DPO on all pairs on exact match",
            "λ only (LiPO-λ)",
            "DPO all pairs",
            "listwise > pairwise",
        ),
    ]
    claims.append(
        make_claim(
            "A0",
            f"{asr} raises exact match above its SFT base",
            f"exact match: {asr} - SFT base",
            em(asr) - base_eval["exact_match"],
            lambda v: v > 0,
            "> 0 per seed",
            asserted=not smoke,
            paper="Tab. 1-2: TPO improves over the SFT model it starts from",
            extra={"score_gain": (arm(tree_final, asr, "score") - base_eval["score"]).tolist()},
        )
    )
    for cid, text, a, b, paper in tree_claims:
        if a in tree_arms and b in tree_arms:
            claims.append(
                make_claim(
                    cid,
                    text,
                    f"exact match: {a} - {b}",
                    em(a) - em(b),
                    lambda v: v > 0,
                    "> 0 per seed",
                    asserted=not smoke,
                    paper=paper,
                    extra={"a": em(a).tolist(), "b": em(b).tolist()},
                )
            )
    sc = lambda name, f=0.0: arm(triple_final, name, "score", flip=f)  # noqa: E731
    claims.append(
        make_claim(
            "B1",
            "Triple-PO beats SFT then DPO at equal steps (no label noise)",
            "score: TPO - (SFT→DPO)",
            sc("Triple-PO") - sc("SFT then DPO"),
            lambda v: v > 0,
            "> 0 per seed",
            asserted=not smoke,
            paper="Tab. 1: TPO above SFT+DPO on MT-Bench / Open LLM leaderboard",
        )
    )
    claims.append(
        make_claim(
            "B2",
            "Triple-PO beats SFT on the gold responses alone at equal steps",
            "score: TPO - SFT(gold)",
            sc("Triple-PO") - sc("SFT on gold"),
            lambda v: v > 0,
            "> 0 per seed",
            asserted=not smoke,
            paper="(the paper's comparisons include SFT; the NLL term alone is SFT on gold)",
        )
    )
    hi = max(flips)
    drop = lambda name: sc(name) - sc(name, hi)  # noqa: E731
    claims.append(
        make_claim(
            "B3",
            f"with {hi:.0%} flipped labels Triple-PO loses less score than SFT then DPO",
            "score drop (SFT→DPO) - score drop (TPO)",
            drop("SFT then DPO") - drop("Triple-PO"),
            lambda v: v > 0,
            "> 0 per seed",
            asserted=not smoke,
            paper="—",
            extra={"drop_tpo": drop("Triple-PO").tolist(), "drop_sft_dpo": drop("SFT then DPO").tolist()},
        )
    )
    ratio = [
        tpo_hist[("Triple-PO", 0.0, s)]["loss"].iloc[-5:].mean() / tpo_hist[("Triple-PO", 0.0, s)]["loss"].iloc[0]
        for s in seeds
    ]
    claims.append(
        make_claim(
            "S1",
            "Triple-PO trains: its loss falls",
            "mean loss of the last 5 steps / step-0 loss",
            ratio,
            lambda v: v < 0.9,
            "< 0.9 per seed",
            paper="sanity",
        )
    )
else:
    claims.append(
        make_claim(
            "hf-heldout",
            "held-out preference accuracy after Triple-PO (no oracle: not asserted)",
            "pref accuracy",
            [after["pref_accuracy"]],
            lambda v: v > 0.5,
            "> 0.5",
            asserted=False,
        )
    )

display(claims_table(claims))

# %%
names = ["seed", "n_seeds", "smoke", "profile", "model_name", "quantize", "dataset", "branching", "tree_beta",
         "tree_lr", "tree_steps", "lists_per_step", "tpo_beta", "tpo_alpha", "tpol_beta", "tpol_gamma", "tpo_lr",
         "dpo_beta", "dpo_lr", "tpo_steps", "triples_per_step", "lora_r", "lora_lr"]  # fmt: skip
params = {k: globals()[k] for k in names}
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

why = {}  # claim id -> (the status a note was written for, why the claim came out that way in the toy setting)
display(Markdown(what_we_found(path, why)))

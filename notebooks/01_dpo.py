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
# # DPO: Direct Preference Optimization
#
# Rafailov, Sharma, Mitchell, Ermon, Manning, Finn (2023). *Direct Preference Optimization: Your Language Model is
# Secretly a Reward Model.* NeurIPS 2023, [arXiv:2305.18290](https://arxiv.org/abs/2305.18290).
#
# **Idea.** RLHF fits a reward model to preferences, then maximises it with RL under a KL penalty to the SFT policy
# π_ref. The optimum of that KL-regularised objective is π*(y|x) ∝ π_ref(y|x) exp(r(x,y)/β), so the reward can be
# written through the policy, r = β log π/π_ref + const, and the Bradley-Terry likelihood of the preferences becomes
# a loss on the policy itself: no reward model, no sampling during training. IPO (Azar et al. 2023,
# [arXiv:2310.12036](https://arxiv.org/abs/2310.12036)) replaces the log-sigmoid with a squared loss that does not
# push the margin to infinity on deterministic preferences.
#
# We also test a later analysis: Chen et al. 2024, *Preference Learning Algorithms Do Not Learn Preference
# Rankings* ([arXiv:2405.19534](https://arxiv.org/abs/2405.19534)), who find ranking accuracy of DPO-trained models
# far below the *idealized* ranking accuracy of the exact DPO optimum.
#
# **Where we run it.** The default `toy` profile is offline: a string-operations world (reverse / sort / shift /
# dedupe letters a-h, writing each intermediate result) with an exact, graded oracle, a ~0.5M-parameter Llama trained
# from scratch on noisy demonstrations as the SFT policy, and simulated raters with P(y1 > y2) = σ((r1 - r2)/τ), so
# every preference label is noisy but its true probability is known. The `hf` profile runs the same training cells
# on any causal LM in 4-bit + LoRA; it has no oracle, so it reports held-out preference metrics and samples, and
# asserts no claims. It needs a GPU for anything beyond tiny models: for scale, DPO on a 0.5B model in NF4 + LoRA
# r16 with 8 pairs x 512 tokens peaks near 18 GiB with TRL; the `hf` cells here use at most 8 pairs per step.

# %% [markdown]
# ## Claims tested here
#
# | id | kind | claim | source |
# |---|---|---|---|
# | G1 | gate | DPO fits its training preferences: implicit-reward accuracy on the training pairs > 0.6 | DPO paper, Sec. 4 (what the loss optimises) |
# | H1 | headline | DPO (β = 0.1) raises the oracle score over the SFT reference | DPO paper, Fig. 2 and TL;DR win rates |
# | H2 | headline | DPO's reward-KL trade-off is near the optimal one: at its own KL, its score is not below the exact KL-regularised optimum's by more than 0.02 | DPO paper, Sec. 4-5 and Fig. 2 (DPO optimises the RLHF objective exactly; its frontier dominates) |
# | C2-gap | headline | after DPO on off-policy pairs (as in the paper), ranking accuracy on the training pairs stays below the idealized ranking accuracy | Chen et al., Tab. 1: 40-54% observed vs 97-99% idealized |
# | C2-gap-on | secondary | the same on on-policy pairs (π_ref's own samples) | ours: the setting of the other notebooks |
# | C2-flip, C2-flip-on | secondary | DPO rarely flips pairs the reference ranked wrong (fewer than 20% of them end up ranked right), off- and on-policy | Chen et al., Sec. 4 |
# | C3 | secondary | in an over-optimisation run (β = 0.01, twice the steps) the oracle score falls from the first third of the run to its end, while ranking accuracy does not | Chen et al., Sec. 5; reward over-optimisation |
# | G2 | gate | full fine-tuning with DPO (β = 0.1) raises the score over the reference (interval above 0): the gain C4 takes half of | needed by C4 |
# | C4 | secondary | QLoRA (4-bit base + LoRA, adapters-off reference) gains at least half of what full fine-tuning gains, both over their own reference | Dettmers et al. 2023: QLoRA matches 16-bit fine-tuning |
# | S-ipo | secondary | IPO (τ = 0.5) raises the oracle score over the SFT reference | IPO paper |
#
# A seed draws the preference data, the rater labels, the batch order and the evaluation samples; the SFT base is
# shared across seeds (training it is the longest step). Every comparison is paired: per held-out prompt for scores
# (two arms' samples for the same prompt), per training pair for ranking accuracies.

# %% tags=["parameters"]
seed = 0  # first seed; seeds are seed, seed + 1, ...
n_seeds = 3  # seeds per claim
smoke = False  # True: a < 90 s run on 2 CPU cores that checks the pipeline and the claims meaningful at that size
profile = "toy"  # "toy" (offline world with an oracle) or "hf" (a Hugging Face causal LM, 4-bit + LoRA)
model_name = ""  # hf profile: model id or local folder
quantize = "4bit"  # hf profile: "4bit" or "none"
dataset = ""  # hf profile: dataset id or local .json/.jsonl with prompt/chosen/rejected columns
device = "auto"  # "auto", "cpu" or "cuda"
out_dir = "../reproductions/dpo"  # where figures and result.json go
beta = 0.1  # DPO β (the paper's dialogue setting)
lr = 1e-4  # AdamW learning rate for full fine-tuning of the toy model
lora_lr = 1e-3  # learning rate for LoRA adapters (hf profile)
qlora_lr = 3e-4  # the toy QLoRA arm's learning rate: of 1e-4, 3e-4, 1e-3, the one whose final KL was nearest full
# fine-tuning's on a development seed (100, not reported): KL 0.2, 2.2, 6.9 nats vs 2.4 for full fine-tuning
lora_r = 16  # LoRA rank
steps = 150  # preference-training steps per arm
batch_size = 32  # pairs per step
n_frontier = 128  # reference samples per held-out prompt for the exact KL-regularised optimum (importance weights)

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
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from IPython.display import display

from prefkit import plot
from prefkit.evaluate import pair_logps, ranking_report
from prefkit.losses import dpo_loss, ipo_loss
from prefkit.models import LoraSpec, Reference, quantize_4bit, resolve_device
from prefkit.repro import claims_table, compare, gate, per_seed, seed_everything, write_result
from prefkit.train import TrainConfig

from prefkit.repro import torch_threads

torch.set_num_threads(torch_threads())
dev = resolve_device(device)
if smoke:  # a quick pass over every cell: fewer seeds, steps and prompts (see the claims section)
    n_seeds, steps, batch_size = 1, min(steps, 25), min(batch_size, 32)
    n_frontier = min(n_frontier, 16)
seeds = list(range(seed, seed + n_seeds))
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
seed_everything(seed)
print(f"profile={profile} smoke={smoke} device={dev} seeds={seeds}")

# %% [markdown]
# ## The loss
#
# With h = log π(y_w|x)/π_ref(y_w|x) - log π(y_l|x)/π_ref(y_l|x):
#
# $$\mathcal{L}_\text{DPO} = -\log \sigma(\beta h) \qquad\qquad \mathcal{L}_\text{IPO} = \Big(h - \frac{1}{2\tau}\Big)^2$$
#
# At step 0 the policy is its reference, h = 0 and the DPO loss is ln 2: the training loop checks this and stops if
# it is not so. prefkit's IPO averages each log-ratio over its response tokens (TRL's convention, confirmed by the
# IPO authors), so h is in nats per token there.

# %%
print(inspect.getsource(dpo_loss))
print(inspect.getsource(ipo_loss))

# %% [markdown]
# ## Data and the SFT policy
#
# `toy`: the SFT base is trained from scratch on noisy demonstrations (cached on disk, so a second run skips it).
# Each seed samples two responses per training prompt from it and asks a simulated rater which is better; pairs
# whose two samples are identical are dropped and counted. These pairs are *on-policy* (π_ref's own samples). Chen
# et al. study *off-policy* data, written by other models or people; for C2 each seed also builds an off-policy set:
# per training prompt a fresh noisy demonstration against the same demonstration with one more writer's slip in one
# of its steps, labelled by the same rater. `hf`: the model is loaded in 4-bit with fresh LoRA adapters, and the
# preference data is split into train and held-out rows.

# %%
from prefkit.data import load_pairwise, split_held_out
from prefkit.generate import sample, sample_table
from prefkit.models import TinyLlamaConfig, load_lm
from prefkit.toy import ToyBaseConfig, describe, OracleEval, run_arm, sample_pairs, sft_base
from prefkit.worlds import StringWorld
from prefkit.worlds.strings import split_steps


def off_policy_pairs(s):
    """A noisy demonstration of each training prompt against the same demonstration with one more slip in one of its
    steps, labelled by the rater: pairs that π_ref did not sample. Returns ``(rows, dropped)``."""
    rng = random.Random(50_000 + s)
    cands = []
    for p in world.train_prompts:
        a = world.demonstration(p, rng)
        steps_ = split_steps(a)
        k = rng.randrange(len(steps_))
        b = " | ".join(" ".join(world.corrupt(st, rng) if i == k else st) for i, st in enumerate(steps_))
        cands.append([a, b])
    return world.build_pairs(world.train_prompts, cands, rng)


if profile == "toy":
    world = StringWorld(seed=0, n_train=400 if smoke else 2000, n_eval=64 if smoke else 512)
    tok = world.tokenizer
    base_cfg = ToyBaseConfig(steps=150 if smoke else 800, model=TinyLlamaConfig())
    base = sft_base(world, base_cfg).to(dev)
    eval_prompts = world.eval_prompts
    pairs, dropped, off_pairs = {}, {}, {}
    for s in seeds:
        pairs[s], dropped[s] = sample_pairs(world, base, world.train_prompts, seed=s)
        off_pairs[s], _ = off_policy_pairs(s)
    ref_samples = {s: [r[0] for r in sample(base, tok, eval_prompts, seed=10_000 + s)] for s in seeds}
    print(describe(base), {s: (len(pairs[s]), dropped[s]) for s in seeds})
    example = pairs[seeds[0]][0]
    display(pd.DataFrame([{k: example[k] for k in ("prompt", "chosen", "rejected", "p_true")}]))
    display(pd.DataFrame([{k: off_pairs[seeds[0]][0][k] for k in ("prompt", "chosen", "rejected", "p_true")}]))
else:
    base, tok = load_lm(model_name, quantize=quantize, lora=LoraSpec(r=lora_r), device=device)
    rows = load_pairwise(dataset, limit=200 if smoke else None)
    train_rows, held_out = split_held_out(rows)
    pairs = {seeds[0]: train_rows}
    print(f"{len(train_rows)} training pairs, {len(held_out)} held out")

# %% [markdown]
# ## Training: DPO and IPO across β
#
# Every arm fine-tunes a fresh copy of the SFT base on the same pairs for the same number of steps; only the loss
# and its β (τ for IPO) change. The main DPO arm (β = `beta`) is evaluated along the way for the ranking figure;
# the others at the end. Evaluation samples one response per held-out prompt from the policy and compares its oracle
# score with a reference sample (win rate, ties count half), and estimates KL(π || π_ref) from the policy's samples.
# One more arm trains DPO at the main β on the off-policy pairs (C2; not in smoke mode). For the main arm and the
# off-policy arm, each of 256 training pairs is also checked one by one after training (ranked right by the policy,
# by the exact optimum, by the reference): the units of the C2 claims.

# %%
betas = [beta] if smoke else sorted({0.03, beta, 0.3})
taus = [0.5] if smoke else [0.5, 1.0]  # IPO's τ, on per-token averaged log-ratios
n_rank = 64 if smoke else 256  # training pairs used for ranking accuracies
eval_every = steps if smoke else max(1, steps // 3)  # smoke: evaluate at the start and the end only
arms = [("DPO", dpo_loss, b) for b in betas] + [("IPO", ipo_loss, t) for t in taus]
if not smoke:  # the main β on the off-policy pairs (C2, not asserted in smoke mode)
    arms.append(("DPO off-policy", dpo_loss, beta))
final, curves, units, rank_units = [], {}, {}, {}  # units[(method, β, seed)]: per-prompt values of the final eval


def keep_every_eval(ev, store):
    """An evaluator like ``ev`` that also keeps the per-prompt values of every evaluation, by step, in ``store``."""

    def bind(reference):
        fn = ev(reference)

        def eval_fn(policy, step):
            out = fn(policy, step)
            store[step] = ev.last_per_prompt
            return out

        return eval_fn

    return bind


def pair_units(policy, ref, rows, b):
    """Per training pair (0/1): the policy ranks it right (π(y_w) > π(y_l)), the exact optimum does (Chen et al.'s
    idealized ranking, Cor. 3.3), the reference does, and the implicit reward does."""
    lp = pair_logps(policy, ref, tok, rows)
    p_true = np.clip([r["p_true"] for r in rows], 1e-12, 1 - 1e-12)
    ideal = lp["rc"] - lp["rr"] + np.log(p_true / (1 - p_true)) / b > 0
    h = (lp["pc"] - lp["rc"]) - (lp["pr"] - lp["rr"])
    reward = np.where(h > 0, 1.0, np.where(h == 0, 0.5, 0.0))  # ties count half, as reward_acc
    return {"ranking": (lp["pc"] > lp["pr"]) * 1.0, "idealized": ideal * 1.0, "ref": (lp["rc"] > lp["rr"]) * 1.0,
            "reward": reward}  # fmt: skip


if profile == "toy":
    for s in seeds:
        for name, loss, b in arms:
            main = name == "DPO" and b == beta
            data = off_pairs[s] if name == "DPO off-policy" else pairs[s]
            cfg = TrainConfig(steps=steps, lr=lr, seed=s, eval_every=eval_every if main else 0, desc=f"{name} {b} s{s}")
            ev = OracleEval(world, eval_prompts, ref_samples[s], data[:n_rank], b, s)
            policy, ref, hist = run_arm(base, tok, data, loss, cfg, ev, batch_size=batch_size, beta=b)
            final.append({"method": name, "beta": b, "seed": s, **hist.evals.iloc[-1].to_dict()})
            units[(name, b, s)] = ev.last_per_prompt
            if name == "DPO off-policy" or main:
                rank_units[(name, s)] = pair_units(policy, ref, data[:n_rank], b)
            if main:
                curves[("full", s)] = hist.evals
            del policy, ref
    final = pd.DataFrame(final)
    display(
        final.groupby(["method", "beta"])[["score", "win_rate", "kl", "length", "ranking_acc"]].agg(["mean", "std"])
    )

# %% [markdown]
# ### The reward-KL frontier and the exact optimum (H1, H2)
#
# DPO's derivation says what it should reach. The raters prefer y1 with probability σ((r1 - r2)/τ), a Bradley-Terry
# model with reward r/τ (r the oracle score, τ = `world.rater_tau`), so the optimum of the KL-regularised objective
# that DPO optimises with its β is
#
# $$\pi^*_\beta(y|x) \propto \pi_\text{ref}(y|x)\, \exp\big(\eta\, r(x, y)\big), \qquad \eta = \frac{1}{\tau\beta}.$$
#
# The toy world knows r, so π* can be estimated without training anything: draw `n_frontier` samples of π_ref per
# held-out prompt and weigh them by exp(η r), normalised per prompt (self-normalised importance sampling). That gives
# π*'s expected score and its KL(π* || π_ref) = Σ w log(N w) for every η. Sweeping η traces the **optimal reward-KL
# frontier**: no policy gets a higher expected score at the same KL. (The weights live on N samples, so the estimate
# of the frontier is a lower bound that flattens as its KL nears log N; gaps measured against it are, if anything,
# too small.) Each trained arm is then compared with the optimum at *its own* KL: the η whose π* has the arm's mean
# KL on the same prompts.

# %%
figures = []
if profile == "toy":
    tau = world.rater_tau
    frontier_samples = sample(base, tok, eval_prompts, n=n_frontier, seed=30_000)  # one draw, shared by all seeds
    R = np.array([[world.score(p, y) for y in ys] for p, ys in zip(eval_prompts, frontier_samples)])  # (prompts, N)

    def optimum(eta):
        """π* ∝ π_ref exp(η r) on each prompt's reference samples: per-prompt expected score and KL(π* || π_ref)."""
        z = eta * R
        w = np.exp(z - z.max(1, keepdims=True))
        w /= w.sum(1, keepdims=True)
        kl = np.where(w > 0, w * np.log(np.clip(w * R.shape[1], 1e-300, None)), 0.0).sum(1)
        return (w * R).sum(1), kl

    def optimum_at_kl(kl):
        """The optimum whose mean KL equals ``kl`` (bisection on log η): per-prompt scores, η, and whether ``kl`` is
        beyond what the samples can represent (then the largest η is used: a lower bound on the optimum there)."""
        lo, hi = -3.0, 5.0  # log10 η
        if optimum(10**hi)[1].mean() <= kl:
            return optimum(10**hi)[0], 10**hi, True
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if optimum(10**mid)[1].mean() < kl else (lo, mid)
        return optimum(10**hi)[0], 10**hi, False

    etas = np.concatenate([[0.0], np.logspace(-1, 3.5, 46)])
    front = pd.DataFrame([{"eta": e, "score": optimum(e)[0].mean(), "kl": optimum(e)[1].mean()} for e in etas])
    opt_units, gaps = {}, []
    for (name, b, s), u in units.items():
        kl_arm = float(np.mean(u["log_ratio"]))
        opt, eta, beyond = optimum_at_kl(kl_arm)
        opt_units[(name, b, s)] = opt
        gaps.append({"method": name, "beta": b, "seed": s, "kl": kl_arm, "score": float(np.mean(u["score"])),
                     "optimum at this KL": float(opt.mean()), "gap": float(opt.mean() - np.mean(u["score"])),
                     "η matched": eta, "KL beyond the samples": beyond})  # fmt: skip
    gaps = pd.DataFrame(gaps)
    display(gaps.groupby(["method", "beta"])[["kl", "score", "optimum at this KL", "gap"]].mean().round(3))
    at_beta = {b: optimum(1 / (tau * b)) for b in betas}  # the optimum each DPO β aims at
    display(pd.DataFrame({f"π* for β={b}": {"score": o[0].mean(), "KL": o[1].mean()} for b, o in at_beta.items()}))

    fig, (ax,) = plot.figure(width=5.6, height=4.0)
    ax.plot(
        front["kl"], front["score"], color="black", lw=1.5, label=f"optimum π* (importance weights, N={n_frontier})"
    )
    for n, (name, g) in enumerate(final.groupby("method", sort=False)):
        m = g.groupby("beta")[["kl", "score"]].agg(["mean", "std"])
        ax.errorbar(m[("kl", "mean")], m[("score", "mean")], xerr=m[("kl", "std")], yerr=m[("score", "std")],
                    marker="o", capsize=2, ls="", color=plot.PALETTE[n], label=f"{name} (n={len(seeds)} seeds)")  # fmt: skip
        for b, row in m.iterrows():
            sym = "τ" if name == "IPO" else "β"
            ax.annotate(f"{sym}={b:g}", (row[("kl", "mean")], row[("score", "mean")]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
    for b, (sc, kl_) in at_beta.items():
        ax.scatter([kl_.mean()], [sc.mean()], marker="*", s=60, color="black", zorder=3)
        ax.annotate(f"π* β={b:g}", (kl_.mean(), sc.mean()), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax.axhline(final["ref_score"].mean(), color="gray", ls="--", label="SFT reference")
    ax.set(xlabel="KL(π || π_ref) [nats / response]", ylabel="oracle score of samples", title="Score vs KL")
    ax.legend(fontsize=7)
    figures.append(plot.save(fig, out, "frontier.png"))

# %% [markdown]
# ## Ranking accuracy vs idealized ranking accuracy (C2)
#
# Ranking accuracy: how often the policy's likelihood orders a training pair like its label,
# π(y_w|x) > π(y_l|x). The idealized ranking accuracy (Chen et al., Cor. 3.3) is that of the exact DPO optimum
# π* ∝ π_ref exp(r*/β), which ranks y_w first iff log π_ref(y_w|x) - log π_ref(y_l|x) + logit(P(y_w > y_l))/β > 0;
# the toy world knows the true P for every pair.

# %%
if profile == "toy":
    fig, axes = plot.figure(ncols=2, width=4.4)
    x = curves[("full", seeds[0])]["step"]
    for key, label in [
        ("ranking_acc", "ranking accuracy"),
        ("idealized_acc", "idealized ranking accuracy"),
        ("reward_acc", "implicit-reward accuracy"),
    ]:
        plot.mean_band(axes[0], x, [curves[("full", s)][key] for s in seeds], label)
    axes[0].set(xlabel="step", ylabel="accuracy on training pairs", title=f"DPO β={beta}", ylim=(0, 1.02))
    plot.mean_band(axes[1], x, [curves[("full", s)]["flipped_to_right"] for s in seeds], "ref wrong → now right")
    plot.mean_band(axes[1], x, [curves[("full", s)]["flipped_to_wrong"] for s in seeds], "ref right → now wrong")
    axes[1].set(xlabel="step", ylabel="fraction of pairs", title="Pairs whose ranking flipped", ylim=(0, 1.02))
    for a in axes:
        a.legend()
    figures.append(plot.save(fig, out, "ranking_accuracy.png"))

# %% [markdown]
# ## Over-optimisation: ranking accuracy and win rate come apart (C3)
#
# A small β and a long run let the policy drift far from π_ref. Ranking accuracy on the training pairs keeps
# measuring how well the preferences are fitted; the oracle win rate measures what the policy actually samples. C3
# compares two fixed points of the run, fixed before it: the evaluation nearest to the first third (step
# `over_steps / 3`) and the end. (Comparing the end with the best evaluation would pick the peak after seeing it.)

# %%
over_beta, over_steps = 0.01, 2 * steps
over_units = {}  # over_units[seed][step]: per-prompt values of every evaluation of the run
if profile == "toy":
    for s in seeds:
        cfg = TrainConfig(
            steps=over_steps, lr=lr, seed=s, eval_every=max(1, over_steps // (2 if smoke else 6)), desc=f"over-opt s{s}"
        )
        ev = OracleEval(world, eval_prompts, ref_samples[s], pairs[s][:n_rank], over_beta, s)
        over_units[s] = {}
        ev_all = keep_every_eval(ev, over_units[s])
        _, _, hist = run_arm(base, tok, pairs[s], dpo_loss, cfg, ev_all, batch_size=batch_size, beta=over_beta)
        curves[("over", s)] = hist.evals
    fig, axes = plot.figure(ncols=2, width=4.4)
    for s in seeds:
        e = curves[("over", s)]
        axes[0].plot(e["kl"], e["win_rate"], marker="o", ms=3, label=f"win rate, seed {s}")
        axes[0].plot(e["kl"], e["ranking_acc"], marker="s", ms=3, ls="--", label=f"ranking acc., seed {s}")
    axes[0].set(
        xlabel="KL(π || π_ref) [nats / response]", ylabel="rate", title=f"DPO β={over_beta}, {over_steps} steps"
    )
    x = curves[("over", seeds[0])]["step"]
    plot.mean_band(axes[1], x, [curves[("over", s)]["score"] for s in seeds], "oracle score")
    plot.mean_band(axes[1], x, [curves[("over", s)]["length"] / 40 for s in seeds], "mean length / 40 tokens")
    axes[1].set(xlabel="step", title="What the policy samples")
    for a in axes:
        a.legend(fontsize=6)
    figures.append(plot.save(fig, out, "overoptimisation.png"))

# %% [markdown]
# ## QLoRA vs full fine-tuning (C4)
#
# The same SFT base is saved, loaded back in 4-bit NF4 (double quantisation) with LoRA adapters on every linear
# layer, exactly as the `hf` profile loads a Hugging Face model; its reference is the same 4-bit base with the
# adapters disabled. LoRA trains far fewer parameters, so it gets its own learning rate, `qlora_lr`, chosen on a
# development seed to move the policy as far from its reference (in KL) as full fine-tuning does. At the hf
# profile's 1e-3 the toy QLoRA arm drifts more than twice as far as full fine-tuning and loses score (over-
# optimisation), which an earlier version of this notebook read as "QLoRA does not learn". Quantising a
# model this small costs it some score by itself, so each arm's gain is measured over *its own* reference: the full
# arm over the fp32 SFT model, the QLoRA arm over the 4-bit model before training (its step-0 evaluation). The
# implicit-reward accuracy on 256 training pairs is logged along the way, to see whether the arm fits its data.
# bitsandbytes' 4-bit layers are slow on CPU, so smoke mode runs this arm for the first seed only.

# %%
if profile == "toy":
    import tempfile

    qlora_seeds = seeds[:1] if smoke else seeds
    q_units = {}  # q_units[seed][step]: per-prompt values of every evaluation of the QLoRA arm
    for s in qlora_seeds:
        qbase = quantize_4bit(base, tempfile.mkdtemp(prefix="prefkit-q4-"), tok, lora=LoraSpec(r=lora_r), device=device)
        cfg = TrainConfig(steps=steps, lr=qlora_lr, seed=s, eval_every=eval_every, desc=f"QLoRA s{s}")
        ev = OracleEval(world, eval_prompts, ref_samples[s], pairs[s][:n_rank], beta, s)
        q_units[s] = {}
        _, _, hist = run_arm(qbase, tok, pairs[s], dpo_loss, cfg, keep_every_eval(ev, q_units[s]), "adapters_off",
                             batch_size, beta=beta)  # fmt: skip
        curves[("qlora", s)] = hist.evals
    display(pd.concat({f"{arm} s{s}": curves[(arm, s)].set_index("step")[["score", "kl", "reward_acc"]]
                       for s in qlora_seeds for arm in ("full", "qlora")}, axis=1).round(3))  # fmt: skip
    fig, axes = plot.figure(ncols=3, width=3.6)
    x = curves[("full", seeds[0])]["step"]
    for key, ax, label in [("score", axes[0], "oracle score of samples"), ("kl", axes[1], "KL(π || π_ref)"),
                           ("reward_acc", axes[2], "implicit-reward accuracy (train pairs)")]:  # fmt: skip
        plot.mean_band(ax, x, [curves[("full", s)][key] for s in qlora_seeds], "full fine-tuning (fp32)")
        plot.mean_band(ax, x, [curves[("qlora", s)][key] for s in qlora_seeds], f"QLoRA (NF4 + LoRA r{lora_r})")
        ax.set(xlabel="step", ylabel=label)
    axes[0].set_title(f"DPO β={beta}: QLoRA vs full")
    axes[0].legend(fontsize=7)
    figures.append(plot.save(fig, out, "qlora_vs_full.png"))

# %% [markdown]
# ## `hf` profile: one DPO run on your model
#
# No oracle here: the run is judged on held-out preference pairs (implicit-reward accuracy and margin, ranking
# accuracy) before and after training, and by reading samples. No claim is asserted in this profile.

# %%
if profile == "hf":
    ref = Reference(base, mode="adapters_off")
    before = ranking_report(base, ref, tok, held_out, beta)
    cfg = TrainConfig(steps=min(steps, 10) if smoke else steps, lr=lora_lr, seed=seeds[0], desc="DPO (hf)")
    _, _, hist = run_arm(base, tok, pairs[seeds[0]], dpo_loss, cfg, None, "adapters_off", min(batch_size, 8), beta=beta)
    after = ranking_report(base, ref, tok, held_out, beta)
    display(pd.DataFrame({"before": before, "after": after}))
    fig = plot.training_curves(
        hist.steps, {"loss": "DPO loss", "rewards/accuracy": "reward accuracy (batch)"}, f"{model_name}: DPO β={beta}"
    )
    figures.append(plot.save(fig, out, "hf_training.png"))
    display(sample_table(base, tok, [r["prompt"] for r in held_out[:3]], seed=seeds[0]))

# %% [markdown]
# ## Deviations from the paper
#
# | ours | the papers | why | expected effect |
# |---|---|---|---|
# | a 0.5M-parameter Llama trained from scratch on string operations | GPT-2 (IMDb), Pythia-2.8B (TL;DR, HH) | offline, minutes on a CPU, with an exact oracle | effect sizes are not comparable, only their direction |
# | a simulated Bradley-Terry rater with known P(y1 > y2) | human or GPT-4 preference labels | the idealized ranking accuracy and the exact optimum need the true preference probabilities | C2 and H2 can be computed exactly; label noise is exactly Bradley-Terry |
# | the exact KL-regularised optimum (importance weights over 128 reference samples) as the frontier | PPO and other baselines trained on the same objective | an RL baseline is a notebook of its own; the optimum is the bound every method aims at | a harder bar than the paper's: reaching the optimum, not beating PPO |
# | Chen et al.'s off-policy pairs are other models' or people's answers; ours are a noisy demonstration against itself with one extra slip | Anthropic HH, Stanford Human Preferences and others | pairs π_ref did not sample, with known P | both responses are close to π_ref's own style, so less off-policy than the paper's data |
# | QLoRA's r = 16 with α = 32 on every linear layer | r = 64 on every linear layer | the toy model's layers are 64-256 wide | a smaller adapter; closer to full fine-tuning relative to the model size |

# %% [markdown]
# ## Claims: paper vs ours
#
# Fixed before the full run. Every comparison is paired and judged with `prefkit.claims` (hierarchical bootstrap over
# seeds, then units). Deltas, chosen from the metrics:
# - **Oracle score: delta = 0.02** (H1, S-ipo, C3; margin 0.02 for H2). The oracle gives partial credit in [0, 1]
#   and the SFT model scores about 0.66; 0.02 is the smallest change in the quality of a sampled answer a reader would
#   act on (in `04_delta` it is a fifth of the distance between two rungs of a ladder of training lengths), and about
#   1.5 times the paired noise of one sample per prompt on 512 prompts.
# - **Ranking accuracy: delta = 0.05** (C2-gap, C2-flip; units are training pairs, 0 or 1). Chen et al.'s gaps are
#   40-60 points; a 5-point gap is the smallest that would still say that DPO does not rank its training pairs the way
#   its own optimum would. C2-flip compares the share of reference-wrong pairs ranked right after training with
#   Chen et al.'s "rarely" read as 20% (fixed in an earlier version of this notebook), needing the share at least 5
#   points below it.
# - **C4** is gain-relative: per prompt, the QLoRA arm's gain over its 4-bit reference minus half the full arm's gain
#   over the fp32 reference; "at least half" is a non-inferiority claim with a **margin of 0.01** (half the score
#   delta, as the claim is about half the gain). Gate G2 first requires the full arm's gain to be above 0 (interval
#   above 0); without a gain, half of it means nothing and C4 is *not testable*.
#
# The gates: G1 checks that DPO fits its own training pairs (implicit-reward accuracy on 256 of them, interval above
# 0.6); the claims about what the fitted policy does (H1, H2, C2, C3) need it. In smoke mode (25 steps on a briefly
# trained base, 64 evaluation prompts) only G1 is asserted.

# %%
claims = []
DELTA, RANK_DELTA = 0.02, 0.05  # oracle score; ranking accuracy (see above)
if profile == "toy":
    u = lambda name, b, key="score": [units[(name, b, s)][key] for s in seeds]  # noqa: E731
    ref_u = u("DPO", beta, "ref_score")  # the SFT model's own samples, the same for every arm of a seed
    main = final[(final.method == "DPO") & (final.beta == beta)].set_index("seed").loc[seeds]
    claims.append(gate(
        "G1", f"DPO (β={beta}) fits its training preferences", "implicit-reward accuracy on 256 training pairs",
        [rank_units[("DPO", s)]["reward"] for s in seeds], 0.6,
        paper="the DPO loss is the Bradley-Terry likelihood of the implicit reward β log π/π_ref",
    ))  # fmt: skip
    claims.append(compare(
        "H1", f"DPO (β={beta}) raises the oracle score over the SFT reference", "oracle score: DPO - SFT reference",
        u("DPO", beta), ref_u, delta=DELTA, requires=["G1"], asserted=not smoke,
        paper="TL;DR: ~61% win rate vs reference summaries (GPT-4 judge); IMDb: higher reward than PPO at every KL",
        extra={"win_rate": main["win_rate"].tolist(), "kl": main["kl"].tolist()},
    ))  # fmt: skip
    g = gaps.set_index(["method", "beta", "seed"])
    claims.append(compare(
        "H2", f"at its own KL, DPO (β={beta}) is within 0.02 of the exact KL-regularised optimum's score",
        "oracle score: DPO - optimum π* at the same KL", u("DPO", beta), [opt_units[("DPO", beta, s)] for s in seeds],
        margin=DELTA, requires=["G1"], asserted=not smoke,
        paper="DPO optimises the KL-regularised objective exactly; its reward-KL frontier dominates PPO's (Fig. 2)",
        extra={f"gap {m} {b:g}": g.loc[(m, b)]["gap"].round(4).tolist() for m, b in
               dict.fromkeys(zip(gaps["method"], gaps["beta"]))} | {"frontier_samples_per_prompt": n_frontier,
               "kl_beyond_samples": g.loc[("DPO", beta)]["KL beyond the samples"].tolist()},
    ))  # fmt: skip
    paper_chen = "40-54% observed vs 97-99% idealized ranking accuracy (7B models, off-policy preference datasets)"
    c2_sets = [("C2-gap", "DPO off-policy", "off-policy")] if not smoke else []
    for cid, name, what in c2_sets + [("C2-gap-on", "DPO", "on-policy")]:
        r_ = [rank_units[(name, s)] for s in seeds]
        claims.append(compare(
            cid, f"after DPO (β={beta}) on {what} pairs, ranking accuracy stays below the idealized ranking accuracy",
            "per training pair: idealized - observed ranking (0/1)", [r["idealized"] for r in r_],
            [r["ranking"] for r in r_], delta=RANK_DELTA, requires=["G1"], asserted=not smoke,
            kind="headline" if what == "off-policy" else "secondary", paper=paper_chen if what == "off-policy" else
            "Chen et al. study off-policy data; on-policy pairs are our addition",
            extra={"ranking_acc": [float(r["ranking"].mean()) for r in r_],
                   "idealized_acc": [float(r["idealized"].mean()) for r in r_],
                   "ref_ranking_acc": [float(r["ref"].mean()) for r in r_]},
        ))  # fmt: skip
        wrong = [r["ranking"][r["ref"] == 0] for r in r_]  # pairs the reference ranked wrong: now right?
        claims.append(compare(
            cid.replace("gap", "flip"), f"DPO rarely flips {what} pairs the reference ranked wrong",
            "share of reference-wrong pairs ranked right after DPO, minus 0.20", wrong, 0.20, delta=RANK_DELTA,
            direction="less", kind="secondary", requires=["G1"], asserted=not smoke and all(len(w) for w in wrong),
            paper="DPO rarely flips the ranking of a pair the reference got wrong",
            extra={"reference_wrong_pairs": [int(len(w)) for w in wrong]},
        ))  # fmt: skip
    third = {s: min(over_units[s], key=lambda t: abs(t - over_steps / 3)) for s in seeds}
    over = [curves[("over", s)].set_index("step") for s in seeds]
    claims.append(compare(
        "C3", f"with β={over_beta} and {over_steps} steps, the oracle score falls from the first third of the run to "
        "its end, while ranking accuracy does not", "oracle score: end - first third of the run",
        [over_units[s][over_steps]["score"] for s in seeds], [over_units[s][third[s]]["score"] for s in seeds],
        delta=DELTA, direction="less", kind="secondary", requires=["G1"], asserted=not smoke,
        paper="ranking accuracy and win rate are only weakly correlated once the policy moves far from π_ref",
        extra={"ranking_acc_third": [float(o.loc[third[s], "ranking_acc"]) for o, s in zip(over, seeds)],
               "ranking_acc_end": [float(o.loc[over_steps, "ranking_acc"]) for o in over],
               "kl_end": [float(o.loc[over_steps, "kl"]) for o in over]},
    ))  # fmt: skip
    qs = qlora_seeds
    full_gain = [np.subtract(units[("DPO", beta, s)]["score"], units[("DPO", beta, s)]["ref_score"]) for s in qs]
    claims.append(gate(
        "G2", f"full fine-tuning with DPO (β={beta}) raises the score over the reference (the gain C4 takes half of)",
        "oracle score: full DPO - SFT reference", full_gain, 0.0, asserted=not smoke,
    ))  # fmt: skip
    q_gain = [np.subtract(q_units[s][steps]["score"], q_units[s][0]["score"]) for s in qs]
    claims.append(compare(
        "C4", "QLoRA (NF4 + LoRA, adapters-off reference) gains at least half of what full fine-tuning gains",
        "per prompt: QLoRA gain over its 4-bit reference - half the full gain over the fp32 reference", q_gain,
        [0.5 * f for f in full_gain], margin=0.01, kind="secondary", requires=["G2"], asserted=not smoke,
        paper="QLoRA matches 16-bit full fine-tuning (Dettmers et al. 2023)",
        extra={"qlora_reference_score": [float(np.mean(q_units[s][0]["score"])) for s in qs],
               "qlora_kl": [float(curves[("qlora", s)]["kl"].iloc[-1]) for s in qs],
               "qlora_reward_acc": [float(curves[("qlora", s)]["reward_acc"].iloc[-1]) for s in qs],
               "full_kl": [float(curves[("full", s)]["kl"].iloc[-1]) for s in qs]},
    ))  # fmt: skip
    ipo_tau = 0.5
    claims.append(compare(
        "S-ipo", f"IPO (τ={ipo_tau}) raises the oracle score over the SFT reference",
        "oracle score: IPO - SFT reference", u("IPO", ipo_tau), ref_u, delta=DELTA, kind="secondary",
        requires=["G1"], asserted=not smoke,
        paper="IPO is a sound alternative to DPO that does not overfit deterministic preferences",
    ))  # fmt: skip
else:
    claims.append(per_seed(
        "hf-heldout", "held-out implicit-reward accuracy after DPO (no oracle: not asserted)", "reward accuracy",
        [after["reward_acc"]], 0.5, delta=0.03, asserted=False,
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
        "qlora_lr",
        "lora_r",
        "steps",
        "batch_size",
    )
}
extra = {"notebook": "01_dpo"}
if profile == "toy":
    params.update(
        base=asdict(base_cfg),
        world={
            "seed": world.seed,
            "n_train": world.n_train,
            "demo_noise": world.demo_noise,
            "rater_tau": world.rater_tau,
        },
        betas=betas,
        taus=taus,
        claim_delta=DELTA,
        rank_delta=RANK_DELTA,
    )
    extra["frontier"] = front.to_dict("records")
    extra["frontier_gaps"] = gaps.to_dict("records")
    extra["model"] = describe(base)
    extra["arms"] = final.drop(columns=[c for c in final.columns if c.startswith("flipped")]).to_dict("records")
path = write_result(
    out,
    "dpo",
    {
        "arxiv": "2305.18290",
        "title": "Direct Preference Optimization",
        "claim": "DPO optimises the RLHF objective without RL and matches or beats PPO",
        "number": "TL;DR win rate ~61% vs reference (GPT-4 judge)",
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
    "H1": ("inconclusive", "DPO at this β moved the policy several nats from π_ref for a gain in score that three "
           "seeds cannot tell from noise. The implicit reward fits the training pairs (G1), but one comparison per "
           "prompt on 2000 prompts, from a rater for whom a 0.1 score gap is a 73% preference, teaches little that "
           "carries to new prompts; most of the movement goes into changes the rater never rewarded (the frontier "
           "figure). The arms that stayed nearer π_ref did better: DPO at β = 0.3 and IPO (S-ipo reproduced)."),
    "H2": ("reversed", "every trained arm lies far below the exact optimum at its own KL (the gap of each arm and "
           "seed is in the record). The optimum gets its score by moving π_ref's probability toward the best of its "
           "own samples, which takes the true reward of every sample; DPO estimates that reward from a few thousand "
           "noisy comparisons and spends its KL on changes those comparisons cannot tell apart. The bar is harder "
           "than the paper's: it compares DPO with PPO trained on the same preferences, not with the optimum, and "
           "we have no PPO arm. Where an arm's KL lies beyond what the reference samples can represent "
           "(`kl_beyond_samples`), the optimum used is a lower bound, so the true gap there is larger still."),
    "C2-gap": ("not reproduced", "on our off-policy pairs the exact optimum itself ranks only slightly more pairs "
               "right than π_ref does (`idealized_acc` against `ref_ranking_acc`), so there is almost no room for "
               "the gap the paper reports: with a rater this noisy and β = 0.1, logit(p)/β is often no larger than "
               "π_ref's own log-likelihood gap between a demonstration and its one-slip copy. DPO reached about the "
               "idealized accuracy. The paper's idealized accuracies near 1 need preferences that are strong "
               "relative to the reference's log-ratios, which our pairs (two versions of one answer) are not."),
    "C2-flip": ("inconclusive", "only a quarter of the off-policy pairs were ranked wrong by the reference "
                "(`reference_wrong_pairs`), and the share of them DPO ranked right lies near 0.20, the line the claim "
                "draws: too few units to decide."),
    "C2-gap-on": ("inconclusive", "on π_ref's own samples both responses of a pair are likely under π_ref and their "
                  "log-likelihood gap is small, so a few DPO steps reorder most of them: the observed ranking "
                  "accuracy ended a little below the idealized one on every seed, by less than delta on average. "
                  "The previous run of the same code, in an earlier environment (another machine, transformers "
                  "5.24), trained a different SFT base and reached the idealized accuracy: the gap here is small "
                  "and moves with the base. Chen et al.'s finding concerns off-policy data."),
    "C2-flip-on": ("reversed", "for the same reason as C2-gap-on: on on-policy pairs the reference's wrong rankings "
                   "are by small margins, and DPO reversed far more of them than \"rarely\" allows."),
    "C4": ("not testable", "gate G2 failed: full fine-tuning's gain over the reference is not distinguishable from 0 "
           "(H1), so half of it is no bar. QLoRA itself learns at the learning rate chosen on the development seed: "
           "its implicit-reward accuracy and KL at the end (`qlora_reward_acc`, `qlora_kl`) are not far below full "
           "fine-tuning's. The earlier reading that QLoRA \"does not move\" came from a learning rate that "
           "drove it far past full fine-tuning's KL."),
}  # fmt: skip
display(Markdown(what_we_found(path, why if profile == "toy" and not smoke else {})))

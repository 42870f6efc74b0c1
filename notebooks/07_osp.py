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
# # OSP: online self-preferring language models
#
# Zhai, Zhang, Xu, Peng, Yu, Feng, Yang, Ding, Wang (2024). *Online Self-Preferring Language Models.*
# [arXiv:2405.14103](https://arxiv.org/abs/2405.14103).
#
# The model is its own judge. For each prompt it samples K responses, then judges pairs of them with a judge prompt
# ("which is better, a or b?"), in both orders to cancel position bias. The self-judged probabilities give a
# preference *strength* p for each pair. The responses are ranked, and *ranked pairing* matches the best with the
# worst, the second with the second-worst, and so on. Each pair then trains with the soft-preference cross-entropy
#
# $$\mathcal{L} = -\big[p \log \sigma(\beta \Delta h) + (1 - p) \log \sigma(-\beta \Delta h)\big],$$
#
# where Δh is the DPO log-ratio margin. A weak preference pulls less than a confident one, and a pair the judge
# finds even stops pulling once σ(βΔh) = p. The paper reports that soft strengths beat hard labels (they avoid
# overfitting) and that a model that already judges well can self-improve from a pool of about 200 prompts.
#
# **Which details are the paper's, and which are ours.** The OSP code is not public. From the paper we take the
# self-generated K responses, self-judging in both orders, ranked pairing, the soft-preference loss and the
# 200-prompt pool. Our choices: the judge strength P(y_i ≻ y_j) = ½[q(y_i, y_j) + 1 − q(y_j, y_i)], with q the
# judge's probability of answering "first", renormalised over its two answer words. Responses are ranked by mean
# strength against the others. The reference model for iteration t is the policy at the start of iteration t (the
# samples come from it). K = 4, and three online iterations.
#
# **The toy judge.** A tiny model trained from scratch cannot judge unless it was taught to, just as an
# instruction-tuned LLM learned judging from human-labelled comparisons. So the SFT base of this notebook also trains
# on labelled judgements: pairs of noisy demonstrations and which one the raters prefer
# (`prefkit.worlds.JudgeStringWorld`). The judge is *reference-guided*: it first writes its own answer to the prompt
# (greedy decoding), then judges the two responses against it, as MT-Bench's judges do on maths questions. A model
# this small cannot compare two answers cold; with its own reference it can, though only as well as its own answer
# allows. Judging is learned slowly, which is why the base trains for `base_steps` steps on data in which
# `judge_per_prompt` labelled judgements per prompt sit next to the demonstrations. From then on no arm of OSP sees
# an oracle. The oracle measures the judge's
# accuracy on fixed labelled pairs and scores samples for evaluation, and it labels the pairs of the upper-bound arm
# (online DPO with true labels) only.
#
# ## Claims tested here
#
# | id | claim | from |
# |---|---|---|
# | O1 | soft self-judged strengths beat hard labels (p → 1) on self-generated pairs | Zhai et al., ablation on preference strength |
# | O2 | a 200-prompt pool suffices to self-improve: OSP (soft) beats the SFT model (oracle win rate > 0.5) | Zhai et al., self-improvement experiment |
# | O3 | online DPO with oracle labels is an upper bound: it beats OSP (soft) | expectation (ours) |
# | O4 | length bias: OSP's responses grow longer than the SFT model's | Zhai et al. report a length increase |
# | S1 | the self-judge beats chance on fixed oracle-labelled pairs before training | sanity |
# | S2 | self-judged strengths form a preference matrix: P + Pᵀ = 1, entries in [0, 1] | sanity (asserted in smoke mode too) |
#
# **What is held equal.** All three arms start from the same SFT model and the same prompt pool. They sample the
# same number of responses, build the same number of ranked pairs per prompt, and train the same steps per iteration
# with the same β and learning rate. In the first iteration the soft and hard arms train on *identical* pairs (same
# samples, same judge); after that each arm samples from its own policy. Rules are applied per seed.

# %% tags=["parameters"]
seed = 0  # first seed; seeds are seed, seed + 1, ...
n_seeds = 3  # seeds per claim
smoke = False  # True: a < 90 s run on 2 CPU cores that checks the pipeline and the claims meaningful at that size
profile = "toy"  # "toy" (offline world with an oracle) or "hf" (a Hugging Face causal LM, 4-bit + LoRA)
model_name = ""  # hf profile: model id or local folder
quantize = "4bit"  # hf profile: "4bit" or "none"
dataset = ""  # hf profile: .json/.jsonl (or hub id) with prompt/chosen/rejected columns (prompts + held-out labels)
judge_template = ""  # hf profile: judge prompt with {prompt}, {a}, {b}; "" = prefkit's default English template
answer_a = " 1"  # hf profile: the single-token answer meaning "a is better"
answer_b = " 2"  # hf profile: the single-token answer meaning "b is better"
device = "auto"  # "auto", "cpu" or "cuda"
out_dir = "../reproductions/osp"  # where figures and result.json go
judge_per_prompt = 8  # toy: labelled judgements per training prompt in the SFT data (the base's judging lessons)
base_steps = 2500  # toy: SFT steps of the base (judging is learned slowly by a model this small)
pool_size = 200  # prompts in the self-improvement pool (the paper's small-pool experiment)
k = 4  # responses sampled per prompt
iterations = 3  # online rounds: sample, self-judge, pair, train
steps_per_iter = 40  # training steps per round
batch_size = 32  # pairs per step
beta = 0.1  # β of the soft-preference loss (DPO's value)
lr = 1e-4  # AdamW learning rate for full fine-tuning of the toy model (as in 01_dpo)
lora_r = 8  # hf profile: LoRA rank
lora_lr = 1e-4  # hf profile: LoRA learning rate

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("prefkit") is None:  # Colab or a bare kernel: install prefkit from its repository
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/prefkit/prefkit"])

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
from prefkit.evaluate import oracle_eval, ranking_report, win_rate
from prefkit.losses import dpo_loss
from prefkit.models import Reference, resolve_device
from prefkit.repro import claims_table, make_claim, seed_everything, write_result
from prefkit.selfjudge import Judge, judge_accuracy, ranked_pairs, self_judge, self_preference_pairs
from prefkit.train import TrainConfig

from prefkit.repro import torch_threads

torch.set_num_threads(torch_threads())
dev = resolve_device(device)
if smoke:  # a quick pass over every cell: fewer seeds, prompts, rounds and steps (see the claims section)
    n_seeds, pool_size, iterations, steps_per_iter = 1, min(pool_size, 48), 1, min(steps_per_iter, 10)
seeds = list(range(seed, seed + n_seeds))
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
seed_everything(seed)
figures = []
print(f"profile={profile} smoke={smoke} device={dev} seeds={seeds}")

# %% [markdown]
# ## Self-judging and ranked pairing
#
# `self_judge` asks every ordered pair of a prompt's K responses in one batched forward pass and averages the two
# orders. `ranked_pairs` ranks by mean strength and pairs from the outside in, carrying P[chosen, rejected] as the
# soft label. The loss is `dpo_loss` with a per-pair label smoothing ε = 1 − p, which is exactly the soft-preference
# cross-entropy above.

# %%
print(inspect.getsource(self_judge))
print(inspect.getsource(ranked_pairs))

# %% [markdown]
# ## The toy world and its judge

# %%
from prefkit.generate import sample, sample_table
from prefkit.models import TinyLlamaConfig
from prefkit.toy import ToyBaseConfig, describe, run_arm, sft_base
from prefkit.worlds import JudgeStringWorld

if profile == "toy":
    world = JudgeStringWorld(
        seed=0, n_train=400 if smoke else 2000, n_eval=64 if smoke else 512, judge_per_prompt=judge_per_prompt
    )
    tok = world.tokenizer
    judge = Judge(world.judge_template, world.judge_answers)
    base_cfg = ToyBaseConfig(steps=80 if smoke else base_steps, model=TinyLlamaConfig())
    base = sft_base(world, base_cfg).to(dev)
    sft_ref = Reference(base, mode="copy")
    setup = {}
    for s in seeds:
        ys = sample(base, tok, world.eval_prompts, n=2, seed=5000 + s)  # fixed judge-accuracy pairs, oracle-labelled
        labelled = []
        for p, (a, b) in zip(world.eval_prompts, ys):
            sa, sb = world.score(p, a), world.score(p, b)
            if sa != sb:
                labelled.append({"prompt": p, "chosen": a if sa > sb else b, "rejected": b if sa > sb else a})
        setup[s] = {
            "pool": random.Random(s).sample(world.train_prompts, pool_size),
            "labelled": labelled,
            "ref_samples": [r[0] for r in sample(base, tok, world.eval_prompts, seed=10_000 + s)],
        }
        ev = oracle_eval(world.score, base, tok, world.eval_prompts, sft_ref, setup[s]["ref_samples"], seed=s)
        setup[s]["round0"] = {"score": ev["score"], "win_rate": ev["win_rate"], "kl": ev["kl"],
                              "length": ev["length"], "judge_acc": judge_accuracy(base, tok, judge, labelled)}  # fmt: skip
    print(describe(base))
    p0 = world.eval_prompts[0]
    q = world.judge_query(p0, *ys[0], reference=sample(base, tok, [p0], temperature=0)[0][0])
    print("judge query:", q, "->", sample(base, tok, [q], temperature=0)[0][0])
    display(pd.DataFrame({s: setup[s]["round0"] for s in seeds}).round(3))  # the SFT model, per seed

# %% [markdown]
# ## Online rounds: soft (OSP), hard labels, oracle labels
#
# Each round: sample K responses per pool prompt from the current policy, label them (self-judge, or the oracle for
# the upper bound), pair them, and train `steps_per_iter` steps against the round's starting policy. After each
# round: the oracle score of one sample per held-out prompt, win rate against the SFT model's samples, KL to the SFT
# model, mean length, and the self-judge's accuracy on the fixed labelled pairs. For each round we also record how
# often a pair's chosen response really is better, measured with the oracle afterwards and never used in training.

# %%
arms = {"OSP (soft)": {}, "hard labels": {"hard": True}, "oracle labels": {"oracle": "oracle"}}
log, check = [], []
if profile == "toy":
    for s in seeds:
        st = setup[s]
        for name, how in arms.items():
            policy = base
            log.append({"arm": name, "seed": s, "round": 0, **st["round0"]})  # the SFT model
            for it in range(1, iterations + 1):
                kw = {"hard": how.get("hard", False), "oracle": world.score if "oracle" in how else None}
                rows, ys = self_preference_pairs(policy, tok, judge, st["pool"], k, seed=1000 * s + it, **kw)
                cfg = TrainConfig(steps=steps_per_iter, lr=lr, seed=100 * s + it, desc=f"{name} s{s} round {it}")
                policy, _, hist = run_arm(policy, tok, rows, dpo_loss, cfg, batch_size=batch_size, beta=beta)
                ev = oracle_eval(world.score, policy, tok, world.eval_prompts, sft_ref, st["ref_samples"], seed=s)
                log.append({
                    "arm": name, "seed": s, "round": it, "pairs": len(rows),
                    "mean_strength": float(np.mean([r["strength"] for r in rows])),
                    "label_acc": win_rate([world.score(r["prompt"], r["chosen"]) for r in rows],
                                          [world.score(r["prompt"], r["rejected"]) for r in rows]),
                    "score": ev["score"], "score_sem": ev["score_sem"], "win_rate": ev["win_rate"], "kl": ev["kl"], "length": ev["length"],
                    "judge_acc": judge_accuracy(policy, tok, judge, st["labelled"]),
                })  # fmt: skip
            check += [float(np.abs(m + m.T - 1).max()) for m in self_judge(base, tok, judge, st["pool"][:8], ys[:8])]
    log = pd.DataFrame(log)
    cols = ["pairs", "mean_strength", "label_acc", "score", "win_rate", "kl", "length", "judge_acc"]
    display(log[log["round"] > 0].groupby(["arm", "round"], sort=False)[cols].mean().round(3))

# %% [markdown]
# Oracle score, self-judge accuracy and mean length per round (mean ± std over seeds; round 0 is the SFT model).

# %%
if profile == "toy":
    fig, axes = plot.figure(ncols=3, width=3.8, height=3.4)
    for i, name in enumerate(arms):
        g = log[log["arm"] == name]
        for ax, col in zip(axes, ["score", "judge_acc", "length"]):
            vals = g.pivot(index="seed", columns="round", values=col).loc[seeds].to_numpy()
            plot.mean_band(ax, range(iterations + 1), vals, label=name, color=plot.PALETTE[i], marker="o")
    for ax, title in zip(
        axes, ["oracle score of samples", "self-judge accuracy (oracle pairs)", "mean length (tokens)"]
    ):
        ax.set(xlabel="round", title=f"{title} (n={len(seeds)})", xticks=range(iterations + 1))
    axes[0].legend(fontsize=7)
    axes[1].axhline(0.5, color="gray", ls=":", lw=1)
    fig.tight_layout()
    figures.append(plot.save(fig, out, "osp_rounds.png"))

# %% [markdown]
# ## `hf` profile: one or more OSP rounds on your model
#
# The prompts of your pairwise data set form the pool. Your model judges its own samples with `judge_template`,
# whose two answers must each be a single token. No oracle: the run is judged on held-out pairs before and after
# (implicit-reward accuracy, the self-judge's accuracy against your labels) and by reading samples. No claim is
# asserted.

# %%
if profile == "hf":
    from prefkit.data import load_pairwise, split_held_out
    from prefkit.models import LoraSpec, load_lm

    base, tok = load_lm(model_name, quantize=quantize, lora=LoraSpec(r=lora_r), device=device)
    judge = Judge(judge_template, (answer_a, answer_b)) if judge_template else Judge(answers=(answer_a, answer_b))
    rows = load_pairwise(dataset, limit=200 if smoke else None)
    train_rows, held_out = split_held_out(rows)
    pool = list(dict.fromkeys(r["prompt"] for r in train_rows))[:pool_size]
    ref = Reference(base, mode="adapters_off")
    before = {**ranking_report(base, ref, tok, held_out, beta), "judge_acc": judge_accuracy(base, tok, judge, held_out)}
    for it in range(1, iterations + 1):
        pairs, _ = self_preference_pairs(base, tok, judge, pool, k, seed=seeds[0] * 1000 + it)
        if not pairs:
            print(f"round {it}: every ranked pair was identical or tied; nothing to train on")
            break
        cfg = TrainConfig(steps=steps_per_iter, lr=lora_lr, seed=seeds[0] + it, desc=f"OSP (hf) round {it}")
        _, _, hist = run_arm(base, tok, pairs, dpo_loss, cfg, None, "adapters_off", min(batch_size, 8), beta=beta)
    after = {**ranking_report(base, ref, tok, held_out, beta), "judge_acc": judge_accuracy(base, tok, judge, held_out)}
    display(pd.DataFrame({"before": before, "after": after}))
    fig = plot.training_curves(hist.steps, {"loss": "soft-preference loss"}, f"{model_name}: OSP, last round")
    figures.append(plot.save(fig, out, "hf_training.png"))
    display(sample_table(base, tok, [r["prompt"] for r in held_out[:3]], seed=seeds[0]))

# %% [markdown]
# ## Claims: paper vs ours
#
# Each rule is applied to every seed, on the last round. The ledger records how many seeds passed (*old rule: k/n
# seeds*); a sign that holds on every seed is not evidence, and these claims are to be restated with intervals and
# minimum effects (`prefkit.claims`). The rules were fixed before the runs. In smoke mode (one seed, one short round on
# 48 prompts) only S2 is asserted; the rest are recorded as *not asserted*.

# %%
claims = []
if profile == "toy":
    last = log[log["round"] == log["round"].max()].set_index(["arm", "seed"])
    col = lambda arm, c: last.loc[arm, c].loc[seeds]  # noqa: E731
    sft_col = lambda c: log[log["round"] == 0].groupby("seed")[c].first().loc[seeds].to_numpy()  # noqa: E731
    soft, hard, orc = list(arms)
    claims.append(make_claim(
        "O1", "soft self-judged strengths beat hard labels", "score (soft) - score (hard)",
        col(soft, "score") - col(hard, "score"), lambda v: v > 0, "> 0 per seed", asserted=not smoke,
        paper="soft-preference loss above hard labels (the paper's ablation; avoids overfitting)",
        extra={"win_rate_soft": col(soft, "win_rate").tolist(), "win_rate_hard": col(hard, "win_rate").tolist()},
    ))  # fmt: skip
    claims.append(make_claim(
        "O2", f"a {pool_size}-prompt pool suffices to self-improve", "oracle win rate of OSP (soft) against SFT",
        col(soft, "win_rate"), lambda v: v > 0.5, "> 0.5 per seed", asserted=not smoke,
        paper="self-improvement from about 200 prompts without external supervision (a model already good at judging)",
        extra={"win_rate_ci95_halfwidth": (1.96 * np.sqrt(col(soft, "win_rate") * (1 - col(soft, "win_rate"))
                                                          / len(world.eval_prompts))).tolist(),
               "score_gain": (col(soft, "score") - sft_col("score")).tolist(), "score_sem": col(soft, "score_sem").tolist()},
    ))  # fmt: skip
    claims.append(make_claim(
        "O3", "oracle labels are an upper bound for self-judged ones", "score (oracle labels) - score (soft)",
        col(orc, "score") - col(soft, "score"), lambda v: v > 0, "> 0 per seed", asserted=not smoke, paper="—",
    ))  # fmt: skip
    claims.append(make_claim(
        "O4", "length bias: OSP's responses grow longer than the SFT model's", "mean length OSP (soft) - SFT (tokens)",
        col(soft, "length") - sft_col("length"), lambda v: v > 0, "> 0 per seed", asserted=not smoke,
        paper="OSP's responses get longer (LLM judges favour length)",
    ))  # fmt: skip
    claims.append(make_claim(
        "S1", "the SFT model's self-judge beats chance", "self-judge accuracy on oracle-labelled pairs",
        [setup[s]["round0"]["judge_acc"] for s in seeds], lambda v: v > 0.55, "> 0.55 per seed", asserted=not smoke, paper="sanity",
    ))  # fmt: skip
    claims.append(make_claim(
        "S2", "self-judged strengths form a preference matrix", "max |P + Pᵀ - 1|", [max(check)],
        lambda v: v < 1e-5, "< 1e-5", paper="sanity",
    ))  # fmt: skip
else:
    claims.append(make_claim(
        "hf-heldout", "held-out implicit-reward accuracy after OSP (no oracle: not asserted)", "reward accuracy",
        [after["reward_acc"]], lambda v: v > 0.5, "> 0.5", asserted=False,
    ))  # fmt: skip

display(claims_table(claims))

# %%
names = ["seed", "n_seeds", "smoke", "profile", "model_name", "quantize", "dataset", "judge_template", "answer_a",
         "answer_b", "judge_per_prompt", "base_steps", "pool_size", "k", "iterations", "steps_per_iter", "batch_size", "beta", "lr", "lora_r", "lora_lr"]  # fmt: skip
params = {k_: globals()[k_] for k_ in names}
extra = {"notebook": "07_osp"}
if profile == "toy":
    params.update(base=asdict(base_cfg), world={"seed": world.seed, "judge_per_prompt": world.judge_per_prompt})
    extra.update(model=describe(base), rounds=log.to_dict("records"))
path = write_result(
    out,
    "osp",
    {
        "arxiv": "2405.14103",
        "title": "Online Self-Preferring Language Models",
        "claim": "self-judged soft preference strengths with ranked pairing align better than hard labels; a small "
        "prompt pool suffices to self-improve",
        "number": "state of the art on HH and TL;DR; soft above hard labels; self-improvement from about 200 prompts",
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

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
# **The toy judge.** A tiny model trained from scratch cannot judge unless it was taught to, just as an
# instruction-tuned LLM learned judging from human-labelled comparisons. So the SFT base of this notebook also trains
# on labelled judgements: pairs of noisy demonstrations and which one the raters prefer
# (`prefkit.worlds.grading.GradedJudgeWorld`). Three choices make those lessons teach judging to a model this
# small, each found on a development world (seed 100, not a reported seed) after a failed try; the docstrings of
# `prefkit.worlds.judging` and `prefkit.worlds.grading` have the measurements. Each comparison is taught in both orders, better-then-worse answered "first" and
# worse-then-better answered "second", so the answer word cannot be predicted from position (taught once, about 70%
# of the lessons answered "first", and the judge learned to say "first" whatever it read). The judge query lines up
# its reference and the two responses token by token (`r1 a1 b1 r2 a2 b2 ...`), so comparing them is local (written
# one after another, the balanced lessons still left the judge at a coin's accuracy after 2500 steps). And a lesson's
# answer is a teacher's grading of the two responses *against the lesson's reference* (the oracle's scoring rule with
# that reference in place of the gold answer). The reference is the gold answer, or, in a share `copy_refs` of the
# lessons, a noisy copy of one of the two responses. With gold references only, the judge learned that a response
# with a writer's slip (a random letter) looks worse: true of the lessons, not of the model's own mistakes, and no
# use of the reference. Copied references make the reference the only clue to the answer (with `copy_refs` = 0.5
# the development judge agreed with the oracle on 0.68 of its own samples' pairs after 3500 SFT steps and 0.71
# after 5000, where gold references alone left it below 0.63; with every reference copied its strengths collapsed
# to ½; twice as many lessons per prompt left it at 0.57). The judge is
# *reference-guided*: it first writes its own answer to the prompt (greedy decoding), then judges the two responses
# against it, as MT-Bench's judges do on maths questions.
# Judging is learned slowly, which is why the base trains for `base_steps` steps on data in which `judge_per_prompt`
# labelled judgements per prompt sit next to the demonstrations. From then on no arm of OSP sees an oracle. The oracle
# measures the judge's accuracy on fixed labelled pairs, checks afterwards how often a training pair's chosen
# response really is better (never used in training), scores samples for evaluation, and labels the pairs of the
# upper-bound arm (online DPO with true labels) only.
#
# ## Claims tested here
#
# | id | kind | claim | source |
# |---|---|---|---|
# | J1 | gate | the SFT model's self-judge agrees with the oracle on more than 0.65 of labelled pairs | premise of the self-improvement claim (LLMs "with proficiency in self-preferring") |
# | J2 | gate | self-judged strengths are material: mean \|p − ½\| over the soft arm's first-round pairs above 0.1 | premise: the soft labels carry a preference |
# | P1 | gate | ranked pairing finds pairs: more than half of the pool prompts give at least one pair in the first round | premise: the pool is really used |
# | O1 | headline | soft self-judged strengths beat hard labels (p → 1) on the same self-generated pairs | Zhai et al., ablation on preference strength |
# | O2 | headline | a 200-prompt pool suffices to self-improve: OSP (soft) wins against the SFT model | Zhai et al., self-improvement experiment |
# | O3 | secondary | online DPO with oracle labels is an upper bound: it beats OSP (soft) | ours: an expectation |
# | O4 | secondary | length bias: OSP's responses grow longer than those of the oracle-label arm | Zhai et al. report a length increase (LLM judges favour length) |
#
# Every claim about OSP rests on J1 and J2: with a judge at chance, or strengths near ½, the soft arm trains on no
# preference at all (σ(βΔh) = ½ is reached at Δh = 0) and acts as a KL anchor, so "soft beats hard" would only say
# that doing little beats fitting noise. O4 compares with the oracle-label arm rather than with the SFT model, since
# the task itself may favour longer answers: only length growth beyond what true labels produce is the judge's bias.
#
# **What is held equal.** All three arms start from the same SFT model and the same prompt pool. They sample the
# same number of responses, build the same number of ranked pairs per prompt, and train the same steps per round
# with the same β and learning rate. In the first round the soft and hard arms train on *identical* pairs (same
# samples, same judge); after that each arm samples from its own policy. A seed draws the pool, the samples, the
# labelled pairs of J1, the batch order and the evaluation samples; the SFT base (with its judge) is shared across
# seeds, since training it is most of the run.
#
# ## Departures from the paper and the official code
#
# The OSP code is not public, so every row is measured against the paper's text.
#
# | what | why | expected effect |
# |---|---|---|
# | a 0.5M-parameter Llama trained from scratch on string operations, fully fine-tuned, instead of LLMs on HH and TL;DR | offline, on a CPU, with an exact oracle | absolute numbers do not transfer; the comparisons between arms are what we test |
# | the judge is taught during SFT by labelled comparisons (`judge_per_prompt` lessons per training prompt: half as many comparisons, each in both orders) | the paper starts from LLMs that can already judge; a model trained from scratch cannot | the judge is only as good as these lessons; J1 and J2 check it before any claim is tested |
# | reference-guided judge query: the model writes its own greedy answer, then picks one of two answer words | a model this small cannot compare two answers cold (the world's docstring gives the measurement) | the judge favours answers close to its own greedy output, so it cannot rank answers better than its own |
# | the query interleaves the reference and the two responses token by token, cut after 32 tokens each | written one after another, the comparison was not learned (development seed) | the judge compares position by position: a dropped letter shifts everything after it and counts as many mismatches, which it mostly deserves |
# | a lesson answers which response grades higher against the lesson's reference; the reference is the gold answer or, in a share `copy_refs` of the lessons, a noisy copy of one of the two responses; at judging time it is the model's own greedy answer | with gold references only, the judge spotted writers' slips instead of reading its reference (development seed: right on 0.76 of lesson pairs, 0.56 of pairs of its own samples, 0.61 with an empty reference) | in about a quarter of the lessons the taught answer is the oracle's worse response: the judge learns to follow its reference, right or wrong, so its mistakes follow its own greedy answer's |
# | strength P(y_i ≻ y_j) = ½[q(y_i, y_j) + 1 − q(y_j, y_i)], q the judge's probability of "first" renormalised over its two answer words | the paper judges both orders; this exact form is ours | a position bias cancels; P + Pᵀ = 1 (a unit test) |
# | responses ranked by mean strength against the others | our reading of ranked pairing | none expected with a transitive judge |
# | π_ref of round t is the policy at the start of round t | the samples of round t come from it | each round is a DPO step from its own sampler |
# | K = 4 samples, 3 rounds of 40 steps × 32 pairs, β = 0.1, AdamW lr 1e-4 | a budget of about half an hour on one CPU thread | fewer, shorter rounds than the paper's: effects are smaller |
# | hard-label arm: the same self-judged ranked pairs with p set to 1 | our construction of the paper's hard-label ablation | isolates the strength; the paper's hard baseline may differ in detail |
# | oracle-label arm: online DPO whose ranking and hard labels come from the oracle | ours, an upper bound the paper does not run | says how much a perfect judge would give in the same budget |
# | evaluation: the oracle's score and paired win rate against the SFT model's samples on held-out prompts | the paper uses reward models and GPT-4 as judges | our win rate is exact, not a judge's opinion |
#
# **Which details are the paper's, and which are ours.** From the paper we take the self-generated K responses,
# self-judging in both orders, ranked pairing, the soft-preference loss and the 200-prompt pool; the rest of the
# table above is ours.

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
copy_refs = 0.5  # toy: share of judging lessons whose reference is a noisy copy of one of the two responses
base_steps = 5000  # toy: SFT steps of the base (judging is learned slowly by a model this small)
pool_size = 200  # prompts in the self-improvement pool (the paper's small-pool experiment)
k = 4  # responses sampled per prompt
iterations = 3  # online rounds: sample, self-judge, pair, train
steps_per_iter = 40  # training steps per round
batch_size = 32  # pairs per step
beta = 0.1  # β of the soft-preference loss (DPO's value)
lr = 1e-4  # AdamW learning rate for full fine-tuning of the toy model (as in 01_dpo)
lora_r = 8  # hf profile: LoRA rank
lora_lr = 1e-4  # hf profile: LoRA learning rate

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
from prefkit.evaluate import oracle_eval, ranking_report, win_rate
from prefkit.losses import dpo_loss
from prefkit.models import Reference, resolve_device
from prefkit.online import online_rounds
from prefkit.repro import claims_table, compare, gate, per_seed, seed_everything, write_result
from prefkit.selfjudge import (
    Judge,
    agreement,
    judge_accuracy,
    judge_strengths,
    ranked_pairs,
    self_judge,
    self_preference_label,
    self_preference_pairs,
)
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
# fixed before any reported run; the claims section says why each has its size
DELTA, WIN_DELTA, LEN_DELTA = 0.02, 0.03, 0.5  # minimum effects: oracle score; win rate; tokens
JUDGE_ACC, STRENGTH_DIST, PAIRED = 0.65, 0.1, 0.5  # gate thresholds: judge accuracy; mean |p - 1/2|; paired share
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
from prefkit.worlds.grading import GradedJudgeWorld

if profile == "toy":
    world = GradedJudgeWorld(
        seed=0,
        n_train=400 if smoke else 2000,
        n_eval=64 if smoke else 512,
        judge_per_prompt=judge_per_prompt,
        copy_refs=copy_refs,
    )
    tok = world.tokenizer
    judge = world.judge  # the aligned, reference-guided judge query the lessons teach
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
            "judge_units": agreement(judge_strengths(base, tok, judge, labelled)),  # J1's units: 1 right, 0 wrong
        }
        ev = oracle_eval(world.score, base, tok, world.eval_prompts, sft_ref, setup[s]["ref_samples"], seed=s)
        setup[s]["round0"] = {"score": ev["score"], "win_rate": ev["win_rate"], "kl": ev["kl"], "length": ev["length"],
                              "judge_acc": float(setup[s]["judge_units"].mean())}  # fmt: skip
    print(describe(base))
    p0 = world.eval_prompts[0]
    q = world.judge_query(p0, *ys[0], reference=sample(base, tok, [p0], temperature=0)[0][0])
    print("judge query:", q, "->", sample(base, tok, [q], temperature=0)[0][0])
    display(pd.DataFrame({s: setup[s]["round0"] for s in seeds}).round(3))  # the SFT model, per seed

# %% [markdown]
# ## Online rounds: soft (OSP), hard labels, oracle labels
#
# Each round: sample K responses per pool prompt from the current policy, label them (self-judge, or the oracle for
# the upper bound), pair them, and train `steps_per_iter` steps against the round's starting policy: the rounds of
# `prefkit.online.online_rounds` with `reference="previous"`, labelled by `self_preference_label` (the loop notebook
# 11 runs DNO and APO on). After each
# round: the oracle score of one sample per held-out prompt, win rate against the SFT model's samples, KL to the SFT
# model, mean length, and the self-judge's accuracy on the fixed labelled pairs. For each round we also record the
# mean self-judged strength P[chosen, rejected] of the pairs (before the hard arm rounds it to 1) and how often a
# pair's chosen response really is better (*label accuracy*), measured with the oracle afterwards and never used in
# training.

# %%
arms = {"OSP (soft)": {}, "hard labels": {"hard": True}, "oracle labels": {"oracle": "oracle"}}
log, units, first_round = [], {}, {}  # units[(arm, seed)]: per-prompt values of the last round's evaluation
if profile == "toy":
    for s in seeds:
        st = setup[s]
        for name, how in arms.items():
            log.append({"arm": name, "seed": s, "round": 0, **st["round0"]})  # the SFT model
            label = self_preference_label(tok, judge, how.get("hard", False), world.score if "oracle" in how else None)

            def evaluate(it, policy, rows, hist, name=name, s=s, st=st):  # after each round, on π_{it+1}
                ev = oracle_eval(world.score, policy, tok, world.eval_prompts, sft_ref, st["ref_samples"], seed=s)
                judged = np.array([r["judged"] for r in rows])  # P[chosen, rejected] as judged (oracle arm: 1)
                if it == 1 and name == "OSP (soft)":  # the units of gates J2 and P1
                    paired = {r["prompt"] for r in rows}
                    first_round[s] = {"dist": np.abs(judged - 0.5), "paired": [float(q in paired) for q in st["pool"]]}
                units[(name, s)] = ev["per_prompt"]  # the last round's are kept
                return {
                    "arm": name, "seed": s, "mean_strength": float(judged.mean()),
                    "strength_dist": float(np.abs(judged - 0.5).mean()),
                    "label_acc": win_rate([world.score(r["prompt"], r["chosen"]) for r in rows],
                                          [world.score(r["prompt"], r["rejected"]) for r in rows]),
                    "score": ev["score"], "score_sem": ev["score_sem"], "win_rate": ev["win_rate"], "kl": ev["kl"], "length": ev["length"],
                    "judge_acc": judge_accuracy(policy, tok, judge, st["labelled"]),
                }  # fmt: skip

            _, arm_log = online_rounds(
                base, tok, st["pool"], label, dpo_loss,
                lambda t, name=name, s=s: TrainConfig(steps=steps_per_iter, lr=lr, seed=100 * s + t, desc=f"{name} s{s} round {t}"),
                rounds=iterations, k=k, batch_size=batch_size, sample_seed=lambda t, s=s: 1000 * s + t,
                reference="previous", on_round=evaluate, beta=beta,
            )  # fmt: skip
            log += arm_log
    log = pd.DataFrame(log)
    cols = ["pairs", "mean_strength", "strength_dist", "label_acc", "score", "win_rate", "kl", "length", "judge_acc"]
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
# What the loss was fed, per round (mean ± std over seeds): how far the self-judged strengths p = P[chosen, rejected]
# of the training pairs sit from ½, mean |p − ½| (the hard arm's before p is rounded to 1; 0 is no preference at all;
# dotted: 0.1, gate J2's threshold), and their label accuracy, the share of pairs whose chosen response the oracle
# scores higher (dotted: ½, a coin; the oracle arm's is 1 by construction). In round 1 the soft and hard arms share
# their pairs, so their points coincide.

# %%
if profile == "toy":
    fig, axes = plot.figure(ncols=2, width=3.8, height=3.4)
    rounds = range(1, iterations + 1)
    for i, name in enumerate(arms):
        g = log[(log["arm"] == name) & (log["round"] > 0)]
        for ax, col in zip(axes, ["strength_dist", "label_acc"]):
            if col == "strength_dist" and "oracle" in arms[name]:
                continue  # the oracle arm's strengths are its hard labels
            vals = g.pivot(index="seed", columns="round", values=col).loc[seeds].to_numpy()
            plot.mean_band(ax, rounds, vals, label=name, color=plot.PALETTE[i], marker="osD"[i], ms=7 - 2 * i)
    axes[0].axhline(STRENGTH_DIST, color="gray", ls=":", lw=1)
    axes[1].axhline(0.5, color="gray", ls=":", lw=1)
    for ax, title in zip(axes, ["mean |p - 1/2| of pairs' strengths", "label accuracy of pairs (oracle check)"]):
        ax.set(xlabel="round", title=f"{title} (n={len(seeds)})", xticks=list(rounds))
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    figures.append(plot.save(fig, out, "osp_pairs.png"))

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
# Fixed before the full run. Each comparison is paired per evaluation prompt (the same 512 held-out prompts and the
# same sampling seed under every arm, last round) and judged with `prefkit.claims`: hierarchical bootstrap over seeds,
# then prompts; *reproduced* needs the 95% interval above 0 and an estimate of at least the claim's delta.
#
# - **J1**, judge accuracy above **0.65** (units: the labelled pairs, 1 when the self-judge prefers the oracle's
#   choice, ½ on a tie). Why 0.65: at that accuracy one label in three is still wrong, about the error of the
#   simulated raters of `01_dpo` on a 0.06 score gap; a judge below it is too close to a coin to tell soft labels
#   from noise.
# - **J2**, mean |p − ½| of the soft arm's first-round training pairs above **0.1**. Why 0.1: the soft loss is
#   minimised at βΔh = logit(p); with β = 0.1, p = 0.6 asks for a log-ratio margin of about 4 nats, a real move,
#   while p = 0.51 asks for 0.4 nats, which leaves the soft arm where it started.
# - **P1**, the share of pool prompts with at least one ranked pair in the first round above **0.5**: below it, the
#   pool the method learns from is smaller than half the paper's 200 prompts.
# - **O1, O3**: delta = **0.02 oracle score**, as in `01_dpo` and `04_delta`: the oracle gives partial credit in
#   [0, 1], and 0.02 is about one wrong letter in one step of every fifth response, the smallest change a reader
#   comparing arms would act on.
# - **O2**: units are the per-prompt wins against the SFT model's sample (1, ½ on a tie, 0), against ½; delta =
#   **0.03** (a win rate of 0.53). Why: 0.03 is about the half-width that three seeds of 512 prompts can resolve, and
#   the paper's self-improvement is much larger than that; a smaller gain would not be told from a coin.
# - **O4**: per-prompt length in tokens, OSP (soft) minus oracle labels; delta = **0.5 tokens**, about 5% of a
#   response (the SFT model writes about 11 tokens): a smaller difference is not the length bias the paper reports.
#
# In smoke mode (one seed, an 80-step base, one 10-step round on 48 prompts) the judge is untrained, so only P1 is
# asserted; the rest are recorded as *not asserted*.

# %%
claims = []
if profile == "toy":
    claims.append(gate(
        "J1", f"the SFT model's self-judge agrees with the oracle on more than {JUDGE_ACC} of labelled pairs",
        "self-judge accuracy on oracle-labelled pairs of the SFT model's samples", [setup[s]["judge_units"] for s in seeds],
        JUDGE_ACC, asserted=not smoke, paper="OSP self-improves with LLMs 'with proficiency in self-preferring'",
        extra={"labelled_pairs": [len(setup[s]["labelled"]) for s in seeds]},
    ))  # fmt: skip
    claims.append(gate(
        "J2", f"self-judged strengths are material: mean |p - 1/2| above {STRENGTH_DIST}",
        "|P[chosen, rejected] - 1/2| of the soft arm's first-round pairs", [first_round[s]["dist"] for s in seeds],
        STRENGTH_DIST, asserted=not smoke, paper="soft labels carry the preference strength",
        extra={"mean_strength": [float(np.mean(first_round[s]["dist"]) + 0.5) for s in seeds]},
    ))  # fmt: skip
    claims.append(gate(
        "P1", f"ranked pairing finds pairs on more than {PAIRED} of the pool prompts (first round)",
        "share of pool prompts with at least one ranked pair", [first_round[s]["paired"] for s in seeds], PAIRED,
    ))  # fmt: skip
    judge_gates = ["J1", "J2", "P1"]
    u = lambda arm, key="score": [units[(arm, s)][key] for s in seeds]  # noqa: E731
    soft, hard, orc = list(arms)
    claims.append(compare(
        "O1", "soft self-judged strengths beat hard labels on the same self-generated pairs",
        "oracle score: OSP (soft) - hard labels, last round", u(soft), u(hard), delta=DELTA, requires=judge_gates,
        asserted=not smoke, paper="soft-preference loss above hard labels (the paper's ablation; avoids overfitting)",
        extra={"win_rate_soft": [float(np.mean(units[(soft, s)]["win"])) for s in seeds],
               "win_rate_hard": [float(np.mean(units[(hard, s)]["win"])) for s in seeds]},
    ))  # fmt: skip
    claims.append(compare(
        "O2", f"a {pool_size}-prompt pool suffices to self-improve: OSP (soft) wins against the SFT model",
        "per-prompt win against the SFT model's sample (oracle), minus 1/2", u(soft, "win"), 0.5, delta=WIN_DELTA,
        requires=judge_gates, asserted=not smoke,
        paper="self-improvement from about 200 prompts without external supervision",
        extra={"score_gain": [float(np.mean(np.subtract(units[(soft, s)]["score"], units[(soft, s)]["ref_score"])))
                              for s in seeds]},
    ))  # fmt: skip
    claims.append(compare(
        "O3", "oracle labels are an upper bound for self-judged ones", "oracle score: oracle labels - OSP (soft)",
        u(orc), u(soft), delta=DELTA, kind="secondary", requires=judge_gates, asserted=not smoke, paper="—",
    ))  # fmt: skip
    claims.append(compare(
        "O4", "length bias: OSP's responses grow longer than those trained on oracle labels",
        "length (tokens): OSP (soft) - oracle labels, last round (same SFT start)", u(soft, "length"),
        u(orc, "length"), delta=LEN_DELTA, kind="secondary", requires=judge_gates, asserted=not smoke,
        paper="OSP's responses get longer (LLM judges favour length)",
        extra={"length_sft": [float(setup[s]["round0"]["length"]) for s in seeds]},
    ))  # fmt: skip
else:
    claims.append(per_seed(
        "hf-heldout", "held-out implicit-reward accuracy after OSP (no oracle: not asserted)", "reward accuracy",
        [after["reward_acc"]], 0.5, delta=0.03, asserted=False,
    ))  # fmt: skip

display(claims_table(claims))

# %%
names = ["seed", "n_seeds", "smoke", "profile", "model_name", "quantize", "dataset", "judge_template", "answer_a",
         "answer_b", "judge_per_prompt", "copy_refs", "base_steps", "pool_size", "k", "iterations", "steps_per_iter",
         "batch_size", "beta", "lr", "lora_r", "lora_lr"]  # fmt: skip
params = {k_: globals()[k_] for k_ in names}
params.update(claim_delta=DELTA, win_delta=WIN_DELTA, length_delta=LEN_DELTA, judge_acc_threshold=JUDGE_ACC,
              strength_threshold=STRENGTH_DIST, paired_threshold=PAIRED)  # fmt: skip
extra = {"notebook": "07_osp"}
if profile == "toy":
    params.update(
        base=asdict(base_cfg),
        world={"seed": world.seed, "judge_per_prompt": world.judge_per_prompt, "copy_refs": world.copy_refs},
    )
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

judge_note = (
    "gate J1 failed, while J2 and P1 passed, so no claim about OSP could be tested. The judge is taught by "
    "lessons graded against a reference that is sometimes a noisy copy of one of the two responses, which makes "
    "it read its reference; its strengths sit well away from ½, and the pairs that ranked pairing picks for "
    "training are right more often than its average pair. But on pairs of its own samples its agreement with "
    "the oracle is not reliably above 0.65 (the gate asks the whole interval to be; the seeds scatter around "
    "it): on this world a longer SFT (5000 steps instead of 3500) did not lift it clear of the gate, although on the development world the same change had lifted it past the gate. A "
    "model of this size trained from scratch does not become a judge good enough for the paper's premise "
    "(LLMs that already judge their own answers well). With this judge, OSP (soft) against the SFT model, soft "
    "against hard labels, and the length of OSP's answers against the oracle-label arm's are observations only; "
    "the oracle-label arm did better than OSP (soft), as a better judge would."
)
why = {  # claim id -> (the status a note was written for, why the claim came out that way in the toy setting)
    "O1": ("not testable", judge_note),
    "O2": ("not testable", judge_note),
    "O3": ("not testable", judge_note),
    "O4": ("not testable", judge_note),
}  # fmt: skip
display(Markdown(what_we_found(path, why if profile == "toy" and not smoke else {})))

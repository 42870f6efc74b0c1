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
# # Delta learning: preference tuning on weak data
#
# Geng, Ivison, Li, Sap, Li, Krishna, Koh (2025). *The Delta Learning Hypothesis: Preference Tuning on Weak Data can
# Yield Strong Gains.* COLM 2025, [arXiv:2507.06187](https://arxiv.org/abs/2507.06187).
#
# **Idea.** Take two models that are both *weaker* than the one you want to improve. Fine-tuning on the better one's
# answers (SFT) can only pull the student down towards it. But the *difference* between the two, "weak is better
# than weaker", still points somewhere useful: DPO on pairs (chosen = the weak model's answer, rejected = the weaker
# model's, no judge) can lift a student stronger than both. Their headline: Tülu-3-8B-SFT tuned on Qwen2.5-3B over
# Qwen2.5-1.5B answers matches Tülu 3's DPO model, whose preference data came from GPT-4o judging strong models. The
# loss is Tülu 3's length-normalised DPO with β = 5.
#
# **Where we run it.** `toy`: the string-operations world of `01_dpo`. The student is the usual SFT model; the
# teachers are the same architecture trained for fewer steps (a ladder of weaker models), so their answers are
# worse than the student's on average. The oracle is used only to *evaluate*: the pairs are labelled by which
# teacher wrote them, never by a judge. A last section simulates the paper's logistic-regression argument.
# `hf`: length-normalised DPO on your model (4-bit + LoRA) with your own weak/weaker pairs (`prompt`, `chosen`,
# `rejected`); no oracle, so no claim is asserted there.

# %% [markdown]
# ## Claims tested here
#
# | id | kind | claim | source |
# |---|---|---|---|
# | G1-G3 | gate | the ladder is what the hypothesis needs: student > weak > weaker > weakest in oracle score | the premise |
# | H1 | headline | DPO on weak > weaker pairs (adjacent rungs, no judge) raises the student's oracle score | Geng et al.: the hypothesis |
# | H2 | headline | DPO on weak > weakest pairs raises the student's oracle score | Geng et al.: the hypothesis, larger gap |
# | H3 | headline | delta DPO (weak > weakest) is not worse than DPO on oracle-judged pairs of the student's own answers to the same prompts | Geng et al.: matches Tülu 3 DPO (GPT-4o-judged pairs) |
# | H4 | headline | SFT on the weak teacher's answers lowers the (stronger) student's oracle score | Geng et al.: SFT on weak data hurts |
# | L3 | secondary | the gain grows with the gap: weak > weakest above weak > weaker | Geng et al., model-ladder analysis |
# | L4 | secondary | the reversed pairs (weakest > weak) lower the student's score | ours: a control, the direction is the signal |
# | T1 | secondary | logistic regression, d = 1000: a small DPO step raises the student's cosine to the truth iff the chosen teacher is closer to it | Geng et al., Sec. 6, **our reconstruction, simulated** |
#
# A seed draws the teachers' answers, the batch order and the evaluation samples; student and teachers are shared
# across seeds (training them is most of the run). Each comparison is paired per evaluation prompt: the arm's oracle
# score against the student's own sample (or the other arm's) on the same prompt.

# %% tags=["parameters"]
seed = 0  # first seed; seeds are seed, seed + 1, ...
n_seeds = 3  # seeds per claim
smoke = False  # True: a < 90 s run on 2 CPU cores that checks the pipeline and the claims meaningful at that size
profile = "toy"  # "toy" (offline world with an oracle) or "hf" (a Hugging Face causal LM, 4-bit + LoRA)
model_name = ""  # hf profile: model id or local folder
quantize = "4bit"  # hf profile: "4bit" or "none"
dataset = ""  # hf profile: .json/.jsonl (or hub id) with prompt/chosen (weak model)/rejected (weaker model)
device = "auto"  # "auto", "cpu" or "cuda"
out_dir = "../reproductions/delta"  # where figures and result.json go
beta = 5.0  # β of length-normalised DPO (the paper's headline config)
lr = 1e-4  # AdamW learning rate for full fine-tuning of the toy student (as in 01_dpo; the paper's 5e-8 is for 8B)
steps = 150  # training steps per arm (SFT and DPO alike)
batch_size = 32  # pairs (or SFT examples) per step
weak_steps = 400  # SFT steps of the weak teacher (the student has 800)
weaker_steps = 150  # SFT steps of the weaker teacher
weakest_steps = 60  # SFT steps of the weakest teacher
lora_r = 16  # hf profile: LoRA rank
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
from prefkit.losses import norm_dpo_loss
from prefkit.models import Reference, resolve_device
from prefkit.evaluate import oracle_eval
from prefkit.repro import claims_table, compare, gate, per_seed, seed_everything, write_result
from prefkit.train import StepBatches, TrainConfig, sft_objective, train

from prefkit.repro import torch_threads

torch.set_num_threads(torch_threads())
dev = resolve_device(device)
if smoke:  # a quick pass over every cell: fewer seeds, steps, prompts and arms (see the claims section)
    n_seeds, steps = 1, min(steps, 20)
    weak_steps, weaker_steps, weakest_steps = 60, 30, 10
seeds = list(range(seed, seed + n_seeds))
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
seed_everything(seed)
figures = []
print(f"profile={profile} smoke={smoke} device={dev} seeds={seeds}")

# %% [markdown]
# ## The loss
#
# $$\mathcal{L} = -\log\sigma\Big(\beta\Big[\frac{1}{|y_w|}\log\frac{\pi(y_w|x)}{\pi_\text{ref}(y_w|x)} -
# \frac{1}{|y_l|}\log\frac{\pi(y_l|x)}{\pi_\text{ref}(y_l|x)}\Big]\Big)$$
#
# DPO on per-token log-ratios (Tülu 3's `dpo_norm`), with π_ref the student before training; y_w is always the
# stronger teacher's answer.

# %%
print(inspect.getsource(norm_dpo_loss))

# %% [markdown]
# ## The student and the teacher ladder
#
# Student: the SFT model of `01_dpo` (800 steps on noisy demonstrations). Teachers: the same model trained for
# `weak_steps`, `weaker_steps` and `weakest_steps` steps. Each seed draws one answer per training prompt from each
# teacher; pairs whose two answers are identical carry no preference and are dropped (counted).

# %%
from prefkit.generate import sample, sample_table
from prefkit.models import TinyLlamaConfig
from prefkit.toy import OracleEval, ToyBaseConfig, describe, run_arm, sft_base
from prefkit.worlds import StringWorld

if profile == "toy":
    world = StringWorld(seed=0, n_train=400 if smoke else 2000, n_eval=64 if smoke else 512)
    tok = world.tokenizer
    base_cfg = ToyBaseConfig(steps=150 if smoke else 800, model=TinyLlamaConfig())
    student = sft_base(world, base_cfg).to(dev)
    ladder = {"weak": weak_steps, "weaker": weaker_steps, "weakest": weakest_steps}
    teachers = {
        name: sft_base(world, ToyBaseConfig(steps=k, warmup_steps=min(50, k // 4), model=TinyLlamaConfig())).to(dev)
        for name, k in ladder.items()
    }
    # per-prompt oracle scores of one sample each (first seed): the units of the ladder's gates
    ladder_units = {
        n: oracle_eval(world.score, m, tok, world.eval_prompts, seed=seeds[0])["per_prompt"]["score"]
        for n, m in {"student": student, **teachers}.items()
    }
    quality = {n: float(np.mean(u)) for n, u in ladder_units.items()}
    answers = {
        (s, n): [ys[0] for ys in sample(m, tok, world.train_prompts, seed=s)]
        for s in seeds
        for n, m in teachers.items()
    }
    ref_samples = {s: [r[0] for r in sample(student, tok, world.eval_prompts, seed=10_000 + s)] for s in seeds}
    display(pd.DataFrame([quality], index=["oracle score of samples"]).round(3))


def judged_pairs(s):
    """The standard recipe's pairs: two of the student's own answers per training prompt, labelled by the oracle
    (a perfect judge, where the paper's Tülu 3 baseline used GPT-4o); tied answers dropped."""
    rows = []
    for p, (a, b) in zip(world.train_prompts, sample(student, tok, world.train_prompts, n=2, seed=20_000 + s)):
        sa, sb = world.score(p, a), world.score(p, b)
        if sa != sb:
            rows.append({"prompt": p, "chosen": a if sa > sb else b, "rejected": b if sa > sb else a})
    return rows, len(world.train_prompts) - len(rows)


def delta_pairs(s, chosen, rejected):
    """weak-vs-weaker pairs: the ``chosen`` teacher's answer over the ``rejected`` one's; identical answers dropped."""
    a, b = answers[(s, chosen)], answers[(s, rejected)]
    rows = [{"prompt": p, "chosen": x, "rejected": y} for p, x, y in zip(world.train_prompts, a, b) if x != y]
    return rows, len(world.train_prompts) - len(rows)


# %% [markdown]
# ## Training: SFT on the weak teacher vs DPO on teacher pairs
#
# Every arm starts from the student and trains for `steps` steps of `batch_size` examples with the same learning
# rate. Besides the teacher pairs, one arm follows the standard recipe the paper compares with: two of the student's
# own answers per training prompt, labelled by the oracle (our perfect stand-in for the GPT-4o judge of Tülu 3). Evaluation: one sampled answer per held-out prompt, oracle score, win rate against the student's own sample
# (ties count half) and KL to the student.

# %%
arms = {
    "weak > weakest": ("weak", "weakest"),
    "weak > weaker": ("weak", "weaker"),
    "weakest > weak": ("weakest", "weak"),
    "oracle-judged": None,  # the student's own answers, labelled by the oracle
}
if smoke:
    arms = {k: arms[k] for k in ("weak > weakest",)}
final, dropped, units = [], {}, {}  # units[(arm, seed)]: per-prompt values of the final evaluation
if profile == "toy":
    for s in seeds:
        ev = OracleEval(world, world.eval_prompts, ref_samples[s], None, beta, s)
        sft_model = copy.deepcopy(student)
        sft_rows = [{"prompt": p, "response": y} for p, y in zip(world.train_prompts, answers[(s, "weak")])]
        cfg = TrainConfig(steps=steps, lr=lr, seed=s, eval_every=0, desc=f"SFT on weak s{s}")
        train(sft_model, sft_objective(), StepBatches(sft_rows, tok, batch_size, seed=s, kind="sft"), cfg)
        final.append({"arm": "SFT on weak", "seed": s, **ev(Reference(student, "copy"))(sft_model, steps)})
        units[("SFT on weak", s)] = ev.last_per_prompt
        for name, pair in arms.items():
            rows, dropped[(s, name)] = judged_pairs(s) if pair is None else delta_pairs(s, *pair)
            cfg = TrainConfig(steps=steps, lr=lr, seed=s, desc=f"DPO {name} s{s}")
            _, _, hist = run_arm(student, tok, rows, norm_dpo_loss, cfg, ev, batch_size=batch_size, beta=beta)
            final.append({"arm": f"DPO {name}", "seed": s, **hist.evals.iloc[-1].to_dict()})
            units[(f"DPO {name}", s)] = ev.last_per_prompt
    final = pd.DataFrame(final)
    display(final.groupby("arm", sort=False)[["score", "win_rate", "kl"]].agg(["mean", "std"]).round(3))

# %% [markdown]
# ### Where each arm lands (L1-L4)
#
# Oracle score of sampled answers on held-out prompts, mean ± std over seeds. Dashed lines: the student before
# training and the three teachers (one sample per prompt, first seed).

# %%
if profile == "toy":
    fig, (ax,) = plot.figure(width=6.0, height=3.6)
    g = final.groupby("arm", sort=False)["score"].agg(["mean", "std"])
    ax.bar(range(len(g)), g["mean"], yerr=g["std"], capsize=2, color=plot.PALETTE[: len(g)])
    ax.set_xticks(range(len(g)), list(g.index), fontsize=7)
    for name, q in quality.items():
        ax.axhline(q, ls="--", lw=1, color="black" if name == "student" else "gray")
        ax.annotate(f"{name} {q:.2f}", (len(g) - 0.5, q), fontsize=7, va="bottom", ha="right")
    ax.set(ylabel="oracle score of samples", title=f"Student after each arm (n={len(seeds)} seeds)")
    ax.set_ylim(min(quality.values()) - 0.05, max(g["mean"].max(), quality["student"]) + 0.05)
    figures.append(plot.save(fig, out, "delta_arms.png"))

# %% [markdown]
# ## Why it can work: logistic regression
#
# The paper proves the effect for logistic regression (Sec. 6). We could not check its exact statement, so this is
# our reconstruction, simulated in seconds: inputs x ~ N(0, I_d), a truth θ*, and models judged by their cosine to
# θ*. A student (cosine a_s = 0.9) and two weaker teachers (cosines a_c and a_r, random error directions) answer
# sign(⟨θ, x⟩). DPO from the student on pairs (chosen = teacher c's answer, rejected = teacher r's) is logistic
# regression on the inputs where the teachers disagree, and its first step moves the student along u_c - u_r; in
# high dimension that changes the student's cosine by ∝ (a_c - a_r)(1 - a_s²): up iff the chosen teacher is closer
# to the truth, however weak both are. We take one small step (learning rate 0.01) on 20 000 pairs and plot the
# change of the cosine per unit step against the gap a_c - a_r (a_c + a_r = 1), for three dimensions; in low
# dimension the teachers' error directions overlap with the student's and the argument does not hold.

# %%
from prefkit.worlds.logistic import DeltaLogistic

if profile == "toy":  # the simulation is about the method, not your model: the hf profile skips it
    print(inspect.getsource(DeltaLogistic.run))
    gaps = [-0.4, -0.2, 0.2, 0.4]
    dims = [10, 1000] if smoke else [10, 100, 1000]
    sim = []
    for d in dims:
        for gap in gaps:
            for s in seeds:
                c = DeltaLogistic(d=d, a_c=0.5 + gap / 2, a_r=0.5 - gap / 2, n=20_000, seed=s).run(
                    "dpo", steps=1, lr=0.01
                )
                sim.append({"d": d, "gap": gap, "seed": s, "dcos": (c[1] - c[0]) / 0.01})
    sim = pd.DataFrame(sim)
    fig, (ax,) = plot.figure(width=5.0, height=3.6)
    for d, g in sim.groupby("d"):
        m = g.groupby("gap")["dcos"].agg(["mean", "std"])
        ax.errorbar(m.index, m["mean"], yerr=m["std"], marker="o", capsize=2, label=f"d = {d} (n={len(seeds)} seeds)")
    ax.axhline(0, color="gray", lw=1)
    ax.axvline(0, color="gray", lw=1)
    ax.set(
        xlabel="teacher gap a_c - a_r", ylabel="d cos(θ, θ*) per unit step", title="Student a_s = 0.9: first DPO step"
    )
    ax.legend(fontsize=7)
    figures.append(plot.save(fig, out, "logistic_theory.png"))

# %% [markdown]
# ## `hf` profile: length-normalised DPO on your weak-vs-weaker pairs
#
# Give a file whose `chosen` answers come from a weak model and `rejected` from a weaker one (no judge). No oracle:
# the run reports held-out implicit-reward accuracy and margins before and after, and samples. No claim is asserted.

# %%
if profile == "hf":
    from prefkit.data import load_pairwise, split_held_out
    from prefkit.evaluate import ranking_report
    from prefkit.models import LoraSpec, load_lm

    base, tok = load_lm(model_name, quantize=quantize, lora=LoraSpec(r=lora_r), device=device)
    rows = load_pairwise(dataset, limit=200 if smoke else None)
    train_rows, held_out = split_held_out(rows)
    ref = Reference(base, mode="adapters_off")
    before = ranking_report(base, ref, tok, held_out, beta)
    cfg = TrainConfig(steps=min(steps, 10) if smoke else steps, lr=lora_lr, seed=seeds[0], desc="DPO-norm (hf)")
    _, _, hist = run_arm(base, tok, train_rows, norm_dpo_loss, cfg, None, "adapters_off", min(batch_size, 8), beta=beta)
    after = ranking_report(base, ref, tok, held_out, beta)
    display(pd.DataFrame({"before": before, "after": after}))
    fig = plot.training_curves(hist.steps, {"loss": "length-normalised DPO loss"}, f"{model_name}: β={beta}")
    figures.append(plot.save(fig, out, "hf_training.png"))
    display(sample_table(base, tok, [r["prompt"] for r in held_out[:3]], seed=seeds[0]))

# %% [markdown]
# ## Claims: paper vs ours
#
# Fixed before the full run. Every language-model comparison is paired per evaluation prompt and judged with
# `prefkit.claims` (hierarchical bootstrap over seeds, then prompts): *reproduced* needs the 95% interval above 0 and
# an estimate of at least **delta = 0.02 oracle score**. Why 0.02: the oracle gives partial credit in [0, 1]; the
# student sits about 0.1 above the weak teacher, so 0.02 is a fifth of the distance between two rungs of the ladder,
# the smallest change a reader comparing these arms would act on (and about 1.5 times the paired noise of one
# sample per prompt on 512 prompts). H3 says "not worse": non-inferiority with a **margin of 0.02**, one-sided. The
# gates G1-G3 check the premise on the first seed's samples (interval of the paired difference above 0); if the
# ladder is not ordered, the claims about its rungs are *not testable*. T1 is a simulation of our reconstruction of
# the paper's Sec. 6 argument: its units are the four teacher gaps, each agreeing (1) or not (0) in sign with the
# change of the student's cosine, compared with chance (0.5), delta 0.25. In smoke mode (weak teachers of 10-60
# steps, a 150-step student, 20 training steps, one arm) only T1 is asserted.

# %%
claims = []
DELTA = 0.02  # oracle score (see above)
if profile == "toy":
    t1 = sim[sim.d == max(dims)].sort_values(["seed", "gap"])
    agree = [((g.dcos > 0) == (g.gap > 0)).astype(float).to_numpy() for _, g in t1.groupby("seed")]
    claims.append(compare(
        "T1", f"logistic regression, d = {max(dims)}: the student's cosine rises iff the chosen teacher is closer to "
        "the truth (a simulation of our reconstruction)", "share of teacher gaps where sign(Δcos) = sign(gap), minus chance (0.5)",
        agree, 0.5, delta=0.25, kind="secondary",
        paper="Sec. 6: the teachers' gap gives a useful signal to a stronger student (logistic regression)",
        extra={f"d={d}": sim[sim.d == d].groupby("gap")["dcos"].mean().round(5).to_dict() for d in dims},
    ))  # fmt: skip
else:
    claims.append(per_seed(
        "hf-heldout", "held-out implicit-reward accuracy after DPO on weak > weaker (no oracle: not asserted)",
        "reward accuracy", [after["reward_acc"]], 0.5, delta=0.03, asserted=False,
    ))  # fmt: skip
if profile == "toy":
    ladder = [("G1", "student", "weak"), ("G2", "weak", "weaker"), ("G3", "weaker", "weakest")]
    for gid, hi, lo in ladder:
        claims.append(gate(
            gid, f"the {hi} model scores above the {lo} teacher", f"oracle score {hi} - {lo} (first seed)",
            [np.subtract(ladder_units[hi], ladder_units[lo])], 0.0, asserted=not smoke,
            extra={hi: quality[hi], lo: quality[lo]},
        ))  # fmt: skip
    gates = [g for g, _, _ in ladder]
    u = lambda arm, key="score": [units[(arm, s)][key] for s in seeds]  # noqa: E731
    student_score = u("SFT on weak", "ref_score")  # the student's own samples, the same for every arm of a seed
    paper_h = "Tülu-3-8B-SFT + DPO on Qwen2.5-3B > 1.5B answers: avg 57.2 -> 63.4"
    for cid, arm, rungs in [
        ("H1", "DPO weak > weaker", "weak > weaker"),
        ("H2", "DPO weak > weakest", "weak > weakest"),
    ]:
        if (arm, seeds[0]) in units:
            claims.append(compare(
                cid, f"DPO on {rungs} pairs (no judge) raises the student's score", f"oracle score: {arm} - student",
                u(arm), student_score, delta=DELTA, requires=gates, asserted=not smoke, paper=paper_h,
                extra={"win_rate": [float(np.mean(units[(arm, s)]["win"])) for s in seeds]},
            ))  # fmt: skip
    if not smoke:
        claims.append(compare(
            "H3", "delta DPO (weak > weakest, no judge) is not worse than DPO on oracle-judged pairs of the student's "
            "own answers", "oracle score: DPO weak > weakest - DPO oracle-judged", u("DPO weak > weakest"),
            u("DPO oracle-judged"), margin=DELTA, requires=gates,
            paper="delta DPO 63.4 vs Tülu 3 DPO (GPT-4o-judged pairs) 63.0: matches",
        ))  # fmt: skip
    claims.append(compare(
        "H4", "SFT on the weak teacher's answers lowers the student's score", "oracle score: SFT on weak - student",
        u("SFT on weak"), student_score, delta=DELTA, direction="less", requires=["G1"], asserted=not smoke,
        paper="SFT on weak data hurts a stronger model",
    ))  # fmt: skip
    if not smoke:
        claims.append(compare(
            "L3", "the gain grows with the teachers' gap", "oracle score: DPO weak > weakest - DPO weak > weaker",
            u("DPO weak > weakest"), u("DPO weak > weaker"), delta=DELTA, kind="secondary", requires=gates,
            paper="larger deltas help more (model-ladder analysis)",
        ))  # fmt: skip
        claims.append(compare(
            "L4", "reversed pairs (weakest > weak) lower the student's score",
            "oracle score: DPO weakest > weak - student", u("DPO weakest > weak"), student_score, delta=DELTA,
            direction="less", kind="secondary", requires=gates, paper="—",
        ))  # fmt: skip

display(claims_table(claims))

# %%
names = ["seed", "n_seeds", "smoke", "profile", "model_name", "quantize", "dataset", "beta", "lr", "steps",
         "batch_size", "weak_steps", "weaker_steps", "weakest_steps", "lora_r", "lora_lr"]  # fmt: skip
params = {k: globals()[k] for k in names}
params["claim_delta"] = DELTA
extra = {"notebook": "04_delta"}
if profile == "toy":
    extra["logistic"] = sim.to_dict("records")
    params.update(base=asdict(base_cfg), world={"seed": world.seed, "demo_noise": world.demo_noise})
    extra.update(model=describe(student), quality=quality, arms=final.to_dict("records"),
                 dropped={f"{s}/{a}": n for (s, a), n in dropped.items()})  # fmt: skip
path = write_result(
    out,
    "delta",
    {
        "arxiv": "2507.06187",
        "title": "The Delta Learning Hypothesis: Preference Tuning on Weak Data can Yield Strong Gains",
        "claim": "DPO on weak-over-weaker pairs (no judge) improves a stronger model; SFT on the weak data hurts",
        "number": "Tülu-3-8B-SFT: avg 57.2 -> 63.4 with delta DPO vs 63.0 for Tülu 3 DPO (11 benchmarks)",
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
    "H1": ("not reproduced", "the pairs of adjacent rungs moved the student at least as far as the larger-gap pairs "
           "did (its KL to the student is higher than weak > weakest's on every seed, see the arms table) without "
           "raising its score beyond noise. The hypothesis held at the larger gap (H2), and the gain grew with the gap "
           "(L3), as in the paper's ladder analysis. We have not isolated why the adjacent gap carries no usable "
           "direction for this student; the paper's headline pair is a gap between two far larger models, which our "
           "ladder of training lengths does not emulate."),
    "H3": ("inconclusive", "delta DPO lands below DPO on oracle-judged pairs and the interval reaches just past the "
           "margin, so this run cannot tell a shortfall inside the margin from one outside it. Our baseline is "
           "stronger than the paper's: a perfect judge on the student's own answers, where Tülu 3 used GPT-4o on "
           "other models' answers. More seeds or more evaluation samples per prompt would narrow the interval."),
}  # fmt: skip
display(Markdown(what_we_found(path, why if profile == "toy" and not smoke else {})))

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
# | id | claim | source |
# |---|---|---|
# | C0 | DPO fits its training preferences: implicit-reward accuracy on the training pairs > 0.6 | DPO paper, Sec. 4 (what the loss optimises) |
# | C1-dpo | DPO raises the oracle score over the SFT reference (win rate > 0.5) at modest KL; figure: the score-vs-KL frontier across β | DPO paper, Fig. 2 |
# | C1-ipo | IPO does the same | IPO paper |
# | C2-gap | after DPO, ranking accuracy on the training pairs stays well below the idealized ranking accuracy (gap ≥ 0.10) | Chen et al., Tab. 1: 40-54% observed vs 97-99% idealized |
# | C2-flip | DPO rarely flips pairs the reference ranked wrong (< 20% of them end up ranked right) | Chen et al., Sec. 4 |
# | C3 | ranking accuracy and oracle win rate come apart as KL grows: in an over-optimisation run the win rate ends ≥ 0.05 below its peak while ranking accuracy does not fall | Chen et al., Sec. 5; reward over-optimisation |
# | C4 | QLoRA (4-bit base + LoRA, adapters-off reference) tracks full fine-tuning: final oracle scores within 0.05 | Dettmers et al. 2023 |
#
# Every claim is measured over `n_seeds` seeds (a seed draws the preference data, the rater labels, the batch order
# and the evaluation samples; the SFT base is shared) and its rule is applied to each seed separately.

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
lora_lr = 1e-3  # learning rate for LoRA adapters (QLoRA arm and hf profile)
lora_r = 16  # LoRA rank
steps = 150  # preference-training steps per arm
batch_size = 32  # pairs per step

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("prefkit") is None:  # Colab or a bare kernel: install prefkit from its repository
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/prefkit/prefkit"])

# %%
import copy
import inspect
from dataclasses import asdict
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from IPython.display import display

from prefkit import plot
from prefkit.evaluate import ranking_report
from prefkit.losses import dpo_loss, ipo_loss
from prefkit.models import LoraSpec, Reference, quantize_4bit, resolve_device
from prefkit.repro import claims_table, make_claim, seed_everything, write_result
from prefkit.train import TrainConfig

from prefkit.repro import torch_threads

torch.set_num_threads(torch_threads())
dev = resolve_device(device)
if smoke:  # a quick pass over every cell: fewer seeds, steps and prompts (see the claims section)
    n_seeds, steps, batch_size = (1 if profile == "hf" else 2), min(steps, 25), min(batch_size, 32)
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
# whose two samples are identical are dropped and counted. `hf`: the model is loaded in 4-bit with fresh LoRA
# adapters, and the preference data is split into train and held-out rows.

# %%
from prefkit.data import load_pairwise, split_held_out
from prefkit.generate import sample, sample_table
from prefkit.models import TinyLlamaConfig, load_lm
from prefkit.toy import ToyBaseConfig, describe, OracleEval, run_arm, sample_pairs, sft_base
from prefkit.worlds import StringWorld

if profile == "toy":
    world = StringWorld(seed=0, n_train=400 if smoke else 2000, n_eval=64 if smoke else 512)
    tok = world.tokenizer
    base_cfg = ToyBaseConfig(steps=150 if smoke else 800, model=TinyLlamaConfig())
    base = sft_base(world, base_cfg).to(dev)
    eval_prompts = world.eval_prompts
    pairs, dropped = {}, {}
    for s in seeds:
        pairs[s], dropped[s] = sample_pairs(world, base, world.train_prompts, seed=s)
    ref_samples = {s: [r[0] for r in sample(base, tok, eval_prompts, seed=10_000 + s)] for s in seeds}
    print(describe(base), {s: (len(pairs[s]), dropped[s]) for s in seeds})
    example = pairs[seeds[0]][0]
    display(pd.DataFrame([{k: example[k] for k in ("prompt", "chosen", "rejected", "p_true")}]))
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

# %%
betas = [beta] if smoke else sorted({0.03, beta, 0.3})
taus = [0.5] if smoke else [0.5, 1.0]  # IPO's τ, on per-token averaged log-ratios
n_rank = 64 if smoke else 256  # training pairs used for ranking accuracies
eval_every = steps if smoke else max(1, steps // 3)  # smoke: evaluate at the start and the end only
arms = [("DPO", dpo_loss, b) for b in betas] + [("IPO", ipo_loss, t) for t in taus]
final, curves = [], {}
if profile == "toy":
    for s in seeds:
        for name, loss, b in arms:
            main = name == "DPO" and b == beta
            cfg = TrainConfig(steps=steps, lr=lr, seed=s, eval_every=eval_every if main else 0, desc=f"{name} {b} s{s}")
            ev = OracleEval(world, eval_prompts, ref_samples[s], pairs[s][:n_rank], b, s)
            policy, ref, hist = run_arm(base, tok, pairs[s], loss, cfg, ev, batch_size=batch_size, beta=b)
            final.append({"method": name, "beta": b, "seed": s, **hist.evals.iloc[-1].to_dict()})
            if main:
                curves[("full", s)] = hist.evals
    final = pd.DataFrame(final)
    display(
        final.groupby(["method", "beta"])[["score", "win_rate", "kl", "length", "ranking_acc"]].agg(["mean", "std"])
    )

# %% [markdown]
# ### The reward-KL frontier (C1)
#
# Each point is one (method, β) arm: mean over seeds with ± one standard deviation both ways. Smaller β lets the
# policy move further from π_ref (more KL); the DPO paper's Fig. 2 shows DPO reaching higher reward than PPO at every
# KL. Here the "reward" is the exact oracle score of sampled responses.

# %%
figures = []
if profile == "toy":
    fig, (ax,) = plot.figure(width=5.2, height=3.8)
    for name, g in final.groupby("method"):
        m = g.groupby("beta")[["kl", "score"]].agg(["mean", "std"])
        ax.errorbar(
            m[("kl", "mean")],
            m[("score", "mean")],
            xerr=m[("kl", "std")],
            yerr=m[("score", "std")],
            marker="o",
            capsize=2,
            label=f"{name} (n={len(seeds)} seeds)",
        )
        for b, row in m.iterrows():
            ax.annotate(
                f"{'β' if name == 'DPO' else 'τ'}={b:g}",
                (row[("kl", "mean")], row[("score", "mean")]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.axhline(final["ref_score"].mean(), color="gray", ls="--", label="SFT reference")
    ax.set(xlabel="KL(π || π_ref) [nats / response]", ylabel="oracle score of samples", title="Score vs KL")
    ax.legend()
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
# measuring how well the preferences are fitted; the oracle win rate measures what the policy actually samples.

# %%
over_beta, over_steps = 0.01, 2 * steps
if profile == "toy":
    for s in seeds:
        cfg = TrainConfig(
            steps=over_steps, lr=lr, seed=s, eval_every=max(1, over_steps // (2 if smoke else 6)), desc=f"over-opt s{s}"
        )
        ev = OracleEval(world, eval_prompts, ref_samples[s], pairs[s][:n_rank], over_beta, s)
        _, _, hist = run_arm(base, tok, pairs[s], dpo_loss, cfg, ev, batch_size=batch_size, beta=over_beta)
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
# adapters disabled. LoRA trains far fewer parameters, so it gets its own (larger) learning rate, `lora_lr`.
# bitsandbytes' 4-bit layers are slow on CPU, so smoke mode runs this arm for the first seed only.

# %%
if profile == "toy":
    import tempfile

    qlora_seeds = seeds[:1] if smoke else seeds
    for s in qlora_seeds:
        qbase = quantize_4bit(base, tempfile.mkdtemp(prefix="prefkit-q4-"), tok, lora=LoraSpec(r=lora_r), device=device)
        cfg = TrainConfig(steps=steps, lr=lora_lr, seed=s, eval_every=eval_every, desc=f"QLoRA s{s}")
        ev = OracleEval(world, eval_prompts, ref_samples[s], None, beta, s)
        _, _, hist = run_arm(qbase, tok, pairs[s], dpo_loss, cfg, ev, "adapters_off", batch_size, beta=beta)
        curves[("qlora", s)] = hist.evals
    fig, (ax,) = plot.figure(width=5.2)
    x = curves[("full", seeds[0])]["step"]
    plot.mean_band(ax, x, [curves[("full", s)]["score"] for s in qlora_seeds], "full fine-tuning (fp32)")
    plot.mean_band(ax, x, [curves[("qlora", s)]["score"] for s in qlora_seeds], f"QLoRA (NF4 + LoRA r{lora_r})")
    ax.set(xlabel="step", ylabel="oracle score of samples", title=f"DPO β={beta}: QLoRA vs full")
    ax.legend()
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
# ## Claims: paper vs ours
#
# Each rule is applied to every seed. The ledger records how many seeds passed (*old rule: k/n seeds*); a sign that
# holds on every seed is not evidence, and these claims are to be restated with intervals and minimum effects
# (`prefkit.claims`). In smoke mode (25 steps on a briefly trained base) only C0 is asserted: the oracle-level claims
# need the full number of steps and evaluation prompts to rise above sampling noise, so there they are recorded as *not
# asserted*.

# %%
from prefkit.claims import OLD_RULE, Claim, old_rule_status

claims = []
if profile == "toy":
    main = final[(final.method == "DPO") & (final.beta == beta)].set_index("seed").loc[seeds]
    ipo_tau = 0.5
    ipo = final[(final.method == "IPO") & (final.beta == ipo_tau)].set_index("seed").loc[seeds]
    claims.append(
        make_claim(
            "C0",
            f"DPO (β={beta}) fits its training preferences",
            "implicit-reward accuracy on training pairs",
            main["reward_acc"],
            lambda v: v > 0.6,
            "> 0.6 per seed",
            paper="the DPO loss is the Bradley-Terry likelihood of the implicit reward β log π/π_ref",
        )
    )
    claims.append(
        make_claim(
            "C1-dpo",
            f"DPO (β={beta}) beats the SFT reference on oracle win rate",
            "win rate vs reference",
            main["win_rate"],
            lambda v: v > 0.5,
            "win rate > 0.5 per seed",
            asserted=not smoke,
            paper="TL;DR: ~61% win rate vs reference summaries (GPT-4 judge); DPO's reward-KL frontier dominates PPO's (IMDb)",
            extra={"kl": main["kl"].tolist(), "score": main["score"].tolist(), "ref_score": main["ref_score"].tolist()},
        )
    )
    claims.append(
        make_claim(
            "C1-ipo",
            f"IPO (τ={ipo_tau}) beats the SFT reference on oracle win rate",
            "win rate vs reference",
            ipo["win_rate"],
            lambda v: v > 0.5,
            "win rate > 0.5 per seed",
            asserted=not smoke,
            paper="IPO is a sound alternative to DPO that does not overfit deterministic preferences",
            extra={"kl": ipo["kl"].tolist(), "score": ipo["score"].tolist()},
        )
    )
    claims.append(
        make_claim(
            "C2-gap",
            "after DPO, ranking accuracy stays well below the idealized ranking accuracy",
            "idealized - observed ranking accuracy",
            main["idealized_acc"] - main["ranking_acc"],
            lambda v: v >= 0.10,
            "gap >= 0.10 per seed",
            asserted=not smoke,
            paper="40-54% observed vs 97-99% idealized ranking accuracy (7B models)",
            extra={
                "ranking_acc": main["ranking_acc"].tolist(),
                "idealized_acc": main["idealized_acc"].tolist(),
                "ref_ranking_acc": main["ref_ranking_acc"].tolist(),
            },
        )
    )
    claims.append(
        make_claim(
            "C2-flip",
            "DPO rarely flips pairs the reference ranked wrong",
            "share of ref-wrong pairs now ranked right",
            main["flipped_to_right"],
            lambda v: v < 0.20,
            "< 0.20 per seed",
            asserted=not smoke,
            paper="DPO rarely flips the ranking of a pair the reference got wrong",
        )
    )
    over = [curves[("over", s)] for s in seeds]
    drop = [e["win_rate"].max() - e["win_rate"].iloc[-1] for e in over]
    acc_kept = [e["ranking_acc"].iloc[-1] >= e["ranking_acc"].iloc[int(e["win_rate"].idxmax())] for e in over]
    c3_pass = [bool(d >= 0.05 and k) for d, k in zip(drop, acc_kept)]
    claims.append(
        Claim(
            "C3",
            f"with β={over_beta} and {over_steps} steps, win rate falls from its peak while ranking accuracy does not",
            "win-rate drop from peak",
            OLD_RULE,
            [float(d) for d in drop],
            test="drop >= 0.05 and final ranking accuracy >= its value at the win-rate peak",
            per_seed_pass=c3_pass,
            own_status=old_rule_status(c3_pass),
            asserted=not smoke,
            paper="ranking accuracy and win rate are only weakly correlated once the policy moves far from π_ref",
            extra={"ranking_acc_kept": acc_kept, "final_kl": [float(e["kl"].iloc[-1]) for e in over]},
        )
    )
    gap = [abs(curves[("qlora", s)]["score"].iloc[-1] - curves[("full", s)]["score"].iloc[-1]) for s in qlora_seeds]
    claims.append(
        make_claim(
            "C4",
            "QLoRA (NF4 + LoRA, adapters-off reference) tracks full fine-tuning",
            "|score QLoRA - score full|",
            gap,
            lambda v: v <= 0.05,
            "final oracle scores within 0.05 per seed",
            asserted=not smoke,
            paper="QLoRA matches 16-bit full fine-tuning (Dettmers et al. 2023)",
        )
    )
else:
    claims.append(
        make_claim(
            "hf-heldout",
            "held-out implicit-reward accuracy after DPO (no oracle: not asserted)",
            "reward accuracy",
            [after["reward_acc"]],
            lambda v: v > 0.5,
            "> 0.5",
            asserted=False,
        )
    )

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
    )
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

why = {}  # claim id -> (the status a note was written for, why the claim came out that way in the toy setting)
display(Markdown(what_we_found(path, why)))

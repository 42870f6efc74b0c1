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
# # DOVE / JPO: preferences over (instruction, response) pairs
#
# Bansal, Suvarna, Bhatt, Peng, Chang, Grover (2024). *Comparing Bad Apples to Good Oranges: Aligning Large Language
# Models via Joint Preference Optimization.* [arXiv:2404.00530](https://arxiv.org/abs/2404.00530) (the method is
# called DOVE in v1 and JPO later; Findings of ACL 2025).
#
# **Idea.** DPO only compares two responses to the *same* prompt. People can also judge "this answer to that
# question is better than that answer to this one", and such *joint* comparisons are cheap to collect and cover
# prompts a conditional pair never mixes. DOVE keeps DPO's loss but writes it over the joint probability of the
# (instruction, response) pair, log π(x, y) = log π(x) + log π(y | x): the prompt tokens are scored too. When the two
# prompts are the same the prompt terms cancel and the loss is exactly DPO, so conditional and joint pairs mix in one
# run.
#
# **The catch we look for.** With different prompts the prompt terms do *not* cancel: the policy can widen a joint
# margin by making the chosen pair's prompt more likely (or the rejected one's less likely) without touching any
# response. We measure the part of the implicit margin that prompt tokens carry, against the same part under plain
# DPO (which never trains on prompt tokens, so its part is only the side effect of training on responses), and how
# far log π(x) drifts.
#
# **Where we run it.** `toy`: the string-operations world of `01_dpo`. Its oracle scores are absolute (every answer
# gets a grade in [0, 1] whatever the prompt), so the simulated rater can compare answers to different prompts,
# P((x1, y1) > (x2, y2)) = σ((score(x1, y1) - score(x2, y2))/τ), which is what joint preferences need. `hf`: DOVE
# on your model (4-bit + LoRA) and your joint pairs (`prompt_chosen`, `chosen`, `prompt_rejected`, `rejected`); no
# oracle, so no claim is asserted there.

# %% [markdown]
# ## Claims tested here
#
# | id | kind | claim | source |
# |---|---|---|---|
# | G1 | gate | DOVE at equal epochs fits its joint training pairs: joint implicit-reward accuracy on 256 of them > 0.6 | sanity: the joint pairs are learned at all (asserted in smoke mode too) |
# | G2 | gate | the same for DOVE at equal steps | sanity, for the claims built on the equal-step arms |
# | D1 | headline | DOVE on conditional + joint pairs beats DPO on the conditional pairs alone (oracle score of samples), same responses, **equal epochs** (the official protocol) | Bansal et al.: +5.2 (TL;DR) and +3.3 (Anthropic-Helpful) win-rate points over DPO |
# | D1-steps | secondary | the same at **equal steps** (equal compute: DOVE passes over its data about half as often) | ours: the budget-matched variant |
# | D2 | secondary | DOVE widens its joint margins through the prompt tokens: the signed prompt part of the implicit margin on its joint training pairs exceeds plain DPO's on the same pairs | ours: the cheap solution |
# | D3 | secondary | masking the prompt keeps log π(x) in place: per held-out prompt its drift per prompt token is smaller than under DOVE (equal steps) | ours; close to true by construction (the masked loss has no gradient on prompt tokens), so never a headline |
# | D4 | secondary | joint pairs matched on prompt difficulty beat unmatched ones when mixed with the conditional pairs (equal steps) | ours: matched pairs leave less to explain by the prompt |
#
# Beside D3 we report what masking costs: the masked arm's KL to π_ref and its oracle score against every other arm
# (a table below the figure, and D3's record). In the run before this restatement it had the largest KL and the
# lowest score of the five arms; that was seen, not predicted, so it is reported and not claimed.
#
# **What is held equal.** Every arm sees the same generated responses (two samples per training prompt from the SFT
# policy; the joint pairs reuse the first sample of each prompt), the same β, learning rate and batch size. Pair
# counts differ: conditional + joint has about twice the pairs of conditional alone (the counts table). The official
# code trains every method for a fixed number of epochs over its own data, so DOVE on conditional + joint pairs takes
# proportionally more steps than DPO on conditional pairs alone. Our headline arm does the same: DPO keeps its
# `steps` (the budget of `01_dpo`), and "DOVE, equal epochs" trains for `steps` × (its pairs / DPO's pairs) steps,
# worked out per seed (about 2.2 × `steps`), so both pass over their data equally often. The other DOVE arms (equal
# steps, prompt masked, joint only, matched) train for `steps` steps, as before, so D1-steps compares at equal compute
# and D3 and D4 compare arms of the same budget on data of the same size. The equal-epoch arm adds about 2.2 arms'
# worth of training to the five equal-step arms: the full run grows by roughly 40%.
#
# A seed draws the responses, the joint pairings, the batch order and the evaluation samples; the SFT base (π_ref)
# is shared by all seeds. Every comparison is paired: per held-out prompt (oracle score, log π(x) drift) or per joint
# training pair (the prompt part of the margin), every seed, summarised with a hierarchical bootstrap (the claims
# section below gives each minimum effect and why).

# %% tags=["parameters"]
seed = 0  # first seed; seeds are seed, seed + 1, ...
n_seeds = 3  # seeds per claim
smoke = False  # True: a < 90 s run on 2 CPU cores that checks the pipeline and the claims meaningful at that size
profile = "toy"  # "toy" (offline world with an oracle) or "hf" (a Hugging Face causal LM, 4-bit + LoRA)
model_name = ""  # hf profile: model id or local folder
quantize = "4bit"  # hf profile: "4bit" or "none"
dataset = ""  # hf profile: .json/.jsonl (or hub id) with prompt_chosen/chosen/prompt_rejected/rejected columns
device = "auto"  # "auto", "cpu" or "cuda"
out_dir = "../reproductions/dove"  # where figures and result.json go
beta = 0.1  # β of every arm (the official code's default, DPO's value)
lr = 1e-4  # AdamW learning rate for full fine-tuning of the toy model (as in 01_dpo)
steps = 150  # training steps of DPO and of the equal-step DOVE arms (the equal-epoch arm scales it by its pairs)
batch_size = 32  # pairs per step
lora_r = 8  # hf profile: LoRA rank (the official code's r = 8)
lora_lr = 5e-5  # hf profile: LoRA learning rate (the official code's 5e-5)

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
from prefkit.data import pairwise_to_joint
from prefkit.evaluate import joint_margin_parts, prompt_logps, response_logps
from prefkit.logps import encode_joint
from prefkit.losses import dpo_loss
from prefkit.models import resolve_device
from prefkit.repro import claims_table, compare, gate, per_seed, seed_everything, write_result
from prefkit.train import TrainConfig

from prefkit.repro import torch_threads

torch.set_num_threads(torch_threads())
dev = resolve_device(device)
if smoke:  # a quick pass over every cell: fewer seeds, steps, prompts and arms (see the claims section)
    n_seeds, steps = 1, min(steps, 10)  # the equal-epoch DOVE arm takes about 2.2 x
seeds = list(range(seed, seed + n_seeds))
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
seed_everything(seed)
figures = []
print(f"profile={profile} smoke={smoke} device={dev} seeds={seeds}")

# %% [markdown]
# ## The loss
#
# $$\mathcal{L}_\text{DOVE} = -\log \sigma\Big(\beta \log \frac{\pi(x_w, y_w)}{\pi_\text{ref}(x_w, y_w)}
# - \beta \log \frac{\pi(x_l, y_l)}{\pi_\text{ref}(x_l, y_l)}\Big), \qquad
# \log \pi(x, y) = \underbrace{\log \pi(x)}_{\text{prompt tokens}} + \log \pi(y \mid x)$$
#
# It is `dpo_loss` itself; what changes is the log-prob it is given: `encode_joint` puts the prompt tokens in the
# scored mask (everything after BOS, as the official code does by not masking the prompt labels), and
# `mask_prompt=True` gives the ordinary conditional log π(y | x) for the "prompt masked" arm. The test suite checks
# that with equal prompts the joint and the conditional losses agree to rounding.

# %%
print(inspect.getsource(encode_joint))
print(inspect.getsource(dpo_loss))

# %% [markdown]
# ## Data: one set of responses, three kinds of pairs
#
# Each seed samples two responses per training prompt from the SFT policy. *Conditional* pairs: the rater compares
# the two responses to one prompt (pairs of identical samples are dropped and counted). *Joint* pairs: each
# prompt's first sample is compared with the first sample of another prompt drawn at random; *matched* joint pairs
# draw that other prompt among those with the same number of operations and letters (equally hard).

# %%
from prefkit.generate import sample, sample_table
from prefkit.models import TinyLlamaConfig
from prefkit.toy import OracleEval, ToyBaseConfig, describe, joint_pairs, run_arm, sft_base
from prefkit.worlds import StringWorld

if profile == "toy":
    world = StringWorld(seed=0, n_train=400 if smoke else 2000, n_eval=64 if smoke else 512)
    tok = world.tokenizer
    base_cfg = ToyBaseConfig(steps=150 if smoke else 800, model=TinyLlamaConfig())
    base = sft_base(world, base_cfg).to(dev)
    data, counts = {}, []
    for s in seeds:
        cands = sample(base, tok, world.train_prompts, n=2, seed=s)
        cond, dropped = world.build_pairs(world.train_prompts, cands, random.Random(s))
        first = [c[0] for c in cands]
        data[s] = {
            "cond": cond,
            "joint": joint_pairs(world, world.train_prompts, first, seed=s),
            "matched": joint_pairs(world, world.train_prompts, first, seed=s, matched=True),
        }
        counts.append({"seed": s, "dropped (identical)": dropped, **{k: len(v) for k, v in data[s].items()}})
    ref_samples = {s: [r[0] for r in sample(base, tok, world.eval_prompts, seed=10_000 + s)] for s in seeds}
    print(describe(base))
    display(pd.DataFrame(counts))
    display(pd.DataFrame(data[seeds[0]]["joint"][:3]))

# %% [markdown]
# ## Training: six arms on the same responses
#
# Every arm fine-tunes a fresh copy of the SFT base (π_ref) with the same β, learning rate and batch size; π_ref's
# log-probs are computed once. DPO and the equal-step DOVE arms train for `steps` steps; "DOVE, equal epochs" for as
# many more as its extra pairs need to be seen as often as DPO sees its own. Conditional pairs enter the DOVE arms as
# joint rows with equal prompts. Evaluation samples one response per held-out prompt (oracle score, win rate against
# a reference sample, KL), measures log π(x) of the held-out prompts against π_ref's (drift, nats per prompt token),
# and splits the implicit margin on 256 training joint pairs into its prompt and response parts. Per-prompt and
# per-pair values are kept as the paired units of the claims.
#
# `joint_margin_parts` reports the split as means; the claims need it pair by pair, which `margin_per_pair` computes
# from the same two terms, log π(x) (`prompt_logps`) and log π(y | x) (`response_logps`).

# %%
arms = {  # name -> (pairs, prompt masked, equal epochs with DPO)
    "DPO (conditional)": ("cond", False, False),
    "DOVE, equal epochs": ("cond+joint", False, True),
    "DOVE, equal steps": ("cond+joint", False, False),
    "DOVE, prompt masked": ("cond+joint", True, False),
    "DOVE (joint only)": ("joint", False, False),
    "DOVE (conditional + matched joint)": ("cond+matched", False, False),
}
arms_all = dict(arms)
if smoke:
    arms = {k: arms[k] for k in ("DPO (conditional)", "DOVE, equal epochs")}


def rows_for(kind, d):
    joint = {"cond+joint": d["joint"], "joint": d["joint"], "cond+matched": d["matched"], "cond": []}[kind]
    cond = d["cond"] if kind.startswith("cond") else []
    return cond if kind == "cond" else pairwise_to_joint(cond) + joint


def margin_per_pair(policy, ref, rows):
    """β log π/π_ref of the prompt tokens and of the response tokens, chosen minus rejected, for each joint row:
    the terms whose means `joint_margin_parts` reports. Returns two (B,) arrays."""
    xs = [r["prompt_chosen"] for r in rows] + [r["prompt_rejected"] for r in rows]
    ys = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    with ref.as_model() as m:
        ref_x, ref_y = prompt_logps(m, tok, xs)[0], response_logps(m, tok, xs, ys)[0]
    x = beta * (prompt_logps(policy, tok, xs)[0] - ref_x)  # (2B,) log π(x)
    y = beta * (response_logps(policy, tok, xs, ys)[0] - ref_y)  # (2B,) log π(y | x)
    return x[: len(rows)] - x[len(rows) :], y[: len(rows)] - y[len(rows) :]


final, units = [], {}  # units[(arm, seed)]: per held-out prompt and per probe pair values of the final policy
if profile == "toy":
    for s in seeds:
        probe = data[s]["joint"][:256]  # joint pairs on which the margin is split
        n_dpo = len(rows_for("cond", data[s]))
        for name, (kind, masked, equal_epochs) in arms.items():
            rows = rows_for(kind, data[s])
            n_steps = round(steps * len(rows) / n_dpo) if equal_epochs else steps
            cfg = TrainConfig(steps=n_steps, lr=lr, seed=s, desc=f"{name} s{s}")
            ev = OracleEval(world, world.eval_prompts, ref_samples[s], None, beta, s)
            policy, ref, hist = run_arm(
                base, tok, rows, dpo_loss, cfg, ev, batch_size=batch_size, mask_prompt=masked, beta=beta
            )
            lp, n = prompt_logps(policy, tok, world.eval_prompts)
            with ref.as_model() as m:
                lp_ref, _ = prompt_logps(m, tok, world.eval_prompts)
            m_x, m_y = margin_per_pair(policy, ref, probe)
            units[(name, s)] = {**ev.last_per_prompt, "drift": (lp - lp_ref) / n, "prompt_margin": m_x,
                                "joint_correct": (m_x + m_y > 0) + 0.5 * (m_x + m_y == 0)}  # fmt: skip
            final.append({
                "arm": name, "seed": s, "pairs": len(rows), "epochs": n_steps * batch_size / len(rows),
                **hist.evals.iloc[-1].to_dict(), "prompt_drift": float(units[(name, s)]["drift"].mean()),
                **joint_margin_parts(policy, ref, tok, probe, beta),
            })  # fmt: skip
    final = pd.DataFrame(final)
    cols = ["pairs", "step", "epochs", "score", "win_rate", "kl", "prompt_drift", "margin_prompt", "prompt_share",
            "joint_reward_acc"]  # fmt: skip
    display(final.groupby("arm", sort=False)[cols].agg(["mean", "std"]).round(3))

# %% [markdown]
# ## What each arm buys, what it costs, and where its margin comes from (D1-D4)
#
# Mean ± std over seeds. First: oracle score of sampled answers on held-out prompts (dashed: the SFT reference).
# Second: KL to π_ref of those samples. Third: drift of log π(x) on held-out prompts, nats per prompt token (0 = the
# prompt is exactly as likely as under π_ref). Fourth: the signed prompt part of the implicit margin on joint
# training pairs, β [log π/π_ref(x_w) - log π/π_ref(x_l)] (0 = the prompts do not separate chosen from rejected).

# %%
short = {"DPO (conditional)": "DPO\ncond.", "DOVE, equal epochs": "DOVE\nequal ep.", "DOVE, equal steps": "DOVE\nequal st.",
         "DOVE, prompt masked": "DOVE\nmasked", "DOVE (joint only)": "DOVE\njoint only",
         "DOVE (conditional + matched joint)": "DOVE\nmatched"}  # fmt: skip
if profile == "toy":
    fig, axes = plot.figure(ncols=4, width=3.3, height=3.6)
    names = list(arms)
    panels = {"score": "oracle score of samples", "kl": "KL(π || π_ref)", "prompt_drift": "log π(x) drift / token",
              "margin_prompt": "prompt part of joint margin"}  # fmt: skip
    for ax, (col, title) in zip(axes, panels.items()):
        g = final.groupby("arm", sort=False)[col].agg(["mean", "std"]).loc[names]
        colors = [plot.PALETTE[list(arms_all).index(n)] for n in names]
        ax.bar(range(len(names)), g["mean"], yerr=g["std"], capsize=2, color=colors)
        ax.set_xticks(range(len(names)), [short[n] for n in names], fontsize=6)
        ax.set(title=f"{title} (n={len(seeds)})")
    axes[0].axhline(final["ref_score"].mean(), color="gray", ls="--", label="SFT reference")
    axes[0].set_ylim(min(final["score"].min(), final["ref_score"].min()) - 0.05, None)
    axes[0].legend(fontsize=7)
    for ax in axes[2:]:
        ax.axhline(0, color="gray", lw=1)
    fig.tight_layout()
    figures.append(plot.save(fig, out, "dove_arms.png"))

# %% [markdown]
# ### What masking the prompt costs
#
# Oracle score and KL to π_ref of every arm (means over seeds), ranked: score rank 1 is the lowest score, KL rank 1
# the largest KL. The equal-epoch arm trains about twice as long as the others, so its KL is not comparable with
# theirs; the masked arm's ranks among the equal-step arms are in D3's record.

# %%
if profile == "toy":
    cost = final.groupby("arm", sort=False)[["score", "kl"]].mean()
    cost["score rank (1 = lowest)"] = cost["score"].rank(method="min").astype(int)
    cost["KL rank (1 = largest)"] = cost["kl"].rank(ascending=False, method="min").astype(int)
    display(cost.round(3))

# %% [markdown]
# ## `hf` profile: DOVE on your model and joint pairs
#
# No oracle: the run is judged on held-out joint pairs before and after training (joint implicit-reward accuracy,
# the prompt's share of the margin) and by reading samples. No claim is asserted.

# %%
if profile == "hf":
    from prefkit.data import load_joint, split_held_out
    from prefkit.models import LoraSpec, Reference, load_lm

    base, tok = load_lm(model_name, quantize=quantize, lora=LoraSpec(r=lora_r), device=device)
    rows = load_joint(dataset, limit=200 if smoke else None)
    train_rows, held_out = split_held_out(rows)
    ref = Reference(base, mode="adapters_off")
    before = joint_margin_parts(base, ref, tok, held_out, beta)
    cfg = TrainConfig(steps=min(steps, 10) if smoke else steps, lr=lora_lr, seed=seeds[0], desc="DOVE (hf)")
    _, _, hist = run_arm(base, tok, train_rows, dpo_loss, cfg, None, "adapters_off", min(batch_size, 8), beta=beta)
    after = joint_margin_parts(base, ref, tok, held_out, beta)
    display(pd.DataFrame({"before": before, "after": after}))
    fig = plot.training_curves(hist.steps, {"loss": "DOVE loss"}, f"{model_name}: DOVE β={beta}")
    figures.append(plot.save(fig, out, "hf_training.png"))
    display(sample_table(base, tok, [r["prompt_chosen"] for r in held_out[:3]], seed=seeds[0]))

# %% [markdown]
# ## Claims: paper vs ours
#
# Fixed before the full run. Every comparison is paired (the same held-out prompts, or the same joint training pairs,
# under both arms) and judged with `prefkit.claims`: hierarchical bootstrap over seeds, then units within a seed;
# *reproduced* needs the 95% interval above 0 and an estimate of at least the minimum effect delta.
#
# - **D1, D1-steps, D4: delta = 0.02 oracle score** (per held-out prompt), the default for language-model arms
#   (`04_delta`). Why it holds here: the same world, SFT base and evaluation (one sample on each of 512 held-out
#   prompts); the oracle gives partial credit in [0, 1], and 0.02 is about 1.5 times the paired noise of one sample
#   per prompt on 512 prompts, so a smaller difference could not be told from one run's sampling noise, and it is the
#   smallest change a reader choosing between the two recipes would act on. The paper's gains are win-rate points
#   against gold answers, not oracle scores; our win rates against the SFT sample are in D1's record.
# - **D2: delta = 0.1** in the implicit reward's unit (β × nats, per joint training pair). A prompt part of 0.1 on its
#   own moves the implied preference σ(h) of a tied pair by 2.5 points, and at β = 0.1 it means the chosen pair's
#   prompt became e ≈ 2.7 times more likely, relative to the rejected pair's prompt, than under π_ref: a shortcut a
#   reader would want to know about. The control is plain DPO on the same pairs: it never trains on prompt tokens, so
#   its prompt part is only the side effect of training on responses. The unsigned prompt share this claim used
#   before reads almost as high for plain DPO as for DOVE (it counts drift in either direction), so it could not say
#   what DOVE adds; the share stays in the arms table and D2's record.
# - **D3: delta = 0.05 nats per prompt token** (|drift| per held-out prompt): every prompt token about 5% more or
#   less likely than under π_ref, about half a nat over a typical prompt of nine or ten tokens.
# - **Gates G1, G2**: joint implicit-reward accuracy per probe pair (1 right, 0 wrong, ½ tied); the whole 95%
#   interval must lie above 0.6, ten points above chance (the labels come from a noisy rater, so a perfect fit is not
#   expected). D1 and D2 rest on G1 (the equal-epoch arm), D1-steps, D3 and D4 on G2 (the equal-step arm).
#
# In smoke mode (10 DPO steps and about 20 for DOVE at equal epochs, a 150-step SFT base, two arms) only G1 is
# asserted; D1 and D2 are recorded as *not asserted*, and the equal-step arms do not run.

# %%
claims = []
DELTA = 0.02  # oracle score (see above)
DELTA_PROMPT = 0.1  # β × nats of prompt margin per joint pair (see above)
DELTA_DRIFT = 0.05  # nats per prompt token (see above)
if profile == "toy":
    u = lambda arm, key="score": [units[(arm, s)][key] for s in seeds]  # noqa: E731
    col = lambda arm, c: final.set_index(["arm", "seed"]).loc[arm, c].loc[seeds].tolist()  # noqa: E731
    dpo, dove_ep, dove_st = "DPO (conditional)", "DOVE, equal epochs", "DOVE, equal steps"
    paper_d1 = "+5.2 (TL;DR) and +3.3 (Anthropic-Helpful) win-rate points over DPO (GPT judge vs gold), equal epochs"
    for gid, arm, run_it in [("G1", dove_ep, True), ("G2", dove_st, not smoke)]:
        if run_it:
            claims.append(gate(
                gid, f"{arm} fits its joint training pairs", "joint implicit-reward accuracy (256 pairs)",
                u(arm, "joint_correct"), 0.6, paper="sanity", extra={"acc_per_seed": col(arm, "joint_reward_acc")},
            ))  # fmt: skip
    claims.append(compare(
        "D1", "DOVE on conditional + joint pairs beats DPO on conditional pairs alone, at equal epochs",
        f"oracle score: {dove_ep} - DPO", u(dove_ep), u(dpo), delta=DELTA, requires=["G1"], asserted=not smoke,
        paper=paper_d1, extra={"steps": col(dove_ep, "step"), "epochs": col(dove_ep, "epochs"),
                               "win_rate_dove": col(dove_ep, "win_rate"), "win_rate_dpo": col(dpo, "win_rate")},
    ))  # fmt: skip
    claims.append(compare(
        "D2", "DOVE widens its joint margins through the prompt tokens, beyond what plain DPO does to them",
        f"prompt part of the joint margin, β·nats: {dove_ep} - DPO", u(dove_ep, "prompt_margin"),
        u(dpo, "prompt_margin"), delta=DELTA_PROMPT, kind="secondary", requires=["G1"], asserted=not smoke,
        paper="—", extra={"prompt_share_dove": col(dove_ep, "prompt_share"), "prompt_share_dpo": col(dpo, "prompt_share"),
                         "margin_response_dove": col(dove_ep, "margin_response")},
    ))  # fmt: skip
    if not smoke:
        masked, matched = "DOVE, prompt masked", "DOVE (conditional + matched joint)"
        claims.append(compare(
            "D1-steps", "DOVE on conditional + joint pairs beats DPO on conditional pairs alone, at equal steps",
            f"oracle score: {dove_st} - DPO", u(dove_st), u(dpo), delta=DELTA, kind="secondary", requires=["G2"],
            paper=paper_d1, extra={"win_rate_dove": col(dove_st, "win_rate"), "win_rate_dpo": col(dpo, "win_rate")},
        ))  # fmt: skip
        same_steps = [a for a, (_, _, ep) in arms.items() if not ep]
        by_arm = final[final.arm.isin(same_steps)].groupby("arm")[["score", "kl"]].mean()
        claims.append(compare(
            "D3", "masking the prompt keeps log π(x) in place (smaller drift than DOVE at equal steps)",
            "|log π(x) drift| per prompt token: DOVE equal steps - masked",
            [np.abs(d) for d in u(dove_st, "drift")], [np.abs(d) for d in u(masked, "drift")], delta=DELTA_DRIFT,
            kind="secondary", requires=["G2"], paper="—",
            extra={"masked_score": col(masked, "score"), "masked_kl": col(masked, "kl"),
                   "score_rank_of_masked_among_equal_steps (1 = lowest)": int(by_arm["score"].rank(method="min")[masked]),
                   "kl_rank_of_masked_among_equal_steps (1 = largest)":
                       int(by_arm["kl"].rank(ascending=False, method="min")[masked]),
                   "score_by_arm": by_arm["score"].round(4).to_dict(), "kl_by_arm": by_arm["kl"].round(4).to_dict()},
        ))  # fmt: skip
        claims.append(compare(
            "D4", "difficulty-matched joint pairs beat unmatched ones", f"oracle score: {matched} - {dove_st}",
            u(matched), u(dove_st), delta=DELTA, kind="secondary", requires=["G2"], paper="—",
        ))  # fmt: skip
else:
    claims.append(per_seed(
        "hf-heldout", "held-out joint implicit-reward accuracy after DOVE (no oracle: not asserted)",
        "joint reward accuracy", [after["joint_reward_acc"]], 0.5, delta=0.1, asserted=False,
    ))  # fmt: skip

display(claims_table(claims))

# %%
names = ["seed", "n_seeds", "smoke", "profile", "model_name", "quantize", "dataset", "beta", "lr", "steps",
         "batch_size", "lora_r", "lora_lr"]  # fmt: skip
params = {k: globals()[k] for k in names}
params.update(claim_delta=DELTA, claim_delta_prompt=DELTA_PROMPT, claim_delta_drift=DELTA_DRIFT)
extra = {"notebook": "03_dove"}
if profile == "toy":
    params.update(base=asdict(base_cfg), world={"seed": world.seed, "rater_tau": world.rater_tau})
    extra.update(model=describe(base), counts=counts, arms=final.to_dict("records"))
path = write_result(
    out,
    "dove",
    {
        "arxiv": "2404.00530",
        "title": "Comparing Bad Apples to Good Oranges: Aligning LLMs via Joint Preference Optimization (DOVE / JPO)",
        "claim": "DPO over joint (instruction, response) preferences, mixed with conditional ones, beats DPO",
        "number": "+5.2 (TL;DR) and +3.3 (Anthropic-Helpful) win-rate points over DPO (Mistral-7B, 4-bit + LoRA r8)",
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
    "D1": ("inconclusive", "at equal epochs DOVE trains about twice DPO's steps and fits its joint pairs (G1), yet "
           "ends level with DPO on average; the seeds disagree on the sign, so the interval spans both 0 and delta. "
           "Much of the margin DOVE gains on joint pairs sits in the prompt tokens (D2), which changes how likely "
           "the prompts are, not what the policy writes for them. A joint pair compares answers to two different "
           "prompts on one oracle scale, so its label partly says which prompt is easier. The previous run of the same "
           "code, in an earlier environment (another machine, transformers 5.24), trained a different SFT base and "
           "had DOVE below DPO: at this scale the comparison moves with the SFT base, which three seeds on one base "
           "do not sample. We have "
           "not checked how much the difficulty of the two prompts shapes the paper's joint labels."),
    "D1-steps": ("inconclusive", "as D1: at equal steps DOVE also ends level with DPO, with the same reading."),
    "D4": ("inconclusive", "the difficulty-matched arm scored above the unmatched one, with an interval above 0, but "
           "the estimate is below delta: matching the prompts' difficulty helps, by less than the smallest gain "
           "we fixed as worth acting on."),
}  # fmt: skip
display(Markdown(what_we_found(path, why if profile == "toy" and not smoke else {})))

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
# # Aligning diffusion models with preferences, in a 2-D world: Diffusion-DPO, MaPO, SmPO, RankDPO, Self-NPO, Pref-GRPO
#
# Seven papers on the list this repository follows align text-to-image (or video) diffusion models. None of them can
# be re-run offline on a laptop CPU, but each makes a claim about *optimisation behaviour* that a small world with an
# exact oracle can test: what a reference model does when the preferred data lies where it puts no mass, whether
# smoothed labels stop over-optimisation, whether ranked lists beat pairs, whether a model's own degraded samples make
# a good negative for guidance, and whether rewards standardised within a group invite reward hacking.
#
# **The world.** Points in the plane. Four classes play the prompts; each class has a common "plain" mode and a rarer
# "styled" mode further out (`prefkit.worlds.points`). The data density is exact, an oracle reward (a bump on the
# styled mode, minus a penalty for landing in another class) scores every sample, a Bradley-Terry rater on the oracle
# labels pairs, and reward models fitted on those labels can be exploited outside the data. The model is a small
# class-conditional noise-prediction MLP with a 50-step DDPM chain (`prefkit.diffusion`), trained from scratch in
# seconds. **What this can and cannot say:** every claim below is about optimisation behaviour in a 2-D toy; nothing
# here measures image quality, and effect sizes do not transfer, only directions and mechanisms.
#
# | part | paper | what is tested |
# |---|---|---|
# | A | **MaPO** (Hong, Paul, Lee, Rasul, Thorne, Jeong 2024, [arXiv:2406.06424](https://arxiv.org/abs/2406.06424)), against **Diffusion-DPO** (Wallace et al. 2024, [arXiv:2311.12908](https://arxiv.org/abs/2311.12908)) | reference mismatch: a sweep from a style the base knows to one outside its support |
# | B | **SmPO** (Lu et al. 2025, [arXiv:2506.02698](https://arxiv.org/abs/2506.02698)) | smoothed labels from a reward model; ReNoise inversion |
# | C | **RankDPO** (Karthik et al. 2024, [arXiv:2410.18013](https://arxiv.org/abs/2410.18013)) | ranked lists and labels from several reward models |
# | D | **Self-NPO** (Wang et al. 2025, [arXiv:2505.11777](https://arxiv.org/abs/2505.11777)) | a negative model learnt from the model's own degraded samples, in guidance |
# | E | **Pref-GRPO** (Wang et al. 2025, [arXiv:2508.20751](https://arxiv.org/abs/2508.20751)) | pointwise rewards with std-normalised advantages against group win rates: reward hacking |
#
# **Not covered.** *UnifiedReward* (Wang et al. 2025, arXiv:2503.05236) is a generative vision-language judge trained
# on many understanding and generation tasks at once; its claim (joint training helps every task) needs a multimodal
# judge that writes verdicts, which this world does not have. *Prompt-A-Video* (Ji et al. 2024, arXiv:2412.15156)
# tunes a language model that rewrites prompts for a video generator; testing it needs a text prompt space feeding a
# generator, which the 2-D world does not have either. Both would need a world of their own; they are recorded here as
# not covered rather than approximated by something that tests a different claim.

# %% [markdown]
# ## Claims tested here
#
# Gates check that a mechanism works in our world before a claim that needs it is judged. Every claim's minimum
# effect (delta) or margin and its direction are fixed in the code before the run; "ours" marks claims the papers do
# not make. Each part explains its units and deltas above its claims.
#
# | id | kind | claim | from |
# |---|---|---|---|
# | GA | gate | Diffusion-DPO raises the oracle reward over the base where the target style is one the base knows (level p=0.2), by more than 0.05 | needed by M1-M3 |
# | M1 | headline | MaPO's advantage over Diffusion-DPO is larger at the novel style than at p=0.2 | Hong, Paul et al. 2024, abstract ("MaPO's advantage grows dramatically with reference mismatch severity") |
# | M2 | secondary | MaPO beats Diffusion-DPO at the novel style | Hong, Paul et al. 2024 (Pick-Style: MaPO over Diffusion-DPO) |
# | M3 | secondary | MaPO beats SFT on the chosen samples at the novel style | Hong, Paul et al. 2024, abstract (MaPO over DreamBooth) |
# | SG | gate | Diffusion-DPO raises the oracle reward over the base (> 0.05) | — (ours) |
# | S1 | headline | SmPO's oracle reward > Diffusion-DPO's at equal steps | Lu et al. 2025, abstract and main tables |
# | S2 | secondary | SmPO's drop from its peak under 4x training < DPO's | Lu et al. 2025, abstract ('mitigates excessive optimization') |
# | S3 | secondary | SmPO + ReNoise reaches DPO's final reward with <= half its network evaluations | Lu et al. 2025 ('6.5x faster', secondary source) |
# | S4 | secondary | SmPO + ReNoise > SmPO at equal steps (the inversion helps) | — (ours) |
# | KG | gate | DPO best-vs-worst on φ labels raises the oracle reward over the base by > 0.05 | — (ours) |
# | K1 | headline | RankDPO > DPO best-vs-worst on the same lists and labels | arXiv:2410.18013 Table (RankDPO vs DPO; no best-vs-worst arm there) |
# | K2 | secondary | labels from 5 reward models > labels from 1 | arXiv:2410.18013 ablation: DPO(5 rewards) vs DPO(HPSv2) |
# | K3 | secondary | RankDPO > gain-weighted lists without the discount | arXiv:2410.18013 ablation: RankDPO vs DPO + gain weights |
# | NG | gate | the Self-NPO negative alone is a degraded model (quality below the base's by > 0.1 nats) | Self-NPO/train.py (the method's mechanism) |
# | N1 | headline | Self-NPO guidance beats plain CFG on quality, each at its best w | Self-NPO abstract |
# | N2 | headline | Self-NPO non-inferior to Diffusion-NPO (margin 0.1 nats), compute ratio reported | Self-NPO abstract |
# | N3 | secondary | Self-NPO guidance at its best w lowers the styled (rare) mode's share | — (ours) |
# | PG | gate | pointwise GRPO with standardised advantages hacks its reward model (hack gap > 0.1) | — (ours) |
# | P1 | headline | Pref-GRPO hacks its reward model less than pointwise GRPO | arXiv:2508.20751, abstract |
# | P2 | headline | Pref-GRPO ends with a higher oracle reward than pointwise GRPO | arXiv:2508.20751, abstract |
# | P3 | secondary | under pointwise GRPO the within-group reward spread shrinks while mean abs(A) stays ~0.8 | — (ours) |

# %% tags=["parameters"]
seed = 0  # first seed; seeds are seed, seed + 1, ...
n_seeds = 3  # seeds per claim
smoke = False  # True: a quick run on 2 CPU cores that checks the pipeline (claims are not judged at that size)
profile = "toy"  # "toy" (the 2-D world with an oracle) or "hf" (score pairs with a diffusers pipeline)
model_name = ""  # hf profile: a local diffusers pipeline folder (the policy)
ref_model_name = ""  # hf profile: the reference pipeline (or UNet) folder (empty: model_name, so every margin is 0)
dataset = ""  # hf profile: .json/.jsonl of {prompt, chosen, rejected} image paths
device = "auto"  # "auto", "cpu" or "cuda"
out_dir = "../reproductions/diffusion"  # where figures and result.json go
hf_beta = 5000.0  # hf profile: Diffusion-DPO β (the official SDXL value; SD1.5 runs use 2000)
hf_draws = 4  # hf profile: (t, ε) draws per pair averaged into each margin (1 in smoke mode)
hf_batch = 8  # hf profile: pairs per forward pass (2 images each, both UNets)

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
from dataclasses import asdict

import numpy as np
import pandas as pd
import torch
from IPython.display import display

from prefkit import plot
from prefkit.diffusion_pref import DiffusionBaseConfig, eval_samples, points_base
from prefkit.models import resolve_device
from prefkit.repro import claims_table, compare, gate, per_seed, seed_everything, torch_threads, write_result
from prefkit.worlds.points import PointsWorld

torch.set_num_threads(torch_threads())
dev = resolve_device(device)
if smoke:  # a quick pass over every cell: one seed, small configs in every part
    n_seeds = 1
seeds = list(range(seed, seed + n_seeds))
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
seed_everything(seed)
figures, claims = [], []
print(f"profile={profile} smoke={smoke} device={dev} seeds={seeds}")

# %% [markdown]
# ## The world and its base model
#
# The base model is trained by the plain DDPM loss on 2,000 points per class, with 10% of the labels dropped for
# classifier-free guidance (`prefkit.diffusion_pref.points_base`, cached on disk, shared by every seed; each seed draws
# its own preference data, batch order and evaluation noise). Every evaluation below samples 256 points per class
# from noise fixed by the seed (`eval_samples`), the same noise for every arm, so that sample *i* of two arms is a
# pair: the units of every comparison. The figure shows the data, the oracle reward and the base's samples.

# %%
if profile == "toy":
    world = PointsWorld()
    base_cfg = DiffusionBaseConfig(steps=400) if smoke else DiffusionBaseConfig()
    base, schedule = points_base(world, base_cfg)
    x_data, c_data = world.sample_data(500, rng=0)
    x_base, c_base = eval_samples(base, schedule, world.n_classes, 256, seeds[0])
    summary = pd.DataFrame([
        {"samples": "data", "oracle reward": float(world.oracle_reward(x_data, c_data).mean()),
         **world.mode_shares(x_data, c_data)},
        {"samples": "base model", "oracle reward": float(world.oracle_reward(x_base, c_base).mean()),
         **world.mode_shares(x_base, c_base)},
    ]).round(3)  # fmt: skip
    display(summary)
    fig, axes = plot.figure(2, width=4.0, height=4.0)
    g = torch.linspace(-5.5, 5.5, 221)
    grid = torch.cartesian_prod(g, g)
    reward = torch.stack([world.oracle_reward(grid, torch.full((len(grid),), k)) for k in range(world.n_classes)])
    axes[0].contourf(g, g, reward.max(0).values.reshape(len(g), len(g)).T, levels=20, cmap="viridis")
    axes[0].set(title="oracle reward (max over classes)", aspect="equal")
    for ax, (x, cc) in zip(axes, [(x_data, c_data), (x_base, c_base)]):
        ax.scatter(x[:, 0], x[:, 1], c=cc, s=2, cmap="tab10", vmin=0, vmax=9, alpha=0.6)
        ax.set(xlim=(-5.5, 5.5), ylim=(-5.5, 5.5), aspect="equal")
    axes[1].set(title="base model samples (colour = class)")
    axes[0].set_title("oracle reward and data (colour = class)")
    figures.append(plot.save(fig, out, "world.png"))

# %% [markdown]
# ## Part A. MaPO and Diffusion-DPO under reference mismatch
#
# **Diffusion-DPO** (Wallace et al. 2024) writes DPO for a denoiser: with per-sample denoising errors
# $m_\theta(x) = \mathrm{mean}_{\text{dims}} \lVert \epsilon - \epsilon_\theta(x_t, t, c) \rVert^2$ of the policy and
# $m_{\mathrm{ref}}$ of the frozen reference, at one $t$ and one $\epsilon$ shared by the two sides of a pair (the official
# code, `train.py` l.1053-1055, l.1125-1145),
#
# $$\mathcal{L}_{\mathrm{DPO}} = -\log\sigma\Big(-\tfrac{1}{2}\beta\,\big[(m_\theta(x_w) - m_\theta(x_l)) -
# (m_{\mathrm{ref}}(x_w) - m_{\mathrm{ref}}(x_l))\big]\Big).$$
#
# **MaPO** (Hong, Paul et al. 2024) drops the reference: an SFT term on the preferred sample plus a margin through the
# bounded link $g(u) = u / (e^u - 1)$ (official code `mapo-t2i/mapo`, `utils.py` l.286-301; β = 0.1, s = 0.5,
# T = 1000),
#
# $$\mathcal{L}_{\mathrm{MaPO}} = m_\theta(x_w) - \beta \log\sigma\big(T\,[g(s\,m_\theta(x_w)) - g(s\,m_\theta(x_l))]\big).$$
#
# The paper's argument: when the preferred data lies where the reference puts little mass (a new style: "reference
# mismatch"), DPO's reference term holds the policy back, and MaPO's advantage grows with the mismatch.
#
# **The sweep** (`prefkit.mapo_toy`). Three levels, from a style the base knows to one it has never seen: a base
# trained with the styled mode at frequency 0.2 and the same style as target; a base trained with it at 0.02; and the
# 0.2 base with a *novel* style as target (radius 4.5, 6σ beyond the usual styled mode, where the base density is
# below e⁻¹⁸ of its peak). Pairs as in MaPO's Pick-Style (styled against plain generations of one base): chosen =
# samples of the target style, rejected = the base's own samples of the same class. **Arms:** Diffusion-DPO (the base
# as reference), MaPO, and SFT on the chosen samples (MaPO's first term alone; DreamBooth-like), each a fresh copy of
# the level's base. **Each arm at its best setting:** every arm trains for 600 steps at each value of a small β grid
# (Diffusion-DPO 200 / 500 / 2000, up to the official SD1.5 scale; MaPO 0.01 / 0.03 / 0.1, up to its official 0.1; SFT has
# none), is evaluated every 100 steps on *validation* noise, and is reported at its best (β, step) on the separate
# *test* noise: the comparison is of methods tuned the same way, not of one β against another.
#
# **Departures**
#
# | ours | paper / official code | why | expected effect |
# |---|---|---|---|
# | 2-D points, an MLP denoiser, a 50-step chain | SDXL latents (4×128×128), a UNet, 1,000 steps | offline, seconds on a CPU | directions and mechanisms only; effect sizes do not transfer |
# | MaPO's margin keeps T = 1000 although the chain has 50 steps | T = `num_train_timesteps` = 1000 | keeps the official logit scale (about 250 per unit of error difference near 0) | none intended; with T = 50 the margin would be 20 times weaker |
# | a β grid and a stopping step chosen on validation noise for every arm | one setting per method (DPO β 5000, MaPO β 0.1, 2,000 steps) | the official β's are for image latents; in 2-D any single β compares settings, not methods | each method at its best in this world; slightly optimistic for all arms alike (the choice is made on other noise) |
# | chosen = samples of the exact target mode; rejected = the base's samples, as they come (a share of them styled at level p=0.2) | Pick-Style: SDXL generations with and without a style prompt | the closest analogue with an exact density | SFT on chosen sees the target distribution itself: a strong baseline, probably stronger than DreamBooth on real images |
# | Adam, lr 3·10⁻⁴, batch 256, 600 steps | lr 10⁻⁵, batch 8 × 2 GPUs, 2,000 steps (MaPO README) | toy scale | none intended |

# %%
from prefkit.mapo_toy import LEVELS, MaPOSweepConfig, run_mapo_sweep

if profile == "toy":
    mapo_cfg = MaPOSweepConfig.smoke() if smoke else MaPOSweepConfig()
    mapo_runs = {s: run_mapo_sweep(world, s, mapo_cfg) for s in seeds}
    mapo_table = pd.DataFrame([
        {"seed": s, "level": key.split(" | ")[0], "arm": key.split(" | ")[1], **row}
        for s, r in mapo_runs.items() for key, row in r["record"].items()
    ])  # fmt: skip
    display(mapo_table.groupby(["level", "arm"], sort=False)[["oracle_reward", "final_oracle_reward", "on_target"]]
            .mean().round(3))  # fmt: skip
    display(mapo_table.pivot_table(index=["level", "arm"], columns="seed", values=["setting", "step"], aggfunc="first",
                                   sort=False))  # fmt: skip

# %% [markdown]
# Left: the oracle reward of each arm at every level (mean ± one standard deviation over seeds; each arm at its best
# setting and step on validation noise). Right: samples of the arms at the *novel* level (seed 0); the dashed circles
# are the plain modes' radius (2), the usual styled radius (3) and the novel style's (4.5).

# %%
if profile == "toy":
    arms_a = ["base", "Diffusion-DPO", "MaPO", "SFT on chosen"]
    fig, axes = plot.figure(1 + len(arms_a), width=3.3, height=3.3)
    lv = list(mapo_cfg.levels)
    for arm in arms_a:
        plot.mean_band(axes[0], range(len(lv)), [[mapo_runs[s]["units"][(L, arm)].mean() for L in lv] for s in seeds],
                       arm, marker="o")  # fmt: skip
    axes[0].set(xticks=range(len(lv)), xticklabels=lv, xlabel="mismatch level", ylabel="oracle reward",
                title="the mismatch sweep")  # fmt: skip
    axes[0].legend(fontsize=6)
    theta = np.linspace(0, 2 * np.pi, 200)
    for ax, arm in zip(axes[1:], arms_a):
        x, cc = mapo_runs[seeds[0]]["samples"][(lv[-1], arm)]
        ax.scatter(x[:, 0], x[:, 1], c=cc, s=3, cmap="tab10", vmin=0, vmax=9)
        for rad in (2.0, 3.0, 4.5):
            ax.plot(rad * np.cos(theta), rad * np.sin(theta), "k--", lw=0.5)
        ax.set(xlim=(-6, 6), ylim=(-6, 6), aspect="equal", title=f"{arm} ({lv[-1]})")
    figures.append(plot.save(fig, out, "mapo_sweep.png"))

# %% [markdown]
# ### Claims of Part A, fixed before the run
#
# Units: the 1,024 evaluation samples of a seed (256 per class), paired across arms and levels by their starting noise;
# metric: the level's oracle reward; hierarchical bootstrap over seeds, then units. **delta = 0.05 oracle reward** for
# every claim of the notebook's toy parts: the base's mean reward is about 0.3 and a working preference arm gains about
# 0.2, so 0.05 is a quarter of what a method gains and far above the paired noise of 1,024 samples. **Gate GA:**
# Diffusion-DPO must raise the oracle reward over the base by more than 0.05 where there is no mismatch (level
# p=0.2), or the sweep compares methods that do not work. **M1** (headline): MaPO's advantage over Diffusion-DPO is
# larger at the novel level than at p=0.2 (a difference of paired differences). **M2**: MaPO beats Diffusion-DPO at the
# novel level. **M3**: MaPO beats SFT on the chosen samples at the novel level (the margin term earns its place).
# In smoke mode only the gates GA and NG (Part D) are judged: that training moves samples at all.

# %%
DELTA_REWARD = 0.05  # oracle reward, every toy claim of this notebook (see above)
if profile == "toy":
    hi, lo_ = mapo_cfg.levels[-1], mapo_cfg.levels[0]
    ua = lambda level, arm: [mapo_runs[s]["units"][(level, arm)] for s in seeds]  # noqa: E731
    mapo_paper = (
        "Hong, Paul et al. 2024, abstract: MaPO's advantage grows dramatically with reference mismatch severity"
    )
    # GA is judged in smoke mode too: preference training must move the samples at all
    claims.append(gate("GA", f"Diffusion-DPO raises the oracle reward over the base without mismatch ({lo_})",
                       "oracle reward: Diffusion-DPO - base", [a - b for a, b in zip(ua(lo_, "Diffusion-DPO"),
                                                                                      ua(lo_, "base"))],
                       DELTA_REWARD))  # fmt: skip
    adv = lambda level: [a - b for a, b in zip(ua(level, "MaPO"), ua(level, "Diffusion-DPO"))]  # noqa: E731
    claims.append(compare("M1", f"MaPO's advantage over Diffusion-DPO is larger at the novel style than at {lo_}",
                          "(MaPO - DPO) at novel - (MaPO - DPO) at p=0.2, oracle reward", adv(hi), adv(lo_),
                          delta=DELTA_REWARD, requires=["GA"], paper=mapo_paper, asserted=not smoke))  # fmt: skip
    claims.append(compare("M2", "MaPO beats Diffusion-DPO on a style outside the base's support", "oracle reward",
                          ua(hi, "MaPO"), ua(hi, "Diffusion-DPO"), delta=DELTA_REWARD, kind="secondary",
                          requires=["GA"], paper="Hong, Paul et al. 2024 (Pick-Style: MaPO over Diffusion-DPO)",
                          asserted=not smoke))  # fmt: skip
    claims.append(compare("M3", "MaPO beats SFT on the chosen samples on a style outside the base's support",
                          "oracle reward", ua(hi, "MaPO"), ua(hi, "SFT on chosen"), delta=DELTA_REWARD,
                          kind="secondary", requires=["GA"],
                          paper="Hong, Paul et al. 2024, abstract (MaPO over DreamBooth, i.e. SFT on chosen images)",
                          asserted=not smoke))  # fmt: skip
    mapo_record = mapo_table.groupby(["level", "arm"], sort=False)[["oracle_reward", "on_target"]].mean().round(4)
    mapo_record = {f"{a} | {b}": v for (a, b), v in mapo_record.to_dict("index").items()}
    mapo_choice_record = {
        f"{k[0]} | {k[1]} | seed {s}": list(v) for s, r in mapo_runs.items() for k, v in r["choice"].items()
    }

# %% [markdown]
# ## Part B. SmPO: smoothed reward-model labels and ReNoise inversion
#
# Lu et al. (2025). *Smoothed Preference Optimization via ReNoise Inversion for Aligning Diffusion Models with Varied
# Human Preferences.* ICML 2025, [arXiv:2506.02698](https://arxiv.org/abs/2506.02698); official code JaydenLyh/SmPO.
#
# **Idea.** Human preference labels are binary and noisy, yet people disagree by degrees; SmPO replaces each pair's
# hard label by a smoothed one from a reward model (PickScore) and computes the Diffusion-DPO likelihood terms on
# noise found by ReNoise inversion of the images instead of random forward noise. The paper reports that it beats
# Diffusion-DPO on reward metrics, "mitigates excessive optimization", and trains faster.
#
# **The loss as the official code computes it** (train.py l.729, l.739-746, l.1061-1064). The pair is ordered by the
# reward model's scores s (so α ≥ ½), s̃ = (s − low)/(high − low), α = e^{s̃_w}/(e^{s̃_w} + e^{s̃_l}), and
#
# $$\mathcal{L} = -\log\sigma\Big(-\tfrac12\,\beta\,(2\alpha-1)\,k\,\big[(m_\theta(x_w)-m_\theta(x_l))-(m_\text{ref}(x_w)-m_\text{ref}(x_l))\big]\Big),\qquad k = 10,$$
#
# with m the per-sample denoising error averaged over dimensions: Diffusion-DPO with a per-pair β proportional to the
# reward model's margin (α = ½ gives no gradient; it never flips a label). **ReNoise inversion** (l.967-1027): for the
# pair's t, each x₀ is DDIM-inverted with the current policy (no gradient) over the points of a 5-point inverse grid
# below t, each step with one ReNoise refinement; the endpoint x̃ gives ε* = (x̃ − √ᾱ_t x₀)/√(1 − ᾱ_t), both the
# noise and the target; w and l are inverted separately.
#
# **Toy.** Training pairs are two base-model samples of one class, labelled by the Bradley-Terry rater (noisy, the
# "human" labels). The "PickScore" is a pointwise reward model fitted on rater labels of *data* pairs drawn apart
# from the training pairs; the oracle only evaluates. Arms, all from the same base with the same β and learning rate:
#
# | arm | labels | noise |
# |---|---|---|
# | DPO | rater's hard labels | forward noise, t and ε shared by the pair |
# | SmPO | RM's winner, α from RM scores, scale (2α − 1)·k | forward noise, shared |
# | SmPO + ReNoise | as SmPO | ε* from ReNoise inversion with the current policy, per sample |
#
# DPO and SmPO also train for 4× the standard steps, evaluated every 1/16 of that run. Units: 1024 evaluation samples
# (256 per class, paired across arms and checkpoints by their noise); metric: the oracle reward. The checkpoint of a
# peak is chosen on a separate validation noise set (`split="val"`), and reported on the test units.

# %% [markdown]
# ### Departures
#
# | ours | paper / official code | why | expected effect |
# |---|---|---|---|
# | 2-D points, 4 classes as prompts, an MLP ε-network, T = 50 | SD1.5 / SDXL on Pick-a-Pic, T = 1000 | offline, CPU-sized | optimisation behaviour only, not image quality |
# | scale k = 1/mean(2α − 1) over the training pairs (mean per-pair scale 1) | k = 10 | so that SmPO vs DPO is not a comparison of β | removes a β advantage SmPO would otherwise get or lose |
# | RM normalisation (low, high) = min and max of its scores on the training candidates | PickScore's fixed range 0.1154 .. 0.2820 | our RM's scale is arbitrary | α spans [½, σ(1)] as in the paper |
# | the RM is an MLP fitted on 2000 rated data pairs | PickScore, trained on Pick-a-Pic | the toy has no PickScore | RM labels are less noisy than the rater's, as PickScore's are assumed to be |
# | inverse grid {0, 10, 20, 30, 40} at T = 50 | {0, 200, ..., 800} at T = 1000 (SD1.5) | the same 5 points, scaled | — |
# | one β = 500 (code scale, mean-over-dimension errors, as the official code) for all arms, chosen on dev seeds 100-102 from {500, 2000, 5000} (the official 2000 / 5000 and a lower point) by DPO's val reward at 300 steps alone (0.440, 0.429, 0.416); lr 1e-3 constant, batch 256 pairs, 300 steps | β 2000 (SD1.5) / 5000 (SDXL), lr 1e-8 × scale_lr, 200 steps, batch 1024 pairs | toy scale; β tuned for the baseline, not for SmPO | — |
# | no SFT initialisation | SD1.5 starts from an SFT checkpoint | no SFT data distinct from the base's | the paper's speed-up includes SFT; ours cannot |
# | compute counted in forward-equivalent evaluations per sample (backward = 2): 4 per step; inversion + 2 per grid point | the paper reports wall time | an implementation-free count | — |
# | Diffusion-DPO arm uses the rater's labels; SmPO uses the RM's | the same in the paper (PickScore vs human labels) | — | S1 mixes two effects: a better label source and the smoothing |

# %%
if profile == "toy":
    from prefkit.smpo_toy import SmPOConfig, run_smpo, smpo_claims

    smpo_cfg = SmPOConfig.smoke() if smoke else SmPOConfig()
    smpo_results = [run_smpo(world, base, schedule, s, smpo_cfg, progress=False) for s in seeds]
    smpo_table = pd.DataFrame(
        [pd.json_normalize(r["record"]).iloc[0] for r in smpo_results], index=pd.Index(seeds, name="seed")
    )
    display(smpo_table)

# %%
if profile == "toy":
    fig, axes = plot.figure(2)
    names = {"dpo": "Diffusion-DPO", "smpo": "SmPO", "smpo_renoise": "SmPO + ReNoise"}
    for arm, label in names.items():
        curves = [r["curves"][arm] for r in smpo_results]
        plot.mean_band(axes[0], curves[0]["steps"], [c["test"] for c in curves], label)
        plot.mean_band(axes[1], np.mean([c["nfe"] for c in curves], 0), [c["val"] for c in curves], label)
    for ax, split in zip(axes, ("test", "val")):  # the base is checkpoint 0 of every run
        ax.axhline(
            np.mean([r["curves"]["dpo"][split][0] for r in smpo_results]), color="0.5", linestyle=":", label="base"
        )
    axes[0].axvline(smpo_cfg.steps, color="0.7", linewidth=0.8)
    target = np.mean([r["speed"]["target_val"] for r in smpo_results])  # DPO's val reward at the standard length
    axes[1].axhline(target, color=plot.PALETTE[0], linestyle="--", linewidth=0.8, label="DPO's final (S3 target)")
    axes[0].set(xlabel="training step", ylabel="oracle reward (test)", title="SmPO vs Diffusion-DPO, 4x training")
    axes[1].set(xlabel="network evaluations per training sample", ylabel="oracle reward (val)", title="per compute",
                xlim=(0, 2 * smpo_results[0]["speed"]["dpo_nfe"]))  # fmt: skip
    axes[0].legend()
    axes[1].legend()
    figures.append(plot.save(fig, out, "smpo_reward_vs_steps.png"))

# %% [markdown]
# ### Claims of Part B, fixed before the run
#
# - **SG** (gate): Diffusion-DPO raises the oracle reward over the base by more than 0.05 (test units, standard
#   length). S1-S4 require it: without a working baseline, "better than DPO" means nothing.
# - **S1** (headline, the paper's main result): SmPO's oracle reward at the standard length exceeds Diffusion-DPO's;
#   delta 0.05 (a quarter of a working arm's gain).
# - **S2** (secondary, the paper's "mitigates excessive optimization"): under 4× training, SmPO's drop from its peak
#   (test reward at the val-chosen peak checkpoint minus test reward at the end, per unit) is smaller than DPO's by at
#   least 0.05.
# - **S3** (secondary, the paper's "faster"): SmPO + ReNoise reaches DPO's final val reward with at most half of DPO's
#   network evaluations: per seed, the ratio of evaluations (inversion included) at its first val checkpoint at or
#   above DPO's standard-length val reward to DPO's evaluations over the standard run; a run that never reaches it
#   counts its whole budget (2.45× DPO's on average). Tested as ratio − 1 < 0 with delta 0.5 (t-interval over seeds).
#   We chose 0.5, not the reported 6.5×, because the paper's speed-up includes its SFT start, which the toy lacks.
# - **S4** (secondary, ours): the inversion adds to SmPO: SmPO + ReNoise > SmPO at equal steps, delta 0.05. This claim
#   was added after a development run (seed 100, not a reported seed) showed SmPO + ReNoise ahead of SmPO.

# %%
if profile == "toy":
    claims.extend(smpo_claims(smpo_results, asserted=not smoke))
    smpo_record = {
        arm: {key: [r["record"][arm][key] for r in smpo_results] for key in summary}
        for arm, summary in smpo_results[0]["record"].items()
    }  # per arm: each summary value, one per seed
    smpo_claim_rows = [
        "| SG | gate | Diffusion-DPO raises the oracle reward over the base (> 0.05) | — (ours) |",
        "| S1 | headline | SmPO's oracle reward > Diffusion-DPO's at equal steps | Lu et al. 2025, abstract and main tables |",
        "| S2 | secondary | SmPO's drop from its peak under 4x training < DPO's | Lu et al. 2025, abstract ('mitigates excessive optimization') |",
        "| S3 | secondary | SmPO + ReNoise reaches DPO's final reward with <= half its network evaluations | Lu et al. 2025 ('6.5x faster', secondary source) |",
        "| S4 | secondary | SmPO + ReNoise > SmPO at equal steps (the inversion helps) | — (ours) |",
    ]  # fmt: skip

# %% [markdown]
# ## Part C. RankDPO: ranked lists from several generators, labelled by several reward models
#
# Karthik, Roth, Mancini, Akata (2024). *Scalable Ranked Preference Optimization for Text-to-Image Generation.*
# [arXiv:2410.18013](https://arxiv.org/abs/2410.18013) (ICCV 2025).
#
# **Idea.** Instead of human pairs, build a synthetic data set (Syn-Pic): k = 4 text-to-image models make one image
# each per prompt and n = 5 reward models score them; an image's label is its share of pairwise wins,
# φ(x_i) = C_i / (n (k − 1)), C_i = the number of (reward model, other image) pairs it wins. Then train on the whole
# ranked list with a Diffusion-DPO loss on every pair, weighted as in LiPO-λ by a gain 2^φ and a DCG rank discount.
# The paper reports SDXL's DPG-Bench DSG score going 74.65 → 79.26 with RankDPO, against 78.84 for DPO on the
# five rewards' labels, 79.15 with the gain weights but no discount, and 78.04 for DPO on one reward (HPSv2).
#
# **The loss** (`prefkit.losses.diffusion.ranked_diffusion_dpo_loss`; Algorithm 2 as OCR'd in a third-party note,
# the scale of the official Diffusion-DPO code, train.py l.1142-1145):
#
# $$\mathcal{L} = -\sum_{\varphi_i > \varphi_j} \Delta_{ij}\,\log\sigma(r_i - r_j),\qquad
# r_i = -\tfrac{1}{2}\beta\,\big(m_\theta(x_i) - m_\text{ref}(x_i)\big),\qquad
# \Delta_{ij} = |2^{\varphi_i} - 2^{\varphi_j}|\cdot\Big|\tfrac{1}{\ln(1+\tau_i)} - \tfrac{1}{\ln(1+\tau_j)}\Big|,$$
#
# with m the per-sample denoising MSE (mean over dimensions) at one t and one ε shared by the list, and τ the rank
# under the current implicit rewards r. Dropping the discount factor gives the paper's "DPO + gain weights".
#
# **The toy.** Prompts are the 4 classes; the k = 4 "generators" are the base model sampled with guidance weights
# w = 0.5, 1, 2, 3 (weak guidance leaks towards other classes, strong guidance overshoots past the styled mode, as
# strong guidance over-saturates images); a list is one sample of each for one prompt instance (512 per class).
# The n = 5 reward models are pointwise MLPs, each fitted on its own 100 rated pairs (half data samples, half samples
# of the generators, rated by the Bradley-Terry rater): each imperfect in its own way; none sees the oracle. Every arm
# fine-tunes the base for the same 600 Adam steps on the same number of samples per step (64 lists of 4, or 128
# pairs of 2), with one β:
#
# | arm | trains on |
# |---|---|
# | DPO best-vs-worst, 1 RM | the best and worst item of each list by reward model 0's scores (Diffusion-DPO) |
# | DPO best-vs-worst, 5 RMs | the best and worst item of each list by φ (Diffusion-DPO) |
# | gain only | whole lists, Δ_ij = \|2^φ_i − 2^φ_j\| |
# | RankDPO | whole lists, gains and discount |
#
# Units: 1024 evaluation samples (256 per class) from the same noise for every arm, scored by the oracle reward.

# %% [markdown]
# ### Departures
#
# | ours | paper / official code | why | expected effect |
# |---|---|---|---|
# | 4 generators = one base at guidance 0.5, 1, 2, 3 | SDXL, SD3-Medium, PixArt-Σ, Stable Cascade | one toy model; guidance gives distinct, differently flawed generators | less diverse lists than four models |
# | 5 small MLP reward models on 100 rated pairs each (half on generated samples) | HPSv2, PickScore, ImageReward, VQAScore, … (large pretrained) | offline toy; small data makes each imperfect in its own way | label errors larger and less systematic than the paper's |
# | best-vs-worst DPO arms on the same lists | DPO on Pick-a-Pic pairs (the paper never ran best-vs-worst) | isolates the loss from the data at equal data | a stronger baseline than the paper's |
# | single-RM arm: one of our five RMs | DPO on HPSv2 labels | the RMs are i.i.d. draws, so RM 0 is a random one | — |
# | β = 1000 (official scale, mean over dims, ×0.5), chosen from {1000, 2000, 5000} on dev seeds by the DPO best-vs-worst arm | β = 5000 (SDXL) | toy scale; chosen on the baseline, not on RankDPO | — |
# | one t and ε shared by all items of a list | t ~ U(1, T), ε_i per image in Algorithm 2 (official code not found) | Diffusion-DPO shares them within a pair; less variance | none on the expectation |
# | ranks τ from the current implicit rewards, LiPO's 1/D discount | the OCR'd algorithm is ambiguous (τ by φ or by the model, D or 1/D) | LiPO-λ's convention | — |
# | 600 Adam steps at lr 1e-3, 2-D points, T = 50 | SDXL, 6 A100-days | CPU budget | — |
# | the base is shared by all seeds (cached) | — | the base is the longest step | seeds vary lists, reward models, batches and evaluation noise |

# %%
if profile == "toy":
    from prefkit.rankdpo_toy import ARMS as RK_ARMS
    from prefkit.rankdpo_toy import RankDPOConfig, run_rankdpo

    rankdpo_cfg = RankDPOConfig.smoke() if smoke else RankDPOConfig()
    rk_runs = [run_rankdpo(world, base, schedule, s, rankdpo_cfg) for s in seeds]
    rk_units = {arm: [run["units"][arm] for run in rk_runs] for arm in RK_ARMS}
    rk_table = pd.DataFrame(
        {arm: [run["record"][arm]["oracle_reward"] for run in rk_runs] for arm in RK_ARMS}, index=seeds
    ).rename_axis("seed")
    rk_labels = pd.DataFrame(
        [{"seed": s, "labels": name, **run["labels"][name]} for s, run in zip(seeds, rk_runs)
         for name in ("phi", "rm_single", "oracle")]
    )  # fmt: skip
    display(rk_table)
    display(rk_labels)  # how good each labelling is against the oracle (diagnostic; training never sees the oracle)

# %%
if profile == "toy":
    RK_NAMES = {"base": "base", "dpo_bw_1rm": "DPO b-v-w\n1 RM", "dpo_bw": "DPO b-v-w\n5 RMs", "gain_only": "gain only",
                "rankdpo": "RankDPO"}  # fmt: skip
    fig, axes = plot.figure(ncols=3, width=4.4)
    means = rk_table.mean()
    axes[0].bar(range(len(RK_ARMS)), [means[a] for a in RK_ARMS], color="0.8")
    for i, arm in enumerate(RK_ARMS):
        axes[0].scatter([i] * len(seeds), rk_table[arm], color="k", s=12, zorder=3)
    axes[0].set_xticks(range(len(RK_ARMS)), [RK_NAMES[a] for a in RK_ARMS], fontsize=7)
    axes[0].set_ylabel("mean oracle reward")
    axes[0].set_title("bars: mean over seeds; dots: seeds", fontsize=8)
    modes = world.modes().reshape(-1, 2).numpy()
    for ax, arm in zip(axes[1:], ("dpo_bw", "rankdpo")):
        xy = np.asarray(rk_runs[0]["curves"]["samples"][arm])
        ax.scatter(*xy.T, c=rk_runs[0]["curves"]["samples_c"], s=5, cmap="tab10", vmax=9)
        ax.scatter(*modes.T, marker="x", color="k", s=30)
        ax.set_title(f"{RK_NAMES[arm].replace(chr(10), ' ')} samples (seed {seeds[0]}; x = modes)", fontsize=8)
        ax.set_aspect("equal")
    figures.append(plot.save(fig, out, "rankdpo_arms.png"))

# %% [markdown]
# ### Claims of Part C, fixed before the run
#
# All on paired evaluation units (oracle reward, the same 1024 evaluation noises for every arm), hierarchical
# bootstrap over seeds then units; the default minimum effect is 0.05 oracle reward (a quarter of what a working
# preference arm gains over the base).
#
# - **KG (gate)**: DPO best-vs-worst on φ labels raises the oracle reward over the base by more than 0.05 (the whole
#   interval above 0.05): preference training on these lists works at all. K1-K3 require it.
# - **K1 (headline)**: RankDPO > DPO best-vs-worst on the same lists and labels, delta 0.05. The paper never ran
#   best-vs-worst; its headline compares RankDPO on Syn-Pic with DPO on Pick-a-Pic's human pairs (79.26 vs 76.74
#   DSG), so this is the loss's contribution at equal data, the part of the claim a toy can test.
# - **K2 (secondary)**: labels aggregated over 5 reward models (φ) > labels of 1 reward model, both DPO best-vs-worst,
#   delta 0.05 [paper: DPO(5 rewards) 78.84 vs DPO(HPSv2) 78.04 DSG].
# - **K3 (secondary)**: RankDPO > gain only, the DCG discount's contribution, delta **0.02** [paper: 79.26 vs 79.15
#   DSG]. The smaller delta because the paper's own effect is small (2% of RankDPO's gain over the base); at 0.05 the
#   claim would be almost unreachable by design.

# %%
if profile == "toy":
    RK_DELTA, RK_DELTA_DISCOUNT, RK_GATE = 0.05, 0.02, 0.05
    rk_diff = [u - b for u, b in zip(rk_units["dpo_bw"], rk_units["base"])]
    claims += [
        gate("KG", "DPO best-vs-worst (φ labels) raises the oracle reward over the base by > 0.05", "oracle reward gain",
             rk_diff, RK_GATE, paper="— (ours)", asserted=not smoke),
        compare("K1", "RankDPO beats DPO on the best-vs-worst pairs of the same lists", "oracle reward",
                rk_units["rankdpo"], rk_units["dpo_bw"], delta=RK_DELTA, requires=["KG"], asserted=not smoke,
                paper="RankDPO 79.26 vs DPO on Pick-a-Pic 76.74 DSG (SDXL; no best-vs-worst arm in the paper)"),
        compare("K2", "labels from 5 reward models (φ) beat labels from 1 (DPO best-vs-worst both)", "oracle reward",
                rk_units["dpo_bw"], rk_units["dpo_bw_1rm"], delta=RK_DELTA, kind="secondary", requires=["KG"],
                asserted=not smoke, paper="DPO(5 rewards) 78.84 vs DPO(HPSv2) 78.04 DSG"),
        compare("K3", "RankDPO's DCG discount adds to the gain-weighted list loss", "oracle reward",
                rk_units["rankdpo"], rk_units["gain_only"], delta=RK_DELTA_DISCOUNT, kind="secondary", requires=["KG"],
                asserted=not smoke, paper="RankDPO 79.26 vs DPO + gain weights 79.15 DSG"),
    ]  # fmt: skip
    rankdpo_record = {
        "oracle_reward": {arm: [round(float(v), 4) for v in rk_table[arm]] for arm in RK_ARMS},
        "per_seed": {str(s): {"arms": run["record"], "labels": run["labels"]} for s, run in zip(seeds, rk_runs)},
        "config": rk_runs[0]["config"],
    }

# %%

# %% [markdown]
# ## Part D. Self-NPO: a negative model learned from the model itself
#
# Self-NPO (Wang et al. 2025, arXiv:2505.11777, AAAI 2026; code G-U-N/Diffusion-NPO, `Self-NPO/`) trains a *negative*
# model and puts it in place of the unconditional branch of classifier-free guidance. Its predecessor Diffusion-NPO
# trains the negative by Diffusion-DPO on preference pairs with winner and loser swapped; Self-NPO needs no preference
# labels at all, and the paper says it matches Diffusion-NPO at under 1% of its cost (data included).
#
# Guidance with a negative model (`pipeline_stable_diffusion_double_unet.py` l.1165-1199; `guided_eps(..., negative=)`):
#
# $$\hat\epsilon(x_t, c) = \epsilon_{neg}(x_t, \varnothing) + w\,\big(\epsilon_\theta(x_t, c) - \epsilon_{neg}(x_t, \varnothing)\big).$$
#
# Self-NPO's training step (`Self-NPO/train.py`): noise a data point $x_0$ to a random point $t_s$ of a 25-step DDIM
# grid; run up to 5 DDIM steps of the EMA teacher's *unconditional* prediction (the code's $w = -1$ in
# cond $+\,w\,$(cond $-$ uncond)) down to $t_e$; the target is the teacher's $\hat x_0$ at $t_e$; re-noise $x_{t_e}$ to a
# random $t' > t_e$; the student, conditional on the prompt, predicts $\hat x_0(x_{t'}) = (x_{t'} - \sqrt{1-\bar\alpha_{t'}}\,\hat\epsilon)/\sqrt{\bar\alpha_{t'}}$
# and pays the pseudo-Huber loss $\sqrt{(\hat x_0 - \text{target})^2 + c^2} - c$, $c = 0.001$; then teacher $\leftarrow$ EMA$_{0.999}$(student).
#
# **Arms**, each at its best guidance weight $w \in$ {1, 1.25, 1.5, 2, 3} chosen on `eval_samples(split="val")` and
# evaluated on `split="test"`: plain CFG (the base's own $\varnothing$ branch), the Self-NPO negative (trained on unlabelled
# data samples), the Diffusion-NPO negative (Diffusion-DPO, $\beta$ = 1000 in the official code's scale, on 512 pairs per
# class of base samples labelled by the Bradley-Terry rater, swapped). At $w = 1$ all arms are the base itself.
# **Quality metric**: the exact data log-density $\log q(x \mid c)$ of each sample (nats), clipped from below at the density
# 4σ from a plain mode. Self-NPO aims at general quality, not at the rater's style preference; the oracle reward is
# shown as a secondary metric. **Units**: 1024 evaluation samples per seed, paired across arms (the same noise).

# %% [markdown]
# ### Departures (Part D)
#
# | ours | paper / official code | why | expected effect |
# |---|---|---|---|
# | T = 50, DDIM grid stride 2, 5 solver steps span 10 timesteps | T = 1000, stride 40, span 200 | the toy's chain | the same share of the chain |
# | Self-NPO timesteps only where ᾱ ≥ 0.0047 (t ≤ 46) | all t ≤ 999 (SD1.5's ᾱ_999 = 0.0047) | the toy's cosine schedule has ᾱ_49 = 1e-6, where x̂₀ divides ε's error by 1000 | the same noise range as SD1.5 |
# | teacher runs only its ∅ branch | computes both branches, combined with w = -1 | w = -1 makes the conditional branch cancel | none (fewer evaluations) |
# | lr 1e-3, batch 256, 1000 steps, AdamW wd 1e-3 | lr 1e-6, batch 20, 1000 steps (SD1.5, train.sh) | a 2-D MLP trained from a fresh base at 1e-3; batch 20 gave a weak, noisy negative in our dev runs | a stronger negative per step |
# | data: 2000 unlabelled points per class from the world | `laion/imgs` image-caption pairs | the toy's data | none |
# | Diffusion-NPO: 2048 rated pairs of base samples, 400 steps, batch 256, lr 1e-3, β 1000 | Pick-a-Pic human pairs, 5000 steps, batch 64, LoRA, lr 5e-6, β 500 without the ½ | the toy's pair arms (Part A); the rater prefers a *style*, not general quality | Diffusion-NPO pushes towards the styled mode, which the quality metric does not reward |
# | compute: network evaluations per sample (forward 1, backward 2) | GPU hours including Pick-a-Pic | the toy's only cost | the rater's labels are free here, so Diffusion-NPO's data is cheap (see N2) |

# %%
if profile == "toy":
    from prefkit.selfnpo_toy import SelfNPOConfig, run_selfnpo

    selfnpo_cfg = SelfNPOConfig.smoke() if smoke else SelfNPOConfig()
    selfnpo_runs = [run_selfnpo(world, base, schedule, s, selfnpo_cfg, progress=False) for s in seeds]
    selfnpo_arms = {"cfg": "plain CFG", "self_npo": "Self-NPO negative", "diffusion_npo": "Diffusion-NPO negative"}
    display(pd.DataFrame({f"seed {s}": {f"{a} ({k})": r["record"][a][k] for a in selfnpo_arms
                                        for k in ("best_w", "quality", "oracle_reward", "styled")}
                          for s, r in zip(seeds, selfnpo_runs)}))  # fmt: skip
    selfnpo_cost = selfnpo_runs[0]["record"]["compute"]
    print(f"network evaluations: Self-NPO {selfnpo_cost['self_npo']:.3g}, Diffusion-NPO {selfnpo_cost['diffusion_npo_train']:.3g}"
          f" + data {selfnpo_cost['diffusion_npo_data']:.3g}; ratio {selfnpo_cost['ratio_with_data']:.3g}"
          f" (training only {selfnpo_cost['ratio_train_only']:.3g})")  # fmt: skip

# %%
if profile == "toy":
    fig, axes = plot.figure(3, 1)
    ws = selfnpo_cfg.weights
    for arm, label in selfnpo_arms.items():
        plot.mean_band(axes[0], ws, [r["curves"][f"{arm}_test"] for r in selfnpo_runs], label)
        plot.mean_band(axes[1], ws, [r["curves"][f"{arm}_reward"] for r in selfnpo_runs], label)
    axes[0].set(xlabel="guidance weight w", ylabel="quality: clipped log q(x | c) (nats)", title="quality (test split)")
    axes[1].set(xlabel="guidance weight w", ylabel="oracle reward", title="oracle reward (test split)")
    axes[0].legend(fontsize=7)
    modes = world.modes().reshape(-1, 2).numpy()
    for arm, marker in (("cfg", "o"), ("self_npo", "x")):
        smp = selfnpo_runs[0]["samples"][arm]
        xy = np.asarray(smp["x"])
        axes[2].scatter(xy[:, 0], xy[:, 1], s=6, marker=marker, alpha=0.6,
                        label=f"{selfnpo_arms[arm]}, w = {selfnpo_runs[0]['record'][arm]['best_w']}")  # fmt: skip
    axes[2].scatter(modes[:, 0], modes[:, 1], s=30, c="k", marker="+", label="modes")
    axes[2].set(title=f"samples at each arm's best w (seed {seeds[0]})", aspect="equal")
    axes[2].legend(fontsize=6)
    figures.append(plot.save(fig, out, "selfnpo_guidance.png"))

# %% [markdown]
# ### Claims of Part D, fixed before the run
#
# Quality is the clipped exact log-density in nats. The base's samples at w = 1 sit about 0.2 nats below the data's own
# (-0.77 against -0.55 on a dev seed), so **delta = 0.1 nats** (half that gap) is the smallest quality gain we would call
# real; the non-inferiority **margin** is the same 0.1 nats.
#
# - **NG** (gate): the Self-NPO negative is a *degraded* model, as the method intends: sampled alone (w = 1) its
#   quality is below the base's by more than 0.1 nats. N1 and N2 rest on it.
# - **N1** (headline): Self-NPO guidance at its best w beats plain CFG at its best w on quality, by ≥ 0.1 nats.
# - **N2** (headline): Self-NPO at its best w is non-inferior to Diffusion-NPO at its best w (margin 0.1 nats). The
#   paper adds "at < 1% of the cost including the data"; our compute ratio is printed above and stored with the claim.
#   It is a property of the configuration, not a measurement, so it is not a claim of its own.
# - **N3** (secondary, ours): guidance gains log-density partly by dropping the rare mode: at its best w, Self-NPO's
#   share of samples on the styled mode is lower than the base's at w = 1 by ≥ 0.05 (diversity lost).
#
# The guidance weight of each arm is chosen on the validation noise, the claims use the test noise.

# %%
if profile == "toy":
    selfnpo_u = lambda key: [r["units"][key] for r in selfnpo_runs]  # noqa: E731
    selfnpo_ratio = selfnpo_cost["ratio_with_data"]
    claims += [
        gate("NG", "The Self-NPO negative alone (w = 1) has lower quality than the base, by > 0.1 nats",
             "quality(base, w = 1) - quality(Self-NPO negative, w = 1), nats",
             [a - b for a, b in zip(selfnpo_u("w1"), selfnpo_u("self_npo_neg"))], 0.1,
             paper="Self-NPO/train.py (unconditional EMA teacher, w = -1)"),  # judged in smoke mode too
        compare("N1", "Self-NPO guidance at its best w beats plain CFG at its best w on quality",
                "quality (clipped log-density, nats), Self-NPO - CFG", selfnpo_u("self_npo"), selfnpo_u("cfg"),
                delta=0.1, requires=["NG"], paper="Self-NPO abstract", asserted=not smoke),
        compare("N2", f"Self-NPO is non-inferior to Diffusion-NPO on quality, at {selfnpo_ratio:.3g}x its network "
                "evaluations (data included; paper: < 1%)", "quality (nats), Self-NPO - Diffusion-NPO",
                selfnpo_u("self_npo"), selfnpo_u("diffusion_npo"), margin=0.1, requires=["NG"],
                paper="Self-NPO abstract", asserted=not smoke, extra={"compute": selfnpo_cost}),
        compare("N3", "At its best w, Self-NPO guidance lowers the styled-mode share below the base's (w = 1)",
                "styled-mode share, Self-NPO (best w) - base (w = 1)", selfnpo_u("self_npo_styled"),
                selfnpo_u("w1_styled"), delta=0.05, direction="less", kind="secondary", asserted=not smoke),
    ]  # fmt: skip
    selfnpo_record = {
        arm: {"best_w": [r["record"][arm]["best_w"] for r in selfnpo_runs],
              "quality": [r["record"][arm]["quality"] for r in selfnpo_runs],
              "oracle_reward": [r["record"][arm]["oracle_reward"] for r in selfnpo_runs],
              "styled_share": [r["record"][arm]["styled"] for r in selfnpo_runs]}
        for arm in selfnpo_arms
    }  # fmt: skip
    selfnpo_record["negative_alone"] = {arm: [r["record"][arm]["negative_alone"] for r in selfnpo_runs]
                                        for arm in ("self_npo", "diffusion_npo")}  # fmt: skip
    selfnpo_record["compute"] = selfnpo_cost

# %% [markdown]
# ## Part E. Pref-GRPO: group win rates under a pairwise judge instead of standardised pointwise scores
#
# Wang et al. (2025). *Pref-GRPO: Pairwise Preference Reward-based GRPO for Stable Text-to-Image Reinforcement
# Learning.* [arXiv:2508.20751](https://arxiv.org/abs/2508.20751); official code CodeGoat24/Pref-GRPO.
#
# **Idea.** GRPO on a diffusion sampler standardises a group's reward-model scores. The paper argues that a pointwise
# reward model gives a group's images nearly equal scores, so standardising turns tiny gaps into unit-size "illusory
# advantages" and the policy hacks the reward model. Pref-GRPO judges every pair of the group with a pairwise model
# and rewards each sample by its win rate. The official code still standardises the win rates
# (`train_flux_pref_grpo.py` l.73-142, l.636-643):
#
# $$\mathrm{WR}_i = \frac{1}{G-1}\sum_{j\ne i} w_{ij},\quad w_{ij}\in\{1, \tfrac12, 0\},\qquad
#   A_i = \frac{\mathrm{WR}_i - \operatorname{mean}_j \mathrm{WR}_j}{\operatorname{std}_j \mathrm{WR}_j + 10^{-8}},$$
#
# then the PPO-clip surrogate at every trained denoising step, with ratio clip 1e-4, advantage clip ±5 and no KL term.
# G = 8, and the group shares its initial noise (`init_same_noise`).
#
# **Arms.** All start from the cached base and run the same number of GRPO iterations with the same training noise:
# 2 groups of G = 8 per class per iteration, 60% of the 49 stochastic steps trained.
# Two reward models are fitted on Bradley-Terry rater labels of 600 *data* pairs and never see the oracle:
# a pointwise $r_\phi(x, c)$ and an antisymmetric pairwise $P_\phi(a \succ b \mid c)$ (the judge).
#
# | arm | reward of a sample | advantage |
# |---|---|---|
# | `pointwise` | $r_\phi(x, c)$ | standardised in the group (the baseline the paper criticises) |
# | `pref_grpo` | its win rate in the group under $P_\phi$ (ties ½) | standardised (the official code) |
# | `pointwise_mean` | $r_\phi(x, c)$ | mean-only (our control; the paper has none) |
#
# **Units.** There are 1024 evaluation samples (`eval_samples`, 4 classes × 256), drawn from the same noise for every
# arm and for the base. Two per-unit metrics are used:
# - the oracle reward;
# - the hack gap: the arm's own RM win of the sample over the base's sample from the same noise, minus the oracle's
#   win (each in {0, ½, 1}). Its mean is `points.hack_gap`.

# %% [markdown]
# **Departures**
#
# | ours | paper / official code | why | expected effect |
# |---|---|---|---|
# | 2-D points; classes as prompts; a 128-wide MLP ε-model; the DDPM ancestral sampler (T = 50) | FLUX.1-dev, 25-step flow SDE (η = 0.7) | CPU budget | optimisation behaviour only |
# | the judge is the sign of a pairwise MLP's logit (a tie only at logit 0) | UnifiedReward-Think, a VLM, verdict parsed once per pair | offline | a deterministic judge; its win rates are the group's ranks |
# | win-rate advantage only | 0.7·A_WR + 1.4·A_CLIP (release script) | no second reward in the toy | tests the win rate alone |
# | RMs fitted on 600 rater-labelled data pairs | RMs trained on large human data | an RM that can be exploited outside the data (points.py docstring) | hacking shows within 150 iterations |
# | lr 3e-4 (Adam), 150 iterations, 8 groups of 8 per iteration | lr 1e-5, 64 GPUs × 4 × accum | toy scale; tuned on dev seeds so the pointwise arm hacks | — |
# | one random 60% subset of steps per iteration, shared by the batch | a subset per sample | one batched forward | none expected |
# | one Adam step per iteration (ratio ≡ 1, the 1e-4 clip never binds) | one update per batch | on-policy, as the official single step | — |
# | shared initial noise kept, as the official code does | `init_same_noise` | faithful | small: the DDPM sampler mostly forgets x_{T-1}; the record's `noise_sharing` gives the base's within-group RM spread with and without it |

# %%
if profile == "toy":
    from prefkit.prefgrpo_toy import PrefGRPOConfig, prefgrpo_claims, run_prefgrpo

    prefgrpo_cfg = PrefGRPOConfig.smoke() if smoke else PrefGRPOConfig()
    prefgrpo_runs = [run_prefgrpo(world, base, schedule, s, prefgrpo_cfg, progress=False) for s in seeds]
    prefgrpo_arms = list(prefgrpo_cfg.arms)
    display(pd.DataFrame({a: [r["record"][a]["oracle"] for r in prefgrpo_runs] for a in ["base", *prefgrpo_arms]},
                         index=[f"seed {s}" for s in seeds]).rename_axis("oracle reward"))  # fmt: skip

# %%
if profile == "toy":
    fig, axes = plot.figure(3, 1, width=4.4)
    for arm in prefgrpo_arms:
        it = prefgrpo_runs[0]["curves"][arm]["iteration"]
        line = plot.mean_band(axes[0], it, [r["curves"][arm]["oracle"] for r in prefgrpo_runs], arm)
        plot.mean_band(
            axes[1], it, [r["curves"][arm]["rm_win"] for r in prefgrpo_runs], f"{arm}: own RM", line.get_color()
        )
        plot.mean_band(axes[1], it, [r["curves"][arm]["oracle_win"] for r in prefgrpo_runs], f"{arm}: oracle",
                       line.get_color(), linestyle="--")  # fmt: skip
        spread = np.mean([r["curves"][arm]["spread"] for r in prefgrpo_runs], 0)
        axes[2].plot(spread, np.mean([r["curves"][arm]["abs_adv"] for r in prefgrpo_runs], 0), ".", ms=3, label=arm,
                     color=line.get_color())  # fmt: skip
    axes[0].set(xlabel="GRPO iteration", ylabel="oracle reward (val noise)", title="Oracle reward")
    axes[1].set(xlabel="GRPO iteration", ylabel="win rate over the base", title="Own RM (solid) vs oracle (dashed)")
    axes[2].set(xscale="log", xlabel="within-group reward spread (std)", ylabel="mean |advantage|",
                title="|A| against reward spread (one dot per iteration)")  # fmt: skip
    for ax in axes:
        ax.legend(fontsize=7)
    figures.append(plot.save(fig, out, "prefgrpo_curves.png"))

# %% [markdown]
# **Claims of Part E, fixed before the run.**
# - **PG** (gate, ours): pointwise GRPO with standardised advantages hacks its RM. Its hack gap over the base must
#   exceed 0.1 in win-rate units, with the whole 95% interval (hierarchical bootstrap) above 0.1. Without an exploit,
#   "less hacking" cannot be tested.
# - **P1** (headline, requires PG): Pref-GRPO's hack gap, under its own pairwise RM, is smaller than pointwise GRPO's
#   under its pointwise RM. Paired units, δ = 0.05 win-rate units.
# - **P2** (headline, requires PG): Pref-GRPO's final oracle reward is higher than pointwise GRPO's, δ = 0.05.
# - **P3** (secondary, ours; the illusory-advantage mechanism): under pointwise GRPO, the within-group RM spread over
#   the last quarter of iterations, divided by that over the first quarter, is below 1 by at least δ = 0.25.
#   Standardisation holds mean |A| near 0.8 meanwhile. One ratio per seed, t-interval.

# %%
if profile == "toy":
    claims += prefgrpo_claims(prefgrpo_runs, compare, gate, per_seed, asserted=not smoke)
    prefgrpo_record = {
        "per_seed": {str(s): r["record"] for s, r in zip(seeds, prefgrpo_runs)},
        "rm_accuracy": {str(s): r["rm_accuracy"] for s, r in zip(seeds, prefgrpo_runs)},
        "noise_sharing": {str(s): r["noise_sharing"] for s, r in zip(seeds, prefgrpo_runs)},
    }

# %% [markdown]
# ## The hf profile: scoring image pairs with a real pipeline's implicit reward
#
# With `profile="hf"`, `model_name` is a local diffusers pipeline folder (Stable Diffusion 1.x / 2.x layout: `unet`,
# `vae`, `text_encoder`, `tokenizer`, `scheduler`), for instance a downloaded SD1.5 or a Diffusion-DPO-tuned copy, or
# a folder holding only a UNet (how DPO checkpoints are often shared); `ref_model_name` is the reference pipeline, a
# full one (its VAE and text encoder serve both models), and defaults to `model_name` itself; `dataset` is a
# `.jsonl`/`.json` file of `{prompt, chosen, rejected}` rows whose image paths are relative to that file. Nothing is
# downloaded.
#
# For every pair, `prefkit.hf_diffusion.implicit_rewards` encodes both images with the reference pipeline's VAE
# (posterior mean × scaling factor), draws `hf_draws` pairs of (t ~ U{0..T−1}, ε), each shared by the pair's two
# images as in the official code, and averages the Diffusion-DPO implicit-reward margin
# $-\tfrac12\beta\,[(m_\theta(x_w)-m_{\text{ref}}(x_w)) - (m_\theta(x_l)-m_{\text{ref}}(x_l))]$, where $m$ is the
# per-image mean squared error of the ε (or v) prediction. The accuracy is the share of pairs with a positive margin
# (exact ties count half). Diffusion-DPO reports 72.0% for DPO-SDXL against SDXL on Pick-a-Pic; SDXL layouts are not
# supported here. With the reference equal to the policy every margin is exactly 0 (accuracy 0.5, loss ln 2): the
# step-0 check of the toy, on a real model.
#
# What this profile does **not** do: train a text-to-image model. A Diffusion-DPO training loop for a diffusers UNet
# would need a GPU to check on a real model, and this repository is tested on CPUs only; the toy parts above test the
# losses' optimisation behaviour instead. Scoring is tested on a tiny random pipeline built offline
# (`tests/test_hf_diffusion.py`). No claim is asserted: there is no oracle, and the accuracy is only as meaningful as the pairs.

# %%
if profile == "hf":
    from pathlib import Path

    from prefkit.hf_diffusion import implicit_rewards, load_pairs, load_pipeline_parts, load_unet

    ref_parts = load_pipeline_parts(ref_model_name or model_name, device=device)  # VAE, text encoder, π_ref, scheduler
    policy_unet = load_unet(model_name, device=device)  # a separate copy even when the folders are the same
    hf_pairs = load_pairs(dataset)[: 4 if smoke else None]
    hf_runs = {
        s: implicit_rewards(policy_unet, ref_parts.unet, ref_parts.vae, ref_parts.text_encoder, ref_parts.tokenizer,
                            ref_parts.scheduler, hf_pairs, beta=hf_beta, n_draws=1 if smoke else hf_draws, seed=s,
                            batch_size=hf_batch)
        for s in seeds
    }  # fmt: skip
    hf_record = {
        "pairs": len(hf_pairs),
        "same_model": (ref_model_name or model_name) == model_name,
        "accuracy": {s: round(r.accuracy, 4) for s, r in hf_runs.items()},
        "mean_margin": {s: round(float(r.margins.mean()), 4) for s, r in hf_runs.items()},
        "mean_loss": {s: round(float(r.losses.mean()), 4) for s, r in hf_runs.items()},
    }
    display(pd.DataFrame({"accuracy": hf_record["accuracy"], "mean margin": hf_record["mean_margin"],
                          "mean loss (ln 2 = 0.693 at π = π_ref)": hf_record["mean_loss"]}).rename_axis("seed"))  # fmt: skip
    claims.append(per_seed(
        "hf-acc", "the policy's Diffusion-DPO implicit reward ranks the chosen image above the rejected one more often "
        "than chance (no oracle: not asserted)", "implicit-reward accuracy - 0.5", [r.accuracy for r in hf_runs.values()],
        0.5, delta=0.05, paper="Diffusion-DPO: 72.0% for DPO-SDXL on Pick-a-Pic", asserted=False,
    ))  # fmt: skip
    fig, (ax,) = plot.figure(width=5, height=3.2)
    ax.hist(np.concatenate([r.margins for r in hf_runs.values()]), bins=30)
    ax.axvline(0, color="k", lw=0.8)
    ax.set(xlabel="implicit reward margin (chosen − rejected)", ylabel="pairs × seeds",
           title=f"{Path(model_name).name} vs {Path(ref_model_name or model_name).name}, β={hf_beta:g}")  # fmt: skip
    figures.append(plot.save(fig, out, "hf_margins.png"))

# %% [markdown]
# ## Paper vs ours

# %%
display(claims_table(claims))

# %%
names = ["seed", "n_seeds", "smoke", "profile", "model_name", "ref_model_name", "dataset", "hf_beta", "hf_draws",
         "hf_batch"]  # fmt: skip
params = {k: globals()[k] for k in names}
params.update({k: v for k, v in globals().items() if k.isupper() and isinstance(v, (int, float))})  # deltas, gates
extra = {"notebook": "13_diffusion", "scale": "2-D diffusion toy: optimisation behaviour, not image quality"}
if profile == "toy":
    params.update(base=asdict(base_cfg))
    params.update({k: asdict(v) for k, v in globals().items() if k.endswith("_cfg") and k != "base_cfg"
                   and hasattr(v, "__dataclass_fields__")})  # fmt: skip
    extra.update({k: v for k, v in globals().items() if k.endswith("_record") and isinstance(v, dict)})
else:
    extra.update(hf_margins=hf_record)
path = write_result(
    out,
    "diffusion",
    {
        "arxiv": "2311.12908; 2406.06424; 2506.02698; 2410.18013; 2505.11777; 2508.20751",
        "title": "Diffusion-DPO (Wallace et al. 2024); MaPO (Hong, Paul et al. 2024); SmPO (Lu et al. 2025); "
        "RankDPO (Karthik et al. 2024); Self-NPO (Wang et al. 2025); Pref-GRPO (Wang et al. 2025)",
        "claim": "MaPO's advantage over Diffusion-DPO grows with reference mismatch; smoothed labels beat hard ones and "
        "over-optimise less; ranked lists from several reward models beat pairs; a self-learnt negative model "
        "improves guidance as much as a preference-trained one; pairwise win rates hack the reward less than "
        "standardised pointwise rewards",
        "number": "RankDPO: SDXL DPG-Bench DSG 74.65 -> 79.26 (DPO on 5 rewards 78.84, on HPSv2 78.04); "
        "Diffusion-DPO: 72.0% implicit-reward accuracy on Pick-a-Pic; MaPO, SmPO, Self-NPO, Pref-GRPO: improvements "
        "without a number we could verify in their text",
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
# each claim that did not reproduce and on the reproduced ones whose reading needs care. A note names the status it
# was written for and is withdrawn if a re-run changes that status.

# %% tags=["findings"]
from IPython.display import Markdown

from prefkit.repro import what_we_found

why = {  # claim id -> (the status a note was written for, why the claim came out that way in the toy setting)
    "M1": ("reproduced", "read with one caveat: Diffusion-DPO's best setting lay at the edge of what we searched on "
           "every seed and level (the smallest β of its grid, and mostly the last checkpoint; the settings table of "
           "Part A), so DPO was still improving when its budget ended. The sweep compares the methods at equal steps "
           "and equal tuning effort, not at convergence; far from the base, DPO's reference term holds each step back, "
           "which is the paper's mechanism. An exploratory check on a development seed (the novel level only; a smaller β and "
           "three times the steps) narrowed DPO's gap to MaPO a good deal but did not close it."),
    "M2": ("reproduced", "the same caveat as M1: Diffusion-DPO at its best setting within our grid and 600 steps."),
    "M3": ("not reproduced", "MaPO at its best β chose the smallest β of its grid on almost every seed and level, "
           "where its loss is nearly SFT on the chosen samples, and matched SFT. In this world the chosen samples are "
           "the target distribution itself, so imitating them is already what the oracle rewards, and a margin that "
           "pushes away from the base's samples can only overshoot (on a development seed, MaPO at its official β "
           "pushed the samples past the target). In Pick-Style the rejected images carry information the chosen ones do not; ours carry none."),
    "S2": ("reversed", "under 4x training Diffusion-DPO (β 500) kept improving slowly and barely dropped from its "
           "peak, while SmPO rose faster and then fell back. SmPO's per-pair scale averages 1 but is several times "
           "larger on the pairs its reward model is sure about; our reading, not tested, is that those pairs keep "
           "being pushed after they are learnt. The paper's claim is qualitative; in our world smoothing did not stop over-optimisation."),
    "S4": ("inconclusive", "ReNoise inversion was ahead of plain SmPO on average, not on every seed. This claim was "
           "added after a development run showed the inversion ahead (see its statement), so it carries less weight "
           "than the others either way."),
    "K1": ("reversed", "RankDPO trained the policy less far towards the preferred samples than DPO on each list's "
           "best and worst item, at equal steps and samples per step. We have no tested explanation, and two readings "
           "we checked do not give one: the labels are good (φ orders most item pairs as the oracle does: the label "
           "diagnostics in the record), and the step is not smaller (with four distinct labels the gain and discount "
           "weights of a list add up to more than the weight DPO puts on one pair). What differs is what is pushed: "
           "DPO moves the best sample up and the worst down, RankDPO also pushes on every middle pair. The paper "
           "compares RankDPO with DPO on different data (Pick-a-Pic pairs); a best-vs-worst baseline was not run "
           "there."),
    "K2": ("inconclusive", "labels aggregated over five reward models were ahead of one model's on two seeds and "
           "behind on one, where the single reward model happened to be a good one; the paper's own gap is small "
           "(0.8 DSG) too."),
    "K3": ("reversed", "the DCG discount lowered the reward a little. It moves weight towards the pairs that involve "
           "the items the model currently ranks first; we have no tested explanation for why that hurt here. The "
           "paper's own discount effect is +0.11 DSG."),
    "N1": ("reproduced", "Self-NPO raised the typical sample's density by sharpening samples onto the plain modes and "
           "dropping most of the rare styled mode (N3), and its oracle reward, which values the styled mode, fell "
           "(the figure). Mean log-density rewards mode-seeking: 'better quality' here means denser typical samples, "
           "not better samples in every sense. Plain CFG never beat w = 1 on this metric (its guidance pushes samples "
           "outwards past the modes)."),
    "N2": ("reproduced", "Diffusion-NPO's negative never helped on this metric either (its best w was 1 on every seed, "
           "where the negative is unused), so N2 compares Self-NPO with the base itself. The paper's other half, 'at "
           "under 1% of Diffusion-NPO's cost', is not tested: in our configuration Self-NPO spent more network "
           "evaluations than Diffusion-NPO (the compute record), and both counts are set by our choice of steps and "
           "batch, not measured against a common target."),
    "P1": ("reversed", "Pref-GRPO hacked its pairwise reward model more than pointwise GRPO hacked its pointwise one. "
           "The pairwise model extrapolates as badly as the pointwise one outside the data, and a deterministic "
           "judge's win rates are just the group's ranks: standardised ranks give every group unit-size advantages "
           "however small its differences, so the 'illusory advantages' remain, and the policy climbs the judge's "
           "ordering out of the data's support (its own-RM win rate rose while the oracle's fell to about 0: the "
           "curves). The paper's judge is a vision-language model whose verdicts tie and vary, and its script adds a "
           "CLIP advantage; neither is in our toy."),
    "P2": ("inconclusive", "every arm ended below the base (all three hacked their reward models); Pref-GRPO ended "
           "less low on average but not on every seed."),
    "P3": ("inconclusive", "the mechanism ran the other way: as the policy left the data, the pointwise model's scores "
           "grew without bound and the within-group spread grew by orders of magnitude instead of shrinking, while "
           "standardisation held the advantages at unit size. The paper's regime (near-equal scores amplified) is not "
           "the one our exploit produced."),
}  # fmt: skip
display(Markdown(what_we_found(path, why if profile == "toy" and not smoke else {})))

# %% [markdown] tags=["findings"]
# **Our reading across the parts.** In this 2-D world every mechanism we implemented did something (all five gates
# passed), and the claims split along one line: where a paper's claim rests on *what the data lets the loss see*, the
# toy reproduced it; where it rests on *how a weighting or a judge behaves at scale*, it did not. Dropping the
# reference helped most where the reference knew nothing about the target (MaPO), and reward-model labels with a
# per-pair scale beat noisy hard labels at equal steps (SmPO). Weighting every pair of a short list (RankDPO) and
# replacing pointwise scores by a deterministic pairwise judge (Pref-GRPO) did not help, and the smoothing did not
# stop over-optimisation. Self-NPO's negative improved the metric it was built for, at the cost of the rare mode. These
# are statements about optimisation in a small world with an exact oracle, not about image quality.

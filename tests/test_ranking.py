"""Ranking metrics and exact path decoding, against scipy and brute force on small lists."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from prefkit.ranking import BilinearPairScorer, held_karp_path, kendall_tau, ndcg_at_k


@pytest.mark.parametrize("seed", range(5))
def test_kendall_tau_is_scipys_tau_b_with_ties(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 4, 9).astype(float), rng.normal(size=9)
    b[:3] = b[3]  # ties on both sides
    assert kendall_tau(a, b) == pytest.approx(kendalltau(a, b).statistic, abs=1e-12)
    assert kendall_tau(b, b) == pytest.approx(1.0) and kendall_tau(b, -b) == pytest.approx(-1.0)


def test_ndcg_closed_forms():
    rel = [3.0, 0.0, 1.0]
    assert ndcg_at_k([0, 2, 1], rel) == pytest.approx(1.0)  # the ideal order
    dcg = (2**0 - 1) / np.log2(2) + (2**1 - 1) / np.log2(3) + (2**3 - 1) / np.log2(4)
    ideal = 7 / np.log2(2) + 1 / np.log2(3)
    assert ndcg_at_k([1, 2, 0], rel) == pytest.approx(dcg / ideal)
    assert ndcg_at_k([1, 2, 0], rel, k=1) == 0.0 and ndcg_at_k([0, 1, 2], rel, k=1) == 1.0
    assert ndcg_at_k([0, 1], [0.0, 0.0]) == 0.0


@pytest.mark.parametrize("n", [2, 3, 5, 7])
def test_held_karp_finds_the_brute_force_best_path(n):
    rng = np.random.default_rng(n)
    S = rng.normal(size=(n, n))
    order, total = held_karp_path(S)
    score = lambda p: sum(S[a, b] for a, b in zip(p, p[1:]))  # noqa: E731
    brute = max(itertools.permutations(range(n)), key=score)
    assert sorted(order) == list(range(n))
    assert total == pytest.approx(score(brute)) and score(order) == pytest.approx(total)


def test_held_karp_recovers_a_chain_from_adjacency_scores():
    perm = [4, 1, 5, 0, 3, 2]
    S = np.zeros((6, 6))
    for a, b in zip(perm, perm[1:]):
        S[a, b] = 1.0  # only the true successor scores
    assert held_karp_path(S) == (perm, 5.0)


def test_bilinear_scores_are_h_i_w_h_j():
    torch.manual_seed(0)
    scorer = BilinearPairScorer(3)
    h = torch.randn(4, 3)
    assert torch.equal(scorer(h), torch.zeros(4, 4))  # starts neutral
    with torch.no_grad():
        scorer.W.copy_(torch.randn(3, 3))
    S = scorer(h)
    assert torch.allclose(S[1, 2], h[1] @ scorer.W @ h[2])
    assert scorer(h.expand(2, 4, 3)).shape == (2, 4, 4)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same length"):
        kendall_tau([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-finite value at index 1"):
        kendall_tau([1, float("nan"), 2], [1, 2, 3])
    with pytest.raises(ValueError, match="permutation of the 3 items"):
        ndcg_at_k([0, 0, 1], [1, 2, 3])
    with pytest.raises(ValueError, match="square"):
        held_karp_path(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="raise max_n"):
        held_karp_path(np.zeros((13, 13)))


# TSPRank: batched decoding, objectives, training helpers

from prefkit.ranking import (  # noqa: E402
    ItemScorer,
    PairScorer,
    fit_pair_scorer,
    held_karp_batch,
    list_metrics,
    path_score,
    run_arms,
    successor_ce_loss,
    tsp_margin_loss,
)


@pytest.mark.parametrize("n", [2, 4, 7])
def test_held_karp_batch_is_held_karp_path_per_list_ties_included(n):
    rng = np.random.default_rng(n)
    S = np.concatenate([rng.normal(size=(6, n, n)), rng.integers(0, 2, size=(6, n, n)).astype(float)])
    want = np.array([held_karp_path(s)[0] for s in S])
    np.testing.assert_array_equal(held_karp_batch(S), want)


def test_held_karp_batch_errors():
    with pytest.raises(ValueError, match=r"\(B, n, n\)"):
        held_karp_batch(np.zeros((3, 3)))
    S = np.zeros((2, 3, 3))
    S[1, 0, 2] = np.nan
    with pytest.raises(ValueError, match="list 1"):
        held_karp_batch(S)


def test_path_score_sums_consecutive_pairs():
    S = torch.arange(16, dtype=torch.float64).reshape(1, 4, 4)
    assert path_score(S, torch.tensor([[2, 0, 3, 1]])).item() == S[0, 2, 0] + S[0, 0, 3] + S[0, 3, 1]


def test_successor_ce_matches_row_softmax_loop():
    g = torch.Generator().manual_seed(0)
    S = torch.randn(3, 5, 5, generator=g, dtype=torch.float64)
    orders = torch.stack([torch.randperm(5, generator=g) for _ in range(3)])
    want = []
    for b in range(3):
        terms = []
        for t in range(4):
            i, j = orders[b, t], orders[b, t + 1]
            others = [k for k in range(5) if k != i]
            terms.append(-(S[b, i, j] - torch.logsumexp(S[b, i, others], 0)))
        want.append(torch.stack(terms).mean())
    torch.testing.assert_close(successor_ce_loss(S, orders), torch.stack(want))
    Sg = S.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: successor_ce_loss(x, orders), (Sg,))


def test_margin_loss_is_loss_augmented_brute_force():
    g = torch.Generator().manual_seed(1)
    n = 5
    S = torch.randn(2, n, n, generator=g, dtype=torch.float64)
    orders = torch.stack([torch.randperm(n, generator=g) for _ in range(2)])
    loss, pred = tsp_margin_loss(S, orders)
    for b in range(2):
        gold = {(int(orders[b, t]), int(orders[b, t + 1])) for t in range(n - 1)}
        best = max(
            sum(float(S[b, p[t], p[t + 1]]) + ((p[t], p[t + 1]) not in gold) for t in range(n - 1))
            for p in itertools.permutations(range(n))
        )
        gold_score = sum(float(S[b, i, j]) for i, j in gold)
        assert loss[b].item() == pytest.approx((best - gold_score) / n, abs=1e-9)
        assert loss[b].item() >= 0
    # a scorer that already ranks the gold path first by a margin of 1 per edge has zero loss
    A = torch.zeros(1, n, n, dtype=torch.float64)
    A[0, orders[0, :-1], orders[0, 1:]] = 2.0
    assert tsp_margin_loss(A, orders[:1])[0].item() == pytest.approx(0.0)


def test_bad_orders_are_named():
    S = torch.zeros(2, 3, 3)
    with pytest.raises(ValueError, match=r"orders\[1\]"):
        successor_ce_loss(S, torch.tensor([[0, 1, 2], [0, 0, 2]]))
    with pytest.raises(ValueError, match="orders must be"):
        tsp_margin_loss(S, torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match="objective"):
        fit_pair_scorer(PairScorer(4), torch.zeros(2, 3, 4), torch.tensor([[0, 1, 2]] * 2), objective="exact")


def test_list_metrics():
    truth = np.array([[3.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    m = list_metrics(np.array([[0, 2, 1], [0, 1, 2]]), truth)
    np.testing.assert_allclose(m["tau"], [1.0, -1.0])
    np.testing.assert_array_equal(m["exact"], [1.0, 0.0])


def test_pair_scorer_learns_a_planted_chain_and_sorting_cannot():
    from prefkit.worlds.chain import ChainWorld

    torch.manual_seed(0)
    world = ChainWorld(n_items=5, key_dim=6, key_noise=0.0, position_noise=5.0)  # position cue nearly useless
    rng = np.random.default_rng(0)
    tr, te = world.sample(200, rng), world.sample(50, rng)
    x, y = torch.as_tensor(tr["x"], dtype=torch.float32), torch.as_tensor(tr["relevance"], dtype=torch.float32)
    ev = {"test": (torch.as_tensor(te["x"], dtype=torch.float32), te["relevance"])}
    from prefkit.losses.ranking import ranknet_loss

    arms = {"sort": {"loss": ranknet_loss}, "tsp": {"objective": "hybrid"}}
    res = run_arms(arms, x, y, ev, seed=0, epochs=12, lr=3e-3, hidden=32)
    tsp, srt = res["tsp"]["test"], res["sort"]["test"]
    assert tsp["tau"].mean() > 0.6 and tsp["exact"].mean() > 0.4 and tsp["tau"].mean() > srt["tau"].mean() + 0.4
    assert isinstance(ItemScorer(3)(torch.zeros(2, 4, 3)), torch.Tensor)


# Sentiment lists (prefkit.listrank)


def test_subject_domains_and_sentiment_lists():
    from prefkit.listrank import annotator_ratings, sentiment_lists, subject_domains
    from prefkit.worlds.sentiment import SentimentWorld

    texts = ["The food was good.", "The price was dull.", "The food was fine, but the price was bad.", "Nothing."]
    np.testing.assert_array_equal(subject_domains(texts), [0, 1, -1, -1])
    world = SentimentWorld(seed=0, n_train=60, n_test=20)
    rng = np.random.default_rng(0)
    r = annotator_ratings(world, np.arange(60), rng, n_annotators=400)
    assert np.abs(r - world.train_scores).max() < 0.1  # many annotators average the noise away
    feats = torch.randn(60, 5)
    x, y = sentiment_lists(world, feats, "train", np.arange(60), 7, 4, rng, n_annotators=3)
    assert x.shape == (7, 4, 5) and y.shape == (7, 4) and y.dtype == torch.float32
    x, truth = sentiment_lists(world, feats[:20], "test", np.arange(20), 3, 4, rng)
    assert all(np.isin(t, world.test_scores).all() for t in truth)
    with pytest.raises(ValueError, match="n_annotators"):
        annotator_ratings(world, [0], rng, 0)

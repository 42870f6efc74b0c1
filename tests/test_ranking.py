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

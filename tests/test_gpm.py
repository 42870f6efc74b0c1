"""Tabular preference embeddings: they recover an intransitive aggregate that Bradley-Terry cannot, and agree with
Bradley-Terry where the raters are transitive."""

from __future__ import annotations

import numpy as np
import pytest

from prefkit.gpm import fit_preference_embeddings, preference_matrix
from prefkit.selfplay import fit_bradley_terry
from prefkit.worlds.raters import RaterGroups


def _comparisons(world: RaterGroups, m: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    i = rng.integers(world.n, size=m)
    j = (i + rng.integers(1, world.n, size=m)) % world.n
    return np.c_[i, j, [world.compare(int(a), int(b), rng) for a, b in zip(i, j)]]


def _bt_matrix(scores: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(scores[:, None] - scores[None, :])))


def _agreement(P: np.ndarray, exact: np.ndarray) -> float:
    """Share of unordered pairs whose majority direction P gets right."""
    iu = np.triu_indices(len(P), 1)
    return float(np.mean((P[iu] > 0.5) == (exact[iu] > 0.5)))


def test_one_block_recovers_a_condorcet_cycle_that_bradley_terry_cannot():
    world = RaterGroups.cyclic()  # A > B > C > A by majority
    exact, rows = world.preference_matrix(), _comparisons(world, 3000, seed=0)
    P = preference_matrix(fit_preference_embeddings(rows, world.n, k=1))
    bt = _bt_matrix(fit_bradley_terry(rows, world.n))
    assert _agreement(P, exact) == 1.0 and np.abs(P - exact).max() < 0.05
    assert _agreement(bt, exact) <= 2 / 3  # no ordering of three scores follows a cycle
    np.testing.assert_allclose(P + P.T, 1.0, atol=1e-12)


def test_on_transitive_raters_both_models_agree_with_the_majority():
    world = RaterGroups.transitive()
    exact, rows = world.preference_matrix(), _comparisons(world, 3000, seed=1)
    P = preference_matrix(fit_preference_embeddings(rows, world.n, k=1))
    bt = _bt_matrix(fit_bradley_terry(rows, world.n))
    assert _agreement(P, exact) == 1.0 and _agreement(bt, exact) == 1.0  # the majority: no difference to find
    # the probabilities differ: these groups give P[A, C] = 1, which no finite BT gap reaches, so BT compromises
    assert np.abs(P - exact).max() < 0.05 < np.abs(bt - exact).max()


def test_bad_comparisons_are_refused():
    with pytest.raises(ValueError, match=r"integers in \[0, 3\)"):
        fit_preference_embeddings(np.array([[0, 3, 1.0]]), 3)
    with pytest.raises(ValueError, match="outcomes y must be in"):
        fit_preference_embeddings(np.array([[0, 1, 2.0]]), 3)
    with pytest.raises(ValueError, match="k >= 1 blocks and tau > 0"):
        fit_preference_embeddings(np.array([[0, 1, 1.0]]), 3, k=0)

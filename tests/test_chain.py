"""The adjacency-cue chain world: shapes, the true order, keys that chain, and the position cue."""

from __future__ import annotations

import numpy as np
import pytest

from prefkit.ranking import held_karp_batch
from prefkit.worlds.chain import ChainWorld


def test_shapes_and_true_order():
    w = ChainWorld(n_items=6, key_dim=4)
    d = w.sample(10, np.random.default_rng(0))
    assert d["x"].shape == (10, 6, 9) and w.dim == 9
    for rank, order, rel in zip(d["rank"], d["order"], d["relevance"]):
        assert sorted(rank) == list(range(6))
        np.testing.assert_array_equal(rank[order], np.arange(6))  # order lists the shown items first to last
        np.testing.assert_array_equal(rel, 5 - rank)


def test_out_key_of_each_item_is_the_next_items_in_key_without_noise():
    w = ChainWorld(n_items=5, key_dim=3, key_noise=0.0, position_noise=0.0)
    d = w.sample(4, np.random.default_rng(1))
    for x, order in zip(d["x"], d["order"]):
        seq = x[order]  # items in true order
        np.testing.assert_allclose(seq[1:, :3], seq[:-1, 3:6])  # in-key of t+1 = out-key of t
        np.testing.assert_allclose(seq[:, 6], np.arange(5) / 4)  # exact position cue


def test_key_match_path_recovers_the_order_exactly():
    w = ChainWorld(n_items=7, key_dim=16, key_noise=0.0, position_noise=1.0)
    d = w.sample(20, np.random.default_rng(2))
    k = 16
    S = np.einsum("lak,lbk->lab", d["x"][..., k : 2 * k], d["x"][..., :k])  # S[a, b] = o_a · i_b
    np.testing.assert_array_equal(held_karp_batch(S), d["order"])


def test_position_noise_and_errors():
    d = ChainWorld(position_noise=0.0).sample(3, np.random.default_rng(3))
    np.testing.assert_allclose(d["x"][..., -1], (7 - d["relevance"]) / 7)
    with pytest.raises(ValueError, match="key_noise"):
        ChainWorld(key_noise=-1.0)
    with pytest.raises(ValueError, match="n_items"):
        ChainWorld(n_items=1)
    with pytest.raises(ValueError, match="n_lists"):
        ChainWorld().sample(0, np.random.default_rng(0))

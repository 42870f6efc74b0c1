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


def test_response_features_are_the_hidden_state_at_the_last_response_token(tok, model):
    import torch

    from prefkit.gpm import response_features
    from prefkit.logps import encode

    prompts = ["reverse : a b c =", "sort : d a c ="]
    responses = [["c b a", "a"], ["a c d", "d c a | a"]]
    feats = response_features(model, tok, prompts, responses)
    assert feats.shape == (2, 2, model.config.hidden_size)
    model.eval()
    for b, p in enumerate(prompts):
        for k, y in enumerate(responses[b]):
            enc = encode(tok, [p], [y])
            last = int(enc["response_mask"][0].nonzero().max())
            with torch.no_grad():
                out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
            torch.testing.assert_close(feats[b, k], out.hidden_states[-1][0, last], rtol=1e-4, atol=1e-5)


def _angle_pairs(n: int, seed: int, cyclic: bool):
    """Features (cos θ, sin θ, 6 noise dims) of random items, labelled by a rock-paper-scissors rule on the angle
    (a beats b when b lies within half a turn ahead of a: sin(θ_b - θ_a) > 0) or by a transitive one (cos θ)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    theta = 2 * np.pi * torch.rand(2, n, generator=g, dtype=torch.float64)
    feats = torch.cat(
        [theta.cos()[..., None], theta.sin()[..., None], torch.randn(2, n, 6, generator=g, dtype=torch.float64)], -1
    )
    a_wins = torch.sin(theta[1] - theta[0]) > 0 if cyclic else theta[0].cos() > theta[1].cos()
    chosen = torch.where(a_wins[:, None], feats[0], feats[1])
    rejected = torch.where(a_wins[:, None], feats[1], feats[0])
    return chosen, rejected


@pytest.mark.parametrize("cyclic", [True, False])
def test_a_general_preference_head_learns_a_cyclic_rule_that_a_reward_head_cannot(cyclic):
    from prefkit.gpm import fit_head, head_prob

    chosen, rejected = _angle_pairs(600, seed=0, cyclic=cyclic)
    test_c, test_r = _angle_pairs(400, seed=1, cyclic=cyclic)
    acc = {}
    for name, dim in (("bt", 1), ("gpm", 2)):
        head = fit_head(chosen, rejected, dim=dim, steps=400, lr=0.05)
        acc[name] = float((head_prob(head, test_c, test_r) > 0.5).double().mean())
    if cyclic:
        assert acc["gpm"] > 0.95 and acc["bt"] < 0.75, acc
    else:  # the control: a transitive rule, which both express
        assert acc["gpm"] > 0.95 and acc["bt"] > 0.95, acc
        no_bias = fit_head(chosen, rejected, dim=2, steps=400, lr=0.05, bias=False)
        assert float((head_prob(no_bias, test_c, test_r) > 0.5).double().mean()) < 0.7  # needs a constant direction


def test_majorities_are_told_apart_and_drawn_as_asked():
    from prefkit.gpm import majority_is_transitive, random_rater_groups

    assert not majority_is_transitive(RaterGroups.cyclic().preference_matrix())
    assert majority_is_transitive(RaterGroups.transitive().preference_matrix())
    rng = np.random.default_rng(0)
    for transitive in (True, False):
        for _ in range(5):
            world = random_rater_groups(5, 5, rng, transitive)
            assert world.n == 5 and len(world.weights) == 5
            assert majority_is_transitive(world.preference_matrix()) == transitive
    with pytest.raises(RuntimeError, match="no cyclic majority in 20 draws of 1 groups over 4 responses"):
        random_rater_groups(4, 1, rng, transitive=False, tries=20)  # one ranking never cycles


def test_the_fit_is_a_stationary_point_of_the_per_comparison_likelihood():
    import torch

    from prefkit.losses.scorer import gpm_loss

    rows = _comparisons(RaterGroups.cyclic(), 300, seed=4)
    v = torch.tensor(fit_preference_embeddings(rows, 3, k=1, seed=7), requires_grad=True)
    i, j, y = (torch.as_tensor(rows[:, c]) for c in range(3))
    losses, _ = gpm_loss(v[i.long()], v[j.long()], tau=1.0, strength=y)  # one term per comparison, as documented
    (losses.mean() + 0.5 * 1e-3 * (v**2).sum() / len(rows)).backward()
    assert v.grad.abs().max() < 1e-6

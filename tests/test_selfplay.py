"""Rater groups, the Minimax Winner, Bradley-Terry + RL and SPO (Swamy et al. 2024) over a few fixed responses."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, softmax

from prefkit.selfplay import bt_rl, exploitability, fit_bradley_terry, minimax_winner, spo
from prefkit.worlds import RaterGroups

W = (0.45, 0.35, 0.20)  # the default weights of RaterGroups.cyclic
A, B, C = 0, 1, 2


def random_preference_matrix(n: int, rng: np.random.Generator) -> np.ndarray:
    U = np.triu(rng.uniform(size=(n, n)), 1)
    return U + np.tril(1 - U.T, -1) + 0.5 * np.eye(n)


class CompareOnly:
    """A world that offers nothing but ``n`` and ``compare``, and counts the rater queries (i != j)."""

    def __init__(self, world: RaterGroups):
        self.n, self._world, self.queries = world.n, world, 0

    def compare(self, i: int, j: int, rng: np.random.Generator) -> float:
        self.queries += int(i != j)
        return self._world.compare(i, j, rng)


# ---- the world ------------------------------------------------------------------------------------------------------


def test_cyclic_preference_matrix_closed_form():
    w1, w2, w3 = W
    P = RaterGroups.cyclic(W).preference_matrix()
    assert P[A, B] == pytest.approx(w1 + w3)
    assert P[B, C] == pytest.approx(w1 + w2)
    assert P[C, A] == pytest.approx(w2 + w3)
    np.testing.assert_allclose(P + P.T, np.ones((3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.diag(P), 0.5)
    assert P[A, B] > 0.5 and P[B, C] > 0.5 and P[C, A] > 0.5  # a majority cycle: no Condorcet winner


def test_transitive_control_has_a_condorcet_winner():
    P = RaterGroups.transitive().preference_matrix()
    np.testing.assert_allclose(P + P.T, 1.0, atol=1e-12)
    assert P[A, B] > 0.5 and P[A, C] > 0.5 and P[B, C] > 0.5
    assert P[A, C] == 1.0  # every group ranks A above C


def test_compare_samples_the_preference_matrix():
    world, rng = RaterGroups.cyclic(), np.random.default_rng(0)
    P = world.preference_matrix()
    for i, j in [(A, B), (B, C), (C, A), (B, A)]:
        freq = np.mean([world.compare(i, j, rng) for _ in range(4000)])
        assert abs(freq - P[i, j]) < 0.03  # 4 standard errors
    assert world.compare(B, B, rng) == 0.5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rankings": [(0, 1, 2), (0, 0, 2)], "weights": [0.5, 0.5]}, r"rankings\[1\]"),
        ({"rankings": [(0, 1, 2), (0, 1)], "weights": [0.5, 0.5]}, r"rankings\[1\]"),
        ({"rankings": [(0, 1, 2), (2, 1, 0)], "weights": [1.0, 0.0]}, r"weights\[1\]"),
        ({"rankings": [(0, 1, 2), (2, 1, 0)], "weights": [0.5, 0.6]}, "sum to"),
        ({"rankings": [(0, 1, 2), (2, 1, 0)], "weights": [1.0]}, "2 rankings but 1 weights"),
    ],
)
def test_bad_rater_groups_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RaterGroups(names=("A", "B", "C"), **kwargs)


# ---- the Minimax Winner ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [W, (0.4, 0.3, 0.3), (0.2, 0.35, 0.45)])
def test_minimax_winner_of_the_cycle_closed_form(weights):
    """On a 3-cycle A > B > C > A the equaliser is p ∝ (M[B,C], M[C,A], M[A,B]): each response is played in proportion
    to the margin of the edge it is not on, so every column pays 0."""
    w1, w2, w3 = weights
    P = RaterGroups.cyclic(weights).preference_matrix()
    expected = np.array([w1 + w2 - 0.5, w2 + w3 - 0.5, w1 + w3 - 0.5])
    p, value = minimax_winner(P)
    np.testing.assert_allclose(p, expected / expected.sum(), atol=1e-8)
    assert abs(value) < 1e-9
    assert exploitability(P, p) < 1e-8
    for k in range(3):  # no pure strategy is safe in a cycle
        assert exploitability(P, np.eye(3)[k]) > 0.04


def test_minimax_winner_of_the_transitive_control_is_the_condorcet_winner():
    P = RaterGroups.transitive().preference_matrix()
    p, _ = minimax_winner(P)
    np.testing.assert_allclose(p, np.eye(3)[A], atol=1e-9)
    assert exploitability(P, p) < 1e-9


def test_minimax_winner_of_a_random_matrix_is_unexploitable():
    rng = np.random.default_rng(3)
    P = random_preference_matrix(5, rng)
    p, value = minimax_winner(P)
    assert abs(value) < 1e-9 and exploitability(P, p) < 1e-8
    for q in rng.dirichlet(np.ones(5), size=20):
        assert exploitability(P, q) >= exploitability(P, p) - 1e-12
        assert exploitability(P, q) > 0


@pytest.mark.parametrize(
    "P, match",
    [
        (np.full((2, 3), 0.5), "square"),
        (np.array([[0.5, 1.2], [-0.2, 0.5]]), r"\[0, 1\]"),
        (np.array([[0.5, 0.7], [0.7, 0.5]]), "P.T"),
        (np.array([[0.4, 0.5], [0.5, 0.4]]), "P.T"),  # the diagonal must be 1/2
    ],
)
def test_bad_preference_matrices_are_rejected(P, match):
    with pytest.raises(ValueError, match=match):
        minimax_winner(P)
    with pytest.raises(ValueError, match=match):
        exploitability(P, np.ones(len(P)) / len(P))


def test_exploitability_rejects_a_non_policy():
    P = RaterGroups.cyclic().preference_matrix()
    with pytest.raises(ValueError, match="sum to 1"):
        exploitability(P, np.array([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        exploitability(P, np.array([0.5, 0.5]))


# ---- Bradley-Terry + RL ---------------------------------------------------------------------------------------------


def test_bradley_terry_two_responses_closed_form():
    """With one pair, the MLE gap is the log odds of the observed wins: s_0 - s_1 = log(30 / 10)."""
    rows = np.array([(0, 1, 1.0)] * 30 + [(0, 1, 0.0)] * 10)
    s = fit_bradley_terry(rows, 2, l2=1e-9)
    assert s[0] - s[1] == pytest.approx(np.log(3.0), abs=1e-6)
    assert s.sum() == pytest.approx(0.0, abs=1e-12)


def test_bradley_terry_recovers_known_scores():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=6)
    i = rng.integers(6, size=20_000)
    j = (i + rng.integers(1, 6, size=20_000)) % 6
    y = (rng.random(20_000) < expit(truth[i] - truth[j])).astype(float)
    s = fit_bradley_terry(np.c_[i, j, y], 6)
    assert np.corrcoef(s, truth)[0, 1] > 0.99
    np.testing.assert_allclose(s, truth - truth.mean(), atol=0.1)


def test_bradley_terry_stays_finite_when_a_response_never_loses():
    s = fit_bradley_terry(np.array([(0, 1, 1.0)] * 5 + [(1, 2, 1.0)] * 5), 3)
    assert np.all(np.isfinite(s)) and s[0] > s[1] > s[2]
    np.testing.assert_allclose(fit_bradley_terry(np.zeros((0, 3)), 3), 0.0)
    with pytest.raises(ValueError, match="indices"):
        fit_bradley_terry(np.array([(0, 3, 1.0)]), 3)
    with pytest.raises(ValueError, match="outcomes"):
        fit_bradley_terry(np.array([(0, 1, 2.0)]), 3)


def test_bt_rl_is_exploitable_on_the_cycle():
    world = RaterGroups.cyclic()
    P = world.preference_matrix()
    # Infinite data: fit BT to the exact win rates of every pair; the reward model still ranks B first.
    exact = np.array([(i, j, P[i, j]) for i in range(3) for j in range(3) if i != j] * 1000)
    policy = softmax(fit_bradley_terry(exact, 3) / 0.05)
    assert policy[B] > 0.7 and exploitability(P, policy) > 0.1
    # 10k sampled comparisons: the median over seeds is as exploitable.
    sampled = [exploitability(P, bt_rl(world, 10_000, np.random.default_rng(s))["policy"]) for s in range(5)]
    assert np.median(sampled) > 0.1


def test_bt_rl_reference_enters_as_log_prior():
    """π ∝ π_ref exp(r / α): the same comparisons (same rng) with a reference give the uniform-reference policy
    reweighted by π_ref."""
    world, ref = RaterGroups.cyclic(), np.array([0.1, 0.1, 0.8])
    flat = bt_rl(world, 300, np.random.default_rng(4), alpha=0.5)
    tilted = bt_rl(world, 300, np.random.default_rng(4), alpha=0.5, reference=ref)
    np.testing.assert_allclose(flat["scores"], tilted["scores"])
    np.testing.assert_allclose(tilted["policy"], softmax(np.log(ref) + flat["scores"] / 0.5))
    np.testing.assert_allclose(flat["policy"], softmax(flat["scores"] / 0.5))
    assert tilted["policy"][C] > flat["policy"][C]
    with pytest.raises(ValueError, match="sum to 1"):
        bt_rl(world, 10, np.random.default_rng(0), reference=np.array([0.5, 0.5, 0.5]))


# ---- SPO ------------------------------------------------------------------------------------------------------------


def test_spo_average_iterate_approaches_the_minimax_winner_on_the_cycle():
    world = RaterGroups.cyclic()
    P = world.preference_matrix()
    for seed in range(3):
        out = spo(world, iterations=1500, batch_size=8, lr=0.3, rng=np.random.default_rng(seed))
        assert out["last"].shape == out["average"].shape == (1501, 3)
        assert out["comparisons"].shape == (1501,) and np.all(np.diff(out["comparisons"]) >= 0)
        np.testing.assert_allclose(out["average"][-1], out["last"].mean(0))
        assert exploitability(P, out["average"][-1]) < 0.03  # uniform and pure A both sit at 0.05
        bt = bt_rl(world, int(out["comparisons"][-1]), np.random.default_rng(seed))
        assert exploitability(P, out["average"][-1]) < exploitability(P, bt["policy"]) - 0.05


def test_spo_concentrates_on_the_condorcet_winner():
    out = spo(RaterGroups.transitive(), iterations=300, batch_size=8, lr=0.3, rng=np.random.default_rng(0))
    assert out["last"][-1, A] > 0.95
    assert out["average"][-1].argmax() == A


def test_spo_only_asks_for_sampled_comparisons():
    """SPO must run on a world with no preference matrix, and its count of rater queries must be the true one."""
    world = CompareOnly(RaterGroups.cyclic())
    out = spo(world, iterations=50, batch_size=4, lr=0.3, rng=np.random.default_rng(0))
    assert out["comparisons"][-1] == world.queries > 0
    world = CompareOnly(RaterGroups.cyclic())
    bt_rl(world, 200, np.random.default_rng(0))
    assert world.queries == 200  # distinct pairs only


def test_spo_stops_once_its_queries_reach_the_budget():
    world = RaterGroups.cyclic()
    full = spo(world, iterations=400, batch_size=8, lr=0.3, rng=np.random.default_rng(1))
    short = spo(world, iterations=400, batch_size=8, lr=0.3, rng=np.random.default_rng(1), max_comparisons=500)
    c = short["comparisons"]
    assert c[-1] >= 500 > c[-2] and len(c) < len(full["comparisons"])
    np.testing.assert_allclose(short["last"], full["last"][: len(c)])  # the same run, cut short


def test_spo_init_and_bad_arguments():
    world = RaterGroups.cyclic()
    out = spo(world, iterations=0, batch_size=2, lr=0.1, rng=np.random.default_rng(0), init=[0.2, 0.3, 0.5])
    np.testing.assert_allclose(out["last"], [[0.2, 0.3, 0.5]])
    with pytest.raises(ValueError, match="batch_size"):
        spo(world, iterations=10, batch_size=1, lr=0.1, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="init"):
        spo(world, iterations=10, batch_size=4, lr=0.1, rng=np.random.default_rng(0), init=[1.0, 0.0, 0.0])


def test_simplex_helpers_map_corners_and_centre():
    import matplotlib

    matplotlib.use("Agg")
    from prefkit.plot import figure, simplex_axes, simplex_xy

    x, y = simplex_xy(np.eye(3))
    np.testing.assert_allclose(np.c_[x, y], [[0, 0], [1, 0], [0.5, np.sqrt(3) / 2]], atol=1e-12)
    x, y = simplex_xy(np.ones(3) / 3)
    assert (x, y) == pytest.approx((0.5, np.sqrt(3) / 6))  # the uniform policy sits at the centroid
    fig, (ax,) = figure()
    simplex_axes(ax, ("A", "B", "C"))
    assert [t.get_text() for t in ax.texts] == ["A", "B", "C"] and not ax.get_xticks().size
    with pytest.raises(ValueError, match="3 corners"):
        simplex_axes(ax, ("A", "B"))
    matplotlib.pyplot.close(fig)

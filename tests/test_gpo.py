"""GPO (Zhang et al. 2025, arXiv:2410.02197, Sec. 5): self-play on a general preference score, tabular."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit, softmax

from prefkit.gpm import (
    PreferenceMatrixWorld,
    check_skew_symmetric,
    gpo,
    gpo_selfplay,
    preference_matrix,
    sample_comparisons,
    score_matrix,
)
from prefkit.selfplay import bt_rl, exploitability, fit_bradley_terry, minimax_winner
from prefkit.worlds.raters import RaterGroups

START = np.array([0.1, 0.1, 0.8])  # 06_spo's starting policy on the cycle


def test_score_matrix_is_skew_symmetric_and_gives_the_preference_matrix():
    v = np.random.default_rng(0).normal(size=(6, 4))  # six responses, k = 2 blocks
    S = score_matrix(v)
    np.testing.assert_allclose(S, -S.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(S), 0.0, atol=1e-12)
    assert check_skew_symmetric(S) is not None
    for tau in (1.0, 0.1):
        P = preference_matrix(v, tau)
        np.testing.assert_allclose(P, expit(S / tau), atol=1e-12)  # P = σ(S / τ)
        np.testing.assert_allclose(P + P.T, 1.0, atol=1e-12)
    # the orientation: S[i, j] = v_iᵀ Rᵀ v_j with R = [[0, -1], [1, 0]] per block
    R = np.kron(np.eye(2), np.array([[0.0, -1.0], [1.0, 0.0]]))
    np.testing.assert_allclose(S[1, 4], v[1] @ R.T @ v[4], atol=1e-12)


def test_skew_symmetry_errors_name_the_entry():
    with pytest.raises(ValueError, match="square"):
        check_skew_symmetric(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"S\[0, 1\] = 1 but S\[1, 0\] = 0.5"):
        check_skew_symmetric(np.array([[0.0, 1.0], [0.5, 0.0]]))
    with pytest.raises(ValueError, match=r"S\[1, 1\] = 0.2"):
        check_skew_symmetric(np.array([[0.0, 1.0], [-1.0, 0.2]]))  # a response must score 0 against itself
    with pytest.raises(ValueError, match=r"S\[0, 1\] = inf is not finite"):
        check_skew_symmetric(np.array([[0.0, np.inf], [-np.inf, 0.0]]))
    with pytest.raises(ValueError, match="skew-symmetric"):
        gpo_selfplay(np.array([[0.0, 1.0], [1.0, 0.0]]), 3, beta=1.0)


def test_one_step_is_the_multiplicative_weights_update():
    """Zero loss in Eq. 5.3: π_1 = π_0 exp(s(· ≻ π_0) / β) / Z with s(y ≻ π_0) = Σ_j π_0(j) S[y, j]."""
    S = logit(RaterGroups.cyclic().preference_matrix())
    beta = 0.7
    out = gpo_selfplay(S, 1, beta, init=START)
    expected = START * np.exp(S @ START / beta)
    np.testing.assert_allclose(out["last"][1], expected / expected.sum(), atol=1e-12)
    np.testing.assert_allclose(out["last"][0], START)
    np.testing.assert_allclose(out["average"][1], (START + out["last"][1]) / 2)
    two = gpo_selfplay(S, 2, beta, init=START)["last"][2]
    nxt = out["last"][1] * np.exp(S @ out["last"][1] / beta)
    np.testing.assert_allclose(two, nxt / nxt.sum(), atol=1e-12)


def test_one_step_with_sampled_opponents_uses_their_mean_score():
    """Eq. 5.2: with K opponents y_k ~ π_t, s(y ≻ π_t) is their mean score; K large approaches the exact step."""
    S = logit(RaterGroups.cyclic().preference_matrix())
    out = gpo_selfplay(S, 1, 1.0, init=START, samples=4, rng=np.random.default_rng(3))
    ys = np.minimum(np.searchsorted(np.cumsum(START), np.random.default_rng(3).random(4), side="right"), 2)
    np.testing.assert_allclose(out["last"][1], softmax(np.log(START) + S[:, ys].mean(1)), atol=1e-12)
    many = gpo_selfplay(S, 1, 1.0, init=START, samples=200_000, rng=np.random.default_rng(0))["last"][1]
    np.testing.assert_allclose(many, gpo_selfplay(S, 1, 1.0, init=START)["last"][1], atol=5e-3)


def test_the_average_reaches_the_minimax_winner_of_a_three_cycle():
    P = RaterGroups.cyclic().preference_matrix()  # majority A > B > C > A; Minimax Winner (0.6, 0.1, 0.3)
    mw = minimax_winner(P)[0]
    for samples in (None, 5):
        out = gpo_selfplay(logit(P), 20_000, beta=np.sqrt(20_000), init=START, samples=samples,
                           rng=np.random.default_rng(1))  # fmt: skip
        assert exploitability(P, out["average"][-1]) < 0.005 < exploitability(P, START)
        np.testing.assert_allclose(out["average"][-1], mw, atol=0.05)
        assert exploitability(P, out["last"][-1]) > exploitability(P, out["average"][-1])  # the last iterate circles


def test_a_condorcet_winner_takes_the_policy():
    P = PreferenceMatrixWorld.bradley_terry(np.array([0.0, 1.0, 0.3, -0.5])).preference_matrix()
    out = gpo_selfplay(logit(P), 3000, beta=10.0)
    assert out["last"][-1, 1] > 0.99 and exploitability(P, out["average"][-1]) < 0.01


def test_bad_arguments_are_refused():
    S = np.zeros((3, 3))
    with pytest.raises(ValueError, match="beta > 0"):
        gpo_selfplay(S, 10, beta=0.0)
    with pytest.raises(ValueError, match="iterations >= 0"):
        gpo_selfplay(S, -1, beta=1.0)
    with pytest.raises(ValueError, match="needs an rng"):
        gpo_selfplay(S, 10, beta=1.0, samples=5)
    with pytest.raises(ValueError, match=r"init must be a policy of shape \(3,\)"):
        gpo_selfplay(S, 10, beta=1.0, init=np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="every probability > 0"):
        gpo_selfplay(S, 10, beta=1.0, init=np.array([0.0, 0.5, 0.5]))


def test_gpo_and_bt_rl_see_the_same_comparisons_from_the_same_rng():
    world = RaterGroups.cyclic()
    out = gpo(world, 400, np.random.default_rng(9), iterations=10, beta=1.0)
    rows = sample_comparisons(world, 400, np.random.default_rng(9))
    np.testing.assert_array_equal(out["comparisons"], rows)
    np.testing.assert_allclose(bt_rl(world, 400, np.random.default_rng(9))["scores"], fit_bradley_terry(rows, 3))


def test_gpo_beats_bt_rl_on_the_cycle_and_matches_it_on_a_bradley_terry_world():
    cyc = RaterGroups.cyclic()
    P = cyc.preference_matrix()
    g = gpo(cyc, 5000, np.random.default_rng(0), iterations=5000, beta=70.0, init=START)
    bt = bt_rl(cyc, 5000, np.random.default_rng(0), reference=START)
    np.testing.assert_allclose(g["P"], P, atol=0.05)  # one block fits the cycle
    assert exploitability(P, g["policy"]) < 0.02 < 0.08 < exploitability(P, bt["policy"])
    world = PreferenceMatrixWorld.bradley_terry(np.array([0.0, 1.0, 0.3, -0.5]))
    P = world.preference_matrix()
    g = gpo(world, 3000, np.random.default_rng(1), iterations=5000, beta=70.0, k=2)
    bt = bt_rl(world, 3000, np.random.default_rng(1))
    assert exploitability(P, g["policy"]) < 0.01 and exploitability(P, bt["policy"]) < 0.01


def test_preference_matrix_world_samples_its_matrix():
    world = PreferenceMatrixWorld.bradley_terry(np.array([0.0, 1.0]))
    rng = np.random.default_rng(0)
    wins = np.mean([world.compare(1, 0, rng) for _ in range(20_000)])
    assert abs(wins - expit(1.0)) < 0.01 and world.compare(1, 1, rng) == 0.5
    with pytest.raises(ValueError, match="P \\+ P.T must equal 1"):
        PreferenceMatrixWorld(np.array([[0.5, 0.9], [0.9, 0.5]]))


def test_condorcet_winner_is_found_or_absent():
    from prefkit.gpm import condorcet_winner

    assert condorcet_winner(RaterGroups.transitive().preference_matrix()) == 0
    assert condorcet_winner(RaterGroups.cyclic().preference_matrix()) is None
    P = np.full((4, 4), 0.5)
    P[3, :3], P[:3, 3] = 0.6, 0.4  # response 3 beats the rest, which tie among themselves
    assert condorcet_winner(P) == 3

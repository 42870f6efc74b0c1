"""APO on a tabular bandit (He, Yuan & Gu 2024, arXiv:2410.06293): exact DPO optima, the extrapolation step,
Theorem 4.1's closed form and the iteration loop."""

import numpy as np
import pytest
from scipy.special import log_softmax

from prefkit.apo import (
    Bandit,
    apo,
    dpo_objective,
    dpo_optimum,
    dpo_population_optimum,
    effective_rounds,
    equivalent_rounds,
    extrapolate,
    kl,
    make_bandit,
    population_wins,
    sample_wins,
    suboptimality,
    tempered,
)


@pytest.fixture
def bandit():
    return make_bandit(6, 5, np.random.default_rng(0))


def _num_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = eps
        g[idx] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


@pytest.mark.parametrize("ridge", [0.0, 1.0])
def test_newton_solution_is_stationary_point_of_dpo_objective(bandit, ridge):
    wins = sample_wins(bandit.reward, bandit.logp_ref, 40, np.random.default_rng(1))
    if ridge == 0.0:
        wins = wins + population_wins(bandit.reward)  # every pair seen with both outcomes: a finite optimum
    lp = dpo_optimum(bandit.logp_ref, wins, beta=0.7, ridge=ridge)
    g = _num_grad(lambda z: dpo_objective(z, bandit.logp_ref, wins, 0.7, ridge).sum(), lp)
    assert np.abs(g).max() < 1e-5
    # and a minimum: moving away in any direction does not lower the objective
    rng = np.random.default_rng(2)
    base = dpo_objective(lp, bandit.logp_ref, wins, 0.7, ridge)
    for _ in range(5):
        assert np.all(
            dpo_objective(lp + 0.05 * rng.standard_normal(lp.shape), bandit.logp_ref, wins, 0.7, ridge) >= base
        )


def test_newton_on_population_recovers_closed_form(bandit):
    lp = dpo_optimum(bandit.logp_ref, population_wins(bandit.reward), beta=2.0)
    np.testing.assert_allclose(lp, dpo_population_optimum(bandit.logp_ref, bandit.reward, 2.0), atol=1e-8)
    # the implicit reward is r* up to a per-prompt constant
    h = 2.0 * (lp - bandit.logp_ref)
    np.testing.assert_allclose(h - h.mean(1, keepdims=True), bandit.reward - bandit.reward.mean(1, keepdims=True),
                               atol=1e-7)  # fmt: skip


def test_uncompared_response_keeps_reference_ratio(bandit):
    wins = population_wins(bandit.reward)
    wins[:, 0, :] = 0.0
    wins[:, :, 0] = 0.0  # response 0 is never compared
    lp = dpo_optimum(bandit.logp_ref, wins, beta=1.0)
    lp_full = dpo_population_optimum(bandit.logp_ref, bandit.reward, 1.0)
    others = lp[:, 1:] - lp[:, 1:].mean(1, keepdims=True)
    np.testing.assert_allclose(others, lp_full[:, 1:] - lp_full[:, 1:].mean(1, keepdims=True), atol=1e-7)


def test_extrapolation_closed_form(bandit):
    new = dpo_population_optimum(bandit.logp_ref, bandit.reward, 1.0)
    out = extrapolate(new, bandit.logp_ref, 0.3)
    p = np.exp(new) * (np.exp(new) / np.exp(bandit.logp_ref)) ** 0.3  # Eq. 3.6
    np.testing.assert_allclose(np.exp(out), p / p.sum(1, keepdims=True), atol=1e-12)
    np.testing.assert_allclose(extrapolate(new, bandit.logp_ref, 0.0), new, atol=1e-12)


def test_theorem_4_1_unrolled_form_with_sampled_rewards(bandit):
    """π̂_T ∝ π_ref exp(Σ_i (1 - α^{T-i})/(1 - α) r_i/β), with r_i = β log π̂_{i+1}/π_i the recovered rewards."""
    alpha, beta, T = 0.4, 1.5, 4
    run = apo(bandit, alpha, beta, T, n_pairs=30, rng=np.random.default_rng(3), ridge=1.0)
    r = [beta * (run["logp_hat"][i + 1] - run["logp_sampler"][i]) for i in range(T)]
    logits = bandit.logp_ref + sum((1 - alpha ** (T - i)) / (1 - alpha) * r[i] / beta for i in range(T))
    np.testing.assert_allclose(run["logp_hat"][T], log_softmax(logits, axis=1), atol=1e-9)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.6])
def test_population_run_is_tempered_policy(bandit, alpha):
    run = apo(bandit, alpha, 2.0, 6)
    for t in range(7):
        np.testing.assert_allclose(run["logp_hat"][t], tempered(bandit, effective_rounds(alpha, t), 2.0), atol=1e-9)


def test_effective_rounds_values():
    np.testing.assert_allclose(effective_rounds(0.0, np.arange(5)), np.arange(5))
    np.testing.assert_allclose(effective_rounds(0.3, [1, 2, 3]), [1.0, 2.3, 1 + 1.3 + 1.39])


def test_alpha_zero_is_iterative_dpo(bandit):
    run = apo(bandit, 0.0, 1.0, 3, n_pairs=25, rng=np.random.default_rng(4), ridge=0.5)
    rng, lp = np.random.default_rng(4), bandit.logp_ref
    for t in range(3):  # reference = previous output, sampler = previous output
        lp = dpo_optimum(lp, sample_wins(bandit.reward, lp, 25, rng), 1.0, 0.5)
        np.testing.assert_allclose(run["logp_hat"][t + 1], lp, atol=1e-10)
        np.testing.assert_allclose(run["logp_sampler"][t + 1], lp, atol=1e-10)


def test_apo_samples_from_extrapolated_policy(bandit):
    run = apo(bandit, 0.5, 1.0, 2, n_pairs=25, rng=np.random.default_rng(5), ridge=0.5)
    rng = np.random.default_rng(5)
    hat1 = dpo_optimum(bandit.logp_ref, sample_wins(bandit.reward, bandit.logp_ref, 25, rng), 1.0, 0.5)
    pi1 = extrapolate(hat1, bandit.logp_ref, 0.5)
    hat2 = dpo_optimum(pi1, sample_wins(bandit.reward, pi1, 25, rng), 1.0, 0.5)
    np.testing.assert_allclose(run["logp_sampler"][1], pi1, atol=1e-10)
    np.testing.assert_allclose(run["logp_hat"][2], hat2, atol=1e-10)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.6])
def test_monotone_improvement_in_population(bandit, alpha):
    gap = apo(bandit, alpha, 2.0, 8)["gap"]
    assert np.all(np.diff(gap, axis=0) <= 1e-12)
    assert np.all(gap[-1] < gap[0])


def test_larger_alpha_is_faster_in_population(bandit):
    gaps = [apo(bandit, a, 2.0, 5)["gap"][2:].mean(1) for a in (0.0, 0.3, 0.6)]
    assert np.all(gaps[0] > gaps[1]) and np.all(gaps[1] > gaps[2])


def test_round_one_is_the_same_for_every_alpha(bandit):
    runs = [apo(bandit, a, 1.0, 2, n_pairs=20, rng=np.random.default_rng(6), ridge=1.0) for a in (0.0, 0.6)]
    np.testing.assert_allclose(runs[0]["logp_hat"][1], runs[1]["logp_hat"][1])
    assert not np.allclose(runs[0]["logp_hat"][2], runs[1]["logp_hat"][2])


def test_metrics(bandit):
    best = np.log(np.eye(5)[bandit.reward.argmax(1)] * (1 - 4e-12) + 1e-12)
    assert np.all(suboptimality(bandit.reward, best) < 1e-9)
    assert np.all(kl(bandit.logp_ref, bandit.logp_ref) == 0)
    assert np.all(kl(tempered(bandit, 1.0, 1.0), bandit.logp_ref) > 0)


def test_equivalent_rounds_inverts_the_tempered_path(bandit):
    g = suboptimality(bandit.reward, tempered(bandit, 2.7, 1.5)).mean()
    assert equivalent_rounds(bandit, g, 1.5) == pytest.approx(2.7, abs=1e-6)
    assert equivalent_rounds(bandit, 1e9, 1.5) == 0.0


def test_sample_wins_counts_and_frequencies():
    b = Bandit(np.array([[0.0, 2.0]]), np.log(np.array([[0.5, 0.5]])))
    w = sample_wins(b.reward, b.logp_ref, 20000, np.random.default_rng(7))
    assert w.sum() == 20000
    off = w[0, 1, 0] + w[0, 0, 1]
    assert off / 20000 == pytest.approx(0.5, abs=0.02)  # distinct pairs are half the draws
    assert w[0, 1, 0] / off == pytest.approx(1 / (1 + np.exp(-2.0)), abs=0.02)  # Eq. 2.1


def test_errors(bandit):
    with pytest.raises(ValueError, match="alpha"):
        apo(bandit, 1.0, 1.0, 2)
    with pytest.raises(ValueError, match="alpha"):
        extrapolate(bandit.logp_ref, bandit.logp_ref, -0.1)
    with pytest.raises(ValueError, match="beta"):
        apo(bandit, 0.3, 0.0, 2)
    with pytest.raises(ValueError, match="rounds"):
        apo(bandit, 0.3, 1.0, 0)
    with pytest.raises(ValueError, match="rng"):
        apo(bandit, 0.3, 1.0, 2, n_pairs=10)
    with pytest.raises(ValueError, match="n_pairs"):
        sample_wins(bandit.reward, bandit.logp_ref, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="row 2 is not normalised"):
        bad = bandit.logp_ref.copy()
        bad[2] += 0.5
        suboptimality(bandit.reward, bad)
    with pytest.raises(ValueError, match="wins must have shape"):
        dpo_optimum(bandit.logp_ref, np.zeros((6, 5, 4)), 1.0)
    with pytest.raises(ValueError, match="prompt 3"):
        w = population_wins(bandit.reward)
        w[3, 0, 1] = -1.0
        dpo_optimum(bandit.logp_ref, w, 1.0)
    with pytest.raises(ValueError, match="ridge"):
        dpo_optimum(bandit.logp_ref, population_wins(bandit.reward), 1.0, ridge=-1.0)
    with pytest.raises(ValueError, match="n_responses"):
        make_bandit(3, 1, np.random.default_rng(0))

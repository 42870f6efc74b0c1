"""The 2-D points preference world: exact density, oracle, Bradley-Terry rater and learned reward models."""

from __future__ import annotations

import math

import pytest
import torch

from prefkit.worlds.points import (
    PairwiseRM,
    PointsWorld,
    PointwiseRM,
    fit_pairwise_rm,
    fit_pointwise_rm,
    hack_gap,
    rm_accuracy,
)


@pytest.fixture(autouse=True)
def _seeded():
    """Every test draws its random inputs from the same seed: a tolerance that holds once holds every run."""
    torch.manual_seed(0)


def _grid(lo: float = -7.0, hi: float = 7.0, n: int = 281) -> tuple[torch.Tensor, float]:
    g = torch.linspace(lo, hi, n, dtype=torch.float64)
    xy = torch.stack(torch.meshgrid(g, g, indexing="xy"), dim=-1).reshape(-1, 2)  # (n², 2)
    return xy, float(g[1] - g[0]) ** 2


@pytest.mark.parametrize(
    "world", [PointsWorld(), PointsWorld(style_frequency=0.0), PointsWorld(novel_style=True, style_frequency=1.0)]
)
def test_density_integrates_to_one_per_class(world):
    xy, cell = _grid()
    for c in range(world.n_classes):
        mass = float(world.log_density(xy, c).exp().sum() * cell)
        assert mass == pytest.approx(1.0, abs=1e-3), (c, mass)


def test_sample_mode_frequencies_match_style_frequency():
    for p in (0.2, 0.05, 0.0):
        world = PointsWorld().with_style_frequency(p)
        x, c, styled = world.sample_data(2500, rng=0, return_styled=True)
        assert x.shape == (10_000, 2) and c.shape == (10_000,) and torch.equal(c[:2500], torch.zeros(2500).long())
        tol = 4 * math.sqrt(p * (1 - p) / 10_000) + 1e-9  # 4 binomial standard errors
        assert float(styled.float().mean()) == pytest.approx(p, abs=tol)
        # nearest-mode shares: a sample crosses the bisector between its class's two modes (4σ apart) w.p. Φ(-2)
        q = 0.5 * math.erfc(2 / math.sqrt(2))
        shares = world.mode_shares(x, c)
        expected = p * (1 - q) + (1 - p) * q
        assert shares["styled"] == pytest.approx(expected, abs=4 * math.sqrt(expected / 10_000))
        assert shares["other"] == 0.0
        assert sum(shares.values()) == pytest.approx(1.0)


def test_novel_style_lies_outside_the_base_support():
    base, novel = PointsWorld(), PointsWorld(novel_style=True)
    s_novel = novel.modes()[:, 1]  # (K, 2)
    c = torch.arange(4)
    assert torch.all(base.log_density(s_novel, c) - base.log_density(base.modes()[:, 0], c) < -18)
    assert torch.allclose(novel.oracle_reward(s_novel, c), torch.ones(4, dtype=torch.float64))


def test_oracle_bounded_and_highest_at_styled_mode():
    world = PointsWorld()
    xy, _ = _grid(-6, 6, 241)
    modes = world.modes()
    for c in range(4):
        r = world.oracle_reward(xy, c)
        assert float(r.min()) >= -world.class_penalty and float(r.max()) <= 1.0
        assert torch.allclose(xy[r.argmax()], modes[c, 1], atol=0.05)  # grid step 0.05
        # the plain mode scores the bump exp(-offset²/2w²) = e^-2; another class's styled mode is penalised
        r_plain = world.oracle_reward(modes[c, :1], c)
        assert float(r_plain) == pytest.approx(math.exp(-2), abs=1e-6)
        assert float(world.oracle_reward(modes[(c + 1) % 4, 1:], c)) == pytest.approx(-1.0, abs=1e-6)


def test_bt_rater_closed_form_symmetry_and_label_frequency():
    world = PointsWorld()
    m = world.modes()
    x_a, x_b = m[:, 1], m[:, 0]  # styled vs plain mode of each class
    c = torch.arange(4)
    p = world.bt_prob(x_a, x_b, c, temperature=0.5)
    assert torch.allclose(p, torch.full((4,), 1 / (1 + math.exp(-(1 - math.exp(-2)) / 0.5)), dtype=torch.float64))
    xs, cs = world.sample_data(50, rng=1)
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(0))
    p_ab, p_ba = world.bt_prob(xs, xs[perm], cs), world.bt_prob(xs[perm], xs, cs)
    assert torch.allclose(p_ab + p_ba, torch.ones(200))
    assert torch.equal(world.bt_prob(xs, xs, cs), torch.full((200,), 0.5))
    labels, probs = world.bt_label(x_a.repeat(5000, 1), x_b.repeat(5000, 1), c.repeat(5000), rng=0, temperature=0.5)
    assert torch.equal(probs, p.repeat(5000)) and labels.dtype == torch.bool
    assert float(labels.double().mean()) == pytest.approx(float(p[0]), abs=4 * math.sqrt(0.25 / 20_000))


def test_preference_pairs_put_the_winner_first():
    world = PointsWorld()
    pairs = world.data_pairs(300, rng=0, hard=True)
    r_w, r_l = world.oracle_reward(pairs.x_w, pairs.c), world.oracle_reward(pairs.x_l, pairs.c)
    assert torch.all(r_w >= r_l) and torch.all(pairs.p_true >= 0.5)
    noisy = world.data_pairs(300, rng=0, temperature=0.2)
    assert torch.allclose(noisy.p_true, world.bt_prob(noisy.x_w, noisy.x_l, noisy.c, temperature=0.2), atol=1e-6)
    assert 0 < float((noisy.p_true < 0.5).double().mean()) < 0.5  # the noisy rater sometimes picks the worse one


def test_pairwise_rm_is_exactly_antisymmetric():
    torch.manual_seed(0)
    rm = PairwiseRM(n_classes=4)
    a, b, c = torch.randn(64, 2), torch.randn(64, 2), torch.randint(4, (64,))
    with torch.no_grad():
        assert torch.equal(rm.logit(a, b, c), -rm.logit(b, a, c))
        assert torch.allclose(rm.prob(a, b, c) + rm.prob(b, a, c), torch.ones(64), atol=1e-7)
        assert torch.equal(rm.prob(a, a, c), torch.full((64,), 0.5))


@pytest.fixture(scope="module")
def clean_pairs():
    return PointsWorld().data_pairs(500, rng=13, hard=True).split(300)


@pytest.fixture(scope="module")
def pointwise_rm(clean_pairs):
    return fit_pointwise_rm(clean_pairs[0], steps=200, seed=3)


def test_reward_models_fit_a_clean_rule(clean_pairs, pointwise_rm):
    train, test = clean_pairs
    assert rm_accuracy(pointwise_rm, train) > 0.9 and rm_accuracy(pointwise_rm, test) > 0.8
    pairwise_rm = fit_pairwise_rm(train, steps=200, seed=3)
    assert rm_accuracy(pairwise_rm, train) > 0.9 and rm_accuracy(pairwise_rm, test) > 0.8


def test_pointwise_rm_is_exploitable_and_hack_gap(pointwise_rm):
    world, rm = PointsWorld(), pointwise_rm
    xy, _ = _grid(-6, 6, 121)
    with torch.no_grad():
        best = [xy[rm(xy, c).argmax()][None] for c in range(4)]  # where maximising r_φ leads, per class
    oracle_at_best = world.oracle_reward(torch.cat(best), torch.arange(4))
    assert float(oracle_at_best.mean()) < 0.5  # the RM's optimum is not the styled mode (oracle 1)

    x, c = world.sample_data(50, rng=2)

    class OracleRM:  # the rater itself as a reward model: no gap, whatever the samples
        prob = staticmethod(world.bt_prob)

    x_far = torch.cat(best)[c].float()  # every sample moved to the RM's optimum for its class
    assert hack_gap(OracleRM(), world.oracle_reward, x_far, c, x) == 0.0
    assert hack_gap(rm, world.oracle_reward, x, c, x) == 0.0  # ties count 1/2 on both sides
    assert hack_gap(rm, world.oracle_reward, x_far, c, x) > 0.3


def test_errors_on_bad_input():
    world = PointsWorld()
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="c holds class index 4"):
        world.oracle_reward(x, torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="c holds class index -1"):
        world.log_density(x, -1)
    with pytest.raises(ValueError, match=r"style_frequency must be in \[0, 1\]"):
        PointsWorld(style_frequency=1.5)
    with pytest.raises(ValueError, match=r"style_frequency must be in \[0, 1\]"):
        world.with_style_frequency(-0.1)
    x_nan = x.clone()
    x_nan[1, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        world.log_density(x_nan, 0)
    with pytest.raises(ValueError, match="x contains NaN"):
        PointwiseRM()(x_nan, 0)
    with pytest.raises(ValueError, match="x_b contains NaN"):
        PairwiseRM().prob(x, x_nan, 0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        world.oracle_reward(torch.zeros(3), 0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        world.bt_prob(x, x, 0, temperature=0.0)
    with pytest.raises(ValueError, match="x_candidates must have shape"):
        world.preference_pairs(torch.zeros(3, 3, 2), 0)

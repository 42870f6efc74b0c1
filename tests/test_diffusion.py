"""The 2-D diffusion core: schedule, guidance, training, sampler log-probs, samplers and ReNoise inversion.

Sampler and inversion tests use an oracle ε-model for Gaussian data x_0 ~ N(μ_c, s² I), whose exact posterior mean of
the noise is E[ε | x_t] = √(1-ᾱ_t) (x_t - √ᾱ_t μ_c) / (ᾱ_t s² + 1 - ᾱ_t), so their errors are the samplers' own.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from prefkit.diffusion import (
    EpsMLP,
    NoiseSchedule,
    ddim_invert,
    ddim_sample,
    ddim_timesteps,
    ddpm_sample,
    denoising_loss,
    guided_eps,
    pair_mse,
    step_logprob,
    train_denoiser,
)

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded():
    """Every test draws its random inputs from the same seed: a tolerance that holds once holds every run."""
    torch.manual_seed(0)


class GaussianOracle(nn.Module):
    """Exact ε for x_0 ~ N(μ_c, s² I); the null class gets mean 0 (a stand-in, used only at w = 1)."""

    def __init__(self, schedule: NoiseSchedule, means: torch.Tensor, s: float) -> None:
        super().__init__()
        self.schedule, self.s = schedule, s
        self.d, self.null = means.shape[1], means.shape[0]
        self.register_buffer("means", torch.cat([means, torch.zeros(1, means.shape[1])]))
        self.dummy = nn.Parameter(torch.zeros(()))  # samplers find the device through parameters()

    def forward(self, x, t, c):
        ab = self.schedule.alpha_bar.to(x)[t][:, None]
        mu = self.means.to(x)[c]
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * self.s**2 + 1 - ab)


MEANS = torch.tensor([[1.5, -0.5], [-1.0, 1.0]])
S = 0.3


@pytest.fixture
def sched():
    return NoiseSchedule(T=50)


@pytest.fixture
def oracle(sched):
    return GaussianOracle(sched, MEANS, S)


@pytest.fixture
def mlp():
    torch.manual_seed(0)
    return EpsMLP(n_classes=3)


# ---------------------------------------------------------------------------------------------------------- schedule


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_is_a_valid_noising_chain(kind):
    s = NoiseSchedule(T=50, kind=kind)
    assert s.betas.shape == (50,) and (s.betas > 0).all() and (s.betas < 1).all()
    assert torch.allclose(s.alpha_bar, torch.cumprod(1 - s.betas, 0))
    assert (s.alpha_bar.diff() < 0).all() and s.alpha_bar[-1] < 1e-3  # ends at (nearly) pure noise
    assert torch.allclose(s.sigma**2 + s.alpha_bar, torch.ones(50, dtype=torch.float64))
    assert s.posterior_var[0] == 0 and (s.posterior_var[1:] <= s.betas[1:]).all()


def test_linear_schedule_matches_ddpm_at_T_1000():
    s = NoiseSchedule(T=1000)
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)


def test_q_sample_closed_form(sched):
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g)
    t = torch.tensor([0, 3, 10, 30, 49])
    ab = sched.alpha_bar[t][:, None]  # float64: the closed form in full precision
    want = ab.sqrt() * x0.double() + (1 - ab).sqrt() * noise.double()
    # float32 output: √(1 - ᾱ) near ᾱ = 1 and √ᾱ near 0 lose digits in float32, so compare at float32's precision
    torch.testing.assert_close(sched.q_sample(x0, t, noise).double(), want, rtol=1e-5, atol=1e-6)


def test_bad_schedule_arguments_name_them():
    with pytest.raises(ValueError, match="kind"):
        NoiseSchedule(T=50, kind="sqrt")
    with pytest.raises(ValueError, match="T must"):
        NoiseSchedule(T=1)
    with pytest.raises(ValueError, match="steps"):
        ddim_timesteps(NoiseSchedule(T=10), steps=11)


# ---------------------------------------------------------------------------------------------------------- guidance


def test_guidance_w1_is_the_conditional_model_and_w0_the_unconditional(mlp):
    x, t, c = torch.randn(7, 2), torch.randint(0, 50, (7,)), torch.randint(0, 3, (7,))
    null = torch.full((7,), mlp.null)
    assert mlp.null == 3
    assert torch.equal(guided_eps(mlp, x, t, c, w=1.0), mlp(x, t, c))
    assert torch.allclose(guided_eps(mlp, x, t, c, w=0.0), mlp(x, t, null))
    eps_c, eps_u = mlp(x, t, c), mlp(x, t, null)
    assert torch.allclose(guided_eps(mlp, x, t, c, w=3.0), eps_u + 3.0 * (eps_c - eps_u), atol=1e-6)
    # just off w = 1 the formula is continuous with the conditional model (no 1 + w convention slipped in)
    assert torch.allclose(guided_eps(mlp, x, t, c, w=1.0 + 1e-6), eps_c, atol=1e-4)


def test_guidance_negative_model_replaces_the_unconditional_branch(mlp):
    torch.manual_seed(1)
    neg = EpsMLP(n_classes=3)
    x, t, c = torch.randn(4, 2), 7, 1
    eps_c = mlp(x, torch.full((4,), 7), torch.full((4,), 1))
    eps_n = neg(x, torch.full((4,), 7), torch.full((4,), neg.null))
    assert torch.allclose(guided_eps(mlp, x, t, c, w=0.0, negative=neg), eps_n)
    assert torch.allclose(guided_eps(mlp, x, t, c, w=2.0, negative=neg), eps_n + 2 * (eps_c - eps_n), atol=1e-6)
    assert torch.equal(guided_eps(mlp, x, t, c, w=1.0, negative=neg), eps_c)


# ---------------------------------------------------------------------------------------------------------- training


def test_denoising_loss_with_the_oracle_is_the_irreducible_error(sched, oracle):
    # the oracle predicts E[ε | x_t], so its loss is E Var(ε | x_t) < 1, while predicting 0 costs E ε² = 1
    g = torch.Generator().manual_seed(0)
    c = torch.randint(0, 2, (20000,), generator=g)
    x0 = MEANS[c] + S * torch.randn(20000, 2, generator=g)
    loss = denoising_loss(oracle, x0, c, sched, p_uncond=0.0, generator=g).item()
    ab = sched.alpha_bar
    expected = (ab * S**2 / (ab * S**2 + 1 - ab)).mean().item()  # E_t Var(ε | x_t) per dimension
    assert loss == pytest.approx(expected, rel=0.05)


def test_train_denoiser_learns_and_is_seeded(sched):
    g = torch.Generator().manual_seed(0)
    c = torch.randint(0, 2, (512,), generator=g)
    x = MEANS[c] + S * torch.randn(512, 2, generator=g)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = EpsMLP(n_classes=2)
        runs.append(train_denoiser(model, x, c, sched, steps=60, batch_size=64, lr=3e-3, seed=5))
    assert runs[0] == runs[1] and len(runs[0]) == 60
    assert sum(runs[0][-10:]) / 10 < 0.5 * sum(runs[0][:5]) / 5
    assert not model.training


def test_pair_mse_shares_t_and_noise(sched, mlp):
    b = 6
    xw, xl, c = torch.randn(b, 2), torch.randn(b, 2), torch.randint(0, 3, (b,))
    t, noise = torch.randint(0, 50, (b,)), torch.randn(b, 2)
    m_w, m_l = pair_mse(mlp, xw, xl, c, t, noise, sched)
    ab = sched.alpha_bar[t].float()[:, None]
    direct_l = (mlp(ab.sqrt() * xl + (1 - ab).sqrt() * noise, t, c) - noise).pow(2).mean(-1)
    assert m_w.shape == (b,) and torch.allclose(m_l, direct_l)
    m_w2, _ = pair_mse(mlp, xw, xw, c, t, noise, sched)
    assert torch.allclose(m_w, m_w2)
    noise_l = torch.randn(b, 2)
    _, m_l3 = pair_mse(mlp, xw, xl, c, t, noise, sched, noise_l=noise_l)
    assert torch.allclose(m_l3, (mlp(ab.sqrt() * xl + (1 - ab).sqrt() * noise_l, t, c) - noise_l).pow(2).mean(-1))


# ---------------------------------------------------------------------------------------------------------- log-probs


def test_step_logprob_matches_a_direct_normal(sched, mlp):
    n, t = 9, 17
    x_t, x_prev, c = torch.randn(n, 2), torch.randn(n, 2), torch.randint(0, 3, (n,))
    tt = torch.full((n,), t)
    eps = mlp(x_t, tt, c)
    beta, ab, alpha = (float(v[t]) for v in (sched.betas, sched.alpha_bar, sched.alphas))
    mean = (x_t - beta / math.sqrt(1 - ab) * eps) / math.sqrt(alpha)
    std = math.sqrt(beta * (1 - float(sched.alpha_bar[t - 1])) / (1 - ab))
    direct = torch.distributions.Normal(mean, std).log_prob(x_prev).sum(-1)
    lp = step_logprob(mlp, x_t, x_prev, t, c, sched)
    assert torch.allclose(lp, direct, atol=1e-4)
    lp.sum().backward()  # differentiable in θ, for policy gradients
    assert mlp.net[0].weight.grad is not None and mlp.net[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="t must be >= 1"):
        step_logprob(mlp, x_t, x_prev, 0, c, sched)


def test_ddpm_trajectory_logprobs_are_those_of_its_own_transitions(sched, mlp):
    g = torch.Generator().manual_seed(3)
    x, traj = ddpm_sample(mlp, 1, sched, n=5, generator=g, w=2.0, return_trajectory=True)
    assert traj.xs.shape == (51, 5, 2) and traj.logps.shape == (5, 49) and torch.equal(traj.xs[-1], x)
    assert traj.timesteps.tolist() == list(range(49, 0, -1))
    for k in (0, 20, 48):
        t = int(traj.timesteps[k])
        lp = step_logprob(mlp, traj.xs[k], traj.xs[k + 1], t, 1, sched, w=2.0)
        assert torch.allclose(lp, traj.logps[:, k], atol=1e-4)
    g2 = torch.Generator().manual_seed(3)
    assert torch.equal(ddpm_sample(mlp, 1, sched, n=5, generator=g2, w=2.0), x)  # seeded


# ---------------------------------------------------------------------------------------------------------- samplers


def test_ddpm_and_ddim_with_the_oracle_sample_the_data_distribution():
    # a fine chain (T = 200), so that the discretisation error is small: at T = 50 the ancestral sampler's β̃
    # variance shrinks the spread to 0.25 (of 0.3), and 10 DDIM steps to 0.20, for data this narrow
    sched = NoiseSchedule(T=200)
    oracle = GaussianOracle(sched, MEANS, S)
    g = torch.Generator().manual_seed(0)
    for samples in (
        ddpm_sample(oracle, 0, sched, n=4000, generator=g),
        ddim_sample(oracle, 0, sched, n=4000, generator=g, steps=200),
        ddim_sample(oracle, 0, sched, n=4000, generator=g, steps=200, eta=1.0),
    ):
        assert torch.allclose(samples.mean(0), MEANS[0], atol=0.03)
        assert torch.allclose(samples.std(0), torch.full((2,), S), rtol=0.08)


def _roundtrip_error(oracle, sched, steps, renoise_iters):
    g = torch.Generator().manual_seed(1)
    x0 = MEANS[1] + S * torch.randn(200, 2, generator=g)
    x_T = ddim_invert(oracle, x0, 1, sched, steps=steps, renoise_iters=renoise_iters)
    back = ddim_sample(oracle, 1, sched, n=200, steps=steps, x_start=x_T)
    return (back - x0).norm(dim=-1).mean().item()


def test_renoise_inversion_round_trip_is_small_and_shrinks(sched, oracle):
    # measured (T = 50, 10 steps): 0.24, 0.19, 0.10 for 0, 1, 4 iterations; 50 steps: 0.067 plain, 0.009 with 8
    e0 = _roundtrip_error(oracle, sched, steps=10, renoise_iters=0)
    e1 = _roundtrip_error(oracle, sched, steps=10, renoise_iters=1)
    e4 = _roundtrip_error(oracle, sched, steps=10, renoise_iters=4)
    e0_fine = _roundtrip_error(oracle, sched, steps=50, renoise_iters=0)
    e8_fine = _roundtrip_error(oracle, sched, steps=50, renoise_iters=8)
    assert e1 < 0.85 * e0 and e4 < 0.65 * e1  # ReNoise iterations move each step towards the exact inverse
    assert e0_fine < 0.35 * e0  # so do finer grids
    assert e8_fine < 0.05 * S  # small against the data's own spread


def test_partial_inversion_stops_at_t_end(sched, oracle):
    x0 = MEANS[0] + S * torch.randn(50, 2, generator=torch.Generator().manual_seed(2))
    x_t = ddim_invert(oracle, x0, 0, sched, steps=21, renoise_iters=8, t_end=20)
    ab = sched.alpha_bar[20].float()
    # x_20 is still mostly signal: its x_0 component sits at √ᾱ_20 times the data
    assert (x_t.mean(0) - ab.sqrt() * MEANS[0]).norm() < 0.3
    back = ddim_sample(oracle, 0, sched, n=50, steps=21, x_start=x_t, t_end=20)
    assert (back - x0).norm(dim=-1).mean() < 0.02  # measured 0.008
    with pytest.raises(ValueError, match="renoise_iters"):
        ddim_invert(oracle, x0, 0, sched, renoise_iters=-1)

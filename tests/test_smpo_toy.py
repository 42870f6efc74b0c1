"""Part B of notebook 13 (SmPO on the 2-D diffusion toy): the RM labels and their scale, the ReNoise inversion noise
in closed form, SmPO's limits (α = 1 is Diffusion-DPO, α = 1/2 does not move the model), the compute count, and a
tiny end-to-end run."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from prefkit.diffusion import NoiseSchedule, ddim_invert
from prefkit.diffusion_pref import DiffusionBaseConfig, points_base
from prefkit.smpo_toy import (
    STEP_NFE,
    SmPOConfig,
    first_reach,
    grid_count,
    inversion_grid,
    mean_scale_k,
    renoise_eps,
    run_smpo,
    smpo_claims,
    smpo_labels,
    train_arm,
)
from prefkit.worlds.points import PointsWorld

TINY = DiffusionBaseConfig(T=20, hidden=32, n_layers=2, n_per_class=200, steps=200, batch_size=128, lr=3e-3)


@pytest.fixture(scope="module")
def base(points_cache):
    world = PointsWorld(n_classes=2)
    return (world, *points_base(world, TINY))


class ZeroEps(nn.Module):
    """ε_θ ≡ 0: DDIM inversion then only rescales, x_t = √ᾱ_t x_0."""

    d, null = 2, 2

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, c):
        return torch.zeros_like(x) + 0 * self.p


def test_labels_order_by_rm_and_alpha_closed_form():
    rm = lambda x, c: x[:, 0] * 2.0  # noqa: E731  a score that is 2 x the first coordinate
    x_a = torch.tensor([[1.0, 0.0], [0.0, 5.0], [3.0, 1.0]])
    x_b = torch.tensor([[0.0, 9.0], [2.0, 0.0], [3.0, 2.0]])
    c = torch.zeros(3, dtype=torch.long)
    x_w, x_l, alpha, low, high = smpo_labels(rm, x_a, x_b, c)
    assert (low, high) == (0.0, 6.0)  # min and max of all six scores
    assert torch.equal(x_w[:2], torch.tensor([[1.0, 0.0], [2.0, 0.0]]))  # the RM's winner first, either slot
    assert torch.equal(x_l[:2], torch.tensor([[0.0, 9.0], [0.0, 5.0]]))
    s_w, s_l = rm(x_w, c), rm(x_l, c)
    expected = torch.exp(s_w / 6) / (torch.exp(s_w / 6) + torch.exp(s_l / 6))  # softmax of min-max normalised scores
    assert torch.allclose(alpha, expected)
    assert (alpha >= 0.5).all() and alpha[2] == 0.5  # a tie gives 1/2


def test_mean_scale_k_makes_mean_scale_one_and_rejects_no_margin():
    alpha = torch.tensor([0.5, 0.6, 0.9])
    k = mean_scale_k(alpha)
    assert float(((2 * alpha - 1) * k).mean()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="alpha"):
        mean_scale_k(torch.full((4,), 0.5))


def test_inversion_grid_and_counts_below_t():
    assert inversion_grid(1000, 5) == [0, 200, 400, 600, 800]  # the official SD1.5 grid
    grid = inversion_grid(50, 5)
    assert grid == [0, 10, 20, 30, 40]
    t = torch.tensor([0, 1, 10, 11, 40, 41, 49])
    assert grid_count(t, grid).tolist() == [0, 1, 1, 2, 4, 5, 5]  # strictly below t
    with pytest.raises(ValueError, match="grid_points"):
        inversion_grid(50, 0)


def test_renoise_eps_closed_form_with_a_zero_network():
    schedule = NoiseSchedule(50, "cosine")
    grid = inversion_grid(50, 5)
    x0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    c = torch.zeros(6, dtype=torch.long)
    t = torch.tensor([0, 5, 15, 33, 45, 49])
    eps, nfe = renoise_eps(ZeroEps().double(), x0, c, t, schedule, grid, renoise_iters=1)
    ab = schedule.alpha_bar
    g_top = [None, 0, 10, 30, 40, 40]  # the highest grid point below t (none for t = 0)
    for i in range(6):
        ab_g = 1.0 if g_top[i] is None else ab[g_top[i]]
        expected = (math.sqrt(ab_g) - ab[t[i]].sqrt()) * x0[i] / (1 - ab[t[i]]).sqrt()
        assert torch.allclose(eps[i], expected), i
    assert nfe == 2 * (0 + 1 + 2 + 4 + 5 + 5)  # one ε and one ReNoise ε per grid point inverted


def test_renoise_eps_noises_to_the_inverted_point(base):
    world, model, schedule = base
    grid = inversion_grid(schedule.T, 5)
    x0 = world.sample_data(8, rng=1)[0]
    c = torch.zeros(len(x0), dtype=torch.long)
    t = torch.full((len(x0),), 12)  # grid points 0, 4 and 8 lie below 12 at T = 20
    eps, _ = renoise_eps(model, x0, c, t, schedule, grid)
    x_tilde = ddim_invert(model, x0, c, schedule, steps=3, renoise_iters=1, t_end=8)
    assert torch.allclose(schedule.q_sample(x0, t, eps), x_tilde, atol=1e-5)  # x_t = x̃ at the sampled t


def _pairs(world, n=128):
    x, c = world.sample_data(n, rng=5)
    half = len(x) // 2
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[perm[:half]], x[perm[half:]], c[perm[:half]]


def _params(m):
    return torch.cat([p.detach().reshape(-1) for p in m.parameters()])


def test_smpo_at_alpha_one_is_dpo_and_at_one_half_does_not_move(base):
    world, model, schedule = base
    x_w, x_l, c = _pairs(world)
    kw = dict(beta=500.0, lr=1e-3, batch_size=32, seed=0)
    noop = lambda m: None  # noqa: E731
    dpo = train_arm(model, x_w, x_l, c, schedule, 5, 5, noop, **kw)
    ones = torch.ones(len(c))
    smpo1 = train_arm(model, x_w, x_l, c, schedule, 5, 5, noop, alpha=ones, scale=1.0, **kw)
    assert dpo["loss"] == pytest.approx(smpo1["loss"], rel=1e-6)
    assert dpo["loss"][0] == pytest.approx(math.log(2), abs=1e-6)  # policy = reference at step 1
    half = train_arm(model, x_w, x_l, c, schedule, 5, 5, lambda m: _params(m), alpha=0.5 * ones, scale=3.0, **kw)
    assert torch.equal(half["evals"][-1], _params(model))  # α = 1/2: zero gradient, Adam never moves
    assert dpo["nfe"] == [0.0, 5 * STEP_NFE]


def test_train_arm_with_inversion_counts_network_evaluations(base):
    world, model, schedule = base
    x_w, x_l, c = _pairs(world)
    grid = inversion_grid(schedule.T, 5)
    out = train_arm(model, x_w, x_l, c, schedule, 4, 2, lambda m: None, 500.0, 1e-3, 64, 0,
                    alpha=torch.full((len(c),), 0.8), scale=1.0, grid=grid)  # fmt: skip
    assert out["steps"] == [0, 2, 4]
    # each step: STEP_NFE plus 2 per grid point below t, on average (16 + 2·grid points) / 20 over t ~ U{0..19}
    per_step = np.diff(out["nfe"]) / 2
    assert (per_step > STEP_NFE).all() and (per_step < STEP_NFE + 2 * 5).all()
    with pytest.raises(ValueError, match="x_w"):
        train_arm(model, x_w, x_l[:-1], c, schedule, 1, 1, lambda m: None, 500.0, 1e-3, 8, 0)


def test_first_reach_and_config_errors():
    assert first_reach([0.1, 0.3, 0.2, 0.5], 0.25) == 1
    assert first_reach([0.1, 0.2], 0.25) is None
    with pytest.raises(ValueError, match="steps"):
        SmPOConfig(steps=0)
    with pytest.raises(ValueError, match="renoise_checkpoints"):
        SmPOConfig(steps=16, renoise_checkpoints=3)
    with pytest.raises(ValueError, match="beta"):
        SmPOConfig(beta=0.0)


def test_tiny_run_shapes_drops_and_claims(base):
    world, model, schedule = base
    cfg = replace(SmPOConfig.smoke(), n_pairs=128, n_rm_pairs=200, rm_steps=50, steps=8, n_checkpoints=4,
                  renoise_checkpoints=2, batch_size=32, eval_per_class=16)  # fmt: skip
    results = [run_smpo(world, model, schedule, s, cfg) for s in (0, 1)]
    r = results[0]
    n = world.n_classes * cfg.eval_per_class
    assert set(r["units"]) == {"base", "dpo", "smpo", "smpo_renoise", "dpo_drop", "smpo_drop", "dpo_long",
                               "smpo_long"}  # fmt: skip
    assert all(u.shape == (n,) for u in r["units"].values())
    assert r["curves"]["dpo"]["steps"] == [0, 8, 16, 24, 32]  # 4 x 8 steps, 4 checkpoints
    assert r["curves"]["smpo_renoise"]["steps"] == [0, 4, 8]
    assert (
        r["curves"]["dpo"]["test"][0] == r["curves"]["smpo"]["test"][0] == pytest.approx(r["record"]["base"]["reward"])
    )
    # the drop is peak - end on the same units; the end is the long run's last checkpoint
    assert r["curves"]["dpo"]["test"][-1] == pytest.approx(float(r["units"]["dpo_long"].mean()), abs=1e-4)
    assert r["record"]["smpo"]["alpha_mean"] >= 0.5
    assert r["speed"]["dpo_nfe"] == 8 * STEP_NFE
    claims = smpo_claims(results, asserted=False)
    assert [c.id for c in claims] == ["SG", "S1", "S2", "S3", "S4"]

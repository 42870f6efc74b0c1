import copy
import math

import pytest
import torch

from prefkit.diffusion import EpsMLP, NoiseSchedule
from prefkit.selfnpo_toy import (
    SelfNPOConfig,
    compute_cost,
    ema_update,
    eps_from_x0,
    huber_loss,
    last_timestep,
    quality,
    quality_floor,
    renoise,
    run_selfnpo,
    self_npo_loss,
    solver_grid,
    styled_indicator,
    teacher_target,
    train_self_npo,
    x0_from_eps,
)
from prefkit.worlds.points import PointsWorld

SCHED = NoiseSchedule(50, "cosine")


class ConstX0(torch.nn.Module):
    """A model whose x̂_0 is a constant point m whatever x_t and t: ε̂ = (x_t - √ᾱ_t m)/√(1-ᾱ_t)."""

    def __init__(self, m, schedule):
        super().__init__()
        self.m, self.ab, self.d, self.null = torch.tensor(m), schedule.alpha_bar.float(), 2, 4
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, t, c):
        ab = self.ab[t][:, None]
        return (x - ab.sqrt() * self.m) / (1 - ab).sqrt() + 0 * self.w


def test_x0_eps_round_trip_and_forward_process():
    x0, eps = torch.randn(5, 2), torch.randn(5, 2)
    ab = SCHED.alpha_bar[torch.tensor([0, 10, 20, 30, 46])].float()[:, None]
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    assert torch.allclose(x0_from_eps(x_t, eps, ab), x0, atol=1e-4)
    assert torch.allclose(eps_from_x0(x_t, x0, ab), eps, atol=1e-4)


def test_huber_is_l2_over_2c_for_small_and_l1_for_large_errors():
    c = 0.001
    small, large = torch.full((1, 2), 1e-5), torch.full((1, 2), 3.0)
    assert torch.allclose(huber_loss(small, torch.zeros(1, 2), c), small[:, 0] ** 2 / (2 * c), rtol=1e-3)
    assert torch.allclose(huber_loss(large, torch.zeros(1, 2), c), torch.tensor([3.0 - c]), atol=1e-5)
    with pytest.raises(ValueError, match="huber_c"):
        huber_loss(small, small, 0.0)


def test_grid_stride_and_alpha_bar_cut():
    grid = solver_grid(SCHED, 25)
    assert grid[:3].tolist() == [1, 3, 5]  # (1..25)·2 - 1, the code's (1..25)·40 - 1 at T = 50
    assert (SCHED.alpha_bar[grid] >= 0.0047).all() and grid.max() == 45
    assert last_timestep(SCHED) == 46 and SCHED.alpha_bar[47] < 0.0047
    with pytest.raises(ValueError, match="points"):
        solver_grid(SCHED, 100)


def test_teacher_target_takes_five_steps_and_returns_its_x0_prediction():
    m = [0.5, -1.0]
    teacher = ConstX0(m, SCHED)
    x0 = torch.randn(400, 2)
    grid = solver_grid(SCHED, 25)
    x_te, t_e, target = teacher_target(teacher, x0, SCHED, grid, 5, torch.Generator().manual_seed(0))
    assert torch.allclose(target, torch.tensor(m).expand(400, 2), atol=1e-3)  # the teacher's x̂_0 at t_e
    assert set(t_e.tolist()) <= set((grid - 10).clamp(min=0).tolist())  # five steps of stride 2, floored at 0
    assert (t_e == 0).any() and (t_e == 35).any()
    # DDIM with a constant x̂_0 keeps ε̂ at its value at t_s, so x_{t_e} = √ᾱ_{t_e} m + √(1-ᾱ_{t_e}) ε̂(x_{t_s})
    g = torch.Generator().manual_seed(0)
    t_s = grid[torch.randint(0, grid.numel(), (400,), generator=g)]  # the start points, drawn first, then ε
    x_ts = SCHED.q_sample(x0, t_s, torch.randn(400, 2, generator=g))
    eps = teacher(x_ts, t_s, torch.full((400,), 4))
    ab = SCHED.alpha_bar.float()[t_e][:, None]
    assert torch.allclose(x_te, ab.sqrt() * torch.tensor(m) + (1 - ab).sqrt() * eps, atol=1e-3)


def test_renoise_has_the_forward_marginal():
    n = 20000
    x_te = torch.full((n, 2), 1.5)
    t_e, t_new = torch.full((n,), 10), torch.full((n,), 30)
    x = renoise(x_te, t_e, t_new, SCHED, torch.randn(n, 2, generator=torch.Generator().manual_seed(1)))
    ratio = SCHED.alpha_bar[30] / SCHED.alpha_bar[10]
    assert torch.allclose(x.mean(0), torch.full((2,), 1.5 * float(ratio.sqrt())), atol=0.02)
    assert torch.allclose(x.var(0), torch.full((2,), float(1 - ratio)), rtol=0.05)


def test_loss_is_zero_when_student_predicts_the_teacher_target():
    teacher = ConstX0([0.5, -1.0], SCHED)
    student = ConstX0([0.5, -1.0], SCHED)
    grid = solver_grid(SCHED, 25)
    loss = self_npo_loss(student, teacher, torch.randn(64, 2), torch.zeros(64, dtype=torch.long), SCHED, grid, 46)
    assert loss.shape == (64,) and loss.max() < 1e-3
    other = ConstX0([1.5, -1.0], SCHED)
    loss = self_npo_loss(other, teacher, torch.randn(64, 2), torch.zeros(64, dtype=torch.long), SCHED, grid, 46)
    assert torch.allclose(loss, torch.full((64,), 0.5), atol=1e-2)  # |1| error in one of two dims, mean over dims


def test_ema_update_closed_form():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    wa, wb = a.weight.detach().clone(), b.weight.detach().clone()
    ema_update(a, b, 0.9)
    assert torch.allclose(a.weight, 0.9 * wa + 0.1 * wb)
    with pytest.raises(ValueError, match="ema"):
        ema_update(a, b, 1.5)


def test_training_moves_the_student_towards_the_unconditional_teacher():
    torch.manual_seed(0)
    base = EpsMLP(4, hidden=32, n_layers=2)
    world = PointsWorld()
    x, c = world.sample_data(50, rng=0)
    cfg = SelfNPOConfig(steps=30, batch_size=64, lr=1e-2)
    student, log = train_self_npo(base, x, c, SCHED, cfg, seed=0)
    assert len(log) == 30 and all(math.isfinite(r["loss"]) for r in log)
    assert any((p - q).abs().max() > 0 for p, q in zip(student.parameters(), base.parameters()))
    base_copy = copy.deepcopy(base)
    assert all(torch.equal(p, q) for p, q in zip(base.parameters(), base_copy.parameters()))  # base untouched
    grid = solver_grid(SCHED, 25)
    kw = dict(schedule=SCHED, grid=grid, t_max=46)
    before = self_npo_loss(base, base, x, c, generator=torch.Generator().manual_seed(5), **kw).mean()
    after = self_npo_loss(student, base, x, c, generator=torch.Generator().manual_seed(5), **kw).mean()
    assert after < before  # fitted to the (unconditional, partly EMA'd) teacher's predictions
    with pytest.raises(ValueError, match="same length"):
        train_self_npo(base, x, c[:-1], SCHED, cfg)


def test_quality_clips_at_four_sigma_and_styled_indicator():
    world = PointsWorld()
    modes = world.modes().float()
    x = torch.stack([modes[0, 0], modes[0, 1], modes[0, 0] + torch.tensor([0.0, 10.0])])
    c = torch.zeros(3, dtype=torch.long)
    q = quality(world, x, c)
    assert q[0] > q[1] > q[2] and q[2] == pytest.approx(quality_floor(world))
    s = world.mode_std
    assert quality_floor(world) == pytest.approx(math.log(0.8) - 8 - math.log(2 * math.pi * s * s))
    assert styled_indicator(world, x[:2], c[:2]).tolist() == [0.0, 1.0]


def test_compute_cost_counts():
    cfg = SelfNPOConfig(steps=10, batch_size=4, solver_steps=5, dpo_steps=2, dpo_batch_size=3, n_pairs_per_class=5)
    cost = compute_cost(cfg, n_classes=4, T=50)
    assert cost["self_npo"] == 10 * 4 * (6 + 3)
    assert cost["diffusion_npo_train"] == 2 * 3 * 8 and cost["diffusion_npo_data"] == 2 * 20 * 50
    assert cost["ratio_with_data"] == pytest.approx(360 / (48 + 2000))


def test_run_smoke_shapes_and_w1_is_shared():
    torch.manual_seed(0)
    world = PointsWorld()
    base = EpsMLP(4, hidden=32, n_layers=2).eval()
    cfg = SelfNPOConfig(n_data_per_class=20, steps=3, n_pairs_per_class=8, dpo_steps=2, weights=(1.0, 2.0),
                        n_eval_per_class=8, samples_to_keep=8)  # fmt: skip
    out = run_selfnpo(world, base, SCHED, 0, cfg)
    assert set(out["record"]) >= {"cfg", "self_npo", "diffusion_npo", "compute"}
    for arm in ("cfg", "self_npo", "diffusion_npo"):
        assert out["units"][arm].shape == (32,)
        assert out["curves"][f"{arm}_test"][0] == pytest.approx(float(out["units"]["w1"].mean()))  # w = 1: no ∅

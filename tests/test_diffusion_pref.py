"""The 2-D diffusion toy's base cache and pair-training loop: the cache round-trips, Diffusion-DPO starts at ln 2, and
training on styled-over-plain pairs moves samples to the styled mode (with and without a reference)."""

from __future__ import annotations

import math

import pytest
import torch

from prefkit.diffusion import ddpm_sample
from prefkit.diffusion_pref import DiffusionBaseConfig, eval_samples, points_base, train_grpo, train_pairs
from prefkit.losses.diffusion import diffusion_dpo_loss, mapo_loss
from prefkit.worlds.points import PointsWorld

TINY = DiffusionBaseConfig(T=20, hidden=64, n_layers=2, n_per_class=300, steps=400, batch_size=128, lr=3e-3)


@pytest.fixture(scope="module")
def base(points_cache):
    world = PointsWorld(n_classes=2)
    return (world, *points_base(world, TINY))


def _styled_pairs(world, n=256):
    m = world.modes()  # (K, 2, 2): plain, styled
    g = torch.Generator().manual_seed(2)
    c = torch.arange(world.n_classes).repeat_interleave(n)
    x_w = m[c, 1].float() + world.mode_std * torch.randn(len(c), 2, generator=g)
    x_l = m[c, 0].float() + world.mode_std * torch.randn(len(c), 2, generator=g)
    return x_w, x_l, c


def _styled_share(world, model, schedule):
    c = torch.arange(world.n_classes).repeat_interleave(300)
    x = ddpm_sample(model, c, schedule, len(c), torch.Generator().manual_seed(3))
    return world.mode_shares(x, c)["styled"]


def test_the_base_is_cached_and_reloads_the_same_weights(base):
    world, model, schedule = base
    again, schedule2 = points_base(world, TINY)
    assert schedule2.T == schedule.T
    for (n, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), n
    c = torch.arange(world.n_classes).repeat_interleave(300)
    x = ddpm_sample(model, c, schedule, len(c), torch.Generator().manual_seed(3))
    assert world.mode_shares(x, c)["other"] < 0.1  # the class conditioning works: samples land in their own class


def test_diffusion_dpo_starts_at_ln2_and_moves_samples_to_the_preferred_mode(base):
    world, model, schedule = base
    x_w, x_l, c = _styled_pairs(world)
    policy, log = train_pairs(model, x_w, x_l, c, diffusion_dpo_loss, schedule, steps=150, batch_size=128, lr=1e-3,
                              beta=2000.0)  # fmt: skip
    assert log[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # policy = reference at step 0
    assert _styled_share(world, policy, schedule) > _styled_share(world, model, schedule) + 0.2
    for a, b in zip(model.parameters(), policy.parameters()):  # the base is left alone
        assert a.data_ptr() != b.data_ptr()


def test_mapo_needs_no_reference_and_moves_samples_too(base):
    world, model, schedule = base
    x_w, x_l, c = _styled_pairs(world)
    policy, _ = train_pairs(model, x_w, x_l, c, mapo_loss, schedule, steps=150, batch_size=128, lr=1e-3)
    assert _styled_share(world, policy, schedule) > _styled_share(world, model, schedule) + 0.2


def test_mismatched_pairs_are_refused(base):
    world, model, schedule = base
    x_w, x_l, c = _styled_pairs(world)
    with pytest.raises(ValueError, match="do not match"):
        train_pairs(model, x_w, x_l[:-1], c, diffusion_dpo_loss, schedule, steps=1)


def test_another_world_gets_its_own_base(base):
    world, model, _ = base
    other, _ = points_base(PointsWorld(n_classes=2, novel_style=True), TINY)  # same config, other data
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


def test_grpo_on_the_oracle_raises_the_oracle_reward(base):
    world, model, schedule = base
    policy, log = train_grpo(model, world.oracle_reward, schedule, world.n_classes, iterations=12, group=32,
                             lr=3e-4, seed=0)  # fmt: skip
    c = torch.arange(world.n_classes).repeat_interleave(300)
    reward = lambda m: world.oracle_reward(ddpm_sample(m, c, schedule, len(c), torch.Generator().manual_seed(3)), c)  # noqa: E731
    assert reward(policy).mean() > reward(model).mean() + 0.05
    assert log[0]["abs_advantage"] > 0 and len(log) == 12


def test_grpo_first_step_is_on_policy(base):
    """At the first update the sampling policy is the policy: every ratio is 1, so the surrogate is -A on average."""
    world, model, schedule = base
    from prefkit.diffusion import step_logprob

    x, traj = ddpm_sample(model, torch.zeros(8, dtype=torch.long), schedule, 8, torch.Generator().manual_seed(5),
                          return_trajectory=True)  # fmt: skip
    k = 3
    again = step_logprob(model, traj.xs[k], traj.xs[k + 1], traj.timesteps[k], torch.zeros(8, dtype=torch.long),
                         schedule)  # fmt: skip
    torch.testing.assert_close(again, traj.logps[:, k], rtol=1e-5, atol=1e-4)


def test_eval_samples_pair_arms_by_their_noise(base):
    """Two arms evaluated with the same seed start from the same noise: a model compared with itself gives identical
    samples, and another seed or the validation split gives other noise."""
    world, model, schedule = base
    x, c = eval_samples(model, schedule, world.n_classes, 16, seed=3)
    again, _ = eval_samples(model, schedule, world.n_classes, 16, seed=3)
    assert torch.equal(x, again) and torch.equal(c, torch.arange(world.n_classes).repeat_interleave(16))
    for other in (eval_samples(model, schedule, world.n_classes, 16, seed=4)[0],
                  eval_samples(model, schedule, world.n_classes, 16, seed=3, split="val")[0]):  # fmt: skip
        assert not torch.allclose(x, other)
    with pytest.raises(ValueError, match="split"):
        eval_samples(model, schedule, world.n_classes, 16, seed=3, split="train")

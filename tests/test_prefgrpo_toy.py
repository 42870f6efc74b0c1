"""Tests of prefkit.prefgrpo_toy: group win rates, the judge's pairs, shared noise, on-policy log-probs, hack-gap
units, and GRPO moving a tiny policy the way its reward points."""

from __future__ import annotations

import math

import pytest
import torch

from prefkit.diffusion_pref import DiffusionBaseConfig, points_base
from prefkit.losses.diffusion import grpo_advantages
from prefkit.prefgrpo_toy import (
    PrefGRPOConfig,
    group_rewards,
    group_win_rates,
    grpo_iteration,
    hack_gap_units,
    pairwise_logits,
    run_prefgrpo,
    sample_groups,
    trajectory_logprobs,
)
from prefkit.worlds.points import PairwiseRM, PointsWorld, PointwiseRM, hack_gap


@pytest.fixture(scope="module")
def base(points_cache):
    world = PointsWorld()
    model, schedule = points_base(world, DiffusionBaseConfig(steps=400))
    return world, model, schedule


def test_win_rates_of_a_transitive_judge_are_ranks_and_ties_count_half():
    score = torch.tensor([[0.3, -1.0, 2.0, 0.5]])  # (1, 4)
    logits = score[:, :, None] - score[:, None, :]  # (1, 4, 4) antisymmetric
    wr = group_win_rates(logits)
    torch.testing.assert_close(wr, torch.tensor([[1 / 3, 0.0, 1.0, 2 / 3]]))
    tied = group_win_rates(torch.zeros(2, 5, 5))  # every pair a tie
    torch.testing.assert_close(tied, torch.full((2, 5), 0.5))
    half = group_win_rates(torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [-1.0, -1.0, 0.0]]]))
    torch.testing.assert_close(half, torch.tensor([[0.75, 0.75, 0.0]]))
    assert math.isclose(float(wr.mean()), 0.5, abs_tol=1e-6)
    with pytest.raises(ValueError, match="logits"):
        group_win_rates(torch.zeros(2, 3, 4))


def test_pairwise_logits_judge_each_pair_once_and_are_antisymmetric():
    torch.manual_seed(0)
    rm = PairwiseRM(4)
    calls = []
    logit = rm.logit
    rm.logit = lambda a, b, c: calls.append(len(c)) or logit(a, b, c)
    x, c = torch.randn(3, 8, 2), torch.tensor([0, 2, 3])
    z = pairwise_logits(rm, x, c)
    assert calls == [3 * 28]  # C(8, 2) = 28 pairs per group, one batched call
    torch.testing.assert_close(z, -z.transpose(1, 2))
    torch.testing.assert_close(z[1, 5, 2], logit(x[1, 5][None], x[1, 2][None], c[1:2])[0].detach())
    with pytest.raises(ValueError, match="x must have shape"):
        pairwise_logits(rm, x[0], c)


def test_group_rewards_and_the_illusory_advantage():
    """std normalisation gives a group with a 1000x smaller reward spread the same advantages (the paper's
    "illusory advantage"); mean-only advantages shrink with the spread."""
    torch.manual_seed(0)
    rm = PointwiseRM(4)
    x, c = torch.randn(2, 8, 2), torch.tensor([1, 3])
    r = group_rewards("pointwise", rm, x, c)
    torch.testing.assert_close(r[1], rm(x[1], torch.full((8,), 3)).detach())
    a, a_small = grpo_advantages(r), grpo_advantages(1e-3 * r)
    torch.testing.assert_close(a, a_small, rtol=0, atol=2e-3)
    torch.testing.assert_close(grpo_advantages(1e-3 * r, False), 1e-3 * grpo_advantages(r, False))
    wr = group_rewards("win_rate", PairwiseRM(4), x, c)
    assert wr.shape == (2, 8) and torch.all((wr >= 0) & (wr <= 1))
    with pytest.raises(ValueError, match="kind"):
        group_rewards("score", rm, x, c)


def test_a_group_shares_its_initial_noise(base):
    _, model, schedule = base
    c = torch.tensor([0, 1, 2])
    _, traj, cc = sample_groups(model, c, 4, schedule, torch.Generator().manual_seed(0), same_noise=True)
    start = traj.xs[0].reshape(3, 4, 2)
    assert torch.equal(cc, c.repeat_interleave(4))
    assert torch.equal(start, start[:, :1].expand(-1, 4, -1)) and not torch.equal(start[0, 0], start[1, 0])
    assert not torch.equal(traj.xs[-1][0], traj.xs[-1][1])  # the step noise still differs within a group
    _, traj, _ = sample_groups(model, c, 4, schedule, torch.Generator().manual_seed(0), same_noise=False)
    assert not torch.equal(traj.xs[0][0], traj.xs[0][1])


def test_batched_logprobs_are_the_sampler_s_on_policy(base):
    _, model, schedule = base
    _, traj, cc = sample_groups(model, torch.tensor([0, 3]), 4, schedule, torch.Generator().manual_seed(1))
    steps = torch.tensor([0, 7, 30, traj.timesteps.shape[0] - 1])
    lp = trajectory_logprobs(model, traj, cc, steps, schedule)
    assert lp.shape == (8, 4) and lp.requires_grad
    torch.testing.assert_close(lp.detach(), traj.logps[:, steps], rtol=1e-5, atol=1e-4)


def test_hack_gap_units_average_to_hack_gap():
    world = PointsWorld()
    torch.manual_seed(0)
    rm = PointwiseRM(4)
    x, c = world.sample_data(40, rng=1)
    x_ref, _ = world.sample_data(40, rng=2)
    g = hack_gap_units(rm, world.oracle_reward, x, c, x_ref)
    assert math.isclose(float(g.mean()), hack_gap(rm, world.oracle_reward, x, c, x_ref), abs_tol=1e-9)
    assert set(g.tolist()) <= {-1.0, -0.5, 0.0, 0.5, 1.0}
    assert float(hack_gap_units(rm, world.oracle_reward, x, c, x).abs().max()) == 0.0
    with pytest.raises(ValueError, match="x_ref"):
        hack_gap_units(rm, world.oracle_reward, x, c, x_ref[:5])


class _RightwardRM(torch.nn.Module):
    """A pointwise reward that prefers points further right: r(x, c) = x_1."""

    def forward(self, x, c):
        return x[:, 0]


def test_grpo_moves_the_policy_towards_its_reward(base):
    world, model, schedule = base
    import copy

    cfg = PrefGRPOConfig(groups_per_class=1, lr=3e-3)
    policy = copy.deepcopy(model)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(0)
    rm = _RightwardRM()
    before = [grpo_iteration(policy, opt, "pointwise", rm, True, cfg, schedule, 4, gen)["reward"].mean()
              for _ in range(2)]  # fmt: skip
    for _ in range(8):
        d = grpo_iteration(policy, opt, "pointwise", rm, True, cfg, schedule, 4, gen)
    assert d["reward"].mean() > max(before) + 0.3
    assert 0.6 < d["abs_adv"].mean() < 1.0  # std-normalised: mean |A| of G = 8 standardised values


def test_run_gives_paired_units_and_rejects_unknown_arms(base):
    world, model, schedule = base
    cfg = PrefGRPOConfig(n_pairs=100, rm_steps=20, iterations=2, groups_per_class=1, probe_every=1, probe_per_class=4,
                         eval_per_class=8, arms=("pointwise", "pref_grpo"))  # fmt: skip
    out = run_prefgrpo(world, model, schedule, 0, cfg)
    assert set(out["units"]) == {"oracle_base", "oracle_pointwise", "gap_pointwise", "oracle_pref_grpo",
                                 "gap_pref_grpo"}  # fmt: skip
    assert all(v.shape == (32,) for v in out["units"].values())
    assert out["curves"]["pref_grpo"]["iteration"] == [0, 1, 2] and len(out["curves"]["pref_grpo"]["spread"]) == 2
    assert out["curves"]["pointwise"]["rm_win"][0] == 0.5  # at iteration 0 the policy is the base: all ties
    with pytest.raises(ValueError, match="cfg.arms"):
        run_prefgrpo(world, model, schedule, 0, PrefGRPOConfig(arms=("dpo",)))

"""Part C of notebook 13 (RankDPO on the 2-D diffusion toy): Syn-Pic's win-fraction labels, best-vs-worst pairs, the
ranked list trainer's step-0 value and direction of movement, and one smoke run of the whole experiment."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from prefkit.diffusion import ddpm_sample
from prefkit.diffusion_pref import DiffusionBaseConfig, points_base
from prefkit.rankdpo_toy import (
    ARMS,
    RankDPOConfig,
    best_worst,
    fit_reward_models,
    generate_lists,
    pairs_from_lists,
    rm_scores,
    run_rankdpo,
    synpic_phi,
    train_lists,
)
from prefkit.worlds.points import PointsWorld

TINY = DiffusionBaseConfig(T=20, hidden=64, n_layers=2, n_per_class=300, steps=200, batch_size=128, lr=5e-3)


@pytest.fixture(scope="module")
def base(points_cache):
    world = PointsWorld(n_classes=2)
    return (world, *points_base(world, TINY))


# ---------------------------------------------------------------------------------------------------------- Syn-Pic φ
def test_phi_is_the_share_of_pairwise_wins_over_reward_models():
    # two reward models, one list of three items: RM 0 orders a > b > c, RM 1 orders b > a > c
    s = torch.tensor([[[3.0, 2.0, 1.0]], [[2.0, 3.0, 1.0]]])  # (n=2, N=1, k=3)
    phi = synpic_phi(s)
    # wins: a 2 + 1 = 3, b 1 + 2 = 3, c 0; divided by n (k - 1) = 4
    assert torch.allclose(phi, torch.tensor([[0.75, 0.75, 0.0]]))


def test_phi_invariants_sum_permutation_ties_and_one_rm():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(5, 7, 4, generator=g)
    phi = synpic_phi(s)
    assert torch.allclose(phi.sum(1), torch.full((7,), 2.0))  # every comparison hands out one win: Σ_i φ_i = k / 2
    assert ((phi >= 0) & (phi <= 1)).all()
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.allclose(synpic_phi(s[:, :, perm]), phi[:, perm])  # labels follow their items
    assert torch.allclose(synpic_phi(s[[3, 1, 0, 4, 2]]), phi)  # the reward models' order does not matter
    one = synpic_phi(s[:1])  # one reward model: φ = (k - rank) / (k - 1)
    ranks = s[0].argsort(1, descending=True).argsort(1).float()
    assert torch.allclose(one, (3 - ranks) / 3)
    assert torch.allclose(synpic_phi(torch.ones(2, 3, 4)), torch.full((3, 4), 0.5))  # all tie: 1/2 each


def test_phi_rejects_bad_shapes_naming_the_argument():
    with pytest.raises(ValueError, match="scores"):
        synpic_phi(torch.rand(4, 3))
    with pytest.raises(ValueError, match="scores"):
        synpic_phi(torch.rand(2, 3, 1))


# ------------------------------------------------------------------------------------------------ best-vs-worst pairs
def test_best_worst_picks_extremes_breaks_ties_at_random_and_drops_flat_lists():
    g = torch.Generator().manual_seed(0)
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [1.0, 1.0, 0.0, 0.2], [0.4, 0.4, 0.4, 0.4]])
    best, worst, keep = best_worst(scores, g)
    assert keep.tolist() == [True, True, False]
    assert best[0] == 1 and worst[0] == 0 and worst[1] == 2
    firsts = {int(best_worst(scores[1:2], g)[0][0]) for _ in range(40)}
    assert firsts == {0, 1}  # both tied best items get chosen
    with pytest.raises(ValueError, match="scores"):
        best_worst(torch.rand(5), g)


def test_pairs_from_lists_take_the_right_items():
    x = torch.arange(24, dtype=torch.float32).reshape(3, 4, 2)  # (N=3, k=4, d=2)
    c = torch.tensor([0, 1, 0])
    scores = torch.tensor([[0.0, 1.0, 0.5, 0.2], [0.3, 0.3, 0.3, 0.3], [0.9, 0.1, 0.2, 0.3]])
    x_w, x_l, cp = pairs_from_lists(x, c, scores, torch.Generator().manual_seed(0))
    assert torch.equal(x_w, torch.stack([x[0, 1], x[2, 0]]))
    assert torch.equal(x_l, torch.stack([x[0, 0], x[2, 1]]))
    assert cp.tolist() == [0, 0]


# --------------------------------------------------------------------------------------------------- the list trainer
def _styled_lists(world, n=128):
    """Lists of 4 where the item nearest the styled mode ranks first: styled, two in between, plain."""
    m = world.modes().float()  # (K, 2, 2): plain, styled
    g = torch.Generator().manual_seed(1)
    c = torch.arange(world.n_classes).repeat_interleave(n)
    frac = torch.tensor([1.0, 2 / 3, 1 / 3, 0.0])  # position between plain (0) and styled (1)
    centre = m[c, 0][:, None] + frac[None, :, None] * (m[c, 1] - m[c, 0])[:, None]  # (N, 4, 2)
    x = centre + world.mode_std * torch.randn(centre.shape, generator=g)
    scores = frac.expand(len(c), 4).clone()  # φ: 1, 2/3, 1/3, 0
    return x, c, scores


@pytest.mark.parametrize("discount", [True, False])
def test_train_lists_starts_at_the_weighted_ln2(base, discount):
    world, model, schedule = base
    x, c, scores = _styled_lists(world, 16)
    _, log = train_lists(model, x, c, scores, schedule, steps=1, batch_lists=8, lr=1e-3, seed=0, beta=1000.0,
                         discount=discount)  # fmt: skip
    phi = scores[0].tolist()
    inv_d = [1 / math.log(2 + i) for i in range(4)]  # at step 0 the implicit rewards tie and φ orders the ranks
    weight = sum(abs(2 ** phi[i] - 2 ** phi[j]) * (abs(inv_d[i] - inv_d[j]) if discount else 1.0)
                 for i in range(4) for j in range(i + 1, 4))  # fmt: skip
    assert log[0] == pytest.approx(weight * math.log(2), rel=1e-5)


def test_train_lists_moves_samples_towards_the_top_ranked_items(base):
    world, model, schedule = base
    x, c, scores = _styled_lists(world)
    cls = torch.arange(world.n_classes).repeat_interleave(300)

    def styled_share(m):
        xs = ddpm_sample(m, cls, schedule, len(cls), torch.Generator().manual_seed(3))
        return world.mode_shares(xs, cls)["styled"]

    before = styled_share(model)
    up, _ = train_lists(model, x, c, scores, schedule, steps=60, batch_lists=32, lr=2e-3, seed=0, beta=1000.0)
    down, _ = train_lists(model, x, c, 1 - scores, schedule, steps=60, batch_lists=32, lr=2e-3, seed=0, beta=1000.0)
    assert styled_share(up) > before + 0.1
    assert styled_share(down) < before
    with pytest.raises(ValueError, match="scores"):
        train_lists(model, x, c, scores[:, :3], schedule, 1, 4, 1e-3, 0, 1000.0)


# ------------------------------------------------------------------------------------------- generators, RMs, the run
def test_lists_reward_models_and_errors(base):
    world, model, schedule = base
    g = torch.Generator().manual_seed(0)
    x, c = generate_lists(model, schedule, world.n_classes, 5, (0.5, 1.0, 3.0), g)
    assert x.shape == (10, 3, 2) and c.tolist() == [0] * 5 + [1] * 5
    with pytest.raises(ValueError, match="guidance"):
        generate_lists(model, schedule, world.n_classes, 5, (1.0,), g)
    rms = fit_reward_models(world, model, schedule, (0.5, 1.0, 3.0), 3, 40, 30, seed=0)
    s = rm_scores(rms, x, c)
    assert s.shape == (3, 10, 3)
    assert not torch.allclose(s[0], s[1])  # different data and weights: different reward models
    with pytest.raises(ValueError, match="generated_share"):
        fit_reward_models(world, model, schedule, (1.0, 2.0), 1, 10, 5, seed=0, generated_share=1.5)


def test_smoke_run_returns_paired_units_and_a_json_record(base):
    world, model, schedule = base
    cfg = replace(RankDPOConfig.smoke(), n_rms=3, lists_per_class=16, steps=5, eval_per_class=16, rm_steps=20,
                  rm_pairs=20, rm_test_pairs=40, n_figure=4)  # fmt: skip
    out = run_rankdpo(world, model, schedule, 0, cfg)
    assert set(out["units"]) == set(ARMS)
    assert all(u.shape == (2 * 16,) for u in out["units"].values())
    json.dumps({k: out[k] for k in ("record", "labels", "config", "curves")})
    again = run_rankdpo(world, model, schedule, 0, cfg)
    assert all((out["units"][a] == again["units"][a]).all() for a in ARMS)  # a seed fixes everything
    assert out["labels"]["oracle"]["pair_agreement"] == 1.0
    with pytest.raises(ValueError, match="single_rm"):
        run_rankdpo(world, model, schedule, 0, replace(cfg, single_rm=cfg.n_rms))

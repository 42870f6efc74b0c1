"""prefkit.mapo_toy: the reference-mismatch sweep of notebook 13, Part A."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prefkit.diffusion_pref import DiffusionBaseConfig, eval_samples, points_base
from prefkit.losses.diffusion import mapo_loss
from prefkit.mapo_toy import (
    MaPOSweepConfig,
    fit_and_select,
    level_worlds,
    preference_data,
    run_mapo_sweep,
    sft_chosen_loss,
)
from prefkit.worlds.points import PointsWorld

TINY = DiffusionBaseConfig(T=20, hidden=64, n_layers=2, n_per_class=300, steps=300, batch_size=128, lr=3e-3)


def test_levels_move_the_target_away_from_the_base():
    world = PointsWorld()
    assert level_worlds(world, "p=0.2") == (world, world)
    base_world, target = level_worlds(world, "p=0.02")
    assert base_world is target and target.style_frequency == 0.02
    base_world, target = level_worlds(world, "novel")
    assert base_world == world and target.novel_style and not world.novel_style
    assert target.modes()[0, 1].norm() > world.modes()[0, 1].norm() + 1  # the novel style lies further out
    with pytest.raises(ValueError, match="unknown level 'far'"):
        level_worlds(world, "far")


def test_sft_on_chosen_is_the_chosen_error_alone():
    m_w, m_l = torch.tensor([0.3, 1.0]), torch.tensor([5.0, 0.1])
    loss, _ = sft_chosen_loss(m_w, m_l)
    torch.testing.assert_close(loss, m_w)
    torch.testing.assert_close(mapo_loss(m_w, m_l, beta=0.0)[0], loss)  # MaPO with β = 0


def test_pairs_are_target_style_against_the_base(points_cache):
    world = PointsWorld(n_classes=2)
    base, schedule = points_base(world, TINY)
    _, target = level_worlds(world, "novel")
    x_w, x_l, c = preference_data(base, schedule, target, 200, seed=1)
    assert x_w.shape == x_l.shape == (400, 2) and torch.equal(c, torch.arange(2).repeat_interleave(200))
    assert target.mode_shares(x_w, c)["styled"] > 0.97  # chosen: the target style
    assert target.mode_shares(x_l, c)["styled"] < 0.05  # rejected: the base's own samples, never the novel style
    again = preference_data(base, schedule, target, 200, seed=1)
    assert all(torch.equal(a, b) for a, b in zip((x_w, x_l, c), again))


def test_fit_and_select_reports_the_best_validation_checkpoint(points_cache):
    world = PointsWorld(n_classes=2)
    base, schedule = points_base(world, TINY)
    x_w, x_l, c = preference_data(base, schedule, world, 100, seed=0)
    cfg = MaPOSweepConfig(base=TINY, steps=40, eval_every=20, n_eval_per_class=32)
    res = fit_and_select(base, schedule, x_w, x_l, c, sft_chosen_loss, {"a": {}, "b": {}}, cfg, 0, world)
    rows = [(label, step, val) for label, r in res["curves"].items() for step, val, _ in r]
    assert [(lab, step) for lab, step, _ in rows] == [("a", 20), ("a", 40), ("b", 20), ("b", 40)]
    best = max(rows, key=lambda r: r[2])
    assert res["choice"] == best[:2]
    test_means = {(lab, step): t for lab, r in res["curves"].items() for step, _, t in r}
    assert res["units"].shape == (64,) and np.isclose(res["units"].mean(), test_means[res["choice"]], atol=1e-4)
    model = base.__class__(world.n_classes, d=2, hidden=TINY.hidden, n_layers=TINY.n_layers)
    model.load_state_dict(res["model"])
    x, cc = eval_samples(model.eval(), schedule, world.n_classes, 32, 0)
    np.testing.assert_allclose(world.oracle_reward(x, cc).numpy(), res["units"], atol=1e-5)  # the chosen weights


def test_the_sweep_pairs_every_arm_on_the_same_noise(points_cache):
    world = PointsWorld(n_classes=2)
    cfg = MaPOSweepConfig(levels=("p=0.2", "novel"), base=TINY, n_pairs_per_class=100, steps=20, eval_every=20,
                          dpo_betas=(2000.0,), mapo_betas=(0.1,), n_eval_per_class=16, samples_to_keep=4)  # fmt: skip
    res = run_mapo_sweep(world, 0, cfg)
    arms = ("base", "Diffusion-DPO", "MaPO", "SFT on chosen")
    assert set(res["units"]) == {(lv, a) for lv in cfg.levels for a in arms}
    assert all(u.shape == (32,) for u in res["units"].values())
    base, schedule = points_base(world, TINY)
    x, c = eval_samples(base, schedule, 2, 16, 0)
    _, novel = level_worlds(world, "novel")
    np.testing.assert_allclose(res["units"][("novel", "base")], novel.oracle_reward(x, c).numpy())
    assert res["choice"][("p=0.2", "MaPO")] == ("β=0.1", 20)


def test_an_early_checkpoint_is_reported_when_training_goes_wrong(points_cache):
    """A loss that unlearns the chosen samples makes things worse step by step: the earliest checkpoint is chosen,
    and what is reported is its samples, not the last step's."""
    world = PointsWorld(n_classes=2)
    base, schedule = points_base(world, TINY)
    x_w, x_l, c = preference_data(base, schedule, world, 100, seed=0)
    cfg = MaPOSweepConfig(base=TINY, steps=60, eval_every=20, n_eval_per_class=32, lr=1e-4)

    def unlearn(mse_w, mse_l):
        return -mse_w.clamp(max=10.0), mse_w.detach()

    res = fit_and_select(base, schedule, x_w, x_l, c, unlearn, {"-": {}}, cfg, 0, world)
    assert res["choice"] == ("-", 20)
    assert res["units"].mean() > res["final"].mean() + 0.05

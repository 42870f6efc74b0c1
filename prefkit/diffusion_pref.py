"""Preference training for the 2-D diffusion toy: a cached base model and one loop for pair losses.

- :class:`DiffusionBaseConfig` and :func:`points_base`: an :class:`prefkit.diffusion.EpsMLP` trained by the DDPM loss on
  a :class:`prefkit.worlds.points.PointsWorld`'s data (with label dropout, for guidance), cached on disk keyed by the
  world and the config, like the language toy bases (:func:`prefkit.toy.sft_base`).
- :func:`train_pairs`: fine-tune a copy of a model on preference pairs (x_w, x_l, c) with any pair loss of
  :mod:`prefkit.losses.diffusion` written as ``loss(m_w, m_l, r_w, r_l)``: each step draws a batch of pairs, one t and
  one ε shared by the two sides of each pair (the official Diffusion-DPO code), and the denoising errors under the
  policy (with gradient) and under the frozen reference (without; skipped for reference-free losses such as MaPO).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from .diffusion import EpsMLP, NoiseSchedule, ddpm_sample, pair_mse, step_logprob, train_denoiser
from .losses.diffusion import grpo_advantages, grpo_step_loss
from .models import cache_dir, fingerprint

Tensor = torch.Tensor


@dataclass
class DiffusionBaseConfig:
    T: int = 50  # diffusion steps (the toy's short chain)
    schedule: str = "cosine"  # cosine: less shrinkage of narrow modes than linear at T = 50
    hidden: int = 128  # EpsMLP width
    n_layers: int = 3  # EpsMLP depth
    n_per_class: int = 2000  # training points per class
    steps: int = 3000  # Adam steps
    batch_size: int = 256
    lr: float = 1e-3
    p_uncond: float = 0.1  # label dropout (classifier-free guidance)
    seed: int = 0


def points_base(world, config: DiffusionBaseConfig, cache: bool = True, progress: bool = False):
    """The base model of ``world`` (trained, or loaded from the cache): returns (model in eval mode, schedule)."""
    from safetensors.torch import load_file, save_file

    schedule = NoiseSchedule(config.T, config.schedule)
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, without touching the caller's generator
        torch.manual_seed(config.seed)
        model = EpsMLP(world.n_classes, d=2, hidden=config.hidden, n_layers=config.n_layers)
    path = cache_dir() / "diffusion-bases" / fingerprint({"world": asdict(world), "config": asdict(config)})
    weights = path / "model.safetensors"
    if cache and weights.is_file():
        model.load_state_dict(load_file(weights))
        return model.eval(), schedule
    x, c = world.sample_data(config.n_per_class, rng=config.seed)
    train_denoiser(model, x, c, schedule, config.steps, config.batch_size, config.lr, config.p_uncond, config.seed,
                   progress)  # fmt: skip
    if cache:
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / "model.safetensors.tmp"
        save_file(model.state_dict(), tmp)
        tmp.replace(weights)  # atomic: a half-written cache entry is never read
    return model.eval(), schedule


def train_pairs(
    model,
    x_w: Tensor,  # (N, d) preferred samples
    x_l: Tensor,  # (N, d) dispreferred samples
    c: Tensor,  # (N,) their classes
    loss: Callable,
    schedule: NoiseSchedule,
    steps: int = 400,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    reference=None,
    on_step: Callable[[int, torch.nn.Module], None] | None = None,
    **hparams,
) -> tuple[torch.nn.Module, list[dict]]:
    """Fine-tune a copy of ``model`` on the pairs with ``loss`` (+ ``hparams``, e.g. ``beta``); ``reference`` defaults
    to a frozen copy of ``model`` (ignored by losses without reference arguments). ``on_step(k, policy)`` is called
    after step k = 1..steps (e.g. to evaluate checkpoints; the policy is put back in training mode after it). Returns
    (policy, one log row per step: the mean loss; its first value is ln 2 for the DPO family)."""
    if not (x_w.shape == x_l.shape and x_w.shape[0] == c.shape[0]):
        raise ValueError(f"x_w {tuple(x_w.shape)}, x_l {tuple(x_l.shape)} and c {tuple(c.shape)} do not match")
    needs_ref = "ref_mse_w" in inspect.signature(loss).parameters
    policy = copy.deepcopy(model).train()
    ref = (reference if reference is not None else copy.deepcopy(model)).eval() if needs_ref else None
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    log = []
    for _ in range(steps):
        idx = torch.randint(0, x_w.shape[0], (batch_size,), generator=gen)
        t = torch.randint(0, schedule.T, (batch_size,), generator=gen)
        noise = torch.randn(batch_size, x_w.shape[1], generator=gen)
        m_w, m_l = pair_mse(policy, x_w[idx], x_l[idx], c[idx], t, noise, schedule)
        if needs_ref:
            with torch.no_grad():
                r_w, r_l = pair_mse(ref, x_w[idx], x_l[idx], c[idx], t, noise, schedule)
            losses = loss(m_w, m_l, r_w, r_l, **hparams)[0]
        else:
            losses = loss(m_w, m_l, **hparams)[0]
        opt.zero_grad()
        losses.mean().backward()
        opt.step()
        log.append({"loss": float(losses.detach().mean())})
        if on_step is not None:
            on_step(len(log), policy.eval())
            policy.train()
    return policy.eval(), log


def train_grpo(
    model,
    reward: Callable[[Tensor, Tensor], Tensor],
    schedule: NoiseSchedule,
    n_classes: int,
    iterations: int = 20,
    group: int = 16,
    inner_steps: int = 1,
    lr: float = 1e-4,
    clip: float = 0.2,
    normalize_std: bool = True,
    seed: int = 0,
) -> tuple[torch.nn.Module, list[dict]]:
    """GRPO on the ancestral sampler (the DanceGRPO / Pref-GRPO recipe on our 2-D toy): each iteration samples
    ``group`` trajectories per class from the current policy, scores the final samples with ``reward(x, c) -> (N,)``
    (an oracle, a reward model, or a group win rate), turns the rewards into group-relative advantages
    (:func:`prefkit.losses.diffusion.grpo_advantages`), and takes ``inner_steps`` Adam steps on the clipped surrogate
    of every stochastic step of those trajectories (:func:`prefkit.losses.diffusion.grpo_step_loss`). Returns (a
    fine-tuned copy of ``model``, one log row per iteration: mean reward before the update, the advantages' mean
    absolute value, and the reward spread within groups)."""
    policy = copy.deepcopy(model).eval()  # eval: no dropout; gradients still flow
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    c = torch.arange(n_classes).repeat_interleave(group)  # (B·G,), classes in blocks of G
    log = []
    for _ in range(iterations):
        x, traj = ddpm_sample(policy, c, schedule, len(c), gen, return_trajectory=True)
        with torch.no_grad():
            r = reward(x, c).reshape(n_classes, group)  # (B, G)
        adv = grpo_advantages(r, normalize_std)  # (B, G)
        n_steps = traj.timesteps.shape[0]
        for _ in range(inner_steps):
            logp_new = torch.stack([
                step_logprob(policy, traj.xs[k], traj.xs[k + 1], traj.timesteps[k], c, schedule)
                for k in range(n_steps)
            ], -1).reshape(n_classes, group, n_steps)  # fmt: skip
            losses, _ = grpo_step_loss(logp_new, traj.logps.reshape(n_classes, group, n_steps), adv, clip)
            opt.zero_grad()
            losses.mean().backward()
            opt.step()
        log.append({"reward": float(r.mean()), "abs_advantage": float(adv.abs().mean()),
                    "reward_spread": float(r.std(-1).mean())})  # fmt: skip
    return policy.eval(), log


EVAL_SEED_OFFSET = 10_000  # evaluation noise of seed s comes from generator seed 10_000 + s (training never uses it)


def eval_samples(
    model,
    schedule: NoiseSchedule,
    n_classes: int,
    n_per_class: int,
    seed: int,
    w: float = 1.0,
    negative=None,
    split: str = "test",
) -> tuple[Tensor, Tensor]:
    """Evaluation samples of ``model``: ``n_per_class`` ancestral samples of every class (classes in blocks), drawn
    from noise fixed by ``seed`` and ``split`` alone, so that two models evaluated with the same arguments start from
    the same initial noise and see the same per-step noise: sample i of one arm and sample i of another form a pair
    (the unit of a paired comparison). ``split="val"`` gives a second, independent set of noise for choosing a
    checkpoint or a guidance weight without touching the test units. Returns (x (K·n, d), c (K·n,))."""
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    c = torch.arange(n_classes).repeat_interleave(n_per_class)
    gen = torch.Generator().manual_seed(EVAL_SEED_OFFSET + seed + (0 if split == "test" else 500_000))
    return ddpm_sample(model, c, schedule, len(c), gen, w=w, negative=negative), c

"""Self-NPO against plain guidance and Diffusion-NPO, in the 2-D points world (notebook 13, Part D).

Self-NPO (Fu-Yun Wang et al. 2025, "Self-NPO: Negative Preference Optimization of
Diffusion Models by Simply Learning from Itself without Explicit Preference Annotation", arXiv:2505.11777, AAAI 2026;
official code G-U-N/Diffusion-NPO, folder ``Self-NPO/``) trains a *negative* model, one that generates what should be
avoided, and uses it in place of the unconditional branch of classifier-free guidance:

    ε̂(x_t, c) = ε_neg(x_t, ∅) + w (ε_θ(x_t, c) - ε_neg(x_t, ∅))
        (pipeline_stable_diffusion_double_unet.py l.1165-1199; :func:`prefkit.diffusion.guided_eps` with ``negative``)

Its predecessor Diffusion-NPO (Wang et al., ICLR 2025; same repository, folder ``DPO-DPO-NPO/``) trains the
negative by Diffusion-DPO on preference pairs with winner and loser swapped (train_sd15.py l.687-688), so it needs
labelled pairs. Self-NPO needs none: it distils the model's own degraded predictions (Self-NPO/train.py):

    1. x_0 from the data (``laion/imgs``, l.864); a start index i ~ U{0..24} on a 25-step DDIM grid of stride 40,
       t_s = grid[i]; x_{t_s} = √ᾱ_{t_s} x_0 + √(1-ᾱ_{t_s}) ε                                         (l.988-1001)
    2. up to 5 DDIM steps of the EMA teacher with guidance weight w = -1 in cond + w (cond - uncond), i.e. its
       *unconditional* prediction alone, from t_s down to t_e = max(t_s - 5·40, 0)                    (l.1010-1075)
    3. target = the teacher's x_0-prediction at t_e: x̂_0 = (x_{t_e} - √(1-ᾱ_{t_e}) ε̂_u)/√ᾱ_{t_e}      (l.1047, 1119)
    4. t' ~ U{t_e+1 .. 999}; re-noise forward: x_{t'} = (x_{t_e}/α_{t_e} + √(nsr_{t'}² - nsr_{t_e}²) z) α_{t'}, with
       α = √ᾱ and nsr = √(1-ᾱ)/√ᾱ                                                                    (l.1090-1124)
    5. the student (conditional on the prompt c) predicts ε at t', turned into x_0 = (x_{t'} - σ_{t'} ε̂)/α_{t'}; loss
       Huber: mean(√((x̂_0 - target)² + c_h²) - c_h), c_h = 0.001                                     (l.1127-1148)
    6. gradient clip 1.0, AdamW (lr 1e-6, weight decay 1e-3, train.sh), then teacher ← EMA_0.999(student) (l.1160)

Both the student and the teacher start from the base. The conversion between the ε- and x_0-parameterisations is the
one of the forward process x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε: x̂_0 = (x_t - √(1-ᾱ_t) ε̂)/√ᾱ_t, ε̂ = (x_t - √ᾱ_t x̂_0)/√(1-ᾱ_t).

Departures of the toy (all in :class:`SelfNPOConfig`, each with its reason):
- T = 50 instead of 1000: the DDIM grid keeps 25 points, so its stride is 2 (the code's 1000 // 25 = 40), and the
  five solver steps span 10 timesteps (the code's 200), the same share of the chain.
- The toy's cosine schedule reaches ᾱ = 1e-6 at t = 49, where x̂_0 divides ε's error by √ᾱ = 0.001 (SD1.5's last step
  has ᾱ = 0.0047). Every timestep Self-NPO uses (grid points and t') is kept where ᾱ ≥ 0.0047, i.e. t ≤ 46.
- The teacher runs only its unconditional branch (w = -1 makes the conditional one irrelevant; the code computes both).
- The learning rate and step count are the toy's (SD1.5 runs 1000 steps at lr 1e-6, batch 20); see the config.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .diffusion import NoiseSchedule, ddpm_sample, null_class
from .diffusion_pref import eval_samples, train_pairs
from .losses.diffusion import diffusion_dpo_loss

Tensor = torch.Tensor
ARMS = ("cfg", "self_npo", "diffusion_npo")  # which model feeds the ∅ branch: the base, or one of the negatives
SD15_MIN_ALPHA_BAR = 0.0047  # ᾱ at SD1.5's last training step t = 999 (scaled-linear β 0.00085 .. 0.012)


@dataclass
class SelfNPOConfig:
    # Self-NPO (Self-NPO/train.py, train.sh)
    n_data_per_class: int = 2000  # unlabelled data points per class (the code's image set); a seed draws them
    steps: int = 1000  # train.sh --max_train_steps=1000
    batch_size: int = 256  # train.sh: 20 images; the toy's points are cheap
    lr: float = 1e-3  # the toy base's own learning rate (train.sh: 1e-6 for a pretrained SD1.5 U-Net)
    weight_decay: float = 1e-3  # train.sh --adam_weight_decay=1e-3 (AdamW)
    max_grad_norm: float = 1.0  # train.py --max_grad_norm default
    huber_c: float = 0.001  # train.py --huber_c default (train.sh --loss_type=huber)
    ema: float = 0.999  # train.py l.1160 update_ema(target_unet, unet, 0.999)
    ddim_points: int = 25  # train.py --num_ddim_timesteps default
    solver_steps: int = 5  # train.py l.1012: range(6), break at i >= 5
    min_alpha_bar: float = SD15_MIN_ALPHA_BAR  # toy: keep Self-NPO's timesteps where ᾱ ≥ SD1.5's smallest ᾱ
    # Diffusion-NPO (DPO-DPO-NPO/run_sd15.sh): Diffusion-DPO with swapped pairs
    n_pairs_per_class: int = 512  # pairs of base samples rated by the Bradley-Terry rater
    dpo_beta: float = 1000.0  # run_sd15.sh --beta_dpo=500 without the 0.5: 1000 in the official DPO code's scale
    dpo_steps: int = 400  # run_sd15.sh 5000 steps at batch 64; the toy's pair arms (Part A) use 400
    dpo_lr: float = 1e-3  # the toy's pair-loss learning rate (Part A); run_sd15.sh 5e-6 for LoRA rank 8
    dpo_batch_size: int = 256
    # evaluation
    weights: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0, 3.0)  # guidance weights w; the best is chosen on split="val"
    n_eval_per_class: int = 256
    samples_to_keep: int = 128  # per arm (test split, at the arm's best w), for the figure
    extra: dict = field(default_factory=dict)  # free slot for exploratory overrides (unused by default)

    @classmethod
    def smoke(cls) -> SelfNPOConfig:
        return cls(n_data_per_class=200, steps=40, n_pairs_per_class=64, dpo_steps=20, weights=(1.0, 2.0),
                   n_eval_per_class=32, samples_to_keep=16)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# ε <-> x_0 and the Self-NPO target


def x0_from_eps(x_t: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """x̂_0 = (x_t - √(1-ᾱ) ε̂)/√ᾱ; x_t, eps (N, d), alpha_bar (N, 1) or a scalar."""
    return (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


def eps_from_x0(x_t: Tensor, x0: Tensor, alpha_bar: Tensor) -> Tensor:
    """ε̂ = (x_t - √ᾱ x̂_0)/√(1-ᾱ), the inverse of :func:`x0_from_eps`."""
    return (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()


def huber_loss(pred: Tensor, target: Tensor, c: float = 0.001) -> Tensor:
    """Pseudo-Huber √((pred - target)² + c²) - c per element, averaged over dimensions: (N, d) -> (N,)
    (Self-NPO/train.py l.1141-1148, which also averages over the batch)."""
    if not c > 0:
        raise ValueError(f"huber_c must be > 0, got {c}")
    return (((pred - target) ** 2 + c**2).sqrt() - c).mean(-1)


def solver_grid(schedule: NoiseSchedule, points: int = 25, min_alpha_bar: float = SD15_MIN_ALPHA_BAR) -> Tensor:
    """The DDIM grid of Self-NPO's solver, ascending, (n,) long: (1..points)·stride - 1 with stride = T // points
    (train.py's DDIMSolver), kept where ᾱ_t ≥ ``min_alpha_bar`` (the toy's departure, module docstring)."""
    stride = schedule.T // points
    if stride < 1:
        raise ValueError(f"points must be <= T = {schedule.T}, got {points}")
    grid = torch.arange(1, points + 1) * stride - 1
    grid = grid[schedule.alpha_bar[grid] >= min_alpha_bar]
    if grid.numel() == 0:
        raise ValueError(f"no grid point has alpha_bar >= min_alpha_bar = {min_alpha_bar}")
    return grid


def last_timestep(schedule: NoiseSchedule, min_alpha_bar: float = SD15_MIN_ALPHA_BAR) -> int:
    """The largest t with ᾱ_t ≥ ``min_alpha_bar``: the top of t' (the code's 999)."""
    return int((schedule.alpha_bar >= min_alpha_bar).nonzero().max())


@torch.no_grad()
def teacher_target(
    teacher: nn.Module,
    x0: Tensor,  # (N, d) data
    schedule: NoiseSchedule,
    grid: Tensor,  # (n,) long, the solver grid (ascending)
    solver_steps: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    """Steps 1-3 of the module docstring: noise x_0 to a random grid point t_s, run up to ``solver_steps`` DDIM steps
    of the teacher's unconditional prediction down the grid, and return (x_{t_e} (N, d), t_e (N,) long, the teacher's
    x̂_0 at t_e (N, d)). As in train.py, the step from the lowest grid point lands at t = 0 (ᾱ_0, not the clean data)
    and a sample stops moving once its grid index falls below 0 (its x̂_0 is then re-evaluated at t = 0)."""
    n, dev = x0.shape[0], x0.device
    stride = int(grid[1] - grid[0]) if grid.numel() > 1 else int(grid[0]) + 1
    ab = schedule.alpha_bar.to(x0)
    ab_prev_grid = torch.cat([ab[:1], ab[grid[:-1]]])  # (n,) ᾱ of the grid point below (t = 0 below the lowest)
    index = torch.randint(0, grid.numel(), (n,), generator=generator)
    t = grid[index]  # (N,) t_s
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    x = schedule.q_sample(x0, t, noise)
    active = torch.ones(n, dtype=torch.bool)
    null = null_class(teacher, n, dev)
    for i in range(solver_steps + 1):
        eps_u = teacher(x, t, null)  # w = -1: cond + w (cond - uncond) = uncond
        x0_hat = x0_from_eps(x, eps_u, ab[t][:, None])
        if i == solver_steps:
            break
        ab_to = ab_prev_grid[index][:, None]
        x = torch.where(active[:, None], ab_to.sqrt() * x0_hat + (1 - ab_to).sqrt() * eps_u, x)  # DDIM, η = 0
        index = index - 1
        active = active & (index >= 0)
        index = index.clamp(min=0)
        t = (t - stride).clamp(min=0)
    return x, t, x0_hat


def renoise(
    x_te: Tensor,  # (N, d)
    t_e: Tensor,  # (N,) long
    t_new: Tensor,  # (N,) long, > t_e
    schedule: NoiseSchedule,
    z: Tensor,  # (N, d) standard normal
) -> Tensor:
    """Forward diffusion from t_e to t' > t_e: x_{t'} = (x_{t_e}/α_{t_e} + √(nsr_{t'}² - nsr_{t_e}²) z) α_{t'}, with
    α = √ᾱ, nsr = √(1-ᾱ)/α (train.py l.1121-1124); the same as q(x_{t'} | x_{t_e})."""
    ab = schedule.alpha_bar.to(x_te)
    a_e, a_n = ab[t_e].sqrt()[:, None], ab[t_new].sqrt()[:, None]
    nsr_e, nsr_n = (1 - ab[t_e]).sqrt()[:, None] / a_e, (1 - ab[t_new]).sqrt()[:, None] / a_n
    return (x_te / a_e + (nsr_n**2 - nsr_e**2).sqrt() * z) * a_n


def self_npo_loss(
    student: nn.Module,
    teacher: nn.Module,
    x0: Tensor,  # (N, d)
    c: Tensor,  # (N,) long, the prompts (classes)
    schedule: NoiseSchedule,
    grid: Tensor,
    t_max: int,
    solver_steps: int = 5,
    huber_c: float = 0.001,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Self-NPO's per-sample loss (N,): the conditional student's x̂_0 at a re-noised t' against the unconditional
    teacher's x̂_0 at t_e (steps 1-5 of the module docstring)."""
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    x_te, t_e, target = teacher_target(teacher, x0, schedule, grid, solver_steps, gen)
    span = (t_max - t_e).clamp(min=1)  # t' ~ U{t_e+1 .. t_max} (train.py: .. 999)
    t_new = (t_e + 1 + (torch.rand(t_e.shape, generator=gen) * span).long()).clamp(max=t_max)
    x_new = renoise(x_te, t_e, t_new, schedule, torch.randn(x0.shape, generator=gen, dtype=x0.dtype))
    eps = student(x_new, t_new, c)
    x0_pred = x0_from_eps(x_new, eps, schedule.alpha_bar.to(x0)[t_new][:, None])
    return huber_loss(x0_pred, target, huber_c)


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, rate: float) -> None:
    """target ← rate · target + (1 - rate) · source, parameter by parameter (train.py ``update_ema``)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"ema rate must lie in [0, 1], got {rate}")
    for p_t, p_s in zip(target.parameters(), source.parameters()):
        p_t.mul_(rate).add_(p_s, alpha=1 - rate)


def train_self_npo(
    base: nn.Module, x: Tensor, c: Tensor, schedule: NoiseSchedule, cfg: SelfNPOConfig, seed: int = 0
) -> tuple[nn.Module, list[dict]]:
    """The Self-NPO negative: a copy of ``base`` trained by :func:`self_npo_loss` with an EMA teacher that starts as
    another copy of ``base``. Returns (the student, in eval mode: train.py saves ``unet``; one log row per step)."""
    if x.shape[0] != c.shape[0]:
        raise ValueError(f"x and c must have the same length, got {x.shape[0]} and {c.shape[0]}")
    student, teacher = copy.deepcopy(base).train(), copy.deepcopy(base).eval()
    teacher.requires_grad_(False)
    grid = solver_grid(schedule, cfg.ddim_points, cfg.min_alpha_bar)
    t_max = last_timestep(schedule, cfg.min_alpha_bar)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    log = []
    for _ in range(cfg.steps):
        idx = torch.randint(0, x.shape[0], (cfg.batch_size,), generator=gen)
        loss = self_npo_loss(student, teacher, x[idx], c[idx], schedule, grid, t_max, cfg.solver_steps,
                             cfg.huber_c, gen).mean()  # fmt: skip
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(student.parameters(), cfg.max_grad_norm)
        opt.step()
        ema_update(teacher, student, cfg.ema)
        log.append({"loss": float(loss.detach())})
    return student.eval(), log


# ----------------------------------------------------------------------------------------------------------------------
# Diffusion-NPO: Diffusion-DPO on swapped pairs


def swapped_pairs(world, base: nn.Module, schedule: NoiseSchedule, n_per_class: int, seed: int):
    """Two base samples (w = 1) per class label, rated by the world's Bradley-Terry rater, winner and loser swapped
    (DPO-DPO-NPO/train_sd15.py l.687-688): returns (x_w = the rater's loser, x_l = its winner, c)."""
    gen = torch.Generator().manual_seed(seed)
    c = torch.arange(world.n_classes).repeat_interleave(n_per_class)
    x = ddpm_sample(base, c.repeat(2), schedule, 2 * len(c), gen)  # (2N, d)
    pairs = world.preference_pairs(torch.stack([x[: len(c)], x[len(c) :]], 1), c, gen)
    return pairs.x_l, pairs.x_w, pairs.c


def train_diffusion_npo(world, base: nn.Module, schedule: NoiseSchedule, cfg: SelfNPOConfig, seed: int = 0):
    """The Diffusion-NPO negative: Diffusion-DPO (β in the official code's scale) on :func:`swapped_pairs`, starting
    from the base with the base as reference. Returns (negative, log)."""
    x_w, x_l, c = swapped_pairs(world, base, schedule, cfg.n_pairs_per_class, seed)
    return train_pairs(base, x_w, x_l, c, diffusion_dpo_loss, schedule, cfg.dpo_steps, cfg.dpo_batch_size,
                       cfg.dpo_lr, seed, beta=cfg.dpo_beta)  # fmt: skip


def compute_cost(cfg: SelfNPOConfig, n_classes: int, T: int) -> dict[str, float]:
    """Network evaluations of one sample (forward = 1, backward = 2, so a training forward+backward = 3) for each
    negative. Self-NPO per sample and step: (solver_steps + 1) teacher forwards + 3 for the student. Diffusion-NPO per
    pair and step: 3 + 3 policy (both sides) + 2 reference forwards; its data: two ancestral base samples of T
    forwards per pair (the rater's labels cost no network evaluation here, a human's time in the paper)."""
    self_npo = cfg.steps * cfg.batch_size * (cfg.solver_steps + 1 + 3)
    dpo_train = cfg.dpo_steps * cfg.dpo_batch_size * (3 + 3 + 2)
    dpo_data = 2 * cfg.n_pairs_per_class * n_classes * T
    return {"self_npo": float(self_npo), "diffusion_npo_train": float(dpo_train), "diffusion_npo_data": float(dpo_data),
            "ratio_with_data": self_npo / (dpo_train + dpo_data), "ratio_train_only": self_npo / dpo_train}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# Quality and the run


def quality_floor(world) -> float:
    """log q(x | c) of a point 4σ from a plain mode (that mode's term alone): the floor of :func:`quality`."""
    s, p = world.mode_std, world.style_frequency
    return math.log1p(-p) - 0.5 * 4**2 - math.log(2 * math.pi * s**2)


def quality(world, x: Tensor, c: Tensor) -> Tensor:
    """The quality of each sample (N,): the exact data log-density log q(x | c), clipped from below at
    :func:`quality_floor`, so that a few far-off samples do not dominate a mean (anything ≥ 4σ off counts as junk)."""
    return world.log_density(x, c).clamp(min=quality_floor(world))


def styled_indicator(world, x: Tensor, c: Tensor) -> np.ndarray:
    """1.0 where a sample's nearest of the 2K modes is its own class's styled mode, else 0.0, (N,): its mean is the
    styled share of :meth:`PointsWorld.mode_shares` (the data's is p = 0.2); a drop means guidance lost the rare mode."""
    m = world.modes().to(x.dtype).reshape(-1, 2)  # (2K, 2): c0 plain, c0 styled, c1 plain, ...
    nearest = torch.cdist(x, m).argmin(1)
    return (nearest == 2 * c + 1).double().numpy()


def run_selfnpo(world, base: nn.Module, schedule: NoiseSchedule, seed: int, cfg: SelfNPOConfig,
                progress: bool = False) -> dict:  # fmt: skip
    """Train both negatives from ``base`` (seed draws the Self-NPO data, the pairs, the batch order and the evaluation
    noise), sweep w for plain CFG and the two negatives, pick each arm's best w on split="val" by mean quality, and
    return per-unit quality and oracle reward on split="test" at that w."""
    x, c = world.sample_data(cfg.n_data_per_class, rng=1000 + seed)
    neg_self, log_self = train_self_npo(base, x, c, schedule, cfg, seed)
    neg_dpo, log_dpo = train_diffusion_npo(world, base, schedule, cfg, seed)
    negatives = {"cfg": None, "self_npo": neg_self, "diffusion_npo": neg_dpo}
    K, n = world.n_classes, cfg.n_eval_per_class
    curves: dict = {"w": list(cfg.weights), "self_npo_loss": [r["loss"] for r in log_self],
                    "dpo_loss": [r["loss"] for r in log_dpo]}  # fmt: skip
    units, record, samples = {}, {}, {}
    for arm, neg in negatives.items():
        val, test, test_samples, reward = [], [], [], []
        for w in cfg.weights:
            xv, cv = eval_samples(base, schedule, K, n, seed, w=w, negative=neg, split="val")
            xt, ct = eval_samples(base, schedule, K, n, seed, w=w, negative=neg, split="test")
            val.append(float(quality(world, xv, cv).mean()))
            test.append(quality(world, xt, ct).numpy())
            test_samples.append((xt, ct))
            reward.append(float(world.oracle_reward(xt, ct).mean()))
        best = int(np.argmax(val))
        xt, ct = test_samples[best]
        units[arm] = test[best]
        units[f"{arm}_reward"] = world.oracle_reward(xt, ct).numpy()
        units[f"{arm}_styled"] = styled_indicator(world, xt, ct)
        curves[f"{arm}_val"] = val
        curves[f"{arm}_test"] = [float(q.mean()) for q in test]
        curves[f"{arm}_reward"] = reward
        keep = torch.cat([torch.arange(k * n, k * n + min(n, cfg.samples_to_keep // K)) for k in range(K)])
        samples[arm] = {"x": xt[keep].tolist(), "c": ct[keep].tolist()}
        record[arm] = {"best_w": cfg.weights[best], "quality": round(float(units[arm].mean()), 4),
                       "oracle_reward": round(float(units[f"{arm}_reward"].mean()), 4),
                       **{k: round(v, 4) for k, v in world.mode_shares(xt, ct).items()}}  # fmt: skip
    cost = compute_cost(cfg, K, schedule.T)
    record["compute"] = {k: round(v, 4) if v < 1e3 else v for k, v in cost.items()}
    x1, c1 = eval_samples(base, schedule, K, n, seed, w=1.0, split="test")
    units["w1"], units["w1_reward"] = quality(world, x1, c1).numpy(), world.oracle_reward(x1, c1).numpy()
    units["w1_styled"] = styled_indicator(world, x1, c1)
    # the negatives on their own (conditional, w = 1): what each learned to generate
    for arm in ("self_npo", "diffusion_npo"):
        xn, cn = eval_samples(negatives[arm], schedule, K, n, seed, w=1.0, split="test")
        units[f"{arm}_neg"], units[f"{arm}_neg_reward"] = (
            quality(world, xn, cn).numpy(),
            world.oracle_reward(xn, cn).numpy(),
        )
        record[arm]["negative_alone"] = {
            "quality": round(float(units[f"{arm}_neg"].mean()), 4),
            "oracle_reward": round(float(units[f"{arm}_neg_reward"].mean()), 4),
        }
    return {"units": units, "curves": curves, "samples": samples, "record": record}

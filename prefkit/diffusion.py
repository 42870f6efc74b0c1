"""A small class-conditional diffusion model for points in R^d: schedule, ε-network, samplers, inversion.

The world of notebook 13 is 2-D: data x ∈ R^2, classes play the part of prompts. Everything follows DDPM (Ho, Jain,
Abbeel 2020, arXiv:2006.11239) with the ε-parameterisation, DDIM (Song, Meng, Ermon 2020, arXiv:2010.02502) for
deterministic sampling and inversion, classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598) through label
dropout, and ReNoise (Garibi et al. 2024, arXiv:2403.14602) for more exact inversion.

Conventions: timesteps are 0-based integers t ∈ {0, ..., T-1}; x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε with ᾱ_t = Π_{s≤t} α_s,
α_t = 1 - β_t, so t = 0 is already one noising step (Ho et al.'s t = 1). Classes are integers 0..C-1 and the index C
is the null class ∅ of the unconditional branch. A "model" is any ``nn.Module`` called as ``model(x_t, t, c)`` with
attributes ``d`` (the data dimension) and ``null`` (the index of ∅), such as :class:`EpsMLP`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

Tensor = torch.Tensor


# ----------------------------------------------------------------------------------------------------------------------
# Noise schedule


class NoiseSchedule:
    """DDPM variances β_t, t = 0..T-1, and the quantities derived from them (all float64 on the CPU, cast on use).

    ``kind="linear"``: β linear from 1e-4 to 0.02 at T = 1000 (Ho et al. 2020, Sec. 4), both ends scaled by 1000/T so
    that a short chain (the toy uses T = 50) still ends near pure noise (as improved DDPM's ``linear`` schedule does).
    ``kind="cosine"``: ᾱ_t = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2), s = 0.008, β clipped at 0.999 (Nichol &
    Dhariwal 2021, arXiv:2102.09672, Eq. 17).
    """

    def __init__(self, T: int = 50, kind: str = "linear") -> None:
        if T < 2:
            raise ValueError(f"T must be >= 2, got {T}")
        if kind == "linear":
            scale = 1000.0 / T
            betas = torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64)
        elif kind == "cosine":
            s = 0.008
            steps = torch.arange(T + 1, dtype=torch.float64) / T
            f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        else:
            raise ValueError(f"kind must be 'linear' or 'cosine', got {kind!r}")
        self.T, self.kind = T, kind
        self.betas = betas  # (T,) β_t
        self.alphas = 1.0 - betas  # (T,) α_t
        self.alpha_bar = torch.cumprod(self.alphas, 0)  # (T,) ᾱ_t
        self.sigma = torch.sqrt(1.0 - self.alpha_bar)  # (T,) σ_t = √(1 - ᾱ_t), the std of the noise in x_t
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        # β̃_t = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t), the variance of q(x_{t-1} | x_t, x_0) (Ho et al. Eq. 7); 0 at t = 0
        self.posterior_var = betas * (1.0 - alpha_bar_prev) / (1.0 - self.alpha_bar)

    def at(self, values: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """values[t] as a column (N, 1) in ``like``'s dtype and device."""
        return values.to(like.device)[t].to(like.dtype)[:, None]

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε (Ho et al. Eq. 4). x0, noise (N, d); t (N,) long."""
        return self.at(self.alpha_bar, t, x0).sqrt() * x0 + self.at(self.sigma, t, x0) * noise


def _as_index(v: int | Tensor, n: int, device: torch.device, name: str) -> Tensor:
    """An int or a (N,) tensor -> a (N,) long tensor."""
    if isinstance(v, int):
        return torch.full((n,), v, dtype=torch.long, device=device)
    if v.dim() == 0:
        return v.to(device=device, dtype=torch.long).expand(n)
    if v.shape != (n,):
        raise ValueError(f"{name} must be an int or have shape ({n},), got {tuple(v.shape)}")
    return v.to(device=device, dtype=torch.long)


# ----------------------------------------------------------------------------------------------------------------------
# The ε-network and guidance


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017; as in DDPM's U-Net): (N,) -> (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]  # (N, half)
    return torch.cat([torch.cos(args), torch.sin(args)], -1)  # (N, 2 half)


class EpsMLP(nn.Module):
    """ε_θ(x_t, t, c): an MLP on [x_t, sinusoidal time embedding, class embedding] -> ε̂ ∈ R^d.

    The class embedding has C + 1 rows; row C (``self.null``) is the null class ∅ that label dropout trains, so one
    network gives both branches of classifier-free guidance.
    """

    def __init__(
        self, n_classes: int, d: int = 2, hidden: int = 128, n_layers: int = 3, time_dim: int = 32, class_dim: int = 16
    ) -> None:
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        self.n_classes, self.d, self.time_dim = n_classes, d, time_dim
        self.null = n_classes
        self.class_emb = nn.Embedding(n_classes + 1, class_dim)
        layers: list[nn.Module] = []
        width = d + time_dim + class_dim
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, d))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor, c: Tensor) -> Tensor:
        # x (N, d), t (N,) long, c (N,) long in 0..C (C = ∅)
        h = torch.cat([x, timestep_embedding(t, self.time_dim).to(x.dtype), self.class_emb(c).to(x.dtype)], -1)
        return self.net(h)  # (N, d)


def null_class(model: nn.Module, n: int, device: torch.device) -> Tensor:
    """(N,) tensor of the model's null-class index ∅."""
    return torch.full((n,), model.null, dtype=torch.long, device=device)


def guided_eps(
    model: nn.Module,
    x: Tensor,  # (N, d)
    t: int | Tensor,  # int or (N,)
    c: int | Tensor,  # int or (N,)
    w: float = 1.0,
    negative: nn.Module | None = None,
) -> Tensor:
    """Classifier-free guidance: ε̂ = ε_u + w (ε_θ(x_t, t, c) - ε_u) (Ho & Salimans 2022, Eq. 6 written with w here
    for their 1 + w), so w = 1 is the conditional model and w = 0 the unconditional one.

    ε_u is ε_θ(x_t, t, ∅), or, with ``negative``, the negative model's ε_neg(x_t, t, ∅): Self-NPO (Wang et al. 2025,
    arXiv:2505.11777) replaces the unconditional branch by a model trained towards what should be avoided, fed the
    null prompt as the official double-UNet pipeline does. At w = 1 the conditional prediction is returned as is.
    """
    n = x.shape[0]
    t = _as_index(t, n, x.device, "t")
    c = _as_index(c, n, x.device, "c")
    eps_c = model(x, t, c)  # (N, d)
    if w == 1.0:
        return eps_c
    uncond = negative if negative is not None else model
    eps_u = uncond(x, t, null_class(uncond, n, x.device))
    return eps_u + w * (eps_c - eps_u)


# ----------------------------------------------------------------------------------------------------------------------
# Training


def denoising_loss(
    model: nn.Module,
    x0: Tensor,  # (N, d)
    c: Tensor,  # (N,) long
    schedule: NoiseSchedule,
    p_uncond: float = 0.1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The simple DDPM loss E_{t, ε} ||ε - ε_θ(x_t, t, c)||² (Ho et al. Eq. 14), averaged over dimensions and the batch,
    with t ~ U{0..T-1} and each label replaced by ∅ with probability ``p_uncond`` (label dropout for guidance)."""
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond}")
    n, dev = x0.shape[0], x0.device
    t = torch.randint(0, schedule.T, (n,), generator=generator, device=dev)
    noise = torch.randn(x0.shape, generator=generator, device=dev, dtype=x0.dtype)
    drop = torch.rand(n, generator=generator, device=dev) < p_uncond
    c = torch.where(drop, null_class(model, n, dev), c)
    return (model(schedule.q_sample(x0, t, noise), t, c) - noise).pow(2).mean()


def train_denoiser(
    model: nn.Module,
    x: Tensor,  # (N, d) the training points
    c: Tensor,  # (N,) their classes
    schedule: NoiseSchedule,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-3,
    p_uncond: float = 0.1,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Adam on :func:`denoising_loss` over random mini-batches of (x, c); returns the loss of each step."""
    if x.shape[0] != c.shape[0]:
        raise ValueError(f"x and c must have the same length, got {x.shape[0]} and {c.shape[0]}")
    gen = torch.Generator(device=x.device).manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="denoiser")
    history = []
    model.train()
    for _ in it:
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=gen, device=x.device)
        loss = denoising_loss(model, x[idx], c[idx], schedule, p_uncond, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    model.eval()
    return history


def pair_mse(
    model: nn.Module,
    x0_w: Tensor,  # (B, d) preferred
    x0_l: Tensor,  # (B, d) dispreferred
    c: Tensor,  # (B,) long
    t: Tensor,  # (B,) long, shared by the pair
    noise: Tensor,  # (B, d), ε shared by the pair
    schedule: NoiseSchedule,
    noise_l: Tensor | None = None,  # (B, d) a separate ε for x0_l (SmPO); None: share ``noise``
) -> tuple[Tensor, Tensor]:
    """Per-sample denoising errors m = mean_dims (ε - ε_θ(x_t, t, c))², (B,) each, for the two sides of a pair.

    As in the official Diffusion-DPO code (Wallace et al. 2024, arXiv:2311.12908; train.py l.1053-1055, l.1125), both
    sides share t and ε, and m is averaged over the data dimensions, not summed. Run it under the policy (with
    gradient) and under the reference (no gradient) with the same t and noise.
    """
    eps_l = noise if noise_l is None else noise_l
    x_tw = schedule.q_sample(x0_w, t, noise)
    x_tl = schedule.q_sample(x0_l, t, eps_l)
    m_w = (model(x_tw, t, c) - noise).pow(2).mean(-1)
    m_l = (model(x_tl, t, c) - eps_l).pow(2).mean(-1)
    return m_w, m_l


# ----------------------------------------------------------------------------------------------------------------------
# Ancestral (DDPM) sampling with per-step log-probs


def ddpm_step_mean_std(
    model: nn.Module,
    x_t: Tensor,  # (N, d)
    t: Tensor,  # (N,) long, every entry >= 1
    c: Tensor,  # (N,) long
    schedule: NoiseSchedule,
    w: float = 1.0,
    negative: nn.Module | None = None,
) -> tuple[Tensor, Tensor]:
    """Mean and std of p_θ(x_{t-1} | x_t): μ = (x_t - β_t/√(1-ᾱ_t) ε̂)/√α_t (Ho et al. Eq. 11), σ² = β̃_t (their σ² = β̃
    option). Returns (N, d) and (N, 1)."""
    eps = guided_eps(model, x_t, t, c, w, negative)
    beta = schedule.at(schedule.betas, t, x_t)
    mean = (x_t - beta / schedule.at(schedule.sigma, t, x_t) * eps) / schedule.at(schedule.alphas, t, x_t).sqrt()
    return mean, schedule.at(schedule.posterior_var, t, x_t).sqrt()


def step_logprob(
    model: nn.Module,
    x_t: Tensor,  # (N, d)
    x_prev: Tensor,  # (N, d) the sampled x_{t-1}
    t: int | Tensor,  # int or (N,), >= 1
    c: int | Tensor,  # int or (N,)
    schedule: NoiseSchedule,
    w: float = 1.0,
    negative: nn.Module | None = None,
) -> Tensor:
    """log p_θ(x_{t-1} | x_t, c) of one ancestral step, summed over dimensions, (N,); differentiable in θ (the
    per-step policy log-prob of DDPO, Black et al. 2023, arXiv:2305.13301, and of the GRPO methods).

    Only steps t >= 1 are Gaussian: the last step, from x_0 to the clean output, is the mean alone (β̃_0 = 0).
    """
    n = x_t.shape[0]
    t = _as_index(t, n, x_t.device, "t")
    if (t < 1).any():
        raise ValueError("t must be >= 1: the final step t = 0 of the sampler is deterministic and has no density")
    c = _as_index(c, n, x_t.device, "c")
    mean, std = ddpm_step_mean_std(model, x_t, t, c, schedule, w, negative)
    z = (x_prev - mean) / std
    return (-0.5 * z.pow(2) - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


class Trajectory(NamedTuple):
    xs: Tensor  # (T + 1, N, d): xs[k] is x_{T-1-k}, from x_{T-1} ~ N(0, I) to x_0, then xs[T], the clean output
    timesteps: Tensor  # (T - 1,) long: the t of each stochastic transition xs[k] -> xs[k + 1], T-1 down to 1
    logps: Tensor  # (N, T - 1): log p_θ(xs[k + 1] | xs[k]) at sampling time (no gradient)


@torch.no_grad()
def ddpm_sample(
    model: nn.Module,
    c: int | Tensor,  # int or (n,)
    schedule: NoiseSchedule,
    n: int,
    generator: torch.Generator | None = None,
    w: float = 1.0,
    return_trajectory: bool = False,
    negative: nn.Module | None = None,
    x_start: Tensor | None = None,  # (n, d) the starting noise; None: drawn from ``generator``
) -> Tensor | tuple[Tensor, Trajectory]:
    """Ancestral sampling (Ho et al. Algorithm 2): x_{T-1} ~ N(0, I), then x_{t-1} ~ N(μ_θ(x_t, t), β̃_t I) for
    t = T-1..1, and finally the mean of the t = 0 step, with no noise. Returns the samples (n, d) and, with
    ``return_trajectory``, the :class:`Trajectory` whose ``logps`` come from :func:`step_logprob`."""
    dev = next(model.parameters()).device
    d = model.d
    c = _as_index(c, n, dev, "c")
    x = torch.randn((n, d), generator=generator, device=dev) if x_start is None else x_start.clone()
    xs, logps = [x], []
    for k in range(schedule.T - 1, -1, -1):
        t = torch.full((n,), k, dtype=torch.long, device=dev)
        mean, std = ddpm_step_mean_std(model, x, t, c, schedule, w, negative)
        if k == 0:
            x = mean
        else:
            x_prev = mean + std * torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
            if return_trajectory:
                z = (x_prev - mean) / std
                logps.append((-0.5 * z.pow(2) - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1))
            x = x_prev
        xs.append(x)
    if not return_trajectory:
        return x
    steps = torch.arange(schedule.T - 1, 0, -1, device=dev)
    return x, Trajectory(torch.stack(xs), steps, torch.stack(logps, 1))


# ----------------------------------------------------------------------------------------------------------------------
# DDIM sampling and inversion


def ddim_timesteps(schedule: NoiseSchedule, steps: int, t_end: int | None = None) -> Tensor:
    """``steps`` evenly spaced timesteps from 0 to t_end (default T-1), ascending, (steps,) long."""
    t_end = schedule.T - 1 if t_end is None else t_end
    if not 1 <= steps <= t_end + 1:
        raise ValueError(f"steps must lie in [1, {t_end + 1}], got {steps}")
    if not 0 <= t_end < schedule.T:
        raise ValueError(f"t_end must lie in [0, {schedule.T - 1}], got {t_end}")
    return torch.linspace(0, t_end, steps, dtype=torch.float64).round().long()


def _ab(schedule: NoiseSchedule, t: int, like: Tensor) -> Tensor:
    """ᾱ_t as a scalar tensor; t = -1 means the clean data (ᾱ = 1)."""
    return torch.ones((), dtype=like.dtype, device=like.device) if t < 0 else schedule.alpha_bar[t].to(like)


def ddim_move(x: Tensor, eps: Tensor, ab_from: Tensor, ab_to: Tensor) -> Tensor:
    """The deterministic DDIM map from level ᾱ_from to ᾱ_to with a given ε̂ (Song et al. Eq. 12, σ = 0):
    x̂_0 = (x - √(1-ᾱ_from) ε̂)/√ᾱ_from, x' = √ᾱ_to x̂_0 + √(1-ᾱ_to) ε̂. Used in both directions."""
    x0_hat = (x - (1 - ab_from).sqrt() * eps) / ab_from.sqrt()
    return ab_to.sqrt() * x0_hat + (1 - ab_to).sqrt() * eps


@torch.no_grad()
def ddim_sample(
    model: nn.Module,
    c: int | Tensor,
    schedule: NoiseSchedule,
    n: int,
    generator: torch.Generator | None = None,
    w: float = 1.0,
    eta: float = 0.0,
    steps: int = 10,
    negative: nn.Module | None = None,
    x_start: Tensor | None = None,  # (n, d) the point at the top of the grid (t = T-1, or a ddim_invert output)
    t_end: int | None = None,  # start from this timestep instead of T-1 (for a partial inversion round trip)
) -> Tensor:
    """DDIM sampling (Song et al. 2020, Eq. 12) over ``steps`` timesteps from t_end down to 0 and then to ᾱ = 1:
    x_{prev} = √ᾱ_prev x̂_0 + √(1-ᾱ_prev-σ²) ε̂ + σ z, σ = η √((1-ᾱ_prev)/(1-ᾱ_t)) √(1-ᾱ_t/ᾱ_prev); η = 0 is the
    deterministic sampler that :func:`ddim_invert` inverts. Returns (n, d)."""
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    dev = next(model.parameters()).device
    c = _as_index(c, n, dev, "c")
    grid = ddim_timesteps(schedule, steps, t_end).tolist()
    x = torch.randn((n, model.d), generator=generator, device=dev) if x_start is None else x_start.clone()
    for i in range(len(grid) - 1, -1, -1):
        t, t_prev = grid[i], (grid[i - 1] if i > 0 else -1)
        ab_t, ab_prev = _ab(schedule, t, x), _ab(schedule, t_prev, x)
        eps = guided_eps(model, x, t, c, w, negative)
        if eta == 0.0:
            x = ddim_move(x, eps, ab_t, ab_prev)
            continue
        sigma = eta * ((1 - ab_prev) / (1 - ab_t)).sqrt() * (1 - ab_t / ab_prev).sqrt()
        x0_hat = (x - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
        z = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
        x = ab_prev.sqrt() * x0_hat + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps + sigma * z
    return x


@torch.no_grad()
def ddim_invert(
    model: nn.Module,
    x0: Tensor,  # (n, d)
    c: int | Tensor,
    schedule: NoiseSchedule,
    steps: int = 10,
    renoise_iters: int = 1,
    w: float = 1.0,
    t_end: int | None = None,
) -> Tensor:
    """Deterministic DDIM inversion x_0 -> x_{t_end} (default T-1) over the grid of :func:`ddim_sample`, with ReNoise.

    Each step from level t_cur to t_next solves x_next = DDIM(x_cur, ε_θ(x_next, t_next)), the exact inverse of the
    sampler's step, whose ε is evaluated at the unknown endpoint. Plain inversion (``renoise_iters=0``) uses
    ε_θ(x_cur, t_next) instead. ReNoise (Garibi et al. 2024, Algorithm 1) re-evaluates ε at the current estimate
    ``renoise_iters`` times, x^(k) = DDIM(x_cur, ε^(k-1)), ε^(k) = ε_θ(x^(k), t_next), and takes the step with the
    average of all the ε^(0..K); one iteration with that average is what SmPO's official code runs (Lu et al. 2025,
    arXiv:2506.02698; train.py l.967-1027, with the current policy). Returns (n, d).
    """
    if renoise_iters < 0:
        raise ValueError(f"renoise_iters must be >= 0, got {renoise_iters}")
    n = x0.shape[0]
    c = _as_index(c, n, x0.device, "c")
    grid = ddim_timesteps(schedule, steps, t_end).tolist()
    x = x0.clone()
    for i, t_next in enumerate(grid):
        t_cur = grid[i - 1] if i > 0 else -1
        ab_cur, ab_next = _ab(schedule, t_cur, x), _ab(schedule, t_next, x)
        eps_sum = guided_eps(model, x, t_next, c, w)
        eps_k = eps_sum
        for _ in range(renoise_iters):
            x_k = ddim_move(x, eps_k, ab_cur, ab_next)
            eps_k = guided_eps(model, x_k, t_next, c, w)
            eps_sum = eps_sum + eps_k
        x = ddim_move(x, eps_sum / (renoise_iters + 1), ab_cur, ab_next)
    return x

"""Preference losses for diffusion models: pure functions of per-sample denoising errors (and, for GRPO, of per-step
sampler log-probs).

A diffusion model has no tractable log-likelihood; Diffusion-DPO and its descendants put the per-sample denoising error
in its place, m = mean_dims (ε - ε_θ(x_t, t, c))², computed at one random t with one noise draw ε that the two sides of
a pair share (``prefkit.diffusion.pair_mse``). A lower error means a higher likelihood, so the implicit reward of a
sample is -0.5 β (m_θ - m_ref) in the official code's scale (mean over dimensions, factor 0.5). Every loss returns
per-example losses (the caller reduces) and detached diagnostics. Only torch is imported, so any one function can be
copied into another project as it stands.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


@dataclass
class DiffusionDPOConfig:
    beta: float = 5000.0  # official train.py default and both launchers (SDXL); the SD1.5 runs use 2000


@dataclass
class MaPOConfig:
    beta: float = 0.1  # mapo-t2i/mapo args.py `beta_mapo`
    snr: float = 0.5  # args.py `snr_value`, the constant s inside g(u) = s u / (exp(s u) - 1)
    T: int = 1000  # the code's `num_train_timesteps`, which multiplies the margin (keep 1000 in a T = 50 toy)


@dataclass
class SmPOConfig:
    beta: float = 5000.0  # JaydenLyh/SmPO examples: SDXL 5000 (SD1.5 2000)
    scale: float = 10.0  # the undocumented ×10 in train.py l.1061-1064: inside = -0.5 β (2α - 1) 10 (Δ_θ - Δ_ref)


@dataclass
class RankedDiffusionDPOConfig:
    beta: float = 5000.0  # RankDPO (Karthik et al. 2024) trains SDXL with the Diffusion-DPO scale
    discount: bool = True  # True: RankDPO's DCG-weighted pairs; False: the gain-weighted DPO ablation of its Table


@dataclass
class PrefGRPOConfig:
    clip: float = 1e-4  # CodeGoat24/Pref-GRPO finetune_prefgrpo_flux.sh `clip_range` (PPO's usual value is 0.2)
    adv_clip: float = 5.0  # the same script's `adv_clip_max`
    normalize_std: bool = True  # Pref-GRPO still divides the group's win rates by their std (train_flux_pref_grpo.py)


def _check_same_shape(**tensors: Tensor) -> None:
    (first_name, first), *rest = tensors.items()
    for name, t in rest:
        if t.shape != first.shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)} but {first_name} has {tuple(first.shape)}")


def diffusion_dpo_loss(
    model_mse_w: Tensor,  # (B,) m_θ(x_w): per-sample MSE of the policy on the preferred sample, mean over dims
    model_mse_l: Tensor,  # (B,) m_θ(x_l)
    ref_mse_w: Tensor,  # (B,) m_ref(x_w), same t and ε
    ref_mse_l: Tensor,  # (B,) m_ref(x_l)
    beta: float = 5000.0,
) -> tuple[Tensor, Tensor]:
    """Diffusion-DPO (Wallace et al. 2024, "Diffusion Model Alignment Using Direct Preference Optimization",
    arXiv:2311.12908; the final objective of Sec. 4, with ω(λ_t) constant and T absorbed into β; we could not confirm
    its equation number), in the official code's scale (SalesforceAIResearch/DiffusionDPO train.py l.1142-1145):

        L = -log σ(-0.5 β [(m_θ(x_w) - m_θ(x_l)) - (m_ref(x_w) - m_ref(x_l))]).

    Returns the losses (B,) and the implicit reward margin -0.5 β [...] (B,), detached. At policy = reference the
    margin is 0 and the loss ln 2.
    """
    _check_same_shape(model_mse_w=model_mse_w, model_mse_l=model_mse_l, ref_mse_w=ref_mse_w, ref_mse_l=ref_mse_l)
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    inside = -0.5 * beta * ((model_mse_w - model_mse_l) - (ref_mse_w - ref_mse_l))  # train.py l.1142-1145
    return -F.logsigmoid(inside), inside.detach()


def mapo_link(u: Tensor) -> Tensor:
    """g(u) = u / (exp(u) - 1), extended by g(0) = 1: decreasing on u >= 0, bounded in (0, 1].

    Written as u e^{-u} / (1 - e^{-u}) so that large u cannot overflow, and as its series 1 - u/2 + u²/12 near 0,
    where the quotient is 0/0 (torch.where evaluates both branches, so the quotient's input is kept off 0)."""
    small = u.abs() < 1e-3
    u_safe = torch.where(small, torch.ones_like(u), u)
    quotient = u_safe * torch.exp(-u_safe) / -torch.expm1(-u_safe)
    return torch.where(small, 1 - u / 2 + u * u / 12, quotient)


def mapo_loss(
    mse_w: Tensor,  # (B,) m_θ(x_w), per-sample MSE of the policy, mean over dims
    mse_l: Tensor,  # (B,) m_θ(x_l), same t and ε
    beta: float = 0.1,
    snr: float = 0.5,
    T: int = 1000,
) -> tuple[Tensor, Tensor]:
    """MaPO (Hong, Paul et al. 2024, "Margin-aware Preference Optimization for Aligning Diffusion Models without
    Reference", arXiv:2406.06424), as the official code computes it (mapo-t2i/mapo utils.py l.286-301):

        L = m_w - β log σ(T [g(s m_w) - g(s m_l)]),  g(u) = u / (exp(u) - 1),

    an SFT term on the preferred sample plus a reference-free margin; g is decreasing, so a lower m_w (or a higher
    m_l) raises the margin. No reference model. Returns the losses (B,) and the margin T [g(s m_w) - g(s m_l)] (B,),
    detached.
    """
    _check_same_shape(mse_w=mse_w, mse_l=mse_l)
    if (mse_w < 0).any() or (mse_l < 0).any():
        raise ValueError("mse_w and mse_l are squared errors and must be >= 0")
    if beta < 0 or snr <= 0 or T <= 0:
        raise ValueError(f"need beta >= 0, snr > 0 and T > 0, got beta={beta}, snr={snr}, T={T}")
    margin = T * (mapo_link(snr * mse_w) - mapo_link(snr * mse_l))  # (B,) utils.py l.286-301
    return mse_w - beta * F.logsigmoid(margin), margin.detach()


def smpo_alpha(
    score_w: Tensor,  # (B,) reward-model score of the sample labelled preferred
    score_l: Tensor,  # (B,)
    low: float,
    high: float,
) -> Tensor:
    """SmPO's smoothed label α = P(w > l) (official code, JaydenLyh/SmPO train.py l.739-746): scores min-max normalised
    with the reward model's typical range, s̃ = (s - low) / (high - low) (PickScore: 0.1154 and 0.2820), then
    α = e^{s̃_w} / (e^{s̃_w} + e^{s̃_l}) = σ(s̃_w - s̃_l). The official code first orders each pair by the reward model,
    so α >= 1/2; do that before calling if you follow it. Returns (B,)."""
    _check_same_shape(score_w=score_w, score_l=score_l)
    if high <= low:
        raise ValueError(f"high must exceed low, got low={low}, high={high}")
    return torch.sigmoid((score_w - score_l) / (high - low))


def smpo_loss(
    model_mse_w: Tensor,  # (B,)
    model_mse_l: Tensor,  # (B,)
    ref_mse_w: Tensor,  # (B,)
    ref_mse_l: Tensor,  # (B,)
    alpha: Tensor | float,  # (B,) or scalar: smoothed label α = P(x_w > x_l), in [0, 1]
    beta: float = 5000.0,
    scale: float = 10.0,
) -> tuple[Tensor, Tensor]:
    """SmPO-Diffusion (Lu et al. 2025, "Smoothed Preference Optimization via ReNoise Inversion for Aligning Diffusion
    Models with Varied Human Preferences", arXiv:2506.02698; Eq. 9 as a review quotes it, with γ = 1), in the official
    code's scale (JaydenLyh/SmPO train.py l.1061-1064):

        L = -log σ(-0.5 β (2α - 1) k [(m_θ(x_w) - m_θ(x_l)) - (m_ref(x_w) - m_ref(x_l))]),  k = ``scale`` = 10.

    Diffusion-DPO with a per-pair β proportional to the label's confidence: α = 1 is Diffusion-DPO at β k, α = 1/2
    gives ln 2 with no gradient, α < 1/2 pushes the other way. The errors may come from forward noising or from ReNoise
    inversion (``prefkit.diffusion.ddim_invert``); that choice is the caller's. Returns the losses (B,) and the scaled
    margin (B,), detached.
    """
    _check_same_shape(model_mse_w=model_mse_w, model_mse_l=model_mse_l, ref_mse_w=ref_mse_w, ref_mse_l=ref_mse_l)
    alpha = torch.as_tensor(alpha, dtype=model_mse_w.dtype, device=model_mse_w.device)
    if alpha.dim() > 0 and alpha.shape != model_mse_w.shape:
        raise ValueError(f"alpha must be a scalar or have shape {tuple(model_mse_w.shape)}, got {tuple(alpha.shape)}")
    if (alpha < 0).any() or (alpha > 1).any():
        raise ValueError("alpha is a probability P(x_w > x_l) and must lie in [0, 1]")
    if beta <= 0 or scale <= 0:
        raise ValueError(f"beta and scale must be > 0, got beta={beta}, scale={scale}")
    delta = (model_mse_w - model_mse_l) - (ref_mse_w - ref_mse_l)  # (B,)
    inside = -0.5 * beta * (2 * alpha - 1) * scale * delta  # Eq. 9; train.py l.1061-1064
    return -F.logsigmoid(inside), inside.detach()


def _ranks(rewards: Tensor, scores: Tensor, tie_tol: float) -> Tensor:
    """τ_i, the 1-based rank of item i sorted by the model's implicit rewards (descending), detached, (B, K).

    Rewards within ``tie_tol`` tie (at step 0 all are 0); ties are broken by the label score φ (the better item first),
    and items tied in both share their mean rank, so τ never depends on the order the list is written in."""
    r = rewards.detach()
    gap = r[:, None, :] - r[:, :, None]  # [b, i, j] = r_j - r_i
    tied = gap.abs() <= tie_tol
    above = (gap > tie_tol) | (tied & (scores[:, None, :] > scores[:, :, None]))
    same = tied & (scores[:, None, :] == scores[:, :, None])  # includes j = i
    return (1.0 + above.sum(-1) + 0.5 * (same.sum(-1) - 1)).to(r.dtype)


def ranked_diffusion_dpo_loss(
    model_mse: Tensor,  # (B, K) m_θ(x_i) for the K samples of a prompt, each at its own (or a shared) t and ε
    ref_mse: Tensor,  # (B, K) m_ref(x_i), same t and ε as model_mse
    scores: Tensor,  # (B, K) label φ(x_i), higher is better (RankDPO: pairwise win fraction over reward models)
    beta: float = 5000.0,
    discount: bool = True,
    tie_tol: float = 1e-6,
) -> tuple[Tensor, Tensor]:
    """Ranked Diffusion-DPO (RankDPO; Karthik et al. 2024, "Scalable Ranked Preference Optimization for Text-to-Image
    Generation", arXiv:2410.18013, Algorithm 2; the equations' text was not available to us), a LiPO-λ-weighted sum
    of Diffusion-DPO pair losses:

        L = -Σ_{φ_i > φ_j} Δ_ij log σ(r_i - r_j),  r_i = -0.5 β (m_θ(x_i) - m_ref(x_i)),
        Δ_ij = |G_i - G_j| · |1/D(τ_i) - 1/D(τ_j)|,  G = 2^φ,  D(τ) = ln(1 + τ),

    with τ the rank under the current implicit rewards r (no gradient through Δ). This is the weight implemented:
    the gain 2^φ as the paper states it (LiPO's 2^φ - 1 gives the same differences), the LiPO discount form
    |1/D(τ_i) - 1/D(τ_j)| (the OCR'd algorithm lost the reciprocal), natural log. ``discount=False`` drops the
    discount factor (Δ_ij = |G_i - G_j|, the paper's gain-weighted DPO ablation). At K = 2 the loss is Diffusion-DPO
    times |2^φ_1 - 2^φ_2| (1/ln 2 - 1/ln 3). Returns the losses (B,) and the implicit rewards r (B, K), detached.
    """
    _check_same_shape(model_mse=model_mse, ref_mse=ref_mse, scores=scores)
    if model_mse.dim() != 2 or model_mse.shape[1] < 2:
        raise ValueError(f"model_mse must have shape (B, K) with K >= 2, got {tuple(model_mse.shape)}")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    scores = scores.to(model_mse.dtype)
    r = -0.5 * beta * (model_mse - ref_mse)  # (B, K) implicit rewards
    gain = 2.0**scores  # (B, K) G = 2^φ
    delta = (gain[:, :, None] - gain[:, None, :]).abs()  # (B, K, K)
    if discount:
        inv_d = 1.0 / torch.log1p(_ranks(r, scores, tie_tol))  # (B, K) 1/D(τ)
        delta = delta * (inv_d[:, :, None] - inv_d[:, None, :]).abs()
    pairs = (scores[:, :, None] > scores[:, None, :]).to(r.dtype)  # (B, K, K) i preferred to j
    pair_losses = -F.logsigmoid(r[:, :, None] - r[:, None, :])  # (B, K, K)
    losses = (pairs * delta.detach() * pair_losses).sum((1, 2))  # Algorithm 2
    return losses, r.detach()


def grpo_advantages(
    rewards: Tensor,  # (B, G) rewards of the G samples drawn for each of B prompts
    normalize_std: bool = True,
    eps: float = 1e-8,
) -> Tensor:
    """Group-relative advantages (GRPO, Shao et al. 2024, arXiv:2402.03300, Sec. 4.1.2): A_i = (r_i - mean(r)) /
    (std(r) + eps) within each group, with torch's unbiased std as Pref-GRPO's code uses (Wang et al. 2025,
    arXiv:2508.20751; train_flux_pref_grpo.py). ``normalize_std=False`` keeps only the mean (Dr. GRPO-style), the
    control for the "illusory advantage" that std normalisation gives tiny reward gaps. Returns (B, G)."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must have shape (B, G) with G >= 2, got {tuple(rewards.shape)}")
    centred = rewards - rewards.mean(-1, keepdim=True)
    if not normalize_std:
        return centred
    return centred / (rewards.std(-1, keepdim=True) + eps)


def grpo_step_loss(
    logp_new: Tensor,  # (B, G) or (B, G, S): log p_θ(x_{t-1} | x_t, c) of the sampled transitions, with gradient
    logp_old: Tensor,  # same shape: the same log-probs under the sampling policy, no gradient
    advantages: Tensor,  # (B, G), one per trajectory, shared by its steps
    clip: float = 0.2,
    adv_clip: float | None = None,
) -> tuple[Tensor, Tensor]:
    """The clipped surrogate of PPO (Schulman et al. 2017, arXiv:1707.06347, Eq. 7) at each denoising step, as
    DanceGRPO / Flow-GRPO and Pref-GRPO train diffusion samplers:

        L = max(-A ρ, -A clip(ρ, 1 - ε, 1 + ε)),  ρ = exp(log p_θ - log p_old),

    with A optionally clipped to ±``adv_clip`` first (Pref-GRPO: 5). No KL term (Pref-GRPO's β = 0). Returns the
    losses and ρ, detached, both shaped like logp_new (the caller averages over steps and samples)."""
    _check_same_shape(logp_new=logp_new, logp_old=logp_old)
    if advantages.shape != logp_new.shape[: advantages.dim()] or logp_new.dim() - advantages.dim() not in (0, 1):
        raise ValueError(
            f"advantages must have shape {tuple(logp_new.shape[:2])} to match logp_new {tuple(logp_new.shape)}, "
            f"got {tuple(advantages.shape)}"
        )
    if clip <= 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    a = advantages if adv_clip is None else advantages.clamp(-adv_clip, adv_clip)
    if logp_new.dim() > a.dim():
        a = a[..., None]  # one advantage for every step of a trajectory
    ratio = torch.exp(logp_new - logp_old.detach())
    losses = torch.maximum(-a * ratio, -a * ratio.clamp(1 - clip, 1 + clip))  # Eq. 7
    return losses, ratio.detach()

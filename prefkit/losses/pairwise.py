"""Pairwise preference losses: pure functions of per-sequence log-probs.

Each function takes summed response log-probs (one number per sequence, as returned by
``prefkit.logps.sequence_logps``) and returns ``(losses, chosen_rewards, rejected_rewards)``, all of shape (B,):
per-example losses (the caller reduces) and the detached implicit rewards. Notation: h = log-ratio margin
h = [log π(y_w|x) - log π_ref(y_w|x)] - [log π(y_l|x) - log π_ref(y_l|x)].

Only torch is imported, so any one function can be copied into another project as it stands.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


@dataclass
class DPOConfig:
    beta: float = 0.1  # Rafailov et al. 2023, Sec. 6: β = 0.1 for dialogue (0.5 for TL;DR)
    label_smoothing: float = 0.0  # cDPO (Mitchell 2023): assumed label-flip rate ε; 0 is plain DPO


@dataclass
class IPOConfig:
    beta: float = 0.1  # τ in Azar et al. 2023; TRL's default β = 0.1 also serves as τ


@dataclass
class HingeConfig:
    beta: float = 0.1  # SLiC-HF (Zhao et al. 2023) uses margin 1/β with β the DPO-style scale


@dataclass
class RobustDPOConfig:
    beta: float = 0.1  # as DPO
    label_smoothing: float = 0.1  # ε, the assumed flip rate (Chowdhury et al. 2024); must lie in [0, 0.5)


@dataclass
class SimPOConfig:
    beta: float = 2.0  # Meng et al. 2024, Sec. 4: β in {2.0, 2.5} for Mistral/Llama-3 Base
    gamma: float = 1.0  # target margin γ; the paper tunes γ/β in [0.3, 0.8], γ = 1.0 with β = 2.0 for Mistral-Base


@dataclass
class NormDPOConfig:
    beta: float = 5.0  # Geng et al. 2025 (Delta learning) headline config, Tülu 3's "dpo_norm"; lr 5e-8 there


@dataclass
class TriplePOConfig:
    beta: float = 0.01  # Saeidi et al.'s README/run script and TRL's TPOConfig (the official config class says 0.1)
    alpha: float = 1.0  # same sources (the official config class says 0.05)
    gamma: float = 0.0  # margin; 0 for TPO
    length_normalize: bool = False  # False: TPO (summed log-probs); True: TPO-L


@dataclass
class TriplePOLConfig(TriplePOConfig):
    beta: float = 2.0  # TPO-L on a base model in the official README's table (Mistral-Base, γ = 1.6)
    gamma: float = 0.5  # TRL's default tpo_l_gamma; the README's table ranges over 0.3-10
    length_normalize: bool = True


def _rewards(beta: float, policy_logps: Tensor, ref_logps: Tensor) -> Tensor:
    return (beta * (policy_logps - ref_logps)).detach()


def dpo_loss(
    policy_chosen_logps: Tensor,  # (B,)
    policy_rejected_logps: Tensor,  # (B,)
    ref_chosen_logps: Tensor,  # (B,)
    ref_rejected_logps: Tensor,  # (B,)
    beta: float = 0.1,
    label_smoothing: float | Tensor = 0.0,  # scalar or (B,): ε = 1 - P(y_w > y_l)
) -> tuple[Tensor, Tensor, Tensor]:
    """Direct Preference Optimization (Rafailov et al. 2023, arXiv:2305.18290), Eq. 7.

    L = -log σ(β h). With ``label_smoothing`` ε > 0 this is conservative DPO (Mitchell 2023, "A note on DPO with
    noisy preferences"): the cross-entropy against the soft label 1 - ε,
    L = -(1 - ε) log σ(β h) - ε log σ(-β h). A per-example ε (B,) trains on soft preference strengths
    (``strength`` = 1 - ε).
    """
    h = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)  # Eq. 7
    return (
        losses,
        _rewards(beta, policy_chosen_logps, ref_chosen_logps),
        _rewards(beta, policy_rejected_logps, ref_rejected_logps),
    )


def robust_dpo_loss(
    policy_chosen_logps: Tensor,  # (B,)
    policy_rejected_logps: Tensor,  # (B,)
    ref_chosen_logps: Tensor,  # (B,)
    ref_rejected_logps: Tensor,  # (B,)
    beta: float = 0.1,
    label_smoothing: float = 0.1,
) -> tuple[Tensor, Tensor, Tensor]:
    """Robust DPO (Chowdhury et al. 2024, arXiv:2403.00409), Eq. 8: an unbiased loss under label-flip rate ε.

    L = [(1 - ε) (-log σ(β h)) - ε (-log σ(-β h))] / (1 - 2ε).
    """
    if not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"robust DPO needs one label_smoothing (flip rate) in [0, 0.5), got {label_smoothing}")
    h = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    eps = label_smoothing
    losses = (-(1 - eps) * F.logsigmoid(beta * h) + eps * F.logsigmoid(-beta * h)) / (1 - 2 * eps)  # Eq. 8
    return (
        losses,
        _rewards(beta, policy_chosen_logps, ref_chosen_logps),
        _rewards(beta, policy_rejected_logps, ref_rejected_logps),
    )


def ipo_loss(
    policy_chosen_logps: Tensor,  # (B,)
    policy_rejected_logps: Tensor,  # (B,)
    ref_chosen_logps: Tensor,  # (B,)
    ref_rejected_logps: Tensor,  # (B,)
    chosen_lengths: Tensor | None = None,  # (B,) response-token counts; None keeps summed log-probs
    rejected_lengths: Tensor | None = None,  # (B,)
    beta: float = 0.1,
) -> tuple[Tensor, Tensor, Tensor]:
    """Identity Preference Optimisation (Azar et al. 2023, arXiv:2310.12036), Eq. 17, with τ = ``beta``.

    L = (h - 1/(2τ))², minimised at h = 1/(2τ). Convention: when lengths are given, each log-ratio is averaged over
    its response tokens before the difference (TRL's convention, which the IPO authors confirmed); without lengths
    h uses summed log-probs. The minimum is at h = 1/(2τ) in whichever convention is used.
    """
    chosen_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_ratio = policy_rejected_logps - ref_rejected_logps
    if chosen_lengths is not None and rejected_lengths is not None:
        chosen_ratio = chosen_ratio / chosen_lengths.clamp(min=1)
        rejected_ratio = rejected_ratio / rejected_lengths.clamp(min=1)
    h = chosen_ratio - rejected_ratio
    losses = (h - 1 / (2 * beta)) ** 2  # Eq. 17
    return (
        losses,
        _rewards(beta, policy_chosen_logps, ref_chosen_logps),
        _rewards(beta, policy_rejected_logps, ref_rejected_logps),
    )


def hinge_loss(
    policy_chosen_logps: Tensor,  # (B,)
    policy_rejected_logps: Tensor,  # (B,)
    ref_chosen_logps: Tensor,  # (B,)
    ref_rejected_logps: Tensor,  # (B,)
    beta: float = 0.1,
) -> tuple[Tensor, Tensor, Tensor]:
    """Hinge loss on the log-ratio margin, as in SLiC-HF (Zhao et al. 2023, arXiv:2305.10425), Eq. 2.

    L = max(0, 1 - β h): zero once the margin exceeds 1/β (TRL's ``hinge``).
    """
    h = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    losses = torch.relu(1 - beta * h)  # Eq. 2
    return (
        losses,
        _rewards(beta, policy_chosen_logps, ref_chosen_logps),
        _rewards(beta, policy_rejected_logps, ref_rejected_logps),
    )


def norm_dpo_loss(
    policy_chosen_logps: Tensor,  # (B,) summed log-probs
    policy_rejected_logps: Tensor,  # (B,)
    ref_chosen_logps: Tensor,  # (B,)
    ref_rejected_logps: Tensor,  # (B,)
    chosen_lengths: Tensor,  # (B,) response-token counts |y_w|
    rejected_lengths: Tensor,  # (B,) |y_l|
    beta: float = 5.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Length-normalised DPO (Tülu 3's ``dpo_norm``, Lambert et al. 2024, arXiv:2411.15124; used by Geng et al. 2025,
    arXiv:2507.06187, for Delta learning).

    DPO on per-token log-ratios: L = -log σ(β [(log π(y_w|x) - log π_ref(y_w|x)) / |y_w| - (log π(y_l|x) -
    log π_ref(y_l|x)) / |y_l|]), so long responses do not win by length; β is correspondingly larger (5).
    """
    chosen = beta * (policy_chosen_logps - ref_chosen_logps) / chosen_lengths.clamp(min=1)
    rejected = beta * (policy_rejected_logps - ref_rejected_logps) / rejected_lengths.clamp(min=1)
    return -F.logsigmoid(chosen - rejected), chosen.detach(), rejected.detach()


def simpo_loss(
    policy_chosen_logps: Tensor,  # (B,) summed log-probs
    policy_rejected_logps: Tensor,  # (B,)
    chosen_lengths: Tensor,  # (B,) response-token counts |y_w|
    rejected_lengths: Tensor,  # (B,) |y_l|
    beta: float = 2.0,
    gamma: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """SimPO (Meng et al. 2024, arXiv:2405.14734), Eq. 6: reference-free, length-normalised, with target margin γ.

    L = -log σ(β/|y_w| log π(y_w|x) - β/|y_l| log π(y_l|x) - γ). Rewards are β/|y| log π(y|x) (Eq. 4).
    """
    chosen_rewards = beta * policy_chosen_logps / chosen_lengths.clamp(min=1)  # Eq. 4
    rejected_rewards = beta * policy_rejected_logps / rejected_lengths.clamp(min=1)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards - gamma)  # Eq. 6
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


def triple_po_loss(
    policy_chosen_logps: Tensor,  # (B,)
    policy_rejected_logps: Tensor,  # (B,)
    policy_gold_logps: Tensor,  # (B,)
    chosen_lengths: Tensor,  # (B,)
    rejected_lengths: Tensor,  # (B,)
    gold_lengths: Tensor,  # (B,)
    beta: float = 0.01,
    alpha: float = 1.0,
    gamma: float = 0.0,
    length_normalize: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Triple Preference Optimization (Saeidi et al. 2024, arXiv:2405.16681): no reference model, one step from a
    base model, on triples (y_gold, y_w, y_l).

    L = -log σ(β log π(y_w|x) - β log π(y_l|x)) + α NLL(y_gold), with NLL the gold response's per-token negative
    log-likelihood. TPO-L (``length_normalize=True``) uses per-token averages and a margin γ:
    L = -log σ(β/|y_w| log π(y_w|x) - β/|y_l| log π(y_l|x) - γ) + α NLL(y_gold).
    """
    if length_normalize:
        chosen, rejected = policy_chosen_logps / chosen_lengths, policy_rejected_logps / rejected_lengths
    else:
        chosen, rejected = policy_chosen_logps, policy_rejected_logps
    preference = -F.logsigmoid(beta * (chosen - rejected) - gamma)
    nll = -policy_gold_logps / gold_lengths.clamp(min=1)
    return preference + alpha * nll, (beta * chosen).detach(), (beta * rejected).detach()

"""Losses that train a scorer (a reward or preference model) rather than a policy.

A Bradley-Terry scorer gives each response one number r and predicts P(a ≻ b) = σ(r_a - r_b); whatever r is, the
predicted preferences are transitive, so no BT scorer fits a cycle a ≻ b ≻ c ≻ a. A general preference model (GPM,
Zhang et al. 2025, arXiv:2410.02197) gives each response a vector v ∈ R^2k and scores a pair with a skew-symmetric
form, s(a ≻ b) = vₐᵀ Rᵀ v_b, R block-diagonal with k blocks [[0, -1], [1, 0]], so s(a ≻ b) = -s(b ≻ a) and
P(a ≻ b) + P(b ≻ a) = 1 hold for any embeddings; with k = 1 three vectors at 120° fit a 3-cycle.

Each loss takes scores or embeddings of the preferred (``chosen``) and the other (``rejected``) response of each pair,
an optional soft label ``strength`` = P(chosen ≻ rejected) (B,), and returns per-pair losses (B,) and the model's
P(chosen ≻ rejected) (B,), detached. Only torch is imported, so any one function can be copied as it stands.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def _cross_entropy(s: Tensor, strength: Tensor | float | None) -> Tensor:
    """-y log σ(s) - (1 - y) log σ(-s) for the soft label y = strength (1 when None)."""
    if strength is None:
        return -F.logsigmoid(s)
    return -strength * F.logsigmoid(s) - (1 - strength) * F.logsigmoid(-s)


def bt_scorer_loss(
    chosen_scores: Tensor,  # (B,)
    rejected_scores: Tensor,  # (B,)
    tau: float = 1.0,
    strength: Tensor | float | None = None,  # (B,) or scalar: P(chosen ≻ rejected); None: 1
) -> tuple[Tensor, Tensor]:
    """Bradley-Terry reward-model loss: P(a ≻ b) = σ((r_a - r_b) / τ), L = cross-entropy against ``strength``
    (-log σ((r_c - r_r) / τ) for hard labels; the GPM code's ``PairWiseLoss`` with its τ)."""
    s = (chosen_scores - rejected_scores) / tau
    return _cross_entropy(s, strength), torch.sigmoid(s).detach()


def skew_operator(dim: int, block_weights: Tensor | None = None, dtype=None, device=None) -> Tensor:
    """R (dim, dim), or (B, dim, dim) with ``block_weights`` (B, dim/2): block-diagonal with k = dim/2 blocks
    λ_i [[0, -1], [1, 0]] (λ_i = 1 without weights; GPM's prompt head sets λ per prompt). Rᵀ = -R."""
    if dim < 2 or dim % 2:
        raise ValueError(f"a general preference embedding needs an even dimension >= 2, got {dim}")
    k = dim // 2
    if block_weights is None:
        block_weights = torch.ones(k, dtype=dtype, device=device)
    elif block_weights.shape[-1] != k:
        raise ValueError(f"block_weights has {block_weights.shape[-1]} entries per row, the embedding {k} blocks")
    R = torch.zeros(*block_weights.shape[:-1], dim, dim, dtype=block_weights.dtype, device=block_weights.device)
    idx = torch.arange(0, dim, 2, device=block_weights.device)
    R[..., idx, idx + 1] = -block_weights
    R[..., idx + 1, idx] = block_weights
    return R


def gpm_score(
    a: Tensor,  # (B, 2k) embeddings of the first responses
    b: Tensor,  # (B, 2k) embeddings of the second responses
    block_weights: Tensor | None = None,  # (B, k) per-prompt block scales λ (GPM's prompt head); None: all 1
) -> Tensor:
    """The preference score s(a ≻ b) = aᵀ Rᵀ b (B,) of Zhang et al. 2025, as their official code computes it
    (``HighDimGeneralPreferenceLoss``; the k = 1 case ``GeneralPreferenceLoss``): Σ_i λ_i (a_{2i} b_{2i+1} -
    a_{2i+1} b_{2i}). Skew-symmetric: s(a ≻ b) = -s(b ≻ a), and s(a ≻ a) = 0."""
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"need two (B, 2k) embeddings of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    dim = a.shape[-1]
    if dim < 2 or dim % 2:
        raise ValueError(f"a general preference embedding needs an even dimension >= 2, got {dim}")
    cross = a[:, 0::2] * b[:, 1::2] - a[:, 1::2] * b[:, 0::2]  # (B, k): one 2-D cross product per block
    if block_weights is None:
        return cross.sum(-1)
    if block_weights.shape[-1] != dim // 2:
        raise ValueError(
            f"block_weights has {block_weights.shape[-1]} entries per row, the embedding {dim // 2} blocks"
        )
    return (block_weights * cross).sum(-1)


def gpm_loss(
    chosen_embeddings: Tensor,  # (B, 2k)
    rejected_embeddings: Tensor,  # (B, 2k)
    tau: float = 0.1,  # the GPM code's default for value_head_dim > 2
    strength: Tensor | float | None = None,  # (B,) or scalar: P(chosen ≻ rejected); None: 1
    block_weights: Tensor | None = None,  # (B, k)
) -> tuple[Tensor, Tensor]:
    """General preference model loss: P(c ≻ r) = σ(s(c ≻ r) / τ), L = cross-entropy against ``strength``
    (-log σ(s / τ) for hard labels, as the official code trains it; soft labels are prefkit's addition)."""
    s = gpm_score(chosen_embeddings, rejected_embeddings, block_weights) / tau
    return _cross_entropy(s, strength), torch.sigmoid(s).detach()

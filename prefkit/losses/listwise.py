"""Listwise preference losses: K ranked responses per prompt.

Each function takes per-sequence log-probs of shape (B, K) (sums over response tokens, as returned by
``prefkit.logps.list_logps``) and the list's scores ψ (B, K), higher is better, and returns ``(losses, rewards)``:
per-example losses (B,) (the caller reduces) and the detached rewards (B, K) the loss ranks by. Notation:
s_i = β log π(y_i|x)/π_ref(y_i|x), the implicit reward of response i.

The pairwise family is one formula with different pair weights W_ij (i preferred to j, ψ_i > ψ_j):
L = -Σ_ij W_ij log σ(s_i - s_j). DPO on all pairs has W = 1, DPO on best-vs-worst keeps one pair, and LiPO-λ
weighs each pair by how much swapping it would change the list's DCG. Tied scores (ψ_i = ψ_j) never form a pair.

Only torch is imported, so any one function can be copied into another project as it stands.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


@dataclass
class LiPOConfig:
    beta: float = 0.05  # Liu et al. 2024, Sec. 5: β = 0.05 for every listwise and pairwise method compared
    normalize: bool = False  # the paper sums λ-weighted pair losses; True divides by Σ W_ij (mean over pairs)


@dataclass
class ListDPOConfig:
    beta: float = 0.1  # DPO's β (Rafailov et al. 2023); DPO_PL (their App. A.3) and best-vs-worst DPO use it as is


@dataclass
class PROConfig:
    sft_weight: float = 0.05  # Song et al. 2023, Sec. 4: L = L_PRO + β L_SFT with β = 0.05


def implicit_rewards(policy_logps: Tensor, ref_logps: Tensor, beta: float) -> Tensor:
    """s = β log π/π_ref, (B, K)."""
    return beta * (policy_logps - ref_logps)


def ranking_pair_loss(rewards: Tensor, weights: Tensor, normalize: bool = False) -> Tensor:
    """L = -Σ_ij W_ij log σ(s_i - s_j) per example: rewards (B, K), weights (B, K, K) with W_ij > 0 only where i is
    preferred to j. ``normalize`` divides by Σ_ij W_ij (a list with no pair gets loss 0)."""
    pair_losses = -F.logsigmoid(rewards[:, :, None] - rewards[:, None, :])  # (B, K, K)
    losses = (weights * pair_losses).sum((1, 2))  # (B,)
    if normalize:
        losses = losses / weights.sum((1, 2)).clamp(min=torch.finfo(weights.dtype).tiny)
    return losses


def preferred_pairs(scores: Tensor) -> Tensor:
    """(B, K) scores -> (B, K, K) float mask, 1 where ψ_i > ψ_j (ties form no pair)."""
    return (scores[:, :, None] > scores[:, None, :]).to(scores.dtype)


def model_ranks(rewards: Tensor, scores: Tensor, tie_tol: float = 1e-5) -> Tensor:
    """τ_i, the 1-based rank of response i when the list is sorted by the model's rewards s (descending).

    Rewards within ``tie_tol`` of each other are tied (at step 0 the policy's log-probs match its reference's only up
    to float rounding, and rounding must not decide the ranks). Ties in s are broken by ψ (the better response
    first) and remaining ties share their mean rank, so τ does not depend on the order the list was written in. At
    step 0 (policy = reference, all s equal) that is the ideal order.
    """
    s, psi = rewards.detach(), scores
    gap = s[:, None, :] - s[:, :, None]  # [b, i, j] = s_j - s_i
    s_above = gap > tie_tol  # j is ranked above i
    s_tied = gap.abs() <= tie_tol
    above = s_above | (s_tied & (psi[:, None, :] > psi[:, :, None]))
    same = s_tied & (psi[:, None, :] == psi[:, :, None])  # includes j = i
    return (1.0 + above.sum(-1) + 0.5 * (same.sum(-1) - 1)).to(s.dtype)  # (B, K)


def lambda_weights(rewards: Tensor, scores: Tensor) -> Tensor:
    """LiPO-λ pair weights (Liu et al. 2024, Eq. 9), detached, (B, K, K):

    Δ_ij = |G_i - G_j| |1/D(τ_i) - 1/D(τ_j)| for ψ_i > ψ_j, with gain G = 2^ψ - 1, discount D(τ) = log(1 + τ) and τ
    the rank under the current rewards s (no gradient flows through τ).
    """
    gain = 2.0**scores - 1.0  # (B, K)
    inv_discount = 1.0 / torch.log1p(model_ranks(rewards, scores))  # (B, K)
    delta = (gain[:, :, None] - gain[:, None, :]).abs() * (inv_discount[:, :, None] - inv_discount[:, None, :]).abs()
    return (delta * preferred_pairs(scores)).detach()


def lipo_lambda_loss(
    policy_logps: Tensor,  # (B, K)
    ref_logps: Tensor,  # (B, K)
    scores: Tensor,  # (B, K) labels ψ, higher is better
    beta: float = 0.05,
    normalize: bool = False,
) -> tuple[Tensor, Tensor]:
    """LiPO-λ (Liu et al. 2024, "LiPO: Listwise Preference Optimization through Learning-to-Rank", arXiv:2402.01878).

    L = -Σ_{ψ_i > ψ_j} Δ_ij log σ(s_i - s_j), s = β log π/π_ref, Δ_ij the LambdaLoss weights of
    :func:`lambda_weights`. At K = 2 with ψ = (1, 0) this is DPO times Δ_12 = 1/ln 2 - 1/ln 3 ≈ 0.533 (exactly DPO
    with ``normalize=True``).
    """
    s = implicit_rewards(policy_logps, ref_logps, beta)  # (B, K)
    losses = ranking_pair_loss(s, lambda_weights(s, scores), normalize)  # Eq. 9
    return losses, s.detach()


def all_pairs_dpo_loss(
    policy_logps: Tensor,  # (B, K)
    ref_logps: Tensor,  # (B, K)
    scores: Tensor,  # (B, K)
    beta: float = 0.1,
    normalize: bool = False,
) -> tuple[Tensor, Tensor]:
    """DPO on every ordered pair of the list (DPO_BT in Liu et al. 2024, Sec. 4): L = -Σ_{ψ_i > ψ_j} log σ(s_i - s_j).

    With ``normalize=True`` the mean over the list's pairs, so that K = 2 is exactly DPO either way.
    """
    s = implicit_rewards(policy_logps, ref_logps, beta)
    return ranking_pair_loss(s, preferred_pairs(scores), normalize), s.detach()


def best_worst_dpo_loss(
    policy_logps: Tensor,  # (B, K)
    ref_logps: Tensor,  # (B, K)
    scores: Tensor,  # (B, K)
    beta: float = 0.1,
) -> tuple[Tensor, Tensor]:
    """DPO on the best against the worst response of each list (the common way to turn a ranked list into one pair).

    Tied best (or worst) responses share the pair's weight equally; a list whose scores are all equal has no pair and
    loss 0.
    """
    s = implicit_rewards(policy_logps, ref_logps, beta)
    best = (scores == scores.amax(-1, keepdim=True)).to(s.dtype)  # (B, K)
    worst = (scores == scores.amin(-1, keepdim=True)).to(s.dtype)
    w = best[:, :, None] * worst[:, None, :] * preferred_pairs(scores)  # (B, K, K)
    w = w / (best.sum(-1) * worst.sum(-1))[:, None, None]
    return ranking_pair_loss(s, w), s.detach()


def plackett_luce_loss(
    policy_logps: Tensor,  # (B, K)
    ref_logps: Tensor,  # (B, K)
    scores: Tensor,  # (B, K)
    beta: float = 0.1,
) -> tuple[Tensor, Tensor]:
    """DPO under the Plackett-Luce model (Rafailov et al. 2023, App. A.3, Eq. 20; ListMLE in learning to rank).

    L = -Σ_k [s_k - log Σ_{j: ψ_j ≤ ψ_k} exp(s_j)]: each response must beat every response ranked below it. With
    distinct scores this is exactly the Plackett-Luce likelihood of the order (the worst response's term is 0); tied
    responses share one risk set (Breslow's handling of ties), so the loss does not depend on the listing order. At
    K = 2 it equals DPO.
    """
    s = implicit_rewards(policy_logps, ref_logps, beta)
    at_or_below = scores[:, None, :] <= scores[:, :, None]  # [b, k, j]: ψ_j ≤ ψ_k, the risk set of k
    logits = s[:, None, :].expand(-1, s.shape[1], -1).masked_fill(~at_or_below, float("-inf"))  # (B, K, K)
    terms = s - torch.logsumexp(logits, -1)  # (B, K), Eq. 20
    return -terms.sum(-1), s.detach()


def pro_loss(
    policy_logps: Tensor,  # (B, K) summed log-probs
    lengths: Tensor,  # (B, K) response token counts
    scores: Tensor,  # (B, K) reward-model scores r_φ, higher is better
    sft_weight: float = 0.05,
) -> tuple[Tensor, Tensor]:
    """Preference Ranking Optimization (Song et al. 2023, arXiv:2306.17492), Eq. 7 with the dynamic temperature.

    Reference-free: the policy's score of y is its length-normalised log-prob r(y) = log π(y|x) / |y|. For each
    response k and the responses i it beats (ψ_i < ψ_k),
    L_k = -log [exp(r_k / T_k^k) / (exp(r_k / T_k^k) + Σ_i exp(r_i / T_k^i))], with 1/T_k^i = ψ_k - ψ_i and
    1/T_k^k = max_i (ψ_k - ψ_i), so a response that is far worse is pushed down harder. L = Σ_k L_k +
    sft_weight * NLL(best response) (per token). Tied responses are left out of each other's denominators.
    """
    r = policy_logps / lengths.clamp(min=1)  # (B, K)
    gap = scores[:, :, None] - scores[:, None, :]  # [b, k, i] = ψ_k - ψ_i
    lower = gap > 0
    inv_t_self = (gap * lower).amax(-1)  # (B, K): 1/T_k^k
    others = (r[:, None, :] * gap).masked_fill(~lower, float("-inf"))  # (B, K, K)
    own = r * inv_t_self  # (B, K)
    lse = torch.logsumexp(torch.cat([own[:, :, None], others], -1), -1)  # (B, K)
    ranking = ((lse - own) * lower.any(-1)).sum(-1)  # Eq. 7: responses that beat nothing contribute nothing
    best = (scores == scores.amax(-1, keepdim=True)).to(r.dtype)
    nll = -(r * best).sum(-1) / best.sum(-1)  # per-token NLL of the best response(s)
    return ranking + sft_weight * nll, r.detach()


@dataclass
class TreePOConfig:
    beta: float = 0.5  # β of the official Tree-PO training script (MrBlankness/TPO, tpo_train.py); the paper's
    # value could not be confirmed
    normalize: bool = False  # as LiPO-λ
    asr: bool = True  # Adaptive Step Reward on (False: the λ loss on plain sequence log-ratios)


def adaptive_step_weights(
    step_hidden: Tensor,  # (B, K, S, H) hidden states averaged over each step's tokens
    step_mask: Tensor,  # (B, K, S) 1 where response k has step s
    scores: Tensor,  # (B, K)
) -> Tensor:
    """Adaptive Step Reward weights (Liao et al. 2024), detached, (B, K, S):

    w_{k,s} = 1 + cos(h̄_{k,s}, h̄_{best,s}), the similarity of step s of response k to step s of the best-scored
    response, in [0, 2]. This is the form of the official code (the paper's equation could not be checked); steps the
    best response does not have get w = 1, and missing steps w = 0. When several responses tie for the best score,
    the similarity is averaged over those of them that have step s (an argmax would take whichever is listed first,
    so the loss would depend on the order of the list).
    """
    best = (scores == scores.amax(-1, keepdim=True)).to(step_hidden.dtype)  # (B, K)
    cos = F.cosine_similarity(step_hidden[:, :, None], step_hidden[:, None, :], dim=-1)  # (B, K, K, S): k vs j
    from_best = best[:, :, None] * step_mask.to(step_hidden.dtype)  # (B, K, S): step s of a best response j
    n_best = from_best.sum(1)[:, None]  # (B, 1, S)
    mean_cos = (cos * from_best[:, None]).sum(2) / n_best.clamp(min=1)  # (B, K, S)
    w = torch.where(n_best > 0, 1.0 + mean_cos, torch.ones_like(mean_cos))
    return (w * step_mask).detach()


def tree_po_loss(
    policy_step_logps: Tensor,  # (B, K, S) log π summed over each step's tokens
    ref_step_logps: Tensor,  # (B, K, S)
    scores: Tensor,  # (B, K) leaf scores ψ
    step_hidden: Tensor | None = None,  # (B, K, S, H), needed with asr=True
    step_mask: Tensor | None = None,  # (B, K, S)
    beta: float = 0.5,
    normalize: bool = False,
    asr: bool = True,
) -> tuple[Tensor, Tensor]:
    """Tree Preference Optimization (Liao, Chu, Wang 2024, arXiv:2410.12854, ICLR 2025).

    The leaves of a preference tree form a ranked list; each leaf's implicit reward is a weighted sum of its steps'
    log-ratios, s_k = β Σ_s w_{k,s} log π/π_ref(step s of y_k), with w from :func:`adaptive_step_weights` (all 1
    without ASR, which makes s the plain sequence log-ratio), and the list is trained with the LiPO-λ loss
    -Σ_{ψ_i > ψ_j} Δ_ij log σ(s_i - s_j).
    """
    step_ratio = policy_step_logps - ref_step_logps  # (B, K, S)
    if asr:
        if step_hidden is None or step_mask is None:
            raise ValueError("asr=True needs step_hidden and step_mask (see prefkit.logps.list_step_logps)")
        step_ratio = step_ratio * adaptive_step_weights(step_hidden, step_mask, scores)
    s = beta * step_ratio.sum(-1)  # (B, K)
    return ranking_pair_loss(s, lambda_weights(s, scores), normalize), s.detach()

"""Scorer-side listwise ranking losses: a scorer gives each of K items one score, and a list's graded labels say
which order it should produce.

Each function takes scores s (B, K) from the model, labels y (B, K) (graded relevance or target scores, higher is
better) and an optional ``mask`` (B, K) bool (True for real items, False for padding), and returns per-list losses
(B,); the caller reduces. Padded items take part in no pair, no softmax and no Plackett-Luce stage, so a padded list
has the loss of the list without its padding. Every list needs at least two real items.

- :func:`ranknet_loss`: pairwise logistic loss, averaged over the list's ordered pairs with y_i > y_j.
- :func:`listnet_loss`: cross-entropy between the top-one distributions softmax(y / T) and softmax(s).
- :func:`listmle_loss`: the negative Plackett-Luce log-likelihood of the order of the list by y.

At K = 2 with y_1 > y_2 all three equal -log σ(s_1 - s_2) (ListNet in the limit T -> 0), the Bradley-Terry loss.
RankList (Naini, Diaz, Busso 2025, arXiv:2508.09826) is not here: only its abstract could be read, and its loss is not
written down from an abstract. Only torch is imported, so any one function can be copied as it stands.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def _valid_mask(scores: Tensor, labels: Tensor, mask: Tensor | None) -> Tensor:
    """Check the inputs and return the (B, K) bool mask of real items."""
    if scores.dim() != 2 or labels.shape != scores.shape:
        raise ValueError(f"scores and labels must both be (B, K), got {tuple(scores.shape)} and {tuple(labels.shape)}")
    if scores.shape[1] < 2:
        raise ValueError(f"a ranking loss needs lists of K >= 2 items, got K = {scores.shape[1]}")
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    elif mask.shape != scores.shape or mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a bool tensor of shape {tuple(scores.shape)}, got {mask.dtype} {tuple(mask.shape)}"
        )
    if bool((mask.sum(-1) < 2).any()):
        raise ValueError("every list needs at least 2 real (unmasked) items")
    if bool(torch.isnan(labels[mask]).any()):
        raise ValueError("labels contain NaN on real (unmasked) items")
    return mask


def ranknet_loss(
    scores: Tensor,  # (B, K) model scores s
    labels: Tensor,  # (B, K) graded labels y, higher is better
    mask: Tensor | None = None,  # (B, K) bool, True for real items
) -> Tensor:
    """RankNet (Burges, Shaked, Renshaw, Lazier, Deeds, Hamilton, Hullender 2005, "Learning to Rank using Gradient
    Descent", ICML): P_ij = σ(s_i - s_j) and the cross-entropy cost against the target P̄_ij, which for a pair known
    to be ordered (P̄_ij = 1) is C_ij = -log σ(s_i - s_j).

    L = (1 / |P|) Σ_{(i, j) ∈ P} -log σ(s_i - s_j), P = {(i, j): y_i > y_j}, the mean over the list's ordered pairs
    (tied labels form no pair; a list whose labels are all tied has loss 0). Losses (B,).
    """
    valid = _valid_mask(scores, labels, mask)
    s = torch.where(valid, scores, torch.zeros_like(scores))  # (B, K), padding never reaches a log or exp
    both = valid[:, :, None] & valid[:, None, :]  # (B, K, K)
    pairs = ((labels[:, :, None] > labels[:, None, :]) & both).to(s.dtype)  # (B, K, K): y_i > y_j
    cost = -F.logsigmoid(s[:, :, None] - s[:, None, :])  # (B, K, K), C_ij with P̄_ij = 1
    return (pairs * cost).sum((1, 2)) / pairs.sum((1, 2)).clamp(min=1)  # (B,)


def listnet_loss(
    scores: Tensor,  # (B, K) model scores s
    labels: Tensor,  # (B, K) graded labels y, higher is better
    mask: Tensor | None = None,  # (B, K) bool, True for real items
    temperature: float = 1.0,
) -> Tensor:
    """ListNet with the top-one approximation (Cao, Qin, Liu, Tsai, Li 2007, "Learning to Rank: From Pairwise
    Approach to Listwise Approach", ICML): the top-one probability of item j under scores z is
    P_z(j) = exp(z_j) / Σ_k exp(z_k), and the loss is the cross-entropy L(y, s) = -Σ_j P_{y/T}(j) log P_s(j).

    ``temperature`` T sharpens the target (the paper uses T = 1, φ = exp); as T -> 0 the target puts all its mass on
    the best item(s), so at K = 2 with y_1 > y_2 the loss tends to -log σ(s_1 - s_2). Losses (B,).
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    valid = _valid_mask(scores, labels, mask)
    s = torch.where(valid, scores, torch.zeros_like(scores)).masked_fill(~valid, float("-inf"))  # (B, K)
    y = torch.where(valid, labels, torch.zeros_like(labels)) / temperature  # (B, K)
    target = torch.softmax(y.masked_fill(~valid, float("-inf")), -1)  # (B, K), P_y(j), 0 on padding
    log_p = torch.log_softmax(s, -1)  # (B, K), log P_s(j)
    ce = torch.where(valid, target * log_p, torch.zeros_like(log_p))  # (B, K), padding gives 0 (not 0 · -inf)
    return -ce.sum(-1)  # (B,), top-one cross-entropy


def listmle_loss(
    scores: Tensor,  # (B, K) model scores s
    labels: Tensor,  # (B, K) graded labels y, higher is better
    mask: Tensor | None = None,  # (B, K) bool, True for real items
) -> Tensor:
    """ListMLE (Xia, Liu, Wang, Zhang, Li 2008, "Listwise Approach to Learning to Rank: Theory and Algorithm", ICML):
    the negative log-likelihood of the true order π under the Plackett-Luce model of the scores,

    L = -log P(π | s) = Σ_{k=1}^{n} [log Σ_{j=k}^{n} exp(s_{π(j)}) - s_{π(k)}],

    π the order of the list by y, best first. Ties in y are broken by index, stably: of two items with the same label
    the one listed first is ranked first (so, unlike the other two losses, ListMLE with tied labels depends on the
    order the list is written in; ``prefkit.losses.listwise.plackett_luce_loss`` shares risk sets instead). The last
    stage (one item left) contributes 0. Losses (B,).
    """
    valid = _valid_mask(scores, labels, mask)
    B, K = scores.shape
    y = labels.masked_fill(~valid, float("-inf"))  # (B, K), padding sorts last
    order = torch.sort(y, dim=-1, descending=True, stable=True).indices  # (B, K), π: best first, ties by index
    s = torch.gather(torch.where(valid, scores, torch.zeros_like(scores)), 1, order)  # (B, K), s_{π(k)}
    real = torch.gather(valid, 1, order)  # (B, K), real items first
    idx = torch.arange(K, device=scores.device)
    later = idx[None, :] >= idx[:, None]  # (K, K): [k, j] = j ≥ k, the items still unplaced at stage k
    risk = (later[None] & real[:, None, :]) | torch.eye(K, dtype=torch.bool, device=scores.device)  # (B, K, K)
    logits = s[:, None, :].expand(B, K, K).masked_fill(~risk, float("-inf"))  # (B, K, K)
    stage = torch.logsumexp(logits, -1) - s  # (B, K): log Σ_{j≥k} exp(s_{π(j)}) - s_{π(k)}
    return torch.where(real, stage, torch.zeros_like(stage)).sum(-1)  # (B,), -log P(π | s)

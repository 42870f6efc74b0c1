"""Scorer-side listwise ranking losses: a scorer gives each of K items one score, and a list's graded labels say
which order it should produce.

Each function takes scores s (B, K) from the model, labels y (B, K) (graded relevance or target scores, higher is
better) and an optional ``mask`` (B, K) bool (True for real items, False for padding), and returns per-list losses
(B,); the caller reduces. Padded items take part in no pair, no softmax and no Plackett-Luce stage, so a padded list
has the loss of the list without its padding. Every list needs at least two real items.

- :func:`ranknet_loss`: pairwise logistic loss, averaged over the list's ordered pairs with y_i > y_j.
- :func:`listnet_loss`: cross-entropy between the top-one distributions softmax(y / T) and softmax(s).
- :func:`listmle_loss`: the negative Plackett-Luce log-likelihood of the order of the list by y.
- :func:`ranklist_loss`: OUR READING of the abstract of RankList (Naini, Diaz, Busso 2025, arXiv:2508.09826): RankNet
  on adjacent pairs (local) plus one log-sum-exp term per item over the items further below it (non-local), with an
  optional skip limit for a curriculum. The paper's Sec. 3 equations could not be read; see the function's docstring.

At K = 2 with y_1 > y_2 all four equal -log σ(s_1 - s_2) (ListNet in the limit T -> 0), the Bradley-Terry loss.
Only torch is imported, so any one function can be copied as it stands.
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


def ranklist_loss(
    scores: Tensor,  # (B, K) model scores s
    labels: Tensor,  # (B, K) graded labels y, higher is better
    mask: Tensor | None = None,  # (B, K) bool, True for real items
    max_skip: int | None = None,
    exact: bool = False,
) -> Tensor:
    """RankList as WE READ ITS ABSTRACT (Naini, Diaz, Busso 2025, "RankList: A Listwise Preference Learning Framework
    for Predicting Subjective Preferences", arXiv:2508.09826). Only the abstract could be read, not Sec. 3, so no
    equation number is cited and this is our construction, not the paper's loss. The abstract says: RankNet
    generalised to list supervision, "local and non-local ranking constraints within a probabilistic framework", a
    "log-sum-exp approximation to improve training efficiency", and "skip-wise comparisons, enabling progressive
    exposure to complex list structures". Our reading:

    level ℓ_i = the dense rank of y_i among the list's real items (0 for the best label), gap g_ij = ℓ_j - ℓ_i;
    local pairs g_ij = 1 (adjacent levels), non-local pairs 2 <= g_ij <= k (k = ``max_skip``, all by default);
    P(list) = Π_local σ(s_i - s_j) · Π_non-local σ(s_i - s_j), a product of RankNet pair probabilities, so

    exact:   L = Σ_{g_ij = 1} -log σ(s_i - s_j) + Σ_i Σ_{j: 2 <= g_ij <= k} log(1 + exp(s_j - s_i))
    LSE:     L = Σ_{g_ij = 1} -log σ(s_i - s_j) + Σ_i log(1 + Σ_{j: 2 <= g_ij <= k} exp(s_j - s_i))

    (the default, ``exact=False``, replaces each item's sum of non-local softplus terms by one log-sum-exp: one
    normaliser per item instead of one per pair, a lower bound on the exact term that is tight when one pair
    dominates). Skip-wise: ``max_skip = 1`` keeps only the adjacent pairs; a curriculum raises it towards K - 1 as
    training goes on. The loss is divided by the number of terms (local pairs plus items with a non-empty non-local
    set), 0 for a list whose labels are all tied. At K = 2 it is -log σ(s_1 - s_2); with ``exact=True`` and no skip
    limit it is the sum of RankNet's pair costs over all ordered pairs. Losses (B,).
    """
    valid = _valid_mask(scores, labels, mask)
    if max_skip is not None and max_skip < 1:
        raise ValueError(f"max_skip must be >= 1 (1: adjacent levels only), got {max_skip}")
    K = scores.shape[1]
    s = torch.where(valid, scores, torch.zeros_like(scores))  # (B, K), padding never reaches a log or exp
    y = torch.where(valid, labels, torch.full_like(labels, float("-inf")))  # (B, K)
    both = valid[:, :, None] & valid[:, None, :]  # (B, K, K)
    above = (y[:, None, :] > y[:, :, None]) & both  # (B, K, K): [i, m] = y_m > y_i, m on a higher level than i
    # dense rank: ℓ_i = the number of distinct labels above y_i, each value counted at its first occurrence
    first = ~((y[:, :, None] == y[:, None, :]) & torch.ones(K, K, dtype=torch.bool, device=s.device).tril(-1))
    first = first.all(-1) & valid  # (B, K): item m is the first (lowest index) of its label value
    level = (above & first[:, None, :]).sum(-1)  # (B, K), dense ℓ_i
    gap = level[:, None, :] - level[:, :, None]  # (B, K, K): g_ij = ℓ_j - ℓ_i
    k = K if max_skip is None else max_skip
    local = (gap == 1) & both  # (B, K, K): adjacent levels, i above j
    far = (gap >= 2) & (gap <= k) & both  # (B, K, K): the non-local set of i, within the skip limit
    diff = s[:, None, :] - s[:, :, None]  # (B, K, K): [i, j] = s_j - s_i
    local_cost = (local * F.softplus(diff)).sum((1, 2))  # (B,): Σ -log σ(s_i - s_j) over adjacent pairs
    if exact:
        far_cost = (far * F.softplus(diff)).sum((1, 2))  # (B,): Σ_i Σ_j log(1 + exp(s_j - s_i))
        n_terms = local.sum((1, 2)) + far.sum((1, 2))
    else:
        zero = torch.zeros_like(diff[:, :, :1])  # (B, K, 1): the "1 +" inside the log, exp(0)
        logits = torch.cat([zero, diff.masked_fill(~far, float("-inf"))], -1)  # (B, K, K + 1)
        has_far = far.any(-1)  # (B, K): items with a non-empty non-local set
        far_cost = torch.where(has_far, torch.logsumexp(logits, -1), torch.zeros_like(s)).sum(-1)  # (B,) LSE term
        n_terms = local.sum((1, 2)) + has_far.sum(-1)
    return (local_cost + far_cost) / n_terms.clamp(min=1).to(s.dtype)  # (B,)

"""In-context ranking losses: one response *is* a ranked list of N items, and the loss scores each item where it sits.

Only torch is imported, so the function can be copied into another project as it stands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


@dataclass
class IRPOConfig:
    beta: float = 1.0  # Wu et al. 2025, official README example (the loss function's own default is 0.1)
    weighting: str = "dcg"  # w_i = (2^rel_i - 1) / log2(1 + i); the paper's ablations: "position", "linear"


def irpo_weights(relevance: Tensor, weighting: str = "dcg") -> Tensor:
    """Positional weights w_i (B, N) of the items in list order (column i is the item ranked i + 1):
    ``"dcg"``: (2^rel_i - 1) / log2(1 + i); ``"position"``: 1 / log2(1 + i); ``"linear"``: (2^rel_i - 1) / i."""
    rank = torch.arange(1, relevance.shape[-1] + 1, dtype=relevance.dtype, device=relevance.device)  # (N,)
    gain = 2.0**relevance - 1.0  # (B, N)
    if weighting == "dcg":
        return gain / torch.log2(1.0 + rank)
    if weighting == "position":
        return torch.ones_like(relevance) / torch.log2(1.0 + rank)
    if weighting == "linear":
        return gain / rank
    raise ValueError(f"weighting must be 'dcg', 'position' or 'linear', got {weighting!r}")


def irpo_loss(
    policy_item_logps: Tensor,  # (B, N) mean token log π of item i's tokens at its position in the list
    ref_item_logps: Tensor,  # (B, N) the same under π_ref
    relevance: Tensor,  # (B, N) graded feedback rel_i >= 0 of the item at list position i + 1 (0: unmarked)
    beta: float = 1.0,
    weighting: str = "dcg",
) -> tuple[Tensor, Tensor]:
    """IRPO (Wu, Surana, et al. 2025, "In-context Ranking Preference Optimization", arXiv:2504.15477).

    The response is a ranked list; item i's implicit reward is its own log-ratio at its position,
    r_i = β (log π(e_i | x, e_<i) - log π_ref(e_i | x, e_<i)) (mean over the item's tokens). Each item is compared
    with all the others through a soft maximum, and items are weighted by relevance and position (DCG):

        L = -(1/N) Σ_i w_i log σ( -[ log Σ_{j≠i} exp(r_j - r_i) - log(N - 1) ] ),  w_i = (2^rel_i - 1) / log2(1 + i)

    as the official ``rdpo_loss`` computes it (the -log(N - 1) makes the soft maximum a log-mean; the paper's
    positional-aggregation objective). Items with rel = 0 get weight 0: only marked items are pulled up, against
    every other item of the list. At N = 2 it is a weighted DPO on the item pair:
    L = -(1/2) [w_1 log σ(r_1 - r_2) + w_2 log σ(r_2 - r_1)].

    Returns ``(losses (B,), rewards (B, N))``; rewards are detached.
    """
    if policy_item_logps.dim() != 2:
        raise ValueError(f"policy_item_logps must be (B, N), got shape {tuple(policy_item_logps.shape)}")
    for name, t in (("ref_item_logps", ref_item_logps), ("relevance", relevance)):
        if t.shape != policy_item_logps.shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, policy_item_logps {tuple(policy_item_logps.shape)}")
    B, N = policy_item_logps.shape
    if N < 2:
        raise ValueError(f"a list needs at least 2 items to rank, got N = {N}")
    bad = ~torch.isfinite(relevance) | (relevance < 0)
    if bad.any():
        b, i = (int(x) for x in bad.nonzero()[0])
        raise ValueError(f"row {b}: relevance[{i}] = {relevance[b, i].item()} (need finite and >= 0)")
    r = beta * (policy_item_logps - ref_item_logps)  # (B, N) item rewards
    diff = r[:, None, :] - r[:, :, None]  # (B, N, N): diff[b, i, j] = r_j - r_i
    eye = torch.eye(N, dtype=torch.bool, device=r.device)
    lse = torch.logsumexp(diff.masked_fill(eye, float("-inf")), dim=-1)  # (B, N): log Σ_{j≠i} exp(r_j - r_i)
    item_losses = -F.logsigmoid(-(lse - math.log(N - 1)))  # (B, N)
    w = irpo_weights(relevance, weighting).to(r.dtype)  # (B, N)
    losses = (w * item_losses).mean(-1)  # (B,) mean over the N items
    return losses, r.detach()

"""Ranking metrics and exact path decoding for list-ranking experiments.

- :func:`kendall_tau`: Kendall's τ-b between two score vectors (ties counted as in scipy's default).
- :func:`ndcg_at_k`: NDCG@k of a predicted order against graded relevance (gain 2^rel - 1, discount 1/log2(rank + 1),
  Järvelin and Kekäläinen 2002), 1 for the ideal order.
- :func:`held_karp_path`: the order of n items that maximises the sum of "j comes right after i" scores S[i, j] over
  consecutive items, an open travelling-salesman path, solved exactly by Held-Karp dynamic programming in
  O(2^n n^2) (n <= 12 here). TSPRank (KDD 2025) decodes its bilinear pair scores this way.
- :class:`BilinearPairScorer`: S[i, j] = h_iᵀ W h_j on item features h (n, d), the pair scorer TSPRank learns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _vector(x, name: str) -> np.ndarray:
    v = np.asarray(x, dtype=float)
    if v.ndim != 1:
        raise ValueError(f"{name} must be one score per item (1-D), got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} has a non-finite value at index {int(np.flatnonzero(~np.isfinite(v))[0])}")
    return v


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's τ-b of two rankings given as scores over the same items: (C - D) / sqrt((P - T_a)(P - T_b)) over the
    P = n(n - 1)/2 pairs, C concordant, D discordant, T_a (T_b) the pairs tied in a (in b). NaN when either side is
    all ties."""
    a, b = _vector(a, "a"), _vector(b, "b")
    if a.shape != b.shape or len(a) < 2:
        raise ValueError(f"need two score vectors of the same length >= 2, got {len(a)} and {len(b)}")
    i, j = np.triu_indices(len(a), 1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    n_pairs = len(i)
    denom = np.sqrt((n_pairs - np.sum(da == 0)) * (n_pairs - np.sum(db == 0)))
    return float(np.sum(da * db) / denom) if denom > 0 else float("nan")


def ndcg_at_k(order: Sequence[int], relevance: Sequence[float], k: int | None = None) -> float:
    """NDCG@k of ``order`` (item indices, best first) against graded ``relevance`` (one value per item, >= 0):
    DCG = Σ_{r=1..k} (2^{rel(order[r])} - 1) / log2(r + 1), divided by the DCG of the items sorted by relevance.
    Returns 0 when no item is relevant."""
    rel = _vector(relevance, "relevance")
    order = np.asarray(order, dtype=int)
    if sorted(order.tolist()) != list(range(len(rel))):
        raise ValueError(f"order must be a permutation of the {len(rel)} items, got {order.tolist()}")
    if np.any(rel < 0):
        raise ValueError(f"relevance must be >= 0, got {rel.min()} at index {int(np.argmin(rel))}")
    k = len(rel) if k is None else k
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    discount = 1.0 / np.log2(np.arange(2, min(k, len(rel)) + 2))
    gain = lambda idx: np.sum((2.0 ** rel[idx[: len(discount)]] - 1.0) * discount)  # noqa: E731
    ideal = gain(np.argsort(-rel, kind="stable"))
    return float(gain(order) / ideal) if ideal > 0 else 0.0


def held_karp_path(S: np.ndarray, max_n: int = 12) -> tuple[list[int], float]:
    """The order of the n items (a Hamiltonian path, open at both ends) maximising Σ_t S[order[t], order[t + 1]],
    and that total, by Held-Karp dynamic programming over (subset, last item): exact, O(2^n n^2) time and O(2^n n)
    memory. Ties go to the lower index at each step. S[i, i] is ignored."""
    S = np.asarray(S, dtype=float)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"S must be a square (n, n) matrix of pair scores, got shape {S.shape}")
    n = len(S)
    if n > max_n:
        raise ValueError(f"exact decoding of {n} items needs 2^{n} subsets; raise max_n (now {max_n}) if you mean it")
    if not np.all(np.isfinite(S[~np.eye(n, dtype=bool)])):
        raise ValueError("S has a non-finite pair score")
    if n == 1:
        return [0], 0.0
    full = (1 << n) - 1
    best = np.full((1 << n, n), -np.inf)
    back = np.full((1 << n, n), -1, dtype=int)
    for i in range(n):
        best[1 << i, i] = 0.0  # a path of one item, starting anywhere
    for mask in range(1, full + 1):
        for last in range(n):
            value = best[mask, last]
            if value == -np.inf:
                continue
            for nxt in range(n):
                if mask >> nxt & 1:
                    continue
                cand = value + S[last, nxt]
                if cand > best[mask | 1 << nxt, nxt]:
                    best[mask | 1 << nxt, nxt], back[mask | 1 << nxt, nxt] = cand, last
    last = int(np.argmax(best[full]))
    total, order, mask = float(best[full, last]), [], full
    while last != -1:
        order.append(last)
        last, mask = int(back[mask, last]), mask & ~(1 << last)
    return order[::-1], total


class BilinearPairScorer(torch.nn.Module):
    """S[i, j] = h_iᵀ W h_j for the items of one list, h (n, d) -> S (n, n): the score that item j comes right after
    item i. W starts at zero (every order scores 0)."""

    def __init__(self, dim: int):
        super().__init__()
        self.W = torch.nn.Parameter(torch.zeros(dim, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # h: (n, d) or (B, n, d)
        return h @ self.W @ h.transpose(-1, -2)  # (n, n) or (B, n, n)

"""An "adjacency cue" list world: which item comes right after which is written into the items, where they stand is not.

A list is n items with a hidden true order 0, 1, ..., n - 1 (item at position 0 first, the best). Each item carries

    out-key  o_t ∈ R^k   a fresh random unit vector per item and list
    in-key   i_t ∈ R^k   i_t = o_{t-1} + ε (the key its predecessor points with, read with noise ε ~ N(0, σ_k² I)),
                         and a fresh random unit vector for the first item, which has no predecessor
    position p_t = t / (n - 1) + η,  η ~ N(0, σ_p²)   (a noisy cue of where it stands)

and its features are x_t = [i_t, o_t, p_t] (2k + 1). The items are shown shuffled. Keys are drawn anew for every
list, so a per-item score f(x_t) can use only the noisy position: sorting by any f is at best as good as sorting by p.
A pair score S[a, b] = o_aᵀ i_b (a bilinear form in the features) recovers "b right after a" exactly when σ_k = 0, and
the open Hamiltonian path of highest total S is then the true order. The pair information is therefore not reducible
to a per-item score, by construction: a method that scores pairs wins here because the world is built that way.
The true order is known exactly (``rank``: position of each shown item, 0 first).

Used by ``notebooks/12_rankings`` (TSPRank, Luo et al. KDD 2025, arXiv:2411.12064) as the world where pair scores must
beat sorting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class ChainWorld:
    """Lists of ``n_items`` items with adjacency keys and a noisy position cue; :meth:`sample` draws lists."""

    n_items: int = 8  # n: items per list
    key_dim: int = 8  # k: dimension of the in- and out-keys
    key_noise: float = 0.3  # σ_k: noise on an item's copy of its predecessor's out-key
    position_noise: float = 0.3  # σ_p: noise on the position cue t / (n - 1)

    def __post_init__(self):
        if self.n_items < 2 or self.key_dim < 1:
            raise ValueError(f"need n_items >= 2 and key_dim >= 1, got {self.n_items} and {self.key_dim}")
        for name in ("key_noise", "position_noise"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")

    @property
    def dim(self) -> int:
        return 2 * self.key_dim + 1

    def sample(self, n_lists: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``n_lists`` shuffled lists: ``x`` (L, n, 2k + 1) features [in-key, out-key, position cue], ``rank`` (L, n)
        the true position of each shown item (0 first), ``order`` (L, n) the shown indices in true order (first
        first) and ``relevance`` (L, n) = n - 1 - rank (higher is better, for ranking losses and Kendall's τ)."""
        if n_lists < 1:
            raise ValueError(f"n_lists must be >= 1, got {n_lists}")
        L, n, k = n_lists, self.n_items, self.key_dim

        def unit(*shape):
            v = rng.standard_normal((*shape, k))
            return v / np.linalg.norm(v, axis=-1, keepdims=True)

        out_key = unit(L, n)  # (L, n, k), in true order
        in_key = np.concatenate([unit(L, 1), out_key[:, :-1]], 1)  # (L, n, k): i_t = o_{t-1}
        in_key = in_key + self.key_noise * rng.standard_normal((L, n, k)) * (np.arange(n) > 0)[None, :, None]
        pos = np.arange(n) / (n - 1) + self.position_noise * rng.standard_normal((L, n))  # (L, n)
        x = np.concatenate([in_key, out_key, pos[..., None]], -1)  # (L, n, 2k + 1), in true order
        shown = np.argsort(rng.random((L, n)), 1)  # (L, n): shown slot s holds true position shown[s]
        x = np.take_along_axis(x, shown[..., None], 1)
        order = np.argsort(shown, 1)  # (L, n): the slot of true position t
        return {"x": x, "rank": shown, "order": order, "relevance": (n - 1 - shown).astype(float)}

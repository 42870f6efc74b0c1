"""Rater groups over a few fixed responses: a world whose aggregate preference can be intransitive.

Each group ranks the n responses strictly (best first) and makes up a share ``weights[g]`` of the raters. A comparison
of responses i and j asks one rater drawn by weight, so

    P[i, j] = Σ_g w_g · 1[group g ranks i above j],      P[i, i] = 1/2,      P + Pᵀ = 1.

Every group is transitive, yet their mixture need not be: with rankings A>B>C, B>C>A and C>A>B (Condorcet's paradox)
and every weight below 1/2, each response loses a majority vote to another one. No reward r can then explain P
through σ(r_i - r_j), which is the setting of Swamy et al. 2024, "A Minimaximalist Approach to Reinforcement Learning
from Human Feedback" (arXiv:2401.04056): the aggregate preference is a two-player zero-sum game whose solution, the
Minimax Winner, is a mixed policy (see :mod:`prefkit.selfplay`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class RaterGroups:
    """Weighted groups of raters, each with a strict ranking of the responses ``names`` (indices, best first).

    ``preference_matrix()`` is the exact P for evaluation; a learner should see only ``compare(i, j, rng)``, one
    sampled judgement by one rater.
    """

    rankings: list[tuple[int, ...]]  # one permutation of range(n) per group, best first
    weights: list[float]  # share of the raters in each group; positive, sum to 1
    names: tuple[str, ...]  # response names, e.g. ("A", "B", "C")
    rank: np.ndarray = field(init=False, repr=False, compare=False)  # (groups, n): rank[g, i] = place of i in group g
    _cum: np.ndarray = field(init=False, repr=False, compare=False)  # (groups,) cumulative weights, for sampling

    def __post_init__(self):
        n = len(self.names)
        self.rankings = [tuple(int(i) for i in r) for r in self.rankings]
        self.weights = [float(w) for w in self.weights]
        if len(self.rankings) != len(self.weights):
            raise ValueError(f"{len(self.rankings)} rankings but {len(self.weights)} weights (one per group)")
        if not self.rankings:
            raise ValueError("need at least one rater group")
        for g, r in enumerate(self.rankings):
            if sorted(r) != list(range(n)):
                raise ValueError(f"rankings[{g}] = {r} is not a permutation of range({n}) (one index per name)")
        for g, w in enumerate(self.weights):
            if not w > 0:
                raise ValueError(f"weights[{g}] = {w} must be > 0 (drop an empty group instead)")
        if not math.isclose(sum(self.weights), 1.0, rel_tol=0.0, abs_tol=1e-9):
            raise ValueError(f"weights sum to {sum(self.weights)!r}, not 1")
        self.rank = np.argsort(np.array(self.rankings), axis=1)  # inverse permutation: the place of each response
        self._cum = np.cumsum(self.weights)

    @property
    def n(self) -> int:
        """Number of responses."""
        return len(self.names)

    def preference_matrix(self) -> np.ndarray:
        """P (n, n): P[i, j] = probability that a rater drawn by weight prefers i to j; P[i, i] = 1/2."""
        above = self.rank[:, :, None] < self.rank[:, None, :]  # (groups, n, n): group g ranks i above j
        P = np.einsum("g,gij->ij", np.array(self.weights), above.astype(float))
        np.fill_diagonal(P, 0.5)
        return P

    def compare(self, i: int, j: int, rng: np.random.Generator) -> float:
        """One sampled judgement: 1.0 if a rater drawn by weight prefers i to j, else 0.0; 0.5 when i == j (a tie
        needs no rater)."""
        if i == j:
            return 0.5
        g = min(int(np.searchsorted(self._cum, rng.random(), side="right")), len(self.weights) - 1)
        return 1.0 if self.rank[g, i] < self.rank[g, j] else 0.0

    @classmethod
    def cyclic(cls, weights: Sequence[float] = (0.45, 0.35, 0.20)) -> RaterGroups:
        """Condorcet's paradox over A, B, C: groups A>B>C, B>C>A, C>A>B with weights (w1, w2, w3), so

            P(A>B) = w1 + w3,   P(B>C) = w1 + w2,   P(C>A) = w2 + w3,

        a majority cycle A > B > C > A whenever every weight is below 1/2. The defaults give 0.65, 0.80 and 0.55.
        """
        return cls(rankings=[(0, 1, 2), (1, 2, 0), (2, 0, 1)], weights=list(weights), names=("A", "B", "C"))

    @classmethod
    def transitive(cls, weights: Sequence[float] = (0.45, 0.35, 0.20)) -> RaterGroups:
        """A control where the groups disagree but the majority does not cycle: groups A>B>C, A>C>B, B>A>C, so

            P(A>B) = w1 + w2,   P(A>C) = 1,   P(B>C) = w1 + w3,

        and A is the Condorcet winner (beats every other response) whenever w3 < 1/2. The defaults give 0.80, 1, 0.65.
        """
        return cls(rankings=[(0, 1, 2), (0, 2, 1), (1, 0, 2)], weights=list(weights), names=("A", "B", "C"))

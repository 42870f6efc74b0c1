"""Rater groups over string-world responses, keyed to a surface feature of the response (its length, by default).

A trait (a number read off the response text) puts each response in one of three levels by two cut points
(``low``, ``mid``, ``high``: e.g. short, medium, long answers). Rater groups rank the *levels*, as the groups of
:class:`prefkit.worlds.raters.RaterGroups` rank fixed responses, so for responses a, b of levels l(a), l(b)

    P(a ≻ b) = Σ_g w_g · 1[group g ranks l(a) above l(b)],      P = 1/2 when l(a) = l(b) (a tie),

exactly, for any pair, answers to different prompts included (a rater reads two answers, each to its own prompt).
``transitive=False`` uses Condorcet's groups (low > mid > high, mid > high > low, high > low > mid), whose majority
cycles: low ≻ mid ≻ high ≻ low. ``transitive=True`` uses the control groups of ``RaterGroups.transitive`` (low >
mid > high, low > high > mid, mid > low > high) with the same weights: the groups still disagree, but the majority
orders the levels. No Bradley-Terry reward r(y) can follow the cyclic majority on all three level pairs (any r
orders the levels' mean rewards); a general preference model (Zhang et al. 2025, arXiv:2410.02197) can, if the
response's features place the three levels at distinct, non-collinear points.

This mirrors how the GPM paper builds its cyclic preference sets (App. E: each edge of a cycle is judged by a
different criterion); here the criteria are the groups' different tastes in one surface trait, which a frozen SFT
model's last hidden state encodes (length), whereas it hardly encodes correctness.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .raters import RaterGroups
from .strings import LETTERS, split_steps


def _letters(response: str) -> list[str]:
    return [w for w in response.split() if len(w) == 1 and w in LETTERS]


TRAITS: dict[str, Callable[[str], float]] = {
    "length": lambda y: float(len(y.split())),  # tokens in the response, separators included
    "steps": lambda y: float(len(split_steps(y))),  # number of |-separated steps
    "final_length": lambda y: float(len((split_steps(y) or [[]])[-1])),  # tokens of the final step
    "last_letter": lambda y: float(LETTERS.index(_letters(y)[-1])) if _letters(y) else -1.0,  # 0 (a) .. 7 (h)
}
LEVELS = ("low", "mid", "high")


@dataclass
class FeatureRaters:
    """Rater groups ranking three levels of a response trait (see the module docstring).

    ``cuts`` (c1, c2), c1 < c2: level 0 if trait < c1, 1 if c1 <= trait < c2, else 2. ``groups`` ranks the levels
    0, 1, 2 (its ``names`` are :data:`LEVELS`). Build one with :meth:`make`; read P with :meth:`prob` (exact, for
    evaluation) and draw labels with :meth:`compare` (what a learner sees).
    """

    trait: str
    cuts: tuple[float, float]
    groups: RaterGroups
    _P: np.ndarray = field(init=False, repr=False, compare=False)  # (3, 3) level preference matrix

    def __post_init__(self):
        if self.trait not in TRAITS:
            raise ValueError(f"unknown trait {self.trait!r}; expected one of {sorted(TRAITS)}")
        c1, c2 = (float(c) for c in self.cuts)
        if not c1 < c2:
            raise ValueError(f"cuts must be increasing (c1 < c2), got {self.cuts}")
        if self.groups.n != 3:
            raise ValueError(f"groups must rank 3 levels, got {self.groups.n}")
        self.cuts = (c1, c2)
        self._P = self.groups.preference_matrix()

    @classmethod
    def make(
        cls,
        responses: Sequence[str],  # responses that fix the cut points (e.g. a training split's samples)
        transitive: bool,
        trait: str = "length",
        weights: Sequence[float] = (0.45, 0.35, 0.20),
    ) -> FeatureRaters:
        """Groups over the trait's terciles in ``responses`` (so the three levels are about equally common):
        Condorcet's cyclic groups (``transitive=False``) or the transitive control, with ``weights``."""
        if trait not in TRAITS:
            raise ValueError(f"unknown trait {trait!r}; expected one of {sorted(TRAITS)}")
        values = np.array([TRAITS[trait](y) for y in responses], dtype=float)
        if values.size == 0:
            raise ValueError("need responses to place the cut points")
        c1, c2 = np.quantile(values, [1 / 3, 2 / 3])
        if not c1 < c2:  # a trait with few distinct values: move the upper cut to the next value above c1
            above = values[values > c1]
            if above.size == 0:
                raise ValueError(f"trait {trait!r} takes a single value on these responses: no levels")
            c2 = float(above.min())
        groups = RaterGroups.transitive(weights) if transitive else RaterGroups.cyclic(weights)
        return cls(trait, (float(c1), float(c2)), RaterGroups(groups.rankings, groups.weights, LEVELS))

    @property
    def transitive(self) -> bool:
        """Whether the majority over the levels is transitive (no cycle)."""
        from ..gpm import majority_is_transitive

        return majority_is_transitive(self._P)

    def levels(self, responses: Sequence[str]) -> np.ndarray:
        """Level (N,) of each response: 0 below the first cut, 1 between the cuts, 2 from the second cut up."""
        values = np.array([TRAITS[self.trait](y) for y in responses], dtype=float)
        return np.searchsorted(np.array(self.cuts), values, side="right")

    def prob(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """Exact P(a_n ≻ b_n) (N,) for paired responses; 1/2 where the two share a level."""
        if len(a) != len(b):
            raise ValueError(f"{len(a)} first responses for {len(b)} second ones (pairs need one of each)")
        return self._P[self.levels(a), self.levels(b)]

    def compare(self, a: Sequence[str], b: Sequence[str], rng: np.random.Generator) -> np.ndarray:
        """Sampled labels (N,): 1.0 if a rater drawn by weight prefers a_n, else 0.0 (a tie is a fair coin)."""
        return (rng.random(len(a)) < self.prob(a, b)).astype(float)

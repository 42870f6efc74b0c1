"""A sentiment-intensity world: template sentences with a latent score, simulated annotators, crowd and "LLM" judges.

Every sentence is built from a small valence lexicon, so its latent score s is known exactly:

    phrase value   v = m · a          (a: the adjective's valence, m: the intensifier's multiplier, 1 without one)
    negated phrase v = -ρ · m · a     ("not very good": negation flips and dampens, ρ = 1/2)
    one clause     s = v
    "A and B"      s = (v_A + v_B) / 2
    "A, but B"     s = 0.3 v_A + 0.7 v_B   (the clause after "but" / "although ..." carries the verdict)

The true class is negative (s < -b), neutral (|s| <= b) or positive (s > b) with the neutral band b. The oracle (s and
the true class) builds the simulated human data and scores the evaluation; a learner sees only the sentences and what
the simulated people say about them:

- **annotators**: each of k annotators reads s with Gaussian noise, ŝ = s + ε, ε ~ N(0, σ²), and votes the class of ŝ.
  The training label is the plurality vote (ties broken at random); the vote fractions are the annotation record.
- **crowd comparisons**: asked which of two sentences is more {label}, a worker answers x1 with probability
  σ((g_y(s1) - g_y(s2)) / τ), where g_y is the intensity of class y: s for positive, -s for negative, -|s| for neutral.
- **the "LLM"**: a zero-shot judge that compares the two sentences' cosine similarity to a description of the class
  ("This review is very positive.") in a sentence encoder's space, with a tie band: no oracle, its own errors.

Used by ``notebooks/08_p2c`` (Kim et al. 2023, "Prefer to Classify", arXiv:2306.04925).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..data import PreferenceDataError

CLASSES = ("negative", "neutral", "positive")

ADJECTIVES = {  # valence a of each adjective, in [-1, 1]
    "superb": 0.9, "amazing": 0.9, "fantastic": 0.9, "excellent": 0.85, "wonderful": 0.85, "great": 0.75,
    "lovely": 0.65, "good": 0.55, "enjoyable": 0.5, "nice": 0.45, "pleasant": 0.4, "solid": 0.35, "decent": 0.25,
    "fine": 0.15, "acceptable": 0.1, "okay": 0.05, "average": 0.0, "standard": 0.0, "ordinary": -0.05,
    "unremarkable": -0.1, "mediocre": -0.25, "dull": -0.3, "weak": -0.35, "boring": -0.4, "unpleasant": -0.45,
    "poor": -0.45, "disappointing": -0.5, "bad": -0.55, "terrible": -0.85, "awful": -0.85, "horrible": -0.9,
    "dreadful": -0.9,
}  # fmt: skip
INTENSIFIERS = {  # multiplier m of each intensifier ("" = none)
    "": 1.0, "very": 1.4, "really": 1.3, "extremely": 1.7, "incredibly": 1.7, "quite": 1.15, "fairly": 0.8,
    "somewhat": 0.6, "a bit": 0.5, "slightly": 0.4,
}  # fmt: skip
NEGATION_DAMPING = 0.5  # ρ: "not good" is about half as negative as "good" is positive
SUBJECTS = (
    "the food", "the service", "the movie", "the acting", "the hotel", "the room", "the staff", "the plot",
    "the price", "the phone", "the battery", "the music", "the ending", "the book", "the coffee", "the delivery",
)  # fmt: skip
ONE_CLAUSE = ("{A} was {p}.", "I thought {a} was {p}.", "Honestly, {a} was {p}.", "Overall, {a} was {p}.",
              "{A} is {p}, in my opinion.")  # fmt: skip
TWO_CLAUSES = (  # template, weight of the first clause (the second gets 1 - w)
    ("{A} was {p}, but {b} was {q}.", 0.3),
    ("Although {a} was {p}, {b} was {q}.", 0.3),
    ("{A} was {p} and {b} was {q}.", 0.5),
)
DESCRIPTIONS = {  # what the zero-shot "LLM" compares a sentence with, per class
    "negative": "This review is very negative.",
    "neutral": "This review is neutral, neither good nor bad.",
    "positive": "This review is very positive.",
}


_ADJ = list(ADJECTIVES)
_INT = [k for k in INTENSIFIERS if k]


def phrase(rng: np.random.Generator, p_negation: float = 0.2, p_intensifier: float = 0.6) -> tuple[str, float]:
    """One predicate ("not very good") and its value v."""
    adj = _ADJ[rng.integers(len(_ADJ))]
    inten = _INT[rng.integers(len(_INT))] if rng.random() < p_intensifier else ""
    v = INTENSIFIERS[inten] * ADJECTIVES[adj]
    words = [inten, adj] if inten else [adj]
    if rng.random() < p_negation:
        return " ".join(["not", *words]), -NEGATION_DAMPING * v
    return " ".join(words), v


def sentence(rng: np.random.Generator, p_two: float = 0.4) -> tuple[str, float]:
    """One template sentence and its latent score s."""
    a = int(rng.integers(len(SUBJECTS)))
    b = (a + 1 + int(rng.integers(len(SUBJECTS) - 1))) % len(SUBJECTS)  # a different subject
    a, b = SUBJECTS[a], SUBJECTS[b]
    p, v = phrase(rng)
    if rng.random() >= p_two:
        t = ONE_CLAUSE[rng.integers(len(ONE_CLAUSE))]
        return t.format(A=a.capitalize(), a=a, p=p), v
    q, u = phrase(rng)
    t, w = TWO_CLAUSES[rng.integers(len(TWO_CLAUSES))]
    return t.format(A=a.capitalize(), a=a, b=b, p=p, q=q), w * v + (1 - w) * u


def class_of(scores: np.ndarray, band: float) -> np.ndarray:
    """Class index (0 negative, 1 neutral, 2 positive) of latent scores (N,) with neutral band ``band``."""
    s = np.asarray(scores, dtype=float)
    return np.where(s < -band, 0, np.where(s > band, 2, 1))


def intensity(scores: np.ndarray, label: np.ndarray) -> np.ndarray:
    """g_y(s): how much a sentence of score s is of class y (higher = more): -s, -|s| or s."""
    s, y = np.asarray(scores, dtype=float), np.asarray(label)
    return np.where(y == 0, -s, np.where(y == 2, s, -np.abs(s)))


def check_pairs(pairs: np.ndarray, n: int) -> np.ndarray:
    """Pairs (P, 2) of distinct indices into ``n`` items; raises :class:`PreferenceDataError` naming the bad row."""
    pairs = np.asarray(pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise PreferenceDataError(None, "pairs", f"must have shape (P, 2), got {pairs.shape}")
    if len(pairs) and not np.issubdtype(pairs.dtype, np.integer):
        raise PreferenceDataError(None, "pairs", f"must hold integer indices, got dtype {pairs.dtype}")
    for r, (i, j) in enumerate(pairs):
        for f, k in (("x1", i), ("x2", j)):
            if not 0 <= k < n:
                raise PreferenceDataError(r, f, f"index {k} out of range for {n} items")
        if i == j:
            raise PreferenceDataError(r, "x2", f"pairs an item with itself (index {i})")
    return pairs.astype(np.int64)


@dataclass
class SentimentWorld:
    """Unique template sentences split into a training pool (to be labelled) and a test set, with the oracle.

    ``train_scores`` / ``test_scores`` and ``true_labels`` are the oracle: use them to simulate people and to evaluate,
    never inside a learner.
    """

    seed: int = 0
    n_train: int = 2000  # sentences in the pool a labelled subset is drawn from
    n_test: int = 1000  # held-out sentences, scored on their true class
    neutral_band: float = 0.2  # b: |s| <= b is neutral
    annotator_noise: float = 0.3  # σ: each annotator's reading error of s
    n_annotators: int = 5  # k votes per sentence
    crowd_tau: float = 0.2  # τ: temperature of the crowd's comparisons (0: noiseless)
    train_text: list[str] = field(init=False, repr=False)
    test_text: list[str] = field(init=False, repr=False)
    train_scores: np.ndarray = field(init=False, repr=False)  # (n_train,)
    test_scores: np.ndarray = field(init=False, repr=False)  # (n_test,)

    classes = CLASSES
    descriptions = DESCRIPTIONS

    def __post_init__(self):
        for name in ("n_train", "n_test", "n_annotators"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("neutral_band", "annotator_noise", "crowd_tau"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        rng = np.random.default_rng(self.seed)
        seen: dict[str, float] = {}
        need = self.n_train + self.n_test
        for _ in range(50 * need):
            text, s = sentence(rng)
            seen.setdefault(text, s)
            if len(seen) == need:
                break
        else:
            raise ValueError(f"could not draw {need} distinct sentences; ask for fewer")
        texts, scores = list(seen), np.array(list(seen.values()))
        order = rng.permutation(need)  # unique sentences, shuffled, then split: no sentence is in both splits
        self.train_text = [texts[i] for i in order[: self.n_train]]
        self.test_text = [texts[i] for i in order[self.n_train :]]
        self.train_scores, self.test_scores = scores[order[: self.n_train]], scores[order[self.n_train :]]

    @property
    def n_classes(self) -> int:
        return len(CLASSES)

    def true_labels(self, split: str = "test") -> np.ndarray:
        """The oracle's class of every sentence of ``split`` ("train" or "test")."""
        return class_of(self._scores(split), self.neutral_band)

    def _scores(self, split: str) -> np.ndarray:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return self.train_scores if split == "train" else self.test_scores

    def annotate(self, idx: Sequence[int], rng: np.random.Generator, noise: float | None = None) -> np.ndarray:
        """Votes (len(idx), k) of the k simulated annotators on training sentences ``idx`` (class indices)."""
        idx = np.asarray(idx, dtype=np.int64)
        sigma = self.annotator_noise if noise is None else noise
        s = self.train_scores[idx][:, None] + sigma * rng.standard_normal((len(idx), self.n_annotators))
        return class_of(s, self.neutral_band)

    def vote_fractions(self, votes: np.ndarray) -> np.ndarray:
        """The annotation record: fraction of votes per class, (N, C)."""
        votes = np.asarray(votes)
        return np.stack([(votes == c).mean(1) for c in range(self.n_classes)], 1)

    @staticmethod
    def majority(votes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Plurality vote per row of ``votes`` (N, k); a tie between classes is broken uniformly at random."""
        votes = np.asarray(votes)
        counts = np.stack([(votes == c).sum(1) for c in range(len(CLASSES))], 1)  # (N, C)
        top = counts == counts.max(1, keepdims=True)
        return np.array([rng.choice(np.flatnonzero(t)) for t in top])

    def sample_labelled(self, n: int, rng: np.random.Generator, noise: float | None = None) -> dict[str, np.ndarray]:
        """A labelling budget: ``n`` pool sentences drawn at random, each annotated by the k annotators.

        Returns ``idx`` (n,) into the pool, ``votes`` (n, k), ``labels`` (n,) the plurality votes (what a learner
        trains on) and ``fractions`` (n, C) the annotation record."""
        if not 0 < n <= self.n_train:
            raise ValueError(f"n must lie in [1, {self.n_train}] (the pool size), got {n}")
        idx = rng.choice(self.n_train, n, replace=False)
        votes = self.annotate(idx, rng, noise)
        return {
            "idx": idx,
            "votes": votes,
            "labels": self.majority(votes, rng),
            "fractions": self.vote_fractions(votes),
        }

    def oracle_pairs(self, n: int, rng: np.random.Generator, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
        """``n`` random pairs (n, 2) of sentences of ``split`` with the same *true* class, and the oracle's answer
        (n,) to "which is more {class}?" (1, 0, or 1/2 for equal scores): for evaluating preference heads."""
        y = self.true_labels(split)
        s = self._scores(split)
        i = rng.integers(len(y), size=4 * n)
        j = rng.integers(len(y), size=4 * n)
        keep = (i != j) & (y[i] == y[j])
        i, j = i[keep][:n], j[keep][:n]
        if len(i) < n:
            raise ValueError(f"could not draw {n} same-class pairs from {len(y)} sentences")
        g1, g2 = intensity(s[i], y[i]), intensity(s[j], y[i])
        return np.stack([i, j], 1), np.where(g1 > g2, 1.0, np.where(g1 < g2, 0.0, 0.5))

    def crowd(self, idx: Sequence[int], pairs: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
              tau: float | None = None) -> np.ndarray:  # fmt: skip
        """One crowd worker's answer per pair (P,): 1.0 if x1 is more {labels[x1]} than x2, else 0.0.

        ``pairs`` index into ``idx`` (the labelled training sentences) and ``labels`` are their observed labels; a
        pair is asked about the class of its first item. τ = 0 answers by the oracle's order (ties: 0.5).
        """
        idx = np.asarray(idx, dtype=np.int64)
        pairs = check_pairs(pairs, len(idx))
        y = np.asarray(labels)[pairs[:, 0]]
        g1 = intensity(self.train_scores[idx[pairs[:, 0]]], y)
        g2 = intensity(self.train_scores[idx[pairs[:, 1]]], y)
        tau = self.crowd_tau if tau is None else tau
        if tau == 0:
            return np.where(g1 > g2, 1.0, np.where(g1 < g2, 0.0, 0.5))
        p = 1.0 / (1.0 + np.exp(-(g1 - g2) / tau))  # P(x1 ≻ x2 | y) = σ((g_y(s1) - g_y(s2)) / τ)
        return (rng.random(len(p)) < p).astype(float)

    def crowd_probability(self, s1: np.ndarray, s2: np.ndarray, label: np.ndarray, tau: float | None = None):
        """The crowd's exact P(x1 ≻ x2 | y) for latent scores ``s1``, ``s2`` (for checks and figures)."""
        tau = self.crowd_tau if tau is None else tau
        d = intensity(s1, label) - intensity(s2, label)
        return 1.0 / (1.0 + np.exp(-d / tau))


def llm_judge(features: np.ndarray, description_features: np.ndarray, pairs: np.ndarray, labels: np.ndarray,
              tie_band: float = 0.02) -> np.ndarray:  # fmt: skip
    """The zero-shot "LLM" source: which sentence of a pair is more {label}, by cosine similarity to the class's
    description in an encoder's space.

    ``features`` (N, d) encode the sentences, ``description_features`` (C, d) the class descriptions; ``pairs``
    (P, 2) index into the N sentences and ``labels`` (N,) are their observed labels (a pair asks about its first item's
    class). Returns (P,) 1.0 (x1), 0.0 (x2) or 0.5 (tie: the similarities differ by at most ``tie_band``).
    """
    f = np.asarray(features, dtype=float)
    d = np.asarray(description_features, dtype=float)
    pairs = check_pairs(pairs, len(f))
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    y = np.asarray(labels)[pairs[:, 0]]
    sim1 = (f[pairs[:, 0]] * d[y]).sum(1)  # (P,) cos(x1, description of y)
    sim2 = (f[pairs[:, 1]] * d[y]).sum(1)
    return np.where(sim1 - sim2 > tie_band, 1.0, np.where(sim2 - sim1 > tie_band, 0.0, 0.5))

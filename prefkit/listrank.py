"""Lists of sentences from the sentiment world for scorer-side ranking experiments: domains, annotator ratings, lists.

- :func:`subject_domains`: the domain of each template sentence by the subjects it talks about (the first half of
  ``SUBJECTS``, the second half, or both), for an honest cross-domain split: the adjectives are shared, the nouns are
  not.
- :func:`annotator_ratings`: the mean of k simulated annotators' continuous readings ŝ = s + ε, ε ~ N(0, σ²) of each
  sentence's latent score (the sentiment world's annotator model, read as a rating instead of a class vote): what a
  learner's list labels are built from, like averaged attribute ratings in speech emotion corpora.
- :func:`sample_lists`: lists of distinct items drawn from a pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .worlds.sentiment import SUBJECTS, SentimentWorld


def subject_domains(texts: Sequence[str], first: Sequence[str] = SUBJECTS[: len(SUBJECTS) // 2]) -> np.ndarray:
    """Per sentence: 0 if every subject it names is in ``first``, 1 if none is, -1 if it mixes both (or names none)."""
    first, out = set(first), []
    for text in texts:
        named = {s for s in SUBJECTS if s in text.lower()}
        if not named:
            out.append(-1)
        else:
            inside = len(named & first)
            out.append(0 if inside == len(named) else 1 if inside == 0 else -1)
    return np.array(out, dtype=int)


def annotator_ratings(world: SentimentWorld, idx: Sequence[int], rng: np.random.Generator, n_annotators: int,
                      split: str = "train") -> np.ndarray:  # fmt: skip
    """Mean of ``n_annotators`` noisy readings s + ε (ε ~ N(0, world.annotator_noise²)) of sentences ``idx`` of
    ``split``: (len(idx),). This simulates people from the oracle; a learner sees only the returned ratings."""
    if n_annotators < 1:
        raise ValueError(f"n_annotators must be >= 1, got {n_annotators}")
    s = world.train_scores if split == "train" else world.test_scores
    idx = np.asarray(idx, dtype=np.int64)
    readings = s[idx][:, None] + world.annotator_noise * rng.standard_normal((len(idx), n_annotators))
    return readings.mean(1)


def sample_lists(pool: Sequence[int], n_lists: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n_lists`` lists (n_lists, size) of ``size`` distinct items each, drawn from ``pool`` (items may recur across
    lists)."""
    pool = np.asarray(pool, dtype=np.int64)
    if size > len(pool):
        raise ValueError(f"lists of {size} need a pool of at least {size} items, got {len(pool)}")
    return np.stack([rng.choice(pool, size, replace=False) for _ in range(n_lists)])


def sentiment_lists(world: SentimentWorld, features, split: str, pool: Sequence[int], n_lists: int, size: int,
                    rng: np.random.Generator, n_annotators: int | None = None):  # fmt: skip
    """Lists of sentences of ``split`` drawn from ``pool``: features (L, size, d) (``features`` (N, d) torch tensor
    of that split) and labels: the mean of ``n_annotators`` annotators' ratings as a float tensor (L, size) for
    training, or with ``n_annotators=None`` the latent truth as an array (L, size), for evaluation only."""
    import torch

    idx = sample_lists(pool, n_lists, size, rng)
    x = features[torch.as_tensor(idx)]
    if n_annotators is None:
        return x, (world.train_scores if split == "train" else world.test_scores)[idx]
    y = annotator_ratings(world, idx.ravel(), rng, n_annotators, split).reshape(idx.shape)
    return x, torch.as_tensor(y, dtype=torch.float32)

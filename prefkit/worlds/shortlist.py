"""Shortlists: rank 8 candidate items for a query, an offline ranking world with graded relevance and sparse feedback.

A prompt is a query word and 8 distinct candidate items; the response is the 8 candidates, most relevant first::

    prompt:   q3 : x12 x5 x30 x19 x3 x8 x27 x14 =
    response: x19 x3 x27 x12 x5 x30 x8 x14

Hidden rule. Item ``x<k>`` belongs to topic ``k mod n_topics``; query ``q<t>`` wants topic t most (relevance 3), then
topic t + 1 (2), then t + 2 (1), all mod n_topics; every other item has relevance 0. A model learns the rule from the
demonstrations (through the items' and queries' embeddings) without ever seeing it.

Demonstrations. A careless curator sorts the candidates by relevance + Gaussian noise of scale ``demo_noise``, so a
model fine-tuned on them ranks better than chance but mixes up neighbouring grades.

Feedback (what preference training may use). For a prompt, the world marks only its ``feedback_k`` (2) most relevant
candidates, with their graded relevance (ties broken by a fixed per-prompt coin); every other item is unmarked, i.e.
relevance 0 to the learner. The oracle (evaluation only) knows every item's relevance.

Oracle score of a response: NDCG@3 of its first three words, each counting only if it is a candidate not named
before (gain 2^rel - 1, discount 1/log2(1 + position)), so a repeated or invented item earns nothing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerFast

from .strings import word_tokenizer


def _gain(rel: float) -> float:
    return 2.0**rel - 1.0


def dcg(rels: Sequence[float], k: int) -> float:
    """Σ_{r=1..k} (2^rel_r - 1) / log2(r + 1) of relevances in ranked order."""
    return sum(_gain(x) / math.log2(r + 2) for r, x in enumerate(list(rels)[:k]))


def parse_prompt(prompt: str) -> tuple[str, list[str]]:
    """``"q3 : x12 x5 ... ="`` -> ``("q3", ["x12", "x5", ...])``."""
    words = prompt.split()
    if len(words) < 4 or words[1] != ":" or words[-1] != "=":
        raise ValueError(f"not a prompt of the shortlist world: {prompt!r}")
    return words[0], words[2:-1]


@dataclass
class ShortlistWorld:
    """The shortlist world: tokenizer, prompt splits, noisy demonstrations, sparse feedback and the full oracle.

    ``train_prompts`` and ``eval_prompts`` are distinct, disjoint and a function of ``seed`` alone. Every prompt has at
    least ``min_relevant`` candidates of relevance > 0, so its top-``feedback_k`` feedback is never empty.
    """

    seed: int = 0
    n_train: int = 2000
    n_eval: int = 256
    n_items: int = 32
    n_topics: int = 8
    n_candidates: int = 8
    min_relevant: int = 2
    demo_noise: float = 1.0  # curator noise on the relevance scale (grades 1 apart swap ≈ 24% of the time)
    feedback_k: int = 2  # the feedback marks this many items: the top ones by relevance
    tokenizer: PreTrainedTokenizerFast = field(init=False, repr=False, compare=False)
    train_prompts: list[str] = field(init=False, repr=False, compare=False)
    eval_prompts: list[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not (2 <= self.n_candidates <= self.n_items and 1 <= self.feedback_k <= self.n_candidates):
            raise ValueError("need 2 <= n_candidates <= n_items and 1 <= feedback_k <= n_candidates")
        if self.n_topics < 3 or self.min_relevant > self.n_candidates:
            raise ValueError("need n_topics >= 3 and min_relevant <= n_candidates")
        self.items = [f"x{k}" for k in range(self.n_items)]
        self.queries = [f"q{t}" for t in range(self.n_topics)]
        self.tokenizer = word_tokenizer((*self.queries, *self.items, ":", "="))
        rng = random.Random(f"shortlist-{self.seed}")
        prompts: dict[str, None] = {}
        for _ in range(100 * (self.n_train + self.n_eval) + 1000):
            if len(prompts) == self.n_train + self.n_eval:
                break
            p = self.random_prompt(rng)
            if sum(r > 0 for r in self.relevance(p)) >= self.min_relevant:
                prompts[p] = None
        else:
            raise ValueError("could not draw enough distinct prompts; lower min_relevant or raise n_items")
        ps = list(prompts)
        self.train_prompts, self.eval_prompts = ps[: self.n_train], ps[self.n_train :]

    def random_prompt(self, rng: random.Random) -> str:
        q = rng.choice(self.queries)
        return " ".join([q, ":", *rng.sample(self.items, self.n_candidates), "="])

    # ---- oracle ----------------------------------------------------------------------------------------------

    def item_relevance(self, query: str, item: str) -> int:
        """3, 2, 1 for items of the query's topic t, t + 1, t + 2 (mod n_topics); else 0."""
        t, k = int(query[1:]), int(item[1:])
        return {0: 3, 1: 2, 2: 1}.get((k % self.n_topics - t) % self.n_topics, 0)

    def relevance(self, prompt: str) -> list[int]:
        """Oracle relevance of each candidate, in prompt order."""
        q, cands = parse_prompt(prompt)
        return [self.item_relevance(q, c) for c in cands]

    def ideal_order(self, prompt: str) -> list[int]:
        """Candidate indices by relevance (ties in prompt order)."""
        rel = self.relevance(prompt)
        return sorted(range(len(rel)), key=lambda i: -rel[i])

    def score(self, prompt: str, response: str, k: int = 3) -> float:
        """NDCG@k of the response's first k words; a repeated, invented or missing item gains 0."""
        q, cands = parse_prompt(prompt)
        rel = dict(zip(cands, self.relevance(prompt)))
        seen, got = set(), []
        for w in response.split()[:k]:
            got.append(rel.get(w, 0) if w not in seen else 0)
            seen.add(w)
        ideal = dcg(sorted(rel.values(), reverse=True), k)
        return dcg(got, k) / ideal if ideal > 0 else 0.0

    def chance_ndcg(self, prompt: str, k: int = 3) -> float:
        """Expected NDCG@k of a uniformly random order: every position's expected gain is the mean gain."""
        rel = self.relevance(prompt)
        mean_gain = sum(_gain(x) for x in rel) / len(rel)
        ideal = dcg(sorted(rel, reverse=True), k)
        return mean_gain * sum(1 / math.log2(r + 2) for r in range(min(k, len(rel)))) / ideal

    # ---- what a learner may see ----------------------------------------------------------------------------------

    def feedback(self, prompt: str) -> dict[str, int]:
        """Sparse graded feedback: the ``feedback_k`` most relevant candidates and their relevance (ties broken by a
        coin fixed per prompt); unmarked items are absent (relevance 0 to the learner)."""
        q, cands = parse_prompt(prompt)
        rel = self.relevance(prompt)
        coin = random.Random(f"feedback-{self.seed}-{prompt}")
        tie = [coin.random() for _ in cands]
        top = sorted(range(len(cands)), key=lambda i: (-rel[i], tie[i]))[: self.feedback_k]
        return {cands[i]: rel[i] for i in top if rel[i] > 0}

    def demonstration(self, prompt: str, rng: random.Random) -> str:
        """The candidates sorted by relevance + N(0, demo_noise²) noise."""
        _, cands = parse_prompt(prompt)
        keys = [r + rng.gauss(0.0, self.demo_noise) for r in self.relevance(prompt)]
        return " ".join(c for _, c in sorted(zip(keys, cands), key=lambda t: -t[0]))

    def sft_rows(self, demos_per_prompt: int, rng: random.Random) -> list[dict]:
        """``demos_per_prompt`` fresh noisy demonstrations of each training prompt."""
        return [
            {"prompt": p, "response": self.demonstration(p, rng)}
            for p in self.train_prompts
            for _ in range(demos_per_prompt)
        ]

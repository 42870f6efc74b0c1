"""A judging task a small model can learn: balanced lessons and a query that lines the answers up token by token.

:class:`prefkit.worlds.JudgeStringWorld` writes a judge query as ``judge <prompt> ref <reference> ? <a> vs <b> ?``
and teaches each labelled comparison once. Two things kept a small model from learning to judge there:

- **Position.** Its second answer is drawn until it differs from the first, which makes the first the clean
  demonstration more often than not, so about 70% of its lessons answer "first". A 0.5M-parameter Llama learned
  that prior and little else: on oracle-labelled pairs it said "first" with probability 0.77 whichever response
  came first (the seed-0 base of notebook 07, 2500 SFT steps).
- **Distance.** With lessons balanced (each comparison in both orders), the same model answered "first" with
  probability 0.50-0.53 whatever it read (world seed 100, 2500 steps, 4 or 8 comparisons per training prompt): it
  never learned to compare answers written one after the other, where the letter of ``a`` to check against the
  reference sits a varying number of tokens away.

Here each comparison is taught in both orders (better-then-worse answered "first", worse-then-better "second"), and
the query interleaves the reference and the two answers token by token, padded with ``_``::

    judge shift : a b = ? b b b c c d ?        (reference "b c", a = "b c", b = "b d")

so checking ``a`` and ``b`` against the reference at each position is a look at the two preceding tokens. With
that alone the judge learned to read the answers (P(first) 0.63 with the better answer first, 0.49 with it second;
mean |P - 1/2| 0.21 after averaging both orders) but agreed with the oracle on only 0.57-0.60 of pairs of its own
samples (world seed 100, 2500 steps, 4 comparisons per prompt).

A lesson's reference is the gold answer: a teacher's worked solution. A third noisy demonstration as reference (as
in :class:`JudgeStringWorld`) is wrong in about a third of the lessons, and there the label (the higher oracle
score) contradicts "closer to the reference", which is the rule the judge must learn. At judging time the reference
is the judge's own greedy answer, as before: the judge is still only as good as its own answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..selfjudge import Judge
from .strings import JUDGE_WORDS, SPECIAL, VOCAB, JudgeStringWorld, StringWorld, split_steps, word_tokenizer

PAD = "_"


def interleave(reference: str, a: str, b: str, max_tokens: int = 32) -> str:
    """``reference``, ``a`` and ``b`` token by token: ``r1 a1 b1 r2 a2 b2 ...``, the shorter ones padded with
    ``_``, each cut after ``max_tokens`` tokens (a world's gold answers are at most 23 tokens)."""
    seqs = [s.split()[:max_tokens] for s in (reference, a, b)]
    n = max(map(len, seqs))
    return " ".join(s[i] if i < len(s) else PAD for i in range(n) for s in seqs)


@dataclass(frozen=True)
class AlignedJudge(Judge):
    """A reference-guided judge whose query lines up the reference and both answers token by token
    (:func:`interleave`); ``self_judge`` calls :meth:`query`, so it works wherever a :class:`Judge` does."""

    template: str = "judge {prompt} ? {aligned} ?"
    answers: tuple[str, str] = ("first", "second")

    @property
    def guided(self) -> bool:
        return True

    def query(self, prompt: str, a: str, b: str, reference: str = "") -> str:
        return self.template.format(prompt=prompt, aligned=interleave(reference, a, b))


@dataclass
class AlignedJudgeWorld(JudgeStringWorld):
    """:class:`JudgeStringWorld` with the judging lessons of this module: ``judge_per_prompt`` lessons per training
    prompt (so it must be even), i.e. ``judge_per_prompt / 2`` comparisons of two noisy demonstrations with different
    oracle scores, each shown in both orders with the gold answer as reference, in :class:`AlignedJudge`'s query."""

    judge_per_prompt: int = 8
    lessons: str = field(default="both orders, aligned, gold reference", init=False)  # part of a cached base's key

    def __post_init__(self):
        if self.judge_per_prompt % 2:
            raise ValueError(f"judge_per_prompt must be even (each comparison is shown in both orders), got "
                             f"{self.judge_per_prompt}")  # fmt: skip
        super().__post_init__()
        self.tokenizer = word_tokenizer((*VOCAB[len(SPECIAL) :], *JUDGE_WORDS, PAD))
        self.judge_template = AlignedJudge.template

    @property
    def judge(self) -> AlignedJudge:
        """The judge the lessons teach, for ``prefkit.selfjudge``."""
        return AlignedJudge()

    def judge_query(self, prompt: str, a: str, b: str, reference: str) -> str:
        return self.judge.query(prompt, a, b, reference)

    def comparison(self, prompt: str, rng: random.Random) -> tuple[str, str]:
        """Two noisy demonstrations of ``prompt`` with different oracle scores, as (better, worse)."""
        a = self.demonstration(prompt, rng)
        sa = self.score(prompt, a)
        for _ in range(100):
            b = self.demonstration(prompt, rng)
            if self.score(prompt, b) != sa:
                break
        else:  # the writer's slips never change the score here (e.g. demo_noise = 0): corrupt a copy of a
            for _ in range(100):
                b = " | ".join(" ".join(self.corrupt(st, rng)) for st in split_steps(a))
                if self.score(prompt, b) != sa:
                    break
            else:
                raise ValueError(f"no two answers with different scores found for prompt {prompt!r}")
        return (a, b) if sa > self.score(prompt, b) else (b, a)

    def judge_lessons(self, prompt: str, rng: random.Random) -> list[dict]:
        """One comparison taught in both orders: ``[{"prompt": query, "response": "first"}, {... "second"}]``."""
        better, worse = self.comparison(prompt, rng)
        ref = self.gold(prompt)
        first, second = self.judge_answers
        return [
            {"prompt": self.judge_query(prompt, better, worse, reference=ref), "response": first},
            {"prompt": self.judge_query(prompt, worse, better, reference=ref), "response": second},
        ]

    def sft_rows(self, demos_per_prompt: int, rng: random.Random) -> list[dict]:
        rows = StringWorld.sft_rows(self, demos_per_prompt, rng)
        return rows + [
            lesson
            for p in self.train_prompts
            for _ in range(self.judge_per_prompt // 2)
            for lesson in self.judge_lessons(p, rng)
        ]

"""Judging lessons graded against their reference, so that a judge must read the reference to answer them.

:class:`prefkit.worlds.judging.AlignedJudgeWorld` answers each lesson with the oracle's choice and always shows the
gold answer as reference. On its development world (seed 100, 8 lessons per prompt, 2500 SFT steps), measured with
the base's own greedy answer or the gold answer as reference, its judge agreed with the oracle on

- 0.76 of held-out lesson pairs (two noisy demonstrations), but on 0.56-0.57 of pairs of its own samples;
- 0.61 of lesson pairs with an *empty* reference, and 0.58 with the worse answer as reference.

So it had learned mostly that an answer with a writer's slip (a random letter) looks worse. That holds for lessons
and not for a model's own mistakes, which are plausible letters, and it needs no reference.

Here a lesson's answer is the grade a teacher gives the two answers *against the lesson's reference*: the oracle's
scoring rule with the reference in place of the gold answer (:meth:`GradedJudgeWorld.graded`). The reference is the
gold answer, or with probability ``copy_refs`` a noisy copy of one of the two answers (either, with equal chance).
Against a copy, the cleaner-looking answer is the worse one about half the time, so only the reference tells the
answer. At judging time the reference is the judge's own greedy answer, often one of the two samples it compares.

Measured on the same development world (the oracle used only to measure; two sets of labelled pairs of the base's
own samples, accuracy and mean |P - 1/2| of the strengths averaged over both orders):

============================  ==================  =================
lessons                       accuracy            mean |P - 1/2|
============================  ==================  =================
gold references, 2500 steps   0.62 / 0.62         0.15 / 0.14
copy_refs 0.5, 2500 steps     0.63 / 0.62         0.095 / 0.098
copy_refs 1.0, 3500 steps     0.68 / 0.66         0.0003 / 0.0003
copy_refs 0.5, 3500 steps     0.70 / 0.66         0.14 / 0.16
copy_refs 0.5, 5000 steps     0.73 / 0.69         0.17 / 0.17
same, 16 lessons per prompt   0.53 / 0.61         0.20 / 0.22
============================  ==================  =================

With ``copy_refs = 0.5`` the judge reads its reference (0.49 with another prompt's gold answer as reference, 0.44
with the worse answer, 0.79 / 0.81 with the gold or the better answer), and agrees with the oracle on 0.64 of its
own samples' pairs whether the reference is the gold answer or its own greedy answer. With ``copy_refs = 1`` it
ranks more pairs right but says "first" with probability 0.527 whatever the order: its strengths carry almost no
preference. With ``copy_refs = 0.5`` and 3500 steps the judge says "first" with probability 0.61 when the better
answer comes first and 0.48 when it comes second, and both of notebook 07's gates (accuracy above 0.65, mean
|P - 1/2| above 0.1) are within reach. On notebook 07's own world (seed 0) that judge was at 0.641 [0.591, 0.687],
just short of the first gate, so its base now trains 5000 steps, the best of the settings above; more lessons per
prompt at the same steps made the judge worse, not better.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .judging import AlignedJudgeWorld
from .strings import levenshtein, split_steps


@dataclass
class GradedJudgeWorld(AlignedJudgeWorld):
    """:class:`AlignedJudgeWorld` whose lessons are graded against their reference: each comparison (two noisy
    demonstrations with different oracle scores, shown in both orders) is answered by which answer :meth:`graded`
    puts higher against the lesson's reference, which is the gold answer or, with probability ``copy_refs``, a
    noisy copy of one of the two answers."""

    copy_refs: float = 0.5  # share of comparisons whose reference is a noisy copy of one of the answers
    lessons: str = field(default="both orders, aligned, graded against the reference", init=False)  # in the cache key

    def __post_init__(self):
        if not 0.0 <= self.copy_refs <= 1.0:
            raise ValueError(f"copy_refs must be in [0, 1], got {self.copy_refs}")
        super().__post_init__()

    def graded(self, reference: str, response: str) -> float:
        """The oracle's score of ``response`` with ``reference`` in the place of the gold answer: the weighted mean
        of 1 - lev(r_i, g_i) / max(|r_i|, |g_i|, 1) over the reference's steps g_i (final step weight
        ``final_weight``, 0 for a missing step, extra steps enlarge the denominator). ``graded(gold(p), y)`` is
        ``score(p, y)``."""
        ref, resp = split_steps(reference), split_steps(response)
        s = [1.0 - levenshtein(r, g) / max(len(r), len(g), 1) for g, r in zip(ref, resp)]
        s += [0.0] * (len(ref) - len(s))  # missing steps
        w = [1.0] * (len(s) - 1) + [self.final_weight]
        return sum(wi * si for wi, si in zip(w, s)) / (sum(w) + max(0, len(resp) - len(ref)))

    def noisy_copy(self, response: str, rng: random.Random) -> str:
        """``response`` rewritten with a writer's slip in each step with probability ``demo_noise``."""
        steps = split_steps(response)
        return " | ".join(
            " ".join(self.corrupt(st, rng) if st and rng.random() < self.demo_noise else st) for st in steps
        )

    def judge_lessons(self, prompt: str, rng: random.Random) -> list[dict]:
        """One comparison taught in both orders, ``[{"prompt": query, "response": "first"}, {... "second"}]``, the
        answer graded higher against the reference first. A copied reference that grades both answers alike gives
        way to the gold answer."""
        a, b = self.comparison(prompt, rng)
        ref = self.gold(prompt)
        if rng.random() < self.copy_refs:
            copy = self.noisy_copy(rng.choice((a, b)), rng)
            if self.graded(copy, a) != self.graded(copy, b):
                ref = copy
        better, worse = (a, b) if self.graded(ref, a) > self.graded(ref, b) else (b, a)
        first, second = self.judge_answers
        return [
            {"prompt": self.judge_query(prompt, better, worse, reference=ref), "response": first},
            {"prompt": self.judge_query(prompt, worse, better, reference=ref), "response": second},
        ]

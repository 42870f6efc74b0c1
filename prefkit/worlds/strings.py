"""String operations over the letters a-h: an offline text world with an exact oracle.

A prompt names 1-3 operations and a string of 3-7 letters; the response writes the string after each operation,
steps separated by ``|``::

    prompt:   reverse shift : c a b =
    response: b a c | c b d

Operations: ``reverse``; ``sort``; ``shift`` (every letter + 1, h wraps to a); ``dedupe`` (drop letters already
seen, keeping first occurrences). Text is word-level: one token per letter, operation name or symbol.

Demonstrations are the gold response written by a careless writer: each step is corrupted with probability
``demo_noise`` (a letter replaced, two neighbours swapped, or a letter dropped) and the writer carries on from the
wrong string, so a mistake propagates to the later steps. A model fine-tuned on them is imperfect in the same ways,
which leaves preference learning something to fix. The oracle grades any response with partial credit, and a
simulated rater turns oracle scores into noisy pairwise preferences.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

LETTERS = "abcdefgh"
OPS = ("reverse", "sort", "shift", "dedupe")
SPECIAL = ("<pad>", "<bos>", "<eos>", "<unk>")
VOCAB = (*SPECIAL, *LETTERS, *OPS, ":", "=", "|")


def apply_op(op: str, s: Sequence[str]) -> list[str]:
    """One operation on a list of letters."""
    if op == "reverse":
        return list(reversed(s))
    if op == "sort":
        return sorted(s)
    if op == "shift":
        return [LETTERS[(LETTERS.index(c) + 1) % len(LETTERS)] for c in s]
    if op == "dedupe":
        return list(dict.fromkeys(s))
    raise ValueError(f"unknown op {op!r}; expected one of {OPS}")


def levenshtein(a: Sequence[str], b: Sequence[str]) -> int:
    """Edit distance (insertions, deletions, substitutions, each costing 1) between two token sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def word_tokenizer(words: Sequence[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer: ``<pad> <bos> <eos> <unk>`` then ``words``, split on whitespace;
    ``add_special_tokens=True`` prepends ``<bos>``, nothing else."""
    vocab = {w: i for i, w in enumerate((*SPECIAL, *words))}
    t = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    t.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=t, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )


def make_tokenizer() -> PreTrainedTokenizerFast:
    """The world's tokenizer over :data:`VOCAB`."""
    return word_tokenizer(VOCAB[len(SPECIAL) :])


def parse_prompt(prompt: str) -> tuple[list[str], list[str]]:
    """``"reverse shift : c a b ="`` -> ``(["reverse", "shift"], ["c", "a", "b"])``."""
    words = prompt.split()
    if not words or words[-1] != "=" or ":" not in words:
        raise ValueError(f"not a prompt of this world: {prompt!r}")
    i = words.index(":")
    return words[:i], words[i + 1 : -1]


def split_steps(response: str) -> list[list[str]]:
    """``"b a c | c b d"`` -> ``[["b", "a", "c"], ["c", "b", "d"]]``; an empty response has no steps."""
    words = response.split()
    if not words:
        return []
    steps: list[list[str]] = [[]]
    for w in words:
        if w == "|":
            steps.append([])
        else:
            steps[-1].append(w)
    return steps


@dataclass
class StringWorld:
    """The string-operations world: tokenizer, prompt splits, demonstrations, the oracle and a simulated rater.

    Oracle. For a prompt with gold steps g_1..g_k and a response whose ``|``-separated steps are r_1..r_m::

        s_i   = 1 - lev(r_i, g_i) / max(|r_i|, |g_i|, 1)      (s_i = 0 when i > m: a missing step)
        w_i   = 1 for i < k,  w_k = final_weight (2)           (the final answer counts double)
        score = sum_i w_i s_i / (sum_i w_i + max(0, m - k))    (each extra step adds 1 to the denominator)

    where lev is the edit distance over tokens (a non-letter token inside a step never matches a gold letter).
    So score is in [0, 1], the gold response scores exactly 1, an empty or garbage response scores 0, and extra
    steps only hurt: length is never rewarded.

    Rater. P(y1 > y2) = σ((score(y1) - score(y2)) / rater_tau), a Bradley-Terry rater whose noise shrinks with
    rater_tau.

    Prompts: the number of ops is uniform in [min_ops, max_ops] (ops drawn with replacement), the number of letters
    uniform in [min_len, max_len] (letters drawn with replacement, so ``dedupe`` and ``sort`` have work to do).
    ``train_prompts`` and ``eval_prompts`` are distinct prompts, disjoint, and a function of ``seed`` alone.
    """

    seed: int = 0
    n_train: int = 2000
    n_eval: int = 256
    min_len: int = 3
    max_len: int = 7
    min_ops: int = 1
    max_ops: int = 3
    demo_noise: float = 0.2  # P(a demonstration step is corrupted); SFT'd toy models then sample at ≈ 0.7 oracle score
    rater_tau: float = 0.1  # rater temperature: a 0.1 score gap -> P = σ(1) ≈ 0.73
    final_weight: float = 2.0  # weight of the final step in the oracle score (the others weigh 1)
    tokenizer: PreTrainedTokenizerFast = field(init=False, repr=False, compare=False)
    train_prompts: list[str] = field(init=False, repr=False, compare=False)
    eval_prompts: list[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not (1 <= self.min_len <= self.max_len and 1 <= self.min_ops <= self.max_ops):
            raise ValueError("need 1 <= min_len <= max_len and 1 <= min_ops <= max_ops")
        self.tokenizer = make_tokenizer()
        prompts = self._unique_prompts(random.Random(self.seed), self.n_train + self.n_eval, exclude=set())
        self.train_prompts, self.eval_prompts = prompts[: self.n_train], prompts[self.n_train :]

    # ---- prompts -------------------------------------------------------------------------------------------------

    def random_prompt(self, rng: random.Random, n_ops: int | None = None) -> str:
        k = n_ops if n_ops is not None else rng.randint(self.min_ops, self.max_ops)
        ops = [rng.choice(OPS) for _ in range(k)]
        letters = [rng.choice(LETTERS) for _ in range(rng.randint(self.min_len, self.max_len))]
        return " ".join([*ops, ":", *letters, "="])

    def _unique_prompts(self, rng: random.Random, n: int, exclude: set[str], n_ops: int | None = None) -> list[str]:
        out: dict[str, None] = {}  # insertion-ordered set
        for _ in range(100 * n + 1000):
            if len(out) == n:
                return list(out)
            p = self.random_prompt(rng, n_ops)
            if p not in exclude:
                out[p] = None
        raise ValueError(f"could not draw {n} distinct prompts; widen min_len/max_len or min_ops/max_ops")

    def prompts_with_ops(self, k: int, split: str = "eval") -> list[str]:
        """The prompts of ``split`` ("train" or "eval") that apply exactly ``k`` operations."""
        prompts = {"train": self.train_prompts, "eval": self.eval_prompts}[split]
        return [p for p in prompts if len(parse_prompt(p)[0]) == k]

    def fresh_prompts(self, n: int, n_ops: int | None = None, seed: int = 1) -> list[str]:
        """``n`` new distinct prompts, disjoint from both splits (held-out sets larger than ``eval_prompts``, e.g.
        256 three-op prompts with ``n_ops=3``); deterministic in (``self.seed``, ``seed``)."""
        rng = random.Random(f"fresh-{self.seed}-{seed}")
        return self._unique_prompts(rng, n, set(self.train_prompts) | set(self.eval_prompts), n_ops)

    # ---- gold and demonstrations ---------------------------------------------------------------------------------

    def solve(self, prompt: str) -> list[str]:
        """Gold steps: the string after each operation, e.g. ``["b a c", "c b d"]``."""
        ops, s = parse_prompt(prompt)
        steps = []
        for op in ops:
            s = apply_op(op, s)
            steps.append(" ".join(s))
        return steps

    def gold(self, prompt: str) -> str:
        return " | ".join(self.solve(prompt))

    @staticmethod
    def corrupt(s: list[str], rng: random.Random) -> list[str]:
        """One writer's slip: replace a letter, swap two neighbours, or drop a letter; always changes ``s``."""
        s = list(s)
        kind = rng.choice(("replace", "swap", "drop"))
        swappable = [i for i in range(len(s) - 1) if s[i] != s[i + 1]]
        if kind == "swap" and swappable:
            i = rng.choice(swappable)
            s[i], s[i + 1] = s[i + 1], s[i]
        elif kind == "drop" and len(s) > 1:
            del s[rng.randrange(len(s))]
        else:
            i = rng.randrange(len(s))
            s[i] = rng.choice([c for c in LETTERS if c != s[i]])
        return s

    def sft_rows(self, demos_per_prompt: int, rng: random.Random) -> list[dict]:
        """Supervised rows (prompt, response) for the SFT base: ``demos_per_prompt`` fresh demonstrations of each
        training prompt."""
        return [
            {"prompt": p, "response": self.demonstration(p, rng)}
            for p in self.train_prompts
            for _ in range(demos_per_prompt)
        ]

    def demonstration(self, prompt: str, rng: random.Random) -> str:
        """The gold response written with noise: each step is corrupted with probability ``demo_noise``, and later
        steps apply their operation to the (possibly wrong) string written so far.

        For SFT, draw a fresh demonstration each time a prompt is visited: a model trained for many epochs on one
        fixed demonstration per prompt memorises its mistakes, and its samples then barely differ from its greedy
        output, which leaves preference learning little to compare.
        """
        ops, s = parse_prompt(prompt)
        steps = []
        for op in ops:
            s = apply_op(op, s)
            if rng.random() < self.demo_noise:
                s = self.corrupt(s, rng)
            steps.append(" ".join(s))
        return " | ".join(steps)

    # ---- oracle and rater ----------------------------------------------------------------------------------------

    def step_scores(self, prompt: str, response: str) -> list[float]:
        """s_i = 1 - lev(r_i, g_i) / max(|r_i|, |g_i|, 1) for each gold step g_i; 0 for a missing step."""
        resp = split_steps(response)
        out = []
        for i, g in enumerate(s.split() for s in self.solve(prompt)):
            if i >= len(resp):
                out.append(0.0)
                continue
            r = resp[i]
            out.append(1.0 - levenshtein(r, g) / max(len(r), len(g), 1))
        return out

    def score(self, prompt: str, response: str) -> float:
        """Weighted mean of step scores (final step weight ``final_weight``); extra steps enlarge the denominator."""
        s = self.step_scores(prompt, response)
        w = [1.0] * (len(s) - 1) + [self.final_weight]
        extra = max(0, len(split_steps(response)) - len(s))
        return sum(wi * si for wi, si in zip(w, s)) / (sum(w) + extra)

    def rater_prob(self, prompt: str, y1: str, y2: str, prompt2: str | None = None) -> float:
        """P(y1 > y2) = σ((score(y1) - score(y2)) / rater_tau). With ``prompt2`` the rater compares y1 as an answer to
        ``prompt`` with y2 as an answer to ``prompt2`` (a joint preference): the oracle's scores are absolute, so
        answers to different prompts compare on the same scale."""
        z = (self.score(prompt, y1) - self.score(prompt2 or prompt, y2)) / self.rater_tau
        return 1.0 / (1.0 + math.exp(-z))

    @staticmethod
    def difficulty(prompt: str) -> tuple[int, int]:
        """(number of operations, number of letters): prompts with equal difficulty are equally hard to answer."""
        ops, letters = parse_prompt(prompt)
        return len(ops), len(letters)

    def build_pairs(
        self, prompts: Sequence[str], candidates: Sequence[Sequence[str]], rng: random.Random
    ) -> tuple[list[dict], int]:
        """Pairwise preference rows labelled by the simulated rater, and the number of prompts dropped.

        For each prompt, y1 is drawn uniformly from its candidates and y2 uniformly from those that differ from y1
        (so frequent samples are compared more often, as on-policy pairs are); the label is drawn from
        P(y1 > y2). A prompt whose candidates are all identical has no pair and is dropped: the second element
        counts those prompts so the caller can report them.

        Rows: ``prompt``, ``chosen``, ``rejected``, ``p_true`` (the rater's P(chosen > rejected)), ``score_chosen``,
        ``score_rejected``.
        """
        if len(prompts) != len(candidates):
            raise ValueError(f"{len(prompts)} prompts for {len(candidates)} candidate lists")
        rows, dropped = [], 0
        for prompt, cands in zip(prompts, candidates):
            if len(set(cands)) < 2:
                dropped += 1
                continue
            y1 = rng.choice(cands)
            y2 = rng.choice([c for c in cands if c != y1])
            p = self.rater_prob(prompt, y1, y2)
            chosen, rejected, p_true = (y1, y2, p) if rng.random() < p else (y2, y1, 1.0 - p)
            rows.append(
                {
                    "prompt": prompt,
                    "chosen": chosen,
                    "rejected": rejected,
                    "p_true": p_true,
                    "score_chosen": self.score(prompt, chosen),
                    "score_rejected": self.score(prompt, rejected),
                }
            )
        return rows, dropped


JUDGE_WORDS = ("judge", "ref", "vs", "?", "first", "second")


@dataclass
class JudgeStringWorld(StringWorld):
    """The string world with a judging task, so a model can be its own judge (self-rewarding, self-preferring).

    A judge query shows a prompt, a reference answer written by the judge itself, and two answers, and asks which of
    the two is better::

        judge reverse : c a b = ref b a c ? b a c vs b c a ?        ->  first

    Writing its own answer first and comparing against it is reference-guided judging (as in MT-Bench's grading of
    maths questions); a model this small cannot judge two answers cold (measured: accuracy 0.53 on oracle-labelled
    pairs after 1500 SFT steps, against 0.5 for a coin). The judge is then as good as its own answer, and no better.

    The SFT base learns to judge from labelled comparisons, as instruction-tuned models learn from human-labelled
    judgements before any self-improvement: for each training prompt, ``judge_per_prompt`` pairs of distinct noisy
    demonstrations with a third noisy demonstration as the reference, labelled by the raters' majority (the higher
    oracle score; a coin flip on ties). After that the judge's only source
    of truth is itself; its accuracy is measured against the oracle.
    """

    judge_per_prompt: int = 4  # judge examples per training prompt in the SFT data (both answer orders occur)
    judge_template: str = field(default="judge {prompt} ref {reference} ? {a} vs {b} ?", init=False)
    judge_answers: tuple[str, str] = field(default=("first", "second"), init=False)

    def __post_init__(self):
        super().__post_init__()
        self.tokenizer = word_tokenizer((*VOCAB[len(SPECIAL) :], *JUDGE_WORDS))

    def judge_query(self, prompt: str, a: str, b: str, reference: str) -> str:
        return self.judge_template.format(prompt=prompt, a=a, b=b, reference=reference)

    def judge_demonstration(self, prompt: str, rng: random.Random) -> dict:
        """One labelled comparison of two distinct noisy demonstrations: ``{"prompt": query, "response": answer}``."""
        a = self.demonstration(prompt, rng)
        for _ in range(100):
            b = self.demonstration(prompt, rng)
            if b != a:
                break
        else:  # the writer never slips on this prompt (demo_noise = 0): compare with a corrupted copy
            b = " | ".join(" ".join(self.corrupt(st, rng)) for st in split_steps(a))
        sa, sb = self.score(prompt, a), self.score(prompt, b)
        first = sa > sb or (sa == sb and rng.random() < 0.5)  # the raters' majority: the higher oracle score
        query = self.judge_query(prompt, a, b, reference=self.demonstration(prompt, rng))
        return {"prompt": query, "response": self.judge_answers[0 if first else 1]}

    def sft_rows(self, demos_per_prompt: int, rng: random.Random) -> list[dict]:
        rows = super().sft_rows(demos_per_prompt, rng)
        return rows + [
            self.judge_demonstration(p, rng) for p in self.train_prompts for _ in range(self.judge_per_prompt)
        ]

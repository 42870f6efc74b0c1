"""The policy as its own judge: self-judged preference strengths and ranked pairing, as in Online Self-Preferring
language models (Zhai, Zhang, Xu, Peng, Yu, Feng, Yang, Ding, Wang 2024, arXiv:2405.14103).

For each prompt the model samples K responses, then judges every ordered pair (a, b) with a judge query "which of a,
b is better?". With q(a, b) the judge's probability of answering "a" (its two answer tokens renormalised), the
self-judged strength averages both presentation orders, which cancels a position bias:

    P(y_i > y_j) = ½ [q(y_i, y_j) + 1 - q(y_j, y_i)]

The K responses are ranked by their mean strength against the others and paired by *ranked pairing*: best with
worst, second with second-worst, ..., each pair carrying its strength as a soft label for the soft-preference
cross-entropy -[p log σ(β h) + (1 - p) log σ(-β h)] (``prefkit.losses.dpo_loss`` with per-pair ``strength``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .logps import encode


@dataclass(frozen=True)
class Judge:
    """A judge prompt: ``template`` with ``{prompt}``, ``{a}``, ``{b}`` (and optionally ``{reference}``: the judge's
    own answer to the prompt, written first, for reference-guided judging), and the two answer words meaning "a is
    better" and "b is better" (each must be a single token of the model's tokenizer)."""

    template: str = (
        "Which response answers the request better?\n\nRequest: {prompt}\n\nResponse 1: {a}\n\nResponse 2: {b}\n\n"
        "Answer with 1 or 2. The better response is"
    )
    answers: tuple[str, str] = (" 1", " 2")

    @property
    def guided(self) -> bool:
        """Whether the judge writes its own reference answer before judging."""
        return "{reference}" in self.template

    def query(self, prompt: str, a: str, b: str, reference: str = "") -> str:
        return self.template.format(prompt=prompt, a=a, b=b, reference=reference)


def answer_ids(tokenizer, answers: Sequence[str]) -> list[int]:
    """The token id of each answer word; raises when a word is not exactly one token."""
    ids = []
    for a in answers:
        t = tokenizer(a, add_special_tokens=False)["input_ids"]
        if len(t) != 1:
            raise ValueError(f"judge answer {a!r} is {len(t)} tokens for this tokenizer; pick single-token answers")
        ids.append(t[0])
    return ids


@torch.no_grad()
def answer_probs(model, tokenizer, queries: Sequence[str], answers: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """(N, A) next-token probabilities of the ``answers`` right after each query, renormalised over the answers."""
    ids = answer_ids(tokenizer, answers)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(queries), batch_size):
        chunk = list(queries[s : s + batch_size])
        b = encode(tokenizer, chunk, [[]] * len(chunk), add_eos=False)
        mask = b["attention_mask"].to(device)
        logits = model(input_ids=b["input_ids"].to(device), attention_mask=mask).logits  # (n, T, V)
        last = logits[torch.arange(len(chunk), device=device), mask.sum(-1) - 1]  # (n, V) after the query
        out.append(torch.softmax(last[:, ids].float(), -1).cpu())
    model.train(was_training)
    return torch.cat(out).numpy()


def self_judge(model, tokenizer, judge, prompts: Sequence[str], responses: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """Per prompt a (K, K) matrix P[i, j] = ½ [q(y_i, y_j) + 1 - q(y_j, y_i)] of self-judged strengths
    (P[i, i] = ½, P + Pᵀ = 1), from one batched pass over every ordered pair of distinct positions. A guided judge
    first writes its own answer to each prompt (greedy decoding) and judges against it."""
    from .generate import greedy

    refs = greedy(model, tokenizer, list(prompts)) if judge.guided else [""] * len(prompts)
    queries, where = [], []
    for n, (p, ys) in enumerate(zip(prompts, responses)):
        for i in range(len(ys)):
            for j in range(len(ys)):
                if i != j:
                    queries.append(judge.query(p, ys[i], ys[j], refs[n]))
                    where.append((n, i, j))
    q = answer_probs(model, tokenizer, queries, judge.answers)[:, 0] if queries else []
    mats = [np.full((len(ys), len(ys)), 0.5) for ys in responses]
    qd = {w: float(v) for w, v in zip(where, q)}
    for (n, i, j), v in qd.items():
        mats[n][i, j] = 0.5 * (v + 1.0 - qd[(n, j, i)])
    return mats


def oracle_strengths(scores: Sequence[float]) -> np.ndarray:
    """Hard labels from scores: P[i, j] = 1 if s_i > s_j, ½ on ties, 0 otherwise."""
    s = np.asarray(scores, dtype=float)
    return (s[:, None] > s[None, :]) + 0.5 * (s[:, None] == s[None, :])


def ranked_pairs(prompt: str, responses: Sequence[str], strengths: np.ndarray, hard: bool = False) -> list[dict]:
    """Ranked pairing: rank the K responses by mean strength against the others (stable on ties), then pair rank 1
    with rank K, rank 2 with rank K - 1, ...; each row carries ``strength`` = P[chosen, rejected] (1 with ``hard``).
    Pairs of identical texts, and pairs whose strength is exactly ½ (a tie: no preference), are left out. Each row
    also keeps ``judged`` = P[chosen, rejected] as judged, before ``hard`` rounds it to 1 (for reports only: the loss
    reads ``strength``)."""
    K = len(responses)
    if strengths.shape != (K, K):
        raise ValueError(f"strengths must be ({K}, {K}) for {K} responses, got {strengths.shape}")
    mean = (strengths.sum(1) - np.diag(strengths)) / max(1, K - 1)
    order = sorted(range(K), key=lambda i: -mean[i])
    rows = []
    for r in range(K // 2):
        a, b = order[r], order[K - 1 - r]
        p = float(strengths[a, b])
        if responses[a] == responses[b] or p == 0.5:
            continue
        rows.append(
            {
                "prompt": prompt,
                "chosen": responses[a],
                "rejected": responses[b],
                "strength": 1.0 if hard else p,
                "judged": p,
            }
        )
    return rows


def judge_strengths(model, tokenizer, judge, rows: Sequence[dict]) -> np.ndarray:
    """(N,) self-judged strength P(chosen ≻ rejected) of each labelled pair (both orders averaged)."""
    if not rows:
        raise ValueError("no labelled pairs to judge")
    mats = self_judge(
        model, tokenizer, judge, [r["prompt"] for r in rows], [[r["chosen"], r["rejected"]] for r in rows]
    )
    return np.array([m[0, 1] for m in mats])


def agreement(strengths: np.ndarray) -> np.ndarray:
    """(N,) per-pair agreement of a judge with the labels: 1 where P(chosen ≻ rejected) > ½, ½ on a tie, 0 where
    the judge prefers the rejected response."""
    p = np.asarray(strengths, dtype=float)
    if ((p < 0) | (p > 1)).any():
        raise ValueError("strengths must lie in [0, 1]")
    return (p > 0.5) + 0.5 * (p == 0.5)


def judge_accuracy(model, tokenizer, judge, rows: Sequence[dict]) -> float:
    """How often the self-judged strength of ``chosen`` over ``rejected`` exceeds ½ on labelled pairs (ties count
    half): the judge's accuracy against the labels (use oracle-labelled pairs)."""
    return float(np.mean(agreement(judge_strengths(model, tokenizer, judge, rows))))


def self_preference_label(tokenizer, judge, hard: bool = False, oracle=None):
    """The labelling step of online self-preferring rounds, as ``label(model, prompts, samples, t) -> rows`` for
    :func:`prefkit.online.online_rounds`: each prompt's samples are judged by ``model`` itself (:func:`self_judge`),
    ranked and paired (:func:`ranked_pairs`); soft strengths, or 1 with ``hard``.

    With ``oracle(prompt, response) -> score`` the ranking and the labels come from the oracle instead (hard labels):
    the upper bound of online DPO with true labels."""

    def label(model, prompts: Sequence[str], samples: Sequence[Sequence[str]], t: int = 0) -> list[dict]:
        if oracle is not None:
            mats = [oracle_strengths([oracle(p, y) for y in group]) for p, group in zip(prompts, samples)]
        else:
            mats = self_judge(model, tokenizer, judge, prompts, samples)
        return [
            r for p, g, m in zip(prompts, samples, mats) for r in ranked_pairs(p, g, m, hard=hard or oracle is not None)
        ]

    return label


def self_preference_pairs(
    model,
    tokenizer,
    judge,
    prompts: Sequence[str],
    k: int = 4,
    seed: int = 0,
    hard: bool = False,
    oracle=None,
    **sample_kw,
) -> tuple[list[dict], list[list[str]]]:
    """One round of online self-preferring data: ``k`` samples per prompt from ``model``, labelled by
    :func:`self_preference_label` (the model's own judgements, or the ``oracle``'s). Returns the pairwise rows and
    the samples."""
    from .generate import sample

    ys = sample(model, tokenizer, prompts, n=k, seed=seed, **sample_kw)
    return self_preference_label(tokenizer, judge, hard, oracle)(model, prompts, ys), ys

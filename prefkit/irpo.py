"""In-context ranking with a language model (IRPO, Wu, Surana, et al. 2025, arXiv:2504.15477): the pieces around
:func:`prefkit.losses.inrank.irpo_loss` for a world whose items are single tokens (:class:`ShortlistWorld`).

- :func:`item_logps`: log π of each item of a ranked response at its position (teacher forcing), (B, N);
- :func:`sample_rankings`: rankings decoded from a model, constrained to permutations of the prompt's candidates;
- :func:`irpo_rows` / :func:`relevant_first`: training rows from sampled rankings and the world's sparse feedback;
- :func:`train_irpo`: a copy of the base trained with IRPO (reference item log-probs computed once);
- :func:`rank_eval`: per-prompt NDCG@3 and Recall@3 of the candidates sorted by their first-position log-probs, and
  NDCG@3 of the greedily decoded ranking.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from .logps import encode
from .losses.inrank import irpo_loss
from .ranking import ndcg_at_k
from .train import StepBatches, TrainConfig, train
from .worlds.shortlist import parse_prompt

Tensor = torch.Tensor


def _token_ids(tokenizer, words: Sequence[str]) -> list[int]:
    ids = tokenizer.convert_tokens_to_ids(list(words))
    if tokenizer.unk_token_id in ids:
        raise ValueError(f"items must be single tokens of the vocabulary: {list(words)}")
    return ids


def item_logps(model, batch: dict[str, Tensor], n_items: int) -> Tensor:
    """(B, N) log π(e_i | x, e_<i) of the first ``n_items`` response tokens of an :func:`prefkit.logps.encode` batch:
    each item's log-prob where it sits in the ranked response (items are single tokens, so the mean over an item's
    tokens is that token's log-prob)."""
    ids, mask = batch["input_ids"], batch["response_mask"]
    logits = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits[:, :-1]  # (B, T-1, V)
    logp = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    m = mask[:, 1:].bool()
    if (m.sum(1) < n_items).any():
        raise ValueError(f"row {int((m.sum(1) < n_items).nonzero()[0])}: fewer than {n_items} response tokens")
    sel = m & (m.cumsum(1) <= n_items)  # the first n_items response positions
    return logp[sel].view(ids.shape[0], n_items)


@torch.no_grad()
def sample_rankings(
    model, tokenizer, prompts: Sequence[str], n: int = 1, temperature: float = 1.0, seed: int = 0, chunk: int = 1024
) -> list[list[str]]:
    """``n`` rankings per prompt, decoded one item at a time from π restricted to the candidates not yet named
    (``temperature=0``: greedy). Prompts must tokenise to the same length (true of :class:`ShortlistWorld`)."""
    dev = next(model.parameters()).device
    cands = [parse_prompt(p)[1] for p in prompts]
    enc = [tokenizer(p)["input_ids"] for p in prompts]
    if len({len(e) for e in enc}) > 1:
        raise ValueError("sample_rankings needs prompts of equal token length")
    gen = torch.Generator().manual_seed(seed)
    was = model.training
    model.eval()
    out: list[list[str]] = [[] for _ in prompts]
    jobs = [(i, j) for i in range(len(prompts)) for j in range(n)]
    for s in range(0, len(jobs), chunk):
        part = jobs[s : s + chunk]
        ids = torch.tensor([enc[i] for i, _ in part], device=dev)  # (M, T)
        cand = torch.tensor([_token_ids(tokenizer, cands[i]) for i, _ in part], device=dev)  # (M, C)
        left = torch.ones_like(cand, dtype=torch.bool)  # (M, C) candidates not yet named
        picks = []
        for _ in range(cand.shape[1]):
            logits = model(input_ids=ids).logits[:, -1].float()  # (M, V)
            z = logits.gather(1, cand).masked_fill(~left, float("-inf"))  # (M, C)
            if temperature == 0:
                k = z.argmax(1)
            else:
                k = torch.multinomial(torch.softmax(z / temperature, 1).cpu(), 1, generator=gen).squeeze(1).to(dev)
            left[torch.arange(len(k)), k] = False
            picks.append(k)
            ids = torch.cat([ids, cand.gather(1, k[:, None])], 1)
        order = torch.stack(picks, 1).tolist()  # (M, C)
        for (i, _), o in zip(part, order):
            out[i].append(" ".join(cands[i][k] for k in o))
    model.train(was)
    return out


def relevant_first(feedback: dict[str, int], ranking: str) -> str:
    """The ranking with the feedback's marked items moved to the front (by grade, ties in ranking order); the
    unmarked items keep their order."""
    items = ranking.split()
    marked = sorted((i for i in items if i in feedback), key=lambda i: -feedback[i])
    return " ".join(marked + [i for i in items if i not in feedback])


def irpo_rows(world, prompts: Sequence[str], rankings: Sequence[Sequence[str]]) -> list[dict]:
    """One row per (prompt, ranking): ``prompt``, ``response`` (the ranking) and ``relevance`` (the world's sparse
    feedback grade of the item at each position, 0 where unmarked)."""
    rows = []
    for p, rs in zip(prompts, rankings):
        fb = world.feedback(p)
        rows += [{"prompt": p, "response": r, "relevance": [float(fb.get(i, 0)) for i in r.split()]} for r in rs]
    return rows


@torch.no_grad()
def add_ref_item_logps(model, tokenizer, rows: list[dict], batch_size: int = 512) -> list[dict]:
    """Copies of ``rows`` with ``ref_item_logps`` (π_ref's item log-probs; the reference never changes)."""
    out = []
    was = model.training
    model.eval()
    for s in range(0, len(rows), batch_size):
        chunk = rows[s : s + batch_size]
        b = encode(tokenizer, [r["prompt"] for r in chunk], [r["response"] for r in chunk])
        b = {k: v.to(next(model.parameters()).device) for k, v in b.items()}
        lp = item_logps(model, b, len(chunk[0]["relevance"])).tolist()
        out += [{**r, "ref_item_logps": v} for r, v in zip(chunk, lp)]
    model.train(was)
    return out


def irpo_objective(beta: float = 1.0, weighting: str = "dcg"):
    """``loss_fn(policy, batch)`` for :func:`prefkit.train.train` on batches carrying ``relevance`` and
    ``ref_item_logps`` (B, N); reports ``loss/at_reference`` for the loop's step-0 check."""

    def loss_fn(policy, batch):
        rel = batch["relevance"].to(batch["input_ids"].device)
        ref = batch["ref_item_logps"].to(rel.device)
        pol = item_logps(policy, batch, rel.shape[1])  # (B, N)
        losses, r = irpo_loss(pol, ref, rel, beta=beta, weighting=weighting)
        with torch.no_grad():
            at_ref = irpo_loss(ref, ref, rel, beta=beta, weighting=weighting)[0]
        marked = rel > 0
        return losses.mean(), {
            "loss": losses.mean().item(),
            "loss/at_reference": at_ref.mean().item(),
            "rewards/marked": (r * marked).sum().item() / max(1, int(marked.sum())),
            "rewards/unmarked": (r * ~marked).sum().item() / max(1, int((~marked).sum())),
        }

    return loss_fn


def _irpo_extra(rows: list[dict]) -> dict[str, Tensor]:
    return {
        "relevance": torch.tensor([r["relevance"] for r in rows]),
        "ref_item_logps": torch.tensor([r["ref_item_logps"] for r in rows]),
    }


def train_irpo(base, tokenizer, rows: list[dict], train_config: TrainConfig, batch_size: int = 64, **hparams):
    """A copy of ``base`` trained with IRPO on :func:`irpo_rows`; the base is the reference.
    Returns ``(policy, history)``."""
    policy = copy.deepcopy(base)
    rows = add_ref_item_logps(base, tokenizer, rows)
    batches = StepBatches(rows, tokenizer, batch_size, train_config.seed, "sft", extra=_irpo_extra)
    return policy, train(policy, irpo_objective(**hparams), batches, replace(train_config, sanity_check=True))


@torch.no_grad()
def first_item_logps(model, tokenizer, prompts: Sequence[str], batch_size: int = 1024) -> np.ndarray:
    """(P, C) log π(candidate | prompt) at the first response position, candidates in prompt order."""
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    out = []
    for s in range(0, len(prompts), batch_size):
        ps = prompts[s : s + batch_size]
        ids = torch.tensor([tokenizer(p)["input_ids"] for p in ps], device=dev)
        cand = torch.tensor([_token_ids(tokenizer, parse_prompt(p)[1]) for p in ps], device=dev)
        out.append(torch.log_softmax(model(input_ids=ids).logits[:, -1].float(), -1).gather(1, cand).cpu().numpy())
    model.train(was)
    return np.concatenate(out)


def rank_eval(model, world, prompts: Sequence[str], k: int = 3) -> dict[str, np.ndarray]:
    """Per-prompt metrics against the oracle's full relevance: ``ndcg`` and ``recall`` (NDCG@k, Recall@k of the
    candidates sorted by their first-position log-probs, the teacher-forced score) and ``gen_ndcg`` (NDCG@k of the
    greedily decoded ranking)."""
    scores = first_item_logps(model, world.tokenizer, prompts)
    greedy = sample_rankings(model, world.tokenizer, prompts, temperature=0)
    ndcg, recall, gen = [], [], []
    for p, sc, g in zip(prompts, scores, greedy):
        rel = np.asarray(world.relevance(p), dtype=float)
        order = np.argsort(-sc, kind="stable")
        ndcg.append(ndcg_at_k(order, rel, k))
        recall.append(float((rel[order[:k]] > 0).sum() / max(1, (rel > 0).sum())))
        gen.append(world.score(p, g[0], k))
    return {"ndcg": np.array(ndcg), "recall": np.array(recall), "gen_ndcg": np.array(gen)}


def feedback_lists(world, prompts: Sequence[str], rankings: Sequence[Sequence[str]], k: int = 3) -> list[dict]:
    """Listwise rows (prompt, responses, scores) for LiPO: each sampled ranking scored by its DCG@k under the sparse
    feedback (unmarked items count 0)."""
    from .worlds.shortlist import dcg

    rows = []
    for p, rs in zip(prompts, rankings):
        fb = world.feedback(p)
        rows.append(
            {"prompt": p, "responses": list(rs), "scores": [dcg([fb.get(i, 0) for i in r.split()], k) for r in rs]}
        )
    return rows


def dpo_rows(world, prompts: Sequence[str], rankings: Sequence[Sequence[str]]) -> list[dict]:
    """Pairwise rows: the relevant-first version of each sampled ranking (chosen) against the ranking itself
    (rejected); rankings that already put the marked items first give no pair and are skipped."""
    rows = []
    for p, rs in zip(prompts, rankings):
        fb = world.feedback(p)
        rows += [
            {"prompt": p, "chosen": relevant_first(fb, r), "rejected": r} for r in rs if relevant_first(fb, r) != r
        ]
    return rows


def sft_rows(world, prompts: Sequence[str], rankings: Sequence[Sequence[str]]) -> list[dict]:
    """SFT rows: the relevant-first version of each sampled ranking."""
    return [
        {"prompt": p, "response": relevant_first(world.feedback(p), r)} for p, rs in zip(prompts, rankings) for r in rs
    ]


def random_rankings(world, prompts: Sequence[str], n: int, seed: int = 0) -> list[list[str]]:
    """``n`` uniformly random orders of each prompt's candidates (a baseline; tests)."""
    rng = random.Random(seed)
    return [[" ".join(rng.sample(parse_prompt(p)[1], len(parse_prompt(p)[1]))) for _ in range(n)] for p in prompts]

"""Online (iterative) preference optimisation: rounds of sample -> label -> pair -> train, one loop for many methods.

Round t (t = 1..rounds) samples ``k`` responses per prompt from the current policy π_t, hands them to ``label``, which
returns pairwise rows (a self-judge, an oracle rater, a reward model, a teacher's response added to the pool, a margin
filter: all of that is the caller's), and trains a copy of π_t on those rows for ``train_config(t).steps`` steps with
a pairwise loss. The trained copy is π_{t+1}. What differs between the methods built on it is ``label`` and the
reference each round's loss is measured against:

- ``"previous"``: π_ref = π_t, the round's own starting policy (iterative DPO, OSP, DNO: each round is a DPO step
  from the sampler of that round);
- ``"initial"``: π_ref = π_1, the policy the first round started from, in every round;
- ``"extrapolated"``: a Nesterov-style reference log π̂_t = (1 + α) log π_t - α log π_{t-1} (+ a per-prompt
  constant, which cancels within a pair), with ``alpha`` = α: our log-prob reading of the extrapolation step of APO
  (He, Yuan and Gu 2024, arXiv:2410.06293) for DPO, where only log-ratios within a pair matter, not the paper's
  rule. α = 0 is ``"previous"``; round 1, which has no π_0, uses π_1.

APO's own rule is ``momentum`` = α: Nesterov extrapolation of the *weights* (APO Eq. 3.7, the form the paper uses in
its LLM experiments, with α = 0.3),

    θ_{t+1} = θ̂_{t+1} + α (θ̂_{t+1} - θ̂_t),

where θ̂_{t+1} is the model round t trained (the proximal step from θ_t) and θ̂_t the one round t - 1 trained
(θ̂_1 = θ_1, the starting policy, so round 1 already extrapolates, from θ_1). The extrapolated θ_{t+1} is round
t + 1's sampler, reference and training start, and the policy ``on_round`` sees and the loop returns; the θ̂ are kept
only for the next extrapolation. Only with ``reference="previous"``.

``prompts`` is one list for every round or a function ``prompts(t)`` giving round t its own prompts (DNO draws a
fresh split of prompts each iteration).

With ``k = 0`` nothing is sampled: ``label`` gets no samples and returns the round's rows from data it holds. That
makes the loop a staged offline curriculum (Curry-DPO: stage t trains on its own fixed pairs, with the previous
stage's model as reference under ``"previous"``, or the first model throughout under ``"initial"``).

The reference's log-probs are computed once per round from frozen copies, so a round trains with no reference
forward. Rounds whose reference is not their starting policy skip the trainer's step-0 check (it would rightly fail).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from .generate import sample
from .models import Reference
from .train import StepBatches, TrainConfig, preference_objective, train

REFERENCES = ("previous", "initial", "extrapolated")


def online_rounds(
    policy,
    tokenizer,
    prompts: Sequence[str] | Callable[[int], Sequence[str]],
    label: Callable[[Any, list[str], list[list[str]], int], list[dict]],
    loss: Callable,
    train_config: Callable[[int], TrainConfig],
    rounds: int,
    k: int = 4,
    batch_size: int = 32,
    sample_seed: Callable[[int], int] = lambda t: t,
    reference: str = "previous",
    alpha: float = 0.0,
    momentum: float = 0.0,
    on_round: Callable[[int, Any, list[dict], Any], dict | None] | None = None,
    sample_kw: dict | None = None,
    **hparams,
) -> tuple[Any, list[dict]]:
    """Run ``rounds`` rounds from ``policy`` (not modified) and return (the last policy, one log row per round).

    ``label(policy_t, prompts, samples, t) -> rows``: pairwise rows (prompt, chosen, rejected, optional strength) from
    the round's samples (``k`` per prompt, drawn with seed ``sample_seed(t)``; ``sample_kw`` go to
    :func:`prefkit.generate.sample`). ``train_config(t)``: the round's :class:`TrainConfig`. ``loss`` + ``hparams``
    (e.g. ``beta``) as in :func:`prefkit.train.preference_objective`. ``on_round(t, policy_{t+1}, rows, history)``
    may return a dict (an evaluation), which joins the round's log row with ``round`` and ``pairs``. ``prompts``: a
    list, or ``prompts(t)`` for round t's own. ``momentum`` = α extrapolates the weights after each round (APO
    Eq. 3.7, module docstring); with it, ``policy_{t+1}`` is the extrapolated model.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0 samples per prompt (0: offline stages), got {k}")
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    if alpha and reference != "extrapolated":
        raise ValueError(f"alpha = {alpha} extrapolates the reference: use reference='extrapolated' with it")
    if momentum and reference != "previous":
        raise ValueError(
            f"momentum = {momentum} extrapolates the weights (APO Eq. 3.7), whose round starts are their own "
            f"reference: use it with reference='previous', not {reference!r}"
        )
    first, before, current = policy, None, policy  # π_1, π_{t-1}, π_t
    hat = policy  # θ̂_t: the model the previous round trained, before extrapolation (θ̂_1 = θ_1)
    log = []
    for t in range(1, rounds + 1):
        round_prompts = list(prompts(t) if callable(prompts) else prompts)
        if not round_prompts:
            raise ValueError(f"round {t}: no prompts")
        ys = sample(current, tokenizer, round_prompts, n=k, seed=sample_seed(t), **(sample_kw or {})) if k else []
        rows = label(current, round_prompts, ys, t)
        if not rows:
            raise ValueError(f"round {t}: label returned no pairs from {len(round_prompts)} prompts x {k} samples")
        start = Reference(current, mode="copy")
        rows = start.precompute(rows, tokenizer)  # log π_t
        config = train_config(t)
        if reference == "initial" and t > 1:
            rows = _with_reference(rows, Reference(first, mode="copy").precompute(rows, tokenizer), 1.0)
            config = replace(config, sanity_check=False)
        elif reference == "extrapolated" and t > 1 and alpha:
            older = Reference(before, mode="copy").precompute(rows, tokenizer)  # log π_{t-1}
            rows = _with_reference(rows, older, -alpha, own=1.0 + alpha)
            config = replace(config, sanity_check=False)
        trained = copy.deepcopy(current)
        batches = StepBatches(rows, tokenizer, batch_size, config.seed, "pairwise")
        hist = train(trained, preference_objective(loss, start, **hparams), batches, config)
        if momentum:
            trained, hat = extrapolate(trained, hat, momentum), trained  # θ_{t+1}, and θ̂_{t+1} for the next round
        row = {"round": t, "pairs": len(rows)}
        if on_round is not None:
            row.update(on_round(t, trained, rows, hist) or {})
        log.append(row)
        before, current = current, trained
    return current, log


def margin_pair(
    scores: Sequence[float],
    teacher: int | None = None,
    min_positive: float = 5.0,
    gap: float = 2.0,
    gap_student: float = 1.0,
    order: Sequence[int] | None = None,
) -> tuple[int, int] | None:
    """DNO's large-margin pair from one prompt's judged responses (Rosset et al. 2024, arXiv:2404.03715, Sec. 5.1):
    (best, worst) by judge score, kept only when the best scores at least ``min_positive`` (5 of 6 in the paper) and
    the worst at least ``gap`` points lower (2), or ``gap_student`` points lower (1) when the best is a sample of the
    student rather than the ``teacher``'s response (its index in ``scores``, or None). With a pointwise judge the
    ranking by score is the ranking by win rate among the candidates. Ties go to the first in ``order`` (default:
    index order), so a caller can break them at random. Returns (best index, worst index) or None.
    The paper keeps every pair passing the rule (with replay); we keep the (best, worst) pair only.
    """
    order = list(range(len(scores))) if order is None else list(order)
    if sorted(order) != list(range(len(scores))):
        raise ValueError(f"order must be a permutation of the {len(scores)} candidates, got {order}")
    if len(scores) < 2:
        return None
    best = max(order, key=lambda i: scores[i])  # the first maximum in ``order``
    worst = min(order, key=lambda i: scores[i])
    need = gap if best == teacher else gap_student
    if scores[best] < min_positive or scores[best] - scores[worst] < need or best == worst:
        return None
    return best, worst


@torch.no_grad()
def extrapolate(new, old, alpha: float):
    """A copy of ``new`` with weights θ̂_new + α (θ̂_new - θ̂_old): APO's Nesterov step (He, Yuan and Gu 2024,
    arXiv:2410.06293, Eq. 3.7) over every floating-point parameter (integer storage, e.g. 4-bit weights, is frozen
    and so equal in both). ``new`` and ``old`` are left alone."""
    out = copy.deepcopy(new)
    olds = dict(old.named_parameters())
    for name, p in out.named_parameters():
        if name not in olds or olds[name].shape != p.shape:
            raise ValueError(f"extrapolate: parameter {name!r} has no counterpart of the same shape in the old model")
        if p.is_floating_point():
            p.add_(p - olds[name].to(p.device), alpha=alpha)  # Eq. 3.7: θ̂_{t+1} + α(θ̂_{t+1} - θ̂_t)
    return out


def _with_reference(rows: list[dict], other: list[dict], weight: float, own: float = 0.0) -> list[dict]:
    """Rows whose reference log-probs are ``own`` x theirs + ``weight`` x ``other``'s (the same rows, another model)."""
    keys = ("ref_chosen_logps", "ref_rejected_logps")
    return [{**r, **{key: own * r[key] + weight * o[key] for key in keys}} for r, o in zip(rows, other)]

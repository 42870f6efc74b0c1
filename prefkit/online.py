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
  constant, which cancels within a pair), with ``alpha`` = α: our reading of the extrapolation step of APO (He, Yuan
  and Gu 2024, arXiv:2410.06293) for DPO, where only log-ratios within a pair matter. α = 0 is ``"previous"``;
  round 1, which has no π_0, uses π_1.

The reference's log-probs are computed once per round from frozen copies, so a round trains with no reference
forward. Rounds whose reference is not their starting policy skip the trainer's step-0 check (it would rightly fail).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .generate import sample
from .models import Reference
from .train import StepBatches, TrainConfig, preference_objective, train

REFERENCES = ("previous", "initial", "extrapolated")


def online_rounds(
    policy,
    tokenizer,
    prompts: Sequence[str],
    label: Callable[[Any, list[str], list[list[str]], int], list[dict]],
    loss: Callable,
    train_config: Callable[[int], TrainConfig],
    rounds: int,
    k: int = 4,
    batch_size: int = 32,
    sample_seed: Callable[[int], int] = lambda t: t,
    reference: str = "previous",
    alpha: float = 0.0,
    on_round: Callable[[int, Any, list[dict], Any], dict | None] | None = None,
    sample_kw: dict | None = None,
    **hparams,
) -> tuple[Any, list[dict]]:
    """Run ``rounds`` rounds from ``policy`` (not modified) and return (the last policy, one log row per round).

    ``label(policy_t, prompts, samples, t) -> rows``: pairwise rows (prompt, chosen, rejected, optional strength) from
    the round's samples (``k`` per prompt, drawn with seed ``sample_seed(t)``; ``sample_kw`` go to
    :func:`prefkit.generate.sample`). ``train_config(t)``: the round's :class:`TrainConfig`. ``loss`` + ``hparams``
    (e.g. ``beta``) as in :func:`prefkit.train.preference_objective`. ``on_round(t, policy_{t+1}, rows, history)``
    may return a dict (an evaluation), which joins the round's log row with ``round`` and ``pairs``.
    """
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    if alpha and reference != "extrapolated":
        raise ValueError(f"alpha = {alpha} extrapolates the reference: use reference='extrapolated' with it")
    first, before, current = policy, None, policy  # π_1, π_{t-1}, π_t
    log = []
    for t in range(1, rounds + 1):
        ys = sample(current, tokenizer, list(prompts), n=k, seed=sample_seed(t), **(sample_kw or {}))
        rows = label(current, list(prompts), ys, t)
        if not rows:
            raise ValueError(f"round {t}: label returned no pairs from {len(prompts)} prompts x {k} samples")
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
        row = {"round": t, "pairs": len(rows)}
        if on_round is not None:
            row.update(on_round(t, trained, rows, hist) or {})
        log.append(row)
        before, current = current, trained
    return current, log


def _with_reference(rows: list[dict], other: list[dict], weight: float, own: float = 0.0) -> list[dict]:
    """Rows whose reference log-probs are ``own`` x theirs + ``weight`` x ``other``'s (the same rows, another model)."""
    keys = ("ref_chosen_logps", "ref_rejected_logps")
    return [{**r, **{key: own * r[key] + weight * o[key] for key in keys}} for r, o in zip(rows, other)]

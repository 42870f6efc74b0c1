"""Curriculum DPO (Curry-DPO; Pattnaik, Maheshwary, Ogueji, Yadav, Madhusudhan 2024, arXiv:2403.07230).

From K rated responses per prompt, Curry-DPO builds several (chosen, rejected) pairs, all with the best response as
chosen, orders them from easy (a large rating gap) to hard (a small one), and trains DPO on them in stages, each stage
with the previous stage's model as its reference. Its stages are the rounds of :func:`prefkit.online.online_rounds`
with ``k = 0``: nothing is sampled, each round reads its own fixed pairs.

- :func:`gap_pairs`: the K - 1 pairs (R1, R_j) of each list, easiest (largest score gap) first.
- :func:`curriculum_stages`: stage j holds every prompt's j-th easiest pair (or j-th hardest with
  ``order="hard_first"``, the anti-curriculum).
- :func:`staged_dpo`: train the stages in turn, the reference updated each stage (``"previous"``) or fixed to the
  starting model (``"initial"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .data import validate_listwise
from .online import online_rounds
from .train import TrainConfig

ORDERS = ("easy_first", "hard_first")


def gap_pairs(lists: Sequence[dict]) -> list[list[dict]]:
    """For each listwise row (prompt, responses, scores): the pairs (best, R_j) for the other responses R_j, sorted by
    the score gap, largest (easiest) first. A response tied with the best forms no pair (it is not worse), so a list
    can have fewer than K - 1 pairs; each pair carries its ``gap``."""
    out = []
    for row in validate_listwise(lists, allow_empty=True, allow_all_tied=True):
        order = sorted(range(len(row["scores"])), key=lambda k: -row["scores"][k])
        best = order[0]
        pairs = [
            {"prompt": row["prompt"], "chosen": row["responses"][best], "rejected": row["responses"][j],
             "gap": row["scores"][best] - row["scores"][j]}
            for j in reversed(order[1:]) if row["scores"][best] > row["scores"][j]
        ]  # fmt: skip
        out.append(pairs)
    return out


def curriculum_stages(lists: Sequence[dict], order: str = "easy_first") -> list[list[dict]]:
    """K - 1 stages: stage j (j = 1..K-1) holds each prompt's j-th easiest pair (R1 vs the j-th worst response), or
    with ``order="hard_first"`` its j-th hardest (the anti-curriculum). A prompt with fewer pairs (ties with the
    best) is absent from the stages its pairs do not reach."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    per_list = gap_pairs(lists)
    n_stages = max((len(r["responses"]) for r in lists), default=1) - 1
    if n_stages < 1:
        raise ValueError("curriculum_stages needs lists of at least 2 responses")
    stages = []
    for j in range(n_stages):
        if order == "easy_first":
            stages.append([pairs[j] for pairs in per_list if j < len(pairs)])
        else:  # j-th hardest: counted from the end of each list's easy-first pairs
            stages.append([pairs[len(pairs) - 1 - j] for pairs in per_list if j < len(pairs)])
    return stages


def staged_dpo(
    policy,
    tokenizer,
    stages: Sequence[Sequence[dict]],
    loss: Callable,
    train_config: Callable[[int], TrainConfig],
    reference: str = "previous",
    batch_size: int = 32,
    on_round: Callable | None = None,
    **hparams,
):
    """Train ``policy`` (not modified) on ``stages`` in turn: stage t with ``train_config(t)``, against the previous
    stage's model (``reference="previous"``, Curry-DPO) or the starting model (``"initial"``, the ablation without
    reference updates). Returns (the last model, one log row per stage) as :func:`prefkit.online.online_rounds`."""
    if not stages or any(len(s) == 0 for s in stages):
        raise ValueError(f"every stage needs pairs; got sizes {[len(s) for s in stages]}")
    prompts = sorted({r["prompt"] for s in stages for r in s})

    def label(_policy, _prompts, _samples, t):
        return [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in stages[t - 1]]

    return online_rounds(policy, tokenizer, prompts, label, loss, train_config, rounds=len(stages), k=0,
                         batch_size=batch_size, reference=reference, on_round=on_round, **hparams)  # fmt: skip

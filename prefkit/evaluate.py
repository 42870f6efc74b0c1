"""Evaluation: sample from the policy and score with the oracle; ranking accuracies on preference pairs.

- :func:`oracle_eval`: mean oracle score of samples, paired win rate against the reference policy (ties count half),
  KL(π || π_ref) estimated from the policy's own samples, mean response length.
- :func:`ranking_report`: the observed ranking accuracy of Chen et al. 2024 (arXiv:2405.19534), i.e. how often
  π(y_w|x) > π(y_l|x), plain and length-normalised; the *idealized* ranking accuracy (Cor. 3.3) of the model that
  optimises the DPO objective perfectly given the true preference probabilities; the implicit-reward accuracy; and
  how many pairs the reference ranked wrong that the policy now ranks right.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .generate import sample
from .logps import encode, sequence_logps


@torch.no_grad()
def response_logps(model, tokenizer, prompts: Sequence, responses: Sequence, batch_size: int = 256):
    """Summed log π(response | prompt) and response-token counts, as NumPy arrays, computed in batches."""
    was_training = model.training
    model.eval()
    out, counts = [], []
    for s in range(0, len(prompts), batch_size):
        b = encode(tokenizer, prompts[s : s + batch_size], responses[s : s + batch_size])
        lp, n = sequence_logps(model, b["input_ids"], b["attention_mask"], b["response_mask"])
        out.append(lp.cpu())
        counts.append(n.cpu())
    model.train(was_training)
    return torch.cat(out).numpy(), torch.cat(counts).numpy()


def win_rate(scores: Sequence[float], baseline: Sequence[float]) -> float:
    """Paired win rate: P(score > baseline) + 0.5 P(score == baseline), over aligned samples."""
    s, b = np.asarray(scores, dtype=float), np.asarray(baseline, dtype=float)
    if s.shape != b.shape:
        raise ValueError(f"scores {s.shape} and baseline {b.shape} must be aligned")
    return float(np.mean((s > b) + 0.5 * (s == b)))


def oracle_eval(
    score: Callable[[str, str], float],
    policy,
    tokenizer,
    prompts: Sequence[str],
    reference=None,
    ref_samples: Sequence[str] | None = None,
    seed: int = 0,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
) -> dict:
    """Sample one response per prompt from ``policy``, score it with the oracle ``score(prompt, response)``.

    With a ``reference`` (:class:`prefkit.models.Reference`) also: the paired win rate against reference samples
    (``ref_samples``, or sampled here with the same seed) and KL(π || π_ref) ≈ mean over y ~ π of
    log π(y|x) - log π_ref(y|x), in nats per response.

    ``per_prompt`` holds the per-prompt values behind the means, aligned with ``prompts`` (the paired units of a
    comparison claim, ``prefkit.claims.compare``): ``score`` and ``length``, and with a reference ``win`` (1, 0.5 or
    0 against the reference sample), ``log_ratio`` and ``ref_score``.
    """
    ys = [
        r[0]
        for r in sample(
            policy, tokenizer, prompts, n=1, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
        )
    ]
    scores = np.array([score(p, y) for p, y in zip(prompts, ys)])
    lp, counts = response_logps(policy, tokenizer, prompts, ys)
    out = {
        "score": float(scores.mean()),
        "score_sem": float(scores.std(ddof=1) / math.sqrt(len(scores))) if len(scores) > 1 else 0.0,
        "length": float(counts.mean()),
        "exact": float(np.mean(scores == 1.0)),
    }
    per_prompt = {"score": scores.tolist(), "length": np.asarray(counts, dtype=float).tolist()}
    if reference is not None:
        with reference.as_model() as ref:
            if ref_samples is None:
                ref_samples = [
                    r[0]
                    for r in sample(
                        ref, tokenizer, prompts, n=1, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
                    )
                ]
            ref_lp, _ = response_logps(ref, tokenizer, prompts, ys)
        ref_scores = np.array([score(p, y) for p, y in zip(prompts, ref_samples)])
        out.update(
            win_rate=win_rate(scores, ref_scores), kl=float(np.mean(lp - ref_lp)), ref_score=float(ref_scores.mean())
        )
        wins = (scores > ref_scores) + 0.5 * (scores == ref_scores)
        log_ratio = np.asarray(lp, dtype=float) - np.asarray(ref_lp, dtype=float)
        per_prompt.update(win=wins.tolist(), log_ratio=log_ratio.tolist(), ref_score=ref_scores.tolist())
    out["per_prompt"] = per_prompt
    out["samples"] = ys
    return out


def idealized_ranking_accuracy(
    ref_chosen_logps: np.ndarray, ref_rejected_logps: np.ndarray, p_true: np.ndarray, beta: float
) -> float:
    """Chen et al. 2024, Cor. 3.3: the DPO-optimal policy π* = π_ref exp(r*/β) / Z ranks y_w above y_l iff

        log π_ref(y_w|x) - log π_ref(y_l|x) + (1/β) logit P(y_w > y_l) > 0,

    with P the true (aggregated) preference probability. It can still rank a pair wrong when π_ref strongly prefers
    y_l and the preference is weak, which is why it is below 100%.
    """
    p = np.clip(np.asarray(p_true, dtype=float), 1e-12, 1 - 1e-12)
    return float(np.mean(ref_chosen_logps - ref_rejected_logps + np.log(p / (1 - p)) / beta > 0))


def pair_logps(policy, reference, tokenizer, rows: Sequence[dict]) -> dict[str, np.ndarray]:
    """Summed log-probs of each row's chosen and rejected response under the policy (``pc``, ``pr``) and under the
    reference (``rc``, ``rr``), and the response-token counts (``nc``, ``nr``)."""
    prompts = [r["prompt"] for r in rows]
    ch, rj = [r["chosen"] for r in rows], [r["rejected"] for r in rows]
    pc, nc = response_logps(policy, tokenizer, prompts, ch)
    pr, nr = response_logps(policy, tokenizer, prompts, rj)

    def ref_logps():  # the reference never changes: every evaluation of every arm on these pairs shares them
        with reference.as_model() as ref:
            return response_logps(ref, tokenizer, prompts, ch)[0], response_logps(ref, tokenizer, prompts, rj)[0]

    rc, rr = reference.shared(["pair_logps", prompts, ch, rj, tokenizer.get_vocab()], ref_logps)
    rc, rr = rc.copy(), rr.copy()
    return {"pc": pc, "pr": pr, "rc": rc, "rr": rr, "nc": nc, "nr": nr}


def ranking_report(policy, reference, tokenizer, rows: Sequence[dict], beta: float) -> dict:
    """Ranking accuracies of ``policy`` on preference ``rows`` (prompt/chosen/rejected, and ``p_true`` for the
    idealized accuracy), and the fate of the pairs the reference ranked wrong.
    """
    lp = pair_logps(policy, reference, tokenizer, rows)
    pc, pr, rc, rr, nc, nr = (lp[k] for k in ("pc", "pr", "rc", "rr", "nc", "nr"))
    ref_right = rc > rr
    pol_right = pc > pr
    out = {
        "ranking_acc": float(np.mean(pol_right)),
        "ranking_acc_norm": float(np.mean(pc / nc > pr / nr)),
        "ref_ranking_acc": float(np.mean(ref_right)),
        "reward_acc": win_rate(pc - rc, pr - rr),  # ties (e.g. policy == reference) count half
        "margin": float(np.mean(beta * ((pc - rc) - (pr - rr)))),
        "flipped_to_right": float(np.mean(pol_right[~ref_right])) if (~ref_right).any() else float("nan"),
        "flipped_to_wrong": float(np.mean(~pol_right[ref_right])) if ref_right.any() else float("nan"),
    }
    if all("p_true" in r for r in rows):
        out["idealized_acc"] = idealized_ranking_accuracy(rc, rr, np.array([r["p_true"] for r in rows]), beta)
    return out


@torch.no_grad()
def prompt_logps(model, tokenizer, prompts: Sequence[str], batch_size: int = 256):
    """log π(x) of the prompt text itself (every prompt token after BOS) and the token counts, as NumPy arrays: what a
    joint objective such as DOVE can raise without touching the responses."""
    was_training = model.training
    model.eval()
    out, counts = [], []
    for s in range(0, len(prompts), batch_size):
        chunk = list(prompts[s : s + batch_size])
        b = encode(tokenizer, [""] * len(chunk), chunk, add_eos=False)  # BOS, then the prompt as the scored part
        lp, n = sequence_logps(model, b["input_ids"], b["attention_mask"], b["response_mask"])
        out.append(lp.cpu())
        counts.append(n.cpu())
    model.train(was_training)
    return torch.cat(out).numpy(), torch.cat(counts).numpy()


@torch.no_grad()
def joint_margin_parts(policy, reference, tokenizer, rows: Sequence[dict], beta: float) -> dict[str, float]:
    """Split DOVE's implicit margin β h on joint rows into the part from prompt tokens and the part from response
    tokens: h = [log π/π_ref(x_w) - log π/π_ref(x_l)] + [log π/π_ref(y_w|x_w) - log π/π_ref(y_l|x_l)].

    Returns the mean of each part, ``prompt_share`` = mean |prompt part| / (mean |prompt part| + mean |response
    part|), and the joint implicit-reward accuracy (ties count half).
    """
    from .logps import encode_joint

    b = encode_joint(tokenizer, rows)
    B = len(rows)
    parts = {}
    for name, mask in (("prompt", b["prompt_mask"]), ("response", b["attention_mask"] - b["prompt_mask"])):
        pol = sequence_logps(policy, b["input_ids"], b["attention_mask"], mask)[0]
        with reference.as_model() as ref_model:
            ref = sequence_logps(ref_model, b["input_ids"], b["attention_mask"], mask)[0]
        ratio = pol - ref  # (2B,)
        parts[name] = beta * (ratio[:B] - ratio[B:])  # (B,)
    p, r = parts["prompt"].abs().mean().item(), parts["response"].abs().mean().item()
    total = parts["prompt"] + parts["response"]
    return {
        "margin_prompt": parts["prompt"].mean().item(),
        "margin_response": parts["response"].mean().item(),
        "prompt_share": p / (p + r) if p + r > 0 else 0.0,
        "joint_reward_acc": ((total > 0).float() + 0.5 * (total == 0).float()).mean().item(),
    }


def margin_tracking(policy, reference, tokenizer, rows: Sequence[dict], beta: float, n_bins: int = 4) -> dict:
    """Does the implicit reward margin track the oracle's margin? On pairs (``prompt``, ``chosen``, ``rejected``,
    ``score_chosen``, ``score_rejected``) with different oracle scores: m = β [log π/π_ref(y_1) - log π/π_ref(y_2)]
    against Δr = r(y_1) - r(y_2).

    Returns the Spearman correlation of m and Δr (``spearman``), the implicit-reward accuracy on the oracle's order
    (``oracle_reward_acc``, ties count half), and per bin of |Δr| (equal-count bins, ``bins``): the bin's mean |Δr|,
    the mean margin in the oracle's direction m · sign(Δr), and the accuracy. A model whose margins grow with the
    oracle's gap has a rising curve.
    """
    from scipy.stats import spearmanr

    rows = [r for r in rows if r["score_chosen"] != r["score_rejected"]]
    if len(rows) < 2 * n_bins:
        raise ValueError(f"need at least {2 * n_bins} pairs with different oracle scores, got {len(rows)}")
    lp = pair_logps(policy, reference, tokenizer, rows)
    m = beta * ((lp["pc"] - lp["rc"]) - (lp["pr"] - lp["rr"]))
    dr = np.array([r["score_chosen"] - r["score_rejected"] for r in rows])
    oriented = m * np.sign(dr)
    order = np.argsort(np.abs(dr), kind="stable")
    bins = [
        {"gap": float(np.abs(dr[i]).mean()), "margin": float(oriented[i].mean()), "acc": win_rate(oriented[i], 0 * i)}
        for i in np.array_split(order, n_bins)
    ]
    return {
        "spearman": float(spearmanr(m, dr).statistic),
        "oracle_reward_acc": win_rate(oriented, np.zeros_like(oriented)),
        "bins": bins,
    }


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve of ``scores`` as a detector of ``labels`` (the probability that a random positive
    scores above a random negative, ties counting half). NaN when either class is empty."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))

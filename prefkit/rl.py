"""On-policy batches: every step samples K responses per prompt from the policy as it is now and scores them.

With a policy-gradient loss of :mod:`prefkit.losses.rl` and :func:`prefkit.train.preference_objective`, the one
training loop is an RL loop (RLOO with a KL penalty):

    batches = OnPolicyBatches(policy, tokenizer, prompts, reward_fn, k=4, batch_size=16, seed=0)
    train(policy, preference_objective(rloo_loss, Reference(policy), beta=0.05), batches, TrainConfig(...))

``reward_fn(prompts, responses) -> (B, K) scores`` is the world's oracle, a reward model or a judge; prefkit never
looks inside it. Step ``s``'s prompts and sampling seed depend only on ``seed`` and ``s``; the samples also depend on
the policy's weights, so a resumed run samples what an uninterrupted one would only if it resumes the same weights.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .generate import sample
from .logps import encode_lists

RewardFn = Callable[[list[str], list[list[str]]], "np.ndarray | Sequence[Sequence[float]]"]


class OnPolicyBatches:
    """``batches[step]``: ``batch_size`` prompts (a fresh permutation each epoch), ``k`` samples of each from
    ``policy`` at ``temperature``, scored by ``reward_fn``: an :func:`prefkit.logps.encode_lists` batch with
    ``scores`` (B, K), plus ``prompts`` and ``responses`` (the texts) for logging.

    The samples are decoded and encoded again, which closes every response with EOS. A sample cut at
    ``max_new_tokens`` did not end with EOS, so its log-prob then includes an EOS it never sampled; ``truncated``
    counts such samples in the batch: keep ``max_new_tokens`` above what the policy writes and check it stays 0."""

    def __init__(
        self,
        policy,
        tokenizer,
        prompts: Sequence[str],
        reward_fn: RewardFn,
        k: int = 4,
        batch_size: int = 16,
        seed: int = 0,
        max_new_tokens: int = 48,
        temperature: float = 1.0,
    ):
        if k < 2:
            raise ValueError(f"on-policy batches need k >= 2 samples per prompt (a baseline needs others), got {k}")
        if not prompts:
            raise ValueError("no prompts to sample for")
        self.policy, self.tok, self.prompts, self.reward_fn = policy, tokenizer, list(prompts), reward_fn
        self.k, self.bs, self.seed = int(k), min(int(batch_size), len(prompts)), int(seed)
        self.max_new_tokens, self.temperature = max_new_tokens, temperature

    def _prompts(self, step: int) -> list[str]:
        per_epoch = max(1, len(self.prompts) // self.bs)
        epoch, i = divmod(step, per_epoch)
        order = list(range(len(self.prompts)))
        random.Random(self.seed * 100_003 + epoch).shuffle(order)
        return [self.prompts[j] for j in order[i * self.bs : (i + 1) * self.bs]]

    def __getitem__(self, step: int) -> dict:
        prompts = self._prompts(step)
        responses = sample(self.policy, self.tok, prompts, n=self.k, max_new_tokens=self.max_new_tokens,
                           temperature=self.temperature, seed=self.seed * 1_000_003 + step)  # fmt: skip
        scores = np.asarray(self.reward_fn(prompts, responses), dtype=np.float64)
        if scores.shape != (len(prompts), self.k):
            raise ValueError(f"reward_fn returned scores of shape {scores.shape} for {len(prompts)} prompts x "
                             f"{self.k} samples; expected ({len(prompts)}, {self.k})")  # fmt: skip
        if not np.isfinite(scores).all():
            b, i = map(int, np.argwhere(~np.isfinite(scores))[0])
            raise ValueError(f"reward_fn gave a non-finite score ({scores[b, i]}) to sample {i} of prompt {b} "
                             f"({prompts[b]!r})")  # fmt: skip
        batch = encode_lists(self.tok, prompts, responses)
        batch["scores"] = torch.tensor(scores, dtype=torch.float32)
        batch["prompts"], batch["responses"] = prompts, responses
        lengths = self.tok([y for ys in responses for y in ys], add_special_tokens=False)["input_ids"]
        batch["truncated"] = sum(len(ids) >= self.max_new_tokens for ids in lengths)
        return batch

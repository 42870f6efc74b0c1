"""One training loop for every LM method, and the pairwise forward that plugs a loss into it.

A method is a loss function (``prefkit.losses``) plus, where needed, a batch builder; there are no per-method
trainer classes. ``train(policy, loss_fn, batches, config)`` runs the loop: ``loss_fn(policy, batch)`` returns a
scalar loss and a dict of float metrics, which become one row of the history DataFrame per step.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch

from .logps import sequence_logps

Tensor = torch.Tensor


def call_loss(loss: Callable, **inputs):
    """Call ``loss`` with the inputs its signature accepts; extra inputs are dropped, missing ones raise."""
    params = inspect.signature(loss).parameters
    return loss(**{k: v for k, v in inputs.items() if k in params})


def pairwise_forward(policy, reference, batch: dict[str, Tensor], loss: Callable, **hparams):
    """Log-probs of a pairwise batch (B chosen then B rejected, one forward) -> per-example losses and metrics.

    ``reference`` is a :class:`prefkit.models.Reference` (or ``None`` for reference-free losses such as SimPO).
    Returns ``(losses (B,), metrics)`` where metrics are detached floats: mean implicit rewards, margin, reward
    accuracy, and the policy's mean log-probs.
    """
    logps, lengths = sequence_logps(policy, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
    B = logps.shape[0] // 2
    inputs = {
        "policy_chosen_logps": logps[:B],
        "policy_rejected_logps": logps[B:],
        "chosen_lengths": lengths[:B],
        "rejected_lengths": lengths[B:],
    }
    if reference is not None:
        ref_logps, _ = reference.logps(batch)
        inputs["ref_chosen_logps"], inputs["ref_rejected_logps"] = ref_logps[:B], ref_logps[B:]
    if "strength" in batch:  # soft labels: P(chosen > rejected) -> ε = 1 - p
        inputs["label_smoothing"] = 1.0 - batch["strength"].to(logps.device)
    losses, chosen_r, rejected_r = call_loss(loss, **inputs, **hparams)
    metrics = {
        "loss": losses.mean().item(),
        "rewards/chosen": chosen_r.mean().item(),
        "rewards/rejected": rejected_r.mean().item(),
        "rewards/margin": (chosen_r - rejected_r).mean().item(),
        "rewards/accuracy": (chosen_r > rejected_r).float().mean().item(),
        "logps/chosen": logps[:B].mean().item(),
        "logps/rejected": logps[B:].mean().item(),
    }
    return losses, metrics


LN2 = math.log(2.0)

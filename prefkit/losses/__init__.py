"""Pure preference losses and a name -> function registry.

Every loss takes per-sequence log-probs (and, where it needs them, response lengths) as keyword arguments with the
standard names ``policy_chosen_logps``, ``policy_rejected_logps``, ``ref_chosen_logps``, ``ref_rejected_logps``,
``chosen_lengths``, ``rejected_lengths``, plus its hyper-parameters, and returns per-example losses and detached
rewards. ``prefkit.train.call_loss`` passes each loss only the inputs its signature names.
"""

from __future__ import annotations

from collections.abc import Callable

from .pairwise import (
    DPOConfig,
    HingeConfig,
    IPOConfig,
    RobustDPOConfig,
    SimPOConfig,
    dpo_loss,
    hinge_loss,
    ipo_loss,
    robust_dpo_loss,
    simpo_loss,
)

LOSSES: dict[str, Callable] = {
    "dpo": dpo_loss,
    "cdpo": dpo_loss,  # conservative DPO: dpo_loss with label_smoothing > 0
    "robust": robust_dpo_loss,
    "ipo": ipo_loss,
    "hinge": hinge_loss,
    "simpo": simpo_loss,
}

CONFIGS = {
    "dpo": DPOConfig,
    "cdpo": DPOConfig,
    "robust": RobustDPOConfig,
    "ipo": IPOConfig,
    "hinge": HingeConfig,
    "simpo": SimPOConfig,
}

REFERENCE_FREE = {"simpo"}


def get_loss(name: str) -> Callable:
    """Look a loss up by name, with the known names in the error."""
    try:
        return LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; known: {sorted(LOSSES)}") from None


__all__ = [
    "CONFIGS",
    "LOSSES",
    "REFERENCE_FREE",
    "DPOConfig",
    "HingeConfig",
    "IPOConfig",
    "RobustDPOConfig",
    "SimPOConfig",
    "dpo_loss",
    "get_loss",
    "hinge_loss",
    "ipo_loss",
    "robust_dpo_loss",
    "simpo_loss",
]

"""Pure preference losses and a name -> function registry.

Pairwise losses take per-sequence log-probs (and, where it needs them, response lengths) as keyword arguments with the
standard names ``policy_chosen_logps``, ``policy_rejected_logps``, ``ref_chosen_logps``, ``ref_rejected_logps``,
``chosen_lengths``, ``rejected_lengths``, plus its hyper-parameters, and returns per-example losses and detached
rewards. Listwise losses (``LISTWISE``) take ``policy_logps`` / ``ref_logps`` / ``lengths`` of shape (B, K) and the
list's ``scores``, and return per-example losses and the (B, K) rewards they rank by. ``prefkit.train.call_loss`` passes each loss only the inputs its signature names.
"""

from __future__ import annotations

from collections.abc import Callable

from .listwise import (
    LiPOConfig,
    ListDPOConfig,
    PROConfig,
    TreePOConfig,
    all_pairs_dpo_loss,
    best_worst_dpo_loss,
    lipo_lambda_loss,
    plackett_luce_loss,
    pro_loss,
    tree_po_loss,
)
from .pairwise import (
    DPOConfig,
    HingeConfig,
    IPOConfig,
    NormDPOConfig,
    RobustDPOConfig,
    SimPOConfig,
    TriplePOConfig,
    TriplePOLConfig,
    dpo_loss,
    hinge_loss,
    ipo_loss,
    norm_dpo_loss,
    robust_dpo_loss,
    simpo_loss,
    triple_po_loss,
)

LOSSES: dict[str, Callable] = {
    "dpo": dpo_loss,
    "cdpo": dpo_loss,  # conservative DPO: dpo_loss with label_smoothing > 0
    "osp": dpo_loss,  # OSP (Zhai et al. 2024): soft-preference cross-entropy = DPO with a per-pair ``strength`` label
    "dove": dpo_loss,  # DOVE / JPO (Bansal et al. 2024): DPO on joint log-probs log π(x, y) (prefkit.logps.encode_joint)
    "dpo_norm": norm_dpo_loss,  # length-normalised DPO (Tülu 3; Delta learning)
    "robust": robust_dpo_loss,
    "ipo": ipo_loss,
    "hinge": hinge_loss,
    "simpo": simpo_loss,
    "triple_po": triple_po_loss,  # Saeidi et al. 2024 (Triple PO); also needs gold responses
    "triple_po_l": triple_po_loss,  # its length-normalised variant TPO-L
    # listwise: (B, K) log-probs and scores
    "lipo_lambda": lipo_lambda_loss,
    "dpo_all_pairs": all_pairs_dpo_loss,
    "dpo_best_worst": best_worst_dpo_loss,
    "dpo_pl": plackett_luce_loss,
    "pro": pro_loss,
    "tree_po": tree_po_loss,  # Liao et al. 2024 (Tree PO); per-step log-probs of tree leaves
}

CONFIGS = {
    "dpo": DPOConfig,
    "cdpo": DPOConfig,
    "osp": DPOConfig,
    "dove": DPOConfig,
    "dpo_norm": NormDPOConfig,
    "robust": RobustDPOConfig,
    "ipo": IPOConfig,
    "hinge": HingeConfig,
    "simpo": SimPOConfig,
    "lipo_lambda": LiPOConfig,
    "dpo_all_pairs": LiPOConfig,
    "dpo_best_worst": ListDPOConfig,
    "dpo_pl": ListDPOConfig,
    "pro": PROConfig,
    "triple_po": TriplePOConfig,
    "triple_po_l": TriplePOLConfig,
    "tree_po": TreePOConfig,
}

REFERENCE_FREE = {"simpo", "pro", "triple_po", "triple_po_l"}
LISTWISE = {"lipo_lambda", "dpo_all_pairs", "dpo_best_worst", "dpo_pl", "pro", "tree_po"}


def get_loss(name: str) -> Callable:
    """Look a loss up by name, with the known names in the error."""
    try:
        return LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; known: {sorted(LOSSES)}") from None


__all__ = [
    "CONFIGS",
    "LISTWISE",
    "LOSSES",
    "LiPOConfig",
    "PROConfig",
    "ListDPOConfig",
    "all_pairs_dpo_loss",
    "best_worst_dpo_loss",
    "lipo_lambda_loss",
    "plackett_luce_loss",
    "pro_loss",
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
    "norm_dpo_loss",
    "NormDPOConfig",
    "robust_dpo_loss",
    "simpo_loss",
    "tree_po_loss",
    "triple_po_loss",
    "TreePOConfig",
    "TriplePOConfig",
    "TriplePOLConfig",
]

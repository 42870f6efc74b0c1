"""MIA-DPO: multi-image augmented DPO with attention-aware selection of rejected answers.

Liu, Zang, Dong, Zhang, Cao, Duan, He, Xiong, Lin, Wang 2024 (ICLR 2025), "MIA-DPO: Multi-Image Augmented Direct
Preference Optimization For Large Vision-Language Models", arXiv:2410.17637.

Single-image questions are turned into multi-image prompts (sequence, grid collage, pic-in-pic; see
:mod:`prefkit.worlds.shapes`). The model answers each; the chosen answer is the ground truth and the rejected one is
the model's own answer when it differs. Attention-aware selection keeps a pair only when the model looked elsewhere:
the share of its visual attention on the target picture (:func:`prefkit.vlm.attention_ratio`) is below a threshold
for the format and number of pictures, and the answer's perplexity is above a floor. The kept pairs train with DPO
(``prefkit.losses.dpo_loss``, β = 0.1). Selection reads only the model (attention, perplexity) and the ground-truth
answer, never the oracle's verdict on the answer, so a correct paraphrase ("crimson" for red) can slip through.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .vlm import ImagePrep, answer_perplexity, answers, attention_ratio


def _paper_thresholds() -> dict[str, dict[int, float]]:
    return {
        "sequence": {2: 0.8, 3: 0.7, 4: 0.6, 5: 0.6},  # Liu et al. 2024, §3.2: sequence data with 2-5 images
        "grid": {2: 0.8, 3: 0.7, 4: 0.6},  # ours: the sequence values by number of pictures
        "pip": {2: 0.7},  # ours: one value between the 2- and 3-picture sequence thresholds
    }


@dataclass
class MIAConfig:
    thresholds: dict[str, dict[int, float]] = field(default_factory=_paper_thresholds)  # keep if ratio < this
    min_perplexity: float = 1.1  # Liu et al. 2024: keep if the rejected answer's perplexity > 1.1
    beta: float = 0.1  # DPO β (Liu et al. 2024)


def candidates(
    model,
    tokenizer,
    rows: Sequence[dict],
    prep: ImagePrep,
    seed: int = 0,
    temperature: float = 1.0,
    max_new_tokens: int = 1,
) -> list[dict]:
    """The model's answer to each ``vlm_rows`` row (sampled at ``temperature``), with what selection reads:
    ``response``, ``mismatch`` (the text differs from the ground truth), ``ratio`` (attention share on the target)
    and ``perplexity`` of the response."""
    said = answers(model, tokenizer, rows, prep, max_new_tokens, temperature, seed)
    ratio = attention_ratio(model, tokenizer, rows, prep)
    ppl = answer_perplexity(model, tokenizer, rows, [s if s else " " for s in said], prep)
    return [
        {
            **r,
            "response": s,
            "mismatch": s.strip().strip(".").lower() != r["answer"].lower(),
            "ratio": float(a),
            "perplexity": float(p),
        }
        for r, s, a, p in zip(rows, said, ratio, ppl)
    ]


def keep(row: dict, config: MIAConfig) -> bool:
    """Attention-aware selection (Liu et al. 2024, §3.2): a mismatching answer given while the attention share on
    the target is below the format's threshold, with perplexity above the floor."""
    limits = config.thresholds.get(row["format"], {})
    if row["n_images"] not in limits:
        raise ValueError(f"no attention threshold for format {row['format']!r} with {row['n_images']} images")
    return row["mismatch"] and row["ratio"] < limits[row["n_images"]] and row["perplexity"] > config.min_perplexity


def to_pair(row: dict) -> dict:
    """chosen = the ground truth, rejected = the model's answer."""
    return {**row, "chosen": row["answer"], "rejected": row["response"]}


def mismatch_pairs(cands: Sequence[dict]) -> list[dict]:
    """Every mismatching answer as a rejected one (no selection)."""
    return [to_pair(r) for r in cands if r["mismatch"] and r["response"]]


def selected_pairs(cands: Sequence[dict], config: MIAConfig) -> list[dict]:
    """The pairs attention-aware selection keeps."""
    return [to_pair(r) for r in cands if r["response"] and keep(r, config)]


def random_rejected(pairs: Sequence[dict], values: dict[str, Sequence[str]], seed: int = 0) -> list[dict]:
    """The same prompts with a random wrong value of the asked attribute as the rejected answer (the control for
    "the model's own mistakes matter")."""
    rng = random.Random(seed)
    return [{**p, "rejected": rng.choice([v for v in values[p["attribute"]] if v != p["answer"]])} for p in pairs]


def selection_report(cands: Sequence[dict], config: MIAConfig, truly_wrong: Sequence[bool]) -> dict[str, float]:
    """How well selection separates real errors from paraphrases, judged with the oracle (evaluation only):
    ``truly_wrong[i]`` says whether candidate i's answer is wrong by the oracle."""
    mism = np.array([c["mismatch"] for c in cands])
    kept = np.array([keep(c, config) for c in cands])
    wrong = np.asarray(truly_wrong, dtype=bool)
    return {
        "candidates": float(len(cands)),
        "mismatches": float(mism.sum()),
        "kept": float(kept.sum()),
        "paraphrase_share_mismatch": float((mism & ~wrong).sum() / max(1, mism.sum())),
        "paraphrase_share_kept": float((kept & ~wrong).sum() / max(1, kept.sum())),
    }


def arm_datasets(cands: Sequence[dict], config: MIAConfig, values: dict[str, Sequence[str]], seed: int = 0):
    """The training sets of the comparison, all from the same candidates: ``all mismatches`` (DPO on every answer
    that differs from the ground truth), ``MIA-DPO`` (attention-aware selection), ``random rejected`` (MIA-DPO's
    prompts with a random wrong value rejected) and ``SFT on chosen`` (MIA-DPO's prompts, the ground truth as a
    demonstration: the control for "it just saw multi-image data")."""
    mia = selected_pairs(cands, config)
    return {
        "DPO (all mismatches)": mismatch_pairs(cands),
        "MIA-DPO": mia,
        "DPO (random rejected)": random_rejected(mia, values, seed),
        "SFT on chosen": [{**p, "response": p["chosen"]} for p in mia],
    }

"""MIA-DPO: multi-image augmented DPO with attention-aware selection of rejected answers.

Liu, Zang, Dong, Zhang, Cao, Duan, He, Xiong, Lin, Wang 2024 (ICLR 2025), "MIA-DPO: Multi-Image Augmented Direct
Preference Optimization For Large Vision-Language Models", arXiv:2410.17637.

Single-image questions are turned into multi-image prompts (sequence, grid collage, pic-in-pic; see
:mod:`prefkit.worlds.shapes`). The model answers each; the chosen answer is the ground truth and the rejected one is
the model's own answer when it differs. Attention-aware selection keeps a pair only when the model looked elsewhere:
the share of its visual attention on the target picture (:func:`prefkit.vlm.attention_ratio`) is below a threshold
for the format and number of pictures, and the answer's perplexity is above a floor. The official thresholds
(:func:`official_thresholds`) were set for LLaVA-1.5; :func:`calibrate_thresholds` sets per-layout quantiles for
another model. The kept pairs train with DPO
(``prefkit.losses.dpo_loss``, β = 0.1). Selection reads only the model (attention, perplexity) and the ground-truth
answer, never the oracle's verdict on the answer, so a correct paraphrase ("crimson" for red) can slip through.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .vlm import ImagePrep, answer_perplexity, answers, attention_ratio


def official_thresholds() -> dict[str, dict[int, float]]:
    """The attention-share thresholds of the official data scripts (github.com/Liuziyu77/MIA-DPO,
    gen_data/gen_chosen_rejected/), by layout and number of pictures."""
    return {
        "sequence": {2: 0.8, 3: 0.7, 4: 0.6, 5: 0.6},  # make_data_duotu.py, compared with <=
        "grid": {2: 0.7, 3: 0.6, 4: 0.5, 6: 0.4, 9: 0.3},  # make_data_ping.py, compared with <
        "pip": {2: 0.8},  # make_data_pip.py (one inset in one picture), compared with <
    }


def official_inclusive() -> dict[str, bool]:
    """Whether a share equal to the threshold is kept, per layout, as in the official scripts."""
    return {"sequence": True, "grid": False, "pip": False}


@dataclass
class MIAConfig:
    thresholds: dict[str, dict[int, float]] = field(default_factory=official_thresholds)  # keep if share below
    inclusive: dict[str, bool] = field(default_factory=official_inclusive)  # True: keep a share equal to it too
    min_perplexity: float = 1.1  # Liu et al. 2024, §3.2 and the official scripts: keep if PPL > 1.1
    beta: float = 0.1  # DPO β (Liu et al. 2024)


def parse_thresholds(text: str) -> dict[str, dict[int, float]]:
    """``"sequence:2<0.8, grid:4<0.5"`` -> ``{"sequence": {2: 0.8}, "grid": {4: 0.5}}`` (a flat notebook parameter:
    a candidate of that layout is kept when its attention share is below the value)."""
    out: dict[str, dict[int, float]] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            cell, value = item.split("<")
            fmt, n = cell.strip().split(":")
            n_images, tau = int(n), float(value)
        except ValueError:
            raise ValueError(f"threshold {item!r} is not of the form 'format:n_images<value'") from None
        if not 0.0 <= tau <= 1.0:
            raise ValueError(f"threshold {item!r}: an attention share lies in [0, 1]")
        if n_images in out.get(fmt.strip(), {}):
            raise ValueError(f"threshold {item!r}: {cell.strip()} is given twice")
        out.setdefault(fmt.strip(), {})[n_images] = tau
    if not out:
        raise ValueError(f"no thresholds in {text!r}")
    return out


def format_thresholds(thresholds: dict[str, dict[int, float]], digits: int = 3) -> str:
    """The inverse of :func:`parse_thresholds`."""
    return ", ".join(f"{f}:{n}<{round(t, digits)}" for f, d in thresholds.items() for n, t in sorted(d.items()))


def calibrate_thresholds(
    cands: Sequence[dict], keep_share: float, fallback: dict[str, dict[int, float]] | None = None
) -> dict[str, dict[int, float]]:
    """Per layout and number of pictures, the ``keep_share`` quantile of the attention share among the mismatching
    candidates: compared with <, selection then keeps at most that share of them (before the perplexity floor). A
    layout of ``fallback`` (default: the official thresholds) with no mismatching candidate keeps the fallback's
    value. Our toy variant of the official thresholds, which were set for LLaVA-1.5's attention."""
    if not 0.0 < keep_share < 1.0:
        raise ValueError(f"keep_share must lie in (0, 1), got {keep_share}")
    cells: dict[tuple[str, int], list[float]] = {}
    for c in cands:
        if c["mismatch"]:
            cells.setdefault((c["format"], c["n_images"]), []).append(c["ratio"])
    if not cells:
        raise ValueError("no mismatching candidates to calibrate on")
    out = {f: dict(d) for f, d in (official_thresholds() if fallback is None else fallback).items()}
    for (fmt, n), r in sorted(cells.items()):
        out.setdefault(fmt, {})[n] = float(np.quantile(r, keep_share, method="lower"))
    return out


def candidates(
    model,
    tokenizer,
    rows: Sequence[dict],
    prep: ImagePrep,
    seed: int = 0,
    temperature: float = 0.0,
    max_new_tokens: int = 1,
    layer: int | str = "middle",
) -> list[dict]:
    """The model's answer to each ``vlm_rows`` row (greedy at ``temperature=0``, as the official scripts; else
    sampled), with what selection reads: ``response``, ``mismatch`` (the text differs from the ground truth),
    ``ratio`` (attention share on the target, read at ``layer`` over the answer's tokens) and ``perplexity`` of the
    response (with its closing EOS, as the official scripts score every generated token)."""
    said = answers(model, tokenizer, rows, prep, max_new_tokens, temperature, seed)
    ratio = attention_ratio(model, tokenizer, rows, prep, said, layer)
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
    the target is below the layout's threshold τ (or equal to it where ``config.inclusive`` says so), with perplexity
    above the floor."""
    limits = config.thresholds.get(row["format"], {})
    if row["n_images"] not in limits:
        raise ValueError(f"no attention threshold for format {row['format']!r} with {row['n_images']} images")
    tau = limits[row["n_images"]]
    low = row["ratio"] <= tau if config.inclusive.get(row["format"], False) else row["ratio"] < tau
    return bool(row["mismatch"] and low and row["perplexity"] > config.min_perplexity)


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


def removed(cands: Sequence[dict], config: MIAConfig) -> np.ndarray:
    """(M,) 1.0 for each mismatching candidate that selection drops, 0.0 for one it keeps: the units of "selection
    removes a material share of the candidates"."""
    return np.array([0.0 if keep(c, config) else 1.0 for c in cands if c["mismatch"]])


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
        "removed_share": float(1 - kept.sum() / max(1, mism.sum())),
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

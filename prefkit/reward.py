"""A named reward model as a judge: any Hugging Face sequence-classification model with one output (the form of
public reward models such as those on RewardBench), scoring (prompt, response) texts.

The online methods (DNO in notebook 11's ``hf`` profile) need a judge for the responses a policy samples; with no
oracle, a reward model the user names plays that part.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def load_reward_model(name_or_path: str, device: str = "auto"):
    """``(model, tokenizer)``: a sequence-classification model with ``num_labels == 1`` from a hub id or a local
    folder, in eval mode, on ``device`` ("auto": CUDA when available). A tokenizer without a pad token gets its EOS
    as pad token (batched scoring pads), and the model's config is told which id that is."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .models import resolve_device

    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"{name_or_path}: the tokenizer has neither a pad nor an EOS token to pad batches with")
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(name_or_path)
    if model.config.num_labels != 1:
        raise ValueError(
            f"{name_or_path}: a reward model has one output (num_labels = 1), this one has {model.config.num_labels}"
        )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(resolve_device(device)).eval(), tokenizer


@torch.no_grad()
def reward_scores(
    model, tokenizer, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 32, sep: str = " "
) -> list[float]:
    """One scalar per (prompt, response): the model's output on ``prompt + sep + response`` (right padding, so the
    model's own last-non-pad-token pooling reads each text's end)."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses: give one response per prompt")
    for i, (p, r) in enumerate(zip(prompts, responses)):
        if not isinstance(p, str) or not isinstance(r, str):
            raise ValueError(
                f"row {i}: prompt and response must be strings, got {type(p).__name__}, {type(r).__name__}"
            )
    tokenizer.padding_side = "right"
    device = next(model.parameters()).device
    out: list[float] = []
    for s in range(0, len(prompts), batch_size):
        texts = [p + sep + r for p, r in zip(prompts[s : s + batch_size], responses[s : s + batch_size])]
        batch = tokenizer(texts, return_tensors="pt", padding=True).to(device)
        out += model(**batch).logits[:, 0].float().cpu().tolist()
    return out

"""Sampling responses from a policy: pure ancestral sampling (or greedy decoding) through Hugging Face ``generate``.

Evaluation samples from the trained policy and scores with a world's oracle, and on-policy preference data is
built from samples, so sampling must be the model's own distribution: no top-k, no nucleus, temperature 1 unless
asked. Prompts are left-padded so every row's continuation starts at the same column.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

# Logit processors a checkpoint's generation_config may switch on (Qwen ships top_k=20, top_p=0.8,
# repetition_penalty=1.05, ...): all set to "off", so samples come from the model's own distribution.
_NEUTRAL = dict(
    top_k=None, top_p=None, top_h=None, min_p=None, typical_p=None, epsilon_cutoff=None, eta_cutoff=None,
    repetition_penalty=None, no_repeat_ngram_size=None,
)  # fmt: skip


@torch.no_grad()
def sample(
    model,
    tokenizer,
    prompts: Sequence[str],
    n: int = 1,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    seed: int | None = None,
    batch_size: int = 256,
    progress: bool | None = None,
    stop: str | None = None,
) -> list[list[str]]:
    """``n`` responses per prompt, decoded without special tokens: a list (one per prompt) of ``n`` strings.

    ``temperature=0`` decodes greedily (the ``n`` responses are then identical). ``batch_size`` counts generated
    sequences per ``generate`` call (``batch_size // n`` prompts, at least one). ``seed`` makes sampling
    reproducible without touching the global torch RNG state. Works for plain, PEFT-wrapped and 4-bit models;
    the model's train/eval mode and the tokenizer's ``padding_side`` are restored afterwards. ``progress``: a tqdm
    bar, by default only when there are more than four batches. ``stop``: a token (e.g. a step separator) that ends
    a response like EOS does; it is kept at the end of the decoded text, so the caller can tell the two endings apart.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    greedy = temperature == 0
    n_gen = 1 if greedy else n  # greedy decoding is deterministic: decode once and repeat
    per_call = max(1, batch_size // n_gen)
    starts = range(0, len(prompts), per_call)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    gen_kw = dict(
        max_new_tokens=max_new_tokens,
        pad_token_id=pad,
        eos_token_id=tokenizer.eos_token_id if stop is None else [tokenizer.eos_token_id, _token_id(tokenizer, stop)],
        num_return_sequences=n_gen,
    )
    gen_kw.update(_NEUTRAL)
    if greedy:
        gen_kw.update(do_sample=False, temperature=None)
    else:
        gen_kw.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)  # pure ancestral sampling

    was_training, side = model.training, tokenizer.padding_side
    devices = [device.index or 0] if device.type == "cuda" else []
    out: list[list[str]] = []
    try:
        model.eval()
        tokenizer.padding_side = "left"
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            show = progress if progress is not None else len(starts) > 4
            for s in tqdm(starts, desc="sampling", disable=not show, leave=False):
                enc = tokenizer(list(prompts[s : s + per_call]), return_tensors="pt", padding=True)
                ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
                seqs = model.generate(input_ids=ids, attention_mask=mask, **gen_kw)  # (b * n_gen, T + new)
                texts = tokenizer.batch_decode(seqs[:, ids.shape[1] :], skip_special_tokens=True)
                texts = [t.strip() for t in texts]
                for i in range(ids.shape[0]):
                    got = texts[i * n_gen : (i + 1) * n_gen]
                    out.append(got * n if greedy else got)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def sample_table(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 64, seed: int | None = 0):
    """One sampled response per prompt, as a table (``prompt``, ``response``) for reading in a notebook."""
    import pandas as pd

    got = sample(model, tokenizer, prompts, max_new_tokens=max_new_tokens, seed=seed)
    return pd.DataFrame({"prompt": list(prompts), "response": [ys[0] for ys in got]})


def _token_id(tokenizer, token: str) -> int:
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        raise ValueError(f"stop must be a single token of the vocabulary, got {token!r} -> {ids}")
    return ids[0]


def greedy(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 48, batch_size: int = 256) -> list[str]:
    """One greedy response per prompt (``sample`` at temperature 0)."""
    got = sample(model, tokenizer, prompts, n=1, max_new_tokens=max_new_tokens, temperature=0, batch_size=batch_size)
    return [r[0] for r in got]

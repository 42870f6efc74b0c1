"""Per-sequence log-probs of responses: the quantity every preference loss is written in.

``sequence_logps`` returns, for each sequence, the sum of log π(y_t | x, y_<t) over its response tokens and the number
of response tokens (the loss decides whether to average). The LM head runs only on response positions and in
chunks, so full-vocabulary float32 logits are never held for the whole batch: with a 150k vocabulary and 8 x 512
tokens those logits alone are ~2.5 GB, and under autograd every chunk's logits would be kept for backward, so each
chunk is recomputed in backward (activation checkpointing) instead of stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

Tensor = torch.Tensor
Text = str | Sequence[int]


def _ids(tokenizer, text: Text, special: bool) -> list[int]:
    if isinstance(text, str):
        return list(tokenizer(text, add_special_tokens=special)["input_ids"])
    return [int(t) for t in text]


def encode(
    tokenizer,
    prompts: Sequence[Text],
    responses: Sequence[Text],
    max_length: int | None = None,
    add_eos: bool = True,
) -> dict[str, Tensor]:
    """Tokenise (prompt, response) pairs into one right-padded batch.

    Returns ``input_ids``, ``attention_mask`` and ``response_mask`` (1 on response tokens, including the closing EOS),
    each (N, T). Strings are tokenised (prompt with the tokenizer's special tokens, response without); lists of ints
    are used as they are. With ``max_length`` the response is truncated from the right (the prompt is kept whole).
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
    eos = tokenizer.eos_token_id
    if add_eos and eos is None:
        raise ValueError("tokenizer has no eos_token_id; pass add_eos=False or set one")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    rows = []
    for p, r in zip(prompts, responses):
        p_ids, r_ids = _ids(tokenizer, p, special=True), _ids(tokenizer, r, special=False)
        if add_eos and (not r_ids or r_ids[-1] != eos):
            r_ids = r_ids + [eos]
        if max_length is not None:
            r_ids = r_ids[: max(0, max_length - len(p_ids))]
        rows.append((p_ids, r_ids))
    T = max(len(p) + len(r) for p, r in rows)
    input_ids = torch.full((len(rows), T), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), T), dtype=torch.long)
    response_mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, (p, r) in enumerate(rows):
        n = len(p) + len(r)
        input_ids[i, :n] = torch.tensor(p + r)
        attention_mask[i, :n] = 1
        response_mask[i, len(p) : n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "response_mask": response_mask}


def encode_pairs(tokenizer, rows: Sequence[dict], max_length: int | None = None) -> dict[str, Tensor]:
    """Pairwise rows -> one batch of 2B sequences: the B chosen first, then the B rejected (one forward for both)."""
    prompts = [r["prompt"] for r in rows]
    return encode(tokenizer, prompts + prompts, [r["chosen"] for r in rows] + [r["rejected"] for r in rows], max_length)


def _head_logps(hidden: Tensor, targets: Tensor, head: torch.nn.Module, scale: float, softcap: float | None) -> Tensor:
    """log π(target | hidden) for M positions: hidden (M, H), targets (M,) -> (M,) float32."""
    logits = head(hidden).float() * scale  # (M, V)
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def sequence_logps(
    model,
    input_ids: Tensor,  # (N, T)
    attention_mask: Tensor,  # (N, T)
    response_mask: Tensor,  # (N, T) 1 on the tokens whose log-prob is summed
    chunk_size: int = 1024,
) -> tuple[Tensor, Tensor]:
    """Summed response log-probs (N,) in float32 and response-token counts (N,).

    Works for any Hugging Face causal LM that exposes ``get_decoder()`` and ``get_output_embeddings()`` (PEFT-wrapped
    ones too). Token t is predicted from position t - 1, so the first token of a sequence is never scored.
    """
    device = next(model.parameters()).device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    target_mask = response_mask[:, 1:].to(device).bool()  # (N, T-1): positions 0..T-2 predict tokens 1..T-1
    counts = target_mask.sum(-1)  # (N,)
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state  # (N,T,H)
    h = hidden[:, :-1][target_mask]  # (M, H) only the response positions reach the LM head
    targets = input_ids[:, 1:][target_mask]  # (M,)
    row = torch.arange(input_ids.shape[0], device=device)[:, None].expand_as(target_mask)[target_mask]  # (M,)
    cfg = model.config
    softcap = getattr(cfg, "final_logit_softcapping", None)  # Gemma 2
    # Some families scale their logits in forward(): Cohere multiplies by logit_scale, Granite divides.
    scale = float(getattr(cfg, "logit_scale", None) or 1.0) / float(getattr(cfg, "logits_scaling", None) or 1.0)
    parts = []
    for s in range(0, h.shape[0], chunk_size):
        hc, tc = h[s : s + chunk_size], targets[s : s + chunk_size]
        if torch.is_grad_enabled() and hc.requires_grad:
            parts.append(checkpoint(_head_logps, hc, tc, head, scale, softcap, use_reentrant=False))
        else:
            parts.append(_head_logps(hc, tc, head, scale, softcap))
    token_logps = torch.cat(parts) if parts else h.new_zeros(0, dtype=torch.float32)  # (M,)
    sums = torch.zeros(input_ids.shape[0], device=device, dtype=torch.float32).index_add(0, row, token_logps)
    return sums, counts


def naive_sequence_logps(model, input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor):
    """The textbook computation (full logits, log_softmax, gather); kept as the reference the tests compare to."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()  # (N, T-1, V)
    token_logps = F.log_softmax(logits, -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (N, T-1)
    mask = response_mask[:, 1:].to(token_logps.dtype)
    return (token_logps * mask).sum(-1), mask.sum(-1).long()

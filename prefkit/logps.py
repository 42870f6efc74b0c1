"""Per-sequence log-probs of responses: the quantity every preference loss is written in.

``sequence_logps`` returns, for each sequence, the sum of log π(y_t | x, y_<t) over its response tokens and the number
of response tokens (the loss decides whether to average). The LM head runs only on response positions and in
chunks, so full-vocabulary float32 logits are never held for the whole batch: with a 150k vocabulary and 8 x 512
tokens those logits alone are ~2.5 GB, and under autograd every chunk's logits would be kept for backward, so each
chunk is recomputed in backward (activation checkpointing) instead of stored.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers import DynamicCache

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
    are used as they are. With ``max_length`` the response is truncated from the right (the prompt is kept whole); a
    prompt that leaves no room for its response is an error (cut prompts first: :class:`prefkit.train.StepBatches`
    does, from the left).
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
            if len(p_ids) >= max_length and r_ids:
                raise ValueError(f"sequence {len(rows)}: its prompt has {len(p_ids)} tokens, which leaves no room for "
                                 f"the response within max_length {max_length}")  # fmt: skip
            r_ids = r_ids[: max_length - len(p_ids)]
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


def encode_joint(tokenizer, rows: Sequence[dict], mask_prompt: bool = False, max_length: int | None = None):
    """Joint rows (DOVE) -> one batch of 2B sequences, the B (prompt_chosen, chosen) first, then the B
    (prompt_rejected, rejected).

    With ``mask_prompt=False`` (DOVE) ``response_mask`` covers the prompt tokens too, so the summed log-prob is
    log π(x, y) = log π(x) + log π(y | x) (the first token, BOS, is never scored); with ``mask_prompt=True`` it is
    the usual log π(y | x). ``prompt_mask`` marks the prompt tokens, for measuring what the prompt contributes.
    """
    prompts = [r["prompt_chosen"] for r in rows] + [r["prompt_rejected"] for r in rows]
    batch = encode(tokenizer, prompts, [r["chosen"] for r in rows] + [r["rejected"] for r in rows], max_length)
    batch["prompt_mask"] = batch["attention_mask"] - batch["response_mask"]
    if not mask_prompt:
        batch["response_mask"] = batch["attention_mask"].clone()
    return batch


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
    pixel_values: Tensor | None = None,  # (n_images, 3, S, S) the sequences' pictures in order (vision-language)
) -> tuple[Tensor, Tensor]:
    """Summed response log-probs (N,) in float32 and response-token counts (N,).

    Works for any Hugging Face causal LM that exposes ``get_decoder()`` and ``get_output_embeddings()`` (PEFT-wrapped
    ones too), and with ``pixel_values`` for LLaVA-style vision-language models, whose backbone puts the pictures'
    visual tokens on the image tokens (see :mod:`prefkit.vlm`). Token t is predicted from position t - 1, so the
    first token of a sequence is never scored.
    """
    device = next(model.parameters()).device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    target_mask = response_mask[:, 1:].to(device).bool()  # (N, T-1): positions 0..T-2 predict tokens 1..T-1
    counts = target_mask.sum(-1)  # (N,)
    if pixel_values is None:
        backbone, extra = model.get_decoder(), {}
    else:  # LLaVA-style: the multimodal backbone (vision tower + projector + decoder)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        backbone, extra = base.model, {"pixel_values": pixel_values.to(device)}
    out = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **extra)
    hidden = out.last_hidden_state  # (N, T, H)
    h = hidden[:, :-1][target_mask]  # (M, H) only the response positions reach the LM head
    targets = input_ids[:, 1:][target_mask]  # (M,)
    row = torch.arange(input_ids.shape[0], device=device)[:, None].expand_as(target_mask)[target_mask]  # (M,)
    token_logps = _chunked_logps(model, h, targets, chunk_size)  # (M,)
    sums = torch.zeros(input_ids.shape[0], device=device, dtype=torch.float32).index_add(0, row, token_logps)
    return sums, counts


def _chunked_logps(model, h: Tensor, targets: Tensor, chunk_size: int) -> Tensor:
    """log π(target | hidden) for M positions, h (M, H), targets (M,) -> (M,) float32, through the LM head in chunks
    that are recomputed in backward rather than stored."""
    head, cfg = model.get_output_embeddings(), model.config
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
    return torch.cat(parts) if parts else h.new_zeros(0, dtype=torch.float32)


# ---- K responses that share one prompt ----------------------------------------------------------------------------


def encode_lists(
    tokenizer,
    prompts: Sequence[Text],
    responses: Sequence[Sequence[Text]],
    max_length: int | None = None,
    add_eos: bool = True,
) -> dict[str, Tensor]:
    """Tokenise B prompts, each with the same number K of responses, keeping the prompt once.

    Returns ``prompt_ids`` / ``prompt_mask`` (B, P), right-padded, and ``response_ids`` / ``response_mask``
    (B*K, R), right-padded, the K responses of prompt b in rows b*K .. b*K + K - 1. ``max_length`` bounds prompt +
    response as in :func:`encode`.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} response lists")
    ks = {len(r) for r in responses}
    if len(ks) != 1:
        raise ValueError(f"every prompt in a batch needs the same number of responses; got list sizes {sorted(ks)}")
    K = ks.pop()
    flat = encode(
        tokenizer, [p for p in prompts for _ in range(K)], [y for ys in responses for y in ys], max_length, add_eos
    )
    plen = (flat["attention_mask"] - flat["response_mask"]).sum(-1)[::K]  # (B,)
    rlen = flat["response_mask"].sum(-1)  # (B*K,)
    B, N = len(prompts), len(prompts) * K
    P, R = int(plen.max()), int(rlen.max())
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompt_ids, prompt_mask = torch.full((B, P), pad, dtype=torch.long), torch.zeros((B, P), dtype=torch.long)
    response_ids, response_mask = torch.full((N, R), pad, dtype=torch.long), torch.zeros((N, R), dtype=torch.long)
    for b in range(B):
        n = int(plen[b])
        prompt_ids[b, :n], prompt_mask[b, :n] = flat["input_ids"][b * K, :n], 1
    for i in range(N):
        s, n = int(plen[i // K]), int(rlen[i])
        response_ids[i, :n], response_mask[i, :n] = flat["input_ids"][i, s : s + n], 1
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "response_ids": response_ids,
        "response_mask": response_mask,
    }


def flatten_lists(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """An :func:`encode_lists` batch as B*K ordinary sequences (the prompt repeated), in :func:`encode`'s format."""
    K = batch["response_ids"].shape[0] // batch["prompt_ids"].shape[0]
    plen, rlen = batch["prompt_mask"].sum(-1).repeat_interleave(K), batch["response_mask"].sum(-1)
    N, T = len(rlen), int((plen + rlen).max())
    input_ids = torch.zeros((N, T), dtype=torch.long)  # padding: any id, it is masked out
    attention_mask, response_mask = torch.zeros((N, T), dtype=torch.long), torch.zeros((N, T), dtype=torch.long)
    for i in range(N):
        p, r = int(plen[i]), int(rlen[i])
        input_ids[i, :p] = batch["prompt_ids"][i // K, :p]
        input_ids[i, p : p + r] = batch["response_ids"][i, :r]
        attention_mask[i, : p + r], response_mask[i, p : p + r] = 1, 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "response_mask": response_mask}


def list_logps(model, batch: dict[str, Tensor], shared_prompt: bool = True, chunk_size: int = 1024):
    """Summed response log-probs (B, K) and response-token counts (B, K) of an :func:`encode_lists` batch.

    ``shared_prompt=True`` runs each prompt through the model once and lets its K responses attend to that prompt's
    key/value cache (repeated K times), so prompt tokens cost one forward instead of K; gradients flow through the
    cache into the prompt positions. ``shared_prompt=False`` is the plain way: B*K full sequences. Both give the same
    numbers (tests check it); which is faster depends on how long prompts are relative to responses (``bench/``).
    Positions are passed explicitly, so right-padded prompts are exact for any position encoding.
    """
    B = batch["prompt_ids"].shape[0]
    token_logps, _ = response_states(model, batch, shared_prompt, chunk_size, hidden=False)
    return token_logps.sum(-1).view(B, -1), batch["response_mask"].sum(-1).to(token_logps.device).view(B, -1)


def list_step_logps(model, batch: dict[str, Tensor], shared_prompt: bool = True, chunk_size: int = 1024):
    """Per-step log-probs of an :func:`encode_lists` batch that carries ``step_ids`` (B*K, R): the step index of each
    response token (-1 on padding).

    Returns ``step_logps`` (B, K, S) (summed over each step's tokens), ``step_hidden`` (B, K, S, H) (the last layer's
    hidden states averaged over each step's tokens, detached) and ``step_mask`` (B, K, S) (1 where the response has
    that step).
    """
    B = batch["prompt_ids"].shape[0]
    token_logps, hidden = response_states(model, batch, shared_prompt, chunk_size, hidden=True)  # (N, R), (N, R, H)
    step_ids = batch["step_ids"].to(token_logps.device)  # (N, R)
    S = int(step_ids.max()) + 1
    onehot = F.one_hot(step_ids.clamp(min=0), S).to(token_logps.dtype) * (step_ids >= 0)[..., None]  # (N, R, S)
    step_logps = torch.einsum("nr,nrs->ns", token_logps, onehot)  # (N, S)
    counts = onehot.sum(1)  # (N, S)
    step_hidden = torch.einsum("nrh,nrs->nsh", hidden.detach().float(), onehot) / counts.clamp(min=1)[..., None]
    N = step_ids.shape[0]
    return (
        step_logps.view(B, N // B, S),
        step_hidden.view(B, N // B, S, -1),
        (counts > 0).to(token_logps.dtype).view(B, N // B, S),
    )


def response_states(model, batch: dict[str, Tensor], shared_prompt: bool, chunk_size: int = 1024, hidden: bool = True):
    """Token log-probs (B*K, R) float32 (0 on padding) of an :func:`encode_lists` batch's responses, and, with
    ``hidden``, the last layer's hidden states at the response tokens (B*K, R, H); see :func:`list_logps`."""
    device = next(model.parameters()).device
    response_ids, response_mask = batch["response_ids"].to(device), batch["response_mask"].to(device)
    N, R = response_ids.shape
    decoder = model.get_decoder()
    if shared_prompt:
        K = N // batch["prompt_ids"].shape[0]
        prompt_ids, prompt_mask = batch["prompt_ids"].to(device), batch["prompt_mask"].to(device)
        plen = prompt_mask.sum(-1)  # (B,)
        # transformers >= 5 names the key/value cache argument ``cache``; earlier versions ``past_key_values``.
        cache_arg = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
        cache = DynamicCache()
        out = decoder(
            input_ids=prompt_ids,
            attention_mask=prompt_mask,
            position_ids=(prompt_mask.cumsum(-1) - 1).clamp(min=0),
            use_cache=True,
            **{cache_arg: cache},
        )
        cache.batch_repeat_interleave(K)  # (B, ...) -> (B*K, ...): row b*K + k reads prompt b
        last = out.last_hidden_state[torch.arange(len(plen), device=device), plen - 1]  # (B, H) predicts 1st tokens
        positions = plen.repeat_interleave(K)[:, None] + torch.arange(R, device=device)  # (B*K, R)
        mask = torch.cat([prompt_mask.repeat_interleave(K, 0), response_mask], 1)  # (B*K, P + R)
        states = decoder(
            input_ids=response_ids, attention_mask=mask, position_ids=positions, use_cache=True, **{cache_arg: cache}
        ).last_hidden_state  # (B*K, R, H)
        pred = torch.cat([last.repeat_interleave(K, 0)[:, None], states[:, :-1]], 1)  # (B*K, R, H): state before t
        h, own = pred[response_mask.bool()], states[response_mask.bool()]  # (M, H) each
    else:
        flat = {k: v.to(device) for k, v in flatten_lists(batch).items()}
        states = decoder(
            input_ids=flat["input_ids"], attention_mask=flat["attention_mask"], use_cache=False
        ).last_hidden_state  # (B*K, T, H)
        target_mask = flat["response_mask"][:, 1:].bool()  # positions 0..T-2 predict tokens 1..T-1
        h, own = states[:, :-1][target_mask], states[:, 1:][target_mask]  # (M, H) each, in row-major order
    token_logps = _chunked_logps(model, h, response_ids[response_mask.bool()], chunk_size)  # (M,)
    out_logps = torch.zeros(N, R, device=device, dtype=torch.float32).masked_scatter(response_mask.bool(), token_logps)
    if not hidden:
        return out_logps, None
    out_hidden = own.new_zeros(N, R, own.shape[-1]).masked_scatter(response_mask.bool()[..., None], own)
    return out_logps, out_hidden


def naive_sequence_logps(model, input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor):
    """The textbook computation (full logits, log_softmax, gather); kept as the reference the tests compare to."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()  # (N, T-1, V)
    token_logps = F.log_softmax(logits, -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (N, T-1)
    mask = response_mask[:, 1:].to(token_logps.dtype)
    return (token_logps * mask).sum(-1), mask.sum(-1).long()

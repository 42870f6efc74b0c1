"""Vision-language models: a tiny LLaVA, image inputs for the log-prob and training path, answers and attention.

A LLaVA model (Liu et al. 2023) turns each picture into visual tokens with a vision encoder (CLIP) and a projector,
and puts them where the prompt's image tokens are; the rest is a causal LM. prefkit's text contracts carry over
unchanged: a row's ``prompt`` becomes token ids with the image token repeated once per visual token
(:func:`vlm_rows`), its ``images`` become ``pixel_values`` next to the batch (:class:`PixelBatch`, an ``extra`` for
:class:`prefkit.train.StepBatches`), and :func:`prefkit.logps.sequence_logps` takes the ``pixel_values``.

:func:`attention_ratio` is MIA-DPO's signal (Liu et al. 2024, arXiv:2410.17637): of the attention that the answer's
tokens pay to visual tokens, the share that goes to the target picture's tokens (one layer, the middle one by
default, mean over heads and answer tokens, as the official data scripts read it). It needs eager attention, which :func:`tiny_llava` and :func:`prefkit.models.load_vlm` switch on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .data import PreferenceDataError
from .logps import encode, sequence_logps

Tensor = torch.Tensor
IMAGE = "<image>"


@dataclass
class TinyLlavaConfig:
    image_size: int = 16  # pixels; with 8-pixel patches a picture is 2 x 2 = 4 visual tokens
    patch_size: int = 8
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    hidden: int = 128  # the language model, as prefkit.models.TinyLlamaConfig
    intermediate: int = 256
    layers: int = 3
    heads: int = 4
    max_positions: int = 128


def tiny_llava(tokenizer, config: TinyLlavaConfig | None = None, seed: int = 0):
    """A LLaVA model from scratch: tiny CLIP vision tower + projector + tiny Llama, eager attention.

    The tokenizer must know ``<image>``; every visual token of a picture stands on one ``<image>`` token.
    """
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration

    from .models import TinyLlamaConfig, llama_config

    c = config or TinyLlavaConfig()
    image_id = tokenizer.convert_tokens_to_ids(IMAGE)
    if image_id is None or image_id == tokenizer.unk_token_id:
        raise ValueError(f"the tokenizer has no {IMAGE!r} token")
    vision = CLIPVisionConfig(
        hidden_size=c.vision_hidden,
        intermediate_size=2 * c.vision_hidden,
        num_hidden_layers=c.vision_layers,
        num_attention_heads=c.vision_heads,
        image_size=c.image_size,
        patch_size=c.patch_size,
    )
    lm = TinyLlamaConfig(hidden_size=c.hidden, num_hidden_layers=c.layers, num_attention_heads=c.heads,
                         intermediate_size=c.intermediate, max_position_embeddings=c.max_positions,
                         tie_word_embeddings=True)  # fmt: skip
    text = llama_config(tokenizer, lm)
    cfg = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=image_id,
        vision_feature_select_strategy="default",  # drop CLS: one visual token per patch
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlavaForConditionalGeneration._from_config(cfg, attn_implementation="eager").train()


def _config(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.config


def patch_grid(model) -> int:
    """Patches per side of the vision encoder's input."""
    v = _config(model).vision_config
    return v.image_size // v.patch_size


def image_tokens(model) -> int:
    """Visual tokens per picture: one per patch, plus CLS unless the model drops it ("default" strategy)."""
    cfg = _config(model)
    return patch_grid(model) ** 2 + (cfg.vision_feature_select_strategy == "full")


def image_token_id(model) -> int:
    cfg = _config(model)
    return int(getattr(cfg, "image_token_id", None) or cfg.image_token_index)


@dataclass
class ImagePrep:
    """Pictures (uint8 H x W x 3) -> normalised ``pixel_values`` (N, 3, S, S), resized with nearest neighbours so
    that a patch-aligned object stays patch-aligned."""

    image_size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @classmethod
    def for_model(cls, model, name_or_path: str | None = None) -> ImagePrep:
        """The model's input size, with the image processor's mean and std when ``name_or_path`` has one."""
        size = _config(model).vision_config.image_size
        if name_or_path:
            try:
                from transformers import AutoImageProcessor

                proc = AutoImageProcessor.from_pretrained(name_or_path)
                return cls(size, tuple(proc.image_mean), tuple(proc.image_std))
            except (OSError, ValueError, AttributeError, TypeError):
                pass  # no processor saved with the model: the toy normalisation
        return cls(size)

    def __call__(self, images: Sequence[np.ndarray]) -> Tensor:
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, s, s)
        if x.shape[-1] != self.image_size:
            x = torch.nn.functional.interpolate(x, size=(self.image_size, self.image_size), mode="nearest")
        mean, std = torch.tensor(self.mean)[None, :, None, None], torch.tensor(self.std)[None, :, None, None]
        return (x - mean) / std


def prompt_ids(tokenizer, prompt: str, n_tokens: int, image_id: int) -> list[int]:
    """Token ids of a prompt whose ``<image>`` marks become ``n_tokens`` image tokens each (BOS first if the tokenizer
    adds one)."""
    pieces = prompt.split(IMAGE)
    ids = list(tokenizer(pieces[0].strip(), add_special_tokens=True)["input_ids"])
    for piece in pieces[1:]:
        ids += [image_id] * n_tokens
        if piece.strip():
            ids += list(tokenizer(piece.strip(), add_special_tokens=False)["input_ids"])
    return ids


def vlm_rows(rows: Sequence[dict], tokenizer, model, template: str = "{prompt}") -> list[dict]:
    """Copies of ``rows`` whose ``prompt`` is token ids ready for ``model`` (the text prompt stays as ``question``).
    ``template`` wraps the prompt, e.g. ``"USER: {prompt} ASSISTANT:"`` for a LLaVA-1.5 chat model."""
    n, image_id = image_tokens(model), image_token_id(model)
    out = []
    for i, r in enumerate(rows):
        for key in ("prompt", "images"):
            if key not in r:
                raise PreferenceDataError(i, key, "missing")
        if r["prompt"].count(IMAGE) != len(r["images"]):
            raise PreferenceDataError(
                i, "prompt", f"{r['prompt'].count(IMAGE)} {IMAGE} marks for {len(r['images'])} images"
            )
        ids = prompt_ids(tokenizer, template.format(prompt=r["prompt"]), n, image_id)
        out.append({**r, "question": r["prompt"], "prompt": ids})
    return out


@dataclass
class PixelBatch:
    """``extra`` for :class:`prefkit.train.StepBatches` and :meth:`prefkit.models.Reference.precompute`: the rows'
    pictures as ``pixel_values``, in the order the sequences come (``copies=2`` for pairs: chosen, then rejected)."""

    prep: ImagePrep
    copies: int = 1

    def __call__(self, rows: Sequence[dict]) -> dict[str, Tensor]:
        images = [im for r in rows for im in r["images"]]
        return {"pixel_values": self.prep(images * self.copies)}


def _last_positions(attention_mask: Tensor) -> Tensor:
    return attention_mask.sum(-1) - 1  # (B,) right padding: the last real token of each row


@torch.no_grad()
def answers(
    model,
    tokenizer,
    rows: Sequence[dict],
    prep: ImagePrep,
    max_new_tokens: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 64,
) -> list[str]:
    """The model's answers to ``vlm_rows`` (greedy at ``temperature=0``, else sampled), decoded without the prompt.

    Stops at EOS; never emits the image token. The toy world's answers are one word, so ``max_new_tokens=1``
    suffices there.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    eos, image_id = tokenizer.eos_token_id, image_token_id(model)
    out = []
    for s in range(0, len(rows), batch_size):
        chunk = rows[s : s + batch_size]
        seqs = [list(r["prompt"]) for r in chunk]
        new: list[list[int]] = [[] for _ in chunk]
        done = [False] * len(chunk)
        pixels = PixelBatch(prep)(chunk)["pixel_values"].to(device)
        for _ in range(max_new_tokens):
            batch = encode(tokenizer, [a + b for a, b in zip(seqs, new)], [[] for _ in chunk], add_eos=False)
            logits = model(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                pixel_values=pixels,
                use_cache=False,
            ).logits
            last = logits[torch.arange(len(chunk)), _last_positions(batch["attention_mask"]).to(device)].float().cpu()
            last[:, image_id] = -float("inf")  # a placeholder for pictures is never an answer
            if temperature > 0:
                nxt = torch.multinomial(torch.softmax(last / temperature, -1), 1, generator=gen)[:, 0]
            else:
                nxt = last.argmax(-1)
            for i, t in enumerate(nxt.tolist()):
                if not done[i]:
                    if t == eos:
                        done[i] = True
                    else:
                        new[i].append(t)
            if all(done):
                break
        out += [tokenizer.decode(n, skip_special_tokens=True).strip() for n in new]
    model.train(was_training)
    return out


def target_token_mask(model, row: dict) -> np.ndarray:
    """(n_images · tokens per image,) bool: the visual tokens that belong to the target, from the row's pixel masks
    (a patch is the target's when most of its pixels are)."""
    g, n = patch_grid(model), image_tokens(model)
    out = []
    for m in row["target_masks"]:
        m = torch.from_numpy(np.asarray(m, dtype=np.float32))[None, None]
        frac = torch.nn.functional.adaptive_avg_pool2d(m, g)[0, 0].flatten() > 0.5  # (g*g,)
        if n == g * g + 1:  # CLS first when the model keeps it: the target's if the whole picture is
            frac = torch.cat([frac.all()[None], frac])
        out.append(frac.numpy())
    return np.concatenate(out)


def _layer_index(layer: int | str, n_layers: int) -> int | None:
    """``"middle"`` -> L // 2 (the official code reads layer 16 of LLaVA-1.5-7B's 32), ``"all"`` -> None (mean over
    layers), an int -> itself (negative counts from the top)."""
    if layer == "all":
        return None
    if layer == "middle":
        return n_layers // 2
    if isinstance(layer, int) and -n_layers <= layer < n_layers:
        return layer % n_layers
    raise ValueError(f"layer must be 'middle', 'all' or an int in [{-n_layers}, {n_layers}), got {layer!r}")


@torch.no_grad()
def _answer_attention(
    model, tokenizer, rows: Sequence[dict], prep: ImagePrep, responses: Sequence[str] | None, layer: int | str
) -> tuple[Tensor, Tensor]:
    """The attention that the answer pays to the prompt: ((B, T) attention, (B, T) input ids).

    With ``responses``, the queries are the response's tokens (prompt + response in one forward, no EOS) and the rows
    are averaged over them; a row whose response is empty, and every row when ``responses`` is None, uses the
    position that predicts the answer's first token instead. Heads are averaged; ``layer`` picks one layer
    (``"middle"``, an int) or averages all (``"all"``).
    """
    device = next(model.parameters()).device
    said = [""] * len(rows) if responses is None else list(responses)
    if len(said) != len(rows):
        raise ValueError(f"{len(said)} responses for {len(rows)} rows")
    batch = encode(tokenizer, [r["prompt"] for r in rows], said, add_eos=False)
    out = model(
        input_ids=batch["input_ids"].to(device),
        attention_mask=batch["attention_mask"].to(device),
        pixel_values=PixelBatch(prep)(rows)["pixel_values"].to(device),
        output_attentions=True,
        use_cache=False,
    )
    if not out.attentions or out.attentions[0] is None:
        raise RuntimeError("the model returned no attention maps: load it with attn_implementation='eager'")
    idx = _layer_index(layer, len(out.attentions))
    heads = [a.float().mean(1) for a in out.attentions]  # per layer (B, T, T), mean over heads
    att = heads[idx] if idx is not None else torch.stack(heads).mean(0)  # (B, T_query, T_key)
    queries = batch["response_mask"].to(device).float()  # (B, T): the response's tokens
    empty = queries.sum(-1) == 0
    last_prompt = (batch["attention_mask"].sum(-1) - 1 - batch["response_mask"].sum(-1)).to(device)  # (B,)
    queries[empty, last_prompt[empty]] = 1.0
    rows_att = (queries[:, :, None] * att).sum(1) / queries.sum(-1, keepdim=True)  # (B, T_key), mean over queries
    return rows_att.cpu(), batch["input_ids"]


def attention_ratio(
    model,
    tokenizer,
    rows: Sequence[dict],
    prep: ImagePrep,
    responses: Sequence[str] | None = None,
    layer: int | str = "middle",
    batch_size: int = 64,
) -> np.ndarray:
    """(N,) share of the visual attention that falls on the target picture (MIA-DPO, Liu et al. 2024, §3.2):

        share(x, y) = Σ_{v ∈ target} ā(v) / Σ_{v ∈ visual} ā(v),  ā = mean over heads and over the answer y's tokens

    read at one ``layer`` (``"middle"``: L // 2, as the official code reads layer 16 of 32). ``responses`` are the
    answers whose tokens are the queries (the official code: the greedy answer); without them, the position that
    predicts the answer's first token. The official code averages per picture and divides by the sum of the
    pictures' averages; with equally many tokens per picture that is the same share."""
    was_training = model.training
    model.eval()
    image_id, ratios = image_token_id(model), []
    for s in range(0, len(rows), batch_size):
        chunk = rows[s : s + batch_size]
        said = None if responses is None else responses[s : s + batch_size]
        att, ids = _answer_attention(model, tokenizer, chunk, prep, said, layer)
        for i, r in enumerate(chunk):
            a = att[i][ids[i] == image_id]  # attention on each visual token, in order
            target = torch.from_numpy(target_token_mask(model, r))
            ratios.append(float(a[target].sum() / a.sum().clamp(min=1e-12)))
    model.train(was_training)
    return np.array(ratios)


@torch.no_grad()
def answer_perplexity(model, tokenizer, rows: Sequence[dict], responses: Sequence[str], prep: ImagePrep) -> np.ndarray:
    """(N,) perplexity exp(-mean log π(y_t | x, y_<t)) of each response (with its closing EOS) given its row."""
    was_training = model.training
    model.eval()
    batch = encode(tokenizer, [r["prompt"] for r in rows], list(responses))
    logps, counts = sequence_logps(
        model, batch["input_ids"], batch["attention_mask"], batch["response_mask"],
        pixel_values=PixelBatch(prep)(rows)["pixel_values"],
    )  # fmt: skip
    model.train(was_training)
    return torch.exp(-logps / counts.clamp(min=1)).cpu().numpy()


def qa_report(
    model, tokenizer, world, rows: Sequence[dict], prep: ImagePrep, max_new_tokens: int = 1, layer: int | str = "middle"
) -> pd.DataFrame:
    """Greedy answers to ``vlm_rows`` scored by the world's oracle: one row per question (in the rows' order, so two
    models' reports pair up) with ``format``, ``n_images``, ``answer``, ``correct``, ``confused`` (another picture's
    value) and ``ratio`` (attention share on the target, :func:`attention_ratio` over the answer's tokens)."""
    said = answers(model, tokenizer, rows, prep, max_new_tokens=max_new_tokens)
    ratio = attention_ratio(model, tokenizer, rows, prep, said, layer)
    return pd.DataFrame(
        {
            "format": [r["format"] for r in rows],
            "n_images": [r["n_images"] for r in rows],
            "answer": said,
            "correct": [world.correct(r, a) for r, a in zip(rows, said)],
            "confused": [world.confused(r, a) for r, a in zip(rows, said)],
            "ratio": ratio,
        }
    )


def attention_overlay(
    model, tokenizer, row: dict, prep: ImagePrep, response: str | None = None, layer: int | str = "middle"
) -> list[np.ndarray]:
    """Per picture of a ``vlm_rows`` row, a (g, g) map of the attention that the answer pays to each patch (as
    :func:`attention_ratio` reads it, normalised over all of the row's visual tokens), for drawing over the
    picture."""
    was_training = model.training
    model.eval()
    att, ids = _answer_attention(model, tokenizer, [row], prep, None if response is None else [response], layer)
    model.train(was_training)
    a = att[0][ids[0] == image_token_id(model)]
    a = (a / a.sum()).numpy()
    g, n = patch_grid(model), image_tokens(model)
    return [a[i * n + (n - g * g) : (i + 1) * n].reshape(g, g) for i in range(len(row["images"]))]


def qa_summary(report: pd.DataFrame) -> dict[str, float]:
    """The numbers the claims read from a :func:`qa_report`: accuracy, confusion and attention ratio on single
    pictures (``single_*``), on every multi-picture prompt (``multi_*``), on sequences of 2-5 (``seq_*``), and per
    cell (``acc/sequence:3``, ``conf/grid:4``, ``ratio/pip:2``, ...)."""
    single = (report["format"] == "sequence") & (report["n_images"] == 1)
    seq = (report["format"] == "sequence") & ~single
    out = {}
    for name, m in (("single", single), ("multi", ~single), ("seq", seq)):
        out[f"{name}_acc"] = float(report.loc[m, "correct"].mean())
        out[f"{name}_conf"] = float(report.loc[m, "confused"].mean())
        out[f"{name}_ratio"] = float(report.loc[m, "ratio"].mean())
        out[f"{name}_n"] = float(m.sum())
    for (fmt, n), g in report.groupby(["format", "n_images"]):
        out[f"acc/{fmt}:{n}"] = float(g["correct"].mean())
        out[f"conf/{fmt}:{n}"] = float(g["confused"].mean())
        out[f"ratio/{fmt}:{n}"] = float(g["ratio"].mean())
    return out


def freeze_vision(model):
    """Freeze the vision tower and the projector, so that training updates the language model only, as MIA-DPO's
    official DPO run does with LLaVA-1.5 (``--freeze_mm_mlp_adapter True`` freezes the projector and the CLIP tower
    is frozen; LoRA goes on the language model's linear layers only). Returns the model."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for module in (base.model.vision_tower, base.model.multi_modal_projector):
        for p in module.parameters():
            p.requires_grad_(False)
    return model

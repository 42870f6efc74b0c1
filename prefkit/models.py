"""Models: tiny Llama-style decoders for the offline worlds, the Hugging Face 4-bit + LoRA loader, references.

Two profiles share one code path:

- ``toy``: :func:`tiny_llama` builds a ~0.3-1M parameter ``LlamaForCausalLM`` from scratch for a world's tokenizer;
- ``hf``: :func:`load_lm` loads any causal LM id or local folder, optionally in 4-bit NF4 (bitsandbytes) with LoRA
  adapters (peft).

The reference policy π_ref is one of: the same base with the LoRA adapters disabled (no extra memory), a frozen
deep copy, or log-probs precomputed once and cached (:class:`Reference`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .logps import sequence_logps


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cache_dir() -> Path:
    """Where trained toy bases and cached reference log-probs live (``PREFKIT_CACHE``, default ``~/.cache/prefkit``)."""
    return Path(os.environ.get("PREFKIT_CACHE", Path.home() / ".cache" / "prefkit"))


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-able object (configs, data)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_fingerprint(obj: Any) -> str:
    """A stable hash of data rows: JSON values, with arrays and tensors hashed by dtype, shape and bytes (never by
    their printed form, which NumPy shortens). Any other type raises ``TypeError``."""

    def array(x):
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().contiguous()
            return {"tensor": str(x.dtype), "shape": list(x.shape), "sha256": _tensor_sha256(x)}
        import numpy as np

        if isinstance(x, np.ndarray | np.generic):
            x = np.ascontiguousarray(x)
            return {"array": str(x.dtype), "shape": list(x.shape), "sha256": hashlib.sha256(x.tobytes()).hexdigest()}
        raise TypeError(f"cannot fingerprint a {type(x).__name__}")

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=array).encode()).hexdigest()


def _tensor_sha256(t: torch.Tensor) -> str:
    t = t.detach().cpu().contiguous()
    return hashlib.sha256(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"").hexdigest()


def weights_digest(model, skip: tuple[str, ...] = ()) -> str:
    """sha256 of a model's parameters and buffers (names, dtypes, shapes and bytes), leaving out names that contain
    any of ``skip`` (e.g. ``"lora_"``: a reference with its adapters disabled does not depend on them)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if any(s in name for s in skip) or not isinstance(t, torch.Tensor):
            continue
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}:{t.device.type}".encode())
        h.update(_tensor_sha256(t).encode())
    return h.hexdigest()


# Computations on a reference (precomputed log-probs of training rows, log-probs of evaluation pairs) that every arm
# with the same reference weights and the same rows shares: keyed by weights digest + data fingerprint, kept for the
# life of the process (most recent few), so the arms of a notebook compute each once.
_SHARED: OrderedDict[str, Any] = OrderedDict()
SHARED_MAX = 16


@dataclass
class TinyLlamaConfig:
    hidden_size: int = 128
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    intermediate_size: int = 256
    max_position_embeddings: int = 128
    tie_word_embeddings: bool = False


def llama_config(tokenizer, c: TinyLlamaConfig):
    """The ``LlamaConfig`` of a tiny Llama sized for ``tokenizer`` (its special tokens, its vocabulary)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_attention_heads,
        max_position_embeddings=c.max_position_embeddings,
        tie_word_embeddings=c.tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def tiny_llama(tokenizer, config: TinyLlamaConfig | None = None, seed: int = 0):
    """A from-scratch ``LlamaForCausalLM`` sized for ``tokenizer``; parameters initialised from ``seed``."""
    from transformers import LlamaForCausalLM

    cfg = llama_config(tokenizer, config or TinyLlamaConfig())
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class LoraSpec:
    r: int = 16  # QLoRA (Dettmers et al. 2023) uses r = 64 on all linear layers; 16 is the common smaller default
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] | str = field(default_factory=lambda: "all-linear")


def bnb_4bit_config(device: torch.device):
    """NF4 with double quantisation; compute in bf16 on CUDA and fp32 on CPU."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if device.type == "cuda" else torch.float32,
    )


def load_lm(
    name_or_path: str,
    quantize: str | None = "4bit",
    lora: LoraSpec | None = None,
    device: str = "auto",
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    tokenizer=None,
):
    """Load a causal LM and its tokenizer, optionally in 4-bit NF4 with LoRA adapters. Returns ``(model, tokenizer)``.

    ``quantize``: ``"4bit"`` or ``None`` (``"none"`` is accepted for ``None``, as notebook parameters spell it). ``dtype``: defaults to bf16 on CUDA and fp32 on CPU; fp16 is refused for
    training (its narrow range overflows DPO's log-ratio sums). Weights load from safetensors only, and remote code
    runs only when ``trust_remote_code=True`` is passed. ``tokenizer``: use this one instead of loading one.
    """
    from transformers import AutoModelForCausalLM

    return _load(AutoModelForCausalLM, name_or_path, quantize, lora, device, dtype, trust_remote_code, tokenizer)


def load_vlm(
    name_or_path: str,
    quantize: str | None = "4bit",
    lora: LoraSpec | None = None,
    device: str = "auto",
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    tokenizer=None,
):
    """Load a LLaVA-style vision-language model (``AutoModelForImageTextToText``) and its tokenizer, like
    :func:`load_lm`: 4-bit NF4 or full precision, LoRA on the language model's linear layers only (the vision tower
    and projector stay frozen), eager attention so that attention maps come out (:mod:`prefkit.vlm`)."""
    from transformers import AutoModelForImageTextToText

    if lora is not None and lora.target_modules == "all-linear":
        lora = LoraSpec(lora.r, lora.alpha, lora.dropout, LANGUAGE_LINEAR)
    return _load(
        AutoModelForImageTextToText, name_or_path, quantize, lora, device, dtype, trust_remote_code, tokenizer,
        attn_implementation="eager",
    )  # fmt: skip


# the language model's attention and MLP projections (LLaVA: model.language_model.layers.N.*)
LANGUAGE_LINEAR = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def _load(auto_cls, name_or_path, quantize, lora, device, dtype, trust_remote_code, tokenizer, **extra):
    from transformers import AutoTokenizer

    dev = resolve_device(device)
    quantize = None if quantize == "none" else quantize
    if quantize not in (None, "4bit"):
        raise ValueError(f"quantize must be '4bit' or None, got {quantize!r}")
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if dtype == torch.float16:
        raise ValueError("fp16 training is not supported: use bfloat16 (GPU) or float32 (CPU)")
    dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    kw: dict[str, Any] = {"dtype": dtype, "use_safetensors": True, "trust_remote_code": trust_remote_code, **extra}
    if quantize == "4bit":
        kw["quantization_config"] = bnb_4bit_config(dev)
        kw["device_map"] = {"": dev.index or 0} if dev.type == "cuda" else {"": "cpu"}
    # A tokenizer passed in is used as it is: AutoTokenizer may rebuild a custom vocabulary by model type.
    tok = tokenizer or AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = auto_cls.from_pretrained(name_or_path, **kw)
    if quantize == "4bit" and dev.type == "cpu":
        # On CPUs with AVX512-BF16, bitsandbytes repacks 4-bit weights for a bf16 inference kernel on the first
        # eval-mode no-grad forward (a reference pass, sampling). The repacking is one-way and that kernel has no
        # backward, so every later training step would get wrong LoRA gradients: keep the trainable path.
        for m in model.modules():
            if hasattr(m, "support_avx512bf16_for_cpu"):
                m.support_avx512bf16_for_cpu = False
    if quantize is None:
        model.to(dev)
    if lora is not None:
        model = add_lora(model, lora, quantized=quantize == "4bit")
    return model, tok


def add_lora(model, spec: LoraSpec | None = None, quantized: bool = False):
    """Wrap ``model`` with fresh LoRA adapters (B = 0, so the wrapped model equals the base at step 0)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    spec = spec or LoraSpec()
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    cfg = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=spec.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, cfg)


def quantize_4bit(model, save_dir: str | os.PathLike, tokenizer, lora: LoraSpec | None = None, device: str = "auto"):
    """Save ``model`` to ``save_dir`` (safetensors) and load it back through :func:`load_lm` in 4-bit (+ LoRA).

    This is exactly the ``hf`` profile's path, applied to a toy model: QLoRA on a base we trained ourselves.
    """
    model.save_pretrained(save_dir, safe_serialization=True)
    tokenizer.save_pretrained(save_dir)
    return load_lm(str(save_dir), quantize="4bit", lora=lora, device=device, tokenizer=tokenizer)[0]


def is_peft(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def trainable_params(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


class Reference:
    """π_ref for a policy: ``"adapters_off"`` (PEFT policy with its adapters disabled), ``"copy"`` (a frozen deep copy
    taken now), or either of these with ``cache=True``: log-probs computed once per batch and kept, keyed by the
    batch's token fingerprint (the reference never changes, so they never go stale).
    """

    def __init__(self, policy, mode: str = "auto", cache: bool = False):
        if mode == "auto":
            mode = "adapters_off" if is_peft(policy) else "copy"
        if mode not in ("adapters_off", "copy"):
            raise ValueError(f"reference mode must be 'adapters_off', 'copy' or 'auto', got {mode!r}")
        if mode == "adapters_off" and not is_peft(policy):
            raise ValueError("mode 'adapters_off' needs a PEFT (LoRA) policy; use mode='copy' for a full model")
        self.mode, self.policy = mode, policy
        self.model = None
        if mode == "copy":
            self.model = copy.deepcopy(policy).eval()
            for p in self.model.parameters():
                p.requires_grad_(False)
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = {} if cache else None
        self._digest: str | None = None

    @property
    def digest(self) -> str:
        """sha256 of the reference's weights (taken once: the reference never changes)."""
        if self._digest is None:
            if self.mode == "copy":
                self._digest = weights_digest(self.model)
            else:
                self._digest = "adapters_off:" + weights_digest(self.policy, skip=("lora_",))
        return self._digest

    def shared(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per (reference weights, device, ``key``) in this process: any :class:`Reference` with
        the same weights (the arms of one notebook, each with its own copy of the same base) gets the stored value.
        ``key`` is data (rows, prompts, settings) hashed with :func:`data_fingerprint`. The value is returned as
        stored: callers copy what they hand on."""
        device = next(iter((self.model or self.policy).parameters())).device
        k = hashlib.sha256(f"{self.digest}|{device}|{data_fingerprint(key)}".encode()).hexdigest()
        if k in _SHARED:
            _SHARED.move_to_end(k)
            return _SHARED[k]
        value = compute()
        _SHARED[k] = value
        while len(_SHARED) > SHARED_MAX:
            _SHARED.popitem(last=False)
        return value

    @contextmanager
    def as_model(self):
        """Yield a module that computes π_ref (for sampling from the reference, say)."""
        if self.mode == "adapters_off":
            was_training = self.policy.training
            self.policy.eval()
            with self.policy.disable_adapter():
                yield self.policy
            self.policy.train(was_training)
        else:
            yield self.model

    @torch.no_grad()
    def precompute(
        self, rows: list[dict], tokenizer, batch_size: int = 256, mask_prompt: bool = False, extra=None
    ) -> list[dict]:
        """Copies of pairwise (or joint) ``rows`` with ``ref_chosen_logps`` / ``ref_rejected_logps`` added, computed
        once, so training needs no reference forward at all (the batches carry them). ``mask_prompt`` and ``extra``
        (e.g. :class:`prefkit.vlm.PixelBatch` for pictures) as in :class:`prefkit.train.StepBatches`."""
        from .logps import encode_joint, encode_pairs

        def compute() -> list[tuple[float, float]]:
            out = []
            for s in range(0, len(rows), batch_size):
                chunk = rows[s : s + batch_size]
                joint = "prompt_chosen" in chunk[0]
                batch = encode_joint(tokenizer, chunk, mask_prompt) if joint else encode_pairs(tokenizer, chunk)
                if extra is not None:
                    batch.update(extra(chunk))
                lp, _ = self.logps(batch)
                B = len(chunk)
                out.extend(zip(lp[:B].tolist(), lp[B:].tolist()))
            return out

        if extra is None:  # text rows: shared by every arm on the same base and rows (pictures: computed each time)
            key = ["precompute", rows, mask_prompt, batch_size, tokenizer.get_vocab()]
            values = self.shared(key, compute)
        else:
            values = compute()
        return [{**r, "ref_chosen_logps": c, "ref_rejected_logps": j} for r, (c, j) in zip(rows, values)]

    @torch.no_grad()
    def precompute_lists(self, rows: list[dict], tokenizer, batch_size: int = 64) -> list[dict]:
        """Copies of listwise ``rows`` (prompt, responses, scores) with ``ref_logps`` (K floats) added, computed once.
        Rows are grouped by list size, so lists of different lengths are fine."""
        from .logps import encode_lists, list_logps
        from .train import step_ids

        def compute() -> list[dict]:
            added: list[dict] = [{} for _ in rows]  # what each row gains: ref_logps (and ref_step_logps)
            by_k: dict[int, list[int]] = {}
            for i, r in enumerate(rows):
                by_k.setdefault(len(r["responses"]), []).append(i)
            for idx in by_k.values():
                for s in range(0, len(idx), batch_size):
                    chunk = [rows[i] for i in idx[s : s + batch_size]]
                    batch = encode_lists(tokenizer, [r["prompt"] for r in chunk], [r["responses"] for r in chunk])
                    if "step_spans" in chunk[0]:  # multi-step responses: per-step log-probs as well
                        spans = [sp for r in chunk for sp in r["step_spans"]]
                        batch["step_ids"] = step_ids(batch["response_mask"], spans)
                        steps = self.list_step_logps(batch)  # (B, K, S)
                        for i, r, st in zip(idx[s : s + batch_size], chunk, steps.tolist()):
                            st = [v[: len(sp)] for v, sp in zip(st, r["step_spans"])]
                            added[i] = {"ref_step_logps": st, "ref_logps": [sum(v) for v in st]}
                        continue
                    with self.as_model() as m:
                        lp, _ = list_logps(m, batch)
                    for i, values in zip(idx[s : s + batch_size], lp.tolist()):
                        added[i] = {"ref_logps": values}
            return added

        key = ["precompute_lists", rows, batch_size, tokenizer.get_vocab()]
        return [{**r, **copy.deepcopy(a)} for r, a in zip(rows, self.shared(key, compute))]

    @torch.no_grad()
    def list_step_logps(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """π_ref's (B, K, S) per-step log-probs of an ``encode_lists`` batch with ``step_ids``."""
        from .logps import list_step_logps

        with self.as_model() as m:
            return list_step_logps(m, batch)[0]

    @torch.no_grad()
    def list_logps(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """π_ref's (B, K) log-probs of an ``encode_lists`` batch."""
        from .logps import list_logps

        with self.as_model() as m:
            return list_logps(m, batch)

    @torch.no_grad()
    def logps(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        key = None
        if self._cache is not None:
            parts = [batch["input_ids"].tolist(), batch["response_mask"].tolist()]
            if "pixel_values" in batch:
                parts.append(hashlib.sha256(batch["pixel_values"].cpu().numpy().tobytes()).hexdigest())
            key = fingerprint(parts)
            if key in self._cache:
                return self._cache[key]
        with self.as_model() as m:
            out = sequence_logps(
                m, batch["input_ids"], batch["attention_mask"], batch["response_mask"],
                pixel_values=batch.get("pixel_values"),
            )  # fmt: skip
        if key is not None:
            self._cache[key] = out
        return out

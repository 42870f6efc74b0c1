"""The ``toy`` profile: an SFT base trained from scratch on a world's noisy demonstrations (cached on disk), and
preference pairs built from the base's own samples with the world's simulated raters.

Any world with ``tokenizer``, ``train_prompts``, ``demonstration(prompt, rng)``, ``build_pairs(...)`` and
``params()`` works here.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from . import __version__
from .generate import sample
from .models import TinyLlamaConfig, cache_dir, fingerprint, tiny_llama
from .train import StepBatches, TrainConfig, sft_objective, train


@dataclass
class ToyBaseConfig:
    model: TinyLlamaConfig = field(default_factory=TinyLlamaConfig)
    demos_per_prompt: int = 2  # independent noisy demonstrations of each training prompt
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    seed: int = 0


def sft_base(world, config: ToyBaseConfig, cache: bool = True, progress: bool = True):
    """Train (or load from the cache) the SFT base for ``world``; cached under a hash of world and config."""
    from transformers import LlamaForCausalLM

    key = fingerprint({"world": world.params(), "config": asdict(config), "prefkit": __version__})
    path = cache_dir() / "toy-bases" / key
    if cache and (path / "config.json").exists():
        return LlamaForCausalLM.from_pretrained(path).train()
    rng = random.Random(config.seed)
    rows = [
        {"prompt": p, "response": world.demonstration(p, rng)}
        for p in world.train_prompts
        for _ in range(config.demos_per_prompt)
    ]
    model = tiny_llama(world.tokenizer, config.model, seed=config.seed)
    batches = StepBatches(rows, world.tokenizer, config.batch_size, seed=config.seed, kind="sft")
    tc = TrainConfig(
        steps=config.steps,
        lr=config.lr,
        warmup_steps=config.warmup_steps,
        seed=config.seed,
        sanity_check=False,
        progress=progress,
        desc="SFT base",
    )
    train(model, sft_objective(), batches, tc)
    if cache:
        tmp = path.with_name(path.name + ".tmp")
        model.save_pretrained(tmp, safe_serialization=True)
        if not path.exists():  # another process may have finished the same base first
            tmp.replace(path)
    return model.train()


def sample_pairs(world, model, prompts, n_candidates: int = 2, seed: int = 0, **sample_kw) -> tuple[list[dict], int]:
    """Sample ``n_candidates`` responses per prompt from ``model`` and let the world's simulated raters label two
    distinct ones. Returns ``(rows, dropped)``; ``dropped`` counts prompts whose candidates were all identical.
    """
    cands = sample(model, world.tokenizer, prompts, n=n_candidates, seed=seed, **sample_kw)
    return world.build_pairs(prompts, cands, random.Random(seed))


def describe(model) -> dict[str, Any]:
    """Parameter count and shape of a toy model, for result records."""
    c = model.config
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "hidden_size": c.hidden_size,
        "layers": c.num_hidden_layers,
        "vocab": c.vocab_size,
        "device": str(next(model.parameters()).device),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(),
    }

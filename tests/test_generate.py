"""Sampling: shapes, greedy determinism, seeded reproducibility, PEFT models, restored state."""

from __future__ import annotations

import pytest
import torch

from prefkit.generate import greedy, sample
from prefkit.models import TinyLlamaConfig, add_lora, tiny_llama
from prefkit.worlds import StringWorld

PROMPTS = ["reverse : a b c =", "sort shift : h g a b c d =", "dedupe : a a b ="]


@pytest.fixture(scope="module")
def world() -> StringWorld:
    return StringWorld(n_train=10, n_eval=10)


@pytest.fixture
def lm(world):
    cfg = TinyLlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    return tiny_llama(world.tokenizer, cfg, seed=0)


def test_shapes_and_vocabulary(lm, world):
    out = sample(lm, world.tokenizer, PROMPTS, n=3, max_new_tokens=8, seed=0)
    assert len(out) == len(PROMPTS) and all(len(r) == 3 for r in out)
    specials = set(world.tokenizer.all_special_tokens)
    for r in out:
        for text in r:
            assert isinstance(text, str) and len(text.split()) <= 8
            assert not set(text.split()) & specials


def test_batching_does_not_change_the_result_shape(lm, world):
    out = sample(lm, world.tokenizer, PROMPTS * 3, n=2, max_new_tokens=4, seed=0, batch_size=3)
    assert len(out) == 9 and all(len(r) == 2 for r in out)


def test_greedy_deterministic(lm, world):
    a = sample(lm, world.tokenizer, PROMPTS, n=2, max_new_tokens=8, temperature=0)
    b = sample(lm, world.tokenizer, PROMPTS, n=2, max_new_tokens=8, temperature=0, batch_size=1)
    assert a == b and all(r[0] == r[1] for r in a)
    assert greedy(lm, world.tokenizer, PROMPTS, max_new_tokens=8) == [r[0] for r in a]


def test_left_padding_does_not_change_greedy(lm, world):
    """Left padding must not change the continuation: greedy on a padded batch equals one prompt alone."""
    batched = greedy(lm, world.tokenizer, PROMPTS, max_new_tokens=6)
    alone = [greedy(lm, world.tokenizer, [p], max_new_tokens=6)[0] for p in PROMPTS]
    assert batched == alone


def test_seeded_sampling_reproducible(lm, world):
    a = sample(lm, world.tokenizer, PROMPTS, n=4, max_new_tokens=8, seed=1)
    b = sample(lm, world.tokenizer, PROMPTS, n=4, max_new_tokens=8, seed=1)
    c = sample(lm, world.tokenizer, PROMPTS, n=4, max_new_tokens=8, seed=2)
    assert a == b and a != c


def test_checkpoint_generation_config_cannot_truncate_sampling(lm, world):
    """A checkpoint's top_k / repetition_penalty defaults are switched off: sampling stays ancestral."""
    lm.generation_config.top_k, lm.generation_config.repetition_penalty = 1, 5.0
    out = sample(lm, world.tokenizer, PROMPTS[:1], n=8, max_new_tokens=6, seed=0)
    assert len(set(out[0])) > 1  # top_k = 1 would make all eight identical
    lm.generation_config.top_k, lm.generation_config.repetition_penalty = 50, 1.0


def test_seed_leaves_global_rng_alone(lm, world):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    sample(lm, world.tokenizer, PROMPTS, n=2, max_new_tokens=4, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_state_restored(lm, world):
    tok = world.tokenizer
    lm.train()
    side = tok.padding_side
    sample(lm, tok, PROMPTS, max_new_tokens=4, seed=0)
    assert lm.training and tok.padding_side == side
    lm.eval()
    tok.padding_side = "left"
    try:
        sample(lm, tok, PROMPTS, max_new_tokens=4, seed=0)
        assert not lm.training and tok.padding_side == "left"
    finally:
        tok.padding_side = side


def test_no_grad(lm, world):
    torch.set_grad_enabled(True)
    sample(lm, world.tokenizer, PROMPTS, max_new_tokens=4, seed=0)
    assert torch.is_grad_enabled()
    assert all(p.grad is None for p in lm.parameters())


def test_peft_model(lm, world):
    base = greedy(lm, world.tokenizer, PROMPTS, max_new_tokens=6)
    peft_model = add_lora(lm)
    peft_model.train()
    assert greedy(peft_model, world.tokenizer, PROMPTS, max_new_tokens=6) == base  # B = 0: same as the base
    out = sample(peft_model, world.tokenizer, PROMPTS, n=2, max_new_tokens=6, seed=0)
    assert len(out) == 3 and all(len(r) == 2 for r in out)
    assert peft_model.training


def test_bad_arguments(lm, world):
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        sample(lm, world.tokenizer, PROMPTS, n=0)
    with pytest.raises(ValueError, match="temperature must be >= 0, got -1.0"):
        sample(lm, world.tokenizer, PROMPTS, temperature=-1.0)


def test_4bit_lora_model(lm, world, tmp_path):
    pytest.importorskip("bitsandbytes")
    from prefkit.models import LoraSpec, quantize_4bit

    q = quantize_4bit(lm, tmp_path / "base", world.tokenizer, lora=LoraSpec(r=4), device="cpu")
    q.train()
    out = sample(q, world.tokenizer, PROMPTS, n=2, max_new_tokens=6, seed=0)
    assert len(out) == 3 and all(len(r) == 2 and all(isinstance(t, str) for t in r) for r in out)
    assert greedy(q, world.tokenizer, PROMPTS, max_new_tokens=6) == greedy(
        q, world.tokenizer, PROMPTS, max_new_tokens=6
    )
    assert q.training

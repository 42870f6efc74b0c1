"""Tiny models, the 4-bit + LoRA loader (run on CPU), and the reference policy's modes."""

from __future__ import annotations

import math

import pytest
import torch

from prefkit.logps import encode_pairs, sequence_logps
from prefkit.losses import dpo_loss
from prefkit.models import LoraSpec, Reference, TinyLlamaConfig, add_lora, load_lm, n_params, tiny_llama
from prefkit.train import pairwise_forward

# bitsandbytes' CPU kernels work on 64-wide quantisation blocks, so the 4-bit model is 64 wide (the shared fixture
# model is 32 wide)
QUANT_CONFIG = TinyLlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)


@pytest.fixture
def saved_dir(tmp_path, tok):
    """A tiny Llama and its tokenizer saved as a Hugging Face folder (safetensors), as ``load_lm`` expects."""
    path = tmp_path / "tiny_llama"
    tiny_llama(tok, QUANT_CONFIG, seed=0).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    assert (path / "model.safetensors").exists()
    return path


def _load_4bit(path):
    torch.manual_seed(0)  # LoRA A is drawn at random
    policy, tok = load_lm(str(path), quantize="4bit", lora=LoraSpec(r=4, alpha=8), device="cpu")
    policy.train()
    return policy, tok


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_tiny_llama_is_deterministic_from_its_seed(tok):
    state = torch.random.get_rng_state()
    a, b, c = tiny_llama(tok, seed=3), tiny_llama(tok, seed=3), tiny_llama(tok, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state), "building a model leaves the global RNG alone"
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_tiny_llama_default_size_and_config(tok):
    m = tiny_llama(tok)
    assert 300_000 <= n_params(m) <= 1_000_000, n_params(m)
    assert m.config.vocab_size == len(tok)
    assert (m.config.pad_token_id, m.config.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)
    assert m.get_output_embeddings().weight.shape == (len(tok), TinyLlamaConfig().hidden_size)


def test_load_lm_4bit_lora_layers_and_trainable_params(saved_dir):
    import bitsandbytes as bnb

    policy, tok = _load_4bit(saved_dir)
    decoder_linears = {
        n: m
        for n, m in policy.named_modules()
        if n.endswith("base_layer") or (isinstance(m, torch.nn.Linear) and ".layers." in n and "lora_" not in n)
    }
    # 2 layers x (q, k, v, o, gate, up, down)
    assert len([n for n in decoder_linears if n.endswith("base_layer")]) == 2 * 7
    for n, m in decoder_linears.items():
        assert isinstance(m, bnb.nn.Linear4bit), f"{n} is {type(m).__name__}"
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable), trainable
    assert len(trainable) == 2 * 7 * 2  # lora_A and lora_B on every linear layer
    assert tok.pad_token_id is not None


def test_load_lm_4bit_step0_dpo_is_ln2(saved_dir, pair_rows):
    policy, tok = _load_4bit(saved_dir)
    batch = encode_pairs(tok, pair_rows)
    ref = Reference(policy)
    assert ref.mode == "adapters_off"
    losses, metrics = pairwise_forward(policy, ref, batch, dpo_loss, beta=0.1)
    assert losses.requires_grad and losses.shape == (len(pair_rows),)
    # bitsandbytes' CPU 4-bit matmul for eval-mode no-grad inputs (the reference) can differ from the training path
    # (the policy): observed |Δ log π| up to 3e-3 per sequence, giving |loss - ln 2| ~ 1e-5 and |rewards| <= 2e-4 at
    # β = 0.1; with both on the same kernel the difference is 0
    assert abs(metrics["loss"] - math.log(2)) < 1e-3
    for k in ("rewards/chosen", "rewards/rejected", "rewards/margin"):
        assert abs(metrics[k]) < 1e-3, (k, metrics[k])


def test_reference_pass_does_not_change_the_policy_gradients(saved_dir, pair_rows):
    """Computing π_ref (adapters off, eval mode, no grad) must not alter the 4-bit policy's training forward/backward."""
    policy, tok = _load_4bit(saved_dir)
    torch.manual_seed(1)
    for n, p in policy.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.05)  # non-zero adapters, so every adapter gets a gradient
    batch = encode_pairs(tok, pair_rows)

    def grads():
        policy.zero_grad()
        lp, _ = sequence_logps(policy, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
        lp.sum().backward()
        return lp.detach(), {n: p.grad.clone() for n, p in policy.named_parameters() if p.requires_grad}

    lp0, g0 = grads()
    Reference(policy, mode="adapters_off").logps(batch)
    assert policy.training
    lp1, g1 = grads()
    torch.testing.assert_close(lp1, lp0, rtol=0, atol=1e-6)
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], rtol=1e-5, atol=1e-7, msg=n)


def test_adamw_step_changes_only_lora_weights(saved_dir, pair_rows):
    policy, tok = _load_4bit(saved_dir)
    batch = encode_pairs(tok, pair_rows)
    ref = Reference(policy)
    before = _snapshot(policy)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-2)
    losses, _ = pairwise_forward(policy, ref, batch, dpo_loss, beta=0.1)
    losses.mean().backward()
    opt.step()
    after = _snapshot(policy)
    assert set(before) == set(after)
    changed_base = [k for k in before if "lora_" not in k and not torch.equal(before[k], after[k])]
    assert not changed_base, f"{len(changed_base)} frozen tensors changed, e.g. {changed_base[:3]}"
    changed_lora = [k for k in before if "lora_" in k and not torch.equal(before[k], after[k])]
    assert any("lora_B" in k for k in changed_lora), "the step trained the adapters"


@pytest.mark.parametrize("dtype", [torch.float16, "float16"])
def test_load_lm_refuses_fp16(tmp_path, dtype):
    with pytest.raises(ValueError, match="fp16"):
        load_lm(str(tmp_path / "no_model_here"), quantize=None, dtype=dtype)


@pytest.mark.parametrize("quantize", ["8bit", "nf4", "4-bit"])
def test_load_lm_refuses_other_quantisation(tmp_path, quantize):
    with pytest.raises(ValueError, match="4bit"):
        load_lm(str(tmp_path / "no_model_here"), quantize=quantize)


def _lora_with_nonzero_adapters(model):
    peft = add_lora(model, LoraSpec(r=4, alpha=8))
    torch.manual_seed(1)
    for n, p in peft.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.1)
    return peft


def test_reference_adapters_off_equals_the_base_model(model, tok, pair_rows):
    import copy

    base = copy.deepcopy(model)
    policy = _lora_with_nonzero_adapters(model)
    batch = encode_pairs(tok, pair_rows)
    args = (batch["input_ids"], batch["attention_mask"], batch["response_mask"])
    ref = Reference(policy)
    assert ref.mode == "adapters_off"
    with torch.no_grad():
        want, _ = sequence_logps(base, *args)
        pol, _ = sequence_logps(policy, *args)
    got, _ = ref.logps(batch)
    assert (pol - want).abs().max() > 1e-3, "the adapters change the policy, so the comparison can fail"
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
    # the adapters are back on afterwards
    with torch.no_grad():
        torch.testing.assert_close(sequence_logps(policy, *args)[0], pol)


@pytest.mark.parametrize("training", [True, False])
def test_reference_as_model_restores_the_training_mode(model, training):
    policy = add_lora(model, LoraSpec(r=4, alpha=8))
    policy.train(training)
    with Reference(policy, mode="adapters_off").as_model() as m:
        assert not m.training
    assert policy.training is training


def test_reference_copy_is_frozen(model, tok, pair_rows):
    batch = encode_pairs(tok, pair_rows)
    args = (batch["input_ids"], batch["attention_mask"], batch["response_mask"])
    ref = Reference(model)
    assert ref.mode == "copy" and ref.model is not model
    assert not any(p.requires_grad for p in ref.model.parameters())
    r0, _ = ref.logps(batch)
    p0 = sequence_logps(model, *args)[0].detach()
    torch.testing.assert_close(r0, p0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses, _ = pairwise_forward(model, ref, batch, dpo_loss, beta=0.1)
    (-sequence_logps(model, *args)[0].sum() + losses.sum()).backward()
    opt.step()
    with torch.no_grad():
        p1, _ = sequence_logps(model, *args)
    r1, _ = ref.logps(batch)
    assert (p1 - p0).abs().max() > 1e-3, "the policy moved"
    assert torch.equal(r1, r0), "the reference did not"


def test_reference_adapters_off_needs_a_peft_model(model):
    with pytest.raises(ValueError, match="PEFT"):
        Reference(model, mode="adapters_off")


def test_reference_unknown_mode_raises(model):
    with pytest.raises(ValueError, match="copy"):
        Reference(model, mode="frozen")


@pytest.mark.parametrize("mode", ["copy", "adapters_off"])
def test_reference_cache_returns_cached_values_without_calling_the_model(model, tok, pair_rows, mode):
    policy = model if mode == "copy" else add_lora(model, LoraSpec(r=4, alpha=8))
    ref = Reference(policy, mode=mode, cache=True)
    calls = []
    with ref.as_model() as m:
        decoder = m.get_decoder()
    handle = decoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        batch = encode_pairs(tok, pair_rows)
        first = ref.logps(batch)
        assert len(calls) == 1
        second = ref.logps({k: v.clone() for k, v in batch.items()})  # equal tokens, different tensors
        assert len(calls) == 1, "the cached values were used"
        assert second is first
        other = ref.logps(encode_pairs(tok, pair_rows[:2]))
        assert len(calls) == 2, "a different batch is computed"
        assert other[0].shape == (4,)
    finally:
        handle.remove()
    uncached = Reference(policy, mode=mode)
    torch.testing.assert_close(uncached.logps(batch)[0], first[0])


def test_load_lm_reads_none_as_no_quantisation(saved_dir):
    """Notebook parameters spell "no quantisation" as the string "none"."""
    model, _ = load_lm(str(saved_dir), quantize="none", device="cpu")
    assert not getattr(model, "is_loaded_in_4bit", False)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_reference_copy_is_in_eval_mode_even_when_the_policy_trains_with_dropout(model, tok, pair_rows):
    for m in model.modules():
        if hasattr(m, "attention_dropout"):
            m.attention_dropout = 0.5  # the policy trains with attention dropout
    model.train()
    ref = Reference(model)
    batch = encode_pairs(tok, pair_rows)
    a, b = ref.logps(batch)[0], ref.logps(batch)[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # π_ref is deterministic: no dropout
    model.eval()
    with torch.no_grad():
        want = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])[0]
    torch.testing.assert_close(a, want)
    model.train()
    with torch.no_grad():
        noisy = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])[0]
    assert not torch.allclose(noisy, want)  # dropout does act on the policy in training mode


def test_reference_cache_tells_apart_batches_that_score_different_tokens(model, tok):
    from prefkit.logps import encode_joint

    rows = [{"prompt_chosen": "reverse : a b =", "chosen": "b a", "prompt_rejected": "sort : c a =", "rejected": "c a"}]
    joint, masked = encode_joint(tok, rows), encode_joint(tok, rows, mask_prompt=True)
    assert torch.equal(joint["input_ids"], masked["input_ids"])  # the same tokens, scored differently (DOVE vs DPO)
    plain, cached = Reference(model), Reference(model, cache=True)
    for b in (joint, masked, joint):
        got, want = cached.logps(b), plain.logps(b)
        torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)
        assert got[1].tolist() == want[1].tolist()


def test_fsdp_refuses_a_4bit_model_before_touching_it(saved_dir):
    from prefkit.train import _shard_parameters

    policy, _ = _load_4bit(saved_dir)
    with pytest.raises(NotImplementedError, match="FSDP with a 4-bit .* launch without FSDP"):
        _shard_parameters(policy, [])

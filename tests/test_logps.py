"""Per-sequence response log-probs: the chunked computation against the textbook one, and the batch layout."""

from __future__ import annotations

import pytest
import torch

from prefkit.logps import encode, encode_pairs, naive_sequence_logps, sequence_logps
from prefkit.models import LoraSpec, add_lora

# different prompt and response lengths, so the batch is right-padded unevenly
PROMPTS = ["reverse : a b c =", "sort : d a c =", "reverse sort : h g =", "sort : a ="]
RESPONSES = ["c b a", "a c d | d c a a", "g h | g h", "a"]


@pytest.fixture
def batch(tok):
    return encode(tok, PROMPTS, RESPONSES)


def _ids(tok, words: str) -> list[int]:
    return tok.convert_tokens_to_ids(words.split())


def test_batch_is_unevenly_padded(batch):
    n_real = batch["attention_mask"].sum(-1)
    assert len(set(n_real.tolist())) == len(PROMPTS)
    assert (n_real < batch["input_ids"].shape[1]).sum() == len(PROMPTS) - 1


def test_sequence_logps_equals_naive_float32(model, batch):
    with torch.no_grad():
        got, counts = sequence_logps(model, **batch)
        want, want_counts = naive_sequence_logps(model, **batch)
    assert got.dtype == torch.float32 and got.shape == (len(PROMPTS),)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
    assert torch.equal(counts, want_counts)
    assert (got < 0).all()


def test_sequence_logps_equals_naive_bfloat16(model, batch):
    # Both compute bf16 logits and upcast them to float32 before the softmax; they differ only by matmul shapes.
    # Observed difference on the tiny model: <= 2e-6 (a bf16 model differs from its float32 self by ~6e-3).
    # Tolerance rtol=1e-3, atol=1e-2: about one bf16 rounding step of summed log-probs of magnitude ~10-30.
    model.to(torch.bfloat16)
    with torch.no_grad():
        got, _ = sequence_logps(model, **batch)
        want, _ = naive_sequence_logps(model, **batch)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-2)


def test_padding_does_not_change_a_sequence(model, tok, batch):
    """A sequence scored in a padded batch gets the same log-prob as scored alone."""
    with torch.no_grad():
        together, _ = sequence_logps(model, **batch)
        alone = torch.cat([sequence_logps(model, **encode(tok, [p], [r]))[0] for p, r in zip(PROMPTS, RESPONSES)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_chunk_sizes_agree(model, batch):
    with torch.no_grad():
        results = [sequence_logps(model, **batch, chunk_size=c) for c in (1, 3, 1024)]
    for lp, counts in results[1:]:
        torch.testing.assert_close(lp, results[0][0], rtol=1e-6, atol=1e-6)
        assert torch.equal(counts, results[0][1])


def _grads(model, fn, batch, **kw):
    model.zero_grad()
    lp, _ = fn(model, **batch, **kw)
    weights = torch.linspace(1.0, 2.0, lp.shape[0])  # distinct weights, so each sequence's gradient counts
    (lp * weights).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunk_size", [3, 1024])
def test_gradients_equal_naive(model, batch, chunk_size):
    got = _grads(model, sequence_logps, batch, chunk_size=chunk_size)
    want = _grads(model, naive_sequence_logps, batch)
    assert set(got) == set(want)
    assert "lm_head.weight" in got, "the head's gradient flows through the checkpointed chunks"
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-5, atol=1e-6, msg=n)
    assert any(g.abs().sum() > 0 for g in got.values())


def test_counts_are_response_token_counts(model, tok, batch):
    _, counts = sequence_logps(model, **batch)
    # word-level tokenizer: one token per word, plus the closing EOS
    assert counts.tolist() == [len(r.split()) + 1 for r in RESPONSES]
    assert torch.equal(counts, batch["response_mask"].sum(-1))


def test_response_mask_selects_the_scored_tokens(model, tok):
    """Only masked tokens are summed: marking the prompt too scores every token but the first."""
    with torch.no_grad():
        a, _ = sequence_logps(model, **encode(tok, ["reverse : a b ="], ["b a"]))
        mask_all = encode(tok, ["reverse : a b ="], ["b a"])
        full = dict(mask_all, response_mask=mask_all["attention_mask"])
        b, n = sequence_logps(model, **full)
    assert n.item() == mask_all["attention_mask"].sum().item() - 1  # every token but the first is scored
    assert b.item() < a.item()


def test_encode_layout(tok):
    out = encode(tok, ["reverse : a b c =", "sort : a ="], ["c b a", "a"])
    bos, eos, pad = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    p0, r0 = [bos, *_ids(tok, "reverse : a b c =")], [*_ids(tok, "c b a"), eos]
    p1, r1 = [bos, *_ids(tok, "sort : a =")], [*_ids(tok, "a"), eos]
    T = len(p0) + len(r0)
    assert out["input_ids"].shape == out["attention_mask"].shape == out["response_mask"].shape == (2, T)
    assert out["input_ids"].dtype == torch.long
    assert out["input_ids"][0].tolist() == p0 + r0
    assert out["input_ids"][1].tolist() == p1 + r1 + [pad] * (T - len(p1) - len(r1))
    assert out["attention_mask"][1].tolist() == [1] * (len(p1) + len(r1)) + [0] * (T - len(p1) - len(r1))
    assert out["attention_mask"][0].tolist() == [1] * T
    assert out["response_mask"][0].tolist() == [0] * len(p0) + [1] * len(r0)
    assert out["response_mask"][1].tolist() == [0] * len(p1) + [1] * len(r1) + [0] * (T - len(p1) - len(r1))


def test_encode_passes_token_ids_through(tok):
    eos = tok.eos_token_id
    out = encode(tok, [[9, 4, 5]], [[6, 7]])
    assert out["input_ids"][0].tolist() == [9, 4, 5, 6, 7, eos]  # no BOS added to an id prompt
    assert out["response_mask"][0].tolist() == [0, 0, 0, 1, 1, 1]
    # a response that already ends in EOS does not get a second one
    again = encode(tok, [[9]], [[6, eos]])
    assert again["input_ids"][0].tolist() == [9, 6, eos]


def test_encode_without_eos(tok):
    out = encode(tok, [[9]], [[6, 7]], add_eos=False)
    assert out["input_ids"][0].tolist() == [9, 6, 7]


def test_encode_max_length_truncates_the_response_only(tok):
    prompt, response = "reverse : a b c d e =", "e d c b a"
    full = encode(tok, [prompt], [response])
    n_prompt = int((full["response_mask"][0] == 0).sum())
    out = encode(tok, [prompt], [response], max_length=n_prompt + 2)
    assert out["input_ids"].shape == (1, n_prompt + 2)
    assert out["input_ids"][0, :n_prompt].tolist() == full["input_ids"][0, :n_prompt].tolist()  # prompt kept whole
    assert out["input_ids"][0, n_prompt:].tolist() == _ids(tok, "e d")  # response cut from the right
    assert out["response_mask"][0].tolist() == [0] * n_prompt + [1, 1]
    # a max_length at or above the full length changes nothing
    same = encode(tok, [prompt], [response], max_length=full["input_ids"].shape[1] + 5)
    assert torch.equal(same["input_ids"], full["input_ids"])


def test_encode_mismatched_lengths_raise(tok):
    with pytest.raises(ValueError, match="2 prompts for 1 responses"):
        encode(tok, ["a", "b"], ["c"])


def test_encode_pairs_puts_chosen_first_then_rejected(tok, pair_rows):
    out = encode_pairs(tok, pair_rows)
    B = len(pair_rows)
    assert out["input_ids"].shape[0] == 2 * B
    for i in range(2 * B):
        row = pair_rows[i % B]
        want = row["chosen"] if i < B else row["rejected"]
        m = out["response_mask"][i].bool()
        assert tok.convert_ids_to_tokens(out["input_ids"][i][m].tolist()) == [*want.split(), tok.eos_token]
        prompt_ids = out["input_ids"][i][(out["attention_mask"][i] == 1) & ~m]
        assert tok.convert_ids_to_tokens(prompt_ids.tolist()) == [tok.bos_token, *row["prompt"].split()]


def test_peft_wrapped_model(model, batch):
    peft = add_lora(model, LoraSpec(r=4, alpha=8))
    torch.manual_seed(1)
    for n, p in peft.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.1)  # non-zero adapters, so the wrapped model differs from its base
    got = _grads(peft, sequence_logps, batch, chunk_size=3)
    want = _grads(peft, naive_sequence_logps, batch)
    lora = [n for n in want if "lora_" in n]
    assert lora and set(got) == set(want) == set(lora), "only the adapters get gradients"
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-5, atol=1e-6, msg=n)
    with torch.no_grad():
        torch.testing.assert_close(sequence_logps(peft, **batch)[0], naive_sequence_logps(peft, **batch)[0])
        with peft.disable_adapter():
            base, _ = sequence_logps(peft, **batch)
        assert (sequence_logps(peft, **batch)[0] - base).abs().max() > 1e-3, "the adapters are in the computation"


def test_an_empty_response_is_scored_as_its_closing_eos(tok, model):
    out = encode(tok, ["sort : a ="], [""])
    ids = out["input_ids"][0].tolist()
    assert ids == [tok.bos_token_id, *_ids(tok, "sort : a ="), tok.eos_token_id]
    assert out["response_mask"][0].tolist() == [0] * (len(ids) - 1) + [1]
    lp, n = sequence_logps(model, out["input_ids"], out["attention_mask"], out["response_mask"])
    assert n.tolist() == [1] and lp.item() < 0  # log π(EOS | x): the model's choice to stop at once

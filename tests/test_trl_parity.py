"""Parity with TRL 1.16's ``DPOTrainer``: same tiny model, same batch, same β -> same loss, rewards and gradients.

TRL has no standalone loss function, so its side goes through ``DPOTrainer.compute_loss`` on a batch built by TRL's
own dataset processing (``_prepare_dataset``: EOS appended, prompt and prompt+completion tokenised) and its collator
(``DataCollatorForPreference``: B chosen then B rejected, right-padded). prefkit's side is
``pairwise_forward(policy, Reference(...), encode_pairs(tok, rows), loss=get_loss(name), ...)``.

Tokenisation. TRL (non-conversational data) appends ``eos_token`` to the completion *string*, tokenises the prompt and
the concatenated string ``prompt + completion`` with the tokenizer's special tokens (so BOS is added once, at the
start), and starts the completion where the two token lists diverge. prefkit tokenises the prompt with special tokens
and the completion without, then appends the EOS id. The two agree when the prompt ends on a token boundary; here the
completions start with a space (the tokenizer splits on whitespace), so they coincide, and the test asserts that the
ids, attention masks and completion masks are identical before comparing anything else.

The policy and the reference are saved to a temporary folder and loaded from there on both sides (TRL resolves a
missing reference by the policy's ``_name_or_path``, so an in-memory model would send it to the Hub); the reference
has different weights (another seed) so the log-ratios, and hence the losses and gradients, are not trivially zero.
Everything runs in float32 on CPU with dropout off and activation checkpointing off.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("trl")

from conftest import make_model, make_tokenizer  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

from prefkit.logps import encode_pairs  # noqa: E402
from prefkit.losses import get_loss  # noqa: E402
from prefkit.models import Reference  # noqa: E402
from prefkit.train import pairwise_forward  # noqa: E402

# Completions start with a space so that TRL's string concatenation prompt + completion splits into exactly the
# prompt's tokens followed by the completion's (see the module docstring). Lengths differ, so there is padding, and
# the completions start at different positions.
ROWS = [
    {"prompt": "reverse : a b c =", "chosen": " c b a", "rejected": " a b c"},
    {"prompt": "sort : d a c =", "chosen": " a c d", "rejected": " d c a | a"},
    {"prompt": "reverse sort : h g =", "chosen": " g h | g h", "rejected": " h"},
    {"prompt": "sort : b =", "chosen": " b", "rejected": " b b e f"},
]

# TRL loss_type -> (prefkit loss name, hyper-parameters). β varies so each loss sits in a non-degenerate regime (IPO's
# target 1/(2β) = 1 keeps its loss O(1), which keeps an absolute tolerance meaningful).
CASES = {
    "sigmoid": ("dpo", {"beta": 0.1}),
    "ipo": ("ipo", {"beta": 0.5}),
    "hinge": ("hinge", {"beta": 0.3}),
    "robust": ("robust", {"beta": 0.1, "label_smoothing": 0.2}),
}

METRICS = [
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
]
PREFKIT_METRIC = {"rewards/margins": "rewards/margin", "rewards/accuracies": "rewards/accuracy"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The policy (seed 0), a different reference (seed 1) and the tokenizer, saved as safetensors folders."""
    root = tmp_path_factory.mktemp("trl_parity")
    tok = make_tokenizer()
    for name, seed in (("policy", 0), ("ref", 1)):
        make_model(tok, seed=seed).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    return root


def _load(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def trl_step(root, loss_type: str, beta: float, label_smoothing: float = 0.0, ref: bool = True):
    """One ``compute_loss`` + backward through TRL. Returns the loss, TRL's logged metrics, the policy's gradients and
    the collated batch. With ``ref=False`` TRL builds the reference itself from the policy's path."""
    args = DPOConfig(
        output_dir=str(root / "trl_out"),
        loss_type=[loss_type],
        beta=beta,
        label_smoothing=label_smoothing,
        per_device_train_batch_size=len(ROWS),
        max_length=None,
        bf16=False,
        activation_checkpointing=False,
        use_cpu=True,
        report_to="none",
        seed=0,
    )
    trainer = DPOTrainer(
        model=str(root / "policy"),
        ref_model=_load(root / "ref") if ref else None,
        args=args,
        train_dataset=Dataset.from_list(ROWS),
        processing_class=make_tokenizer(),
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, trainer._prepare_inputs(batch))
    loss.backward()
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.item(), metrics, grads, batch


def prefkit_step(root, name: str, ref: bool = True, **hparams):
    """The same step through prefkit: one forward for chosen + rejected, the named loss, ``.mean()``, backward."""
    tok = make_tokenizer()
    policy = _load(root / "policy").train()
    reference = Reference(_load(root / ("ref" if ref else "policy")), mode="copy")
    batch = encode_pairs(tok, ROWS)
    losses, metrics = pairwise_forward(policy, reference, batch, loss=get_loss(name), **hparams)
    loss = losses.mean()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in policy.named_parameters() if p.grad is not None}
    return loss.item(), metrics, grads, batch


def assert_same_tokens(trl_batch, pk_batch):
    assert torch.equal(trl_batch["input_ids"], pk_batch["input_ids"])
    assert torch.equal(trl_batch["attention_mask"], pk_batch["attention_mask"])
    assert torch.equal(trl_batch["completion_mask"], pk_batch["response_mask"])


def test_tokenisation_matches_trl(saved):
    """BOS once at the start, EOS closing each completion, B chosen then B rejected, right padding with <pad>."""
    *_, trl_batch = trl_step(saved, "sigmoid", beta=0.1)
    pk_batch = encode_pairs(make_tokenizer(), ROWS)
    assert_same_tokens(trl_batch, pk_batch)
    tok = make_tokenizer()
    ids, mask = pk_batch["input_ids"], pk_batch["response_mask"]
    assert (ids[:, 0] == tok.bos_token_id).all() and (ids == tok.bos_token_id).sum() == ids.shape[0]
    last = pk_batch["attention_mask"].sum(-1) - 1  # (2B,) index of each sequence's last real token
    assert (ids[torch.arange(ids.shape[0]), last] == tok.eos_token_id).all()
    assert (mask[torch.arange(ids.shape[0]), last] == 1).all()


@pytest.mark.parametrize("loss_type", list(CASES))
def test_loss_rewards_and_gradients_match_trl(saved, loss_type):
    name, hparams = CASES[loss_type]
    trl_loss, trl_metrics, trl_grads, trl_batch = trl_step(saved, loss_type, **hparams)
    pk_loss, pk_metrics, pk_grads, pk_batch = prefkit_step(saved, name, **hparams)

    assert_same_tokens(trl_batch, pk_batch)
    # A different reference makes the comparison non-trivial: the log-ratios are far from zero.
    assert abs(trl_metrics["rewards/margins"]) > 1e-3
    assert pk_loss == pytest.approx(trl_loss, abs=1e-5, rel=1e-6)
    for key in METRICS:
        assert pk_metrics[PREFKIT_METRIC.get(key, key)] == pytest.approx(trl_metrics[key], abs=1e-5, rel=1e-5), key

    assert pk_grads.keys() == trl_grads.keys() and len(pk_grads) > 0
    for n, g in trl_grads.items():
        torch.testing.assert_close(pk_grads[n], g, rtol=1e-4, atol=1e-6, msg=lambda m, n=n: f"{n}: {m}")
    assert max(g.abs().max().item() for g in trl_grads.values()) > 1e-4  # the gradients are not all zero


def test_policy_equal_to_reference_gives_ln2(saved):
    """π = π_ref: sigmoid DPO is -log σ(0) = ln 2 with zero rewards on both sides. TRL builds its reference from the
    policy's local path (``ref_model=None``); prefkit takes a frozen copy of the policy."""
    trl_loss, trl_metrics, _, _ = trl_step(saved, "sigmoid", beta=0.1, ref=False)
    pk_loss, pk_metrics, _, _ = prefkit_step(saved, "dpo", ref=False, beta=0.1)
    assert trl_loss == pytest.approx(math.log(2), abs=1e-6)
    assert pk_loss == pytest.approx(math.log(2), abs=1e-6)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
        assert trl_metrics[key] == pytest.approx(0.0, abs=1e-7)
        assert pk_metrics[PREFKIT_METRIC.get(key, key)] == pytest.approx(0.0, abs=1e-7)

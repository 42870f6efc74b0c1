"""Shared fixtures: a word-level tokenizer and a tiny Llama, built offline in milliseconds."""

from __future__ import annotations

import os

# Plain `pytest` behaves like `make test`: offline, OpenMP threads that sleep rather than spin while they wait (a
# spinning thread makes small-model CPU runs many times slower when another process shares the cores), and one torch
# thread per test process, since `make test` runs two workers on two cores. Notebook kernels inherit these.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFKIT_THREADS", "1")

import pytest  # noqa: E402
import torch
from transformers import PreTrainedTokenizerFast  # noqa: E402

from prefkit.models import TinyLlamaConfig, tiny_llama
from prefkit.worlds import word_tokenizer

torch.set_num_threads(int(os.environ["PREFKIT_THREADS"]))

WORDS = ["<pad>", "<bos>", "<eos>", "<unk>", *"abcdefgh", "reverse", "sort", ":", "=", "|"]


def make_tokenizer() -> PreTrainedTokenizerFast:
    return word_tokenizer(WORDS[4:])


def make_model(tokenizer, seed: int = 0):
    # hidden >= 64: bitsandbytes' CPU 4-bit kernels pack weights in blocks of 64 input features
    cfg = TinyLlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    return tiny_llama(tokenizer, cfg, seed=seed)


@pytest.fixture
def tok() -> PreTrainedTokenizerFast:
    return make_tokenizer()


@pytest.fixture
def model(tok):
    torch.manual_seed(0)
    return make_model(tok)


@pytest.fixture
def pair_rows() -> list[dict]:
    return [
        {"prompt": "reverse : a b c =", "chosen": "c b a", "rejected": "a b c"},
        {"prompt": "sort : d a c =", "chosen": "a c d", "rejected": "d c a | a"},
        {"prompt": "reverse sort : h g =", "chosen": "g h | g h", "rejected": "h"},
    ]


def pytest_collection_modifyitems(config, items):
    """The notebook runs (a minute or so each) first, then the other slow tests, the many quick ones last: the two
    xdist workers then share out the quick tests at the end, instead of one worker finishing a long notebook alone
    while the other idles."""
    items.sort(
        key=lambda item: 0 if item.get_closest_marker("notebook") else 1 if item.get_closest_marker("slow") else 2
    )

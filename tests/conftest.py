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


# The smoke runs of these notebooks share one toy base (the string world, 150 SFT steps): the first to need it trains
# it, the others wait for it and load it.
SHARED_SMOKE_BASE = {"01_dpo", "02_lipo", "03_dove", "04_delta", "05_tpo", "06_spo"}


def _rank(item) -> int:
    return 0 if item.get_closest_marker("notebook") else 1 if item.get_closest_marker("slow") else 2


def _shares_smoke_base(item) -> bool:
    nb = getattr(item, "callspec", None) and item.callspec.params.get("nb")
    return (
        getattr(item, "originalname", "") == "test_notebook_smoke" and nb is not None and nb.stem in SHARED_SMOKE_BASE
    )


def pytest_collection_modifyitems(config, items):
    """The notebook runs (a minute or so each) first, then the other slow tests, the many quick ones last, so that
    no worker finishes a long notebook alone while the other idles.

    With two xdist workers (``make test``), the order also fixes who runs what: ``--dist worksteal`` hands the
    first half of the list to one worker and the second half to the other, and an idle worker later takes the tail
    of the other's queue (quick tests). The first half starts with the notebooks that share a smoke base, the
    second with all other notebook runs, so neither worker waits for a base the other is training, and the two
    halves carry about the same notebook time (measured: both workers ended within a second of each other)."""
    items.sort(key=_rank)
    if os.environ.get("PYTEST_XDIST_WORKER_COUNT") != "2":
        return
    shared = [i for i in items if _rank(i) == 0 and _shares_smoke_base(i)]
    other = [i for i in items if _rank(i) == 0 and not _shares_smoke_base(i)]
    rest = [i for i in items if _rank(i) > 0]
    fill = len(items) // 2 - len(shared)  # the first worker's share is exactly the first len(items) // 2 tests
    if fill < 0 or fill > len(rest):
        return
    items[:] = shared + rest[:fill] + other + rest[fill:]


@pytest.fixture(scope="module")
def points_cache(tmp_path_factory):
    """A prefkit cache of its own for one test module of the 2-D diffusion toy: the tiny bases its tests train (with
    ``prefkit.diffusion_pref.points_base``) are trained there, once per module, and never read from an older run."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PREFKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()

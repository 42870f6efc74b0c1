"""Data-parallel training: 2 processes of B/2 rows take the step that 1 process of B rows takes, with whole
parameters on each process (DDP) and with parameters split across them (FSDP)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(folder: Path, fsdp: bool) -> dict:
    out = folder / "two.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parents[1]), "PREFKIT_FSDP": str(int(fsdp))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           str(WORKER), str(out), *([str(folder / "ckpt")] if fsdp else [])]  # fmt: skip
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return torch.load(out, weights_only=True)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> dict:
    """Each mode's runs by 2 processes of 4 pairs per step (torchrun sets RANK, WORLD_SIZE, MASTER_PORT, ... as
    accelerate launch does)."""
    return {mode: _torchrun(tmp_path_factory.mktemp(mode), fsdp=mode == "fsdp") for mode in ("ddp", "fsdp")}


@pytest.fixture(scope="module")
def one_process() -> dict:
    """Both kinds trained by this process alone, 8 pairs per step."""
    sys.path.insert(0, str(WORKER.parent))
    from ddp_worker import run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {kind: run(kind) for kind in ("full", "lora")}
    finally:
        torch.set_num_threads(threads)


def _assert_same_training(two: dict, one: dict) -> None:
    assert (one["world"], two["world"]) == (1, 2)  # the two-process run really was distributed
    assert one["weights"].keys() == two["weights"].keys() and len(one["weights"]) > 0
    for name, w in one["weights"].items():
        # Adam divides by the root of the squared gradients, so float noise in near-zero gradients moves weights by
        # ~1e-6 within a few steps; a missing all-reduce or an unsharded batch moves them by ~1e-3
        torch.testing.assert_close(two["weights"][name], w, rtol=1e-4, atol=2e-5, msg=name)
    assert one["loss"][0] != one["loss"][-1]  # the steps did something
    torch.testing.assert_close(torch.tensor(two["loss"]), torch.tensor(one["loss"]), rtol=1e-4, atol=1e-6)
    # the norm that clipping uses is the whole gradient's, not one process's share of it
    torch.testing.assert_close(torch.tensor(two["grad_norm"]), torch.tensor(one["grad_norm"]), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
@pytest.mark.parametrize("kind", ["full", "lora"])
def test_two_processes_of_half_a_batch_train_the_weights_one_process_trains(two_processes, one_process, mode, kind):
    _assert_same_training(two_processes[mode][kind], one_process[kind])


@pytest.mark.slow
def test_a_sharded_run_resumes_from_its_checkpoint_where_it_stopped(two_processes, one_process):
    # 2 steps, checkpoint gathered from both processes, then a new run loads it back into shards and takes 2 more
    _assert_same_training(two_processes["fsdp"]["resumed"], one_process["full"])

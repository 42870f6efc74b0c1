"""Data-parallel training: 2 processes of B/2 rows take the step that 1 process of B rows takes."""

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


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> dict:
    """Both kinds trained by 2 processes of 4 pairs per step (torchrun sets RANK, WORLD_SIZE, MASTER_PORT, ... as
    accelerate launch does)."""
    out = tmp_path_factory.mktemp("ddp") / "two.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           str(WORKER), str(out)]  # fmt: skip
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return torch.load(out, weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["full", "lora"])
def test_two_processes_of_half_a_batch_train_the_weights_one_process_trains(two_processes, kind):
    sys.path.insert(0, str(WORKER.parent))
    from ddp_worker import run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = run(kind)  # this process alone, 8 pairs per step
    finally:
        torch.set_num_threads(threads)
    two = two_processes[kind]
    assert (one["world"], two["world"]) == (1, 2)  # the two-process run really was distributed
    assert one["weights"].keys() == two["weights"].keys() and len(one["weights"]) > 0
    for name, w in one["weights"].items():
        # Adam divides by the root of the squared gradients, so float noise in near-zero gradients moves weights by
        # ~1e-6 within a few steps; a missing all-reduce or an unsharded batch moves them by ~1e-3
        torch.testing.assert_close(two["weights"][name], w, rtol=1e-4, atol=2e-5, msg=name)
    assert one["loss"][0] != one["loss"][-1]  # the steps did something
    torch.testing.assert_close(torch.tensor(two["loss"]), torch.tensor(one["loss"]), rtol=1e-4, atol=1e-6)

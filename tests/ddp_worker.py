"""One process of the data-parallel tests (tests/test_ddp.py): a few DPO steps of a toy model, full-precision and
LoRA, on 8 pairs per step; the main process writes the trained weights and logged losses. With ``PREFKIT_FSDP=1``
the parameters are sharded too, and a third run stops after 2 steps and resumes from its checkpoint."""

from __future__ import annotations

import sys

import torch

from prefkit.losses import dpo_loss
from prefkit.models import Reference, TinyLlamaConfig, tiny_llama
from prefkit.train import StepBatches, TrainConfig, preference_objective, train
from prefkit.worlds.strings import make_tokenizer

ROWS = [
    {"prompt": "reverse : a b c =", "chosen": "c b a", "rejected": "a b c"},
    {"prompt": "sort : d a c =", "chosen": "a c d", "rejected": "d c a | a"},
    {"prompt": "reverse sort : h g =", "chosen": "g h | g h", "rejected": "h"},
    {"prompt": "shift : a b =", "chosen": "b c", "rejected": "b b"},
    {"prompt": "dedupe : a a b =", "chosen": "a b", "rejected": "a a b"},
    {"prompt": "sort : h a =", "chosen": "a h", "rejected": "h a"},
    {"prompt": "reverse : e f g h =", "chosen": "h g f e", "rejected": "h g e f"},
    {"prompt": "shift : h =", "chosen": "a", "rejected": "h"},
] * 2


def run(kind: str, steps: int = 4, checkpoint_dir: str | None = None) -> dict:
    """Train; return the trained weights (whole), the logged losses and the number of processes."""
    tok = make_tokenizer()
    cfg = TinyLlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    policy = tiny_llama(tok, cfg, seed=0)
    if kind == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
        torch.manual_seed(1)  # LoRA's A is drawn from the global generator: the same in every process and run
        policy = get_peft_model(policy, lora)
        for n, p in policy.named_parameters():  # LoRA's B starts at 0: move it so that both factors learn
            if "lora_B" in n:
                p.data.normal_(0, 0.02)
    ref = Reference(policy, mode="copy")
    batches = StepBatches(ROWS, tok, batch_size=8, seed=3)
    hist = train(policy, preference_objective(dpo_loss, ref, beta=0.5), batches,
                 TrainConfig(steps=steps, lr=5e-3, seed=0, progress=False, checkpoint_dir=checkpoint_dir))  # fmt: skip
    dist = torch.distributed
    whole = {n: p.full_tensor() if hasattr(p, "full_tensor") else p for n, p in policy.named_parameters()}
    weights = {n: p.detach().clone() for n, p in whole.items() if p.requires_grad}
    world = dist.get_world_size() if dist.is_initialized() else 1
    steps = hist.steps
    return {
        "weights": weights,
        "loss": steps["loss"].tolist(),
        "grad_norm": steps["grad_norm"].tolist(),
        "world": world,
    }


if __name__ == "__main__":  # under torchrun: both kinds, written by the main process
    torch.set_num_threads(1)
    results = {kind: run(kind) for kind in ("full", "lora")}
    if len(sys.argv) > 2:  # a checkpoint folder: 2 steps, then a new run resumes there and takes steps 3 and 4
        run("full", steps=2, checkpoint_dir=sys.argv[2])
        results["resumed"] = run("full", steps=4, checkpoint_dir=sys.argv[2])
    if torch.distributed.get_rank() == 0:
        torch.save(results, sys.argv[1])

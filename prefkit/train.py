"""One training loop for every LM method, and the pairwise forward that plugs a loss into it.

A method is a loss function (``prefkit.losses``) plus, where needed, a batch builder; there are no per-method
trainer classes. ``train(policy, loss_fn, batches, config)`` runs the loop: ``loss_fn(policy, batch)`` returns a
scalar loss and a dict of float metrics, which become one row of the history DataFrame per step.
"""

from __future__ import annotations

import inspect
import json
import math
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .logps import encode, encode_pairs, sequence_logps
from .repro import atomic_write_text

Tensor = torch.Tensor
LN2 = math.log(2.0)


def call_loss(loss: Callable, **inputs):
    """Call ``loss`` with the inputs its signature accepts; extra inputs are dropped, missing ones raise."""
    params = inspect.signature(loss).parameters
    return loss(**{k: v for k, v in inputs.items() if k in params})


def pairwise_forward(policy, reference, batch: dict[str, Tensor], loss: Callable, **hparams):
    """Log-probs of a pairwise batch (B chosen then B rejected, one forward) -> per-example losses and metrics.

    ``reference`` is a :class:`prefkit.models.Reference` (or ``None`` for reference-free losses such as SimPO).
    Returns ``(losses (B,), metrics)`` where metrics are detached floats: mean implicit rewards, margin, reward
    accuracy, and the policy's mean log-probs.
    """
    logps, lengths = sequence_logps(policy, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
    B = logps.shape[0] // 2
    inputs = {
        "policy_chosen_logps": logps[:B],
        "policy_rejected_logps": logps[B:],
        "chosen_lengths": lengths[:B],
        "rejected_lengths": lengths[B:],
    }
    if "ref_chosen_logps" in batch:  # precomputed once (Reference.precompute): the reference never changes
        inputs["ref_chosen_logps"] = batch["ref_chosen_logps"].to(logps.device)
        inputs["ref_rejected_logps"] = batch["ref_rejected_logps"].to(logps.device)
    elif reference is not None:
        ref_logps, _ = reference.logps(batch)
        inputs["ref_chosen_logps"], inputs["ref_rejected_logps"] = ref_logps[:B], ref_logps[B:]
    if "strength" in batch:  # soft labels: P(chosen > rejected) -> ε = 1 - p
        if "label_smoothing" in hparams:
            raise ValueError("the batch carries per-pair 'strength' (soft labels); do not also pass label_smoothing")
        inputs["label_smoothing"] = 1.0 - batch["strength"].to(logps.device)
    losses, chosen_r, rejected_r = call_loss(loss, **inputs, **hparams)
    metrics = {
        "loss": losses.mean().item(),
        "rewards/chosen": chosen_r.mean().item(),
        "rewards/rejected": rejected_r.mean().item(),
        "rewards/margin": (chosen_r - rejected_r).mean().item(),
        "rewards/accuracy": (chosen_r > rejected_r).float().mean().item(),
        "logps/chosen": logps[:B].mean().item(),
        "logps/rejected": logps[B:].mean().item(),
    }
    return losses, metrics


def preference_objective(loss: Callable, reference=None, **hparams) -> Callable:
    """A ``loss_fn(policy, batch) -> (scalar, metrics)`` for :func:`train` from a pairwise loss.

    The returned function carries ``initial_loss``: the loss at zero log-ratios (policy = reference), which the loop
    checks at step 0 (ln 2 for the DPO family) together with zero implicit rewards.
    """

    def loss_fn(policy, batch):
        losses, metrics = pairwise_forward(policy, reference, batch, loss, **hparams)
        return losses.mean(), metrics

    if reference is not None:
        zero = torch.zeros(1)
        inputs = {
            k: zero for k in ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
        }
        inputs.update(chosen_lengths=torch.ones(1), rejected_lengths=torch.ones(1))
        loss_fn.initial_loss = float(call_loss(loss, **inputs, **hparams)[0].mean())
    return loss_fn


def sft_objective() -> Callable:
    """Supervised fine-tuning: mean negative log-likelihood per response token."""

    def loss_fn(policy, batch):
        logps, counts = sequence_logps(policy, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
        nll = -logps.sum() / counts.sum().clamp(min=1)
        return nll, {"loss": nll.item(), "nll": nll.item()}

    return loss_fn


class StepBatches:
    """Step-indexed batches over a fixed list of rows: ``batches[step]`` is a deterministic function of the seed and
    the step, so a resumed run sees exactly the batches it would have seen. Each epoch is a fresh permutation.

    ``kind``: ``"pairwise"`` (rows with prompt/chosen/rejected, optional ``strength`` and precomputed
    ``ref_chosen_logps`` / ``ref_rejected_logps``) or ``"sft"`` (prompt/response).
    """

    def __init__(self, rows: Sequence[dict], tokenizer, batch_size: int, seed: int = 0, kind: str = "pairwise"):
        if kind not in ("pairwise", "sft"):
            raise ValueError(f"kind must be 'pairwise' or 'sft', got {kind!r}")
        if not rows:
            raise ValueError("no rows to batch")
        self.rows, self.tok, self.bs, self.seed, self.kind = list(rows), tokenizer, batch_size, seed, kind
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            idx = list(range(len(self.rows)))
            random.Random(self.seed * 100_003 + epoch).shuffle(idx)
            self._perms = {epoch: idx}
        return self._perms[epoch]

    def __getitem__(self, step: int) -> dict[str, Tensor]:
        per_epoch = max(1, len(self.rows) // self.bs)
        epoch, k = divmod(step, per_epoch)
        rows = [self.rows[i] for i in self._perm(epoch)[k * self.bs : (k + 1) * self.bs]]
        if self.kind == "sft":
            return encode(self.tok, [r["prompt"] for r in rows], [r["response"] for r in rows])
        batch = encode_pairs(self.tok, rows)
        if any("strength" in r for r in rows):
            batch["strength"] = torch.tensor([float(r.get("strength", 1.0)) for r in rows])
        for key in ("ref_chosen_logps", "ref_rejected_logps"):
            if key in rows[0]:
                batch[key] = torch.tensor([float(r[key]) for r in rows])
        return batch


@dataclass
class TrainConfig:
    steps: int = 200
    lr: float = 5e-7  # DPO paper (Rafailov et al. 2023, App. B): RMSprop, lr 1e-6; 5e-7 is TRL's default for DPO
    weight_decay: float = 0.0
    warmup_steps: int = 0  # DPO paper: 150 linear warm-up steps at its scale
    max_grad_norm: float = 1.0  # gradient clipping (TRL/HF Trainer default)
    seed: int = 0
    eval_every: int = 0  # 0: evaluate only at the end (when an eval_fn is given)
    checkpoint_dir: str | None = None  # where safetensors checkpoints go; also where a run resumes from
    checkpoint_every: int = 0  # 0: no intermediate checkpoints
    sanity_check: bool = True  # step 0: loss = loss_fn.initial_loss (ln 2 for DPO) and zero implicit rewards
    sanity_tol: float = 1e-3
    progress: bool = True
    desc: str = "train"


class SanityCheckError(RuntimeError):
    """The step-0 check failed: the policy does not start equal to its reference."""


@dataclass
class History:
    """What a run logged: one row per step (``steps``) and one per evaluation (``evals``)."""

    steps: pd.DataFrame = field(default_factory=pd.DataFrame)
    evals: pd.DataFrame = field(default_factory=pd.DataFrame)


def _check_step0(loss_fn, loss: float, metrics: dict, tol: float) -> None:
    expected = getattr(loss_fn, "initial_loss", None)
    if expected is None:
        return
    rewards = [abs(metrics.get(k, 0.0)) for k in ("rewards/chosen", "rewards/rejected")]
    if abs(loss - expected) > tol or max(rewards) > tol:
        raise SanityCheckError(
            f"step 0: loss {loss:.6f} (expected {expected:.6f} = loss at policy == reference) and rewards "
            f"{rewards} (expected 0) differ by more than {tol}: the policy does not start at its reference "
            "(wrong reference, dropout left on, or cached reference log-probs from another model?)"
        )


def _save_checkpoint(policy, optimizer, step: int, rows: list, evals: list, ckpt: Path) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    trainable = {n: p.detach().cpu().contiguous() for n, p in policy.named_parameters() if p.requires_grad}
    save_file(trainable, str(ckpt / "trainable.safetensors.tmp"))
    torch.save(optimizer.state_dict(), ckpt / "optimizer.pt.tmp")
    (ckpt / "trainable.safetensors.tmp").replace(ckpt / "trainable.safetensors")
    (ckpt / "optimizer.pt.tmp").replace(ckpt / "optimizer.pt")
    atomic_write_text(ckpt / "state.json", json.dumps({"step": step, "steps": rows, "evals": evals}, default=float))


def _load_checkpoint(policy, optimizer, ckpt: Path) -> tuple[int, list, list]:
    state = json.loads((ckpt / "state.json").read_text())
    weights = load_file(str(ckpt / "trainable.safetensors"))
    params = dict(policy.named_parameters())
    with torch.no_grad():
        for n, t in weights.items():
            params[n].copy_(t.to(params[n].device))
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    return state["step"], state["steps"], state["evals"]


def train(
    policy,
    loss_fn: Callable,
    batches,
    config: TrainConfig,
    eval_fn: Callable | None = None,
) -> History:
    """Train ``policy`` for ``config.steps`` steps of ``loss_fn(policy, batches[step])``.

    AdamW on the trainable parameters, linear warm-up, gradient clipping, seeded; runs through ``accelerate`` so that
    ``accelerate launch`` makes it data-parallel. ``eval_fn(policy, step) -> dict`` runs every ``eval_every`` steps
    and at the end. With ``checkpoint_dir`` the run saves trainable weights (safetensors), optimizer state and history,
    and resumes from them when started again.
    """
    from accelerate import Accelerator

    torch.manual_seed(config.seed)
    accelerator = Accelerator(device_placement=not getattr(policy, "is_loaded_in_4bit", False))
    params = [p for p in policy.parameters() if p.requires_grad]
    if not params:
        raise ValueError("policy has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warm = max(1, config.warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warm))
    policy, optimizer = accelerator.prepare(policy, optimizer)
    rows: list[dict] = []
    evals: list[dict] = []
    start = 0
    ckpt = Path(config.checkpoint_dir) if config.checkpoint_dir else None
    if ckpt is not None and (ckpt / "state.json").exists():
        start, rows, evals = _load_checkpoint(accelerator.unwrap_model(policy), optimizer, ckpt)
        with warnings.catch_warnings():  # fast-forwarding the schedule to the resumed step, not a training step
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(start):
                scheduler.step()
    if eval_fn is not None and config.eval_every and start == 0:
        evals.append({"step": 0, **eval_fn(accelerator.unwrap_model(policy), 0)})
    policy.train()
    t0 = time.perf_counter()
    bar = tqdm(range(start, config.steps), desc=config.desc, disable=not config.progress, leave=False)
    for step in bar:
        loss, metrics = loss_fn(policy, batches[step])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {step}: loss is {loss.item()}")
        if step == 0 and config.sanity_check:
            _check_step0(loss_fn, loss.item(), metrics, config.sanity_tol)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        rows.append(
            {
                "step": step,
                **metrics,
                "grad_norm": float(grad_norm),
                "lr": scheduler.get_last_lr()[0],
                "time": time.perf_counter() - t0,
            }
        )
        bar.set_postfix(loss=f"{metrics.get('loss', loss.item()):.4f}")
        last = step + 1 == config.steps
        if eval_fn is not None and (last or (config.eval_every and (step + 1) % config.eval_every == 0)):
            evals.append({"step": step + 1, **eval_fn(accelerator.unwrap_model(policy), step + 1)})
            policy.train()
        if ckpt is not None and (last or (config.checkpoint_every and (step + 1) % config.checkpoint_every == 0)):
            _save_checkpoint(accelerator.unwrap_model(policy), optimizer, step + 1, rows, evals, ckpt)
    return History(pd.DataFrame(rows), pd.DataFrame(evals))

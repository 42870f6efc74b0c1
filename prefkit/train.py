"""One training loop for every LM method, and the pairwise forward that plugs a loss into it.

A method is a loss function (``prefkit.losses``) plus, where needed, a batch builder; there are no per-method
trainer classes. ``train(policy, loss_fn, batches, config)`` runs the loop: ``loss_fn(policy, batch)`` returns a
scalar loss and a dict of float metrics, which become one row of the history DataFrame per step.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .logps import encode, encode_joint, encode_lists, encode_pairs, list_logps, list_step_logps, sequence_logps
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
    logps, lengths = sequence_logps(
        policy, batch["input_ids"], batch["attention_mask"], batch["response_mask"],
        pixel_values=batch.get("pixel_values"),
    )  # fmt: skip
    B = logps.shape[0] // batch.get("n_branches", 2)
    inputs = {
        "policy_chosen_logps": logps[:B],
        "policy_rejected_logps": logps[B : 2 * B],
        "chosen_lengths": lengths[:B],
        "rejected_lengths": lengths[B : 2 * B],
    }
    if batch.get("n_branches", 2) == 3:  # triples: gold responses after chosen and rejected (Triple PO)
        inputs["policy_gold_logps"], inputs["gold_lengths"] = logps[2 * B :], lengths[2 * B :]
    if "ref_chosen_logps" in batch:  # precomputed once (Reference.precompute): the reference never changes
        inputs["ref_chosen_logps"] = batch["ref_chosen_logps"].to(logps.device)
        inputs["ref_rejected_logps"] = batch["ref_rejected_logps"].to(logps.device)
    elif reference is not None:
        ref_logps, _ = reference.logps(batch)
        inputs["ref_chosen_logps"], inputs["ref_rejected_logps"] = ref_logps[:B], ref_logps[B : 2 * B]
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
        "logps/rejected": logps[B : 2 * B].mean().item(),
    }
    return losses, metrics


def is_listwise(loss: Callable) -> bool:
    """Listwise losses take (B, K) ``scores``; pairwise ones take chosen/rejected log-probs."""
    return "scores" in inspect.signature(loss).parameters


def listwise_forward(
    policy, reference, batch: dict[str, Tensor], loss: Callable, shared_prompt: bool = True, **hparams
):
    """Log-probs of a listwise batch (B prompts x K responses, see :func:`prefkit.logps.list_logps`) -> per-example
    losses and metrics: rewards of the best- and worst-scored responses, the fraction of preferred pairs the rewards
    order correctly, and ``loss/at_reference``, the same loss with the policy replaced by its reference (zero
    log-ratios), which the loop's step-0 check compares against.
    """
    if "step_ids" in batch:  # responses made of steps (tree leaves): per-step log-probs and hidden states
        step_logps, step_hidden, step_mask = list_step_logps(policy, batch, shared_prompt=shared_prompt)
        logps, lengths = step_logps.sum(-1), batch["response_mask"].sum(-1).view_as(step_mask[..., 0])
        lengths = lengths.to(logps.device)
        inputs = {"policy_step_logps": step_logps, "step_hidden": step_hidden, "step_mask": step_mask}
    else:
        logps, lengths = list_logps(policy, batch, shared_prompt=shared_prompt)  # (B, K)
        inputs = {}
    scores = batch["scores"].to(logps.device)
    inputs.update(policy_logps=logps, lengths=lengths, scores=scores)
    if "ref_logps" in batch:  # precomputed once (Reference.precompute_lists)
        inputs["ref_logps"] = batch["ref_logps"].to(logps.device)
        if "ref_step_logps" in batch:
            inputs["ref_step_logps"] = batch["ref_step_logps"].to(logps.device)
    elif reference is not None:
        if "step_ids" in batch:
            inputs["ref_step_logps"] = reference.list_step_logps(batch)
            inputs["ref_logps"] = inputs["ref_step_logps"].sum(-1)
        else:
            inputs["ref_logps"] = reference.list_logps(batch)[0]
    losses, rewards = call_loss(loss, **inputs, **hparams)
    best = scores == scores.amax(-1, keepdim=True)
    worst = scores == scores.amin(-1, keepdim=True)
    pairs = scores[:, :, None] > scores[:, None, :]
    right = (rewards[:, :, None] > rewards[:, None, :]) & pairs
    metrics = {
        "loss": losses.mean().item(),
        "rewards/best": (rewards * best).sum().item() / best.sum().item(),
        "rewards/worst": (rewards * worst).sum().item() / worst.sum().item(),
        "rewards/pair_accuracy": right.sum().item() / max(1, pairs.sum().item()),
        "logps/mean": (logps / lengths.clamp(min=1)).mean().item(),
    }
    if "ref_logps" in inputs:
        with torch.no_grad():
            at_ref = {"policy_logps": inputs["ref_logps"], "policy_step_logps": inputs.get("ref_step_logps")}
            at_ref = call_loss(loss, **{**inputs, **at_ref}, **hparams)[0]
        metrics["loss/at_reference"] = at_ref.mean().item()
    return losses, metrics


def preference_objective(loss: Callable, reference=None, shared_prompt: bool = True, **hparams) -> Callable:
    """A ``loss_fn(policy, batch) -> (scalar, metrics)`` for :func:`train` from a pairwise or listwise loss.

    For pairwise losses the returned function carries ``initial_loss``: the loss at zero log-ratios (policy =
    reference), which the loop checks at step 0 (ln 2 for the DPO family) together with zero implicit rewards.
    Listwise losses depend on the list's scores even at zero log-ratios, so their batches report the loss at the
    reference (``loss/at_reference``) and the loop checks against that. ``shared_prompt`` applies to listwise
    batches (see :func:`prefkit.logps.list_logps`).
    """
    if is_listwise(loss):

        def loss_fn(policy, batch):
            losses, metrics = listwise_forward(policy, reference, batch, loss, shared_prompt, **hparams)
            return losses.mean(), metrics

        return loss_fn

    def loss_fn(policy, batch):
        losses, metrics = pairwise_forward(policy, reference, batch, loss, **hparams)
        return losses.mean(), metrics

    if reference is not None and "ref_chosen_logps" in inspect.signature(loss).parameters:
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
        logps, counts = sequence_logps(
            policy, batch["input_ids"], batch["attention_mask"], batch["response_mask"],
            pixel_values=batch.get("pixel_values"),
        )  # fmt: skip
        nll = -logps.sum() / counts.sum().clamp(min=1)
        return nll, {"loss": nll.item(), "nll": nll.item()}

    return loss_fn


def step_ids(response_mask: Tensor, spans: Sequence[Sequence[tuple[int, int]]]) -> Tensor:
    """(N, R) step index of each response token, -1 on padding, from each response's step spans; tokens after the
    last span (the closing EOS) belong to the last step."""
    ids = torch.full(response_mask.shape, -1, dtype=torch.long)
    for i, sp in enumerate(spans):
        n = int(response_mask[i].sum())
        for s, (a, b) in enumerate(sp):
            ids[i, a:b] = s
        ids[i, sp[-1][1] : n] = len(sp) - 1
    return ids


def pad_steps(values: Sequence[Sequence[Sequence[float]]]) -> Tensor:
    """Per-row, per-response lists of per-step numbers -> (B, K, S) tensor, zero-padded to the longest."""
    S = max(len(v) for row in values for v in row)
    return torch.tensor([[list(v) + [0.0] * (S - len(v)) for v in row] for row in values], dtype=torch.float32)


class StepBatches:
    """Step-indexed batches over a fixed list of rows: ``batches[step]`` is a deterministic function of the seed and
    the step, so a resumed run sees exactly the batches it would have seen. Each epoch is a fresh permutation.

    ``kind``: ``"pairwise"`` (rows with prompt/chosen/rejected, optional ``strength``, ``gold`` (triples) and
    precomputed ``ref_chosen_logps`` / ``ref_rejected_logps``; or joint rows with prompt_chosen/prompt_rejected, whose
    prompt tokens count in the log-probs unless ``mask_prompt``), ``"listwise"`` (prompt/responses/scores, optional
    ``ref_logps``, and for multi-step responses ``step_spans`` (per response, from
    :func:`prefkit.data.step_token_spans`) with optional ``ref_step_logps``; every list in the rows must have the
    same length) or ``"sft"`` (prompt/response).

    ``extra(rows) -> dict`` adds tensors built from the batch's rows (an auxiliary task's inputs, e.g.
    :meth:`prefkit.degree.DegreeTask.batch`).

    **Length.** With ``max_length`` (else, when :func:`train` starts, the policy's context length,
    ``config.max_position_embeddings``) every sequence is fitted to ``max_length`` tokens as TRL does: a row's
    prompt is cut from the left (its first token kept when it is BOS) as far as its longest response needs, but never
    below ``keep_prompt`` tokens (default half of ``max_length``), then each response is cut from the right (losing
    its EOS). A row's responses keep one shared prompt. :meth:`fit` reports how many rows were cut; a row whose cut
    would drop a special token (e.g. an image token) from its prompt, or whose step spans would be cut, is a
    :class:`prefkit.data.PreferenceDataError`. A response keeps at least ``max_length - keep_prompt`` tokens, so none
    is left empty.
    """

    def __init__(
        self,
        rows: Sequence[dict],
        tokenizer,
        batch_size: int,
        seed: int = 0,
        kind: str = "pairwise",
        mask_prompt: bool = False,
        extra: Callable[[list[dict]], dict] | None = None,
        max_length: int | None = None,
        keep_prompt: int | None = None,
    ):
        if kind not in ("pairwise", "listwise", "sft"):
            raise ValueError(f"kind must be 'pairwise', 'listwise' or 'sft', got {kind!r}")
        if not rows:
            raise ValueError("no rows to batch")
        self.rows, self.tok, self.bs, self.seed, self.kind = list(rows), tokenizer, int(batch_size), int(seed), kind
        self.mask_prompt, self.extra = mask_prompt, extra
        self._perms: dict[int, list[int]] = {}
        self.max_length: int | None = None
        self.truncation: dict[str, int] = {}
        self.rank, self.world = 0, 1
        if max_length is not None:
            self.fit(max_length, keep_prompt)

    def _sequences(self, row: dict) -> list[tuple[str, list[tuple[str, Any]]]]:
        """A row's prompts, each with the (field, text) of the responses that share it."""
        if self.kind == "sft":
            return [("prompt", [("response", row["response"])])]
        if self.kind == "listwise":
            return [("prompt", [(f"responses[{k}]", y) for k, y in enumerate(row["responses"])])]
        if "prompt_chosen" in row:
            return [
                ("prompt_chosen", [("chosen", row["chosen"])]),
                ("prompt_rejected", [("rejected", row["rejected"])]),
            ]
        return [("prompt", [(f, row[f]) for f in ("chosen", "rejected", "gold") if f in row])]

    def _lengths(self, texts: list, special: bool, eos: int | None = None) -> list[int]:
        """Token counts of texts (strings tokenised in one call, token-id lists as they are), + 1 for an EOS that
        :func:`prefkit.logps.encode` would append where ``eos`` is given."""
        strings = [t for t in texts if isinstance(t, str)]
        ids = iter(self.tok(strings, add_special_tokens=special)["input_ids"] if strings else [])
        out = []
        for t in texts:
            t = next(ids) if isinstance(t, str) else list(t)
            out.append(len(t) + (eos is not None and (not t or t[-1] != eos)))
        return out

    def fit(self, max_length: int, keep_prompt: int | None = None, progress: bool = False) -> dict[str, int]:
        """Fit every row to ``max_length`` tokens (the policy in the class docstring) and return (and keep, as
        ``truncation``) the counts: ``rows``, ``cut`` (rows with anything cut), ``prompts_cut``,
        ``responses_cut`` (responses cut from the right)."""
        from .data import PreferenceDataError

        keep = max_length // 2 if keep_prompt is None else int(keep_prompt)
        if max_length < 2 or not 0 <= keep < max_length:
            raise ValueError(f"need max_length >= 2 and 0 <= keep_prompt < max_length, got {max_length}, {keep}")
        eos = self.tok.eos_token_id
        counts = {"rows": len(self.rows), "cut": 0, "prompts_cut": 0, "responses_cut": 0}
        groups = [(i, pf, rs) for i, row in enumerate(self.rows) for pf, rs in self._sequences(row)]
        p_len = self._lengths([self.rows[i][pf] for i, pf, _ in groups], special=True)
        r_len = iter(self._lengths([y for *_, rs in groups for _, y in rs], special=False, eos=eos))
        rows, cut_rows = list(self.rows), set()
        for (i, prompt_field, responses), n_p in zip(tqdm(groups, desc="fit lengths", disable=not progress,
                                                          leave=False), p_len):  # fmt: skip
            lengths = [next(r_len) for _ in responses]
            longest = max(lengths)
            if n_p + longest <= max_length:
                continue
            if "step_spans" in rows[i]:
                raise PreferenceDataError(i, responses[lengths.index(longest)][0], f"is {longest} tokens after a "
                                          f"{n_p}-token prompt, over max_length {max_length}, and its step spans "
                                          "cannot be cut: shorten it or raise max_length")  # fmt: skip
            cut_rows.add(i)
            n_prompt = min(n_p, max(keep, max_length - longest))  # < max_length: every response keeps a token
            if n_prompt < n_p:
                rows[i] = {**rows[i], prompt_field: self._cut_prompt(rows[i], i, prompt_field, n_prompt, max_length)}
                counts["prompts_cut"] += 1
            counts["responses_cut"] += sum(n > max_length - n_prompt for n in lengths)
        counts["cut"] = len(cut_rows)
        self.rows, self.max_length, self.truncation = rows, int(max_length), counts
        if counts["cut"]:
            tqdm.write(f"{counts['cut']} of {counts['rows']} rows longer than {max_length} tokens were cut: "
                       f"{counts['prompts_cut']} prompts from the left, {counts['responses_cut']} responses from "
                       "the right")  # fmt: skip
        return counts

    def _cut_prompt(self, row: dict, i: int, prompt_field: str, n_prompt: int, max_length: int) -> list[int]:
        """Row ``i``'s prompt as token ids cut from the left to ``n_prompt`` tokens, its BOS kept in front."""
        from .data import PreferenceDataError
        from .logps import _ids

        bos, special = self.tok.bos_token_id, set(self.tok.all_special_ids) - {self.tok.bos_token_id}
        p = _ids(self.tok, row[prompt_field], special=True)
        head = p[:1] if bos is not None and p[:1] == [bos] else []
        tail = max(0, n_prompt - len(head))
        kept, dropped = head[:n_prompt] + p[len(p) - tail :], p[len(head) : len(p) - tail]
        lost = sorted({t for t in dropped if t in special})
        if lost:
            raise PreferenceDataError(i, prompt_field, f"would lose special tokens {lost} when cut to {n_prompt} "
                                      f"tokens to fit max_length {max_length}: raise max_length or shorten the "
                                      "prompt")  # fmt: skip
        return kept

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            idx = list(range(len(self.rows)))
            random.Random(self.seed * 100_003 + epoch).shuffle(idx)
            self._perms = {epoch: idx}
        return self._perms[epoch]

    def shard(self, rank: int, world: int) -> None:
        """From now on ``batches[step]`` is process ``rank``'s share of the step's batch: its ``batch_size / world``
        consecutive rows (data-parallel training, :func:`train`)."""
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"need 0 <= rank < world, got rank {rank}, world {world}")
        if self.bs % world:
            raise ValueError(f"batch_size {self.bs} does not divide by {world} processes: each must get the same "
                             "number of rows for their averaged gradients to be the full batch's")  # fmt: skip
        self.rank, self.world = int(rank), int(world)

    def __getitem__(self, step: int) -> dict[str, Tensor]:
        per_epoch = max(1, len(self.rows) // self.bs)
        epoch, k = divmod(step, per_epoch)
        rows = [self.rows[i] for i in self._perm(epoch)[k * self.bs : (k + 1) * self.bs]]
        if self.world > 1:
            n = len(rows) // self.world
            rows = rows[self.rank * n : (self.rank + 1) * n]
        batch = self._encode(rows)
        if self.extra is not None:
            batch.update(self.extra(rows))
        return batch

    def _encode(self, rows: list[dict]) -> dict[str, Tensor]:
        n = self.max_length
        if self.kind == "sft":
            return encode(self.tok, [r["prompt"] for r in rows], [r["response"] for r in rows], n)
        if self.kind == "listwise":
            batch = encode_lists(self.tok, [r["prompt"] for r in rows], [r["responses"] for r in rows], n)
            batch["scores"] = torch.tensor([[float(x) for x in r["scores"]] for r in rows])
            if "ref_logps" in rows[0]:
                batch["ref_logps"] = torch.tensor([[float(x) for x in r["ref_logps"]] for r in rows])
            if "step_spans" in rows[0]:
                batch["step_ids"] = step_ids(batch["response_mask"], [sp for r in rows for sp in r["step_spans"]])
                if "ref_step_logps" in rows[0]:
                    batch["ref_step_logps"] = pad_steps([r["ref_step_logps"] for r in rows])
            return batch
        if "prompt_chosen" in rows[0]:  # joint rows (DOVE): the prompts are scored too unless mask_prompt
            batch = encode_joint(self.tok, rows, mask_prompt=self.mask_prompt, max_length=n)
        elif "gold" in rows[0]:  # triples (Triple PO): chosen, rejected, then gold, in one forward
            prompts = [r["prompt"] for r in rows]
            batch = encode(self.tok, prompts * 3, [r[k] for k in ("chosen", "rejected", "gold") for r in rows], n)
            batch["n_branches"] = 3
        else:
            batch = encode_pairs(self.tok, rows, n)
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
    schedule: str = "constant"  # after warm-up: "constant" (DPO paper), "linear" or "cosine" decay to 0 at `steps`
    max_grad_norm: float = 1.0  # gradient clipping (TRL/HF Trainer default)
    seed: int = 0
    eval_every: int = 0  # 0: evaluate only at the end (when an eval_fn is given)
    checkpoint_dir: str | None = None  # where safetensors checkpoints go; also where a run resumes from
    checkpoint_every: int = 0  # 0: no intermediate checkpoints
    sanity_check: bool = True  # step 0: loss = loss_fn.initial_loss (ln 2 for DPO) and zero implicit rewards
    sanity_tol: float = 1e-3
    progress: bool = True
    desc: str = "train"


def lr_factor(config: TrainConfig) -> Callable[[int], float]:
    """The learning-rate multiplier at each step: linear warm-up to 1, then ``config.schedule``."""
    if config.schedule not in ("constant", "linear", "cosine"):
        raise ValueError(f"schedule must be 'constant', 'linear' or 'cosine', got {config.schedule!r}")
    warm = max(1, config.warmup_steps)

    def factor(step: int) -> float:
        if step + 1 < warm or config.schedule == "constant":
            return min(1.0, (step + 1) / warm)
        done = min(1.0, (step + 1 - warm) / (config.steps - warm + 1))  # 0 at the end of warm-up, < 1 at the last step
        return 1.0 - done if config.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * done))

    return factor


class SanityCheckError(RuntimeError):
    """The step-0 check failed: the policy does not start equal to its reference."""


@dataclass
class History:
    """What a run logged: one row per step (``steps``) and one per evaluation (``evals``)."""

    steps: pd.DataFrame = field(default_factory=pd.DataFrame)
    evals: pd.DataFrame = field(default_factory=pd.DataFrame)


def _check_step0(loss_fn, loss: float, metrics: dict, tol: float) -> None:
    expected = metrics.get("loss/at_reference", getattr(loss_fn, "initial_loss", None))
    if expected is None:
        return
    keys = ("rewards/chosen", "rewards/rejected", "rewards/best", "rewards/worst")
    rewards = [abs(metrics[k]) for k in keys if k in metrics]
    if abs(loss - expected) > tol or max(rewards, default=0.0) > tol:
        raise SanityCheckError(
            f"step 0: loss {loss:.6f} (expected {expected:.6f} = loss at policy == reference) and rewards "
            f"{rewards} (expected 0) differ by more than {tol}: the policy does not start at its reference "
            "(wrong reference, dropout left on, or cached reference log-probs from another model?)"
        )


def _named_trainable(policy, modules: Sequence[torch.nn.Module]) -> dict[str, Tensor]:
    """The policy's trainable parameters and those of the objective's own modules (``aux.{i}.{name}``)."""
    named = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    for i, m in enumerate(modules):
        named.update({f"aux.{i}.{n}": p for n, p in m.named_parameters()})
    return named


def _checkpoint_state(policy, modules, optimizer, sharded: bool) -> tuple[dict, dict]:
    """The trainable weights (by name, on the CPU) and the optimizer state, whole. Under FSDP every process must
    call this (the pieces are gathered) and only the main process gets them (others get empty dicts)."""
    if not sharded:
        trainable = {n: p.detach().cpu().contiguous() for n, p in _named_trainable(policy, modules).items()}
        return trainable, optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    whole = StateDictOptions(full_state_dict=True, cpu_offload=True)
    names = set(_named_trainable(policy, modules))
    weights = {n: t.contiguous() for n, t in get_model_state_dict(policy, options=whole).items() if n in names}
    return weights, get_optimizer_state_dict(policy, optimizer, options=whole)


def _save_checkpoint(state: tuple[dict, dict], step: int, rows: list, evals: list, ckpt: Path, sharded: bool) -> None:
    """Write the checkpoint of ``step`` (``state`` from :func:`_checkpoint_state`) as one folder, ``ckpt/step-<N>``,
    then point ``ckpt/latest`` at it (one atomic rename): a kill at any moment leaves ``latest`` naming a complete
    checkpoint (the previous one, or this one), never new weights with an old step count. Older checkpoint folders
    are then removed."""
    ckpt.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    tmp = ckpt / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    trainable, optimizer_state = state
    save_file(trainable, str(tmp / "trainable.safetensors"))
    torch.save(optimizer_state, tmp / "optimizer.pt")
    record = {"step": step, "sharded": sharded, "steps": rows, "evals": evals}
    (tmp / "state.json").write_text(json.dumps(record, default=float))
    shutil.rmtree(ckpt / name, ignore_errors=True)  # the same step saved again (a finished run started again)
    tmp.replace(ckpt / name)
    atomic_write_text(ckpt / "latest", name + "\n")
    for old in [*ckpt.glob("step-*"), *ckpt.glob(".step-*.tmp")]:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    for old in ("trainable.safetensors", "optimizer.pt", "state.json"):  # a checkpoint of the earlier layout
        (ckpt / old).unlink(missing_ok=True)


def _checkpoint(ckpt: Path) -> Path | None:
    """The folder of the checkpoint to resume from: the one ``ckpt/latest`` names (or ``ckpt`` itself, holding a
    checkpoint of the earlier layout), or None."""
    if (ckpt / "latest").exists():
        return ckpt / (ckpt / "latest").read_text().strip()
    return ckpt if (ckpt / "state.json").exists() else None


def _load_checkpoint(policy, modules, optimizer, ckpt: Path, sharded: bool) -> tuple[int, list, list]:
    """Restore weights and optimizer state from ``ckpt``; every process reads it (under FSDP each keeps its part)."""
    state = json.loads((ckpt / "state.json").read_text())
    if state.get("sharded", False) != sharded:
        saved, now = ("with", "without") if state.get("sharded") else ("without", "with")
        raise ValueError(f"{ckpt} was saved {saved} FSDP and this run is {now} it: resume it the way it was started "
                         "(its optimizer state is keyed differently)")  # fmt: skip
    weights = load_file(str(ckpt / "trainable.safetensors"))
    optimizer_state = torch.load(ckpt / "optimizer.pt", weights_only=True)
    if sharded:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        whole = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(policy, weights, options=whole)
        set_optimizer_state_dict(policy, optimizer, optimizer_state, options=whole)
    else:
        params = _named_trainable(policy, modules)
        with torch.no_grad():
            for n, t in weights.items():
                params[n].copy_(t.to(params[n].device))
        optimizer.load_state_dict(optimizer_state)
    return state["step"], state["steps"], state["evals"]


def _process_group(policy) -> tuple[int, int]:
    """(rank, number of processes) of a data-parallel run started by ``accelerate launch`` or ``torchrun`` (their
    environment: ``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``, ...); (0, 1) otherwise. Joins the process group (NCCL
    for a policy on a GPU, which should be the process's own GPU, ``cuda:LOCAL_RANK``; gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        on_gpu = next(policy.parameters()).device.type == "cuda"
        dist.init_process_group(backend="nccl" if on_gpu else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _wants_fsdp() -> bool:
    """Whether the launcher asked for sharded parameters: ``accelerate launch --use_fsdp`` (or an FSDP config) sets
    ``ACCELERATE_USE_FSDP``; under ``torchrun``, set ``PREFKIT_FSDP=1``."""
    flags = (os.environ.get("ACCELERATE_USE_FSDP", ""), os.environ.get("PREFKIT_FSDP", ""))
    return any(f.lower() in ("1", "true") for f in flags)


def _shard_parameters(policy, modules: Sequence[torch.nn.Module]) -> None:
    """FSDP (PyTorch's ``fully_shard``): every transformer block (the classes the model lists in
    ``_no_split_modules``) and then the whole model become one unit each, whose parameters, gradients and optimizer
    state are split across the processes and gathered only while the unit runs. Gradients come back averaged."""
    from torch.distributed.fsdp import fully_shard

    from .models import is_peft

    if any(type(p).__name__ == "Params4bit" for p in policy.parameters()):
        raise NotImplementedError("FSDP with a 4-bit (bitsandbytes) model is not supported: its packed weights cannot "
                                  "be split; a 4-bit model usually fits one GPU, so launch without FSDP")  # fmt: skip
    if modules:
        raise NotImplementedError(f"FSDP with an objective that trains modules of its own "
                                  f"({', '.join(type(m).__name__ for m in modules)}) is not supported; "
                                  "launch without FSDP")  # fmt: skip
    base = policy.get_base_model() if is_peft(policy) else policy
    blocks = set(getattr(base, "_no_split_modules", None) or ())
    for m in policy.modules():
        if type(m).__name__ in blocks:
            fully_shard(m)
    # prefkit's log-probs call the decoder and the LM head directly (not the model's forward): each is a unit of its
    # own, or one unit together when they share the embedding matrix
    decoder, head = policy.get_decoder(), policy.get_output_embeddings()
    tied = any(p is q for p in head.parameters() for q in decoder.parameters())
    for unit in [[decoder, head]] if tied else [decoder, head]:
        fully_shard(unit)
    fully_shard(policy)


def _clip_gradients(params: list, max_norm: float) -> Tensor:
    """``clip_grad_norm_`` for parameters split across processes (FSDP): each process's norm of its own pieces,
    summed in squares over the processes, so every process scales by the same global norm."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    local = [g.to_local() if isinstance(g, DTensor) else g for g in grads]
    sq = torch.stack([g.detach().float().pow(2).sum() for g in local]).sum() if local else torch.zeros(())
    torch.distributed.all_reduce(sq)
    norm = sq.sqrt()
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    for g in local:
        g.mul_(scale.to(g.dtype))
    return norm


def _average_gradients(params: list, world: int) -> None:
    """Replace every gradient by its mean over the processes: one all-reduce of all gradients, flattened (a
    parameter without a gradient on some process counts as 0 there), as DDP averages them."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world
    for p, chunk in zip(params, flat.split([g.numel() for g in grads])):
        p.grad = chunk.view_as(p).to(p.dtype).clone()


def _average_metrics(metrics: dict, world: int, device) -> dict:
    """The step's numeric metrics averaged over the processes (each computed them on its own shard)."""
    keys = [k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not keys:
        return metrics
    values = torch.tensor([float(metrics[k]) for k in keys], device=device, dtype=torch.float64)
    torch.distributed.all_reduce(values)
    return {**metrics, **dict(zip(keys, (values / world).tolist()))}


def _log_eval(desc: str, row: dict) -> None:
    """Append an evaluation row to the JSON-lines file named by ``PREFKIT_EVAL_LOG``, if set: the notebook tests set
    it to check invariants of every evaluated arm (KL 0 at step 0, rates in [0, 1], finite metrics)."""
    path = os.environ.get("PREFKIT_EVAL_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"desc": desc, **row}, default=str) + "\n")


def train(
    policy,
    loss_fn: Callable,
    batches,
    config: TrainConfig,
    eval_fn: Callable | None = None,
) -> History:
    """Train ``policy`` for ``config.steps`` steps of ``loss_fn(policy, batches[step])``.

    AdamW on the trainable parameters, linear warm-up, gradient clipping, seeded. ``eval_fn(policy, step) -> dict``
    runs every ``eval_every`` steps and at the end. With ``checkpoint_dir`` the run saves trainable weights
    (safetensors), optimizer state and history, and resumes from them when started again.

    **Data-parallel.** Started by ``accelerate launch`` (or ``torchrun``) with N processes, each process trains on its
    own 1/N of every step's batch (:meth:`StepBatches.shard`; the batch size must divide by N) and the gradients are
    averaged across processes before clipping and the optimizer step, as DDP does, so every process holds the same
    weights and N processes of B/N rows take the step that one process of B rows takes (exactly so for losses that
    average over rows; a per-token mean such as SFT's becomes a mean of per-process means). The logged metrics are
    averaged over the processes; evaluation and checkpoints run on the main process only. Each process places its
    model itself (on a GPU box, ``cuda:LOCAL_RANK``); the model is trained where it is.

    **FSDP.** Launched with ``accelerate launch --use_fsdp`` (or torchrun with ``PREFKIT_FSDP=1``), the policy's
    parameters, gradients and optimizer state are also split across the processes (PyTorch's ``fully_shard``, one
    unit per transformer block), for a model whose training state does not fit one GPU. The steps are the same as
    above. Every process then runs ``eval_fn`` (each holds only a part of the model, so forward passes need all of
    them: ``eval_fn`` must make the same calls on every process, as seeded code does), and checkpoints are gathered to
    the main process. Not with 4-bit models or objectives that train modules of their own. A ``Reference`` in
    ``copy`` mode stays a whole copy on every process; with LoRA, ``adapters_off`` shares the sharded model.
    """
    torch.manual_seed(config.seed)
    rank, world = _process_group(policy)
    if world > 1:
        if not isinstance(batches, StepBatches):
            raise ValueError(f"data-parallel training ({world} processes) needs StepBatches, which shard each step's "
                             f"batch across the processes; got {type(batches).__name__}")  # fmt: skip
        batches.shard(rank, world)
    modules = list(getattr(loss_fn, "modules", ()))  # trainable parts of the objective itself (an auxiliary head)
    sharded = world > 1 and _wants_fsdp()
    if sharded:
        _shard_parameters(policy, modules)
    params = [p for p in policy.parameters() if p.requires_grad] + [p for m in modules for p in m.parameters()]
    if not params:
        raise ValueError("policy has no trainable parameters")
    half = sorted({n for n, p in policy.named_parameters() if p.requires_grad and p.dtype == torch.float16})
    if half:
        raise ValueError(f"{len(half)} trainable parameters are float16 (e.g. {half[0]}): fp16 weights without loss "
                         "scaling overflow or underflow within a step (the loss turns nan). Load the model in "
                         "float32 or bfloat16 (e.g. model.to(torch.bfloat16))")  # fmt: skip
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config))
    context = getattr(getattr(policy, "config", None), "max_position_embeddings", None)
    if isinstance(batches, StepBatches) and batches.max_length is None and isinstance(context, int):
        batches.fit(context)  # the length policy at the policy's context length (see StepBatches)
    rows: list[dict] = []
    evals: list[dict] = []
    start = 0
    ckpt = Path(config.checkpoint_dir) if config.checkpoint_dir else None
    if ckpt is not None and _checkpoint(ckpt) is not None:
        start, rows, evals = _load_checkpoint(policy, modules, optimizer, _checkpoint(ckpt), sharded)
        with warnings.catch_warnings():  # fast-forwarding the schedule to the resumed step, not a training step
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(start):
                scheduler.step()
    main = rank == 0
    evaluates = main or sharded  # under FSDP every process runs the model's forward passes (each holds a part)
    if eval_fn is not None and config.eval_every and start == 0 and evaluates:
        row = {"step": 0, **eval_fn(policy, 0)}
        if main:
            evals.append(row)
            _log_eval(config.desc, row)
    policy.train()
    t0 = time.perf_counter()
    bar = tqdm(range(start, config.steps), desc=config.desc, disable=not (config.progress and main), leave=False)
    for step in bar:
        loss, metrics = loss_fn(policy, batches[step])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {step}: loss is {loss.item()}")
        if step == 0 and config.sanity_check:
            _check_step0(loss_fn, metrics.get("loss", loss.item()), metrics, config.sanity_tol)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:
            if not sharded:  # FSDP has averaged them already, while reducing each unit's gradients to its owners
                _average_gradients(params, world)
            metrics = _average_metrics(metrics, world, loss.device)
        if sharded:
            grad_norm = _clip_gradients(params, config.max_grad_norm)
        else:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        lr = scheduler.get_last_lr()[0]  # the rate this step uses; after scheduler.step() it is the next step's
        optimizer.step()
        scheduler.step()
        rows.append(
            {
                "step": step,
                **metrics,
                "grad_norm": float(grad_norm),
                "lr": lr,
                "time": time.perf_counter() - t0,
            }
        )
        bar.set_postfix(loss=f"{metrics.get('loss', loss.item()):.4f}")
        last = step + 1 == config.steps
        if evaluates and eval_fn is not None and (last or (config.eval_every and (step + 1) % config.eval_every == 0)):
            row = {"step": step + 1, **eval_fn(policy, step + 1)}
            if main:
                evals.append(row)
                _log_eval(config.desc, row)
            policy.train()
        if ckpt is not None and (last or (config.checkpoint_every and (step + 1) % config.checkpoint_every == 0)):
            state = _checkpoint_state(policy, modules, optimizer, sharded)  # gathered from every process under FSDP
            if main:
                _save_checkpoint(state, step + 1, rows, evals, ckpt, sharded)
            if world > 1:
                torch.distributed.barrier()  # no process resumes from a checkpoint still being written
    return History(pd.DataFrame(rows), pd.DataFrame(evals))

"""DPO training step: prefkit vs TRL's DPOTrainer on the same model and the same data, in one run.

For two settings, (a) the full-precision model and (b) the model in 4-bit NF4 with LoRA adapters, it times DPO
training steps on each side and reports tokens/s, peak memory and the ratios prefkit / TRL:

- prefkit: ``pairwise_forward`` (one forward for chosen + rejected, chunked LM head on response positions only) ->
  ``losses.mean().backward()`` -> gradient clipping at 1.0 -> fused AdamW step. The reference is a frozen copy of the
  policy (full) or the same 4-bit base with its adapters disabled (QLoRA). With ``--autocast`` a third side runs the
  same step under bf16 autocast, as TRL does on CUDA (``bf16=True``).
- TRL: ``DPOTrainer.train()`` on the same model (full: the same ``load_lm`` call, and TRL loads its reference from the
  saved folder; QLoRA: the very same ``load_lm(..., quantize="4bit", lora=...)`` PEFT model with ``ref_model=None``),
  with TRL's own dataset processing and collator, the same β, learning rate, clipping and optimizer (fused AdamW, TRL's
  default), and a sequential sampler so that step i sees the same pairs on both sides. A callback times
  ``on_step_begin`` -> ``on_step_end`` (forward, backward, clipping, optimizer, scheduler).

Each (setting, side) runs in its own subprocess, so peak memory is that run's alone: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the peak resident set size (VmHWM, reset just before the first step where
the kernel allows it). "Step memory" is the peak minus what was held just before the first step (weights, libraries),
i.e. what training adds: activations, gradients, optimizer state. Warm-up steps are run but not timed. Tokens are the
non-pad tokens of the chosen + rejected sequences of a step, counted on prefkit's encoding and checked against TRL's
own count (a mismatch would mean the two sides tokenised differently, and the run fails).

The models are built from configs with random weights and saved to a temporary folder (nothing is downloaded); the
data are random word sequences for a word-level tokenizer of the model's vocabulary size. Usage::

    python bench/bench_dpo.py                            # CPU: Llama, 32k vocab, 8 pairs x 128 tokens
    python bench/bench_dpo.py --device cuda --autocast   # Qwen2.5-0.5B-shaped, bf16, 8 pairs x 512 tokens
    python bench/bench_dpo.py --quick                    # tiny model, all runs in this process: a smoke check

Results: ``bench/results/dpo_<device>.json`` and ``dpo_<device>.md`` (``--quick`` writes to a temporary folder).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never reach for the Hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SETTINGS = ("full", "qlora")
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
GIB = 2**30


@dataclass
class Shape:
    """The benchmarked model and batch. ``arch`` is a transformers model type (llama or qwen2)."""

    arch: str
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    tie_word_embeddings: bool
    pairs: int  # preference pairs per step (B); 2B sequences go through the model
    seq_len: int  # longest prompt + completion, in tokens
    dtype: str  # weights dtype for the full-precision setting


SHAPES = {
    # CPU: a realistic vocabulary so that the LM head's cost shows (it dominates at this width), small enough that the
    # four runs fit in a few minutes on 2 cores. bitsandbytes' CPU kernels need widths divisible by 32.
    "cpu": Shape("llama", 32000, 128, 4, 4, 4, 352, False, pairs=8, seq_len=128, dtype="float32"),
    # CUDA: the shape of Qwen2.5-0.5B (vocab 151936, tied embeddings), where TRL was measured at ~21-25k tokens/s and
    # 17.7 GiB on an H200 with NF4 + LoRA r16.
    "cuda": Shape("qwen2", 151936, 896, 24, 14, 2, 4864, True, pairs=8, seq_len=512, dtype="bfloat16"),
}
QUICK = {  # smoke-check sizes, same architecture as the device's real run
    "cpu": Shape("llama", 1000, 64, 2, 4, 4, 128, False, pairs=4, seq_len=32, dtype="float32"),
    "cuda": Shape("qwen2", 1000, 64, 2, 4, 2, 128, True, pairs=4, seq_len=32, dtype="bfloat16"),
}
BETA = 0.1  # DPO's β (Rafailov et al. 2023), TRL's default
LR = 1e-6  # TRL's default learning rate; the same on both sides
LORA_R, LORA_ALPHA = 16, 32


# ----------------------------------------------------------------------------------------------------------------------
# Model, tokenizer and data


def build_tokenizer(vocab_size: int):
    """A word-level tokenizer: special tokens + words w0, w1, ...; BOS prepended, split on whitespace."""
    from prefkit.worlds import word_tokenizer

    return word_tokenizer([f"w{i}" for i in range(vocab_size - len(SPECIALS))])


def build_model(shape: Shape, tok, seed: int = 0):
    """Random-init causal LM of the given shape (never downloaded)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[shape.arch]
    extra = {"rope_theta": 1e6, "rms_norm_eps": 1e-6} if shape.arch == "qwen2" else {}
    cfg = cls(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        intermediate_size=shape.intermediate_size,
        tie_word_embeddings=shape.tie_word_embeddings,
        max_position_embeddings=max(2048, shape.seq_len),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        **extra,
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, shape.dtype))


def make_rows(shape: Shape, n: int, seed: int = 0) -> list[dict]:
    """n preference rows of random words. With BOS and EOS, prompt + completion <= seq_len tokens; lengths vary, so
    batches have padding. Completions start with a space: TRL concatenates prompt + completion as strings."""
    rng = random.Random(seed)
    n_words = shape.vocab_size - len(SPECIALS)

    def words(k: int) -> str:
        return " ".join(f"w{rng.randrange(n_words)}" for _ in range(k))

    rows = []
    for _ in range(n):
        p = rng.randint(shape.seq_len // 4, shape.seq_len // 2 - 1)  # prompt words (+ BOS)
        room = shape.seq_len - p - 2  # completion words (+ EOS) that still fit
        c, r = rng.randint(room // 2, room), rng.randint(room // 2, room)
        rows.append({"prompt": words(p), "chosen": " " + words(c), "rejected": " " + words(r)})
    return rows


# ----------------------------------------------------------------------------------------------------------------------
# Measurement helpers (worker)


class Meter:
    """Peak memory over a window: CUDA allocator peak, or the CPU resident set's high-water mark."""

    def __init__(self, device):
        import torch

        self.torch, self.device = torch, device
        self.cuda = device.type == "cuda"

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def start(self):
        self.sync()
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = self.torch.cuda.memory_allocated(self.device)
            self.hwm_reset = True
            return
        self.baseline = _proc_status("VmRSS")
        try:  # "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False  # the peak then also covers model loading

    def stop(self) -> dict:
        self.sync()
        if self.cuda:
            peak = self.torch.cuda.max_memory_allocated(self.device)
            extra = {"peak_reserved_gib": self.torch.cuda.max_memory_reserved(self.device) / GIB}
        else:
            peak = _proc_status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            extra = {}
        return {
            "peak_mem_gib": peak / GIB,
            "step_mem_gib": (peak - self.baseline) / GIB,
            "peak_window_reset": self.hwm_reset,
            **extra,
        }


def _proc_status(field: str) -> int:
    """A memory field of /proc/self/status in bytes (0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _summary(times: list[float], tokens: list[int], losses: list[float], warmup: int) -> dict:
    """Throughput over the timed steps: the median of per-step throughputs, and the best step's, which is what the code
    does when nothing else competes for the machine (other processes only ever slow a step down)."""
    timed, timed_tokens = times[warmup:], tokens[warmup:]
    per_step = [n / t for n, t in zip(timed_tokens, timed)]
    return {
        "tokens_per_s": statistics.median(per_step),
        "tokens_per_s_best": max(per_step),
        "tokens_per_s_mean": sum(timed_tokens) / sum(timed),
        "step_s_median": statistics.median(timed),
        "step_s_all": times,
        "tokens_per_step": tokens,
        "losses": losses,
    }


# ----------------------------------------------------------------------------------------------------------------------
# One (setting, side) run


def run_worker(job: dict) -> dict:
    import torch

    from prefkit.models import LoraSpec, load_lm, trainable_params

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    device = torch.device(job["device"])
    rows = json.loads(Path(job["data"]).read_text())
    qlora = job["setting"] == "qlora"
    lora = LoraSpec(r=LORA_R, alpha=LORA_ALPHA) if qlora else None
    load_avg = os.getloadavg()[0]
    if job["side"] == "trl+peft_config":  # TRL's own QLoRA path: a plain 4-bit model, TRL wraps it
        lora = None
    model, _ = load_lm(job["model_dir"], quantize="4bit" if qlora else None, lora=lora, device=job["device"])
    # The word-level tokenizer is rebuilt rather than loaded: transformers 5 loads a folder whose config says qwen2 with
    # Qwen2Tokenizer, which re-creates a byte-level BPE from the vocabulary and maps every word to <unk>.
    tok = build_tokenizer(model.config.vocab_size)
    model.train()
    if job["grad_ckpt"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if qlora:
            model.enable_input_require_grads()
    info = {"trainable_params": sum(p.numel() for p in trainable_params(model))}
    run = _run_trl if job["side"].startswith("trl") else _run_prefkit
    out = run(model, tok, rows, job, Meter(device), device)
    return {**info, **out, "load_avg_1min": [load_avg, os.getloadavg()[0]]}


def _run_prefkit(model, tok, rows, job, meter, device) -> dict:
    import contextlib

    import torch

    from prefkit.logps import encode_pairs
    from prefkit.losses import get_loss
    from prefkit.models import Reference, trainable_params
    from prefkit.train import pairwise_forward

    B, n_steps = job["pairs"], job["warmup"] + job["steps"]
    reference = Reference(model, mode="adapters_off" if job["setting"] == "qlora" else "copy")
    batches = [encode_pairs(tok, rows[i * B : (i + 1) * B]) for i in range(n_steps)]
    params = trainable_params(model)
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0, fused=True)  # TRL's default: adamw_torch_fused, wd 0
    dpo = get_loss("dpo")
    autocast = job["side"] == "prefkit+autocast"  # bf16 autocast, as TRL runs with bf16=True on CUDA
    times, tokens, losses = [], [], []
    meter.start()
    for batch in batches:
        meter.sync()
        t0 = time.perf_counter()
        ctx = torch.autocast(device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with ctx:
            step_losses, metrics = pairwise_forward(model, reference, batch, loss=dpo, beta=BETA)
        step_losses.mean().backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)  # TRL's default max_grad_norm
        opt.step()
        opt.zero_grad(set_to_none=True)
        meter.sync()
        times.append(time.perf_counter() - t0)
        tokens.append(int(batch["attention_mask"].sum()))
        losses.append(metrics["loss"])
    return {**_summary(times, tokens, losses, job["warmup"]), **meter.stop()}


def _run_trl(model, tok, rows, job, meter, device) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    n_steps = job["warmup"] + job["steps"]

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            meter.sync()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            meter.sync()
            self.times.append(time.perf_counter() - self.t0)

    class Trainer(DPOTrainer):
        """DPOTrainer that keeps each step's loss (TRL logs only averages); detached, so no extra sync."""

        def training_step(self, *args, **kwargs):
            loss = super().training_step(*args, **kwargs)
            self.step_losses.append(loss.detach())
            return loss

    args = DPOConfig(
        output_dir=str(Path(job["tmp"]) / f"trl_{job['setting']}"),
        loss_type=["sigmoid"],
        beta=BETA,
        learning_rate=LR,
        lr_scheduler_type="constant",
        max_steps=n_steps,
        per_device_train_batch_size=job["pairs"],
        train_sampling_strategy="sequential",  # step i sees rows[iB:(i+1)B], as on prefkit's side
        max_length=None,
        bf16=device.type == "cuda",
        activation_checkpointing=job["grad_ckpt"],  # TRL's default is on; off by default here, like prefkit
        use_cpu=device.type == "cpu",
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    peft_config = None
    if job["side"] == "trl+peft_config":
        # How TRL's docs set up QLoRA: the 4-bit model without prefkit's prepare_model_for_kbit_training (which keeps
        # norms, embeddings and the LM head in fp32), wrapped by TRL; π_ref is then the model with adapters disabled.
        peft_config = LoraConfig(
            r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    timer = StepTimer()
    trainer = Trainer(
        model=model,
        # full: TRL loads its reference from the saved folder (the policy's name_or_path). QLoRA: TRL 1.16 sees a PEFT
        # model and adds a frozen "ref" adapter copied from the fresh one (B = 0), so π_ref is the base model.
        ref_model=None,
        args=args,
        train_dataset=Dataset.from_list(rows[: job["pairs"] * n_steps]),
        processing_class=tok,
        callbacks=[timer],
        peft_config=peft_config,
    )
    trainer.step_losses = []
    meter.start()
    trainer.train()
    mem = meter.stop()
    tokens = job["tokens_per_step"]
    if trainer._total_train_tokens != sum(tokens):  # TRL counts attention-mask tokens of every batch it trained on
        raise RuntimeError(f"TRL saw {trainer._total_train_tokens} tokens, prefkit {sum(tokens)}: tokenisation differs")
    losses = [float(x) for x in trainer.step_losses]
    return {**_summary(timer.times, tokens, losses, job["warmup"]), **mem}


# ----------------------------------------------------------------------------------------------------------------------
# Orchestration (parent)


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def _git_commit() -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "prefkit"], cwd=ROOT, capture_output=True, text=True
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def _device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"


def _write_atomic(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        f.write(text)
    os.chmod(f.name, 0o644)  # a temporary file is created 0600
    os.replace(f.name, path)


def markdown(res: dict) -> str:
    d, m, v = res["data"], res["model"], res["versions"]
    lines = [
        f"# DPO training step: prefkit vs TRL ({res['device']})",
        "",
        f"{res['device_name']}. {m['arch']}, {m['n_params'] / 1e6:.1f}M parameters (vocab {m['vocab_size']}, hidden "
        f"{m['hidden_size']}, {m['num_hidden_layers']} layers), {m['dtype']}; {d['pairs']} pairs/step, sequences up "
        f"to {d['seq_len']} tokens, {d['tokens_per_step_mean']:.0f} non-pad tokens/step on average; {d['steps']} timed "
        f"steps after {d['warmup']} warm-up; {res['threads'] or 'default'} CPU thread(s); activation checkpointing {'on' if res['grad_ckpt'] else 'off'}; "
        f"{'one process per run' if res['isolated_processes'] else 'all runs in one process (--quick)'}.",
        f"torch {v['torch']}, transformers {v['transformers']}, trl {v['trl']}, peft {v['peft']}, bitsandbytes "
        f"{v['bitsandbytes']}; prefkit {res['prefkit_commit']}; {res['date']}.",
        "",
        "| setting | side | tokens/s | tokens/s, best step | step (s) | peak memory (GiB) | step memory (GiB) | "
        "loss, first step | loss, last step |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["runs"]:
        lines.append(
            f"| {r['setting']} | {r['side']} | {r['tokens_per_s']:,.0f} | {r['tokens_per_s_best']:,.0f} | "
            f"{r['step_s_median']:.3f} | "
            f"{r['peak_mem_gib']:.2f} | {r['step_mem_gib']:.3f} | {r['losses'][0]:.4f} | {r['losses'][-1]:.4f} |"
        )
    lines += [
        "",
        "| setting | prefkit side | TRL side | tokens/s ratio (prefkit / TRL) | best-step ratio | peak memory ratio | "
        "step memory ratio | max per-step loss difference |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for q in res["ratios"]:
        lines.append(
            f"| {q['setting']} | {q['side']} | {q['vs']} | {q['tokens_per_s']:.2f} | {q['tokens_per_s_best']:.2f} | "
            f"{q['peak_mem']:.2f} | "
            f"{q['step_mem']:.2f} | {q['max_loss_diff']:.1e} |"
        )
    peak = "`torch.cuda.max_memory_allocated`" if res["device"] == "cuda" else "the process's peak resident set"
    lines += [
        "",
        "tokens/s: median over timed steps of non-pad tokens / step time (best step: the fastest one, what the code "
        f"does when nothing else competes for the machine); step: median step time. Peak memory: {peak} "
        "over the steps; step memory: that peak minus what was held just before the first step (weights, libraries). "
        "Ratio > 1 for tokens/s: prefkit is faster; ratio < 1 for memory: prefkit uses less. Both sides train on the "
        "same batches with the same optimizer, so their losses should agree step by step (last column).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per run (default: 6 on CPU, 20 on CUDA)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 2; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="tiny model, all runs in this process: a smoke check")
    ap.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    ap.add_argument("--grad-ckpt", action="store_true", help="activation checkpointing on both sides")
    ap.add_argument("--autocast", action="store_true", help="also run prefkit under bf16 autocast (CUDA)")
    ap.add_argument(
        "--trl-peft-config", action="store_true", help="also run TRL wrapping a plain 4-bit model itself (qlora only)"
    )
    ap.add_argument(
        "--threads", type=int, default=None, help="CPU threads per run (default: 1 on CPU, torch's on CUDA)"
    )
    ap.add_argument(
        "--out", type=Path, default=None, help="results folder (default bench/results; a temp one if --quick)"
    )
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)  # internal: run one job file
    a = ap.parse_args(argv)

    if a.worker is not None:  # child process: one (setting, side)
        job = json.loads(a.worker.read_text())
        Path(job["result"]).write_text(json.dumps(run_worker(job)))
        return

    shape = (QUICK if a.quick else SHAPES)[a.device]
    steps = a.steps or (2 if a.quick else 6 if a.device == "cpu" else 20)
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
    out = a.out or (Path(tempfile.gettempdir()) / "prefkit-bench" if a.quick else RESULTS)
    sides = ["prefkit", "trl"] + (["prefkit+autocast"] if a.autocast else [])
    sides += ["trl+peft_config"] if a.trl_peft_config else []
    # One thread by default on CPU: on a shared machine, two OpenMP threads competing with other processes made tiny
    # matmuls ~30x slower (threads spin at barriers) and the timings meaningless; one thread is slow but steady.
    threads = a.threads or (1 if a.device == "cpu" else None)
    if threads:
        import torch

        torch.set_num_threads(threads)

    with tempfile.TemporaryDirectory(prefix="prefkit-bench-") as tmp:
        tmp = Path(tmp)
        tok = build_tokenizer(shape.vocab_size)
        model = build_model(shape, tok)
        n_params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(tmp / "model")
        tok.save_pretrained(tmp / "model")
        del model
        rows = make_rows(shape, shape.pairs * (warmup + steps))
        (tmp / "data.json").write_text(json.dumps(rows))

        from prefkit.logps import encode_pairs

        B = shape.pairs
        tokens = [
            int(encode_pairs(tok, rows[i * B : (i + 1) * B])["attention_mask"].sum()) for i in range(warmup + steps)
        ]
        runs = []
        for k, setting in enumerate(a.settings):
            for side in sides if k % 2 == 0 else sides[::-1]:  # alternate the order: drift on a busy machine cancels
                if side == "trl+peft_config" and setting != "qlora":
                    continue
                job = {
                    "setting": setting,
                    "side": side,
                    "device": a.device,
                    "model_dir": str(tmp / "model"),
                    "data": str(tmp / "data.json"),
                    "tmp": str(tmp),
                    "pairs": B,
                    "steps": steps,
                    "warmup": warmup,
                    "tokens_per_step": tokens,
                    "grad_ckpt": a.grad_ckpt,
                    "threads": threads,
                    "result": str(tmp / "result.json"),
                }
                print(f"[bench] {setting} / {side} ...", flush=True)
                if a.quick:
                    r = run_worker(job)
                else:
                    (tmp / "job.json").write_text(json.dumps(job))
                    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(tmp / "job.json")]
                    subprocess.run(cmd, check=True, cwd=ROOT)
                    r = json.loads(Path(job["result"]).read_text())
                runs.append({"setting": setting, "side": side, **r})
                print(
                    f"[bench] {setting} / {side}: {r['tokens_per_s']:,.0f} tokens/s, peak {r['peak_mem_gib']:.2f} GiB"
                )

    by = {(r["setting"], r["side"]): r for r in runs}
    # Every prefkit side against every TRL side of the same setting. Same data, optimizer and learning rate: the
    # per-step losses should follow the same trajectory.
    ratios = [
        {
            "setting": s,
            "side": p,
            "vs": t,
            "tokens_per_s": by[s, p]["tokens_per_s"] / by[s, t]["tokens_per_s"],
            "tokens_per_s_best": by[s, p]["tokens_per_s_best"] / by[s, t]["tokens_per_s_best"],
            "peak_mem": by[s, p]["peak_mem_gib"] / by[s, t]["peak_mem_gib"],
            "step_mem": by[s, p]["step_mem_gib"] / max(by[s, t]["step_mem_gib"], 1e-9),
            "max_loss_diff": max(abs(x - y) for x, y in zip(by[s, p]["losses"], by[s, t]["losses"])),
        }
        for s in a.settings
        for p in sides
        for t in sides
        if p.startswith("prefkit") and t.startswith("trl") and (s, p) in by and (s, t) in by
    ]
    res = {
        "device": a.device,
        "device_name": _device_name(a.device),
        "quick": a.quick,
        "isolated_processes": not a.quick,
        "grad_ckpt": a.grad_ckpt,
        "threads": threads,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "prefkit_commit": _git_commit(),
        "versions": _versions(),
        "command": " ".join(["python", "bench/bench_dpo.py", *(sys.argv[1:] if argv is None else argv)]),
        "model": {**asdict(shape), "n_params": n_params},
        "data": {
            "pairs": shape.pairs,
            "seq_len": shape.seq_len,
            "steps": steps,
            "warmup": warmup,
            "tokens_per_step_mean": statistics.mean(tokens),
        },
        "hparams": {"beta": BETA, "lr": LR, "max_grad_norm": 1.0, "lora_r": LORA_R, "lora_alpha": LORA_ALPHA},
        "runs": runs,
        "ratios": ratios,
    }
    stem = f"dpo_{a.device}"
    _write_atomic(out / f"{stem}.json", json.dumps(res, indent=1) + "\n")
    md = markdown(res)
    _write_atomic(out / f"{stem}.md", md)
    print(md)
    print(f"[bench] wrote {out / stem}.json and {stem}.md")


if __name__ == "__main__":
    main()

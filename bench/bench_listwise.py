"""Listwise training step: log-probs of K responses per prompt computed three ways, in one run.

For B prompts with K responses each, one training step computes the (B, K) summed response log-probs, a loss on them,
its backward and an AdamW step. What differs is how the log-probs are computed:

- ``shared``: ``list_logps(model, batch, shared_prompt=True)``. Each prompt runs through the model once; its K
  responses attend to that prompt's key/value cache. Loss: LiPO-λ (``lipo_lambda_loss``).
- ``naive``: ``list_logps(model, batch, shared_prompt=False)``. B*K full sequences, the prompt repeated K times.
  Loss: LiPO-λ.
- ``pairs``: the list expanded into its K(K-1)/2 preferred pairs per prompt, chosen and rejected of every pair in one
  forward (``encode_pairs`` + ``sequence_logps``), the way a pairwise trainer consumes a ranked list: 2 * B *
  K(K-1)/2 sequences, each response repeated K - 1 times. Loss: DPO summed over a list's pairs (``dpo_loss``; DPO on
  all pairs, DPO_BT in Liu et al. 2024).

The losses differ (LiPO-λ weighs the pairs, DPO does not), but a loss on (B, K) numbers costs nothing next to the
model; what is measured is the cost of the log-probs, their backward and the optimizer step. Reference log-probs are
fixed random numbers (as if precomputed once), so no reference model runs on any side.

This is done for K in {2, 4, 8} and two length regimes: ``long`` (long prompts, short responses: where sharing the
prompt should pay off) and ``short`` (short prompts, long responses: where it saves little). Each (regime, K,
method) runs in its own subprocess, so peak memory is that run's alone: on CUDA ``torch.cuda.max_memory_allocated``;
on CPU the peak resident set size (VmHWM, reset just before the first step where the kernel allows it). "Step memory"
is the peak minus what was held just before the first step (weights, libraries): what training adds. Warm-up steps
are run but not timed.

Tokens: "response tokens" are the non-pad tokens of the B*K responses of a step (EOS included), the same number for
the three methods; response tokens/s is that number over the step time, so a method that processes more to get the
same (B, K) log-probs shows up as slower. "Model tokens" are the non-pad tokens that go through the model: B prompts
+ B*K responses (shared), B*K prompts + B*K responses (naive), B*K(K-1) prompt + response sequences (pairs). The
timed window is ``list_logps`` (for naive, including its ``flatten_lists``) or ``sequence_logps``, the loss, backward
and the optimizer step; building the batches is outside it.

Each run also returns the log-probs of its first step (same initial weights, same batch), and the run checks that
naive and pairs agree with shared (the largest absolute difference over all responses is reported).

The model is built from a config with random weights and saved to a temporary folder (nothing is downloaded); the
data are random token ids; prompt and response lengths vary between 3/4 of the regime's length and the full length,
so batches are padded. Usage::

    python bench/bench_listwise.py                    # CPU: Llama, 32k vocab, hidden 256, 4 layers; 1 list/step
    python bench/bench_listwise.py --device cuda      # Qwen2.5-0.5B-shaped, bf16; 2 lists/step
    python bench/bench_listwise.py --quick            # tiny model, all runs in this process: a smoke check

Results: ``bench/results/listwise_<device>.json`` and ``listwise_<device>.md`` (``--quick`` writes to a temporary
folder).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import SimpleNamespace

from bench_dpo import QUICK as DPO_QUICK
from bench_dpo import SHAPES as DPO_SHAPES
from bench_dpo import Meter, _device_name, _git_commit, _write_atomic, build_model

# OpenMP threads that spin while waiting slow small CPU runs down badly when other processes compete for the cores
# (read when torch is first imported, which happens later).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
METHODS = ("shared", "naive", "pairs")
PAD, BOS, EOS = 0, 1, 2  # token ids of the special tokens; data ids are drawn above them
N_SPECIAL = 4
LIPO_BETA = 0.05  # LiPOConfig's default (Liu et al. 2024)
DPO_BETA = 0.1  # DPOConfig's default (Rafailov et al. 2023)
LR = 1e-6


@dataclass
class Regime:
    """Longest prompt and response of a regime, in tokens (BOS in the prompt, EOS in the response); each row's
    lengths are drawn between 3/4 of these and these."""

    name: str
    prompt_len: int
    response_len: int


# bench_dpo.py's model shapes; its batch fields (pairs, seq_len) are not used here.
SHAPES = {
    # CPU: a 32k vocabulary, so the LM head (run on response positions only) costs what it costs in small models,
    # and twice bench_dpo's width, so that the transformer body, which sharing the prompt saves, is not negligible.
    "cpu": replace(DPO_SHAPES["cpu"], hidden_size=256, intermediate_size=688),
    "cuda": DPO_SHAPES["cuda"],  # Qwen2.5-0.5B's shape, bf16
}
QUICK = DPO_QUICK
REGIMES = {  # (long prompt, short responses), (short prompt, long responses); prompts (lists) per step
    # CPU: one list per step keeps the default run within a few minutes on 2 cores; pairs at K = 8 is 56 sequences.
    "cpu": ((Regime("long", 256, 32), Regime("short", 32, 64)), 1),
    # CUDA: pairs at K = 8 is 112 sequences of up to 576 tokens, ~60k tokens in one forward (a run that runs out of
    # memory is reported as such).
    "cuda": ((Regime("long", 512, 64), Regime("short", 64, 512)), 2),
    "quick": ((Regime("long", 48, 8), Regime("short", 8, 24)), 2),
}


# ----------------------------------------------------------------------------------------------------------------------
# Model and data


def make_lists(regime: Regime, K: int, lists: int, steps: int, vocab_size: int) -> list[dict]:
    """Per step: ``lists`` prompts (BOS + random ids) with K responses each (random ids + EOS) and distinct scores ψ
    (a random permutation of 0..K-1). Deterministic in (regime, K): every method sees the same steps."""
    rng = random.Random(f"{regime.name}-{regime.prompt_len}-{regime.response_len}-{K}-{lists}")

    def ids(longest: int) -> list[int]:
        n = rng.randint(max(1, math.ceil(0.75 * longest)), longest) - 1  # BOS / EOS make it n + 1
        return [rng.randrange(N_SPECIAL, vocab_size) for _ in range(n)]

    out = []
    for _ in range(steps):
        prompts = [[BOS] + ids(regime.prompt_len) for _ in range(lists)]
        responses = [[ids(regime.response_len) + [EOS] for _ in range(K)] for _ in range(lists)]
        scores = [rng.sample(range(K), K) for _ in range(lists)]
        noise = [[rng.gauss(0.0, 1.0) for _ in range(K)] for _ in range(lists)]  # for the reference log-probs
        out.append({"prompts": prompts, "responses": responses, "scores": scores, "ref_noise": noise})
    return out


def encode_step(step: dict, method: str, vocab_size: int) -> dict:
    """Tensors of one step for one method, built with prefkit's own encoders (outside the timed window)."""
    import torch

    from prefkit.logps import encode_lists, encode_pairs

    tok = SimpleNamespace(pad_token_id=PAD, eos_token_id=EOS)  # ids are given as lists: only the specials are read
    batch = encode_lists(tok, step["prompts"], step["responses"])
    scores = torch.tensor(step["scores"], dtype=torch.float32)  # (B, K)
    B, K = scores.shape
    counts = batch["response_mask"].sum(-1).view(B, K)
    # Fixed reference log-probs, as if precomputed once: about what a random-init model gives (-ln V per token).
    ref = -math.log(vocab_size) * counts + torch.tensor(step["ref_noise"])  # (B, K)
    out = {"scores": scores, "ref_logps": ref, "response_tokens": int(counts.sum())}
    if method != "pairs":
        out["batch"] = batch
        prompt = batch["prompt_mask"].sum()
        out["model_tokens"] = int(prompt * (1 if method == "shared" else K) + counts.sum())
        return out
    # Every preferred pair (ψ_i > ψ_j) of every list; chosen / rejected: the flat index b*K + k of its two responses.
    pairs_bij = [(b, i, j) for b in range(B) for i in range(K) for j in range(K) if scores[b, i] > scores[b, j]]
    chosen, rejected = [b * K + i for b, i, _ in pairs_bij], [b * K + j for b, _, j in pairs_bij]
    P, R = step["prompts"], step["responses"]
    rows = [{"prompt": P[b], "chosen": R[b][i], "rejected": R[b][j]} for b, i, j in pairs_bij]
    pairs = encode_pairs(tok, rows)  # 2N sequences: the N chosen, then the N rejected
    flat_ref = ref.flatten()
    out.update(
        batch=pairs,
        index=torch.tensor(chosen + rejected),  # (2N,) which response of the list each sequence is
        ref_chosen=flat_ref[chosen],
        ref_rejected=flat_ref[rejected],
        model_tokens=int(pairs["attention_mask"].sum()),
    )
    return out


# ----------------------------------------------------------------------------------------------------------------------
# One (regime, K, method) run


def _step(model, enc: dict, method: str):
    """Loss of one step and the log-probs it was computed from: (B, K) for shared / naive, (2N,) for N pairs."""
    from prefkit.logps import list_logps, sequence_logps
    from prefkit.losses import dpo_loss, lipo_lambda_loss

    device = next(model.parameters()).device
    if method != "pairs":
        logps, _ = list_logps(model, enc["batch"], shared_prompt=method == "shared")  # (B, K)
        losses, _ = lipo_lambda_loss(logps, enc["ref_logps"].to(device), enc["scores"].to(device), beta=LIPO_BETA)
        return losses.mean(), logps
    b = enc["batch"]
    logps, _ = sequence_logps(model, b["input_ids"], b["attention_mask"], b["response_mask"])  # (2N,)
    N = logps.shape[0] // 2
    losses, _, _ = dpo_loss(
        logps[:N], logps[N:], enc["ref_chosen"].to(device), enc["ref_rejected"].to(device), beta=DPO_BETA
    )  # (N,)
    B = enc["scores"].shape[0]
    return losses.view(B, -1).sum(-1).mean(), logps  # Σ over a list's pairs, mean over lists


def run_worker(job: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    device = torch.device(job["device"])
    load_avg = os.getloadavg()[0]
    model = AutoModelForCausalLM.from_pretrained(job["model_dir"], dtype=getattr(torch, job["dtype"])).to(device)
    model.train()
    steps = json.loads(Path(job["data"]).read_text())
    encs = [encode_step(s, job["method"], model.config.vocab_size) for s in steps]
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0, fused=True)
    meter = Meter(device)
    times, losses, first_logps, oom = [], [], None, False
    meter.start()
    try:
        for enc in encs:
            meter.sync()
            t0 = time.perf_counter()
            loss, logps = _step(model, enc, job["method"])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            meter.sync()
            times.append(time.perf_counter() - t0)
            losses.append(float(loss.detach()))
            if first_logps is None:  # initial weights: comparable across methods
                first_logps = logps.detach().float().flatten().cpu().tolist()
    except torch.OutOfMemoryError:
        oom = True
    out = {
        "oom": oom,
        "steps_done": len(times),
        "step_s_all": times,
        "losses": losses,
        "first_logps": first_logps,
        "index": encs[0]["index"].tolist() if job["method"] == "pairs" else None,
        "response_tokens_per_step": [e["response_tokens"] for e in encs],
        "model_tokens_per_step": [e["model_tokens"] for e in encs],
        "load_avg_1min": [load_avg, os.getloadavg()[0]],
        **meter.stop(),
    }
    timed = times[job["warmup"] :]
    if timed and not oom:
        tok = out["response_tokens_per_step"][job["warmup"] :]
        per_step = [n / t for n, t in zip(tok, timed)]
        out.update(
            step_s_median=statistics.median(timed),
            step_s_best=min(timed),
            response_tokens_per_s=statistics.median(per_step),
            response_tokens_per_s_best=max(per_step),
        )
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Orchestration (parent)


def _versions() -> dict:
    import importlib.metadata as md

    return {"python": platform.python_version(), **{p: md.version(p) for p in ("torch", "transformers")}}


def _fmt(x, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def markdown(res: dict) -> str:
    m, v = res["model"], res["versions"]
    regimes = ", ".join(
        f"`{r['name']}`: prompts {r['prompt_len']}, responses {r['response_len']} tokens" for r in res["regimes"]
    )
    lines = [
        f"# Listwise training step: shared prompt vs naive vs pairs ({res['device']})",
        "",
        f"{res['device_name']}. {m['arch']}, {m['n_params'] / 1e6:.1f}M parameters (vocab {m['vocab_size']}, hidden "
        f"{m['hidden_size']}, {m['num_hidden_layers']} layers), {m['dtype']}; {res['lists']} prompts/step; longest "
        f"{regimes} (each row 3/4 to all of that); {res['steps']} timed steps after {res['warmup']} warm-up; "
        f"{res['threads'] or 'default'} CPU thread(s); "
        f"{'one process per run' if res['isolated_processes'] else 'all runs in one process (--quick)'}.",
        f"torch {v['torch']}, transformers {v['transformers']}; prefkit {res['prefkit_commit']}; {res['date']}.",
        "",
        "| regime | K | method | step (s) | best step (s) | response tokens/s | response tokens/step | "
        "model tokens/step | peak memory (GiB) | step memory (GiB) | max abs log-prob diff vs shared |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["runs"]:
        resp, model_tok = statistics.mean(r["response_tokens_per_step"]), statistics.mean(r["model_tokens_per_step"])
        step = "OOM" if r["oom"] else _fmt(r.get("step_s_median"), ".3f")
        lines.append(
            f"| {r['regime']} | {r['K']} | {r['method']} | {step} | {_fmt(r.get('step_s_best'), '.3f')} | "
            f"{_fmt(r.get('response_tokens_per_s'), ',.0f')} | {resp:,.0f} | {model_tok:,.0f} | "
            f"{r['peak_mem_gib']:.2f} | {r['step_mem_gib']:.3f} | {_fmt(r.get('max_logp_diff'), '.1e')} |"
        )
    lines += [
        "",
        "| regime | K | tokens/s ratio shared / naive | shared / pairs | best-step ratio shared / naive | "
        "shared / pairs | step memory ratio shared / naive | shared / pairs | peak memory ratio shared / naive | "
        "shared / pairs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for q in res["ratios"]:
        cells = [
            _fmt(q.get(f"{k}/{o}"), ".2f")
            for k in ("tokens_per_s", "tokens_per_s_best", "step_mem", "peak_mem")
            for o in ("naive", "pairs")
        ]
        lines.append(f"| {q['regime']} | {q['K']} | " + " | ".join(cells) + " |")
    peak = "`torch.cuda.max_memory_allocated`" if res["device"] == "cuda" else "the process's peak resident set"
    lines += [
        "",
        "Response tokens: the non-pad tokens of the K responses of every prompt (EOS included), the same for the three "
        "methods; response tokens/s: their number over the step time, median over the timed steps. Model tokens: the "
        "non-pad tokens the model runs on (shared: each prompt once; naive: each prompt K times; pairs: each prompt "
        "K(K-1) times and each response K-1 times). Step: median step time (forward, loss, backward, AdamW). "
        f"Peak memory: {peak} over the steps; step memory: that peak minus what was held just before the first step. "
        "Tokens/s ratio > 1: shared is faster; memory ratio < 1: shared uses less. Last column of the first table: "
        "the first step's log-probs (same weights, same batch) against shared's, over every response.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per run (default: 3 on CPU, 10 on CUDA)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 1 on CPU, 2 on CUDA)")
    ap.add_argument("--quick", action="store_true", help="tiny model, all runs in this process: a smoke check")
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 4, 8], help="list sizes K")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--regimes", nargs="+", choices=["long", "short"], default=["long", "short"])
    ap.add_argument("--lists", type=int, default=None, help="prompts per step B (default: 1 on CPU, 2 on CUDA)")
    ap.add_argument("--long-prompt", type=int, default=None, help="longest prompt of the long regime, in tokens")
    ap.add_argument("--long-response", type=int, default=None, help="longest response of the long regime")
    ap.add_argument("--short-prompt", type=int, default=None, help="longest prompt of the short regime")
    ap.add_argument("--short-response", type=int, default=None, help="longest response of the short regime")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: 1 on CPU, torch's on CUDA)")
    ap.add_argument(
        "--out", type=Path, default=None, help="results folder (default bench/results; a temp one if --quick)"
    )
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)  # internal: run one job file
    a = ap.parse_args(argv)

    if a.worker is not None:  # child process: one (regime, K, method)
        job = json.loads(a.worker.read_text())
        Path(job["result"]).write_text(json.dumps(run_worker(job)))
        return

    shape = (QUICK if a.quick else SHAPES)[a.device]
    default_regimes, default_lists = REGIMES["quick" if a.quick else a.device]
    lengths = {
        "long": (a.long_prompt, a.long_response),
        "short": (a.short_prompt, a.short_response),
    }
    regimes = [
        Regime(r.name, lengths[r.name][0] or r.prompt_len, lengths[r.name][1] or r.response_len)
        for r in default_regimes
        if r.name in a.regimes
    ]
    lists = a.lists or default_lists
    steps = a.steps or (2 if a.quick else 3 if a.device == "cpu" else 10)
    warmup = a.warmup if a.warmup is not None else (1 if a.quick or a.device == "cpu" else 2)
    out = a.out or (Path(tempfile.gettempdir()) / "prefkit-bench" if a.quick else RESULTS)
    # One thread by default on CPU, as in bench_dpo.py: steady timings on a shared machine.
    threads = a.threads or (1 if a.device == "cpu" else None)
    if threads:
        import torch

        torch.set_num_threads(threads)

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    runs = []
    with tempfile.TemporaryDirectory(prefix="prefkit-bench-") as tmp:
        tmp = Path(tmp)
        specials = SimpleNamespace(pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS)
        model = build_model(replace(shape, seq_len=max(r.prompt_len + r.response_len for r in regimes)), specials)
        n_params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(tmp / "model")
        del model
        n = 0
        for regime in regimes:
            for K in a.ks:
                data = tmp / f"data_{regime.name}_{K}.json"
                data.write_text(json.dumps(make_lists(regime, K, lists, warmup + steps, shape.vocab_size)))
                by_method = {}
                # Alternate the order: slow drift on a busy machine then affects every method alike.
                for method in a.methods if n % 2 == 0 else a.methods[::-1]:
                    job = {
                        "method": method,
                        "device": a.device,
                        "dtype": shape.dtype,
                        "model_dir": str(tmp / "model"),
                        "data": str(data),
                        "warmup": warmup,
                        "threads": threads,
                        "result": str(tmp / "result.json"),
                    }
                    print(f"[bench] {regime.name} / K={K} / {method} ...", flush=True)
                    if a.quick:
                        r = run_worker(job)
                    else:
                        (tmp / "job.json").write_text(json.dumps(job))
                        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(tmp / "job.json")]
                        subprocess.run(cmd, check=True, cwd=ROOT)
                        r = json.loads(Path(job["result"]).read_text())
                    by_method[method] = {"regime": regime.name, "K": K, "method": method, **r}
                    speed = "OOM" if r["oom"] else f"{r['response_tokens_per_s']:,.0f} response tokens/s"
                    print(f"[bench] {regime.name} / K={K} / {method}: {speed}, peak {r['peak_mem_gib']:.2f} GiB")
                n += 1
                # Agreement of the first step's log-probs with shared's (same weights, same batch).
                ref = by_method.get("shared", {}).get("first_logps")
                for method, r in by_method.items():
                    if ref is not None and r["first_logps"] is not None and method != "shared":
                        idx = r["index"] or range(len(ref))
                        r["max_logp_diff"] = max(abs(x - ref[i]) for x, i in zip(r["first_logps"], idx))
                runs += [by_method[m] for m in a.methods]

    by = {(r["regime"], r["K"], r["method"]): r for r in runs}
    ratios = []
    for regime in regimes:
        for K in a.ks:
            q = {"regime": regime.name, "K": K}
            s = by.get((regime.name, K, "shared"))
            for other in ("naive", "pairs"):
                o = by.get((regime.name, K, other))
                if s is None or o is None:
                    continue
                if not (s["oom"] or o["oom"]):
                    q[f"tokens_per_s/{other}"] = s["response_tokens_per_s"] / o["response_tokens_per_s"]
                    q[f"tokens_per_s_best/{other}"] = s["response_tokens_per_s_best"] / o["response_tokens_per_s_best"]
                if min(s["step_mem_gib"], o["step_mem_gib"]) > 2**-10:  # below 1 MiB the ratio is noise
                    q[f"step_mem/{other}"] = s["step_mem_gib"] / o["step_mem_gib"]
                q[f"peak_mem/{other}"] = s["peak_mem_gib"] / o["peak_mem_gib"]
            ratios.append(q)
    res = {
        "device": a.device,
        "device_name": _device_name(a.device),
        "quick": a.quick,
        "isolated_processes": not a.quick,
        "threads": threads,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "prefkit_commit": _git_commit(),
        "versions": _versions(),
        "command": " ".join(["python", "bench/bench_listwise.py", *(sys.argv[1:] if argv is None else argv)]),
        "model": {**{k: v for k, v in asdict(shape).items() if k not in ("pairs", "seq_len")}, "n_params": n_params},
        "regimes": [asdict(r) for r in regimes],
        "lists": lists,
        "ks": a.ks,
        "steps": steps,
        "warmup": warmup,
        "hparams": {"lipo_beta": LIPO_BETA, "dpo_beta": DPO_BETA, "lr": LR, "weight_decay": 0.0},
        "runs": runs,
        "ratios": ratios,
    }
    stem = f"listwise_{a.device}"
    _write_atomic(out / f"{stem}.json", json.dumps(res, indent=1) + "\n")
    md = markdown(res)
    _write_atomic(out / f"{stem}.md", md)
    print(md)
    print(f"[bench] wrote {out / stem}.json and {stem}.md")


if __name__ == "__main__":
    main()

"""The toy profile's costs, each candidate speed-up against the plain path in one run.

What the notebooks spend their time on (``bench/profile_notebooks.py``): tiny Llamas' training steps, sampling,
reference log-probs and evaluation. Measured here on the string world's toy model (``TinyLlamaConfig()``, 0.5M
parameters, the notebooks' default), 32 pairs per step, each case in its own subprocess so that its thread count
and peak memory are its own:

- ``train``: DPO training steps (``run_arm`` without evaluation, reference log-probs precomputed), tokens/s over the
  non-pad tokens of chosen + rejected; fp32 with 1 and 2 threads, and fp32 under bf16 autocast (1 thread), whose loss
  trajectory is compared with fp32's on the same batches (largest |Δ loss| over the steps).
- ``sample``: ancestral sampling of 256 prompts x up to 48 tokens (``prefkit.generate.sample``), generated tokens/s,
  1 and 2 threads.
- ``shared``: two arms on the same base and rows, as a notebook runs them: the reference log-probs of the training
  rows (``Reference.precompute``) and an evaluation on 256 prompts + 256 ranking pairs (``OracleEval``), for the
  first arm (computed) and the second (the reference side served from the store, bit-identical: checked).
- ``parallel``: two identical training jobs, one after the other with 2 threads each, against both at once with 1
  thread each (how ``make reproduce`` runs notebooks): wall time of the pair of jobs.

Peak memory is each subprocess's peak resident set size (``ru_maxrss``). Usage::

    .venv/bin/python bench/bench_toy.py              # writes bench/results/toy_cpu.md and toy_cpu.json
    .venv/bin/python bench/bench_toy.py --quick      # fewer steps and prompts, results to a temporary folder
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup(threads: int):
    os.environ["PREFKIT_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    from prefkit.models import TinyLlamaConfig, tiny_llama
    from prefkit.worlds import StringWorld

    world = StringWorld(seed=0, n_train=512, n_eval=256)
    model = tiny_llama(world.tokenizer, TinyLlamaConfig(), seed=0)
    rows = []
    for p in world.train_prompts:
        gold = world.gold(p)
        cut = gold.split(" |")[0]
        if cut != gold:
            rows.append({"prompt": p, "chosen": gold, "rejected": cut})
    return torch, world, model, rows


def _tokens(tok, rows) -> int:
    from prefkit.logps import encode_pairs

    return int(encode_pairs(tok, rows)["attention_mask"].sum())


def case_train(threads: int, steps: int, autocast: bool) -> dict:
    torch, world, model, rows = _setup(threads)
    from prefkit.losses import dpo_loss
    from prefkit.models import Reference
    from prefkit.train import StepBatches, TrainConfig, preference_objective, train

    ref = Reference(model, "copy")
    pre = ref.precompute(rows, world.tokenizer)
    batches = StepBatches(pre, world.tokenizer, 32, seed=0)
    objective = preference_objective(dpo_loss, ref, beta=0.1)
    if autocast:
        plain = objective

        def objective(policy, batch):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return plain(policy, batch)

    cfg = TrainConfig(steps=steps, lr=1e-4, progress=False, sanity_check=not autocast)
    tokens = sum(int(batches[s]["attention_mask"].sum()) for s in range(steps))
    t0 = time.perf_counter()
    hist = train(model, objective, batches, cfg)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "tokens_per_s": tokens / wall, "loss": hist.steps["loss"].tolist()}


def case_sample(threads: int, n_prompts: int) -> dict:
    torch, world, model, _ = _setup(threads)
    from prefkit.generate import sample

    prompts = world.eval_prompts[:n_prompts]
    t0 = time.perf_counter()
    ys = sample(model, world.tokenizer, prompts, seed=0, progress=False)
    wall = time.perf_counter() - t0
    n = sum(len(world.tokenizer(y[0], add_special_tokens=False)["input_ids"]) + 1 for y in ys)  # + EOS (or the cap)
    return {"wall_s": wall, "tokens_per_s": n / wall, "prompts_per_s": len(prompts) / wall}


def case_shared(threads: int, n_prompts: int) -> dict:
    torch, world, model, rows = _setup(threads)
    import copy

    from prefkit.generate import sample
    from prefkit.models import Reference
    from prefkit.toy import OracleEval

    prompts = world.eval_prompts[:n_prompts]
    ref_samples = [y[0] for y in sample(model, world.tokenizer, prompts, seed=1, progress=False)]
    out = {}
    for arm in ("first", "second"):
        policy = copy.deepcopy(model)
        ref = Reference(policy, "copy")
        t0 = time.perf_counter()
        pre = ref.precompute(rows, world.tokenizer)
        t1 = time.perf_counter()
        ev = OracleEval(world, prompts, ref_samples, rows[:n_prompts], 0.1, 0)(ref)(policy, 0)
        t2 = time.perf_counter()
        out[arm] = {"precompute_s": t1 - t0, "eval_s": t2 - t1, "eval": ev, "pre": [r["ref_chosen_logps"] for r in pre]}
    same = lambda k: json.dumps(out["first"][k], sort_keys=True) == json.dumps(out["second"][k], sort_keys=True)  # noqa: E731
    out["identical"] = same("eval") and same("pre")  # (NaN == NaN as JSON: a metric with no pairs to count)
    for arm in ("first", "second"):
        del out[arm]["eval"], out[arm]["pre"]
    out["eval_prompts"] = n_prompts
    return out


def run_case(args: list[str]) -> dict:
    """Run ``bench_toy.py --case ...`` in a subprocess; its JSON result plus its peak memory."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, __file__, "--case", *args], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parallel_pair(steps: int) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, __file__, "--case", "train", "--steps", str(steps)]
    t0 = time.perf_counter()
    for _ in range(2):
        subprocess.run([*cmd, "--threads", "2"], capture_output=True, env=env, check=True)
    sequential = time.perf_counter() - t0
    t0 = time.perf_counter()
    procs = [subprocess.Popen([*cmd, "--threads", "1"], stdout=subprocess.DEVNULL, env=env) for _ in range(2)]
    if any(p.wait() != 0 for p in procs):
        raise RuntimeError("a parallel training job failed")
    concurrent = time.perf_counter() - t0
    return {"sequential_2x2threads_s": sequential, "concurrent_2x1thread_s": concurrent}


def report(r: dict, steps: int, cmd: str) -> str:
    t1, t2, bf = r["train_fp32_t1"], r["train_fp32_t2"], r["train_bf16_t1"]
    dloss = max(abs(a - b) for a, b in zip(t1["loss"], bf["loss"]))
    s1, s2, sh, par = r["sample_t1"], r["sample_t2"], r["shared"], r["parallel"]
    mb = lambda x: f"{x['peak_rss_mb']:.0f}"  # noqa: E731
    first, second = sh["first"], sh["second"]
    lines = [
        f"`{cmd}`, {r['machine']}",
        "",
        "| what | plain | candidate | ratio (candidate / plain) | same numbers? | kept |",
        "|---|---|---|---|---|---|",
        f"| training, {steps} DPO steps of 32 pairs: tokens/s | fp32, 1 thread: {t1['tokens_per_s']:.0f} "
        f"({mb(t1)} MB) | fp32, 2 threads: {t2['tokens_per_s']:.0f} ({mb(t2)} MB) | "
        f"{t2['tokens_per_s'] / t1['tokens_per_s']:.2f} | yes | see parallel |",
        f"| training: tokens/s | fp32, 1 thread: {t1['tokens_per_s']:.0f} | bf16 autocast, 1 thread: "
        f"{bf['tokens_per_s']:.0f} ({mb(bf)} MB) | {bf['tokens_per_s'] / t1['tokens_per_s']:.2f} | "
        f"no: max abs loss difference {dloss:.2e} over {steps} steps | no |",
        f"| sampling 256 prompts: generated tokens/s | 1 thread: {s1['tokens_per_s']:.0f} ({mb(s1)} MB) | 2 threads: "
        f"{s2['tokens_per_s']:.0f} ({mb(s2)} MB) | {s2['tokens_per_s'] / s1['tokens_per_s']:.2f} | yes | see parallel |",
        f"| reference log-probs of {r['n_rows']} training pairs, second arm | computed: {first['precompute_s']:.2f} s | "
        f"shared: {second['precompute_s']:.4f} s | {second['precompute_s'] / first['precompute_s']:.3f} (time) | "
        f"{'bit-identical' if sh['identical'] else 'NO'} | yes |",
        f"| evaluation ({sh['eval_prompts']} prompts + ranking pairs): prompts/s | first arm: "
        f"{sh['eval_prompts'] / first['eval_s']:.0f} | second arm (reference side shared): "
        f"{sh['eval_prompts'] / second['eval_s']:.0f} | {first['eval_s'] / second['eval_s']:.2f} (speed) | "
        f"{'bit-identical' if sh['identical'] else 'NO'} | yes |",
        f"| two training jobs of {steps} steps: wall s | one after the other, 2 threads each: "
        f"{par['sequential_2x2threads_s']:.1f} | both at once, 1 thread each: {par['concurrent_2x1thread_s']:.1f} | "
        f"{par['concurrent_2x1thread_s'] / par['sequential_2x2threads_s']:.2f} (time) | yes | yes: `make reproduce` "
        "runs 2 notebooks at once, 1 thread each |",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=["train", "sample", "shared"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--autocast", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args()
    if a.case:
        res = {
            "train": lambda: case_train(a.threads, a.steps, a.autocast),
            "sample": lambda: case_sample(a.threads, a.prompts),
            "shared": lambda: case_shared(a.threads, a.prompts),
        }[a.case]()
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return
    steps, prompts = (8, 64) if a.quick else (a.steps, a.prompts)
    out = Path(tempfile.mkdtemp()) if a.quick else Path(a.out)
    r = {"machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, torch threads as stated"}
    st = ["--steps", str(steps)]
    for name, args in [
        ("train_fp32_t1", ["train", "--threads", "1", *st]),
        ("train_fp32_t2", ["train", "--threads", "2", *st]),
        ("train_bf16_t1", ["train", "--threads", "1", "--autocast", *st]),
        ("sample_t1", ["sample", "--threads", "1", "--prompts", str(prompts)]),
        ("sample_t2", ["sample", "--threads", "2", "--prompts", str(prompts)]),
        ("shared", ["shared", "--threads", "1", "--prompts", str(prompts)]),
    ]:
        print(f"== {name}", flush=True)
        r[name] = run_case(args)
    print("== parallel", flush=True)
    r["parallel"] = parallel_pair(steps)
    _, _, _, rows = _setup(1)
    r["n_rows"] = len(rows)
    cmd = "bench/bench_toy.py" + (" --quick" if a.quick else "")
    out.mkdir(parents=True, exist_ok=True)
    (out / "toy_cpu.json").write_text(json.dumps(r, indent=2) + "\n")
    (out / "toy_cpu.md").write_text(report(r, steps, cmd))
    print((out / "toy_cpu.md").read_text())


if __name__ == "__main__":
    main()

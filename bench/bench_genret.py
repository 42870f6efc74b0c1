"""Whole-catalog scoring of the generative retriever: the decoder once per item and ID position (``full``) against
once per distinct ID prefix with a key/value cache (``trie``), in one run.

``score_catalog(model, batch, method=...)`` computes log p(ID of item i | row) = Σ_m log p(c_m | c_<m, row) for every
item of the catalog. ``full`` runs the decoder on every item's whole ID, N·M positions per row; ``trie`` runs it level
by level over the distinct prefixes of the catalog's IDs (``IdTrie``), Σ_m n_m positions per row, each reading its
parent's cached self-attention keys and values. Both give the same numbers up to float32 rounding; this measures what
that costs.

The setting is notebooks/10_mender.py's full toy profile for seed 0: the catalog world with 400 items and 10 000 users,
all-MiniLM-L6-v2 text vectors (the packaged offline copy; ``--ids random`` skips it), an RQ-VAE with 3 levels of 16
codes trained for 300 epochs, semantic IDs with a collision digit, and a Mender-Emb generator of the notebook's size
(``RetrieverConfig()``: 128 wide, 4 heads, 2 + 2 layers, feed-forward 256), randomly initialised (the cost of scoring
does not depend on the weights). The rows are a seeded sample of 256 test rows of the recommendation axis, encoded in
batches of 64 as ``score_rows`` does, scored with ``score_catalog``'s default chunk (20 rows per decoder call). The
trie is built once, outside the timed window (its build time is reported).

Timing: for each thread count, one untimed warm-up pass per method, then ``--repeats`` passes over the 256 rows per
method, alternating which goes first; rows/s is rows over a pass's time (median pass, and the best pass, which is what
the code does when nothing else competes for the cores). Memory: each method scores the 256 rows once in a fresh
subprocess (one thread) after scoring one row (the libraries' one-off set-up) and ``malloc_trim``; "peak memory" is
that process's peak resident set (VmHWM) minus its resident set just before scoring, i.e. what scoring adds on top of
the model and the data. Agreement: the largest absolute difference of the two
methods' log p(ID), and the share of rows whose top 10 (in order) is identical.

Usage::

    python bench/bench_genret.py                     # the notebook's setting; ~1-2 min on 2 busy cores
    python bench/bench_genret.py --ids random --rows 64 --out /tmp/g.md   # smoke check, no text encoder

Results: ``bench/results/genret_scoring.md``, written atomically.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

# OpenMP threads that spin while waiting slow small CPU runs down badly when other processes compete for the cores
# (read when torch is first imported, which happens below).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from prefkit.genret import GenerativeRetriever, RetrieverConfig, RowEncoder, score_catalog  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "genret_scoring.md"
METHODS = ("full", "trie")
N_ITEMS, CODEBOOK, LEVELS, RQ_EPOCHS, N_USERS = 400, 16, 3, 300, 10_000  # notebooks/10_mender.py, full toy profile
BATCH = 64  # rows per score_catalog call, as score_rows
CHUNK = 8192  # score_catalog's default: CHUNK // N_ITEMS = 20 rows per decoder call
K = 10


def notebook_setting(seed: int, n_rows: int, ids_from: str):
    """Semantic IDs (N, 4), text width and encoded row batches of the 10_mender setting (or random ones)."""
    if ids_from == "random":  # uniform codes and random vectors: no text encoder needed
        from prefkit.rqvae import semantic_ids

        g = torch.Generator().manual_seed(seed)
        ids = semantic_ids(torch.randint(0, CODEBOOK, (N_ITEMS, LEVELS), generator=g), max_collisions=N_ITEMS)
        dim = 384
        vecs = torch.randn(N_ITEMS, dim, generator=g)
        enc = RowEncoder("emb", ids, item_vectors=vecs, text_vectors=lambda t: torch.ones(dim))
        rng = np.random.default_rng(seed)
        rows = [{"history": rng.integers(0, N_ITEMS, rng.integers(2, 21)).tolist(), "target": int(rng.integers(N_ITEMS)),
                 "preferences": [{"text": "p"}] * int(rng.integers(1, 4))} for _ in range(n_rows)]  # fmt: skip
    else:
        from prefkit.encoders import cached_features, load_encoder
        from prefkit.genret import standardize
        from prefkit.rqvae import RQVAEConfig, semantic_ids, train_rqvae
        from prefkit.worlds.catalog import CatalogWorld

        world = CatalogWorld(seed=seed, n_items=N_ITEMS, n_users=N_USERS)
        text_encoder = load_encoder("minilm", device="cpu")
        X = cached_features(text_encoder, world.item_texts, progress=False)
        texts = sorted({p["text"] for prefs in world.preferences for p in prefs})
        P = dict(zip(texts, standardize(cached_features(text_encoder, texts, progress=False), X)))
        cfg = RQVAEConfig(input_dim=text_encoder.dim, hidden_dims=(256, 128), latent_dim=32, n_levels=LEVELS,
                          codebook_size=CODEBOOK, optimizer="adam", lr=3e-3, epochs=RQ_EPOCHS, batch_size=N_ITEMS,
                          seed=seed)  # fmt: skip
        rq, _ = train_rqvae(standardize(X), cfg, progress=False)
        ids = semantic_ids(rq.encode(standardize(X)), max_collisions=N_ITEMS)
        dim = text_encoder.dim
        enc = RowEncoder("emb", ids, item_vectors=standardize(X), text_vectors=P.__getitem__)
        test = world.recommendation_rows("test")
        pick = np.sort(np.random.default_rng([seed, 1]).permutation(len(test))[:n_rows])  # as the notebook samples
        rows = [test[i] for i in pick]
    batches = [enc(rows[s : s + BATCH]) for s in range(0, len(rows), BATCH)]
    return ids, dim, batches


def score_all(model, batches, method, trie) -> torch.Tensor:
    """(rows, N) scores of every row, batch by batch."""
    return torch.cat([score_catalog(model, b, chunk=CHUNK, method=method, trie=trie) for b in batches])


def proc_status(field: str) -> int:
    """A memory field of /proc/self/status in bytes (0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def memory_worker(payload: str, method: str) -> None:
    """Child process: score the rows once with ``method`` and print the peak memory scoring adds (bytes)."""
    torch.set_num_threads(1)
    data = torch.load(payload, weights_only=False)
    model = GenerativeRetriever(data["ids"], "emb", RetrieverConfig(**data["config"]), text_dim=data["dim"]).eval()
    model.load_state_dict(data["state"])
    trie = model.id_trie()
    first = {k: v[:1] for k, v in data["batches"][0].items()}
    score_all(model, [first], method, trie)  # one row: the libraries' one-off set-up is not the method's cost
    try:  # hand freed memory back to the system, so that the peak below starts from what is really in use
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    rss0, maxrss0 = proc_status("VmRSS"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:  # "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    score_all(model, data["batches"], method, trie)
    if reset and proc_status("VmHWM"):
        print(proc_status("VmHWM") - rss0)
    else:  # ru_maxrss delta: 0 if loading peaked higher than scoring
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - maxrss0)


def timings(model, batches, trie, threads: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per pass over all rows, per method (one warm-up pass each, then alternating order)."""
    torch.set_num_threads(threads)
    for m in METHODS:
        score_all(model, batches, m, trie)
    out: dict[str, list[float]] = {m: [] for m in METHODS}
    for r in range(repeats):
        for m in METHODS if r % 2 == 0 else METHODS[::-1]:
            t = time.perf_counter()
            score_all(model, batches, m, trie)
            out[m].append(time.perf_counter() - t)
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=256, help="rows scored per pass")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts, in this order")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per method and thread count")
    ap.add_argument("--ids", choices=["world", "random"], default="world",
                    help="world: the notebook's catalog, MiniLM and RQ-VAE; random: uniform codes, random vectors")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--memory-worker", nargs=2, metavar=("PAYLOAD", "METHOD"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.memory_worker:
        return memory_worker(*a.memory_worker)

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ids, dim, batches = notebook_setting(a.seed, a.rows, a.ids)
    setup_s = time.perf_counter() - t0
    cfg = RetrieverConfig()  # the notebook's generator
    torch.manual_seed(a.seed)
    model = GenerativeRetriever(ids, "emb", cfg, text_dim=dim).eval()
    t = time.perf_counter()
    trie = model.id_trie()
    build_ms = 1e3 * (time.perf_counter() - t)
    n_rows = sum(len(b["target"]) for b in batches)
    load = [os.getloadavg()[0]]

    # agreement (one thread)
    full, tri = (score_all(model, batches, m, trie) for m in METHODS)
    max_diff = float((full - tri).abs().max())
    top_same = float((full.topk(K).indices == tri.topk(K).indices).all(-1).float().mean())
    min_gap = float(-full.topk(K + 1).values.diff(dim=-1).max())  # closest two neighbours in any row's top K + 1
    row_std = float(full.std(-1).mean())

    times = {th: timings(model, batches, trie, th, a.repeats) for th in a.threads}
    load.append(os.getloadavg()[0])

    with tempfile.TemporaryDirectory() as tmp:
        payload = str(Path(tmp) / "payload.pt")
        torch.save({"ids": ids, "dim": dim, "config": asdict(cfg), "state": model.state_dict(), "batches": batches},
                   payload)  # fmt: skip
        mem = {}
        for m in METHODS:
            cmd = [sys.executable, __file__, "--memory-worker", payload, m]
            res = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
            mem[m] = int(res.stdout.split()[-1]) / 2**20

    sizes = trie.sizes
    positions = {"full": len(ids) * ids.shape[1], "trie": sum(sizes)}
    lines = [
        "# Whole-catalog scoring: full teacher forcing vs the ID-prefix trie",
        "",
        f"Command: `{' '.join(['python', 'bench/bench_genret.py', *map(shlex.quote, sys.argv[1:])])}`",
        "",
        f"Machine: {os.cpu_count()} CPU cores ({cpu_name()}), shared with other processes; load average (1 min) "
        f"{load[0]:.2f} before and {load[1]:.2f} after the timings. torch {torch.__version__}, float32, "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        f"Setting: notebooks/10_mender.py full toy profile, seed {a.seed} (IDs: {a.ids}; set-up {setup_s:.0f} s). "
        f"{len(ids)} items, IDs of {ids.shape[1]} tokens (3 levels of {CODEBOOK} codes + a collision digit up to "
        f"{int(ids[:, -1].max())}); Mender-Emb generator `RetrieverConfig()` (d_model {cfg.d_model}, {cfg.n_heads} "
        f"heads, {cfg.enc_layers} + {cfg.dec_layers} layers, feed-forward {cfg.ff}), randomly initialised; {n_rows} "
        f"test rows in batches of {BATCH}, {CHUNK // len(ids)} rows per decoder call. Trie nodes per level {sizes}: {positions['trie']} "
        f"decoder positions per row instead of {positions['full']} (built once in {build_ms:.1f} ms, not timed). "
        f"{a.repeats} timed passes per method after one warm-up pass.",
        "",
        "| threads | method | decoder positions / row | pass (s), median | rows/s, median | rows/s, best "
        "| rows/s ratio trie / full (median) | ratio (best) | peak memory added (MiB, 1 thread) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for th, tm in times.items():
        med = {m: statistics.median(tm[m]) for m in METHODS}
        best = {m: min(tm[m]) for m in METHODS}
        for m in METHODS:
            ratio = f"{med['full'] / med['trie']:.2f}" if m == "trie" else "—"
            ratio_best = f"{best['full'] / best['trie']:.2f}" if m == "trie" else "—"
            lines.append(f"| {th} | {m} | {positions[m]} | {med[m]:.3f} | {n_rows / med[m]:.0f} | "
                         f"{n_rows / best[m]:.0f} | {ratio} | {ratio_best} | {mem[m]:.1f} |")  # fmt: skip
    lines += [
        "",
        f"Agreement (1 thread, all {n_rows} rows x {len(ids)} items): max |log p_trie(ID) − log p_full(ID)| = "
        f"{max_diff:.1e}; identical top {K} (same items, same order) in {top_same:.1%} of rows. For scale: a row's "
        f"log p(ID) spread over the catalog (std) is {row_std:.2f} on average, and the closest two consecutive "
        f"scores in any row's top {K + 1} are {min_gap:.1e} apart.",
        "",
        "Peak memory added: the scoring process's peak resident set minus its resident set just before scoring "
        "(a fresh subprocess per method, one thread, after scoring one row and `malloc_trim`).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(f".{a.out.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(a.out)


if __name__ == "__main__":
    main()

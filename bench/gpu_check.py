"""Prepare the offline GPU check (bench/gpu_check.sh): a Qwen2.5-0.5B-shaped causal LM with random weights saved to a
local folder, as a downloaded model would be, and preference rows it can read.

    python bench/gpu_check.py OUT_DIR            # OUT_DIR/qwen2.5-0.5b-shaped/ and OUT_DIR/rows.jsonl
    python bench/gpu_check.py OUT_DIR --tiny     # a small model of the same family (a CPU dry run of the script)

The tokenizer is the string world's word-level one (its ids are a few dozen, inside the model's 151,936-word
vocabulary); the rows pair each prompt's gold answer with its first step alone. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_dpo import QUICK, SHAPES, build_model  # the benchmark's Qwen2.5-0.5B shape (and its small smoke shape)


def prepare(out: Path, tiny: bool = False) -> tuple[Path, Path]:
    from prefkit.worlds import StringWorld

    world = StringWorld(n_train=256, n_eval=8)
    tok = world.tokenizer
    shape = QUICK["cuda"] if tiny else SHAPES["cuda"]  # bf16 weights, tied embeddings, as the benchmark's CUDA model
    model_dir = out / ("qwen2-tiny" if tiny else "qwen2.5-0.5b-shaped")
    build_model(shape, tok, seed=0).save_pretrained(model_dir, safe_serialization=True)
    tok.save_pretrained(model_dir)
    rows = [
        {"prompt": p, "chosen": world.gold(p), "rejected": world.gold(p).split(" |")[0]} for p in world.train_prompts
    ]
    data = out / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows if r["chosen"] != r["rejected"]))
    return model_dir, data


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args()
    model_dir, data = prepare(args.out, args.tiny)
    print(model_dir)
    print(data)

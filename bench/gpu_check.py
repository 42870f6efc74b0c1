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

QWEN25_05B = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                  intermediate_size=4864, vocab_size=151936)  # fmt: skip
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, intermediate_size=128,
            vocab_size=1000)  # fmt: skip


def prepare(out: Path, tiny: bool = False) -> tuple[Path, Path]:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from prefkit.worlds import StringWorld

    world = StringWorld(n_train=256, n_eval=8)
    tok = world.tokenizer
    cfg = Qwen2Config(**(TINY if tiny else QWEN25_05B), tie_word_embeddings=True, rope_theta=1e6, rms_norm_eps=1e-6,
                      max_position_embeddings=32768, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    model_dir = out / ("qwen2-tiny" if tiny else "qwen2.5-0.5b-shaped")
    Qwen2ForCausalLM(cfg).to(torch.bfloat16).save_pretrained(model_dir, safe_serialization=True)
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

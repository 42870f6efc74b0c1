#!/usr/bin/env bash
# The GPU check, for a CUDA machine with no internet: a locally saved Qwen2.5-0.5B-shaped model, notebook 01's hf
# profile on it in 4-bit NF4 + LoRA (smoke size), then both benchmarks (DPO and listwise, prefkit vs TRL).
#
#   bash bench/gpu_check.sh            # writes runs/gpu_check/ and bench/results/*_cuda.{json,md}
#   TINY=1 DEVICE=cpu bash bench/gpu_check.sh   # a dry run of the same steps on CPU with a tiny model
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/gpu_check}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
if [ "$DEVICE" = cuda ]; then
  $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: run with DEVICE=cpu')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
fi
mapfile -t made < <($PY bench/gpu_check.py "$OUT" ${TINY:+--tiny})
model_dir=$(realpath "${made[0]}") data=$(realpath "${made[1]}")
echo "== notebook 01_dpo, hf profile, 4-bit, on $model_dir"
$PY -m papermill -k python3 --cwd notebooks notebooks/01_dpo.ipynb "$OUT/01_dpo_hf.ipynb" \
  -p profile hf -p smoke True -p model_name "$model_dir" -p dataset "$data" -p out_dir "$(realpath "$OUT")/01_dpo_hf"
$PY -c "import json, sys; r = json.load(open(sys.argv[1])); print(r['parameters']['profile'], r['figures'])" \
  "$OUT/01_dpo_hf/result.json"
if [ "$DEVICE" = cuda ]; then
  echo "== benchmarks"
  $PY bench/bench_dpo.py --device cuda --autocast --trl-peft-config
  $PY bench/bench_listwise.py --device cuda
else
  $PY bench/bench_dpo.py --quick
fi
echo "gpu check done: $OUT"

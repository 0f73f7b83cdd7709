#!/usr/bin/env bash
# The GPU paths on a machine with CUDA, as one short run: Cycles on OPTIX and CUDA (when bpy imports there),
# DINOv2 features in bf16 on the GPU, one training epoch, and the training benchmark (step time, inference
# latency per scene and peak memory of the full-size model). Nothing downloads: the encoder is a ViT-S/14 with
# random weights unless MODEL names a saved one.
#
#   benchmarks/gpu_check.sh [VARIANT]        # VARIANT: a scene folder to encode when bpy cannot render here
#   PY=python3 OUT=out/gpu-check MODEL=/path/to/dinov2 benchmarks/gpu_check.sh
set -euo pipefail
PY=${PY:-python3}
OUT=${OUT:-out/gpu-check}
VARIANT=${1:-}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print('torch', torch.__version__)"

if "$PY" -c "import bpy" 2>/dev/null; then
    for device in OPTIX CUDA; do
        echo "== render: 2 demo scenes on $device"
        "$PY" -m generation scenes --config assets/configs/demo.toml --out "$OUT/scenes-$device" \
            --set n_scenes=2 --set "render.device='$device'"
    done
    VARIANT=${VARIANT:-$OUT/scenes-OPTIX}
else
    echo "== render: skipped, bpy does not import with $("$PY" --version) (bpy 4.5 needs Python 3.11)"
fi
[ -n "$VARIANT" ] || { echo "no scenes to encode: pass a variant folder" >&2; exit 2; }

MODEL=${MODEL:-$OUT/vit-s14}
[ -d "$MODEL" ] || "$PY" -c "import sys; from pathlib import Path; sys.path.insert(0, 'benchmarks')
from vit_s14 import save_vit_s14; save_vit_s14(Path('$MODEL'))"
echo "== features: bf16 on the GPU"
start=$SECONDS
"$PY" -m preprocessing features --variant "$VARIANT" --out "$OUT/features" --model "$MODEL" --device cuda \
    --dtype bfloat16 --no-progress
echo "features took $((SECONDS - start)) s"
echo "== train: one epoch of the demo config on the GPU"
"$PY" -m training train --config assets/configs/train_demo.toml --features "$OUT/features" --out "$OUT/run" \
    --set train.epochs=1
echo "== training benchmark: full-size model"
"$PY" benchmarks/bench_training.py --config assets/configs/train_default.toml --batch-sizes 1,4,20 \
    --speedup-batch 4 --device cuda --json "$OUT/bench_training.json"

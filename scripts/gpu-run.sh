#!/usr/bin/env bash
# A few minutes on one GPU machine, used well: one training run of at most 9 minutes with the
# data rendered on that machine's CPU cores, then the test suite and a command-line timing
# with --device cuda and --half. Everything it makes lands in $OUT (default: ./gpu-out).
#
#   DATA=.gpu-data bash scripts/gpu-run.sh      # DATA: a folder with the sharp training photos
#
# The run starts from the shipped weights at their width, so the result is a drop-in
# candidate that keeps today's inference cost; it trains with the recipe of the best CPU
# pilot (map term 0.3, soft-source targets, clipped highlights, strong blur more often) at
# a GPU batch size and stops cleanly at its deadline (`--time-limit`), writing its
# weights. Evaluate the weights on the CPU afterwards like any other candidate:
# `nrkdeblur eval benchmarks/*/`.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
DATA=${DATA:-.gpu-data}
MINUTES=${MINUTES:-8}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q -e '.[test]' 2>&1 | tail -2 || true
python3 - <<'PY' | tee "$OUT/gpu.txt"
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
PY
workers=$(( $(nproc) - 2 ))
python3 -m nrkdeblur train --run-dir "$OUT/run" --init weights/nrkdeblur-cpu.safetensors --width 32 \
    --reblur-weight 0 --fft-weight 0 --log-mse --radius-weight 0.3 --soft-source 0.3 --radius-power 1.2 --highlights 0.3 \
    --crop 256 --batch-size 32 --lr 1e-4 --steps 20000 --workers "$workers" --device cuda \
    --photos "$DATA" --holdout benchmarks/out-of-recipe/sources.txt --holdout benchmarks/natural-dof/sources.txt \
    --val benchmarks/kodak24-defocus --val-every 500 --ckpt-every 500 --time-limit "$MINUTES" \
    2>&1 | tee "$OUT/train.log"
rm -f "$OUT/run/checkpoint.pt"  # the weights and history come back; the resume state is too big to carry
python3 -m pytest -q -x 2>&1 | tail -5 | tee "$OUT/tests.txt"
python3 - <<'PY'
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
Image.fromarray(rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)).save("/tmp/photo12mp.jpg", quality=92)
PY
for flags in "--device cuda" "--device cuda --half"; do
    /usr/bin/time -f "$flags: %e s, %M KB" python3 -m nrkdeblur /tmp/photo12mp.jpg -o /tmp/out.jpg --overwrite $flags 2>&1 \
        | tail -1 | tee -a "$OUT/cli-timing.txt"
done

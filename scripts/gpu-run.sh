#!/usr/bin/env bash
# Ten minutes on one GPU machine, used well: two training runs side by side on the one GPU,
# a pilot and its control that differ only in their renderer (recipes/camera-lens.toml,
# recipes/camera-lens-control.toml), each with half the machine's CPU cores rendering its
# data, stopped cleanly at a deadline (`--time-limit`); then the GPU checks of
# scripts/gpu-checks.py. Everything comes back in $OUT (default ./gpu-out) as three files.
#
#   DATA=.gpu-data bash scripts/gpu-run.sh   # DATA: SunHays80/, Urban100_subset/, McMaster/, Set14/
#
# The runs start from the shipped weights at their width, so either result is a drop-in
# candidate at today's inference cost. Evaluate them on the CPU afterwards like any other
# candidate (`nrkdeblur eval benchmarks/*/ --weights FILE`).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
DATA=${DATA:-.gpu-data}
MINUTES=${MINUTES:-5.5}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD OMP_NUM_THREADS=1
workers=$(( ($(nproc) - 2) / 2 ))
photos=()
for d in SunHays80 Urban100_subset McMaster Set14; do photos+=(--photos "$DATA/$d"); done
for run in camera-lens camera-lens-control; do
    python3 -m nrkdeblur train --recipe "recipes/$run.toml" --run-dir "$OUT/$run" "${photos[@]}" \
        --workers "$workers" --device cuda --time-limit "$MINUTES" > "$OUT/$run.log" 2>&1 &
done
wait || true
for run in camera-lens camera-lens-control; do  # the resume state is too big to carry back
    rm -f "$OUT/$run/checkpoint.pt"
    tar -cf "$OUT/$run.tar" -C "$OUT" "$run" "$run.log" && rm -rf "${OUT:?}/$run" "$OUT/$run.log"
done
timeout 150 python3 scripts/gpu-checks.py benchmarks/kodak24-defocus/sharp/kodim05.png 2>&1 | tee "$OUT/checks.txt" || true

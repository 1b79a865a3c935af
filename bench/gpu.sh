#!/usr/bin/env bash
# The GPU bench, sized for a short GPU window (about 5 minutes on one GPU):
#   1. the gpu-marked tests (every command on CUDA; tests/cli/test_gpu.py),
#   2. fern (factor 8) and lego (--half-res) for 90 s each: our default model (TensoRF, time
#      schedule over the 90 s) and the classic model (--model nerf, nerf-pytorch's arithmetic,
#      its step schedule cut at 90 s) side by side,
#   3. one table: held-out PSNR at 30, 60 and 90 s, it/s, peak VRAM, the 120-frame path time,
#      and our/classic ratios (bench/gpu_table.py; also written to $OUT/table.md).
#
# Four 90 s runs do not fit in 5 minutes one after another, so by default each scene's two
# models train at the same time on the one GPU (two processes; the GPU time-slices between
# them, so absolute it/s and PSNR-at-time are lower than alone, and the table says so).
# SERIAL=1 runs them one after another, each alone on the GPU (about 8-9 minutes).
#
#   bench/gpu.sh                      # ~5 min
#   SERIAL=1 bench/gpu.sh             # exclusive-GPU numbers, ~9 min
#   BENCH_SECONDS=60 bench/gpu.sh     # shorter runs (marks at 1/3, 2/3 and all of it)
#
# Environment: PY (default .venv/bin/python), OUT (default bench/results/gpu), BENCH_SECONDS
# (default 90), SERIAL (0), SKIP_TESTS (0). Exits 0 with a `skip:` line when there is no GPU;
# non-zero when a test or a run failed (the table is still printed for what finished).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results/gpu}
RUN_SECONDS=${BENCH_SECONDS:-90}
SERIAL=${SERIAL:-0}
started=$(date +%s)
status=0

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "skip: no CUDA GPU here (bench/gpu.sh needs one)"
    exit 0
fi
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

if [ "${SKIP_TESTS:-0}" != 1 ]; then
    echo "== gpu tests"
    if ! timeout 240 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests -W ignore; then
        echo "gpu tests FAILED (the bench runs anyway)"
        status=1
    fi
fi

minutes=$("$PY" -c "print($RUN_SECONDS / 60)")
marks=$("$PY" -c "s = $RUN_SECONDS / 60; print(f'{s/3:.4g},{2*s/3:.4g},{s:.4g}')")

# one run: bench.<scene> through the one training path; classic with its step schedule and
# 12 timed path frames (the table scales them to 120)
run() {
    local scene=$1 model=$2
    local extra=()
    if [ "$model" = nerf ]; then
        extra=(--set train.schedule=steps --render-frames 12)
    else
        extra=(--render-frames 120)
    fi
    if [ "$scene" = lego ]; then
        extra+=(--eval-downscale 2)  # 25 test views at 200 x 200: the classic model's evals fit
    fi
    "$PY" -m "bench.$scene" --device cuda --model "$model" --minutes "$minutes" --marks "$marks" \
        "${extra[@]}" --out "$OUT/${scene}_${model}" > "$OUT/${scene}_${model}.log" 2>&1
    local code=$?
    tail -n 3 "$OUT/${scene}_${model}.log" | sed "s/^/[$scene $model] /"
    return $code
}

for scene in fern lego; do
    echo "== $scene: tensorf and nerf, ${RUN_SECONDS} s each ($([ "$SERIAL" = 1 ] && echo one after another || echo at the same time))"
    if [ "$SERIAL" = 1 ]; then
        run "$scene" tensorf || status=1
        run "$scene" nerf || status=1
    else
        run "$scene" tensorf & first=$!
        run "$scene" nerf & second=$!
        wait $first || status=1
        wait $second || status=1
    fi
done

mode=$([ "$SERIAL" = 1 ] && echo serial || echo shared)
"$PY" -m bench.gpu_table "$OUT" --mode "$mode" --seconds "$RUN_SECONDS" | tee "$OUT/table.md"
echo "bench/gpu.sh: $(( $(date +%s) - started )) s in all; results in $OUT"
exit $status

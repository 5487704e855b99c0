#!/usr/bin/env bash
# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
#
# Every GPU measurement of issue 18 and the CUDA-only tests, as one prepared run on a lent GPU machine.
#
#   bash benchmarks/gpu_checks.sh wheels       here: download into .whl/ (git-ignored) the wheels that the GPU
#                                              machine's Python 3.12 lacks: draccus and its needs, bitsandbytes
#   bash benchmarks/gpu_checks.sh run OUTDIR   there (the device tool with carry [".whl"] and OUTDIR = $OUT):
#                                              install .whl into /tmp/site, then run each check below under its
#                                              own time limit (9.25 minutes at most in all), its log in
#                                              OUTDIR/<check>.log; exit status 1 when a check failed (each
#                                              one runs all the same)
#   SIGMA_GPU_CHECKS_SMOKE=1 bash benchmarks/gpu_checks.sh run OUTDIR
#                                              the same checks, tiny, on this CPU (sigma_sim/tests/test_gpu_checks.py)
# SIGMA_GPU_CHECKS_ONLY=bench_model,bench_train runs only those checks (a rerun of the ones a first run cut);
# SIGMA_GPU_CHECKS_DEVICE overrides the device (cuda; cpu in smoke mode); PYTHON the interpreter (python3).
#
# The checks, most important first (a check past its limit is cut and the next one runs):
#   env            python, torch, the GPU, the commit
#   test_cuda      python -m pytest sigma_model/tests/test_cuda.py test_cuda_graph.py (bf16 and 4-bit training,
#                  GPU <-> CPU checkpoints, the step replayed from a CUDA graph against the eager one)
#   bench_model    the stages and the whole step at batch 1 (issue 18.2: at most 3 ms), shipped config, random weights
#   bench_train    training samples/s of the default config at batch 128, 512 and 2048 in bf16 (18.3: at least 10,000)
#   bench_scaling  latency and training throughput against batch, image size and trajectory length (18.5)
# The shipped config runs with text_encoder null: the text encoder's output is cached per instruction, so it is not
# part of a step, and its weights (88 MB) would not travel with the working tree.
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=(draccus==0.10.0 mergedeep==1.3.4 pyyaml-include==1.4.1 toml==0.10.2 bitsandbytes==0.50.2)

fetch_wheels() {
    mkdir -p .whl
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
}

# check NAME SECONDS COMMAND...: run COMMAND with its output in $out/NAME.log and a status line on stdout
failed=()
check() {
    local name=$1 limit=$2 rc
    shift 2
    if [ -n "${SIGMA_GPU_CHECKS_ONLY:-}" ] && [[ ",$SIGMA_GPU_CHECKS_ONLY," != *",${name%_b[0-9]*},"* ]]; then
        return 0
    fi
    echo "== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    tail -n 25 "$out/$name.log"
    echo "== $name: exit $rc$([ $rc -eq 124 ] && echo ' (cut at its time limit)')"
    [ $rc -eq 0 ] || failed+=("$name")
}

run_checks() {
    out=${1:?usage: gpu_checks.sh run OUTDIR}
    mkdir -p "$out"
    local python=${PYTHON:-python3}
    if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
        "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl || { echo "installing .whl failed"; exit 1; }
        export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
    fi
    export PYTHONPATH=$PWD/sigma_model:$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
    local device=cuda iters=50 train=(--steps=10 --warmup=3) batches=(128 512 2048) scaling=()
    if [ -n "${SIGMA_GPU_CHECKS_SMOKE:-}" ]; then
        device=cpu iters=2 train=(--steps=1 --warmup=0 --threads=1) batches=(2)
        scaling=(--iters=1 --train_steps=1 "--batches=[1]" "--train_batches=[2]" "--image_sizes=[64]" "--traj_lens=[8]")
    fi
    device=${SIGMA_GPU_CHECKS_DEVICE:-$device}
    local config  # beside the logs, not among them: a device run brings back at most 8 files
    config=$(mktemp -d)/sigma_shipped_config.json
    "$python" - "$config" <<'EOF' || { echo "writing the config failed"; exit 1; }
import dataclasses, sys
from sigma_model import SigmaConfig
shipped = SigmaConfig.load("checkpoints/sigma_so101_default/config.json")
dataclasses.replace(shipped, text_encoder=None).save(sys.argv[1])
EOF
    check env 30 bash -c "$python -c 'import sys, torch; print(sys.version); print(\"torch\", torch.__version__, \
\"cuda\", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else \"\")'; \
nvidia-smi -L 2>/dev/null; git rev-parse HEAD 2>/dev/null || echo 'commit: not a git checkout'"
    check test_cuda 150 "$python" -m pytest -q -p no:cacheprovider sigma_model/tests/test_cuda.py \
        sigma_model/tests/test_cuda_graph.py
    check bench_model 120 "$python" benchmarks/bench_model.py --config="$config" --device=$device --iters=$iters
    local b
    for b in "${batches[@]}"; do
        check "bench_train_b$b" 45 "$python" benchmarks/bench_train.py --device=$device --batch_size="$b" \
            --mixed_precision=$([ $device = cuda ] && echo bf16 || echo no) "${train[@]}"
    done
    check bench_scaling 120 "$python" benchmarks/bench_scaling.py --config="$config" --device=$device "${scaling[@]}"
    if [ ${#failed[@]} -gt 0 ]; then
        echo "failed: ${failed[*]} (logs in $out)"
        return 1
    fi
    echo "every check passed (logs in $out)"
}

case "${1:-}" in
    wheels) fetch_wheels ;;
    run) shift; run_checks "$@" || exit 1 ;;
    *) echo "usage: bash benchmarks/gpu_checks.sh wheels | run OUTDIR" >&2; exit 2 ;;
esac

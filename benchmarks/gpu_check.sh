#!/usr/bin/env bash
# The one prepared check for a machine with a CUDA GPU, torch and triton >= 3.4 (see CONTRIBUTING.md,
# "GPU checks on a CUDA machine"). From the repository root, with wheels of any packages the machine
# lacks in .whl/:
#
#     OUT=/some/dir GIT_SHA=$(git rev-parse HEAD) bash benchmarks/gpu_check.sh
#
# Without CUDA it says so, checks the benchmark script on the Triton interpreter and exits 2.
# Steps, each bounded by `timeout`; a failing step never stops the ones after it:
#   1. install the wheels in .whl/ (packages that machine lacks) into /tmp/site
#   2. in the background: compile the benchmark's Triton kernels (and the largest test rows) in
#      parallel processes, so that the compile time overlaps the steps below
#   3. build the C++ extension in place, if setup.py exists
#   4. the GPU tests: pytest -m gpu           -> $OUT/gpu-tests.log
#   5. the benchmark: benchmarks/bench_gpu.py -> $OUT/gpu-results.json (fcinterp_fast.bench's
#      common JSON layout, rewritten after every measurement) and its table $OUT/gpu-results.md:
#      the sort kernels on every head, the counting kernel of 16-bit heads (issue 15: ratio to one
#      HBM read of the head, scratch memory against 10% of the head), torch.sort, the torch backend
# Everything printed also goes to $OUT/gpu-check.log. The whole script ends within 6 minutes.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/benchmarks/results}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu-check.log") 2>&1

T0=$(date +%s)
LIMIT=345  # seconds for the whole script, leaving margin under 6 minutes
elapsed() { echo $(($(date +%s) - T0)); }
left() { echo $((LIMIT - $(elapsed))); }
# step NAME SECONDS COMMAND...: run with a time limit, report, never fail the script
step() {
    local name=$1 limit=$2
    shift 2
    if [ "$limit" -le 5 ]; then
        echo "== [$(elapsed)s] $name: skipped, no time left"
        return 0
    fi
    echo "== [$(elapsed)s] $name (limit ${limit}s)"
    timeout --kill-after=5 "$limit" "$@"
    local rc=$?
    echo "== [$(elapsed)s] $name: exit $rc"
    return 0
}
min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }

export GIT_SHA=${GIT_SHA:-$(git rev-parse --verify -q HEAD 2>/dev/null || echo unknown)}
export PYTHONUNBUFFERED=1
echo "== gpu_check on $(hostname), git $GIT_SHA, $(date -u +%FT%TZ)"
nvidia-smi -L 2>&1 | head -n 4
python3 -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.cuda.is_available())"

# 1. wheels
if compgen -G ".whl/*.whl" >/dev/null; then
    step "install wheels" 40 python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD

# Without a CUDA device nothing can be measured: say so, check the benchmark's plumbing on the
# Triton interpreter (tiny heads, CPU timings that mean nothing) and exit 2, so that no one takes
# the run for a measurement.
if ! python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "== NO CUDA DEVICE: nothing measured. The gpu tests would all skip and the benchmark needs CUDA."
    echo "== Checking the benchmark script on the Triton interpreter instead -> $OUT/dry-run/ (not GPU results)"
    step "benchmark dry run" 240 env TRITON_INTERPRET=1 PYTHONWARNINGS=ignore \
        python3 benchmarks/bench_gpu.py --dry-run --out "$OUT/dry-run" --budget 60
    echo "== [$(elapsed)s] NOT MEASURED: run benchmarks/gpu_check.sh on a machine with a CUDA GPU"
    exit 2
fi

# 2. compile in the background (Triton's on-disk cache is shared by every later step)
step "precompile kernels" 240 python3 benchmarks/bench_gpu.py --compile-only --jobs 6 --precompile 6x16384:float32 &
PRECOMPILE=$!

# 3. C++ extension
if [ -f setup.py ]; then
    step "build extension" 90 python3 setup.py build_ext --inplace
fi

# 4. GPU tests
PYTEST_ARGS=(-m gpu -q -x -p no:cacheprovider)
python3 -c "import xdist" 2>/dev/null && PYTEST_ARGS+=(-n 8)
python3 -c "import pytest_timeout" 2>/dev/null && PYTEST_ARGS+=(--timeout 200)
step "gpu tests" "$(min 190 $(($(left) - 120)))" \
    bash -c 'python3 -m pytest "$@" tests > "$0/gpu-tests.log" 2>&1; rc=$?; tail -n 30 "$0/gpu-tests.log"; exit $rc' \
    "$OUT" "${PYTEST_ARGS[@]}"

# 5. benchmark (after the background compile, which is bounded by its own limit)
wait "$PRECOMPILE"
BUDGET=$(($(left) - 40))
step "benchmark" "$(($(left) - 5))" python3 benchmarks/bench_gpu.py --out "$OUT" --budget "$BUDGET"

echo "== [$(elapsed)s] done; results in $OUT"
ls -l "$OUT"

#!/usr/bin/env bash
# The GPU checks of the native CUDA kernels in one command, sized for a short
# device lease (about 5-8 minutes on a 16-core GPU machine, most of it the
# CUDA build):
#   1. build the CUDA extension (JIT, cached in $LANGFIELD_CACHE);
#   2. the CUDA parity tests on the GPU (tests/render/test_native_cuda.py,
#      the "gpu" target; the "emu" target is left to CI);
#   3. scripts/bench_rasterizer.py without the (slow) torch reference.
# It runs from a checkout with the machine's own python3 (which must have torch
# with CUDA, numpy and pytest); nothing is installed.  Results go to $OUT
# (default /tmp/langfield-gpu): build.json, cuda_tests.txt, bench.json.
# Exit status: non-zero when the build or a test fails.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export LANGFIELD_CACHE="${LANGFIELD_CACHE:-/tmp/langfield-cache}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
OUT="${OUT:-/tmp/langfield-gpu}"
mkdir -p "$OUT"
py="${PYTHON:-python3}"

echo "check_gpu: building the CUDA kernels"
"$py" - <<'EOF' | tee "$OUT/build.json"
import json, time, torch
from langfield.render import native
t0 = time.time()
ok = native.available("cuda")
print(json.dumps({
    "torch": torch.__version__, "cuda": torch.version.cuda,
    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    "built": ok, "error": native.build_error("cuda"), "seconds": round(time.time() - t0, 1),
}))
raise SystemExit(0 if ok else 1)
EOF
[[ ${PIPESTATUS[0]} -eq 0 ]] || { echo "check_gpu: CUDA build failed" >&2; exit 1; }

echo "check_gpu: CUDA parity tests"
"$py" -m pytest tests/render/test_native_cuda.py -k gpu -q -p no:cacheprovider 2>&1 | tee "$OUT/cuda_tests.txt"
tests_rc=${PIPESTATUS[0]}

echo "check_gpu: benchmark (no torch reference)"
"$py" scripts/bench_rasterizer.py --skip-reference-above 0 --no-gsplat --interleaved-rounds 0 >"$OUT/bench.json" \
    2>"$OUT/bench.log"
bench_rc=$?
tail -n 40 "$OUT/bench.json"
echo "check_gpu: tests rc=$tests_rc, bench rc=$bench_rc; results in $OUT"
[[ $tests_rc -eq 0 && $bench_rc -eq 0 ]]

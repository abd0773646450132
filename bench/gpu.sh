#!/usr/bin/env bash
# The GPU check behind docs/benchmarks.md's GPU section, for a machine with an NVIDIA GPU whose
# Python environment has onnxruntime-gpu and imgest installed, e.g.
#   .venv/bin/pip uninstall -y onnxruntime && .venv/bin/pip install 'onnxruntime-gpu[cuda,cudnn]'
# It runs tests/jobs/test_gpu.py with IMGEST_REQUIRE_GPU=1 (a missing GPU or CUDA provider fails
# them instead of skipping them), then bench/gpu.py with the arguments given (also after a test
# failure, so the numbers come back with it); it exits non-zero if either failed.
# Usage: [PYTHON=python3] bench/gpu.sh [--images N] [--json FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export ORT_DISABLE_TELEMETRY=1
"$PY" -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())'
tests=0
# -W default: warnings are shown, not raised as in CI; the GPU machine's Python packages are
# whatever its image has, and a newer one's deprecation notice is not what this checks.
IMGEST_REQUIRE_GPU=1 "$PY" -m pytest -p no:cacheprovider -q -W default tests/jobs/test_gpu.py ||
    tests=$?
"$PY" bench/gpu.py "$@"
exit "$tests"

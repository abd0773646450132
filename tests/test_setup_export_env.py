"""scripts/setup_export_env.sh on a machine without the torch==2.13.0+cpu wheel.

`auto` (the default) skips the model-export check with a written reason, `cpu` (CI) fails,
and an unknown mode is refused, all without downloading anything: pip sees no index and no
wheel folder here (PIP_NO_INDEX, no config files).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "setup_export_env.sh"


def run_setup(root: Path, mode: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PYTHON=sys.executable)
    env.pop("IMGEST_EXPORT_TORCH", None)
    if mode is not None:
        env["IMGEST_EXPORT_TORCH"] = mode
    return subprocess.run(
        ["bash", str(root / "scripts" / SCRIPT.name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_the_cpu_wheel_auto_skips_with_a_reason_and_cpu_fails(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / SCRIPT.name)
    venv = tmp_path / ".venv-export"

    auto = run_setup(tmp_path, None)

    assert auto.returncode == 0, auto.stderr
    assert "model-export check skipped" in auto.stderr
    reason = (venv / ".skipped").read_text(encoding="utf-8")
    assert "no torch==2.13.0+cpu wheel" in reason
    assert "IMGEST_EXPORT_TORCH=pypi" in reason
    assert not (venv / ".ready").exists()

    cpu = run_setup(tmp_path, "cpu")

    assert cpu.returncode == 1
    assert "IMGEST_EXPORT_TORCH=cpu requires it" in cpu.stderr
    assert not (venv / ".ready").exists()

    bad = run_setup(tmp_path, "cuda")

    assert bad.returncode == 2
    assert "auto, cpu or pypi" in bad.stderr

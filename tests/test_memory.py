"""The malloc settings `imgest serve` applies: accepted by glibc, no-ops when zero."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from imgest.memory import tune_malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_defaults() -> None:
    # In a child process: the settings would otherwise stay on for the rest of the test run.
    code = (
        "from imgest.memory import tune_malloc; "
        "print(tune_malloc(arena_max=2, mmap_threshold=1024 * 1024))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_zero_changes_nothing() -> None:
    assert tune_malloc(arena_max=0, mmap_threshold=0) is True

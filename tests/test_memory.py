"""The malloc settings `imgest serve` applies: accepted by glibc, no-ops when zero."""

from __future__ import annotations

import platform

import pytest

from imgest.memory import tune_malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_defaults() -> None:
    assert tune_malloc(arena_max=2, mmap_threshold=1024 * 1024) is True


def test_zero_changes_nothing() -> None:
    assert tune_malloc(arena_max=0, mmap_threshold=0) is True

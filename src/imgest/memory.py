"""glibc malloc settings for the server process: fewer arenas, optionally big buffers unmapped.

A 12 MP upload passes through several multi-megabyte buffers (the body, the decoder's output)
on many worker threads. With glibc's defaults every thread may get its own arena (up to 8 per
core) that keeps freed memory; `malloc_arena_max` (2 by default) caps them. A fixed
`malloc_mmap_threshold` gives every big buffer its own mapping, returned to the OS when freed:
lower peak RSS, but each buffer's pages are faulted in afresh. It is off by default (0: glibc's
dynamic threshold) since the faults cost more than the memory saves (docs/benchmarks.md,
tuning log: duplicate 12 MP uploads 124 -> 157/s for about 11 MB more peak RSS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# mallopt() parameter numbers from glibc's <malloc.h>.
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def tune_malloc(*, arena_max: int, mmap_threshold: int) -> bool:
    """Apply the settings (0 leaves a glibc default); False where libc has no mallopt (musl)."""
    if not arena_max and not mmap_threshold:
        return True
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        log.info("no glibc mallopt here; malloc settings left as they are")
        return False
    ok = True
    if arena_max:
        ok &= mallopt(M_ARENA_MAX, arena_max) == 1
    if mmap_threshold:
        # A fixed threshold also switches off glibc's dynamic raising of it.
        ok &= mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1
    return bool(ok)

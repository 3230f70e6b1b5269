"""Keep freed memory for reuse, so that receiving an image costs copies and not page faults.

glibc serves allocations over its mmap threshold (at most 32 MiB) with fresh pages and returns them on free: every
50 MB response (4 FP32 images of 1024²) then faults in 12,000 pages, per copy, in the tester (BENCHMARKS.md, the
payload section's heap-reuse rows). The cost: the process keeps up to TRIM_THRESHOLD of freed memory instead of
returning it to the system. FLUX_ASYNC_MALLOC=default opts out.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
TRIM_THRESHOLD = 2**30


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and keep up to 1 GiB freed (glibc only); whether it was applied."""
    if os.environ.get("FLUX_ASYNC_MALLOC", "reuse") == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols, libc's among them (find_library would spawn ldconfig)
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False

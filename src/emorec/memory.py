"""Large freed buffers go back to the operating system (glibc only; elsewhere nothing changes).

Why: a long recording's timeline allocates and frees thousands of arrays of a few hundred kB to a
few MB, each a different size (waveform windows, spectrograms). glibc raises its mmap threshold each
time such a block is freed, after which they come from the heap and fragment it, and resident memory
grows with the recording's length. With a fixed 1 MiB threshold, ``benchmarks/use_speed.py`` finds
the same peak for one hour as for ten minutes. The setting is process-wide and the same as starting
Python with ``MALLOC_MMAP_THRESHOLD_=1048576 MALLOC_TRIM_THRESHOLD_=1048576``; where either variable
is set, the caller's choice stands.
"""

from __future__ import annotations

import ctypes
import os
import sys
from functools import lru_cache

_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 20


@lru_cache(maxsize=1)
def release_large_blocks() -> bool:
    """Fix glibc's mmap and trim thresholds at 1 MiB once per process; ``True`` where it did."""
    if not sys.platform.startswith("linux") or any(
        name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, THRESHOLD)
    )

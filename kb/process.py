"""Process-wide tuning applied once by every `kb` command, before torch and ONNX Runtime load.

- glibc's malloc raises its mmap threshold each time a large block is freed, so later large
  temporaries (a prompt's attention scores, a batch's activations) come from heap arenas that never
  shrink. With many request threads the server's memory then creeps up under load (bench/load.py:
  +100 to +260 MB/min); pinning the threshold at glibc's default keeps it flat (-6 MB/min, and
  ~200 MB less). `MALLOC_MMAP_THRESHOLD_` in the environment wins.
- OpenMP threads spin only briefly before they sleep while they wait: importing kb sets `GOMP_SPINCOUNT`
  (kb/__init__.py), since it must come before torch or llama.cpp loads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value; setting it turns the dynamic raising off


def pin_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold; False where the C library is not glibc or the environment already set it."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # musl, macOS: no mallopt, nothing to pin
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def tune_process() -> None:
    """Apply the tuning above; safe to call more than once."""
    if not pin_mmap_threshold():
        log.debug("malloc's mmap threshold left as it is")

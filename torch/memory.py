"""Process tuning for work on large arrays and many short-lived objects.

Keep freed memory for reuse instead of handing it back to the system.

A crime-scene answer works on arrays of millions of fixes. glibc serves such
blocks with fresh mappings and returns them on free, so every answer paid for
faulting tens of megabytes of new pages in (measured here: 4.5 ns a byte, about
half the time of a 24-hour answer). Raising the mapping and trimming thresholds
lets the process reuse the pages it has touched once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD = 32 * 2**20  # glibc's largest mapping threshold on 64-bit machines
TRIM = 512 * 2**20  # keep up to this much free memory at the top of the heap


def keep_freed_memory() -> bool:
    """Tune glibc's allocator for this process; False where it is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM))


def collect_less() -> None:
    """Run the cycle collector less often, and never over what exists at start-up.

    An answer or an ingest batch makes tens of thousands of short-lived objects; the
    default thresholds ran the collector every 700 allocations, which took a tenth of
    the worker's time, and a full collection during an answer for 2,000 subjects added
    35 ms to it. Nothing on those paths builds reference cycles (paho's per-topic lookup
    did, one per message: ingest.worker.NoTopicCallbacks).
    """
    gc.set_threshold(100_000, 20, 20)
    gc.freeze()

"""What the process has and what a run cost it: its CPU cores, its peak resident
memory; and a way to give freed memory back to the OS between stages.

Linux keeps a process's peak resident set (``VmHWM`` in ``/proc/self/status``)
and lets the process reset it (writing ``5`` to ``/proc/self/clear_refs``), so
each run of a benchmark can report its own peak even when runs share a
process. Elsewhere the peak is ``ru_maxrss``, which never goes down: then a
run's figure is the process's peak so far, and the method says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from functools import cache
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def reset_peak_memory() -> bool:
    """Start a new peak (Linux); whether the next reading covers only what follows."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_memory() -> tuple[int | None, str]:
    """``(bytes, method)``: the peak resident memory and how it was read
    (``"VmHWM"`` since the last reset, ``"ru_maxrss"`` over the process's life)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024, "VmHWM"
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None, "unavailable"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak if sys.platform == "darwin" else peak * 1024), "ru_maxrss"


@cache
def _libc(name: str):
    """A function of glibc (``malloc_trim``, ``mallopt``), or ``None`` where the C
    library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return getattr(libc, name)
    except (OSError, AttributeError):
        return None


#: ``mallopt``'s parameter for the most arenas (glibc's ``M_ARENA_MAX``).
_M_ARENA_MAX = -8
#: ``mallopt``'s parameter for the size from which blocks are mapped (``M_MMAP_THRESHOLD``).
_M_MMAP_THRESHOLD = -3
#: ``mallopt``'s parameter for the free memory atop the heap kept (``M_TRIM_THRESHOLD``).
_M_TRIM_THRESHOLD = -1
#: Blocks from this size are mapped from the OS and given back when freed.
MAP_FROM_BYTES = 1 << 20
#: Free memory atop the heap kept for the next blocks (below :data:`MAP_FROM_BYTES`).
KEEP_ATOP_BYTES = 16 << 20


def share_allocator_arena() -> bool:
    """Have every thread allocate from one arena (glibc); whether it could be set.

    By default each thread that allocates gets arenas of its own, and what a
    thread frees there stays in its arenas: two counting threads that grow and
    drop tables of tens of MB leave a hundred MB or more resident that the
    process no longer uses (measured: 470 against 393 MB peak, counting 50 MB of
    text). The command line calls it first thing; threads started before it
    keep their arenas. Large allocations are not slowed by sharing one.

    It also fixes the size from which a block is mapped from the OS (and
    unmapped when freed) at :data:`MAP_FROM_BYTES`. glibc raises that size to
    that of each mapped block freed, up to 32 MB, so that after the first large
    array is dropped, arrays of up to 32 MB come from the heap, where a freed one
    stays resident until a block of its size is asked for again: the counting
    tables of 100 MB of words, grown a step at a time, left ~90 MB so (peak 808
    against 709 MiB). Fixing it also fixes how much free memory atop the heap
    is kept (glibc's default, 128 KB, would hand back and fault in again the
    temporaries of every slice that scoring works on: 35 % slower scoring);
    :func:`release_memory` hands all of it back between stages.
    """
    mallopt = _libc("mallopt")
    if mallopt is None:
        return False
    return (
        bool(mallopt(_M_ARENA_MAX, 1))
        and bool(mallopt(_M_MMAP_THRESHOLD, MAP_FROM_BYTES))
        and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_ATOP_BYTES))
    )


def release_memory() -> bool:
    """Hand the memory freed so far back to the OS; whether it could be.

    C's allocator (glibc's) keeps freed blocks of up to 32 MB for reuse, so
    after a stage that made and dropped large arrays (counting, say) the
    process still holds hundreds of MB it no longer uses, and the next stage's
    peak stacks on top. Call it between stages that free much of what they
    made; it costs a few milliseconds.
    """
    trim = _libc("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True

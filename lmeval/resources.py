"""What the process has and what a run cost it: its CPU cores, its peak resident memory.

Linux keeps a process's peak resident set (``VmHWM`` in ``/proc/self/status``)
and lets the process reset it (writing ``5`` to ``/proc/self/clear_refs``), so
each run of a benchmark can report its own peak even when runs share a
process. Elsewhere the peak is ``ru_maxrss``, which never goes down: then a
run's figure is the process's peak so far, and the method says so.
"""

from __future__ import annotations

import os
import sys
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

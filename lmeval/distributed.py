"""Which process this is under ``torchrun``: its rank and the number of processes.

``torchrun --nproc-per-node N -m lmeval compare ...`` starts N copies of lmeval
with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment (the
standard names torch's launcher sets). Rank 0 does the whole comparison; the
other ranks only help train the models that declare ``distributed = True``.
Read from the environment, so the core needs no torch to know it.
"""

from __future__ import annotations

import os


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        return default


def world_size() -> int:
    """How many processes train together (1 when not started by torchrun)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def rank() -> int:
    """This process's global rank, 0 to ``world_size() - 1`` (0 when alone)."""
    return _env_int("RANK", 0) if world_size() > 1 else 0


def local_rank() -> int:
    """This process's rank on its host (which GPU it takes)."""
    return _env_int("LOCAL_RANK", 0) if world_size() > 1 else 0


def is_main_process() -> bool:
    """Rank 0: the process that scores, verifies and writes the results."""
    return rank() == 0

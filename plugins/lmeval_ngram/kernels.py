"""Compiled loops for counting n-grams at scale, when numba is installed.

Counting the n-grams of a 50 MB text means touching 50 million positions a
few times each. Vectorised numpy needs several full passes per order (keys,
sorts, gathers), and at that size each pass costs about a second; a compiled
loop that reads each position's window once and counts it in a hash table, as
KenLM's ``lmplz`` does, costs a few seconds in all. numba (an optional extra,
``lmeval[fast]``) compiles these loops; without it :mod:`.counting` uses its
numpy paths, which give the same counts (a test holds the two together).

Compiled once per input type and cached beside this file (or in numba's user
cache folder when that is read-only), so a later process starts at once.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from types import ModuleType

#: Tokens from which counting is compiled: below, numpy is quicker than starting
#: numba (about 0.35 s a process, with its compiled code cached). Numpy's mixed-radix
#: path (small vocabularies and orders) stays quick up to about five million.
FROM_TOKENS = 1_000_000
FROM_TOKENS_MIXED = 5_000_000


def wanted(tokens: int, mixed: bool = False) -> bool:
    """Whether to count ``tokens`` tokens with the compiled loops (``mixed``: numpy's
    quick mixed-radix path would do): numba importable (imported only now, so
    ``lmeval --help`` does not pay for it) and the text large enough, unless
    ``LMEVAL_NUMBA`` says otherwise: ``0`` never (to compare, or to get around a
    numba that misbehaves), ``1`` whatever the size."""
    setting = os.environ.get("LMEVAL_NUMBA", "auto")
    least = FROM_TOKENS_MIXED if mixed else FROM_TOKENS
    if setting != "1" and tokens < least:
        return False
    return usable()


def usable() -> bool:
    """Whether the compiled loops can be used: numba importable, and not turned off
    (``LMEVAL_NUMBA=0``). Chunks of a text too large to hold are counted with them."""
    return os.environ.get("LMEVAL_NUMBA", "auto") != "0" and compiled() is not None


def loaded() -> bool:
    """Whether the compiled loops are loaded in this process already (then using
    them costs nothing more), and not turned off."""
    return (
        os.environ.get("LMEVAL_NUMBA", "auto") != "0" and f"{__package__}._compiled" in sys.modules
    )


@cache
def compiled() -> ModuleType | None:
    """The module of compiled functions (``count_windows``, ``take_sorted``,
    ``merge_runs``, ``typed_list``...), or ``None`` without numba."""
    try:
        from . import _compiled
    except ImportError:
        return None
    return _compiled

"""An open-addressing hash table over int64 n-gram keys, vectorised with numpy.

Scoring looks every n-gram up here: one or two random reads instead of the ~17
of a binary search (``searchsorted``), which is what scoring speed is made of;
counting uses it to add each chunk's distinct keys to the running table.
Linear probing, at most 1/4 (or 1/2) full; a probe loop runs as often as the longest
probe chain, on the ever fewer keys still unresolved.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier
_ABSENT = np.iinfo(np.int64).min  # no query is this key: n-gram keys are above -2**62


class HashIndex:
    """Maps each key of ``keys`` to its position in ``keys``.

    ``load``: at least that many slots per key (4: fast lookups; 2: less memory).
    """

    def __init__(self, keys: np.ndarray | None = None, load: int = 4) -> None:
        self.load = load
        self._probe = np.array([_ABSENT], dtype=np.int64)  # the keys, then a sentinel
        self.keys = self._probe[:-1]
        self._resize(16)
        if keys is not None:
            self.add(np.asarray(keys, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.keys)

    def _resize(self, capacity: int) -> None:
        self.bits = max(4, int(capacity * self.load - 1).bit_length())
        self.mask = (1 << self.bits) - 1
        self.slots = np.full(1 << self.bits, -1, dtype=np.int32)
        self._place(np.arange(len(self.keys), dtype=np.int32))

    def _hash(self, query: np.ndarray) -> np.ndarray:
        mixed = np.asarray(query, dtype=np.int64).view(np.uint64) * _GOLDEN
        mixed >>= np.uint64(64 - self.bits)
        return mixed.view(np.int64)  # below 2**bits: the same numbers

    def _place(self, pending: np.ndarray) -> None:
        """Put the entries ``pending`` (positions in ``keys``, absent so far) in free slots."""
        where = self._hash(self.keys[pending])
        while len(pending):
            free = self.slots[where] < 0
            claim, at = pending[free], where[free]
            self.slots[at] = claim  # of several claims on one slot, one wins
            placed = self.slots[at] == claim
            lost = np.ones(len(pending), dtype=bool)
            lost[np.flatnonzero(free)[placed]] = False
            pending, where = pending[lost], (where[lost] + 1) & self.mask

    def add(self, new: np.ndarray) -> None:
        """Append the distinct keys ``new``, none of them present yet."""
        start = len(self.keys)
        self._probe = np.concatenate([self.keys, new, [_ABSENT]])
        self.keys = self._probe[:-1]
        if self.load * len(self.keys) > len(self.slots):
            self._resize(len(self.keys))
        else:
            self._place(np.arange(start, len(self.keys), dtype=np.int32))

    def find(self, query: np.ndarray) -> np.ndarray:
        """Position in ``keys`` of every query key, -1 where absent."""
        where = self._hash(query)
        entry = self.slots[where]
        hit = self._probe[entry] == query  # an empty slot (-1) reads the sentinel
        out = np.where(hit, entry, -1)
        todo = np.flatnonzero(~hit & (entry >= 0))
        while len(todo):
            where[todo] = (where[todo] + 1) & self.mask
            entry = self.slots[where[todo]]
            hit = self._probe[entry] == query[todo]
            out[todo[hit]] = entry[hit]
            todo = todo[~hit & (entry >= 0)]
        return out


class DenseIndex:
    """A position per possible key: the fastest lookup, for small key ranges only."""

    def __init__(self, keys: np.ndarray, key_range: int) -> None:
        self.keys = keys
        self.slots = np.full(key_range + 1, -1, dtype=np.int32)  # the last: any key outside
        self.slots[keys] = np.arange(len(keys), dtype=np.int32)

    def find(self, query: np.ndarray) -> np.ndarray:
        """Position in ``keys`` of every query key, -1 where absent."""
        outside = len(self.slots) - 1
        return self.slots[np.where((query >= 0) & (query < outside), query, outside)]


class CompiledIndex:
    """The hash index of large tables, built and probed by compiled loops (numba,
    see :mod:`.kernels`): several times faster than the vectorised probing of
    :class:`HashIndex`, whose every probe round is a pass over the queries."""

    def __init__(self, keys: np.ndarray, full: float = 0.75) -> None:
        """``full``: the share of the slots the keys take."""
        from . import kernels

        self.keys = np.ascontiguousarray(keys, dtype=np.int64)
        if len(self.keys) >= 2**31:  # positions are int32 slots
            raise ValueError(f"{len(self.keys):,} keys: more than a compiled index holds")
        # 3/4 full, whatever the number of keys (the table is not rounded up to a
        # power of two). A miss probes ~8 slots there against ~2.5 half full, but
        # measured on 50 MB of characters, order 7: scoring 1.46 s at 3/4, 1.31 s
        # at 3/5, 1.22 s at 1/2, for 51, 63 and 76 MiB of slots
        size = max(16, int(len(self.keys) / full) + 1)
        self._compiled = kernels.compiled()
        self.slots = self._compiled.place_keys(self.keys, size)

    def find(self, query: np.ndarray) -> np.ndarray:
        """Position in ``keys`` of every query key, -1 where absent."""
        query = np.ascontiguousarray(query, dtype=np.int64)
        return self._compiled.find_keys(self.keys, self.slots, query)


def index_for(keys: np.ndarray, key_range: int) -> HashIndex | DenseIndex | CompiledIndex:
    """A dense index when the key range is at most 16 slots per key (or tiny), else a
    hash: compiled for a large table where numba is there, else vectorised."""
    if key_range <= max(16 * len(keys), 1 << 16):
        return DenseIndex(keys, key_range)
    from . import kernels

    if kernels.loaded() or kernels.wanted(len(keys), mixed=True):
        return CompiledIndex(keys)
    return HashIndex(keys)

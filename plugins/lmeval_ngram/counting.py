"""Counting n-grams with numpy: no Python loop per token.

Packing: an n-gram is the pair (rank of its prefix (n-1)-gram in the sorted
table of order n-1, its last token), stored as one int64
``prefix_rank * radix + token``. Ranks are below the number of distinct
(n-1)-grams and tokens below the radix, so the key always fits in 63 bits,
whatever the vocabulary size and the order: no hashing, no collisions. Sorting
these keys sorts the n-grams lexicographically, because the prefix ranks are
lexicographic ranks themselves. Unigrams are a dense table indexed by token.

A sequence is padded with ``<s>`` (token ``bos``, one id past the
vocabulary) at every sentence start; an n-gram may not cross a sentence start,
so the n-grams of a line are those KenLM counts: ``<s> a``, ``<s> a b``, ...,
never ``<s> <s> a``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class OrderCounts:
    """The distinct n-grams of one order and what the smoothings need of them."""

    keys: np.ndarray  # sorted unique int64 keys (order 1: every token id, dense)
    counts: np.ndarray  # raw number of occurrences, int64
    suffix: np.ndarray  # rank in the order n-1 table of the n-gram minus its first token
    starts_bos: np.ndarray  # bool: the first token is <s>


def pad(ids: np.ndarray, eos_id: int | None, bos: int) -> tuple[np.ndarray, np.ndarray]:
    """``ids`` with ``<s>`` before every sentence, and where each id landed.

    Sentences end at ``eos_id``; with ``eos_id=None`` (stream mode) the whole
    sequence is one sentence with a single ``<s>`` at its start.
    """
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    if eos_id is None or n == 0:
        pos = np.arange(1, n + 1, dtype=np.int64)
        extra = 1
    else:
        is_eos = ids == eos_id
        before = np.cumsum(is_eos, dtype=np.int64)
        before -= is_eos
        pos = np.arange(1, n + 1, dtype=np.int64) + before
        extra = 1 + int(before[-1])
    seq = np.full(n + extra, bos, dtype=np.int32 if bos < 2**31 - 1 else np.int64)
    seq[pos] = ids
    return seq, pos


def group(keys: np.ndarray, key_range: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(unique sorted keys, inverse, counts)`` of int64 ``keys`` in ``[0, key_range)``.

    A dense bincount when the key range is small against the number of keys
    (linear time, no sort), ``np.unique`` otherwise.
    """
    if key_range <= 4 * len(keys) + (1 << 16):
        counts = np.bincount(keys, minlength=key_range)
        present = counts > 0
        uniq = np.flatnonzero(present)
        remap = np.cumsum(present, dtype=np.int64)
        remap -= 1
        return uniq, remap[keys], counts[uniq]
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return uniq, inverse.reshape(-1), counts


def count_ngrams(seq: np.ndarray, bos: int, radix: int, order: int) -> list[OrderCounts]:
    """The n-grams of orders 1..``order`` of a padded sequence (see :func:`pad`).

    ``<s>`` is counted as context only: its unigram count is 0 and no n-gram
    ends with it.
    """
    not_bos = seq != bos
    unigram = np.bincount(seq[not_bos], minlength=radix).astype(np.int64)
    tokens = np.arange(radix, dtype=np.int64)
    out = [
        OrderCounts(tokens, unigram, np.zeros(radix, dtype=np.int64), tokens == bos),
    ]
    rank = seq.astype(np.int64)  # rank of the (n-1)-gram ending at each position; -1: none
    for _ in range(2, order + 1):
        prev = out[-1]
        ctx = rank[:-1]
        valid = (ctx >= 0) & not_bos[1:]
        where = np.flatnonzero(valid)
        keys = ctx[where] * radix
        keys += seq[1:][where]
        where += 1  # positions in seq of the last token of each n-gram
        uniq, inverse, counts = group(keys, len(prev.keys) * radix)
        del keys
        representative = np.empty(len(uniq), dtype=np.int64)
        representative[inverse] = where
        suffix = rank[representative]
        new_rank = np.full(len(seq), -1, dtype=np.int64)
        new_rank[where] = inverse
        del inverse, where
        rank = new_rank
        starts_bos = prev.starts_bos[uniq // radix]
        out.append(OrderCounts(uniq, counts.astype(np.int64), suffix, starts_bos))
    return out


def continuation_counts(tables: list[OrderCounts]) -> list[np.ndarray]:
    """KenLM's adjusted counts: what Kneser-Ney smoothing counts at every order.

    The top order keeps its raw counts. A lower-order n-gram counts the
    distinct tokens seen before it (``<s>`` included), except one that starts
    with ``<s>``, which nothing can precede: it keeps its raw count.
    """
    out = []
    for n, table in enumerate(tables[:-1]):
        higher = tables[n + 1]
        adjusted = np.bincount(higher.suffix, minlength=len(table.keys)).astype(np.int64)
        adjusted[table.starts_bos] = table.counts[table.starts_bos]
        out.append(adjusted)
    out.append(tables[-1].counts)
    return out

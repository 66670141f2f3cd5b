"""Counting n-grams with numpy: no Python loop per token.

Packing in the tables: an n-gram is the pair (rank of its prefix (n-1)-gram in
the sorted table of order n-1, its last token), stored as one int64
``prefix_rank * radix + token``. Ranks are below the number of distinct
(n-1)-grams and tokens below the radix, so the key always fits in 63 bits,
whatever the vocabulary size and the order: no hashing of n-grams, no
collisions. Sorting these keys sorts the n-grams lexicographically, because the
prefix ranks are lexicographic ranks themselves. Unigrams are a dense table
indexed by token. While counting, small vocabularies use plain mixed-radix keys
(``sum token_i * radix**(n-1-i)``, when ``radix**order`` fits in 62 bits)
that need no per-token state; see :func:`count_ngrams`.

A sequence is padded with ``<s>`` (token ``bos``, one id past the
vocabulary) at every sentence start; an n-gram may not cross a sentence start,
so the n-grams of a line are those KenLM counts: ``<s> a``, ``<s> a b``, ...,
never ``<s> <s> a``.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import numpy as np

import lmeval

from . import kernels
from .hashing import CompiledIndex, HashIndex


@dataclass
class OrderCounts:
    """The distinct n-grams of one order and what the smoothings need of them."""

    keys: np.ndarray  # sorted unique int64 keys (order 1: every token id, dense)
    counts: np.ndarray  # raw number of occurrences, int64
    suffix: np.ndarray  # rank in the order n-1 table of the n-gram minus its first token
    starts_bos: np.ndarray  # bool: the first token is <s>

    def release(self) -> None:
        """Drop all but the keys (what a model keeps of the counts once estimated)."""
        self.counts = self.suffix = self.starts_bos = np.zeros(0, dtype=np.int64)


#: Positions per chunk: counting works on chunks of the token array, so that its
#: temporaries stay small beside the token array and the tables.
CHUNK = 1 << 15
#: Runs of spilled counts merged at once.
MERGE_WAYS = 32
#: Bytes the compiled counting may use when no ``memory`` is given.
DEFAULT_MEMORY = 2 * 2**30
#: How much a counting table three quarters full grows: by half, so that a grown
#: table is at least half full (at least three eighths when doubling). It grows in
#: place (:func:`._compiled.grow_in_place`): no old and new table held at once.
GROWTH_NUM, GROWTH_DEN = 3, 2
#: Key ranges up to this many are counted in a dense array.
DENSE_RANGE = 1 << 19


def token_dtype(radix: int) -> type:
    """The smallest integer type that holds the ids ``0 .. radix-1``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if radix <= np.iinfo(dtype).max + 1:
            return dtype
    return np.int64


class FirstSeen:
    """The position of each id's first occurrence in chunks of ids seen in order."""

    def __init__(self, radix: int) -> None:
        self.first = np.full(radix, -1, dtype=np.int64)  # -1: not seen yet
        self.total = 0  # ids seen

    def add(self, ids: np.ndarray) -> None:
        """A chunk's ids, after those of the chunks before: the cost of the chunk,
        whatever the vocabulary's size."""
        unseen = np.flatnonzero(self.first[ids] < 0)  # positions of ids new so far
        if len(unseen):
            backwards = unseen[::-1]  # the last write wins: the earliest position
            self.first[ids[backwards]] = self.total + backwards
        self.total += len(ids)

    def positions(self) -> np.ndarray:
        """The position of each id's first occurrence in the chunks' concatenation
        (their total length for an id that never occurs)."""
        return np.where(self.first < 0, self.total, self.first)


def pad(ids: np.ndarray, eos_id: int | None, bos: int, dtype=np.int64):
    """``ids`` with ``<s>`` before every sentence, and the mask of those ``<s>``.

    Sentences end at ``eos_id``; with ``eos_id=None`` (stream mode) the whole
    sequence is one sentence with a single ``<s>`` at its start.
    """
    ids = np.asarray(ids)
    n = len(ids)
    starts = np.zeros(1, dtype=np.int64)
    if eos_id is not None and n:
        ends = np.flatnonzero(ids[:-1] == eos_id)  # an end at the very last id starts nothing
        starts = np.concatenate([starts, ends + np.arange(2, len(ends) + 2)])
    seq = np.empty(n + len(starts), dtype=dtype)
    is_bos = np.zeros(len(seq), dtype=bool)
    is_bos[starts] = True
    seq[starts] = bos
    seq[~is_bos] = ids
    return seq, is_bos


class _KeyCounter:
    """Counts int64 keys in ``[0, key_range)`` that arrive in chunks.

    A dense array of counts over the range when it is small (int32: 2 MiB at
    most); otherwise every chunk's distinct keys (``np.unique``) go into a hash
    table, sorted once at the end.
    """

    def __init__(self, key_range: int, count_dtype=np.int32) -> None:
        self.dense = key_range <= DENSE_RANGE
        if self.dense:
            self.total = np.zeros(key_range, dtype=count_dtype)
            self.one = count_dtype(1)
        else:
            self.index, self.counts = HashIndex(load=2), np.zeros(0, dtype=np.int64)

    def add(self, keys: np.ndarray) -> None:
        if self.dense:
            np.add.at(self.total, keys, self.one)
            return
        keys, found = np.unique(keys, return_counts=True)
        at = self.index.find(keys)
        new = at < 0
        self.counts[at[~new]] += found[~new]  # distinct within a chunk: no index repeats
        self.index.add(keys[new])
        self.counts = np.concatenate([self.counts, found[new]])

    def finish(self, rank_dtype=None) -> tuple[np.ndarray, np.ndarray]:
        """The sorted distinct keys and their counts. With ``rank_dtype``, keeps
        what :meth:`rank_of` needs to give any counted key its sorted rank."""
        if self.dense:
            uniq = np.flatnonzero(self.total)
            counts = self.total[uniq].astype(np.int64)
            if rank_dtype is not None:
                self.ranks = np.full(len(self.total), -1, dtype=rank_dtype)
                self.ranks[uniq] = np.arange(len(uniq), dtype=rank_dtype)
            del self.total
            return uniq, counts
        keys, counts = self.index.keys, self.counts
        del self.counts
        if rank_dtype is None:
            del self.index  # its slots make room for the sort
        by_key = np.argsort(keys)
        uniq, counts = keys[by_key], counts[by_key]
        del keys
        if rank_dtype is not None:
            self.ranks = np.empty(len(uniq), dtype=rank_dtype)
            self.ranks[by_key] = np.arange(len(uniq), dtype=rank_dtype)
        return uniq, counts

    def rank_of(self, keys: np.ndarray) -> np.ndarray:
        return self.ranks[keys] if self.dense else self.ranks[self.index.find(keys)]


def count_ngrams(
    ids: np.ndarray | Iterable[np.ndarray],
    eos_id: int | None,
    radix: int,
    order: int,
    packing: str = "auto",
    memory: int = DEFAULT_MEMORY,
    tmpdir: str | None = None,
    report: dict | None = None,
    on_chunk: Callable[[np.ndarray], None] | None = None,
) -> list[OrderCounts]:
    """The n-grams of orders 1..``order`` of ``ids``, padded by :func:`pad`.

    ``ids`` is one array, or an iterable of chunks of whole sentences (each ends
    with ``eos_id``: a :class:`lmeval.TokenChunks`, for one) that is read once:
    the windows count them as they come, so the text is never held whole;
    another way of counting has their concatenation. ``on_chunk`` sees every
    chunk (or the array) in order, once.

    ``<s>`` is the last internal id, ``radix - 1``; it is counted as context
    only: its unigram count is 0 and no n-gram ends with it. Three ways to count,
    same result:

    * ``windows`` (when numba is installed, see :mod:`.kernels`): a compiled loop
      counts the window of ``order`` tokens starting at every position in a hash
      table, in two threads; the sorted windows hold every order. The fastest by
      far on large texts;

    * ``mixed`` (when ``radix ** order`` fits in 62 bits, e.g. characters up to
      order 10): one pass over chunks of tokens computes the mixed-radix key of
      the n-gram ending at every position for every order at once; memory is
      the token array, the tables and one chunk of temporaries;
    * ``ranked`` (any vocabulary and order): one int32 rank per token, replaced
      in place order after order by the rank of the n-gram ending there.
    """
    bos = radix - 1
    report = {} if report is None else report
    mixed = order * math.log2(radix) < 62
    head, rest = _peek(ids)
    if len(head) > 1:  # chunks: counted as they come where the windows can be
        if order > 1 and eos_id is not None and packing in ("auto", "windows"):
            if kernels.usable():
                report["method"] = "windows"
                return _count_windows(chain(head, rest), eos_id, bos, radix, order, memory,
                                      tmpdir, report, on_chunk)  # fmt: skip
        ids = np.concatenate([*head, *rest])
    else:
        ids = np.asarray(head[0]) if head else np.zeros(0, dtype=np.int32)
    del head, rest
    if order > 1 and (
        packing == "windows" or (packing == "auto" and kernels.wanted(len(ids), mixed))
    ):
        report["method"] = "windows"
        return _count_windows([ids], eos_id, bos, radix, order, memory, tmpdir, report, on_chunk)
    if on_chunk is not None:
        on_chunk(ids)
    out = [_unigrams(_tally(np.zeros(radix, dtype=np.int64), ids), bos)]
    if order == 1:
        return out
    seq = pad(ids, eos_id, bos, token_dtype(radix))[0]
    if packing == "ranked" or (packing == "auto" and not mixed):
        report["method"] = "ranked"
        return _count_ranked(seq, bos, radix, order, out)
    report["method"] = "mixed"
    counters = _count_mixed(seq, bos, radix, order)
    del seq  # the tables are built from the counters alone
    lower = out[0].keys  # mixed-radix keys of the order below, sorted
    for n in range(2, order + 1):
        keys, counts = counters.pop(n).finish()
        packed = np.searchsorted(lower, keys // radix)  # prefix rank
        packed *= radix
        packed += keys % radix
        suffix = np.searchsorted(lower, keys % radix ** (n - 1)).astype(np.int32)
        starts_bos = keys // radix ** (n - 1) == bos
        out.append(OrderCounts(packed, counts, suffix, starts_bos))
        lower = keys
    return out


def _peek(ids) -> tuple[list[np.ndarray], Iterator[np.ndarray]]:
    """The first two chunks of ``ids`` (one for an array, or a list of ids), and the rest."""
    if isinstance(ids, np.ndarray) or (isinstance(ids, list | tuple) and not _of_arrays(ids)):
        return [np.asarray(ids)], iter(())
    chunks = iter(ids)
    return list(islice(chunks, 2)), chunks


def _of_arrays(items: list | tuple) -> bool:
    return bool(items) and all(isinstance(item, np.ndarray) for item in items)


def _tally(unigram: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``unigram`` plus the count of every id in ``ids``."""
    for a in range(0, len(ids), CHUNK * 32):
        unigram += np.bincount(ids[a : a + CHUNK * 32], minlength=len(unigram))
    return unigram


def _unigrams(unigram: np.ndarray, bos: int) -> OrderCounts:
    """The unigram table from every id's count (``<s>`` is context only: 0)."""
    unigram[bos] = 0
    tokens = np.arange(len(unigram), dtype=np.int64)
    return OrderCounts(tokens, unigram, np.zeros(len(unigram), dtype=np.int64), tokens == bos)


def _count_mixed(seq, bos, radix, order) -> dict[int, _KeyCounter]:
    """The mixed-radix keys of every order, counted in one pass over chunks."""
    wide = np.int32 if len(seq) < 2**31 else np.int64
    counters = {n: _KeyCounter(radix**n, wide) for n in range(2, order + 1)}
    sentence_start = 0  # position of the latest <s>
    for a in range(1, len(seq), CHUNK):
        sentence_start = _count_mixed_chunk(seq, a, sentence_start, bos, radix, order, counters)
    return counters


def _count_mixed_chunk(seq, a, sentence_start, bos, radix, order, counters) -> int:
    """Count the n-grams of every order ending at positions ``a..a+CHUNK-1``;
    returns the position of the latest ``<s>`` so far."""
    b = min(a + CHUNK, len(seq))
    lo = max(0, a - order + 1)  # the chunk and the history its n-grams need
    window = seq[lo:b].astype(np.int64)
    ends = np.arange(a, b)
    predicted = window[a - lo :] != bos
    start = np.where(predicted, sentence_start, ends)
    np.maximum.accumulate(start, out=start)  # the <s> of each position's sentence
    span = ends - start + 1  # tokens from that <s> to the position, both included
    key = window.copy()
    for n in range(2, order + 1):
        key[1:] = key[:-1] * radix + window[1:]  # key of the n-gram ending at each position
        counters[n].add(key[a - lo :][predicted & (span >= n)])
    return int(start[-1])


def _chunk_keys(seq, rank, bos, radix, a) -> tuple[np.ndarray, np.ndarray]:
    """Keys of the n-grams ending at positions ``a..a+CHUNK-1`` and which positions have one."""
    b = min(a + CHUNK, len(seq))
    ctx = rank[a - 1 : b - 1].astype(np.int64)
    tok = seq[a:b].astype(np.int64)
    ok = (ctx >= 0) & (tok != bos)
    return ctx[ok] * radix + tok[ok], ok


def _count_ranked(seq, bos, radix, order, out: list[OrderCounts]) -> list[OrderCounts]:
    size = len(seq)
    rank = seq.astype(np.int32 if radix < 2**31 else np.int64)  # ranks of order 1: the ids
    chunks = range(1, size, CHUNK)
    for n in range(2, order + 1):
        prev = out[-1]
        counter = _KeyCounter(len(prev.keys) * radix, np.int32 if size < 2**31 else np.int64)
        for a in chunks:
            counter.add(_chunk_keys(seq, rank, bos, radix, a)[0])
        uniq, counts = counter.finish(rank.dtype if n < order else None)
        if n < order:
            for a in reversed(chunks):  # backwards: rank[a-1] still holds order n-1
                keys, ok = _chunk_keys(seq, rank, bos, radix, a)
                new_rank = np.full(len(ok), -1, dtype=rank.dtype)
                new_rank[ok] = counter.rank_of(keys)
                rank[a : a + len(ok)] = new_rank
            rank[0] = -1
        del counter
        ctx, last = np.divmod(uniq, radix)
        if n == 2:
            suffix = last
        else:
            suffix = np.searchsorted(prev.keys, prev.suffix[ctx].astype(np.int64) * radix + last)
        out.append(OrderCounts(uniq, counts, suffix, prev.starts_bos[ctx]))
    return out


def _count_windows(
    chunks: Iterable[np.ndarray],
    eos_id: int | None,
    bos: int,
    radix: int,
    order: int,
    memory: int,
    tmpdir: str | None,
    report: dict,
    on_chunk: Callable[[np.ndarray], None] | None,
) -> list[OrderCounts]:
    """Every order from the distinct windows of ``order`` tokens (compiled,
    :func:`._compiled.count_windows`) of the chunks, read once: every n-gram
    starting at a position is the first ``n`` tokens of the window starting
    there, so the windows, sorted, hold every order's n-grams as contiguous runs
    of rows sharing a prefix.

    A window is cut after its sentence's end-of-line token and padded with
    ``end``, an id past ``<s>``; a prefix holding ``end`` is no n-gram.

    The counting tables stay within ``memory`` bytes: when they are full, their
    windows are sorted and written to a temporary folder (``tmpdir``), and the
    sorted runs are merged at the end, as KenLM's ``lmplz -S`` does.
    """
    end = radix  # one past <s>; end + 1 marks an empty row of the table
    dtype = token_dtype(radix + 2)
    # a row of the table: the window, then a 32-bit (64 for int64 tokens) count in
    # digits of the tokens' width; a slot costs its row, a byte more while the table
    # grows in place, and its share of the sorted copy written out when full
    itemsize = np.dtype(dtype).itemsize
    width = order + max(1, 4 // itemsize)
    per_slot = width * itemsize + 1 + (order * itemsize + 16) * 3 // 4
    unigram = np.zeros(radix, dtype=np.int64)
    counters: list[_WindowCounter] = []
    with (
        tempfile.TemporaryDirectory(prefix="lmeval-ngram-", dir=tmpdir or None) as spill,
        ThreadPoolExecutor(2) as pool,
    ):
        for ids in chunks:
            if on_chunk is not None:
                on_chunk(ids)
            _tally(unigram, ids)
            if not counters:  # the ranges of first tokens, from the first chunk's counts
                counters = _window_counters(unigram, radix, order, dtype, width, per_slot,
                                            memory, eos_id, bos, end, Path(spill))  # fmt: skip
            # two ranges of first tokens, counted at once in two threads (the compiled
            # loop and numpy's sort release the GIL): their rows are disjoint
            list(pool.map(lambda counter, ids=ids: counter.add(ids), counters))
        # counts of 4 bytes while they fit; one range at a time, the first range's
        # table gone before the array of all the rows is made
        count_dtype = np.int32 if 2 * unigram.sum() < 2**31 else np.int64
        if any(counter.runs for counter in counters):  # merged from disk: arrays of their own
            parts = [counter.finish(count_dtype) for counter in counters]
            rows = np.concatenate([p[0] for p in parts])  # the first range's rows sort first
            counts = np.concatenate([p[1] for p in parts])
            del parts
        elif counters:  # the other ranges sorted in place in their share: nothing to join
            first_rows, first_counts = counters[0].finish(count_dtype)
            rows = np.empty((len(first_rows) + sum(c.used for c in counters[1:]), order), dtype)
            counts = np.empty(len(rows), dtype=count_dtype)
            rows[: len(first_rows)], counts[: len(first_rows)] = first_rows, first_counts
            at = len(first_rows)
            del first_rows, first_counts
            for counter in counters[1:]:
                share = slice(at, at + counter.used)
                counter.finish(count_dtype, into=(rows[share], counts[share]))
                at = share.stop
    report["runs_written"] = sum(len(c.written) for c in counters)
    if counters:  # int32 where the others are: no count reaches 2**31
        unigram = unigram.astype(count_dtype)
    out = [_unigrams(unigram, bos)]
    if not counters:  # no chunk at all
        return out
    del counters
    lmeval.release_memory()  # the tables and the chunks: not under what follows
    return _orders_from_windows(rows, counts, out, radix, order, bos, end)


def _window_counters(unigram, radix, order, dtype, width, per_slot, memory, eos_id, bos, end,
                     spill) -> list[_WindowCounter]:  # fmt: skip
    """One counter per range of first tokens: two, with about half the positions
    each, where two cores can be used."""
    threads = 2 if lmeval.usable_cores() > 1 else 1
    cut = _halfway(unigram)
    ranges = [(0, cut), (cut, radix)] if threads > 1 and 0 < cut < radix else [(0, radix)]
    # slots a table may grow to: any size (slots are scaled, not masked), below 2**32
    limit = min(max(1 << 10, memory // len(ranges) // per_slot), (1 << 32) - 1)
    return [
        _WindowCounter(bounds, eos_id, bos, end, order, dtype, width, limit, spill)
        for bounds in ranges
    ]


def _orders_from_windows(rows, counts, out, radix, order, bos, end) -> list[OrderCounts]:
    """The tables of orders 2..``order`` from the sorted distinct windows, an order
    at a time in two compiled passes over the rows (:func:`._compiled.next_order`).

    Order n reads only the windows' n-th tokens: once it is done, the columns up
    to it are dropped, the rest packed in place and the array shrunk (its memory
    given back), so that the windows take less and less beside the growing
    tables (at 100 MB of words, order 5: from 20 to 4 bytes a window)."""
    compiled = kernels.compiled()
    rank_dtype = np.int32 if len(rows) < 2**31 else np.int64
    prefix_rank = rows[:, 0].astype(rank_dtype)  # order 1: the token is its rank
    owned = rows.flags.owndata and rows.flags.c_contiguous
    col = 1  # the column of the n-th token
    for n in range(2, order + 1):
        lower = out[n - 2]
        # order 2: no lookups; above, one per n-gram, at the peak of counting: 7/8 full
        index = CompiledIndex(lower.keys if n > 2 else lower.keys[:0], full=0.875)
        keys, group_counts, suffix, starts_bos = compiled.next_order(
            rows, col, counts, prefix_rank, n, end, bos, radix, lower.suffix, lower.starts_bos,
            index.keys, index.slots,
        )  # fmt: skip
        del index
        out.append(OrderCounts(keys, group_counts, suffix, starts_bos))
        if n < order and owned:  # the columns up to the n-th token are done with
            width = rows.shape[1]
            compiled.pack_columns(rows.reshape(-1), width, col + 1)
            rows.resize((len(rows), width - col - 1), refcheck=False)
            col = 0
        else:
            col += 1
    return out


class _WindowCounter:
    """Counts the windows of one range of first tokens, chunk after chunk, in one
    table; a full table is sorted and written to disk as a run."""

    def __init__(self, bounds, eos_id, bos, end, order, dtype, width, limit: int, spill: Path):
        self.bounds, self.bos, self.end, self.order, self.limit = bounds, bos, end, order, limit
        self.eos = -1 if eos_id is None else eos_id
        self.dtype, self.width = dtype, width
        self.digit_bits = 8 * np.dtype(dtype).itemsize
        self.spill = spill
        self.written: list[Path] = []  # every run written (appends are atomic)
        self.runs: list[tuple[Path, Path]] = []
        self._fresh()

    def _fresh(self) -> None:
        self.table = np.empty((min(1 << 16, self.limit), self.width), dtype=self.dtype)
        self.table[:, 0] = self.end + 1  # empty
        self.used = 0

    def add(self, ids: np.ndarray) -> None:
        """Count the windows of a chunk of whole sentences."""
        low, high = self.bounds
        start, virtual = 0, True
        compiled = kernels.compiled()
        while start < len(ids):
            self.used, start, virtual, stopped, full = compiled.count_windows(
                ids, self.eos, self.bos, self.end, self.order, self.table, self.used,
                low, high, start, virtual, self.limit,
            )  # fmt: skip
            if full:
                self._write()
            elif stopped:
                self._grow()

    def _grow(self) -> None:
        """The table grown in place (the allocator moves a mapped block's pages
        without copying them; numpy's ``resize`` empties the new rows), its
        windows rehashed there: never an old and a new table at once, which
        was the peak of counting (1.67 times the grown table)."""
        size = len(self.table)
        grown = min(size * GROWTH_NUM // GROWTH_DEN, self.limit)
        self.table.resize((grown, self.width), refcheck=False)
        kernels.compiled().grow_in_place(self.table, size, self.order, self.end + 1)

    def _sorted(self, count_dtype=np.int64, into=None) -> tuple[np.ndarray, np.ndarray]:
        """The table's windows sorted (lexicographic: the tables' order), and their
        counts, in ``into`` (rows, counts) when given, of the table's size; the
        table is gone."""
        rows, counts = into or (
            np.empty((self.used, self.order), dtype=self.dtype),
            np.empty(self.used, dtype=count_dtype),
        )
        kernels.compiled().take_sorted(
            self.table, self.order, self.end + 1, self.digit_bits, rows, counts
        )
        del self.table
        return rows, counts

    def _write(self) -> None:
        rows, counts = self._sorted()
        name = self.spill / f"{self.bounds[0]}-{len(self.runs)}"
        self.runs.append(_write_run(name, rows, counts))
        self.written.append(name)
        del rows, counts
        self._fresh()

    def finish(self, count_dtype=np.int64, into=None) -> tuple[np.ndarray, np.ndarray]:
        """Every window counted, sorted, and their counts (``count_dtype``: int32
        where no count can reach 2**31); where nothing was written, in ``into``
        (rows, counts of the table's size) when given."""
        if not self.runs:
            return self._sorted(count_dtype, into)  # it all fitted: nothing written
        if self.used:
            self._write()
        del self.table
        rows, counts = self._merge(self.runs, self.spill / f"{self.bounds[0]}-merged.npy")
        return rows, counts.astype(count_dtype, copy=False)

    def _merge(self, runs: list[tuple[Path, Path]], into: Path) -> tuple[np.ndarray, np.ndarray]:
        """The runs merged, read from their files as they are needed (memory-mapped).
        More than :data:`MERGE_WAYS` runs are merged in rounds, that many at a time
        (each step of a merge looks at the head of every run)."""
        while len(runs) > MERGE_WAYS:
            rows, counts = self._merge(runs[:MERGE_WAYS], into)
            paths = _write_run(into.with_name(f"{into.stem}-{len(runs)}"), rows, counts)
            del rows, counts
            runs = [*runs[MERGE_WAYS:], paths]
        rows = [np.load(r, mmap_mode="r") for r, _ in runs]
        counts = [np.load(c, mmap_mode="r") for _, c in runs]
        total = sum(len(r) for r in rows)
        out = np.lib.format.open_memmap(
            into, mode="w+",
            dtype=rows[0].dtype, shape=(total, self.order),
        )  # fmt: skip
        out_counts = np.empty(total, dtype=np.int64)
        compiled = kernels.compiled()
        used = compiled.merge_runs(
            compiled.typed_list(rows), compiled.typed_list(counts), out, out_counts
        )
        merged = np.array(out[:used])
        del out
        return merged, out_counts[:used].copy()


def _write_run(name: Path, rows: np.ndarray, counts: np.ndarray) -> tuple[Path, Path]:
    """A sorted run of windows and their counts written beside ``name``: the two files."""
    paths = (name.with_suffix(".rows.npy"), name.with_suffix(".counts.npy"))
    np.save(paths[0], rows)
    np.save(paths[1], counts)
    return paths


def _halfway(tally: np.ndarray) -> int:
    """The token id that splits the positions into two halves by the first token of
    their windows (ids below it, and the rest), from the tokens' counts."""
    return int(np.searchsorted(np.cumsum(tally), tally.sum() / 2))


def continuation_counts(tables: list[OrderCounts], n: int) -> np.ndarray:
    """KenLM's adjusted counts of order ``n``: what Kneser-Ney smoothing counts.

    The top order keeps its raw counts. A lower-order n-gram counts the
    distinct tokens seen before it (``<s>`` included), except one that starts
    with ``<s>``, which nothing can precede: it keeps its raw count.
    """
    table = tables[n - 1]
    if n == len(tables):
        return table.counts
    adjusted = np.bincount(tables[n].suffix, minlength=len(table.keys)).astype(table.counts.dtype)
    adjusted[table.starts_bos] = table.counts[table.starts_bos]
    return adjusted

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import lmeval

from . import kernels
from .hashing import HashIndex, index_for


@dataclass
class OrderCounts:
    """The distinct n-grams of one order and what the smoothings need of them."""

    keys: np.ndarray  # sorted unique int64 keys (order 1: every token id, dense)
    counts: np.ndarray  # raw number of occurrences, int64
    suffix: np.ndarray  # rank in the order n-1 table of the n-gram minus its first token
    starts_bos: np.ndarray  # bool: the first token is <s>


#: Positions per chunk: counting works on chunks of the token array, so that its
#: temporaries stay small beside the token array and the tables.
CHUNK = 1 << 15
#: Runs of spilled counts merged at once.
MERGE_WAYS = 32
#: Bytes the compiled counting may use when no ``memory`` is given.
DEFAULT_MEMORY = 2 * 2**30
#: Key ranges up to this many are counted in a dense array.
DENSE_RANGE = 1 << 19


def token_dtype(radix: int) -> type:
    """The smallest integer type that holds the ids ``0 .. radix-1``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if radix <= np.iinfo(dtype).max + 1:
            return dtype
    return np.int64


def first_positions(ids: np.ndarray, radix: int) -> np.ndarray:
    """The position of each id's first occurrence in ``ids`` (``len(ids)`` for an id
    that never occurs), in chunks from the end, so that earlier positions overwrite
    later ones: no sort of the whole array, and memory of one chunk."""
    first = np.full(radix, len(ids), dtype=np.int64)
    step = CHUNK * 32
    for a in reversed(range(0, len(ids), step)):
        part = np.asarray(ids[a : a + step])[::-1]
        first[part] = np.arange(a + len(part) - 1, a - 1, -1)  # the last write wins
    return first


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
    ids: np.ndarray,
    eos_id: int | None,
    radix: int,
    order: int,
    packing: str = "auto",
    memory: int = DEFAULT_MEMORY,
    tmpdir: str | None = None,
    report: dict | None = None,
) -> list[OrderCounts]:
    """The n-grams of orders 1..``order`` of ``ids``, padded by :func:`pad`.

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
    ids = np.asarray(ids)
    unigram = np.zeros(radix, dtype=np.int64)
    for a in range(0, len(ids), CHUNK * 32):
        unigram += np.bincount(ids[a : a + CHUNK * 32], minlength=radix)
    unigram[bos] = 0
    tokens = np.arange(radix, dtype=np.int64)
    out = [OrderCounts(tokens, unigram, np.zeros(radix, dtype=np.int64), tokens == bos)]
    report = {} if report is None else report
    if order == 1:
        return out
    mixed = order * math.log2(radix) < 62
    if packing == "windows" or (packing == "auto" and kernels.wanted(len(ids), mixed)):
        report["method"] = "windows"
        return _count_windows(ids, eos_id, bos, radix, order, out, memory, tmpdir, report)
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
    ids,
    eos_id,
    bos,
    radix,
    order,
    out: list[OrderCounts],
    memory: int,
    tmpdir: str | None,
    report: dict,
) -> list[OrderCounts]:
    """Orders 2..``order`` from the distinct windows of ``order`` tokens (compiled,
    :func:`.kernels.count_windows`): every n-gram starting at a position is the
    first ``n`` tokens of the window starting there, so the windows, sorted,
    hold every order's n-grams as contiguous runs of rows sharing a prefix.

    A window is cut after its sentence's end-of-line token and padded with
    ``end``, an id past ``<s>``; a prefix holding ``end`` is no n-gram.

    The counting tables stay within ``memory`` bytes: when they are full, their
    windows are sorted and written to a temporary folder (``tmpdir``), and the
    sorted runs are merged at the end, as KenLM's ``lmplz -S`` does.
    """
    end = radix  # one past <s>; end + 1 marks an empty row of the table
    dtype = token_dtype(radix + 2)
    threads = 2 if lmeval.usable_cores() > 1 else 1
    cut = _halfway(out[0].counts)
    ranges = [(0, cut), (cut, radix)] if threads > 1 and 0 < cut < radix else [(0, radix)]
    # a row of the table: the window, then a 32-bit (64 for int64 tokens) count in
    # digits of the tokens' width; a slot costs its row, twice over while the table
    # grows, and its share of the sorted copy written out when full
    itemsize = np.dtype(dtype).itemsize
    width = order + max(1, 4 // itemsize)
    per_slot = 2 * width * itemsize + (order * itemsize + 16) // 2
    limit = 1 << max(10, int(memory // len(ranges) // per_slot).bit_length() - 1)
    with tempfile.TemporaryDirectory(prefix="lmeval-ngram-", dir=tmpdir or None) as spill:
        counter = _WindowCounter(ids, eos_id, bos, end, order, dtype, width, limit, Path(spill))
        if len(ranges) > 1:
            # two ranges of first tokens with about half the positions each, counted
            # at once in two threads (the compiled loop and numpy's sort release the
            # GIL): their rows are disjoint and the first range's sort before the second's
            with ThreadPoolExecutor(2) as pool:
                parts = list(pool.map(counter.count, ranges))
        else:
            parts = [counter.count(ranges[0])]
    report["runs_written"] = len(counter.written)
    rows = np.concatenate([p[0] for p in parts])
    counts = np.concatenate([p[1] for p in parts])
    del parts
    rank_dtype = np.int32 if len(rows) < 2**31 else np.int64
    changed = np.ones(len(rows), dtype=bool)  # a row starts a new prefix of length n
    changed[1:] = rows[1:, 0] != rows[:-1, 0]
    prefix_rank = rows[:, 0].astype(rank_dtype)  # order 1: the token is its rank
    lower_keys = out[0].keys
    lower_suffix = out[0].suffix
    for n in range(2, order + 1):
        column = rows[:, n - 1]
        changed[1:] |= column[1:] != column[:-1]
        valid = column != end
        starts = np.flatnonzero(changed & valid)
        group_counts = np.add.reduceat(counts, np.flatnonzero(changed))
        group_valid = valid[np.flatnonzero(changed)]
        keys = prefix_rank[starts].astype(np.int64) * radix + column[starts]
        last = column[starts].astype(np.int64)
        if n == 2:
            suffix = last.astype(np.int32)
        else:  # the suffix's rank: its own suffix rank one order down, then this token
            query = lower_suffix[prefix_rank[starts]].astype(np.int64) * radix + last
            suffix = index_for(lower_keys, len(out[n - 3].keys) * radix).find(query)
        starts_bos = rows[starts, 0] == bos
        out.append(OrderCounts(keys, group_counts[group_valid], suffix, starts_bos))
        # every row's prefix of length n: its rank among this order's n-grams
        prefix_rank = np.cumsum(changed & valid, dtype=rank_dtype)
        prefix_rank -= 1
        prefix_rank[~valid] = -1
        lower_keys, lower_suffix = keys, suffix
    return out


class _WindowCounter:
    """Counts the windows of one range of first tokens, spilling full tables."""

    def __init__(self, ids, eos_id, bos, end, order, dtype, width, limit: int, spill: Path) -> None:
        self.ids, self.bos, self.end, self.order, self.limit = ids, bos, end, order, limit
        self.eos = -1 if eos_id is None else eos_id
        self.probe = np.zeros((1, width), dtype=dtype)  # the table's dtype and row width
        self.digit_bits = 8 * np.dtype(dtype).itemsize
        self.spill = spill
        self.written: list[Path] = []  # every run written (appends are atomic)

    def count(self, bounds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The windows whose first token is in ``bounds``, sorted (lexicographic: the
        tables' order), and their counts."""
        low, high = bounds
        runs: list[tuple[Path, Path]] = []
        start, virtual = 0, True
        while True:
            rows, counts, start, virtual = kernels.compiled().count_windows(
                self.ids, self.eos, self.bos, self.end, self.order, self.probe,
                low, high, start, virtual, self.limit, self.digit_bits,
            )  # fmt: skip
            by_row = np.lexsort(rows.T[::-1])
            rows, counts = rows[by_row], counts[by_row]
            del by_row
            if start >= len(self.ids) and not runs:
                return rows, counts  # it all fitted: nothing written
            name = self.spill / f"{low}-{len(runs)}"
            runs.append(_write_run(name, rows, counts))
            self.written.append(name)
            del rows, counts
            if start >= len(self.ids):
                return self._merge(runs, self.spill / f"{low}-merged.npy")

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

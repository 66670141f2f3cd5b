"""The compiled loops of :mod:`.kernels` (imports numba: import this module lazily).

Kept at module level so that numba caches them on disk: functions defined
inside a function are compiled again in every process.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _hash(window):
    h = np.uint64(0xCBF29CE484222325)
    for t in window:
        h = (h ^ np.uint64(t)) * np.uint64(0x100000001B3)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    return h


@numba.njit(cache=True, nogil=True, inline="always")
def _scaled(h, size):
    """Slot of the hash ``h`` in a table of ``size`` slots (below 2**32): its high 32
    bits scaled to the size (Lemire's "fastrange"), so a table can be any size."""
    return np.int64(((h >> np.uint64(32)) * np.uint64(size)) >> np.uint64(32))


@numba.njit(cache=True, nogil=True)
def grow_in_place(table, old_size, order, empty):
    """Rehash the windows of a table grown in place from ``old_size`` slots (its
    first rows, as they were) to ``len(table)``: every window moved to its slot
    there, with no second table.

    The rows past ``old_size`` are made empty; then each window not moved yet is
    taken out and put at the first slot from its new home that is empty or holds
    a window not moved yet (which it takes the place of, and which is carried on
    in turn). A moved window never moves again, so every slot between a window's
    home and its place stays taken: linear probing finds it.
    """
    size = table.shape[0]
    for r in range(old_size, size):
        table[r, 0] = empty
    moved = np.zeros(size, dtype=np.bool_)
    carry = np.empty(table.shape[1], dtype=table.dtype)
    spare = np.empty(table.shape[1], dtype=table.dtype)
    for i in range(old_size):
        if moved[i] or table[i, 0] == empty:
            continue
        carry[:] = table[i]
        table[i, 0] = empty
        while True:
            s = _scaled(_hash(carry[:order]), size)
            while moved[s]:
                s += 1
                if s == size:
                    s = 0
            if table[s, 0] == empty:
                table[s] = carry
                moved[s] = True
                break
            spare[:] = table[s]  # a window not moved yet: it is carried on
            table[s] = carry
            moved[s] = True
            carry, spare = spare, carry


@numba.njit(cache=True, nogil=True)
def take_sorted(table, order, empty, digit_bits, rows, counts):
    """The windows in use in ``table`` (``len(rows)`` of them) copied into ``rows``,
    their counts (the count's digits put together) into ``counts``, and both
    sorted by window (lexicographic: the tables' order) in place: beside the
    table, nothing but what is kept (no boolean mask, no sorting index, no
    second copy to gather into)."""
    digits = table.shape[1] - order
    used = 0
    for r in range(table.shape[0]):
        if table[r, 0] != empty:
            for k in range(order):
                rows[used, k] = table[r, k]
            total = np.int64(0)
            for k in range(digits):
                total += np.int64(table[r, order + k]) << (digit_bits * k)
            counts[used] = total
            used += 1
    sort_rows(rows, counts)


@numba.njit(cache=True, nogil=True, inline="always")
def _less(rows, i, j):
    """Whether row ``i`` of ``rows`` comes before row ``j`` (lexicographic)."""
    for k in range(rows.shape[1]):
        if rows[i, k] != rows[j, k]:
            return rows[i, k] < rows[j, k]
    return False


@numba.njit(cache=True, nogil=True, inline="always")
def _swap(rows, counts, i, j):
    for k in range(rows.shape[1]):
        rows[i, k], rows[j, k] = rows[j, k], rows[i, k]
    counts[i], counts[j] = counts[j], counts[i]


@numba.njit(cache=True, nogil=True)
def _sift(rows, counts, lo, root, size):
    """Heap sort's sift-down of ``root`` in the heap of ``size`` rows from ``lo``."""
    while True:
        child = 2 * root + 1
        if child >= size:
            return
        if child + 1 < size and _less(rows, lo + child, lo + child + 1):
            child += 1
        if not _less(rows, lo + root, lo + child):
            return
        _swap(rows, counts, lo + root, lo + child)
        root = child


@numba.njit(cache=True, nogil=True)
def _heap_sort(rows, counts, lo, hi):
    """Rows ``lo .. hi`` (inclusive) sorted in O(n log n) whatever their order: where
    quicksort has recursed too deep."""
    size = hi - lo + 1
    for root in range(size // 2 - 1, -1, -1):
        _sift(rows, counts, lo, root, size)
    for last in range(size - 1, 0, -1):
        _swap(rows, counts, lo, lo + last)
        _sift(rows, counts, lo, 0, last)


@numba.njit(cache=True, nogil=True)
def sort_rows(rows, counts, depth_limit=-1):
    """Sort the distinct rows of ``rows`` (lexicographic) in place, ``counts`` along:
    introsort (median-of-three quicksort, Hoare's partition, heap sort past a
    depth of ``depth_limit``, by default 2 log2 n; insertion sort below 16 rows),
    its own stack, no recursion."""
    n = len(rows)
    if n < 2:
        return
    if depth_limit < 0:
        depth_limit = 2 * (int(np.log2(n)) + 1)
    stack = np.empty((64, 3), dtype=np.int64)  # the larger part waits: depth <= log2 n
    stack[0, 0], stack[0, 1], stack[0, 2] = 0, n - 1, depth_limit
    top = 1
    while top:
        top -= 1
        lo, hi, depth = stack[top, 0], stack[top, 1], stack[top, 2]
        while hi - lo >= 16:
            if depth == 0:
                _heap_sort(rows, counts, lo, hi)
                lo = hi
                break
            depth -= 1
            mid = lo + (hi - lo) // 2
            if _less(rows, mid, lo):
                _swap(rows, counts, mid, lo)
            if _less(rows, hi, lo):
                _swap(rows, counts, hi, lo)
            if _less(rows, hi, mid):
                _swap(rows, counts, hi, mid)
            # the median of three is the pivot, moved to lo, where the scans never swap
            # it (they compare with it there); rows[hi], at least as large, stops i
            _swap(rows, counts, mid, lo)
            i, j = lo, hi + 1
            while True:
                i += 1
                while _less(rows, i, lo):
                    i += 1
                j -= 1
                while _less(rows, lo, j):
                    j -= 1
                if i >= j:
                    break
                _swap(rows, counts, i, j)
            _swap(rows, counts, lo, j)  # the pivot to its place: left < j < right
            if j - lo < hi - j:
                stack[top, 0], stack[top, 1], stack[top, 2] = j + 1, hi, depth
                hi = j - 1
            else:
                stack[top, 0], stack[top, 1], stack[top, 2] = lo, j - 1, depth
                lo = j + 1
            top += 1
        for a in range(lo + 1, hi + 1):  # insertion sort of what is left
            b = a
            while b > lo and _less(rows, b, b - 1):
                _swap(rows, counts, b, b - 1)
                b -= 1


@numba.njit(cache=True, nogil=True)
def count_windows(ids, eos, bos, end, order, table, used, low, high, start, virtual, limit):
    """Count into ``table`` the windows of ``order`` tokens of the padded sequence
    (``ids`` with ``bos`` before every sentence: at the start and after each
    ``eos``) starting at every position but an end-of-line one, whose first
    token is in ``[low, high)`` (two calls on disjoint ranges can run in two
    threads, each with its table).

    A window is cut after the first ``eos`` it holds (its sentence ends there)
    and at the end of ``ids``; what is cut is filled with ``end``. Counting
    begins at position ``start`` (``virtual``: with the ``<s>`` before it) and
    stops where the table is three quarters full; returns ``(used, resume,
    virtual, stopped, full)``: the slots it uses, where the next call resumes,
    whether it stopped there, and whether the table has ``limit`` slots already:
    then the caller empties it (:func:`take_sorted`), else it grows it in place
    (:func:`grow_in_place`).
    Successive calls on chunks of whole sentences (each begun with ``virtual``)
    count what one call on their concatenation counts.

    The table holds the windows themselves (open addressing, linear probing, at
    most three quarters full: two thirds of the memory of at most half full, for
    a probe or two more): a row is a window's tokens, then its count in digits of
    the table's width (the columns past ``order``), so that finding a window and
    counting it touch one place in memory. An empty row starts with ``end + 1``.
    It is one loop, in one place, so that numba keeps it tight: the same loop
    with the probing in a helper ran 2x slower.
    """
    n = len(ids)
    empty = end + 1
    size = table.shape[0]
    width = table.shape[1]
    window = np.empty(order, dtype=table.dtype)
    full = stop = False
    i = start
    # virtual: the <s> before the sentence that starts at i, not yet counted
    while i < n:
        if virtual:
            if bos < low or bos >= high:
                virtual = False
                continue
            window[0] = bos
            at = i
        else:
            head = ids[i]
            if head == eos:  # no window starts at an end; a sentence starts after it
                i += 1
                virtual = True
                continue
            if head < low or head >= high:
                i += 1
                continue
            window[0] = head
            at = i + 1
        live = True
        for j in range(1, order):
            if live and at < n:
                t = ids[at]
                window[j] = t
                live = t != eos
                at += 1
            else:
                window[j] = end
        s = _scaled(_hash(window), size)
        while True:
            if table[s, 0] == empty:
                for j in range(order):
                    table[s, j] = window[j]
                table[s, order] = 1
                for k in range(order + 1, width):
                    table[s, k] = 0
                used += 1
                if 4 * used >= 3 * size:  # the caller grows it or writes it out
                    stop = True
                    full = size >= limit
                break
            same = True
            for j in range(order):
                if table[s, j] != window[j]:
                    same = False
                    break
            if same:  # one more: add with carry over the count's digits
                for k in range(order, width):
                    table[s, k] += 1
                    if table[s, k] != 0:
                        break
                break
            s += 1
            if s == size:
                s = 0
        if virtual:
            virtual = False
        else:
            i += 1
        if stop:
            break
    return used, i, virtual, stop, full


@numba.njit(cache=True, nogil=True)
def next_order(
    rows, col, counts, prefix_rank, n, end, bos, radix, lower_suffix, lower_starts_bos,
    lower_keys, slots,
):  # fmt: skip
    """The n-grams of order ``n`` from the sorted distinct windows ``rows`` (and
    their ``counts``): their keys (``prefix rank * radix + token``), counts, suffix
    ranks in order ``n - 1`` and whether they start with ``bos``.

    Each row's ``n``-th token is its column ``col`` (the columns before it may be
    gone: see :func:`pack_columns`); at order 2 its first token is column 0.
    ``prefix_rank`` holds each row's rank of its first ``n - 1`` tokens among the
    n-grams of order ``n - 1`` (-1 where they hold ``end``); it is overwritten
    with the rank of its first ``n`` tokens among those of order ``n``, for the
    next order. The suffix of an n-gram (its last ``n - 1`` tokens) is found
    through ``slots`` (a :class:`.hashing.CompiledIndex` of ``lower_keys``); order
    2's is its last token. An n-gram starts with ``bos`` where its prefix does
    (``lower_starts_bos``). Two passes over the rows, no temporaries.
    """
    size = len(rows)
    groups = 0
    for r in range(size):
        if rows[r, col] != end and (
            r == 0 or prefix_rank[r] != prefix_rank[r - 1] or rows[r, col] != rows[r - 1, col]
        ):
            groups += 1
    keys = np.empty(groups, dtype=np.int64)
    out_counts = np.zeros(groups, dtype=counts.dtype)
    suffix = np.empty(groups, dtype=prefix_rank.dtype)  # ranks: int32 while they fit
    starts_bos = np.empty(groups, dtype=np.bool_)
    g = -1
    before = np.int64(-2)  # the previous row's prefix rank, before it was overwritten
    for r in range(size):
        token = np.int64(rows[r, col])
        rank = np.int64(prefix_rank[r])
        if token == end:
            prefix_rank[r] = -1
            before = rank
            continue
        if r == 0 or rank != before or token != rows[r - 1, col]:
            g += 1
            keys[g] = rank * radix + token
            if n == 2:
                starts_bos[g] = rows[r, 0] == bos
                suffix[g] = token
            else:
                starts_bos[g] = lower_starts_bos[rank]
                query = np.int64(lower_suffix[rank]) * radix + token
                found = _find(lower_keys, slots, query)
                if found == -1:  # the suffix of a counted n-gram was counted one order down
                    raise ValueError("an n-gram's suffix is missing from the order below")
                suffix[g] = found
        out_counts[g] += counts[r]
        before = rank
        prefix_rank[r] = g
    return keys, out_counts, suffix, starts_bos


@numba.njit(cache=True, nogil=True)
def pack_columns(flat, width, first):
    """Rows of ``width`` items laid end to end in ``flat`` become rows of their
    columns ``first..``, laid end to end from the start of ``flat`` (in place:
    each item moves towards the start, never past one still to be read)."""
    kept = width - first
    for r in range(len(flat) // width):
        for c in range(kept):
            flat[r * kept + c] = flat[r * width + first + c]


@numba.njit(cache=True, nogil=True)
def _before(a, i, b, j):
    """Whether row ``a[i]`` sorts before row ``b[j]`` (-1), equals it (0), or after (1)."""
    for c in range(a.shape[1]):
        if a[i, c] != b[j, c]:
            return -1 if a[i, c] < b[j, c] else 1
    return 0


@numba.njit(cache=True, nogil=True)
def merge_runs(runs_rows, runs_counts, out_rows, out_counts):
    """Merge sorted runs of rows (each row at most once per run) into ``out_*``,
    adding the counts of a row found in several; returns the rows written."""
    k = len(runs_rows)
    heads = np.zeros(k, dtype=np.int64)
    used = 0
    while True:
        best = -1
        for r in range(k):
            rows = runs_rows[r]
            if heads[r] < len(rows):
                if best == -1:
                    best = r
                elif _before(rows, heads[r], runs_rows[best], heads[best]) < 0:
                    best = r
        if best == -1:
            return used
        out_rows[used] = runs_rows[best][heads[best]]
        total = np.int64(0)
        for r in range(k):
            rows = runs_rows[r]
            if heads[r] < len(rows) and _before(rows, heads[r], out_rows, used) == 0:
                total += runs_counts[r][heads[r]]
                heads[r] += 1
        out_counts[used] = total
        used += 1


def typed_list(arrays):
    """``arrays`` as the list type compiled code takes."""
    out = numba.typed.List()
    for array in arrays:
        out.append(array)
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _slot(key, size):
    """The first slot of ``key`` in a table of ``size`` slots: its Fibonacci hash,
    scaled (:func:`_scaled`), so the table is as large as its load asks, not the
    next power of two (up to half of it unused)."""
    return _scaled(np.uint64(key) * np.uint64(0x9E3779B97F4A7C15), size)


@numba.njit(cache=True, nogil=True)
def place_keys(keys, size):
    """Slots (``size`` of them, linear probing) holding the position of every key of
    ``keys`` (distinct int64), from the slot :func:`_slot` gives it."""
    slots = np.full(size, -1, dtype=np.int32)
    for r in range(len(keys)):
        s = _slot(keys[r], size)
        while slots[s] != -1:
            s += 1
            if s == size:
                s = 0
        slots[s] = r
    return slots


@numba.njit(cache=True, nogil=True)
def find_keys(keys, slots, query):
    """The position in ``keys`` of every query (-1 where absent), through the slots
    :func:`place_keys` made."""
    out = np.empty(len(query), dtype=np.int64)
    for q in range(len(query)):
        out[q] = _find(keys, slots, query[q])
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _find(keys, slots, key):
    """The position of ``key`` in ``keys`` (-1 where absent), through the slots."""
    if key < 0:  # a query whose context is absent: no n-gram key is negative
        return -1
    size = len(slots)
    s = _slot(key, size)
    while True:
        r = slots[s]
        if r == -1 or keys[r] == key:
            return r
        s += 1
        if s == size:
            s = 0

"""From counts to probabilities: the classic smoothings, all as array operations.

The interpolated smoothings share one form (Chen & Goodman):

    p(w | h) = (c(h w) - d(h w)) / Z(h)  +  G(h) / Z(h) * p(w | h minus its first token)

with ``Z(h) = sum_w c(h w) + e(h)``, ``G(h) = sum_w d(h w) + e(h)``, and at the
bottom the uniform distribution over the vocabulary (``<unk>`` and the
end-of-line token included, ``<s>`` excluded, as KenLM does). They differ in
the counts ``c``, the discounts ``d`` and the extra mass ``e``:

==============  ==========================  =========================  ==========
smoothing       c                           d                          e
==============  ==========================  =========================  ==========
witten-bell     raw                         0                          N1+(h .)
absolute        raw                         D (param ``discount``)     0
kn              KenLM's adjusted counts     D = n1 / (n1 + 2 n2)       0
mkn             KenLM's adjusted counts     D1, D2, D3+ by count       0
==============  ==========================  =========================  ==========

Each sums to 1 over the vocabulary at every context: the discounted mass
``G / Z`` is exactly the weight given to the lower order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import lmeval

from .counting import OrderCounts, continuation_counts
from .tables import Tables

SMOOTHINGS = ("mle", "add-k", "witten-bell", "absolute", "kn", "mkn")
#: KenLM's ``--discount_fallback`` discounts D1, D2, D3+.
FALLBACK = (0.5, 1.0, 1.5)


def counts_of_counts(counts: np.ndarray, moved: tuple[int, int] | None = None) -> list[int]:
    """``n[j]``, how many n-grams have count ``j``, for j = 0..4; ``moved = (a, b)``
    counts one n-gram of count ``a`` as one of count ``b`` (see :func:`kenlm_quirk`)."""
    n = [int(np.count_nonzero(counts == j)) for j in range(5)]
    if moved is not None:
        was, now = moved
        if was < 5:
            n[was] -= 1
        if now < 5:
            n[now] += 1
    return n


def kenlm_discounts(
    counts: np.ndarray, moved: tuple[int, int] | None = None
) -> tuple[tuple[float, float, float], bool]:
    """Modified Kneser-Ney discounts (D1, D2, D3+) of one order, and whether they fell back.

    Chen & Goodman's equation (26), computed in float32 as KenLM's ``lmplz`` does so
    that the probabilities agree to the last digit KenLM prints. When a count of
    counts is zero or a discount falls outside ``[0, j]``, KenLM (with
    ``--discount_fallback``) and we use (0.5, 1, 1.5). ``moved``: as in
    :func:`counts_of_counts`.
    """
    n = counts_of_counts(counts, moved)
    if min(n[1:4]) == 0:
        return FALLBACK, True
    f = np.float32
    y = f(n[1]) / f(n[1] + 2.0 * n[2])
    amounts = []
    for j in (1, 2, 3):
        d = f(j) - f(j + 1) * y * f(n[j + 1]) / f(n[j])
        if not 0.0 <= d <= j:
            return FALLBACK, True
        amounts.append(float(d))
    return (amounts[0], amounts[1], amounts[2]), False


def kn_discount(counts: np.ndarray, moved: tuple[int, int] | None = None) -> tuple[float, bool]:
    """Kneser-Ney's single discount ``n1 / (n1 + 2 n2)``; 0.5 when n1 or n2 is zero."""
    n = counts_of_counts(counts, moved)
    n1, n2 = n[1], n[2]
    if n1 == 0 or n2 == 0:
        return FALLBACK[0], True
    return n1 / (n1 + 2 * n2), False


def kenlm_quirk(
    orders: list[OrderCounts], n: int, adjusted: np.ndarray, first_seen: np.ndarray, radix: int
) -> tuple[int, int] | None:
    """The one n-gram of order ``n`` that KenLM's ``lmplz`` puts in the counts of
    counts with its raw count instead of its adjusted count: ``(adjusted, raw)``,
    or ``None`` when there is none (the top order, or it starts with ``<s>``).

    ``lmplz`` (``AdjustCounts::Run`` in ``lm/builder/adjust_counts.cc``) collects
    the counts of counts of the lower orders as it closes each n-gram in a
    stream sorted by suffix (last word first, by its word ids); the n-grams still
    open when the stream ends, the suffixes of its last top-order n-gram, are
    added with their raw counts. Of each lower order that is the largest n-gram
    in that order, compared from its last token backwards by KenLM's ids
    (``first_seen``: ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2, then each token by its
    first appearance in the training text). It changes the discounts only where
    they are estimated in closed form (The Time Machine's unigrams: D1 0.158 ->
    0.176), never the adjusted counts the probabilities use.
    """
    if n == len(orders):
        return None
    table = orders[n - 1]
    chosen = _ending_latest(table, n, first_seen, radix)
    key = table.keys[chosen]
    for level in range(n - 1, 0, -1):  # then from the token before it to the first
        if not len(chosen):  # no n-gram of this order: nothing to move
            return None
        key = orders[level - 1].keys[key // radix]  # the n-gram's first `level` tokens
        token = key % radix if level > 1 else key
        rank = first_seen[token]
        best = rank == rank.max()
        chosen, key = chosen[best], key[best]
    if not len(chosen) or table.starts_bos[chosen[0]]:
        return None
    return int(adjusted[chosen[0]]), int(table.counts[chosen[0]])


def _ending_latest(table: OrderCounts, n: int, first_seen: np.ndarray, radix: int) -> np.ndarray:
    """The positions of the n-grams of ``table`` (order ``n``) whose last token
    has the largest of KenLM's ids (unigrams: only tokens of the text), found a
    slice at a time: never a temporary the size of the order."""
    best, chosen = -1, np.zeros(0, dtype=np.int64)
    for a in range(0, len(table.keys), SLICE):
        key = table.keys[a : a + SLICE]
        rank = first_seen[key % radix if n > 1 else key]
        rank[table.counts[a : a + SLICE] <= 0] = -1
        top = int(rank.max()) if len(rank) else -1
        if top >= 0 and top >= best:
            here = a + np.flatnonzero(rank == top)
            chosen = here if top > best else np.concatenate([chosen, here])
            best = top
    return chosen


#: N-grams per slice when turning counts into probabilities (bounds the temporaries).
SLICE = 1 << 20


def _contexts(orders: list[OrderCounts], n: int, radix: int, part: slice) -> np.ndarray:
    """Context rank of the n-grams ``part`` of order ``n`` (0 for unigrams)."""
    if n == 1:
        return np.zeros(len(orders[0].keys[part]), dtype=np.int64)
    return orders[n - 1].keys[part] // radix


def _add_by(ctx: np.ndarray, weights: np.ndarray, total: np.ndarray) -> None:
    """Add ``weights`` to ``total`` per context, ``ctx`` being sorted (the n-grams of
    an order are): a sum per run of equal contexts, so that a slice costs its own
    size, never the number of contexts."""
    if not len(ctx):
        return
    starts = np.flatnonzero(np.concatenate(([True], ctx[1:] != ctx[:-1])))
    total[ctx[starts]] += np.add.reduceat(np.asarray(weights, dtype=total.dtype), starts)


def interpolate(
    orders: list[OrderCounts],
    counts_of: Callable[[int], np.ndarray],
    discounts_of: Callable[[int, np.ndarray], Sequence[float]],
    vocab_size: int,
    radix: int,
    bos: int,
    extra_mass: bool = False,
    values: type = np.float64,
) -> Tables:
    """The interpolated model of the module docstring, one order at a time.

    ``counts_of(n)`` gives the counts ``c`` of the n-grams of order n;
    ``discounts_of(n, c)`` the discount of a count of 0, 1, 2 and 3 or more;
    ``extra_mass`` adds Witten-Bell's ``N1+(h .)`` to ``Z`` and ``G``. The
    n-grams of an order are processed in slices, so that the temporaries stay
    small beside the tables. The counts are consumed: an order's raw counts go
    as soon as its adjusted counts and discounts are made from them, and once an
    order is done, all but its keys (which the tables keep). The arithmetic is
    float64; the tables keep ``values`` (float32: stored as KenLM stores them,
    each order's converted as soon as it is done).
    """
    logp: list[np.ndarray] = []
    logbo: list[np.ndarray] = []
    lower = np.full(1, 1.0 / vocab_size)  # order 0: the uniform distribution
    for n in range(1, len(orders) + 1):
        counts = counts_of(n)
        amounts = np.asarray(discounts_of(n, counts), dtype=np.float64)
        if counts is not orders[n - 1].counts:  # adjusted: the raw ones are done with
            orders[n - 1].counts = orders[n - 1].starts_bos = np.zeros(0, dtype=np.int64)
        n_ctx = 1 if n == 1 else len(orders[n - 2].keys)
        parts = [slice(a, a + SLICE) for a in range(0, len(counts), SLICE)]
        # z sums counts: in their own integer type (exact, and half of float64's
        # memory where they are int32), converted exactly where it divides
        z, g = np.zeros(n_ctx, dtype=counts.dtype), np.zeros(n_ctx)
        for part in parts:
            c = counts[part]
            ctx = _contexts(orders, n, radix, part)
            _add_by(ctx, c, z)
            _add_by(ctx, amounts[np.minimum(c, 3)], g)
            if extra_mass:
                _add_by(ctx, c > 0, z)
                _add_by(ctx, c > 0, g)
        is_ctx = z > 0
        gamma = np.divide(g, z, out=g, where=is_ctx)  # in place: one array per context less
        np.copyto(gamma, 1.0, where=~is_ctx)
        np.copyto(z, 1, where=~is_ctx)
        top = n == len(orders)
        # the top order's probabilities feed no further order: each slice is put in
        # its final form at once, never a float64 array of them all beside it
        probs = np.empty(len(counts), dtype=values if top else np.float64)
        suffix = orders[n - 1].suffix
        for part in parts:
            c = counts[part]
            ctx = _contexts(orders, n, radix, part)
            p = (c - amounts[np.minimum(c, 3)]) / z[ctx]
            p += gamma[ctx] * lower[suffix[part]]
            probs[part] = _log_at_most_0(p) if top else p
        if n > 1:
            logbo.append(_log_at_most_0(gamma).astype(values, copy=False))
            logp.append(_log_at_most_0(lower).astype(values, copy=False))  # order n-1 is done
        lower = probs
        del counts, suffix, probs, z, g, gamma, is_ctx
        orders[n - 1].release()  # its counts are done with too: not under the next order
        lmeval.release_memory()
    logp.append(lower)  # the top order's, logs already
    return Tables(radix, bos, [o.keys for o in orders], logp, logbo)


def _log_at_most_0(p: np.ndarray) -> np.ndarray:
    """``log(p)`` in place, where rounding may have left a probability a hair above 1."""
    np.log(p, out=p)
    return np.minimum(p, 0.0, out=p)


def _log_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(num) - np.log(den)


def unsmoothed(
    orders: list[OrderCounts],
    vocab_size: int,
    radix: int,
    bos: int,
    k: float,
    values: type = np.float64,
) -> Tables:
    """Relative frequencies (``k=0``: MLE, a backoff model whose unseen events get 0)
    or add-k, ``(c(h w) + k) / (c(h .) + k |V|)`` at the longest seen context ``h``."""
    logp: list[np.ndarray] = []
    logbo: list[np.ndarray] = []
    for n in range(1, len(orders) + 1):
        c = orders[n - 1].counts.astype(np.float64)
        ctx = _contexts(orders, n, radix, slice(None))
        n_ctx = 1 if n == 1 else len(orders[n - 2].keys)
        z = np.zeros(n_ctx)
        _add_by(ctx, c, z)
        is_ctx = z > 0
        den = z + k * vocab_size
        if n == 1 and not is_ctx[0] and k == 0:
            # no training token at all: 0/0, so the limit of add-k as k -> 0, uniform
            logp.append(np.full(len(c), -np.log(vocab_size), dtype=values))
        else:
            logp.append(_log_ratio(c + k, den[ctx]).astype(values, copy=False))
        if n > 1:
            if k == 0:
                unseen = np.where(is_ctx, -np.inf, 0.0)
            else:
                unseen = np.where(is_ctx, _log_ratio(np.full(n_ctx, k), den), np.nan)
            logbo.append(unseen.astype(values, copy=False))
    return Tables(radix, bos, [o.keys for o in orders], logp, logbo, backoff=k == 0)


def estimate(
    orders: list[OrderCounts],
    smoothing: str,
    vocab_size: int,
    radix: int,
    bos: int,
    k: float = 1.0,
    discount: float = 0.75,
    first_seen: np.ndarray | None = None,
    values: type = np.float64,
) -> tuple[Tables, dict]:
    """The model of ``smoothing`` and JSON-able facts about it (discounts, notes).

    ``values``: the dtype the tables keep their log-probabilities and back-off
    weights in (computed in float64 whatever it is).

    ``first_seen`` (KenLM's id of every internal id) makes the Kneser-Ney
    discounts KenLM's (see :func:`kenlm_quirk`); ``None`` takes the counts of
    counts exactly from the adjusted counts, as the textbooks do.
    """
    facts: dict = {}
    if smoothing in ("mle", "add-k"):
        k = 0.0 if smoothing == "mle" else k
        return unsmoothed(orders, vocab_size, radix, bos, k, values), facts
    if smoothing in ("witten-bell", "absolute"):
        fixed = 0.0 if smoothing == "witten-bell" else discount
        if smoothing == "absolute":
            facts["discounts"] = {str(n): discount for n in range(1, len(orders) + 1)}
        tables = interpolate(
            orders,
            lambda n: orders[n - 1].counts,
            lambda n, c: (0.0, fixed, fixed, fixed),
            vocab_size,
            radix,
            bos,
            extra_mass=smoothing == "witten-bell",
            values=values,
        )
        return tables, facts
    per_order: dict[str, Any] = {}
    notes: list[str] = []

    def discounts(n: int, c: np.ndarray) -> tuple[float, float, float, float]:
        moved = None if first_seen is None else kenlm_quirk(orders, n, c, first_seen, radix)
        if smoothing == "kn":
            value, fell_back = kn_discount(c, moved)
            per_order[str(n)] = value
            amounts = (value, value, value)
        else:
            amounts, fell_back = kenlm_discounts(c, moved)
            per_order[str(n)] = list(amounts)
        if fell_back:
            shown = FALLBACK[0] if smoothing == "kn" else FALLBACK
            notes.append(
                f"discount fallback {shown} used for order {n} (closed-form estimate undefined"
                " or out of range on these counts), as KenLM's --discount_fallback"
            )
        return (0.0, *amounts)

    adjusted = lambda n: continuation_counts(orders, n)  # noqa: E731
    tables = interpolate(orders, adjusted, discounts, vocab_size, radix, bos, values=values)
    facts["discounts"] = per_order
    if notes:
        facts["notes"] = notes
    return tables, facts

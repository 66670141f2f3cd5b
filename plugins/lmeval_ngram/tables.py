"""The estimated model as sorted arrays, and scoring by array operations.

Every order n keeps three parallel arrays: the sorted int64 n-gram keys
(``prefix_rank * radix + token``, see :mod:`.counting`), the natural-log
probability of each n-gram, and a natural-log weight used when an n-gram
is the context of a longer one and the longer one is absent:

* backoff models (``backoff=True``: the interpolated smoothings, MLE, and any
  ARPA file): ``log p(w | h) = logp(h w)`` when ``h w`` is stored, otherwise
  ``logbo(h) + log p(w | h minus its first token)``, with ``logbo = 0`` for a
  context that is not stored;
* longest-context models (``backoff=False``: add-k): ``p(w | h)`` is decided
  by the longest stored context of ``h``: ``logp(h w)`` when stored, else the
  context's ``logbo`` (the probability of any unseen token there); ``NaN``
  marks an n-gram that is no context, so a shorter one decides.

Scoring walks the orders upward once over the whole input: one hash-table
lookup (:mod:`.hashing`) and a few gathers per order, no Python loop per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .counting import pad, token_dtype
from .hashing import index_for

#: Positions scored at once (see ``Tables._sliced``).
SCORE_SLICE = 1 << 16


@dataclass
class Tables:
    radix: int  # number of internal token ids, <s> included
    bos: int  # internal id of <s>
    keys: list[np.ndarray]  # per order, sorted int64 (order 1: arange(radix))
    logp: list[np.ndarray]  # per order, natural log probabilities
    logbo: list[np.ndarray]  # per order below the top one, natural log backoff weights
    backoff: bool = True
    # built on first use, never saved: hash indexes per order, padded value arrays
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def order(self) -> int:
        return len(self.keys)

    @property
    def sizes(self) -> list[int]:
        return [len(k) for k in self.keys]

    def lookup(self, n: int, ctx: np.ndarray, tok: np.ndarray) -> np.ndarray:
        """Rank of the n-gram (context rank ``ctx``, token ``tok``) at order ``n``, or -1.

        ``ctx`` is -1 where the context itself is absent (its key is then negative
        and matches nothing).
        """
        # keyed by the keys array itself: an index may hold a copy (a hash index
        # does), so comparing the index's keys would miss and rebuild every call
        cached = self._cache.get(n)
        if cached is None or cached[0] is not self.keys[n - 1]:
            key_range = len(self.keys[n - 2]) * self.radix
            cached = self._cache[n] = (self.keys[n - 1], index_for(self.keys[n - 1], key_range))
        index = cached[1]
        query = np.asarray(ctx, dtype=np.int64) * self.radix  # ranks may come as int32
        query += tok
        return index.find(query)

    def _at(self, name: str, n: int, rank: np.ndarray) -> np.ndarray:
        """``logp`` or ``logbo`` of order n at every ``rank``; rank -1 (absent) reads 0
        for a backoff (no weight) and NaN for "no context". A gather the size of the
        query: no copy of the table."""
        values = (self.logp if name == "logp" else self.logbo)[n - 1]
        out = values[np.maximum(rank, 0)] if len(values) else np.zeros(len(rank))
        fill = 0.0 if self.backoff or name == "logp" else np.nan
        out[rank < 0] = fill
        return out

    def _step(self, n: int, lp: np.ndarray, ctx: np.ndarray, tok: np.ndarray) -> np.ndarray:
        """Move ``lp`` (in place) from order n-1 to order n; returns the n-gram ranks."""
        idx = self.lookup(n, ctx, tok)
        bo = self._at("logbo", n - 1, ctx)
        if self.backoff:
            lp += bo
        else:
            np.copyto(lp, bo, where=~np.isnan(bo))
        found = idx >= 0
        lp[found] = self.logp[n - 1][idx[found]]
        return idx

    def score(self, ids: np.ndarray, eos: int | None) -> np.ndarray:
        """Natural-log probability of every token of ``ids`` (internal ids) given
        its sentence: sentences end at ``eos`` and start after ``<s>`` (one
        sentence with one ``<s>`` for ``eos=None``), as :func:`.counting.pad` has it."""
        return self._sliced(self._score_slice, ids, eos, np.float64)

    def _score_slice(self, seq: np.ndarray, starts: np.ndarray) -> np.ndarray:
        seq = np.asarray(seq, dtype=np.int64)
        lp = self.logp[0][seq].astype(np.float64, copy=False)  # summed in float64
        rank = seq
        for n in range(2, self.order + 1):
            rank = self._step(n, lp, _contexts(rank, starts), seq)
        return lp

    def _sliced(self, compute, ids: np.ndarray, eos: int | None, dtype) -> np.ndarray:
        """``compute(seq, starts)`` on the padded ids (:func:`.counting.pad`), a slice
        of ``SCORE_SLICE`` ids at a time, so that the padding and the temporaries
        (several 8-byte arrays per order) stay the size of a slice whatever the
        text's: each slice starts ``order - 1`` ids early, all the context its
        first ids can use (the ``<s>`` that padding puts before a slice is never
        in it), and those are dropped."""
        out = np.empty(len(ids), dtype=dtype)
        margin = self.order - 1
        for a in range(0, len(ids), SCORE_SLICE):
            low = max(0, a - margin)
            seq, starts = pad(ids[low : a + SCORE_SLICE], eos, self.bos, token_dtype(self.radix))
            out[a : a + SCORE_SLICE] = compute(seq, starts)[~starts][a - low :]
        return out

    def orders(self, ids: np.ndarray, eos: int | None) -> np.ndarray:
        """The order of the longest stored n-gram ending at every token of ``ids`` (1
        to ``order``; KenLM's ``ngram_length``), the one whose probability
        :meth:`score` uses."""
        return self._sliced(self._orders_slice, ids, eos, np.int64)

    def _orders_slice(self, seq: np.ndarray, starts: np.ndarray) -> np.ndarray:
        seq = np.asarray(seq, dtype=np.int64)
        used = np.ones(len(seq), dtype=np.int64)
        rank = seq
        for n in range(2, self.order + 1):
            rank = self.lookup(n, _contexts(rank, starts), seq)
            used[rank >= 0] = n
        return used

    def context_rank(self, context: np.ndarray) -> int:
        """Rank of the n-gram ``context`` in the table of its order, or -1."""
        rank = np.asarray([context[0]], dtype=np.int64)
        for n, tok in enumerate(context[1:], start=2):
            rank = self.lookup(n, rank, np.asarray([tok], dtype=np.int64))
        return int(rank[0])

    def next_logprobs(self, history: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Natural-log probability of each candidate token (internal ids) after
        ``history``.

        ``history`` starts with ``<s>`` (or is any context in stream mode); only its
        last ``order - 1`` tokens matter. The n-grams that continue a context are
        one run of the sorted keys of their order (``context rank * radix +
        token``): each order costs a binary search, the run, and one pass over
        the tokens for the context's back-off, not a lookup per candidate (over a
        vocabulary of a million words, milliseconds instead of a second). It is
        worked out for every token, then read at the candidates (which may repeat:
        the arpa model maps all the tokens its file lacks to its ``<unk>``).
        """
        history = np.asarray(history, dtype=np.int64)[max(0, len(history) - (self.order - 1)) :]
        lp = self.logp[0].astype(np.float64)  # every internal id: order 1 is all of them
        for n in range(2, min(self.order, len(history) + 1) + 1):
            context = self.context_rank(history[len(history) - (n - 1) :])
            if context < 0:  # absent (no weight), but a longer context may still be
                continue  # stored: an ARPA file need not hold every suffix
            weight = float(self.logbo[n - 2][context]) if len(self.logbo[n - 2]) else 0.0
            if self.backoff:
                lp += weight
            elif not np.isnan(weight):
                lp[:] = weight
            keys = self.keys[n - 1]
            low, high = np.searchsorted(keys, [context * self.radix, (context + 1) * self.radix])
            lp[keys[low:high] - context * self.radix] = self.logp[n - 1][low:high]
        return lp[np.asarray(candidates, dtype=np.int64)]

    def ngram_tokens(self, n: int) -> np.ndarray:
        """The tokens of every n-gram of order ``n``, as a (count, n) int64 array."""
        out = np.empty((len(self.keys[n - 1]), n), dtype=np.int64)
        key = self.keys[n - 1]
        for col in range(n - 1, -1, -1):
            out[:, col] = key % self.radix
            if col:
                key = self.keys[col - 1][key // self.radix]
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"radix": np.int64(self.radix), "bos": np.int64(self.bos)}
        out["backoff"] = np.bool_(self.backoff)
        for n in range(1, self.order + 1):
            out[f"keys_{n}"] = self.keys[n - 1]
            out[f"logp_{n}"] = self.logp[n - 1]
            if n < self.order:
                out[f"logbo_{n}"] = self.logbo[n - 1]
        return out

    @classmethod
    def from_arrays(cls, data) -> Tables:
        """From what :meth:`to_arrays` gave (a mapping of names to arrays)."""
        order = sum(1 for name in data if name.startswith("keys_"))
        return cls(
            radix=int(data["radix"]),
            bos=int(data["bos"]),
            keys=[data[f"keys_{n}"] for n in range(1, order + 1)],
            logp=[data[f"logp_{n}"] for n in range(1, order + 1)],
            logbo=[data[f"logbo_{n}"] for n in range(1, order)],
            backoff=bool(data["backoff"]),
        )


def _contexts(rank: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The context rank of every position at the next order: the rank of the n-gram
    ending one token earlier, -1 at the first token and at sentence starts."""
    ctx = np.empty_like(rank)
    ctx[0] = -1
    ctx[1:] = rank[:-1]
    ctx[starts] = -1  # an n-gram never crosses a sentence start
    return ctx

"""An interpolated unigram cache model (Kuhn & De Mori, 1990).

Why a cache helps: words are *bursty*. A word that has appeared once in a
document is far more likely to appear again soon than its overall frequency
says ("tuple" in a section about tuples, a variable name in a code listing, a
character's name in a chapter). A static model trained on other text cannot
know which words this document is about; a cache of the last few hundred
tokens can. Interpolating the two keeps the static model's coverage and adds
the document's own statistics::

    p(w | history) = (1 - lam) * p_base(w) + lam * p_cache(w)

``p_base`` is an add-k unigram estimated on the training ids,
``(c(w) + k) / (N + k |V|)``: every vocabulary id gets ``k > 0``, so it is a
distribution over the whole vocabulary and never zero. ``p_cache(w)`` is the
relative frequency of ``w`` among the last ``window`` tokens of the history
(with an empty history, ``p = p_base``). Both sum to 1 over the vocabulary, so
the mixture does too.

The cache is document-level: in line mode it spans lines, so the end-of-line
token (``vocab.eos_id``) is cached like any other token, and a word seen on
the previous line still counts. In stream mode there is no end-of-line token
and nothing changes. ``<unk>`` is cached too (an unknown word that repeats is
a repeated word).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

import lmeval

#: The ``format`` field of a saved file; :meth:`CacheModel.load` refuses any other.
FORMAT = "lmeval-cache/1"


class CacheModel(lmeval.LanguageModel):
    """``(1 - lam) * add-k unigram + lam * unigram of the last `window` tokens``.

    Scoring is vectorised and strictly causal: token ``i`` sees only
    ``ids[max(0, i - window):i]``. Its cost is ``O(n log n)`` for ``n`` tokens,
    independent of the vocabulary size (one sort of the ids); one
    next-token distribution costs ``O(window + |V|)``.
    """

    name = "cache"
    description = (
        "interpolated unigram cache (Kuhn & De Mori 1990): (1-lam) add-k unigram + "
        "lam relative frequency in the last `window` tokens"
    )
    params = (
        lmeval.Param(
            "lam",
            float,
            0.5,
            "weight of the cache, 0 to 1 (0: the add-k unigram alone; 1: the cache alone, "
            "so a token not in the window gets probability 0)",
            check=lmeval.in_range(0.0, 1.0),
        ),
        lmeval.Param(
            "window",
            int,
            200,
            "tokens of history in the cache (it spans lines), at least 1",
            check=lmeval.at_least(1),
        ),
        lmeval.Param(
            "k",
            float,
            1.0,
            "pseudo-count of the add-k unigram (1: Laplace), at least 0.01",
            check=lmeval.at_least(0.01),
        ),
    )
    # Not in the default comparison: `lmeval compare` without -m runs the recommended
    # spec of every model, and this one is an example (ask for it with -m cache).
    recommended = None

    def __init__(self, vocab: lmeval.Vocabulary, **params: Any) -> None:
        super().__init__(vocab, **params)
        self.counts: np.ndarray | None = None  # training count of every id
        self._base: np.ndarray | None = None  # p_base over the vocabulary

    # -- estimation ---------------------------------------------------------------------
    def fit(self, train_ids: np.ndarray, valid_ids: np.ndarray | None = None) -> None:
        """Count the training ids (the validation ids are not used: ``lam`` is fixed)."""
        ids = np.asarray(train_ids, dtype=np.int64)
        self._set_counts(np.bincount(ids, minlength=len(self.vocab)))

    def _set_counts(self, counts: np.ndarray) -> None:
        size = len(self.vocab)
        if counts.shape != (size,):
            raise lmeval.LmevalError(
                f"cache model: {counts.shape[0]} counts for a vocabulary of {size} ids"
            )
        self.counts = counts.astype(np.int64)
        k = self.config["k"]
        self._base = (self.counts + k) / (float(self.counts.sum()) + k * size)

    def _require(self) -> np.ndarray:
        if self._base is None:
            raise lmeval.LmevalError("the cache model is not fitted: call fit() first")
        return self._base

    # -- scoring ------------------------------------------------------------------------
    def score(self, ids: np.ndarray) -> np.ndarray:
        """``ln p(ids[i] | ids[:i])`` for every ``i``, float64.

        ``hits[i]``, how often ``ids[i]`` occurs in ``ids[lo_i:i]`` with
        ``lo_i = max(0, i - window)``, comes from one sort: the ids ordered by
        (id, position) as the keys ``id * n + position``, and two binary searches
        per token for ``id * n + lo_i`` and ``id * n + i``.
        """
        base = self._require()
        ids = np.asarray(ids, dtype=np.int64)
        n = len(ids)
        if n == 0:
            return np.zeros(0, dtype=np.float64)
        window, lam = self.config["window"], self.config["lam"]
        pos = np.arange(n, dtype=np.int64)
        lo = np.maximum(pos - window, 0)
        keys = np.sort(ids * n + pos)
        hits = np.searchsorted(keys, ids * n + pos) - np.searchsorted(keys, ids * n + lo)
        seen = pos - lo  # tokens in the cache: min(i, window)
        p = base[ids].copy()
        rest = seen > 0
        p[rest] = (1.0 - lam) * p[rest] + lam * (hits[rest] / seen[rest])
        with np.errstate(divide="ignore"):  # lam = 1 and a token not in the window: log 0
            return np.log(p)

    def next_token_logprobs(self, context_ids: np.ndarray) -> np.ndarray:
        """``ln p(v | context_ids)`` for every id ``v``; the same arithmetic as :meth:`score`."""
        base = self._require()
        context = np.asarray(context_ids, dtype=np.int64)
        recent = context[max(0, len(context) - self.config["window"]) :]
        if len(recent) == 0:
            return np.log(base)
        lam = self.config["lam"]
        hits = np.bincount(recent, minlength=len(self.vocab))
        p = (1.0 - lam) * base + lam * (hits / len(recent))
        with np.errstate(divide="ignore"):
            return np.log(p)

    # -- facts --------------------------------------------------------------------------
    @property
    def num_params(self) -> int | None:
        """One estimated probability per vocabulary id (the cache is not estimated)."""
        return None if self.counts is None else len(self.vocab)

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "lam": self.config["lam"],
            "window": self.config["window"],
            "k": self.config["k"],
            "cache_spans_lines": True,
        }
        if self.counts is not None:
            out["train_tokens"] = int(self.counts.sum())
            out["unseen_types"] = int((self.counts == 0).sum())
        if self.config["lam"] == 1.0:
            out["notes"] = [
                "lam=1: a token absent from the last `window` tokens gets probability 0, "
                "so the perplexity can be infinite"
            ]
        return out

    # -- files --------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write JSON: the vocabulary, the parameters and the training counts (integers,
        so the loaded model's probabilities are bit-identical)."""
        self._require()
        assert self.counts is not None
        data = {
            "format": FORMAT,
            "model": self.name,
            "vocab": self.vocab.to_dict(),
            "config": self.config,
            "counts": self.counts.tolist(),
        }
        with lmeval.atomic_write(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle, ensure_ascii=False)

    @classmethod
    def load(cls, path: Path) -> CacheModel:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
            model = cls(lmeval.Vocabulary.from_dict(data["vocab"]), **data["config"])
            model._set_counts(np.asarray(data["counts"], dtype=np.int64))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise lmeval.LmevalError(f"cannot load a cache model from {path}: {exc}") from None
        return model

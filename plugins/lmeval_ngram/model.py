"""The two registered models: ``ngram`` (estimated here) and ``arpa`` (read from a file)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

import lmeval

from .arpa import BOS_WORD, EOS_WORD, UNK_WORD, read_arpa, spell, write_arpa
from .counting import FirstSeen, count_ngrams
from .smoothing import SMOOTHINGS, estimate
from .storage import load_arrays, save_arrays
from .tables import Tables

_SENTENCES = lmeval.Param(
    "sentences",
    bool,
    True,
    "every line is a sentence: context restarts at <s> after each end-of-line token "
    "(KenLM, SRILM); false: one stream with a single <s> at its start",
)


def _size(text: str) -> str:
    """A size as given (``2G``), once :func:`lmeval.parse_size` has checked it."""
    lmeval.parse_size(text)
    return text.strip()


def _last(ids: np.ndarray, keep: int) -> np.ndarray:
    """The last ``keep`` entries of ``ids`` (none for 0, where ``ids[-0:]`` is all)."""
    return ids[max(0, len(ids) - keep) :] if keep else ids[:0]


class _BackoffModel(lmeval.LanguageModel):
    """Scoring, next-token distributions, saving and ARPA output over :class:`Tables`."""

    def __init__(self, vocab: lmeval.Vocabulary, **params: Any) -> None:
        super().__init__(vocab, **params)
        self.tables: Tables | None = None
        self._facts: dict[str, Any] = {}
        self._to_internal: np.ndarray | None = None  # None: internal ids are our ids

    # -- what a subclass provides -------------------------------------------------------
    def _words(self) -> list[str]:
        """ARPA spelling of every internal id."""
        raise NotImplementedError

    @property
    def _sentences(self) -> bool:
        return bool(self.config["sentences"]) and self.vocab.eos_id is not None

    # -- scoring ------------------------------------------------------------------------
    def _require(self) -> Tables:
        if self.tables is None:
            raise lmeval.LmevalError(f"model {self.name!r} is not fitted: call fit() first")
        return self.tables

    def _internal(self, ids: np.ndarray) -> np.ndarray:
        """The internal ids of ``ids`` (checked; no copy of integer ids, int32 or int64)."""
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            ids = ids.astype(np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self.vocab)):
            raise lmeval.UsageError(f"token ids must lie in 0..{len(self.vocab) - 1}")
        return ids if self._to_internal is None else self._to_internal[ids]

    def _internal_eos(self) -> int | None:
        if not self._sentences:
            return None
        return int(self._internal(np.asarray([self.vocab.eos_id]))[0])

    def score(self, ids: np.ndarray) -> np.ndarray:
        return self._require().score(self._internal(ids), self._internal_eos())

    def orders_used(self, ids: np.ndarray) -> np.ndarray:
        """For every token of ``ids``, the order (1 to ``order``, int64) of the longest
        stored n-gram ending at it, whose probability :meth:`score` uses: the matched
        context's length + 1, as KenLM's ``query`` reports ``ngram_length``. 1 means a
        unigram, after backing off from every longer context. (Optional, duck-typed:
        ``lmeval compare --save-tokens`` writes it as the ``order`` column.)"""
        return self._require().orders(self._internal(ids), self._internal_eos())

    def _history(self, context_ids: np.ndarray) -> np.ndarray:
        """The internal ids that decide the next token: at most the last order-1.

        Only that tail of ``context_ids`` is read (and checked), so the cost is
        O(order) however long the context: ``<s>`` then what follows the last
        end-of-line in the tail (in sentence mode), cut to its last order-1 ids.
        """
        tables = self._require()
        keep = tables.order - 1
        tail = np.asarray(_last(context_ids, keep)).astype(np.int64, copy=False)
        if self._sentences:
            ends = np.flatnonzero(tail == self.vocab.eos_id)
            if len(ends):
                tail = tail[ends[-1] + 1 :]
        return _last(np.concatenate([[tables.bos], self._internal(tail)]).astype(np.int64), keep)

    def _candidates(self) -> np.ndarray:
        """The internal id of every vocabulary id, in vocabulary order."""
        return self._internal(np.arange(len(self.vocab)))

    def next_token_logprobs(self, context_ids: np.ndarray) -> np.ndarray:
        return self._require().next_logprobs(self._history(context_ids), self._candidates())

    def top1(self, ids: np.ndarray) -> np.ndarray:
        """The most probable next id at every position of ``ids`` (the argmax of
        :meth:`next_token_logprobs` after ``ids[:i]``), each distinct context computed
        once. (Optional, duck-typed: lmeval's ``accuracy`` metric reads it.)"""
        tables = self._require()
        candidates = self._candidates()
        ids = np.asarray(ids, dtype=np.int64)
        best: dict[bytes, int] = {}
        out = np.empty(len(ids), dtype=np.int64)
        for i in range(len(ids)):
            history = self._history(ids[:i])
            key = history.tobytes()
            if key not in best:
                best[key] = int(np.argmax(tables.next_logprobs(history, candidates)))
            out[i] = best[key]
        return out

    def generate(
        self, prefix_ids: np.ndarray, n: int, temperature: float = 1.0, seed: int = 0
    ) -> np.ndarray:
        """What the default :meth:`lmeval.LanguageModel.generate` samples, in time linear in n.

        The default hands the whole growing context to :meth:`next_token_logprobs`;
        only its last order-1 tokens matter, so they are all the state kept here.
        The same seed draws the same tokens: the same distributions reach
        :func:`lmeval.sample_id` with the same generator.
        """
        tables = self._require()
        rng = np.random.default_rng(seed)
        candidates = self._candidates()
        keep = tables.order - 1
        history = self._history(prefix_ids)
        out = np.empty(n, dtype=np.int64)
        for i in range(n):
            logp = tables.next_logprobs(history, candidates)
            if temperature > 0 and logp.max() == -np.inf:  # sample_id would divide 0 by 0
                raise lmeval.LmevalError(
                    f"model {self.name!r} gives every token probability 0 at token {i} of the "
                    "continuation: nothing to sample there (are its log-probabilities all -99?)"
                )
            out[i] = lmeval.sample_id(logp, temperature, rng)
            if self._sentences and out[i] == self.vocab.eos_id:
                history = np.asarray([tables.bos], dtype=np.int64)
            else:
                history = np.append(history, candidates[out[i]])
            history = _last(history, keep)
        return out

    # -- facts ----------------------------------------------------------------------------
    @property
    def num_params(self) -> int | None:
        return None if self.tables is None else int(sum(self.tables.sizes))

    def details(self) -> dict[str, Any]:
        out = dict(self._facts)
        if self.tables is not None:
            out["ngrams"] = {str(n): s for n, s in enumerate(self.tables.sizes, start=1)}
        return out

    # -- files ----------------------------------------------------------------------------
    def write_arpa(self, path: str | Path) -> None:
        """Write the model as an ARPA file, which KenLM and SRILM read."""
        write_arpa(path, self._require(), self._words())

    def save(self, path: Path) -> None:
        """Write a compressed npz (or an ARPA file when ``path`` ends in ``.arpa``)."""
        if str(path).endswith(".arpa"):
            self.write_arpa(path)
            return
        arrays = self._require().to_arrays()
        meta = {
            "model": self.name,
            "vocab": self.vocab.to_dict(),
            "config": self.config,
            "facts": self._facts,
            "words": self._words() if self._to_internal is not None else None,
        }
        arrays["meta"] = np.array(json.dumps(meta))
        if self._to_internal is not None:
            arrays["to_internal"] = self._to_internal
        with lmeval.atomic_write(path, "wb") as handle:
            save_arrays(handle, arrays)  # stored, not compressed: loading maps it

    @classmethod
    def load(cls, path: Path) -> _BackoffModel:
        if str(path).endswith(".arpa"):
            raise lmeval.UsageError(
                f"{path} is an ARPA file: score it with the model arpa:path=FILE"
            )
        try:
            data = load_arrays(path)
            meta = json.loads(str(data["meta"]))
            tables = Tables.from_arrays(data)
            to_internal = data.get("to_internal")
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise lmeval.LmevalError(f"cannot load {path}: {exc}") from None
        if meta.get("model") != cls.name:
            raise lmeval.LmevalError(
                f"{path} holds a {meta.get('model')!r} model, not {cls.name!r}"
            )
        model = cls.__new__(cls)
        _BackoffModel.__init__(model, lmeval.Vocabulary.from_dict(meta["vocab"]), **meta["config"])
        model.tables, model._facts, model._to_internal = tables, meta["facts"], to_internal
        if meta.get("words") is not None:
            model._arpa_words = meta["words"]
        return model


class NGram(_BackoffModel):
    """N-gram model; ``smoothing=mkn`` reproduces KenLM's ``lmplz`` probabilities.

    What KenLM does and so do we: lower orders count distinct left neighbours
    (n-grams starting with ``<s>`` keep their raw counts), the top order raw
    counts; discounts from the counts of counts in float32, with the fallback
    (0.5, 1, 1.5) where the estimate is undefined or out of range (said in
    :meth:`details`); the bottom is the uniform distribution over the vocabulary
    without ``<s>``.

    ``<unk>`` (id 0) is counted like any token when the training ids hold it;
    when they do not (the usual case), its count is 0 and it gets only its share
    of the uniform distribution, exactly KenLM's ``<unk>`` (log10 p = -2.9866097
    on the tinyshakespeare character protocol). A corpus that spells its own
    unknown-word class ``<unk>``, as Penn Treebank does, therefore merges it with
    lmeval's ``<unk>``: it is counted as the ordinary word it is there, and the
    vocabulary has one token fewer than KenLM's (which keeps both), a difference
    of 0.001 % in PTB perplexity. Renaming the word before building the
    vocabulary reproduces KenLM exactly.
    """

    name = "ngram"
    seeded = False  # counts and closed-form discounts: nothing random
    description = (
        "n-gram model with MLE, add-k, Witten-Bell, absolute discounting, Kneser-Ney and "
        "modified Kneser-Ney (default; KenLM lmplz's probabilities) smoothing"
    )
    recommended = "ngram:order=5"
    fits_from_chunks = True  # counts chunk by chunk: a text larger than memory
    params = (
        lmeval.Param(
            "order",
            int,
            5,
            "longest n-gram (context of order-1 tokens), 1 to 64",
            check=lmeval.in_range(1, 64),
        ),
        lmeval.Param(
            "smoothing",
            str,
            "mkn",
            "mle: relative frequencies (unseen events get p = 0); add-k: k added to every "
            "count; witten-bell: interpolated Witten-Bell; absolute: interpolated absolute "
            "discounting by `discount`; kn: interpolated Kneser-Ney, one discount per order; "
            "mkn: modified Kneser-Ney with D1, D2, D3+ (Chen & Goodman), KenLM lmplz's "
            "probabilities",
            choices=SMOOTHINGS,
        ),
        lmeval.Param(
            "k",
            float,
            1.0,
            "pseudo-count of add-k (1: Laplace), above 0 and at most 1e6",
            check=lambda v: (
                None if 0 < v <= 1e6 else "must be above 0 and at most 1e6 (k=0 is smoothing=mle)"
            ),
        ),
        lmeval.Param(
            "discount",
            float,
            0.75,
            "discount of smoothing=absolute",
            check=lambda v: None if 0 < v <= 1 else "must be in (0, 1]",
        ),
        lmeval.Param(
            "memory",
            str,
            "2G",
            "memory for counting (2G, 512M): past it, sorted counts are written to tmpdir and "
            "merged, as KenLM's lmplz -S does (with numba: pip install 'lmeval[fast]')",
            parse=_size,
        ),
        lmeval.Param(
            "tmpdir",
            str,
            "",
            "folder for the counts written past memory (default: the system's temporary folder)",
        ),
        lmeval.Param(
            "discounts",
            str,
            "kenlm",
            "how kn and mkn count the counts of counts their discounts come from: kenlm, as "
            "KenLM's lmplz does (one n-gram of each lower order counted by its raw count, its "
            "probabilities to the last digit); textbook: every n-gram by its adjusted count",
            choices=("kenlm", "textbook"),
        ),
        lmeval.Param(
            "values",
            str,
            "float32",
            "how the fitted log-probabilities and back-off weights are kept (computed in "
            "float64 either way): float32, as KenLM and SRILM keep them, half the memory, "
            "each within 6e-8 (relative) of its float64 value; float64, every distribution "
            "summing to 1 within 1e-9",
            choices=("float32", "float64"),
        ),
        _SENTENCES,
    )

    def _words(self) -> list[str]:
        return [spell(t, self.vocab.eos) for t in self.vocab.tokens()] + [BOS_WORD]

    def fit(
        self, train_ids: np.ndarray | lmeval.TokenChunks, valid_ids: np.ndarray | None = None
    ) -> None:
        size = len(self.vocab)
        bos = size  # <s> is no vocabulary id: it is context only
        eos = self.vocab.eos_id if self._sentences else None
        # chunks of whole sentences are counted as they come; one array otherwise
        chunked = isinstance(train_ids, lmeval.TokenChunks) and eos is not None
        ids = map(self._internal, train_ids) if chunked else self._internal(train_ids)
        kenlm = self.config["discounts"] == "kenlm"
        first = FirstSeen(size + 1)
        counting: dict[str, Any] = {}
        with lmeval.progress(f"count {self.config['order']}-grams", total=2) as bar:
            orders = count_ngrams(
                ids,
                eos,
                size + 1,
                self.config["order"],
                memory=lmeval.parse_size(self.config["memory"]),
                tmpdir=self.config["tmpdir"] or None,
                report=counting,
                on_chunk=first.add if kenlm else None,
            )
            del ids
            if chunked:
                train_ids.done()  # read once: what serves the chunks may go before estimation
            lmeval.release_memory()  # what counting made and dropped: not under the tables
            bar.update(advance=1)
            self.tables, facts = estimate(
                orders,
                self.config["smoothing"],
                size,
                size + 1,
                bos,
                k=self.config["k"],
                discount=self.config["discount"],
                first_seen=self._kenlm_ids(first.positions(), first.total, bos, eos)
                if kenlm
                else None,
                values=np.dtype(self.config["values"]).type,
            )
            bar.update(advance=1)
        self._facts = {"smoothing": self.config["smoothing"], **facts, "counting": counting}

    def _kenlm_ids(self, first: np.ndarray, total: int, bos: int, eos: int | None) -> np.ndarray:
        """The id KenLM's ``lmplz`` gives every internal id: ``<unk>`` 0, ``<s>`` 1,
        ``</s>`` 2, then the tokens by their first appearance in the training text
        (``first``: each id's first position, ``total`` for none, of ``total`` ids)."""
        radix = bos + 1
        tokens = np.flatnonzero(first < total)
        special = [self.vocab.unk_id, bos] + ([eos] if eos is not None else [])
        ordinary = tokens[~np.isin(tokens, special)]
        by_appearance = ordinary[np.argsort(first[ordinary], kind="stable")]
        ids = np.full(radix, radix + 3, dtype=np.int64)  # never seen: never the largest
        ids[special] = np.arange(len(special))
        ids[by_appearance] = 3 + np.arange(len(by_appearance))
        return ids


class Arpa(_BackoffModel):
    """Scores with any ARPA back-off file (a KenLM or SRILM model, or one ngram wrote).

    Our tokens become ARPA words as :func:`.arpa.spell` writes them; a token the
    file does not know scores as its ``<unk>``. When several of our tokens fall
    on ``<unk>``, or the file knows words we do not, the next-token distribution
    over our vocabulary no longer sums to 1: the file's model is another model.
    """

    name = "arpa"
    # the file is the model: a cache keyed by its path would miss a changed file
    cacheable = False
    description = "scores with an ARPA back-off model file (KenLM, SRILM, or ngram's own)"
    params = (
        lmeval.Param(
            "path",
            str,
            "",
            "the ARPA file (.arpa or .arpa.gz)",
            required=True,
            path=True,
        ),
        _SENTENCES,
    )

    def __init__(self, vocab: lmeval.Vocabulary, **params: Any) -> None:
        super().__init__(vocab, **params)
        self._arpa_words, self.tables = read_arpa(self.config["path"])
        index = {w: i for i, w in enumerate(self._arpa_words)}
        tokens = vocab.tokens()
        spelled = [spell(t, vocab.eos) for t in tokens]
        unk = index[UNK_WORD]
        self._to_internal = np.array([index.get(w, unk) for w in spelled], dtype=np.int64)
        missing = [t for t, w in zip(tokens, spelled, strict=True) if w not in index]
        self._facts = {
            "arpa": str(self.config["path"]),
            "tokens_scored_as_unk": len(missing),
            "notes": ["fit does nothing: the probabilities come from the ARPA file"],
        }
        ours = set(spelled)
        foreign = [w for w in self._arpa_words if w not in ours and w not in (UNK_WORD, BOS_WORD)]
        if missing or foreign:
            self._facts["notes"].append(
                f"the file's vocabulary is not this comparison's ({len(missing)} of our tokens "
                f"score as <unk>, {len(foreign)} of its words are not ours): its probabilities "
                "over our tokens do not sum to 1, so verification refuses the row; score "
                "text tokenized as its training text was"
            )
        if EOS_WORD not in index and self._sentences:
            self._facts["notes"].append("the file has no </s>: end-of-line scores as <unk>")

    def _words(self) -> list[str]:
        return self._arpa_words

    def fit(self, train_ids: np.ndarray, valid_ids: np.ndarray | None = None) -> None:
        pass  # the file is the model

"""Turning the user's text into train / valid / test splits.

Splits are contiguous runs of whole lines, in file order (no shuffling: the
test text is the end of the document, as in d2l and KenLM's protocols), so a
model is never scored on text interleaved with what it trained on.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from .datasets import BUILTIN_DATASETS
from .errors import LmevalError, UsageError
from .files import DEFAULT_MAX_BYTES, iter_text, read_text
from .tokenizers import line_pieces

DEFAULT_SPLIT = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class TextFile:
    """A text file read as :func:`lmeval.read_text` reads it, whole or in pieces,
    as often as asked: each reading first checks that the file is the one first
    seen (its size and modification time), so that every pass reads the same text."""

    path: Path
    encoding: str = "utf-8"
    max_bytes: int = DEFAULT_MAX_BYTES
    stamp: tuple[int, int] = field(default=(-1, -1), compare=False)

    @classmethod
    def open(cls, path: Path, encoding: str = "utf-8", max_bytes: int = DEFAULT_MAX_BYTES):
        """The file, stamped now; its first piece read, so that a missing, binary or
        undecodable start fails here rather than when the text is first used."""
        found = cls(path, encoding, max_bytes, _stamp(path))
        next(found.pieces(), None)
        return found

    def read(self) -> str:
        self._unchanged()
        return read_text(self.path, self.encoding, self.max_bytes)

    def pieces(self) -> Iterator[str]:
        """The text in pieces of whole lines (:func:`lmeval.iter_text`)."""
        self._unchanged()
        return iter_text(self.path, self.encoding, self.max_bytes)

    def _unchanged(self) -> None:
        if self.stamp != (-1, -1) and _stamp(self.path) != self.stamp:
            raise LmevalError(
                f"{self.path} changed while lmeval was reading it: run again once it is final"
            )


def _stamp(path: Path) -> tuple[int, int]:
    try:
        info = path.stat()
    except OSError:
        return (-1, -1)  # reading it says what is wrong
    return info.st_size, info.st_mtime_ns


class Corpus:
    """The three texts a comparison uses, and where they came from.

    ``train`` may be a :class:`TextFile`: then the training text is read when
    first asked for (:attr:`train`), and :meth:`train_pieces` reads it in pieces
    of whole lines without ever holding all of it, which is how a model that
    fits from chunks (:attr:`lmeval.LanguageModel.fits_from_chunks`) trains on a
    text many times the memory of the process. A corpus sent to another process
    (pickled) carries the text itself: the file may not be there.
    """

    def __init__(
        self,
        name: str,
        train: str | TextFile,
        test: str,
        valid: str | None = None,
        sources: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.test = test  # kept as UTF-8 where that is smaller (see the property)
        self.valid = valid
        self.sources = dict(sources or {})
        self._train = train
        # what a full pass over a training file learnt: SHA-256 and line count
        self._train_facts: tuple[str, int] | None = None

    def __repr__(self) -> str:
        return f"Corpus(name={self.name!r}, sources={self.sources!r})"

    def __getstate__(self) -> dict:
        # the text itself (the file may not be there), not kept here once sent
        text = self._train.read() if isinstance(self._train, TextFile) else self._train
        return {**self.__dict__, "_train": text}

    @property
    def test(self) -> str:
        """The test text. A text with a character past U+00FF costs Python 2 or 4
        bytes a character; it is kept as UTF-8 then (about a quarter of that for
        mostly-ASCII text: 35 -> 9 MB for 9 million characters, held under every
        stage) and decoded on each use."""
        held = self._test
        return held if isinstance(held, str) else held.decode("utf-8", "surrogatepass")

    @test.setter
    def test(self, text: str) -> None:
        if text.isascii():  # one byte a character already
            self._test: str | bytes = text
            return
        data = text.encode("utf-8", "surrogatepass")
        self._test = data if 4 * len(data) < 3 * sys.getsizeof(text) else text

    @property
    def train(self) -> str:
        """The training text (read from its file on first use, then kept)."""
        if isinstance(self._train, TextFile):
            self._train = self._train.read()
        return self._train

    def train_pieces(self) -> Iterator[str]:
        """The training text in pieces of whole lines (only the last may be
        unfinished), read from its file when it was not read yet: joined, they are
        :attr:`train`. The first full pass learns the text's checksum and lines."""
        if not isinstance(self._train, TextFile):
            yield from line_pieces(self._train)
            return
        if self._train_facts is not None:  # known: no second checksum of the file
            yield from self._train.pieces()
            return
        digest, lines = hashlib.sha256(), 0
        last = ""
        for piece in self._train.pieces():
            digest.update(piece.encode("utf-8"))
            lines += piece.count("\n")
            last = piece
            yield piece
        if last and not last.endswith("\n"):
            lines += 1
        self._train_facts = (digest.hexdigest(), lines)

    def _train_summary(self) -> tuple[str, int]:
        """The training text's SHA-256 and line count, without holding a file's text."""
        if isinstance(self._train, TextFile):
            if self._train_facts is None:
                for _ in self.train_pieces():
                    pass
            assert self._train_facts is not None
            return self._train_facts
        text = self._train
        return hashlib.sha256(text.encode("utf-8")).hexdigest(), count_lines(text)

    def checksums(self) -> dict[str, str]:
        """SHA-256 of each split's UTF-8 text (results carry them for reproducibility)."""
        sums = {"train": self._train_summary()[0]}
        for name, text in (("valid", self.valid), ("test", self.test)):
            if text:
                sums[name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return sums

    def line_counts(self) -> dict[str, int]:
        counts = {"train": self._train_summary()[1]}
        for name, text in (("valid", self.valid), ("test", self.test)):
            if text is not None:
                counts[name] = count_lines(text)
        return counts


def count_lines(text: str) -> int:
    """The lines of ``text`` as :func:`lmeval.tokenizers.split_lines` cuts them,
    counted without making them (a list of 25 M short lines costs gigabytes)."""
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


#: Characters per window when :func:`_after_lines` counts newlines.
_WINDOW = 2**20


def first_lines(text: str, n: int) -> str:
    """The first ``n`` lines of ``text`` (with their newlines), found without splitting it."""
    return text[: _after_lines(text, n)]


def _after_lines(text: str, k: int) -> int:
    """The offset just after the ``k``-th newline of ``text`` (``len(text)`` if fewer)."""
    pos = 0
    while k > 0 and pos < len(text):
        in_window = text.count("\n", pos, pos + _WINDOW)
        if in_window < k:
            k, pos = k - in_window, pos + _WINDOW
            continue
        for _ in range(k):
            pos = text.find("\n", pos) + 1
        return pos
    return min(pos, len(text))


def parse_split(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` (or two numbers, test taking the rest) -> fractions summing to 1."""
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise UsageError(f"bad --split {text!r}: expected fractions like 0.8,0.1,0.1") from None
    if len(parts) == 2:
        parts.append(1.0 - sum(parts))
    if len(parts) != 3 or not all(0 <= p <= 1 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise UsageError(f"bad --split {text!r}: give three fractions >= 0 that sum to 1")
    fractions = parts[0], parts[1], parts[2]
    _refuse_empty_part(fractions, f"bad --split {text!r}: it")
    return fractions


def _refuse_empty_part(fractions: tuple[float, float, float], subject: str) -> None:
    """A train or test fraction of 0 would get what rounding leaves (a line or two)."""
    if fractions[0] <= 0 or fractions[2] <= 1e-9:
        which = "training" if fractions[0] <= 0 else "test"
        raise UsageError(
            f"{subject} leaves the {which} set empty: give it a fraction, e.g. 0.8,0.1,0.1"
        )


def split_text(
    text: str, fractions: tuple[float, float, float] = DEFAULT_SPLIT, name: str = "text"
) -> Corpus:
    """Cut ``text`` into contiguous train / valid / test runs of lines.

    A part whose fraction is 0 is refused (:func:`parse_split` says so for
    ``--split``): it would otherwise get what rounding leaves, a line or two.
    """
    _refuse_empty_part(fractions, f"the split {fractions} of {name}")
    if text and not text.endswith("\n"):
        text += "\n"  # every line ended, the last one too, as tokenizers see it
    n = count_lines(text)
    n_train = int(n * fractions[0])
    n_valid = int(n * fractions[1])
    # cut at offsets found by counting newlines: no list of lines (memory set by the text)
    end_train = _after_lines(text, n_train)
    end_valid = _after_lines(text, n_train + n_valid)
    train, valid, test = text[:end_train], text[end_train:end_valid], text[end_valid:]
    if not test.strip():
        raise UsageError(
            f"the split {fractions} of {name} ({n} lines) leaves the test set empty: "
            "give more text or a larger test fraction"
        )
    if not train.strip():
        raise UsageError(
            f"the split {fractions} of {name} ({n} lines) leaves the training set empty: "
            "give more text or a larger train fraction"
        )
    return Corpus(name=name, train=train, valid=valid or None, test=test)


class DataOptions(TypedDict, total=False):
    """The keywords :func:`load_corpus` takes, which ``compare`` and ``train`` pass on."""

    text: str | Path | None
    train: str | Path | None
    valid: str | Path | None
    test: str | Path | None
    dataset: str | None
    split: tuple[float, float, float]
    encoding: str
    max_bytes: int


def load_corpus(
    *,
    text: str | Path | None = None,
    train: str | Path | None = None,
    valid: str | Path | None = None,
    test: str | Path | None = None,
    dataset: str | None = None,
    split: tuple[float, float, float] = DEFAULT_SPLIT,
    encoding: str = "utf-8",
    max_bytes: int = DEFAULT_MAX_BYTES,
    datasets=None,
) -> Corpus:
    """The corpus from exactly one source: ``text`` (split), ``train``+``test`` files,
    or a registered ``dataset`` (split). ``datasets`` is the registry to look names up in
    (a plugin host's ``datasets``); without it only lmeval's own data sets are known.
    ``max_bytes`` bounds what is read from each file (see :func:`lmeval.read_text`)."""
    if train is not None or test is not None:
        if text is not None or dataset is not None:
            raise UsageError("give either --train/--test files or --text/--dataset, not both")
        if train is None or test is None:
            raise UsageError("--train and --test go together (and --valid optionally)")
        # a regular file is read a piece at a time, as often as needed; a pipe or a
        # device (/dev/stdin, <(zcat ...)) can be read once: it is read whole
        train_text = (
            TextFile.open(Path(train), encoding, max_bytes)
            if Path(train).is_file()
            else read_text(train, encoding, max_bytes)
        )
        files = {"train": train, "valid": valid, "test": test}
        texts = {
            k: read_text(p, encoding, max_bytes)
            for k, p in files.items()
            if p is not None and k != "train"
        }
        return Corpus(
            name=Path(train).name,
            train=train_text,
            valid=texts.get("valid"),
            test=texts["test"],
            sources={k: str(p) for k, p in files.items() if p is not None},
        )
    if valid is not None:
        raise UsageError("--valid needs --train and --test")
    if text is not None and dataset is not None:
        raise UsageError("give either --text or --dataset, not both")
    if text is not None:
        corpus = split_text(read_text(text, encoding, max_bytes), split, name=Path(text).name)
        return _with_sources(corpus, {"text": str(text)})
    name = dataset or "pydoc-topics"
    if datasets is not None:
        ds = datasets.get(name)
    else:  # no registry given: lmeval's own data sets
        known = {d.name: d for d in BUILTIN_DATASETS}
        if name not in known:
            raise UsageError(f"unknown dataset {name!r}; known: {', '.join(sorted(known))}")
        ds = known[name]
    corpus = split_text(ds.load(), split, name=ds.name)
    return _with_sources(corpus, {"dataset": ds.name})


def _with_sources(corpus: Corpus, sources: dict[str, str]) -> Corpus:
    return Corpus(corpus.name, corpus.train, corpus.test, corpus.valid, sources)

"""Turning the user's text into train / valid / test splits.

Splits are contiguous runs of whole lines, in file order (no shuffling: the
test text is the end of the document, as in d2l and KenLM's protocols), so a
model is never scored on text interleaved with what it trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from .datasets import BUILTIN_DATASETS
from .errors import UsageError
from .files import DEFAULT_MAX_BYTES, read_text

DEFAULT_SPLIT = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class Corpus:
    """The three texts a comparison uses, and where they came from."""

    name: str
    train: str
    test: str
    valid: str | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def checksums(self) -> dict[str, str]:
        """SHA-256 of each split's UTF-8 text (results carry them for reproducibility)."""
        parts = {"train": self.train, "valid": self.valid, "test": self.test}
        return {k: hashlib.sha256(v.encode("utf-8")).hexdigest() for k, v in parts.items() if v}

    def line_counts(self) -> dict[str, int]:
        parts = {"train": self.train, "valid": self.valid, "test": self.test}
        return {k: count_lines(v) for k, v in parts.items() if v is not None}


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
        files = {"train": train, "valid": valid, "test": test}
        texts = {k: read_text(p, encoding, max_bytes) for k, p in files.items() if p is not None}
        return Corpus(
            name=Path(train).name,
            train=texts["train"],
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

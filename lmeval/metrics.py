"""Metrics: numbers computed from per-token log-probabilities and text statistics.

Every perplexity-like number derives from one stored quantity, the total
negative log-likelihood in nats (``Scores.nll``), and one denominator:

* perplexity      = exp(nll / tokens)            (compare models with one tokenizer)
* cross_entropy   = nll / tokens                 nats per predicted token
* bits_per_char   = nll / ln 2 / chars           (compare any two models)
* bits_per_byte   = nll / ln 2 / bytes           UTF-8 bytes

``tokens`` counts predicted tokens (end-of-line tokens included), ``chars``
and ``bytes`` the characters and UTF-8 bytes of the scored text with one
newline per line. A single zero-probability token makes all of them infinite.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .tokenizers import line_pieces


@dataclass(frozen=True)
class TextStats:
    """Denominators of the scored text."""

    tokens: int  #: predicted tokens (end-of-line tokens included)
    chars: int  #: characters, one newline per line included
    bytes: int  #: UTF-8 bytes, one newline per line included
    lines: int  #: lines (sequences) in line mode, 1 in stream mode
    oovs: int  #: predicted tokens that are ``<unk>``
    #: whitespace-separated words of the text (the unit of word perplexity)
    words: int = 0

    @classmethod
    def of(cls, text: str, ids: np.ndarray, unk_id: int, lines_mode: bool = True) -> TextStats:
        # a piece at a time: the words of a text of millions of them, as Python
        # strings, would take several times the text's memory
        chars, nbytes, words = len(text), 0, 0
        for piece in line_pieces(text):
            nbytes += len(piece.encode("utf-8"))
            words += len(piece.split())
        n_lines = text.count("\n")
        if lines_mode and text and not text.endswith("\n"):  # the last line is ended too
            chars, nbytes, n_lines = chars + 1, nbytes + 1, n_lines + 1
        return cls(
            tokens=int(len(ids)),
            chars=chars,
            bytes=nbytes,
            lines=n_lines if lines_mode else 1,
            oovs=int(np.count_nonzero(ids == unk_id)),
            words=words,
        )


@dataclass(frozen=True)
class Scores:
    """A model's answer: ``logprobs[i] = ln p(token i | before)``, and the text's stats."""

    logprobs: np.ndarray
    stats: TextStats
    #: per token, whether the model's most probable next token was it (``top1``),
    #: when the comparison asked for it and the model can tell; else ``None``
    correct: np.ndarray | None = None

    @property
    def nll(self) -> float:
        """Total negative log-likelihood in nats (``inf`` if any token has probability 0)."""
        return float(-np.sum(self.logprobs, dtype=np.float64))


class Metric(ABC):
    """A number derived from :class:`Scores`; its ``name`` is the key in every result record."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: Whether a larger value is better (shown as an arrow in tables).
    higher_is_better: ClassVar[bool] = False
    #: Format of the value in tables.
    fmt: ClassVar[str] = ".4f"
    #: Whether the table shows it without ``--metric`` (the JSON always has it).
    shown: ClassVar[bool] = True

    @abstractmethod
    def compute(self, scores: Scores) -> float:
        """The metric's value."""


def _ratio(numerator: float, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def perplexity(nats_per_token: float) -> float:
    """``exp(cross-entropy)``: the one conversion from nats per token to perplexity
    (``inf`` where exp overflows, never a silent cap), used by every table and history."""
    if math.isnan(nats_per_token):
        return math.nan
    return math.exp(nats_per_token) if nats_per_token < 700 else math.inf


class Perplexity(Metric):
    name = "perplexity"
    description = "exp(cross-entropy): the effective number of equally likely next tokens"
    fmt = ".3f"

    def compute(self, scores: Scores) -> float:
        return perplexity(_ratio(scores.nll, scores.stats.tokens))


class CrossEntropy(Metric):
    name = "cross_entropy"
    description = "mean negative log-likelihood, nats per predicted token"

    def compute(self, scores: Scores) -> float:
        return _ratio(scores.nll, scores.stats.tokens)


class BitsPerChar(Metric):
    name = "bits_per_char"
    description = "total bits over the characters of the text: comparable across tokenizers"

    def compute(self, scores: Scores) -> float:
        return _ratio(scores.nll / math.log(2), scores.stats.chars)


class BitsPerByte(Metric):
    name = "bits_per_byte"
    description = "total bits over the UTF-8 bytes of the text"

    def compute(self, scores: Scores) -> float:
        return _ratio(scores.nll / math.log(2), scores.stats.bytes)


class BitsPerToken(Metric):
    name = "bits_per_token"
    description = "mean bits per predicted token: cross-entropy in base 2"
    shown = False

    def compute(self, scores: Scores) -> float:
        return _ratio(scores.nll / math.log(2), scores.stats.tokens)


class WordPerplexity(Metric):
    name = "word_perplexity"
    description = (
        "exp(nll / words of the test text): perplexity per whitespace-separated word, the "
        "unit lm-evaluation-harness reports, whatever the model's tokens"
    )
    fmt = ",.2f"
    shown = False

    def compute(self, scores: Scores) -> float:
        return perplexity(_ratio(scores.nll, scores.stats.words))


class Accuracy(Metric):
    name = "accuracy"
    description = (
        "share of predicted tokens that were the model's most probable next token (top-1); "
        "asked for with --metric accuracy, for models with a top1() method"
    )
    higher_is_better = True
    fmt = ".2%"
    shown = False

    def compute(self, scores: Scores) -> float:
        if scores.correct is None:
            return math.nan  # not asked for, or the model cannot say: null in JSON
        return _ratio(float(np.count_nonzero(scores.correct)), scores.stats.tokens)


class OovRate(Metric):
    name = "oov_rate"
    description = "share of predicted tokens that are out of vocabulary (<unk>)"
    fmt = ".2%"

    def compute(self, scores: Scores) -> float:
        return _ratio(scores.stats.oovs, scores.stats.tokens)


BUILTIN_METRICS: tuple[Metric, ...] = (
    Perplexity(),
    CrossEntropy(),
    BitsPerChar(),
    BitsPerByte(),
    OovRate(),
    BitsPerToken(),
    WordPerplexity(),
    Accuracy(),
)

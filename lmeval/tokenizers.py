"""Tokenizers and the vocabulary they build.

Every model sees text as an array of integer ids. The policy of what is a
sequence and what is predicted lives here, in one place:

* In *line mode* (the default) every line is a sequence. Its tokens are
  followed by the end-of-line token, which is predicted like any other token;
  the start of a line is context only (as in KenLM and SRILM), so a text of
  ``L`` lines encodes to ``sum(len(tokens(line)) + 1)`` ids.
* In *stream mode* there is no end-of-line token; the newline is an ordinary
  character (char tokenizer) or ordinary whitespace (word tokenizer).

Tokens never seen in the training text map to ``<unk>``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import count, repeat
from typing import Any, ClassVar

import numpy as np

from .errors import UsageError

UNK = "<unk>"
EOS = "</s>"


def id_dtype(vocab_size: int) -> type:
    """The dtype of the ids of a vocabulary of ``vocab_size`` tokens: int32 (half the
    memory of int64 on a text of millions of tokens) unless the ids need more."""
    return np.int32 if vocab_size <= 2**31 else np.int64


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` without their newlines. Only ``\\n`` ends a line, and a
    final newline ends the last line rather than starting an empty one."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


class Vocabulary:
    """A bijection between tokens and ids ``0 .. len-1``.

    Id 0 is always ``<unk>``. ``eos`` is the end-of-line token, predicted at the
    end of every line in line mode (``None`` in stream mode).
    """

    def __init__(
        self, tokens: Sequence[str], eos: str | None = None, *, distinct: bool = False
    ) -> None:
        """``distinct``: the caller knows ``tokens`` are (a vocabulary of millions of
        words is built without checking it)."""
        itos = [UNK] + [t for t in tokens if t != UNK]
        if eos is not None and eos not in itos:
            itos.append(eos)
        if not distinct and len(set(itos)) != len(itos):
            raise ValueError("vocabulary tokens must be unique")
        self.itos: list[str] = itos
        self.stoi: dict[str, int] = dict(zip(itos, range(len(itos)), strict=True))
        self.eos = eos

    unk_id: ClassVar[int] = 0

    @property
    def eos_id(self) -> int | None:
        """Id of the end-of-line token, or ``None`` in stream mode."""
        return None if self.eos is None else self.stoi[self.eos]

    @classmethod
    def build(
        cls,
        counts: Counter[str],
        *,
        eos: str | None = None,
        min_freq: int = 1,
        reserved: Iterable[str] = (),
    ) -> Vocabulary:
        """Vocabulary of the tokens seen at least ``min_freq`` times.

        Order is deterministic: reserved tokens first, then by descending
        frequency, ties by code point, so the same text gives the same ids.
        """
        kept = sorted(counts if min_freq <= 1 else (t for t, c in counts.items() if c >= min_freq))
        kept.sort(key=counts.__getitem__, reverse=True)  # stable: ties keep code-point order
        reserved = list(reserved)
        if reserved:
            skip = set(reserved)
            kept = [t for t in kept if t not in skip]
        return cls([*reserved, *kept], eos=eos, distinct=True)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos and self.eos == other.eos

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, eos={self.eos!r})"

    def id(self, token: str) -> int:
        return self.stoi.get(token, self.unk_id)

    def token(self, index: int) -> str:
        return self.itos[index]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (for checkpoints)."""
        return {"tokens": self.itos, "eos": self.eos}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        return cls(data["tokens"], eos=data.get("eos"))


class Tokenizer(ABC):
    """Turns text into ids and back. Subclasses define how a line splits into tokens.

    ``fit`` builds the vocabulary from the training text; ``encode`` then maps any
    text to ids (unknown tokens to ``<unk>``), in line mode appending the
    end-of-line id after every line.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: What a token is, in words, for the results caption ("character", "word").
    unit: ClassVar[str] = "token"
    #: The end-of-line token of this tokenizer in line mode.
    eos_token: ClassVar[str] = EOS

    def __init__(self, *, lines: bool = True, min_freq: int = 1) -> None:
        if min_freq < 1:
            raise UsageError(f"min_freq must be at least 1, got {min_freq}")
        self.lines = lines
        self.min_freq = min_freq
        self.vocab: Vocabulary | None = None

    @abstractmethod
    def split(self, line: str) -> list[str]:
        """The tokens of one line (stream mode: of the whole text)."""

    #: What :meth:`join` puts between tokens.
    separator: ClassVar[str] = " "

    def join(self, tokens: Sequence[str]) -> str:
        """Inverse of :meth:`split` as far as the tokenizer allows."""
        return self.separator.join(tokens)

    def continue_text(self, prefix: str, ids: Iterable[int]) -> str:
        """``prefix`` followed by the decoded ``ids`` generated after it, with the
        separator between them where the tokenizer needs one."""
        text = self.decode(ids)
        joint = prefix and text and not prefix[-1].isspace() and not text[0].isspace()
        return prefix + (self.separator if joint else "") + text

    def _pieces(self, text: str) -> list[list[str]]:
        if not self.lines:
            return [self.split(text)]
        eos = self.eos_token
        # A literal end-of-line token inside a line (the word "</s>" in a text) would end
        # the sentence early; like any token the model cannot represent, it is <unk>.
        return [
            [UNK if t == eos else t for t in self.split(line)] + [eos] for line in split_lines(text)
        ]

    def fit(self, text: str) -> Vocabulary:
        counts: Counter[str] = Counter()
        for piece in self._pieces(text):
            counts.update(piece)
        eos = self.eos_token if self.lines else None
        self.vocab = Vocabulary.build(counts, eos=eos, min_freq=self.min_freq)
        return self.vocab

    def _require_vocab(self) -> Vocabulary:
        if self.vocab is None:
            raise RuntimeError("tokenizer is not fitted: call fit(text) first")
        return self.vocab

    def encode(self, text: str) -> np.ndarray:
        """Ids of ``text`` (:func:`id_dtype`: int32), with an end-of-line id after every
        line in line mode."""
        vocab = self._require_vocab()
        get, unk = vocab.stoi.get, vocab.unk_id
        ids = [get(t, unk) for piece in self._pieces(text) for t in piece]
        return np.asarray(ids, dtype=id_dtype(len(vocab)))

    def encode_prefix(self, text: str) -> np.ndarray:
        """Ids of a prompt: like :meth:`encode`, but an unfinished last line gets no
        end-of-line id (generation continues that line)."""
        ids = self.encode(text)
        if self.lines and len(ids) and not text.endswith("\n"):
            ids = ids[:-1]
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        vocab = self._require_vocab()
        out: list[str] = []
        line: list[str] = []
        for i in ids:
            token = vocab.itos[int(i)]
            if self.lines and token == vocab.eos:
                out.append(self.join(line) + "\n")
                line = []
            else:
                line.append(token)
        out.append(self.join(line))
        return "".join(out)


class CharTokenizer(Tokenizer):
    """Every character is a token, space included; the newline ends a line."""

    name = "char"
    description = "every character is a token (space included); newline is the end-of-line token"
    unit = "character"
    eos_token = "\n"

    separator = ""

    def split(self, line: str) -> list[str]:
        return list(line)

    # Fast paths: in line mode the ids are those of the text's characters, the
    # newline being the end-of-line token, plus one for an unfinished last line.
    # Counting and mapping whole code-point arrays beats a Python loop ~10x. They hold
    # only while the tokens are exactly the characters: a subclass that overrides
    # ``split`` (to lowercase, drop characters...), the way lines are cut into pieces,
    # or the end-of-line token gets the generic per-line path instead.

    def _fast(self) -> bool:
        """Whether the code-point fast paths give what the generic rule gives."""
        # through the bound methods, so that one set on the instance counts too
        return (
            getattr(self.split, "__func__", None) is CharTokenizer.split
            and getattr(self._pieces, "__func__", None) is Tokenizer._pieces
            and (not self.lines or self.eos_token == "\n")
        )

    #: Characters converted to code points at once: the arrays of a whole text of
    #: tens of millions of characters would take several times its memory.
    CHUNK = 1 << 20

    def _code_chunks(self, text: str) -> Iterator[np.ndarray]:
        """Code points of the text as the tokens see it (an unfinished last line
        ended), ``CHUNK`` characters at a time."""
        for start in range(0, len(text), self.CHUNK):
            # surrogatepass: a lone surrogate (possible in a str from Python) is a character
            piece = text[start : start + self.CHUNK].encode("utf-32-le", "surrogatepass")
            yield np.frombuffer(piece, dtype=np.uint32)
        if self.lines and text and not text.endswith("\n"):
            yield np.array([ord("\n")], dtype=np.uint32)

    def fit(self, text: str) -> Vocabulary:
        if not self._fast():
            return super().fit(text)
        tally = np.zeros(0, dtype=np.int64)
        for codes in self._code_chunks(text):
            counted = np.bincount(codes)
            if len(counted) > len(tally):
                tally = np.concatenate([tally, np.zeros(len(counted) - len(tally), np.int64)])
            tally[: len(counted)] += counted
        seen = np.flatnonzero(tally)
        counts = Counter(
            {chr(c): int(n) for c, n in zip(seen.tolist(), tally[seen].tolist(), strict=True)}
        )
        eos = "\n" if self.lines else None
        self.vocab = Vocabulary.build(counts, eos=eos, min_freq=self.min_freq)
        return self.vocab

    def encode(self, text: str) -> np.ndarray:
        if not self._fast():
            return super().encode(text)
        vocab = self._require_vocab()
        dtype = id_dtype(len(vocab))
        # code point -> id; every code point past the vocabulary's largest is <unk>
        singles = {ord(token): index for token, index in vocab.stoi.items() if len(token) == 1}
        table = np.full(max(singles, default=0) + 2, vocab.unk_id, dtype=dtype)
        for code, index in singles.items():
            table[code] = index
        unfinished = bool(self.lines and text and not text.endswith("\n"))
        ids = np.empty(len(text) + unfinished, dtype=dtype)
        at = 0
        for codes in self._code_chunks(text):
            np.take(table, np.minimum(codes, len(table) - 1), out=ids[at : at + len(codes)])
            at += len(codes)
        return ids


class WordTokenizer(Tokenizer):
    """Whitespace-separated words; ``</s>`` ends a line."""

    name = "word"
    description = "whitespace-separated words; </s> is the end-of-line token"
    unit = "word"

    def split(self, line: str) -> list[str]:
        return line.split()

    # Fast paths: the words of the whole text, cut by str.split in C a chunk of lines
    # at a time, are the words of its lines one after another; a marker word that no
    # text from a file can hold (NUL) stands where each line ends. On 50 MB of text
    # that is 10x the per-line Python path, with memory bounded by the chunk. They
    # hold only while the tokens are exactly str.split's (as for CharTokenizer).

    _MARK = "\x00"
    #: Characters of text split at once (a chunk's words are Python objects).
    CHUNK = 1 << 22

    def _fast(self) -> bool:
        return (
            getattr(self.split, "__func__", None) is WordTokenizer.split
            and getattr(self._pieces, "__func__", None) is Tokenizer._pieces
        )

    def _chunks(self, text: str) -> Iterator[list[str]]:
        """The words of ``text`` in chunks of whole lines, in line mode with the
        marker word after every line (an unfinished last line included)."""
        start = 0
        while start < len(text):
            end = text.find("\n", min(start + self.CHUNK, len(text)) - 1)
            end = len(text) if end < 0 else end + 1
            piece = text[start:end]
            start = end
            if self.lines and start == len(text) and not piece.endswith("\n"):
                piece += "\n"  # the unfinished last line, ended (not a copy of the text)
            yield piece.replace("\n", f" {self._MARK} ").split() if self.lines else piece.split()

    def fit(self, text: str) -> Vocabulary:
        if not self._fast() or self._MARK in text:
            return super().fit(text)
        # one pass numbers the words by first appearance (dict.setdefault, in C); their
        # counts and, for encode of this same text, their ids follow with numpy
        first: dict[str, int] = {}
        seen = 0
        positions = []
        for words in self._chunks(text):
            positions.append(
                np.fromiter(
                    map(first.setdefault, words, count(seen)), dtype=np.int64, count=len(words)
                )
            )
            seen += len(words)
        at = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
        del positions
        order = np.zeros(max(seen, 1), dtype=np.int64)
        order[np.fromiter(first.values(), dtype=np.int64, count=len(first))] = np.arange(len(first))
        numbered = order[at]  # each word's number, by first appearance
        del at, order
        tokens = list(first)
        tally = np.bincount(numbered, minlength=len(tokens)).tolist()
        counts: Counter[str] = Counter(dict(zip(tokens, tally, strict=True)))
        if self.lines:  # a literal end-of-line word inside a line is <unk>, as _pieces has it
            literal = counts.pop(self.eos_token, 0)
            if literal:
                counts[UNK] += literal
            counts[self.eos_token] = counts.pop(self._MARK, 0)
        self.vocab = Vocabulary.build(
            counts, eos=self.eos_token if self.lines else None, min_freq=self.min_freq
        )
        self._fitted = (text, tokens, numbered)
        return self.vocab

    def _lookup(self) -> dict[str, int]:
        vocab = self._require_vocab()
        if not self.lines:
            return vocab.stoi
        # the marker is the end of a line; a literal end-of-line word is <unk>
        return {**vocab.stoi, self._MARK: vocab.eos_id, self.eos_token: vocab.unk_id}

    def encode(self, text: str) -> np.ndarray:
        if not self._fast() or self._MARK in text:
            return super().encode(text)
        fitted, self._fitted = getattr(self, "_fitted", None), None
        lookup = self._lookup()
        unk = self._require_vocab().unk_id
        dtype = id_dtype(len(self._require_vocab()))
        if fitted is not None and fitted[0] is text:  # the text fit just numbered
            _, tokens, numbered = fitted
            ids_of = np.fromiter(map(lookup.get, tokens, repeat(unk)), dtype, len(tokens))
            return ids_of[numbered]
        parts = [
            np.fromiter(map(lookup.get, words, repeat(unk)), dtype=dtype, count=len(words))
            for words in self._chunks(text)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import compress, repeat
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


#: Characters per piece of :func:`line_pieces`.
PIECE_CHARS = 2**20


def line_pieces(text: str, chars: int | None = None) -> Iterator[str]:
    """``text`` in pieces of whole lines, about ``chars`` each (a line longer than
    that is a piece of its own): what works a piece at a time on a text of
    hundreds of MB (splitting it into words, encoding it) then holds one piece's
    worth of temporaries, not the whole text's. ``chars``: :data:`PIECE_CHARS`
    unless given."""
    chars = chars or PIECE_CHARS
    start = 0
    while start < len(text):
        end = text.find("\n", min(start + chars, len(text)) - 1)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


class Vocabulary:
    """A bijection between tokens and ids ``0 .. len-1``.

    Id 0 is always ``<unk>``. ``eos`` is the end-of-line token, predicted at the
    end of every line in line mode (``None`` in stream mode).

    A *compact* vocabulary (``compact=True``; the word tokenizer builds one) keeps
    its tokens as one UTF-8 buffer and looks them up through arrays of their
    hashes: 24 bytes a token besides its text, where a list and a dict of Python
    strings take about 140 (1.25 million words of source code: about 50 MB
    instead of 170). ``itos`` and ``stoi`` are then made on first use (and
    kept); :meth:`ids`, :meth:`id`, :meth:`token`, :meth:`tokens`, ``eos_id``
    and ``in`` work without them.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        eos: str | None = None,
        *,
        distinct: bool = False,
        compact: bool = False,
    ) -> None:
        """``distinct``: the caller knows ``tokens`` are (a vocabulary of millions of
        words is built without checking it)."""
        itos = [UNK] + [t for t in tokens if t != UNK]
        if eos is not None and eos not in itos:
            itos.append(eos)
        if not distinct and len(set(itos)) != len(itos):
            raise ValueError("vocabulary tokens must be unique")
        self.eos = eos
        self._eos_id = None if eos is None else itos.index(eos)
        self._size = len(itos)
        self._itos: list[str] | None = itos
        self._stoi: dict[str, int] | None = None
        self._joined: bytes | None = None  # compact: the tokens, each ended by a NUL
        self._index: _HashIndex | None = None
        if compact and not any("\0" in token for token in itos):
            # joined a slice at a time: one string of every token would take 4 bytes
            # a character as soon as one token holds a character past U+FFFF
            self._joined = b"".join(
                ("\0".join(itos[a : a + (1 << 16)]) + "\0").encode("utf-8", "surrogatepass")
                for a in range(0, len(itos), 1 << 16)
            )
            ends = np.flatnonzero(np.frombuffer(self._joined, dtype=np.uint8) == 0)
            self._ends = ends.astype(np.uint32 if len(self._joined) < 2**32 else np.int64)
            self._itos = None

    unk_id: ClassVar[int] = 0

    @property
    def itos(self) -> list[str]:
        """Every token, by id (made on first use for a compact vocabulary)."""
        if self._itos is None:
            self._itos = self._decoded()
        return self._itos

    @property
    def stoi(self) -> dict[str, int]:
        """Token -> id (made on first use)."""
        if self._stoi is None:
            self._stoi = dict(zip(self.itos, range(self._size), strict=True))
        return self._stoi

    def _decoded(self, first: int = 0, stop: int | None = None) -> list[str]:
        """Tokens ``first .. stop-1`` of a compact vocabulary, as strings."""
        assert self._joined is not None
        stop = self._size if stop is None else stop
        if first >= stop:
            return []
        start = int(self._ends[first - 1]) + 1 if first else 0
        text = self._joined[start : int(self._ends[stop - 1])]
        return text.decode("utf-8", "surrogatepass").split("\0")

    @property
    def eos_id(self) -> int | None:
        """Id of the end-of-line token, or ``None`` in stream mode."""
        return self._eos_id

    @classmethod
    def build(
        cls,
        counts: Mapping[str, int],
        *,
        eos: str | None = None,
        min_freq: int = 1,
        reserved: Iterable[str] = (),
        compact: bool = False,
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
        return cls([*reserved, *kept], eos=eos, distinct=True, compact=compact)

    def __len__(self) -> int:
        return self._size

    def __contains__(self, token: object) -> bool:
        if not isinstance(token, str):
            return False
        return token == UNK or self.id(token) != self.unk_id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary) or self.eos != other.eos:
            return False
        if self._joined is not None and other._joined is not None:
            return self._joined == other._joined
        # made for the comparison, not kept: a compact vocabulary stays compact
        return len(self) == len(other) and self.tokens() == other.tokens()

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, eos={self.eos!r})"

    def __getstate__(self) -> dict[str, Any]:
        # str hashes differ from one process to the next: the index is made again there
        return {**self.__dict__, "_index": None}

    def id(self, token: str) -> int:
        if self._joined is None or self._stoi is not None:
            return self.stoi.get(token, self.unk_id)
        return int(self.ids([token])[0])

    def ids(self, tokens: Sequence[str]) -> np.ndarray:
        """The id of every token of ``tokens`` (``<unk>`` for one not in the
        vocabulary), as :func:`id_dtype` integers: one vectorised lookup."""
        dtype = id_dtype(self._size)
        if self._joined is not None and self._stoi is None:
            if self._index is None:
                self._index = _HashIndex(self)
            if self._index.unique:
                return self._index.ids(tokens).astype(dtype, copy=False)
        # a plain vocabulary, or two tokens share a hash: the dict decides
        get = self.stoi.get
        return np.fromiter(map(get, tokens, repeat(self.unk_id)), dtype, count=len(tokens))

    def forget_lookup(self) -> None:
        """Drop the hash index of a compact vocabulary (20 bytes a token), made
        again by the next lookup: for a pause in lookups under another large job."""
        self._index = None

    def token(self, index: int) -> str:
        if self._itos is not None or self._joined is None:
            return self.itos[index]
        if not -self._size <= index < self._size:
            raise IndexError("vocabulary index out of range")
        index %= self._size
        return self._decoded(index, index + 1)[0]

    def tokens(self) -> list[str]:
        """Every token, by id: ``itos``, or for a compact vocabulary a list made for
        the caller and not kept (what writing a whole vocabulary out needs)."""
        return self._itos if self._itos is not None else self._decoded()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (for checkpoints)."""
        return {"tokens": self.tokens(), "eos": self.eos}

    #: Tokens from which :meth:`from_dict` makes a compact vocabulary.
    COMPACT_FROM = 1 << 16

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        tokens = data["tokens"]
        return cls(tokens, eos=data.get("eos"), compact=len(tokens) >= cls.COMPACT_FROM)


def _salted(token: str) -> int:
    """A second hash of ``token``, independent of ``hash(token)``."""
    return hash("\0" + token)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _first_hashes(tokens: Sequence[str]) -> np.ndarray:
    """``hash(token)`` of every token, mixed with its length: CPython hashes a
    string's stored bytes, so ``'e"'`` (one byte a character) and ``'≥'`` (two)
    hash alike; their lengths differ."""
    hashes = np.fromiter(map(hash, tokens), np.int64, len(tokens)).view(np.uint64)
    hashes ^= np.fromiter(map(len, tokens), np.uint64, len(tokens)) * _GOLDEN
    return hashes.view(np.int64)


class _HashIndex:
    """Token -> id for a compact :class:`Vocabulary`: two 64-bit hashes of every
    token (from Python's own string hash, computed in C; per process), the first
    sorted for a binary search. A token matches where both hashes do; two tokens
    of the vocabulary that share the first hash (odds of about 1e-8 for a
    million words) make the vocabulary fall back to its dict."""

    CHUNK = 1 << 16  # tokens made into strings at once while hashing

    def __init__(self, vocab: Vocabulary) -> None:
        first = np.empty(len(vocab), dtype=np.int64)
        self.second = np.empty(len(vocab), dtype=np.int64)
        for a in range(0, len(vocab), self.CHUNK):
            tokens = vocab._decoded(a, min(a + self.CHUNK, len(vocab)))
            first[a : a + len(tokens)] = _first_hashes(tokens)
            self.second[a : a + len(tokens)] = np.fromiter(
                map(_salted, tokens), np.int64, len(tokens)
            )
        self.order = np.argsort(first, kind="stable").astype(id_dtype(len(vocab)))
        self.first = first[self.order]
        del first
        self.unique = not (self.first[1:] == self.first[:-1]).any()

    def ids(self, tokens: Sequence[str]) -> np.ndarray:
        """The id of every token (``<unk>`` where none matches)."""
        first = _first_hashes(tokens)
        at = np.minimum(np.searchsorted(self.first, first), len(self.first) - 1)
        found = self.order[at]
        match = self.first[at] == first
        match[match] = self.second[found[match]] == np.fromiter(
            map(_salted, compress(tokens, match)), np.int64, count=int(match.sum())
        )
        return np.where(match, found, Vocabulary.unk_id)


class TokenChunks:
    """The ids of a text in chunks, made again each time they are iterated.

    What a model whose ``fits_from_chunks`` is true gets to train on: in line
    mode every chunk is whole lines (it ends with the end-of-line id), in stream
    mode a chunk may end anywhere between two tokens. Iterating reads and
    encodes the text once more, one chunk in memory at a time (or, for the word
    tokenizer, gathers the ids from the word numbers it kept);
    ``np.asarray(chunks)`` is their concatenation, for what needs it whole.

    A model that has read them for the last time calls :meth:`done`: what makes
    them quickly (the word numbers a tokenizer kept, 4 bytes a word of the
    training text) may then go before the model's own work on what it read.
    """

    def __init__(
        self,
        make: Callable[[], Iterable[np.ndarray]],
        lines: bool = True,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self._make = make
        self.lines = lines
        self._on_done = on_done

    def done(self) -> None:
        """Say that they will not be iterated again (iterating still works, by
        reading and encoding the text once more)."""
        if self._on_done is not None:
            self._on_done()

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self._make())

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        parts = list(self)
        whole = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        return whole if dtype is None else whole.astype(dtype, copy=False)


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
    #: Whether the vocabulary it builds is compact (see :class:`Vocabulary`): for
    #: vocabularies of millions of tokens, where a dict of strings is hundreds of MB.
    compact_vocabulary: ClassVar[bool] = False

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
        """Build the vocabulary of ``text``."""
        return self.fit_pieces([text])

    def fit_pieces(self, pieces: Iterable[str], *, source: object = None) -> Vocabulary:
        """Build the vocabulary of the text ``pieces`` make up, one piece in memory
        at a time. Pieces of whole lines give what :meth:`fit` gives on their
        concatenation where :attr:`reads_in_pieces` says so. ``source`` names the
        text (the corpus it is the training text of): :meth:`fitted_ids` may then
        give its ids without reading it again."""
        counts = self._count(pieces)
        eos = self.eos_token if self.lines else None
        self.vocab = Vocabulary.build(
            counts, eos=eos, min_freq=self.min_freq, compact=self.compact_vocabulary
        )
        return self.vocab

    def fitted_ids(self, source: object) -> Iterator[np.ndarray] | None:
        """The ids of the text :meth:`fit_pieces` built the vocabulary from, in
        chunks of whole lines, where the tokenizer kept what it takes to give them
        and that text was ``source``; ``None`` otherwise (then :meth:`encode_pieces`
        it)."""
        return None

    def forget_fitted_ids(self) -> None:
        """Drop what :meth:`fitted_ids` keeps (once every model is fitted)."""
        return None  # this tokenizer keeps nothing

    def _count(self, pieces: Iterable[str]) -> Counter[str]:
        """How often each token occurs in the pieces (the end-of-line token included)."""
        counts: Counter[str] = Counter()
        for text in pieces:
            for piece in self._pieces(text):
                counts.update(piece)
        return counts

    @property
    def reads_in_pieces(self) -> bool:
        """Whether :meth:`fit_pieces` and :meth:`encode_pieces` over pieces of whole
        lines give what :meth:`fit` and :meth:`encode` give over the whole text: in
        line mode, unless a subclass changes how a text is cut into lines or makes
        its own ``fit`` or ``encode`` (a learnt subword vocabulary, say: it gets the
        whole text). In stream mode ``split`` sees the whole text, which may not be
        cut at lines, unless a tokenizer's own fast paths (:meth:`_fast`) hold."""
        cut_at_lines = self.lines and getattr(self._pieces, "__func__", None) is Tokenizer._pieces
        return (cut_at_lines or self._fast()) and self._own_fit_and_encode()

    def _fast(self) -> bool:
        """Whether this tokenizer's own vectorised paths give what the generic rule
        gives (none here; the char and word tokenizers have theirs)."""
        return False

    def _own_fit_and_encode(self) -> bool:
        """Whether ``fit`` and ``encode`` are lmeval's (no subclass replaced them)."""
        mine = type(self)
        return mine.fit is Tokenizer.fit and mine.encode in _OWN_ENCODES

    def encode_pieces(self, pieces: Iterable[str]) -> Iterator[np.ndarray]:
        """:meth:`encode` of each piece: the ids of the text they make up, in chunks."""
        return map(self.encode, pieces)

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

    def _count(self, pieces: Iterable[str]) -> Counter[str]:
        if not self._fast():
            return super()._count(pieces)
        tally = np.zeros(0, dtype=np.int64)
        for text in pieces:
            for codes in self._code_chunks(text):
                counted = np.bincount(codes)
                if len(counted) > len(tally):
                    tally = np.concatenate([tally, np.zeros(len(counted) - len(tally), np.int64)])
                tally[: len(counted)] += counted
        seen = np.flatnonzero(tally)
        return Counter(
            {chr(c): int(n) for c, n in zip(seen.tolist(), tally[seen].tolist(), strict=True)}
        )

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
    compact_vocabulary = True

    def split(self, line: str) -> list[str]:
        return line.split()

    # Fast paths: the words of the whole text, cut by str.split in C a chunk of lines
    # at a time, are the words of its lines one after another, with the end-of-line
    # word put where each line ends, wherever the text holds no such word itself
    # (a piece that does takes the per-line path). On 50 MB of text that is 10x the
    # per-line Python path, with memory bounded by the chunk. They hold only while
    # the tokens are exactly str.split's (as for CharTokenizer).

    #: Characters of text split at once (a chunk's words are Python objects).
    CHUNK = 1 << 22

    def _fast(self) -> bool:
        return (
            getattr(self.split, "__func__", None) is WordTokenizer.split
            and getattr(self._pieces, "__func__", None) is Tokenizer._pieces
        )

    def _chunks(self, text: str) -> Iterator[list[str]]:
        """The tokens of ``text`` (in line mode: words and end-of-line words, a
        literal end-of-line word ``<unk>``) in chunks of whole lines."""
        for piece in line_pieces(text, self.CHUNK):
            if not self.lines:
                yield piece.split()
            elif self.eos_token in piece:  # the word itself, or inside one: line by line
                yield [token for line in self._pieces(piece) for token in line]
            else:
                words = piece.replace("\n", f" {self.eos_token} ").split()
                if not piece.endswith("\n"):
                    words.append(self.eos_token)  # the unfinished last line, ended
                yield words

    def fit_pieces(self, pieces: Iterable[str], *, source: object = None) -> Vocabulary:
        if not self._fast():
            return super().fit_pieces(pieces, source=source)
        # every word numbered by its first appearance in one pass of C dict lookups;
        # the numbers (4 bytes a word) are kept, so that the ids of this same text
        # (fitted_ids) are one gather, not a second pass of splitting and lookups
        numbering = _Numbering()
        numbered: list[np.ndarray] = []
        tally = np.zeros(1 << 16, dtype=np.int64)
        for text in pieces:
            for words in self._chunks(text):
                numbers = np.fromiter(
                    map(numbering.__getitem__, words), dtype=np.int32, count=len(words)
                )
                if len(numbering) > len(tally):  # doubled: no copy per chunk
                    tally = np.concatenate([tally, np.zeros(len(tally), dtype=np.int64)])
                counted = np.bincount(numbers)
                tally[: len(counted)] += counted
                numbered.append(numbers)
        tokens = list(numbering)
        del numbering
        counts = dict(zip(tokens, tally[: len(tokens)].tolist(), strict=True))  # no Counter copy
        eos = self.eos_token if self.lines else None
        self.vocab = Vocabulary.build(
            counts, eos=eos, min_freq=self.min_freq, compact=self.compact_vocabulary
        )
        del counts
        self._numbered = None
        if source is not None:  # each number's id: then the words themselves go
            ids_of = self.vocab.ids(tokens)
            del tokens
            # made again when the test text is encoded: not under the models' training
            self.vocab.forget_lookup()
            # one array, not one per chunk: each chunk's small array object, made
            # among millions of short-lived words, would keep its 1 MB block of
            # Python's small-object memory (tens of MB at 100 MB of text) alive
            ends = np.cumsum([len(numbers) for numbers in numbered])
            joined = np.concatenate(numbered) if numbered else np.zeros(0, dtype=np.int32)
            del numbered
            self._numbered = (source, ids_of, joined, ends)
        return self.vocab

    def fitted_ids(self, source: object) -> Iterator[np.ndarray] | None:
        kept = getattr(self, "_numbered", None)
        if kept is None or kept[0] is not source or not self._fast():
            return None
        _, ids_of, numbers, ends = kept
        return (ids_of[numbers[a:b]] for a, b in _grouped(ends, self.CHUNK_IDS))

    #: Ids per chunk that :meth:`fitted_ids` gives at least (the pieces' words are
    #: grouped): what a model does once per chunk may cost as much as the vocabulary.
    CHUNK_IDS = 1 << 21

    def forget_fitted_ids(self) -> None:
        self._numbered = None

    def encode(self, text: str) -> np.ndarray:
        if not self._fast():
            return super().encode(text)
        vocab = self._require_vocab()
        parts = [vocab.ids(words) for words in self._chunks(text)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=id_dtype(len(vocab)))


def _grouped(ends: np.ndarray, least: int) -> Iterator[tuple[int, int]]:
    """The spans ``(start, stop)`` of consecutive parts (each ending at one of
    ``ends``, increasing) joined until each holds at least ``least`` items."""
    start = 0
    for end in ends.tolist():
        if end - start >= least:
            yield start, end
            start = end
    last = int(ends[-1]) if len(ends) else 0
    if start < last:
        yield start, last


#: The encodes that work line by line (and so piece by piece) in line mode.
_OWN_ENCODES = (Tokenizer.encode, CharTokenizer.encode, WordTokenizer.encode)


class _Numbering(dict):
    """Word -> its number, by first appearance: a word not seen yet gets the next."""

    def __missing__(self, word: str) -> int:
        self[word] = number = len(self)
        return number

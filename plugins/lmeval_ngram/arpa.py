"""ARPA back-off files: the text format KenLM, SRILM and most toolkits read and write.

A token becomes an ARPA word by :func:`spell`: the end-of-line token is
``</s>``, ``<unk>`` stays ``<unk>``, and since an ARPA word cannot hold
whitespace, a space is written U+2581 ``▁`` (as the KenLM references of this
project spell it) and any other whitespace character (or a NUL) ``<U+XXXX>``. Log
probabilities are base 10 in the file and natural logs inside lmeval; ``-99``
(or less) in a file means probability 0, as in SRILM. What ``ngram`` writes reads
back bit for bit (see :func:`_fmt`).

Reading trusts nothing a file says about itself: memory follows the entries
actually there (the header's counts are checked against them when each section
ends, never used to allocate), an order beyond :data:`MAX_ORDER` is refused at its
header line, and every malformed line (a log-probability that is NaN or above 0,
a back-off that is NaN, infinite or above 10^99, a missing or extra field, a word
that is no 1-gram, an n-gram listed twice or without its prefix) is refused with
one line naming the file, the line and the value, as KenLM refuses them.
"""

from __future__ import annotations

import io
import math
from array import array
from decimal import Context, Decimal
from pathlib import Path

import numpy as np

import lmeval

from .tables import Tables

BOS_WORD = "<s>"
EOS_WORD = "</s>"
UNK_WORD = "<unk>"
_LN10 = math.log(10.0)
_ZERO = -99.0  # log10 of probability 0 in an ARPA file
_DECIMAL = Context(prec=40)  # 40 digits: far finer than float64 (17), see _fmt
_LN10_DECIMAL = Decimal(10).ln(_DECIMAL)
_REPR_MAX = 24  # the longest repr of a float64 ("-1.2345678901234567e-100")
MAX_ORDER = 64
"""The longest n-gram an ARPA file may declare here (``ngram``'s own limit): a header
beyond it is refused before anything is read, as no real model has such an order."""
_MAX_BACKOFF = 99.0  # log10 of the largest back-off weight read; -99 or less is weight 0


def spell(token: str, eos: str | None) -> str:
    """The ARPA word of one vocabulary token."""
    if token == eos:
        return EOS_WORD
    if token == lmeval.UNK:
        return UNK_WORD
    if token and not any(_escaped(ch) for ch in token):
        return token
    return (
        "".join("▁" if ch == " " else f"<U+{ord(ch):04X}>" if _escaped(ch) else ch for ch in token)
        or "<empty>"
    )


def _escaped(ch: str) -> bool:
    """Whether ``ch`` cannot stand in an ARPA word: whitespace splits words, and a NUL
    makes the file read as binary."""
    return ch.isspace() or ch == "\x00"


def _fmt(log_e: np.ndarray) -> list[str]:
    """Base-10 texts of natural logs, which :func:`_natural` reads back bit for bit.

    The shortest text of the float64 ``log_e / ln 10`` where that float times
    ``ln 10`` is ``log_e`` again; where no float64 is (multiplying by ln 10 misses
    some float64s), 21 significant digits, longer than any float's repr, which the
    reader multiplies out in decimal.
    """
    log_e = np.asarray(log_e, dtype=np.float64)
    log10 = log_e / _LN10
    exact = log10 * _LN10 == log_e
    return [
        "0" if v == 0
        else "-99" if v <= _ZERO
        else repr(v) if same
        else format(_DECIMAL.divide(Decimal(x), _LN10_DECIMAL), ".20e")
        for x, v, same in zip(log_e.tolist(), log10.tolist(), exact.tolist(), strict=True)
    ]  # fmt: skip


def write_arpa(path: str | Path, tables: Tables, words: list[str]) -> None:
    """Write ``tables`` (a backoff model) as an ARPA file; ``<s>`` gets log10 p = 0 as in KenLM."""
    if not tables.backoff:
        raise lmeval.UsageError(
            "an ARPA file holds back-off models only, and add-k is not one: save to .npz instead"
        )
    if len(set(words)) != len(words):
        seen: set[str] = set()
        twice = next(w for w in words if w in seen or seen.add(w))
        raise lmeval.UsageError(
            f"cannot write ARPA: two tokens are both spelled {twice!r} there "
            "(ARPA reserves <s>, </s>, <unk> and whitespace); save to .npz instead"
        )
    word_arr = np.asarray(words, dtype=object)
    with lmeval.atomic_write(path, "w", encoding="utf-8") as out:
        out.write("\\data\\\n")
        for n, size in enumerate(tables.sizes, start=1):
            out.write(f"ngram {n}={size}\n")
        for n in range(1, tables.order + 1):
            out.write(f"\n\\{n}-grams:\n")
            grams = [" ".join(row) for row in word_arr[tables.ngram_tokens(n)].tolist()]
            logp = tables.logp[n - 1].copy()
            if n == 1:
                logp[tables.bos] = 0.0
            probs = _fmt(logp)
            if n < tables.order:
                backoffs = _fmt(tables.logbo[n - 1])
                out.writelines(
                    f"{p}\t{g}\t{b}\n" for p, g, b in zip(probs, grams, backoffs, strict=True)
                )
            else:
                out.writelines(f"{p}\t{g}\n" for p, g in zip(probs, grams, strict=True))
        out.write("\n\\end\\\n")


def _shown(text: str, limit: int = 40) -> str:
    """``text`` quoted for a message, cut at ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _natural(text: str, log10: float) -> float:
    """The natural log of the base-10 log ``log10``, written ``text``; -99 or less is log 0.

    A text longer than any float's repr (one :func:`_fmt` wrote) is multiplied
    out in decimal, so the value ``ngram`` wrote comes back exactly.
    """
    if log10 <= _ZERO:
        return -math.inf
    if len(text) > _REPR_MAX:
        try:
            return float(_DECIMAL.multiply(Decimal(text), _LN10_DECIMAL))
        except ArithmeticError:  # what float() reads and Decimal does not
            pass
    return log10 * _LN10


class _Section:
    """The entries of one ``\\N-grams:`` section, counted as they are read.

    Compact arrays that grow entry by entry: what is held is what the file
    contains, whatever its header declares.
    """

    def __init__(self, n: int, declared: int, top: bool) -> None:
        self.n, self.declared, self.top = n, declared, top
        self.logp = array("d")  # natural log p
        self.backoff = array("d")  # natural log back-off (0 when absent)
        self.ids = array("q")  # n word indexes per entry (orders 2 and up)
        self.lines = array("q")  # line number of each entry, for messages


class _Reader:
    """Reads an ARPA text line by line; every refusal names the file and the line."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self.declared: dict[int, int] = {}
        self.sections: list[_Section] = []
        self.current: _Section | None = None
        self.words: list[str] = []
        self.index: dict[str, int] = {}

    def fail(self, message: str, lineno: int | None = None) -> lmeval.LmevalError:
        where = f"{self.path}" if lineno is None else f"{self.path}, line {lineno}"
        return lmeval.LmevalError(f"{where}: {message}")

    @property
    def order(self) -> int:
        return len(self.declared)

    def read(self, text: str) -> None:
        lines = enumerate(io.StringIO(text), start=1)
        for _, line in lines:
            if line.strip() == "\\data\\":
                break
        else:
            raise lmeval.LmevalError(
                f"{self.path} is not an ARPA file: it has no \\data\\ line "
                "(give an ARPA back-off file, as KenLM's lmplz or SRILM's ngram-count write)"
            )
        for lineno, line in lines:
            line = line.strip()
            if not line:
                continue
            if line == "\\end\\":
                self.close(lineno)
                break
            if line.startswith("\\"):
                self.open(line, lineno)
            elif self.current is None:
                self.declare(line, lineno)
            else:
                self.entry(line.split(), lineno)
        else:
            raise self.fail("no \\end\\ line: the file is cut short, give the whole file")
        if len(self.sections) < max(self.order, 1):
            raise self.fail(
                f"\\data\\ declares {self.order} order(s) but the file has "
                f"{len(self.sections)} n-gram section(s): give the whole file"
            )

    def declare(self, line: str, lineno: int) -> None:
        """One ``ngram N=COUNT`` line of the header; an absurd order is refused here."""
        head, _, size = line.partition("=")
        try:
            if not head.startswith("ngram "):
                raise ValueError
            n, count = int(head[6:]), int(size)
        except ValueError:
            raise self.fail(
                f"expected 'ngram N=COUNT' or a \\N-grams: header, not {_shown(line)}", lineno
            ) from None
        if not 1 <= n <= MAX_ORDER:
            raise self.fail(
                f"order {n} is out of range: ARPA orders here are 1 to {MAX_ORDER}", lineno
            )
        if count < 0:
            raise self.fail(f"ngram {n}={count}: a count is at least 0", lineno)
        if n in self.declared:
            raise self.fail(f"ngram {n}= is declared twice", lineno)
        self.declared[n] = count

    def open(self, line: str, lineno: int) -> None:
        """A ``\\N-grams:`` header: the previous section is complete, check its count."""
        try:
            if not line.endswith("-grams:"):
                raise ValueError
            n = int(line[1:-7])
        except ValueError:
            raise self.fail(
                f"expected a \\N-grams: header or \\end\\, not {_shown(line)}", lineno
            ) from None
        if not self.sections:
            if sorted(self.declared) != list(range(1, self.order + 1)) or not self.order:
                raise self.fail(
                    "the 'ngram N=COUNT' lines after \\data\\ must declare orders 1, 2, .., N; "
                    f"these declare {sorted(self.declared)}",
                    lineno,
                )
        self.close(lineno)
        expected = len(self.sections) + 1
        if n > self.order:
            raise self.fail(
                f"a \\{n}-grams: section, but \\data\\ declares orders up to {self.order}", lineno
            )
        if n != expected:
            raise self.fail(f"\\{n}-grams: where \\{expected}-grams: belongs", lineno)
        self.current = _Section(n, self.declared[n], top=n == self.order)
        self.sections.append(self.current)

    def close(self, lineno: int) -> None:
        """The end of the current section: its entries against the header's count."""
        section = self.current
        if section is None:
            return
        if len(section.logp) != section.declared:
            raise self.fail(
                f"\\data\\ declares {section.declared} {section.n}-grams, its \\{section.n}-grams: "
                f"section (ending on line {lineno}) has {len(section.logp)}: give the whole file, "
                "or the right count"
            )
        if section.n == 1:  # <s> is context only; a missing <unk> has probability 0
            for special, logp in ((BOS_WORD, 0.0), (UNK_WORD, -math.inf)):
                if special not in self.index:
                    self.index[special] = len(self.words)
                    self.words.append(special)
                    section.logp.append(logp)
                    section.backoff.append(0.0)
        self.current = None

    def number(self, text: str, what: str, n: int, lineno: int) -> float:
        try:
            return float(text)
        except ValueError:
            raise self.fail(
                f"{what} {_shown(text)} is not a number (a {n}-gram line is log10 p, "
                f"{n} word(s) and an optional back-off)",
                lineno,
            ) from None

    def entry(self, fields: list[str], lineno: int) -> None:
        """One n-gram line: ``log10 p``, n words, an optional ``log10`` back-off."""
        section = self.current
        assert section is not None
        n = section.n
        if len(fields) not in (n + 1, n + 2):
            raise self.fail(
                f"{len(fields)} field(s) where a {n}-gram line has log10 p, {n} word(s) "
                "and an optional back-off",
                lineno,
            )
        logp = self.number(fields[0], "log10 p", n, lineno)
        if not logp <= 0:  # NaN too
            raise self.fail(
                f"log10 p = {fields[0]} is not a log-probability: give a number at most 0 "
                "(-99 for probability 0)",
                lineno,
            )
        backoff = 0.0
        if len(fields) == n + 2:
            backoff = self.number(fields[-1], "back-off", n, lineno)
            if section.top and backoff != 0:
                raise self.fail(
                    f"back-off = {fields[-1]} on a {n}-gram, the top order, which has none: "
                    "give 0 or nothing",
                    lineno,
                )
            if not -math.inf < backoff <= _MAX_BACKOFF:  # NaN too
                raise self.fail(
                    f"back-off = {fields[-1]} is not a log10 back-off weight: give a finite "
                    f"number at most {_MAX_BACKOFF:g} (-99 for weight 0)",
                    lineno,
                )
        words = fields[1 : n + 1]
        if n == 1:
            first = self.index.setdefault(words[0], len(self.words))
            if first != len(self.words):
                raise self.fail(
                    f"the 1-gram {_shown(words[0])} is listed twice "
                    f"(first on line {section.lines[first]})",
                    lineno,
                )
            self.words.append(words[0])
        else:
            for word in words:
                at = self.index.get(word)
                if at is None:
                    raise self.fail(
                        f"the {n}-gram {_shown(' '.join(words))} has the word {_shown(word)}, "
                        "which is no 1-gram: every word must be listed in \\1-grams:",
                        lineno,
                    )
                section.ids.append(at)
        section.logp.append(_natural(fields[0], logp))
        section.backoff.append(_natural(fields[-1], backoff) if backoff else 0.0)
        section.lines.append(lineno)

    def spelled(self, toks: np.ndarray) -> str:
        """An n-gram as the file writes it, quoted for a message."""
        return _shown(" ".join(self.words[t] for t in toks.tolist()))

    def tables(self) -> Tables:
        """The sections as sorted tables; refuses an n-gram twice or without its prefix."""
        radix, order = len(self.words), self.order
        first = self.sections[0]
        tables = Tables(
            radix=radix,
            bos=self.index[BOS_WORD],
            keys=[np.arange(radix, dtype=np.int64)],
            logp=[np.asarray(first.logp, dtype=np.float64)],
            logbo=[np.asarray(first.backoff, dtype=np.float64)] if order > 1 else [],
        )
        for section in self.sections[1:]:
            n = section.n
            toks = np.asarray(section.ids, dtype=np.int64).reshape(-1, n)
            lines = np.asarray(section.lines, dtype=np.int64)
            prefix = toks[:, 0]
            for j in range(1, n - 1):
                prefix = tables.lookup(j + 1, prefix, toks[:, j])
            if len(prefix) and prefix.min() < 0:
                at = int(np.argmin(prefix))
                raise self.fail(
                    f"the {n}-gram {self.spelled(toks[at])} has no {n - 1}-gram for its first "
                    f"{n - 1} words: ARPA lists the prefix of every n-gram",
                    int(lines[at]),
                )
            keys = prefix * radix + toks[:, n - 1]
            by_key = np.argsort(keys, kind="stable")
            keys = keys[by_key]
            twice = np.flatnonzero(keys[1:] == keys[:-1])
            if len(twice):
                again, before = by_key[twice[0] + 1], by_key[twice[0]]
                raise self.fail(
                    f"the {n}-gram {self.spelled(toks[again])} is listed twice "
                    f"(first on line {lines[before]})",
                    int(lines[again]),
                )
            tables.keys.append(keys)
            tables.logp.append(np.asarray(section.logp, dtype=np.float64)[by_key])
            if n < order:
                tables.logbo.append(np.asarray(section.backoff, dtype=np.float64)[by_key])
        return tables


def read_arpa(path: str | Path) -> tuple[list[str], Tables]:
    """The words (index = internal id) and the tables of an ARPA file.

    A missing ``<s>`` is added (it is context only); a missing ``<unk>`` is added
    with probability 0. Memory follows what the file holds, never what its header
    declares: entries are counted as they are read, and each section's count is
    compared with the header's when the section ends.
    """
    reader = _Reader(path)
    reader.read(lmeval.read_text(path))
    return reader.words, reader.tables()

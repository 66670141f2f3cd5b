"""ARPA back-off files: the text format KenLM, SRILM and most toolkits read and write.

A token becomes an ARPA word by :func:`spell`: the end-of-line token is
``</s>``, ``<unk>`` stays ``<unk>``, and since an ARPA word cannot hold
whitespace, a space is written U+2581 ``▁`` (as the KenLM references of this
project spell it) and any other whitespace character ``<U+XXXX>``. Log
probabilities are base 10 in the file and natural logs inside lmeval; ``-99``
(or less) in a file means probability 0, as in SRILM.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import lmeval

from .tables import Tables

BOS_WORD = "<s>"
EOS_WORD = "</s>"
UNK_WORD = "<unk>"
_LN10 = math.log(10.0)
_ZERO = -99.0  # log10 of probability 0 in an ARPA file


def spell(token: str, eos: str | None) -> str:
    """The ARPA word of one vocabulary token."""
    if token == eos:
        return EOS_WORD
    if token == lmeval.UNK:
        return UNK_WORD
    if token and not any(ch.isspace() for ch in token):
        return token
    return (
        "".join("▁" if ch == " " else f"<U+{ord(ch):04X}>" if ch.isspace() else ch for ch in token)
        or "<empty>"
    )


def _fmt(log_e: np.ndarray) -> list[str]:
    """Base-10 values, shortest text that reads back to the same float64."""
    log10 = np.asarray(log_e, dtype=np.float64) / _LN10
    return ["0" if v == 0 else repr(v) if v > _ZERO else "-99" for v in log10.tolist()]


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


def _value(text: str) -> float:
    value = float(text)
    return -math.inf if value <= _ZERO else value * _LN10


def _check_row(row: list[str], n: int, where: str) -> list[str]:
    """``row`` of an n-gram section if well formed: log10 p, n words, optional backoff."""
    if len(row) not in (n + 1, n + 2):
        raise lmeval.LmevalError(f"{where}: expected log10 p, {n} word(s) and a backoff")
    try:
        numbers = [float(row[0])] + ([float(row[-1])] if len(row) == n + 2 else [])
    except ValueError:
        raise lmeval.LmevalError(f"{where}: {row[0]!r} or {row[-1]!r} is not a number") from None
    if numbers[0] > 0 or any(math.isnan(x) for x in numbers):
        raise lmeval.LmevalError(f"{where}: log10 p = {row[0]} is not a log-probability (<= 0)")
    return row


def read_arpa(path: str | Path) -> tuple[list[str], Tables]:
    """The words (index = internal id) and the tables of an ARPA file.

    A missing ``<s>`` is added (it is context only); a missing ``<unk>`` is added
    with probability 0.
    """
    text = lmeval.read_text(path)
    lines = iter(text.split("\n"))
    declared: dict[int, int] = {}
    for line in lines:
        if line.strip() == "\\data\\":
            break
    else:
        raise lmeval.LmevalError(f"{path} is not an ARPA file: no \\data\\ line")
    sections: dict[int, list[list[str]]] = {}
    current: list[list[str]] | None = None
    n = 0
    for lineno, line in enumerate(lines, start=2):
        line = line.strip()
        if not line:
            continue
        where = f"{path}, line {lineno}"
        if line.startswith("ngram ") and current is None:
            order_text, _, size = line[6:].partition("=")
            try:
                declared[int(order_text)] = int(size)
            except ValueError:
                raise lmeval.LmevalError(f"{where}: expected 'ngram N=COUNT'") from None
        elif line.startswith("\\") and line.endswith("-grams:"):
            try:
                n = int(line[1:-7])
            except ValueError:
                raise lmeval.LmevalError(f"{where}: bad section header {line!r}") from None
            current = sections.setdefault(n, [])
        elif line == "\\end\\":
            break
        elif current is None:
            raise lmeval.LmevalError(f"{where} is outside any n-gram section")
        else:
            current.append(_check_row(line.split(), n, where))
    order = max(declared) if declared else 0
    if order < 1 or sorted(sections) != list(range(1, order + 1)):
        raise lmeval.LmevalError(f"{path}: expected sections \\1-grams: .. \\{order}-grams:")
    for n, rows in sections.items():
        if len(rows) != declared[n]:
            raise lmeval.LmevalError(
                f"{path}: \\data\\ declares {declared[n]} {n}-grams, the file has {len(rows)}"
            )
    words = [row[1] for row in sections[1]]
    unigram_logp = [_value(row[0]) for row in sections[1]]
    unigram_bo = [_value(row[2]) if len(row) > 2 else 0.0 for row in sections[1]]
    for special, logp in ((BOS_WORD, 0.0), (UNK_WORD, -math.inf)):
        if special not in words:
            words.append(special)
            unigram_logp.append(logp)
            unigram_bo.append(0.0)
    index = {w: i for i, w in enumerate(words)}
    if len(index) != len(words):
        raise lmeval.LmevalError(f"{path}: a word is listed twice among the 1-grams")
    radix = len(words)
    tables = Tables(
        radix=radix,
        bos=index[BOS_WORD],
        keys=[np.arange(radix, dtype=np.int64)],
        logp=[np.asarray(unigram_logp, dtype=np.float64)],
        logbo=[np.asarray(unigram_bo, dtype=np.float64)] if order > 1 else [],
    )
    for n in range(2, order + 1):
        rows = sections[n]
        try:
            toks = np.array([[index[w] for w in row[1 : n + 1]] for row in rows], dtype=np.int64)
        except KeyError as exc:
            raise lmeval.LmevalError(f"{path}: {n}-gram word {exc} is not a 1-gram") from None
        toks = toks.reshape(len(rows), n)
        logp = np.array([_value(row[0]) for row in rows], dtype=np.float64)
        bo = np.array([_value(row[n + 1]) if len(row) > n + 1 else 0.0 for row in rows])
        prefix = toks[:, 0]
        for j in range(1, n - 1):
            prefix = tables.lookup(j + 1, prefix, toks[:, j])
        if len(prefix) and prefix.min() < 0:
            bad = " ".join(words[t] for t in toks[int(np.argmin(prefix))])
            raise lmeval.LmevalError(f"{path}: the prefix of the {n}-gram {bad!r} is missing")
        keys = prefix * radix + toks[:, n - 1]
        order_idx = np.argsort(keys, kind="stable")
        keys = keys[order_idx]
        if len(keys) > 1 and (keys[1:] == keys[:-1]).any():
            raise lmeval.LmevalError(f"{path}: a {n}-gram is listed twice")
        tables.keys.append(keys)
        tables.logp.append(logp[order_idx])
        if n < order:
            tables.logbo.append(bo[order_idx])
    return words, tables

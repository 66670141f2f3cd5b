"""Every predicted token of a comparison, one row each: ``lmeval compare --save-tokens``.

The rows of every successful model of a :class:`~lmeval.Comparison` made with
``keep_tokens=True``, in the order of the results, each model's tokens in
text order. The columns (:data:`COLUMNS`):

* ``model`` (string): the row's label;
* ``position`` (int64): the token's index in the model's test ids, from 0;
* ``line`` (int64 or null): the 0-based line of the test text. In line mode
  the number of end-of-line tokens before the token (a line's end-of-line token
  is on that line). In stream mode the number of newlines in the texts of the
  tokens before it (a newline token is on the line it ends); null for every
  token when no token of the vocabulary holds a newline (the word tokenizer
  drops them), where lines cannot be told;
* ``token`` (string): its text, ``vocab.itos[id]``: ``<unk>`` for an
  out-of-vocabulary token, the end-of-line token as the vocabulary spells it
  (``"\\n"`` for the char tokenizer, ``</s>`` for the word tokenizer);
* ``logprob`` (float64): ln p(token | what precedes it), in nats, <= 0;
* ``oov`` (bool): whether the id is ``vocab.unk_id``;
* ``order`` (int64 or null): for an n-gram model the order of the longest
  n-gram its prediction used (1 to the model's order, KenLM's ``ngram_length``,
  from the model's optional ``orders_used``); null for other models and under
  ``isolate`` (the model lives in the child process).

Formats by suffix: ``.jsonl`` (JSON Lines, one object per token and nothing
else, so readers need no options; an infinite ``logprob`` is null, as JSON has
no infinity) and ``.parquet`` (Apache Parquet through pyarrow, the extra
``lmeval[parquet]``; the comparison's meta as JSON in the schema metadata key
``lmeval.meta``). Written atomically: a failure leaves any previous file as it was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .evaluate import Comparison
from .files import atomic_write, check_writable

#: The columns of every row, in order.
COLUMNS = ("model", "position", "line", "token", "logprob", "oov", "order")

#: The suffixes ``save_tokens`` writes, and their formats.
FORMATS = {".jsonl": "jsonl", ".parquet": "parquet"}

PARQUET_HINT = "pip install 'lmeval[parquet]'"


def tokens_format(path: str | os.PathLike[str]) -> str:
    """The format of ``path`` by its suffix (``"jsonl"`` or ``"parquet"``), once it is
    known to be writable and, for Parquet, pyarrow importable; else a one-line
    :class:`UsageError`. Called before any training."""
    suffix = Path(path).suffix.lower()
    fmt = FORMATS.get(suffix)
    if fmt is None:
        given = f"not {suffix}" if suffix else "it has no suffix"
        raise UsageError(f"--save-tokens {path}: give a file ending in .jsonl or .parquet, {given}")
    if fmt == "parquet":
        _pyarrow(path)
    check_writable(path)
    return fmt


def _pyarrow(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """The ``pyarrow`` and ``pyarrow.parquet`` modules, or a one-line UsageError."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise UsageError(f"--save-tokens {path} needs pyarrow: {PARQUET_HINT}") from None
    return pyarrow, pyarrow.parquet


def save_tokens(comparison: Comparison, path: str | os.PathLike[str]) -> int:
    """Write every predicted token of ``comparison`` (from ``compare(keep_tokens=True)``)
    to ``path``, ``.jsonl`` or ``.parquet`` (see :mod:`lmeval.export` for the columns);
    the number of rows written. Failed rows have no tokens and are left out."""
    fmt = tokens_format(path)
    missing = [label for label in comparison.scores if label not in comparison.tokens]
    if missing:
        raise UsageError(
            f"the comparison kept no tokens of {', '.join(missing)}: "
            "run compare(..., keep_tokens=True)"
        )
    if fmt == "jsonl":
        return _write_jsonl(comparison, path)
    return _write_parquet(comparison, path)


def _columns(comparison: Comparison) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each successful row's label and its columns (numpy arrays, ``None`` for an all-null
    column), in the order of the results."""
    for label, scores in comparison.scores.items():
        kept = comparison.tokens[label]
        ids = kept.ids
        yield (
            label,
            {
                "position": np.arange(len(ids), dtype=np.int64),
                "line": kept.line_numbers(),
                "token": np.asarray(kept.vocab.itos, dtype=object)[ids],
                "logprob": np.asarray(scores.logprobs, dtype=np.float64),
                "oov": ids == kept.vocab.unk_id,
                "order": kept.orders,
            },
        )


def _write_jsonl(comparison: Comparison, path: str | os.PathLike[str]) -> int:
    rows = 0
    with atomic_write(path, "w", encoding="utf-8") as handle:
        for label, cols in _columns(comparison):
            model = json.dumps(label, ensure_ascii=False)
            lines = cols["line"].tolist() if cols["line"] is not None else None
            orders = cols["order"].tolist() if cols["order"] is not None else None
            logprobs = [v if v != -np.inf else None for v in cols["logprob"].tolist()]
            texts = [json.dumps(t, ensure_ascii=False) for t in cols["token"].tolist()]
            for i, (text, logprob, oov) in enumerate(
                zip(texts, logprobs, cols["oov"].tolist(), strict=True)
            ):
                handle.write(
                    f'{{"model": {model}, "position": {i}, '
                    f'"line": {_json(lines, i)}, "token": {text}, '
                    f'"logprob": {json.dumps(logprob)}, "oov": {json.dumps(oov)}, '
                    f'"order": {_json(orders, i)}}}\n'
                )
            rows += len(texts)
    return rows


def _json(values: list[int] | None, i: int) -> str:
    return "null" if values is None else str(values[i])


def _write_parquet(comparison: Comparison, path: str | os.PathLike[str]) -> int:
    pa, pq = _pyarrow(path)
    schema = pa.schema(
        [
            ("model", pa.string()),
            ("position", pa.int64()),
            ("line", pa.int64()),
            ("token", pa.string()),
            ("logprob", pa.float64()),
            ("oov", pa.bool_()),
            ("order", pa.int64()),
        ],
        metadata={"lmeval.meta": json.dumps(comparison.meta, default=str)},
    )
    rows = 0
    with atomic_write(path, "wb") as handle:
        with pq.ParquetWriter(handle, schema) as writer:
            for label, cols in _columns(comparison):
                n = len(cols["position"])
                arrays = [
                    pa.array([label] * n, pa.string()),
                    *(
                        pa.nulls(n, field.type) if cols[field.name] is None else
                        pa.array(cols[field.name], field.type)
                        for field in list(schema)[1:]
                    ),
                ]  # fmt: skip
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                rows += n
    return rows

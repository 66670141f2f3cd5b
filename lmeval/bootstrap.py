"""Confidence intervals and paired significance by a block bootstrap (pure numpy).

A comparison's metrics are ratio estimators: a total negative log-likelihood
(nats) over a denominator (tokens, characters, bytes). The test text is cut
into blocks, each with its sum of ``-ln p`` and of each denominator:

* line mode: a block is one line, the ids up to and including its end-of-line
  id; its characters are ``len(line) + 1`` and its bytes ``len(line.encode()) + 1``,
  as :class:`lmeval.TextStats` counts them;
* stream mode: blocks of :data:`STREAM_BLOCK_TOKENS` consecutive tokens (the last
  one shorter). When the tokens are the text's characters the characters and
  UTF-8 bytes of a block are exact; otherwise the text's totals are split in
  proportion to the block's tokens.

A replicate draws as many blocks as there are, with replacement; its totals are
a (replicates x blocks) count matrix times the per-block sums: nothing is scored
again. Intervals are percentile intervals of the replicates. Every model of one
block layout is resampled with the same count matrix (drawn from ``seed``), so
the difference between two rows is paired: its replicates are the count matrix
times the per-block difference of their nll, in bits per character of the same
resampled text. The two-sided p-value is ``2 * min(share of replicates with
delta <= 0, share with delta >= 0)``, at most 1 and at least ``1 / replicates``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import UsageError
from .metrics import Scores
from .records import rank_key
from .tokenizers import split_lines

#: Tokens per block in stream mode.
STREAM_BLOCK_TOKENS = 100
#: Entries of the count matrix built at once (replicates are drawn in chunks).
_CHUNK_ENTRIES = 2_000_000
#: The interval keys of a record, and the metric each one bounds.
CI_KEYS = {
    "perplexity_ci": "perplexity",
    "cross_entropy_ci": "cross_entropy",
    "bits_per_char_ci": "bits_per_char",
    "bits_per_byte_ci": "bits_per_byte",
}


@dataclass(frozen=True)
class Layout:
    """How the test text is cut into blocks: where each block's tokens end, and its
    characters and UTF-8 bytes (float, as a proportional split may be fractional)."""

    ends: np.ndarray  #: token offset just past each block (int64, increasing)
    chars: np.ndarray  #: characters of each block
    bytes: np.ndarray  #: UTF-8 bytes of each block
    unit: str  #: "line" or "tokens"
    block_tokens: int | None = None  #: tokens per block in stream mode

    def same_as(self, other: Layout) -> bool:
        """Whether two rows' blocks are the same text, block for block (pairable)."""
        return (
            self.unit == other.unit
            and np.array_equal(self.chars, other.chars)
            and np.array_equal(self.bytes, other.bytes)
            and (self.unit == "line" or np.array_equal(self.ends, other.ends))
        )


def line_layout(text: str, ids: np.ndarray, eos_id: int) -> Layout:
    """Blocks of line mode: one per line, ending at its end-of-line id.

    Raises :class:`ValueError` when the ids do not end every line with ``eos_id``.
    """
    lines = split_lines(text)
    ends = np.flatnonzero(np.asarray(ids) == eos_id) + 1
    if len(ends) != len(lines) or (len(ids) and ends[-1] != len(ids)):
        raise ValueError(
            f"{len(ends)} end-of-line ids for {len(lines)} lines: blocks are not the lines"
        )
    chars = np.fromiter((len(line) + 1 for line in lines), dtype=np.float64, count=len(lines))
    nbytes = np.fromiter(
        (len(line.encode("utf-8", "surrogatepass")) + 1 for line in lines),
        dtype=np.float64,
        count=len(lines),
    )
    return Layout(ends.astype(np.int64), chars, nbytes, "line")


def stream_layout(
    text: str, n_tokens: int, *, tokens_are_chars: bool, block_tokens: int = STREAM_BLOCK_TOKENS
) -> Layout:
    """Blocks of stream mode: ``block_tokens`` consecutive tokens each (the last shorter).

    With ``tokens_are_chars`` (token i is character i) a block's characters and
    bytes are exact; otherwise the text's characters and bytes are split in
    proportion to each block's tokens.
    """
    if block_tokens < 1:
        raise ValueError(f"block_tokens must be at least 1, got {block_tokens}")
    ends = np.minimum(np.arange(1, -(-n_tokens // block_tokens) + 1) * block_tokens, n_tokens)
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    sizes = (ends - starts).astype(np.float64)
    if tokens_are_chars and n_tokens == len(text) and n_tokens:
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        width = 1.0 + (codes >= 0x80) + (codes >= 0x800) + (codes >= 0x10000)
        nbytes = np.add.reduceat(width, starts)
        chars = sizes
    else:
        share = sizes / n_tokens if n_tokens else sizes
        chars = share * len(text)
        nbytes = share * len(text.encode("utf-8", "surrogatepass"))
    return Layout(ends.astype(np.int64), chars, nbytes, "tokens", block_tokens)


#: The most bootstrap replicates a comparison draws (memory grows with them).
MAX_REPLICATES = 100_000


def check_bootstrap(replicates: int, confidence: float) -> None:
    """Refuse (UsageError) replicates and a confidence level that cannot give an
    answer: a negative count, more than :data:`MAX_REPLICATES`, or so few that no
    p-value could fall below ``1 - confidence`` (the smallest is ``2 / replicates``)."""
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 0:
        raise UsageError(f"bootstrap={replicates!r}: give the number of replicates (0 = off)")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise UsageError(f"confidence={confidence!r}: give a level strictly between 0 and 1")
    if not 0.0 < confidence < 1.0:
        raise UsageError(f"confidence={confidence!r}: give a level strictly between 0 and 1")
    if replicates > MAX_REPLICATES:
        raise UsageError(
            f"bootstrap={replicates}: at most {MAX_REPLICATES:,} replicates (memory and time "
            "grow with them; 1,000 give intervals to about 3 %)"
        )
    fewest = math.floor(2 / (1 - confidence) + 1e-9) + 1
    if 0 < replicates < fewest:
        raise UsageError(
            f"bootstrap={replicates}: the smallest p-value it can give is 2/{replicates}, so no "
            f"difference could be significant at confidence {confidence:g}: give at least "
            f"{fewest} replicates (or 0 for none)"
        )


def block_sums(values: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The sum of ``values`` over each block (float64); every block must be non-empty."""
    if not len(ends):
        return np.zeros(0)
    starts = np.concatenate([[0], ends[:-1]])
    return np.add.reduceat(np.asarray(values, dtype=np.float64), starts)


def replicate_totals(
    columns: np.ndarray, replicates: int, seed: int, chunk_entries: int = _CHUNK_ENTRIES
) -> np.ndarray:
    """Totals of every column over ``replicates`` resamples of its rows (the blocks).

    ``columns`` is (blocks x k); the answer is (replicates x k): replicate r is the
    counts of a with-replacement draw of the blocks times the columns. The draws
    depend only on ``seed``, the number of blocks and ``replicates``, so every
    column set over the same blocks is resampled alike.

    The product is numpy's own loop (``einsum``), not BLAS: a BLAS product sums
    in an order that depends on its thread count, so the same run in a worker
    with one thread (a Ray task, a ``--jobs`` process) would give intervals that
    differ in their last digit from a run with two.
    """
    columns = np.asarray(columns, dtype=np.float64)
    n = columns.shape[0]
    rng = np.random.default_rng(seed)
    out = np.empty((replicates, columns.shape[1]))
    step = max(1, chunk_entries // max(n, 1))
    for first in range(0, replicates, step):
        r = min(step, replicates - first)
        picks = rng.integers(0, n, size=(r, n)) + (np.arange(r) * n)[:, None]
        counts = np.bincount(picks.ravel(), minlength=r * n).reshape(r, n)
        out[first : first + r] = np.einsum("rn,nk->rk", counts.astype(np.float64), columns)
    return out


def percentile_interval(samples: np.ndarray, confidence: float) -> list[float] | None:
    """The percentile interval ``[low, high]`` of the replicates, or ``None`` if any
    replicate is not finite."""
    samples = np.asarray(samples, dtype=np.float64)
    if not len(samples) or not np.all(np.isfinite(samples)):
        return None
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return [float(low), float(high)]


def p_value(deltas: np.ndarray) -> float:
    """Two-sided bootstrap p-value of ``delta = 0``: ``2 * min(share <= 0, share >= 0)``,
    at most 1 and at least ``1 / len(deltas)``."""
    deltas = np.asarray(deltas)
    share = min(float(np.mean(deltas <= 0)), float(np.mean(deltas >= 0)))
    return min(1.0, max(2.0 * share, 1.0 / len(deltas)))


def method_of(layout: Layout) -> str:
    """The meta's words for how blocks were cut."""
    if layout.unit == "line":
        return "block bootstrap over lines"
    return f"block bootstrap over blocks of {layout.block_tokens} tokens"


def best_label(records: list[dict[str, Any]], scored: set[str]) -> str | None:
    """The best row that the others are tested against: the first of the table's
    ranking (:func:`lmeval.records.rank_key`) among the scored rows, if it has a
    finite bits per character."""
    candidates = [r for r in records if r["label"] in scored and rank_key(r)[0] < 3]
    best = min(candidates, key=rank_key, default=None)
    if best is None or not math.isfinite(best["bits_per_char"]) or rank_key(best)[0] == 2:
        return None
    return best["label"]


def bootstrap_records(
    records: list[dict[str, Any]],
    scores: dict[str, Scores],
    layouts: dict[str, Layout],
    *,
    replicates: int,
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    """Fill every record's interval keys and ``vs_best`` in place; the meta's
    ``unpaired`` reasons by label (rows that could not be paired with the best).

    A row without scores or a layout, or whose replicates are not finite, keeps
    ``None``. Rows sharing a layout are resampled together, with one count matrix.
    """
    for record in records:
        record.update(dict.fromkeys(CI_KEYS, None), vs_best=None)
    labels = [r["label"] for r in records if r["label"] in scores and r["label"] in layouts]
    if replicates <= 0 or not labels:
        return {}
    best = best_label(records, set(labels))
    by_label = {r["label"]: r for r in records}
    nll = {label: block_sums(-scores[label].logprobs, layouts[label].ends) for label in labels}
    unpaired: dict[str, str] = {}
    groups: list[list[str]] = []
    for label in labels:
        group = next((g for g in groups if layouts[g[0]].same_as(layouts[label])), None)
        if group is not None:
            group.append(label)
        else:
            groups.append([label])
    for group in groups:
        layout = layouts[group[0]]
        if not len(layout.ends):
            continue
        paired = best is not None and layouts[best].same_as(layout)
        cols = [layout.chars, layout.bytes]
        for label in group:
            tokens = np.diff(layouts[label].ends, prepend=0)
            cols += [tokens, nll[label]]
            if paired:
                cols.append(nll[label] - nll[best])
        with np.errstate(invalid="ignore", over="ignore"):
            totals = replicate_totals(np.column_stack(cols), replicates, seed)
            chars, nbytes = totals[:, 0], totals[:, 1]
            at = 2
            for label in group:
                tokens, total = totals[:, at], totals[:, at + 1]
                at += 2
                record = by_label[label]
                ce = percentile_interval(total / tokens, confidence)
                record["cross_entropy_ci"] = ce
                record["perplexity_ci"] = [math.exp(v) for v in ce] if ce and ce[1] < 700 else None
                record["bits_per_char_ci"] = percentile_interval(
                    total / math.log(2) / chars, confidence
                )
                record["bits_per_byte_ci"] = percentile_interval(
                    total / math.log(2) / nbytes, confidence
                )
                if not paired:
                    if best is not None and label != best:
                        unpaired[label] = (
                            f"its blocks are not those of {best!r} (another tokenization "
                            "in stream mode): no paired difference"
                        )
                    continue
                diff = totals[:, at] / math.log(2) / chars
                at += 1
                if label == best:
                    continue
                point = float(np.sum(nll[label] - nll[best]) / math.log(2) / np.sum(layout.chars))
                ci = percentile_interval(diff, confidence)
                if ci is None or not math.isfinite(point):
                    unpaired[label] = "its nll is infinite: no difference in bits per character"
                    continue
                p = p_value(diff)
                record["vs_best"] = {
                    "label": best,
                    "delta_bits_per_char": point,
                    "ci": ci,
                    "p_value": p,
                    "significant": bool(p < 1.0 - confidence),
                }
    return unpaired

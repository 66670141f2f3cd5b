"""The keys of a result record: the scripting interface, kept stable.

Low in the layers so that the plugin host (which refuses a metric named like a
record key) and the report (which lays the keys out) read the same lists
without importing the evaluator.
"""

from __future__ import annotations

import math
from typing import Any

from .metrics import BUILTIN_METRICS

#: Keys of every result record, in order.
RECORD_KEYS = (
    "label",
    "spec",
    "perplexity",
    "cross_entropy",
    "bits_per_char",
    "bits_per_byte",
    "nll",
    "tokens",
    "chars",
    "bytes",
    "lines",
    "oovs",
    "oov_rate",
    "fit_seconds",
    "score_seconds",
    "params",
    "verified",
    "verify_error",
)

#: Keys ``compare`` adds from its bootstrap (``None`` when it is off or cannot say):
#: ``[low, high]`` percentile intervals of four metrics, and the paired test
#: against the best row (see :mod:`lmeval.bootstrap`). Not in CSV (not scalars).
BOOTSTRAP_KEYS = (
    "perplexity_ci",
    "cross_entropy_ci",
    "bits_per_char_ci",
    "bits_per_byte_ci",
    "vs_best",
)

#: Keys that records carry beside RECORD_KEYS (and ``error`` for a failed model).
EXTRA_KEYS = (
    "model",
    "vocab_size",
    "yardstick",
    "comparable",
    "comparable_reason",
    "details",
    *BOOTSTRAP_KEYS,
    "error",
)

#: Keys a plugin metric may not take: they hold the record's facts.
RESERVED_KEYS = frozenset(RECORD_KEYS + EXTRA_KEYS) - {m.name for m in BUILTIN_METRICS}


def finite_or_none(value: Any) -> Any:
    """JSON has no infinity: non-finite floats become ``None`` (documented)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def rank_key(record: dict[str, Any]) -> tuple[int, float]:
    """How the table ranks a row (and which row the paired test takes as the best):
    by bits per character (comparable across tokenizers) within tiers: verified (or
    unchecked) rows that pay for every character, then those that do not (their
    ``<unk>`` tokens stand for characters never paid for), then unverified rows,
    then failed ones. An unverified row never sits above a verified one."""
    bpc = record.get("bits_per_char")
    if record.get("error") or not isinstance(bpc, int | float) or math.isnan(bpc):
        return (3, 0.0)
    if record.get("verified") is False:
        return (2, bpc)
    return (1 if record.get("comparable") is False else 0, bpc)

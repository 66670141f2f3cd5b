"""lmeval: train, evaluate and compare language models by perplexity.

The public API: everything a plugin or a script needs is importable from here.
"""

from __future__ import annotations

from .corpus import Corpus, load_corpus, split_text
from .datasets import Dataset, RemoteText
from .errors import LmevalError, UsageError
from .evaluate import Comparison, build_model, compare, evaluate_model, train
from .files import atomic_write, read_text
from .hookspecs import hookimpl
from .metrics import Metric, Scores, TextStats
from .models import LanguageModel, ModelSpec, Param, at_least, in_range, parse_spec, sample_id
from .progress import progress
from .tokenizers import EOS, UNK, CharTokenizer, Tokenizer, Vocabulary, WordTokenizer

__version__ = "0.1.0"

__all__ = [
    "Comparison",
    "Corpus",
    "Dataset",
    "Metric",
    "RemoteText",
    "Scores",
    "TextStats",
    "build_model",
    "compare",
    "evaluate_model",
    "load_corpus",
    "split_text",
    "train",
    "EOS",
    "UNK",
    "CharTokenizer",
    "LanguageModel",
    "LmevalError",
    "ModelSpec",
    "Param",
    "Tokenizer",
    "UsageError",
    "Vocabulary",
    "WordTokenizer",
    "__version__",
    "at_least",
    "atomic_write",
    "hookimpl",
    "in_range",
    "parse_spec",
    "progress",
    "read_text",
    "sample_id",
]

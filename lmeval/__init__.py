"""lmeval: train, evaluate and compare language models by perplexity.

The public API: everything a plugin or a script needs is importable from here.

The core is laid out in layers; a module imports only from layers below its
own, lazy imports inside functions included (``tests/test_layers.py`` parses
every import and holds the code to this list)::

    14  __init__ __main__               the public face
    13  cli                             the command line
    12  cli_bench                       the bench and cache commands
    11  bench                           suites run, records appended
    10  benchtables clikit              summaries of records; what commands share
     9  report testing curves export surprisal
                                    tables; the plugin authors' kit; curves; token
                                    files; the coloured text of inspect
     8  evaluate                        fit, score, verify, records
     7  host                            the plugin host of one call
     6  builtins cache                  lmeval's own registrations; the model cache
     5  saved suite                     .lmz archives, the saved model; bench suites
     4  plugins bootstrap               pluggy manager and registries; intervals
     3  corpus records verify           splits; record keys and ranking; the checks
     2  datasets metrics models         data sets; metrics; the model interface
     1  files tokenizers isolation      atomic writes; vocabularies; child processes
     0  version errors hookspecs progressbars distributed resources
                                    the bottom; torchrun's ranks; peak memory
"""

from __future__ import annotations

from . import bench, cache, suite
from .bench import BenchInterrupted, run_suite
from .benchtables import read_records, summary_table
from .bootstrap import (
    Layout,
    block_sums,
    bootstrap_records,
    line_layout,
    p_value,
    percentile_interval,
    replicate_totals,
    stream_layout,
)
from .corpus import Corpus, TextFile, load_corpus, split_text
from .datasets import Dataset, RemoteText
from .distributed import is_main_process, local_rank, rank, world_size
from .errors import LmevalError, LmevalWarning, PluginWarning, UsageError
from .evaluate import Comparison, Interrupted, build_model, compare, evaluate_model, train
from .export import save_tokens
from .files import atomic_write, format_size, iter_text, parse_size, read_text
from .hookspecs import hookimpl
from .host import load_host
from .metrics import Metric, Scores, TextStats, perplexity
from .models import LanguageModel, ModelSpec, Param, at_least, in_range, parse_spec, sample_id
from .plugins import PluginHost, active_host
from .progressbars import progress, progress_enabled, set_progress
from .resources import release_memory, usable_cores
from .saved import load_model
from .suite import Suite, build_suite, load_suite
from .tokenizers import (
    EOS,
    UNK,
    CharTokenizer,
    TokenChunks,
    Tokenizer,
    Vocabulary,
    WordTokenizer,
)
from .verify import Verification, verify_model
from .version import __version__

__all__ = [
    "bench",
    "cache",
    "suite",
    "BenchInterrupted",
    "Suite",
    "build_suite",
    "load_suite",
    "run_suite",
    "read_records",
    "summary_table",
    "Layout",
    "block_sums",
    "bootstrap_records",
    "line_layout",
    "p_value",
    "percentile_interval",
    "replicate_totals",
    "stream_layout",
    "Comparison",
    "Corpus",
    "Dataset",
    "Metric",
    "PluginHost",
    "PluginWarning",
    "active_host",
    "LmevalWarning",
    "Verification",
    "RemoteText",
    "Scores",
    "TextStats",
    "build_model",
    "compare",
    "evaluate_model",
    "load_corpus",
    "load_host",
    "load_model",
    "split_text",
    "train",
    "EOS",
    "UNK",
    "CharTokenizer",
    "Interrupted",
    "LanguageModel",
    "LmevalError",
    "ModelSpec",
    "Param",
    "TextFile",
    "TokenChunks",
    "Tokenizer",
    "UsageError",
    "Vocabulary",
    "WordTokenizer",
    "__version__",
    "at_least",
    "atomic_write",
    "hookimpl",
    "in_range",
    "is_main_process",
    "local_rank",
    "rank",
    "world_size",
    "parse_spec",
    "perplexity",
    "progress",
    "progress_enabled",
    "read_text",
    "iter_text",
    "parse_size",
    "format_size",
    "save_tokens",
    "sample_id",
    "set_progress",
    "usable_cores",
    "release_memory",
    "verify_model",
]

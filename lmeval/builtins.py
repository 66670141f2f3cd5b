"""lmeval's own registrations: tokenizers, metrics and data sets.

Registered through the same hooks as any plugin, so the registries have one
way in. The built-in *models* live in ``plugins/`` and load as entry points.
"""

from __future__ import annotations

from .datasets import BUILTIN_DATASETS
from .hookspecs import hookimpl
from .metrics import BUILTIN_METRICS
from .saved import Saved
from .tokenizers import CharTokenizer, WordTokenizer


@hookimpl
def register_tokenizers(register):
    register(CharTokenizer)
    register(WordTokenizer)


@hookimpl
def register_metrics(register):
    for metric in BUILTIN_METRICS:
        register(metric)


@hookimpl
def register_datasets(register):
    for dataset in BUILTIN_DATASETS:
        register(dataset)


@hookimpl
def register_models(register):
    register(Saved)

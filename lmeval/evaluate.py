"""Running models on a corpus and turning their scores into result records.

The one place where a model meets data: fit on train, score test, check the
contract, compute every registered metric. A model's failure becomes that
model's ``error`` in its record, never a crash of the whole comparison.
"""

from __future__ import annotations

import math
import platform
import random
import secrets
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Unpack

import numpy as np

from .bootstrap import (
    STREAM_BLOCK_TOKENS,
    Layout,
    bootstrap_records,
    check_bootstrap,
    line_layout,
    method_of,
    stream_layout,
)
from .cache import ModelCache, as_cache, cache_key, key_material, uncacheable_reason
from .corpus import Corpus, DataOptions, load_corpus
from .distributed import is_main_process, rank, world_size
from .errors import LmevalError, LmevalWarning, PluginWarning, UsageError, one_line
from .files import check_writable
from .host import load_host
from .metrics import Scores, TextStats
from .models import LanguageModel, ModelSpec, made_from, parse_spec, resolve_params
from .plugins import PluginHost, active_host, using
from .records import BOOTSTRAP_KEYS, RECORD_KEYS
from .resources import release_memory
from .saved import save_model
from .tokenizers import TokenChunks, Tokenizer, Vocabulary
from .verify import (
    DEFAULT_POSITIONS,
    SPAN,
    ContractViolation,
    as_logprobs,
    read_only,
    verify_model,
)
from .version import __version__

POLICY = (
    "each line is a sequence: its end-of-line token is predicted and counted, its start is "
    "context only (as in KenLM and SRILM); out-of-vocabulary tokens map to <unk>, are scored "
    "like any token and counted as OOVs"
)
STREAM_POLICY = (
    "the text is one sequence without end-of-line tokens (stream mode); the first token is "
    "predicted from an empty context; out-of-vocabulary tokens map to <unk> and count as OOVs"
)


@dataclass(frozen=True)
class ScoredTokens:
    """What one row predicted, kept by ``compare(keep_tokens=True)`` for
    :func:`lmeval.save_tokens`: its ``Scores.logprobs[i]`` is the score of ``ids[i]``."""

    ids: np.ndarray  #: the test ids (int64) the model scored
    vocab: Vocabulary  #: the model's vocabulary (``vocab.itos[id]`` is a token's text)
    #: per token, the order of the longest n-gram used (``model.orders_used``), else None
    orders: np.ndarray | None
    lines: bool  #: line mode (end-of-line tokens) or stream mode

    def line_numbers(self) -> np.ndarray | None:
        """The 0-based line of every token (int64): a line's end-of-line token is on
        that line; in stream mode the newlines before a token count, so a newline token
        is on the line it ends. ``None`` when no token holds a newline (word stream)."""
        if self.lines:
            newline = self.ids == self.vocab.eos_id
        else:
            per_token = np.asarray([t.count("\n") for t in self.vocab.itos], dtype=np.int64)
            if not per_token.any():
                return None
            newline = per_token[self.ids]
        return np.cumsum(newline, dtype=np.int64) - newline


@dataclass
class Comparison:
    """What ``compare`` returns: one record per model and what was measured."""

    results: list[dict[str, Any]]
    meta: dict[str, Any]
    #: Per-model scores (kept for metrics that need every token, not serialised).
    scores: dict[str, Scores] = field(default_factory=dict, repr=False)
    #: The traceback of each failed row's exception, by label (``--debug`` shows them).
    tracebacks: dict[str, str] = field(default_factory=dict, repr=False)
    #: Per-model predicted tokens, with ``compare(keep_tokens=True)`` (not serialised).
    tokens: dict[str, ScoredTokens] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"results": self.results, "meta": self.meta}


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, which the command line turns into one) stopped a comparison.

    ``comparison`` holds the rows that finished, and its meta says which models
    did not run (``meta["interrupted"]``), so that hours of finished work are
    still written. It is a :class:`KeyboardInterrupt`: code that does not look
    for it stops as it would on Ctrl-C.
    """

    def __init__(self, comparison: Comparison) -> None:
        super().__init__("interrupted")
        self.comparison = comparison


def check_scores(logprobs: Any, expected: int) -> np.ndarray:
    """The scores as float64 if they keep the contract, else :class:`ContractViolation`;
    a value above 0 by at most 1e-12 is rounding and becomes 0."""
    scores = as_logprobs(logprobs, expected, "score()", 1e-12)
    if (scores > 0).any():
        return np.minimum(scores, 0.0)
    # a model that keeps the array it returned (a buffer it reuses) may write into
    # it again while it is verified: then it is copied; nobody else's is not
    fresh = scores.base is None and _holders(scores) <= _FRESH_HOLDERS
    if scores is logprobs and not fresh:
        return scores.copy()
    return scores


def _holders(array: np.ndarray) -> int:
    return sys.getrefcount(array)


def _held_as_in_check_scores(logprobs: np.ndarray) -> int:
    scores = logprobs  # an argument and a local, as check_scores holds its scores
    return _holders(scores)


#: What :func:`_holders` counts inside :func:`check_scores` for an array nobody
#: else holds (measured, so that it is this Python's way of counting).
_FRESH_HOLDERS = _held_as_in_check_scores(np.zeros(1))


def compute_metrics(
    scores: Scores, host: PluginHost
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Every registered metric's value; a metric that fails gives ``None`` and an error."""
    values: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    for name, metric in host.metrics.items():
        try:
            value = float(metric.compute(scores))
            values[name] = None if math.isnan(value) else value  # NaN: no value to give
        except Exception as exc:
            values[name] = None
            errors[name] = one_line(exc)
    return values, errors


def make_tokenizer(
    name: str, *, lines: bool = True, min_freq: int = 1, host: PluginHost
) -> Tokenizer:
    cls = host.tokenizers.get(name)
    return cls(lines=lines, min_freq=min_freq)


def build_model(
    spec: ModelSpec | str,
    vocab: Vocabulary,
    seed: int | None = None,
    host: PluginHost | None = None,
) -> LanguageModel:
    """Instantiate a registered model from a spec (typed, validated parameters).

    ``seed`` fills the model's ``seed`` parameter when it has one and the spec
    does not set it, so ``--seed`` reaches every model. ``host`` holds the
    registered models (default: that of the call in progress, as a model that
    builds others from inside a comparison wants; else a new host with the usual
    plugins).
    """
    host = host or active_host() or load_host()
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    cls = host.models.get(spec.name)
    params: dict[str, Any] = dict(spec.params)
    if seed is not None and "seed" not in params and any(p.name == "seed" for p in cls.params):
        params["seed"] = seed
    with using(host):
        return cls(vocab, **params)


def validate_specs(specs: list[ModelSpec], host: PluginHost) -> None:
    """Fail fast (before any training) on unknown models and bad parameters."""
    labels: set[str] = set()
    for spec in specs:
        cls = host.models.get(spec.name)
        resolve_params(cls, dict(spec.params))
        if spec.label in labels:
            raise UsageError(f"two models are labelled {spec.label!r}: give distinct labels")
        labels.add(spec.label)


def default_specs(host: PluginHost) -> list[str]:
    """Every registered model's recommended spec (the default comparison)."""
    return [cls.recommended for _, cls in host.models.items() if cls.recommended]


def prepare_models(
    specs: list[ModelSpec], tokenizer: Tokenizer, *, seed: int = 0, host: PluginHost
) -> list[tuple[ModelSpec, LanguageModel, Tokenizer]]:
    """Build every model, with the tokenizer it scores with, before any is trained.

    A bad parameter, a missing model file, or a saved model that cannot be
    scored under this comparison's policy fails here, so no training is lost
    to a typo in the last ``-m``. (Callers run :func:`validate_specs` earlier
    still, before reading any data; it also refuses duplicate labels.)
    """
    assert tokenizer.vocab is not None, "tokenizer must be fitted"
    prepared = []
    for spec in specs:
        model = build_model(spec, tokenizer.vocab, seed=seed, host=host)
        prepared.append((spec, model, tokenizer_for(model, tokenizer, host)))
    return prepared


def fit_model(
    model: LanguageModel,
    tokenizer: Tokenizer,
    corpus: Corpus,
    seed: int = 0,
    last_reader: Callable[[], None] | None = None,
) -> float:
    """Fit ``model`` on the corpus' training (and validation) text; the seconds it took.

    ``last_reader()`` is called when a model that reads the text in chunks says it
    is done with them (:meth:`TokenChunks.done`): the last such row's cue to drop
    what the tokenizer kept of the text."""
    seed_everything(seed)
    train_ids: np.ndarray | TokenChunks
    if model.fits_from_chunks and tokenizer.reads_in_pieces:  # never the whole text at once
        train_ids = TokenChunks(
            lambda: tokenizer.fitted_ids(corpus) or tokenizer.encode_pieces(corpus.train_pieces()),
            lines=tokenizer.lines,
            on_done=last_reader,
        )
    else:
        train_ids = tokenizer.encode(corpus.train)
    valid_ids = tokenizer.encode(corpus.valid) if corpus.valid else None
    start = time.perf_counter()
    model.fit(train_ids, valid_ids)
    return time.perf_counter() - start


#: ``on_error(label, exc)``: told of every exception that fails a row (tracebacks).
ErrorHook = Callable[[str, BaseException], None]
#: ``on_stage(label, stage)``: told as a row's training, scoring or verifying begins.
StageHook = Callable[[str, str], None]
#: ``on_fitted(label, model)``: told a row's fitted model once the row succeeded.
FittedHook = Callable[[str, LanguageModel], None]


def evaluate_model(
    model: LanguageModel,
    corpus: Corpus,
    tokenizer: Tokenizer,
    *,
    spec: ModelSpec | None = None,
    seed: int = 0,
    host: PluginHost | None = None,
    save_dir: Path | None = None,
    verify_positions: int = DEFAULT_POSITIONS,
    verify_seed: int = 0,
    on_error: ErrorHook | None = None,
    on_stage: StageHook | None = None,
    top1: bool = False,
    cache: ModelCache | None = None,
    arpa_dir: Path | None = None,
    components: dict[str, LanguageModel] | None = None,
    component_error: str | None = None,
    on_fitted: FittedHook | None = None,
    after_fit: Callable[[], None] | None = None,
) -> tuple[dict[str, Any], Scores | None]:
    """Fit ``model``, score the test text and verify the scores: its record and scores.

    With a ``cache`` (:class:`lmeval.cache.ModelCache`) the fitted model is looked
    up there first (then ``fit_seconds`` is the original fit's) and stored after
    it was scored and verified; ``details["cache"]`` says which, with the key.

    ``on_stage(label, stage)`` is told as each stage begins (``"training"``,
    ``"scoring"``, ``"verifying"``), so that a progress display can name it.
    ``top1`` asks a model with a ``top1(ids)`` method for its most probable next
    token at every position (the ``accuracy`` metric), checked against
    ``next_token_logprobs`` at a few positions.

    ``tokenizer`` must use the model's vocabulary (see :func:`prepare_models`).
    A failure of the model (an exception, even ``SystemExit``; a broken
    contract; a failed verification) ends up in ``record["error"]`` and the
    scores are ``None``; only Ctrl-C propagates. ``verify_positions``
    probes (0: no verification, ``verified`` stays ``None``) decide
    ``verified`` and ``verify_error``; ``verify_seed`` places them (see
    :mod:`lmeval.verify`).

    ``components`` are the fitted rows ``model`` is made from (see
    :meth:`LanguageModel.needs`), handed to its ``attach``; ``component_error``
    fails the row instead (one of them failed). ``on_fitted(label, model)`` is
    told the fitted model once its row succeeded: the one loaded from the cache
    on a hit, not ``model``. ``after_fit()`` is called once the model is fitted
    (or loaded), before the test text is scored, and earlier where the model says
    it has read its training chunks for the last time (:meth:`TokenChunks.done`):
    what only reading the training text needed can go then rather than sit under
    the model's later work and the scoring's memory.
    """
    host = host or load_host()
    spec = spec or parse_spec(model.name)
    record: dict[str, Any] = dict.fromkeys(RECORD_KEYS)
    record.update(label=spec.label, spec=spec.text)
    record.update(dict.fromkeys(BOOTSTRAP_KEYS))
    details: dict[str, Any] = {}

    def stage(name: str) -> None:
        if on_stage is not None:
            on_stage(spec.label, name)

    cached = _CacheUse(None, model, tokenizer, corpus, seed)
    try:
        with using(host):
            if component_error is not None:  # a row it is made from failed, or will not do
                raise LmevalError(component_error)
            if components:
                model.attach(components)
            cached = _CacheUse(cache, model, tokenizer, corpus, seed)
            stage("training")
            hit = cached.lookup(host)
            if hit is not None:
                model, record["fit_seconds"] = hit
            else:
                record["fit_seconds"] = fit_model(model, tokenizer, corpus, seed, after_fit)
            if after_fit is not None:
                after_fit()
            release_memory()  # what training made and dropped: not under the scoring
            test_ids = read_only(tokenizer.encode(corpus.test))
            release_memory()
            stage("scoring")
            start = time.perf_counter()
            logprobs = check_scores(model.score(test_ids), len(test_ids))
            record["score_seconds"] = time.perf_counter() - start
            if verify_positions > 0:
                stage("verifying")
                outcome = verify_model(
                    model, test_ids, logprobs, positions=verify_positions, seed=verify_seed
                )
                record["verified"] = outcome.verified
                record["verify_error"] = outcome.error
                details["verify_seconds"] = round(outcome.seconds, 4)
                details["verify_checks"] = {c.name: c.detail for c in outcome.checks}
                if outcome.failed is not None:
                    raise ContractViolation(outcome.error or "verification failed")
            # a model's own facts, asked for here so that one that raises fails its row
            facts = dict(model.details())
            if cached.hit is not None:  # the facts of the fit (a loaded model may not keep
                facts.update(cached.hit.get("details") or {})  # its training history)
            num_params = model.num_params
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a model's own failure (sys.exit too): report it in its row
        record["error"] = one_line(exc)
        record["details"] = {**_details_of(model), **details} or None
        if on_error is not None:
            on_error(spec.label, exc)
        return record, None
    stats = TextStats.of(corpus.test, test_ids, model.vocab.unk_id, tokenizer.lines)
    correct, top1_error = None, None
    if top1 and callable(getattr(model, "top1", None)):
        stage("predicting")
        correct, top1_error = _top1_hits(model, test_ids, verify_seed)
    scores = Scores(logprobs, stats, correct)
    values, metric_errors = compute_metrics(scores, host)
    if top1_error is not None:
        metric_errors["accuracy"] = top1_error
    record.update(values)
    record.update(comparable_units(stats))
    record.update(
        nll=scores.nll,
        tokens=stats.tokens,
        chars=stats.chars,
        bytes=stats.bytes,
        lines=stats.lines,
        oovs=stats.oovs,
        params=num_params,
        model=model.name,
        yardstick=bool(getattr(model, "yardstick", False)),
        vocab_size=len(model.vocab),
        details={**facts, **details},
    )
    if metric_errors:
        record["details"]["metric_errors"] = metric_errors
    if cached.cache is not None:
        record["details"]["cache"] = cached.store(model, spec, tokenizer, record, facts, on_error)
    if save_dir is not None:
        path = saved_path(save_dir, spec.label)
        try:
            save_model(model, path, spec.text, tokenizer.name)
            record["details"]["saved_to"] = str(path)
        except NotImplementedError as exc:
            record["details"]["save_error"] = str(exc)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a full disk, a save() that raises: keep the row
            record["details"]["save_error"] = f"not saved to {path}: {one_line(exc)}"
            if on_error is not None:
                on_error(spec.label, exc)
    if arpa_dir is not None:
        record["details"].update(_export_arpa(model, arpa_dir, spec.label, on_error))
    if on_fitted is not None:
        on_fitted(spec.label, model)
    return record, scores


def _export_arpa(
    model: LanguageModel, arpa_dir: Path, label: str, on_error: ErrorHook | None
) -> dict[str, str]:
    """Write a fitted model that has an ARPA form (a ``write_arpa(path)`` method, as
    the n-gram models have) as ``DIR/LABEL.arpa``: what ``details`` says of it."""
    writer = getattr(model, "write_arpa", None)
    if not callable(writer):
        return {"arpa_error": f"a {model.name!r} model has no ARPA form (n-gram models have)"}
    path = saved_path(arpa_dir, label, ".arpa")
    try:
        writer(path)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # add-k (no back-off model), a full disk: keep the row
        if on_error is not None:
            on_error(label, exc)
        return {"arpa_error": f"not written to {path}: {one_line(exc)}"}
    return {"arpa_saved_to": str(path)}


class _CacheUse:
    """One row's use of the model cache: its key, the lookup, the store."""

    def __init__(
        self,
        cache: ModelCache | None,
        model: LanguageModel,
        tokenizer: Tokenizer,
        corpus: Corpus,
        seed: int,
    ) -> None:
        self.cache = cache
        self.model = model
        self.reason = uncacheable_reason(model) if cache is not None else None
        self.material = None
        self.key = None
        self.hit: dict[str, Any] | None = None
        if cache is not None and self.reason is None:
            self.material = key_material(model, tokenizer, corpus, seed)
            self.key = cache_key(self.material)

    def lookup(self, host: PluginHost) -> tuple[LanguageModel, float | None] | None:
        """The cached fitted model and its original fit seconds, or ``None``.

        Under ``torchrun`` a model that trains across the processes is not looked
        up: rank 0 would load it while the other ranks wait to train with it."""
        if self.cache is None or self.key is None:
            return None
        if world_size() > 1 and getattr(self.model, "distributed", False):
            return None
        start = time.perf_counter()
        found = self.cache.load(self.key, host.models)
        if found is None:
            return None
        model, info = found
        self.hit = {"load_seconds": round(time.perf_counter() - start, 4), **info}
        return model, info.get("fit_seconds")

    def store(
        self,
        model: LanguageModel,
        spec: ModelSpec,
        tokenizer: Tokenizer,
        record: dict[str, Any],
        facts: dict[str, Any],
        on_error: ErrorHook | None,
    ) -> dict[str, Any]:
        """Store a freshly fitted model (not one that came from the cache); what
        ``details["cache"]`` says. A fit cut short by Ctrl-C (``details["interrupted"]``)
        is never stored: the next run must train it whole."""
        if self.reason is not None:
            return {"hit": False, "key": None, "not_cached": self.reason}
        if facts.get("interrupted"):
            return {"hit": False, "key": self.key, "not_cached": "its fit was interrupted"}
        assert self.cache is not None and self.key is not None and self.material is not None
        if self.hit is not None:
            return {"hit": True, "key": self.key, "load_seconds": self.hit["load_seconds"]}
        try:
            self.cache.store(
                self.key,
                model,
                spec=spec.text,
                label=spec.label,
                tokenizer=tokenizer.name,
                material=self.material,
                fit_seconds=record["fit_seconds"],
                details=facts,
            )
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a full disk, a save() that raises: keep the row
            if on_error is not None:
                on_error(spec.label, exc)
            return {"hit": False, "key": self.key, "not_cached": one_line(exc)}
        return {"hit": False, "key": self.key}


def _scored_tokens(
    model: LanguageModel | None, tokenizer: Tokenizer, corpus: Corpus, record: dict[str, Any]
) -> ScoredTokens:
    """A fitted row's test ids and vocabulary, and the n-gram order of each token when
    ``model`` has ``orders_used(ids)``; orders that raise or are not one integer >= 1
    per token are left out (None), and ``record["details"]["orders_error"]`` says why."""
    ids = read_only(tokenizer.encode(corpus.test))
    orders = None
    if callable(orders_used := getattr(model, "orders_used", None)):
        try:
            orders = np.asarray(orders_used(ids))
            if orders.shape != ids.shape or not np.issubdtype(orders.dtype, np.integer):
                raise ContractViolation(
                    f"orders_used() gave {orders.dtype} of shape {orders.shape}, "
                    f"not {len(ids)} integers"
                )
            if len(orders) and orders.min() < 1:
                raise ContractViolation(f"orders_used() gave order {orders.min()}, not >= 1")
            orders = read_only(orders)
        except Exception as exc:  # the row stands; only its orders are missing
            orders = None
            record["details"]["orders_error"] = one_line(exc)
    return ScoredTokens(ids, tokenizer.vocab, orders, tokenizer.lines)


#: Positions at which a model's ``top1`` is checked against its distributions.
TOP1_CHECKS = 32


def _top1_hits(
    model: LanguageModel, ids: np.ndarray, seed: int
) -> tuple[np.ndarray | None, str | None]:
    """Whether each token was the model's top-1 prediction, or why that is not known:
    ``top1`` must give one id per token and agree with the argmax of
    :meth:`~lmeval.LanguageModel.next_token_logprobs` (verified as causal and
    normalised) at a few seeded positions, so that it cannot peek at the answer."""
    try:
        top = np.asarray(model.top1(read_only(ids)))
        if top.shape != ids.shape or not np.issubdtype(top.dtype, np.integer):
            return None, f"top1() returned {top.dtype} of shape {top.shape}, not one id per token"
        rng = np.random.default_rng(seed)
        for at in sorted(rng.choice(min(len(ids), SPAN), size=min(TOP1_CHECKS, len(ids)))):
            logp = as_logprobs(
                model.next_token_logprobs(read_only(ids[:at])), len(model.vocab), "ntl", 1e-9
            )
            if not 0 <= top[at] < len(logp) or logp[top[at]] < logp.max() - model.tolerance:
                return None, f"top1() disagrees with next_token_logprobs at token {at}"
    except Exception as exc:
        return None, f"top1() failed: {one_line(exc)}"
    return top == ids, None


def comparable_units(stats: TextStats) -> dict[str, Any]:
    """Whether a row's bits per character compare with any other model's: only when it
    gives every character a probability. An ``<unk>`` token stands for characters
    (a whole unknown word) the model never pays for, so its bits understate the cost."""
    if not stats.oovs:
        return {"comparable": True, "comparable_reason": None}
    return {
        "comparable": False,
        "comparable_reason": (
            f"{stats.oovs:,} of {stats.tokens:,} predicted tokens are <unk>: the characters "
            "they stand for are never paid for, so its bits per character understate the "
            "cost; rank it only against models of the same vocabulary"
        ),
    }


def _details_of(model: LanguageModel) -> dict[str, Any]:
    """The model's own facts for a failed row (its notes may say why), if it can give them."""
    try:
        return dict(model.details())
    except Exception:
        return {}


def tokenizer_for(model: LanguageModel, tokenizer: Tokenizer, host: PluginHost) -> Tokenizer:
    """The tokenizer whose vocabulary the model uses (a saved model brings its own)."""
    if model.vocab == tokenizer.vocab:
        return tokenizer
    if (model.vocab.eos is not None) != tokenizer.lines:
        mode = "line" if model.vocab.eos is not None else "stream"
        wanted = "without --stream" if mode == "line" else "with --stream"
        raise UsageError(
            f"model {model.name!r} was trained in {mode} mode and predicts other tokens "
            f"than this comparison: run it {wanted}"
        )
    name = getattr(model, "tokenizer", tokenizer.name)
    tok = host.tokenizers.get(name)(lines=tokenizer.lines)
    tok.vocab = model.vocab
    return tok


def saved_path(save_dir: Path, label: str, suffix: str = ".lmz") -> Path:
    """Where ``--save-models DIR`` saves the row ``label``: ``DIR/LABEL.lmz`` (and
    ``--save-arpa DIR``: ``DIR/LABEL.arpa``), with every character that is not a
    letter, digit or ``-_.=`` made ``_``."""
    return save_dir / ("".join(c if c.isalnum() or c in "-_.=" else "_" for c in label) + suffix)


def check_saved_paths(specs: list[ModelSpec], save_dir: Path, suffix: str = ".lmz") -> None:
    """Refuse (before any training) two rows that would be saved to one file, which
    would silently keep only the last; names differing only in case count as one
    (a file system may not tell them apart)."""
    seen: dict[str, str] = {}
    for spec in specs:
        path = saved_path(save_dir, spec.label, suffix)
        if path.exists() or path.is_symlink():
            check_writable(path)  # a folder or a read-only file there: refused now
        if (other := seen.get(path.name.lower())) is not None:
            raise UsageError(
                f"models {other!r} and {spec.label!r} would both be saved as {path}: "
                "label them apart (LABEL=SPEC)"
            )
        seen[path.name.lower()] = spec.label


def _output_folder(
    value: str | Path | None, option: str, specs: list[ModelSpec], suffix: str
) -> Path | None:
    """The folder of ``--save-models`` or ``--save-arpa``, checked before any training."""
    if value is None:
        return None
    folder = Path(value)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option} {folder} is a file, not a folder: give a folder")
    check_saved_paths(specs, folder, suffix)
    return folder


def seed_everything(seed: int) -> None:
    """Seed Python's and numpy's global generators (before every fit)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)


def host_for(host: PluginHost | None, plugins: Iterable[str]) -> PluginHost:
    """The host of a Python call: the given one (``plugins`` added to it), or a new
    one, whose warnings go to :mod:`warnings` (the caller did not load it, so a
    script sees them there)."""
    if host is not None:
        for item in plugins:
            host.load_path_or_module(item, "plugins=")
        return host
    host = load_host(plugins)
    for message in host.warnings:
        warnings.warn(message, PluginWarning, stacklevel=3)
    return host


def compare(
    models: list[str | ModelSpec] | None = None,
    *,
    corpus: Corpus | None = None,
    tokenizer: str = "char",
    lines: bool = True,
    min_freq: int = 1,
    seed: int = 0,
    save_models: str | Path | None = None,
    plugins: list[str] | tuple[str, ...] = (),
    verify: int = DEFAULT_POSITIONS,
    verify_seed: int | None = None,
    host: PluginHost | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_stage: StageHook | None = None,
    top1: bool = False,
    isolate: bool = False,
    keep_tokens: bool = False,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    cache: bool | str | Path | ModelCache | None = None,
    save_arpa: str | Path | None = None,
    **data: Unpack[DataOptions],
) -> Comparison:
    """Fit every model on the training text, score the test text, verify each row.

    ``models`` are specs (``"ngram:order=5"``, ``"kn5=ngram:order=5"``); by
    default every registered model's recommended spec. The data is ``corpus``,
    or what :func:`lmeval.load_corpus` reads from the ``data`` keywords:
    ``text`` (split by ``split``), ``train``/``test`` (``valid`` optional) or
    ``dataset`` (default: ``pydoc-topics``), and ``encoding``.
    ``verify`` is the number of probed positions (0 turns verification off);
    ``verify_seed`` places them, by default a fresh random seed (recorded in the
    meta), so that a model cannot know where it will be probed.
    ``plugins`` (paths or module names) load into this call's own plugin host
    (``host``, from :func:`lmeval.load_host`, to reuse one); a plugin that
    fails to load is a :class:`PluginWarning` and is listed in the meta.
    ``top1`` computes each model's top-1 ``accuracy`` (models with a ``top1``
    method; it costs about one more scoring pass, an n-gram's once per context).
    ``on_result(record)`` is called as each model finishes, ``on_stage(label, stage)``
    as its training, scoring and verifying begin (under ``isolate``: only "running").
    ``isolate`` fits and scores each model in a child process of its own (see
    :mod:`lmeval.isolation`): a crash in native code costs only its row. The
    child loads the same plugins by name (``plugins``, ``--plugin``, the
    environment), so a plugin object registered on ``host`` in Python is not
    there.
    ``keep_tokens`` keeps each successful row's test ids, vocabulary and (from
    a model with ``orders_used``, not under ``isolate``) n-gram orders in
    ``Comparison.tokens``, for :func:`lmeval.save_tokens`.
    ``bootstrap`` replicates (0 = off) of a block bootstrap over the test lines,
    seeded by ``seed``, give each row ``[low, high]`` intervals at ``confidence``
    (``perplexity_ci``, ``cross_entropy_ci``, ``bits_per_char_ci`` and
    ``bits_per_byte_ci``) and ``vs_best``, the paired difference in bits per
    character from the best verified row with its interval and p-value (see
    :mod:`lmeval.bootstrap`).

    ``save_arpa`` (a folder) writes every fitted model that has an ARPA form
    (a ``write_arpa`` method: the n-gram models) as ``FOLDER/LABEL.arpa``,
    which KenLM's ``build_binary`` and ``query`` read; other rows say why not in
    ``details["arpa_error"]``.

    ``cache`` reuses fitted models (``True``: the user cache folder, or a folder,
    or a :class:`lmeval.cache.ModelCache`): a model fitted before on the same
    training text with the same parameters, seed and plugin code is loaded
    instead of fitted; ``details["cache"]`` says so (see :mod:`lmeval.cache`).

    Ctrl-C raises :class:`Interrupted`, which holds the rows that finished.

    Under ``torchrun`` (see :mod:`lmeval.distributed`) only rank 0 compares; a
    rank above 0 fits the models that declare ``distributed = True`` together
    with it and returns a comparison with no rows (``meta["helped_train"]``).
    """
    if verify < 0:
        raise UsageError(f"verify={verify}: give the number of positions to probe (0 = off)")
    check_bootstrap(bootstrap, confidence)
    if verify_seed is None:
        verify_seed = secrets.randbelow(2**32)
    model_cache = as_cache(cache)
    host = host_for(host, plugins)
    given = models or default_specs(host)
    specs = [s if isinstance(s, ModelSpec) else parse_spec(s) for s in given]
    validate_specs(specs, host)  # before reading data: a typo in -m fails at once
    save_dir = _output_folder(save_models, "--save-models", specs, ".lmz")
    arpa_dir = _output_folder(save_arpa, "--save-arpa", specs, ".arpa")
    corpus, tok = _setup(host, corpus, tokenizer, lines, min_freq, **data)
    prepared = prepare_models(specs, tok, seed=seed, host=host)
    if not models:
        prepared = _defaults_that_can_run(prepared, corpus, isolate, host)
    if not is_main_process():
        return _help_train(prepared, corpus, seed, host)
    for folder, option in ((save_dir, "--save-models"), (arpa_dir, "--save-arpa")):
        if folder is not None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LmevalError(f"cannot create {option} folder {folder}: {exc}") from None
    comparison = Comparison(results=[], meta={})

    def remember(label: str, exc: BaseException) -> None:
        text = exc.text if isinstance(exc, _Traceback) else None
        comparison.tracebacks[label] = text or "".join(traceback.format_exception(exc))

    with using(host):  # a model asked what it is made from may look up others
        needs = _needs(prepared, isolate)
    parts = {label for wanted in needs.values() for label in wanted}  # rows others use
    fitted: dict[str, tuple[LanguageModel, Tokenizer]] = {}
    failed: set[str] = set()
    tokenizers = {spec.label: model_tok for spec, _, model_tok in prepared}

    def keep(label: str, model: LanguageModel) -> None:
        fitted[label] = (model, tokenizers[label])

    def forget_fitted_ids() -> None:
        for kept in {id(t): t for t in (tok, *tokenizers.values())}.values():
            kept.forget_fitted_ids()

    in_order = _fit_order(prepared, needs)
    # the ids a tokenizer kept of the training text serve the rows that fit from
    # chunks in this process: once the last of them is fitted, they go
    readers = [
        i
        for i, (_, model, model_tok) in enumerate(in_order)
        if not isolate and model.fits_from_chunks and model_tok.reads_in_pieces
    ]
    try:
        for at, (spec, model, model_tok) in enumerate(in_order):
            component_error, components = _components(spec, model_tok, needs, fitted, failed)
            if isolate:
                job = IsolatedJob(
                    host.extra_sources, spec, corpus, tokenizer, lines, min_freq, seed,
                    save_dir, verify, verify_seed,
                    None if model_cache is None else model_cache.root, arpa_dir,
                )  # fmt: skip
                if on_stage is not None:
                    on_stage(spec.label, "running (isolated)")
                record, scores, stop = evaluate_isolated(job, on_error=remember)
            else:
                record, scores = evaluate_model(
                    model,
                    corpus,
                    model_tok,
                    spec=spec,
                    seed=seed,
                    host=host,
                    save_dir=save_dir,
                    verify_positions=verify,
                    verify_seed=verify_seed,
                    on_error=remember,
                    on_stage=on_stage,
                    top1=top1,
                    cache=model_cache,
                    arpa_dir=arpa_dir,
                    components=components,
                    component_error=component_error,
                    on_fitted=keep if spec.label in parts else None,
                    after_fit=forget_fitted_ids if readers and at == readers[-1] else None,
                )
            if readers and at == readers[-1]:
                forget_fitted_ids()  # also when its fit failed: not under the rows after it
            if record.get("error"):
                failed.add(spec.label)
            comparison.results.append(record)
            if scores is not None:
                comparison.scores[spec.label] = scores
                if keep_tokens:
                    comparison.tokens[spec.label] = _scored_tokens(
                        None if isolate else model, model_tok, corpus, record
                    )
            if on_result is not None:
                on_result(record)
            if isolate and stop:  # interrupted while the child ran: its row is kept
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        comparison.meta = _meta(corpus, tok, seed, comparison.results, host, verify, verify_seed)
        _bootstrap(comparison, corpus, prepared, tok.lines, bootstrap, confidence, seed)
        done = {r["label"] for r in comparison.results}
        comparison.meta["interrupted"] = {
            "not_run": [spec.label for spec, _, _ in prepared if spec.label not in done]
        }
        raise Interrupted(comparison) from None
    forget_fitted_ids()  # every model is fitted (or failed): what was kept for them goes
    order = {spec.label: i for i, (spec, _, _) in enumerate(prepared)}
    comparison.results.sort(key=lambda r: order[r["label"]])  # as asked, whatever the fit order
    comparison.meta = _meta(corpus, tok, seed, comparison.results, host, verify, verify_seed)
    _bootstrap(comparison, corpus, prepared, tok.lines, bootstrap, confidence, seed)
    comparison.meta["isolated"] = isolate
    return comparison


def _defaults_that_can_run(
    prepared: list[tuple[ModelSpec, LanguageModel, Tokenizer]],
    corpus: Corpus,
    isolate: bool,
    host: PluginHost,
) -> list[tuple[ModelSpec, LanguageModel, Tokenizer]]:
    """The default comparison less its rows made from other rows where those cannot
    run: a part is missing (its plugin is not installed), ``isolate`` fits every row in
    a process of its own, or there is no validation text (such a row learns how to
    combine its parts on held-out text, and the parts were trained on all the rest).
    Said in a warning, not an error: nobody asked for those rows."""
    labels = {spec.label for spec, _, _ in prepared}
    left_out: dict[str, str] = {}
    with using(host):
        for spec, model, _ in prepared:
            try:
                made = model.needs(labels - {spec.label})
            except UsageError as exc:
                left_out[spec.label] = one_line(exc)
                continue
            if made and isolate:
                left_out[spec.label] = "--isolate fits every row alone, and it is made from rows"
            elif made and not corpus.valid:
                left_out[spec.label] = "it is made from rows, and there is no validation text"
    for label, why in left_out.items():
        warnings.warn(
            f"the default comparison leaves out {label}: {why}", LmevalWarning, stacklevel=3
        )
    return [item for item in prepared if item[0].label not in left_out]


def _needs(
    prepared: list[tuple[ModelSpec, LanguageModel, Tokenizer]], isolate: bool
) -> dict[str, list[str]]:
    """Which rows each row is made from (a mixture's components), checked: labels of
    this comparison, no row made from itself, no cycle, nothing under ``isolate``."""
    labels = {spec.label for spec, _, _ in prepared}
    needs: dict[str, list[str]] = {}
    for spec, model, _ in prepared:
        wanted = list(model.needs(labels - {spec.label}))
        unknown = [w for w in wanted if w not in labels or w == spec.label]
        if unknown:
            raise UsageError(
                f"model {spec.label!r} is made from a row {unknown[0]!r} that this comparison "
                "does not have (or itself): add it with -m LABEL=SPEC"
            )
        if wanted and isolate:
            raise UsageError(
                f"--isolate fits every row in a process of its own, so {spec.label!r} cannot "
                "use the fitted rows it is made from: drop --isolate, or give its parts as specs"
            )
        if wanted:
            needs[spec.label] = wanted
    for label in needs:
        made_from(needs, label)  # refuses a circle
    return needs


def _fit_order(
    prepared: list[tuple[ModelSpec, LanguageModel, Tokenizer]], needs: dict[str, list[str]]
) -> list[tuple[ModelSpec, LanguageModel, Tokenizer]]:
    """The rows in the order asked, except that a row comes after those it is made from."""
    by_label = {item[0].label: item for item in prepared}
    done: dict[str, tuple[ModelSpec, LanguageModel, Tokenizer]] = {}
    for spec, _, _ in prepared:
        for label in [*made_from(needs, spec.label), spec.label]:
            done.setdefault(label, by_label[label])
    return list(done.values())


def _components(
    spec: ModelSpec,
    model_tok: Tokenizer,
    needs: dict[str, list[str]],
    fitted: dict[str, tuple[LanguageModel, Tokenizer]],
    failed: set[str],
) -> tuple[str | None, dict[str, LanguageModel] | None]:
    """The fitted rows ``spec`` is made from, or why it cannot be: one failed, or one
    predicts other tokens (another tokenizer, vocabulary or line policy)."""
    wanted = needs.get(spec.label)
    if not wanted:
        return None, None
    for label in wanted:
        if label in failed:
            return f"{label!r}, one of the rows it is made from, failed", None
        other_model, other_tok = fitted[label]
        if (other_tok.name, other_tok.lines) != (model_tok.name, model_tok.lines) or (
            other_model.vocab != model_tok.vocab
        ):
            return (
                f"its rows predict different tokens: {label!r} has the {other_tok.name} "
                f"tokenizer ({len(other_model.vocab):,} tokens), this row the "
                f"{model_tok.name} one ({len(model_tok.vocab):,}); mix rows of one tokenizer"
            ), None
    return None, {label: fitted[label][0] for label in wanted}


def _help_train(
    prepared: list[tuple[ModelSpec, LanguageModel, Tokenizer]],
    corpus: Corpus,
    seed: int,
    host: PluginHost,
) -> Comparison:
    """A rank above 0 under ``torchrun``: fit the distributed models with rank 0, in
    its order, and nothing else (rank 0 scores, verifies and writes the results)."""
    trained = []
    with using(host):
        # rank 0's order: a row comes after the rows it is made from
        for spec, model, model_tok in _fit_order(prepared, _needs(prepared, isolate=False)):
            if getattr(model, "distributed", False):
                fit_model(model, model_tok, corpus, seed)
                trained.append(spec.label)
    return Comparison(
        results=[],
        meta={"rank": rank(), "world_size": world_size(), "helped_train": trained},
    )


def _bootstrap(
    comparison: Comparison,
    corpus: Corpus,
    prepared: list[tuple[ModelSpec, LanguageModel, Tokenizer]],
    lines: bool,
    replicates: int,
    confidence: float,
    seed: int,
) -> None:
    """Intervals and ``vs_best`` for every record, ``meta["bootstrap"]`` saying how.

    The blocks of each row come from its tokenizer's ids of the test text (encoded
    once per tokenizer); a row whose blocks cannot be cut keeps ``None``, with why.
    """
    start = time.perf_counter()
    layouts: dict[str, Layout] = {}
    reasons: dict[str, str] = {}
    encoded: dict[int, np.ndarray] = {}
    for spec, _, model_tok in prepared:
        if replicates == 0 or spec.label not in comparison.scores:
            continue
        ids = encoded.get(id(model_tok))
        if ids is None:
            ids = encoded[id(model_tok)] = model_tok.encode(corpus.test)
        try:
            if lines:
                assert model_tok.vocab is not None and model_tok.vocab.eos_id is not None
                layouts[spec.label] = line_layout(corpus.test, ids, model_tok.vocab.eos_id)
            else:
                chars = model_tok.unit == "character"
                layouts[spec.label] = stream_layout(corpus.test, len(ids), tokens_are_chars=chars)
            if len(layouts[spec.label].ends) < 2:
                del layouts[spec.label]
                reasons[spec.label] = (
                    "the test text is one block: there is nothing to resample (give a test "
                    "text of several lines for intervals)"
                )
        except ValueError as exc:
            reasons[spec.label] = one_line(exc)
    unpaired = bootstrap_records(
        comparison.results,
        comparison.scores,
        layouts,
        replicates=replicates,
        confidence=confidence,
        seed=seed,
    )
    meta: dict[str, Any] = {
        "method": method_of(next(iter(layouts.values()))) if layouts else None,
        "replicates": replicates,
        "block_unit": "line" if lines else "tokens",
        "confidence": confidence,
        "seed": seed,
        "interval": "percentile",
        "p_value": "two-sided: 2 * min(share of delta <= 0, share of delta >= 0), "
        "at least 1 / replicates",
    }
    if not lines:
        meta["block_tokens"] = STREAM_BLOCK_TOKENS
    if reasons or unpaired:
        meta["unpaired"] = {**reasons, **unpaired}
    meta["seconds"] = round(time.perf_counter() - start, 4)
    comparison.meta["bootstrap"] = meta


@dataclass(frozen=True)
class IsolatedJob:
    """Everything a child process needs to fit and score one row (all picklable)."""

    plugins: list[str]
    spec: ModelSpec
    corpus: Corpus
    tokenizer: str
    lines: bool
    min_freq: int
    seed: int
    save_dir: Path | None
    verify: int
    verify_seed: int
    cache_root: Path | None = None
    arpa_dir: Path | None = None


def _run_job(job: IsolatedJob) -> tuple[dict[str, Any], Scores | None, dict[str, str]]:
    """The child's side of :func:`evaluate_isolated`: the row, its scores, tracebacks."""
    host = load_host(job.plugins)
    corpus, tok = _setup(host, job.corpus, job.tokenizer, job.lines, job.min_freq)
    [(spec, model, model_tok)] = prepare_models([job.spec], tok, seed=job.seed, host=host)
    tracebacks: dict[str, str] = {}
    record, scores = evaluate_model(
        model,
        corpus,
        model_tok,
        spec=spec,
        seed=job.seed,
        host=host,
        save_dir=job.save_dir,
        verify_positions=job.verify,
        verify_seed=job.verify_seed,
        cache=None if job.cache_root is None else ModelCache(job.cache_root),
        arpa_dir=job.arpa_dir,
        on_error=lambda label, exc: tracebacks.update(
            {label: "".join(traceback.format_exception(exc))}
        ),
    )
    return record, scores, tracebacks


def evaluate_isolated(
    job: IsolatedJob, on_error: ErrorHook | None = None
) -> tuple[dict[str, Any], Scores | None, bool]:
    """:func:`evaluate_model` in a child process: a crash there fails only this row.

    A Ctrl-C is passed to the child; if the child ends by it, :class:`KeyboardInterrupt`
    is raised here, as without isolation. The third value says whether an interrupt
    came while the child ran and it finished anyway: the caller keeps the row, then stops.
    """
    from .isolation import run_in_child

    outcome = run_in_child(_run_job, job)
    if outcome.interrupted:
        raise KeyboardInterrupt
    if outcome.value is not None:
        record, scores, tracebacks = outcome.value
        if on_error is not None:
            for label, text in tracebacks.items():
                on_error(label, _Traceback(text))
        record["details"] = {**(record.get("details") or {}), "isolated": True}
        return record, scores, outcome.signalled
    record = dict.fromkeys(RECORD_KEYS)
    record.update(label=job.spec.label, spec=job.spec.text, error=outcome.error)
    record["details"] = {"isolated": True}
    if on_error is not None and outcome.traceback:
        on_error(job.spec.label, _Traceback(outcome.traceback))
    return record, None, outcome.signalled


class _Traceback(Exception):
    """A traceback that happened in a child process, carried back as its text."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def train(
    spec: str,
    *,
    corpus: Corpus | None = None,
    tokenizer: str = "char",
    lines: bool = True,
    min_freq: int = 1,
    seed: int = 0,
    plugins: list[str] | tuple[str, ...] = (),
    host: PluginHost | None = None,
    **data: Unpack[DataOptions],
) -> tuple[LanguageModel, Tokenizer]:
    """One model fitted on the training text (data as in :func:`compare`), and the
    tokenizer that maps text to its ids."""
    host = host_for(host, plugins)
    parsed = parse_spec(spec)
    validate_specs([parsed], host)
    corpus, tok = _setup(host, corpus, tokenizer, lines, min_freq, **data)
    [(_, model, model_tok)] = prepare_models([parsed], tok, seed=seed, host=host)
    with using(host):
        fit_model(model, model_tok, corpus, seed)
    tok.forget_fitted_ids()  # the caller keeps the tokenizer: not the training text's ids
    return model, model_tok


def _setup(
    host: PluginHost,
    corpus: Corpus | None,
    tokenizer: str,
    lines: bool,
    min_freq: int,
    **data: Any,
) -> tuple[Corpus, Tokenizer]:
    """The corpus (loaded unless given) and a tokenizer fitted on its training text."""
    tok = make_tokenizer(tokenizer, lines=lines, min_freq=min_freq, host=host)
    if corpus is not None and any(v is not None for v in data.values()):
        raise UsageError("give a corpus or the data to read (text, train, dataset...), not both")
    if corpus is None:
        corpus = load_corpus(**data, datasets=host.datasets)
    if tok.reads_in_pieces:  # a training file is read a piece at a time, never whole
        tok.fit_pieces(corpus.train_pieces(), source=corpus)
    else:
        tok.fit(corpus.train)
    release_memory()  # what counting a vocabulary of millions of words made and dropped
    return corpus, tok


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _meta(
    corpus: Corpus,
    tok: Tokenizer,
    seed: int,
    results: list[dict[str, Any]],
    host: PluginHost,
    verify_positions: int,
    verify_seed: int,
) -> dict[str, Any]:
    devices = sorted({str(r["details"].get("device", "cpu")) for r in results if r.get("details")})
    return {
        "lmeval_version": __version__,
        "versions": {
            "lmeval": __version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": _version("torch"),
        },
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "dataset": corpus.name,
        "sources": corpus.sources,
        "checksums": corpus.checksums(),
        "split_lines": corpus.line_counts(),
        "tokenizer": tok.name,
        "unit": tok.unit,
        "lines_mode": tok.lines,
        "vocab_size": len(tok.vocab),
        "policy": POLICY if tok.lines else STREAM_POLICY,
        "verify": {"positions": verify_positions, "span": SPAN, "seed": verify_seed},
        "metrics": {
            name: {
                "description": m.description,
                "fmt": m.fmt,
                "higher_is_better": m.higher_is_better,
                "shown": getattr(m, "shown", True),
            }
            for name, m in host.metrics.items()
        },
        "plugin_warnings": list(host.warnings),
        "device": ", ".join(devices) or "cpu",
        "platform": platform.platform(),
    }

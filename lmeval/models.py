"""The language-model interface and model specs.

A model answers one question: how probable is each token of a sequence given
the tokens before it. Everything else (training, saving, generating) serves
that one call, :meth:`LanguageModel.score`.

A *spec* names a registered model and its parameters, as a user types it::

    ngram                       the model's defaults
    ngram:order=5,smoothing=mkn typed by the model's declared parameters
    kn5=ngram:order=5           with a label that names the row
"""

from __future__ import annotations

import difflib
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .errors import LmevalError, UsageError
from .tokenizers import Vocabulary


@dataclass(frozen=True)
class Param:
    """One declared model parameter: how a spec value is typed and checked.

    ``type`` is ``int``, ``float``, ``str`` or ``bool``; ``choices`` limits a
    string; ``check`` returns an error message for a bad value, or ``None``.
    ``parse`` (optional) turns the spec text into the value instead of ``type``.
    ``required`` parameters must be given (a file path, say): a spec without
    one is refused before any model is trained. ``path``: the value names a
    file the model reads (an ARPA file, a saved model), so a benchmark suite
    resolves it relative to the suite file, and the file's content, not only
    its name, tells runs and cached models apart. Floats must be finite.
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], str | None] | None = None
    parse: Callable[[str], Any] | None = None
    required: bool = False
    path: bool = False

    def convert(self, raw: Any) -> Any:
        """The typed, checked value of ``raw`` (a string from a spec, or a Python value)."""
        value = raw
        if self.parse is not None and not isinstance(raw, str):
            raw = str(raw)  # a parsed parameter given from Python, e.g. budget=60
        if isinstance(raw, str):
            try:
                if self.parse is not None:
                    value = self.parse(raw)
                elif self.type is bool:
                    value = _parse_bool(raw)
                else:
                    value = self.type(raw)
            except ValueError as exc:
                custom = self.parse is not None or self.type is bool
                detail = str(exc) if custom else f"expected {self.type.__name__}"
                raise UsageError(f"parameter {self.name}={raw!r}: {detail}") from None
        elif self.type is float and isinstance(raw, int) and not isinstance(raw, bool):
            value = float(raw)
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"parameter {self.name}={raw!r}: must be a finite number")
        if self.choices is not None and value not in self.choices:
            raise UsageError(
                f"parameter {self.name}={raw!r}: choose one of {', '.join(self.choices)}"
            )
        if self.check is not None and (problem := self.check(value)) is not None:
            raise UsageError(f"parameter {self.name}={raw!r}: {problem}")
        return value


def _parse_bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def at_least(minimum: float) -> Callable[[Any], str | None]:
    """A ``Param.check`` for a lower bound."""
    return lambda v: None if v >= minimum else f"must be at least {minimum}"


def in_range(low: float, high: float) -> Callable[[Any], str | None]:
    """A ``Param.check`` for ``low <= v <= high``."""
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}"


class LanguageModel(ABC):
    """The interface every model implements.

    Subclasses declare ``name``, ``description`` and ``params`` and implement
    :meth:`fit` and :meth:`score`. The rest is optional.

    Contract of :meth:`score` (``lmeval compare`` verifies it for every row, see
    :mod:`lmeval.verify`; ``lmeval check`` more thoroughly): for an
    int array ``ids`` it returns ``len(ids)`` float64 natural-log probabilities,
    ``out[i] = log p(ids[i] | ids[:i])``, never NaN, never above 0, ``-inf``
    only for an event the model gives probability zero. In line mode
    ``vocab.eos_id`` ends every line; what comes before a line's first token is
    the model's choice (the n-gram model restarts at a sentence start, an RNN
    may carry its state), but it may only look at ``ids[:i]``, and the
    probabilities of all next tokens after ``ids[:i]`` sum to 1.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    #: The spec ``lmeval compare`` uses for this model when no ``-m`` is given
    #: (``None`` leaves the model out of the default comparison).
    recommended: ClassVar[str | None] = None
    #: A baseline to read the other rows against (the table labels it "yardstick"
    #: and dims it; the record's ``yardstick`` is true). Nothing is computed from it.
    yardstick: ClassVar[bool] = False
    #: Absolute tolerance, in nats, between one log-probability computed two ways
    #: (from a prefix, from :meth:`next_token_logprobs`): 1e-9 suits float64
    #: arithmetic; float32 kernels (an RNN) need more. Verification uses it.
    tolerance: ClassVar[float] = 1e-9
    #: Whether :meth:`fit` trains together with the other processes when lmeval is
    #: started by ``torchrun`` (see :mod:`lmeval.distributed`): on ranks above 0
    #: ``compare`` then builds and fits only such models, in the same order as
    #: rank 0, and scores nothing; their ``fit`` must agree with rank 0 on when to stop.
    distributed: ClassVar[bool] = False
    #: Whether what :meth:`fit` produces depends on the seed. A model that draws no
    #: random numbers (counts, a formula) says ``False``: the model cache then keeps
    #: one fit for every seed of a suite instead of one per seed.
    seeded: ClassVar[bool] = True
    #: Whether the model cache may keep this model once fitted (it must also have
    #: ``save`` and ``load``). ``False`` for a model whose fit reads something the
    #: cache's key does not cover, such as a file named by a parameter.
    cacheable: ClassVar[bool] = True
    #: Whether :meth:`fit` takes its training ids as a :class:`TokenChunks` (chunks
    #: of whole lines, made again chunk by chunk each time they are iterated) when
    #: the tokenizer can give them so, instead of one array: a model that counts
    #: (an n-gram) then trains on a text many times the process's memory.
    #: ``np.asarray(chunks)`` is the array, for what needs it whole. A subclass
    #: inherits it: one whose own ``fit`` needs the array says ``False``.
    fits_from_chunks: ClassVar[bool] = False

    def __init__(self, vocab: Vocabulary, **params: Any) -> None:
        self.vocab = vocab
        self.config: dict[str, Any] = resolve_params(type(self), params)

    @abstractmethod
    def fit(self, train_ids: np.ndarray, valid_ids: np.ndarray | None = None) -> None:
        """Estimate the model from training ids (validation ids for early stopping etc.);
        a :class:`TokenChunks` instead of the training array where
        :attr:`fits_from_chunks` asks for it."""

    @abstractmethod
    def score(self, ids: np.ndarray) -> np.ndarray:
        """``log p(ids[i] | ids[:i])`` for every ``i``, float64 natural logs."""

    def next_token_logprobs(self, context_ids: np.ndarray) -> np.ndarray:
        """Log-probabilities of every vocabulary id after ``context_ids`` (sums to 1 in p)."""
        raise NotImplementedError(f"model {self.name!r} has no next-token distribution")

    def needs(self, labels: set[str]) -> list[str]:
        """Of ``labels`` (the other rows of the comparison), those this model is made
        from: a mixture of rows names them. ``compare`` fits those rows first and
        hands them, fitted, to :meth:`attach` before this model's :meth:`fit`; it
        fails this row when one of them failed. Default: none."""
        return []

    def attach(self, rows: dict[str, LanguageModel]) -> None:
        """Receive the fitted models of the rows :meth:`needs` named, by label."""
        if rows:
            raise NotImplementedError(f"model {self.name!r} is made from no other rows")

    def generate(
        self, prefix_ids: np.ndarray, n: int, temperature: float = 1.0, seed: int = 0
    ) -> np.ndarray:
        """``n`` sampled ids following ``prefix_ids`` (temperature 0 is greedy).

        The default samples from :meth:`next_token_logprobs` one token at a time,
        handing it a read-only view of one growing buffer, so that the cost per
        token is the model's own (a model that reads only the last few ids makes
        ``n`` tokens cost O(n), not O(n^2)).
        """
        rng = np.random.default_rng(seed)
        prefix = np.asarray(prefix_ids, dtype=np.int64).reshape(-1)
        context = np.empty(len(prefix) + n, dtype=np.int64)
        context[: len(prefix)] = prefix
        for i in range(len(prefix), len(context)):
            view = context[:i]
            view.flags.writeable = False
            context[i] = sample_id(self.next_token_logprobs(view), temperature, rng)
        return context[len(prefix) :].copy()

    def save(self, path: Path) -> None:
        """Write the fitted model to the one file ``path`` (which :meth:`load` reads).

        ``path`` may have no suffix: write through a handle
        (``lmeval.atomic_write(path, "wb")``), since ``np.savez(name)`` would
        append ``.npz`` and write another file. Store the vocabulary and config
        too: :meth:`load` gets only the path.
        """
        raise NotImplementedError(f"model {self.name!r} cannot be saved")

    @classmethod
    def load(cls, path: Path) -> LanguageModel:
        """Read a model written by :meth:`save`; never unpickles arbitrary objects."""
        raise NotImplementedError(f"model {cls.name!r} cannot be loaded")

    @property
    def num_params(self) -> int | None:
        """Number of estimated parameters (n-grams stored, weights), if meaningful."""
        return None

    def details(self) -> dict[str, Any]:
        """Extra JSON-serialisable facts for the result record (history, notes, device)."""
        return {}


class MadeFromCircle(UsageError):
    """Models made from each other in a circle; ``cycle`` names them, the first again last."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(f"models made from each other in a circle: {' -> '.join(cycle)}")


def made_from(needs: Mapping[str, Sequence[str]], label: str) -> list[str]:
    """Every model ``label`` is made from, directly or through others (``needs``: each
    label's direct parts, as :meth:`LanguageModel.needs` names them), each after its
    own parts: the order to fit them in. Raises :class:`MadeFromCircle` on a circle."""
    order: list[str] = []

    def visit(current: str, path: tuple[str, ...]) -> None:
        if current in path:
            raise MadeFromCircle([*path[path.index(current) :], current])
        if current in order:  # finished: had it led back to the path, that was a circle
            return
        for other in needs.get(current, ()):
            visit(other, (*path, current))
        order.append(current)

    visit(label, ())
    return order[:-1]  # the last is ``label`` itself


def sample_id(logp: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """One id drawn from ``softmax(logp / temperature)``; temperature 0 takes the argmax.

    A distribution with nothing to draw (every probability 0, or NaN) is a
    one-line :class:`LmevalError`, not numpy's ``ValueError``.
    """
    logp = np.asarray(logp, dtype=np.float64)
    if logp.ndim != 1 or not len(logp) or np.isnan(logp).any() or not np.isfinite(logp.max()):
        what = "NaN" if logp.size and np.isnan(logp).any() else "probability 0 to every token"
        raise LmevalError(f"cannot sample the next token: the model gives {what}")
    if temperature <= 0:
        return int(np.argmax(logp))
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        z = np.exp((logp - np.max(logp)) / temperature)  # the argmax gets exp(0) = 1
    z[~np.isfinite(z)] = 0.0
    return int(rng.choice(len(z), p=z / z.sum()))


def resolve_params(cls: type[LanguageModel], given: dict[str, Any]) -> dict[str, Any]:
    """The full, typed parameter dict of ``cls``: defaults updated by ``given``."""
    declared = {p.name: p for p in cls.params}
    unknown = [k for k in given if k not in declared]
    if unknown:
        key = unknown[0]
        hint = difflib.get_close_matches(key, list(declared), n=1)
        known = ", ".join(declared) or "none"
        extra = f" (did you mean {hint[0]!r}?)" if hint else f"; its parameters: {known}"
        raise UsageError(f"model {cls.name!r} has no parameter {key!r}{extra}")
    missing = [p.name for p in cls.params if p.required and not str(given.get(p.name, ""))]
    if missing:
        raise UsageError(f"model {cls.name!r} needs {missing[0]}=...: {declared[missing[0]].help}")
    return {
        name: (p.convert(given[name]) if name in given else p.default)
        for name, p in declared.items()
    }


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: registered name, raw parameter strings, row label."""

    name: str
    params: dict[str, str] = field(default_factory=dict)
    label: str = ""

    @property
    def text(self) -> str:
        """The canonical spec string, without the label."""
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.params.items())

    def __str__(self) -> str:
        return self.text


_LABEL = re.compile(r"^([A-Za-z0-9_.\-]+)=(?=[A-Za-z_][\w\-]*(?::|$))")


def parse_spec(text: str) -> ModelSpec:
    """Parse ``[label=]name[:key=value,...]``.

    The label is optional: ``kn5=ngram:order=5``. Without one the row is labelled
    with the spec itself.
    """
    raw = text.strip()
    label = ""
    if (m := _LABEL.match(raw)) is not None:
        label, raw = m.group(1), raw[m.end() :]
    name, colon, rest = raw.partition(":")
    name = name.strip()
    if not name or not re.fullmatch(r"[A-Za-z_][\w\-]*", name):
        raise UsageError(f"bad model spec {text!r}: expected NAME or NAME:key=value,...")
    params: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))) if rest else []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"bad model spec {text!r}: {item!r} is not key=value")
        if key.strip() in params:
            raise UsageError(f"bad model spec {text!r}: {key.strip()} is given twice")
        params[key.strip()] = value.strip()
    if colon and not params:
        raise UsageError(f"bad model spec {text!r}: nothing after ':'")
    spec = ModelSpec(name, params, "")
    return ModelSpec(name, params, label or spec.text)

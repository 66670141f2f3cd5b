"""The plugin authors' kit: does a model keep the contract of ``LanguageModel``?

:func:`check_model` fits a model on a small text and runs every check lmeval
knows, each by name, each through the public API only: the three that
``lmeval compare`` runs on every row (causality, normalisation, consistency;
:mod:`lmeval.verify`) at many more positions and at contexts the model never
saw, and the rest of the contract (the shape and type of ``score``, empty and
one-token inputs, ``-inf`` only for events of probability zero, the same
numbers under the same seed, a save/load round trip, bad parameter values
refused). In a plugin's tests, one line::

    from lmeval.testing import assert_model_ok

    def test_my_model_keeps_the_contract():
        assert_model_ok(MyModel, params={"k": 0.5})

``lmeval check SPEC`` prints the same report as a table.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .corpus import Corpus, load_corpus, split_text
from .errors import UsageError, one_line
from .evaluate import check_scores, host_for, make_tokenizer, seed_everything, tokenizer_for
from .models import LanguageModel, ModelSpec, parse_spec
from .plugins import PluginHost, Registry, using
from .saved import load_model, save_model
from .tokenizers import Tokenizer
from .verify import (
    FAIL,
    NOT_APPLICABLE,
    PASS,
    SKIP,
    Check,
    ContractViolation,
    check_causality,
    check_consistency,
    check_normalisation,
    probe_positions,
    read_only,
    tolerance,
)

#: Lines of the built-in data set the kit fits on when no text is given.
DEFAULT_LINES = 1200
#: How the kit splits its text: the test part is longer than verify.SPAN tokens, so
#: the probe beyond the cheap span is checked too.
KIT_SPLIT = (0.7, 0.1, 0.2)


@dataclass(frozen=True)
class Report:
    """The named checks of one model; ``passed`` when none failed (a check that could
    not run is ``skipped``, listed but not a failure: assert on it to rule it out)."""

    model: str
    checks: tuple[Check, ...]

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def skipped(self) -> list[Check]:
        return [c for c in self.checks if c.status == SKIP]

    @property
    def passed(self) -> bool:
        return not self.failures

    def __getitem__(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "passed": self.passed,
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks
            ],
        }

    def __str__(self) -> str:
        width = max(len(c.name) for c in self.checks)
        lines = [f"{self.model}: {'passed' if self.passed else 'FAILED'}"]
        lines += [f"  {c.status:4}  {c.name:{width}}  {c.detail}" for c in self.checks]
        return "\n".join(lines)


def check_model(
    model: str | type[LanguageModel],
    text: str | Path | None = None,
    *,
    params: dict[str, Any] | None = None,
    tokenizer: str = "char",
    lines: bool = True,
    positions: int = 32,
    seed: int = 0,
    plugins: list[str] | tuple[str, ...] = (),
    host: PluginHost | None = None,
) -> Report:
    """Fit ``model`` on ``text`` and run every contract check on its held-out part.

    ``model`` is a spec (``"ngram:order=3"``) or a :class:`LanguageModel`
    subclass (with ``params``); ``text`` a file, or by default the first
    :data:`DEFAULT_LINES` lines of the built-in data set, split 70/10/20 (a test
    text of about 5,000 characters, longer than the span of the cheap probes).
    ``positions`` is the number of probes per check. Nothing is raised for a
    broken model: every problem is a failed check in the report.
    """
    host = host_for(host, plugins)
    if isinstance(model, str):
        spec = parse_spec(model)
        if params:
            raise UsageError("give the parameters in the spec, not as params=")
        cls = host.models.get(spec.name)
    elif isinstance(model, type) and issubclass(model, LanguageModel):
        cls = model
        spec = ModelSpec(cls.name, {k: str(v) for k, v in (params or {}).items()}, cls.name)
    else:
        raise UsageError(f"check_model needs a spec or a LanguageModel subclass, not {model!r}")
    corpus = _corpus(text, host)
    tok = make_tokenizer(tokenizer, lines=lines, host=host)
    tok.fit(corpus.train)
    kit = _Kit(cls, spec, params or {}, corpus, tok, host, positions, seed)
    with using(host):
        return Report(spec.label, tuple(kit.run()))


def assert_model_ok(model: str | type[LanguageModel], **kwargs: Any) -> Report:
    """:func:`check_model`, raising ``AssertionError`` with the report if a check failed."""
    report = check_model(model, **kwargs)
    if not report.passed:
        raise AssertionError(f"the model breaks the contract:\n{report}")
    return report


def _corpus(text: str | Path | None, host: PluginHost) -> Corpus:
    if text is not None:
        return load_corpus(text=text, split=KIT_SPLIT)
    full = load_corpus(datasets=host.datasets)
    head = "".join((full.train.splitlines(keepends=True))[:DEFAULT_LINES])
    return split_text(head, KIT_SPLIT, name=f"{full.name} (first {DEFAULT_LINES} lines)")


class _Kit:
    """One model under test: how to make it, its data, and the checks in order."""

    def __init__(
        self,
        cls: type[LanguageModel],
        spec: ModelSpec,
        params: dict[str, Any],
        corpus: Corpus,
        tok: Tokenizer,
        host: PluginHost,
        positions: int,
        seed: int,
    ) -> None:
        self.cls, self.spec, self.params = cls, spec, params
        self.corpus, self.tok, self.host = corpus, tok, host
        self.positions, self.seed = positions, seed
        self.train_ids = tok.encode(corpus.train)
        self.valid_ids = tok.encode(corpus.valid) if corpus.valid else None
        self.ids = read_only(tok.encode(corpus.test))

    def make(self) -> LanguageModel:
        """A new, unfitted model; ``seed`` reaches it as ``compare --seed`` does."""
        assert self.tok.vocab is not None
        params: dict[str, Any] = {**self.spec.params, **self.params}
        if "seed" not in params and any(p.name == "seed" for p in self.cls.params):
            params["seed"] = self.seed
        return self.cls(self.tok.vocab, **params)

    def fitted(self) -> LanguageModel:
        """A model fitted as compare fits it (the global generators seeded first), and
        scoring with its own vocabulary (a saved model brings one)."""
        seed_everything(self.seed)
        model = self.make()
        model.fit(self.train_ids, self.valid_ids)
        if model.vocab != self.tok.vocab:
            self.tok = tokenizer_for(model, self.tok, self.host)
            self.ids = read_only(self.tok.encode(self.corpus.test))
        return model

    def run(self) -> list[Check]:
        checks: list[Check] = [self.check_bad_params()]
        try:
            model = self.fitted()
        except Exception as exc:
            return [*checks, Check("fit", FAIL, f"raised {one_line(exc)}")]
        checks.append(Check("fit", PASS, f"{len(self.train_ids):,} training tokens"))
        shape = self.check_shape(model)
        checks.append(shape)
        if not shape.passed:
            return checks
        full = np.asarray(model.score(self.ids), dtype=np.float64)
        ids, count = self.ids, self.positions
        probes = sorted(
            set(probe_positions(len(ids), count, self.seed)) | set(self.after_end_of_line())
        )
        prefixes = [i + 1 for i in probes]
        unseen = self.unseen_context(model)
        checks += [
            self.check_values(full),
            check_causality(model, ids, prefixes, full),
            check_causality(model, ids, prefixes, full, change_future=True, seed=self.seed),
            check_normalisation(model, ids, probes),
            _renamed(check_normalisation(model, unseen, range(len(unseen))), "unseen contexts"),
            check_normalisation(model, ids, probes[:2], use_score=True),
            check_consistency(model, ids, probes, full),
            _renamed(check_consistency(model, unseen, range(len(unseen))), "unseen contexts"),
            self.check_infinities(model, full),
            self.check_short_inputs(model, full),
            self.check_details(model),
            self.check_determinism(full),
            self.check_round_trip(model, full),
        ]
        return checks

    # -- the checks beyond lmeval.verify -------------------------------------

    def after_end_of_line(self) -> list[int]:
        """Up to 4 positions right after an end-of-line token (a new line's first token)."""
        eos = self.tok.vocab.eos_id if self.tok.vocab is not None else None
        if eos is None:
            return []
        ends = np.flatnonzero(self.ids[:-1] == eos) + 1
        return [int(i) for i in ends[:4]]

    def unseen_context(self, model: LanguageModel) -> np.ndarray:
        """A random sequence of ids: contexts the model never saw in training."""
        rng = np.random.default_rng(self.seed + 1)
        return rng.integers(0, len(model.vocab), size=12).astype(np.int64)

    def check_bad_params(self) -> Check:
        """Every declared parameter refuses a value of the wrong kind (UsageError)."""

        def refused(name: str, value: str) -> str | None:
            try:
                self.cls(self.tok.vocab, **{**self.spec.params, **self.params, name: value})
            except UsageError:
                return None
            except Exception as exc:
                return f"{name}={value!r} raised {one_line(exc)}, not a UsageError"
            return f"{name}={value!r} was accepted"

        problems = []
        tried = 0
        for param in self.cls.params:
            bad = {int: "1.5x", float: "nan", bool: "maybe"}.get(param.type)
            if param.choices:
                bad = "no-such-choice"
            if bad is None:
                continue
            tried += 1
            if (problem := refused(param.name, bad)) is not None:
                problems.append(problem)
        tried += 1
        if (problem := refused("no_such_parameter", "1")) is not None:
            problems.append(problem)
        if problems:
            return Check("bad parameters refused", FAIL, "; ".join(problems))
        return Check("bad parameters refused", PASS, f"{tried} bad values refused")

    def check_shape(self, model: LanguageModel) -> Check:
        name = "score shape and type"
        try:
            out = model.score(self.ids)
        except Exception as exc:
            return Check(name, FAIL, f"score raised {one_line(exc)}")
        arr = np.asarray(out)
        if arr.ndim != 1 or len(arr) != len(self.ids):
            return Check(name, FAIL, f"shape {arr.shape}, expected ({len(self.ids)},)")
        if arr.dtype != np.float64:
            return Check(name, FAIL, f"dtype {arr.dtype}, expected float64")
        return Check(name, PASS, f"({len(self.ids)},) float64")

    def check_values(self, full: np.ndarray) -> Check:
        name = "no NaN, never above 0"
        try:  # compare's own test (1e-12 above 0 is rounding)
            check_scores(full, len(full))
        except ContractViolation as exc:
            return Check(name, FAIL, str(exc))
        return Check(name, PASS, f"{len(full):,} values")

    def check_infinities(self, model: LanguageModel, full: np.ndarray) -> Check:
        """``-inf`` in ``score`` only where ``next_token_logprobs`` gives zero too."""
        name = "-inf only for probability zero"
        where = np.flatnonzero(np.isneginf(full))
        if not len(where):
            return Check(name, PASS, "no -inf scores")
        try:
            for i in where[: self.positions]:
                logp = np.asarray(model.next_token_logprobs(self.ids[:i]), dtype=np.float64)
                if not math.isinf(logp[self.ids[i]]):
                    return Check(
                        name,
                        FAIL,
                        f"score is -inf at token {i}, next_token_logprobs gives "
                        f"{logp[self.ids[i]]:.4g}",
                    )
        except NotImplementedError:
            return Check(name, SKIP, f"{len(where)} -inf scores and no next_token_logprobs")
        except Exception as exc:
            return Check(name, FAIL, f"next_token_logprobs raised {one_line(exc)}")
        return Check(name, PASS, f"{len(where)} -inf scores, all of probability zero")

    def check_short_inputs(self, model: LanguageModel, full: np.ndarray) -> Check:
        name = "empty and one-token inputs"
        try:
            empty = np.asarray(model.score(np.zeros(0, dtype=np.int64)))
            one = np.asarray(model.score(self.ids[:1]), dtype=np.float64)
        except Exception as exc:
            return Check(name, FAIL, f"score raised {one_line(exc)}")
        if empty.shape != (0,):
            return Check(name, FAIL, f"score of no tokens has shape {empty.shape}, expected (0,)")
        if one.shape != (1,) or not abs(one[0] - full[0]) <= tolerance(model):
            return Check(name, FAIL, f"score of one token is {one}, expected [{full[0]:.6g}]")
        return Check(name, PASS, "() and (1,) as expected")

    def check_details(self, model: LanguageModel) -> Check:
        name = "details() is JSON"
        try:
            json.dumps(model.details())
            model.num_params  # noqa: B018 - it must not raise
        except Exception as exc:
            return Check(name, FAIL, one_line(exc))
        return Check(name, PASS, f"keys: {', '.join(model.details()) or 'none'}")

    def check_determinism(self, full: np.ndarray) -> Check:
        """A second model, fitted with the same seed on the same text, scores the same."""
        name = "same seed, same scores"
        try:
            again = np.asarray(self.fitted().score(self.ids), dtype=np.float64)
        except Exception as exc:
            return Check(name, FAIL, f"the second fit raised {one_line(exc)}")
        return _same(name, full, again, 1e-9, "the second fit")

    def check_round_trip(self, model: LanguageModel, full: np.ndarray) -> Check:
        name = "save/load round trip"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.lmz"
            try:
                save_model(model, path, self.spec.text, self.tok.name)
            except NotImplementedError:
                return Check(name, NOT_APPLICABLE, "the model has no save()")
            except Exception as exc:
                return Check(name, FAIL, f"save raised {one_line(exc)}")
            try:
                loaded, _ = load_model(path, self.models_with(self.cls))
                again = np.asarray(loaded.score(self.ids), dtype=np.float64)
            except Exception as exc:
                return Check(name, FAIL, f"load raised {one_line(exc)}")
        return _same(name, full, again, 0.0, "the loaded model")

    def models_with(self, cls: type[LanguageModel]) -> Registry[type[LanguageModel]]:
        """The host's models and ``cls`` (a class under test need not be registered);
        a new registry, so the caller's host is left as it was."""
        models: Registry[type[LanguageModel]] = Registry("model")
        for name, item in self.host.models.items():
            models.add(name, item, self.host.models.plugin_of[name])
        if cls.name not in models:
            models.add(cls.name, cls, "lmeval.testing")
        return models


def _same(name: str, a: np.ndarray, b: np.ndarray, tol: float, what: str) -> Check:
    with np.errstate(invalid="ignore"):  # inf - inf
        differ = np.flatnonzero(~((a == b) | (np.abs(a - b) <= tol)))
    if len(differ):
        i = int(differ[0])
        return Check(name, FAIL, f"{what} gives log p {b[i]:.10g} at token {i}, not {a[i]:.10g}")
    return Check(name, PASS, f"identical on {len(a):,} tokens" if tol == 0 else f"within {tol:g}")


def _renamed(check: Check, where: str) -> Check:
    return Check(f"{check.name}, {where}", check.status, check.detail)

"""The ``mix`` model: linear interpolation of other models, weights by EM."""

from __future__ import annotations

import json
import math
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

import lmeval

#: The share of the training ids, from their start, a mixture of specs keeps for its
#: weights when the comparison has no validation text (its components train on the rest).
CARVED = 0.1


def _items(text: str) -> str:
    items = [item.strip() for item in text.split("+")]
    if not items or any(not item for item in items):
        raise ValueError("give the models mixed joined by +: of=kn7+lstm (labels or specs)")
    if len(set(items)) != len(items):
        raise ValueError("a model is named twice in of=: name each once")
    return "+".join(items)


def _weights(text: str) -> str:
    if not text.strip():
        return ""
    try:
        values = [float(item) for item in text.split("+")]
    except ValueError:
        raise ValueError("give weights as numbers joined by +: weights=0.3+0.7") from None
    if any(not math.isfinite(v) or v < 0 for v in values) or not sum(values) > 0:
        raise ValueError("weights must be finite, at least 0, and not all 0")
    # positional, never 1e+20: the exponent's + is the separator
    return "+".join(np.format_float_positional(v, trim="-") for v in values)


def logsumexp_rows(logs: np.ndarray, log_weights: np.ndarray) -> np.ndarray:
    """``log sum_k exp(log_weights[k] + logs[k, t])`` for every column ``t``, stably
    (the largest term factored out; a column of only -inf stays -inf)."""
    terms = logs + log_weights[:, None]
    top = terms.max(axis=0)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.exp(terms - safe).sum(axis=0))


def em_weights(
    logs: np.ndarray, iterations: int = 100, stop: float = 1e-7
) -> tuple[np.ndarray, int, list[float]]:
    """Mixture weights maximising the mean log-likelihood of ``logs`` (models x
    tokens, natural logs): Expectation-Maximisation from equal weights, each step
    the mean posterior responsibility of each model. Stops when a step gains less
    than ``stop`` nats per token, or after ``iterations`` steps. Returns the
    weights, the steps taken and the mean log-likelihood after each.

    EM climbs from equal weights and may stop short of a corner (all weight on one
    model) when that corner is the optimum; the result is then that corner, so the
    mixture is never worse on ``logs`` than its best single model."""
    k = len(logs)
    weights = np.full(k, 1.0 / k)
    history: list[float] = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(iterations):
            mixed = logsumexp_rows(logs, np.log(weights))
            history.append(float(mixed.mean()))
            posterior = np.exp(logs + np.log(weights)[:, None] - mixed[None, :])
            weights = np.nan_to_num(posterior).mean(axis=1)
            weights /= weights.sum()
            if len(history) > 1 and history[-1] - history[-2] < stop:
                break
        reached = float(logsumexp_rows(logs, np.log(weights)).mean())
    best = int(np.argmax(logs.mean(axis=1)))
    if float(logs[best].mean()) > reached:
        weights = np.eye(k)[best]
        reached = float(logs[best].mean())
    history.append(reached)
    return weights, len(history) - 1, history


class Mix(lmeval.LanguageModel):
    """p(w | h) = sum_k lambda_k p_k(w | h) over its components.

    A component is a row of the same comparison, named by its label (fitted once
    for its row and this one: no refit), or a spec, fitted here. The weights
    come from EM on the validation text (see :func:`em_weights`), or from
    ``weights``. Every component must predict the same tokens (one tokenizer,
    vocabulary and line policy); the mixture is then a proper distribution
    whenever its components are, and ``compare`` verifies it as any row.
    """

    name = "mix"
    description = "interpolates other models (rows of the comparison, or specs), weights by EM"
    # made from other rows: its key could not say which, and its parts cache themselves
    cacheable = False
    # the bare `lmeval compare`: the n-gram's and the rnn's recommended rows mixed (their
    # labels are their specs), so that neither is fitted twice
    recommended = "mix:of=ngram:order=5+rnn:budget=60s"
    params = (
        lmeval.Param(
            "of",
            str,
            "",
            "the models mixed, joined by +: labels of other rows (kn7+lstm), or specs "
            "without commas (rnn+ngram:order=7), fitted by the mixture itself",
            parse=_items,
            required=True,
        ),
        lmeval.Param(
            "weights",
            str,
            "",
            "fixed weights joined by + (0.3+0.7), normalised; default: EM on the validation text",
            parse=_weights,
        ),
        lmeval.Param("iterations", int, 100, "most EM steps", check=lmeval.in_range(1, 100_000)),
        lmeval.Param(
            "seed",
            int,
            0,
            "the seed of components given as specs that take one",
            check=lmeval.at_least(0),
        ),
    )

    def __init__(self, vocab: lmeval.Vocabulary, **params: Any) -> None:
        super().__init__(vocab, **params)
        self.items = self.config["of"].split("+")
        given = self.config["weights"]
        if given and len(given.split("+")) != len(self.items):
            raise lmeval.UsageError(
                f"weights={given} gives {len(given.split('+'))} weights for "
                f"{len(self.items)} models: give one per model of of="
            )
        self.parts: dict[str, lmeval.LanguageModel] = {}
        self.weights: np.ndarray | None = None
        self._facts: dict[str, Any] = {}

    # -- made from rows of the comparison -------------------------------------------
    def needs(self, labels: set[str]) -> list[str]:
        """The items of ``of=`` that are rows; the others must be specs that build."""
        for item in self.items:
            if item in labels:
                continue
            try:
                part = lmeval.build_model(item, self.vocab)
            except lmeval.UsageError as exc:
                if (
                    lmeval.parse_spec(item).name
                    not in (lmeval.active_host() or lmeval.load_host()).models
                ):
                    raise lmeval.UsageError(
                        f"of=: this comparison does not have a row {item!r}, and no model is "
                        f"called that: add the row (-m {item}=SPEC) or name a model"
                    ) from None
                raise lmeval.UsageError(f"of=: {item}: {exc}") from None
            if lmeval.world_size() > 1 and getattr(part, "distributed", False):
                raise lmeval.UsageError(
                    f"of=: under torchrun the ranks train rows together, not a mixture's "
                    f"parts: give {item} a row of its own (-m NAME={item}) and mix NAME"
                )
        return [item for item in self.items if item in labels]

    def attach(self, rows: dict[str, lmeval.LanguageModel]) -> None:
        self.parts.update(rows)

    # -- fitting ----------------------------------------------------------------------
    def fit(self, train_ids: np.ndarray, valid_ids: np.ndarray | None = None) -> None:
        specs = [item for item in self.items if item not in self.parts]
        missing_valid = valid_ids is None or len(valid_ids) == 0
        fixed = bool(self.config["weights"])
        weighed = not fixed and len(self.items) > 1  # its weights come from EM
        if missing_valid and weighed and len(specs) < len(self.items):
            raise lmeval.LmevalError(
                "the mixture fits its weights on validation text, and its rows were trained "
                "on all the training text: give a validation split (--split 0.8,0.1,0.1 or "
                "--valid FILE), or weights="
            )
        if missing_valid and weighed:
            # the weights fit on the start, which none of its parts sees; not the end,
            # which the test text usually continues and is the most useful to train on
            # (as the rnn carves its own validation)
            cut = max(1, int(len(train_ids) * CARVED))
            train_ids, valid_ids = train_ids[cut:], train_ids[:cut]
        for item in specs:
            part = lmeval.build_model(item, self.vocab, seed=self.config["seed"])
            part.fit(train_ids, valid_ids if not missing_valid else None)
            self.parts[item] = part
        if fixed:
            weights = np.array([float(w) for w in self.config["weights"].split("+")])
            self.weights = weights / weights.sum()
            self._facts = {"weights": self._by_item(self.weights), "fitted": False}
            return
        if len(self.items) == 1:
            self.weights = np.ones(1)
            self._facts = {"weights": self._by_item(self.weights), "fitted": False}
            return
        logs = np.stack([self.parts[item].score(valid_ids) for item in self.items])
        self.weights, steps, history = em_weights(logs, self.config["iterations"])
        nats = {item: float(-logs[i].mean()) for i, item in enumerate(self.items)}
        nats["mix"] = -history[-1] if history else float("nan")
        self._facts = {
            "weights": self._by_item(self.weights),
            "fitted": True,
            "em_iterations": steps,
            "valid_tokens": int(logs.shape[1]),
            "valid_ppl": {name: lmeval.perplexity(v) for name, v in nats.items()},
        }

    def _by_item(self, weights: np.ndarray) -> dict[str, float]:
        return {item: float(w) for item, w in zip(self.items, weights, strict=True)}

    def _require(self) -> np.ndarray:
        if self.weights is None:
            raise lmeval.LmevalError("the mixture is not fitted: call fit() first")
        return self.weights

    # -- scoring ------------------------------------------------------------------------
    def score(self, ids: np.ndarray) -> np.ndarray:
        weights = self._require()
        logs = np.stack([self.parts[item].score(ids) for item in self.items])
        with np.errstate(divide="ignore"):
            return logsumexp_rows(logs, np.log(weights))

    def next_token_logprobs(self, context_ids: np.ndarray) -> np.ndarray:
        weights = self._require()
        logs = np.stack([self.parts[item].next_token_logprobs(context_ids) for item in self.items])
        with np.errstate(divide="ignore"):
            return logsumexp_rows(logs, np.log(weights))

    @property
    def num_params(self) -> int | None:
        counts = [self.parts[item].num_params for item in self.items if item in self.parts]
        if len(counts) < len(self.items) or any(c is None for c in counts):
            return None
        return int(sum(counts)) + len(self.items)

    @property
    def tolerance(self) -> float:  # type: ignore[override]
        """The loosest of its components' (float32 ones make it float32 too)."""
        return max([1e-9, *(self.parts[item].tolerance for item in self.parts)])

    def details(self) -> dict[str, Any]:
        return {**self._facts, "of": self.items}

    # -- files ----------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """One zip: ``mix.json`` (config, weights, what each part is) and each part as
        the file its own ``save`` writes."""
        weights = self._require()
        meta = {
            "format": "lmeval-mix/1",
            "vocab": self.vocab.to_dict(),
            "config": self.config,
            "weights": weights.tolist(),
            "facts": self._facts,
            "parts": [{"item": item, "model": self.parts[item].name} for item in self.items],
        }
        with tempfile.TemporaryDirectory() as tmp, lmeval.atomic_write(path, "wb") as handle:
            with zipfile.ZipFile(handle, "w") as archive:
                archive.writestr("mix.json", json.dumps(meta))
                for i, item in enumerate(self.items):
                    part_path = Path(tmp) / f"part-{i}"
                    self.parts[item].save(part_path)
                    archive.write(part_path, f"part-{i}")

    @classmethod
    def load(cls, path: Path) -> Mix:
        host = lmeval.active_host() or lmeval.load_host()
        try:
            with zipfile.ZipFile(path) as archive:
                meta = json.loads(archive.read("mix.json"))
                vocab = lmeval.Vocabulary.from_dict(meta["vocab"])
                model = cls(vocab, **meta["config"])
                if [part["item"] for part in meta["parts"]] != model.items:
                    raise lmeval.LmevalError(
                        f"{path}: its parts are not the models of its of={model.config['of']}"
                    )
                with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
                    for i, part in enumerate(meta["parts"]):
                        if part["model"] not in host.models:
                            raise lmeval.LmevalError(
                                f"{path}: its part {part['item']!r} is a {part['model']!r} "
                                "model, which is not registered here: install its plugin"
                            )
                        member = Path(archive.extract(f"part-{i}", tmp))
                        model.parts[part["item"]] = host.models.get(part["model"]).load(member)
        except (KeyError, TypeError, ValueError, zipfile.BadZipFile, OSError) as exc:
            raise lmeval.LmevalError(f"cannot load the mixture {path}: {exc}") from None
        try:
            weights = np.asarray(meta["weights"], dtype=np.float64).reshape(-1)
        except (KeyError, TypeError, ValueError):
            weights = np.array([])
        if (
            len(weights) != len(model.items)
            or not np.all(np.isfinite(weights))
            or np.any(weights < 0)
            or not weights.sum() > 0
        ):
            raise lmeval.LmevalError(
                f"cannot load the mixture {path}: its weights are not {len(model.items)} "
                "numbers at least 0 and not all 0; save it again"
            )
        model.weights = weights / weights.sum()
        model._facts = meta.get("facts", {})
        return model

"""Benchmark suites: data sets x models (with grids) x seeds, from a TOML file or Python.

A suite file (``lmeval bench SUITE.toml``)::

    name = "orders"                 # default: the file's name without .toml
    seeds = [0, 1]                  # or a count: seeds = 2 is [0, 1]; default [0]
    metrics = ["bits_per_char", "perplexity"]   # the summary's columns
    bootstrap = 1000                # replicates per run (0 = no intervals)
    confidence = 0.95
    verify = 8                      # positions probed per row (0 = off)
    plugins = ["my_plugin.py"]      # files or modules, as --plugin

    [datasets.tm]                   # a data set, by the label records use
    dataset = "timemachine"         # or text = "file.txt", or train/valid/test files
    split = [0.8, 0.1, 0.1]         # or "0.8,0.1,0.1"
    tokenizer = "char"              # char or word (or a plugin's)
    stream = false                  # true: no end-of-line tokens
    min_freq = 1
    encoding = "utf-8"

    [models.kn]                     # a model, by its label
    model = "ngram"                 # or spec = "ngram:smoothing=mkn"
    order = [2, 3, 4, 5]            # a list is a grid: kn-order2 ... kn-order5

File paths (data files, plugin files, and model parameters that name files,
``arpa:path`` say) are relative to the suite file. Every problem (an unknown key, a bad
type, an unknown model or parameter, an empty grid) is one
:class:`~lmeval.errors.UsageError` naming the file and the key, raised before
anything runs.
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .bootstrap import check_bootstrap
from .corpus import DEFAULT_SPLIT, parse_split
from .errors import UsageError, one_line
from .files import DEFAULT_MAX_BYTES, parse_size, read_text
from .models import MadeFromCircle, ModelSpec, made_from, parse_spec, resolve_params
from .plugins import PluginHost, using
from .verify import DEFAULT_POSITIONS

#: The largest seed (numpy's and the CLI's bound).
MAX_SEED = 2**32 - 1
#: Runs one suite may expand into: a grid typo (``order = [2, 3, ..., 20000]``)
#: is refused rather than queued for days.
MAX_RUNS = 100_000

_SUITE_KEYS = {
    "name": "the suite's name (default: the file's name)",
    "seeds": "a list of seeds, or a count",
    "metrics": "metric names, the summary's columns",
    "bootstrap": "bootstrap replicates per run (0 = off)",
    "confidence": "the intervals' level, between 0 and 1",
    "verify": "positions probed per row (0 = off)",
    "plugins": "plugin files or modules",
    "datasets": "tables of data sets, by label",
    "models": "tables of models, by label",
}
_DATA_SOURCES = ("dataset", "text", "train", "valid", "test")
_DATA_KEYS = (*_DATA_SOURCES, "split", "tokenizer", "stream", "min_freq", "encoding", "max_bytes")
_LABEL = re.compile(r"[A-Za-z0-9_.\-]+")


@dataclass(frozen=True)
class DataConfig:
    """One data set of a suite: where the text comes from and how it is tokenized."""

    label: str
    #: ``dataset`` / ``text`` / ``train``, ``valid``, ``test`` (paths resolved)
    source: dict[str, str]
    split: tuple[float, float, float] = DEFAULT_SPLIT
    tokenizer: str = "char"
    lines: bool = True
    min_freq: int = 1
    encoding: str = "utf-8"
    max_bytes: int = DEFAULT_MAX_BYTES

    def load_options(self) -> dict[str, Any]:
        """The keywords :func:`lmeval.load_corpus` takes."""
        return {
            **self.source,
            "split": self.split,
            "encoding": self.encoding,
            "max_bytes": self.max_bytes,
        }

    def to_dict(self) -> dict[str, Any]:
        """What records keep of it (``data``)."""
        return {
            **self.source,
            "split": list(self.split),
            "tokenizer": self.tokenizer,
            "lines": self.lines,
            "min_freq": self.min_freq,
            "encoding": self.encoding,
        }


@dataclass(frozen=True)
class Run:
    """One run: a data set, a model spec and a seed."""

    dataset: DataConfig
    spec: ModelSpec
    seed: int


@dataclass
class Suite:
    """A validated suite: what :func:`lmeval.bench.run_suite` runs."""

    name: str
    datasets: list[DataConfig]
    models: list[ModelSpec]
    seeds: list[int] = field(default_factory=lambda: [0])
    metrics: list[str] = field(default_factory=list)
    bootstrap: int = 1000
    confidence: float = 0.95
    verify: int = DEFAULT_POSITIONS
    plugins: list[str] = field(default_factory=list)
    #: the file it was read from (``None`` when built in Python)
    path: Path | None = None
    #: the models each model is made from, by label (a mixture's components)
    parts: dict[str, list[ModelSpec]] = field(default_factory=dict)

    def runs(self) -> list[Run]:
        """Every (data set, model, seed), data set outermost, seeds innermost."""
        return [
            Run(data, spec, seed)
            for data in self.datasets
            for spec in self.models
            for seed in self.seeds
        ]


class _Where:
    """Builds the one-line errors: ``FILE: KEY: problem``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> UsageError:
        return UsageError(
            f"{self.source}: {key}: {problem}" if key else f"{self.source}: {problem}"
        )


def load_suite(path: str | Path, host: PluginHost) -> Suite:
    """Read and validate the suite file at ``path`` (models checked against ``host``)."""
    path = Path(path)
    try:
        text = read_text(path, "utf-8", 16 * 2**20)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"cannot read the suite {path}: {one_line(exc)}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc}): fix the line it names") from None
    data.setdefault("name", path.stem)
    return build_suite(data, host, source=str(path), base=path.parent, path=path)


def build_suite(
    data: dict[str, Any],
    host: PluginHost,
    *,
    source: str = "suite",
    base: str | Path = ".",
    path: Path | None = None,
) -> Suite:
    """A suite from a dict shaped like the TOML file (the Python way to build one).

    ``base`` is the folder relative file paths start from; ``source`` names the
    suite in errors.
    """
    where = _Where(source)
    if not isinstance(data, dict):
        raise where.fail("", f"a suite is a table of keys, not {type(data).__name__}")
    for key in data:
        if key not in _SUITE_KEYS:
            known = ", ".join(_SUITE_KEYS)
            raise where.fail(key, f"unknown key; a suite has: {known}")
    plugins = [
        _resolve(p, Path(base)) if p.endswith(".py") else p
        for p in _strings(where, "plugins", data.get("plugins", []))
    ]
    for item in plugins:
        before = len(host.warnings)
        host.load_path_or_module(item, f"{source} plugins")
        if len(host.warnings) > before:
            raise where.fail("plugins", host.warnings[before])
    name = data.get("name", "suite")
    if not isinstance(name, str) or not name.strip():
        raise where.fail("name", "give the suite's name as a non-empty string")
    suite = Suite(
        name=name.strip(),
        datasets=_datasets(where, data.get("datasets"), Path(base), host),
        models=_models(where, data.get("models"), host, Path(base)),
        seeds=_seeds(where, data.get("seeds", [0])),
        metrics=_metrics(where, data.get("metrics", []), host),
        bootstrap=_int(where, "bootstrap", data.get("bootstrap", 1000), 0, 2**62),
        confidence=_confidence(where, data.get("confidence", 0.95)),
        verify=_int(where, "verify", data.get("verify", DEFAULT_POSITIONS), 0, 10_000),
        plugins=plugins,
        path=path,
    )
    try:
        check_bootstrap(suite.bootstrap, suite.confidence)
    except UsageError as exc:
        raise where.fail("bootstrap", str(exc)) from None
    count = len(suite.datasets) * len(suite.models) * len(suite.seeds)
    if count > MAX_RUNS:
        raise where.fail(
            "models", f"the suite expands into {count:,} runs, more than {MAX_RUNS:,}: cut a grid"
        )
    with using(host):  # a model asked what it is made from may look up others
        suite.parts = _parts(where, suite.models, host)
    fixed = [m.label for m in suite.models if "seed" in m.params]
    if fixed and len(suite.seeds) > 1:
        raise where.fail(
            "seeds",
            f"model {fixed[0]} fixes its seed, so {len(suite.seeds)} seeds would train it "
            "alike each time: give one seed, or drop seed from the model",
        )
    return suite


def _table(where: _Where, key: str, value: Any, what: str) -> dict[str, Any]:
    if value is None:
        raise where.fail(key, f"missing: add at least one [{key}.LABEL] table of {what}")
    if not isinstance(value, dict) or not value:
        raise where.fail(key, f"expected [{key}.LABEL] tables of {what}")
    for label, item in value.items():
        if not _LABEL.fullmatch(label):
            raise where.fail(
                f"{key}.{label}", "a label may hold only letters, digits and . _ -: rename it"
            )
        if not isinstance(item, dict):
            raise where.fail(f"{key}.{label}", f"expected a table of {what}'s keys")
    return value


def _resolve(item: str, base: Path) -> str:
    """``item`` as an absolute path, a relative one taken from the suite's folder
    (absolute, so that workers started elsewhere, a Ray node say, find it too)."""
    path = Path(item).expanduser()
    return str((path if path.is_absolute() else base / path).resolve())


def _datasets(where: _Where, value: Any, base: Path, host: PluginHost) -> list[DataConfig]:
    result = []
    for label, item in _table(where, "datasets", value, "data sets").items():
        at = f"datasets.{label}"
        for key in item:
            if key not in _DATA_KEYS:
                raise where.fail(
                    f"{at}.{key}", f"unknown key; a data set has: {', '.join(_DATA_KEYS)}"
                )
        source: dict[str, str] = {}
        for key in _DATA_SOURCES:
            if key in item:
                text = _string(where, f"{at}.{key}", item[key])
                source[key] = text if key == "dataset" else _resolve(text, base)
        given = set(source)
        if given == {"dataset"}:
            if source["dataset"] not in host.datasets:
                known = ", ".join(host.datasets)
                raise where.fail(
                    f"{at}.dataset", f"unknown data set {source['dataset']!r}; known: {known}"
                )
        elif given not in ({"text"}, {"train", "test"}, {"train", "valid", "test"}):
            raise where.fail(
                at,
                "give one source: dataset = NAME, text = FILE, or train and test (and valid) files",
            )
        split = item.get("split", DEFAULT_SPLIT)
        if isinstance(split, list):
            split = ",".join(str(x) for x in split)
        if not isinstance(split, str | tuple):
            raise where.fail(
                f"{at}.split", 'give three fractions: [0.8, 0.1, 0.1] or "0.8,0.1,0.1"'
            )
        try:
            fractions = parse_split(split) if isinstance(split, str) else tuple(split)
        except UsageError as exc:
            raise where.fail(f"{at}.split", str(exc)) from None
        tokenizer = _string(where, f"{at}.tokenizer", item.get("tokenizer", "char"))
        if tokenizer not in host.tokenizers:
            known = ", ".join(host.tokenizers)
            raise where.fail(f"{at}.tokenizer", f"unknown tokenizer {tokenizer!r}; known: {known}")
        stream = item.get("stream", False)
        if not isinstance(stream, bool):
            raise where.fail(f"{at}.stream", "give true or false")
        max_bytes = item.get("max_bytes", DEFAULT_MAX_BYTES)
        if isinstance(max_bytes, str):
            try:
                max_bytes = parse_size(max_bytes)
            except (UsageError, ValueError) as exc:
                raise where.fail(f"{at}.max_bytes", one_line(exc)) from None
        result.append(
            DataConfig(
                label=label,
                source=source,
                split=fractions,  # type: ignore[arg-type]
                tokenizer=tokenizer,
                lines=not stream,
                min_freq=_int(where, f"{at}.min_freq", item.get("min_freq", 1), 1, 2**31),
                encoding=_string(where, f"{at}.encoding", item.get("encoding", "utf-8")),
                max_bytes=_int(where, f"{at}.max_bytes", max_bytes, 1, 2**62),
            )
        )
    return result


def _grid_label(label: str, grid: dict[str, Any]) -> str:
    parts = [label] + [f"{k}{_label_value(v)}" for k, v in grid.items()]
    return "-".join(parts)


def _label_value(value: Any) -> str:
    text = _raw(value)
    return re.sub(r"[^A-Za-z0-9_.]", "_", text)


def _raw(value: Any) -> str:
    """A TOML value as the text a spec would hold (``true``, ``0.5``, ``20s``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _models(where: _Where, value: Any, host: PluginHost, base: Path) -> list[ModelSpec]:
    result: list[ModelSpec] = []
    labels: dict[str, str] = {}
    for label, item in _table(where, "models", value, "models").items():
        at = f"models.{label}"
        if ("model" in item) == ("spec" in item):
            raise where.fail(
                at, 'give the model by name (model = "ngram") or spec = "ngram:order=5"'
            )
        if "spec" in item:
            try:
                base = parse_spec(_string(where, f"{at}.spec", item["spec"]))
            except UsageError as exc:
                raise where.fail(f"{at}.spec", str(exc)) from None
            name, fixed = base.name, dict(base.params)
        else:
            name, fixed = _string(where, f"{at}.model", item["model"]), {}
        if name not in host.models:
            known = ", ".join(host.models)
            raise where.fail(f"{at}.model", f"unknown model {name!r}; known: {known}")
        grid: dict[str, list[Any]] = {}
        for key, raw in item.items():
            if key in ("model", "spec"):
                continue
            if key in fixed:
                raise where.fail(f"{at}.{key}", "given twice (in spec and as a key): give it once")
            if isinstance(raw, list):
                if not raw:
                    raise where.fail(f"{at}.{key}", "an empty grid: give at least one value")
                if len(set(map(_raw, raw))) != len(raw):
                    raise where.fail(f"{at}.{key}", "a grid lists a value twice: give each once")
                values = raw
            else:
                values = [raw]
            for v in values:
                if isinstance(v, dict | list):
                    raise where.fail(f"{at}.{key}", "expected a value or a list of values")
                if "," in _raw(v):
                    raise where.fail(
                        f"{at}.{key}", "a value cannot hold a comma (specs split at commas)"
                    )
            grid[key] = values
        combos = math.prod(len(v) for v in grid.values())
        if len(result) + combos > MAX_RUNS:
            raise where.fail(
                at, f"the grid expands into {combos:,} models, more than {MAX_RUNS:,}: cut it"
            )
        cls = host.models.get(name)
        varying = [k for k, v in grid.items() if len(v) > 1]
        for combo in itertools.product(*grid.values()):
            chosen = dict(zip(grid, combo, strict=True))
            params = {**fixed, **{k: _raw(v) for k, v in chosen.items()}}
            for param in cls.params:  # files a model reads: from the suite's folder
                if param.path and params.get(param.name):
                    params[param.name] = _resolve(params[param.name], base)
            try:
                resolve_params(cls, params)
            except UsageError as exc:
                key = next((k for k in chosen if f"{k}=" in str(exc) or repr(k) in str(exc)), "")
                raise where.fail(f"{at}.{key}" if key else at, str(exc)) from None
            row = _grid_label(label, {k: chosen[k] for k in varying}) if varying else label
            if row in labels:
                raise where.fail(at, f"the label {row!r} is also made by {labels[row]}: rename one")
            labels[row] = at
            result.append(ModelSpec(name, params, row))
    return result


def with_parts(suite: Suite, host: PluginHost) -> Suite:
    """``suite`` with its ``parts`` found (a suite built in Python rather than read
    from a file or a dict has none yet); errors name the suite as its file's do."""
    if suite.parts:
        return suite
    with using(host):
        parts = _parts(_Where(str(suite.path or suite.name)), suite.models, host)
    return replace(suite, parts=parts)


def _parts(where: _Where, models: list[ModelSpec], host: PluginHost) -> dict[str, list[ModelSpec]]:
    """The models of the suite each model is made from (``LanguageModel.needs``: a
    mixture of other rows), parts of parts first, so that a run of it fits them too
    (or finds them in the model cache). Only models whose class can name such rows
    are built to ask (with a stand-in vocabulary); a circle is refused."""
    from .models import LanguageModel
    from .tokenizers import Vocabulary

    by_label = {m.label: m for m in models}
    direct: dict[str, list[str]] = {}
    for spec in models:
        cls = host.models.get(spec.name)
        if cls.needs is LanguageModel.needs:
            continue
        try:
            model = cls(Vocabulary(["x"], eos="\n"), **spec.params)
            wanted = list(model.needs(set(by_label) - {spec.label}))
        except UsageError as exc:
            raise where.fail(f"models.{spec.label}", str(exc)) from None
        if wanted:
            direct[spec.label] = wanted

    parts: dict[str, list[ModelSpec]] = {}
    for label in direct:
        try:
            parts[label] = [by_label[x] for x in made_from(direct, label)]
        except MadeFromCircle as exc:
            raise where.fail(f"models.{exc.cycle[0]}", str(exc)) from None
    return parts


def _seeds(where: _Where, value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 10_000:
            raise where.fail("seeds", "a count of seeds is 1 to 10000 (or give a list)")
        return list(range(value))
    if not isinstance(value, list) or not value:
        raise where.fail("seeds", "give a non-empty list of seeds (seeds = [0, 1]) or a count")
    seeds = [_int(where, "seeds", s, 0, MAX_SEED) for s in value]
    if len(set(seeds)) != len(seeds):
        raise where.fail("seeds", "a seed is listed twice: give each once")
    return seeds


#: Numbers of a record that a summary can show beside the metrics.
RECORD_NUMBERS = ("fit_seconds", "score_seconds", "seconds", "peak_memory_bytes", "params")


def _metrics(where: _Where, value: Any, host: PluginHost) -> list[str]:
    names = _strings(where, "metrics", value)
    for name in names:
        if name not in host.metrics and name not in RECORD_NUMBERS:
            known = ", ".join([*host.metrics, *RECORD_NUMBERS])
            raise where.fail("metrics", f"unknown metric {name!r}; known: {known}")
    return list(dict.fromkeys(names))


def _confidence(where: _Where, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise where.fail("confidence", "give a level strictly between 0 and 1 (0.95)")
    return float(value)


def _int(where: _Where, key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.fail(key, f"expected a whole number, got {value!r}")
    if not low <= value <= high:
        raise where.fail(key, f"{value} is out of range: give {low} to {high}")
    return value


def _string(where: _Where, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise where.fail(key, f"expected a non-empty string, got {value!r}")
    return value.strip()


def _strings(where: _Where, key: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise where.fail(key, f"expected a list of strings, got {value!r}")
    return [_string(where, key, v) for v in value]

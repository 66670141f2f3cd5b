"""The plugin manager: where plugins come from and what they registered.

Plugins load from three places, in this order:

1. the ``lmeval`` entry-point group (the built-in plugins register there too,
   exactly as a third-party distribution does);
2. the ``LMEVAL_PLUGINS`` environment variable: comma-separated module names or
   paths to ``.py`` files;
3. ``--plugin PATH.py`` on the command line.

A plugin that fails to import or to register is reported in one warning line
and left out; the others keep working. ``LMEVAL_LOAD_ENTRY_POINTS=0`` skips the
entry points except lmeval's own (tests use it to keep installed third-party
plugins out).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, TypeVar

import pluggy

from . import hookspecs
from .errors import UsageError

T = TypeVar("T")

BUILTIN_ENTRY_POINTS = ("uniform", "ngram", "rnn")
_DIST_NAME = "lmeval"


@dataclass
class PluginInfo:
    """One loaded (or failed) plugin: its name, where it came from, what it added."""

    name: str
    source: str
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


class Registry(Generic[T]):
    """Named things of one kind (models, tokenizers, ...) and the plugin of each."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self.plugin_of: dict[str, str] = {}

    def add(self, name: str, item: T, plugin: str) -> None:
        if name in self._items:
            raise ValueError(
                f"{self.kind} {name!r} is already registered by {self.plugin_of[name]!r}"
            )
        self._items[name] = item
        self.plugin_of[name] = plugin

    def remove(self, name: str) -> None:
        del self._items[name]
        del self.plugin_of[name]

    def get(self, name: str) -> T:
        if name not in self._items:
            hint = difflib.get_close_matches(name, list(self._items), n=1)
            tail = f"did you mean {hint[0]!r}?" if hint else f"known: {', '.join(self) or 'none'}"
            raise UsageError(f"unknown {self.kind} {name!r}; {tail}")
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self):
        return iter(sorted(self._items))

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._items[name]) for name in self]


class PluginHost:
    """A pluggy manager plus the registries filled from its hooks."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("lmeval")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self.warnings: list[str] = []
        self.models: Registry[type] = Registry("model")
        self.tokenizers: Registry[type] = Registry("tokenizer")
        self.metrics: Registry[Any] = Registry("metric")
        self.datasets: Registry[Any] = Registry("dataset")
        self._commands_added: set[str] = set()

    # -- loading -------------------------------------------------------------

    def add(self, plugin: object, name: str, source: str) -> None:
        """Register a plugin object (module) and collect what it registers."""
        info = PluginInfo(name=name, source=source)
        self.plugins.append(info)
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # a bad hookimpl signature, a duplicate name
            self._fail(info, f"cannot be registered: {_one_line(exc)}")
            return
        added: list[tuple[Registry[Any], str]] = []
        for hook, registry, key in self._collectors():
            impls = [i for i in getattr(self.pm.hook, hook).get_hookimpls() if i.plugin is plugin]
            for impl in impls:
                names: list[str] = []
                try:
                    impl.function(
                        register=lambda obj, r=registry, a=names: self._put(r, obj, name, a)
                    )
                except Exception as exc:
                    # all or nothing: a plugin reported as skipped leaves nothing behind
                    for reg, item in added + [(registry, n) for n in names]:
                        reg.remove(item)
                    info.registered.clear()
                    self.pm.unregister(plugin)
                    self._fail(info, f"failed in {hook}: {_one_line(exc)}")
                    return
                added.extend((registry, n) for n in names)
                if names:
                    info.registered.setdefault(key, []).extend(names)

    def _collectors(self) -> list[tuple[str, Registry[Any], str]]:
        return [
            ("register_models", self.models, "models"),
            ("register_tokenizers", self.tokenizers, "tokenizers"),
            ("register_metrics", self.metrics, "metrics"),
            ("register_datasets", self.datasets, "datasets"),
        ]

    def _put(self, registry: Registry[Any], obj: Any, plugin: str, added: list[str]) -> None:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"registered {registry.kind} {obj!r} has no name")
        _validate(registry.kind, obj)
        registry.add(name, obj, plugin)
        added.append(name)

    def _fail(self, info: PluginInfo, message: str) -> None:
        info.error = message
        self.warnings.append(f"plugin {info.name!r} ({info.source}) {message}; skipped")

    def load_entry_points(self, only_builtin: bool = False) -> None:
        for ep in sorted(metadata.entry_points(group="lmeval"), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else "?"
            if only_builtin and dist != _DIST_NAME:
                continue
            self._import_and_add(ep.name, f"entry point of {dist}", ep.load)

    def load_path_or_module(self, spec: str, source: str) -> None:
        """Load a plugin from a ``.py`` file path or an importable module name."""
        spec = spec.strip()
        if not spec:
            return
        if spec.endswith(".py") or os.sep in spec or "/" in spec:
            path = Path(spec)
            self._import_and_add(path.stem, f"{source} {spec}", lambda: _import_file(path))
        else:
            self._import_and_add(spec, source, lambda: importlib.import_module(spec))

    def _import_and_add(self, name: str, source: str, loader: Callable[[], object]) -> None:
        if any(p.name == name for p in self.plugins):
            return  # the same plugin named twice (entry point and --plugin): load once
        try:
            plugin = loader()
        except BaseException as exc:  # SystemExit and KeyboardInterrupt in a plugin, too
            if isinstance(exc, KeyboardInterrupt):
                raise
            info = PluginInfo(name=name, source=source)
            self.plugins.append(info)
            self._fail(info, f"failed to import: {_one_line(exc)}")
            return
        self.add(plugin, name, source)

    def register_commands(self, cli: Any) -> None:
        """Let plugins add their commands to ``cli`` (once per plugin)."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            if impl.plugin_name in self._commands_added:
                continue
            self._commands_added.add(impl.plugin_name)
            try:
                impl.function(cli=cli)
            except Exception as exc:
                info = next((p for p in self.plugins if p.name == impl.plugin_name), None)
                if info is not None:
                    self._fail(info, f"failed in register_commands: {_one_line(exc)}")


def _validate(kind: str, obj: Any) -> None:
    from .datasets import Dataset
    from .metrics import Metric
    from .models import LanguageModel
    from .tokenizers import Tokenizer

    expected = {"model": LanguageModel, "tokenizer": Tokenizer}.get(kind)
    if expected is not None:
        if not (isinstance(obj, type) and issubclass(obj, expected)):
            raise TypeError(f"{kind} {obj!r} must be a subclass of lmeval.{expected.__name__}")
        return
    instance_of = {"metric": Metric, "dataset": Dataset}[kind]
    if not isinstance(obj, instance_of):
        raise TypeError(f"{kind} {obj!r} must be an instance of lmeval.{instance_of.__name__}")
    if kind == "metric":
        from .evaluate import RESERVED_KEYS

        if obj.name in RESERVED_KEYS:
            raise ValueError(f"metric name {obj.name!r} is taken by a result field")


def _import_file(path: Path) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    module_name = f"lmeval_local_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


_host: PluginHost | None = None


def get_host(extra_plugins: Iterable[str] = ()) -> PluginHost:
    """The process-wide plugin host, loaded on first use.

    ``extra_plugins`` (paths or module names, as ``--plugin`` gives them) are
    loaded in addition, also on an already loaded host.
    """
    global _host
    if _host is None:
        from . import builtins

        host = PluginHost()
        host.add(builtins, "lmeval", "lmeval core")
        only_builtin = os.environ.get("LMEVAL_LOAD_ENTRY_POINTS", "1") == "0"
        host.load_entry_points(only_builtin=only_builtin)
        for item in os.environ.get("LMEVAL_PLUGINS", "").split(","):
            host.load_path_or_module(item, "LMEVAL_PLUGINS")
        _host = host
    for item in extra_plugins:
        _host.load_path_or_module(item, "--plugin")
    return _host


def reset_host() -> None:
    """Forget the loaded plugins (tests; a fresh ``get_host`` loads them again)."""
    global _host
    _host = None

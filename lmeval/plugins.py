"""The plugin host: a pluggy manager and the registries its hooks fill.

A :class:`PluginHost` belongs to one call (one ``lmeval`` command, one
``lmeval.compare``): nothing process-wide is changed by loading a plugin, so a
script that compares with ``plugins=[...]`` leaves the next call as it found it.
:func:`lmeval.host.load_host` builds a host with the usual plugins; this module
only knows how to add a plugin to one and what the plugin registered.

A plugin that fails to import or to register is left out with one warning
line in :attr:`PluginHost.warnings`; the others keep working.
"""

from __future__ import annotations

import contextvars
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import pluggy

from . import hookspecs
from .datasets import Dataset
from .errors import UsageError, one_line
from .metrics import Metric
from .models import LanguageModel
from .records import RESERVED_KEYS
from .tokenizers import Tokenizer

T = TypeVar("T")

#: Every hook a plugin may implement (the functions declared in ``hookspecs``).
HOOK_NAMES = tuple(
    name for name, obj in vars(hookspecs).items() if callable(obj) and hasattr(obj, "lmeval_spec")
)


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

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._items[name]) for name in self]


class PluginHost:
    """A pluggy manager plus the registries filled from its hooks."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("lmeval")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        #: One line per plugin problem (skipped plugin, name clash, unknown hook).
        self.warnings: list[str] = []
        self.models: Registry[type[LanguageModel]] = Registry("model")
        self.tokenizers: Registry[type[Tokenizer]] = Registry("tokenizer")
        self.metrics: Registry[Metric] = Registry("metric")
        self.datasets: Registry[Dataset] = Registry("dataset")
        self._commands_added: set[str] = set()
        self._files: set[Path] = set()  # resolved paths of the plugin files loaded
        #: The files and modules loaded by name beyond the environment's (``--plugin``,
        #: ``plugins=``): what a child process loads to have the same plugins.
        self.extra_sources: list[str] = []

    # -- adding one plugin ---------------------------------------------------

    def add(self, plugin: object, name: str, source: str) -> None:
        """Register a plugin object (module) and collect what it registers.

        All or nothing: a plugin whose hook raises leaves nothing registered.
        """
        info = PluginInfo(name=name, source=source)
        self.plugins.append(info)
        self._warn_about_hook_names(plugin, name)
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # a bad hookimpl signature, a duplicate name
            self._fail(info, f"cannot be registered: {one_line(exc)}")
            return
        added: list[tuple[Registry[Any], str]] = []
        for hook, registry, key in self._collectors():
            names: list[str] = []
            try:
                self._only(plugin, hook)(
                    register=lambda obj, r=registry, a=names: self._put(r, obj, name, a)
                )
            except Exception as exc:
                for reg, item in added + [(registry, n) for n in names]:
                    reg.remove(item)
                info.registered.clear()
                self.pm.unregister(plugin)
                self._fail(info, f"failed in {hook}: {one_line(exc)}")
                return
            added.extend((registry, n) for n in names)
            if names:
                info.registered.setdefault(key, []).extend(names)

    def _only(self, plugin: object, hook: str) -> pluggy.HookCaller:
        """The hook, called through pluggy, on ``plugin``'s implementation alone."""
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        return self.pm.subset_hook_caller(hook, remove_plugins=others)

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

    def _warn_about_hook_names(self, plugin: object, name: str) -> None:
        """A misspelt hook registers nothing; say so instead of staying silent."""
        for attr, value in inspect.getmembers(plugin, callable):
            marked = hasattr(value, "lmeval_impl")
            if attr in HOOK_NAMES:
                if not marked:
                    self.warnings.append(
                        f"plugin {name!r}: {attr}() is not marked @lmeval.hookimpl; ignored"
                    )
                continue
            hint = difflib.get_close_matches(attr, HOOK_NAMES, n=1)
            if marked or (attr.startswith("register_") and hint):
                tail = f"did you mean {hint[0]!r}?" if hint else f"hooks: {', '.join(HOOK_NAMES)}"
                self.warnings.append(f"plugin {name!r}: {attr}() is not an lmeval hook; {tail}")

    def _fail(self, info: PluginInfo, message: str) -> None:
        info.error = message
        self.warnings.append(f"plugin {info.name!r} ({info.source}) {message}; skipped")

    # -- where plugins come from ---------------------------------------------

    def load_module(self, module_name: str, source: str) -> None:
        """Import ``module_name`` and add it (once: a module already added is skipped)."""
        self.load(module_name, source, lambda: importlib.import_module(module_name))

    def load_path_or_module(self, spec: str, source: str) -> None:
        """Load a plugin from a ``.py`` file path or an importable module name."""
        spec = spec.strip()
        if not spec:
            return
        if source != "LMEVAL_PLUGINS" and spec not in self.extra_sources:
            self.extra_sources.append(spec)
        if not (spec.endswith(".py") or "/" in spec or "\\" in spec):
            self.load_module(spec, source)
            return
        path = Path(spec)
        resolved = path.resolve()
        if resolved in self._files:
            return  # the same file named twice: load it once
        self._files.add(resolved)
        name = path.stem
        taken = next((p for p in self.plugins if p.name == name), None)
        if taken is not None:
            self.warnings.append(
                f"plugin file {spec} has the name of plugin {name!r} ({taken.source}); "
                f"loaded as {spec!r}: rename the file to silence this"
            )
            name = spec
        self.load(name, f"{source} {spec}", lambda: _import_file(path))

    def load(self, name: str, source: str, loader: Callable[[], object]) -> None:
        """Add the plugin that ``loader()`` imports, under ``name``; an import failure
        becomes a warning and a :class:`PluginInfo` with its ``error``."""
        try:
            plugin = loader()
        except BaseException as exc:  # SystemExit in a plugin, too
            if isinstance(exc, KeyboardInterrupt):
                raise
            info = PluginInfo(name=name, source=source)
            self.plugins.append(info)
            self._fail(info, f"failed to import: {one_line(exc)}")
            return
        if self.pm.is_registered(plugin):
            return  # the same module twice (an entry point and --plugin): load once
        self.add(plugin, name, source)

    def register_commands(self, cli: Any) -> None:
        """Let plugins add commands to ``cli`` (a click group), once per plugin.

        A plugin may add commands but never replace one that is there: a
        replaced command is put back, with a warning.
        """
        for plugin in self.pm.get_plugins():
            plugin_name = self.pm.get_name(plugin) or "?"
            if plugin_name in self._commands_added:
                continue
            self._commands_added.add(plugin_name)
            before = dict(cli.commands)
            try:
                self._only(plugin, "register_commands")(cli=cli)
            except Exception as exc:
                info = next((p for p in self.plugins if p.name == plugin_name), None)
                if info is not None:
                    self._fail(info, f"failed in register_commands: {one_line(exc)}")
            for command, original in before.items():
                if cli.commands.get(command) is not original:
                    cli.commands[command] = original
                    self.warnings.append(
                        f"plugin {plugin_name!r} tried to replace the command {command!r}; "
                        "kept the original: give the plugin's command another name"
                    )


def _validate(kind: str, obj: Any) -> None:
    expected = {"model": LanguageModel, "tokenizer": Tokenizer}.get(kind)
    if expected is not None:
        if not (isinstance(obj, type) and issubclass(obj, expected)):
            raise TypeError(f"{kind} {obj!r} must be a subclass of lmeval.{expected.__name__}")
        return
    instance_of = {"metric": Metric, "dataset": Dataset}[kind]
    if not isinstance(obj, instance_of):
        raise TypeError(f"{kind} {obj!r} must be an instance of lmeval.{instance_of.__name__}")
    if kind == "metric" and obj.name in RESERVED_KEYS:
        raise ValueError(f"metric name {obj.name!r} is taken by a result field")


def _import_file(path: Path) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    module_name = f"lmeval_local_plugin_{path.stem}_{digest}"
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


# -- the host of the call in progress ----------------------------------------

_active: contextvars.ContextVar[PluginHost | None] = contextvars.ContextVar(
    "lmeval_host", default=None
)


def active_host() -> PluginHost | None:
    """The host of the comparison (or command) in progress, if any.

    A model that names other models (``saved`` finds the class of the model it
    loads) looks them up here, so it sees the plugins of its own call.
    """
    return _active.get()


@contextmanager
def using(host: PluginHost) -> Iterator[PluginHost]:
    """Make ``host`` the active host for the ``with`` block."""
    token = _active.set(host)
    try:
        yield host
    finally:
        _active.reset(token)

"""The model cache: a fitted model is trained once and reused by every later run.

``lmeval bench`` (by default) and ``lmeval compare --cache`` look a model up
before fitting it and store it after it has been scored and verified. An entry
is a saved model (``KEY.lmz``, the format of :mod:`lmeval.saved`) and its
description (``KEY.json``) under ``$LMEVAL_CACHE_DIR/models`` or the user
cache folder's ``models``.

The key is a SHA-256 of everything that decides what ``fit`` produces (see
:func:`key_material`): the model's identity (registered name, class, the
distribution and version it comes from and a digest of its source files, so
that an edited plugin never reuses an old fit), its fully resolved
parameters, the tokenizer and vocabulary, the checksums of the training and
validation text, the seed and lmeval's version. Two models never share an
entry unless all of these are equal, which is the failure this guards
against: a cache that hands one model's scores to another.

Writers never corrupt an entry: each file is written to a temporary name
beside it and renamed over it (:func:`lmeval.files.atomic_write`), the model
before its description, and a reader takes an entry only when the description
names its key. Two processes filling one entry both write whole files; the
last rename wins and both are the same model.

A model class takes part by implementing ``save`` and ``load``; it can say
``cacheable = False`` (its fit reads something the key does not cover) or
``seeded = False`` (its fit draws no random numbers, so the seed leaves the
key and every seed of a suite shares one fit).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from .corpus import Corpus
from .datasets import cache_dir
from .errors import LmevalError, UsageError
from .files import atomic_write
from .models import LanguageModel
from .plugins import Registry
from .saved import load_model, save_model
from .tokenizers import Tokenizer
from .version import __version__

FORMAT = "lmeval-cache/1"
#: A temporary file left by a writer that was killed is removed by ``clear`` once
#: it is this old (seconds): a younger one may belong to a writer still at work.
STALE_TEMPORARY_SECONDS = 3600


def default_root() -> Path:
    """``$LMEVAL_CACHE_DIR/models``, else ``models`` in the user cache folder."""
    return cache_dir() / "models"


@cache
def _distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _code_digest(file: str | None) -> str | None:
    """SHA-256 of a plugin's source: every ``.py`` file of its top-level package,
    or its one file. ``None`` when it has no file (defined interactively).
    Computed again whenever a file's size or modification time changes (a
    plugin edited and reloaded in a running notebook)."""
    if file is None:
        return None
    path = Path(file)
    files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
    try:
        signature = tuple(
            (str(item.relative_to(path.parent)), item.stat().st_mtime_ns, item.stat().st_size)
            for item in files
        )
    except OSError:
        return None
    return _digest_files(str(path.parent), signature)


@cache
def _digest_files(folder: str, signature: tuple[tuple[str, int, int], ...]) -> str | None:
    digest = hashlib.sha256()
    try:
        for name, _, _ in signature:
            digest.update(name.encode() + b"\0")
            digest.update((Path(folder) / name).read_bytes() + b"\0")
    except OSError:
        return None
    return digest.hexdigest()


def model_identity(cls: type[LanguageModel]) -> dict[str, Any]:
    """Where a model class comes from: class path, distribution, version, code digest."""
    top = cls.__module__.split(".")[0]
    top_module = sys.modules.get(top)
    file = getattr(top_module, "__file__", None) or getattr(
        sys.modules.get(cls.__module__), "__file__", None
    )
    dists = _distributions().get(top, [])
    dist = dists[0] if dists else None
    version = None
    if dist is not None:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = None
    return {
        "name": cls.name,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "distribution": dist,
        "version": version,
        "code": _code_digest(file),
    }


def file_digests(cls: type[LanguageModel], params: dict[str, Any]) -> dict[str, str | None]:
    """SHA-256 of each file a ``Param(path=True)`` parameter names (``None`` for a
    file that cannot be read): the content, not the name, decides what it holds."""
    out: dict[str, str | None] = {}
    for param in cls.params:
        value = params.get(param.name)
        if not param.path or not value:
            continue
        digest = hashlib.sha256()
        try:
            with open(value, "rb") as handle:
                while chunk := handle.read(2**20):
                    digest.update(chunk)
            out[param.name] = digest.hexdigest()
        except OSError:
            out[param.name] = None
    return out


def _versions() -> dict[str, str | None]:
    """The numeric libraries whose versions can change what a fit produces."""
    found: dict[str, str | None] = {}
    for dist in ("numpy", "torch"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    return found


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def key_material(
    model: LanguageModel, tokenizer: Tokenizer, corpus: Corpus, seed: int
) -> dict[str, Any]:
    """Everything the fitted ``model`` depends on, as a JSON-able dict (the key's input)."""
    assert tokenizer.vocab is not None, "tokenizer must be fitted"
    checksums = corpus.checksums()
    return {
        "format": FORMAT,
        "model": model_identity(type(model)),
        "params": model.config,
        "files": file_digests(type(model), model.config),
        "tokenizer": {
            "name": tokenizer.name,
            "lines": tokenizer.lines,
            "vocab": hashlib.sha256(_canonical(tokenizer.vocab.to_dict()).encode()).hexdigest(),
        },
        "data": {"train": checksums["train"], "valid": checksums.get("valid")},
        # a model whose fit draws no random numbers is one fit for every seed
        "seed": seed if type(model).seeded else None,
        "lmeval": __version__,
        "libraries": _versions(),
    }


def cache_key(material: dict[str, Any]) -> str:
    """The entry's name: 32 hex digits of the SHA-256 of the canonical material."""
    return hashlib.sha256(_canonical(material).encode()).hexdigest()[:32]


def uncacheable_reason(model: LanguageModel) -> str | None:
    """Why ``model`` cannot be cached (``None`` when it can)."""
    cls = type(model)
    if not cls.cacheable:
        return "its class says it is not to be cached (cacheable = False)"
    if cls.save is LanguageModel.save:
        return "it cannot be saved (no save())"
    if getattr(cls.load, "__func__", None) is LanguageModel.load.__func__:
        return "it has save() but no load()"
    if model_identity(cls)["code"] is None:
        return "its class has no source file to tell its versions apart"
    return None


@dataclass(frozen=True)
class Entry:
    """One cached model, as ``lmeval cache list`` shows it."""

    key: str
    path: Path
    size: int
    created: str | None
    last_used: float
    label: str | None
    spec: str | None
    model: str | None
    fit_seconds: float | None
    complete: bool


class ModelCache:
    """The fitted models under one folder (``root``)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def __repr__(self) -> str:
        return f"ModelCache({str(self.root)!r})"

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / key[:2]
        return folder / f"{key}.lmz", folder / f"{key}.json"

    def has(self, key: str) -> bool:
        """Whether a complete entry is stored under ``key`` (not whether it loads)."""
        model_path, info_path = self._paths(key)
        return model_path.is_file() and info_path.is_file()

    def load(
        self, key: str, models: Registry[type[LanguageModel]]
    ) -> tuple[LanguageModel, dict[str, Any]] | None:
        """The fitted model stored under ``key`` and its description, or ``None``.

        A damaged or half-removed entry is a miss (the next store replaces it).
        """
        model_path, info_path = self._paths(key)
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(info, dict) or info.get("key") != key:
            return None
        try:
            model, _ = load_model(model_path, models)
        except LmevalError:
            return None
        try:
            os.utime(info_path)  # last use: what clear --older-than goes by
        except OSError:
            pass
        return model, info

    def store(
        self,
        key: str,
        model: LanguageModel,
        *,
        spec: str,
        label: str,
        tokenizer: str,
        material: dict[str, Any],
        fit_seconds: float | None,
        details: dict[str, Any],
    ) -> Path:
        """Save the fitted ``model`` under ``key`` (the model first, then its description)."""
        model_path, info_path = self._paths(key)
        try:
            model_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LmevalError(
                f"cannot create the model cache folder {model_path.parent}: {exc}"
            ) from None
        save_model(model, model_path, spec, tokenizer)
        info = {
            "format": FORMAT,
            "key": key,
            "label": label,
            "spec": spec,
            "model": model.name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "fit_seconds": fit_seconds,
            "details": details,
            "material": material,
        }
        with atomic_write(info_path, "w", encoding="utf-8") as handle:
            handle.write(_canonical(info) + "\n")
        return model_path

    def entries(self) -> list[Entry]:
        """Every entry (complete or not), most recently used first. Only files named
        as the cache names them (``KK/KEY.lmz``, ``KK/KEY.json``: 32 hex digits, the
        folder their first two) count: nothing else in the folder is ever touched."""
        if not self.root.is_dir():
            return []
        found: dict[str, list[Path]] = {}
        for path in self.root.glob("??/*"):
            match = _ENTRY.fullmatch(path.name)
            if match is None or path.parent.name != match.group(1)[:2] or not path.is_file():
                continue
            found.setdefault(match.group(1), []).append(path)
        result = []
        for key, files in found.items():
            info = self._info(key)
            stats = [p.stat() for p in files if p.exists()]
            result.append(
                Entry(
                    key=key,
                    path=next((p for p in files if p.suffix == ".lmz"), files[0]),
                    size=sum(s.st_size for s in stats),
                    created=_text(info.get("created")),
                    last_used=max((s.st_mtime for s in stats), default=0.0),
                    label=_text(info.get("label")),
                    spec=_text(info.get("spec")),
                    model=_text(info.get("model")),
                    fit_seconds=_number(info.get("fit_seconds")),
                    complete=info.get("key") == key and len(files) == 2,
                )
            )
        return sorted(result, key=lambda e: -e.last_used)

    def _info(self, key: str) -> dict[str, Any]:
        """An entry's description ({} when missing, damaged or not the cache's)."""
        try:
            loaded = json.loads(self._paths(key)[1].read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(loaded, dict) or loaded.get("format") != FORMAT:
            return {}
        return loaded

    def clear(self, older_than: float | None = None) -> tuple[int, int]:
        """Remove entries not used for ``older_than`` seconds (all when ``None``) and
        temporary files of killed writers; the number of entries and bytes removed."""
        now = time.time()
        removed, freed = 0, 0
        for entry in self.entries():
            if older_than is not None and now - entry.last_used < older_than:
                continue
            model_path, info_path = self._paths(entry.key)
            gone = 0
            for path in (info_path, model_path):  # description first: no reader takes it
                try:
                    size = path.stat().st_size
                    path.unlink()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise LmevalError(
                        f"cannot remove {path}: {exc.strerror or exc}: check the cache "
                        "folder's permissions"
                    ) from None
                freed += size
                gone += 1
            removed += 1 if gone else 0
        for tmp in self.root.glob("??/.*.tmp") if self.root.is_dir() else ():
            if not _HEX2.fullmatch(tmp.parent.name):
                continue
            try:
                if now - tmp.stat().st_mtime > max(older_than or 0, STALE_TEMPORARY_SECONDS):
                    freed += tmp.stat().st_size
                    tmp.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise LmevalError(f"cannot remove {tmp}: {exc.strerror or exc}") from None
        for folder in self.root.glob("??") if self.root.is_dir() else ():
            if _HEX2.fullmatch(folder.name):
                try:
                    folder.rmdir()  # only when empty
                except OSError:
                    pass
        return removed, freed


_ENTRY = re.compile(r"([0-9a-f]{32})\.(?:lmz|json)")
_HEX2 = re.compile(r"[0-9a-f]{2}")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) else None


_AGE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_AGE_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` as seconds (a UsageError otherwise)."""
    m = _AGE.match(text)
    if m is None:
        raise UsageError(f"--older-than {text!r}: give an age like 30d, 12h, 90m, 45s or 2w")
    return float(m.group(1)) * _AGE_UNITS[m.group(2).lower()]


def as_cache(cache: bool | str | Path | ModelCache | None) -> ModelCache | None:
    """A ``cache=`` argument as a cache: ``True`` the default folder, a path that folder."""
    if cache is None or cache is False:
        return None
    if cache is True:
        return ModelCache()
    if isinstance(cache, ModelCache):
        return cache
    if isinstance(cache, str | Path):
        return ModelCache(cache)
    raise UsageError(f"cache={cache!r}: give True, False, a folder or a ModelCache")

"""Saved models: one file that any lmeval can score without retraining.

``lmeval compare --save-models DIR`` writes one ``.lmz`` archive per model: a
zip holding ``meta.json`` (model name, spec, tokenizer, vocabulary, lmeval
version) and ``model``, the file the model's own ``save`` wrote (an npz, a
torch checkpoint, ...). ``-m saved:path=FILE.lmz`` loads it with the model's
own ``load``, which never unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LmevalError, one_line
from .files import atomic_write, format_size
from .models import LanguageModel, Param
from .plugins import Registry, active_host
from .tokenizers import Vocabulary
from .version import __version__

FORMAT = "lmeval-model/1"


def save_model(model: LanguageModel, path: Path, spec: str, tokenizer: str) -> None:
    """Write ``model`` (fitted) as an ``.lmz`` archive at ``path``, atomically.

    A model class that overrides ``save`` but not ``load`` is refused before
    anything is written: its file could never be scored.
    """
    cls = type(model)
    if cls.save is LanguageModel.save:
        raise NotImplementedError(f"model {model.name!r} cannot be saved (it has no save())")
    if getattr(cls.load, "__func__", None) is LanguageModel.load.__func__:
        raise LmevalError(
            f"model {model.name!r} has save() but no load(): a saved file could not be "
            "read back, so it is not written (implement load())"
        )
    meta = {
        "format": FORMAT,
        "model": model.name,
        "spec": spec,
        "tokenizer": tokenizer,
        "vocab": model.vocab.to_dict(),
        "lmeval": __version__,
    }
    with tempfile.TemporaryDirectory() as tmp:
        payload = Path(tmp) / "model"
        model.save(payload)
        with atomic_write(path, "wb") as handle, zipfile.ZipFile(handle, "w") as archive:
            archive.writestr("meta.json", json.dumps(meta, ensure_ascii=False, indent=1))
            archive.write(payload, "model")


#: The largest ``meta.json`` read (a word vocabulary of a million types is ~20 MB).
META_MAX_BYTES = 64 * 2**20
#: A member that expands more than this many times its compressed size is refused
#: (lmeval stores members uncompressed, ratio 1; deflated text is ~3-10).
MAX_RATIO = 100
#: The keys ``meta.json`` must have, and their types.
META_KEYS: dict[str, type] = {"format": str, "model": str, "spec": str, "tokenizer": str}


def _member(archive: zipfile.ZipFile, path: Path, name: str, limit: int | None) -> zipfile.ZipInfo:
    """The archive's member ``name``, checked by its declared sizes before a byte is read:
    present, at most ``limit`` bytes, not a decompression bomb. (The sizes it declares
    also bound what is read: a member that expands further is cut off and fails its CRC.)"""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise LmevalError(
            f"{path} has no {name!r} member: it is not a complete saved lmeval model "
            "(save it again with compare --save-models)"
        ) from None
    if limit is not None and info.file_size > limit:
        raise LmevalError(
            f"{path}: its {name} declares {format_size(info.file_size)}, more than the "
            f"{format_size(limit)} a saved model's {name} may hold; it is not one lmeval wrote"
        )
    if info.file_size > 2**20 and info.file_size > MAX_RATIO * max(1, info.compress_size):
        raise LmevalError(
            f"{path}: its {name} expands {format_size(info.compress_size)} into "
            f"{format_size(info.file_size)} (a decompression bomb?); refused"
        )
    return info


def _open_archive(path: Path) -> zipfile.ZipFile:
    if path.exists() and not path.is_dir() and not path.is_file():
        # a device or pipe: zipfile would seek and read it without end (/dev/zero)
        raise LmevalError(f"{path} is not a regular file: give a saved model (.lmz)")
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise LmevalError(f"saved model not found: {path}") from None
    except IsADirectoryError:
        raise LmevalError(f"{path} is a folder, not a saved model (.lmz)") from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise LmevalError(f"{path} is not a saved lmeval model ({one_line(exc)})") from None


def read_meta(path: Path) -> dict[str, Any]:
    """The checked ``meta.json`` of the archive at ``path`` (one-line errors otherwise)."""
    with _open_archive(path) as archive:
        _member(archive, path, "meta.json", META_MAX_BYTES)
        try:
            meta = json.loads(archive.read("meta.json"))
        except Exception as exc:  # zipfile and json raise many kinds (deep nesting too)
            raise LmevalError(f"{path} has a damaged meta.json ({one_line(exc)})") from None
    if not isinstance(meta, dict):
        raise LmevalError(
            f"{path} has a meta.json that is {type(meta).__name__}, not an object: "
            "it is not a saved lmeval model"
        )
    if meta.get("format") != FORMAT:
        raise LmevalError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    for key, kind in META_KEYS.items():
        if not isinstance(meta.get(key), kind):
            raise LmevalError(f"{path} has a meta.json without a {kind.__name__} {key!r}")
    return meta


def load_model(
    path: Path, models: Registry[type[LanguageModel]] | None = None
) -> tuple[LanguageModel, dict[str, Any]]:
    """The model stored at ``path`` and the archive's metadata.

    ``models`` is the registry to find the model's class in; by default that
    of the active plugin host (the comparison or command in progress). The
    archive's members are checked by their declared sizes before any is
    extracted, and errors name ``path``, never the temporary file the model's
    ``load`` read.
    """
    meta = read_meta(path)
    if models is None:
        host = active_host()
        if host is None:
            raise LmevalError(
                "load_model needs the registered models: pass models=lmeval.load_host().models"
            )
        models = host.models
    if meta["model"] not in models:
        raise LmevalError(
            f"{path} was saved by the model {meta['model']!r}, which is not registered here: "
            "install or --plugin the plugin that has it"
        )
    cls = models.get(meta["model"])
    # a model may keep its file mapped past the cleanup (the n-gram does: Linux and macOS
    # unlink it and keep the pages; Windows cannot remove it, and leaves it)
    with (
        tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp,
        _open_archive(path) as archive,
    ):
        info = _member(archive, path, "model", None)
        free = shutil.disk_usage(tmp).free
        if info.file_size > free:
            raise LmevalError(
                f"{path}: its model ({format_size(info.file_size)}) does not fit in the "
                f"{format_size(free)} free in the temporary folder {tmp} (set TMPDIR)"
            )
        try:
            payload = Path(archive.extract(info, tmp))
        except Exception as exc:  # a bad CRC, an unknown compression, encryption
            raise LmevalError(f"{path} has a damaged model member ({one_line(exc)})") from None
        try:
            model = cls.load(payload)
        except Exception as exc:  # a model's own message names the temporary file
            # a damaged file is a run-time failure (1), even where the model says "bad
            # parameter" (2) of the config it read from it
            text = one_line(exc).replace(str(payload), f"{path} (its model)")
            if str(path) not in text:
                text = f"cannot load model from {path}: {text}"
            raise LmevalError(text) from None
    return model, meta


class Saved(LanguageModel):
    """Scores with a model saved by ``--save-models``; fitting does nothing.

    Its vocabulary is the saved one, so the evaluator encodes the test text
    with it (unknown characters become ``<unk>``).
    """

    name = "saved"
    description = "a model saved with --save-models (FILE.lmz), scored without retraining"
    params = (
        Param("path", str, "", "the .lmz file written by --save-models", required=True, path=True),
    )

    def __init__(self, vocab: Vocabulary, **params: Any) -> None:
        super().__init__(vocab, **params)
        self.inner, self.meta = load_model(Path(self.config["path"]))
        self.vocab = self.inner.vocab
        self.tokenizer = self.meta["tokenizer"]
        self.yardstick = self.inner.yardstick
        self.tolerance = self.inner.tolerance

    def fit(self, train_ids: np.ndarray, valid_ids: np.ndarray | None = None) -> None:
        pass  # already fitted

    def score(self, ids: np.ndarray) -> np.ndarray:
        return self.inner.score(ids)

    def next_token_logprobs(self, context_ids: np.ndarray) -> np.ndarray:
        return self.inner.next_token_logprobs(context_ids)

    def generate(self, prefix_ids, n, temperature=1.0, seed=0):
        return self.inner.generate(prefix_ids, n, temperature, seed)

    @property
    def num_params(self) -> int | None:
        return self.inner.num_params

    def details(self) -> dict[str, Any]:
        return {"saved_spec": self.meta["spec"], **self.inner.details()}

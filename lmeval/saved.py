"""Saved models: one file that any lmeval can score without retraining.

``lmeval compare --save-models DIR`` writes one ``.lmz`` archive per model: a
zip holding ``meta.json`` (model name, spec, tokenizer, vocabulary, lmeval
version) and ``model``, the file the model's own ``save`` wrote (an npz, a
torch checkpoint, ...). ``-m saved:path=FILE.lmz`` loads it with the model's
own ``load``, which never unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LmevalError
from .files import atomic_write
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


def read_meta(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as archive:
            meta = json.loads(archive.read("meta.json"))
    except FileNotFoundError:
        raise LmevalError(f"saved model not found: {path}") from None
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise LmevalError(f"{path} is not a saved lmeval model ({exc})") from None
    if meta.get("format") != FORMAT:
        raise LmevalError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def load_model(
    path: Path, models: Registry[type[LanguageModel]] | None = None
) -> tuple[LanguageModel, dict[str, Any]]:
    """The model stored at ``path`` and the archive's metadata.

    ``models`` is the registry to find the model's class in; by default that
    of the active plugin host (the comparison or command in progress).
    """
    meta = read_meta(path)
    if models is None:
        host = active_host()
        if host is None:
            raise LmevalError(
                "load_model needs the registered models: pass models=lmeval.load_host().models"
            )
        models = host.models
    cls = models.get(meta["model"])
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(path) as archive:
        payload = Path(archive.extract("model", tmp))
        try:
            model = cls.load(payload)
        except LmevalError:
            raise
        except Exception as exc:
            raise LmevalError(f"cannot load model from {path}: {exc}") from None
    return model, meta


class Saved(LanguageModel):
    """Scores with a model saved by ``--save-models``; fitting does nothing.

    Its vocabulary is the saved one, so the evaluator encodes the test text
    with it (unknown characters become ``<unk>``).
    """

    name = "saved"
    description = "a model saved with --save-models (FILE.lmz), scored without retraining"
    params = (Param("path", str, "", "the .lmz file written by --save-models", required=True),)

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

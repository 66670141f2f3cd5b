"""Built-in data sets, and the :class:`Dataset` interface plugins register.

``pydoc-topics`` needs no network: it is the English text of the Python
language reference topics that every CPython installation ships
(``pydoc_data.topics``), so ``lmeval compare`` works offline anywhere.
``timemachine`` is H. G. Wells' *The Time Machine* as "Dive into Deep
Learning" distributes it: downloaded once, SHA-1 verified, then cached.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from pathlib import Path

from .errors import LmevalError
from .files import atomic_write, read_text


class Dataset(ABC):
    """A named text. ``load()`` returns it (downloading first if needed)."""

    name: str
    description: str = ""

    @abstractmethod
    def load(self) -> str:
        """The whole text."""

    @property
    def size_bytes(self) -> int | None:
        """Size in UTF-8 bytes, when known without loading."""
        return None

    @property
    def cached(self) -> bool | None:
        """Whether the text is available without network (``None``: not applicable)."""
        return None


class PydocTopics(Dataset):
    name = "pydoc-topics"
    description = (
        "Python language reference topics shipped with CPython (pydoc_data.topics), "
        "English technical prose; offline everywhere"
    )

    def load(self) -> str:
        from pydoc_data.topics import topics

        return "\n\n".join(topics[key].strip("\n") for key in sorted(topics)) + "\n"

    @property
    def size_bytes(self) -> int:
        return len(self.load().encode("utf-8"))


def cache_dir() -> Path:
    """Where downloads are kept: ``$LMEVAL_CACHE_DIR``, else the user cache folder."""
    env = os.environ.get("LMEVAL_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lmeval"))


class RemoteText(Dataset):
    """A text downloaded on first use from ``url``, verified by SHA-1, cached."""

    def __init__(
        self, name: str, url: str, sha1: str, size: int, description: str, timeout: float = 30.0
    ) -> None:
        self.name = name
        self.url = url
        self.sha1 = sha1
        self.size = size
        self.description = description
        self.timeout = timeout

    @property
    def path(self) -> Path:
        return cache_dir() / f"{self.name}-{self.sha1[:10]}.txt"

    @property
    def size_bytes(self) -> int:
        return self.size

    @property
    def cached(self) -> bool:
        return self.path.is_file()

    def load(self) -> str:
        if not self.cached:
            self.download()
        return read_text(self.path)

    def download(self) -> Path:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                data = response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise LmevalError(
                f"cannot download data set {self.name!r} from {self.url} ({reason}); "
                "check the network, or pass the text with --text FILE"
            ) from None
        digest = hashlib.sha1(data).hexdigest()
        if digest != self.sha1:
            raise LmevalError(
                f"download of {self.name!r} from {self.url} has SHA-1 {digest}, "
                f"expected {self.sha1}; nothing was cached"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LmevalError(f"cannot create cache folder {self.path.parent}: {exc}") from None
        with atomic_write(self.path, "wb") as handle:
            handle.write(data)
        return self.path


D2L_DATA_URL = "http://d2l-data.s3-accelerate.amazonaws.com/"

TIME_MACHINE = RemoteText(
    name="timemachine",
    url=D2L_DATA_URL + "timemachine.txt",
    sha1="090b5e7e70c295757f55df93cb0a180b9691891a",
    size=178_979,
    description="H. G. Wells, The Time Machine, as Dive into Deep Learning ships it (download)",
)

BUILTIN_DATASETS: tuple[Dataset, ...] = (PydocTopics(), TIME_MACHINE)

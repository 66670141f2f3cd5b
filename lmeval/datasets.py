"""Built-in data sets, and the :class:`Dataset` interface plugins register.

``pydoc-topics`` needs no network: it is the English text of the Python
language reference topics that every CPython installation ships
(``pydoc_data.topics``), so ``lmeval compare`` works offline anywhere.
``timemachine`` is H. G. Wells' *The Time Machine* as "Dive into Deep
Learning" distributes it: downloaded once, SHA-1 verified, then cached.
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LmevalError
from .files import atomic_write, read_text

if TYPE_CHECKING:
    import http.client
    import urllib.error


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


class _DownloadFailed(Exception):
    """Why a download failed, in a few words: the caller makes it a one-line LmevalError."""


class RemoteText(Dataset):
    """A text downloaded on first use from ``url``, verified by SHA-1, cached.

    ``size`` is the file's exact size in bytes: a download is stopped as soon as
    the server sends more, so memory stays bounded whatever the server does.
    ``timeout`` bounds each wait for the server, ``deadline`` the whole download
    (connecting, redirects, headers and body), both in seconds; a plugin serving a
    large file over a slow link raises ``deadline``. The cached file is checked
    against ``size`` and ``sha1`` on every :meth:`load`, and downloaded again
    when it does not match.
    """

    def __init__(
        self,
        name: str,
        url: str,
        sha1: str,
        size: int,
        description: str,
        timeout: float = 30.0,
        deadline: float = 120.0,
    ) -> None:
        if not (0 < timeout < math.inf and 0 < deadline < math.inf):
            raise ValueError(
                f"data set {name!r}: timeout and deadline must be positive numbers of seconds, "
                f"not {timeout!r} and {deadline!r}"
            )
        self.name = name
        self.url = url
        self.sha1 = sha1
        self.size = size
        self.description = description
        self.timeout = timeout
        self.deadline = deadline

    @property
    def path(self) -> Path:
        return cache_dir() / f"{self.name}-{self.sha1[:10]}.txt"

    @property
    def size_bytes(self) -> int:
        return self.size

    @property
    def cached(self) -> bool:
        """A cached file of the expected size (``lmeval datasets``: "available offline").

        Only the size is checked here, so that listing data sets reads no file;
        :meth:`load` checks the SHA-1 too, and downloads again a file of the
        right size whose content was changed.
        """
        try:
            info = self.path.stat()
        except OSError:
            return False
        return stat.S_ISREG(info.st_mode) and info.st_size == self.size

    def load(self) -> str:
        if self.path.exists():
            damage = self._damage()
            if damage is not None:
                self._replace_damaged(damage)
        else:
            self.download()
        return read_text(self.path)

    def _damage(self) -> str | None:
        """What is wrong with the cached file (``None``: it is the registered text).

        The file is hashed on every use rather than trusted by a marker of its size
        and mtime: ``load`` reads it whole anyway and hashing costs a fraction of that
        (well under a millisecond per 100 KB), while a marker is fooled by an edit
        that keeps the size and restores the mtime (``touch -r``), and would be one
        more file to keep consistent.
        """
        try:
            with open(self.path, "rb") as handle:
                found = os.fstat(handle.fileno()).st_size
                if found != self.size:
                    return f"{found} bytes, expected {self.size}"
                digest = hashlib.file_digest(handle, "sha1").hexdigest()
        except OSError as exc:
            return f"unreadable: {exc.strerror or exc}"
        return None if digest == self.sha1 else "wrong SHA-1"

    def _replace_damaged(self, damage: str) -> None:
        try:
            self._store(self._fetch_verified())
        except _DownloadFailed as exc:
            raise LmevalError(
                f"data set {self.name!r}: the cached file is damaged ({damage}) and downloading "
                f"{self.url} again failed ({exc}): delete {self.path}, "
                "or pass the text with --text FILE"
            ) from None

    def download(self) -> Path:
        """Download, verify and cache the text (replacing any cached file atomically).

        Nothing is written unless the whole text arrived and its SHA-1 matches.
        """
        try:
            data = self._fetch_verified()
        except _DownloadFailed as exc:
            raise LmevalError(
                f"cannot download data set {self.name!r} from {self.url}: {exc}; "
                "check the network and retry, or pass the text with --text FILE"
            ) from None
        self._store(data)
        return self.path

    def _store(self, data: bytes) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LmevalError(f"cannot create cache folder {self.path.parent}: {exc}") from None
        with atomic_write(self.path, "wb") as handle:
            handle.write(data)

    def _fetch_verified(self) -> bytes:
        data = self._fetch()
        if len(data) < self.size:
            raise _DownloadFailed(f"it ended after {len(data)} of {self.size} bytes")
        digest = hashlib.sha1(data).hexdigest()
        if digest != self.sha1:
            raise _DownloadFailed(
                f"the file there has SHA-1 {digest}, expected {self.sha1}; nothing was cached"
            )
        return data

    def _fetch(self) -> bytes:
        """The body at ``url``: at most ``size`` + 1 bytes, within ``deadline`` seconds.

        urllib's timeout bounds each wait for the server, not the whole: a server
        that sends its status line, headers or body one byte at a time within the
        timeout would hold the download for ever. So the download runs in a daemon
        thread that this caller waits for at most ``deadline`` seconds; the thread
        checks the deadline between reads itself, so that it also stops soon after
        the caller gave up (within one ``timeout``), and what it read is dropped.
        """
        until = time.monotonic() + self.deadline
        outcome: dict[str, bytes | BaseException] = {}
        worker = threading.Thread(
            target=self._receive, args=(until, outcome), name=f"download {self.name}", daemon=True
        )
        worker.start()
        worker.join(self.deadline)
        if worker.is_alive():
            raise _DownloadFailed(f"it took longer than {self.deadline:g} s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["data"]  # type: ignore[return-value]

    def _receive(self, until: float, outcome: dict[str, bytes | BaseException]) -> None:
        """Run in the download thread: the body, or the exception, into ``outcome``."""
        try:
            outcome["data"] = self._request(until)
        except Exception as exc:  # handed to the waiting caller, which raises it
            outcome["error"] = exc

    def _request(self, until: float) -> bytes:
        import http.client
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(self.url, timeout=min(self.timeout, self.deadline)) as r:
                return self._read_body(r, until)
        except urllib.error.HTTPError as exc:
            exc.close()
            reason = _http_error_reason(exc)
        except urllib.error.URLError as exc:  # connecting failed; the reason is an OSError
            reason = self._os_reason(exc.reason, until)
        except http.client.RemoteDisconnected:  # before BadStatusLine and OSError: it is both
            reason = "the server closed the connection without an HTTP answer"
        except http.client.BadStatusLine as exc:
            reason = f"the answer is not HTTP (it begins {ascii(str(exc.line)[:40])})"
        except http.client.HTTPException as exc:  # a header line too long, too many headers
            reason = f"the answer is not valid HTTP ({type(exc).__name__})"
        except OSError as exc:  # a timeout or reset after connecting
            reason = self._os_reason(exc, until)
        except ValueError as exc:  # not a URL urllib can open
            reason = str(exc)
        raise _DownloadFailed(reason)

    def _read_body(self, response: http.client.HTTPResponse, until: float) -> bytes:
        """Read what has arrived (``read1``) until the end, checking size and deadline."""
        import http.client

        chunks: list[bytes] = []
        got = 0
        while time.monotonic() < until:
            try:
                chunk = response.read1(min(_CHUNK, self.size + 1 - got))
            except http.client.IncompleteRead:  # a broken chunked body: too short
                break
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
            if got > self.size:
                raise _DownloadFailed(f"the server sent more than the expected {self.size} bytes")
        else:
            raise _DownloadFailed(f"it took longer than {self.deadline:g} s")
        return b"".join(chunks)

    def _os_reason(self, exc: object, until: float) -> str:
        if isinstance(exc, TimeoutError):
            if time.monotonic() >= until:
                return f"it took longer than {self.deadline:g} s"
            return f"the server sent nothing for {min(self.timeout, self.deadline):g} s"
        if isinstance(exc, OSError):
            return exc.strerror or str(exc) or type(exc).__name__
        return str(exc)


_CHUNK = 1 << 16
"""Bytes asked for per read: ``read1`` returns what has arrived, up to this."""


def _http_error_reason(exc: urllib.error.HTTPError) -> str:
    """An HTTP error status in a few words; never the server's own text, which may be hostile."""
    import http

    try:
        phrase = " " + http.HTTPStatus(exc.code).phrase
    except ValueError:
        phrase = ""
    if "infinite loop" in str(exc.msg):  # urllib's own three-line message
        return f"it redirects in a loop (HTTP {exc.code}{phrase}, too many redirects)"
    if 300 <= exc.code < 400:
        return f"HTTP {exc.code}{phrase}, a redirect that cannot be followed"
    return f"HTTP {exc.code}{phrase}"


D2L_DATA_URL = "http://d2l-data.s3-accelerate.amazonaws.com/"

TIME_MACHINE = RemoteText(
    name="timemachine",
    url=D2L_DATA_URL + "timemachine.txt",
    sha1="090b5e7e70c295757f55df93cb0a180b9691891a",
    size=178_979,
    description="H. G. Wells, The Time Machine, as Dive into Deep Learning ships it (download)",
)

BUILTIN_DATASETS: tuple[Dataset, ...] = (PydocTopics(), TIME_MACHINE)

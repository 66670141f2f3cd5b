"""Reading user files safely and writing outputs atomically."""

from __future__ import annotations

import gzip
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import LmevalError


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    Writers that take a file object (``np.savez``, ``torch.save``) get the
    handle in binary mode (``mode="wb"``).

    Readers never see a half-written file, and a failure (an exception, Ctrl-C)
    leaves any previous ``path`` untouched and no temporary file behind.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise LmevalError(f"cannot write {target}: folder {parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise LmevalError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with _suppress_os_error():
            os.unlink(tmp)
        raise


@contextmanager
def _suppress_os_error() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass


def read_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> str:
    """The text of a file (``.gz`` decompressed), with one-line errors for bad input.

    Refuses missing, unreadable, empty and binary files (a NUL byte) and names
    the byte offset of invalid input for the encoding.
    """
    p = Path(path)
    if not p.exists():
        raise LmevalError(f"file not found: {p}")
    if p.is_dir():
        raise LmevalError(f"{p} is a folder, not a text file")
    try:
        if p.suffix == ".gz":
            with gzip.open(p, "rb") as handle:
                data = handle.read()
        else:
            data = p.read_bytes()
    except (OSError, EOFError) as exc:
        raise LmevalError(f"cannot read {p}: {getattr(exc, 'strerror', None) or exc}") from None
    if not data.strip():
        raise LmevalError(f"{p} is empty: give a file with some text")
    if b"\x00" in data[:65536] and not encoding.lower().startswith("utf-16"):
        raise LmevalError(f"{p} looks binary (it contains NUL bytes): give a text file")
    try:
        text = data.decode(encoding)
    except LookupError:
        raise LmevalError(f"unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as exc:
        raise LmevalError(
            f"{p} is not valid {encoding} (byte {exc.start}): pass --encoding, e.g. latin-1"
        ) from None
    return text.replace("\r\n", "\n")

"""Reading user files safely and writing outputs atomically."""

from __future__ import annotations

import gzip
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import LmevalError, UsageError


def check_writable(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path if a file can be written there, else a one-line :class:`UsageError`.

    Called before long work starts, so a typo in ``--output`` costs nothing.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UsageError(f"cannot write {target}: it is a folder, give a file name")
    if not parent.is_dir():
        raise UsageError(f"cannot write {target}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) and not _is_special(target):
        raise UsageError(f"cannot write {target}: folder {parent} is not writable")
    return target


def _is_special(path: Path) -> bool:
    """A device, pipe or socket (``/dev/stdout``): written in place, never replaced."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    Writers that take a file object (``np.savez``, ``torch.save``) get the
    handle in binary mode (``mode="wb"``). Readers never see a half-written
    file, and a failure (an exception, Ctrl-C) leaves any previous ``path``
    untouched and no temporary file behind. The result gets the permissions
    the old file had (a new file: the usual ones under the umask). A device or
    pipe (``/dev/stdout``) is written directly, as renaming over it would
    replace it.
    """
    target = check_writable(path)
    if _is_special(target):
        with open(target, mode, **kwargs) as handle:
            yield handle
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise LmevalError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        os.chmod(tmp, _mode_for(target))
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with _suppress_os_error():
            os.unlink(tmp)
        raise


def _mode_for(target: Path) -> int:
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


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
        raise UsageError(f"unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as exc:
        raise LmevalError(
            f"{p} is not valid {encoding} (byte {exc.start}): pass --encoding, e.g. latin-1"
        ) from None
    # Line ends are normalised and a byte-order mark dropped: checksums and byte
    # counts describe the text as lmeval reads it, not the raw file.
    return text.removeprefix("\ufeff").replace("\r\n", "\n")

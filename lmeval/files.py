"""Reading user files safely and writing outputs atomically.

What lmeval promises about files (the README's "Errors" section):

* An output is written to a temporary file beside it and renamed over it, so a
  failure (a full disk, an exception, Ctrl-C) leaves the old file intact and
  no temporary file behind. A symbolic link is followed: its target is
  replaced, the link stays. A device, pipe or ``-`` (standard output) is
  written in place, never renamed over.
* An input is read with a size limit (:data:`DEFAULT_MAX_BYTES`, ``.gz``
  files after decompression), so an endless stream (``/dev/zero``) or a
  decompression bomb ends in an error, not in exhausted memory.
"""

from __future__ import annotations

import codecs
import errno
import gzip
import os
import re
import stat
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import LmevalError, UsageError

#: The most bytes :func:`read_text` reads from one file unless told otherwise (512 MiB:
#: ten times enwik8; a character model's ids take 8 bytes per character on top).
DEFAULT_MAX_BYTES = 512 * 2**20

#: Read this much at a time, so that a limit or a NUL byte stops an endless input early.
_CHUNK = 2**20

STDOUT = "-"

#: Paths that are this process's own output streams: written through the open stream
#: (which may be a file opened for appending), never reopened, which would truncate it.
_STREAMS = {
    STDOUT: lambda: sys.stdout,
    "/dev/stdout": lambda: sys.stdout,
    "/dev/fd/1": lambda: sys.stdout,
    "/proc/self/fd/1": lambda: sys.stdout,
    "/dev/stderr": lambda: sys.stderr,
    "/dev/fd/2": lambda: sys.stderr,
    "/proc/self/fd/2": lambda: sys.stderr,
}


def parse_size(text: str) -> int:
    """``"512M"``, ``"2G"``, ``"100k"``, ``"1000"`` -> bytes (binary multiples)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text)
    if m is None:
        raise UsageError(f"bad size {text!r}: give bytes, or a number with K, M or G (512M)")
    scale = 1024 ** " KMGT".index(m.group(2).upper() or " ")
    value = int(float(m.group(1)) * scale)
    if value < 1:
        raise UsageError(f"bad size {text!r}: must be at least one byte")
    return value


def format_size(n: int) -> str:
    """Bytes for a person: ``536870912`` -> ``"512 MiB"``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


# -- writing ------------------------------------------------------------------


def _target(path: str | os.PathLike[str]) -> Path:
    """Where writing to ``path`` lands: a symbolic link's final target (made
    absolute), else ``path``."""
    p = Path(path)
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def _writes_in_place(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` must be written where it is: ``-``, an existing device, pipe or
    socket (``/dev/stdout``, ``/dev/full``), or anything under ``/dev`` or ``/proc``."""
    if str(path) == STDOUT:
        return True
    p = Path(path)
    for where in (p, Path(os.path.realpath(p))):
        if where.is_absolute() and where.parts[1:2] in (("dev",), ("proc",)):
            return True
    try:
        mode = p.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def check_writable(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path if a file can be written there, else a one-line :class:`UsageError`.

    Called before long work starts, so a typo in ``--output`` costs nothing.
    """
    if _writes_in_place(path):
        return Path(path)
    target = _target(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UsageError(f"cannot write {path}: it is a folder, give a file name")
    if not parent.is_dir():
        raise UsageError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"cannot write {path}: folder {parent} is not writable")
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"cannot write {path}: the file is read-only (it is kept as it is)")
    return target


def write_error(path: str | os.PathLike[str], exc: OSError) -> LmevalError:
    """The one-line error for a failed write to ``path``; a full disk names the device."""
    if exc.errno == errno.ENOSPC:
        if _writes_in_place(path):
            return LmevalError(f"cannot write {path}: no space left on device {path}")
        return LmevalError(
            f"cannot write {path}: no space left on {_device_of(path)}; "
            "free some space or write elsewhere (any previous file is unchanged)"
        )
    if exc.errno == errno.EDQUOT:
        return LmevalError(f"cannot write {path}: disk quota exceeded (any previous file kept)")
    return LmevalError(f"cannot write {path}: {exc.strerror or exc}")


def _device_of(path: str | os.PathLike[str]) -> str:
    """The file system a path is on, as a person knows it: ``the file system at /home``
    (the mount point of its folder)."""
    folder = Path(os.path.abspath(_target(path).parent))
    try:
        dev = folder.stat().st_dev
        while folder.parent != folder and folder.parent.stat().st_dev == dev:
            folder = folder.parent
    except OSError:
        pass
    return f"the file system at {folder}"


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    Writers that take a file object (``np.savez``, ``torch.save``) get the
    handle in binary mode (``mode="wb"``). Readers never see a half-written
    file, and a failure (an exception, Ctrl-C, a full disk) leaves any previous
    ``path`` untouched and no temporary file behind; a full disk is a one-line
    :class:`LmevalError` naming the device. The result gets the permissions the
    old file had (a new file: the usual ones under the umask). A symbolic link
    is followed (its target is replaced, the link kept); ``-`` is standard
    output, and a device or pipe (``/dev/stdout``) is written in place, as
    renaming over it would replace it.
    """
    if _writes_in_place(path):
        with _in_place(path, mode, **kwargs) as handle:
            yield handle
        return
    target = check_writable(path)
    try:
        # the name cut short: a legal 250-byte name must not give an illegal temporary one
        short = target.name.encode()[:180].decode(errors="ignore")
        fd, tmp = tempfile.mkstemp(prefix=f".{short}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        os.chmod(tmp, _mode_for(target))
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with _suppress_os_error():
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise write_error(path, exc) from None
        raise


@contextmanager
def _in_place(path: str | os.PathLike[str], mode: str, **kwargs) -> Iterator[IO]:
    """A handle on ``-`` (standard output, left open) or on a device or pipe."""
    try:
        stream = _STREAMS.get(str(path), lambda: None)()
        if stream is not None:
            stream = stream.buffer if "b" in mode else stream
            yield stream
            stream.flush()
            return
        with open(path, mode, **kwargs) as handle:
            yield handle
    except OSError as exc:
        if exc.errno is None:
            raise
        raise write_error(path, exc) from None


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


# -- reading ------------------------------------------------------------------


def read_bytes(
    path: str | os.PathLike[str],
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    what: str = "file",
    check: Callable[[bytes, int], None] | None = None,
) -> bytes:
    """The bytes of a file (``.gz`` decompressed), at most ``max_bytes`` of them.

    Reads in chunks, so an endless stream or a decompression bomb is refused
    after ``max_bytes`` (a one-line :class:`LmevalError` saying how to raise
    the limit) instead of filling memory; ``check(chunk, offset)`` sees each
    chunk as it arrives and may refuse the input early by raising. Missing
    files, folders and damaged ``.gz`` files are one-line errors too.
    """
    return b"".join(_byte_chunks(Path(path), max_bytes, what, check, _CHUNK))


def _byte_chunks(
    p: Path,
    max_bytes: int,
    what: str,
    check: Callable[[bytes, int], None] | None,
    chunk_bytes: int,
) -> Iterator[bytes]:
    """The bytes of ``p`` in chunks of ``chunk_bytes``, as :func:`read_bytes` reads them."""
    if not p.exists():
        raise LmevalError(f"{what} not found: {p}")
    if p.is_dir():
        raise LmevalError(f"{p} is a folder, not a {what}")
    size = 0
    try:
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rb") as handle:
            while chunk := handle.read(min(chunk_bytes, max_bytes + 1 - size)):
                if check is not None:
                    check(chunk, size)
                size += len(chunk)
                if size > max_bytes:
                    raise LmevalError(
                        f"{p} holds more than {format_size(max_bytes)}"
                        + (" once decompressed" if p.suffix == ".gz" else "")
                        + f" (the limit): pass --max-bytes {_larger(max_bytes)} to read more"
                    )
                yield chunk
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise LmevalError(f"{p} is a damaged gzip file ({exc or 'it ends early'})") from None
    except OSError as exc:
        raise LmevalError(f"cannot read {p}: {exc.strerror or exc}") from None


def _larger(limit: int) -> str:
    """A limit four times ``limit``, spelled as ``--max-bytes`` takes it."""
    bigger = limit * 4
    for suffix, scale in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if bigger >= scale and bigger % scale == 0:
            return f"{bigger // scale}{suffix}"
    return str(bigger)


def read_text(
    path: str | os.PathLike[str], encoding: str = "utf-8", max_bytes: int = DEFAULT_MAX_BYTES
) -> str:
    """The text of a file (``.gz`` decompressed), with one-line errors for bad input.

    Refuses missing, unreadable, empty, binary (a NUL byte anywhere) and
    oversized files (more than ``max_bytes``), points a UTF-16 file at
    ``--encoding``, and names the byte offset of input invalid for the encoding.
    """
    p = Path(path)
    wide, refuse_binary = _text_checks(p, encoding)
    data = read_bytes(p, max_bytes, check=refuse_binary)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise _undecodable(p, encoding, wide, data, exc.start) from None
    except (UnicodeError, LookupError, TypeError) as exc:  # a codec that is not for text
        raise UsageError(f"--encoding {encoding} cannot read text files ({exc})") from None
    _refuse_nul_character(p, encoding, wide, text, 0)
    # Line ends are normalised and a byte-order mark dropped: checksums and byte
    # counts describe the text as lmeval reads it, not the raw file.
    text = text.removeprefix("\ufeff")
    if "\r\n" in text:  # no copy of a text that has none
        text = text.replace("\r\n", "\n")
    if not text or text.isspace():
        raise LmevalError(f"{p} is empty: give a file with some text")
    return text


def _text_checks(p: Path, encoding: str) -> tuple[bool, Callable[[bytes, int], None]]:
    """Whether ``encoding`` is UTF-16 or UTF-32, and the check that refuses a binary
    file as its bytes arrive; an encoding unknown or not for text is refused here."""
    try:
        canonical = codecs.lookup(encoding).name
        b"x".decode(encoding, "ignore")  # a codec that is not for text (base64) refuses
    except LookupError as exc:
        if "text encoding" in str(exc):
            raise UsageError(f"--encoding {encoding} cannot read text files ({exc})") from None
        raise UsageError(
            f"unknown encoding {encoding!r}: give one Python knows, e.g. utf-8"
        ) from None
    except (UnicodeError, TypeError) as exc:
        raise UsageError(f"--encoding {encoding} cannot read text files ({exc})") from None
    wide = canonical.startswith(("utf-16", "utf-32"))

    def refuse_binary(chunk: bytes, offset: int) -> None:
        """A NUL byte, wherever it is, before the rest of the file is read."""
        if not wide and (nul := chunk.find(b"\x00")) >= 0:
            if offset == 0 and (wide_kind := _wide_encoding(chunk)) is not None:
                raise LmevalError(f"{p} looks like {wide_kind} text: pass --encoding {wide_kind}")
            raise LmevalError(
                f"{p} looks binary (a NUL byte at offset {offset + nul:,}): give a text file"
            )

    return wide, refuse_binary


def _undecodable(p: Path, encoding: str, wide: bool, head: bytes, at: int) -> LmevalError:
    """The error for bytes invalid in ``encoding`` at byte ``at`` (``head``: the
    file's first bytes, to tell UTF-16 text read as UTF-8)."""
    if not wide and (wide_kind := _wide_encoding(head)) is not None:
        return LmevalError(f"{p} looks like {wide_kind} text: pass --encoding {wide_kind}")
    return LmevalError(f"{p} is not valid {encoding} (byte {at}): pass --encoding, e.g. latin-1")


def _refuse_nul_character(p: Path, encoding: str, wide: bool, text: str, before: int) -> None:
    """A NUL character in UTF-16/32 text (``before``: characters read earlier)."""
    if wide and (nul := text.find("\x00")) >= 0:
        raise LmevalError(
            f"{p} decoded as {encoding} holds a NUL character (character {before + nul:,}): "
            "it is binary, or in another encoding (utf-32? utf-16-be?)"
        )


#: Bytes per piece of :func:`iter_text` unless told otherwise.
PIECE_BYTES = 2**20
_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def iter_text(
    path: str | os.PathLike[str],
    encoding: str = "utf-8",
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    piece_bytes: int | None = None,
) -> Iterator[str]:
    """The text :func:`read_text` returns, in pieces of whole lines (about
    ``piece_bytes`` each, :data:`PIECE_BYTES` by default; only the last may end
    without a newline). Joined, the pieces are that text: a byte-order mark
    dropped, ``\\r\\n`` made ``\\n``. The checks are ``read_text``'s, made as the
    bytes arrive: a file with several faults may be refused for another of them
    first, and after some pieces (an invalid byte far into the file, a file of
    nothing but spaces). Memory is one piece, whatever the file's size.
    """
    p = Path(path)
    wide, refuse_binary = _text_checks(p, encoding)
    decoder = None
    head = b""  # the file's first bytes, to tell a UTF-16 file decoded as UTF-8
    offset = 0  # bytes handed to the decoder so far
    chars = 0  # characters yielded so far
    hold = ""  # a \r that may be the first half of a \r\n split between chunks
    line: list[str] = []  # the text after the last newline so far, in parts
    blank = True  # nothing but white space so far
    chunks = _byte_chunks(p, max_bytes, "file", refuse_binary, piece_bytes or PIECE_BYTES)
    for chunk in _with_end(chunks):
        final = chunk is None
        if decoder is None:
            head = chunk[:4096] if chunk else b""
            decoder = _decoder_for(encoding, head)
        try:
            pending = len(decoder.getstate()[0])
            text = decoder.decode(b"" if final else chunk, final=final)
        except UnicodeDecodeError as exc:
            raise _undecodable(p, encoding, wide, head, offset - pending + exc.start) from None
        except UnicodeError as exc:
            raise UsageError(f"--encoding {encoding} cannot read text files ({exc})") from None
        if not final:
            offset += len(chunk)
        if not chars and not line and text:
            text = text.removeprefix("\ufeff")
        text = hold + text
        hold = "\r" if text.endswith("\r") and not final else ""
        if hold:
            text = text[:-1]
        if "\r\n" in text:  # no copy of a text that has none
            text = text.replace("\r\n", "\n")
        _refuse_nul_character(p, encoding, wide, text, chars + sum(map(len, line)))
        blank = blank and text.isspace() if text else blank
        cut = len(text) if final else text.rfind("\n") + 1
        if not cut and not final:
            line.append(text)  # a line longer than a chunk: joined once, when it ends
            continue
        piece = "".join([*line, text[:cut]])
        line = [text[cut:]] if cut < len(text) else []
        if piece:
            chars += len(piece)
            yield piece
    if blank:
        raise LmevalError(f"{p} is empty: give a file with some text")


def _decoder_for(encoding: str, head: bytes) -> codecs.IncrementalDecoder:
    """An incremental decoder of ``encoding``; UTF-16 or UTF-32 text without a
    byte-order mark in this machine's byte order, as ``bytes.decode`` reads it."""
    canonical = codecs.lookup(encoding).name
    if canonical in ("utf-16", "utf-32") and not head.startswith(_BOMS):
        encoding = f"{canonical}-{'le' if sys.byteorder == 'little' else 'be'}"
    return codecs.getincrementaldecoder(encoding)()


def _with_end(chunks: Iterator[bytes]) -> Iterator[bytes | None]:
    """The chunks, then ``None`` (the decoder's final call)."""
    yield from chunks
    yield None


def _wide_encoding(data: bytes) -> str | None:
    """The encoding ``data`` is in when it looks like UTF-32 or UTF-16 (a byte-order
    mark, or ASCII text with NULs in the other bytes of each unit) and decodes so."""
    head = data[:4096]
    if len(head) < 8:
        return None
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        guess = "utf-32"
    elif head.startswith((b"\xff\xfe", b"\xfe\xff")):
        guess = "utf-16"
    else:
        lanes = [head[i::4].count(0) / len(head[i::4]) for i in range(4)]
        if sum(share > 0.9 for share in lanes) == 3:
            guess = "utf-32-le" if lanes[0] < 0.1 else "utf-32-be"
        elif lanes[0] > 0.9 and lanes[2] > 0.9 and lanes[1] < 0.1 and lanes[3] < 0.1:
            guess = "utf-16-be"
        elif lanes[1] > 0.9 and lanes[3] > 0.9 and lanes[0] < 0.1 and lanes[2] < 0.1:
            guess = "utf-16-le"
        else:
            return None
    try:  # data may be the head of a file, cut inside a character
        codecs.getincrementaldecoder(guess)().decode(data)
    except UnicodeDecodeError:
        return None
    return guess

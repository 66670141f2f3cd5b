"""The arrays of a saved n-gram model, memory-mapped where the file allows it.

A model is saved as an npz file whose members are stored, not compressed, so
that loading maps each array straight from the file instead of reading it:
a model of gigabytes loads at once and its pages are read as scoring touches
them (and shared by every process that maps the same file). Members that are
compressed (files written by earlier versions) or small are read as usual.
Nothing is unpickled: an array of objects is refused.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

#: Members smaller than this are read, not mapped (a page each is no saving).
MAP_FROM_BYTES = 1 << 16


def save_arrays(path, arrays: dict[str, np.ndarray]) -> None:
    """``arrays`` as an uncompressed npz at ``path`` (a path or a binary file)."""
    np.savez(path, **arrays)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of the npz at ``path``: mapped read-only where a member is stored
    uncompressed and large, else read (never unpickled)."""
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if info.compress_type == zipfile.ZIP_STORED and info.file_size >= MAP_FROM_BYTES:
                mapped = _mapped(path, raw, info)
                if mapped is not None:
                    out[name] = mapped
                    continue
            with archive.open(info) as member:
                out[name] = np.lib.format.read_array(member, allow_pickle=False)
    return out


def _mapped(path: Path, raw, info: zipfile.ZipInfo) -> np.ndarray | None:
    """The member's array mapped from the file, or ``None`` when it cannot be (an
    object array, a header numpy does not know)."""
    raw.seek(info.header_offset)
    local = raw.read(30)
    if local[:4] != b"PK\x03\x04":
        return None
    name_length = int.from_bytes(local[26:28], "little")
    extra_length = int.from_bytes(local[28:30], "little")
    raw.seek(info.header_offset + 30 + name_length + extra_length)
    try:
        version = np.lib.format.read_magic(raw)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(raw)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(raw)
    except ValueError:
        return None
    if dtype.hasobject or not shape:
        return None
    return np.memmap(
        path, dtype=dtype, mode="r", offset=raw.tell(), shape=shape, order="F" if fortran else "C"
    )

"""Shared fixtures.

``shared``: the folder of real corpora and KenLM references beside the
repository (``../shared``). Tests that need it skip with a reason when absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep installed third-party plugins out of the test run: only lmeval's own load.
os.environ["LMEVAL_LOAD_ENTRY_POINTS"] = "0"
os.environ.pop("LMEVAL_PLUGINS", None)

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    """``../shared`` (corpora/ and reference/), or skip when this checkout has none."""
    if not (SHARED / "corpora").is_dir():
        pytest.skip(f"needs the shared corpora folder {SHARED} (absent in this checkout)")
    return SHARED


@pytest.fixture
def write(tmp_path):
    """write(name, content) -> path of a new file in tmp_path (str: UTF-8, bytes: raw)."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return _write


@pytest.fixture
def small_text(write) -> Path:
    """A 40-line English text: enough lines for an 80/10/10 split."""
    lines = [
        f"the time traveller said line {i} was {'odd' if i % 2 else 'even'}." for i in range(40)
    ]
    return write("small.txt", "\n".join(lines) + "\n")


@pytest.fixture
def numbered_text(write):
    """numbered_text(n) -> path of an n-line English text whose lines differ by number."""

    def _numbered(n: int) -> Path:
        lines = [
            f"the time traveller said line {i} was {'odd' if i % 3 else 'even'}." for i in range(n)
        ]
        return write(f"numbered{n}.txt", "\n".join(lines) + "\n")

    return _numbered

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

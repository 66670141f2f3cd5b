"""The source distribution carries the licence and a test suite that runs from it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Not part of a source tree: environments, caches and earlier build outputs.
NOT_SOURCE = (".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "*_cache")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    """The sdist built from a copy of this source tree (the checkout is left alone)."""
    pytest.importorskip("setuptools", minversion="77", reason="building needs setuptools>=77")
    tmp = tmp_path_factory.mktemp("sdist")
    tree, out = tmp / "tree", tmp / "out"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    out.mkdir()
    build = f"from setuptools import build_meta; print(build_meta.build_sdist({str(out)!r}))"
    done = subprocess.run(
        [sys.executable, "-c", build], cwd=tree, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out / done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_sdist_has_the_license_and_the_whole_test_suite(sdist):
    top = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.removeprefix(f"{top}/") for name in tar.getnames()}
        assert {"LICENSE", "README.md", "pyproject.toml", "PKG-INFO"} <= names
        license_text = tar.extractfile(f"{top}/LICENSE").read()
        pkg_info = tar.extractfile(f"{top}/PKG-INFO").read()
    # everything the tests import or read, not only the test_*.py files
    assert {"tests/conftest.py", "tests/cheating_models.py", "docs/plugins.md"} <= names
    local = {f"tests/{p.name}" for p in (ROOT / "tests").glob("*.py")}
    assert local <= names, local - names
    assert b"MIT License" in license_text and b"the lmeval developers" in license_text
    assert b"License-Expression: MIT" in pkg_info and b"License-File: LICENSE" in pkg_info


@pytest.mark.slow
def test_tests_run_from_the_unpacked_sdist(sdist, tmp_path):
    """A few test files that need conftest.py's fixtures, the helper models and the docs."""
    with tarfile.open(sdist) as tar:
        # the "data" filter (Python 3.11.4+) refuses links and paths out of tmp_path
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp_path, **safe)
    (unpacked,) = tmp_path.iterdir()
    files = ["tests/test_corpus.py", "tests/test_docs.py", "tests/test_verify.py"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
        cwd=unpacked,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:]

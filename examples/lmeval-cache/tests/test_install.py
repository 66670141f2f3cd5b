"""Installed as a distribution, the plugin is found through its entry point.

What a user does (``pip install ./examples/lmeval-cache``, then ``lmeval``),
into a throwaway folder: ``pip install --target`` there, and the ``lmeval``
command run with that folder on ``PYTHONPATH`` and entry points loading as
they do for a user. Slow (a wheel is built): run it with ``-m slow``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent  # examples/lmeval-cache


def run(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_pip_install_registers_the_entry_point_and_compare_verifies_the_row(tmp_path):
    # Build from a copy: a build in place would leave build/ and *.egg-info in the source.
    source = tmp_path / "src"
    shutil.copytree(SOURCE, source, ignore=shutil.ignore_patterns("__pycache__", ".*"))
    target = tmp_path / "target"
    run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--disable-pip-version-check",
        "--target",
        str(target),
        str(source),
    )
    assert (target / "lmeval_cache" / "model.py").is_file()
    env = {k: v for k, v in os.environ.items() if k not in ("LMEVAL_PLUGINS", "PYTHONPATH")}
    env.update(PYTHONPATH=str(target), LMEVAL_LOAD_ENTRY_POINTS="1")
    lmeval = (sys.executable, "-m", "lmeval")

    plugins = json.loads(run(*lmeval, "plugins", "--format", "json", env=env))
    cache = next((p for p in plugins if p["name"] == "cache"), None)
    assert cache is not None, plugins
    assert cache["source"] == "entry point of lmeval-cache" and cache["error"] is None
    assert cache["registered"] == {"models": ["cache"]}

    out = run(
        *lmeval,
        "compare",
        "-m",
        "cache",
        "-m",
        "uniform",
        "--tokenizer",
        "word",
        "--format",
        "json",
        "-q",
        env=env,
    )
    results = {r["label"]: r for r in json.loads(out)["results"]}
    record = results["cache"]
    assert "error" not in record, record
    assert record["verified"] is True, record["verify_error"]
    assert math.isfinite(record["perplexity"])
    assert 1 < record["perplexity"] < results["uniform"]["perplexity"]

"""Test setup of lmeval-cache: find the package, keep other plugins out.

The tests run from an installed copy (``pip install -e ./examples/lmeval-cache``)
or straight from the source tree (``pytest examples/lmeval-cache/tests`` in the
lmeval repository): then the package folder is put on ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

# Only lmeval's own plugins load in the tests (not whatever else is installed,
# nor this package's entry point: the tests register CacheModel themselves).
os.environ["LMEVAL_LOAD_ENTRY_POINTS"] = "0"
os.environ.pop("LMEVAL_PLUGINS", None)

ROOT = Path(__file__).resolve().parent.parent  # examples/lmeval-cache

if importlib.util.find_spec("lmeval_cache") is None:
    sys.path.insert(0, str(ROOT))

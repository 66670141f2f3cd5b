"""Building the plugin host of one call, with the plugins a user expects.

Plugins load from four places, in this order:

1. lmeval's own registrations (``lmeval.builtins``: tokenizers, metrics,
   data sets, the ``saved`` model);
2. the ``lmeval`` entry-point group (the built-in models register there too,
   exactly as a third-party distribution does);
3. the ``LMEVAL_PLUGINS`` environment variable: comma-separated module names or
   paths to ``.py`` files;
4. ``extra_plugins`` (``--plugin PATH.py`` on the command line,
   ``plugins=[...]`` in Python).

``LMEVAL_LOAD_ENTRY_POINTS=0`` skips the entry points except lmeval's own
(tests use it to keep installed third-party plugins out).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib import metadata

from . import builtins
from .plugins import PluginHost

_DIST_NAME = "lmeval"


def load_host(extra_plugins: Iterable[str] = ()) -> PluginHost:
    """A new host with lmeval's plugins, the installed ones and ``extra_plugins``."""
    host = PluginHost()
    host.add(builtins, "lmeval", "lmeval core")
    only_builtin = os.environ.get("LMEVAL_LOAD_ENTRY_POINTS", "1") == "0"
    for ep in sorted(metadata.entry_points(group="lmeval"), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else "?"
        if only_builtin and dist != _DIST_NAME:
            continue
        host.load(ep.name, f"entry point of {dist}", ep.load)
    for item in os.environ.get("LMEVAL_PLUGINS", "").split(","):
        host.load_path_or_module(item, "LMEVAL_PLUGINS")
    for item in extra_plugins:
        host.load_path_or_module(item, "--plugin")
    return host

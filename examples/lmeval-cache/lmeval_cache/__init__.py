"""lmeval-cache: an interpolated unigram cache model for lmeval, as a plugin.

Installed, it registers the model ``cache`` through the ``lmeval`` entry-point
group (see ``pyproject.toml``)::

    lmeval compare -m cache -m cache:lam=0.3,window=500 -m uniform --tokenizer word

It uses lmeval's public API only (``import lmeval``), as any third-party
plugin should.
"""

from __future__ import annotations

import lmeval

from .model import CacheModel

__all__ = ["CacheModel"]
__version__ = "0.1.0"


@lmeval.hookimpl
def register_models(register):
    register(CacheModel)

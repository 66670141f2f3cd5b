"""The character RNN of "Dive into Deep Learning" 8.4-8.6 as an lmeval model plugin.

Modules: ``model`` (the ``rnn`` model: parameters, scoring, checkpoints; no
torch at import time), ``cells`` (the networks) and ``training`` (batches,
truncated BPTT, validation and stopping), the last two imported only when a
model is trained or loaded. Written against lmeval's public API only.
"""

from __future__ import annotations

import lmeval

from .model import RNN

__all__ = ["RNN"]


@lmeval.hookimpl
def register_models(register):
    register(RNN)

"""N-gram language models: every classic smoothing, modified Kneser-Ney exact to KenLM.

Two models, written against lmeval's public API only:

* ``ngram``: estimated from the training ids. ``smoothing`` is one of ``mle``,
  ``add-k``, ``witten-bell``, ``absolute``, ``kn`` or ``mkn`` (the default,
  whose probabilities are those of KenLM's ``lmplz``). Counting and scoring
  are numpy array operations (:mod:`.counting`, :mod:`.tables`).
* ``arpa``: scores with any ARPA back-off file (``arpa:path=FILE``), so a KenLM
  or SRILM model can be compared inside lmeval; ``ngram`` writes the same format
  (``model.save("model.arpa")``).
"""

from __future__ import annotations

import lmeval

from .model import Arpa, NGram

__all__ = ["Arpa", "NGram"]


@lmeval.hookimpl
def register_models(register):
    register(NGram)
    register(Arpa)

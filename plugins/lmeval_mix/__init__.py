"""Mixtures: one model that interpolates the predictions of others.

``mix:of=kn7+lstm`` mixes the rows labelled ``kn7`` and ``lstm`` of the same
comparison, fitted once for both their rows and this one;
``mix:of=rnn+ngram:order=7`` mixes models given by their specs, which it fits
itself. p(w | h) = sum_k lambda_k p_k(w | h), the weights fitted by EM on the
validation text, or given. Written against lmeval's public API only, like any
third-party plugin: it finds the rows it is made from through
``LanguageModel.needs`` and ``attach``, which any plugin may use.
"""

from __future__ import annotations

import lmeval

from .model import Mix, em_weights

__all__ = ["Mix", "em_weights"]


@lmeval.hookimpl
def register_models(register):
    register(Mix)

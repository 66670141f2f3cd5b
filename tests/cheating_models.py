"""Models that break the contract in one way each, beside the honest bigram they bend.

Loaded as a plugin file (``--plugin tests/cheating_models.py``) and imported by
tests. Each is what a plugin author could write by mistake, or on purpose.
"""

from __future__ import annotations

import math

import numpy as np

import lmeval


class Bigram(lmeval.LanguageModel):
    """An honest add-one bigram: the previous token (end-of-line at the start)."""

    name = "bigram"
    description = "add-one bigram (honest)"

    def fit(self, train_ids, valid_ids=None):
        size = len(self.vocab)
        counts = np.ones((size + 1, size))
        prev = np.concatenate([[size], train_ids[:-1]])
        np.add.at(counts, (prev, train_ids), 1)
        self.logp = np.log(counts / counts.sum(axis=1, keepdims=True))

    def previous(self, ids):
        return np.concatenate([[len(self.vocab)], ids[:-1]]).astype(np.int64)

    def score(self, ids):
        ids = np.asarray(ids, dtype=np.int64)
        return self.logp[self.previous(ids), ids] if len(ids) else np.zeros(0)

    def next_token_logprobs(self, context_ids):
        last = context_ids[-1] if len(context_ids) else len(self.vocab)
        return self.logp[last].copy()


class NoDistribution(Bigram):
    """Honest, without next_token_logprobs (normalisation is checked through score)."""

    name = "bigram-score-only"

    def next_token_logprobs(self, context_ids):
        return lmeval.LanguageModel.next_token_logprobs(self, context_ids)


class Unigram(lmeval.LanguageModel):
    """An honest add-one unigram without next_token_logprobs: cheap at any vocabulary."""

    name = "unigram-score-only"

    def fit(self, train_ids, valid_ids=None):
        counts = np.bincount(train_ids, minlength=len(self.vocab)) + 1.0
        self.logp = np.log(counts / counts.sum())

    def score(self, ids):
        return self.logp[np.asarray(ids, dtype=np.int64)]


class OffByOne(NoDistribution):
    """The README's bigram with ``prev = ids``: it conditions on the token it predicts."""

    name = "off-by-one"

    def previous(self, ids):
        return np.asarray(ids, dtype=np.int64)


class PeekCurrent(NoDistribution):
    """Gives the true token probability 0.9: it looks at ``ids[i]`` to predict ``ids[i]``."""

    name = "peek-current"

    def score(self, ids):
        return np.full(len(ids), math.log(0.9))


class PeekNext(Bigram):
    """Predicts ``ids[i]`` from the token after it (a bigram read backwards): it looks
    at ``ids[i + 1]``; its next_token_logprobs is the honest one."""

    name = "peek-next"

    def fit(self, train_ids, valid_ids=None):
        super().fit(train_ids, valid_ids)
        size = len(self.vocab)
        counts = np.ones((size + 1, size))
        ahead = np.concatenate([train_ids[1:], [size]])
        np.add.at(counts, (ahead, train_ids), 1)
        self.backward = np.log(counts / counts.sum(axis=1, keepdims=True))

    def score(self, ids):
        ids = np.asarray(ids, dtype=np.int64)
        ahead = np.concatenate([ids[1:], [len(self.vocab)]]).astype(np.int64)
        return self.backward[ahead, ids] if len(ids) else np.zeros(0)


class Doubled(Bigram):
    """Every probability doubled (capped at 1): not normalised, and better-looking."""

    name = "doubled"

    def score(self, ids):
        return np.minimum(super().score(ids) + math.log(2), 0.0)

    def next_token_logprobs(self, context_ids):
        return np.minimum(super().next_token_logprobs(context_ids) + math.log(2), 0.0)


class Halved(Bigram):
    """Every probability halved: not normalised."""

    name = "halved"

    def score(self, ids):
        return super().score(ids) - math.log(2)

    def next_token_logprobs(self, context_ids):
        return super().next_token_logprobs(context_ids) - math.log(2)


class Disagreeing(Bigram):
    """A normalised next_token_logprobs that is not the distribution score uses."""

    name = "disagreeing"

    def next_token_logprobs(self, context_ids):
        return np.full(len(self.vocab), -math.log(len(self.vocab)))


class LateDoubled(Bigram):
    """Honest in the first 2,048 tokens, where cheap probes look; doubled after."""

    name = "late-doubled"

    def score(self, ids):
        out = super().score(ids)
        out[2048:] = np.minimum(out[2048:] + math.log(2), 0.0)
        return out


class LatePeek(NoDistribution):
    """Without a distribution to compare with, reads the next token after 2,048 tokens."""

    name = "late-peek"

    def score(self, ids):
        out = super().score(ids)
        ahead = np.append(ids[1:], -1)
        late = np.arange(len(ids)) >= 2048
        return np.where(late & (ahead >= 0), np.minimum(out + 1.0, 0.0), out)


class NaNs(Bigram):
    name = "nans"

    def score(self, ids):
        out = super().score(ids)
        out[len(out) // 2] = np.nan
        return out


class WrongLength(Bigram):
    name = "wrong-length"

    def score(self, ids):
        return super().score(ids)[:-1]


class Float32(Bigram):
    name = "float32"

    def score(self, ids):
        return super().score(ids).astype(np.float32)


CHEATERS = (OffByOne, PeekCurrent, PeekNext, Doubled, Halved, Disagreeing)
LATE = (LateDoubled, LatePeek)
BROKEN = (NaNs, WrongLength, Float32)
HONEST = (Bigram, NoDistribution, Unigram)


@lmeval.hookimpl
def register_models(register):
    for cls in HONEST + CHEATERS + LATE + BROKEN:
        register(cls)

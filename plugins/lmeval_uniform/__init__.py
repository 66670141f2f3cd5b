"""The uniform baseline: every token has probability 1/|V|, so its perplexity is |V|.

The yardstick row of every comparison: a model worse than this has learned
nothing. Written against lmeval's public API only, like any third-party plugin.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

import lmeval


class Uniform(lmeval.LanguageModel):
    name = "uniform"
    description = "p = 1/|V| for every token; perplexity equals the vocabulary size"
    recommended = "uniform"
    yardstick = True
    seeded = False  # p = 1/|V|: nothing random

    def fit(self, train_ids: np.ndarray, valid_ids: np.ndarray | None = None) -> None:
        pass  # nothing to estimate

    def score(self, ids: np.ndarray) -> np.ndarray:
        return np.full(len(ids), -math.log(len(self.vocab)), dtype=np.float64)

    def next_token_logprobs(self, context_ids: np.ndarray) -> np.ndarray:
        return np.full(len(self.vocab), -math.log(len(self.vocab)), dtype=np.float64)

    @property
    def num_params(self) -> int:
        return 0

    def save(self, path: Path) -> None:
        with lmeval.atomic_write(path, "w", encoding="utf-8") as handle:
            json.dump({"model": self.name, "vocab": self.vocab.to_dict()}, handle)

    @classmethod
    def load(cls, path: Path) -> Uniform:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(lmeval.Vocabulary.from_dict(data["vocab"]))


@lmeval.hookimpl
def register_models(register):
    register(Uniform)

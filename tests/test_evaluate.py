"""The evaluator checks every model's scores and turns failures into row errors."""

import math

import numpy as np
import pytest

import lmeval
from lmeval.evaluate import ContractViolation, check_scores


class Broken(lmeval.LanguageModel):
    """Breaks the contract in the way its ``mode`` parameter says."""

    name = "broken"
    params = (
        lmeval.Param(
            "mode",
            str,
            "nan",
            "how to fail",
            choices=("nan", "positive", "short", "raise", "zero", "seed"),
        ),
        lmeval.Param("seed", int, 0, "seed"),
    )

    def fit(self, train_ids, valid_ids=None):
        if self.config["mode"] == "raise":
            raise RuntimeError("out of cheese")

    def score(self, ids):
        mode = self.config["mode"]
        out = np.full(len(ids), -1.0)
        if mode == "nan":
            out[3] = np.nan
        elif mode == "positive":
            out[1] = 0.5
        elif mode == "short":
            out = out[:-1]
        elif mode == "zero":
            out[0] = -np.inf
        elif mode == "seed":
            out[:] = -1.0 - self.config["seed"]
        return out


@pytest.fixture
def host():
    host = lmeval.load_host()
    host.models.add("broken", Broken, "test")
    return host


@pytest.mark.parametrize(
    "mode, message",
    [
        ("nan", "NaN at token 3"),
        ("positive", "log p = 0.5 > 0 at token 1"),
        ("short", "expected one value per token"),
        ("raise", "RuntimeError: out of cheese"),
    ],
)
def test_contract_violations_become_the_models_error(host, small_text, mode, message):
    result = lmeval.compare([f"broken:mode={mode}", "uniform"], text=small_text, host=host)
    broken, uniform = result.results
    assert message in broken["error"] and broken["perplexity"] is None
    assert "error" not in uniform and uniform["perplexity"] > 1


def test_zero_probability_gives_infinite_perplexity_not_a_failure(host, small_text):
    from lmeval.report import render

    result = lmeval.compare(["broken:mode=zero"], text=small_text, host=host, verify=0)
    record = result.results[0]
    assert "error" not in record and record["perplexity"] == math.inf
    assert record["bits_per_char"] == math.inf
    assert '"perplexity": null' in render(result, "json")
    assert "∞" in render(result, "markdown")


def test_compare_seed_reaches_models_that_declare_one(host, small_text):
    seeded = lmeval.compare(
        ["broken:mode=seed"], text=small_text, seed=2, host=host, verify=0
    ).results[0]
    explicit = lmeval.compare(
        ["broken:mode=seed,seed=5"], text=small_text, seed=2, host=host, verify=0
    ).results[0]
    assert seeded["cross_entropy"] == pytest.approx(3.0)
    assert explicit["cross_entropy"] == pytest.approx(6.0)


def test_duplicate_labels_are_refused(small_text):
    with pytest.raises(lmeval.UsageError, match="two models are labelled 'uniform'"):
        lmeval.compare(["uniform", "uniform"], text=small_text)


def test_check_scores_accepts_tiny_positive_rounding():
    assert check_scores([-1.0, 1e-15], 2).tolist() == [-1.0, 0.0]
    with pytest.raises(ContractViolation, match="log p = inf > 0"):
        check_scores([np.inf], 1)

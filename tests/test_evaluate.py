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


class Saving(lmeval.LanguageModel):
    """Uniform, with a save() that fails in the way ``mode`` says."""

    name = "saving"
    params = (lmeval.Param("mode", str, "raise", "how saving fails", ("raise", "no-load")),)

    def fit(self, train_ids, valid_ids=None):
        pass

    def score(self, ids):
        return np.full(len(ids), -math.log(len(self.vocab)))

    def next_token_logprobs(self, context_ids):
        return np.full(len(self.vocab), -math.log(len(self.vocab)))

    def save(self, path):
        if self.config["mode"] == "raise":
            raise OSError(28, "No space left on device")
        path.write_text("{}")

    @classmethod
    def load(cls, path):
        raise AssertionError("never reached: saving fails first")


class SaveOnly(Saving):
    name = "save-only"
    load = lmeval.LanguageModel.load


@pytest.fixture
def saving_host():
    host = lmeval.load_host()
    host.models.add("saving", Saving, "test")
    host.models.add("save-only", SaveOnly, "test")
    return host


def test_a_failed_save_is_the_rows_save_error_and_the_rest_go_on(saving_host, small_text, tmp_path):
    folder = tmp_path / "models"
    result = lmeval.compare(
        ["saving", "uniform"], text=small_text, host=saving_host, save_models=folder
    )
    saving, uniform = result.results
    assert "error" not in saving and saving["perplexity"] > 1
    assert "No space left on device" in saving["details"]["save_error"]
    assert sorted(p.name for p in folder.iterdir()) == ["uniform.lmz"]  # no temporary left
    assert "saving" in result.tracebacks


def test_a_model_with_save_but_no_load_is_refused_when_saving(saving_host, small_text, tmp_path):
    folder = tmp_path / "models"
    result = lmeval.compare(["save-only"], text=small_text, host=saving_host, save_models=folder)
    record = result.results[0]
    assert "has save() but no load()" in record["details"]["save_error"]
    assert list(folder.iterdir()) == []  # nothing written that could never be read

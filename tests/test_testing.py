"""The plugin authors' kit catches every kind of broken model and passes every built-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cheating_models import (
    Bigram,
    Disagreeing,
    Doubled,
    Float32,
    Halved,
    NaNs,
    NoDistribution,
    OffByOne,
    PeekCurrent,
    PeekNext,
    WrongLength,
)
from click.testing import CliRunner

import lmeval
from lmeval.cli import cli
from lmeval.testing import assert_model_ok, check_model

CHEATS = str(Path(__file__).parent / "cheating_models.py")


@pytest.mark.parametrize(
    "cls, failing",
    [
        (Halved, "normalisation"),
        (Doubled, "normalisation"),
        (NaNs, "no NaN, never above 0"),
        (WrongLength, "score shape and type"),
        (Float32, "score shape and type"),
        (PeekCurrent, "normalisation"),
        (PeekNext, "causality"),
        (OffByOne, "normalisation"),
        (Disagreeing, "consistency"),
    ],
)
def test_the_kit_catches_a_broken_model(cls, failing):
    report = check_model(cls)
    assert not report.passed
    assert report[failing].status == "fail", str(report)
    with pytest.raises(AssertionError, match="breaks the contract"):
        assert_model_ok(cls)


def test_a_model_that_looks_ahead_fails_both_causality_checks():
    report = check_model(PeekNext)
    assert "looks ahead" in report["causality"].detail
    assert report["causality (future changed)"].status == "fail"
    assert report["consistency"].status == "fail"


@pytest.mark.parametrize("cls", [Bigram, NoDistribution])
def test_honest_models_pass(cls):
    report = assert_model_ok(cls)
    assert report["save/load round trip"].status == "n/a"  # they have no save()
    if cls is NoDistribution:
        assert report["consistency"].status == "n/a"
        assert "by scoring every next token" in report["normalisation"].detail


@pytest.mark.parametrize(
    "spec",
    [
        "uniform",
        "ngram:order=3",
        "ngram:order=2,smoothing=mle",
        "ngram:order=3,smoothing=witten-bell,sentences=false",
        "ngram:order=4,smoothing=kn",
    ],
)
def test_every_builtin_model_passes(spec):
    report = assert_model_ok(spec)
    assert report["save/load round trip"].status == "pass"


def test_builtins_pass_with_words_and_in_stream_mode(small_text):
    assert_model_ok("ngram:order=3", text=small_text, tokenizer="word")
    assert_model_ok("uniform", text=small_text, lines=False)


def test_the_rnn_passes_with_a_tiny_budget():
    report = assert_model_ok("rnn:hidden=16,budget=3000tok,device=cpu", positions=8)
    assert report["same seed, same scores"].status == "pass"
    assert report["save/load round trip"].detail.startswith("identical")


def test_saved_and_arpa_models_pass(tmp_path, small_text):
    model, _ = lmeval.train("ngram:order=3", text=small_text)
    arpa = tmp_path / "m.arpa"
    model.save(arpa)
    assert_model_ok(f"arpa:path={arpa}", text=small_text, positions=8)
    lmeval.compare(["ngram:order=2"], text=small_text, save_models=tmp_path)
    assert_model_ok(f"saved:path={tmp_path / 'ngram_order=2.lmz'}", text=small_text)


def test_an_arpa_file_of_another_vocabulary_is_not_normalised_here(tmp_path, small_text):
    """Honest in its own vocabulary, it loses the mass of words this text lacks."""
    model, _ = lmeval.train("ngram:order=3", dataset="pydoc-topics", split=(0.05, 0.0, 0.95))
    arpa = tmp_path / "m.arpa"
    model.save(arpa)
    report = check_model(f"arpa:path={arpa}", text=small_text, positions=8)
    assert report["normalisation"].status == "fail"


def test_bad_parameter_values_must_be_refused():
    class Lenient(Bigram):
        name = "lenient"
        params = (lmeval.Param("k", float, 1.0, "ignored"),)

        def __init__(self, vocab, **params):  # never checks its parameters
            self.vocab = vocab
            self.config = dict(params)

    report = check_model(Lenient)
    assert report["bad parameters refused"].status == "fail"
    assert "k='nan' was accepted" in report["bad parameters refused"].detail


def test_a_nondeterministic_model_fails_the_seed_check():
    import numpy as np

    class Noisy(Bigram):
        name = "noisy"

        def fit(self, train_ids, valid_ids=None):
            super().fit(train_ids, valid_ids)
            noise = np.random.default_rng().random(self.logp.shape) * 0.1
            self.logp = self.logp - noise
            self.logp -= np.log(np.exp(self.logp).sum(axis=1, keepdims=True))

    report = check_model(Noisy)
    assert report["same seed, same scores"].status == "fail"
    assert report["normalisation"].status == "pass"


def test_a_spec_with_params_twice_is_refused():
    with pytest.raises(lmeval.UsageError, match="not as params="):
        check_model("ngram:order=3", params={"order": 2})


def test_lmeval_check_prints_a_table_and_sets_the_status():
    ok = CliRunner().invoke(cli, ["check", "ngram:order=3", "--positions", "8"])
    assert ok.exit_code == 0, ok.output
    assert "lmeval check ngram:order=3: passed" in ok.stdout
    assert "causality" in ok.stdout and "save/load round trip" in ok.stdout
    bad = CliRunner().invoke(cli, ["check", "--plugin", CHEATS, "doubled", "--format", "json"])
    assert bad.exit_code == 1
    data = json.loads(bad.stdout)
    assert data["passed"] is False
    statuses = {c["name"]: c["status"] for c in data["checks"]}
    assert statuses["normalisation"] == "fail" and statuses["causality"] == "pass"


def test_lmeval_check_of_an_unknown_model_is_one_line():
    result = CliRunner().invoke(cli, ["check", "ngramm"])
    assert result.exit_code == 2
    assert "unknown model 'ngramm'; did you mean 'ngram'?" in result.stderr


def readme_bigram() -> str:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    return readme.split("```python\n# bigram.py\n", 1)[1].split("```", 1)[0]


def test_the_readme_bigram_passes_and_its_off_by_one_fails(write):
    """The README's plugin keeps the contract; the one-character slip the issue found does not."""
    source = readme_bigram()
    honest = write("readme_bigram.py", source)
    assert_model_ok("bigram:k=0.5", plugins=[str(honest)])
    slip = source.replace("prev = np.concatenate([[len(self.vocab)], ids[:-1]])", "prev = ids")
    assert slip != source
    broken = write("slipped_bigram.py", slip)
    report = check_model("bigram", plugins=[str(broken)])
    assert report["normalisation"].status == "fail"
    result = CliRunner().invoke(
        cli,
        ["compare", "--plugin", str(broken), "-m", "bigram", "-m", "uniform", "--format", "json"],
    )
    rows = {r["label"]: r for r in json.loads(result.stdout)["results"]}
    assert result.exit_code == 1 and rows["bigram"]["verified"] is False


def test_the_kit_probes_beyond_the_cheap_span_too():
    from cheating_models import LateDoubled

    report = check_model(LateDoubled)
    assert report["consistency"].status == "fail" and "token" in report["consistency"].detail


def test_the_kit_seeds_python_random_as_compare_does():
    import random

    import numpy as np

    class PyRandom(Bigram):
        name = "py-random"

        def fit(self, train_ids, valid_ids=None):
            super().fit(train_ids, valid_ids)
            self.logp = self.logp + random.random() * 0  # draws, as a sampler would
            shift = np.log(1 + random.random() * 1e-3)
            self.logp = self.logp - shift
            self.logp -= np.log(np.exp(self.logp).sum(axis=1, keepdims=True))

    assert check_model(PyRandom)["same seed, same scores"].status == "pass"


def test_the_kit_scores_a_saved_model_with_its_own_vocabulary(tmp_path):
    lmeval.compare(["ngram:order=3"], dataset="pydoc-topics", save_models=tmp_path)
    report = assert_model_ok(f"saved:path={tmp_path / 'ngram_order=3.lmz'}", positions=8)
    assert report["fit"].passed


def test_check_model_leaves_the_callers_host_as_it_was():
    host = lmeval.load_host()
    check_model(Bigram, host=host)
    assert "bigram" not in host.models


def test_check_model_loads_plugins_as_compare_does(write):
    broken = write("broken_kit_plugin.py", "raise ImportError('missing library')\n")
    with pytest.warns(lmeval.PluginWarning, match="missing library"):
        check_model("uniform", plugins=[str(broken)], positions=4)
    host = lmeval.load_host()
    check_model("bigram", plugins=[CHEATS], host=host, positions=4)
    assert "bigram" in host.models  # plugins= reach a given host too

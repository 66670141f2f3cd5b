"""The model cache: a fitted model is reused, never handed to another model, never corrupt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from click.testing import CliRunner

import lmeval
from lmeval.cache import ModelCache, cache_key, key_material, parse_age
from lmeval.cli import cli

SPECS = ["uniform", "ngram:order=3", "rnn:hidden=16,budget=3000tok"]


@pytest.fixture
def corpus(numbered_text):
    return lmeval.load_corpus(text=numbered_text(120))


def run(corpus, cache, specs=SPECS, **kw):
    return lmeval.compare(specs, corpus=corpus, cache=cache, bootstrap=0, verify_seed=7, **kw)


def test_a_cached_model_scores_exactly_as_the_fresh_one(corpus, tmp_path):
    fresh = run(corpus, tmp_path / "cache")
    again = run(corpus, tmp_path / "cache")
    assert [r["details"]["cache"]["hit"] for r in fresh.results] == [False] * 3
    assert [r["details"]["cache"]["hit"] for r in again.results] == [True] * 3
    for first, second in zip(fresh.results, again.results, strict=True):
        assert first.get("error") is None and second.get("error") is None
        assert second["bits_per_char"] == first["bits_per_char"]
        assert second["fit_seconds"] == first["fit_seconds"]  # the original fit's
        assert second["verified"] is True
        label = first["label"]
        np.testing.assert_array_equal(again.scores[label].logprobs, fresh.scores[label].logprobs)
    # and the same as a run with no cache at all
    plain = run(corpus, None)
    assert [r["bits_per_char"] for r in plain.results] == [
        r["bits_per_char"] for r in fresh.results
    ]


def test_two_models_on_the_same_data_never_share_an_entry(corpus, tmp_path):
    specs = ["uniform", "ngram:order=2", "ngram:order=3", "ngram:order=3,smoothing=add-k"]
    result = run(corpus, tmp_path / "cache", specs=specs)
    keys = [r["details"]["cache"]["key"] for r in result.results]
    assert len(set(keys)) == len(keys)
    assert len(ModelCache(tmp_path / "cache").entries()) == len(specs)
    bpc = {r["label"]: r["bits_per_char"] for r in result.results}
    again = run(corpus, tmp_path / "cache", specs=list(reversed(specs)))
    assert {r["label"]: r["bits_per_char"] for r in again.results} == bpc


def test_the_key_holds_the_seed_the_data_and_the_plugin_code(corpus, numbered_text, tmp_path):
    host = lmeval.load_host()
    model, tok = lmeval.train("rnn:hidden=8,budget=200tok", corpus=corpus, host=host)
    base = cache_key(key_material(model, tok, corpus, 0))
    assert cache_key(key_material(model, tok, corpus, 1)) != base
    # an n-gram draws no random numbers (seeded = False): one entry for every seed
    kn, kn_tok = lmeval.train("ngram:order=3", corpus=corpus, host=host)
    assert cache_key(key_material(kn, kn_tok, corpus, 0)) == cache_key(
        key_material(kn, kn_tok, corpus, 1)
    )
    other = lmeval.load_corpus(text=numbered_text(200))  # another training text
    assert cache_key(key_material(model, tok, other, 0)) != base
    # two plugin files registering a model of the same name, with different code
    keys = []
    for variant in ("0.5", "0.25"):
        folder = tmp_path / variant
        folder.mkdir()
        plugin = folder / "same_name.py"
        plugin.write_text(
            textwrap.dedent(
                f"""
                import numpy as np
                import lmeval

                class Mine(lmeval.LanguageModel):
                    name = "mine"
                    def fit(self, train_ids, valid_ids=None):
                        pass
                    def score(self, ids):
                        return np.full(len(ids), np.log({variant}))

                @lmeval.hookimpl
                def register_models(register):
                    register(Mine)
                """
            )
        )
        mine_host = lmeval.load_host([str(plugin)])
        mine = lmeval.build_model("mine", tok.vocab, host=mine_host)
        keys.append(cache_key(key_material(mine, tok, corpus, 0)))
    assert keys[0] != keys[1]


def test_a_damaged_entry_is_fitted_again_and_replaced(corpus, tmp_path):
    store = tmp_path / "cache"
    first = run(corpus, store, specs=["ngram:order=3"]).results[0]
    [entry] = ModelCache(store).entries()
    entry.path.write_bytes(b"not a zip")
    second = run(corpus, store, specs=["ngram:order=3"]).results[0]
    assert second["details"]["cache"]["hit"] is False
    assert second["bits_per_char"] == first["bits_per_char"]
    third = run(corpus, store, specs=["ngram:order=3"]).results[0]
    assert third["details"]["cache"]["hit"] is True


def test_a_model_that_cannot_be_saved_is_not_cached_and_says_why(corpus, tmp_path):
    class Unsaveable(lmeval.LanguageModel):
        name = "unsaveable"

        def fit(self, train_ids, valid_ids=None):
            pass

        def score(self, ids):
            return np.full(len(ids), -np.log(len(self.vocab)))

        def next_token_logprobs(self, context_ids):
            return np.full(len(self.vocab), -np.log(len(self.vocab)))

    host = lmeval.load_host()
    host.models.add("unsaveable", Unsaveable, "test")
    row = run(corpus, tmp_path / "c", specs=["unsaveable"], host=host).results[0]
    assert row.get("error") is None
    assert row["details"]["cache"] == {
        "hit": False,
        "key": None,
        "not_cached": "it cannot be saved (no save())",
    }


def test_an_arpa_row_is_not_cached_its_file_is_the_model(corpus, tmp_path):
    """The key holds the arpa model's path, not the file: a cached entry would
    outlive an edit of the file, so the class says ``cacheable = False``."""
    model, _ = lmeval.train("ngram:order=2", corpus=corpus)
    model.save(tmp_path / "m.arpa")
    row = run(corpus, tmp_path / "c", specs=[f"arpa:path={tmp_path / 'm.arpa'}"]).results[0]
    assert row.get("error") is None
    assert row["details"]["cache"]["hit"] is False
    assert "cacheable = False" in row["details"]["cache"]["not_cached"]
    assert ModelCache(tmp_path / "c").entries() == []


WRITER = """
import sys
import lmeval
from lmeval.cache import ModelCache, cache_key, key_material
corpus = lmeval.load_corpus(text=sys.argv[1])
model, tok = lmeval.train("ngram:order=4", corpus=corpus)
cache = ModelCache(sys.argv[2])
material = key_material(model, tok, corpus, 0)
key = cache_key(material)
for _ in range(int(sys.argv[3])):
    cache.store(key, model, spec="ngram:order=4", label="kn4", tokenizer=tok.name,
                material=material, fit_seconds=0.0, details={})
print(key)
"""


def test_two_processes_filling_one_entry_never_corrupt_it(numbered_text, tmp_path):
    text = numbered_text(400)
    store = tmp_path / "cache"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(text), str(store), "25"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    corpus = lmeval.load_corpus(text=text)
    model, tok = lmeval.train("ngram:order=4", corpus=corpus)
    expected = model.score(tok.encode(corpus.test))
    key = cache_key(key_material(model, tok, corpus, 0))
    host = lmeval.load_host()
    while any(w.poll() is None for w in writers):  # read while they write
        found = ModelCache(store).load(key, host.models)
        if found is not None:
            np.testing.assert_array_equal(found[0].score(tok.encode(corpus.test)), expected)
    outputs = [w.communicate()[0].strip() for w in writers]
    assert [w.returncode for w in writers] == [0, 0]
    assert outputs == [key, key]
    [entry] = ModelCache(store).entries()
    assert entry.complete
    assert not list(store.glob("??/.*.tmp"))  # no temporary left behind
    found = ModelCache(store).load(key, host.models)
    assert found is not None
    np.testing.assert_array_equal(found[0].score(tok.encode(corpus.test)), expected)


@pytest.mark.parametrize("spec", ["ngram:order=4", "rnn:hidden=16,budget=2000tok"])
def test_scores_do_not_depend_on_how_scoring_is_batched(spec, corpus):
    """One call over the whole test text, or the text in pieces: the same numbers
    (each piece scored with the whole prefix before it as context)."""
    model, tok = lmeval.train(spec, corpus=corpus)
    ids = tok.encode(corpus.test)
    whole = model.score(ids)
    cuts = [0, 1, 37, len(ids) // 2, len(ids) - 5, len(ids)]
    pieces = np.concatenate(
        [model.score(ids[:b])[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    )
    np.testing.assert_allclose(pieces, whole, rtol=0, atol=model.tolerance)


def test_cache_list_and_clear_on_the_command_line(corpus, numbered_text, tmp_path):
    store = tmp_path / "cache"
    text = numbered_text(120)
    runner = CliRunner()
    args = ["compare", "-m", "ngram:order=2", "-m", "uniform", "--text", str(text)]
    out = runner.invoke(cli, [*args, "--cache-dir", str(store), "--format", "json"])
    assert out.exit_code == 0, out.output
    again = runner.invoke(cli, [*args, "--cache-dir", str(store), "--format", "json"])
    rows = json.loads(again.stdout)["results"]
    assert [r["details"]["cache"]["hit"] for r in rows] == [True, True]
    listed = runner.invoke(cli, ["cache", "list", "--cache-dir", str(store), "--format", "json"])
    entries = json.loads(listed.stdout)
    assert sorted(e["spec"] for e in entries) == ["ngram:order=2", "uniform"]
    assert all(e["bytes"] > 0 and e["complete"] for e in entries)
    table = runner.invoke(cli, ["cache", "list", "--cache-dir", str(store)])
    assert "2 cached model(s)" in table.stdout
    # one entry unused for 40 days: --older-than 30d removes it alone
    old = next(e for e in ModelCache(store).entries() if e.spec == "uniform")
    long_ago = time.time() - 40 * 86400
    for path in old.path.parent.glob(f"{old.key}.*"):
        os.utime(path, (long_ago, long_ago))
    cleared = runner.invoke(
        cli, ["cache", "clear", "--cache-dir", str(store), "--older-than", "30d"]
    )
    assert cleared.exit_code == 0 and "removed 1 cached model(s)" in cleared.stdout
    assert [e.spec for e in ModelCache(store).entries()] == ["ngram:order=2"]
    everything = runner.invoke(cli, ["cache", "clear", "--cache-dir", str(store)])
    assert "removed 1 cached model(s)" in everything.stdout
    assert ModelCache(store).entries() == []


def test_compare_does_not_cache_unless_asked(numbered_text, tmp_path, monkeypatch):
    monkeypatch.setenv("LMEVAL_CACHE_DIR", str(tmp_path / "user-cache"))
    text = numbered_text(60)
    out = CliRunner().invoke(cli, ["compare", "-m", "uniform", "--text", str(text), "-q"])
    assert out.exit_code == 0
    assert not (tmp_path / "user-cache").exists()
    out = CliRunner().invoke(cli, ["compare", "-m", "uniform", "--text", str(text), "--cache"])
    assert out.exit_code == 0
    assert len(ModelCache().entries()) == 1
    assert ModelCache().root == tmp_path / "user-cache" / "models"


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("2w", 1209600)]
)
def test_ages(text, seconds):
    assert parse_age(text) == seconds


def test_a_bad_age_is_one_line(tmp_path):
    out = CliRunner().invoke(
        cli, ["cache", "clear", "--cache-dir", str(tmp_path), "--older-than", "soon"]
    )
    assert out.exit_code == 2
    assert "--older-than 'soon'" in out.output

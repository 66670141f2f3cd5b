"""The cache model keeps lmeval's contract (the kit) and does what a cache should."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from lmeval_cache import CacheModel

import lmeval
from lmeval.testing import assert_model_ok, check_model

# -- the contract, checked by lmeval's kit --------------------------------------------


@pytest.mark.parametrize("tokenizer", ["word", "char"])
def test_the_default_model_keeps_the_contract(tokenizer):
    report = assert_model_ok(CacheModel, tokenizer=tokenizer)
    assert report["save/load round trip"].status == "pass"
    assert report["consistency"].status == "pass"  # score agrees with next_token_logprobs


@pytest.mark.parametrize(
    "params",
    [
        {"lam": 0.0},  # the add-k unigram alone
        {"lam": 1.0, "window": 5},  # the cache alone: -inf for tokens not in the window
        {"lam": 0.3, "window": 1, "k": 0.01},
    ],
)
def test_edge_settings_keep_the_contract(params):
    assert_model_ok(CacheModel, params=params, tokenizer="word")


def test_stream_mode_keeps_the_contract():
    """No end-of-line token at all (vocab.eos_id is None): the cache sees newlines as text."""
    report = check_model(CacheModel, tokenizer="char", lines=False)
    assert report.passed, report


def test_bad_values_are_refused_before_any_fit():
    vocab = lmeval.Vocabulary(["a", "b"])
    for bad in ({"lam": 1.5}, {"lam": -0.1}, {"window": 0}, {"k": 0.0}, {"k": "nan"}):
        with pytest.raises(lmeval.UsageError):
            CacheModel(vocab, **bad)


# -- what the model computes ----------------------------------------------------------

VOCAB = lmeval.Vocabulary(["a", "b", "c"])  # ids: <unk> 0, a 1, b 2, c 3
A, B, C = 1, 2, 3


def fitted(**params) -> CacheModel:
    model = CacheModel(VOCAB, **params)
    model.fit(np.array([A, A, B]))  # counts 0, 2, 1, 0 of 3 tokens
    return model


def test_a_worked_example():
    """k=1: p_base = (c + 1) / (3 + 4) = (1, 3, 2, 1) / 7. The first c has an empty
    history (p = p_base(c) = 1/7); the second finds c in a cache of one token:
    0.5 * 1/7 + 0.5 * 1 = 4/7."""
    logp = fitted(lam=0.5).score(np.array([C, C]))
    assert logp == pytest.approx([math.log(1 / 7), math.log(4 / 7)], abs=1e-15)


def test_a_repeated_word_gets_more_probable_with_the_cache():
    text = np.array([B, C, A, C, B, C])
    with_cache = fitted(lam=0.5).score(text)
    without = fitted(lam=0.0).score(text)
    repeats = [3, 5]  # the second and third c
    assert (with_cache[repeats] > without[repeats]).all()
    assert with_cache[5] > with_cache[3]  # c is 2/5 of the cache at 5, 1/3 at 3
    assert with_cache[0] == without[0]  # empty history: the unigram alone


def test_the_window_forgets():
    """window=1: only the previous token is cached; c two tokens back does not count."""
    logp = fitted(lam=0.5, window=1).score(np.array([C, A, C]))
    assert logp[2] == pytest.approx(math.log(0.5 * 1 / 7), abs=1e-15)


def test_lam_0_is_the_add_k_unigram_exactly():
    model = fitted(lam=0.0, k=0.5)
    ids = np.array([C, C, C, A, 0, B, C])
    expected = np.log((np.array([0, 2, 1, 0]) + 0.5) / (3 + 0.5 * 4))
    assert np.array_equal(model.score(ids), expected[ids])
    assert np.array_equal(model.next_token_logprobs(ids), expected)


def test_lam_0_matches_lmevals_own_add_k_unigram():
    """The same estimate as the core `ngram:order=1,smoothing=add-k` on real text."""
    corpus = lmeval.load_corpus()
    tok = lmeval.WordTokenizer()
    tok.fit(corpus.train)
    train, test = tok.encode(corpus.train), tok.encode(corpus.test)
    ngram = lmeval.build_model("ngram:order=1,smoothing=add-k,k=0.5,values=float64", tok.vocab)
    ngram.fit(train)
    model = CacheModel(tok.vocab, lam=0.0, k=0.5)
    model.fit(train)
    assert np.abs(model.score(test) - ngram.score(test)).max() < 1e-12


def test_lam_1_gives_zero_to_tokens_outside_the_window():
    logp = fitted(lam=1.0, window=2).score(np.array([A, B, C, B]))
    assert logp[0] == pytest.approx(math.log(3 / 7))  # empty history: p_base
    assert logp[1] == -math.inf and logp[2] == -math.inf  # b, c not in the window
    assert logp[3] == pytest.approx(math.log(1 / 2))  # b is one of the last two
    assert "notes" in fitted(lam=1.0).details()


def test_score_and_next_token_logprobs_agree_everywhere():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 4, size=300)
    model = fitted(lam=0.4, window=7)
    logp = model.score(ids)
    for i in range(len(ids)):
        assert abs(logp[i] - model.next_token_logprobs(ids[:i])[ids[i]]) <= 1e-9, i


def test_the_cache_spans_lines():
    """In line mode a word on the previous line is still in the cache: the cache is
    document-level, and the end-of-line token is cached like any token."""
    tok = lmeval.WordTokenizer()
    tok.fit("spam eggs\nham\n")
    model = CacheModel(tok.vocab, lam=0.5)
    model.fit(tok.encode("spam eggs\nham\n"))
    ids = tok.encode("spam\nspam\n")  # spam </s> spam </s>
    assert ids[1] == tok.vocab.eos_id
    logp, unigram = model.score(ids), model.next_token_logprobs(ids[:0])
    assert logp[2] > unigram[ids[2]]  # the second spam, on a new line, is boosted
    assert logp[3] > unigram[ids[3]]  # and so is the second end of line


# -- files ----------------------------------------------------------------------------


def test_save_and_load_give_identical_scores(tmp_path):
    corpus = lmeval.load_corpus()
    tok = lmeval.CharTokenizer()
    tok.fit(corpus.train)
    model = CacheModel(tok.vocab, lam=0.3, window=64, k=0.25)
    model.fit(tok.encode(corpus.train))
    path = tmp_path / "cache.json"
    model.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))  # plain JSON, no pickle
    assert data["format"] == "lmeval-cache/1" and data["config"]["window"] == 64
    loaded = CacheModel.load(path)
    test = tok.encode(corpus.test)
    assert loaded.vocab == model.vocab and loaded.config == model.config
    assert np.array_equal(loaded.score(test), model.score(test))
    assert np.array_equal(loaded.next_token_logprobs(test), model.next_token_logprobs(test))


def test_load_refuses_another_file(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"format": "something-else"}', encoding="utf-8")
    with pytest.raises(lmeval.LmevalError, match="expected 'lmeval-cache/1'"):
        CacheModel.load(path)


# -- in a comparison ------------------------------------------------------------------


def test_a_verified_row_in_compare(tmp_path):
    """Loaded as a plugin module (what LMEVAL_PLUGINS=lmeval_cache does), it is a
    verified row that beats the uniform yardstick; --save-models writes it."""
    result = lmeval.compare(
        ["cache", "uniform"],
        tokenizer="word",
        plugins=["lmeval_cache"],
        save_models=tmp_path,
    )
    cache, uniform = result.results
    assert "error" not in cache and cache["verified"] is True, cache
    assert cache["perplexity"] < uniform["perplexity"]
    assert cache["details"]["window"] == 200 and "save_error" not in cache["details"]
    again = lmeval.compare(
        [f"saved:path={tmp_path / 'cache.lmz'}"], tokenizer="word", plugins=["lmeval_cache"]
    )
    assert again.results[0]["nll"] == cache["nll"]

"""The ngram and arpa models: proper distributions, MLE zeros, parameters, files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import lmeval
import lmeval_ngram
from lmeval_ngram import Arpa, NGram
from lmeval_ngram.smoothing import SMOOTHINGS

TEXT = (
    "the time machine, by h. g. wells\n"
    "the time traveller (for so it will be convenient to speak of him)\n"
    "was expounding a recondite matter to us.\n"
    "his grey eyes shone and twinkled, and his usually pale face was flushed.\n"
    "\n"
    "the fire burned brightly, and the soft radiance of the incandescent lights\n"
)


@pytest.fixture(scope="module")
def chars():
    tok = lmeval.CharTokenizer()
    # 'z' and 'q' are in the vocabulary but never in the training text
    vocab = lmeval.Vocabulary([*sorted(set(TEXT) - {"\n"}), "z", "q"], eos="\n")
    tok.vocab = vocab
    return vocab, tok.encode(TEXT)


def fitted(vocab, train, **params) -> NGram:
    model = NGram(vocab, **params)
    model.fit(train)
    return model


def contexts(vocab, train, rng, count=12):
    """Random contexts (mostly unseen), seen ones from the training ids, and edge cases."""
    out = [np.zeros(0, dtype=np.int64), train[:1], train[:7], np.array([vocab.eos_id])]
    for _ in range(count):
        out.append(rng.integers(0, len(vocab), size=int(rng.integers(1, 8))))
        start = int(rng.integers(0, len(train) - 8))
        out.append(train[start : start + int(rng.integers(1, 8))])
    return out


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_every_smoothing_is_a_distribution_at_every_context(chars, smoothing, order):
    vocab, train = chars
    model = fitted(vocab, train, order=order, smoothing=smoothing, values="float64")
    rng = np.random.default_rng(order)
    for context in contexts(vocab, train, rng):
        logp = model.next_token_logprobs(context)
        assert logp.shape == (len(vocab),) and not np.isnan(logp).any()
        assert math.fsum(np.exp(logp)) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_float32_values_are_the_float64_ones_rounded_and_still_a_distribution(chars, smoothing):
    """The default keeps every value as KenLM does, in float32: exactly the float64
    model's values rounded once, half their memory, and every distribution within
    the evaluator's tolerance (1e-6) of summing to 1."""
    vocab, train = chars
    kept = fitted(vocab, train, order=4, smoothing=smoothing)
    exact = fitted(vocab, train, order=4, smoothing=smoothing, values="float64")
    for mine, theirs in [
        (kept.tables.logp, exact.tables.logp),
        (kept.tables.logbo, exact.tables.logbo),
    ]:
        for low, high in zip(mine, theirs, strict=True):
            assert low.dtype == np.float32 and low.nbytes * 2 == high.nbytes
            np.testing.assert_array_equal(low, high.astype(np.float32))
    rng = np.random.default_rng(3)
    for context in contexts(vocab, train, rng):
        logp = kept.next_token_logprobs(context)
        assert logp.dtype == np.float64
        assert math.fsum(np.exp(logp)) == pytest.approx(1.0, abs=lmeval.verify.SUM_TOLERANCE)
    scores, reference = kept.score(train), exact.score(train)
    np.testing.assert_allclose(scores, reference, rtol=3e-7, atol=1e-6)
    assert scores.mean() != reference.mean()  # rounded: not the float64 model in disguise


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_stream_mode_is_a_distribution_too(chars, smoothing):
    vocab, train = chars
    model = fitted(vocab, train, order=3, smoothing=smoothing, sentences=False, values="float64")
    for context in contexts(vocab, train, np.random.default_rng(9)):
        assert math.fsum(np.exp(model.next_token_logprobs(context))) == pytest.approx(1, abs=1e-9)


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("sentences", [True, False])
def test_score_is_the_next_token_distribution(chars, smoothing, sentences):
    # score(ids)[i] = log p(ids[i] | ids[:i]): the context restarts after every
    # end-of-line in sentence mode and runs on in stream mode.
    vocab, train = chars
    model = fitted(vocab, train, order=4, smoothing=smoothing, sentences=sentences)
    ids = np.concatenate([train[100:130], np.random.default_rng(0).integers(0, len(vocab), 20)])
    scores = model.score(ids)
    assert scores.dtype == np.float64 and len(scores) == len(ids)
    assert not np.isnan(scores).any() and (scores <= 0).all()
    expected = [model.next_token_logprobs(ids[:i])[ids[i]] for i in range(len(ids))]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)


def test_stream_mode_differs_from_sentence_mode(chars):
    vocab, train = chars
    ids = train[:80]
    lines = fitted(vocab, train, order=3).score(ids)
    stream = fitted(vocab, train, order=3, sentences=False).score(ids)
    assert not np.allclose(lines, stream)


def test_mle_gives_minus_infinity_to_unseen_events(chars):
    vocab, train = chars
    model = fitted(vocab, train, order=2, smoothing="mle")
    z, t, h = vocab.id("z"), vocab.id("t"), vocab.id("h")
    assert "tg" not in TEXT and "g" in TEXT
    scores = model.score(np.array([t, h, z, t, vocab.id("g")]))
    lines = TEXT.split("\n")[:-1]
    starts_t = sum(line.startswith("t") for line in lines)
    assert scores[0] == pytest.approx(math.log(starts_t / len(lines)))
    assert scores[1] == pytest.approx(math.log(TEXT.count("th") / TEXT.count("t")))
    assert scores[2] == -math.inf  # z never seen at all
    assert scores[4] == -math.inf  # "tg" never seen after a seen "t"
    assert not np.isnan(scores).any()
    # after an unseen token the context is unseen: MLE falls back to the unigram
    assert scores[3] == pytest.approx(math.log(np.count_nonzero(train == t) / len(train)))


def test_add_k_by_hand(chars):
    vocab, train = chars
    model = fitted(vocab, train, order=2, smoothing="add-k", k=0.5)
    t, h, z = vocab.id("t"), vocab.id("h"), vocab.id("z")
    lp = model.next_token_logprobs(np.array([t]))
    denominator = TEXT.count("t") + 0.5 * len(vocab)
    assert lp[h] == pytest.approx(math.log((TEXT.count("th") + 0.5) / denominator))
    assert lp[z] == pytest.approx(math.log(0.5 / denominator))


def test_witten_bell_by_hand():
    # unigram level: p(w) = (c(w) + N1+ / |V|) / (N + N1+); "a a b": N = 4 with </s>,
    # N1+ = 3 distinct (a, b, </s>), |V| = 4 (<unk> too).
    tok = lmeval.WordTokenizer()
    vocab = tok.fit("a a b\n")
    model = fitted(vocab, tok.encode("a a b\n"), order=1, smoothing="witten-bell")
    lp = model.next_token_logprobs(np.zeros(0, dtype=np.int64))
    assert lp[vocab.id("a")] == pytest.approx(math.log((2 + 3 / 4) / (4 + 3)))
    assert lp[0] == pytest.approx(math.log((3 / 4) / 7))


@pytest.mark.parametrize(
    "params",
    [
        {"order": 0},
        {"order": "x"},
        {"order": "0"},
        {"smoothing": "good-turing"},
        {"k": 0},
        {"discount": 1.5},
        {"orders": 3},
        {"order": 65},
        {"k": "inf"},
        {"k": "nan"},
        {"k": 1e7},
    ],
)
def test_bad_parameters_are_usage_errors(chars, params):
    with pytest.raises(lmeval.UsageError):
        NGram(chars[0], **params)


def test_arpa_needs_a_readable_file(chars, tmp_path):
    with pytest.raises(lmeval.UsageError):
        Arpa(chars[0])
    with pytest.raises(lmeval.LmevalError):
        Arpa(chars[0], path=str(tmp_path / "missing.arpa"))
    (tmp_path / "bad.arpa").write_text("hello\n")
    with pytest.raises(lmeval.LmevalError, match="ARPA"):
        Arpa(chars[0], path=str(tmp_path / "bad.arpa"))


@pytest.mark.parametrize(
    "body, message",
    [
        ("ngram 1=2\n\n\\1-grams:\nabc a\n-1 b\n", "line 5: log10 p 'abc' is not a number"),
        (
            "ngram 1=2\n\n\\1-grams:\n0.5 a\n-1 b\n",
            "line 5: log10 p = 0.5 is not a log-probability",
        ),
        (
            "ngram 1=1\n\n\\1-grams:\n-1\n",
            "line 5: 1 field.s. where a 1-gram line has log10 p, 1 word",
        ),
        ("ngram x=2\n", "line 2: expected 'ngram N=COUNT'"),
        (
            "ngram 1=2\n\n\\1-grams:\n-1 a\n",
            "declares 2 1-grams, its .1-grams: section .ending on line 6. has 1",
        ),
    ],
)
def test_malformed_arpa_names_file_and_line(chars, tmp_path, body, message):
    path = tmp_path / "bad.arpa"
    path.write_text("\\data\\\n" + body + "\\end\\\n")
    with pytest.raises(lmeval.LmevalError, match=message):
        Arpa(chars[0], path=str(path))


def test_tokens_that_arpa_cannot_spell_apart_are_refused(tmp_path):
    tok = lmeval.CharTokenizer()
    vocab = tok.fit("a b\u2581c\n")  # a space and a literal U+2581 are both spelled "\u2581"
    model = fitted(vocab, tok.encode("a b\u2581c\n"), order=2)
    with pytest.raises(lmeval.UsageError, match="both spelled"):
        model.save(tmp_path / "m.arpa")
    assert not (tmp_path / "m.arpa").exists()


def test_unfitted_model_says_so(chars):
    with pytest.raises(lmeval.LmevalError, match="fit"):
        NGram(chars[0]).score(np.array([1, 2]))


def test_plugin_registers_both_models():
    registered = []
    lmeval_ngram.register_models(registered.append)
    assert registered == [NGram, Arpa]


@pytest.mark.parametrize("smoothing", ["mkn", "kn", "witten-bell", "absolute", "mle"])
def test_arpa_round_trip_scores_identically(chars, tmp_path, smoothing):
    vocab, train = chars
    model = fitted(vocab, train, order=4, smoothing=smoothing)
    model.save(tmp_path / "m.arpa")
    text = (tmp_path / "m.arpa").read_text(encoding="utf-8")
    assert "\n0\t<s>\t" in text and "\t▁" in text  # <s> as KenLM writes it; space as ▁
    back = Arpa(vocab, path=str(tmp_path / "m.arpa"))
    back.fit(train)
    ids = np.concatenate([train, np.random.default_rng(1).integers(0, len(vocab), 300)])
    np.testing.assert_array_equal(back.score(ids), model.score(ids))  # bit for bit
    assert back.num_params == model.num_params


def test_add_k_cannot_be_written_as_arpa(chars, tmp_path):
    model = fitted(*chars, order=2, smoothing="add-k")
    with pytest.raises(lmeval.UsageError, match="npz"):
        model.save(tmp_path / "m.arpa")


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_npz_save_load_scores_identically(chars, tmp_path, smoothing):
    vocab, train = chars
    model = fitted(vocab, train, order=3, smoothing=smoothing, sentences=smoothing != "kn")
    path: Path = tmp_path / "m.npz"
    model.save(path)
    back = NGram.load(path)
    assert back.config == model.config and back.vocab == vocab
    assert back.details() == model.details() and back.num_params == model.num_params
    ids = np.random.default_rng(2).integers(0, len(vocab), 500)
    np.testing.assert_array_equal(back.score(ids), model.score(ids))
    with np.load(path, allow_pickle=False) as data:
        assert all(data[name].dtype != object for name in data.files)


def test_arpa_model_save_load(chars, tmp_path):
    vocab, train = chars
    fitted(vocab, train, order=3).save(tmp_path / "m.arpa")
    model = Arpa(vocab, path=str(tmp_path / "m.arpa"))
    model.save(tmp_path / "a.npz")
    back = Arpa.load(tmp_path / "a.npz")
    np.testing.assert_array_equal(back.score(train), model.score(train))
    with pytest.raises(lmeval.LmevalError, match="arpa"):
        NGram.load(tmp_path / "a.npz")


def test_details_and_size(chars):
    vocab, train = chars
    model = fitted(vocab, train, order=3)
    facts = model.details()
    assert facts["smoothing"] == "mkn" and set(facts["discounts"]) == {"1", "2", "3"}
    sizes = facts["ngrams"]
    assert sizes["1"] == len(vocab) + 1  # <s> too
    assert model.num_params == sum(sizes.values())
    assert lmeval.parse_spec(NGram.recommended).name == "ngram"


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_fit_on_nothing_is_uniform(chars, smoothing):
    vocab, _ = chars
    model = fitted(vocab, np.zeros(0, dtype=np.int64), order=3, smoothing=smoothing)
    np.testing.assert_allclose(model.score(np.array([1, 2, vocab.eos_id])), -math.log(len(vocab)))


def test_both_packings_count_the_same(chars):
    # mixed radix (small vocabularies) and prefix ranks (any vocabulary) must agree
    from lmeval_ngram.counting import count_ngrams

    vocab, train = chars
    mixed = count_ngrams(train, vocab.eos_id, len(vocab) + 1, 5, packing="mixed")
    ranked = count_ngrams(train, vocab.eos_id, len(vocab) + 1, 5, packing="ranked")
    for a, b in zip(mixed, ranked, strict=True):
        for field in ("keys", "counts", "suffix", "starts_bos"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


@pytest.mark.parametrize("key_range", [2**40, 20_000])
def test_indexes_find_every_key_and_nothing_else(key_range, monkeypatch):
    from lmeval_ngram.hashing import DenseIndex, HashIndex, index_for

    monkeypatch.setenv("LMEVAL_NUMBA", "0")  # the numpy index, whatever ran before

    rng = np.random.default_rng(3)
    keys = np.unique(rng.integers(0, key_range, 5000))
    index = index_for(keys, key_range)
    assert isinstance(index, HashIndex if key_range > 2**20 else DenseIndex)
    if isinstance(index, HashIndex):
        index = HashIndex(keys[:100], load=2)
        index.add(keys[100:])  # grows and rehashes
    np.testing.assert_array_equal(index.find(keys), np.arange(len(keys)))
    absent = np.setdiff1d(rng.integers(0, key_range, 5000), keys)
    assert (index.find(absent) == -1).all() and (index.find(-keys[:10] - 1) == -1).all()


def test_large_vocabulary_keys_do_not_overflow():
    # 70,000 tokens: context rank * radix passes 2**31 at order 3, and radix**4
    # passes 2**62, so order 4 counts with prefix ranks instead of mixed radix.
    rng = np.random.default_rng(4)
    vocab = lmeval.Vocabulary([f"w{i}" for i in range(70_000)], eos="</s>")
    ids = rng.integers(1, 1_000, 60_000)
    ids[rng.random(len(ids)) < 0.3] += 69_000 - 1_000  # rare words widen the key range
    ids[rng.random(len(ids)) < 0.05] = vocab.eos_id
    model = fitted(vocab, ids, order=4, values="float64")
    assert model.tables.keys[2].max() > 2**31
    picks = rng.integers(10, len(ids), 8)
    scores = model.score(ids)
    for i in picks:
        logp = model.next_token_logprobs(ids[:i])
        assert logp[ids[i]] == pytest.approx(scores[i], abs=1e-12)
        assert math.fsum(np.exp(logp)) == pytest.approx(1.0, abs=1e-9)


def _sampled_step_by_step(model, prefix: np.ndarray, n: int, temperature: float, seed: int):
    """What generation must draw: ``lmeval.sample_id`` over the whole context, token by token."""
    rng = np.random.default_rng(seed)
    context = list(prefix)
    for _ in range(n):
        logp = model.next_token_logprobs(np.asarray(context, dtype=np.int64))
        context.append(lmeval.sample_id(logp, temperature, rng))
    return np.asarray(context[len(prefix) :], dtype=np.int64)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
@pytest.mark.parametrize("sentences", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.0])
def test_generate_draws_what_sampling_step_by_step_draws(chars, order, sentences, temperature):
    vocab, train = chars
    model = fitted(vocab, train, order=order, sentences=sentences)
    drawn = []
    for seed, prefix in enumerate((train[:0], train[:40], np.array([vocab.eos_id]))):
        expected = _sampled_step_by_step(model, prefix, 150, temperature, seed)
        np.testing.assert_array_equal(model.generate(prefix, 150, temperature, seed), expected)
        # the default generate of lmeval.LanguageModel draws the same, from the same seed
        default = lmeval.LanguageModel.generate(model, prefix, 150, temperature, seed)
        np.testing.assert_array_equal(default, expected)
        drawn.extend(expected)
    if sentences and temperature:
        assert vocab.eos_id in drawn  # the context restarted at least once
    assert len(model.generate(train[:5], 0)) == 0


def test_arpa_generates_what_its_ngram_generates(chars, tmp_path):
    vocab, train = chars
    model = fitted(vocab, train, order=4)
    model.save(tmp_path / "m.arpa")
    back = Arpa(vocab, path=str(tmp_path / "m.arpa"))
    prefix = train[:25]
    np.testing.assert_array_equal(
        back.generate(prefix, 300, 1.0, 7), model.generate(prefix, 300, 1.0, 7)
    )
    np.testing.assert_array_equal(
        back.generate(prefix, 50, 1.0, 3), _sampled_step_by_step(back, prefix, 50, 1.0, 3)
    )


@pytest.mark.parametrize("sentences", [True, False])
def test_a_long_context_costs_only_its_last_tokens(chars, sentences):
    # a trillion ids as one zero-stride view: reading (or copying, or checking) the whole
    # context would take hours or fail to allocate; only the last order-1 ids are read
    vocab, train = chars
    model = fitted(vocab, train, order=3, sentences=sentences)
    t = vocab.id("t")
    huge = np.broadcast_to(np.int64(t), (10**12,))
    np.testing.assert_array_equal(
        model.next_token_logprobs(huge), model.next_token_logprobs(np.array([t, t]))
    )
    assert len(model.generate(huge, 3)) == 3


# -- counting at scale: compiled windows, spilled runs, and the numpy paths agree -------------


def _fit_scores(text: str, monkeypatch, numba: str, **params):
    monkeypatch.setenv("LMEVAL_NUMBA", numba)
    tok = lmeval.CharTokenizer()
    vocab = tok.fit(text)
    model = NGram(vocab, **params)
    model.fit(tok.encode(text))
    return model, model.score(tok.encode(text[-5000:]))


@pytest.mark.parametrize("order", [1, 2, 5, 8])
def test_the_compiled_counting_and_the_numpy_one_give_the_same_model(order, monkeypatch):
    """With numba (lmeval[fast]) the windows of every position are counted by a compiled
    loop; without it (LMEVAL_NUMBA=0) by numpy: the same counts, to the last bit."""
    pytest.importorskip("numba", reason="needs the fast extra (pip install 'lmeval[fast]')")
    rng = np.random.default_rng(order)
    lines = ["".join(rng.choice(list("abcde \t"), size=rng.integers(0, 40))) for _ in range(400)]
    text = "\n".join(lines) + "\n"
    compiled, a = _fit_scores(text, monkeypatch, "1", order=order)
    plain, b = _fit_scores(text, monkeypatch, "0", order=order)
    assert compiled.details()["counting"].get("method", "windows") == "windows" or order == 1
    assert plain.details()["counting"].get("method") in (None, "mixed", "ranked")
    np.testing.assert_array_equal(a, b)
    for n in range(compiled.tables.order):
        np.testing.assert_array_equal(compiled.tables.keys[n], plain.tables.keys[n])


@pytest.mark.parametrize("arrangement", ["shuffled", "sorted", "reversed", "organ pipe"])
@pytest.mark.parametrize("depth_limit", [-1, 0, 2])
def test_the_compiled_window_sort_orders_rows_as_lexsort_does(arrangement, depth_limit):
    """The counting tables are sorted in place by a compiled introsort; whole-model tests
    cannot reach its heap-sort fallback on demand, so the kernel is held here to
    numpy's lexsort on every path (quicksort, heap sort from the start, both)."""
    compiled = pytest.importorskip("lmeval_ngram._compiled", reason="needs numba")
    rng = np.random.default_rng(depth_limit + 7)
    for width, high, dtype in [(1, 300, np.uint16), (3, 6, np.uint8), (6, 4, np.uint32)]:
        rows = np.unique(rng.integers(0, high, size=(3000, width)).astype(dtype), axis=0)
        if arrangement == "shuffled":
            rows = rows[rng.permutation(len(rows))]
        elif arrangement == "reversed":
            rows = rows[::-1].copy()
        elif arrangement == "organ pipe":
            rows = np.concatenate([rows[::2], rows[1::2][::-1]])
        expected = np.lexsort(rows.T[::-1])
        counts = np.arange(len(rows), dtype=np.int32)
        sorted_rows = rows.copy()
        compiled.sort_rows(sorted_rows, counts, depth_limit)
        np.testing.assert_array_equal(sorted_rows, rows[expected])
        np.testing.assert_array_equal(counts, expected)  # the counts moved with their rows


def test_counting_tables_grown_in_place_count_what_numpy_counts(monkeypatch):
    """The compiled tables start at 65,536 slots and grow in place by half, their
    windows rehashed there; with half a million distinct windows they grow several
    times, and the model is the one numpy's counting gives."""
    pytest.importorskip("numba", reason="needs the fast extra (pip install 'lmeval[fast]')")
    rng = np.random.default_rng(11)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    text = "".join(
        "".join(rng.choice(letters, size=rng.integers(5, 60))) + "\n" for _ in range(20_000)
    )
    tok = lmeval.CharTokenizer()
    vocab = tok.fit(text)
    ids = tok.encode(text)
    windows = np.lib.stride_tricks.sliding_window_view(ids, 6)
    assert len(np.unique(windows, axis=0)) > 8 * 65_536  # both ranges' tables grow
    models = {}
    for numba in ("1", "0"):
        monkeypatch.setenv("LMEVAL_NUMBA", numba)
        models[numba] = NGram(vocab, order=6)
        models[numba].fit(ids)
    assert models["1"].details()["counting"]["method"] == "windows"
    for mine, theirs in zip(models["1"].tables.keys, models["0"].tables.keys, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(models["1"].score(ids[:3000]), models["0"].score(ids[:3000]))


def test_window_columns_are_packed_in_place_as_a_slice_would_keep_them():
    """Counting drops the windows' columns once their order is done and packs the rest
    to the front of the same memory; the kernel is held to numpy's slicing."""
    compiled = pytest.importorskip("lmeval_ngram._compiled", reason="needs numba")
    rng = np.random.default_rng(3)
    for width, first, dtype in [(5, 2, np.uint32), (3, 1, np.uint16), (7, 6, np.uint8)]:
        rows = rng.integers(0, 200, size=(1001, width)).astype(dtype)
        expected = rows[:, first:].copy()
        compiled.pack_columns(rows.reshape(-1), width, first)
        packed = rows.reshape(-1)[: expected.size].reshape(expected.shape)
        np.testing.assert_array_equal(packed, expected)


def test_kenlms_count_of_counts_is_found_a_slice_at_a_time(monkeypatch):
    """The n-gram whose raw count lmplz counts (discounts=kenlm) is looked for a slice
    of each order at a time; slices of a few n-grams find the same one."""
    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(60)]
    text = "".join(
        " ".join(rng.choice(words, size=rng.integers(1, 12))) + "\n" for _ in range(3000)
    )
    tok = lmeval.WordTokenizer()
    vocab = tok.fit(text)
    ids = tok.encode(text)
    whole = NGram(vocab, order=4)
    whole.fit(ids)
    monkeypatch.setattr(lmeval_ngram.smoothing, "SLICE", 7)
    sliced = NGram(vocab, order=4)
    sliced.fit(ids)
    assert sliced.details()["discounts"] == whole.details()["discounts"]
    assert any(
        v != list(lmeval_ngram.smoothing.FALLBACK) for v in whole.details()["discounts"].values()
    )
    np.testing.assert_array_equal(sliced.score(ids[:500]), whole.score(ids[:500]))


def test_counting_past_its_memory_writes_sorted_runs_and_merges_them_exactly(tmp_path, monkeypatch):
    """A corpus that needs several tables under memory=4M: the counts go to sorted runs
    in tmpdir, merged at the end as KenLM's lmplz -S does; the model equals the one
    counted in memory, and nothing is left in the folder."""
    pytest.importorskip("numba", reason="needs the fast extra (pip install 'lmeval[fast]')")
    rng = np.random.default_rng(0)
    letters = list("abcdefghijklmnopqrstuvwxyz ")
    lines = ["".join(rng.choice(letters, size=rng.integers(1, 80))) for _ in range(30_000)]
    text = "\n".join(lines) + "\n"
    assert len(text) > 1_000_000  # a million windows, about as many distinct ones
    spilled, a = _fit_scores(text, monkeypatch, "1", order=6, memory="4M", tmpdir=str(tmp_path))
    whole, b = _fit_scores(text, monkeypatch, "1", order=6)
    assert spilled.details()["counting"]["runs_written"] >= 3
    assert whole.details()["counting"]["runs_written"] == 0
    np.testing.assert_array_equal(a, b)
    assert list(tmp_path.iterdir()) == []


def test_a_saved_model_is_mapped_from_its_file_not_read(tmp_path):
    """Saved n-gram arrays are stored uncompressed and mapped when loaded (a model of
    gigabytes loads at once); the scores are those of the model that was saved, also
    through the .lmz archive compare --save-models writes."""
    rng = np.random.default_rng(0)
    text = "\n".join(
        "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz "), 60)) for _ in range(5000)
    )
    (tmp_path / "t.txt").write_text(text + "\n")
    result = lmeval.compare(
        ["kn=ngram:order=5"], text=tmp_path / "t.txt", save_models=tmp_path, bootstrap=0
    )
    model, _ = lmeval.load_model(tmp_path / "kn.lmz", lmeval.load_host().models)
    mapped = [k for k in model.tables.keys if isinstance(k, np.memmap)]
    assert len(mapped) >= 3  # every table large enough to be worth a mapping
    tok = lmeval.CharTokenizer()
    tok.vocab = model.vocab
    test = lmeval.load_corpus(text=tmp_path / "t.txt").test
    logprobs = model.score(tok.encode(test))
    np.testing.assert_array_equal(logprobs, result.scores["kn"].logprobs)


@pytest.mark.parametrize("sentences", [True, False])
def test_a_long_text_is_scored_in_slices_as_it_would_be_whole(sentences, monkeypatch):
    """Scoring goes a slice of positions at a time (bounded temporaries); every slice
    starts early by the context its first tokens need, so the scores are those of one
    pass: in sentence mode, those of scoring each line alone; in stream mode, those of
    slices too large to cut the text."""
    import lmeval_ngram.tables

    rng = np.random.default_rng(1)
    letters = list("abcdefgh ")
    text = "\n".join("".join(rng.choice(letters, size=rng.integers(0, 30))) for _ in range(3000))
    tok = lmeval.CharTokenizer()
    vocab = tok.fit(text + "\n")
    ids = tok.encode(text + "\n")
    model = fitted(vocab, ids, order=6, sentences=sentences)
    monkeypatch.setattr(lmeval_ngram.tables, "SCORE_SLICE", 997)
    sliced = model.score(ids)
    if sentences:
        ends = np.flatnonzero(ids == vocab.eos_id) + 1
        alone = np.concatenate([model.score(line) for line in np.split(ids, ends[:-1])])
    else:
        monkeypatch.setattr(lmeval_ngram.tables, "SCORE_SLICE", len(ids) + 10)
        alone = model.score(ids)
    np.testing.assert_array_equal(sliced, alone)
    assert len(ids) > 20 * 997  # many slices


PRUNED_ARPA = """\\data\\
ngram 1=7
ngram 2=2
ngram 3=1
ngram 4=1

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t-0.3
-0.5\ta\t-0.2
-0.6\tb\t-0.1
-0.7\tc\t-0.1
-0.8\td\t0
-1.1\t</s>

\\2-grams:
-0.3\t<s> a\t-0.1
-0.2\ta b\t-0.1

\\3-grams:
-0.2\ta b c\t-0.4

\\4-grams:
-0.05\ta b c d

\\end\\
"""


def test_next_token_distributions_agree_with_scores_on_any_arpa_file(tmp_path):
    """An ARPA file need not hold every suffix ("a b c d" and "a b c" without "b c"),
    and the tokens it lacks all score as its <unk> (candidates that repeat): the
    distribution after every context still gives each token its score."""
    (tmp_path / "pruned.arpa").write_text(PRUNED_ARPA, encoding="utf-8")
    tok = lmeval.WordTokenizer()
    text = "a b c d x\ny a b c d a\nb c x y d\n"
    vocab = tok.fit(text)
    model = Arpa(vocab, path=str(tmp_path / "pruned.arpa"))
    model.fit(np.zeros(0, dtype=np.int64))
    ids = tok.encode(text)
    scores = model.score(ids)
    for i in range(len(ids)):
        logp = model.next_token_logprobs(ids[:i])
        assert logp[ids[i]] == pytest.approx(scores[i], abs=1e-12), i
    after_abc = model.next_token_logprobs(tok.encode("a b c d\n")[:3])
    assert after_abc[vocab.id("d")] == pytest.approx(-0.05 * np.log(10), abs=1e-9)
    assert after_abc[vocab.id("x")] == after_abc[vocab.id("y")] == after_abc[0]  # all <unk>

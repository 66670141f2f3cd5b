"""A training file is read a piece at a time: the text and its ids are never whole.

``--train FILE`` gives a corpus whose training text is read when first asked
for; the tokenizer builds its vocabulary from pieces of whole lines, and a model
that says ``fits_from_chunks`` (the n-gram) trains on a ``TokenChunks`` made
again from the file. Everything must equal what the whole text gives.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lmeval
import lmeval.files
import lmeval.tokenizers
from lmeval import CharTokenizer, WordTokenizer
from lmeval.errors import LmevalError
from lmeval_ngram import NGram

LINES = [
    "the time machine, by h. g. wells",
    "the time traveller (for so it will be convenient to speak of him)",
    "was expounding a recondite matter to us. </s> <unk> \t tabs\x0bvt",
    "",
    "his grey eyes shone and twinkled \U0001f600 and his usually pale face was flushed.",
]


def text_of(n: int, seed: int = 0, end: str = "\n") -> str:
    rng = np.random.default_rng(seed)
    lines = [LINES[i] for i in rng.integers(0, len(LINES), size=n)]
    return "\n".join(lines) + end


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of a few hundred bytes: a small file comes in many of them."""
    monkeypatch.setattr(lmeval.files, "PIECE_BYTES", 256)
    monkeypatch.setattr(lmeval.tokenizers, "PIECE_CHARS", 256)


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=200) | st.text(max_size=120).map(lambda t: t.encode("utf-8")),
    st.integers(1, 9),
)
def test_the_pieces_of_any_file_are_its_text_cut_at_line_ends(data, piece_bytes):
    """Joined, the pieces are what read_text gives (\\r\\n across a cut, a character
    across a cut, a byte-order mark). A file read_text refuses is refused in pieces
    too, in one line naming it (which fault comes first may differ: a bad byte in the
    first piece before a NUL byte in a later one)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.txt"
        path.write_bytes(data)
        try:
            whole = lmeval.read_text(path)
        except LmevalError:
            with pytest.raises(LmevalError) as caught:
                list(lmeval.iter_text(path, piece_bytes=piece_bytes))
            assert str(path) in str(caught.value) and "\n" not in str(caught.value)
            return
        pieces = list(lmeval.iter_text(path, piece_bytes=piece_bytes))
    assert "".join(pieces) == whole
    assert all(piece.endswith("\n") for piece in pieces[:-1]) and all(pieces)


@given(st.text(max_size=300), st.integers(1, 20))
def test_line_pieces_are_the_text_cut_after_newlines(text, chars):
    pieces = list(lmeval.tokenizers.line_pieces(text, chars))
    assert "".join(pieces) == text
    assert all(piece.endswith("\n") for piece in pieces[:-1]) and all(pieces)


def test_a_training_file_is_read_in_pieces_with_the_checksums_of_its_text(tmp_path, small_pieces):
    (tmp_path / "train.txt").write_text(text_of(300).replace("\n", "\r\n"), encoding="utf-8")
    (tmp_path / "test.txt").write_text(text_of(20, seed=1), encoding="utf-8")
    lazy = lmeval.load_corpus(train=tmp_path / "train.txt", test=tmp_path / "test.txt")
    text = lmeval.read_text(tmp_path / "train.txt")
    pieces = list(lazy.train_pieces())
    assert len(pieces) > 10 and "".join(pieces) == text
    eager = lmeval.Corpus("x", text, lazy.test)
    assert lazy.checksums() == eager.checksums()
    assert lazy.line_counts() == eager.line_counts()
    assert lazy.train == text


def test_a_corpus_sent_to_another_process_carries_its_training_text(tmp_path):
    (tmp_path / "train.txt").write_text(text_of(50), encoding="utf-8")
    (tmp_path / "test.txt").write_text(text_of(5, seed=1), encoding="utf-8")
    corpus = lmeval.load_corpus(train=tmp_path / "train.txt", test=tmp_path / "test.txt")
    sent = pickle.dumps(corpus)
    (tmp_path / "train.txt").unlink()  # the other machine has no such file
    received = pickle.loads(sent)
    assert received.train == text_of(50)
    assert received.checksums() == lmeval.Corpus("x", text_of(50), corpus.test).checksums()


@pytest.mark.parametrize("content", [None, b"", b"\x00binary", b"\xff\xfe bad"])
def test_a_bad_training_file_fails_when_the_corpus_is_loaded(tmp_path, content):
    (tmp_path / "test.txt").write_text("a b\n", encoding="utf-8")
    if content is not None:
        (tmp_path / "train.txt").write_bytes(content)
    with pytest.raises(LmevalError) as caught:
        corpus = lmeval.load_corpus(train=tmp_path / "train.txt", test=tmp_path / "test.txt")
        corpus.checksums()  # an empty file is known to be empty once read to the end
    assert "\n" not in str(caught.value) and "train.txt" in str(caught.value)


class Shouting(CharTokenizer):
    """A custom split (upper case): the per-line path, which pieces of lines keep."""

    name = "shouting"

    def split(self, line: str) -> list[str]:
        return list(line.upper())


@pytest.mark.parametrize("make", [CharTokenizer, WordTokenizer, Shouting])
@pytest.mark.parametrize("lines", [True, False])
@pytest.mark.parametrize("end", ["\n", ""])
def test_a_vocabulary_and_ids_from_pieces_are_those_of_the_whole_text(make, lines, end):
    text = text_of(400, end=end)
    whole = make(lines=lines)
    whole.fit(text)
    pieced = make(lines=lines)
    if not pieced.reads_in_pieces:  # stream mode with a custom split: the whole text
        assert make is Shouting and not lines
        return
    pieces = list(lmeval.tokenizers.line_pieces(text, 97))
    assert len(pieces) > 20
    assert pieced.fit_pieces(pieces) == whole.vocab
    ids = np.concatenate(list(pieced.encode_pieces(pieces)))
    np.testing.assert_array_equal(ids, whole.encode(text))


class Learnt(WordTokenizer):
    """A tokenizer with a fit of its own (a learnt vocabulary, here the first word of
    each line only): it must get the whole text, never pieces."""

    name = "learnt"

    def fit(self, text: str) -> lmeval.Vocabulary:
        firsts = sorted({line.split()[0] for line in text.splitlines() if line.split()})
        self.vocab = lmeval.Vocabulary(firsts, eos=self.eos_token)
        return self.vocab


class Recoded(CharTokenizer):
    """An encode of its own: the evaluator cannot know it is line by line."""

    name = "recoded"

    def encode(self, text: str) -> np.ndarray:
        return super().encode(text.lower())


def test_a_tokenizer_with_its_own_fit_or_encode_reads_the_whole_text():
    """The evaluator hands a tokenizer pieces only where that gives what the whole
    text gives: not to one whose fit or encode it does not know."""
    assert WordTokenizer().reads_in_pieces and CharTokenizer().reads_in_pieces
    assert not Learnt().reads_in_pieces
    assert not Recoded().reads_in_pieces
    assert CharTokenizer(lines=False).reads_in_pieces  # its code-point path: stream mode too


def test_the_word_tokenizer_keeps_the_ids_of_the_text_it_counted():
    """One pass over a word text: the ids of the training text come from the numbers
    of its words, not from splitting it again; for another text there are none."""
    text = text_of(500)
    tok = WordTokenizer()
    source = object()
    tok.fit_pieces(lmeval.tokenizers.line_pieces(text, 200), source=source)
    kept = tok.fitted_ids(source)
    assert kept is not None
    np.testing.assert_array_equal(np.concatenate(list(kept)), tok.encode(text))
    assert tok.fitted_ids(object()) is None
    assert CharTokenizer().fitted_ids(source) is None
    # in chunks of whole lines, each at least CHUNK_IDS ids but the last
    tok.CHUNK_IDS = 300
    chunks = list(tok.fitted_ids(source))
    assert len(chunks) > 3
    assert all(len(chunk) >= 300 for chunk in chunks[:-1])
    assert all(chunk[-1] == tok.vocab.eos_id for chunk in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), tok.encode(text))


def test_an_ngram_drops_the_kept_ids_once_it_has_counted_them():
    """The last row that reads the training chunks is told (``after_fit``) as soon as
    the n-gram model has counted them (``TokenChunks.done``), before it estimates:
    the word numbers the tokenizer kept are not under its estimation; then again
    once it is fitted. The model is the one fitted with the ids kept."""
    text = text_of(400)
    corpus = lmeval.Corpus("x", text, text_of(40, seed=1))
    tok = WordTokenizer()
    tok.fit_pieces(corpus.train_pieces(), source=corpus)
    model = NGram(tok.vocab, order=3)
    seen = []

    def after_fit():
        seen.append(
            (tok.fitted_ids(corpus) is not None, getattr(model, "tables", None) is not None)
        )
        tok.forget_fitted_ids()

    record, _ = lmeval.evaluate_model(model, corpus, tok, after_fit=after_fit)
    assert record.get("error") is None
    assert seen == [(True, False), (False, True)]  # during the fit, before the tables; after
    reference = NGram(tok.vocab, order=3)
    reference.fit(tok.encode(text))
    ids = tok.encode(corpus.test)
    np.testing.assert_array_equal(model.score(ids), reference.score(ids))


def test_token_chunks_pass_on_that_they_are_done_with():
    calls = []
    chunks = lmeval.TokenChunks(lambda: iter([np.arange(3)]), on_done=lambda: calls.append(1))
    assert [len(c) for c in chunks] == [3]
    chunks.done()
    assert calls == [1]
    assert [len(c) for c in chunks] == [3]  # still iterable after
    lmeval.TokenChunks(lambda: iter([])).done()  # nobody to tell: nothing happens


def chunks_of(ids: np.ndarray, eos: int, lines_per_chunk: int) -> lmeval.TokenChunks:
    ends = np.flatnonzero(ids == eos) + 1
    cuts = [0, *ends[lines_per_chunk - 1 :: lines_per_chunk].tolist()]
    if cuts[-1] != len(ids):
        cuts.append(len(ids))
    return lmeval.TokenChunks(lambda: (ids[a:b] for a, b in zip(cuts, cuts[1:], strict=False)))


@pytest.mark.parametrize("numba", ["1", "0"])
@pytest.mark.parametrize("level", ["char", "word"])
@pytest.mark.parametrize("extra", [{}, {"smoothing": "kn", "discounts": "textbook"}])
def test_an_ngram_fitted_from_chunks_is_the_one_fitted_from_the_array(
    numba, level, extra, monkeypatch
):
    """Chunk after chunk into the compiled tables, or their concatenation where they
    cannot be counted so (without numba): the same model, to the last bit."""
    if numba == "1":
        pytest.importorskip("numba", reason="needs the fast extra (pip install 'lmeval[fast]')")
    monkeypatch.setenv("LMEVAL_NUMBA", numba)
    tok = CharTokenizer() if level == "char" else WordTokenizer()
    text = text_of(2000, seed=3)
    vocab = tok.fit(text)
    ids = tok.encode(text)
    whole = NGram(vocab, order=5, **extra)
    whole.fit(ids)
    chunked = NGram(vocab, order=5, **extra)
    chunked.fit(chunks_of(ids, vocab.eos_id, 37))
    test = tok.encode(text_of(50, seed=4))
    np.testing.assert_array_equal(chunked.score(test), whole.score(test))
    for mine, theirs in zip(chunked.tables.keys, whole.tables.keys, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert chunked.details()["discounts"] == whole.details()["discounts"]


def test_chunks_past_the_counting_memory_spill_and_merge_to_the_same_model(tmp_path):
    pytest.importorskip("numba", reason="needs the fast extra (pip install 'lmeval[fast]')")
    rng = np.random.default_rng(0)
    letters = list("abcdefghijklmnopqrstuvwxyz ")
    text = "\n".join("".join(rng.choice(letters, size=rng.integers(1, 80))) for _ in range(20_000))
    tok = CharTokenizer()
    vocab = tok.fit(text + "\n")
    ids = tok.encode(text + "\n")
    whole = NGram(vocab, order=6)
    whole.fit(ids)
    spilled = NGram(vocab, order=6, memory="4M", tmpdir=str(tmp_path))
    spilled.fit(chunks_of(ids, vocab.eos_id, 1000))
    assert spilled.details()["counting"]["runs_written"] >= 3
    np.testing.assert_array_equal(spilled.score(ids[:5000]), whole.score(ids[:5000]))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tokenizer", ["char", "word"])
def test_compare_on_a_training_file_equals_compare_on_its_text(tokenizer, tmp_path, small_pieces):
    """End to end: a file read in pieces and trained on in chunks gives the records the
    same text in memory gives."""
    (tmp_path / "train.txt").write_text(text_of(3000, seed=5), encoding="utf-8")
    (tmp_path / "test.txt").write_text(text_of(200, seed=6), encoding="utf-8")
    specs = ["ngram:order=4", "uniform"]
    from_file = lmeval.compare(
        specs, train=tmp_path / "train.txt", test=tmp_path / "test.txt",
        tokenizer=tokenizer, bootstrap=0,
    )  # fmt: skip
    corpus = lmeval.Corpus(
        "x", lmeval.read_text(tmp_path / "train.txt"), lmeval.read_text(tmp_path / "test.txt")
    )
    in_memory = lmeval.compare(specs, corpus=corpus, tokenizer=tokenizer, bootstrap=0)
    for mine, theirs in zip(from_file.results, in_memory.results, strict=True):
        assert mine["perplexity"] == theirs["perplexity"] and mine["verified"]
    assert from_file.meta["checksums"] == in_memory.meta["checksums"]
    assert from_file.meta["split_lines"] == in_memory.meta["split_lines"]


SPY = """
import numpy as np, lmeval

class Spy(lmeval.LanguageModel):
    name = "spy"
    fits_from_chunks = True
    seen = []

    def fit(self, train_ids, valid_ids=None):
        type(self).seen.append([np.array(chunk) for chunk in train_ids])

    def score(self, ids):
        return np.full(len(ids), -np.log(len(self.vocab)))

@lmeval.hookimpl
def register_models(register):
    register(Spy)
"""


def test_a_model_that_fits_from_chunks_never_gets_the_whole_text(tmp_path, small_pieces):
    (tmp_path / "spy.py").write_text(SPY, encoding="utf-8")
    (tmp_path / "train.txt").write_text(text_of(500, seed=7), encoding="utf-8")
    (tmp_path / "test.txt").write_text(text_of(20, seed=8), encoding="utf-8")
    host = lmeval.load_host([str(tmp_path / "spy.py")])
    model, tok = lmeval.train(
        "spy", train=tmp_path / "train.txt", test=tmp_path / "test.txt", host=host
    )
    [chunks] = host.models.get("spy").seen
    assert isinstance(model, host.models.get("spy"))
    assert len(chunks) > 10
    assert all(chunk[-1] == tok.vocab.eos_id for chunk in chunks)  # whole lines
    whole = tok.encode(lmeval.read_text(tmp_path / "train.txt"))
    np.testing.assert_array_equal(np.concatenate(chunks), whole)


KEEPER = """
import numpy as np, lmeval

EVENTS = []

class Keeper(lmeval.WordTokenizer):
    name = "keeper"

    def forget_fitted_ids(self):
        EVENTS.append("forget")
        super().forget_fitted_ids()

class Chunked(lmeval.LanguageModel):
    name = "chunked"
    fits_from_chunks = True

    def fit(self, train_ids, valid_ids=None):
        self.total = sum(len(np.asarray(chunk)) for chunk in train_ids)
        EVENTS.append("fit")

    def score(self, ids):
        EVENTS.append("score")
        return np.full(len(ids), -np.log(len(self.vocab)))

class Failing(Chunked):
    name = "failing"

    def fit(self, train_ids, valid_ids=None):
        EVENTS.append("fail")
        raise RuntimeError("this row fails")

class Whole(Chunked):
    name = "whole"
    fits_from_chunks = False

    def fit(self, train_ids, valid_ids=None):
        EVENTS.append("whole fit")

@lmeval.hookimpl
def register_models(register):
    register(Chunked)
    register(Failing)
    register(Whole)

@lmeval.hookimpl
def register_tokenizers(register):
    register(Keeper)
"""


@pytest.mark.parametrize(
    "specs, expected",
    [
        # kept for the second row's fit, gone before its scoring
        (["a=chunked", "b=chunked", "uniform"], ["fit", "forget", "score"]),
        # the last row that reads them fails: gone before the next row is fitted
        (["a=chunked", "failing", "whole"], ["fail", "forget", "whole fit"]),
    ],
)
def test_the_kept_training_ids_go_once_the_last_row_that_reads_them_is_fitted(
    tmp_path, specs, expected
):
    """The word numbers a tokenizer keeps for fitting (4 bytes a training word) are
    not held under the last chunk-reading row's scoring, nor under later rows."""
    (tmp_path / "keeper.py").write_text(KEEPER, encoding="utf-8")
    (tmp_path / "train.txt").write_text(text_of(300, seed=3), encoding="utf-8")
    (tmp_path / "test.txt").write_text(text_of(20, seed=4), encoding="utf-8")
    host = lmeval.load_host([str(tmp_path / "keeper.py")])
    events = sys.modules[host.tokenizers.get("keeper").__module__].EVENTS
    events.clear()
    comparison = lmeval.compare(
        specs, train=tmp_path / "train.txt", test=tmp_path / "test.txt",
        tokenizer="keeper", bootstrap=0, verify=0, host=host,
    )  # fmt: skip
    assert [bool(row.get("error")) for row in comparison.results] == [
        spec == "failing" for spec in specs
    ]
    assert events.count("fit") == 1 + ("b=chunked" in specs)
    last = len(events) - 1 - events[::-1].index(expected[0])
    assert events[last : last + 3] == expected


def test_read_only_ids_cannot_be_made_writable_and_are_not_copied_twice():
    from lmeval.verify import read_only

    ids = np.arange(10, dtype=np.int32)
    first = read_only(ids)
    assert first.dtype == np.int32 and not np.shares_memory(first, ids)
    second = read_only(first[:5])  # a view of what is read-only already: no copy
    assert np.shares_memory(second, first)
    for array in (first, second, second.base):  # not through the base either
        with pytest.raises(ValueError):
            array.flags.writeable = True
    assert read_only(np.array([1.0, 2.0])).dtype == np.int64


REUSER = '''
import numpy as np, lmeval

class Reuser(lmeval.LanguageModel):
    """Scores into one buffer it keeps and reuses: legal, and the evaluator must not
    keep that buffer as the row's scores (verification scores prefixes into it)."""
    name = "reuser"

    def fit(self, train_ids, valid_ids=None):
        self.buffer = np.zeros(0)

    def score(self, ids):
        if len(self.buffer) < len(ids):
            self.buffer = np.zeros(len(ids))
        out = self.buffer[: len(ids)] if len(ids) < len(self.buffer) else self.buffer
        out[:] = -np.log(len(self.vocab)) - (np.asarray(ids) == 1) * 0.0
        out[: min(3, len(ids))] = -0.5 * len(self.vocab) ** 0  # changes with the length
        out[: min(3, len(ids))] = -np.log(len(self.vocab)) - 0.001 * len(ids)
        return out

@lmeval.hookimpl
def register_models(register):
    register(Reuser)
'''


def test_scores_a_model_keeps_are_copied_before_verification_scores_again(tmp_path):
    """A model whose score() returns a buffer it keeps: verification scores prefixes
    into the same buffer, so the row's scores must be a copy, or its perplexity
    would be that of the last prefix verified."""
    (tmp_path / "reuser.py").write_text(REUSER, encoding="utf-8")
    (tmp_path / "train.txt").write_text(text_of(100), encoding="utf-8")
    (tmp_path / "test.txt").write_text(text_of(40, seed=1), encoding="utf-8")
    result = lmeval.compare(
        ["reuser"], train=tmp_path / "train.txt", test=tmp_path / "test.txt",
        plugins=[str(tmp_path / "reuser.py")], bootstrap=0, verify=0,
    )  # fmt: skip
    scores = result.scores["reuser"].logprobs
    n = len(scores)
    vocab = result.results[0]["vocab_size"]
    np.testing.assert_allclose(scores[:3], -np.log(vocab) - 0.001 * n)


def test_a_list_of_ids_is_counted_as_one_text():
    from lmeval_ngram.counting import count_ngrams

    as_list = count_ngrams([1, 2, 3, 1, 2, 0], 0, 5, 3)
    as_array = count_ngrams(np.array([1, 2, 3, 1, 2, 0]), 0, 5, 3)
    for a, b in zip(as_list, as_array, strict=True):
        np.testing.assert_array_equal(a.keys, b.keys)
        np.testing.assert_array_equal(a.counts, b.counts)


def test_a_training_file_changed_between_passes_is_refused(tmp_path):
    (tmp_path / "train.txt").write_text(text_of(50), encoding="utf-8")
    (tmp_path / "test.txt").write_text(text_of(5, seed=1), encoding="utf-8")
    corpus = lmeval.load_corpus(train=tmp_path / "train.txt", test=tmp_path / "test.txt")
    (tmp_path / "train.txt").write_text(text_of(60), encoding="utf-8")
    with pytest.raises(LmevalError, match="changed while lmeval was reading it"):
        list(corpus.train_pieces())


def test_a_training_pipe_is_read_whole_once(tmp_path):
    """A pipe (``--train <(zcat x.gz)``, /dev/stdin) can be read once: it is."""
    import os
    import threading

    fifo = tmp_path / "train.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(text_of(50), encoding="utf-8"))
    writer.start()
    (tmp_path / "test.txt").write_text(text_of(5, seed=1), encoding="utf-8")
    corpus = lmeval.load_corpus(train=fifo, test=tmp_path / "test.txt")
    writer.join()
    assert corpus.train == text_of(50) and "".join(corpus.train_pieces()) == text_of(50)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_a_wide_text_without_a_byte_order_mark_is_read_in_pieces_as_whole(tmp_path, encoding):
    """bytes.decode reads UTF-16 without a byte-order mark in this machine's order;
    so does iter_text, across pieces."""
    import sys

    order = "le" if sys.byteorder == "little" else "be"
    plain = encoding if encoding.endswith(("le", "be")) else f"{encoding}-{order}"
    (tmp_path / "t.txt").write_bytes(text_of(30).encode(plain))
    whole = lmeval.read_text(tmp_path / "t.txt", encoding)
    assert "".join(lmeval.iter_text(tmp_path / "t.txt", encoding, piece_bytes=7)) == whole


@pytest.mark.parametrize("encoding", ["base64", "hex", "undefined"])
def test_a_codec_not_for_text_is_a_usage_error_in_pieces_too(tmp_path, encoding):
    (tmp_path / "t.txt").write_text("abcd\n", encoding="utf-8")
    with pytest.raises(lmeval.UsageError, match="cannot read text files"):
        list(lmeval.iter_text(tmp_path / "t.txt", encoding))


def test_memory_can_be_handed_back_between_stages():
    """glibc (the C library here) returns freed memory on request; elsewhere the call
    says it could not, and nothing else happens."""
    import platform

    from lmeval.resources import share_allocator_arena

    handed = lmeval.release_memory()
    assert handed is (platform.libc_ver()[0] == "glibc")
    assert isinstance(share_allocator_arena(), bool)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or __import__("platform").libc_ver()[0] != "glibc",
    reason="glibc's allocator on Linux",
)
def test_an_array_freed_after_a_larger_one_goes_back_to_the_os():
    """What share_allocator_arena's docstring promises, in a fresh process as the
    command line's: glibc would raise its mapping size to a freed 30 MB block's, so
    a 20 MB array made after it would come from the heap and stay resident once
    freed; with the size fixed it is unmapped."""
    import subprocess

    code = """
import numpy as np
from pathlib import Path
from lmeval.resources import share_allocator_arena
fixed = share_allocator_arena()
def resident():
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096
big = np.ones(30 << 17)  # 30 MB: glibc raises its mapping size up to 32 MB
del big
before = resident()
medium = np.ones(20 << 17)  # 20 MB, every page touched
grown = resident() - before
del medium
print(fixed, grown >> 20, (resident() - before) >> 20)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    fixed, grown, kept = done.stdout.split()
    assert fixed == "True"
    assert int(grown) >= 16  # the array was resident...
    assert int(kept) < 4  # ...and went back to the OS when freed


def test_the_command_line_shares_one_allocator_arena_before_anything_runs(monkeypatch):
    """What its docstring promises: the arena is shared before any thread allocates."""
    import lmeval.cli

    calls = []
    monkeypatch.setattr(lmeval.cli, "share_allocator_arena", lambda: calls.append("arena"))
    monkeypatch.setattr(lmeval.cli.cli, "main", lambda *a, **k: calls.append("command"))
    lmeval.cli.main()
    assert calls == ["arena", "command"]

import gzip

import pytest

from lmeval import LmevalError, UsageError, read_text
from lmeval.corpus import load_corpus, parse_split, split_text


def test_split_is_contiguous_by_lines():
    text = "".join(f"line {i}\n" for i in range(10))
    corpus = split_text(text, (0.8, 0.1, 0.1))
    assert corpus.train == "".join(f"line {i}\n" for i in range(8))
    assert corpus.valid == "line 8\n" and corpus.test == "line 9\n"
    assert corpus.line_counts() == {"train": 8, "valid": 1, "test": 1}
    assert set(corpus.checksums()) == {"train", "valid", "test"}


def test_only_newline_ends_a_line():
    # \x0c (form feed) is a line break for str.splitlines but not for lmeval
    corpus = split_text("a\x0cb\nc\nd\ne\n", (0.5, 0.0, 0.5))
    assert corpus.train == "a\x0cb\nc\n" and corpus.test == "d\ne\n"


def test_split_that_empties_the_test_set_is_refused():
    with pytest.raises(UsageError, match="test set empty"):
        split_text("a\nb\n", (1.0, 0.0, 0.0))


def test_parse_split_fills_in_the_test_fraction():
    assert parse_split("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    assert parse_split("0.8,0.1") == pytest.approx((0.8, 0.1, 0.1))


@pytest.mark.parametrize("bad", ["0.8,0.1,0.2", "a,b,c", "-0.1,0.6,0.5", "1"])
def test_parse_split_refuses_bad_fractions(bad):
    with pytest.raises(UsageError, match="--split"):
        parse_split(bad)


def test_read_text_accepts_gzip_and_crlf(tmp_path):
    path = tmp_path / "t.txt.gz"
    with gzip.open(path, "wb") as f:
        f.write("héllo\r\nworld\r\n".encode())
    assert read_text(path) == "héllo\nworld\n"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"  \n\n", "is empty"),
        (b"abc\x00def", "looks binary"),
        (b"caf\xe9\n", "not valid utf-8 \\(byte 3\\)"),
    ],
)
def test_read_text_refuses_bad_files(write, content, message):
    with pytest.raises(LmevalError, match=message):
        read_text(write("bad.txt", content))


def test_read_text_names_missing_files_and_folders(tmp_path):
    with pytest.raises(LmevalError, match="file not found"):
        read_text(tmp_path / "nope.txt")
    with pytest.raises(LmevalError, match="is a folder"):
        read_text(tmp_path)


def test_encoding_option_reads_latin1(write):
    assert read_text(write("l1.txt", b"caf\xe9\n"), encoding="latin-1") == "café\n"


def test_load_corpus_sources_are_exclusive(small_text):
    with pytest.raises(UsageError, match="not both"):
        load_corpus(text=small_text, dataset="pydoc-topics")
    with pytest.raises(UsageError, match="go together"):
        load_corpus(train=small_text)
    corpus = load_corpus(train=small_text, test=small_text)
    assert corpus.train == corpus.test and corpus.valid is None


@pytest.mark.parametrize(
    "piece", ["plain ascii\n", "café\n", "naïve ≥ 3\n", "emoji 😀 here\n", "lone \udcff\n"]
)
def test_a_corpus_gives_back_its_test_text_exactly(piece):
    """However it keeps the test text (as given, or as UTF-8 where that is smaller),
    reading it gives the same text, also after pickling and after setting it."""
    import pickle

    from lmeval import Corpus

    text = piece * 1000
    corpus = Corpus("x", "train\n", text)
    assert corpus.test == text
    assert pickle.loads(pickle.dumps(corpus)).test == text
    corpus.test = piece
    assert corpus.test == piece


def test_a_wide_test_text_is_kept_in_a_quarter_of_its_memory():
    """A mostly-ASCII text with one character past U+FFFF costs Python 4 bytes a
    character; the corpus keeps its UTF-8 (about 1 byte a character) under every
    stage of a comparison instead."""
    import sys
    import tracemalloc

    from lmeval import Corpus

    def made() -> tuple[Corpus, int]:
        text = "".join(f"line {i} of the test text\n" for i in range(20_000)) + "😀\n"
        return Corpus("x", "train\n", text), sys.getsizeof(text)

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        corpus, wide = made()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < wide / 3
    assert corpus.test.endswith("😀\n")

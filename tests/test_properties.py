"""Property-based tests: spec parsing, tokenizers and corpus reading on arbitrary input.

Hand-written cases test what someone thought of; these test what hypothesis
finds (arbitrary Unicode, lone surrogates, odd whitespace, arbitrary bytes).
Every property is either an exact round trip or "a result or an lmeval error,
never another exception".
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lmeval
from lmeval import CharTokenizer, LmevalError, UsageError, WordTokenizer, parse_spec

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_\-]{0,12}", fullmatch=True)
KEY = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
# a value as a user types it: no comma (it separates parameters), no surrounding space
VALUE = st.text(st.characters(blacklist_characters=",", blacklist_categories=("Cs",))).map(
    str.strip
)


@SETTINGS
@given(NAME, st.dictionaries(KEY, VALUE.filter(bool), max_size=4))
def test_a_spec_reads_back_as_written(name, params):
    text = name + (":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")
    spec = parse_spec(text)
    assert (spec.name, spec.params, spec.text) == (name, params, text)
    assert parse_spec(f"row1={text}").label == "row1"


@SETTINGS
@given(st.text(max_size=60))
def test_any_spec_text_parses_or_is_a_usage_error(text):
    try:
        spec = parse_spec(text)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    assert spec.name and spec.label


@SETTINGS
@given(NAME, KEY, VALUE, VALUE)
def test_a_key_given_twice_is_refused(name, key, first, second):
    try:
        parse_spec(f"{name}:{key}={first},{key}={second}")
    except UsageError as exc:
        assert "twice" in str(exc)
    else:
        raise AssertionError("a key given twice was accepted")


ANY_TEXT = st.text(st.characters(), min_size=1, max_size=200)  # lone surrogates included


@SETTINGS
@given(ANY_TEXT)
def test_char_tokenizer_round_trips_any_unicode(text):
    stream = CharTokenizer(lines=False)
    stream.fit(text)
    assert stream.decode(stream.encode(text)) == text
    lines = CharTokenizer()
    lines.fit(text)
    assert lines.decode(lines.encode(text)) == (text if text.endswith("\n") else text + "\n")


class _SlowChars(CharTokenizer):
    """The same tokens by the generic per-line path (an overridden ``split``)."""

    def split(self, line: str) -> list[str]:
        return list(line)


@SETTINGS
@given(ANY_TEXT, ANY_TEXT, st.booleans())
def test_char_fast_path_gives_the_generic_ids(train, test, lines):
    fast, slow = CharTokenizer(lines=lines), _SlowChars(lines=lines)
    assert fast.fit(train).itos == slow.fit(train).itos
    assert fast.encode(test).tolist() == slow.encode(test).tolist()


@SETTINGS
@given(ANY_TEXT)
def test_word_tokenizer_round_trips_up_to_whitespace(text):
    tok = WordTokenizer()
    tok.fit(text)
    words = [["<unk>" if w == "</s>" else w for w in line.split()] for line in text.split("\n")]
    if text.endswith("\n"):
        words.pop()
    assert tok.decode(tok.encode(text)) == "".join(" ".join(line) + "\n" for line in words)


@SETTINGS
@given(st.binary(max_size=300), st.sampled_from(["utf-8", "latin-1", "utf-16"]))
def test_any_bytes_read_as_text_or_an_lmeval_error(data, encoding):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.txt"
        path.write_bytes(data)
        try:
            text = lmeval.read_text(path, encoding)
        except LmevalError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
            return
    assert text.strip() and "\r\n" not in text
    assert encoding == "utf-16" or "\x00" not in text


@SETTINGS
@given(st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))))
def test_text_files_read_back_as_written(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.txt"
        path.write_bytes(text.encode("utf-8"))
        if not text.strip():
            try:
                lmeval.read_text(path)
            except LmevalError as exc:
                assert "empty" in str(exc)
                return
            raise AssertionError("an empty file was read")
        assert lmeval.read_text(path) == text.removeprefix("\ufeff").replace("\r\n", "\n")


SPLITS = st.tuples(st.floats(0.05, 0.9), st.floats(0, 0.5), st.floats(0.05, 0.9)).map(
    lambda t: tuple(x / sum(t) for x in t)
)


@SETTINGS
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=400), SPLITS)
def test_a_split_keeps_every_line_once_in_order_or_refuses(text, fractions):
    try:
        corpus = lmeval.split_text(text, fractions)
    except UsageError as exc:
        assert "empty" in str(exc)
        return
    whole = text if text.endswith("\n") else text + "\n"
    assert corpus.train + (corpus.valid or "") + corpus.test == whole
    assert corpus.train.strip() and corpus.test.strip()

"""The arpa model against hostile ARPA files: bounded memory, one-line errors, properties.

A header may claim any count; the reader holds only what the file contains, so
the cases about declared counts run the command line under an address-space cap
(:func:`hostile.run_lmeval`), where allocating by the claim fails instead of
swapping. Every malformed value is refused with one line naming the file, the
line and what is wrong; hypothesis mutates valid files and checks that nothing
but :class:`lmeval.LmevalError` ever comes out.
"""

from __future__ import annotations

import gzip
import math
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hostile import DEFAULT_CAP_MB, run_lmeval
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lmeval
from lmeval_ngram import Arpa, NGram

TEXT = "the cat sat on the mat\nthe dog sat on the log\na cat and a dog\n" * 3
UNIGRAMS = "-1\t<unk>\t0\n0\t<s>\t-0.3\n-0.5\t</s>\t0\n-0.4\tthe\t-0.2\n-0.6\tcat\t-0.1\n"
BIGRAMS = "-0.2\tthe cat\n"
# the lines of arpa(UNIGRAMS, BIGRAMS): 2-3 the header, 6-10 the 1-grams, 13 the 2-gram


def arpa(*sections: str, header: str | None = None) -> str:
    """An ARPA text of ``sections`` (the lines of \\1-grams:, \\2-grams:, ...), with a
    header counting them unless ``header`` gives one."""
    if header is None:
        header = "".join(
            f"ngram {n}={len(body.splitlines())}\n" for n, body in enumerate(sections, start=1)
        )
    body = "".join(f"\n\\{n}-grams:\n{s}" for n, s in enumerate(sections, start=1))
    return f"\\data\\\n{header}{body}\n\\end\\\n"


@pytest.fixture(scope="module")
def words() -> lmeval.Vocabulary:
    return lmeval.WordTokenizer().fit(TEXT)


def refusal(vocab: lmeval.Vocabulary, path: Path) -> str:
    """The message of the one-line error that reading ``path`` gives."""
    with pytest.raises(lmeval.LmevalError) as caught:
        Arpa(vocab, path=str(path))
    message = str(caught.value)
    assert "\n" not in message and str(path) in message, message
    return message


# -- counts the header claims -------------------------------------------------------


@pytest.mark.parametrize(
    "header, words",
    [
        ("ngram 1=5\nngram 99999999=1\n", ["line 3", "order 99999999", "1 to 64"]),
        ("ngram 1=5\nngram 999=1\n", ["line 3", "order 999"]),
        ("ngram 1=99999999999\nngram 2=1\n", ["99999999999 1-grams", "has 5"]),
        ("ngram 1=5\nngram 2=99999999\n", ["99999999 2-grams", "has 1"]),
    ],
)
def test_declared_counts_allocate_nothing(tmp_path: Path, small_text: Path, header, words):
    # a reader that allocates by the header needs gigabytes here, beyond the cap
    text = arpa(UNIGRAMS, BIGRAMS, header=header)
    (tmp_path / "bad.arpa").write_text(text, encoding="utf-8")
    run = run_lmeval(
        "compare", "-m", "arpa:path=bad.arpa", "--text", small_text, "-q",
        cwd=tmp_path, memory_mb=DEFAULT_CAP_MB,
    )  # fmt: skip
    run.assert_one_line_error(1, "bad.arpa", *words)


def test_header_orders_must_run_from_one(words, tmp_path: Path):
    path = tmp_path / "m.arpa"
    path.write_text(arpa(UNIGRAMS, header="ngram 2=5\n"), encoding="utf-8")
    assert "orders 1, 2" in refusal(words, path)
    path.write_text(arpa(UNIGRAMS, header="ngram 1=5\nngram 1=5\n"), encoding="utf-8")
    assert "line 3: ngram 1= is declared twice" in refusal(words, path)
    path.write_text(arpa(UNIGRAMS, header="ngram 1=-5\n"), encoding="utf-8")
    assert "line 2: ngram 1=-5: a count is at least 0" in refusal(words, path)
    path.write_text(arpa(UNIGRAMS, header="ngram 1=5\nngram 2=0\n"), encoding="utf-8")
    assert "declares 2 order(s) but the file has 1 n-gram section" in refusal(words, path)


# -- bad values and bad lines ---------------------------------------------------------

BAD_LINES = [
    # (the 1-gram line of 'cat', or a 2-gram section, and what the message must say)
    ("-0.6\tcat\tnan", None, "line 10: back-off = nan is not a log10 back-off weight"),
    ("-0.6\tcat\tNaN", None, "line 10: back-off = NaN is not"),
    ("-0.6\tcat\tinf", None, "line 10: back-off = inf is not a log10 back-off weight"),
    ("-0.6\tcat\t-inf", None, "line 10: back-off = -inf is not"),
    ("-0.6\tcat\t1e300", None, "line 10: back-off = 1e300 is not"),
    ("-0.6\tcat\tx", None, "line 10: back-off 'x' is not a number"),
    ("0.5\tcat\t0", None, "line 10: log10 p = 0.5 is not a log-probability"),
    ("inf\tcat\t0", None, "line 10: log10 p = inf is not a log-probability"),
    ("nan\tcat\t0", None, "line 10: log10 p = nan is not a log-probability"),
    ("x\tcat\t0", None, "line 10: log10 p 'x' is not a number"),
    ("-0.6", None, "line 10: 1 field(s) where a 1-gram line has log10 p, 1 word(s)"),
    ("-0.6\tcat\t0\t0", None, "line 10: 4 field(s)"),
    ("-0.6\tthe\t0", None, "line 10: the 1-gram 'the' is listed twice (first on line 9)"),
    (None, "-0.2\tthe\n", "line 13: 2 field(s) where a 2-gram line has log10 p, 2 word(s)"),
    (None, "-0.2\tthe cat sat dog\n", "line 13: 5 field(s)"),
    (None, "-0.2\tthe cat sat\n", "line 13: back-off 'sat' is not a number"),
    (None, "-0.2\tthe dog\n", "line 13: the 2-gram 'the dog' has the word 'dog', which is no"),
    (None, "-0.2\tthe cat\t0.5\n", "line 13: back-off = 0.5 on a 2-gram, the top order"),
    (None, "-0.2\tthe cat\n-0.3\tthe cat\n", "line 14: the 2-gram 'the cat' is listed twice"),
    (None, "-0.2\tthe cat\t0\n", None),  # a back-off of 0 at the top order is no back-off
    (None, "-99\tthe cat\n", None),  # probability 0
    (None, "-inf\tthe cat\n", None),
]


@pytest.mark.parametrize("unigram, bigrams, message", BAD_LINES)
def test_bad_values_name_file_line_and_what(words, tmp_path: Path, unigram, bigrams, message):
    unigrams = UNIGRAMS if unigram is None else UNIGRAMS.replace("-0.6\tcat\t-0.1", unigram)
    path = tmp_path / "m.arpa"
    path.write_text(arpa(unigrams, bigrams or BIGRAMS), encoding="utf-8")
    if message is None:
        Arpa(words, path=str(path)).score(np.arange(len(words)))
    else:
        assert message in refusal(words, path)


def test_a_missing_prefix_is_refused(words, tmp_path: Path):
    path = tmp_path / "m.arpa"
    path.write_text(arpa(UNIGRAMS, "-0.2\tthe cat\t0\n", "-0.1\tcat the cat\n"), encoding="utf-8")
    assert "line 17: the 3-gram 'cat the cat' has no 2-gram for its first 2" in refusal(words, path)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("\\end\\\n", "", "no \\end\\ line"),
        ("\\1-grams:", "\\one-grams:", "line 5: expected a \\N-grams: header"),
        ("\\2-grams:", "\\3-grams:", "line 12: a \\3-grams: section, but \\data\\ declares"),
        ("ngram 1=5", "ngram 1 5", "line 2: expected 'ngram N=COUNT'"),
        ("ngram 1=5", "ngram 1=5\nhello", "line 3: expected 'ngram N=COUNT'"),
        (
            "\\1-grams:\n",
            "\\1-grams:\n\\1-grams:\n",
            "5 1-grams, its \\1-grams: section (ending on line 6) has 0",
        ),
        ("\\1-grams:\n", "\\1-grams:\n\\data\\\n", "line 6: expected a \\N-grams: header"),
    ],
)
def test_broken_structure(words, tmp_path: Path, old, new, message):
    path = tmp_path / "m.arpa"
    path.write_text(arpa(UNIGRAMS, BIGRAMS).replace(old, new, 1), encoding="utf-8")
    assert message in refusal(words, path)


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("story.arpa", b"once upon a time\n", ["story.arpa", "not an ARPA file", "\\data\\"]),
        ("empty.arpa", b"", ["empty.arpa", "empty"]),
        ("blank.arpa", b"\n \n", ["blank.arpa", "empty"]),
        ("binary.arpa", b"\\data\\\n\x00\x01\x02\xff", ["binary.arpa", "binary"]),
        ("latin.arpa", "\\data\\\nngram 1=1\n\n\\1-grams:\n-1 caf\xe9\n".encode("latin-1"),
         ["latin.arpa", "utf-8"]),
        ("cut.arpa.gz", gzip.compress(arpa(UNIGRAMS, BIGRAMS).encode())[:-30],
         ["cut.arpa.gz", "gzip"]),
        ("plain.arpa.gz", arpa(UNIGRAMS, BIGRAMS).encode(), ["plain.arpa.gz", "gzip"]),
        ("nan.arpa", arpa(UNIGRAMS.replace("-0.1", "nan"), BIGRAMS).encode(),
         ["nan.arpa", "line 10", "back-off = nan"]),
    ],
)  # fmt: skip
def test_what_is_no_arpa_file_is_one_line(tmp_path: Path, small_text: Path, name, content, words):
    (tmp_path / name).write_bytes(content)
    run = run_lmeval(
        "compare", "-m", f"arpa:path={name}", "--text", small_text, "-q", cwd=tmp_path
    )  # fmt: skip
    run.assert_one_line_error(1, *words)


def test_a_gzipped_file_reads_as_the_plain_one(words, tmp_path: Path):
    text = arpa(UNIGRAMS, BIGRAMS)
    (tmp_path / "m.arpa").write_text(text, encoding="utf-8")
    (tmp_path / "m.arpa.gz").write_bytes(gzip.compress(text.encode()))
    ids = np.arange(len(words))
    plain, packed = (Arpa(words, path=str(tmp_path / n)) for n in ("m.arpa", "m.arpa.gz"))
    np.testing.assert_array_equal(plain.score(ids), packed.score(ids))


# -- properties -------------------------------------------------------------------------

#: Any character but surrogates (which no file holds) and U+2581, which spells a space
#: in an ARPA word (tests/test_ngram.py checks that the two are refused together).
CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\u2581")


@contextmanager
def no_hang(seconds: float = 10) -> Iterator[None]:
    """Fail (instead of waiting forever) when the body runs past ``seconds``."""

    def stop(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(CHARS, max_size=80),
    tokenizer=st.sampled_from(["char", "word"]),
    order=st.integers(1, 4),
    smoothing=st.sampled_from(["mkn", "kn", "witten-bell", "absolute", "mle"]),
    sentences=st.booleans(),
)
def test_written_arpa_reads_back_with_the_same_scores(text, tokenizer, order, smoothing, sentences):
    tok = lmeval.CharTokenizer() if tokenizer == "char" else lmeval.WordTokenizer()
    vocab = tok.fit(text)
    ids = tok.encode(text)
    model = NGram(vocab, order=order, smoothing=smoothing, sentences=sentences)
    model.fit(ids)
    probe = np.concatenate([ids, np.random.default_rng(0).integers(0, len(vocab), 30)])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.arpa"
        try:
            model.save(path)
        except lmeval.UsageError as exc:  # a word such as "<s>" would read back as another
            assert "both spelled" in str(exc) and tokenizer == "word"
            return
        back = Arpa(vocab, path=str(path), sentences=sentences)
    np.testing.assert_array_equal(back.score(probe), model.score(probe))
    assert back.num_params == model.num_params


def _valid_arpa() -> bytes:
    tok = lmeval.WordTokenizer()
    vocab = tok.fit(TEXT)
    model = NGram(vocab, order=3)
    model.fit(tok.encode(TEXT))
    with tempfile.TemporaryDirectory() as folder:
        model.save(Path(folder) / "m.arpa")
        return (Path(folder) / "m.arpa").read_bytes()


VALID = _valid_arpa()
#: Field values that break readers (not numbers, overflows, structure lines) and good ones.
HOSTILE_FIELDS = [
    "nan", "inf", "-inf", "+inf", "1e999", "-1e999", "99999999999", "0.5", "-0", "1_0",
    "", " ", "\\data\\", "\\end\\", "\\1-grams:", "\\9-grams:", "ngram 1=3", "<s>", "</s>",
    "<unk>", "the", "cat", "ζ", "\x00", "9" * 5000, "\t\t", "-0.5", "0", "-99", "99", "-1e-300",
]  # fmt: skip


#: What a mutation inserts: mostly the characters of an ARPA file, sometimes any byte.
ARPA_BYTES = st.one_of(
    st.text(" \t\n0123456789.-+e<>/\\sdatngrm=:", min_size=1, max_size=20).map(str.encode),
    st.binary(min_size=1, max_size=8),
)
#: Line and field edits keep most of the structure, so they reach the later checks.
MUTATIONS = ["field", "field", "field", "line", "line", "byte", "insert", "delete", "cut"]


@st.composite
def mutated(draw) -> bytes:
    """``VALID`` with a few field edits, line edits and byte edits."""
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(MUTATIONS))
        at = draw(st.integers(0, len(data)))
        if kind == "byte" and at < len(data):
            data[at : at + 1] = draw(ARPA_BYTES)[:1]
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        elif kind == "insert":
            data[at:at] = draw(ARPA_BYTES)
        elif kind == "cut":
            del data[at:]
        elif kind in ("line", "field"):
            lines = bytes(data).split(b"\n")
            # any line but the first: hypothesis favours the bounds of a small range, and a
            # broken \data\ line (which byte edits make) ends every check at once
            i, j = (1 + draw(st.integers(0, 2**16)) % max(1, len(lines) - 1) for _ in "ij")
            i, j = min(i, len(lines) - 1), min(j, len(lines) - 1)
            if kind == "line":
                edit = draw(st.sampled_from(["duplicate", "drop", "swap"]))
                if edit == "duplicate":
                    lines.insert(j, lines[i])
                elif edit == "drop":
                    del lines[i]
                else:
                    lines[i], lines[j] = lines[j], lines[i]
            else:
                fields = lines[i].split(b"\t")
                k = draw(st.integers(0, len(fields) - 1))
                fields[k] = draw(st.sampled_from(HOSTILE_FIELDS)).encode("utf-8")
                lines[i] = b"\t".join(fields)
            data = bytearray(b"\n".join(lines))
    return bytes(data)


def _load_or_refuse(vocab: lmeval.Vocabulary, path: Path) -> None:
    """Read ``path`` and use the model; only an :class:`lmeval.LmevalError` may come out."""
    with no_hang():
        try:
            model = Arpa(vocab, path=str(path))
        except lmeval.LmevalError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc), exc
            return
        ids = np.arange(len(vocab))
        assert len(model.score(ids)) == len(ids)
        logp = model.next_token_logprobs(ids)
        assert logp.shape == (len(vocab),) and not (np.isnan(logp) | (logp == math.inf)).any()
        assert len(model.generate(ids[:3], 5, 1.0, 0)) == 5


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated())
def test_mutated_arpa_loads_or_fails_cleanly(words, data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.arpa"
        path.write_bytes(data)
        _load_or_refuse(words, path)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated(), at=st.integers(0, 200), byte=st.integers(0, 255))
def test_mutated_gzip_loads_or_fails_cleanly(words, data, at, byte):
    packed = bytearray(gzip.compress(data))
    packed[at % len(packed)] = byte
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.arpa.gz"
        path.write_bytes(bytes(packed))
        _load_or_refuse(words, path)


def test_a_file_that_leaves_nothing_to_sample(tmp_path: Path, small_text: Path):
    zeros = "".join(f"-99\t{w}\n" for w in ("<unk>", "</s>", "the", "cat"))
    (tmp_path / "zero.arpa").write_text(arpa(zeros), encoding="utf-8")
    run = run_lmeval(
        "generate", "-m", "arpa:path=zero.arpa", "--text", small_text, "-n", "5", cwd=tmp_path
    )  # fmt: skip
    run.assert_one_line_error(1, "arpa", "probability 0 at token 0", "nothing to sample")

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lmeval
import lmeval.tokenizers
from lmeval import CharTokenizer, UsageError, Vocabulary, WordTokenizer


def test_char_line_mode_predicts_one_end_of_line_per_line():
    tok = CharTokenizer()
    vocab = tok.fit("ab\nba\n")
    ids = tok.encode("ab\nba\n")
    # 2 lines of 2 characters, each followed by the end-of-line token
    assert len(ids) == 6
    assert ids[2] == ids[5] == vocab.eos_id
    assert vocab.eos == "\n"
    assert tok.decode(ids) == "ab\nba\n"


def test_missing_final_newline_still_ends_the_last_line():
    tok = CharTokenizer()
    tok.fit("ab\nba")
    assert len(tok.encode("ab\nba")) == len(tok.encode("ab\nba\n")) == 6


def test_unknown_characters_map_to_unk_id_zero():
    tok = CharTokenizer()
    vocab = tok.fit("aaa\n")
    ids = tok.encode("az\n")
    assert ids.tolist() == [vocab.id("a"), 0, vocab.eos_id]
    assert vocab.token(0) == "<unk>"


def test_vocabulary_order_is_deterministic_by_frequency():
    tok = CharTokenizer()
    vocab = tok.fit("bba\n")
    # <unk> first, then by descending count, ties by code point ("\n" < "a")
    assert vocab.itos == ["<unk>", "b", "\n", "a"]
    assert CharTokenizer().fit("bba\n") == vocab


def test_word_tokenizer_uses_end_of_sentence_token():
    tok = WordTokenizer()
    vocab = tok.fit("the cat\nthe dog\n")
    ids = tok.encode("the cat\n")
    assert [vocab.token(i) for i in ids] == ["the", "cat", "</s>"]
    assert tok.decode(ids) == "the cat\n"


def test_stream_mode_has_no_end_of_line_token():
    tok = CharTokenizer(lines=False)
    vocab = tok.fit("ab\nb")
    assert vocab.eos_id is None
    assert tok.decode(tok.encode("ab\nb")) == "ab\nb"
    assert len(tok.encode("ab\nb")) == 4


def test_min_freq_sends_rare_tokens_to_unk():
    tok = WordTokenizer(min_freq=2)
    vocab = tok.fit("a a b\n")
    assert "b" not in vocab and "a" in vocab
    assert tok.encode("b\n")[0] == 0
    with pytest.raises(UsageError):
        WordTokenizer(min_freq=0)


def test_encode_prefix_leaves_the_line_open():
    tok = CharTokenizer()
    tok.fit("abc\n")
    assert tok.encode_prefix("ab").tolist() == tok.encode("ab\n")[:-1].tolist()
    assert tok.encode_prefix("ab\n").tolist() == tok.encode("ab\n").tolist()


def test_vocabulary_round_trips_through_dict():
    vocab = Vocabulary(["a", "b"], eos="</s>")
    again = Vocabulary.from_dict(vocab.to_dict())
    assert again == vocab and again.eos_id == 3 and len(again) == 4


def test_literal_end_of_sentence_word_does_not_split_a_line():
    tok = WordTokenizer()
    vocab = tok.fit("a </s> b\n")
    assert [vocab.token(i) for i in tok.encode("a </s> b\n")] == ["a", "<unk>", "b", "</s>"]


@pytest.mark.parametrize("lines", [True, False])
@pytest.mark.parametrize("text", ["ab\nba\n", "ab\n\nba", "", "\n", "héllo wörld ☃\nx"])
def test_char_fast_path_equals_the_generic_one(text, lines):
    """CharTokenizer's vectorised fit/encode give what the per-line rule gives."""
    from lmeval.tokenizers import Tokenizer

    fast = CharTokenizer(lines=lines)
    fast.fit("ab\nh")
    generic_vocab = Tokenizer.fit(CharTokenizer(lines=lines), "ab\nh")
    assert fast.vocab == generic_vocab
    expected = Tokenizer.encode(fast, text)
    assert fast.encode(text).tolist() == expected.tolist()
    assert fast.encode(text).dtype == expected.dtype


@pytest.mark.parametrize("lines", [True, False])
@pytest.mark.parametrize("min_freq", [1, 2])
@pytest.mark.parametrize(
    "text",
    ["a b\nb a a\n", "a </s> b\n\nc d", "x", "</s>\n</s> </s>\n", "a\tb\x0bc\x1cd\u2028e\n f",
     "  \n \n  a", "héllo wörld ☃\nx y x"],
)  # fmt: skip
def test_word_fast_path_equals_the_generic_one(text, lines, min_freq):
    """WordTokenizer's chunked str.split path gives what the per-line rule gives: the
    same vocabulary (frequency, then code point) and ids, for the fitted text (ids
    numbered while fitting) and for another one, literal </s> and odd whitespace
    included."""
    from lmeval.tokenizers import Tokenizer

    fast = WordTokenizer(lines=lines, min_freq=min_freq)
    generic = WordTokenizer(lines=lines, min_freq=min_freq)
    fast_vocab = fast.fit(text)
    assert fast_vocab == Tokenizer.fit(generic, text)
    assert fast.encode(text).tolist() == Tokenizer.encode(generic, text).tolist()
    other = text + " zz a\nq </s>"
    assert fast.encode(other).tolist() == Tokenizer.encode(generic, other).tolist()
    assert fast.encode(other).dtype == np.int32


class LowerChars(CharTokenizer):
    """A plugin tokenizer: characters, case folded."""

    name = "lower-char"

    def split(self, line: str) -> list[str]:
        return list(line.lower())


class NoDigits(CharTokenizer):
    """A plugin tokenizer: characters, digits dropped."""

    name = "no-digit"

    def split(self, line: str) -> list[str]:
        return [c for c in line if not c.isdigit()]


class PipeEnd(CharTokenizer):
    """A plugin tokenizer whose end-of-line token is not the newline."""

    name = "pipe-end"
    eos_token = "|"


@pytest.mark.parametrize("lines", [True, False])
def test_char_subclass_overriding_split_is_honoured(lines):
    tok = LowerChars(lines=lines)
    vocab = tok.fit("AaB\nb")
    assert "A" not in vocab and "B" not in vocab
    assert set(vocab.itos) == {"<unk>", "a", "b", "\n"}
    ids = tok.encode("BA\n")
    assert [vocab.token(i) for i in ids] == ["b", "a", "\n"]
    assert tok.decode(ids) == "ba\n"


def test_char_subclass_dropping_characters_gets_the_ids_its_split_implies():
    tok = NoDigits()
    vocab = tok.fit("a1b2\n3\n")
    assert not any(c.isdigit() for c in vocab.itos)
    # the line "3" is empty after dropping: only its end-of-line id remains
    a, b, eos = vocab.id("a"), vocab.id("b"), vocab.eos_id
    assert tok.encode("a1b2\n3\n").tolist() == [a, b, eos, eos]
    assert len(tok.encode("9a\n")) == 2


def test_char_subclass_with_another_end_of_line_token_uses_it():
    tok = PipeEnd()
    vocab = tok.fit("ab\nb\n")
    assert vocab.eos == "|" and "\n" not in vocab
    assert [vocab.token(i) for i in tok.encode("ab\n")] == ["a", "b", "|"]


MIXED_KINDS = ['e"', "≥", "ab", "慢", "x", "\U0001f600", "", "<unk>", "</s>", "naïve", "na"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.text(max_size=4).filter(lambda t: "\0" not in t), max_size=40),
    st.lists(st.text(max_size=4), max_size=40),
)
def test_a_compact_vocabulary_answers_as_the_plain_one(tokens, queries):
    """Same ids, tokens, equality, serialisation and pickling as the plain vocabulary,
    whatever the tokens (one byte, two or four a character: CPython hashes 'e"' and
    '≥' alike), and a query never matches a token it is not."""
    tokens = list(dict.fromkeys(MIXED_KINDS[:5] + tokens))
    plain = Vocabulary(tokens, eos="</s>")
    compact = Vocabulary(tokens, eos="</s>", compact=True)
    asked = [*tokens, *queries, *MIXED_KINDS]
    np.testing.assert_array_equal(compact.ids(asked), plain.ids(asked))
    assert [compact.id(t) for t in asked] == [plain.id(t) for t in asked]
    assert [t in compact for t in asked] == [t in plain for t in asked]
    assert [compact.token(i) for i in range(len(plain))] == plain.itos
    assert len(compact) == len(plain) and compact.eos_id == plain.eos_id
    assert compact == plain and pickle.loads(pickle.dumps(compact)) == plain
    assert Vocabulary.from_dict(compact.to_dict()) == plain
    assert compact.itos == plain.itos and compact.stoi == plain.stoi


def test_the_word_tokenizer_keeps_a_large_vocabulary_compact():
    """200,002 distinct words: what the fitted tokenizer holds is their text and
    24 bytes of arrays a word, not a list and a dict of Python strings (over 140
    bytes a word), and encoding, comparing and saving it keep it so."""
    import tracemalloc

    words = [f"w{i:06d}" for i in range(200_000)] + ['e"', "≥"]  # CPython hashes alike
    text = "\n".join(" ".join(words[i : i + 10]) for i in range(0, len(words), 10)) + "\n"
    tok = WordTokenizer()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        tok.fit_pieces(lmeval.tokenizers.line_pieces(text, 1 << 16))
        ids = tok.encode("w000003 w199999 unknown\n")
        plain = Vocabulary(tok.vocab.tokens(), eos="</s>")  # compared, saved, loaded:
        reloaded = Vocabulary.from_dict(tok.vocab.to_dict())  # nothing of it is kept
        assert tok.vocab == plain and plain == tok.vocab and reloaded == tok.vocab
        assert tok.vocab.eos_id == plain.eos_id and tok.vocab.token(5) == plain.itos[5]
        del plain, reloaded
        held = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert ids.tolist() == [tok.vocab.id("w000003"), tok.vocab.id("w199999"), 0, tok.vocab.eos_id]
    assert held < 50 * len(words)


def test_a_compact_vocabulary_looks_up_alike_after_forgetting_its_index():
    """forget_lookup drops the hash index (the word tokenizer does, while models
    train); the next lookup makes it again and gives the same ids."""
    tokens = [f"w{i}" for i in range(5000)]
    vocab = Vocabulary(tokens, eos="</s>", compact=True)
    asked = ["w7", "w4999", "nope", "</s>", "w0"]
    before = vocab.ids(asked)
    vocab.forget_lookup()
    np.testing.assert_array_equal(vocab.ids(asked), before)
    assert before[2] == vocab.unk_id and vocab.token(int(before[1])) == "w4999"

"""smoothing=mkn reproduces KenLM's lmplz: golden toy models, tinyshakespeare, Penn Treebank.

The references were made with ``lmplz -o N -S 1G --discount_fallback`` and
``query``; KenLM computes in float32 and prints about 8 digits, so per-token
log10 probabilities agree to about 1e-6 and perplexities to 1e-4 %.
"""

from __future__ import annotations

import gzip
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import lmeval
from lmeval_ngram import Arpa, NGram

LN10 = math.log(10)


def parse_arpa(text: str) -> dict[tuple[str, ...], tuple[float, float]]:
    """Every n-gram of an ARPA text: (log10 p, log10 backoff, 0 when absent)."""
    out: dict[tuple[str, ...], tuple[float, float]] = {}
    order = 0
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("\\") and line.endswith("-grams:"):
            order = int(line[1:-7])
        elif order and line and not line.startswith("\\"):
            fields = line.split()
            backoff = float(fields[order + 1]) if len(fields) > order + 1 else 0.0
            out[tuple(fields[1 : order + 1])] = (float(fields[0]), backoff)
    return out


def assert_same_arpa(ours: str, theirs: str, tol: float) -> None:
    a, b = parse_arpa(ours), parse_arpa(theirs)
    assert sorted(a) == sorted(b)
    worst = max(max(abs(a[g][0] - b[g][0]), abs(a[g][1] - b[g][1])) for g in b)
    assert worst < tol, worst


# -- KenLM's own toy models -------------------------------------------------------------


@pytest.mark.parametrize(
    "name, corpus",
    [
        ("toy0", "a a b a\nb a a b\n"),
        ("toy1", "a a b b b b b b b\nc\n"),
    ],
)
def test_toy_models_match_kenlm_arpa(shared: Path, tmp_path: Path, name: str, corpus: str):
    # lmplz --discount_fallback -o 3 on these two lines; every discount falls back.
    tok = lmeval.WordTokenizer()
    vocab = tok.fit(corpus)
    model = NGram(vocab, order=3, values="float64")
    model.fit(tok.encode(corpus))
    model.save(tmp_path / "toy.arpa")
    expected = (shared / "reference" / f"{name}.arpa").read_text(encoding="utf-8")
    assert_same_arpa((tmp_path / "toy.arpa").read_text(encoding="utf-8"), expected, 1e-6)
    assert len(model.details()["notes"]) == 3
    assert "--discount_fallback" in model.details()["notes"][0]


def test_toy0_by_hand():
    # Corpus "a a b a" / "b a a b", fallback discounts D1=0.5, D2=1, D3+=1.5.
    # Unigrams count distinct left neighbours: a {<s>, a, b} = 3, b 2, </s> 2; the
    # mass set free, (1 * 2 + 1.5 * 1) / 7 = 0.5, is spread over the 4 tokens
    # (<unk> and </s> included, <s> not), so p(a) = (3 - 1.5) / 7 + 0.5 / 4.
    tok = lmeval.WordTokenizer()
    corpus = "a a b a\nb a a b\n"
    vocab = tok.fit(corpus)
    a = vocab.id("a")
    p_a = (3 - 1.5) / 7 + 0.5 / 4
    # Order 3: bigrams starting with <s> keep their raw counts ("<s> a" 1, "<s> b" 1).
    model = NGram(vocab, order=3, values="float64")
    model.fit(tok.encode(corpus))
    got = model.next_token_logprobs(np.array([], dtype=np.int64))[a]
    assert got == pytest.approx(math.log((1 - 0.5) / 2 + 0.5 * p_a), abs=1e-12)
    # Order 2: the top order keeps raw counts: "a a" 2, "a b" 2, "a </s>" 1.
    model = NGram(vocab, order=2, values="float64")
    model.fit(tok.encode(corpus))
    got = model.next_token_logprobs(np.array([a]))[a]
    assert got == pytest.approx(math.log((2 - 1) / 5 + (1 + 1 + 0.5) / 5 * p_a), abs=1e-12)


# -- tinyshakespeare, protocol char-lines-v1 ----------------------------------------------


@pytest.fixture(scope="module")
def char_data(shared: Path):
    """(vocab, train ids, test ids) of protocol char-lines-v1 (reference/README.md)."""
    text = (shared / "corpora" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    cut = len(lines) * 9 // 10
    train = "".join(line + "\n" for line in lines[:cut] if line)
    test = "".join(line + "\n" for line in lines[cut:] if line)
    tok = lmeval.CharTokenizer()
    vocab = tok.fit(train)
    return vocab, tok.encode(train), tok.encode(test)


def read_query(path: Path) -> np.ndarray:
    """Per-token log10 p of a KenLM ``query`` output, in text order."""
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if "\tTotal: " in line:
                out.extend(float(item.rsplit(" ", 1)[1]) for item in line.split("\t")[:-1])
    return np.asarray(out)


@pytest.mark.parametrize("order, perplexity", [(3, 7.810216992126863), (5, 4.897382441726492)])
def test_char_tokens_match_kenlm_query(shared, char_data, order, perplexity):
    vocab, train, test = char_data
    assert len(vocab) == 66 and len(train) == 1_009_860 and len(test) == 98_311
    model = NGram(vocab, order=order)
    model.fit(train)
    ours = model.score(test) / LN10
    theirs = read_query(shared / "reference" / f"tinyshakespeare.char.o{order}.query.txt.gz")
    assert len(theirs) == len(ours)
    assert np.abs(ours - theirs).max() < 1e-6
    assert 10 ** (-ours.mean()) == pytest.approx(perplexity, rel=1e-6)
    # the unigram discounts fall back (D2 < 0 in closed form), as the README says
    assert model.details()["discounts"]["1"] == [0.5, 1.0, 1.5]
    assert "order 1" in model.details()["notes"][0]


def test_char_o3_arpa_equals_lmplz_output(shared, char_data, tmp_path):
    vocab, train, _ = char_data
    model = NGram(vocab, order=3)
    model.fit(train)
    model.save(tmp_path / "o3.arpa")
    with gzip.open(shared / "reference" / "tinyshakespeare.char.o3.arpa.gz", "rt") as handle:
        expected = handle.read()
    ours = (tmp_path / "o3.arpa").read_text(encoding="utf-8")
    assert_same_arpa(ours, expected, 2e-6)
    assert parse_arpa(ours)[("<unk>",)][0] == pytest.approx(-2.9866097, abs=1e-6)


@pytest.mark.parametrize("order", [3, 5])
def test_kenlm_arpa_scores_like_kenlm_query(shared, char_data, order):
    # The arpa model reads KenLM's own file: backoff semantics, ▁ for the space.
    vocab, _, test = char_data
    name = f"tinyshakespeare.char.o{order}"
    model = Arpa(vocab, path=str(shared / "reference" / f"{name}.arpa.gz"))
    model.fit(np.zeros(0, dtype=np.int64))
    ours = model.score(test) / LN10
    theirs = read_query(shared / "reference" / f"{name}.query.txt.gz")
    assert np.abs(ours - theirs).max() < 1e-6
    assert model.details()["tokens_scored_as_unk"] == 0


# KenLM's test perplexities on the same protocol (peers.md), 4 decimals.
PEERS_CHAR = {2: 11.9123, 3: 7.8102, 4: 5.7417, 5: 4.8974, 6: 4.6828, 7: 4.6430}


@pytest.mark.parametrize("order", sorted(PEERS_CHAR))
def test_char_perplexity_matches_kenlm(char_data, order):
    vocab, train, test = char_data
    model = NGram(vocab, order=order)
    model.fit(train)
    perplexity = math.exp(-model.score(test).mean())
    assert perplexity == pytest.approx(PEERS_CHAR[order], rel=1e-4)


# -- Penn Treebank, protocol ptb-word-v1 ---------------------------------------------------

# KenLM perplexities from peers.md: closed, open incl. OOVs, open excl. OOVs.
PEERS_PTB = {
    2: (212.534, 298.324, 236.695),
    3: (194.178, 271.959, 215.053),
    4: (191.969, 268.824, 212.541),
    5: (191.413, 268.050, 211.941),
}
# PTB spells its own unknown-word class "<unk>": an ordinary word of the corpus, which
# KenLM got renamed. lmeval's Vocabulary reserves "<unk>" for id 0 (the true unknown,
# which gets only the uniform share at the bottom), so the word is renamed here too.
PTB_UNK_WORD = "<unk>-word"


@pytest.fixture(scope="module")
def ptb(shared: Path):
    def read(name):
        text = (shared / "corpora" / name).read_text(encoding="utf-8")
        return [
            [PTB_UNK_WORD if w == "<unk>" else w for w in line.split()]
            for line in text.split("\n")
            if line.strip()
        ]

    train, test = read("ptb.valid.txt"), read("ptb.test.txt")
    seen = Counter(w for line in train for w in line)
    vocab = lmeval.Vocabulary(sorted(seen), eos="</s>")

    def encode(lines):
        return np.array([vocab.id(w) for line in lines for w in [*line, "</s>"]])

    closed = encode([[w if w in seen else PTB_UNK_WORD for w in line] for line in test])
    return vocab, encode(train), closed, encode(test)


@pytest.mark.parametrize("order", sorted(PEERS_PTB))
def test_ptb_perplexities_match_kenlm(ptb, order):
    vocab, train, closed, open_ = ptb
    assert len(closed) == 82_430 and int((open_ == 0).sum()) == 3_368
    model = NGram(vocab, order=order)
    model.fit(train)
    lp_open = model.score(open_)
    got = (
        math.exp(-model.score(closed).mean()),
        math.exp(-lp_open.mean()),
        math.exp(-lp_open[open_ != 0].mean()),
    )
    assert got == pytest.approx(PEERS_PTB[order], rel=1e-4)


# -- The Time Machine: closed-form unigram discounts and KenLM's count of counts -----------

GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture(scope="module")
def time_machine(shared: Path):
    """(vocab, train ids, test ids, train lines) of char-lines-v1 on The Time Machine."""
    with open(shared / "corpora" / "timemachine.txt", encoding="utf-8", newline="") as handle:
        lines = handle.read().split("\n")
    if lines[-1] == "":
        lines.pop()
    cut = len(lines) * 9 // 10
    train_lines = [line for line in lines[:cut] if line]
    train = "".join(line + "\n" for line in train_lines)
    test = "".join(line + "\n" for line in lines[cut:] if line)
    tok = lmeval.CharTokenizer()
    vocab = tok.fit(train)
    return vocab, tok.encode(train), tok.encode(test), train_lines


def unigram_discounts_by_hand(lines: list[str], kenlm: bool) -> list[float]:
    """D1, D2, D3+ of the unigrams (Chen & Goodman eq. 26, float32), counted here
    from the text: each token's adjusted count is the number of distinct tokens
    before it (<s> included). ``kenlm``: the token KenLM numbers last (the last
    new one, by first appearance) is counted by its raw count instead, as lmplz's
    AdjustCounts::Run leaves it."""
    before: dict[str, set[str]] = {}
    raw: Counter[str] = Counter()
    for line in lines:
        tokens = ["<s>", *line, "</s>"]
        for prev, token in zip(tokens, tokens[1:], strict=False):
            before.setdefault(token, set()).add(prev)
            raw[token] += 1
    counts = {token: len(seen) for token, seen in before.items()}
    if kenlm:
        last = list(dict.fromkeys(c for line in lines for c in line))[-1]
        counts[last] = raw[last]
    n = Counter(counts.values())
    f = np.float32
    y = f(n[1]) / f(n[1] + 2.0 * n[2])
    return [float(f(j) - f(j + 1) * y * f(n[j + 1]) / f(n[j])) for j in (1, 2, 3)]


def test_time_machine_tokens_match_kenlm_with_its_count_of_counts(time_machine):
    """Here the unigram discounts are estimated in closed form (Tiny Shakespeare's fall
    back, so its golden tests cannot see this): lmplz counts the last token it numbers,
    'X' (raw count 3, adjusted 2), by its raw count, giving D1/D2/D3+ 0.176471 /
    1.31933 / 2.68627 (its log) where the adjusted counts give 0.158 / 1.526 / 2.684.
    With discounts=kenlm (the default) every one of the 16,662 test tokens agrees
    with KenLM's query within 1e-6 in log10; the textbook count differs by up to 0.027."""
    vocab, train, test, lines = time_machine
    theirs = np.loadtxt(gzip.open(GOLDEN / "timemachine.char.o5.log10.gz", "rt"))
    assert len(theirs) == len(test) == 16_662
    kenlm = NGram(vocab, order=5)
    kenlm.fit(train)
    assert kenlm.details()["discounts"]["1"] == pytest.approx(
        unigram_discounts_by_hand(lines, kenlm=True), abs=1e-7
    )
    assert kenlm.details()["discounts"]["1"] == pytest.approx([0.176471, 1.31933, 2.68627], 1e-5)
    assert np.abs(kenlm.score(test) / LN10 - theirs).max() < 1e-6
    textbook = NGram(vocab, order=5, discounts="textbook")
    textbook.fit(train)
    assert textbook.details()["discounts"]["1"] == pytest.approx(
        unigram_discounts_by_hand(lines, kenlm=False), abs=1e-7
    )
    differ = np.abs(textbook.score(test) / LN10 - theirs)
    assert differ.max() > 0.02 and (differ > 1e-6).sum() > 3000
    # only the unigram discounts differ: every higher order counts alike here
    for n in ("2", "3", "4", "5"):
        assert textbook.details()["discounts"][n] == kenlm.details()["discounts"][n]

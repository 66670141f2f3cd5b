"""``lmeval compare --save-tokens`` and ``lmeval.save_tokens``: every predicted token."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import lmeval
from lmeval.cli import cli

TRAIN = "the cat sat\non the mat\nthe dog sat\n"
#: every character seen in training but for "x" (an OOV); "og" and "ma" pairs are seen
TEST = "a dog\nthe max\n"
MODELS = ["ng2=ngram:order=2", "ngram:order=3", "uniform"]


@pytest.fixture(scope="module")
def comparison() -> lmeval.Comparison:
    corpus = lmeval.Corpus("toy", TRAIN, TEST)
    return lmeval.compare(MODELS, corpus=corpus, keep_tokens=True)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def by_model(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["model"], []).append(row)
    return out


def test_jsonl_round_trips_to_the_records(comparison, tmp_path):
    path = tmp_path / "tokens.jsonl"
    assert lmeval.save_tokens(comparison, path) == 3 * len(TEST)
    rows = read_jsonl(path)
    assert list(rows[0]) == ["model", "position", "line", "token", "logprob", "oov", "order"]
    models = by_model(rows)
    assert list(models) == ["ng2", "ngram:order=3", "uniform"]
    for record in comparison.results:
        mine = models[record["label"]]
        assert [r["position"] for r in mine] == list(range(record["tokens"]))
        assert len(mine) == record["tokens"]
        assert sum(r["logprob"] for r in mine) == pytest.approx(-record["nll"], rel=1e-12)
        assert sum(r["oov"] for r in mine) == record["oovs"] == 1
        lines = [r["line"] for r in mine]
        assert lines[0] == 0 and lines[-1] == record["lines"] - 1
        assert all(b - a in (0, 1) for a, b in zip(lines, lines[1:], strict=False))
        text = "".join("\n" if r["token"] == "\n" else r["token"] for r in mine)
        assert text == TEST.replace("x", "<unk>")
        assert all(isinstance(r["logprob"], float) and r["logprob"] <= 0 for r in mine)
        # each line's end-of-line token is on that line
        assert [r["line"] for r in mine if r["token"] == "\n"] == [0, 1]


def test_ngram_orders_are_the_longest_matched_ngram(comparison, tmp_path):
    path = tmp_path / "tokens.jsonl"
    lmeval.save_tokens(comparison, path)
    models = by_model(read_jsonl(path))
    assert all(r["order"] is None for r in models["uniform"])
    for label, order in (("ng2", 2), ("ngram:order=3", 3)):
        assert all(1 <= r["order"] <= order for r in models[label])
    # by hand, bigrams of "<s>a dog\n<s>the max\n" seen in TRAIN ("the cat sat\n..."):
    # <s>a no, "a " no, " d" do og yes, g\n no; <s>t th he "e " " m" ma yes, ax x\n no
    assert [r["order"] for r in models["ng2"]] == [1, 1, 2, 2, 2, 1] + [2] * 6 + [1, 1]
    # the hand-checked example on the model itself: the optional orders_used
    tok = lmeval.CharTokenizer()
    tok.fit("ab\nab\n")
    model = lmeval.build_model("ngram:order=2", tok.vocab)
    model.fit(tok.encode("ab\nab\n"))
    ids = tok.encode("ab\nba\n")
    assert model.orders_used(ids).tolist() == [2, 2, 2, 1, 1, 1]
    assert model.orders_used(ids).dtype == np.int64
    assert model.orders_used(ids[:0]).tolist() == []


def test_orders_match_kenlm_ngram_length(shared):
    # KenLM's own query output gives each token's ngram_length (reference/README.md)
    text = (shared / "corpora" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    raw = text.split("\n")
    raw = raw[:-1] if raw[-1] == "" else raw
    cut = len(raw) * 9 // 10
    tok = lmeval.CharTokenizer()
    tok.fit("".join(line + "\n" for line in raw[:cut] if line))
    test = tok.encode("".join(line + "\n" for line in raw[cut:] if line))
    reference = shared / "reference"
    model = lmeval.build_model(
        f"arpa:path={reference / 'tinyshakespeare.char.o3.arpa.gz'}", tok.vocab
    )
    model.fit(np.zeros(0, dtype=np.int64))
    theirs = []
    with gzip.open(reference / "tinyshakespeare.char.o3.query.txt.gz", "rt") as handle:
        for line in handle:
            if "\tTotal: " in line:
                theirs.extend(int(item.split(" ")[-2]) for item in line.split("\t")[:-1])
    assert model.orders_used(test).tolist() == theirs


def test_parquet_round_trips_to_the_same_rows(comparison, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    lmeval.save_tokens(comparison, tmp_path / "tokens.jsonl")
    lmeval.save_tokens(comparison, tmp_path / "tokens.parquet")
    table = pq.read_table(tmp_path / "tokens.parquet")
    assert [str(t) for t in table.schema.types] == [
        "string", "int64", "int64", "string", "double", "bool", "int64",
    ]  # fmt: skip
    assert table.to_pylist() == read_jsonl(tmp_path / "tokens.jsonl")
    meta = json.loads(table.schema.metadata[b"lmeval.meta"])
    assert meta["tokenizer"] == "char"


def test_stream_mode_lines_and_word_tokens(tmp_path):
    corpus = lmeval.Corpus("toy", TRAIN, TEST)
    stream = lmeval.compare(["uniform"], corpus=corpus, lines=False, keep_tokens=True)
    lmeval.save_tokens(stream, tmp_path / "stream.jsonl")
    rows = read_jsonl(tmp_path / "stream.jsonl")
    assert "".join(r["token"] for r in rows) == TEST.replace("x", "<unk>")
    assert [r["line"] for r in rows] == [0] * 6 + [1] * 8  # a newline is on the line it ends
    words = lmeval.compare(
        ["uniform"], corpus=corpus, tokenizer="word", lines=False, keep_tokens=True
    )
    lmeval.save_tokens(words, tmp_path / "words.jsonl")
    rows = read_jsonl(tmp_path / "words.jsonl")
    assert [r["token"] for r in rows] == ["<unk>", "dog", "the", "<unk>"]
    assert all(r["line"] is None for r in rows)  # the word tokenizer drops the newlines
    lined = lmeval.compare(["uniform"], corpus=corpus, tokenizer="word", keep_tokens=True)
    lmeval.save_tokens(lined, tmp_path / "lined.jsonl")
    rows = read_jsonl(tmp_path / "lined.jsonl")
    assert [(r["token"], r["line"]) for r in rows][2:4] == [("</s>", 0), ("the", 1)]


def test_a_comparison_without_kept_tokens_is_refused(tmp_path):
    corpus = lmeval.Corpus("toy", TRAIN, TEST)
    plain = lmeval.compare(["uniform"], corpus=corpus)
    with pytest.raises(lmeval.UsageError, match="keep_tokens=True"):
        lmeval.save_tokens(plain, tmp_path / "tokens.jsonl")
    assert not (tmp_path / "tokens.jsonl").exists()


@pytest.fixture
def no_training(monkeypatch):
    """Make any training fail the test: the errors must come before it."""

    def trained(*args, **kwargs):
        raise AssertionError("a model was trained")

    monkeypatch.setattr("lmeval.evaluate.fit_model", trained)


def compare_cli(tmp_path: Path, *args: str):
    text = tmp_path / "text.txt"
    text.write_text(TRAIN * 4 + TEST, encoding="utf-8")
    return CliRunner().invoke(cli, ["compare", "-m", "uniform", "--text", str(text), *args])


@pytest.mark.parametrize("name", ["tokens.csv", "tokens", "tokens.json"])
def test_a_bad_suffix_is_a_one_line_usage_error_before_training(tmp_path, no_training, name):
    result = compare_cli(tmp_path, "--save-tokens", str(tmp_path / name))
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1
    assert ".jsonl or .parquet" in result.output


def test_missing_pyarrow_is_a_one_line_usage_error_before_training(
    tmp_path, no_training, monkeypatch
):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    result = compare_cli(tmp_path, "--save-tokens", str(tmp_path / "tokens.parquet"))
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1
    assert "pip install 'lmeval[parquet]'" in result.output


def test_an_unwritable_place_is_refused_before_training(tmp_path, no_training):
    result = compare_cli(tmp_path, "--save-tokens", str(tmp_path / "none" / "tokens.jsonl"))
    assert result.exit_code == 2 and "does not exist" in result.output


def test_cli_writes_the_file_and_a_failure_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "tokens.jsonl"
    result = compare_cli(tmp_path, "--save-tokens", str(path), "--format", "json")
    assert result.exit_code == 0, result.output
    rows = read_jsonl(path)
    assert {r["model"] for r in rows} == {"uniform"} and rows[0]["order"] is None
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("lmeval.export._json", broken)
    result = compare_cli(tmp_path, "--save-tokens", str(path))
    assert result.exit_code != 0
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

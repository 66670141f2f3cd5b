"""The command line as a user runs it: results, formats, and one-line errors."""

import csv
import io
import json
import math
import os
import stat
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner

from lmeval.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def compare_json(*args: str) -> dict:
    result = run("compare", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_uniform_perplexity_is_the_vocabulary_size(small_text):
    data = compare_json("-m", "uniform", "--text", str(small_text))
    record, meta = data["results"][0], data["meta"]
    assert record["perplexity"] == pytest.approx(meta["vocab_size"], abs=1e-9)
    # every character of the test text, newline included, costs log2 |V| bits
    assert record["bits_per_char"] == pytest.approx(math.log2(meta["vocab_size"]), abs=1e-12)
    assert record["tokens"] == record["chars"] == record["bytes"]
    assert record["nll"] == pytest.approx(record["tokens"] * math.log(meta["vocab_size"]))


def test_record_and_meta_keys_are_the_documented_interface(small_text):
    data = compare_json("-m", "uniform", "--text", str(small_text))
    record = data["results"][0]
    for key in (
        "label",
        "spec",
        "perplexity",
        "cross_entropy",
        "bits_per_char",
        "bits_per_byte",
        "tokens",
        "chars",
        "bytes",
        "oovs",
        "oov_rate",
        "fit_seconds",
        "score_seconds",
        "params",
    ):
        assert key in record, key
    assert "error" not in record
    meta = data["meta"]
    for key in ("versions", "seed", "checksums", "device", "tokenizer", "vocab_size", "policy"):
        assert key in meta, key
    assert meta["split_lines"] == {"train": 32, "valid": 4, "test": 4}


def test_word_tokenizer_counts_oovs_and_bytes(write):
    train = write("train.txt", "a b a\nb a\n")
    test = write("test.txt", "a c é\n")
    data = compare_json(
        "-m", "uniform", "--train", str(train), "--test", str(test), "--tokenizer", "word"
    )
    record = data["results"][0]
    assert (record["tokens"], record["oovs"], record["chars"], record["bytes"]) == (4, 2, 6, 7)
    assert record["oov_rate"] == 0.5
    assert data["meta"]["vocab_size"] == 4  # <unk>, a, b, </s>


def test_labels_name_rows_and_table_sorts_by_bits_per_char(small_text):
    result = run("compare", "-m", "u=uniform", "--text", str(small_text))
    assert result.exit_code == 0
    assert "u (yardstick)" in result.stdout and "bits/char" in result.stdout
    assert "Predicted tokens:" in result.stdout


def test_csv_and_markdown(small_text):
    out = run("compare", "-m", "uniform", "--text", str(small_text), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert rows[0]["label"] == "uniform" and float(rows[0]["perplexity"]) > 1
    md = run("compare", "-m", "uniform", "--text", str(small_text), "--format", "markdown")
    assert md.stdout.startswith("| model | ppl ↓") and "| uniform (yardstick) |" in md.stdout


def test_output_is_written_atomically(small_text, tmp_path):
    out = tmp_path / "r.json"
    result = run(
        "compare", "-m", "uniform", "--text", str(small_text), "--format", "json", "-o", str(out)
    )
    assert result.exit_code == 0 and result.stdout == ""
    assert json.loads(out.read_text())["results"][0]["label"] == "uniform"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_same_seed_same_numbers(small_text):
    a = compare_json("-m", "uniform", "--text", str(small_text), "--seed", "3")
    b = compare_json("-m", "uniform", "--text", str(small_text), "--seed", "3")
    assert a["results"][0]["nll"] == b["results"][0]["nll"]


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["-m", "nosuch"], 2, "unknown model 'nosuch'"),
        (["-m", "unifrom"], 2, "did you mean 'uniform'"),
        (["-m", "uniform:order=3"], 2, "model 'uniform' has no parameter 'order'"),
        (["-m", "uniform:"], 2, "bad model spec"),
        (["-m", "uniform", "--tokenizer", "bpe"], 2, "unknown tokenizer 'bpe'"),
        (["-m", "uniform", "--dataset", "nope"], 2, "unknown dataset 'nope'"),
        (["-m", "uniform", "--split", "1,0,0"], 2, "test set empty"),
        (["-m", "uniform", "--split", "x"], 2, "bad --split"),
        (["-m", "uniform", "--text", "/nonexistent/file.txt"], 1, "file not found"),
        (["-m", "uniform", "-o", "/nonexistent/dir/out.json"], 2, "does not exist"),
        (["-m", "uniform", "--format", "xml"], 2, "'xml' is not one of"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code(args, code, message, small_text):
    if "--text" not in args and "--dataset" not in args:
        args = [*args, "--text", str(small_text)]
    result = run("compare", *args)
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmeval: error: "), result.stderr
    assert message in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize(
    "content, message",
    [(b"", "is empty"), (b"\x00\x01\x02binary", "looks binary"), (b"\xff\xfe\xfa\n", "not valid")],
)
def test_bad_files_give_one_line(write, content, message):
    path = write("bad.txt", content)
    result = run("compare", "-m", "uniform", "--text", str(path))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_failed_output_leaves_previous_file_untouched(small_text, tmp_path):
    out = tmp_path / "r.json"
    out.write_text("previous")
    result = run("compare", "-m", "nosuch", "--text", str(small_text), "-o", str(out))
    assert result.exit_code == 2 and out.read_text() == "previous"


def test_save_models_then_score_saved(small_text, tmp_path):
    first = compare_json(
        "-m", "uniform", "--text", str(small_text), "--save-models", str(tmp_path / "models")
    )
    saved = tmp_path / "models" / "uniform.lmz"
    assert saved.is_file()
    again = compare_json("-m", f"saved:path={saved}", "--text", str(small_text))
    assert again["results"][0]["nll"] == pytest.approx(first["results"][0]["nll"])


def test_saved_model_that_is_not_an_archive_is_one_line(write, small_text):
    junk = write("junk.lmz", b"not a zip")
    result = run("compare", "-m", f"saved:path={junk}", "--text", str(small_text))
    assert result.exit_code == 1 and "is not a saved lmeval model" in result.stderr


def test_generate_greedy_with_uniform_repeats_most_probable(small_text):
    result = run(
        "generate",
        "-m",
        "uniform",
        "--text",
        str(small_text),
        "--prefix",
        "the",
        "-n",
        "5",
        "--temperature",
        "0",
    )
    assert result.exit_code == 0, result.output
    # all tokens tie, so greedy takes id 0 (<unk>) every time
    assert result.stdout == "the" + "<unk>" * 5 + "\n"


def test_datasets_lists_offline_and_download(tmp_path, monkeypatch):
    monkeypatch.setenv("LMEVAL_CACHE_DIR", str(tmp_path))
    rows = {d["name"]: d for d in json.loads(run("datasets", "--format", "json").stdout)}
    assert rows["pydoc-topics"]["cached"] is None
    assert rows["timemachine"] == {**rows["timemachine"], "cached": False, "bytes": 178_979}


def test_real_process_prints_no_traceback(small_text):
    env = {**os.environ, "LMEVAL_LOAD_ENTRY_POINTS": "0"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lmeval",
            "compare",
            "-m",
            "ngram:order=zero",
            "--text",
            str(small_text),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--split", "nan,0.5,0.5"], 2, "bad --split"),
        (["--seed", "-1"], 2, "--seed"),
        (["--encoding", "bogus"], 2, "unknown encoding 'bogus'"),
        (["-m", "saved"], 2, "model 'saved' needs path=..."),
        (["-m", "ngram:order=2", "-m", "arpa:path=/nonexistent.arpa"], 1, "nonexistent"),
    ],
)
def test_more_bad_input(small_text, args, code, message):
    if "-m" not in args:
        args = [*args, "-m", "uniform"]
    result = run("compare", *args, "--text", str(small_text), "--format", "json")
    assert result.exit_code == code, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert result.stdout == ""  # nothing trained, nothing printed


def test_debug_is_accepted_after_the_command(small_text):
    result = run("compare", "-m", "nosuch", "--text", str(small_text), "--debug")
    # the traceback, then the same line and status as without --debug
    assert result.exit_code == 2 and "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("lmeval: error: unknown model")


def test_failed_model_still_writes_results_and_exits_1(write, small_text, tmp_path):
    plugin = write(
        "nanmodel.py",
        "import numpy as np, lmeval\n"
        "class NanModel(lmeval.LanguageModel):\n    name = 'nanmodel'\n"
        "    def fit(self, train_ids, valid_ids=None):\n        pass\n"
        "    def score(self, ids):\n        return np.full(len(ids), np.nan)\n"
        "@lmeval.hookimpl\ndef register_models(register):\n    register(NanModel)\n",
    )
    out = tmp_path / "r.json"
    result = run(
        "--plugin",
        str(plugin),
        "compare",
        "-m",
        "nanmodel",
        "-m",
        "uniform",
        "--text",
        str(small_text),
        "--format",
        "json",
        "-o",
        str(out),
    )
    assert result.exit_code == 1 and "model(s) failed: nanmodel" in result.stderr
    rows = {r["label"]: r for r in json.loads(out.read_text())["results"]}
    assert "NaN" in rows["nanmodel"]["error"] and rows["uniform"]["perplexity"] > 1


def test_word_generation_keeps_words_apart(write):
    text = write("w.txt", "the cat sat\n" * 30)
    result = run(
        "generate",
        "-m",
        "ngram:order=2",
        "--text",
        str(text),
        "--tokenizer",
        "word",
        "--prefix",
        "the",
        "-n",
        "2",
        "--temperature",
        "0",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "the cat sat\n"


def test_generate_needs_a_model_or_a_file(small_text):
    result = run("generate", "--text", str(small_text))
    assert result.exit_code == 2 and "-m SPEC" in result.stderr


def test_saved_line_model_in_stream_comparison_is_refused(small_text, tmp_path):
    compare_json("-m", "uniform", "--text", str(small_text), "--save-models", str(tmp_path))
    result = run(
        "compare",
        "-m",
        f"saved:path={tmp_path / 'uniform.lmz'}",
        "--text",
        str(small_text),
        "--stream",
    )
    assert result.exit_code == 2 and "trained in line mode" in result.stderr


def test_output_keeps_permissions_and_writes_pipes_in_place(small_text, tmp_path):
    out = tmp_path / "r.csv"
    out.write_text("old")
    out.chmod(0o640)
    assert (
        run(
            "compare", "-m", "uniform", "--text", str(small_text), "--format", "csv", "-o", str(out)
        ).exit_code
        == 0
    )
    assert (out.stat().st_mode & 0o777) == 0o640 and out.read_text().startswith("label,")

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    result = run(
        "compare", "-m", "uniform", "--text", str(small_text), "--format", "csv", "-o", str(fifo)
    )
    reader.join(timeout=10)
    assert result.exit_code == 0 and received[0].startswith("label,")
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still a pipe, not replaced by a file


@pytest.mark.parametrize("temperature", ["nan", "inf", "-1"])
def test_generate_refuses_bad_temperatures(small_text, temperature):
    result = run(
        "generate", "-m", "uniform", "--text", str(small_text), "--temperature", temperature
    )
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "--temperature" in result.stderr


def test_failed_model_in_the_table_exits_1_and_says_why(write, small_text):
    plugin = write(
        "raising.py",
        "import lmeval\n"
        "class Raising(lmeval.LanguageModel):\n    name = 'raising'\n"
        "    def fit(self, train_ids, valid_ids=None):\n        raise MemoryError('too big')\n"
        "    def score(self, ids):\n        return ids\n"
        "@lmeval.hookimpl\ndef register_models(register):\n    register(Raising)\n",
    )
    result = run(
        "--plugin",
        str(plugin),
        "compare",
        "-m",
        "raising",
        "-m",
        "uniform",
        "--text",
        str(small_text),
    )
    assert result.exit_code == 1
    assert "error raising: MemoryError: too big" in result.stdout
    assert "uniform (yardstick)" in result.stdout


def test_save_arpa_writes_the_ngram_rows_and_the_arpa_model_scores_them_alike(tmp_path):
    """compare --save-arpa DIR: every n-gram row as DIR/LABEL.arpa (what KenLM's
    build_binary reads); the arpa model reads it back with the same scores, and rows
    with no ARPA form say why, without failing."""
    text = tmp_path / "t.txt"
    text.write_text("".join(f"the line {i} reads {i * 7 % 13}.\n" for i in range(300)))
    arpas = tmp_path / "arpas"
    first = CliRunner().invoke(
        cli,
        ["compare", "-m", "kn4=ngram:order=4", "-m", "wb=ngram:order=3,smoothing=witten-bell",
         "-m", "uniform", "--text", str(text), "--save-arpa", str(arpas), "--format", "json"],
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    rows = {r["label"]: r for r in json.loads(first.stdout)["results"]}
    assert sorted(p.name for p in arpas.iterdir()) == ["kn4.arpa", "wb.arpa"]
    assert rows["kn4"]["details"]["arpa_saved_to"] == str(arpas / "kn4.arpa")
    assert "no ARPA form" in rows["uniform"]["details"]["arpa_error"]
    again = CliRunner().invoke(
        cli,
        ["compare", "-m", f"kn4=arpa:path={arpas / 'kn4.arpa'}",
         "-m", f"wb=arpa:path={arpas / 'wb.arpa'}", "--text", str(text), "--format", "json"],
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    for row in json.loads(again.stdout)["results"]:
        assert row["verified"] is True
        assert row["nll"] == pytest.approx(rows[row["label"]]["nll"], rel=1e-12)

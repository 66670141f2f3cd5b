"""The metrics beyond the four of the table: word perplexity, bits per token, --metric."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

import lmeval
from lmeval.cli import cli


@pytest.fixture
def text(numbered_text):
    return numbered_text(60)


def test_word_perplexity_divides_by_the_words_of_the_test_text(text):
    test = lmeval.load_corpus(text=text).test
    for tokenizer in ("char", "word"):
        [row] = lmeval.compare(["ngram:order=3"], text=text, tokenizer=tokenizer, verify=0).results
        assert row["word_perplexity"] == pytest.approx(math.exp(row["nll"] / len(test.split())))
        assert row["bits_per_token"] == pytest.approx(row["cross_entropy"] / math.log(2))
    # a word model predicts every word and every line end: its tokens are words + lines
    [word] = lmeval.compare(["uniform"], text=text, tokenizer="word", verify=0).results
    assert word["tokens"] == len(test.split()) + word["lines"]


def test_metric_chooses_the_columns_and_json_keeps_every_metric(text):
    args = ["compare", "-m", "ngram:order=2", "--text", str(text), "--bootstrap", "0"]
    default = CliRunner().invoke(cli, [*args, "--format", "markdown"]).stdout
    assert "word_perplexity" not in default and "bits/char" in default
    chosen = CliRunner().invoke(cli, [*args, "--format", "markdown", "--metric", "word_perplexity"])
    header = chosen.stdout.splitlines()[0]
    assert "word_perplexity" in header and "ppl" not in header and "bits/char" not in header
    record = json.loads(CliRunner().invoke(cli, [*args, "--format", "json"]).stdout)["results"][0]
    assert {"word_perplexity", "bits_per_token", "perplexity"} <= set(record)


def test_an_unknown_metric_is_a_usage_error(text):
    result = CliRunner().invoke(cli, ["compare", "--text", str(text), "--metric", "nope"])
    assert result.exit_code == 2 and "unknown metric 'nope'" in result.stderr


def test_a_model_that_does_not_pay_for_every_character_ranks_below_one_that_does(text, tmp_path):
    from lmeval.report import ordered, to_markdown

    lmeval.compare(["c=ngram:order=2"], text=text, save_models=tmp_path, verify=0)
    result = lmeval.compare(
        ["w=ngram:order=3", f"saved:path={tmp_path / 'c.lmz'}"], text=text, tokenizer="word"
    )
    word, chars = result.results
    assert word["oovs"] > 0 and word["comparable"] is False and "<unk>" in word["comparable_reason"]
    assert chars["oovs"] == 0 and chars["comparable"] is True
    assert word["bits_per_char"] < chars["bits_per_char"]  # cheaper only by skipping characters
    assert [r["label"] for r in ordered(result)][0] == chars["label"]
    assert word["vs_best"]["label"] == chars["label"]
    assert "w (<unk>: not comparable)" in to_markdown(result)


def test_rows_alike_in_unknown_tokens_are_not_marked(text):
    from lmeval.report import to_markdown

    result = lmeval.compare(["a=ngram:order=2", "b=ngram:order=3"], text=text, tokenizer="word")
    assert all(r["comparable"] is False for r in result.results)
    assert "not comparable" not in to_markdown(result)


def test_compare_names_each_stage_of_each_model_as_it_begins(text):
    stages = []
    lmeval.compare(
        ["uniform", "b=ngram:order=2"],
        text=text,
        on_stage=lambda label, stage: stages.append((label, stage)),
    )
    expected = [(m, s) for m in ("uniform", "b") for s in ("training", "scoring", "verifying")]
    assert stages == expected


def test_long_rnn_scoring_shows_a_bar_of_tokens(text, monkeypatch):
    from contextlib import contextmanager

    import lmeval_rnn.model as rnn_model

    opened = []

    @contextmanager
    def recording(description, total=None, unit=""):
        class Bar:
            def update(self, **kw):
                opened[-1][3].append(kw.get("completed"))

        opened.append((description, total, unit, []))
        yield Bar()

    model, tok = lmeval.train("rnn:hidden=8,budget=300tok,threads=1", text=text)
    monkeypatch.setattr(rnn_model, "SCORE_BAR_AFTER", -1.0)  # every scoring counts as long
    monkeypatch.setattr(lmeval, "progress", recording)
    ids = tok.encode(lmeval.load_corpus(text=text).test)
    model.score(ids)
    description, total, unit, completed = opened[0]
    assert (description, total, unit) == ("score rnn", len(ids), "tok")
    assert completed[0] == 0 and completed == sorted(completed)


def test_accuracy_is_the_share_of_tokens_that_were_the_top_prediction(text):
    [row] = lmeval.compare(["ngram:order=3"], text=text, top1=True).results
    model, tok = lmeval.train("ngram:order=3", text=text)
    ids = tok.encode(lmeval.load_corpus(text=text).test)
    hits = [int(np.argmax(model.next_token_logprobs(ids[:i]))) == ids[i] for i in range(len(ids))]
    assert row["accuracy"] == pytest.approx(sum(hits) / len(ids))
    [unasked] = lmeval.compare(["ngram:order=3"], text=text).results
    assert unasked["accuracy"] is None  # it costs a pass: computed only when asked


PEEKING_TOP1 = """
import numpy as np, lmeval
from lmeval_ngram.model import NGram
class Peek(NGram):
    name = "peektop"
    def top1(self, ids):
        return np.asarray(ids).copy()  # "predicts" the very token it is asked about
@lmeval.hookimpl
def register_models(register):
    register(Peek)
"""


def test_a_top1_that_peeks_at_the_answer_gets_no_accuracy(write):
    plugin = write("peektop.py", PEEKING_TOP1)
    # on real text a 3-gram's top-1 is right about half the time: 32 checked
    # positions all agreeing with a peek has odds of about 1e-9
    [row] = lmeval.compare(["peektop:order=3"], top1=True, plugins=[str(plugin)]).results
    assert row["accuracy"] is None and "disagrees" in row["details"]["metric_errors"]["accuracy"]


def test_the_rnn_top1_agrees_with_its_distributions(text):
    [row] = lmeval.compare(["rnn:hidden=8,budget=300tok,threads=1"], text=text, top1=True).results
    assert row["accuracy"] is not None and 0 <= row["accuracy"] <= 1, row["details"]

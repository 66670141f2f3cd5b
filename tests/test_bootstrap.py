"""Bootstrap intervals and the paired test against the best row: known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import lmeval
from lmeval.cli import cli
from lmeval.records import BOOTSTRAP_KEYS

CI_KEYS = ("perplexity_ci", "cross_entropy_ci", "bits_per_char_ci", "bits_per_byte_ci")
README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def corpus() -> lmeval.Corpus:
    """A varied text of 400 lines (40 test lines)."""
    rng = np.random.default_rng(7)
    words = "the a time traveller said machine odd even line was it of to and in".split()
    lines = [" ".join(rng.choice(words, size=rng.integers(3, 12))) for _ in range(400)]
    return lmeval.split_text("\n".join(lines) + "\n", name="words")


def by_label(comparison: lmeval.Comparison) -> dict[str, dict]:
    return {r["label"]: r for r in comparison.results}


def test_a_model_against_itself_is_never_significant(corpus):
    result = by_label(lmeval.compare(["a=ngram:order=3", "b=ngram:order=3"], corpus=corpus))
    assert result["a"]["vs_best"] is None  # the best row (the first of a tie)
    versus = result["b"]["vs_best"]
    assert versus["label"] == "a"
    assert versus["delta_bits_per_char"] == 0.0
    assert versus["ci"] == [0.0, 0.0]
    assert versus["p_value"] == 1.0
    assert versus["significant"] is False
    assert result["a"]["bits_per_char_ci"] == result["b"]["bits_per_char_ci"]


def test_a_five_gram_beats_the_uniform_baseline_significantly(corpus):
    comparison = lmeval.compare(["uniform", "ngram:order=5"], corpus=corpus, bootstrap=500)
    result = by_label(comparison)
    assert result["ngram:order=5"]["vs_best"] is None
    versus = result["uniform"]["vs_best"]
    assert versus["label"] == "ngram:order=5"
    assert versus["p_value"] == pytest.approx(1 / 500)  # the floor: no replicate crosses 0
    assert versus["significant"] is True
    low, high = versus["ci"]
    assert 0 < low <= versus["delta_bits_per_char"] <= high
    delta = result["uniform"]["bits_per_char"] - result["ngram:order=5"]["bits_per_char"]
    assert versus["delta_bits_per_char"] == pytest.approx(delta, rel=1e-12)


def test_the_bootstrap_interval_of_a_mean_matches_the_closed_form():
    rng = np.random.default_rng(1)
    n = 4000
    values = rng.exponential(2.0, size=n)
    totals = lmeval.replicate_totals(np.column_stack([values, np.ones(n)]), 4000, seed=3)
    low, high = lmeval.percentile_interval(totals[:, 0] / totals[:, 1], 0.95)
    half = 1.959964 * values.std() / math.sqrt(n)
    assert (high - low) / 2 == pytest.approx(half, rel=0.05)
    assert (low + high) / 2 == pytest.approx(values.mean(), abs=0.1 * half)


def test_every_interval_contains_its_estimate(corpus):
    comparison = lmeval.compare(["uniform", "ngram:order=2", "ngram:order=4"], corpus=corpus)
    for record in comparison.results:
        for key in CI_KEYS:
            low, high = record[key]
            value = record[key.removesuffix("_ci")]
            slack = 1e-9 * value  # a constant per-token cost (uniform) is one value, rounded
            assert low - slack <= value <= high + slack, (record["label"], key)


def test_the_same_seed_gives_the_same_intervals(corpus):
    specs = ["uniform", "ngram:order=3"]
    first = lmeval.compare(specs, corpus=corpus, seed=5, bootstrap=200)
    again = lmeval.compare(specs, corpus=corpus, seed=5, bootstrap=200)
    other = lmeval.compare(specs, corpus=corpus, seed=6, bootstrap=200)
    keys = (*CI_KEYS, "vs_best")
    assert [[r[k] for k in keys] for r in first.results] == [
        [r[k] for k in keys] for r in again.results
    ]
    assert first.results[1]["bits_per_char_ci"] != other.results[1]["bits_per_char_ci"]
    assert first.meta["bootstrap"]["seed"] == 5


def test_bootstrap_zero_gives_none_everywhere(corpus):
    comparison = lmeval.compare(["uniform", "ngram:order=3"], corpus=corpus, bootstrap=0)
    for record in comparison.results:
        assert all(record[key] is None for key in BOOTSTRAP_KEYS)
    assert comparison.meta["bootstrap"]["replicates"] == 0


CHEATERS = str(Path(__file__).resolve().parent / "cheating_models.py")


def test_failed_rows_have_no_intervals_and_are_never_the_best(corpus):
    specs = ["uniform", "bigram", "nans", "doubled"]
    result = by_label(lmeval.compare(specs, corpus=corpus, plugins=[CHEATERS]))
    for label in ("nans", "doubled"):  # a broken contract; a failed verification
        assert result[label]["error"]
        assert all(result[label][key] is None for key in BOOTSTRAP_KEYS)
    assert result["uniform"]["vs_best"]["label"] == "bigram"


def test_bad_parameters_are_usage_errors(corpus):
    for kwargs in ({"confidence": 1.0}, {"confidence": 0.0}, {"bootstrap": -1}):
        with pytest.raises(lmeval.UsageError):
            lmeval.compare(["uniform"], corpus=corpus, **kwargs)


def test_line_blocks_count_what_text_stats_counts():
    text = "héllo\nwörld ✓\n\nend\n"
    tok = lmeval.CharTokenizer()
    tok.fit(text)
    ids = tok.encode(text)
    layout = lmeval.line_layout(text, ids, tok.vocab.eos_id)
    stats = lmeval.TextStats.of(text, ids, tok.vocab.unk_id)
    assert layout.chars.sum() == stats.chars
    assert layout.bytes.sum() == stats.bytes
    assert layout.ends[-1] == len(ids) and len(layout.ends) == stats.lines
    sums = lmeval.block_sums(np.ones(len(ids)), layout.ends)
    assert sums.tolist() == [6.0, 8.0, 1.0, 4.0]


def test_stream_blocks_are_exact_for_characters():
    text = "a✓b" * 70
    layout = lmeval.stream_layout(text, len(text), tokens_are_chars=True, block_tokens=100)
    assert layout.chars.tolist() == [100, 100, 10]
    assert layout.bytes.sum() == len(text.encode())
    rough = lmeval.stream_layout(text, 21, tokens_are_chars=False, block_tokens=10)
    assert rough.chars.sum() == pytest.approx(len(text))
    assert rough.ends.tolist() == [10, 20, 21]


def test_stream_mode_pairs_rows_of_one_tokenizer(corpus):
    comparison = lmeval.compare(["uniform", "ngram:order=3"], corpus=corpus, lines=False)
    meta = comparison.meta["bootstrap"]
    assert meta["block_unit"] == "tokens" and meta["block_tokens"] == 100
    assert meta["method"] == "block bootstrap over blocks of 100 tokens"
    uniform = by_label(comparison)["uniform"]
    assert uniform["bits_per_char_ci"] is not None
    assert uniform["vs_best"]["significant"] is True


def test_p_value_is_two_sided_and_floored():
    assert lmeval.p_value(np.zeros(10)) == 1.0
    assert lmeval.p_value(np.arange(1.0, 11.0)) == pytest.approx(0.1)
    assert lmeval.p_value(np.array([-1.0, 1.0, 2.0, 3.0])) == pytest.approx(0.5)


def test_cli_json_has_the_keys_and_the_meta(small_text):
    args = ["compare", "-m", "uniform", "-m", "ngram:order=3", "--text", str(small_text)]
    result = CliRunner().invoke(cli, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for record in data["results"]:
        assert all(key in record for key in BOOTSTRAP_KEYS)
    best, worst = sorted(data["results"], key=lambda r: r["bits_per_char"])
    assert best["vs_best"] is None and worst["vs_best"]["label"] == best["label"]
    assert set(worst["vs_best"]) == {"label", "delta_bits_per_char", "ci", "p_value", "significant"}
    boot = data["meta"]["bootstrap"]
    assert boot["method"] == "block bootstrap over lines" and boot["replicates"] == 1000
    assert boot["confidence"] == 0.95 and boot["block_unit"] == "line"


def test_cli_table_shows_half_widths_and_ties(small_text):
    args = ["compare", "-m", "a=ngram:order=3", "-m", "b=ngram:order=3", "--text", str(small_text)]
    result = CliRunner().invoke(cli, [*args, "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert " ±" in result.stdout
    assert "| b ≈ |" in result.stdout
    assert "half-width of the 95 % interval" in result.stdout


def test_cli_refuses_a_confidence_outside_0_1_in_one_line(small_text):
    args = ["compare", "-m", "uniform", "--text", str(small_text), "--confidence", "1.5"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "confidence" in result.output


def test_readme_documents_the_bootstrap_keys():
    for key in BOOTSTRAP_KEYS:
        assert f"`{key}`" in README, key


@pytest.mark.parametrize(
    ("replicates", "confidence", "words"),
    [(10**9, 0.95, "at most 100,000"), (10, 0.95, "at least 41"), (1000, 0.999, "at least 2001")],
)
def test_replicates_that_cannot_hold_or_cannot_decide_are_refused_first(
    replicates, confidence, words
):
    with pytest.raises(lmeval.UsageError, match=words):
        lmeval.compare(["uniform"], bootstrap=replicates, confidence=confidence)


def test_a_one_line_test_text_gets_no_intervals_and_says_why(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("".join(f"line {i} of the text\n" for i in range(30)), encoding="utf-8")
    test = tmp_path / "test.txt"
    test.write_text("line 99 of the text\n", encoding="utf-8")
    result = lmeval.compare(["uniform", "ngram:order=2"], train=train, test=test)
    assert all(r["bits_per_char_ci"] is None and r["vs_best"] is None for r in result.results)
    assert "one block" in result.meta["bootstrap"]["unpaired"]["uniform"]

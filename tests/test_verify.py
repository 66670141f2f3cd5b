"""compare verifies every row: a model that cheats or is not normalised is never ranked."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from cheating_models import CHEATERS, HONEST, Bigram
from click.testing import CliRunner

import lmeval
from lmeval.cli import cli

CHEATS = str(Path(__file__).parent / "cheating_models.py")


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    """Enough varied lines that a bigram has something to learn."""
    rng = np.random.default_rng(0)
    words = ["time", "machine", "traveller", "said", "the", "and", "of", "it", "was"]
    lines = [" ".join(rng.choice(words, size=8)) for _ in range(120)]
    path = tmp_path_factory.mktemp("verify") / "text.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def comparison(text):
    specs = [cls.name for cls in HONEST + CHEATERS] + ["uniform", "ngram:order=3"]
    return lmeval.compare(specs, text=text, plugins=[CHEATS])


def test_every_cheater_is_a_failed_row_with_a_reason(comparison):
    by_label = {r["label"]: r for r in comparison.results}
    for cls in CHEATERS:
        record = by_label[cls.name]
        assert record["verified"] is False, cls.name
        assert record["error"] and record["error"] == record["verify_error"], cls.name
        assert record["perplexity"] is None, cls.name
        assert cls.name not in comparison.scores


@pytest.mark.parametrize(
    "name, reason",
    [
        ("off-by-one", r"normalisation: probabilities at token \d+ sum to [\d.]+, not 1"),
        ("peek-current", r"normalisation: probabilities at token \d+ sum to [\d.]+, not 1"),
        ("doubled", r"sum to 2, not 1"),
        ("halved", r"sum to 0.5, not 1"),
        ("disagreeing", r"consistency: score gives log p = .* but next_token_logprobs"),
    ],
)
def test_the_reason_names_the_broken_property(comparison, name, reason):
    record = next(r for r in comparison.results if r["label"] == name)
    assert record["error"] is not None
    assert __import__("re").search(reason, record["error"]), record["error"]


def test_honest_models_and_builtins_are_verified(comparison):
    for record in comparison.results:
        if record["label"] in {c.name for c in CHEATERS}:
            continue
        assert record["verified"] is True, record
        assert record["verify_error"] is None and "error" not in record
        assert math.isfinite(record["perplexity"])
        assert record["details"]["verify_seconds"] >= 0


def test_a_model_that_looks_ahead_fails_causality():
    vocab = lmeval.Vocabulary.build({c: 1 for c in "abc"}, eos="\n")
    model = _fitted(
        type("Ahead", (Bigram,), {"name": "ahead", "score": _peeking_score}),
        vocab,
    )
    ids = np.array([1, 2, 3, 1, 2, 3, 3, 3, 1, 0, 2] * 4, dtype=np.int64)
    outcome = lmeval.verify_model(model, ids, positions=8)
    assert outcome.failed is not None and outcome.failed.name == "causality"
    assert "looks ahead" in outcome.error


def _peeking_score(self, ids):
    out = Bigram.score(self, ids)
    return out if len(ids) < 20 else out - 0.01  # the whole text scores differently


def _fitted(cls, vocab):
    model = cls(vocab)
    model.fit(np.arange(len(vocab), dtype=np.int64).repeat(3))
    return model


def test_cheaters_never_top_the_table_on_the_command_line(text):
    result = CliRunner().invoke(
        cli,
        [
            "compare",
            "--plugin",
            CHEATS,
            "-m",
            "peek-current",
            "-m",
            "bigram",
            "-m",
            "uniform",
            "--text",
            str(text),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 1
    assert "model(s) failed: peek-current" in result.stderr
    records = {r["label"]: r for r in json.loads(result.stdout)["results"]}
    assert records["peek-current"]["perplexity"] is None
    assert records["bigram"]["perplexity"] > 1
    table = CliRunner().invoke(
        cli,
        ["compare", "--plugin", CHEATS, "-m", "peek-current", "-m", "bigram", "--text", str(text)],
    )
    assert "peek-current: normalisation: probabilities at token" in table.stdout
    rows = [line for line in table.stdout.splitlines() if line.startswith("│")]
    assert rows[0].split()[1] == "bigram" and "failed" in rows[-1]  # never on top


def test_no_verify_leaves_rows_unchecked_and_says_so(text):
    result = lmeval.compare(["peek-current", "bigram"], text=text, plugins=[CHEATS], verify=0)
    assert all(r["verified"] is None and "error" not in r for r in result.results)
    assert result.meta["verify"]["positions"] == 0
    out = CliRunner().invoke(cli, ["compare", "--no-verify", "-m", "uniform", "--text", str(text)])
    assert out.exit_code == 0 and "verification off" in out.stdout


def test_verify_n_is_recorded_in_the_meta(text):
    result = lmeval.compare(["uniform"], text=text, verify=20, verify_seed=7)
    assert result.meta["verify"] == {"positions": 20, "span": 2048, "seed": 7}
    assert "20 positions" in result.results[0]["details"]["verify_checks"]["normalisation"]


def _word_text(path: Path, size: int) -> Path:
    words = [f"w{i}" for i in range(size)]
    lines = [" ".join(words[i : i + 10]) for i in range(0, size, 10)]
    path.write_text("\n".join(lines * 2) + "\n", encoding="utf-8")
    return path


def test_a_large_vocabulary_without_a_distribution_is_unverified_not_trusted(tmp_path):
    # 30,000 words: too many to score every next token, and no next_token_logprobs
    text = _word_text(tmp_path / "words.txt", 30_000)
    args = dict(text=text, plugins=[CHEATS], tokenizer="word", split=(0.9, 0.0, 0.1))
    record = lmeval.compare(["unigram-score-only"], **args).results[0]
    assert record["verified"] is False and "error" not in record
    assert "too large to check" in record["verify_error"]
    assert math.isfinite(record["perplexity"])
    table = CliRunner().invoke(
        cli,
        ["compare", "--plugin", CHEATS, "-m", "unigram-score-only", "--tokenizer", "word"]
        + ["--text", str(text), "--split", "0.9,0,0.1"],
    )
    assert table.exit_code == 0
    assert "unigram-score-only (unverified)" in table.stdout
    assert "unverified unigram-score-only: normalisation" in table.stdout


def test_a_mid_sized_vocabulary_is_checked_at_fewer_positions_and_says_so(tmp_path):
    text = _word_text(tmp_path / "words.txt", 5_000)
    args = dict(text=text, plugins=[CHEATS], tokenizer="word", split=(0.9, 0.0, 0.1))
    record = lmeval.compare(["unigram-score-only"], **args).results[0]
    assert record["verified"] is True
    detail = record["details"]["verify_checks"]["normalisation"]
    assert "(of 8: vocabulary 5,00" in detail and "by scoring every next token" in detail


def test_negative_verify_is_a_usage_error(text):
    with pytest.raises(lmeval.UsageError, match="verify=-1"):
        lmeval.compare(["uniform"], text=text, verify=-1)


def test_verify_n_on_the_command_line(text):
    result = CliRunner().invoke(
        cli, ["compare", "-m", "uniform", "--verify", "3", "--text", str(text), "--format", "json"]
    )
    data = json.loads(result.stdout)
    assert data["meta"]["verify"]["positions"] == 3
    assert data["results"][0]["verified"] is True
    bad = CliRunner().invoke(cli, ["compare", "-m", "uniform", "--verify", "0"])
    assert bad.exit_code == 2 and "--verify" in bad.stderr


def test_cheating_only_beyond_the_cheap_probes_is_caught():
    """One probe lies beyond the first 2,048 tokens, wherever the text goes."""
    result = lmeval.compare(
        ["late-doubled", "late-peek", "bigram", "bigram-score-only"],
        dataset="pydoc-topics",
        plugins=[CHEATS],
    )
    by_label = {r["label"]: r for r in result.results}
    assert "consistency" in by_label["late-doubled"]["error"]
    assert "causality" in by_label["late-peek"]["error"]
    assert by_label["bigram"]["verified"] and by_label["bigram-score-only"]["verified"]
    assert by_label["bigram"]["tokens"] > 2048


def test_the_verified_positions_are_random_unless_a_seed_is_given(text):
    seeds = {lmeval.compare(["uniform"], text=text).meta["verify"]["seed"] for _ in range(3)}
    assert len(seeds) > 1  # a model cannot compute where it will be probed
    result = CliRunner().invoke(
        cli,
        ["compare", "-m", "uniform", "--verify-seed", "5", "--text", str(text)]
        + ["--format", "json"],
    )
    assert json.loads(result.stdout)["meta"]["verify"]["seed"] == 5


def test_a_model_may_not_widen_its_own_tolerance_past_the_cap(text):
    import cheating_models

    class Lax(cheating_models.Doubled):
        name = "lax"
        tolerance = float("inf")

    host = lmeval.load_host()
    host.models.add("lax", Lax, "test")
    record = lmeval.compare(["lax"], text=text, host=host).results[0]
    assert record["verified"] is False and "sum to 2, not 1" in record["error"]


def test_a_model_that_writes_into_its_input_cannot(text):
    import cheating_models

    class Scribbler(cheating_models.Bigram):
        name = "scribbler"

        def score(self, ids):
            out = super().score(ids)
            ids[:] = 0  # hide what it looked at
            return out

    host = lmeval.load_host()
    host.models.add("scribbler", Scribbler, "test")
    record = lmeval.compare(["scribbler"], text=text, host=host).results[0]
    assert "read-only" in record["error"]


def test_not_implemented_after_answering_is_a_failure_not_a_skip(text):
    import cheating_models

    class Coy(cheating_models.Bigram):
        name = "coy"

        def next_token_logprobs(self, context_ids):
            if len(context_ids) > 5:
                raise NotImplementedError("only short contexts")
            return super().next_token_logprobs(context_ids)

    class ShortOnly(cheating_models.Bigram):
        name = "short-only"

        def score(self, ids):
            if len(ids) < 100:
                raise NotImplementedError("short inputs are not supported")
            return super().score(ids)

    host = lmeval.load_host()
    host.models.add("coy", Coy, "test")
    host.models.add("short-only", ShortOnly, "test")
    coy, short = lmeval.compare(["coy", "short-only"], text=text, host=host).results
    assert "after answering at earlier tokens" in coy["error"]
    assert "NotImplementedError: short inputs" in short["error"]


def test_an_unverified_row_is_never_above_a_verified_one(tmp_path):
    from lmeval.report import ordered

    comparison = lmeval.Comparison(
        results=[
            {"label": "sneaky", "bits_per_char": 0.1, "verified": False},
            {"label": "honest", "bits_per_char": 2.0, "verified": True},
            {"label": "broken", "bits_per_char": None, "verified": False, "error": "x"},
        ],
        meta={},
    )
    assert [r["label"] for r in ordered(comparison)] == ["honest", "sneaky", "broken"]


def test_late_cheating_without_a_distribution_is_caught_or_unverified():
    """Without next_token_logprobs, the far probe's normalisation is checked by scoring."""
    import cheating_models

    class LateSure(cheating_models.NoDistribution):
        name = "late-sure"

        def score(self, ids):
            out = super().score(ids)
            out[2048:] = math.log(0.999)  # reads the current token, late in the text
            return out

    host = lmeval.load_host([CHEATS])
    host.models.add("late-sure", LateSure, "test")
    records = lmeval.compare(
        ["late-sure", "bigram-score-only"], dataset="pydoc-topics", host=host
    ).results
    late, honest = records
    assert late["error"] and "normalisation" in late["error"]
    assert honest["verified"] is True


def test_verification_keeps_a_bounded_amount_of_distributions():
    """Normalisation and consistency ask for the same contexts, and the answers are
    kept for the second: up to lmeval.verify.REMEMBER_BYTES, not 8 MB a probe over
    a vocabulary of a million words (what a row's peak memory was made of)."""
    import tracemalloc

    vocab = lmeval.Vocabulary([f"w{i}" for i in range(1_000_000)], eos="</s>", distinct=True)
    model = lmeval.load_host().models.get("uniform")(vocab)  # 8 MB a distribution
    ids = np.random.default_rng(0).integers(0, len(vocab), 5000)
    tracemalloc.start()
    try:
        outcome = lmeval.verify.verify_model(model, ids, positions=24)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome.verified, outcome.failed
    answer = len(vocab) * 8
    assert peak < lmeval.verify.REMEMBER_BYTES + 6 * answer  # 24 kept would be 24 answers


class _TwoFaced(lmeval.LanguageModel):
    """Scores every token but the first at log p = -1 (a cheat over millions of
    tokens); its first distribution after a context is honest, uniform, and the
    next one agrees with the score."""

    name = "two-faced"

    def fit(self, train_ids, valid_ids=None):
        self.asked: dict[int, int] = {}

    def score(self, ids):
        out = np.full(len(ids), -1.0)
        out[:1] = -math.log(len(self.vocab))
        return out

    def next_token_logprobs(self, context_ids):
        seen = self.asked[len(context_ids)] = self.asked.get(len(context_ids), 0) + 1
        if seen == 1 or not len(context_ids):
            return np.full(len(self.vocab), -math.log(len(self.vocab)))
        return np.full(len(self.vocab), -1.0)


def test_a_distribution_asked_for_twice_must_be_the_same_one():
    """Past the memory kept for distributions (here one is 20 MB), consistency asks
    again for the one normalisation checked: a model that answers otherwise the
    second time fails, instead of passing each check with its own answer."""
    vocab = lmeval.Vocabulary([f"w{i}" for i in range(2_500_000)], eos="</s>", distinct=True)
    model = _TwoFaced(vocab)
    model.fit(np.zeros(0, dtype=np.int64))
    ids = np.random.default_rng(1).integers(0, len(vocab), 3000)
    outcome = lmeval.verify.verify_model(model, ids, positions=4)
    assert not outcome.verified
    assert "two different distributions" in outcome.failed.detail

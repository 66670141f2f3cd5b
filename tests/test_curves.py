"""Learning curves and training histories: the numbers, the table, the picture."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

import lmeval
from lmeval.cli import cli
from lmeval.curves import curve_table, learning_curve, save_plot, training_history


@pytest.fixture
def text(numbered_text):
    return numbered_text(400)


def test_a_learning_curve_scores_growing_prefixes_on_one_test_text(text):
    curve = learning_curve(["uniform", "ngram:order=3"], points=4, smallest=0.05, text=text)
    sizes = [x for x, _ in curve.series["ngram:order=3"]]
    assert (
        sizes == sorted(sizes)
        and len(sizes) == 4
        and sizes[-1] == len(lmeval.load_corpus(text=text).train)
    )
    ngram = [y for _, y in curve.series["ngram:order=3"]]
    assert ngram[-1] < ngram[0]  # more text, lower perplexity
    # the whole training text is the last point: the comparison's own number
    full = lmeval.compare(["ngram:order=3"], text=text, verify=0).results[0]
    assert ngram[-1] == pytest.approx(full["perplexity"], rel=1e-12)
    assert set(curve.meta["bits_per_char"]) == {"uniform", "ngram:order=3"}


@pytest.mark.parametrize(("points", "smallest"), [(1, 0.1), (3, 0.0), (3, 1.0)])
def test_bad_curve_sizes_are_usage_errors(text, points, smallest):
    with pytest.raises(lmeval.UsageError):
        learning_curve(["uniform"], points=points, smallest=smallest, text=text)


def test_a_training_history_is_read_from_the_rnn(text):
    curve = training_history("rnn:hidden=8,budget=3000tok,threads=1,epochs=3", text=text)
    valid = curve.series["validation"]
    assert 1 <= len(valid) <= 3 and all(y is None or y > 1 for _, y in valid)
    assert [x for x, _ in valid] == sorted(x for x, _ in valid)


def test_a_model_without_history_is_told_so(text):
    with pytest.raises(lmeval.UsageError, match="no per-epoch history"):
        training_history("ngram:order=2", text=text)


def test_the_table_has_a_row_per_size_and_a_column_per_model(text):
    from rich.console import Console

    curve = learning_curve(["uniform", "ngram:order=2"], points=3, text=text)
    console = Console(record=True, width=120)
    console.print(curve_table(curve))
    out = console.export_text()
    assert "learning curve" in out and "ngram:order=2" in out and out.count("│") >= 3 * 3


def test_a_png_and_an_svg_are_written(text, tmp_path):
    pytest.importorskip("matplotlib")
    curve = learning_curve(["uniform", "ngram:order=2"], points=3, text=text)
    save_plot(curve, tmp_path / "c.png")
    save_plot(curve, tmp_path / "c.svg")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "c.png").stat().st_size > 10_000
    svg = (tmp_path / "c.svg").read_text()
    assert "<svg" in svg and "learning curve" in svg


def test_cli_curve_json_and_plot(text, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "curve.png"
    result = CliRunner().invoke(
        cli,
        ["curve", "-m", "ngram:order=2", "--text", str(text), "--points", "3"]
        + ["--format", "json", "--plot", str(out)],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["series"]["ngram:order=2"]) == 3 and out.is_file()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--plot", "c.pdf"], "give a .png or .svg"),
        (["--history", "-m", "uniform"], "exactly one"),
        (["--points", "1"], "--points"),
    ],
)
def test_cli_curve_refuses_bad_requests_before_work(text, args, words):
    result = CliRunner().invoke(cli, ["curve", "-m", "ngram:order=2", "--text", str(text), *args])
    assert result.exit_code == 2 and words in result.stderr, result.stderr


def test_a_missing_matplotlib_is_one_line_before_work(text, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = CliRunner().invoke(
        cli,
        ["curve", "-m", "ngram:order=2", "--text", str(text), "--plot", str(tmp_path / "c.png")],
    )
    assert result.exit_code == 2 and "pip install 'lmeval[plot]'" in result.stderr
    assert not (tmp_path / "c.png").exists()

"""lmeval inspect: per-token surprisal, in a captured console and as an HTML page."""

from __future__ import annotations

import html.parser
import math

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console

import lmeval
from lmeval.cli import cli
from lmeval.surprisal import (
    BITS_COLOURS,
    DIFF_COLOURS,
    render_html,
    render_terminal,
    surprisal_view,
)


@pytest.fixture
def text(numbered_text):
    return numbered_text(60)


def test_one_model_shows_its_own_bits_on_the_test_text(text):
    view = surprisal_view(["ngram:order=3"], text=text, verify=0)
    scores = lmeval.compare(["ngram:order=3"], text=text, verify=0).results[0]
    assert view.bits[0].sum() * math.log(2) == pytest.approx(scores["nll"], rel=1e-12)
    assert "".join(view.pieces) == lmeval.load_corpus(text=text).test
    assert set(view.colours()) <= set(BITS_COLOURS)


def test_two_models_show_their_difference_and_a_model_against_itself_is_flat(text):
    view = surprisal_view(["a=ngram:order=2", "b=ngram:order=4"], text=text, verify=0)
    assert np.allclose(view.colour_values, view.bits[0] - view.bits[1])
    same = surprisal_view(["a=ngram:order=3", "b=ngram:order=3"], text=text, verify=0)
    assert set(same.colours()) == {DIFF_COLOURS[2]}  # the middle bin: no difference


def test_the_hardest_tokens_come_first_with_their_context(text):
    view = surprisal_view(["ngram:order=3"], text=text, verify=0)
    rows = view.hardest(0, 4)
    assert [r["bits"] for r in rows] == sorted((r["bits"] for r in rows), reverse=True)
    assert rows[0]["bits"] == pytest.approx(view.bits[0].max())
    assert all(view.pieces[r["position"]] == r["token"] for r in rows)


def test_the_terminal_view_has_the_window_legend_and_tables(text):
    view = surprisal_view(["ngram:order=2", "ngram:order=3"], text=text, verify=0)
    console = Console(record=True, width=120, color_system="truecolor")
    console.print(render_terminal(view, start_line=1, lines=2, top=3))
    plain = console.export_text(clear=False)
    assert "lines 1-2 of the test text" in plain and "line 55 was odd" in plain
    assert (
        "hardest tokens for ngram:order=2" in plain and "hardest tokens for ngram:order=3" in plain
    )
    assert "line 58 was" not in plain.split("bits under")[0]  # only the window is shown
    assert "48;2;" in console.export_text(styles=True)  # coloured backgrounds


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.spans_with_tips = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "span" and any(k == "title" for k, _ in attrs):
            self.spans_with_tips += 1


def test_the_html_page_is_self_contained_and_holds_every_token_of_the_window(text):
    view = surprisal_view(["ngram:order=3"], text=text, verify=0)
    page = render_html(view, start_line=0, lines=5, top=3)
    parser = _Page()
    parser.feed(page)
    assert parser.spans_with_tips == len(view.window(0, 5))
    assert "script" not in parser.tags and "link" not in parser.tags and "img" not in parser.tags
    assert "http" not in page and "<title>lmeval inspect: ngram:order=3</title>" in page


def test_cli_inspect_prints_and_writes_html(text, tmp_path):
    out = tmp_path / "view.html"
    result = CliRunner().invoke(
        cli, ["inspect", "-m", "ngram:order=2", "--text", str(text), "--html", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "hardest tokens" in result.stdout and out.read_text().startswith("<!DOCTYPE html>")


def test_cli_inspect_takes_one_or_two_models(text):
    args = ["inspect", "--text", str(text), "-m", "uniform", "-m", "ngram", "-m", "ngram:order=2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "one or two -m" in result.stderr


def test_cli_inspect_refuses_a_start_beyond_the_test_text(text):
    result = CliRunner().invoke(
        cli, ["inspect", "-m", "uniform", "--text", str(text), "--start", "500"]
    )
    assert result.exit_code == 2 and "--start 500" in result.stderr and "lines" in result.stderr

"""Each hook, used the way a plugin author uses it: register through it, then use it.

tests/test_docs.py fails when a hook of ``lmeval/hookspecs.py`` has no test here
(named ``test_hook_<hook>_...``, with a ``def <hook>(`` in it).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import lmeval
from lmeval.cli import cli

LINES = "".join(f"line {i} of a tiny text, {'odd' if i % 2 else 'even'}\n" for i in range(40))


def test_hook_register_models_adds_a_row(write, small_text):
    plugin = write(
        "constant.py",
        "import math, numpy as np, lmeval\n"
        "class Flat(lmeval.LanguageModel):\n    name = 'flat'\n"
        "    def fit(self, train_ids, valid_ids=None):\n        pass\n"
        "    def score(self, ids):\n"
        "        return np.full(len(ids), -math.log(len(self.vocab)))\n"
        "@lmeval.hookimpl\ndef register_models(register):\n    register(Flat)\n",
    )
    result = lmeval.compare(["flat"], text=small_text, plugins=[str(plugin)])
    record = result.results[0]
    assert record["perplexity"] == pytest.approx(result.meta["vocab_size"])
    assert record["verified"] is True


def test_hook_register_tokenizers_is_selected_by_tokenizer(write, small_text):
    plugin = write(
        "lower.py",
        "import lmeval\n"
        "class Lower(lmeval.WordTokenizer):\n    name = 'lower-words'\n"
        "    def split(self, line):\n        return line.lower().split()\n"
        "@lmeval.hookimpl\ndef register_tokenizers(register):\n    register(Lower)\n",
    )
    text = write("shout.txt", LINES.upper())
    result = lmeval.compare(["uniform"], text=text, tokenizer="lower-words", plugins=[str(plugin)])
    assert result.meta["tokenizer"] == "lower-words"
    words = {w for line in LINES.splitlines()[:32] for w in line.split()}
    assert result.meta["vocab_size"] == len(words) + 2  # <unk> and </s>


def test_hook_register_metrics_adds_a_record_key(write, small_text):
    plugin = write(
        "worst.py",
        "import lmeval\n"
        "class Worst(lmeval.Metric):\n    name = 'worst_logp'\n"
        "    def compute(self, scores):\n        return float(scores.logprobs.min())\n"
        "@lmeval.hookimpl\ndef register_metrics(register):\n    register(Worst())\n",
    )
    record = lmeval.compare(["ngram:order=2"], text=small_text, plugins=[str(plugin)]).results[0]
    assert record["worst_logp"] < -record["cross_entropy"] < 0


def test_hook_register_datasets_is_selected_by_dataset(write):
    plugin = write(
        "tiny.py",
        "import lmeval\n"
        "class Tiny(lmeval.Dataset):\n    name = 'tiny'\n    description = 'forty lines'\n"
        f"    def load(self):\n        return {LINES!r}\n"
        "@lmeval.hookimpl\ndef register_datasets(register):\n    register(Tiny())\n",
    )
    listed = CliRunner().invoke(cli, ["--plugin", str(plugin), "datasets", "--format", "json"])
    assert {"name": "tiny", "plugin": "tiny"}.items() <= next(
        d for d in json.loads(listed.stdout) if d["name"] == "tiny"
    ).items()
    result = lmeval.compare(["uniform"], dataset="tiny", plugins=[str(plugin)])
    assert result.meta["dataset"] == "tiny" and result.meta["split_lines"]["test"] == 4


def test_hook_register_commands_adds_a_command(write):
    plugin = write(
        "count.py",
        "import click, lmeval\n"
        "@lmeval.hookimpl\ndef register_commands(cli):\n"
        "    @cli.command()\n    @click.argument('spec')\n    def params(spec):\n"
        "        'How many parameters SPEC declares.'\n"
        "        host = click.get_current_context().obj.host\n"
        "        click.echo(len(host.models.get(spec).params))\n",
    )
    result = CliRunner().invoke(cli, ["--plugin", str(plugin), "params", "ngram"])
    assert result.exit_code == 0, result.output
    assert int(result.stdout) == len(lmeval.load_host().models.get("ngram").params)

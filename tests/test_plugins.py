"""Plugins: loading from files, modules and entry points; isolation of broken ones."""

import inspect
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

import lmeval
from lmeval import hookspecs
from lmeval.cli import cli

BIGRAM_PLUGIN = '''
import numpy as np
import lmeval


class AddOneBigram(lmeval.LanguageModel):
    """Add-one bigram over the vocabulary: a complete model in a dozen lines."""

    name = "bigram"
    description = "add-one bigram (test plugin)"
    params = (lmeval.Param("k", float, 1.0, "added count", check=lmeval.at_least(0.01)),)

    def fit(self, train_ids, valid_ids=None):
        V = len(self.vocab)
        counts = np.full((V + 1, V), self.config["k"])
        prev = np.concatenate([[V], train_ids[:-1]])
        np.add.at(counts, (prev, train_ids), 1)
        self.logp = np.log(counts / counts.sum(axis=1, keepdims=True))

    def score(self, ids):
        prev = np.concatenate([[len(self.vocab)], ids[:-1]])
        return self.logp[prev, ids]


@lmeval.hookimpl
def register_models(register):
    register(AddOneBigram)
'''


@pytest.fixture
def bigram_plugin(write):
    return write("bigram_plugin.py", BIGRAM_PLUGIN)


def test_every_hook_is_documented():
    hooks = [f for name, f in vars(hookspecs).items() if name.startswith("register_")]
    assert {h.__name__ for h in hooks} == {
        "register_models",
        "register_tokenizers",
        "register_metrics",
        "register_datasets",
        "register_commands",
    }
    for hook in hooks:
        assert inspect.getdoc(hook) and ":param" in inspect.getdoc(hook), hook.__name__


def test_builtin_models_come_from_entry_points():
    host = lmeval.load_host()
    assert host.models.plugin_of["uniform"] == "uniform"
    sources = {p.name: p.source for p in host.plugins}
    assert sources["uniform"] == "entry point of lmeval"


def test_file_plugin_model_is_listed_and_compared(bigram_plugin, small_text):
    runner = CliRunner()
    listed = runner.invoke(cli, ["--plugin", str(bigram_plugin), "models", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    names = {m["name"]: m for m in json.loads(listed.stdout)}
    assert names["bigram"]["params"][0]["name"] == "k"
    assert names["bigram"]["plugin"] == "bigram_plugin"
    result = runner.invoke(
        cli,
        [
            "compare",
            "--plugin",
            str(bigram_plugin),
            "-m",
            "bigram",
            "-m",
            "uniform",
            "--text",
            str(small_text),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = {r["label"]: r for r in json.loads(result.stdout)["results"]}
    assert rows["bigram"]["perplexity"] < rows["uniform"]["perplexity"]


def test_plugin_that_raises_on_import_is_named_and_the_rest_work(write, small_text):
    broken = write("broken.py", "raise RuntimeError('boom at import')\n")
    result = CliRunner().invoke(
        cli,
        [
            "--plugin",
            str(broken),
            "compare",
            "-m",
            "uniform",
            "--text",
            str(small_text),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "'broken'" in warnings[0] and "RuntimeError: boom at import" in warnings[0]
    assert json.loads(result.stdout)["results"][0]["label"] == "uniform"


def test_plugin_that_raises_while_registering_is_skipped(write):
    bad = write(
        "badreg.py",
        "import lmeval\n@lmeval.hookimpl\ndef register_models(register):\n"
        "    raise ValueError('no models today')\n",
    )
    host = lmeval.load_host([str(bad)])
    assert "uniform" in host.models
    assert any("badreg" in w and "no models today" in w for w in host.warnings)


def test_registering_a_non_model_is_refused(write):
    bad = write(
        "notmodel.py",
        "import lmeval\n@lmeval.hookimpl\ndef register_models(register):\n"
        "    class NotAModel:\n        name = 'x'\n    register(NotAModel)\n",
    )
    host = lmeval.load_host([str(bad)])
    assert any("must be a subclass of lmeval.LanguageModel" in w for w in host.warnings)


def test_broken_plugin_never_breaks_help(write):
    broken = write("broken.py", "import sys; sys.exit(3)\n")
    result = CliRunner().invoke(cli, ["--plugin", str(broken), "--help"])
    assert result.exit_code == 0 and "compare" in result.stdout
    assert "failed to import" in result.stderr


def test_plugins_from_environment_variable(bigram_plugin, monkeypatch):
    monkeypatch.setenv("LMEVAL_PLUGINS", f"{bigram_plugin},json")
    result = CliRunner().invoke(cli, ["plugins", "--format", "json"])
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["bigram_plugin"]["registered"] == {"models": ["bigram"]}
    assert plugins["bigram_plugin"]["source"].startswith("LMEVAL_PLUGINS")
    assert plugins["json"]["registered"] == {}  # a module with no hooks registers nothing


def test_plugin_can_add_a_command(write):
    plugin = write(
        "hello.py",
        "import click, lmeval\n@lmeval.hookimpl\ndef register_commands(cli):\n"
        "    @cli.command()\n    def hello():\n        click.echo('hello from a plugin')\n",
    )
    result = CliRunner().invoke(cli, ["--plugin", str(plugin), "hello"])
    assert result.exit_code == 0 and result.stdout == "hello from a plugin\n"


def test_plugin_metric_becomes_a_record_key(write, small_text):
    plugin = write(
        "tokens_metric.py",
        "import lmeval\nfrom lmeval.metrics import Metric\n"
        "class MeanLogp(Metric):\n    name = 'mean_logp'\n"
        "    def compute(self, scores):\n        return float(scores.logprobs.mean())\n"
        "@lmeval.hookimpl\ndef register_metrics(register):\n    register(MeanLogp())\n",
    )
    result = lmeval.compare(["uniform"], text=small_text, plugins=[str(plugin)])
    record = result.results[0]
    assert record["mean_logp"] == pytest.approx(-record["cross_entropy"])


def test_loading_every_plugin_does_not_import_torch():
    """Heavy libraries load inside the code that needs them, so --help stays instant."""
    code = (
        "import sys, lmeval; host = lmeval.load_host(); "
        "print(sorted(host.models), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    models, torch_loaded = out.stdout.rsplit(" ", 1)
    assert "'uniform'" in models and torch_loaded.strip() == "False"


def test_failed_plugin_leaves_nothing_registered(write):
    partial = write(
        "partial.py",
        BIGRAM_PLUGIN
        + "\n@lmeval.hookimpl\ndef register_tokenizers(register):\n    raise ValueError('late')\n",
    )
    host = lmeval.load_host([str(partial)])
    assert "bigram" not in host.models
    assert any("partial" in w and "late" in w for w in host.warnings)


def test_metric_may_not_take_a_record_field(write):
    plugin = write(
        "clash.py",
        "import lmeval\nfrom lmeval.metrics import Metric\n"
        "class Clash(Metric):\n    name = 'error'\n"
        "    def compute(self, scores):\n        return 0.0\n"
        "@lmeval.hookimpl\ndef register_metrics(register):\n    register(Clash())\n",
    )
    host = lmeval.load_host([str(plugin)])
    assert "error" not in host.metrics
    assert any("taken by a result field" in w for w in host.warnings)


def test_failing_metric_is_reported_not_fatal(write, small_text):
    plugin = write(
        "failing.py",
        "import lmeval\nfrom lmeval.metrics import Metric\n"
        "class Failing(Metric):\n    name = 'failing'\n"
        "    def compute(self, scores):\n        raise ZeroDivisionError('oops')\n"
        "@lmeval.hookimpl\ndef register_metrics(register):\n    register(Failing())\n",
    )
    record = lmeval.compare(["uniform"], text=small_text, plugins=[str(plugin)]).results[0]
    assert record["failing"] is None and record["perplexity"] > 1
    assert record["details"]["metric_errors"] == {"failing": "ZeroDivisionError: oops"}


def test_builtin_plugins_use_only_the_public_api():
    """The built-in plugins are written as a third party would write them."""
    import re
    from pathlib import Path

    import lmeval

    root = Path(__file__).resolve().parent.parent / "plugins"
    used: set[str] = set()
    for path in root.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from lmeval[. ]|import lmeval\.)", source, re.M), path
        used.update(re.findall(r"\blmeval\.([A-Za-z_]+)", source))
    assert used and used <= set(lmeval.__all__), used - set(lmeval.__all__)

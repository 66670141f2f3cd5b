"""Each call has its own plugin host, hooks go through pluggy, and every surprise warns."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
from click.testing import CliRunner

import lmeval
from lmeval.cli import cli

HONEST_BIGRAM = """
import numpy as np
import lmeval


class Bigram(lmeval.LanguageModel):
    name = "{name}"

    def fit(self, train_ids, valid_ids=None):
        size = len(self.vocab)
        counts = np.ones((size + 1, size))
        np.add.at(counts, (np.concatenate([[size], train_ids[:-1]]), train_ids), 1)
        self.logp = np.log(counts / counts.sum(axis=1, keepdims=True))

    def score(self, ids):
        prev = np.concatenate([[len(self.vocab)], ids[:-1]]).astype(np.int64)
        return self.logp[prev, ids]
{extra}

@lmeval.hookimpl
def register_models(register):
    register(Bigram)
"""


def plugin_source(name: str = "bigram", extra: str = "") -> str:
    return HONEST_BIGRAM.format(name=name, extra=extra)


def test_a_call_with_plugins_leaves_the_next_call_as_it_was(write, small_text):
    plugin = write("mine.py", plugin_source())
    first = lmeval.compare(["bigram"], text=small_text, plugins=[str(plugin)])
    assert first.results[0]["verified"] is True
    with pytest.raises(lmeval.UsageError, match="unknown model 'bigram'"):
        lmeval.compare(["bigram"], text=small_text)
    assert "bigram" not in lmeval.load_host().models


def test_a_hookimpl_may_take_fewer_arguments_than_the_spec(write):
    plugin = write(
        "fewer.py",
        "import click, lmeval\n"
        "@lmeval.hookimpl\ndef register_metrics():\n    pass\n"
        "@lmeval.hookimpl\ndef register_commands():\n    pass\n",
    )
    host = lmeval.load_host([str(plugin)])
    info = next(p for p in host.plugins if p.name == "fewer")
    assert info.error is None and host.warnings == []
    result = CliRunner().invoke(cli, ["--plugin", str(plugin), "models"])
    assert result.exit_code == 0 and "warning" not in result.stderr


def test_a_misspelt_hook_is_a_warning_with_a_suggestion(write):
    plugin = write(
        "typo.py",
        "import lmeval\n@lmeval.hookimpl\ndef register_model(register):\n    pass\n"
        "def register_tokenizers(register):\n    pass\n",
    )
    host = lmeval.load_host([str(plugin)])
    assert any(
        "register_model() is not an lmeval hook; did you mean 'register_models'?" in w
        for w in host.warnings
    ), host.warnings
    assert any("register_tokenizers() is not marked @lmeval.hookimpl" in w for w in host.warnings)


def test_a_plugin_file_named_like_a_loaded_plugin_is_loaded_and_named(tmp_path):
    (tmp_path / "rnn.py").write_text(plugin_source("my-rnn"), encoding="utf-8")
    host = lmeval.load_host([str(tmp_path / "rnn.py")])
    assert "my-rnn" in host.models and "rnn" in host.models
    assert any("has the name of plugin 'rnn'" in w for w in host.warnings)


def test_two_plugin_files_with_one_basename_both_load(tmp_path):
    for folder, name in (("a", "first"), ("b", "second")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "plugin.py").write_text(plugin_source(name), encoding="utf-8")
    paths = [str(tmp_path / "a" / "plugin.py"), str(tmp_path / "b" / "plugin.py")]
    host = lmeval.load_host(paths)
    assert {"first", "second"} <= set(host.models)
    assert any("has the name of plugin 'plugin'" in w for w in host.warnings)
    # the same file twice is one plugin, without a warning
    again = lmeval.load_host([paths[0], paths[0]])
    assert not any("has the name" in w for w in again.warnings)


def test_a_plugin_cannot_replace_a_command(write, small_text):
    plugin = write(
        "hijack.py",
        "import click, lmeval\n@lmeval.hookimpl\ndef register_commands(cli):\n"
        "    @cli.command('compare')\n    def compare():\n        click.echo('hijacked')\n",
    )
    result = CliRunner().invoke(
        cli, ["--plugin", str(plugin), "compare", "-m", "uniform", "--text", str(small_text)]
    )
    assert "hijacked" not in result.stdout and "uniform" in result.stdout
    assert "tried to replace the command 'compare'" in result.stderr
    # the next invocation, without the plugin, has lmeval's own command too
    plain = CliRunner().invoke(cli, ["compare", "-m", "uniform", "--text", str(small_text)])
    assert "hijacked" not in plain.stdout


def test_a_plugin_that_fails_to_import_warns_from_python_and_is_in_the_meta(write, small_text):
    broken = write("broken_plugin.py", "raise ImportError('needs a library you lack')\n")
    with pytest.warns(lmeval.PluginWarning, match="needs a library you lack"):
        result = lmeval.compare(["uniform"], text=small_text, plugins=[str(broken)])
    assert any("broken_plugin" in w for w in result.meta["plugin_warnings"])
    # a host the caller loaded has its warnings in hand: compare does not repeat them
    host = lmeval.load_host([str(broken)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lmeval.compare(["uniform"], text=small_text, host=host)


def test_sys_exit_in_fit_is_a_failed_row(write, small_text):
    extra = "\n    def fit(self, train_ids, valid_ids=None):\n        raise SystemExit(3)\n"
    plugin = write("quitter.py", plugin_source("quitter", extra))
    result = lmeval.compare(["quitter", "uniform"], text=small_text, plugins=[str(plugin)])
    quitter, uniform = result.results
    assert quitter["error"] == "SystemExit: 3"
    assert uniform["perplexity"] > 1
    cli_run = CliRunner().invoke(
        cli,
        ["compare", "--plugin", str(plugin), "-m", "quitter", "-m", "uniform"]
        + ["--text", str(small_text)],
    )
    assert cli_run.exit_code == 1 and "uniform" in cli_run.stdout
    assert "model(s) failed: quitter" in cli_run.stderr


def test_debug_shows_the_traceback_of_a_failing_plugin(write, small_text):
    extra = (
        "\n    def fit(self, train_ids, valid_ids=None):\n"
        "        raise ValueError('deep inside fit')\n"
    )
    plugin = write("failing.py", plugin_source("failing", extra))
    args = ["compare", "--plugin", str(plugin), "-m", "failing", "--text", str(small_text)]
    quiet = CliRunner().invoke(cli, args)
    assert "Traceback" not in quiet.stderr and "ValueError: deep inside fit" in quiet.stdout
    loud = CliRunner().invoke(cli, [*args, "--debug"])
    assert "traceback of failing:" in loud.stderr and "Traceback (most recent call last)" in (
        loud.stderr
    )
    assert 'failing.py", line' in loud.stderr and "raise ValueError" in loud.stderr


def test_bare_lmeval_prints_the_help():
    out = subprocess.run(
        [sys.executable, "-m", "lmeval"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert out.stdout.startswith("Usage: lmeval") and "compare" in out.stdout
    assert "error" not in out.stderr


def test_scripts_can_turn_progress_bars_off():
    import lmeval.progressbars as bars

    lmeval.set_progress(True)
    assert lmeval.progress_enabled() and bars.progress_enabled()
    lmeval.set_progress(False)
    assert not lmeval.progress_enabled()
    with lmeval.progress("work", total=2) as bar:
        bar.update(advance=1)  # a silent handle
    assert callable(lmeval.progress) and bars.progress is lmeval.progress


def test_any_baseline_can_be_the_yardstick(write, small_text):
    extra = "\n    yardstick = True\n"
    plugin = write("base.py", plugin_source("base", extra))
    result = CliRunner().invoke(
        cli,
        ["compare", "--plugin", str(plugin), "-m", "base", "-m", "uniform"]
        + ["--text", str(small_text), "--format", "markdown"],
    )
    assert "| base (yardstick) |" in result.stdout
    assert "| uniform (yardstick) |" in result.stdout
    records = lmeval.compare(["base"], text=small_text, plugins=[str(plugin)]).results
    assert records[0]["yardstick"] is True


def test_the_table_uses_each_metrics_format_and_direction(write, small_text):
    plugin = write(
        "accuracy.py",
        "import lmeval\n"
        "class Share(lmeval.Metric):\n    name = 'share'\n    higher_is_better = True\n"
        "    fmt = '.1%'\n"
        "    def compute(self, scores):\n        return 0.25\n"
        "@lmeval.hookimpl\ndef register_metrics(register):\n    register(Share())\n",
    )
    result = CliRunner().invoke(
        cli,
        ["compare", "--plugin", str(plugin), "-m", "uniform", "--text", str(small_text)]
        + ["--format", "markdown"],
    )
    header = result.stdout.splitlines()[0]
    assert "share ↑" in header and "ppl ↓" in header
    assert "25.0%" in result.stdout
    data = CliRunner().invoke(
        cli,
        ["compare", "--plugin", str(plugin), "-m", "uniform", "--text", str(small_text)]
        + ["--format", "json"],
    )
    assert json.loads(data.stdout)["meta"]["metrics"]["share"] == {
        "description": "",
        "fmt": ".1%",
        "higher_is_better": True,
        "shown": True,
    }


def test_a_hookimpl_with_a_wrong_argument_says_which(write):
    plugin = write(
        "badarg.py", "import lmeval\n@lmeval.hookimpl\ndef register_models(reg):\n    pass\n"
    )
    host = lmeval.load_host([str(plugin)])
    [warning] = [w for w in host.warnings if "badarg" in w]
    assert "Argument(s) {'reg'} are declared in the hookimpl" in warning
    assert "\n" not in warning


def test_a_failed_row_keeps_the_models_own_notes(write, small_text):
    extra = (
        "\n    def details(self):\n        return {'notes': ['ran out of patience']}\n"
        "\n    def fit(self, train_ids, valid_ids=None):\n        raise RuntimeError('no')\n"
    )
    plugin = write("noted.py", plugin_source("noted", extra))
    record = lmeval.compare(["noted"], text=small_text, plugins=[str(plugin)]).results[0]
    assert record["error"] == "RuntimeError: no"
    assert record["details"]["notes"] == ["ran out of patience"]

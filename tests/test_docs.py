"""The README and --help keep up with the code."""

from pathlib import Path

from click.testing import CliRunner

from lmeval import hookspecs
from lmeval.cli import cli
from lmeval.records import RECORD_KEYS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_names_every_hook():
    hooks = [name for name in vars(hookspecs) if name.startswith("register_")]
    assert hooks
    for hook in hooks:
        assert f"`{hook}`" in README, hook


def test_readme_documents_every_record_key():
    for key in (*RECORD_KEYS, "error"):
        assert f"`{key}`" in README, key


def test_readme_gives_exactly_two_setup_commands():
    block = README.split("## Two commands", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make compare", "make test"]


def test_every_command_and_option_has_help():
    runner = CliRunner()
    for name, command in cli.commands.items():
        assert command.help, name
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"{name} {param.opts}"
        assert runner.invoke(cli, [name, "--help"]).exit_code == 0

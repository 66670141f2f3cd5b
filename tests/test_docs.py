"""The README and --help keep up with the code."""

from pathlib import Path

from click.testing import CliRunner

import lmeval.plugins
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


ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "plugins.md"


def hook_signatures() -> dict[str, str]:
    """``def NAME(ARGS) -> RETURN`` of every hook, as declared in hookspecs.py."""
    import ast

    tree = ast.parse(Path(hookspecs.__file__).read_text(encoding="utf-8"))
    return {
        node.name: f"def {node.name}({ast.unparse(node.args)}) -> {ast.unparse(node.returns)}"
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(d) == "hookspec" for d in node.decorator_list)
    }


def test_the_plugin_guide_gives_every_hook_with_its_exact_signature():
    guide = GUIDE.read_text(encoding="utf-8")
    signatures = hook_signatures()
    assert set(signatures) == set(lmeval.plugins.HOOK_NAMES)
    for signature in signatures.values():
        assert signature in guide, f"docs/plugins.md lacks `{signature}`"
    assert "docs/plugins.md" in README


def test_every_hook_has_a_test_that_registers_through_it_and_uses_it():
    """A test named test_hook_<hook>_... that implements the hook (tests/test_hooks.py)."""
    import ast

    covered: set[str] = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_hook_"):
                body = ast.unparse(node)
                covered.update(
                    hook
                    for hook in lmeval.plugins.HOOK_NAMES
                    if node.name.startswith(f"test_hook_{hook}") and f"def {hook}(" in body
                )
    missing = set(lmeval.plugins.HOOK_NAMES) - covered
    assert not missing, f"hooks without a test_hook_<hook> test: {sorted(missing)}"


def test_the_plugin_guide_gives_every_class_attribute_of_a_model_with_its_default():
    """Each ``ClassVar`` of ``lmeval.LanguageModel`` is a row of the guide's table,
    ``| `name` | `default` |``: an attribute added to the contract is documented."""
    from typing import ClassVar, get_origin, get_type_hints

    guide = GUIDE.read_text(encoding="utf-8")
    hints = get_type_hints(lmeval.LanguageModel, include_extras=True)
    attributes = [name for name, hint in hints.items() if get_origin(hint) is ClassVar]
    assert {"name", "tolerance", "distributed", "seeded", "cacheable"} <= set(attributes)
    for name in attributes:
        if name == "name":
            assert "| `name` | (required) |" in guide
            continue
        default = getattr(lmeval.LanguageModel, name)
        if isinstance(default, str):
            shown = f'`"{default}"`'
        elif isinstance(default, float):
            shown = f"`{default:g}`".replace("e-0", "e-")  # 1e-9 as people write it
        else:
            shown = f"`{default!r}`"
        assert f"| `{name}` | {shown} |" in guide, f"docs/plugins.md lacks the row of {name}"


def test_readme_documents_every_bench_record_key():
    from lmeval.bench import BENCH_KEYS

    section = README.split("## Benchmark suites", 1)[1].split("\n## ", 1)[0]
    for key in BENCH_KEYS:
        assert f"`{key}`" in section, key

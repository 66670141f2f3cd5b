"""The plugin contract: one hook per thing a plugin can add to lmeval.

A plugin is a module (or object) with functions marked ``@lmeval.hookimpl``
whose names match the hooks below. Every ``register_*`` hook receives a
``register`` callback; the host validates what is registered and keeps
control of what a registration means. A plugin implements only the hooks it
needs. Import heavy libraries (torch) inside the code that uses them, never at
module level, so that ``lmeval --help`` stays instant.

Example, a whole plugin in one file (``lmeval compare --plugin bigram.py``)::

    import lmeval

    class Bigram(lmeval.LanguageModel):
        name = "bigram"
        ...

    @lmeval.hookimpl
    def register_models(register):
        register(Bigram)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("lmeval")
hookimpl = pluggy.HookimplMarker("lmeval")


@hookspec
def register_models(register: Callable[[type], None]) -> None:
    """Register language models.

    :param register: call it with each :class:`lmeval.LanguageModel` subclass;
        the class's ``name`` becomes the model name in specs
        (``NAME:key=value``), its ``params`` the accepted keys.
    """


@hookspec
def register_tokenizers(register: Callable[[type], None]) -> None:
    """Register tokenizers.

    :param register: call it with each :class:`lmeval.Tokenizer` subclass;
        its ``name`` is what ``--tokenizer NAME`` selects.
    """


@hookspec
def register_metrics(register: Callable[[Any], None]) -> None:
    """Register metrics (a column in the results).

    :param register: call it with each :class:`lmeval.Metric` instance; its
        ``name`` becomes the key in every result record.
    """


@hookspec
def register_datasets(register: Callable[[Any], None]) -> None:
    """Register data sets that ``--dataset NAME`` can select.

    :param register: call it with each :class:`lmeval.Dataset` instance.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``lmeval`` command line.

    :param cli: the root :class:`click.Group`; decorate new commands with
        ``@cli.command()``. A command may not replace one that exists (it is put
        back, with a warning). Inside a command,
        ``click.get_current_context().obj.host`` is the plugin host of the call
        (its ``models``, ``tokenizers``, ``metrics`` and ``datasets`` registries).
    """

"""Errors that reach the user as one line, never as a traceback.

Raise :class:`UsageError` when the user asked for something that cannot be
(an unknown model, a bad parameter value): the CLI exits with status 2.
Raise :class:`LmevalError` when a well-formed request fails at run time
(a file that cannot be read, a download that fails): the CLI exits with 1.
"""

from __future__ import annotations


class LmevalError(Exception):
    """A failure the user can act on; its message is one line saying what and what to do."""

    exit_code = 1


class UsageError(LmevalError):
    """The request itself is invalid (unknown name, bad value)."""

    exit_code = 2


class PluginWarning(UserWarning):
    """A plugin was skipped or is suspect (a name clash, a misspelt hook)."""


def one_line(exc: BaseException) -> str:
    """An exception as one line: an lmeval error's own message, else ``Type: first line``.

    The one place where an exception becomes text for a person (a failed row, a
    skipped plugin, the command line's error line).
    """
    if isinstance(exc, LmevalError):
        return " ".join(str(exc).split("\n")).strip() or type(exc).__name__
    text = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {text[0].strip()}" if text else type(exc).__name__

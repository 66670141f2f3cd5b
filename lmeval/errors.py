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


class LmevalWarning(UserWarning):
    """Something the user should know that stops nothing; the command line prints it
    as one line, ``lmeval: warning: ...``."""


class PluginWarning(LmevalWarning):
    """A plugin was skipped or is suspect (a name clash, a misspelt hook)."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one line: an lmeval error's own message, else ``Type: message``.

    The one place where an exception becomes text for a person (a failed row, a
    skipped plugin, the command line's error line). A message of several lines
    (pluggy names the bad argument on its third) is joined with "; ", and cut
    at ``limit`` characters.
    """
    parts = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = "; ".join(parts)
    if not isinstance(exc, LmevalError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"

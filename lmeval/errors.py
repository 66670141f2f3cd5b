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

"""Progress bars for long work (training, counting), shown on stderr.

Models report progress through :func:`progress` and never draw anything
themselves; the command line switches the display on, the Python API leaves it
off (:func:`set_progress` switches it), so a script or a test sees no output::

    with lmeval.progress("train rnn", total=epochs) as bar:
        for epoch in range(epochs):
            ...
            bar.update(advance=1, info=f"valid ppl {ppl:.2f}")
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_enabled = False


def set_progress(enabled: bool) -> None:
    """Show progress bars, or not (the CLI shows them when stderr is a terminal;
    a script that turned them on turns them off with ``lmeval.set_progress(False)``)."""
    global _enabled
    _enabled = enabled


def progress_enabled() -> bool:
    """Whether bars are shown (a model may skip computing what only a bar would show)."""
    return _enabled


class ProgressTask:
    """Handle to one bar; every method is a no-op when display is off."""

    def __init__(self, progress=None, task_id=None) -> None:
        self._progress = progress
        self._task_id = task_id

    def update(
        self,
        *,
        advance: float | None = None,
        completed: float | None = None,
        total: float | None = None,
        info: str | None = None,
    ) -> None:
        """Move the bar; ``info`` is a short free text shown beside it (losses, speed)."""
        if self._progress is None:
            return
        fields = {} if info is None else {"info": info}
        self._progress.update(
            self._task_id, advance=advance, completed=completed, total=total, **fields
        )


_live = None  # the one rich Progress on screen; nested bars join it


@contextmanager
def progress(
    description: str, total: float | None = None, unit: str = ""
) -> Iterator[ProgressTask]:
    """A progress bar for the duration of the ``with`` block (or a silent handle).

    ``unit`` names what ``total`` counts ("s", "tok"), shown after the count.

    Bars opened inside another (a model training inside ``compare``) appear as
    extra rows of the same display.
    """
    global _live
    if not _enabled:
        yield ProgressTask()
        return
    if _live is not None:
        task_id = _live.add_task(description, total=total, info="", unit=unit)
        try:
            yield ProgressTask(_live, task_id)
        finally:
            _live.remove_task(task_id)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class _CountColumn(ProgressColumn):
        """``done/total unit``, e.g. ``42/180 s``."""

        def render(self, task):
            from rich.text import Text

            total = "?" if task.total is None else f"{task.total:,.0f}"
            return Text(f"{task.completed:,.0f}/{total} {task.fields.get('unit', '')}".rstrip())

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        _CountColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        _live = bar
        try:
            yield ProgressTask(bar, bar.add_task(description, total=total, info="", unit=unit))
        finally:
            _live = None

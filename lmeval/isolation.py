"""Running one piece of work in a child process, so that its crash costs only itself.

``compare --isolate`` fits and scores each model in a fresh interpreter
(``python -m lmeval.isolation``: nothing shared, CUDA safe, and no need for
the ``if __name__ == "__main__"`` guard that ``multiprocessing`` asks of
scripts): a model that dies in native code (a segmentation fault, an abort,
the kernel's out-of-memory killer) fails its own row, and the comparison goes
on. The price is a new interpreter per model (importing numpy and torch
again: a second or two) and the corpus sent to it.

The work and its result travel as pickles through pipes between this process
and its own child, never through a file. The child runs in its own process
group, so a Ctrl-C at the terminal reaches the parent only, which passes it
on (the child's model may stop gracefully, as the RNN stops training at the
end of the batch); after a second one the child is ended.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import one_line

#: After a second interrupt, how long (seconds) the child gets to end before it is killed.
GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class ChildOutcome:
    """What came back: ``value`` when the work returned, else ``error`` (one line) and,
    when the work raised, its ``traceback``. ``interrupted``: it ended by an interrupt."""

    value: Any = None
    error: str | None = None
    traceback: str | None = None
    interrupted: bool = False
    #: An interrupt reached this process while the child ran (the caller should stop
    #: after keeping what came back: the child may have finished before it could act).
    signalled: bool = False


def run_in_child(work: Callable[..., Any], *args: Any) -> ChildOutcome:
    """``work(*args)`` in a new interpreter; ``work`` must be a module-level function
    and ``args`` picklable.

    A child that dies without answering is an error naming the signal or exit
    status. An interrupt here (Ctrl-C, or SIGTERM made one) is passed on; a
    second one ends the child and raises :class:`KeyboardInterrupt`.
    """
    read_fd, write_fd = os.pipe()
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "lmeval.isolation", str(write_fd)],
            stdin=subprocess.PIPE,
            pass_fds=(write_fd,),
            process_group=0,
            preexec_fn=_prepare_child,
        )
    finally:
        os.close(write_fd)
    answer: list[bytes] = []
    reader = threading.Thread(target=lambda: answer.append(_read_all(read_fd)), daemon=True)
    reader.start()
    interrupts = 0
    try:
        assert child.stdin is not None
        try:
            child.stdin.write(pickle.dumps((work, args), protocol=pickle.HIGHEST_PROTOCOL))
            child.stdin.close()
        except BrokenPipeError:
            pass  # the child died at once: its exit status says how
        while True:
            try:
                child.wait()
                break
            except KeyboardInterrupt:
                interrupts += 1
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)
                if interrupts >= 2:
                    try:
                        child.wait(GRACE_SECONDS)
                    except subprocess.TimeoutExpired:
                        pass
                    raise
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        reader.join()
    signalled = interrupts > 0
    data = answer[0] if answer else b""
    if not data:
        return ChildOutcome(error=_death(child.returncode), signalled=signalled)
    kind, payload = pickle.loads(data)  # from our own child, through a pipe
    if kind == "value":
        return ChildOutcome(value=payload, signalled=signalled)
    if kind == "interrupted":
        return ChildOutcome(error="interrupted", interrupted=True, signalled=signalled)
    return ChildOutcome(error=payload[0], traceback=payload[1], signalled=signalled)


def _prepare_child() -> None:
    """In the child before it starts Python: SIGINT ignored until its work begins (an
    interrupt during its imports would print a traceback; Python keeps an ignored
    SIGINT ignored at start-up), and, on Linux, death with its parent (no orphan
    running on when the parent is killed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _read_all(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as pipe:
        return pipe.read()


def _death(returncode: int | None) -> str:
    """Why a child ended without answering, for a person."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"its process was killed by {name}{hint}; the other rows are unaffected"
    return f"its process ended with status {returncode} without a result"


def _child_main(write_fd: int) -> None:
    """The child: read ``(work, args)`` from stdin, write ``(kind, payload)`` to the pipe."""
    work, args = pickle.loads(sys.stdin.buffer.read())  # from our parent, through a pipe
    # from here an interrupt the parent passes on is a KeyboardInterrupt (a model may
    # stop gracefully on it), whatever SIGINT was when the parent started
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        message: tuple[str, Any] = ("value", work(*args))
    except KeyboardInterrupt:
        message = ("interrupted", None)
    except BaseException as exc:
        message = ("error", (one_line(exc), "".join(traceback.format_exception(exc))))
    try:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # a result that cannot travel back is this row's error
        data = pickle.dumps(("error", (f"its result cannot be sent back: {one_line(exc)}", "")))
    with os.fdopen(write_fd, "wb") as pipe:
        pipe.write(data)


if __name__ == "__main__":
    _child_main(int(sys.argv[1]))

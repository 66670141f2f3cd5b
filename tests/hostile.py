"""Running ``lmeval`` as a user would, in a child process, with resource limits.

The hostile-input battery (``tests/test_hostile*.py``) runs each case through
:func:`run_lmeval`: the exit status, stderr and what is left on disk are what
a user sees, and ``memory_mb`` caps the child's address space so that a case
about bounded memory fails (instead of swapping the machine) when the bound
does not hold.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: Address space a child may use when a case caps it: importing torch maps about
#: 0.7 GB, so every legitimate case fits, and one that allocates from what a
#: hostile file claims (gigabytes) does not.
DEFAULT_CAP_MB = 2048


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """The lines of stderr that are lmeval's error lines."""
        return [line for line in self.stderr.splitlines() if line.startswith("lmeval: error:")]

    def assert_one_line_error(self, code: int, *words: str) -> str:
        """Exit ``code``, exactly one error line on stderr naming every one of ``words``
        (case-insensitive), and no traceback; returns that line."""
        assert self.code == code, f"exit {self.code}, expected {code}; stderr:\n{self.stderr}"
        assert "Traceback" not in self.stderr, self.stderr
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        errors = self.error_lines
        assert len(errors) == 1, f"expected one error line, got:\n{self.stderr}"
        # progress bars are off when stderr is not a terminal: nothing else is printed
        # but warnings and the "wrote FILE" notes
        stray = [
            line for line in lines if not line.startswith(("lmeval: error:", "lmeval: warning:"))
        ]
        assert not stray, f"unexpected stderr lines: {stray}"
        for word in words:
            assert word.lower() in errors[0].lower(), f"{word!r} not in {errors[0]!r}"
        return errors[0]


def run_lmeval(
    *args: str | os.PathLike[str],
    cwd: str | os.PathLike[str] | None = None,
    memory_mb: int | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> Run:
    """``python -m lmeval ARGS`` in a child process; ``memory_mb`` caps its address space."""
    full_env = {k: v for k, v in os.environ.items() if k != "LMEVAL_PLUGINS"}
    full_env.update(PYTHONWARNINGS="ignore", **(env or {}))

    def limit() -> None:
        if memory_mb is not None:
            cap = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    proc = subprocess.run(
        [sys.executable, "-m", "lmeval", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
        input=input,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def leftovers(folder: str | os.PathLike[str]) -> list[str]:
    """Temporary files an atomic write left in ``folder`` (there should be none)."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp"))

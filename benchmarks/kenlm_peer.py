"""KenLM and lmeval side by side as whole processes: wall time, peak memory, perplexity.

Shared by ``ngram_vs_peers.py`` and ``ngram_scaling.py``. Both sides get the
same training and test lines; every process is timed from start to exit and its
peak resident memory read from the OS (``wait4``'s ``ru_maxrss``, through a small
launcher so that this process's own size does not count), so neither side is
measured by a yardstick the other escapes. Perplexities are the live
ones each side prints (KenLM's ``query`` summary, lmeval's JSON), including
out-of-vocabulary tokens.

KenLM reads words separated by whitespace and gives ``<s>``, ``</s>`` and
``<unk>`` meanings of their own, so its input spells every token so that no two
tokens meet (:func:`kenlm_word`): at character level each character is one
word, at word level the words of ``line.split()``, one space apart.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import lmeval

#: Seconds one process may take before the benchmark gives up on it.
TIMEOUT = 3600


@dataclass
class Measured:
    """One process: wall seconds, peak resident bytes, what it printed."""

    seconds: float
    peak_bytes: int
    stdout: str


#: Runs a command as its grandchild and writes its wall seconds and peak RSS. Linux
#: folds the memory of the process that calls exec into the new program's peak, so a
#: command started straight from this (large) benchmark process would report this
#: process's size; started from a fresh small interpreter, it reports its own.
_LAUNCHER = """
import json, os, sys, time
out, command = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(command[0], command)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
code = os.waitstatus_to_exitcode(status)
with open(out, "w") as handle:
    json.dump({"seconds": seconds, "peak": peak, "code": code}, handle)
sys.exit(0 if code == 0 else 1)
"""


def run(command: list[str], stdin: Path | None = None, stdout: Path | None = None) -> Measured:
    """Run ``command`` to its end; its wall time and peak RSS (see ``_LAUNCHER``). A
    failure raises with the end of its stderr; past ``TIMEOUT`` it is killed."""
    with (
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryFile() as out,
        tempfile.NamedTemporaryFile(suffix=".json") as report,
    ):
        source = open(stdin, "rb") if stdin else subprocess.DEVNULL
        sink = open(stdout, "wb") if stdout else out
        launcher = [sys.executable, "-c", _LAUNCHER, report.name, *map(str, command)]
        try:
            child = subprocess.Popen(
                launcher, stdin=source, stdout=sink, stderr=err, start_new_session=True
            )
            try:
                child.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                raise SystemExit(f"{command[0]} ran past {TIMEOUT} s: killed") from None
        finally:
            if stdin:
                source.close()
            if stdout:
                sink.close()
        if child.returncode != 0:
            err.seek(0)
            tail = err.read().decode("utf-8", "replace")[-3000:]
            raise SystemExit(f"{' '.join(map(str, command))} failed:\n{tail}")
        measured = json.loads(Path(report.name).read_text())
        out.seek(0)
        return Measured(
            measured["seconds"], measured["peak"], out.read().decode("utf-8", "replace")
        )


_ESCAPED = re.compile(r"[\s\x00<\u2581]")


def kenlm_word(token: str) -> str:
    """A KenLM word for ``token``, one to one: a token holding whitespace, NUL,
    ``<`` or ``▁`` has each of those written ``<U+XXXX>``. Since ``<`` is escaped
    too, no token's spelling can be another's (or ``<s>``, ``</s>``, ``<unk>``);
    spelling only the space, as the ARPA files of the references do, would make a
    literal ``▁`` in the text the same word as the space (Python's own sources hold
    some), and KenLM another model."""
    if not _ESCAPED.search(token):
        return token
    return _ESCAPED.sub(lambda m: f"<U+{ord(m.group()):04X}>", token)


def kenlm_text(lines: list[str], level: str) -> str:
    """The lines as KenLM reads them: tokens spelled by :func:`kenlm_word`, one space apart."""
    if level == "char":
        return "".join(" ".join(kenlm_word(c) for c in line) + "\n" for line in lines)
    return "".join(" ".join(kenlm_word(w) for w in line.split()) + "\n" for line in lines)


def plain_text(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def lmeval_lines(path: Path) -> list[str]:
    """The lines of a file as lmeval reads them (``lmeval.read_text``: a ``\\r\\n``
    becomes ``\\n``, a lone ``\\r`` stays a character; only ``\\n`` ends a line)."""
    text = lmeval.read_text(path, max_bytes=2**40)
    return text[:-1].split("\n") if text.endswith("\n") else text.split("\n")


_PPL = re.compile(r"Perplexity including OOVs:\s*(\S+)")


def kenlm(bin_dir: Path, order: int, train: Path, test: Path, folder: Path) -> dict:
    """``lmplz -o ORDER -S 1G --discount_fallback``, ``build_binary``, ``query``:
    seconds and peak memory of each, and the test perplexity including OOVs.
    ``train``/``test`` are KenLM's spelling of the texts (:func:`kenlm_text`)."""
    arpa, binary = folder / "kenlm.arpa", folder / "kenlm.bin"
    lmplz = run(
        [str(bin_dir / "lmplz"), "-o", str(order), "-S", "1G", "--discount_fallback"],
        stdin=train,
        stdout=arpa,
    )
    build = run([str(bin_dir / "build_binary"), str(arpa), str(binary)])
    query = run([str(bin_dir / "query"), "-v", "summary", str(binary)], stdin=test)
    found = _PPL.search(query.stdout)
    if found is None:
        raise SystemExit(f"no perplexity in KenLM query's output:\n{query.stdout[-2000:]}")
    arpa.unlink()
    binary.unlink()
    return {
        "lmplz_s": lmplz.seconds,
        "build_s": build.seconds,
        "query_s": query.seconds,
        "wall_s": lmplz.seconds + build.seconds + query.seconds,
        "peak_bytes": max(lmplz.peak_bytes, build.peak_bytes, query.peak_bytes),
        "lmplz_peak_bytes": lmplz.peak_bytes,
        "ppl": float(found.group(1)),
    }


def lmeval_compare(
    order: int, train: Path, test: Path, level: str, folder: Path, extra: str = ""
) -> dict:
    """``lmeval compare -m ngram:order=ORDER`` on the plain files as a whole process
    (no bootstrap; the row verified as always): wall seconds, peak memory, fit and
    score seconds, the time outside both, and the perplexity."""
    out = folder / "lmeval.json"
    spec = f"ngram:order={order}" + (f",{extra}" if extra else "")
    measured = run(
        [sys.executable, "-m", "lmeval", "compare", "-m", spec, "--train", str(train),
         "--test", str(test), "--tokenizer", level, "--format", "json", "--bootstrap", "0",
         "--max-bytes", "64G", "-q", "-o", str(out)],
    )  # fmt: skip
    [row] = json.loads(out.read_text())["results"]
    out.unlink()
    if row.get("error"):
        raise SystemExit(f"lmeval failed: {row['error']}")
    inside = row["fit_seconds"] + row["score_seconds"]
    counting = (row.get("details") or {}).get("counting") or {}
    return {
        "runs_written": counting.get("runs_written", 0),
        "wall_s": measured.seconds,
        "fit_s": row["fit_seconds"],
        "score_s": row["score_seconds"],
        "outside_s": measured.seconds - inside,
        "peak_bytes": measured.peak_bytes,
        "ppl": row["perplexity"],
    }

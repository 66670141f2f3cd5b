"""Run a benchmark suite: every (data set, model, seed) once, recorded as it finishes.

:func:`run_suite` expands a :class:`~lmeval.suite.Suite` into runs, skips the
runs its results file already holds, and runs the rest, one
:func:`lmeval.compare` of one model each, with the model cache on so that a
model fitted before (by any suite or ``compare --cache``) is loaded, not
trained. Each run's record is appended to the results file (JSON Lines) as
soon as it finishes, flushed and fsynced, by this process only: a killed
benchmark loses only the runs in progress, and running the suite again
finishes them.

Where runs go (``executor``): ``"sequential"`` here, one after another;
``"processes"`` in ``jobs`` local worker processes, each with a share of the
CPU cores for torch; ``"ray"`` as Ray tasks on a cluster (``address``) or a
local Ray instance. The records are the same whichever runs them (see
:func:`stable`), except for an RNN, whose float sums can differ in their
last digits with the number of torch threads.

A record is the row ``lmeval compare`` gives plus the keys of
:data:`BENCH_KEYS`; ``FORMAT`` names the layout.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .benchtables import latest, read_records
from .cache import (
    ModelCache,
    as_cache,
    cache_key,
    file_digests,
    key_material,
    model_identity,
    uncacheable_reason,
)
from .corpus import Corpus, load_corpus
from .distributed import world_size
from .errors import LmevalError, UsageError, one_line
from .evaluate import _setup, compare, prepare_models
from .host import load_host
from .models import ModelSpec, resolve_params
from .plugins import PluginHost
from .progressbars import progress
from .resources import peak_memory, reset_peak_memory, usable_cores
from .suite import DataConfig, Run, Suite, build_suite, load_suite, with_parts
from .version import __version__

FORMAT = "lmeval-bench/1"
EXECUTORS = ("sequential", "processes", "ray")

#: The keys a bench record adds to compare's row, in order (see the README's schema).
BENCH_KEYS = (
    "format",
    "run_id",
    "suite",
    "dataset",
    "data",
    "seed",
    "resolved",
    "checksums",
    "versions",
    "device",
    "host",
    "started",
    "seconds",
    "peak_memory_bytes",
    "peak_memory_method",
    "from_cache",
    "cache_key",
    "verify_seed",
    "executor",
)
#: Keys that differ between two runs of the same thing (times, places, the cache).
VOLATILE_KEYS = frozenset(
    {
        "host",
        "started",
        "seconds",
        "fit_seconds",
        "score_seconds",
        "peak_memory_bytes",
        "peak_memory_method",
        "from_cache",
        "cache_key",
        "executor",
    }
)


def stable(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` without what differs between two runs of the same thing: the
    :data:`VOLATILE_KEYS`, and anywhere in ``details`` the cache's word, times
    (keys ending in ``seconds`` or ``sec``), speeds (``_per_s``) and thread counts."""
    out = {k: v for k, v in record.items() if k not in VOLATILE_KEYS}
    if "details" in out:
        out["details"] = _without_timing(out["details"])
    return out


def _volatile_detail(key: str) -> bool:
    return key in ("cache", "threads", "isolated") or key.endswith(("seconds", "sec", "_per_s"))


def _without_timing(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if not _volatile_detail(k)}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


@dataclass(frozen=True)
class Task:
    """One run as a worker gets it (all picklable; the corpus travels beside it)."""

    run_id: str
    suite: str
    dataset: DataConfig
    spec: ModelSpec
    seed: int
    verify: int
    verify_seed: int
    bootstrap: int
    confidence: float
    top1: bool
    cache_root: str | None
    plugins: tuple[str, ...]
    executor: str
    threads: int | None
    #: the models this one is made from (a mixture's rows), fitted in its run too
    parts: tuple[ModelSpec, ...] = ()

    @property
    def label(self) -> str:
        return self.spec.label


class BenchInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a suite: ``records`` holds every record so far
    (those recorded before and those this call finished), already in the file."""

    def __init__(self, records: list[dict[str, Any]], not_run: int) -> None:
        super().__init__(f"interrupted: {not_run} run(s) not finished")
        self.records = records
        self.not_run = not_run


def run_id(run: Run, corpus: Corpus, suite: Suite, host: PluginHost) -> str:
    """See :func:`_run_id`; a model made from others (a mixture) includes theirs."""
    own = _run_id(run, corpus, suite, host)
    parts = suite.parts.get(run.spec.label, [])
    if not parts:
        return own
    ids = [own, *(_run_id(Run(run.dataset, part, run.seed), corpus, suite, host) for part in parts)]
    return hashlib.sha256(" ".join(ids).encode()).hexdigest()[:16]


def _run_id(run: Run, corpus: Corpus, suite: Suite, host: PluginHost) -> str:
    """16 hex digits naming a run by what decides its record: the data set (its
    label, text checksums and tokenization), the model spec and label, where the
    model's code comes from (class, distribution, version, a digest of its source)
    and the content of any file it reads, lmeval's version, the seed, and the
    verification and bootstrap settings. A changed data file, model file or
    plugin makes a new run, so nothing recorded before is taken for it."""
    cls = host.models.get(run.spec.name)
    material = {
        "model": model_identity(cls),
        "files": file_digests(cls, run.spec.params),
        "lmeval": __version__,
        "dataset": run.dataset.label,
        "checksums": corpus.checksums(),
        "tokenizer": run.dataset.tokenizer,
        "lines": run.dataset.lines,
        "min_freq": run.dataset.min_freq,
        "label": run.spec.label,
        "spec": run.spec.text,
        "seed": run.seed,
        "verify": suite.verify,
        "bootstrap": suite.bootstrap,
        "confidence": suite.confidence,
        "top1": "accuracy" in suite.metrics,
    }
    text = json.dumps(material, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- the results file ---------------------------------------------------------------


class ResultsFile:
    """A JSON Lines file that records are appended to, one fsynced line each."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> list[dict[str, Any]]:
        """The records in the file ([] when it does not exist yet)."""
        if not self.path.exists():
            return []
        return read_records(self.path)

    def check(self) -> None:
        """Refuse, before anything runs, a file that could not be appended to: a
        folder, a compressed file, a pipe or device, a read-only file, a missing or
        read-only folder (a symbolic link is followed to its target)."""
        where = f"-o {self.path}"
        if self.path.suffix.lower() in (".gz", ".bz2", ".xz", ".zst", ".zip"):
            raise UsageError(f"{where}: bench appends plain text: give a .jsonl file")
        target = self.path.resolve()
        if target.is_dir():
            raise UsageError(f"{where} is a folder: give a results file (.jsonl)")
        if target.exists() and not target.is_file():
            raise UsageError(f"{where} is not a regular file (a pipe or device?): give a file")
        if target.exists() and not os.access(target, os.W_OK):
            raise UsageError(f"{where} is not writable: give another results file")
        folder = target.parent
        if not folder.is_dir():
            raise UsageError(f"{where}: the folder {folder} does not exist")
        if not target.exists() and not os.access(folder, os.W_OK):
            raise UsageError(f"{where}: cannot create files in {folder}")

    def append(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line, flushed and fsynced before returning.

        A last line cut short (a writer killed mid-line: no newline, and it does
        not parse) is cut off first; a whole last record that only lacks its
        newline gets one. Appends are locked (``flock``) where the system has it,
        so two processes never interleave.
        """
        line = json.dumps(record, ensure_ascii=False, allow_nan=False, default=_jsonable) + "\n"
        with open(self.path, "a+b") as handle, _locked(handle):
            _mend_tail(handle)
            handle.write(line.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


@contextlib.contextmanager
def _locked(handle) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: one writer at a time is the user's affair
        yield
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _mend_tail(handle) -> None:
    """Make the file end at a line end: a last line without its newline is cut off
    when it is half a record, ended when it is a whole one."""
    size = handle.seek(0, os.SEEK_END)
    if size == 0:
        return
    handle.seek(size - 1)
    if handle.read(1) == b"\n":
        return
    start = max(0, size - 2**20)
    while True:  # find the last newline, reading back a MiB at a time
        handle.seek(start)
        chunk = handle.read(size - start)
        cut = chunk.rfind(b"\n")
        if cut >= 0 or start == 0:
            break
        start = max(0, start - 2**20)
    begin = start + cut + 1 if cut >= 0 else 0
    handle.seek(begin)
    try:
        whole = isinstance(json.loads(handle.read(size - begin)), dict)
    except ValueError:
        whole = False
    if whole:
        handle.seek(0, os.SEEK_END)
        handle.write(b"\n")
    else:
        handle.truncate(begin)
    handle.seek(0, os.SEEK_END)


def default_output(suite: Suite) -> Path | None:
    """``SUITE.results.jsonl`` beside the suite file (``None`` for a suite built in Python)."""
    if suite.path is None:
        return None
    return suite.path.with_name(suite.path.stem + ".results.jsonl")


# -- one run -------------------------------------------------------------------------

_HOSTS: dict[tuple[str, ...], PluginHost] = {}


def _host_for(plugins: tuple[str, ...]) -> PluginHost:
    """One plugin host per worker process and plugin list (loading plugins costs)."""
    host = _HOSTS.get(plugins)
    if host is None:
        host = _HOSTS[plugins] = load_host(plugins)
    return host


def _versions(host: PluginHost, model: str) -> dict[str, Any]:
    try:
        torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch = None
    plugin: dict[str, Any] = {}
    if model in host.models:
        identity = model_identity(host.models.get(model))
        plugin = {model: {"distribution": identity["distribution"], "version": identity["version"]}}
    return {
        "lmeval": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch,
        "plugins": plugin,
    }


def execute(task: Task, corpus: Corpus, host: PluginHost | None = None) -> dict[str, Any]:
    """Run one task (any process): its bench record. A failure is the record's ``error``."""
    if task.threads is not None:
        _set_threads(task.threads)
    host = host or _host_for(task.plugins)
    reset_peak_memory()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    start = time.perf_counter()
    resolved = None
    try:
        resolved = _resolved(task, host)
        comparison = compare(
            [*task.parts, task.spec],
            corpus=corpus,
            tokenizer=task.dataset.tokenizer,
            lines=task.dataset.lines,
            min_freq=task.dataset.min_freq,
            seed=task.seed,
            verify=task.verify,
            verify_seed=task.verify_seed,
            host=host,
            top1=task.top1,
            bootstrap=task.bootstrap,
            confidence=task.confidence,
            cache=task.cache_root if task.cache_root is not None else False,
        )
        [row] = [r for r in comparison.results if r["label"] == task.label]
        if task.parts:  # compared with its own parts, fitted only to make it: no ranking
            row = {**row, "vs_best": None}
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a run that cannot even start: its record says why
        row = {"label": task.label, "spec": task.spec.text, "error": one_line(exc)}
    seconds = time.perf_counter() - start
    peak, method = peak_memory()
    details = row.get("details") or {}
    cache = details.get("cache") or {}
    record = {
        "format": FORMAT,
        "run_id": task.run_id,
        "suite": task.suite,
        "dataset": task.dataset.label,
        "data": task.dataset.to_dict(),
        "seed": task.seed,
        **row,
        "resolved": resolved,
        "checksums": corpus.checksums(),
        "versions": _versions(host, task.spec.name),
        "device": str(details.get("device", "cpu")),
        "host": socket.gethostname(),
        "started": started,
        "seconds": round(seconds, 4),
        "peak_memory_bytes": peak,
        "peak_memory_method": method,
        "from_cache": bool(cache.get("hit", False)),
        "cache_key": cache.get("key"),
        "verify_seed": task.verify_seed,
        "executor": task.executor,
    }
    return _finite_json(json.loads(json.dumps(record, allow_nan=True, default=_jsonable)))


def _finite_json(value: Any) -> Any:
    """``value`` with every infinite or NaN number made ``None``: JSON has none
    (an MLE row's perplexity is infinite; in JSON it is null, as compare writes it)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_json(v) for v in value]
    return value


def _resolved(task: Task, host: PluginHost) -> dict[str, Any] | None:
    """The model's fully resolved parameters (the seed as the run gives it)."""
    if task.spec.name not in host.models:
        return None
    cls = host.models.get(task.spec.name)
    params = dict(task.spec.params)
    if "seed" not in params and any(p.name == "seed" for p in cls.params):
        params["seed"] = str(task.seed)
    return resolve_params(cls, params)


def _set_threads(threads: int) -> None:
    """Cap torch's threads in this worker (the env for a torch not imported yet)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


# -- the suite ------------------------------------------------------------------------


@dataclass
class Planned:
    """A run of the suite and what running it would do."""

    task: Task
    #: "recorded" (in the results file), "cached" (its fitted model is), "to run"
    status: str


def _as_suite(suite: Suite | str | Path | dict[str, Any], host: PluginHost) -> Suite:
    if isinstance(suite, Suite):
        for item in suite.plugins:
            host.load_path_or_module(item, "suite plugins")
        return with_parts(suite, host)
    if isinstance(suite, dict):
        return build_suite(suite, host, source="suite")
    return load_suite(suite, host)


def _load_corpora(suite: Suite, host: PluginHost) -> dict[str, Corpus]:
    """Every data set read (and checked) before any run starts."""
    corpora = {}
    for data in suite.datasets:
        try:
            corpora[data.label] = load_corpus(**data.load_options(), datasets=host.datasets)
        except LmevalError as exc:
            where = suite.path or "suite"
            raise type(exc)(f"{where}: datasets.{data.label}: {exc}") from None
    return corpora


def plan(
    suite: Suite | str | Path | dict[str, Any],
    *,
    output: str | Path | None = None,
    rerun: bool = False,
    cache: bool | str | Path | ModelCache | None = True,
    host: PluginHost | None = None,
    executor: str = "sequential",
    jobs: int = 1,
) -> tuple[Suite, list[Planned], dict[str, Corpus], list[dict[str, Any]]]:
    """The suite, each of its runs with its status, the corpora, the records so far."""
    host = host or load_host()
    suite = _as_suite(suite, host)
    model_cache = as_cache(cache)
    results = ResultsFile(output) if output is not None else None
    previous = results.read() if results is not None else []
    done = {r["run_id"] for r in latest(previous) if not r.get("error")}
    corpora = _load_corpora(suite, host)
    threads = _threads_per_job(executor, jobs)
    planned = []
    tokenizers: dict[str, Any] = {}
    for run in suite.runs():
        corpus = corpora[run.dataset.label]
        rid = run_id(run, corpus, suite, host)
        task = Task(
            run_id=rid,
            suite=suite.name,
            dataset=run.dataset,
            spec=run.spec,
            seed=run.seed,
            verify=suite.verify,
            verify_seed=int(rid[:8], 16),
            bootstrap=suite.bootstrap,
            confidence=suite.confidence,
            top1="accuracy" in suite.metrics,
            cache_root=None if model_cache is None else str(model_cache.root),
            plugins=tuple(host.extra_sources),
            executor=executor,
            threads=threads,
            parts=tuple(suite.parts.get(run.spec.label, ())),
        )
        if rid in done and not rerun:
            status = "recorded"
        elif model_cache is not None and _is_cached(run, corpus, model_cache, host, tokenizers):
            status = "cached"
        else:
            status = "to run"
        planned.append(Planned(task, status))
    return suite, planned, corpora, previous


def _is_cached(run: Run, corpus: Corpus, cache: ModelCache, host: PluginHost, toks) -> bool:
    data = run.dataset
    key = (data.label, data.tokenizer, data.lines, data.min_freq)
    if key not in toks:
        toks[key] = _setup(host, corpus, data.tokenizer, data.lines, data.min_freq)[1]
    try:
        [(_, model, model_tok)] = prepare_models([run.spec], toks[key], seed=run.seed, host=host)
    except Exception:  # it will fail as a run, with its reason
        return False
    if uncacheable_reason(model) is not None:
        return False
    return cache.has(cache_key(key_material(model, model_tok, corpus, run.seed)))


def _threads_per_job(executor: str, jobs: int) -> int | None:
    """torch threads per worker so that the workers do not oversubscribe the cores."""
    if executor == "processes":
        return max(1, usable_cores() // jobs)
    if executor == "ray":
        return 1  # each task asks Ray for one CPU
    return None


def run_suite(
    suite: Suite | str | Path | dict[str, Any],
    *,
    output: str | Path | None = None,
    rerun: bool = False,
    cache: bool | str | Path | ModelCache | None = True,
    jobs: int = 1,
    executor: str | None = None,
    address: str | None = None,
    host: PluginHost | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every run of ``suite`` not yet in ``output``; every run's record, in the
    suite's order (those recorded before included).

    ``suite`` is a :class:`~lmeval.suite.Suite`, a suite file, or a dict shaped like
    one (see :mod:`lmeval.suite`). ``output`` is the results file (JSON Lines,
    appended to; default: ``SUITE.results.jsonl`` beside a suite file, none for a
    dict). ``rerun`` runs recorded runs again (their new records count).
    ``cache`` as in :func:`lmeval.compare` (default on). ``executor``:
    ``"sequential"`` (default with ``jobs=1``), ``"processes"`` (default with
    ``jobs > 1``) or ``"ray"`` (``address`` of the cluster; default: a running
    one or a new local instance). ``on_record(record)`` hears each new record.

    Ctrl-C raises :class:`BenchInterrupted` with the records so far.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"jobs={jobs!r}: give the number of worker processes (1 or more)")
    executor = executor or ("processes" if jobs > 1 else "sequential")
    if executor not in EXECUTORS:
        raise UsageError(f"executor={executor!r}: choose one of {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise UsageError("an address is for the ray executor: add --executor ray")
    if world_size() > 1:
        raise UsageError(
            "lmeval bench runs in one process, not under torchrun: spread a suite with "
            "--jobs N or --executor ray, and train one network on several with "
            "torchrun ... -m lmeval compare"
        )
    host = host or load_host()
    if output is None and isinstance(suite, Suite):
        output = default_output(suite)
    elif output is None and not isinstance(suite, dict):
        output = Path(str(suite)).with_name(Path(str(suite)).stem + ".results.jsonl")
    if output is not None:
        ResultsFile(output).check()
    suite, planned, corpora, previous = plan(
        suite, output=output, rerun=rerun, cache=cache, host=host, executor=executor, jobs=jobs
    )
    results = ResultsFile(output) if output is not None else None
    todo = [p.task for p in planned if p.status != "recorded"]
    new: dict[str, dict[str, Any]] = {}

    def record(rec: dict[str, Any]) -> None:
        if (rec.get("details") or {}).get("interrupted"):
            # Ctrl-C reached the run's model, which stopped its fit early: that is
            # the suite being interrupted, and the half-trained run is not recorded
            raise KeyboardInterrupt
        if results is not None:
            results.append(rec)
        new[rec["run_id"]] = rec
        if on_record is not None:
            on_record(rec)

    run_ids = [p.task.run_id for p in planned]
    try:
        pool = WorkerPool(jobs) if executor == "processes" and todo else contextlib.nullcontext()
        with pool as workers, progress("bench", total=len(todo)) as bar:

            def finished(rec: dict[str, Any]) -> None:
                record(rec)
                bar.update(advance=1, info=f"done: {rec['dataset']} {rec['label']} {rec['seed']}")

            if executor == "sequential":
                for task in todo:
                    bar.update(info=f"{task.dataset.label} {task.label} seed {task.seed}")
                    finished(execute(task, corpora[task.dataset.label], host))
            elif executor == "processes":
                workers.run(todo, corpora, finished)
            else:
                _run_on_ray(todo, corpora, address, finished)
    except KeyboardInterrupt:
        records = _in_order(run_ids, previous, new)
        raise BenchInterrupted(records, len(todo) - len(new)) from None
    return _in_order(run_ids, previous, new)


def _in_order(
    run_ids: list[str], previous: list[dict[str, Any]], new: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    known = {r["run_id"]: r for r in latest(previous)}
    known.update(new)
    return [known[rid] for rid in run_ids if rid in known]


def _init_worker(threads: int | None) -> None:
    """A worker ignores Ctrl-C and SIGTERM: the parent decides, and ends it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if threads is not None:
        _set_threads(threads)


def _pool_context():
    """How worker processes start: forked where that is safe (Linux, no torch
    imported, no other thread running, such as a progress bar's), which costs
    milliseconds and shares the loaded corpora; else spawned, a fresh
    interpreter each (a forked torch can hang in its thread pools)."""
    import multiprocessing
    import threading

    safe = sys.platform == "linux" and "torch" not in sys.modules
    if safe and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


class WorkerPool:
    """``jobs`` local worker processes that run tasks, at most one each at a time.

    Started on entry, before any progress bar, so that it can be forked; on
    Ctrl-C (or any error) the workers are killed at once rather than left to
    finish what they hold. A worker that dies (killed, out of memory) fails no
    other run: the runs it may have held are tried again one at a time in a
    fresh pool, and one whose worker dies again is recorded as failed, saying so.
    """

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.threads = _threads_per_job("processes", jobs)
        self.pool = self._start(jobs)

    def _start(self, workers: int):
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=_pool_context(),
            initializer=_init_worker,
            initargs=(self.threads,),
        )
        pool.submit(int).result()  # the first submit starts the workers (forked: all)
        return pool

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.pool.shutdown()
        else:
            self._kill()

    def _kill(self) -> None:
        processes = list((getattr(self.pool, "_processes", None) or {}).values())
        for process in processes:
            process.kill()  # they ignore SIGTERM, and what they hold is given up
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(timeout=5)

    def run(
        self,
        tasks: list[Task],
        corpora: dict[str, Corpus],
        finished: Callable[[dict[str, Any]], None],
    ) -> None:
        """Each task on a worker, at most ``jobs`` at once; records to ``finished``."""
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        queue = list(reversed(tasks))
        suspects: list[Task] = []
        running: dict[Any, Task] = {}
        while queue or running:
            while queue and len(running) < self.jobs:
                task = queue.pop()
                running[self.pool.submit(execute, task, corpora[task.dataset.label])] = task
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                task = running.pop(future)
                try:
                    finished(future.result())
                except BrokenProcessPool:
                    suspects.append(task)
            if suspects:  # a worker died: every run in flight may have been its
                suspects += running.values()
                running.clear()
                self._kill()
                self._retry_alone(suspects, corpora, finished)
                suspects = []
                self.pool = self._start(self.jobs)

    def _retry_alone(
        self,
        tasks: list[Task],
        corpora: dict[str, Corpus],
        finished: Callable[[dict[str, Any]], None],
    ) -> None:
        from concurrent.futures.process import BrokenProcessPool

        for task in tasks:
            self.pool = self._start(1)
            try:
                record = self.pool.submit(execute, task, corpora[task.dataset.label]).result()
            except BrokenProcessPool:
                self._kill()
                record = _failed_record(
                    task,
                    corpora[task.dataset.label],
                    "its worker process died (killed, or out of memory?) twice: "
                    "try this run alone (bench --jobs 1) to see why",
                )
            else:
                self.pool.shutdown()
            finished(record)


def _failed_record(task: Task, corpus: Corpus, error: str) -> dict[str, Any]:
    """The record of a run that produced none of its own."""
    return {
        "format": FORMAT,
        "run_id": task.run_id,
        "suite": task.suite,
        "dataset": task.dataset.label,
        "data": task.dataset.to_dict(),
        "seed": task.seed,
        "label": task.label,
        "spec": task.spec.text,
        "error": error,
        "checksums": corpus.checksums(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "from_cache": False,
        "verify_seed": task.verify_seed,
        "executor": task.executor,
    }


#: Seconds to wait for a Ray cluster's port to answer (Ray itself would retry for minutes).
RAY_CONNECT_SECONDS = 10.0


def _probe(address: str | None) -> None:
    """Refuse at once a ``host:port`` (or ``ray://host:port``) where nothing listens."""
    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit() or not host:
        raise UsageError(f"--address {address}: give HOST:PORT of the Ray cluster's head, or auto")
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_SECONDS).close()
    except OSError as exc:
        raise LmevalError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or one_line(exc)}; "
            "start one (ray start --head) or check --address"
        ) from None


def _run_on_ray(
    tasks: list[Task],
    corpora: dict[str, Corpus],
    address: str | None,
    finished: Callable[[dict[str, Any]], None],
) -> None:
    """Each task as a Ray task of one CPU; the corpora go to the object store once."""
    try:
        import ray
    except ImportError:
        raise UsageError(
            "the ray executor needs Ray: pip install 'lmeval[ray]' (or use --jobs N)"
        ) from None
    started_here = False
    if not ray.is_initialized():
        _probe(address or os.environ.get("RAY_ADDRESS"))
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except Exception as exc:
            where = address or "(local)"
            raise LmevalError(f"cannot reach the Ray cluster {where}: {one_line(exc)}") from None
        started_here = True
    try:
        if not tasks:
            return
        remote = ray.remote(num_cpus=1, max_retries=0)(execute)
        refs = {label: ray.put(corpus) for label, corpus in corpora.items()}
        pending = [remote.remote(t, refs[t.dataset.label]) for t in tasks]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                finished(ray.get(done[0]))
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()

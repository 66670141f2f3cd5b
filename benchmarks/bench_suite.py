"""What ``lmeval bench`` saves and costs, against the script it replaces.

Before ``bench``, the way to script lmeval was a Python loop around
``lmeval.compare()``: every run retrained everything. Three measurements,
each side by side in one run, in alternating blocks, medians reported:

* ``again``: the example suite (``examples/bench/suite.toml``: two data sets,
  uniform, four n-gram orders and an LSTM on a token budget, two seeds)
  run by ``lmeval bench`` as a whole process from nothing (an empty model
  cache and results file), then the same command again (everything recorded),
  then ``--rerun`` into a new results file (every fitted model from the cache).
  Target: the second invocation under a tenth of the first.
* ``jobs``: a suite of n-gram runs (``--no-cache``) with ``--jobs 2`` against
  the sequential run, whole processes. Target on two cores: at most 0.6 of
  the sequential time. The text is Tiny Shakespeare when a ``shared/corpora``
  folder is beside the clone (``--corpora``), else the built-in pydoc-topics.
* ``overhead``: the cost bench adds to each run (the run id, the results file
  appended and fsynced, the cache looked up and filled, the record built),
  measured in-process as ``run_suite`` of cheap runs (uniform on a small text)
  against the same ``lmeval.compare`` calls in a loop. Target: under 50 ms a run.

    python benchmarks/bench_suite.py [--repeats 3] [--only again|jobs|overhead]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lmeval

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "bench" / "suite.toml"
LMEVAL = [sys.executable, "-m", "lmeval"]


def timed(command: list[str], env: dict[str, str]) -> float:
    """Wall seconds of a whole process; a failure stops the benchmark with its stderr."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds


def again(repeats: int) -> None:
    first, second, cached = [], [], []
    for block in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "LMEVAL_CACHE_DIR": str(Path(tmp) / "cache")}
            out = str(Path(tmp) / "r.jsonl")
            run = [*LMEVAL, "bench", str(EXAMPLE), "-q", "-o", out]
            first.append(timed(run, env))
            second.append(timed(run, env))
            rerun = [*LMEVAL, "bench", str(EXAMPLE), "-q", "-o", str(Path(tmp) / "r2.jsonl")]
            cached.append(timed(rerun, env))
            records = lmeval.read_records(Path(out))
        print(f"  block {block + 1}: {first[-1]:.2f} s, {second[-1]:.2f} s, {cached[-1]:.2f} s")
    f, s, c = (statistics.median(x) for x in (first, second, cached))
    [lstm] = [
        r for r in records if r["label"] == "lstm" and r["dataset"] == "pydoc" and r["seed"] == 0
    ]
    print(f"example suite, {len(records)} runs (medians of {repeats}, whole processes):")
    print(f"  first invocation (nothing cached)      {f:8.2f} s")
    print(f"  second invocation (all recorded)       {s:8.2f} s   {s / f:.3f}x the first")
    print(f"  new results file (all models cached)   {c:8.2f} s   {c / f:.3f}x the first")
    budget = lstm["resolved"]["budget"]
    print(
        f"  token budget: the LSTM's {budget} give {lstm['bits_per_char']:.4f} bits/char (seed 0)"
    )


def ngram_suite(folder: Path, corpora: Path | None) -> Path:
    text = corpora / "tinyshakespeare.txt" if corpora else None
    source = f'text = "{text}"' if text and text.exists() else 'dataset = "pydoc-topics"'
    path = folder / "ngrams.toml"
    path.write_text(
        f'name = "ngrams"\nbootstrap = 1000\n[datasets.text]\n{source}\n'
        '[models.kn]\nmodel = "ngram"\norder = [3, 4, 5, 6, 7]\n'
        'smoothing = ["mkn", "kn", "witten-bell", "absolute"]\n'
    )
    return path


def jobs(repeats: int, corpora: Path | None) -> None:
    one, two = [], []
    with tempfile.TemporaryDirectory() as tmp:
        suite = ngram_suite(Path(tmp), corpora)
        env = dict(os.environ)
        for block in range(repeats):
            order = (1, 2) if block % 2 == 0 else (2, 1)
            for n in order:
                out = Path(tmp) / f"r{block}-{n}.jsonl"
                command = [*LMEVAL, "bench", str(suite), "-q", "--no-cache", "-o", str(out)]
                seconds = timed([*command, "--jobs", str(n)], env)
                (one if n == 1 else two).append(seconds)
            print(f"  block {block + 1}: sequential {one[-1]:.2f} s, --jobs 2 {two[-1]:.2f} s")
        records = lmeval.read_records(out)
    a, b = statistics.median(one), statistics.median(two)
    data = records[0]["data"]
    where = Path(data["text"]).name if "text" in data else data["dataset"]
    print(f"n-gram suite, {len(records)} runs on {where} (medians of {repeats}):")
    print(f"  sequential   {a:8.2f} s")
    print(f"  --jobs 2     {b:8.2f} s   {b / a:.3f}x the sequential time")


def overhead(repeats: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "small.txt"
        text.write_text("".join(f"line {i} of a small text.\n" for i in range(300)))
        specs = [f"u{i}=uniform" for i in range(runs)]
        suite = {
            "name": "overhead",
            "bootstrap": 0,
            "verify": 0,
            "datasets": {"small": {"text": str(text)}},
            "models": {f"u{i}": {"model": "uniform"} for i in range(runs)},
        }
        host = lmeval.load_host()
        corpus = lmeval.load_corpus(text=str(text))
        loop, bench = [], []
        for block in range(repeats):
            for which in ("loop", "bench") if block % 2 == 0 else ("bench", "loop"):
                start = time.perf_counter()
                if which == "loop":
                    for spec in specs:
                        lmeval.compare([spec], corpus=corpus, bootstrap=0, verify=0, host=host)
                    loop.append(time.perf_counter() - start)
                else:
                    out = Path(tmp) / f"r{block}.jsonl"
                    cache = Path(tmp) / f"cache{block}"
                    lmeval.run_suite(suite, output=out, cache=cache, host=host)
                    bench.append(time.perf_counter() - start)
    a, b = statistics.median(loop), statistics.median(bench)
    per_run = (b - a) / runs
    print(f"bench overhead, {runs} uniform runs in-process (medians of {repeats}):")
    print(f"  a loop of lmeval.compare       {a:8.3f} s   {1000 * a / runs:6.1f} ms a run")
    print(f"  run_suite (records, cache on)  {b:8.3f} s   {1000 * b / runs:6.1f} ms a run")
    print(f"  overhead                       {1000 * per_run:8.1f} ms a run (target < 50 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="blocks of each measurement")
    parser.add_argument("--only", choices=["again", "jobs", "overhead"])
    parser.add_argument("--runs", type=int, default=40, help="runs of the overhead suite")
    parser.add_argument(
        "--corpora", type=Path, default=ROOT.parent / "shared" / "corpora", help="real texts"
    )
    args = parser.parse_args()
    corpora = args.corpora if args.corpora.is_dir() else None
    if args.only in (None, "again"):
        again(args.repeats)
    if args.only in (None, "jobs"):
        jobs(args.repeats, corpora)
    if args.only in (None, "overhead"):
        overhead(args.repeats, args.runs)


if __name__ == "__main__":
    main()

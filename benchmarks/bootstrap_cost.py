"""What the bootstrap costs: 1,000 replicates over 10,000 lines, and its share of a compare.

* ``synthetic``: ``bootstrap_records`` on five rows of synthetic per-token
  log-probabilities (nats) over 10,000 lines of 20-80 characters: the
  intervals of four metrics and the paired test of every row against the best;
* ``compare``: ``lmeval.compare`` of uniform and two n-grams on the built-in
  pydoc-topics text with ``bootstrap=1000`` and ``bootstrap=0``, alternating so
  that a neighbour on a shared CPU slows both alike; medians are reported, and
  the bootstrap's own seconds (``meta.bootstrap.seconds``) as a share of the
  comparison without it.

    python benchmarks/bootstrap_cost.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import lmeval


def synthetic(lines: int, replicates: int, rows: int, repeats: int) -> float:
    """Median seconds of ``bootstrap_records`` over ``lines`` lines and ``rows`` rows."""
    rng = np.random.default_rng(0)
    text = "".join("x" * int(n) + "\n" for n in rng.integers(20, 80, size=lines))
    ids = np.frombuffer(text.encode(), dtype=np.uint8).astype(np.int64)
    eos = ord("\n")
    layout = lmeval.line_layout(text, ids, eos)
    stats = lmeval.TextStats.of(text, ids, 0)
    scores, records, layouts = {}, [], {}
    for row in range(rows):
        label = f"row{row}"
        logprobs = -rng.exponential(1.0 + 0.1 * row, size=len(ids))
        scores[label] = lmeval.Scores(logprobs, stats)
        layouts[label] = layout
        bpc = -logprobs.sum() / np.log(2) / stats.chars
        records.append({"label": label, "bits_per_char": float(bpc), "verified": True})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        lmeval.bootstrap_records(
            records, scores, layouts, replicates=replicates, confidence=0.95, seed=0
        )
        times.append(time.perf_counter() - start)
    assert records[1]["vs_best"] is not None
    return statistics.median(times)


def compare_cost(repeats: int) -> tuple[float, float, float]:
    """Median wall seconds of a compare with and without the bootstrap, and the
    bootstrap's own median seconds."""
    specs = ["uniform", "ngram:order=3", "ngram:order=5"]
    bare, booted, own = [], [], []
    for block in range(repeats):
        for replicates in (0, 1000) if block % 2 == 0 else (1000, 0):
            start = time.perf_counter()
            result = lmeval.compare(specs, dataset="pydoc-topics", bootstrap=replicates)
            wall = time.perf_counter() - start
            (booted if replicates else bare).append(wall)
            if replicates:
                own.append(result.meta["bootstrap"]["seconds"])
    return statistics.median(bare), statistics.median(booted), statistics.median(own)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each measurement")
    args = parser.parse_args()
    for rows in (2, 5):
        seconds = synthetic(10_000, 1000, rows, args.repeats)
        print(f"synthetic: 10,000 lines x 1,000 replicates, {rows} rows: {seconds:.3f} s")
    bare, booted, own = compare_cost(args.repeats)
    print("compare: uniform, ngram:order=3, ngram:order=5 on pydoc-topics (1,146 test lines)")
    print(f"  --bootstrap 0      {bare:8.3f} s (median of {args.repeats})")
    print(f"  --bootstrap 1000   {booted:8.3f} s   ratio {booted / bare:.3f}x")
    print(f"  bootstrap itself   {own:8.3f} s   = {100 * own / bare:.1f} % of the bare compare")


if __name__ == "__main__":
    main()

"""What ``compare --isolate`` costs: the same comparison in one process and with
each model in a child process of its own.

Run in alternating blocks (so that a neighbour on a shared CPU slows both
alike); medians are reported. The rows' numbers must be identical either way
(the script checks), so the difference is the price of a fresh interpreter per
model: starting Python, importing lmeval (and torch, for the RNN), re-fitting
the tokenizer and sending the corpus and the scores through pipes.

    python benchmarks/isolate_cost.py [--rnn-budget 3000tok] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import lmeval


def run(specs: list[str], isolate: bool) -> tuple[float, list[tuple]]:
    start = time.perf_counter()
    result = lmeval.compare(specs, isolate=isolate, dataset="pydoc-topics", verify_seed=0)
    wall = time.perf_counter() - start
    failed = [r["label"] for r in result.results if r.get("error")]
    if failed:
        raise SystemExit(f"rows failed: {failed}")
    return wall, [(r["label"], r["perplexity"], r["tokens"]) for r in result.results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rnn-budget", default="3000tok", help="the RNN row's budget")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    specs = ["uniform", "ngram:order=5", f"rnn:budget={args.rnn_budget},threads=1"]
    times: dict[bool, list[float]] = {False: [], True: []}
    rows: dict[bool, list[tuple]] = {}
    for _ in range(args.repeats):
        for isolate in (False, True):
            wall, rows[isolate] = run(specs, isolate)
            times[isolate].append(wall)
    if rows[False] != rows[True]:
        raise SystemExit(f"isolated rows differ:\n{rows[False]}\n{rows[True]}")
    bare, isolated = (statistics.median(times[k]) for k in (False, True))
    print(f"models: {', '.join(specs)} on pydoc-topics; medians of {args.repeats} runs")
    print(f"in one process  {bare:8.2f} s")
    print(f"--isolate       {isolated:8.2f} s   ratio {isolated / bare:.2f}x")
    print(f"cost per model  {(isolated - bare) / len(specs):8.2f} s   (rows identical)")


if __name__ == "__main__":
    main()

"""Does ``generate -n N`` cost time linear in N? Seconds for N and 10 N tokens.

For each model the script samples N and then 10 N tokens from the same fitted
model (alternating, medians of ``--repeats``) and prints the ratio: about 10
is linear; 100 would be quadratic (the whole context re-read for each token,
as generation did before it kept its state).

    python benchmarks/generate_scaling.py [-n 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import lmeval

SPECS = ["ngram:order=5", "rnn:hidden=64,budget=3000tok,threads=1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="the smaller length (tokens)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"generate N={args.n:,} and 10N={10 * args.n:,} tokens; medians of {args.repeats}")
    for spec in SPECS:
        model, tok = lmeval.train(spec, dataset="pydoc-topics")
        prefix = tok.encode_prefix("The ")
        times: dict[int, list[float]] = {args.n: [], 10 * args.n: []}
        for _ in range(args.repeats):
            for n in times:
                start = time.perf_counter()
                out = model.generate(prefix, n, 1.0, seed=0)
                times[n].append(time.perf_counter() - start)
                assert len(out) == n
        short, long = (statistics.median(t) for t in times.values())
        print(f"{spec:40s} {short:7.2f} s {long:8.2f} s   ratio {long / short:5.1f}x")


if __name__ == "__main__":
    main()

"""What verifying every row costs: ``lmeval compare`` with and without ``--verify``.

Two comparisons, each run with verification (8 positions, the default) and
without (``verify=0``), in alternating blocks so that a neighbour on a shared
CPU slows both alike; medians are reported:

* ``default``: what a bare ``lmeval compare`` runs (uniform, 5-gram mkn, the RNN
  for ``--rnn-budget`` of CPU training), on the built-in pydoc-topics text;
* ``ngram``: n-grams only (uniform, orders 3 and 5), where fitting is so quick
  that verification is the largest share it can be.

Besides wall time it prints the verification's own seconds, summed over rows
from ``details.verify_seconds``, as a share of the bare comparison: the
figure the wall-time difference estimates, without its noise.

    python benchmarks/verify_cost.py [--rnn-budget 60s] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import lmeval


def run(specs: list[str], verify: int) -> tuple[float, float]:
    """Wall seconds of one comparison, and the seconds its verification took."""
    start = time.perf_counter()
    result = lmeval.compare(specs, verify=verify, dataset="pydoc-topics")
    wall = time.perf_counter() - start
    failed = [r["label"] for r in result.results if r.get("error")]
    if failed:
        raise SystemExit(f"rows failed: {failed}")
    checks = sum((r["details"] or {}).get("verify_seconds", 0.0) for r in result.results)
    return wall, checks


def measure(name: str, specs: list[str], repeats: int) -> None:
    bare: list[float] = []
    verified: list[float] = []
    checks: list[float] = []
    for block in range(repeats):
        order = [0, 8] if block % 2 == 0 else [8, 0]
        for verify in order:
            wall, spent = run(specs, verify)
            (verified if verify else bare).append(wall)
            if verify:
                checks.append(spent)
    b, v, c = statistics.median(bare), statistics.median(verified), statistics.median(checks)
    print(f"{name}: {', '.join(specs)}")
    print(f"  compare --no-verify   {b:8.3f} s (median of {repeats})")
    print(f"  compare (verify 8)    {v:8.3f} s   ratio {v / b:.3f}x")
    print(f"  verification itself   {c:8.3f} s   = {100 * c / b:.2f} % of the bare compare")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rnn-budget", default="60s", help="the RNN's training budget")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each setting")
    parser.add_argument("--only", choices=["default", "ngram"], help="one comparison only")
    args = parser.parse_args()
    suites = {
        "default": ["uniform", "ngram:order=5", f"rnn:budget={args.rnn_budget},device=cpu"],
        "ngram": ["uniform", "ngram:order=3", "ngram:order=5"],
    }
    for name, specs in suites.items():
        if args.only in (None, name):
            measure(name, specs, args.repeats)


if __name__ == "__main__":
    main()

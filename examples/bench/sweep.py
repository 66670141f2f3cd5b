"""Sweep n-gram orders and RNN sizes from Python and print the summary table.

    python examples/bench/sweep.py                     # pydoc-topics, about a minute
    python examples/bench/sweep.py --text book.txt     # your text
    python examples/bench/sweep.py --format markdown   # a table for a paper

The suite is built in Python (no file): n-gram orders 2 to 6 and LSTMs of three
sizes on a token budget (the same result on every machine), two seeds. Records
go to ``sweep.results.jsonl`` beside this script and fitted models to the model
cache, so running it again prints the same table at once; ``--rerun`` runs
everything again (the cached models are still reused).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lmeval


def sweep_suite(text: str | None) -> dict:
    """The suite as a dict shaped like a suite file (see ``suite.toml``)."""
    data = {"text": text} if text else {"dataset": "pydoc-topics"}
    return {
        "name": "sweep",
        "seeds": [0, 1],
        "metrics": ["bits_per_char", "perplexity", "fit_seconds"],
        "datasets": {"text": {**data, "tokenizer": "char"}},
        "models": {
            "kn": {"model": "ngram", "order": [2, 3, 4, 5, 6]},
            "lstm": {"model": "rnn", "hidden": [32, 64, 128], "budget": "1Mtok"},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", help="a text file (default: the built-in pydoc-topics)")
    parser.add_argument("--format", default="table", choices=["table", "markdown", "csv"])
    parser.add_argument("--rerun", action="store_true", help="run recorded runs again")
    parser.add_argument(
        "-o", "--output", default=str(Path(__file__).with_name("sweep.results.jsonl"))
    )
    args = parser.parse_args()
    lmeval.set_progress(True)
    text = str(Path(args.text).resolve()) if args.text else None
    new: list[dict] = []
    records = lmeval.run_suite(
        sweep_suite(text), output=args.output, rerun=args.rerun, on_record=new.append
    )
    print(lmeval.summary_table(records, args.format, metrics=["bits_per_char", "fit_seconds"]))
    cached = sum(1 for r in new if r["from_cache"])
    print(
        f"{len(new)} run(s) done now ({cached} with cached models), "
        f"{len(records) - len(new)} recorded before; records in {args.output}"
    )


if __name__ == "__main__":
    main()

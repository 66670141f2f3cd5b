"""Held-out bits per character of the rnn model after a fixed training budget, beside
the KenLM-exact 7-gram and their mixture, all measured in the same run.

Protocol: ``tinyshakespeare.txt``; the first 90 % of the characters train, the
last 10 % test; the first 20,000 characters of the training part are the
validation text (the rnn's early stopping and the mixture's weights: no
component trains on it, so EM weighs them on text none has seen). It is the
start, not the end, of the training part, as the rnn carves it for itself: the
test text continues the play the training text ends with, and holding its
opening scenes out (the names of its speakers) costs the 7-gram 0.10 bits per
character on the test text and the rnn more; the start costs the 7-gram 0.0014. Character
tokenizer in line mode (the newline is the end-of-line token, predicted like any
character); the test text is scored with the state carried through all of it;
bits per character = total bits over the test characters. Every row goes
through ``lmeval.compare``, verified like any other.

It runs twice: with the wall-clock budget (``--budget``, 180 s: the result
depends on the machine's speed) and with a token budget (``--tokens``, the same
result on every machine up to floating-point differences), and prints both.

    python benchmarks/rnn_quality.py [CORPUS] [--budget 180s] [--tokens 6Mtok]
        [--spec hidden=384,batch=32] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lmeval

VALID_CHARS = 20_000
TARGETS = {"rnn": 2.12, "both": 2.05}
#: What other models reach on this protocol (not measured here): for scale.
PEERS = {
    "best d2l-sized RNN in 180 s (LSTM, Adam)": 2.338,
    "bzip2 -9 given the training text": 2.413,
}


def split(path: Path) -> lmeval.Corpus:
    text = lmeval.read_text(path)
    cut = len(text) * 9 // 10
    return lmeval.Corpus(
        name=path.name, train=text[VALID_CHARS:cut], valid=text[:VALID_CHARS], test=text[cut:]
    )


def measure(corpus: lmeval.Corpus, budget: str, spec: str) -> dict[str, dict]:
    rnn = f"rnn=rnn:budget={budget}" + (f",{spec}" if spec else "")
    result = lmeval.compare(
        [rnn, "kn7=ngram:order=7", "both=mix:of=rnn+kn7"],
        corpus=corpus,
        tokenizer="char",
        bootstrap=0,
    )
    rows = {row["label"]: row for row in result.results}
    for label, row in rows.items():
        if row.get("error"):
            raise SystemExit(f"{label} failed: {row['error']}")
    return rows


def show(title: str, rows: dict[str, dict]) -> None:
    rnn = rows["rnn"]["details"]
    print(f"\n{title}: rnn trained {rnn['tokens_trained'] / 1e6:.2f} M tokens in "
          f"{rnn['train_seconds']:.1f} s ({rnn['stop_reason']}, best epoch "
          f"{rnn['best_epoch']}, {rnn['threads']} threads)")  # fmt: skip
    for row in rnn.get("history", []):
        print(
            f"  epoch {row['epoch']:>2}  train ppl {row['train_ppl']:6.3f}  "
            f"valid ppl {row['valid_ppl']:6.3f}  {row['tokens_per_s'] / 1000:5.1f}k tok/s  "
            f"{row['seconds']:5.1f} s  lr {row['lr']:.2e}"
        )
    for label, row in rows.items():
        target = TARGETS.get(label)
        verdict = (
            f"  (target < {target}: {'met' if row['bits_per_char'] < target else 'missed'})"
            if target
            else ""
        )
        print(
            f"  {label:<5} {row['spec']:<44} {row['bits_per_char']:.4f} bits/char, "
            f"fit {row['fit_seconds']:6.1f} s, verified {row['verified']}{verdict}"
        )
    weights = rows["both"]["details"]["weights"]
    print("  mixture weights: " + ", ".join(f"{k} {v:.3f}" for k, v in weights.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parent.parent.parent / "shared/corpora/tinyshakespeare.txt"
    parser.add_argument(
        "corpus", type=Path, nargs="?", default=default, help="default: ../shared/corpora/..."
    )
    parser.add_argument("--budget", default="180s", help="the wall-clock run's budget")
    parser.add_argument("--tokens", default="6Mtok", help="the token-budget run's (none: skip)")
    parser.add_argument("--spec", default="", help="extra rnn parameters, key=value,...")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    corpus = split(args.corpus)
    print(
        f"{args.corpus.name}: train {len(corpus.train):,}, validation {len(corpus.valid):,}, "
        f"test {len(corpus.test):,} characters"
    )
    runs = {f"budget {args.budget}": measure(corpus, args.budget, args.spec)}
    if args.tokens.lower() != "none":
        runs[f"budget {args.tokens}"] = measure(corpus, args.tokens, args.spec)
    for title, rows in runs.items():
        show(title, rows)
    print()
    for name, value in PEERS.items():
        print(f"  for scale: {name:<42} {value:.3f}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1, default=str))


if __name__ == "__main__":
    main()

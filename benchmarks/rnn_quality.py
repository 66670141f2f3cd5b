"""Held-out bits per character of the rnn model after a fixed CPU training budget.

Protocol: ``tinyshakespeare.txt``, the first 90 % of the characters train, the
last 10 % test; character tokenizer in line mode (the newline is the
end-of-line token, predicted like any character); the test text is scored
with the state carried through all of it; bits per character = total bits
over the test characters. The model uses its defaults for the budget unless
``--spec`` overrides some of them.

    python benchmarks/rnn_quality.py [CORPUS] [--budget 180s] [--spec cell=gru,hidden=256]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import lmeval
from lmeval_rnn import RNN

PEERS = {
    "KenLM 5-gram": 2.273,
    "KenLM 7-gram": 2.196,
    "best d2l-sized RNN in 180 s (LSTM, Adam)": 2.338,
    "bzip2 -9 given the training text": 2.413,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parent.parent.parent / "shared/corpora/tinyshakespeare.txt"
    parser.add_argument(
        "corpus", type=Path, nargs="?", default=default, help="default: ../shared/corpora/..."
    )
    parser.add_argument("--budget", default="180s")
    parser.add_argument("--spec", default="", help="extra parameters, key=value,...")
    parser.add_argument("--json", type=Path, help="also write the result record here")
    args = parser.parse_args()

    text = lmeval.read_text(args.corpus)
    cut = len(text) * 9 // 10
    train_text, test_text = text[:cut], text[cut:]
    tok = lmeval.CharTokenizer()
    vocab = tok.fit(train_text)
    spec = lmeval.parse_spec(f"rnn:budget={args.budget}" + (f",{args.spec}" if args.spec else ""))
    model = RNN(vocab, **spec.params)
    print(f"spec: {spec.text}")
    print("config: " + ",".join(f"{k}={v}" for k, v in model.config.items()))
    start = time.perf_counter()
    model.fit(tok.encode(train_text))
    fit_s = time.perf_counter() - start
    test_ids = tok.encode(test_text)
    start = time.perf_counter()
    logp = model.score(test_ids)
    score_s = time.perf_counter() - start
    bpc = float(-logp.sum() / math.log(2) / len(test_text))
    details = model.details()
    for row in details["history"]:
        print(
            f"  epoch {row['epoch']:>2}  train ppl {row['train_ppl']:6.3f}  "
            f"valid ppl {row['valid_ppl']:6.3f}  {row['tokens_per_s'] / 1000:5.1f}k tok/s  "
            f"{row['seconds']:5.1f} s  lr {row['lr']:.2e}"
        )
    print(
        f"trained {details['tokens_trained'] / 1e6:.2f} M tokens in {fit_s:.1f} s "
        f"({details['stop_reason']}, {details['threads']} threads, {model.num_params:,} params); "
        f"scored {len(test_ids):,} tokens in {score_s:.1f} s"
    )
    print(f"test bits per character: {bpc:.4f}")
    for name, value in PEERS.items():
        print(f"  vs {name:<42} {value:.3f}  ({'better' if bpc < value else 'worse'})")
    if args.json:
        record = {"spec": spec.text, "config": model.config, "bpc": bpc, "fit_s": fit_s}
        args.json.write_text(json.dumps({**record, "details": details}, indent=1))


if __name__ == "__main__":
    main()

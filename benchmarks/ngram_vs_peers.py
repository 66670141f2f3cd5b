"""The ngram model against its peers: NLTK's ``nltk.lm`` and KenLM.

Protocol char-lines-v1 (``../shared/reference/README.md``) on tinyshakespeare,
orders 3, 5 and 7. Prints, per order: our fit seconds, scoring tokens/s on a
long input (the test split repeated), the peak memory of a fit (tracemalloc:
every numpy allocation made during ``fit``), the test perplexity; NLTK's
KneserNeyInterpolated and WittenBellInterpolated fitted and scored on samples
(the whole data would take hours: NLTK's Kneser-Ney scores about 100 tokens/s at
order 5); KenLM's ``lmplz`` + ``build_binary`` + ``query`` when ``KENLM_BIN``
names the folder of its binaries, else the figures of ``../shared/peers.md``.
Then the ratios against the targets of the issue.

Timings are medians over repeats that alternate between the things compared,
so that a busy machine slows all of them alike; still, on a shared 2-core
machine expect noise of tens of percent.

    python benchmarks/ngram_vs_peers.py [--orders 3 5 7] [--repeats 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import math
import os
import pstats
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

import lmeval
from lmeval_ngram import NGram

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
# peers.md, measured on this kind of machine (2 cores): lmplz s, query tokens/s, perplexity
KENLM_PEERS = {
    2: (0.27, None, 11.9123),
    3: (0.27, 19e6, 7.8102),
    4: (0.35, None, 5.7417),
    5: (0.42, 9e6, 4.8974),
    6: (0.63, None, 4.6828),
    7: (0.98, 4e6, 4.6430),
}
KENLM_QUERY_S = {3: 0.015, 5: 0.025, 7: 0.034}  # query on the test split


def char_lines(path: Path) -> tuple[list[str], list[str]]:
    """Train and test lines of protocol char-lines-v1."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    cut = len(lines) * 9 // 10
    return [x for x in lines[:cut] if x], [x for x in lines[cut:] if x]


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ours(order, vocab, tok, train_text, test_text, repeats):
    """Fit seconds, scoring tokens/s, end-to-end seconds, perplexity, peak fit memory."""
    train, test = tok.encode(train_text), tok.encode(test_text)
    long = np.tile(test, 20)
    fit_t, score_t, e2e_t, both_t = [], [], [], []
    model = None
    for _ in range(repeats):  # alternate fit, score and the end-to-end run
        start = time.perf_counter()
        model = NGram(vocab, order=order)
        model.fit(train)
        fit_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.score(long)
        score_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        e2e = NGram(vocab, order=order)
        e2e.fit(train)
        e2e.score(test)
        both_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        e2e = NGram(vocab, order=order)
        e2e.fit(tok.encode(train_text))
        e2e.score(tok.encode(test_text))
        e2e_t.append(time.perf_counter() - start)
    perplexity = math.exp(-model.score(test).mean())
    tracemalloc.start()
    NGram(vocab, order=order).fit(train)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "fit_s": statistics.median(fit_t),
        "score_tps": len(long) / statistics.median(score_t),
        "e2e_s": statistics.median(e2e_t),
        "fit_score_s": statistics.median(both_t),
        "ppl": perplexity,
        "peak_bytes": peak,
        "train_tokens": len(train),
    }


def nltk_peer(order, train_lines, test_lines, fit_tokens, score_tokens):
    """NLTK counting tokens/s, and scoring tokens/s of KN and Witten-Bell, on samples."""
    from nltk.lm import KneserNeyInterpolated, WittenBellInterpolated
    from nltk.lm.preprocessing import padded_everygram_pipeline

    sample, count = [], 0
    for line in train_lines:
        sample.append(list(line))
        count += len(line) + 1
        if count >= fit_tokens:
            break
    grams, vocab_words = padded_everygram_pipeline(order, sample)
    kn = KneserNeyInterpolated(order)
    start = time.perf_counter()
    kn.fit(grams, vocab_words)
    fit_tps = count / (time.perf_counter() - start)
    wb = WittenBellInterpolated(order, vocabulary=kn.vocab, counter=kn.counts)
    items = []
    for line in test_lines:
        padded = ["<s>"] * (order - 1) + list(line) + ["</s>"]
        items += [
            (padded[i], tuple(padded[i - order + 1 : i])) for i in range(order - 1, len(padded))
        ]
        if len(items) >= score_tokens:
            break
    items = items[:score_tokens]
    out = {"fit_tokens": count, "fit_tps": fit_tps, "score_tokens": len(items)}
    for name, model in (("kn", kn), ("wb", wb)):
        start = time.perf_counter()
        for word, context in items:
            model.logscore(word, context)
        out[f"{name}_tps"] = len(items) / (time.perf_counter() - start)
    return out


def kenlm_peer(order, train_lines, test_lines, bin_dir: Path):
    """Wall seconds of lmplz, and query's tokens/s on the test split repeated 20 times."""

    def spaced(lines):
        return "".join(" ".join("▁" if c == " " else c for c in line) + "\n" for line in lines)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "train.txt").write_text(spaced(train_lines), encoding="utf-8")
        (tmp / "test.txt").write_text(spaced(test_lines), encoding="utf-8")
        (tmp / "long.txt").write_text(spaced(test_lines * 20), encoding="utf-8")
        start = time.perf_counter()
        with open(tmp / "train.txt", "rb") as src, open(tmp / "m.arpa", "wb") as dst:
            subprocess.run(
                [str(bin_dir / "lmplz"), "-o", str(order), "-S", "1G", "--discount_fallback"],
                stdin=src,
                stdout=dst,
                stderr=subprocess.DEVNULL,
                check=True,
            )
        lmplz_s = time.perf_counter() - start
        build = [str(bin_dir / "build_binary"), str(tmp / "m.arpa"), str(tmp / "m.bin")]
        subprocess.run(build, check=True, capture_output=True)

        def query(name):
            start = time.perf_counter()
            with open(tmp / name, "rb") as src:
                subprocess.run(
                    [str(bin_dir / "query"), "-v", "summary", str(tmp / "m.bin")],
                    stdin=src,
                    check=True,
                    capture_output=True,
                )
            return time.perf_counter() - start

        query_s = query("test.txt")
        long_tokens = 20 * sum(len(line) + 1 for line in test_lines)
        return {
            "lmplz_s": lmplz_s,
            "query_s": query_s,
            "query_tps": long_tokens / query("long.txt"),
        }


def ratio_line(name: str, value: float, target: float, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value <= target
    sign = ">=" if higher_is_better else "<="
    return f"  {name:<58} {value:>10.3g}  (target {sign} {target:g})  {'ok' if ok else 'MISSED'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpora" / "tinyshakespeare.txt")
    parser.add_argument("--orders", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nltk-fit-tokens", type=int, default=100_000)
    parser.add_argument("--nltk-score-tokens", type=int, nargs="+", default=[2000, 300, 200])
    parser.add_argument("--no-nltk", action="store_true")
    parser.add_argument("--profile", action="store_true", help="profile our fit at order 5")
    args = parser.parse_args()

    train_lines, test_lines = char_lines(args.corpus)
    train_text = "".join(x + "\n" for x in train_lines)
    test_text = "".join(x + "\n" for x in test_lines)
    train_bytes = len(train_text.encode("utf-8"))
    tok = lmeval.CharTokenizer()
    vocab = tok.fit(train_text)
    kenlm_bin = os.environ.get("KENLM_BIN")
    print(
        f"char-lines-v1 on {args.corpus.name}: train {train_bytes:,} bytes, vocabulary {len(vocab)}"
    )
    print(
        f"medians of {args.repeats} alternating repeats; KenLM: {kenlm_bin or 'peers.md figures'}"
    )

    for i, order in enumerate(args.orders):
        us = ours(order, vocab, tok, train_text, test_text, args.repeats)
        lmplz_s, query_tps, peer_ppl = KENLM_PEERS.get(order, (None, None, None))
        query_s = KENLM_QUERY_S.get(order)
        if kenlm_bin:
            k = kenlm_peer(order, train_lines, test_lines, Path(kenlm_bin))
            lmplz_s, query_tps, query_s = k["lmplz_s"], k["query_tps"], k["query_s"]
        print(f"\norder {order}")
        print(
            f"  ours: fit {us['fit_s']:.3f} s"
            f" ({us['train_tokens'] / us['fit_s'] / 1e6:.2f} M tok/s),"
            f" score {us['score_tps'] / 1e6:.2f} M tok/s, fit+score {us['fit_score_s']:.3f} s"
            f" (with lmeval's tokenizer {us['e2e_s']:.3f} s),"
            f" peak fit memory {us['peak_bytes'] / 1e6:.1f} MB, perplexity {us['ppl']:.4f}"
            + (f" (KenLM {peer_ppl})" if peer_ppl else "")
        )
        if query_tps:
            print(
                f"  KenLM: lmplz {lmplz_s:.3f} s, query {query_tps / 1e6:.1f} M tok/s"
                f" (test split {query_s} s)"
            )
        if not args.no_nltk:
            n_score = args.nltk_score_tokens[min(i, len(args.nltk_score_tokens) - 1)]
            nl = nltk_peer(order, train_lines, test_lines, args.nltk_fit_tokens, n_score)
            print(
                f"  NLTK (fit on the first {nl['fit_tokens']:,} train tokens, scored on the first"
                f" {nl['score_tokens']:,} test tokens): counting {nl['fit_tps'] / 1e3:.1f} k tok/s,"
                f" KN {nl['kn_tps']:.0f} tok/s, Witten-Bell {nl['wb_tps']:.0f} tok/s"
            )
        print("  ratios:")
        if not args.no_nltk:
            print(
                ratio_line(
                    "scoring / NLTK Kneser-Ney scoring", us["score_tps"] / nl["kn_tps"], 1000
                )
            )
            wb_ratio = us["score_tps"] / nl["wb_tps"]
            print(f"  {'scoring / NLTK Witten-Bell scoring (no target)':<58} {wb_ratio:>10.3g}")
            fit_tps = us["train_tokens"] / us["fit_s"]
            print(
                ratio_line("fitting tokens/s / NLTK counting tokens/s", fit_tps / nl["fit_tps"], 50)
            )
        if query_tps:
            print(ratio_line("scoring / KenLM query tokens/s", us["score_tps"] / query_tps, 0.3))
        if order == 5 and lmplz_s:
            for what, seconds in (
                ("fit+score", us["fit_score_s"]),
                ("tokenize+fit+score", us["e2e_s"]),
            ):
                print(
                    ratio_line(
                        f"{what} / KenLM lmplz+query wall time",
                        seconds / (lmplz_s + query_s),
                        2.0,
                        higher_is_better=False,
                    )
                )
            print(
                ratio_line(
                    "peak fit memory / training text bytes",
                    us["peak_bytes"] / train_bytes,
                    10.0,
                    higher_is_better=False,
                )
            )

    if args.profile:
        train = tok.encode(train_text)
        profile = cProfile.Profile()
        profile.enable()
        NGram(vocab, order=5).fit(train)
        profile.disable()
        print("\nwhere the time of fit (order 5) goes:")
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()

"""The ngram model against its peers: KenLM and NLTK's ``nltk.lm``, side by side.

Protocol char-lines-v1 (``../shared/reference/README.md``) on Tiny Shakespeare,
orders 3, 5 and 7; the text read by lmeval's own reader (``lmeval.read_text``),
so both sides see the same characters.

KenLM (when ``KENLM_BIN`` names the folder of its binaries): ``lmplz -o N -S 1G
--discount_fallback``, ``build_binary`` and ``query``, each a whole process;
lmeval: ``lmeval compare -m ngram:order=N`` as a whole process. The two are run
in alternating blocks (``--repeats``), medians reported, each process timed
from start to exit with its peak resident memory from the OS, and the
perplexities compared as each side prints them (KenLM's ``query`` summary,
lmeval's JSON). Tokens reach KenLM spelled one to one (``kenlm_peer.kenlm_word``:
no two characters become one word). Any failure shows the tool's stderr.

In-process, besides: lmeval's fit seconds and scoring speed on a long input
(the test split repeated 20 times) against ``query`` on the same input; and
NLTK's KneserNeyInterpolated and WittenBellInterpolated fitted and scored on
samples (the whole data would take hours: NLTK's Kneser-Ney scores about 100
tokens/s at order 5).

    KENLM_BIN=~/kenlm/build/bin python benchmarks/ngram_vs_peers.py \\
        [--orders 3 5 7] [--repeats 3] [--no-nltk] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from kenlm_peer import kenlm, kenlm_text, lmeval_compare, plain_text, run

import lmeval
from lmeval_ngram import NGram

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def char_lines(path: Path) -> tuple[list[str], list[str]]:
    """Train and test lines of protocol char-lines-v1, as lmeval reads the file."""
    lines = lmeval.read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    cut = len(lines) * 9 // 10
    return [x for x in lines[:cut] if x], [x for x in lines[cut:] if x]


def in_process(order: int, train_text: str, test_text: str, repeats: int) -> dict:
    """lmeval's fit seconds and scoring tokens/s on the test split repeated 20 times."""
    tok = lmeval.CharTokenizer()
    vocab = tok.fit(train_text)
    train, test = tok.encode(train_text), tok.encode(test_text)
    long = np.tile(test, 20)
    fits, scores = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        model = NGram(vocab, order=order)
        model.fit(train)
        fits.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.score(long)
        scores.append(time.perf_counter() - start)
    return {
        "fit_s": statistics.median(fits),
        "fit_tps": len(train) / statistics.median(fits),
        "score_tps": len(long) / statistics.median(scores),
        "long_tokens": len(long),
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


def median(rows: list[dict], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def ratio_line(name: str, value: float, target: float, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value <= target
    sign = ">=" if higher_is_better else "<="
    return f"  {name:<58} {value:>10.3g}  (target {sign} {target:g})  {'ok' if ok else 'MISSED'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpora" / "tinyshakespeare.txt")
    parser.add_argument("--orders", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument("--repeats", type=int, default=3, help="alternating blocks")
    parser.add_argument("--nltk-fit-tokens", type=int, default=100_000)
    parser.add_argument("--nltk-score-tokens", type=int, nargs="+", default=[2000, 300, 200])
    parser.add_argument("--no-nltk", action="store_true")
    parser.add_argument("--profile", action="store_true", help="profile our fit at order 5")
    args = parser.parse_args()

    import os

    bin_dir = Path(os.environ["KENLM_BIN"]) if os.environ.get("KENLM_BIN") else None
    train_lines, test_lines = char_lines(args.corpus)
    train_text, test_text = plain_text(train_lines), plain_text(test_lines)
    print(
        f"char-lines-v1 on {args.corpus.name}: {len(train_text):,} train characters, "
        f"{sum(len(x) + 1 for x in test_lines):,} test tokens"
    )
    print(
        f"medians of {args.repeats} alternating blocks, whole processes, peak RSS from the OS; "
        f"KenLM: {bin_dir or 'not given (set KENLM_BIN)'}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = {}
        for name, lines in (("train", train_lines), ("test", test_lines)):
            files[name] = folder / f"{name}.txt"
            files[name].write_text(plain_text(lines), encoding="utf-8")
            files[f"kenlm_{name}"] = folder / f"kenlm_{name}.txt"
            files[f"kenlm_{name}"].write_text(kenlm_text(lines, "char"), encoding="utf-8")
        files["kenlm_long"] = folder / "kenlm_long.txt"
        files["kenlm_long"].write_text(kenlm_text(test_lines * 20, "char"), encoding="utf-8")
        for i, order in enumerate(args.orders):
            ours, theirs, query_long = [], [], []
            for block in range(args.repeats):
                for side in ("lmeval", "kenlm") if block % 2 == 0 else ("kenlm", "lmeval"):
                    if side == "lmeval":
                        ours.append(
                            lmeval_compare(order, files["train"], files["test"], "char", folder)
                        )
                    elif bin_dir:
                        theirs.append(
                            kenlm(bin_dir, order, files["kenlm_train"], files["kenlm_test"], folder)
                        )
            inside = in_process(order, train_text, test_text, args.repeats)
            report(order, ours, theirs)
            print(
                f"  in-process: fit {inside['fit_s']:.3f} s ({inside['fit_tps'] / 1e6:.2f} M "
                f"tokens/s), scoring {inside['score_tps'] / 1e6:.2f} M tokens/s"
            )
            if bin_dir:
                query_long = query_speed(bin_dir, order, files, folder)
                print(f"  KenLM query on the same long input: {query_long / 1e6:.2f} M tokens/s")
                print(
                    ratio_line(
                        "scoring / KenLM query tokens/s", inside["score_tps"] / query_long, 0.3
                    )
                )
            if not args.no_nltk:
                n_score = args.nltk_score_tokens[min(i, len(args.nltk_score_tokens) - 1)]
                nl = nltk_peer(order, train_lines, test_lines, args.nltk_fit_tokens, n_score)
                print(
                    f"  NLTK (fit on the first {nl['fit_tokens']:,} train tokens, scored on the "
                    f"first {nl['score_tokens']:,} test tokens): counting "
                    f"{nl['fit_tps'] / 1e3:.1f} k tok/s, KN {nl['kn_tps']:.0f} tok/s, "
                    f"Witten-Bell {nl['wb_tps']:.0f} tok/s"
                )
                print(
                    ratio_line(
                        "scoring / NLTK Kneser-Ney scoring",
                        inside["score_tps"] / nl["kn_tps"],
                        1000,
                    )
                )
                print(
                    ratio_line(
                        "fitting tokens/s / NLTK counting", inside["fit_tps"] / nl["fit_tps"], 50
                    )
                )

    if args.profile:
        tok = lmeval.CharTokenizer()
        vocab = tok.fit(train_text)
        train = tok.encode(train_text)
        profile = cProfile.Profile()
        profile.enable()
        NGram(vocab, order=5).fit(train)
        profile.disable()
        print("\nwhere the time of fit (order 5) goes:")
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)


def query_speed(bin_dir: Path, order: int, files: dict, folder: Path) -> float:
    """KenLM query's tokens/s on the long input (whole process, model loading included)."""
    arpa, binary = folder / "speed.arpa", folder / "speed.bin"
    run([str(bin_dir / "lmplz"), "-o", str(order), "-S", "1G", "--discount_fallback"],
        stdin=files["kenlm_train"], stdout=arpa)  # fmt: skip
    run([str(bin_dir / "build_binary"), str(arpa), str(binary)])
    measured = run(
        [str(bin_dir / "query"), "-v", "summary", str(binary)], stdin=files["kenlm_long"]
    )
    tokens = sum(len(line.split()) + 1 for line in files["kenlm_long"].open(encoding="utf-8"))
    return tokens / measured.seconds


def report(order: int, ours: list[dict], theirs: list[dict]) -> None:
    wall, peak = median(ours, "wall_s"), median(ours, "peak_bytes")
    print(f"\norder {order}")
    print(
        f"  lmeval compare: {wall:.3f} s (fit {median(ours, 'fit_s'):.3f}, score "
        f"{median(ours, 'score_s'):.3f}, outside {median(ours, 'outside_s'):.3f}), "
        f"peak {peak / 2**20:.0f} MiB, perplexity {ours[0]['ppl']:.6f}"
    )
    if not theirs:
        return
    k_wall, k_peak = median(theirs, "wall_s"), median(theirs, "peak_bytes")
    print(
        f"  KenLM: {k_wall:.3f} s (lmplz {median(theirs, 'lmplz_s'):.3f}, build_binary "
        f"{median(theirs, 'build_s'):.3f}, query {median(theirs, 'query_s'):.3f}), "
        f"peak {k_peak / 2**20:.0f} MiB, perplexity {theirs[0]['ppl']:.6f}"
    )
    inside = median(ours, "fit_s") + median(ours, "score_s")
    print(ratio_line("fit+score / KenLM lmplz+build_binary+query", inside / k_wall, 1.0, False))
    print(f"  {'whole process / KenLM (no target)':<58} {wall / k_wall:>10.3g}")
    print(ratio_line("peak memory / KenLM's", peak / k_peak, 1.5, False))
    agree = abs(ours[0]["ppl"] / theirs[0]["ppl"] - 1)
    print(ratio_line("perplexity, relative difference", agree, 1e-6, False))


if __name__ == "__main__":
    main()

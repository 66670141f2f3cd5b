"""The n-gram model from 1 MB to 100 MB of real text, side by side with KenLM.

The corpus (the same on any machine with the same Python and packages): the
``.py`` files of this Python's standard library (``sysconfig`` ``stdlib``,
``site-packages`` left out), then those of this environment's
``site-packages``, each list in sorted path order; files that are not UTF-8 or
whose bytes were seen before (SHA-256) skipped; lines split at ``\\n`` only
after ``\\r\\n`` became ``\\n`` as lmeval's reader does (a lone ``\\r`` stays a
character), lines without a non-space character dropped, and so are lines
holding the word ``<unk>`` or ``</s>`` (lmeval reads those reserved words as
its unknown token; KenLM refuses them in a corpus); lines taken in that order
until the size is reached. The first 90 % of the
lines train, the rest test. Character level: every character a token; word
level: ``line.split()``. Each line is a sentence (``</s>`` predicted). The
script prints the SHA-256 of each corpus, so two machines can tell whether
they measured the same text.

For each size, level and order, lmeval (``lmeval compare -m ngram:order=N`` as
a whole process) and, when ``KENLM_BIN`` names the folder of KenLM's binaries,
KenLM (``lmplz -S 1G`` + ``build_binary`` + ``query``, whole processes) are
run in alternating blocks; medians are printed: wall seconds, lmeval's fit and
score seconds and the time outside both (reading, tokenizing, vocabulary,
checksums, verification, writing), peak resident memory from the OS, and the
perplexities of both (they agree to 1e-6 relative when lmeval reproduces
KenLM). Then the ratios against the targets: lmeval's fit + score seconds at
most KenLM's three processes (``lmplz`` + ``build_binary`` + ``query``), peak
memory at most 1.5x; the whole-process ratio beside them. numba compiles the
counting loops on first use and caches them: run once before timing.

``--big 1000`` adds a corpus of that many MB past what the machine's sources
hold, made by repeating the 100 MB corpus's lines in a shuffled order (seed 0;
real lines, so real n-gram statistics, but fewer distinct n-grams per MB than
new text would have), measured once at character order 5 and word order 3:
lmeval reads the training file a piece at a time and counts it within its
default ``memory=2G`` (past it, sorted runs go to disk and are merged, as
KenLM's ``lmplz -S 1G`` does); its 10 % test text is held whole, with its ids
and scores, which is most of lmeval's peak there.

    KENLM_BIN=~/kenlm/build/bin python benchmarks/ngram_scaling.py \\
        [--sizes 1 10 50 100] [--char-orders 5 7] [--word-orders 3 5] [--repeats 3] \\
        [--big 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sysconfig
import tempfile
from pathlib import Path

from kenlm_peer import kenlm, kenlm_text, lmeval_compare, lmeval_lines, plain_text

import lmeval

MB = 1_000_000
#: Words lmeval's word tokenizer reserves (it reads them as <unk>), which lmplz
#: refuses in a corpus: lines holding them are left out of it.
RESERVED = {lmeval.UNK, lmeval.WordTokenizer.eos_token}


def source_files() -> list[Path]:
    """The standard library's .py files, then site-packages', each sorted."""
    paths = sysconfig.get_paths()
    stdlib = Path(paths["stdlib"])
    site = {Path(paths["purelib"]), Path(paths["platlib"])}
    ours = sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts)
    theirs = sorted({p for root in site for p in root.rglob("*.py")})
    return ours + theirs


def corpus_lines(size: int) -> tuple[list[str], str]:
    """At least ``size`` bytes of lines (UTF-8), and the SHA-256 of their text."""
    seen: set[bytes] = set()
    lines: list[str] = []
    total = 0
    for path in source_files():
        try:
            data = path.read_bytes()
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        digest = hashlib.sha256(data).digest()
        if digest in seen:
            continue
        seen.add(digest)
        for line in text.replace("\r\n", "\n").split("\n"):
            if line.strip() and not RESERVED.intersection(line.split()):
                lines.append(line)
                total += len(line.encode("utf-8")) + 1
                if total >= size:
                    text = plain_text(lines)
                    return lines, hashlib.sha256(text.encode("utf-8")).hexdigest()
    raise SystemExit(f"only {total / MB:.0f} MB of source here, less than {size / MB:.0f} MB")


def big_corpus_lines(size: int) -> tuple[list[str], str]:
    """``size`` bytes of lines: the 100 MB corpus's lines repeated, shuffled (seed 0)."""
    import random

    base, _ = corpus_lines(100 * MB)
    lines: list[str] = []
    total = 0
    rng = random.Random(0)
    while total < size:
        batch = base[:]
        rng.shuffle(batch)
        for line in batch:
            lines.append(line)
            total += len(line.encode("utf-8")) + 1
            if total >= size:
                break
    return lines, hashlib.sha256(plain_text(lines).encode("utf-8")).hexdigest()


def measure(
    size_mb: int, level: str, orders: list[int], repeats: int, bin_dir, folder: Path, big=False
):
    lines, digest = (big_corpus_lines if big else corpus_lines)(size_mb * MB)
    cut = len(lines) * 9 // 10
    files = {}
    for name, part in (("train", lines[:cut]), ("test", lines[cut:])):
        files[name] = folder / f"{name}.txt"
        files[name].write_text(plain_text(part), encoding="utf-8")
        if bin_dir:  # KenLM gets the lines as lmeval reads them (its reader drops \r of \r\n)
            read = lmeval_lines(files[name])
            files[f"kenlm_{name}"] = folder / f"kenlm_{name}.txt"
            files[f"kenlm_{name}"].write_text(kenlm_text(read, level), encoding="utf-8")
    what = "repeated and shuffled lines" if big else "lines"
    print(f"\n{size_mb} MB, {level} level: {len(lines):,} {what}, sha256 {digest[:16]}")
    for order in orders:
        ours, theirs = [], []
        for block in range(repeats):
            sides = ("lmeval", "kenlm") if block % 2 == 0 else ("kenlm", "lmeval")
            for side in sides:
                if side == "lmeval":
                    ours.append(lmeval_compare(order, files["train"], files["test"], level, folder))
                elif bin_dir:
                    theirs.append(
                        kenlm(bin_dir, order, files["kenlm_train"], files["kenlm_test"], folder)
                    )
        report(order, ours, theirs)


def median(rows: list[dict], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def report(order: int, ours: list[dict], theirs: list[dict]) -> None:
    wall, peak = median(ours, "wall_s"), median(ours, "peak_bytes")
    print(
        f"  order {order}: lmeval {wall:7.2f} s (fit {median(ours, 'fit_s'):.2f}, score "
        f"{median(ours, 'score_s'):.2f}, outside {median(ours, 'outside_s'):.2f}), "
        f"peak {peak / 2**20:,.0f} MiB, ppl {ours[0]['ppl']:.6f}"
        + (f", {ours[0]['runs_written']} sorted runs written" if ours[0]["runs_written"] else "")
    )
    if not theirs:
        return
    k_wall, k_peak = median(theirs, "wall_s"), median(theirs, "peak_bytes")
    agree = abs(ours[0]["ppl"] / theirs[0]["ppl"] - 1)
    print(
        f"           KenLM  {k_wall:7.2f} s (lmplz {median(theirs, 'lmplz_s'):.2f}, build_binary "
        f"{median(theirs, 'build_s'):.2f}, query {median(theirs, 'query_s'):.2f}), "
        f"peak {k_peak / 2**20:,.0f} MiB, ppl {theirs[0]['ppl']:.6f}"
    )
    inside = median(ours, "fit_s") + median(ours, "score_s")
    print(
        f"           ratios: fit+score {inside / k_wall:.2f}x (target <= 1), whole process "
        f"{wall / k_wall:.2f}x, memory {peak / k_peak:.2f}x (target <= 1.5), "
        f"perplexity agrees to {agree:.1e} (target 1e-6)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1, 10, 50, 100], help="MB")
    parser.add_argument("--char-orders", type=int, nargs="*", default=[5, 7])
    parser.add_argument("--word-orders", type=int, nargs="*", default=[3, 5])
    parser.add_argument("--repeats", type=int, default=3, help="alternating blocks")
    parser.add_argument("--big", type=int, help="MB of repeated lines, measured once")
    args = parser.parse_args()
    bin_dir = Path(os.environ["KENLM_BIN"]) if os.environ.get("KENLM_BIN") else None
    print(f"KenLM: {bin_dir or 'not given (set KENLM_BIN to measure it side by side)'}")
    print(f"medians of {args.repeats} alternating blocks, whole processes, peak RSS from the OS")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for level, orders in (("char", args.char_orders), ("word", args.word_orders)):
                if orders:
                    measure(size, level, orders, args.repeats, bin_dir, Path(tmp))
        if args.big:
            for level, order in (("char", 5), ("word", 3)):
                measure(args.big, level, [order], 1, bin_dir, Path(tmp), big=True)


if __name__ == "__main__":
    main()

"""Regenerate the KenLM golden files of this folder (needs a KenLM build).

    KENLM_BIN=/path/to/kenlm/build/bin python tests/golden/make_kenlm_golden.py

``timemachine.char.o5.log10.gz``: KenLM's per-token log10 probabilities of the
test split of The Time Machine (``../shared/corpora/timemachine.txt``) under
protocol char-lines-v1 (``../shared/reference/README.md``: 90/10 line split,
empty lines dropped, every character a token, ``</s>`` predicted per line),
from ``lmplz -o 5 -S 1G --discount_fallback`` + ``build_binary`` + ``query -v
word``, made with kpu/kenlm 4cb443e. One number per line, in text order; the
text itself is not stored. Its unigram discounts are estimated in closed form
(D1 0.176471, D2 1.31933, D3+ 2.68627), which makes it the test of KenLM's
count-of-counts rule (``lmeval_ngram.smoothing.kenlm_quirk``).
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent.parent / "shared"
ITEM = re.compile(r"=\d+ \d+ (-?[0-9.e-]+|-inf)$")


def char_lines(path: Path) -> tuple[list[str], list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        lines = handle.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    cut = len(lines) * 9 // 10
    return [x for x in lines[:cut] if x], [x for x in lines[cut:] if x]


def spelled(line: str) -> str:
    return " ".join("\u2581" if c == " " else c for c in line)


def main() -> None:
    bin_dir = Path(os.environ["KENLM_BIN"])
    train, test = char_lines(SHARED / "corpora" / "timemachine.txt")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "train.txt").write_text("".join(spelled(x) + "\n" for x in train))
        (folder / "test.txt").write_text("".join(spelled(x) + "\n" for x in test))
        with open(folder / "train.txt") as src, open(folder / "m.arpa", "w") as out:
            subprocess.run(
                [bin_dir / "lmplz", "-o", "5", "-S", "1G", "--discount_fallback"],
                stdin=src, stdout=out, check=True,
            )  # fmt: skip
        subprocess.run([bin_dir / "build_binary", folder / "m.arpa", folder / "m.bin"], check=True)
        with open(folder / "test.txt") as src:
            query = subprocess.run(
                [bin_dir / "query", "-v", "word", folder / "m.bin"],
                stdin=src, capture_output=True, text=True, check=True,
            )  # fmt: skip
    values = [
        m.group(1)
        for line in query.stdout.splitlines()
        for item in line.split("\t")
        if (m := ITEM.search(item))
    ]
    assert len(values) == sum(len(x) + 1 for x in test), "one value per predicted token"
    data = ("\n".join(values) + "\n").encode()
    (HERE / "timemachine.char.o5.log10.gz").write_bytes(gzip.compress(data, 9, mtime=0))
    print(f"wrote {len(values)} values")


if __name__ == "__main__":
    main()

"""GPU checks of the rnn plugin: CPU/GPU agreement of ``score`` and GPU training speed.

1. For each cell, a small model trained on the CPU is scored on the CPU and on
   the GPU; the log-probabilities must agree within 1e-4.
2. Training tokens/s on the GPU at d2l's sizes (batch 32, 35 steps, vocabulary
   28; hidden 512 for the tanh cell, 256 for GRU/LSTM as in d2l 8.6/9.1-9.2),
   next to d2l's published V100 figures, and at a large batch.
3. A short bf16-autocast training run scores finite numbers.

Without CUDA it runs the CPU half of (1) and says what it skipped. Takes well
under five minutes on a GPU.

    python benchmarks/rnn_gpu_check.py [CORPUS]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from rnn_throughput import VOCAB, D2LScratch, Ours, PlainTorch, compare

import lmeval
from lmeval_rnn import RNN

D2L_V100 = {"d2l scratch rnn": 71.5e3, "nn.RNN": 268e3, "nn.GRU": 301e3, "nn.LSTM": 298e3}
SIZES = {"rnn": 512, "gru": 256, "lstm": 256}


def sample_text(corpus: Path | None) -> str:
    if corpus is not None and corpus.is_file():
        return lmeval.read_text(corpus)[:300_000]
    words = "the time traveller smiled and said that we are all of us moving in time".split()
    rng = np.random.default_rng(0)
    return "".join(" ".join(rng.choice(words, 9)) + ".\n" for _ in range(4000))


def agreement(text: str, gpu: bool) -> bool:
    tok = lmeval.CharTokenizer()
    vocab = tok.fit(text)
    ids = tok.encode(text)
    train, test = ids[:-20_000], ids[-20_000:]
    ok = True
    for cell in ("rnn", "gru", "lstm"):
        model = RNN(vocab, cell=cell, hidden=128, layers=2, budget="10s", device="cpu")
        model.fit(train)
        cpu = model.score(test)
        bpc = -cpu.mean() / np.log(2)
        with tempfile.TemporaryDirectory() as tmp:  # through a checkpoint, as a user would
            model.save(Path(tmp) / "m.pt")
            loaded = RNN.load(Path(tmp) / "m.pt")
        if not gpu:
            same = np.array_equal(loaded.score(test), cpu)
            print(f"  {cell}: {bpc:.3f} bits/token on CPU; reloaded model identical: {same}")
            ok &= same
            continue
        on_gpu = loaded.to("cuda").score(test)
        diff = float(np.max(np.abs(on_gpu - cpu)))
        good = diff <= 1e-4
        ok &= good
        print(f"  {cell}: max |log p(GPU) - log p(CPU)| = {diff:.2e} ({'ok' if good else 'FAIL'})")
    return ok


def throughput() -> None:
    dev = "cuda"
    print(f"GPU: {torch.cuda.get_device_name()}")
    for batch, blocks, per_block in ((32, 5, 20), (1024, 3, 10)):
        print(f"batch {batch}, 35 steps, vocabulary {VOCAB}, SGD lr 1, clip 1, float32:")
        for cell, hidden in SIZES.items():
            contenders = {
                f"ours {cell}": Ours(cell, VOCAB, hidden, dev),
                f"nn.{cell.upper()}": PlainTorch(cell, VOCAB, hidden, dev),
            }
            if cell == "rnn" and batch == 32:
                contenders["d2l scratch rnn"] = D2LScratch(VOCAB, hidden, device=dev)
            print(f" {cell} (hidden {hidden}):")
            medians = compare(contenders, cell, hidden, batch, blocks, per_block, dev)
            if batch == 32:
                for name, rate in medians.items():
                    ref = D2L_V100.get(name) or D2L_V100.get(f"nn.{cell.upper()}")
                    print(f"    {name}: {rate / ref:.2f}x d2l's V100 figure ({ref / 1e3:.1f}k)")
        bf16 = Ours("lstm", VOCAB, 256, dev, lambda: torch.autocast("cuda", dtype=torch.bfloat16))
        print(" lstm (hidden 256), bf16 autocast:")
        compare({"ours lstm bf16": bf16}, "lstm", 256, batch, blocks, per_block, dev)


def bf16_training(text: str) -> bool:
    tok = lmeval.CharTokenizer()
    vocab = tok.fit(text)
    ids = tok.encode(text)
    ok = True
    for cell in ("rnn", "lstm"):
        model = RNN(vocab, cell=cell, hidden=256, budget="10s", precision="bf16", device="cuda")
        model.fit(ids[:-20_000])
        logp = model.score(ids[-20_000:])
        good = bool(np.all(np.isfinite(logp)))
        ok &= good
        rate = model.history[-1]["tokens_per_s"]
        print(
            f"  {cell} bf16: {-logp.mean() / np.log(2):.3f} bits/token, {rate / 1e3:.0f}k tok/s"
            f" ({'ok' if good else 'FAIL'})"
        )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, help="a text (default: synthetic)")
    args = parser.parse_args()
    text = sample_text(args.corpus)
    gpu = torch.cuda.is_available()
    print(f"torch {torch.__version__}, CUDA available: {gpu}")
    print("1. CPU/GPU agreement of score (tolerance 1e-4):")
    ok = agreement(text, gpu)
    if not gpu:
        print("no CUDA device: skipped the GPU agreement, GPU throughput and bf16 checks")
        return 0 if ok else 1
    print("2. GPU training throughput:")
    throughput()
    print("3. bf16 autocast training:")
    ok &= bf16_training(text)
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput of the rnn plugin against plain torch loops and d2l's scratch loop.

At d2l's sizes (hidden 512, batch 32, 35 steps, vocabulary 28, SGD lr 1,
clipping at norm 1) it times, in one run and in alternating blocks:

* ``rnn``: the plugin's network and its own training step (``train_step``);
* ``nn.RNN``: a plain loop over ``torch.nn.RNN`` + ``nn.Linear``, one-hot input;
* ``d2l``: d2l's from-scratch loop (8.5) re-implemented here: explicit
  tensors, one-hot input, a Python loop over the steps, d2l's clipping and SGD;

and the same for ``gru``/``lstm`` against plain ``nn.GRU``/``nn.LSTM`` loops. On a
CPU with bf16 instructions ``ours bf16`` times ``precision=bf16`` too.
Prints median tokens/s, the ratios the targets are set on, and the achieved
GFLOP/s (of the products each contender's kernels compute, see
``train_flops_per_token``) next to a measured matrix-product peak.

    python benchmarks/rnn_throughput.py [--threads 2] [--blocks 5] [--batches 8]
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from lmeval_rnn.cells import CharNet, detach_state
from lmeval_rnn.sizes import cpu_bf16
from lmeval_rnn.training import make_optimizer, train_step

VOCAB, STEPS = 28, 35


def bf16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


class D2LScratch:
    """d2l 8.5 ``RNNModelScratch`` with ``train_epoch_ch8``'s update, sequential batches."""

    def __init__(self, vocab: int, hidden: int, lr: float = 1.0, device="cpu"):
        def normal(*shape):
            return torch.randn(size=shape, device=device) * 0.01

        self.vocab, self.hidden, self.lr = vocab, hidden, lr
        self.params = [
            normal(vocab, hidden),
            normal(hidden, hidden),
            torch.zeros(hidden, device=device),
            normal(hidden, vocab),
            torch.zeros(vocab, device=device),
        ]
        for p in self.params:
            p.requires_grad_(True)

    def forward(self, x, state):
        w_xh, w_hh, b_h, w_hq, b_q = self.params
        (h,) = state
        outputs = []
        for xt in F.one_hot(x.T, self.vocab).type(torch.float32):  # x is (batch, steps)
            h = torch.tanh(torch.mm(xt, w_xh) + torch.mm(h, w_hh) + b_h)
            outputs.append(torch.mm(h, w_hq) + b_q)
        return torch.cat(outputs, dim=0), (h,)

    def step(self, x, y, state):
        if state is None:
            state = (torch.zeros((x.shape[0], self.hidden), device=x.device),)
        else:
            state = tuple(s.detach() for s in state)
        y_hat, state = self.forward(x, state)
        loss = F.cross_entropy(y_hat, y.T.reshape(-1).long()).mean()
        loss.backward()
        with torch.no_grad():
            norm = torch.sqrt(sum(torch.sum(p.grad**2) for p in self.params))
            if norm > 1:
                for p in self.params:
                    p.grad[:] *= 1 / norm
            for p in self.params:
                p -= self.lr * p.grad  # d2l's sgd with batch_size=1 (the loss is a mean)
                p.grad.zero_()
        return state


class PlainTorch(nn.Module):
    """d2l 8.6 ``RNNModel``: one-hot input, a torch recurrent module, ``nn.Linear``."""

    def __init__(self, kind: str, vocab: int, hidden: int, device="cpu"):
        super().__init__()
        self.vocab = vocab
        self.rnn = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind](vocab, hidden)
        self.linear = nn.Linear(hidden, vocab)
        self.to(device)
        self.opt = torch.optim.SGD(self.parameters(), lr=1.0)

    def step(self, x, y, state):
        state = detach_state(state)
        out, state = self.rnn(F.one_hot(x.T, self.vocab).float(), state)
        loss = F.cross_entropy(self.linear(out).reshape(-1, self.vocab), y.T.reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.parameters(), 1.0)
        self.opt.step()
        return state


class Ours:
    """The plugin's network and training step, exactly as ``fit`` runs them."""

    def __init__(self, cell: str, vocab: int, hidden: int, device="cpu", autocast=nullcontext):
        self.net = CharNet(vocab, cell, hidden, layers=1, embedding=0, dropout=0.0).to(device)
        self.autocast = autocast
        self.params = [p for p in self.net.parameters()]
        self.opt = make_optimizer("sgd", self.params, 1.0)

    def step(self, x, y, state):
        _, state = train_step(
            self.net, self.opt, self.params, x.T, y.T, detach_state(state), 1.0, self.autocast
        )
        return state


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def tokens_per_s(model, batches: list, state):
    device = batches[0][0].device
    _sync(device)
    start = time.perf_counter()
    for x, y in batches:
        state = model.step(x, y, state)
    _sync(device)
    return sum(y.numel() for _, y in batches) / (time.perf_counter() - start), state


def matmul_gflops(
    m: int, k: int, n: int, seconds: float = 1.0, device="cpu", dtype=torch.float32
) -> float:
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    _sync(device)
    return 2 * m * k * n * count / (time.perf_counter() - start) / 1e9


def train_flops_per_token(cell: str, hidden: int, vocab: int, dense_input: bool) -> float:
    """The matrix-product FLOPs (2 per multiply-add) one training token costs, as the
    kernels compute them:

    * the recurrence: ``H x gates*H`` forward, and twice that backward (the gradient
      of the state and of the weights): ``6 g H^2``;
    * the input: with a one-hot input multiplied densely (torch's modules, d2l's loop,
      our LSTM) ``2 g H V`` forward and the weights' gradient backward, but no gradient
      for the one-hot input itself: ``4 g H V``; looked up as a row of the weights
      (our tanh and GRU cells), no product at all;
    * the output layer: ``2 H V`` forward, the gradients of its input and weights
      backward: ``6 H V``.

    Elementwise work (gates, softmax, the optimizer) is left out: it is memory-bound.
    """
    gates = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
    recurrence = 6 * gates * hidden * hidden
    inputs = 4 * gates * hidden * vocab if dense_input else 0
    return recurrence + inputs + 6 * hidden * vocab


def dense_input(name: str, cell: str) -> bool:
    """Whether a contender multiplies its one-hot input densely (see above)."""
    return not (name == "ours" and cell in ("rnn", "gru"))


def compare(
    contenders: dict,
    cell: str,
    hidden: int,
    batch: int,
    blocks: int,
    per_block: int,
    device="cpu",
):
    """Median tokens/s of each contender over alternating blocks of ``per_block`` batches."""
    gen = torch.Generator().manual_seed(0)
    data = [
        (
            torch.randint(VOCAB, (batch, STEPS), generator=gen).to(device),
            torch.randint(VOCAB, (batch, STEPS), generator=gen).to(device),
        )
        for _ in range(per_block)
    ]
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    states = {name: None for name in contenders}
    for name, model in contenders.items():  # warm-up
        _, states[name] = tokens_per_s(model, data[:2], states[name])
    for _ in range(blocks):
        for name, model in contenders.items():
            rate, states[name] = tokens_per_s(model, data, states[name])
            rates[name].append(rate)
    medians = {name: statistics.median(r) for name, r in rates.items()}
    for name, rate in medians.items():
        flops = train_flops_per_token(cell, hidden, VOCAB, dense_input(name, cell))
        print(
            f"  {name:<10} {rate / 1000:8.1f} k tok/s  {rate * flops / 1e9:6.1f} GFLOP/s"
            f"  (blocks: {', '.join(f'{r / 1000:.1f}' for r in rates[name])})"
        )
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=5, help="alternating blocks per contender")
    parser.add_argument("--batches", type=int, default=8, help="batches per block")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--cells", default="rnn,gru,lstm")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU")
    # the peak: the best of a large product and of the shapes a step really multiplies
    # (one step's state by the gates' weights; all steps' states for a weight gradient)
    h, b = args.hidden, args.batch
    shapes = [(4096, 4096, 4096), (b, h, 4 * h), (h, STEPS * b, 4 * h), (STEPS * b, h, 4 * h)]
    measured = {shape: matmul_gflops(*shape) for shape in shapes}
    print(
        f"matrix-product peak: {max(measured.values()):.1f} GFLOP/s, the best of "
        + ", ".join(f"{m}x{k}x{n} {g:.1f}" for (m, k, n), g in measured.items())
    )
    if cpu_bf16():  # the yardstick of the bf16 contenders' GFLOP/s
        bf16 = max(matmul_gflops(*shape, dtype=torch.bfloat16) for shape in shapes)
        print(f"bf16 matrix-product peak: {bf16:.1f} GFLOP/s (the same shapes)")
    v = VOCAB
    print(f"sizes: hidden {h}, batch {args.batch}, steps {STEPS}, vocabulary {v}, SGD lr 1, clip 1")
    ratios = []
    for cell in args.cells.split(","):
        print(f"{cell}:")
        contenders = {"ours": Ours(cell, v, h), f"nn.{cell.upper()}": PlainTorch(cell, v, h)}
        if cell == "rnn":
            contenders["d2l"] = D2LScratch(v, h)
        if cpu_bf16():  # what precision=bf16 buys on this CPU
            contenders["ours bf16"] = Ours(cell, v, h, autocast=bf16_autocast)
        m = compare(contenders, cell, h, args.batch, args.blocks, args.batches)
        plain = m[f"nn.{cell.upper()}"]
        target = {"rnn": 1.12, "gru": 1.12, "lstm": 0.95}[cell]
        ratios.append(
            f"{cell} ours / nn.{cell.upper()} = {m['ours'] / plain:.2f} (target {target})"
        )
        if cell == "rnn":
            ratios.append(f"rnn ours / d2l scratch = {m['ours'] / m['d2l']:.2f} (target 1.2)")
        if "ours bf16" in m:
            ratios.append(
                f"{cell} ours with precision=bf16 / nn.{cell.upper()} fp32 = "
                f"{m['ours bf16'] / plain:.2f}"
            )
    print("ratios:")
    for line in ratios:
        print("  " + line)


if __name__ == "__main__":
    main()

"""What a configuration costs, known before anything is built: the shapes of its
tensors, the bytes training it takes, the memory and the CPU instructions there are.

No torch at import time, and nothing here allocates from a configuration: the
model checks a spec when it is constructed (before ``lmeval compare`` trains
anything) and a checkpoint before building a network from it, and a hostile
``hidden=20000`` or ``layers=10**9`` must cost nothing to refuse.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

try:
    import resource
except ImportError:  # not on Windows: there is no address-space limit to read
    resource = None  # type: ignore[assignment]

#: Bytes of one float32 (weights, gradients, optimizer state and activations).
FLOAT = 4
#: Floats kept per token, layer and hidden unit through a training step (forward
#: and backward, by cell): the tanh cell keeps its outputs and derivatives, the GRU
#: its three gate products, two gates and candidate, the LSTM four gates and two
#: states. Rough by design: the estimate refuses what cannot fit, it is no budget.
FLOATS_PER_UNIT = {"rnn": 6, "gru": 20, "lstm": 16}
#: The same without a backward pass (validation, scoring), as measured on the CPU: a
#: 2000-unit LSTM kept 3 floats per token and unit, torch's GRU 5.3.
FORWARD_FLOATS_PER_UNIT = {"rnn": 2, "gru": 6, "lstm": 4}
#: Copies of the logits in a training step: the logits, their log-softmax in the
#: cross-entropy, and its gradient.
LOGIT_COPIES = 3
#: Validation reads this many streams ``VALID_CHUNK_MAX`` steps at a time.
VALID_ROWS = 16
VALID_CHUNK_MAX = 512
#: Optimizer state in copies of the weights (Adam keeps two moment estimates).
OPTIMIZER_COPIES = {"sgd": 0, "adam": 2, "adamw": 2}


def tensors_per_layer(cell: str) -> int:
    """State-dict entries of one recurrent layer: W_xh, W_hh, b_h or torch's four."""
    return 3 if cell == "rnn" else 4


def tensor_count(cell: str, layers: int, embedding: int) -> int:
    """How many tensors a network of this configuration has (embedding, layers, head)."""
    return (1 if embedding > 0 else 0) + layers * tensors_per_layer(cell) + 2


def parameter_shapes(
    cell: str, vocab: int, hidden: int, layers: int, embedding: int
) -> dict[str, tuple[int, ...]]:
    """The state-dict key and shape of every tensor of :class:`~lmeval_rnn.cells.CharNet`.

    Built by formula, not by the network (``tests/test_rnn.py`` holds the two
    equal); it has one entry per layer, so check :func:`tensor_count` first
    when ``layers`` comes from an untrusted file.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    if embedding > 0:
        shapes["embed.weight"] = (vocab, embedding)
    first = embedding if embedding > 0 else vocab
    for layer in range(layers):
        inputs = first if layer == 0 else hidden
        if cell == "rnn":
            shapes[f"core.W_xh.{layer}"] = (inputs, hidden)
            shapes[f"core.W_hh.{layer}"] = (hidden, hidden)
            shapes[f"core.b_h.{layer}"] = (hidden,)
        else:
            gates = (3 if cell == "gru" else 4) * hidden
            shapes[f"core.weight_ih_l{layer}"] = (gates, inputs)
            shapes[f"core.weight_hh_l{layer}"] = (gates, hidden)
            shapes[f"core.bias_ih_l{layer}"] = (gates,)
            shapes[f"core.bias_hh_l{layer}"] = (gates,)
    if cell == "rnn":
        shapes["head.W_hq"], shapes["head.b_q"] = (hidden, vocab), (vocab,)
    else:
        shapes["head.weight"], shapes["head.bias"] = (vocab, hidden), (vocab,)
    return shapes


def parameter_count(cell: str, vocab: int, hidden: int, layers: int, embedding: int) -> int:
    """The number of weights, in closed form (Python integers: no overflow, no loop)."""
    gates = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
    biases = 1 if cell == "rnn" else 2

    def layer(inputs: int) -> int:
        return gates * hidden * (inputs + hidden) + biases * gates * hidden

    first = embedding if embedding > 0 else vocab
    return (
        vocab * max(embedding, 0)
        + layer(first)
        + (layers - 1) * layer(hidden)
        + hidden * vocab
        + vocab
    )


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one training run takes at its peak, by part (all float32).

    ``activations`` is the largest of a training step's (``batch x steps`` tokens
    through every layer, one-hot input and logits), a validation call's and a
    scoring chunk's; ``data`` the training and validation ids (int64), when known.
    """

    params: int
    weights: int
    gradients: int
    optimizer: int
    best_copy: int
    activations: int
    optimizer_name: str = "adam"
    data: int = 0

    @property
    def total(self) -> int:
        return (
            self.weights
            + self.gradients
            + self.optimizer
            + self.best_copy
            + self.activations
            + self.data
        )

    def parts(self) -> str:
        """``weights 3.2 GB, gradients 3.2 GB, ...``: where the total comes from."""
        named = [
            ("weights", self.weights),
            ("gradients", self.gradients),
            (f"{self.optimizer_name} state", self.optimizer),
            ("best-epoch copy", self.best_copy),
            ("activations", self.activations),
            ("data", self.data),
        ]
        return ", ".join(f"{name} {human(size)}" for name, size in named if size)


def training_memory(
    config: dict, vocab: int, score_chunk: int, data_tokens: int = 0
) -> MemoryEstimate:
    """The :class:`MemoryEstimate` of training the ``rnn`` model of ``config``."""
    cell, hidden, layers = config["cell"], config["hidden"], config["layers"]
    embedding, tokens = config["embedding"], config["batch"] * config["steps"]
    params = parameter_count(cell, vocab, hidden, layers, embedding)
    weights = params * FLOAT
    inputs = embedding if embedding > 0 else (3 * vocab if cell == "lstm" else 0)  # one-hot
    recurrent = FLOATS_PER_UNIT[cell] * hidden * layers
    step = tokens * (inputs + recurrent + LOGIT_COPIES * vocab)
    # no backward pass: two copies of the logits (and their log-softmax)
    forward = FORWARD_FLOATS_PER_UNIT[cell] * hidden * layers + inputs + 2 * vocab
    valid = VALID_ROWS * VALID_CHUNK_MAX * forward
    score = score_chunk * forward
    return MemoryEstimate(
        params=params,
        weights=weights,
        gradients=weights,
        optimizer=OPTIMIZER_COPIES[config["optimizer"]] * weights,
        best_copy=weights,
        activations=max(step, valid, score) * FLOAT,
        optimizer_name=config["optimizer"],
        data=data_tokens * 8,
    )


def human(size: int) -> str:
    """Bytes as a person reads them: ``3.2 GB``, ``850 MB``, ``12 kB`` (powers of 1000)."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    return f"{size} bytes"


def _meminfo_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Linux's MemAvailable (bytes): what can be allocated without swapping; None elsewhere."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _address_space_left() -> int | None:
    """Address space this process may still map under ``RLIMIT_AS``; None without a limit."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
        used = pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
    return max(0, soft - used)


def available_memory(device) -> tuple[int | None, str]:
    """Bytes that training on ``device`` (a torch device) may still allocate, and what
    bounds them: ``(None, "")`` when unknown (then nothing is refused).

    CUDA: the GPU's free memory. CPU: Linux's MemAvailable, or the address space
    left under the process's ``RLIMIT_AS`` when that is less. MPS: unknown.
    """
    if device.type == "cuda":
        import torch

        try:
            free, _ = torch.cuda.mem_get_info(device)
        except RuntimeError:  # a driver that cannot say: training will find out
            return None, ""
        return int(free), f"free on {device}"
    if device.type != "cpu":
        return None, ""
    bounds = [
        (size, what)
        for size, what in (
            (_meminfo_available(), "available"),
            (_address_space_left(), "of address space left under the process limit"),
        )
        if size is not None
    ]
    return min(bounds) if bounds else (None, "")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of this machine's CPU, as Linux lists them (empty
    where it does not: other systems are then taken to have no bf16 instructions)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def cpu_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())

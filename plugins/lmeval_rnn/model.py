"""The ``rnn`` model: d2l's character RNN (8.4-8.6), GRU and LSTM, scored with full context.

torch is imported inside the methods, so that loading the plugin (``lmeval --help``)
does not pay for it.

Why the defaults (LSTM 384 with dropout 0.3, one-hot input, batch 16, 64 steps, Adam
8e-3, the rate held then annealed over the last 30 % of a 180 s budget, fp32),
measured on held-out Shakespeare by ``benchmarks/rnn_quality.py``: on two CPU cores
LSTM training runs at about 60 % of the machine's matrix-product peak
(``benchmarks/rnn_throughput.py``), so quality per second is mostly quality per
operation, and the question is what each token teaches. Without dropout a 256-unit
LSTM overfits (training perplexity 3.0 against 4.1 on validation) and ends at 2.195
bits per character after 13 M tokens; dropout 0.25 gives 2.156 from the same tokens;
384 units with dropout 0.3 reach 2.119 from 5.4 M (dropout 0.4: 2.142; 512 units,
from the 3.3 M tokens they get in 180 s: 2.156; two layers of 256: 2.155). bf16
autocast on a CPU with AMX trains 1.2-1.5x the tokens per second and learned less
from each: in the same 180 s, 2.124 from 7.9 M tokens against fp32's 2.119 (2.205
against 2.195 at 256 units without dropout); batch 32, 1.6x the tokens per second,
learned less again (2.271 against 2.205, both bf16 at 256 units); a longer anneal,
over 60 % or all of the run, did worse (2.228, 2.234 against 2.205, likewise). The
LSTM learned more per token than the GRU and the tanh cell and runs fastest per
token on the CPU (oneDNN).
"""

from __future__ import annotations

import math
import re
import time
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

import lmeval

from .sizes import (
    MemoryEstimate,
    available_memory,
    cpu_bf16,
    human,
    parameter_shapes,
    tensor_count,
    training_memory,
)

CHECKPOINT_FORMAT = "lmeval-rnn/1"
#: Tokens per forward call when scoring: long enough to keep the kernels busy.
SCORE_CHUNK = 4096
#: Validation carved from the start of the training ids when none is given; a given
#: validation text is cut to its first VALID_MAX_TOKENS.
VALID_FRACTION = 0.05
VALID_MAX_TOKENS = 20_000

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
_TIME_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
_TOKEN_UNITS = {"tok": 1, "ktok": 10**3, "mtok": 10**6, "gtok": 10**9}
#: The seeds both torch (``manual_seed``) and numpy (``default_rng``) accept.
MAX_SEED = 2**64 - 1


def parse_budget(text: str) -> str:
    """A budget as the user types it (``60s``, ``2m``, ``1h``, ``5Mtok``, ``none``), normalised.

    Returns ``"none"``, ``"<seconds>s"`` or ``"<tokens>tok"``; raises ValueError otherwise.
    """
    low = text.strip().lower()
    if low in {"", "none", "0"}:
        return "none"
    m = _BUDGET.match(low)
    if m is None or (m.group(2) not in _TIME_UNITS and m.group(2) not in _TOKEN_UNITS):
        raise ValueError(
            "expected a time like 60s, 2m, 1h or a token count like 500ktok, 5Mtok (or none)"
        )
    amount, unit = float(m.group(1)), m.group(2)
    if amount <= 0:
        raise ValueError("a budget must be positive (or none)")
    if not math.isfinite(amount):
        raise ValueError("that budget is too large to count; give a number of digits or none")
    if unit in _TIME_UNITS:  # fixed-point, so that budget_limits reads it back
        seconds = f"{amount * _TIME_UNITS[unit]:.3f}".rstrip("0").rstrip(".")
        if float(seconds) == 0:
            raise ValueError(
                "rounds to 0s (a time budget counts milliseconds): give 0.001s or more"
            )
        return seconds + "s"
    tokens = int(amount * _TOKEN_UNITS[unit])
    if tokens == 0:
        raise ValueError("rounds to 0 tokens: give 1tok or more")
    return f"{tokens}tok"


def budget_limits(budget: str) -> tuple[float | None, int | None]:
    """``(seconds, tokens)`` of a normalised budget; ``None`` where it sets no limit."""
    budget = parse_budget(budget)
    if budget.endswith("tok"):
        return None, int(budget[:-3])
    if budget.endswith("s"):
        return float(budget[:-1]), None
    return None, None


def _device_check(value: str) -> str | None:
    if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        return None
    return "expected auto, cpu, cuda, cuda:N or mps"


def _seed_check(value: int) -> str | None:
    if 0 <= value <= MAX_SEED:
        return None
    return "must be between 0 and 2**64 - 1 (what torch and numpy accept as a seed)"


def _threads_check(value: int) -> str | None:
    """At most the cores there are: torch crashes the process (a segmentation fault)
    on a thread count far beyond them."""
    cores = lmeval.usable_cores()
    if 0 <= value <= cores:
        return None
    return f"this process may use {cores} CPU core(s): give 0 (torch's default) up to {cores}"


P = lmeval.Param
PARAMS = (
    P(
        "cell",
        str,
        "lstm",
        "recurrent cell: rnn (d2l's tanh cell), gru, lstm",
        ("rnn", "gru", "lstm"),
    ),
    P("hidden", int, 384, "hidden units per layer", check=lmeval.at_least(1)),
    P("layers", int, 1, "stacked recurrent layers", check=lmeval.at_least(1)),
    P(
        "dropout",
        float,
        0.3,
        "dropout between layers and before the output",
        check=lmeval.in_range(0, 0.9),
    ),
    P(
        "embedding",
        int,
        0,
        "input embedding size; 0 = one-hot input as in d2l",
        check=lmeval.at_least(0),
    ),
    P("steps", int, 64, "truncated back-propagation length (tokens)", check=lmeval.at_least(1)),
    P("batch", int, 16, "sequences per batch", check=lmeval.at_least(1)),
    P("optimizer", str, "adam", "sgd (as d2l), adam or adamw", ("sgd", "adam", "adamw")),
    P("lr", float, 0.0, "learning rate; 0 = sgd 1, adam/adamw 8e-3", check=lmeval.at_least(0)),
    P(
        "schedule",
        str,
        "auto",
        "anneal: hold the rate, lower it over the last 30% of the budget/epochs; "
        "plateau: halve it when validation stalls; auto: anneal with a budget, else plateau",
        ("auto", "anneal", "plateau"),
    ),
    P("clip", float, 1.0, "gradient-norm clipping (0 = off)", check=lmeval.at_least(0)),
    P("epochs", int, 50, "most passes over the training ids", check=lmeval.at_least(1)),
    P(
        "budget",
        str,
        "180s",
        "training budget: time (60s, 2m) or tokens (5Mtok), or none",
        parse=parse_budget,
    ),
    P(
        "partition",
        str,
        "sequential",
        "batches as d2l's iterators: sequential (state carried) or random",
        ("sequential", "random"),
    ),
    P(
        "patience",
        int,
        3,
        "epochs without validation gain before stopping (0 = never); with the anneal "
        "schedule only the anneal's epochs count",
        check=lmeval.at_least(0),
    ),
    P(
        "seed",
        int,
        0,
        "random seed, 0 to 2**64 - 1: same seed and device, same numbers",
        check=_seed_check,
    ),
    P(
        "device",
        str,
        "auto",
        "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps",
        check=_device_check,
    ),
    P(
        "precision",
        str,
        "fp32",
        "training arithmetic: fp32, or bf16 autocast (products in bfloat16, weights and "
        "scores fp32; on a GPU or a CPU with bf16 instructions: faster, but on the CPU "
        "it learned less per second, see the README)",
        ("fp32", "bf16"),
    ),
    P(
        "threads",
        int,
        0,
        "torch CPU threads (0 = torch's default, fastest on an idle machine; on a busy one "
        "2 threads can run 7x slower than 1, so use threads=1 there); at most the CPU cores",
        check=_threads_check,
    ),
)


def resolve_device(name: str):
    """The torch device for a ``device`` parameter; LmevalError when it is not available."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            # under torchrun each process of a host takes its own GPU
            return torch.device("cuda", lmeval.local_rank() % torch.cuda.device_count())
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise lmeval.LmevalError(
                f"device={name}: torch sees no CUDA GPU here; use device=auto or device=cpu"
            )
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise lmeval.LmevalError(
                f"device={name}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise lmeval.LmevalError("device=mps: Apple MPS is not available; use device=auto")
    return torch.device(name)


@contextmanager
def _threads(count: int):
    import torch

    if not count:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(min(count, lmeval.usable_cores()))  # far beyond the cores torch crashes
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _exact_fp32(device):
    """Scoring in true float32 on CUDA: no TF32 in cuDNN's recurrences or in products."""
    if device is None or device.type != "cuda":
        yield
        return
    import torch

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


#: Seconds of scoring after which a progress bar appears (a short text shows none).
SCORE_BAR_AFTER = 1.0


class RNN(lmeval.LanguageModel):
    """d2l's character RNN, GRU or LSTM, trained with truncated BPTT.

    The hidden state runs through the whole scored text (lines included: the
    end-of-line id is an ordinary token), so every token is conditioned on
    everything before it. The first token is predicted from the zero state
    after a start input (the end-of-line id, or ``<unk>`` without lines).
    """

    name = "rnn"
    description = "character RNN of d2l 8.4-8.6 (tanh cell, GRU, LSTM), truncated BPTT, torch"
    params = PARAMS
    # float32 kernels: a prefix scored alone may differ from the whole text in the
    # last digits (chunking changes the order of the sums)
    tolerance = 1e-5
    # a bare `lmeval compare` should finish in about a minute
    recommended = "rnn:budget=60s"
    # under torchrun the processes train one network with DDP (see parallel.py)
    distributed = True

    def __init__(self, vocab: lmeval.Vocabulary, **params: Any) -> None:
        super().__init__(vocab, **params)
        # checked now, before a comparison trains anything: a missing device, bf16 on
        # the CPU or a network too large for the memory would otherwise fail only when
        # this model's turn comes (or take the machine down with it)
        device = self._check_device()
        self._refuse_what_cannot_fit(self.memory_estimate(), device, lmeval.UsageError)
        self._reset()

    def _check_device(self):
        device = resolve_device(self.config["device"])
        if self.config["precision"] == "bf16" and device.type == "cpu" and not cpu_bf16():
            raise lmeval.UsageError(
                "precision=bf16: this CPU has no bf16 instructions (it would emulate them, "
                "slower than fp32); use precision=fp32"
            )
        return device

    def _reset(self) -> None:
        self._net = None
        self._device = None
        self._facts: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []

    @classmethod
    def _restored(cls, vocab: lmeval.Vocabulary, config: dict[str, Any]) -> RNN:
        """A model for a checkpoint's weights: the config checked as a spec is, but no
        training estimate (the weights are in memory already; it will score, not train)."""
        model = cls.__new__(cls)
        lmeval.LanguageModel.__init__(model, vocab, **config)
        model._check_device()
        model._reset()
        return model

    # -- set-up ------------------------------------------------------------

    @property
    def start_id(self) -> int:
        """The input before the first token: a text starts as if after a line end."""
        eos = self.vocab.eos_id
        return self.vocab.unk_id if eos is None else eos

    @property
    def _spec(self) -> str:
        """This model as a spec (the parameters that differ from the defaults)."""
        changed = [
            f"{p.name}={self.config[p.name]}" for p in PARAMS if self.config[p.name] != p.default
        ]
        return f"{self.name}:{','.join(changed)}" if changed else self.name

    def memory_estimate(self, data_tokens: int = 0) -> MemoryEstimate:
        """About how many bytes training takes at its peak (weights, gradients, optimizer
        state, the best epoch's copy, activations; ``data_tokens`` ids), from the
        parameters and the vocabulary alone: nothing is built."""
        return training_memory(self.config, len(self.vocab), SCORE_CHUNK, data_tokens)

    def _refuse_what_cannot_fit(self, estimate: MemoryEstimate, device, error: type) -> None:
        """Raise ``error`` when the estimate exceeds the memory there is (where it is known)."""
        available, what = available_memory(device)
        if available is None or estimate.total <= available:
            return
        raise error(
            f"{self._spec} needs about {human(estimate.total)} to train ({estimate.parts()}), "
            f"{human(available)} {what}: lower hidden, layers, embedding, batch or steps"
        )

    def _build(self, device) -> None:
        from .cells import CharNet

        c = self.config
        net = CharNet(
            len(self.vocab), c["cell"], c["hidden"], c["layers"], c["embedding"], c["dropout"]
        )
        self._net = net.to(device)
        self._device = device

    def _autocast(self):
        import torch

        if self.config["precision"] == "bf16":
            return lambda: torch.autocast(self._device.type, dtype=torch.bfloat16)
        return nullcontext

    def _checked(self, ids: np.ndarray, what: str) -> np.ndarray:
        """``ids`` as a 1-D integer array (no copy when they are one: scoring converts
        a chunk at a time), all in the vocabulary."""
        arr = np.asarray(ids).reshape(-1)
        if arr.dtype.kind not in "iu":
            arr = arr.astype(np.int64)
        if len(arr) and (arr.min() < 0 or arr.max() >= len(self.vocab)):
            raise lmeval.LmevalError(
                f"{what} contains ids outside the vocabulary of {len(self.vocab)} tokens"
            )
        return arr

    def _ids(self, ids: np.ndarray, what: str):
        """The ids as a tensor on the device (training reads them there)."""
        import torch

        arr = self._checked(ids, what).astype(np.int64)  # a copy, which torch may write
        return torch.as_tensor(arr, device=self._device)

    def _require_net(self):
        if self._net is None:
            raise lmeval.LmevalError("the rnn model is not trained: call fit() or load() first")
        return self._net

    # -- training ----------------------------------------------------------

    def fit(self, train_ids: np.ndarray, valid_ids: np.ndarray | None = None) -> None:
        """Train; under ``torchrun`` together with the other ranks (``parallel``).

        Every rank checks what it can (the text's length, the memory) and none
        trains unless all can: rank 0 then raises the problem (its row fails),
        the others return untrained (they score nothing).
        """
        began = time.perf_counter()  # a time budget covers the set-up too
        import torch

        from .parallel import join
        from .training import Limits, train

        c = self.config
        device = resolve_device(c["device"])
        team = join(device)
        problem = None
        try:
            train_ids, valid_ids = self._split_checked(train_ids, valid_ids, device)
        except lmeval.LmevalError as exc:
            problem = str(exc)
        problem = team.meet(problem)
        if problem is not None:
            if team.leads:
                raise lmeval.LmevalError(problem)
            return
        seconds, tokens = budget_limits(c["budget"])
        limits = Limits(epochs=c["epochs"], seconds=seconds, tokens=tokens)
        fork = [device.index or 0] if device.type == "cuda" else []
        with _threads(c["threads"]), torch.random.fork_rng(devices=fork):
            torch.manual_seed(c["seed"])
            self._build(device)
            team.reseed(c["seed"])
            outcome = train(
                self._net,
                self._ids(train_ids, "the training text"),
                self._ids(valid_ids, "the validation text"),
                c,
                limits,
                self.start_id,
                self._autocast(),
                began,
                team,
            )
            used_threads = torch.get_num_threads()
        self.history = outcome.history
        self._facts = {
            "device": str(device),
            "precision": c["precision"],
            "threads": used_threads if device.type == "cpu" else None,
            "stop_reason": outcome.stop_reason,
            # Ctrl-C or SIGTERM cut the training short: lmeval scores it, never caches it
            "interrupted": outcome.stop_reason == "interrupted",
            "best_epoch": outcome.best_epoch,
            "tokens_trained": outcome.tokens,
            "train_seconds": round(outcome.seconds, 3),
        }
        if not team.alone:
            self._facts["ranks"] = team.world

    def _split_checked(
        self, train_ids: np.ndarray, valid_ids: np.ndarray | None, device
    ) -> tuple[np.ndarray, np.ndarray]:
        """The training and validation ids (validation carved when none is given),
        refused when too short or too large for the memory there is."""
        train_ids = np.asarray(train_ids, dtype=np.int64)
        if valid_ids is None or len(valid_ids) < 2:
            # from the start: the end of a training text is nearest the test text that
            # usually follows it, and the most useful part to train on (on Shakespeare,
            # carving the end cost 0.2 bits per character: the test continues its play)
            n_valid = min(VALID_MAX_TOKENS, max(2, int(len(train_ids) * VALID_FRACTION)))
            train_ids, valid_ids = train_ids[n_valid:], train_ids[:n_valid]
        # validation only picks the best epoch: its first tokens do, and cost less time
        valid_ids = np.asarray(valid_ids, dtype=np.int64)[:VALID_MAX_TOKENS]
        if len(train_ids) < 2:
            raise lmeval.LmevalError("the training text is too short for the rnn model")
        # again, with the data and the memory there is now (other rows may hold some):
        # refused here, this row fails and the comparison goes on
        estimate = self.memory_estimate(len(train_ids) + len(valid_ids))
        self._refuse_what_cannot_fit(estimate, device, lmeval.LmevalError)
        return train_ids, valid_ids

    # -- scoring -----------------------------------------------------------

    def _run(
        self,
        first: int,
        rest: np.ndarray,
        state,
        chunk: int,
        targets: np.ndarray | None = None,
        argmax: bool = False,
    ):
        """Feed the inputs ``[first, *rest]`` ``chunk`` tokens at a time, carrying ``state``.

        ``argmax``: instead, the most probable next id after every input (int64).

        With ``targets`` (one per input): their log-probabilities (float64),
        written chunk by chunk into the one array returned, so that scoring holds
        the answer (8 bytes a token) and one chunk, never a copy of the text.
        Without: the log-probabilities after the last input (a float32 tensor).
        Both with the state at the end.
        """
        import torch

        net = self._require_net()
        net.eval()
        total = len(rest) + 1
        out = None
        if targets is not None or argmax:
            out = np.empty(total, dtype=np.int64 if argmax else np.float64)
        last = None
        began = time.perf_counter()
        with (
            torch.no_grad(),
            _threads(self.config["threads"]),
            _exact_fp32(self._device),
            ExitStack() as shown,
        ):
            bar = None
            for s in range(0, total, chunk):
                # a bar once scoring has taken a second: a short text shows none
                if bar is None and time.perf_counter() - began > SCORE_BAR_AFTER:
                    bar = shown.enter_context(lmeval.progress("score rnn", total, "tok"))
                if bar is not None:
                    bar.update(completed=s)
                e = min(s + chunk, total)
                piece = np.r_[np.int64(first), rest[: e - 1]] if s == 0 else rest[s - 1 : e - 1]
                inputs = torch.tensor(piece, dtype=torch.int64, device=self._device)
                logits, state = net(inputs.view(-1, 1), state)
                logp = torch.log_softmax(logits[:, 0].float(), dim=-1)
                if argmax:
                    out[s:e] = logp.argmax(dim=1).cpu().numpy()
                elif out is not None:
                    wanted = torch.tensor(targets[s:e], dtype=torch.int64, device=self._device)
                    picked = logp.gather(1, wanted.view(-1, 1))[:, 0]
                    out[s:e] = picked.double().cpu().numpy()
                last = logp[-1]
        return (out if out is not None else last), state

    def _score(self, ids: np.ndarray, chunk: int) -> np.ndarray:
        self._require_net()
        target = self._checked(ids, "the scored text")
        if len(target) == 0:
            return np.zeros(0, dtype=np.float64)
        logp, _ = self._run(self.start_id, target[:-1], None, chunk, target)
        return logp

    def top1(self, ids: np.ndarray) -> np.ndarray:
        """The most probable next id at every position of ``ids``, from the same pass
        as :meth:`score`. (Optional, duck-typed: lmeval's ``accuracy`` metric reads it.)"""
        self._require_net()
        target = self._checked(ids, "the scored text")
        if len(target) == 0:
            return np.zeros(0, dtype=np.int64)
        top, _ = self._run(self.start_id, target[:-1], None, SCORE_CHUNK, argmax=True)
        return top

    def score(self, ids: np.ndarray) -> np.ndarray:
        """``log p(ids[i] | ids[:i])``, the state carried through the whole sequence.

        Memory: the answer (8 bytes a token) and one chunk of ``SCORE_CHUNK``
        tokens, whatever the length of the text.
        """
        return self._score(ids, SCORE_CHUNK)

    def _after(self, context_ids: np.ndarray):
        """Log-probabilities (float32 tensor) after the context, and the state there."""
        self._require_net()
        context = self._checked(context_ids, "the context")
        return self._run(self.start_id, context, None, SCORE_CHUNK)

    def next_token_logprobs(self, context_ids: np.ndarray) -> np.ndarray:
        logp, _ = self._after(context_ids)
        return logp.double().cpu().numpy()

    def generate(
        self, prefix_ids: np.ndarray, n: int, temperature: float = 1.0, seed: int = 0
    ) -> np.ndarray:
        """Warm the state up on the prefix once, then sample one token per step."""
        rng = np.random.default_rng(seed)
        logp, state = self._after(prefix_ids)
        out: list[int] = []
        no_more = np.zeros(0, dtype=np.int64)
        for _ in range(n):
            out.append(lmeval.sample_id(logp.double().cpu().numpy(), temperature, rng))
            logp, state = self._run(out[-1], no_more, state, 1)
        return np.asarray(out, dtype=np.int64)

    def to(self, device: str) -> RNN:
        """Move the trained network to ``device`` (auto, cpu, cuda, cuda:N, mps)."""
        net = self._require_net()
        self._device = resolve_device(device)
        self._net = net.to(self._device)
        self._facts["device"] = str(self._device)
        return self

    # -- facts -------------------------------------------------------------

    @property
    def num_params(self) -> int | None:
        if self._net is None:
            return None
        return sum(p.numel() for p in self._net.parameters() if p.requires_grad)

    def details(self) -> dict[str, Any]:
        return {**self._facts, "history": self.history}

    # -- checkpoints -------------------------------------------------------

    def save(self, path: Path) -> None:
        import torch

        net = self._require_net()
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "config": dict(self.config),
            "vocab": self.vocab.to_dict(),
            "state": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "history": self.history,
            "facts": self._facts,
        }
        with lmeval.atomic_write(path, "wb") as handle:
            torch.save(checkpoint, handle)

    def _check_state(self, path: Path, state: Any) -> None:
        """Every stored tensor as the config implies it (name, float32, shape), before
        anything is built from it: a small file whose config claims a huge network
        is refused without allocating that network."""
        import torch

        c = self.config
        implied = (
            f"cell={c['cell']}, hidden={c['hidden']}, layers={c['layers']}, "
            f"embedding={c['embedding']}, vocabulary {len(self.vocab)}"
        )

        def damaged(problem: str) -> lmeval.LmevalError:
            return lmeval.LmevalError(
                f"{path} is a damaged rnn checkpoint: {problem}; save the model again"
            )

        if not isinstance(state, dict):
            raise damaged(f"its state is a {type(state).__name__}, not a dict of tensors")
        count = tensor_count(c["cell"], c["layers"], c["embedding"])
        if count > len(state) + 64:  # a config far beyond the file: not worth listing
            raise damaged(f"it holds {len(state)} tensors, its config ({implied}) implies {count}")
        expected = parameter_shapes(
            c["cell"], len(self.vocab), c["hidden"], c["layers"], c["embedding"]
        )
        missing = [key for key in expected if key not in state]
        extra = sorted(str(key) for key in state if key not in expected)
        if missing or extra:
            problems = [
                f"{what} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                for what, keys in (("missing", missing), ("unexpected", extra))
                if keys
            ]
            raise damaged(f"its config ({implied}) implies other tensors: {'; '.join(problems)}")
        for key, shape in expected.items():
            tensor = state[key]
            if not isinstance(tensor, torch.Tensor):
                raise damaged(f"{key} is a {type(tensor).__name__}, not a tensor")
            if tensor.dtype != torch.float32:
                raise damaged(f"tensor {key} is {tensor.dtype}, expected torch.float32")
            if tuple(tensor.shape) != shape:
                raise damaged(
                    f"tensor {key} has shape {tuple(tensor.shape)}, expected {shape} "
                    f"for its config ({implied})"
                )
            if not tensor.is_contiguous():  # a stride-0 view claims more than the file holds
                raise damaged(f"tensor {key} is not stored contiguously")

    @classmethod
    def load(cls, path: Path) -> RNN:
        import torch

        from .cells import CharNet

        path = Path(path)
        if not path.is_file():
            raise lmeval.LmevalError(f"rnn checkpoint not found: {path}")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds for a damaged file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise lmeval.LmevalError(
                f"{path} is not a readable rnn checkpoint ({first[:120]})"
            ) from None
        if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
            raise lmeval.LmevalError(f"{path} is not an rnn checkpoint ({CHECKPOINT_FORMAT})")
        try:
            config = dict(data["config"])
            try:
                device = resolve_device(config.get("device", "auto"))
            except lmeval.LmevalError:  # trained on a device this machine lacks
                device = resolve_device("auto")
            if device.type == "cpu" and config.get("precision") == "bf16" and not cpu_bf16():
                config["precision"] = "fp32"  # a training setting this CPU cannot take
            config["device"] = str(device)
            threads = config.get("threads", 0)
            if isinstance(threads, int) and threads > lmeval.usable_cores():
                config["threads"] = lmeval.usable_cores()  # it came from a machine with more cores
            model = cls._restored(lmeval.Vocabulary.from_dict(data["vocab"]), config)
            state = data["state"]
            history = [dict(row) for row in data.get("history", [])]
            facts = {**dict(data.get("facts", {})), "device": str(device)}
        except (KeyError, TypeError, ValueError, RuntimeError, lmeval.UsageError) as exc:
            detail = " ".join(str(exc).split())[:160]
            raise lmeval.LmevalError(f"{path} is a damaged rnn checkpoint ({detail})") from None
        model._check_state(path, state)
        c = model.config
        # built without memory, then the loaded tensors become its parameters: no
        # second copy of the weights, no random initialisation to overwrite
        with torch.device("meta"):
            net = CharNet(
                len(model.vocab), c["cell"], c["hidden"], c["layers"], c["embedding"], c["dropout"]
            )
        net.load_state_dict(state, assign=True)
        model._net, model._device = net.to(device), device
        model.history, model._facts = history, facts
        model._net.eval()
        return model

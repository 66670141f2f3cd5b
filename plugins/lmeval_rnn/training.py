"""Training: batches as d2l's two iterators, truncated BPTT, validation, stopping.

Alone or as one rank of several (``parallel``: each trains on its rows of every
batch; rank 0 decides when to stop and what the schedule does, and validates).

Imports torch at import time: the plugin imports this module lazily.
"""

from __future__ import annotations

import copy
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import lmeval

from .cells import detach_state
from .parallel import Team

#: The learning rate each optimizer gets when ``lr=0`` (automatic).
DEFAULT_LR = {"sgd": 1.0, "adam": 8e-3, "adamw": 8e-3}
#: The ``anneal`` schedule holds the rate, then over this last part of the run
#: (by whichever limit binds first) lowers it along a half cosine ...
ANNEAL_PART = 0.3
#: ... to this fraction of the starting rate.
FINAL_LR_FRACTION = 0.02
#: Time steps per forward call of a validation under a time budget: past the deadline
#: it stops after the current call, so this bounds the overrun (16 rows x 64 steps, a
#: forward pass over as many tokens as a default training batch).
VALID_CHUNK = 64
#: Before the first validation has been timed, its time is estimated from the training
#: rate: a forward pass costs about this share of a training step (the backward pass
#: about two forward passes); measured, a validation ran 3.7-4x faster per token.
FORWARD_SHARE = 1 / 3
#: On a GPU the clock runs ahead of queued work: within this many seconds of the point
#: where training must stop, every batch waits for the device before reading the clock.
SYNC_MARGIN = 1.0


def annealed(lr0: float, progress: float) -> float:
    """The ``anneal`` schedule's rate at ``progress`` (0..1) through the run."""
    t = max(0.0, (progress - (1 - ANNEAL_PART)) / ANNEAL_PART)
    return lr0 * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * t)))


def sequential_batches(
    data: torch.Tensor, batch: int, steps: int, rng: np.random.Generator, least: int = 1
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """d2l's ``seq_data_iter_sequential``: ``batch`` contiguous rows, read ``steps`` at a time.

    Consecutive batches continue each row, so the state can be carried. Yields
    time-major ``(x, y)`` pairs of shape ``(T, B)``, ``y`` being ``x`` shifted by one.
    A text too short for ``batch`` rows of ``steps`` gets fewer rows, but at least
    ``least`` (one per rank: each must have rows to train on), shorter than ``steps``.
    """
    # d2l draws the offset from [0, steps); on a short text a large offset would skip
    # much of it, so it is also kept below 5 % of the text
    offset = int(rng.integers(0, max(1, min(steps, (len(data) - 1) // 20))))
    usable = len(data) - 1 - offset
    rows = max(least, min(batch, usable // max(1, steps)))
    cols = usable // rows
    xs = data[offset : offset + rows * cols].view(rows, cols)
    ys = data[offset + 1 : offset + 1 + rows * cols].view(rows, cols)
    for start in range(0, cols, steps):
        yield xs[:, start : start + steps].t(), ys[:, start : start + steps].t()


def random_batches(
    data: torch.Tensor, batch: int, steps: int, rng: np.random.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """d2l's ``seq_data_iter_random``: shuffled subsequences, each batch from the zero state."""
    steps = max(1, min(steps, len(data) - 1))
    offset = int(rng.integers(0, min(steps, len(data) - steps)))
    count = (len(data) - 1 - offset) // steps
    starts = offset + steps * rng.permutation(count)
    window = torch.arange(steps, device=data.device)
    for i in range(0, count, batch):
        index = (
            torch.as_tensor(starts[i : i + batch], device=data.device)[None, :] + window[:, None]
        )
        yield data[index], data[index + 1]


def shares(
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]], team: Team
) -> Iterator[tuple[torch.Tensor, torch.Tensor, int, float]]:
    """This rank's rows of every batch, with the batch's token count and the weight
    of this rank's mean loss (its share of the rows times the ranks: 1 for equal
    shares), so that DDP's average of the gradients is the gradient of the whole
    batch's mean. A batch with fewer rows than ranks (the last of ``partition=random``
    may be) is skipped: some rank would have nothing to train on. Alone: every batch
    whole, weight 1."""
    for x, y in batches:
        rows = x.shape[1]
        if rows < team.world:
            continue
        part = team.share(rows)
        yield x[:, part], y[:, part], y.numel(), (part.stop - part.start) * team.world / rows


def count_batches(length: int, batch: int, steps: int, partition: str) -> int:
    """About how many batches one epoch has (for the progress bar)."""
    if partition == "random":
        return max(1, math.ceil((length - 1) // max(1, steps) / batch))
    rows = max(1, min(batch, (length - 1) // max(1, steps)))
    return max(1, math.ceil((length - 1) // rows / steps))


@dataclass
class Limits:
    """When to stop: epochs, and an optional wall-clock or token budget."""

    epochs: int
    seconds: float | None = None
    tokens: int | None = None

    def fraction(self, epoch_fraction: float, seconds: float, tokens: int) -> float:
        """How far through the training run we are, 0..1, by whichever limit binds first."""
        parts = [epoch_fraction / self.epochs]
        if self.seconds:
            parts.append(seconds / self.seconds)
        if self.tokens:
            parts.append(tokens / self.tokens)
        return min(1.0, max(parts))


@dataclass
class Outcome:
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = ""
    tokens: int = 0
    seconds: float = 0.0
    best_epoch: int = 0


#: The signals that ask training to stop: Ctrl-C, and what ``timeout``, ``docker stop``
#: and batch schedulers send (SIGTERM; absent on some platforms).
STOP_SIGNALS = tuple(
    sig for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if sig is not None
)


@contextmanager
def signals_stop(flag: dict[str, str]) -> Iterator[None]:
    """While training, Ctrl-C or SIGTERM asks to stop at the end of the batch (the best
    model is kept and scored); a second one of either aborts (KeyboardInterrupt).

    Installed only in the main thread (signal handlers live there), over whatever
    handlers were there (the CLI's own included), which are restored afterwards. A
    signal whose handler was not set from Python is left alone (it could not be
    put back), and so is one that is ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    # a signal ignored on purpose (a bench worker, nohup) stays ignored
    previous = {
        sig: handler
        for sig, handler in previous.items()
        if handler is not None and handler is not signal.SIG_IGN
    }

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def handler(signum, frame):
        if flag.get("stop") == "interrupted":
            restore()
            raise KeyboardInterrupt
        flag["stop"] = "interrupted"

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        restore()


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.synchronize()


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)


def train_step(
    net, optimizer, params, x, y, state, clip: float, autocast=nullcontext, weight: float = 1.0
):
    """One truncated-BPTT update on time-major ``x``/``y``; returns the mean loss and new state.

    ``weight`` scales the loss the gradients come from (see :func:`shares`), not the
    loss returned. ``net`` may be wrapped in DDP: the vocabulary is read off the logits.
    """
    with autocast():
        logits, state = net(x, state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    (loss if weight == 1.0 else loss * weight).backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()
    return loss.detach(), state


def mean_nll(
    net,
    data: torch.Tensor,
    start_id: int,
    rows: int = 16,
    chunk: int = 512,
    deadline: float | None = None,
) -> tuple[float, bool]:
    """Mean negative log-likelihood (nats) of ``data``, read as ``rows`` parallel streams,
    and whether all of it was read.

    Each stream carries its state through its part of the text; the first
    token of each is predicted after ``start_id`` from the zero state, as
    :meth:`score` does for a whole text. Used for validation, where reading
    several streams at once is much faster than one and differs only at the
    stream starts. Past ``deadline`` (``time.perf_counter()``) it stops after the
    current chunk and returns the mean so far, so that a time budget holds even
    when the machine is slower than it was a moment ago; a deadline already past
    reads only the first chunk (a mean needs some tokens).
    """
    rows = max(1, min(rows, len(data) // 64))
    cols = len(data) // rows
    targets = data[: rows * cols].view(rows, cols).t()
    inputs = torch.cat([targets.new_full((1, rows), start_id), targets[:-1]])
    total, count = 0.0, 0
    state = None
    complete = True
    with torch.no_grad():
        for s in range(0, cols, chunk):
            logits, state = net(inputs[s : s + chunk], state)
            target = targets[s : s + chunk]
            loss = F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum"
            )
            total += float(loss)
            count += target.numel()
            if deadline is not None and time.perf_counter() > deadline:
                complete = s + chunk >= cols
                break
    return total / count, complete


class QuietBar:
    """The progress bar of a rank above 0: it shows nothing (rank 0 shows the run)."""

    def update(self, **fields: Any) -> None:
        pass


def train(
    net,
    train_data: torch.Tensor,
    valid_data: torch.Tensor,
    config: dict[str, Any],
    limits: Limits,
    start_id: int,
    autocast,
    began: float | None = None,
    team: Team | None = None,
) -> Outcome:
    """Train ``net`` in place; on return it holds the state of the best validation epoch.

    A time budget counts from ``began`` (``time.perf_counter()``; default: now),
    so that set-up before training is inside it too. It holds validation as well:
    training stops when the next batch and the validation after it would not fit,
    and a validation still running at the deadline is cut short after its current
    call, so that a run ends at most about one batch (or one validation call of
    ``VALID_CHUNK`` steps, when validation is slower than estimated) past the budget.

    With a ``team`` of several ranks (see :mod:`.parallel`) each trains ``net``
    wrapped in DDP on its rows of every batch; rank 0 alone reads the clock,
    validates and shows progress, and every stop and learning rate is the one it
    sends. Only rank 0's ``net`` ends at the best epoch (the others' end where
    training stopped: they score nothing), and only its outcome counts the time.
    """
    team = team or Team()
    rng = np.random.default_rng(config["seed"])
    lr0 = config["lr"] or DEFAULT_LR[config["optimizer"]]
    schedule = config["schedule"]
    if schedule == "auto":  # annealing needs to know where the run ends: a budget says
        schedule = "anneal" if limits.seconds or limits.tokens else "plateau"
    params = [p for p in net.parameters() if p.requires_grad]
    model = team.wrap(net, train_data.device)  # what trains: net itself when alone
    optimizer = make_optimizer(config["optimizer"], params, lr0)
    batches = random_batches if config["partition"] == "random" else sequential_batches
    extra = {"least": team.world} if batches is sequential_batches else {}
    per_epoch = count_batches(
        len(train_data), config["batch"], config["steps"], config["partition"]
    )
    outcome = Outcome()
    best = math.inf
    best_state = None
    stale = 0
    lr = lr0
    # this rank's signals and (rank 0) its own reasons to stop; ``stop``: the reason
    # every rank acts on, as agreed (alone: the flag's)
    flag: dict[str, str] = {}
    stop: str | None = None
    began = time.perf_counter() if began is None else began
    deadline = began + limits.seconds if limits.seconds else None
    # the time the next validation will take, kept free of training inside a time
    # budget: measured once a validation has run, estimated from the training rate
    # before the first (which otherwise would start only when the budget is spent)
    valid_seconds = 0.0
    valid_measured = False
    valid_tokens = len(valid_data)
    valid_chunk = VALID_CHUNK if deadline is not None else 512
    step_seconds = 0.0  # the last batch's time: the next one takes about as long
    if limits.seconds:
        total, unit = limits.seconds, "s"
    elif limits.tokens:
        total, unit = limits.tokens, "tok"
    else:
        total, unit = limits.epochs * per_epoch, "batch"
    # how far through the run the next batch is (its annealed rate): rank 0's
    progress = team.agree(flag, limits.fraction(0.0, time.perf_counter() - began, 0))[1]
    shown = lmeval.progress("train rnn", total=total, unit=unit) if team.leads else None

    with shown or nullcontext(QuietBar()) as bar, signals_stop(flag):
        for epoch in range(1, limits.epochs + 1):
            model.train()
            state = None
            loss_sum = torch.zeros((), device=train_data.device)
            tokens = 0  # in the whole batches (every rank's rows)
            seen = 0  # in this rank's rows
            epoch_began = time.perf_counter()
            last_shown = epoch_began
            rows = shares(batches(train_data, config["batch"], config["steps"], rng, **extra), team)
            for done, (x, y, batch_tokens, weight) in enumerate(rows):
                if schedule == "anneal":
                    lr = annealed(lr0, progress)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                state = None if config["partition"] == "random" else detach_state(state)
                step_began = time.perf_counter()
                loss, state = train_step(
                    model, optimizer, params, x, y, state, config["clip"], autocast, weight
                )
                loss_sum += loss * y.numel()
                seen += y.numel()
                tokens += batch_tokens
                now = time.perf_counter()
                if team.leads:  # the clock, the budgets and the bar are rank 0's
                    if deadline is not None:
                        if now + step_seconds + valid_seconds >= deadline - SYNC_MARGIN:
                            synchronize(train_data.device)  # near the end: time the work done
                            now = time.perf_counter()
                        if not valid_measured:
                            valid_seconds = (
                                FORWARD_SHARE * valid_tokens * (now - epoch_began) / tokens
                            )
                        step_seconds = now - step_began
                        # stop when the next batch would end in the time kept for validation
                        if now + step_seconds + valid_seconds >= deadline:
                            flag.setdefault("stop", "budget")
                    elapsed = now - began
                    if limits.tokens and outcome.tokens + tokens >= limits.tokens:
                        flag.setdefault("stop", "budget")
                    if unit == "batch":
                        bar.update(advance=1)
                    if now - last_shown > 0.5 or "stop" in flag:
                        last_shown = now
                        if unit == "s":
                            bar.update(completed=min(elapsed, total))
                        elif unit == "tok":
                            bar.update(completed=min(outcome.tokens + tokens, total))
                        rate = tokens / max(now - epoch_began, 1e-9)
                        if not math.isfinite(float(loss_sum)):
                            flag["stop"] = "diverged"
                        train_ppl = lmeval.perplexity(float(loss_sum) / seen)
                        bar.update(
                            info=f"epoch {epoch} train ppl {train_ppl:.2f}"
                            + (
                                f" valid ppl {outcome.history[-1]['valid_ppl']:.2f}"
                                if outcome.history
                                else ""
                            )
                            + f" {rate / 1000:.0f}k tok/s"
                        )
                    progress = limits.fraction(
                        epoch - 1 + (done + 1) / per_epoch,
                        time.perf_counter() - began + valid_seconds,
                        outcome.tokens + tokens,
                    )
                stop, progress = team.agree(flag, progress)
                if stop:
                    break
            local_sum = float(loss_sum)
            train_seconds = time.perf_counter() - epoch_began
            net.eval()
            valid_began = time.perf_counter()
            valid_nll, complete = 0.0, True
            if team.leads:  # validation only picks the best epoch: rank 0's to pick
                with autocast():
                    valid_nll, complete = mean_nll(
                        net, valid_data, start_id, chunk=valid_chunk, deadline=deadline
                    )
                now = time.perf_counter()
                # the next validation will take about as long: keep it inside a time budget
                valid_seconds, valid_measured = now - valid_began, True
                # stop when the deadline cut the validation, or there is no time for
                # another batch and its validation
                if deadline is not None and (
                    not complete or now + step_seconds + valid_seconds >= deadline
                ):
                    flag.setdefault("stop", "budget")
                progress = limits.fraction(
                    epoch, time.perf_counter() - began + valid_seconds, outcome.tokens + tokens
                )
            stop, summed, valid_nll, complete, progress = team.agree_epoch(
                flag, local_sum, valid_nll, complete, progress
            )
            if not (math.isfinite(summed) and math.isfinite(valid_nll)):
                stop = "diverged"
            outcome.tokens += tokens
            row = {
                "epoch": epoch,
                # nats per token, as measured; perplexity only through the core's formula
                "train_nats": summed / max(tokens, 1),
                "valid_nats": valid_nll,
                "train_ppl": lmeval.perplexity(summed / max(tokens, 1)),
                "valid_ppl": lmeval.perplexity(valid_nll),
                "tokens": tokens,
                "tokens_per_s": tokens / max(train_seconds, 1e-9),
                "seconds": train_seconds + valid_seconds,
                "lr": lr,
            }
            outcome.history.append(row)
            if stop == "diverged":
                break
            # a validation cut short by the deadline measured another text: it may
            # stand as the first estimate, never displace a complete one
            if valid_nll < best and (complete or outcome.best_epoch == 0):
                best, stale = valid_nll, 0
                outcome.best_epoch = epoch
                # training goes on from this state: keep a copy to come back to (when it
                # stops here the net is the best state, and copying would only cost time)
                keep = team.leads and not stop
                best_state = copy.deepcopy(net.state_dict()) if keep else None
            else:
                stale += 1
                if schedule == "plateau":
                    lr /= 2
                    for group in optimizer.param_groups:
                        group["lr"] = lr
            bar.update(
                info=f"epoch {epoch} train ppl {row['train_ppl']:.2f} valid ppl "
                f"{row['valid_ppl']:.2f} {row['tokens_per_s'] / 1000:.0f}k tok/s"
            )
            if stop:
                break
            if schedule == "anneal" and progress < 1 - ANNEAL_PART:
                # at the full rate validation wanders (0.1 in perplexity from epoch to
                # epoch on Shakespeare): a stall there is no end, the anneal brings the
                # gain, so patience counts only the epochs of the anneal
                stale = 0
            if config["patience"] and stale >= config["patience"]:
                stop = "early stopping"
                break
        else:
            stop = "epochs"
    outcome.stop_reason = stop
    outcome.seconds = time.perf_counter() - began
    net.eval()
    if not team.leads:  # rank 0 keeps the best weights, and reports a divergence
        return outcome
    if outcome.best_epoch == 0 and outcome.stop_reason == "diverged":
        raise lmeval.LmevalError(
            f"rnn training diverged in epoch {len(outcome.history)} (the loss is not finite); "
            "lower lr or keep clip > 0"
        )
    if outcome.best_epoch != len(outcome.history):  # the net trained past its best
        net.load_state_dict(best_state)
    return outcome

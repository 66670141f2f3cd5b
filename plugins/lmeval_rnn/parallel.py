"""One network trained by the processes ``torchrun`` starts, with DistributedDataParallel.

Imports torch at import time: the plugin imports this module lazily (from ``fit``).

The ``batch`` parameter stays the global batch. Every rank draws the same batches
(the same seed: the same offsets, order and partition) and trains on its share of
the rows of each, carrying the hidden state of its own rows from one sequential
batch to the next; DDP averages the gradients, so every rank takes the step that
one process takes on the whole batch (a share of unequal size, as the last batch
of ``partition=random`` may be, is weighted by its rows so that the average stays
the mean over the whole batch). DDP broadcasts rank 0's initial weights.

Who decides what. A decision that ends training or changes its schedule, taken
by one rank alone, would leave the others waiting in a collective for ever (or
training with another learning rate). So rank 0 decides, and every rank learns
the decision at the same point of the loop:

* after every batch, one all-reduce of three numbers: rank 0's stop reason (its
  time budget, its token budget, a diverged loss) and its progress through the run
  (which sets the ``anneal`` rate of the next batch), and whether any rank was
  sent Ctrl-C or SIGTERM (``signals_stop``: a signal to any rank stops them all
  at the same batch);
* after every epoch, one more: rank 0 alone validates (the others wait) and sends
  the validation loss, whether it read all of it, its stop reason and progress,
  while every rank adds its training loss. Every rank then keeps the same books
  (the best epoch, patience, the ``plateau`` halving), so early stopping and the
  schedule agree. Only rank 0 keeps a copy of the best epoch's weights: they are
  what it scores;
* before training, each rank says what it found wrong (a training text too short,
  too little memory); if any did, none trains: rank 0 raises (its row carries the
  error) and the others return untrained (an exception there would end the run:
  torchrun stops every rank when one fails).

These exchanges go over gloo on the CPU even when the gradients go over NCCL:
reading a CUDA tensor every batch would drain the GPU's queue. A rank that stops
answering makes the others fail after ``STEP_TIMEOUT`` (one that dies, at once:
its sockets close, and torchrun stops the rest).
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

import lmeval

#: How long a rank waits for the others where a fit starts (the process group's
#: rendezvous, then the exchange of problems): meanwhile rank 0 may be scoring the
#: previous row, or fitting the models that train on rank 0 alone.
MEETING_TIMEOUT = timedelta(hours=2)
#: How long one exchange inside training may wait (a batch, rank 0's validation):
#: past it a rank fails rather than hang on a peer that stopped answering.
STEP_TIMEOUT = timedelta(minutes=10)
#: Stop reasons as numbers that add up: rank 0 sends its own, the others 0.
REASONS = ("", "budget", "interrupted", "diverged")


@dataclass
class Team:
    """The processes that train one network together: a team of one when alone."""

    rank: int = 0
    world: int = 1
    lobby: Any = None  # gloo, MEETING_TIMEOUT: where a fit starts
    control: Any = None  # gloo, STEP_TIMEOUT: the decisions inside training
    gradients: Any = None  # the backend's group, STEP_TIMEOUT: DDP's all-reduces

    @property
    def alone(self) -> bool:
        return self.world == 1

    @property
    def leads(self) -> bool:
        """Rank 0: it decides, validates, shows progress and keeps the best weights."""
        return self.rank == 0

    def share(self, rows: int) -> slice:
        """This rank's rows of a batch of ``rows`` (contiguous, sizes within one)."""
        return slice(self.rank * rows // self.world, (self.rank + 1) * rows // self.world)

    def wrap(self, net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``net`` under DDP (which broadcasts rank 0's weights now); ``net`` when alone."""
        if self.alone:
            return net
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids, process_group=self.gradients)

    def reseed(self, seed: int) -> None:
        """After the weights are drawn: another dropout stream on every rank (with the
        same seed, every rank's rows would get the same masks)."""
        if not self.alone:
            torch.manual_seed((seed + self.rank) % 2**64)

    def meet(self, problem: str | None) -> str | None:
        """What keeps any rank from training (this rank's, else the first other's,
        naming it), agreed by all: ``None`` when every rank can train."""
        if self.alone:
            return problem
        problems: list[str | None] = [None] * self.world
        dist.all_gather_object(problems, problem, group=self.lobby)
        if problem:
            return problem
        for rank, other in enumerate(problems):
            if other:
                return f"rank {rank} of {self.world} cannot train: {other}"
        return None

    def agree(self, flag: dict[str, str], progress: float) -> tuple[str | None, float]:
        """After a batch: the stop reason all ranks act on, and rank 0's progress.

        Alone, the flag's own reason. A signal that lands after this rank's part
        was sent stays in ``flag`` and stops everyone after the next batch.
        """
        if self.alone:
            return flag.get("stop"), progress
        reason, values = self._exchange(flag, [progress])
        return reason, values[0]

    def agree_epoch(
        self,
        flag: dict[str, str],
        loss_sum: float,
        valid_nll: float,
        complete: bool,
        progress: float,
    ) -> tuple[str | None, float, float, bool, float]:
        """After an epoch: the stop reason, the training loss summed over every rank's
        rows, and rank 0's validation loss, completeness and progress."""
        if self.alone:
            return flag.get("stop"), loss_sum, valid_nll, complete, progress
        reason, (valid, whole, progress) = self._exchange(
            flag, [valid_nll, float(complete), progress]
        )
        summed = self._sum([loss_sum])[0]
        return reason, summed, valid, whole > 0.5, progress

    def _exchange(self, flag: dict[str, str], lead_values: list[float]) -> tuple[str | None, list]:
        """Rank 0's reason and values, and whether any rank was interrupted: one all-reduce."""
        own = flag.get("stop", "")
        code = REASONS.index(own) if self.leads and own in REASONS else 0
        mine = [float(code), float(own == "interrupted")]
        mine += lead_values if self.leads else [0.0] * len(lead_values)
        total = self._sum(mine)
        code, interrupted = int(round(total[0])), total[1] > 0
        if REASONS[code] == "diverged":
            reason = "diverged"
        elif interrupted:
            reason = "interrupted"
        else:
            reason = REASONS[code] or None
        # not written into ``flag``: there "interrupted" means this rank was sent a
        # signal already, and a second one aborts (see ``signals_stop``)
        return reason, total[2:]

    def _sum(self, values: list[float]) -> list[float]:
        """The element-wise sum of every rank's ``values`` (float64, on the CPU)."""
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor, group=self.control)
        return tensor.tolist()


#: The groups of this process, made once (every rank makes them, in the same order).
_GROUPS: dict[str, Any] = {}


def join(device: torch.device) -> Team:
    """The team this process trains in: under torchrun the process group (joined
    here if no one did: nccl for CUDA, else gloo, ``env://``); alone a team of one."""
    world = lmeval.world_size()
    if world == 1:
        return Team()
    if not dist.is_available():
        raise lmeval.LmevalError("this torch has no torch.distributed: train in one process")
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method="env://", timeout=MEETING_TIMEOUT)
        atexit.register(_leave)
    if not _GROUPS:
        gloo = dist.get_backend() == "gloo"
        lobby = None if gloo else dist.new_group(backend="gloo", timeout=MEETING_TIMEOUT)
        _GROUPS["lobby"] = lobby
        _GROUPS["control"] = dist.new_group(backend="gloo", timeout=STEP_TIMEOUT)
        _GROUPS["gradients"] = dist.new_group(timeout=STEP_TIMEOUT)
    return Team(
        rank=dist.get_rank(),
        world=dist.get_world_size(),
        lobby=_GROUPS["lobby"],
        control=_GROUPS["control"],
        gradients=_GROUPS["gradients"],
    )


def _leave() -> None:
    """At exit: the process group, taken down (NCCL warns of one left up)."""
    if dist.is_initialized():
        dist.destroy_process_group()

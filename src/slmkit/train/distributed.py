"""Data-parallel training over several processes (one per GPU, or CPU processes talking over gloo).

Each process holds the whole model and takes its share of every micro-batch; after the micro-batches
of an optimizer step, the processes average their gradients with one all-reduce, so every process
takes the same optimizer step from the same weights. The global batch of a step is the recipe's
``optim.batch_size × optim.grad_accum`` whatever the number of processes, so a recipe trains the same
model on 1 process or on 8, only faster.

Gradients are averaged here, with an explicit all-reduce after the last micro-batch, rather than by
wrapping the model in ``DistributedDataParallel``: slmkit's loss runs the transformer body and the
LM head separately (answer-only logits, slmkit.train.loss), which DDP's forward hooks never see. One
all-reduce per optimizer step is also what DDP's ``no_sync`` gives under gradient accumulation.

The process group comes from accelerate (``PartialState``), so the same recipe runs under
``slmkit train --nproc N``, ``accelerate launch`` and ``torchrun`` (single- or multi-node): each
sets ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` and this module reads them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import torch

from slmkit.errors import ConfigError


def launched_distributed() -> bool:
    """True inside a process started by torchrun / accelerate launch with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class Processes:
    """This process's place among the training processes; a single process is rank 0 of 1.

    Attributes:
        rank: This process's index (0 is the one that logs, evaluates and writes files).
        world: How many processes train together.
        device: The device this process trains on (its own GPU, or the CPU).
    """

    def __init__(self, device: torch.device) -> None:
        self.rank, self.world, self.device = 0, 1, device
        if launched_distributed():
            from accelerate import PartialState

            # cpu=True makes accelerate use gloo, the CPU backend; on GPUs it picks NCCL and this
            # process's GPU (LOCAL_RANK).
            state = PartialState(cpu=device.type == "cpu")
            self.rank, self.world = state.process_index, state.num_processes
            self.device = state.device if device.type != "cpu" else torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, items: Sequence[Any]) -> tuple[list[Any], bool]:
        """This process's share of a micro-batch: every ``world``-th item from ``rank`` on.

        Returns the share and whether it is real. A process whose share would be empty (a last batch
        shorter than the number of processes) gets the first item as a stand-in that must be
        weighted 0, so every process still runs a backward pass and joins the all-reduce.
        """
        share = list(items[self.rank :: self.world])
        return (share, True) if share else ([items[0]], False)

    def sum(self, value: float) -> float:
        """The sum of ``value`` over all processes (``value`` itself for one process)."""
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self._collective_device)
        torch.distributed.all_reduce(tensor)
        return float(tensor.item())

    def average_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over the processes (one flattened all-reduce)."""
        if self.world == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if len(grads) != len(params):
            raise RuntimeError("a trainable parameter got no gradient on this process; cannot average")
        flat = torch.cat([g.reshape(-1) for g in grads]).to(self._collective_device)
        torch.distributed.all_reduce(flat)
        flat /= self.world
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def sync_parameters(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Give every process rank 0's values of ``params`` (as DistributedDataParallel does at start)."""
        if self.world == 1:
            return
        with torch.no_grad():
            for param in params:
                tensor = param.data.to(self._collective_device)
                torch.distributed.broadcast(tensor, src=0)
                param.data.copy_(tensor)

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value``, on every process (a picklable object)."""
        if self.world == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    @property
    def _collective_device(self) -> torch.device:
        return self.device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")


def check_batch(batch_size: int, world: int) -> None:
    """Every process needs at least one example of each micro-batch.

    Raises:
        ConfigError: ``optim.batch_size`` smaller than the number of processes.
    """
    if batch_size < world:
        raise ConfigError(
            f"optim.batch_size ({batch_size}) is smaller than the number of processes ({world}): each "
            f"process takes batch_size / {world} examples of every micro-batch; raise optim.batch_size "
            "(the global micro-batch) or use fewer processes"
        )


def launch(nproc: int, arguments: Sequence[str]) -> int:
    """Run ``slmkit ARGUMENTS`` in ``nproc`` processes on this machine (torchrun, standalone mode).

    The processes meet on a free loopback port; when one of them dies (even ``kill -9``), torchrun
    stops the others and returns non-zero, and running the same command again resumes from the last
    checkpoint. Returns torchrun's exit status.
    """
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "slmkit.cli",
        *arguments,
    ]
    return subprocess.call(command)

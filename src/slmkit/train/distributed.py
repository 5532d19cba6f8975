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

With ``distributed.strategy: fsdp`` the model is sharded instead (PyTorch FSDP2, ``fully_shard``
on each transformer block and on the whole model): each process keeps 1/N of the parameters,
gradients and optimizer state, gathering a block's weights only while it runs; FSDP's reduce-scatter
averages the gradients. The loss then goes through the model's own forward (``logits_to_keep``), where
FSDP's hooks are; every process takes part in validation and in gathering the full weights for a
checkpoint or a saved model, which process 0 alone writes.

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

    def __init__(self, device: torch.device, strategy: str = "ddp") -> None:
        self.rank, self.world, self.device = 0, 1, device
        if launched_distributed():
            from accelerate import PartialState

            # cpu=True makes accelerate use gloo, the CPU backend; on GPUs it picks NCCL and this
            # process's GPU (LOCAL_RANK).
            state = PartialState(cpu=device.type == "cpu")
            self.rank, self.world = state.process_index, state.num_processes
            self.device = state.device if device.type != "cpu" else torch.device("cpu")
        self.sharded = self.world > 1 and strategy == "fsdp"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, model: torch.nn.Module) -> None:
        """Shard ``model`` over the processes (FSDP2): each transformer block is one unit, the rest
        (embeddings, final norm, LM head: tied weights stay together) the root unit."""
        from torch.distributed.fsdp import fully_shard

        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        blocks = set(getattr(inner, "_no_split_modules", None) or [])
        if not blocks:
            raise ConfigError(
                f"distributed.strategy: fsdp does not know the transformer blocks of {type(inner).__name__} "
                "(no _no_split_modules); use strategy: ddp"
            )
        for module in model.modules():
            if type(module).__name__ in blocks:
                fully_shard(module)
        fully_shard(model)

    def full_state(self, model: torch.nn.Module, optimizer: Any = None) -> tuple[dict, dict | None]:
        """The whole model's state dict (and the optimizer's, keyed by parameter name), gathered on
        CPU in process 0 (empty elsewhere). Every process must call it."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        if optimizer is None:
            from torch.distributed.checkpoint.state_dict import get_model_state_dict

            return get_model_state_dict(model, options=options), None
        return get_state_dict(model, optimizer, options=options)

    def load_full_state(
        self, model: torch.nn.Module, optimizer: Any, weights: dict, optim_state: dict
    ) -> None:
        """Load full (unsharded) states, as :meth:`full_state` returns them, into the shards."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        options = StateDictOptions(full_state_dict=True, strict=False)
        set_state_dict(
            model, optimizer, model_state_dict=weights, optim_state_dict=optim_state, options=options
        )

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
        """Replace each gradient by its mean over the processes (one flattened all-reduce); a sharded
        model's gradients are averaged by FSDP already."""
        if self.world == 1 or self.sharded:
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


class _Weights:
    """Stands in for a sharded model in slmkit.train.checkpoint, which saves ``named_parameters()``
    and loads by copying into them: here, full tensors gathered, or captured on load."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = tensors

    def named_parameters(self):
        for name, tensor in self.tensors.items():
            yield name, _Capture(self.tensors, name, tensor)


class _Capture(torch.nn.Parameter):
    """A trainable parameter whose ``copy_`` records the tensor loaded into it."""

    def __new__(cls, tensors: dict[str, torch.Tensor], name: str, tensor: torch.Tensor):
        param = super().__new__(cls, tensor, requires_grad=True)
        param._tensors, param._name = tensors, name
        return param

    def copy_(self, source: torch.Tensor, non_blocking: bool = False):  # type: ignore[override]
        self._tensors[self._name] = source.detach().clone()
        return self


class _OptimizerState:
    """Stands in for a sharded model's optimizer in slmkit.train.checkpoint (its full state dict)."""

    def __init__(self, state: dict | None = None) -> None:
        self.state = state

    def state_dict(self) -> dict | None:
        return self.state

    def load_state_dict(self, state: dict) -> None:
        self.state = state


def save_sharded_checkpoint(
    processes: Processes, output_dir: Any, model: torch.nn.Module, optimizer: Any, scheduler: Any, state: dict
) -> None:
    """Gather a sharded model's trainable weights and optimizer state (every process must call it)
    and write them as an ordinary checkpoint from process 0."""
    from slmkit.train.checkpoint import save_checkpoint

    weights, optim_state = processes.full_state(model, optimizer)
    if processes.is_main:
        trainable = {name: weights[name] for name, p in model.named_parameters() if p.requires_grad}
        save_checkpoint(output_dir, _Weights(trainable), _OptimizerState(optim_state), scheduler, state)


def load_sharded_checkpoint(
    processes: Processes, output_dir: Any, model: torch.nn.Module, optimizer: Any, scheduler: Any
) -> dict | None:
    """Read a checkpoint written by :func:`save_sharded_checkpoint` (in every process) and load it
    into this process's shards; returns its state, or None when there is none."""
    from slmkit.train.checkpoint import load_checkpoint

    trainable = {name: torch.empty(0) for name, p in model.named_parameters() if p.requires_grad}
    weights, optim_state = _Weights(trainable), _OptimizerState()
    state = load_checkpoint(output_dir, weights, optim_state, scheduler)
    if state is not None:
        processes.load_full_state(model, optimizer, weights.tensors, optim_state.state)
    return state


def check_run(config: Any, processes: Processes) -> None:
    """What a run in several processes needs of its recipe (``config``: a TrainConfig).

    Raises:
        ConfigError: ``optim.batch_size`` smaller than the number of processes (each needs at least
            one example of every micro-batch), or FSDP asked to shard a quantized (qlora) base.
    """
    batch_size, world = config.optim.batch_size, processes.world
    if batch_size < world:
        raise ConfigError(
            f"optim.batch_size ({batch_size}) is smaller than the number of processes ({world}): each "
            f"process takes batch_size / {world} examples of every micro-batch; raise optim.batch_size "
            "(the global micro-batch) or use fewer processes"
        )
    if processes.sharded and config.method == "qlora":
        raise ConfigError(
            "distributed.strategy: fsdp cannot shard a quantized (qlora) base; use strategy: ddp, or "
            "method: lora on a base that FSDP shards"
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

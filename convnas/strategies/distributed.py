"""Data-parallel training over processes started by ``torchrun`` (DDP).

``torchrun --nproc_per_node N -m convnas search CONFIG`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; each takes its shard of every global batch, gradients are
averaged across processes, and only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from convnas.strategies.training import resolve_device

__all__ = ["DistContext", "setup_distributed"]


@dataclass
class DistContext:
    """Rank and world size of this process (1 process when not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, tensor: torch.Tensor) -> torch.Tensor:
        """This process's contiguous share of a global batch."""
        if not self.enabled:
            return tensor
        return tensor.tensor_split(self.world)[self.rank]

    def average_(self, tensors: list[torch.Tensor]) -> None:
        """Replace each tensor by its mean over the processes, in place."""
        if not self.enabled:
            return
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t.div_(self.world)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(device_spec: str) -> tuple[DistContext, torch.device]:
    """Join the process group torchrun prepared, if any; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return DistContext(), resolve_device(device_spec)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = resolve_device(device_spec)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    initialized_here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        initialized_here = True
    return DistContext(rank, world, initialized_here), device

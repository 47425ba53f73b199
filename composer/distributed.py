"""Data-parallel training under ``torchrun``: who this process is, and summing a tensor over processes.

Launched by ``torchrun`` (RANK/WORLD_SIZE in the environment), every process streams its own share of the
pieces; ``all_reduce_sum`` adds up losses and counts so that all processes agree. Without ``torchrun``
everything here is a no-op for one process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_name: str) -> DistInfo:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE in the environment)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistInfo(rank, world, local, False)
    use_cuda = device_name.split(":", 1)[0] in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local, True)


@contextlib.contextmanager
def process_group(device_name: str) -> Iterator[DistInfo]:
    """``setup_distributed`` for a ``with`` block; a process group joined here is left at its end."""
    info = setup_distributed(device_name)
    try:
        yield info
    finally:
        if info.initialised_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, dist_info: DistInfo) -> torch.Tensor:
    if dist_info.enabled:
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t

"""Multi-process training under torchrun (PyTorch's own launcher) with DDP.

One process: every helper is a no-op. Under torchrun (RANK / WORLD_SIZE set), gloo on
CPU or NCCL on CUDA; rank 0 alone writes the database and checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from engine.runner import ranks_from_env


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.active:
            return model
        device_ids = [self.local_rank] if next(model.parameters()).is_cuda else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def sum_floats(self, values: list[float]) -> list[float]:
        """Sum a few floats over all ranks (for logging global-batch averages)."""
        if not self.active:
            return list(values)
        device = torch.device("cuda", self.local_rank) if torch_dist.get_backend() == "nccl" else None
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        torch_dist.all_reduce(tensor)
        return tensor.tolist()

    def any_flag(self, flag: bool) -> bool:
        """True on every rank when it is True on any: a stop seen by rank 0 stops all."""
        if not self.active:
            return flag
        return self.sum_floats([1.0 if flag else 0.0])[0] > 0

    def cleanup(self) -> None:
        if self.active and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def setup() -> Dist:
    rank, world_size = ranks_from_env()
    dist = Dist(rank, world_size, int(os.environ.get("LOCAL_RANK", 0)))
    if dist.active and not torch_dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(dist.local_rank)
        torch_dist.init_process_group(backend)
    return dist

"""Distributed set-up for ``torchrun`` (and ``srun torchrun`` under SLURM).

``torchrun --nproc_per_node=N -m vidda train CFG`` starts N processes; each builds the same run
and trains on its own share of every global batch. ``data.batch_size`` is **per process**, so the
global batch is ``batch_size × world size`` (the paper: 2 on one GPU). Only rank 0 logs, evaluates
to files and writes checkpoints; metrics are reduced across ranks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes (env ``WORLD_SIZE`` > 1), if any.

    Args:
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    Backend: NCCL on GPU, gloo on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    dev = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local, dev)


def wrap(model: nn.Module, info: DistInfo) -> nn.Module:
    """DDP around ``model`` when running distributed (buffers not broadcast, as the original)."""
    if not info.enabled:
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def all_reduce_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Mean of scalar logs over ranks (a no-op on one process)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return dict(zip(keys, (t / info.world_size).tolist(), strict=True))


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed_run(device: str = "auto") -> Iterator[DistInfo]:
    """:func:`init_distributed` for one run (``vidda train``, ``vidda eval``); at its end, also
    on an error, the process group is destroyed — only when this call created it, so a caller
    that had joined a group itself keeps it."""
    owned = not (dist.is_available() and dist.is_initialized())
    info = init_distributed(device)
    try:
        yield info
    finally:
        if owned:
            cleanup(info)

"""Training on several processes or GPUs: PyTorch DDP under ``torchrun``.

``torchrun --nproc-per-node K -m slitcli train ...`` starts K copies of the command with
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (and ``MASTER_ADDR``, ``MASTER_PORT``) in their
environment. `process_group` joins them into one process group (gloo on the CPU, NCCL on
CUDA, one GPU per process) and leaves it at the end, errors included; the training loop
(`slitcli.nn.train`) then wraps the model in `DistributedDataParallel` (`wrap`) and uses
the collectives below to make every rank take the same decisions (skip a step, best
weights, early stop), so that no rank waits forever for another.

Without torchrun's variables nothing here does anything: `group` is (0, 1), the
collectives return their input and one process trains exactly as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator

import numpy as np
import torch

__all__ = [
    "launched", "active", "rank", "world_size", "group", "is_main", "process_group",
    "barrier", "all_reduce", "broadcast", "all_agree", "broadcast_module", "broadcast_buffers", "wrap", "on_main",
]

#: The variables torchrun sets for every process it starts.
ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")

log = logging.getLogger("slitcli")


def launched() -> bool:
    """Whether this process was started by torchrun (``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` set)."""
    return all(os.environ.get(k) for k in ENV)


def active() -> bool:
    """Whether a process group is initialised (`process_group` entered)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """This process's rank: the process group's, else torchrun's ``RANK``, else 0."""
    if active():
        return torch.distributed.get_rank()
    return int(os.environ["RANK"]) if launched() else 0


def world_size() -> int:
    """Number of processes: the process group's, else torchrun's ``WORLD_SIZE``, else 1."""
    if active():
        return torch.distributed.get_world_size()
    return int(os.environ["WORLD_SIZE"]) if launched() else 1


def group() -> tuple[int, int]:
    """(rank, world size) of the initialised process group; (0, 1) without one.

    The training code asks this rather than `rank` and `world_size`: a process that
    torchrun started but that never joined a group trains alone.
    """
    return (torch.distributed.get_rank(), torch.distributed.get_world_size()) if active() else (0, 1)


def is_main() -> bool:
    """Whether this is rank 0, the process that logs and writes files (True without torchrun)."""
    return rank() == 0


@contextlib.contextmanager
def process_group(device: str | torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group for the duration of the block; yields this rank's device.

    Parameters
    ----------
    device : str or torch.device
        The device asked for. On CUDA each rank takes GPU ``LOCAL_RANK`` and the backend
        is NCCL (run one process per GPU); elsewhere the backend is gloo.

    Without torchrun's variables, or with a group already initialised, the block runs
    as it is and `device` is yielded unchanged. The group is destroyed on leaving the
    block, also when it raises.
    """
    device = torch.device(device)
    if not launched() or active():
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    torch.distributed.init_process_group(backend)
    try:
        log.info("training on %d processes (%s, rank 0 writes)", world_size(), backend)
        yield device
    finally:
        torch.distributed.destroy_process_group()


def _collective_device() -> torch.device:
    """Where collective tensors live: NCCL only reduces GPU tensors."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.distributed.get_backend() == "nccl" else torch.device("cpu")


def barrier() -> None:
    """Wait until every rank is here (nothing without a group)."""
    if active():
        torch.distributed.barrier()


def all_reduce(values, op: str = "sum") -> np.ndarray:
    """Reduce numbers over the ranks.

    Parameters
    ----------
    values : array_like of float
    op : {"sum", "min", "max"}

    Returns
    -------
    float64 array
        The same on every rank; `values` as they are without a group.
    """
    values = np.asarray(values, np.float64)
    if not active():
        return values
    ops = {"sum": torch.distributed.ReduceOp.SUM, "min": torch.distributed.ReduceOp.MIN, "max": torch.distributed.ReduceOp.MAX}
    t = torch.as_tensor(values, device=_collective_device()).clone()
    torch.distributed.all_reduce(t, ops[op])
    return t.cpu().numpy()


def broadcast(values, src: int = 0) -> np.ndarray:
    """Rank `src`'s numbers on every rank (float64; NaN and infinities pass)."""
    values = np.asarray(values, np.float64)
    if not active():
        return values
    t = torch.as_tensor(values, device=_collective_device()).clone()
    torch.distributed.broadcast(t, src)
    return t.cpu().numpy()


def all_agree(flag: bool) -> bool:
    """True on every rank if `flag` is true on every rank, else False on every rank."""
    return bool(all_reduce([1.0 if flag else 0.0], "min")[0] > 0.5)


def broadcast_buffers(model: torch.nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s buffers (batch-norm running statistics) into every rank's `model`, in place."""
    if active():
        for b in model.buffers():
            torch.distributed.broadcast(b.data, src)


def broadcast_module(model: torch.nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s parameters and buffers into every rank's `model`, in place."""
    if active():
        with torch.no_grad():
            for p in model.parameters():
                torch.distributed.broadcast(p.data, src)
        broadcast_buffers(model, src)


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`model` in `DistributedDataParallel` (or `model` itself without a group).

    Batch-norm stays plain batch-norm (no `SyncBatchNorm`, which gloo does not run on
    the CPU): each rank normalises with its own part of the batch, and DDP's default
    ``broadcast_buffers`` hands rank 0's running statistics to every rank at each
    forward pass. `find_unused_parameters` is on because pre-training leaves the
    log-variance head out of the loss.
    """
    if not active():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def on_main(fn: Callable, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` on rank 0 only, then wait for every rank.

    Returns `fn`'s result on rank 0, None elsewhere. If `fn` raises on rank 0, the
    exception propagates there and torchrun stops the other ranks.
    """
    result = fn(*args, **kwargs) if is_main() else None
    barrier()
    return result

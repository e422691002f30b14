"""Data-parallel training with ``torch.distributed``: what ``fit`` needs to run on N processes.

``torchrun --nproc_per_node=N -m kdutils.tools.launch ...`` starts N processes with the
environment variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``. :func:`init_from_env` joins them into one process group (NCCL on CUDA, one
GPU per process; gloo on the CPU). From then on :func:`kdutils.core.train.fit` trains
data-parallel without any other change to the caller, through :func:`attach`:

- the model is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`: every
  backward pass averages the gradients over the processes (optionally after converting
  BatchNorm to :class:`~torch.nn.SyncBatchNorm`, CUDA only);
- the training loader is replaced by a :class:`~kdutils.core.loader.RankShard`: of every
  global batch of the epoch's permutation each process takes its own disjoint slice, so the
  *global* batch, the number of steps and the schedule are those of the single-process run;
- the epoch's sums (loss, correct, images, the objective's parts) are added over the
  processes and the epoch time is the slowest process's, so every process holds the same
  history (:func:`epoch_totals`); the wall-clock budget is agreed on at every step, so all
  processes stop at the same step (:func:`any_rank`);
- only rank 0 writes checkpoints and records (:func:`is_writer`) and prints progress.

A teacher source (``LiveTeacher``, ``TeacherLogits``) runs on every process on its own
images, without gradients. Evaluation runs on every process over the whole test set, so
each process's history has the same columns (rank 0's is the one written).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["init_from_env", "is_active", "rank", "world_size", "is_writer", "attach", "epoch_totals", "any_rank",
           "barrier", "shutdown", "describe"]


@dataclass
class _Options:
    sync_batchnorm: bool = False


_OPTIONS = _Options()


def is_active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    return dist.get_world_size() if is_active() else 1


def is_writer() -> bool:
    """Whether this process writes records, checkpoints and figures (rank 0, or no group)."""
    return rank() == 0


def init_from_env(sync_batchnorm: bool = False, backend: Optional[str] = None) -> bool:
    """Join the process group described by torchrun's environment; True when there is one.

    Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) nothing happens and ``fit`` trains in
    this process alone. On CUDA each process takes GPU ``LOCAL_RANK`` (so ``device="auto"``
    and the loaders made afterwards land on it) and NCCL; on the CPU gloo.
    ``sync_batchnorm``: convert BatchNorm layers to SyncBatchNorm when ``fit`` wraps the
    model (batch statistics over the global batch; CUDA only).
    """
    n = int(os.environ.get("WORLD_SIZE", "1"))
    if n <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    cuda = torch.cuda.is_available()
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s) are visible: "
                               "start at most one process per GPU (torchrun --nproc_per_node)")
        torch.cuda.set_device(local)
    if sync_batchnorm and not cuda:
        raise ValueError("sync_batchnorm needs CUDA (torch's SyncBatchNorm has no CPU kernel); "
                         "leave it off for CPU (gloo) runs")
    _OPTIONS.sync_batchnorm = sync_batchnorm
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"))
    return True


def shutdown() -> None:
    """Leave the process group (after a last barrier); a no-op without one."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if is_active():
        dist.barrier()


def from_writer(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as rank 0 holds it, on every process (same shape and dtype on each), e.g.
    a teacher's predictions that every rank turns into the same training set; ``tensor``
    itself outside a group."""
    if not is_active():
        return tensor
    shared = tensor.to("cuda" if dist.get_backend() == "nccl" else "cpu").contiguous()
    dist.broadcast(shared, 0)
    return shared.to(tensor.device)


def describe() -> dict:
    """What a record says about the processes it was trained with."""
    return {"world_size": world_size(), "backend": dist.get_backend() if is_active() else None,
            "sync_batchnorm": _OPTIONS.sync_batchnorm and is_active()}


# --------------------------------------------------------------------------- fit's hooks
def attach(s: Any) -> None:
    """Make a ``fit`` session data-parallel (a no-op outside a process group).

    Agrees on rank 0's precision, shards the training loader, wraps the model in DDP
    (stored as ``s.ddp``; ``s.model`` stays the plain module that checkpoints hold),
    silences progress on ranks other than 0 and notes the processes in the record.
    """
    if not is_active():
        return
    if any(p.requires_grad for p in s.objective.parameters()):
        raise NotImplementedError(
            f"{type(s.objective).__name__} has trainable parameters (a feature regressor); data-parallel "
            "training averages only the model's gradients: train this run in one process")
    from kdutils.core.loader import RankShard

    _agree_precision(s)
    s.train = RankShard(s.train, rank(), world_size())
    if _OPTIONS.sync_batchnorm:
        s.model = nn.SyncBatchNorm.convert_sync_batchnorm(s.model)  # reuses the same parameters
    ids = [s.device.index if s.device.index is not None else torch.cuda.current_device()] \
        if s.device.type == "cuda" else None
    s.ddp = nn.parallel.DistributedDataParallel(s.model, device_ids=ids)
    if rank() != 0 and s.progress is not None:
        s.progress.mode = "off"
    if s.record is not None:
        s.record["distributed"] = describe()


def _agree_precision(s: Any) -> None:
    """On the CPU each process measures its own precision choice; take rank 0's."""
    codes = {None: 0, torch.bfloat16: 1, torch.float16: 2}
    mine = torch.tensor([codes[s.dtype], int(s.channels_last)], dtype=torch.long, device=_comm_device(s))
    dist.broadcast(mine, src=0)
    dtype = {v: k for k, v in codes.items()}[int(mine[0])]
    channels_last = bool(mine[1])
    if (dtype, channels_last) == (s.dtype, s.channels_last):
        return
    s.dtype, s.channels_last = dtype, channels_last
    s.model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    for loader in (s.train, s.test):
        if hasattr(loader, "channels_last"):
            loader.channels_last = channels_last
    s.objective.prepare(s.device, dtype, channels_last)


def _comm_device(s: Any) -> torch.device:
    return s.device if dist.get_backend() == "nccl" else torch.device("cpu")


def epoch_totals(s: Any, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int, parts_sum: dict,
                 seconds: float) -> tuple:
    """The epoch's sums over all processes and the slowest process's seconds (unchanged
    outside a process group). Every process must call it once per epoch."""
    if not is_active():
        return loss_sum, correct, seen, parts_sum, seconds
    dev = _comm_device(s)
    keys = sorted(parts_sum)
    sums = torch.stack([loss_sum.detach().float().to(dev), correct.float().to(dev),
                        torch.tensor(float(seen), device=dev)]
                       + [torch.as_tensor(parts_sum[k], dtype=torch.float32).reshape(()).to(dev) for k in keys])
    dist.all_reduce(sums)
    slowest = torch.tensor([seconds], dtype=torch.float64, device=dev)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    parts = {k: sums[3 + i].to(s.device) for i, k in enumerate(keys)}
    return (sums[0].to(s.device), sums[1].round().long().to(s.device), int(sums[2].item()), parts,
            float(slowest.item()))


def any_rank(s: Any, flag: bool) -> bool:
    """True on every process when ``flag`` is True on any (e.g. "the budget is spent")."""
    if not is_active():
        return flag
    t = torch.tensor([int(bool(flag))], device=_comm_device(s))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())

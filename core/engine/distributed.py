"""Training, evaluating and predicting on several processes, through PyTorch's own engine.

``torchrun --nproc-per-node N -m ctxseg train SPEC`` (or ``eval``, ``predict``) starts N
processes and tells each its place in the environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, the rendezvous address); :func:`session` joins them into one process
group, over NCCL on CUDA and gloo on CPU. In training the model is replicated by
``DistributedDataParallel``; batch norm can see the global batch
(:func:`synchronize_batch_norm`, PSPNet Sec. 4.1). Evaluation and prediction label each
process's :func:`shard` of the images. The rest of the engine asks :func:`rank` and
:func:`world_size`, adds its sums up with :func:`all_sum` and collects the processes'
results with :func:`gather` and :func:`gather_objects`. Without torchrun every function
here is the single-process identity.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ctxseg.errors import CtxsegError

__all__ = ["GlooSyncBatchNorm", "all_max", "all_sum", "backend", "gather", "gather_objects", "local_rank", "rank",
           "replicate", "session", "shard", "synchronize_batch_norm", "world_size"]


def rank() -> int:
    """This process's index in the run, 0 for the one that writes files and draws progress
    (the process group's, or before and after it torchrun's ``RANK``)."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes share the work (1 without torchrun)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def local_rank() -> int:
    """This process's index on its machine: which of the machine's GPUs it drives."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def backend(device: torch.device) -> str:
    """The collective backend for ``device``: NCCL between GPUs, gloo between CPUs."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[None]:
    """Within the block, this process is one rank of the process group torchrun describes
    in the environment (``WORLD_SIZE`` > 1); otherwise, or if a group exists already, nothing happens."""
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield
        return
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise CtxsegError(f"WORLD_SIZE is set but {', '.join(missing)} is not: start distributed runs with "
                          "torchrun (torchrun --nproc-per-node N -m ctxseg train|eval|predict ...)")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend(device), timeout=datetime.timedelta(minutes=30),
                            device_id=device if device.type == "cuda" else None)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _on_backend(tensor: Tensor) -> Tensor:
    """``tensor`` where the process group's backend can reduce it: NCCL reduces GPU tensors only."""
    if dist.get_backend() == "nccl":
        return tensor.to(torch.device("cuda", torch.cuda.current_device()))
    return tensor


def _reduce(tensor: Tensor, op: dist.ReduceOp) -> Tensor:
    if dist.is_initialized():
        reduced = _on_backend(tensor)
        dist.all_reduce(reduced, op=op)
        tensor.copy_(reduced)
    return tensor


def all_sum(tensor: Tensor) -> Tensor:
    """``tensor`` summed over every rank (in place, and returned)."""
    return _reduce(tensor, dist.ReduceOp.SUM)


def all_max(tensor: Tensor) -> Tensor:
    """``tensor``'s element-wise maximum over every rank (in place, and returned)."""
    return _reduce(tensor, dist.ReduceOp.MAX)


def gather(tensor: Tensor) -> list[Tensor]:
    """Every rank's ``tensor`` (all the same shape), in rank order, where ``tensor`` lives."""
    if not dist.is_initialized():
        return [tensor]
    local = _on_backend(tensor)
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local)
    return [part.to(tensor.device) for part in parts]


def gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value`` (anything picklable), in rank order."""
    if not dist.is_initialized():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def shard(size: int, unit: int = 1) -> range:
    """This rank's contiguous part of ``range(size)``, cut between runs of ``unit`` items (the
    last run may be shorter), the parts as even as can be. Evaluation cuts between batches
    so that every sample is labelled in the batch one process would give it: a forward
    pass can round differently in another batch."""
    ranks, me, runs = world_size(), rank(), -(-size // unit)
    return range(min(size, unit * (runs * me // ranks)), min(size, unit * (runs * (me + 1) // ranks)))


class _Sum(torch.autograd.Function):
    """A sum over every rank whose gradient is the sum of the ranks' gradients: each rank's
    input reaches every rank's output."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        return all_sum(tensor.clone())

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return all_sum(grad.clone())


class GlooSyncBatchNorm(nn.BatchNorm2d):
    """Batch norm over the global batch on CPU processes (gloo).

    ``torch.nn.SyncBatchNorm``, which CUDA runs use, has CUDA kernels only. This computes
    the same statistics from differentiable all-reduces: each channel's count and sum,
    then its sum of squared deviations; the gradient flows back through the reductions as
    it does through SyncBatchNorm's. In eval mode it is plain batch norm on the running
    statistics.
    """

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized()):
            return super().forward(input)
        x = input.float()
        sums = _Sum.apply(torch.cat([x.sum((0, 2, 3)), x.new_tensor([x.numel() / x.shape[1]])]))
        count, mean = sums[-1], sums[:-1] / sums[-1]
        centred = x - mean[:, None, None]
        variance = _Sum.apply(centred.square().sum((0, 2, 3))) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean, factor)
                self.running_var.lerp_(variance * count / (count - 1).clamp_min(1), factor)
        y = centred * torch.rsqrt(variance + self.eps)[:, None, None]
        if self.affine:
            y = y * self.weight[:, None, None] + self.bias[:, None, None]
        return y.to(input.dtype)


def synchronize_batch_norm(model: nn.Module, device: torch.device) -> int:
    """Make every 2-d batch norm of ``model`` normalize over the global batch, in place:
    ``torch.nn.SyncBatchNorm`` on CUDA, :class:`GlooSyncBatchNorm` on CPU. Parameters,
    statistics, ``requires_grad`` and train/eval mode are kept. Returns how many were replaced."""
    kind = nn.SyncBatchNorm if device.type == "cuda" else GlooSyncBatchNorm
    replaced = 0
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is not nn.BatchNorm2d:
                continue
            synced = kind(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            synced.load_state_dict(child.state_dict())
            if child.affine:
                synced.weight, synced.bias = child.weight, child.bias  # the same Parameters: frozen stays frozen
            synced.train(child.training)
            setattr(parent, name, synced.to(device))
            replaced += 1
    return replaced


def replicate(model: nn.Module, device: torch.device, side: int) -> DistributedDataParallel:
    """``model`` replicated across the processes by DistributedDataParallel.

    DDP must know whether some trainable parameters get no gradient (a backbone computes
    features the model need not read, such as ResNet's c5 under a head on c4); one probe
    of two ``side`` x ``side`` images in training mode finds out, its running statistics
    and random draws put back.
    """
    buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        outputs = model(torch.rand(2, 3, side, side, device=device))
        reached = torch.autograd.grad(sum(o.float().sum() for o in outputs.values()), trainable, allow_unused=True)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            buffer.copy_(buffers[name])
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=any(g is None for g in reached))

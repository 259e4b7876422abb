"""Training on several processes (``torchrun``): the process group, batches that do not depend on
the number of processes, and the few collectives the training loop needs. With one process every
function here is a no-op or the identity."""
from __future__ import annotations

import os

import torch
from torch.utils.data import Sampler

from posekit.errors import ConfigError
from posekit.utils import derive_seed


def dist_info() -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's environment; (1, 0, 0) without it."""
    return (int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")),
            int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: str) -> tuple[int, int, torch.device | None]:
    """Join torchrun's process group (NCCL on CUDA, Gloo on CPU), for ``train.device``
    ``device``. Returns (world size, rank, this process's device or None with one process)."""
    import torch.distributed as dist

    world, rank, local = dist_info()
    if world == 1:
        return 1, 0, None
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if not dist.is_initialized():
        # Import this before the group exists: its functions take ``group=group.WORLD`` as a default
        # argument, bound at import. DDP imports it lazily (via torch.distributed._shard); imported
        # after init_process_group, those defaults hold the live group forever, so
        # destroy_process_group cannot free it, and Gloo's C++ threads live on into interpreter
        # shutdown, where one that touches a Python object aborts the process ("terminate called
        # without an active exception"). Bound to None here, the group is freed (its threads
        # joined) in destroy_process_group, while the interpreter is still whole.
        from torch.distributed.nn import functional as _bind_defaults_before_init  # noqa: F401

        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
        return world, rank, torch.device("cuda", local)
    return world, rank, torch.device("cpu")


def teardown() -> None:
    """Wait for every process, then leave the group (no-op without one)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, device: torch.device, world: int, sync_bn: bool) -> torch.nn.Module:
    """``model`` in DistributedDataParallel under several processes (batch-norm statistics synced
    over the global batch with ``sync_bn``, CUDA only); ``model`` itself with one."""
    if world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if sync_bn:
        if device.type != "cuda":
            raise ConfigError("train.sync_bn needs CUDA (SyncBatchNorm has no CPU/Gloo implementation)")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def all_sum(values: list[float], device) -> list[float]:
    """Element-wise sum of ``values`` over every process (the values themselves with one)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    v = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(v)
    return v.tolist()


def broadcast_flag(flag: bool, device) -> bool:
    """Rank 0's ``flag`` on every process (``flag`` itself with one)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    v = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(v, 0)
    return bool(v.item())


def global_loss_scale(weight_sum: torch.Tensor, world: int) -> torch.Tensor:
    """The factor that makes DDP's gradient average equal the gradient of the loss over the
    global batch, when processes hold different amounts of loss weight (annotated joints)."""
    import torch.distributed as dist

    if world == 1:
        return torch.ones((), device=weight_sum.device)
    total = weight_sum.detach().clone()
    dist.all_reduce(total)
    if weight_sum <= 0:
        return torch.zeros((), device=weight_sum.device)
    return weight_sum.clamp_min(1.0) / total.clamp_min(1.0) * world


class GlobalBatchSampler(Sampler):
    """Training batches that do not depend on the number of processes: each epoch a seeded
    permutation of the data is cut into global batches of ``global_batch`` (a last partial batch
    is dropped: a batch of one breaks batch norm), and process ``rank`` of ``world`` takes its
    contiguous share of each. One process sees exactly the union of what N processes see.

    Raises ConfigError when the global batch does not divide by the processes."""

    def __init__(self, n: int, global_batch: int, world: int = 1, rank: int = 0, seed: int = 0, epoch: int = 0):
        if global_batch % world:
            raise ConfigError(f"train.batch_size {global_batch} (the global batch) must divide by the {world} processes")
        self.n, self.batch, self.world, self.rank, self.seed, self.epoch = n, global_batch, world, rank, seed, epoch
        self.steps = n // global_batch if n > global_batch else (1 if n else 0)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(derive_seed(self.seed, "batches", self.epoch))
        perm = torch.randperm(self.n, generator=g).tolist()
        share = min(self.batch, self.n) // self.world
        for t in range(self.steps):
            gb = perm[t * self.batch:(t + 1) * self.batch]
            yield gb[self.rank * share:(self.rank + 1) * share]

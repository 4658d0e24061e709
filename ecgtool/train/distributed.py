"""Data-parallel training on PyTorch's own engine (torch.distributed + DDP).

The same ``ecgtool train`` command runs as one process, under ``torchrun``
(which exports ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``) or as the tasks of one ``srun`` step (``SLURM_PROCID``,
``SLURM_LOCALID``, ``SLURM_STEP_NUM_TASKS``; the rendezvous address is the
step's first node, port ``MASTER_PORT`` or 29500). NCCL on CUDA, gloo on CPU.

Only rank 0 writes checkpoints and logs; every rank computes, and the few
numbers that decide what happens next (epoch loss, validation predictions,
a pre-emption request) are reduced or gathered so that all ranks agree.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import numpy as np

from ecgtool.errors import EcgtoolError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _first_host(nodelist: str) -> str:
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True).stdout
        return out.split()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        raise EcgtoolError(f"cannot resolve the first node of {nodelist!r} (scontrol); set MASTER_ADDR") from None


def detect(environ=None) -> DistEnv:
    """The process's place in the job, from torchrun's or Slurm's environment (one process if neither)."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:  # torchrun, or any env:// launcher
        world = int(env["WORLD_SIZE"])
        return DistEnv(int(env["RANK"]), int(env.get("LOCAL_RANK", 0)), world, int(env.get("LOCAL_WORLD_SIZE", world)))
    tasks = int(env.get("SLURM_STEP_NUM_TASKS", "1"))  # set inside an srun step, not in the batch script
    if tasks > 1 and "SLURM_PROCID" in env:
        per_node = env.get("SLURM_STEP_TASKS_PER_NODE", str(tasks)).split("(")[0].split(",")[0]
        return DistEnv(int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0)), tasks, int(per_node))
    return DistEnv()


def init(env: DistEnv, device_type: str) -> None:
    """Join the process group (env:// rendezvous); a no-op for one process."""
    import torch.distributed as dist

    if not env.active or dist.is_initialized():
        return
    if "MASTER_ADDR" not in os.environ:  # srun without torchrun: rendezvous at the step's first node
        nodes = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST")
        if not nodes:
            raise EcgtoolError("distributed run without MASTER_ADDR or a Slurm node list; launch with torchrun or srun")
        os.environ["MASTER_ADDR"] = _first_host(nodes)
    os.environ.setdefault("MASTER_PORT", "29500")
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=env.rank, world_size=env.world_size)


def shutdown(env: DistEnv) -> None:
    import torch.distributed as dist

    if env.active and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], device) -> list[float]:
    """Element-wise sum over ranks (float64), e.g. an epoch's summed loss and record count."""
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


def barrier() -> None:
    """Wait for every rank (e.g. until rank 0 has written a checkpoint the others must not outrun)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def any_rank(flag: bool, device) -> bool:
    """True on every rank when it is true on any (a pre-emption signal may reach only some)."""
    return all_sum([float(flag)], device)[0] > 0


def gather_rows(values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every rank's ``(values, rows)`` concatenated and ordered by row, on every rank."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values, rows
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (values, rows))
    v, r = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    order = np.argsort(r, kind="stable")
    return v[order], r[order]


def all_gather(t):
    """Every rank's equally shaped tensor ``t`` concatenated along the first axis, rank order, on every
    rank (a global batch from the ranks' slices); ``t`` itself outside a process group."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)

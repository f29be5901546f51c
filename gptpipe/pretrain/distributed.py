"""Processes and devices: one process per GPU under `torchrun` (NCCL), or per CPU slot (gloo).

`python -m gptpipe pretrain ...` is the one command line under Snakemake and DVC alike. When it
is not already inside a launcher and more than one process is wanted, it re-executes itself
under `torch.distributed.run --standalone` (`relaunch_argv`), so neither tool needs a launcher
prefix of its own and `dvc repro` uses every GPU it is given, as Snakemake does.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..device import resolve_device
from ..errors import GptpipeError

NPROC_ENV = "GPTPIPE_NPROC"  # processes per node; default: one per visible GPU (CPU: one)
LAUNCHER_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")  # set by torchrun (and by srun wrappers)


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: its rank among `world_size` and the device it computes on."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def wanted_processes(pref: str) -> int:
    """Processes to run on this node: $GPTPIPE_NPROC, else one per visible GPU (CPU: one)."""
    raw = os.environ.get(NPROC_ENV)
    if raw:
        try:
            n = int(raw)
        except ValueError:
            n = 0
        if n < 1:
            raise GptpipeError(f"${NPROC_ENV}={raw!r}: expected a whole number >= 1")
        return n
    if pref != "cpu" and torch.cuda.is_available():
        return torch.cuda.device_count()
    return 1


def inside_launcher() -> bool:
    return all(k in os.environ for k in LAUNCHER_ENV)


def relaunch_argv(nproc: int, module_argv: list[str]) -> list[str]:
    """The command that runs `python -m gptpipe <module_argv>` as `nproc` local processes."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}", "-m", "gptpipe", *module_argv,
    ]


def die_with_launcher() -> None:
    """Have the kernel SIGKILL this process when its launcher dies (Linux).

    torchrun starts every worker in a session of its own, so killing the job's process group
    (Ctrl-C twice, a scheduler's SIGKILL, a test) would otherwise leave the workers training on
    as orphans, writing checkpoints beside the rerun.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent == 1 or os.getppid() != parent:  # the launcher died before the request held
        os._exit(1)


def init(pref: str) -> DistEnv:
    """Join the process group when started by a launcher; pick and configure the device."""
    if inside_launcher():
        die_with_launcher()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(pref, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # TF32 for the float32 matmuls that autocast leaves (and for fp32 runs): ~8x the FP32
        # rate on Ampere and later, at a precision training does not notice.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if world > 1 and not dist.is_initialized():
        join_group("nccl" if device.type == "cuda" else "gloo", rank, world)
    return DistEnv(rank, local_rank, world, device)


def join_group(backend: str, rank: int, world: int) -> None:
    """`init_process_group` from torchrun's $MASTER_ADDR:$MASTER_PORT, its failure told plainly.

    A missing variable means the process was not started by torchrun (the workflow's launcher
    does that); a failure to meet is most often the network between nodes, hence the hints.
    """
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(var):
            raise GptpipeError(
                f"WORLD_SIZE={world} but ${var} is unset: pretrain on several processes must "
                "be started by torchrun (as the workflow's pretrain rule does), which sets it"
            )
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:
        dist.init_process_group(backend, rank=rank, world_size=world)
    except (RuntimeError, ValueError, OSError) as exc:  # DistError subclasses RuntimeError
        hint = (" (NCCL: set NCCL_SOCKET_IFNAME to the interface between the nodes; "
                "NCCL_DEBUG=INFO shows what it tried)" if backend == "nccl" else "")
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise GptpipeError(
            f"rank {rank} of {world} could not join the {backend} process group at "
            f"MASTER_ADDR:MASTER_PORT={where}: {first_line}{hint}"
        ) from exc


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over processes, in place (a no-op alone)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` from rank `src` on every rank (pickled; only for small, trusted metadata)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()

"""Stopping before a SLURM job's time limit: checkpoint, then exit for the rerun to resume.

A cluster caps each job's runtime (often at a day or less) and paper-scale pre-training on a
few GPUs runs longer, so the `pretrain` job reads its time left from SLURM once at start
(`squeue -h -j $SLURM_JOB_ID -o %L`) and stops `pretrain.time_limit_margin` seconds before the
limit: it saves a checkpoint and exits with status `EXIT_CODE`, and the workflow's `retries`
resubmit it to resume there. Only $SLURM_JOB_ID is relied on: Snakemake's job step removes most
other SLURM_* variables from a rule's environment.

Why a deadline and not a signal (`sbatch --signal=USR1@600`): without `B:` SLURM signals every
process of the job, the rule's `tee` included, which dies of it and takes the job's log with it;
with `B:` only the batch shell is signalled, which is Snakemake's job-step process, not the
training, and nothing forwards it. Nor do several nodes share one process tree. A deadline known
from the start needs none of that: rank 0 compares it with its clock and all ranks follow its
decision (`stop_now`), so they stop at the same update. A job that outlives it all the same (a
slow checkpoint, margin 0) is killed by SLURM at the limit and resumes from the last periodic
checkpoint instead.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from . import distributed as dd

log = logging.getLogger(__name__)

EXIT_CODE = 75  # EX_TEMPFAIL (sysexits.h): a temporary failure; running again continues
JOB_ENV = "SLURM_JOB_ID"
# What %L prints for a job without a limit, and (INVALID) once a limit has passed.
NO_LIMIT = ("UNLIMITED", "NOT_SET")
PASSED = "INVALID"
_LEFT = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")  # [days-][hours:]minutes:seconds


def parse_time_left(text: str) -> int | None:
    """Seconds left from squeue's `%L` (`1-02:03:04`, `2:03:04`, `3:04`); None for no limit."""
    text = text.strip()
    if text in NO_LIMIT:
        return None
    if text == PASSED:
        return 0
    m = _LEFT.match(text)
    if not m:
        raise ValueError(f"squeue printed {text!r} for the time left; expected [D-][H:]M:S, "
                         f"{', '.join(NO_LIMIT)} or {PASSED}")
    days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


class TimeLimitStop(Exception):
    """Training stopped before the job's time limit, after saving a checkpoint: not an error,
    so it is no GptpipeError; the CLI turns it into exit status `EXIT_CODE`."""

    def __init__(self, message: str, main: bool) -> None:
        super().__init__(message)
        self.main = main  # rank 0, which logs it; the other ranks stop quietly

    @classmethod
    def at(cls, done: int, updates: int, deadline: Deadline, checkpoint: str | None,
           main: bool) -> TimeLimitStop:
        return cls(f"stopped after update {done} of {updates}, {deadline.margin} s before the "
                   f"SLURM job's time limit (pretrain.time_limit_margin); checkpoint {checkpoint}. "
                   "Run the same command again to resume from it (the workflow's pretrain rule "
                   "resubmits itself: retries)", main)


@dataclass(frozen=True)
class Deadline:
    """When to stop, on `clock`'s scale: `at` None means never."""

    at: float | None = None
    margin: int = 0  # seconds before the limit that `at` lies (for messages)
    clock: Callable[[], float] = time.monotonic

    def due(self) -> bool:
        return self.at is not None and self.clock() >= self.at


NEVER = Deadline()


def squeue_time_left(job_id: str, timeout: float = 60.0) -> str:
    """What `squeue -h -j JOB -o %L` prints for `job_id` (raises OSError or
    subprocess.SubprocessError when it cannot tell)."""
    res = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%L"], capture_output=True,
                         text=True, timeout=timeout, check=True)
    return res.stdout.strip().splitlines()[0] if res.stdout.strip() else ""


def from_slurm(margin: int, environ: Mapping[str, str],
               read: Callable[[str], str] = squeue_time_left,
               clock: Callable[[], float] = time.monotonic) -> Deadline:
    """The deadline `margin` seconds before the time limit of the SLURM job this process runs
    in; NEVER outside SLURM, with margin 0, for a job without a limit, or when squeue cannot
    say (with a warning: SLURM's own kill at the limit then ends the job)."""
    job = environ.get(JOB_ENV, "").strip()
    if margin <= 0 or not job:
        return NEVER
    now = clock()
    try:
        left = parse_time_left(read(job))
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.warning("SLURM job %s: could not read its time limit (%s); training runs until "
                    "SLURM ends the job, and the rerun resumes from the last checkpoint",
                    job, exc)
        return NEVER
    if left is None:
        log.info("SLURM job %s has no time limit", job)
        return NEVER
    if left <= margin:
        log.warning("SLURM job %s has %d s left, no more than pretrain.time_limit_margin (%d "
                    "s): it stops at its first metric line; give the job a longer limit or "
                    "lower the margin", job, left, margin)
    else:
        log.info("SLURM job %s has %d s left: training stops %d s before that", job, left,
                 margin)
    return Deadline(now + left - margin, margin, clock)


def stop_now(deadline: Deadline, device: torch.device) -> bool:
    """Whether to stop, the same answer on every rank: the ranks' verdicts are summed, and
    only rank 0 holds a deadline (the others hold NEVER), so rank 0 decides for all."""
    flag = torch.tensor([1.0 if deadline.due() else 0.0], device=device)
    return bool(dd.all_reduce_sum(flag).item() > 0)

"""Process-tree helpers for the kill-and-resume tests (Linux /proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children(pid: int, recursive: bool = False) -> list[int]:
    """Live children of `pid` (and theirs, when `recursive`)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat(int(stat.parent.name))
        if fields and int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    if recursive:
        kids += [g for k in list(kids) for g in children(k, recursive=True)]
    return kids


def gone(pids: list[int], timeout: float = 20.0) -> bool:
    """Whether every process in `pids` has exited (zombies count as gone) within `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any((f := _stat(p)) and f[0] != "Z" for p in pids):
            return True
        time.sleep(0.05)
    return False


def kill_after_checkpoint(cmd: list[str], ck: Path, env: dict, *, last_step: int,
                          step: int = 10, cwd: Path | None = None, recursive: bool = False,
                          timeout: float = 300) -> None:
    """Start `cmd` in its own session, SIGKILL its process group once checkpoint `step` under
    `ck` is complete (its meta.json, written last, exists), and check that the kill came before
    checkpoint `last_step` and that every process it had started (its children, or its whole
    tree when `recursive`) died with it."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not list(ck.glob(f"*/step-{step:08d}/meta.json")):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
    finally:
        family = children(proc.pid, recursive=recursive)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert gone(family), f"{family} outlived the killed process group"
    assert not list(ck.glob(f"*/step-{last_step:08d}")), "the run finished before the kill"

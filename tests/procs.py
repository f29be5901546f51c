"""Process-tree helpers for the kill-and-resume tests (Linux /proc)."""

from __future__ import annotations

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

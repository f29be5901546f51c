"""Wall time, CPU time and peak memory of each step of the rehearsal (tests/test_rehearsal.py).

A stage run as a command is measured by the kernel: `os.wait4` gives the CPU seconds and the
peak resident set of the largest single process of its tree (ru_maxrss, the figure
`getrusage(RUSAGE_CHILDREN)` accumulates), and a sampler sums the resident sets of the whole
tree (both pre-training ranks at once) twice a second. A step run inside pytest gets
`getrusage(RUSAGE_SELF)`: its CPU seconds, and pytest's own peak so far.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from procs import children

SAMPLE_SECONDS = 0.5


@dataclass
class Step:
    name: str
    wall: float  # seconds
    cpu: float  # user + system seconds
    max_rss_mb: float  # peak of the largest single process (in pytest: pytest's peak so far)
    tree_rss_mb: float | None = None  # sampled peak of the whole process tree, all at once


@dataclass
class Done:
    """What a finished command left: exit status and its output (stdout then stderr)."""

    returncode: int
    output: str


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


class Ledger:
    """The steps measured so far, in order; `table()` prints them."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self._lock = threading.Lock()
        self._t0 = time.monotonic()

    def _add(self, step: Step) -> None:
        with self._lock:
            self.steps.append(step)
        print(f"\n[rehearsal] {_row(step)}", flush=True)

    def run(self, name: str, cmd: Sequence[str], env: dict, timeout: float) -> Done:
        """Run `cmd` in its own session, measured; on timeout its whole group is killed."""
        with tempfile.TemporaryFile() as out:
            t0 = time.monotonic()
            proc = subprocess.Popen(list(cmd), env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            peak_tree, status, usage = 0.0, None, None
            while status is None:
                pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    status, usage = st, ru
                    break
                tree = [proc.pid, *children(proc.pid, recursive=True)]
                peak_tree = max(peak_tree, sum(_rss_mb(p) for p in tree))
                if time.monotonic() - t0 > timeout:
                    os.killpg(proc.pid, signal.SIGKILL)
                time.sleep(SAMPLE_SECONDS)
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
            self._add(Step(name, time.monotonic() - t0, _cpu(usage), usage.ru_maxrss / 1024,
                           peak_tree))
            out.seek(0)
            return Done(proc.returncode, out.read().decode(errors="replace"))

    def run_all(self, jobs: Sequence[tuple[str, Sequence[str]]], env: dict, timeout: float,
                parallel: int) -> dict[str, Done]:
        """`run` every (name, cmd) of `jobs`, `parallel` at a time."""
        results: dict[str, Done] = {}
        todo = list(jobs)
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    if not todo:
                        return
                    name, cmd = todo.pop(0)
                results[name] = self.run(name, cmd, env, timeout)

        threads = [threading.Thread(target=worker) for _ in range(parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    @contextlib.contextmanager
    def measure(self, name: str) -> Iterator[None]:
        """Measure a step run inside this (pytest's) process."""
        t0, cpu0 = time.monotonic(), _cpu(resource.getrusage(resource.RUSAGE_SELF))
        yield
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._add(Step(name, time.monotonic() - t0, _cpu(usage) - cpu0, usage.ru_maxrss / 1024))

    def table(self) -> str:
        self_ = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        lines = [("rehearsal summary (wall s, CPU s, peak RSS of the largest process, of the "
                 "whole tree)"), *(_row(s) for s in self.steps),
                 (f"{'total':<34} {time.monotonic() - self._t0:8.1f} s wall   "
                 f"CPU: pytest {_cpu(self_):.1f} s + children {_cpu(kids):.1f} s   "
                 f"peak RSS: pytest {self_.ru_maxrss / 1024:.0f} MB, largest child "
                 f"{kids.ru_maxrss / 1024:.0f} MB")]
        return "\n".join(lines)


def _row(s: Step) -> str:
    tree = f"{s.tree_rss_mb:7.0f} MB tree" if s.tree_rss_mb is not None else " " * 15
    return (f"{s.name:<34} {s.wall:8.1f} s wall {s.cpu:8.1f} s CPU {s.max_rss_mb:7.0f} MB max "
            f"{tree}")

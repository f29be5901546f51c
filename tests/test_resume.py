"""Exact resume after a real kill: SIGKILL the whole process group once a checkpoint exists,
rerun the same command, and get the loss curve and weights of a run that never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from pretrain_data import ENV, pretrain_cmd, run
from procs import children, gone

SETS = ("updates=40", "checkpoint_every=10", "eval_every=20")
COMPARED = ("step", "tokens", "loss", "val_loss", "val_bpb", "lr", "grad_norm")


def _curve(out: Path) -> list[dict]:
    lines = (out / "out/metrics.jsonl").read_text().splitlines()
    return [{k: json.loads(line)[k] for k in COMPARED} for line in lines]


def _kill_after_checkpoint(cmd: list[str], ck: Path, env: dict, step: int = 10) -> None:
    """Start `cmd` in its own session, SIGKILL its process group once checkpoint `step` is
    complete (its meta.json, written last, exists) and before the run could finish.

    torch.distributed.run puts its workers in sessions of their own: they must die with it
    (gptpipe asks the kernel for that), not train on as orphans."""
    proc = subprocess.Popen(cmd, env={**os.environ, **ENV, **env}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while not list(ck.glob(f"*/step-{step:08d}/meta.json")):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
    finally:
        workers = children(proc.pid)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert gone(workers), f"workers {workers} outlived their launcher"
    assert not list(ck.glob("*/step-00000040")), "the run finished before the kill"


@pytest.mark.parametrize("nproc", ["1", "2"])
def test_sigkill_and_rerun_gives_the_uninterrupted_run(micro, tmp_path, nproc):
    """One process, and two (re-launched under torch.distributed.run, gloo): the kill takes
    down the launcher and both workers; the rerun resumes every rank's data and RNG."""
    env = {"GPTPIPE_NPROC": nproc}
    ref = tmp_path / "ref"
    res = run(pretrain_cmd(*micro, ref, *SETS), env)
    assert res.returncode == 0, res.stderr[-3000:]

    killed = tmp_path / "killed"
    cmd = pretrain_cmd(*micro, killed, *SETS)
    _kill_after_checkpoint(cmd, killed / "ck", env)
    assert not (killed / "out").exists()
    res = run(cmd, env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming from" in res.stderr and "step-00000040" not in res.stderr.split(
        "resuming from")[1].splitlines()[0]

    assert _curve(killed) == _curve(ref)
    a = load_file(ref / "out/model/model.safetensors")
    b = load_file(killed / "out/model/model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)  # bitwise
    figures = json.loads((killed / "out/metrics.json").read_text())
    assert figures["resumed_from"] in (10, 20, 30) and figures["processes"] == int(nproc)

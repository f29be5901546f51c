"""Exact resume after a real kill: SIGKILL the whole process group once a checkpoint exists,
rerun the same command, and get the loss curve and weights of a run that never stopped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from safetensors.torch import load_file

from pretrain_data import ENV, pretrain_cmd, run
from procs import kill_after_checkpoint
from workflow_projects import CURVE_KEYS

SETS = ("updates=40", "checkpoint_every=10", "eval_every=20")


def _curve(out: Path) -> list[dict]:
    lines = (out / "out/metrics.jsonl").read_text().splitlines()
    return [{k: json.loads(line)[k] for k in CURVE_KEYS} for line in lines]


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
    # torch.distributed.run puts its workers in sessions of their own: they must die with it
    # (gptpipe asks the kernel for that), not train on as orphans.
    kill_after_checkpoint(cmd, killed / "ck", {**os.environ, **ENV, **env}, last_step=40)
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

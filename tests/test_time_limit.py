"""Stopping before a SLURM job's time limit (gptpipe/pretrain/deadline.py): squeue's `%L`
parsed, the deadline placed `time_limit_margin` seconds before the limit, and a real run that
stops there (every rank at the same update, after a checkpoint, exit status 75) and resumes to
the weights of a run that never stopped. SLURM is stood in for by a fake `squeue` on PATH and
$SLURM_JOB_ID; tests/test_slurm.py runs the same on the real cluster."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gptpipe.config import PretrainConfig
from gptpipe.pretrain.deadline import (
    EXIT_CODE, NEVER, Deadline, from_slurm, parse_time_left, squeue_time_left, stop_now,
)
from pretrain_data import pretrain_cmd, run
from workflow_projects import CURVE_KEYS

# --------------------------------------------------------------------------- squeue's %L


@pytest.mark.parametrize(("text", "seconds"), [
    ("1-02:03:04", ((1 * 24 + 2) * 60 + 3) * 60 + 4),
    ("12-00:00:00", 12 * 86_400),
    ("2:03:04", (2 * 60 + 3) * 60 + 4),
    ("23:59:59", 86_399),
    ("3:04", 3 * 60 + 4),
    ("0:00", 0),
    (" 59:07\n", 59 * 60 + 7),
    ("INVALID", 0),  # the limit has passed
    ("UNLIMITED", None),
    ("NOT_SET", None),
])
def test_time_limit_parse_of_squeue_time_left(text, seconds):
    assert parse_time_left(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "1-", "1:2:3:4", "a:bc", "-1:00", "unlimited"])
def test_time_limit_parse_rejects_what_squeue_does_not_print(text):
    with pytest.raises(ValueError, match="squeue printed"):
        parse_time_left(text)


# --------------------------------------------------------------------------- the deadline


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reader(text: str, calls: list[str]):
    def read(job: str) -> str:
        calls.append(job)
        return text
    return read


def test_time_limit_deadline_lies_margin_seconds_before_the_limit():
    clock, calls = FakeClock(), []
    deadline = from_slurm(60, {"SLURM_JOB_ID": "77"}, _reader("10:00", calls), clock)
    assert calls == ["77"] and deadline.at == 1000.0 + 600 - 60 and deadline.margin == 60
    clock.now += 539.9
    assert not deadline.due()
    clock.now += 0.1
    assert deadline.due()


@pytest.mark.parametrize(("margin", "environ", "text"), [
    (600, {}, "10:00"),  # not inside a SLURM job
    (600, {"SLURM_JOB_ID": ""}, "10:00"),
    (0, {"SLURM_JOB_ID": "77"}, "1:00"),  # margin 0: off
    (600, {"SLURM_JOB_ID": "77"}, "UNLIMITED"),
])
def test_time_limit_no_deadline(margin, environ, text):
    calls: list[str] = []
    assert from_slurm(margin, environ, _reader(text, calls), FakeClock()) == NEVER
    assert not NEVER.due()
    if not environ.get("SLURM_JOB_ID") or margin == 0:
        assert calls == []  # squeue is not even asked


def test_time_limit_shorter_than_the_margin_is_due_at_once_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        deadline = from_slurm(600, {"SLURM_JOB_ID": "77"}, _reader("9:00", []), FakeClock())
    assert deadline.due()
    assert "540 s left, no more than pretrain.time_limit_margin (600 s)" in caplog.text


@pytest.mark.parametrize("failure", [FileNotFoundError("squeue"), "garbage",
                                     subprocess.TimeoutExpired(["squeue"], 60)])
def test_time_limit_unreadable_means_no_deadline_with_a_warning(failure, caplog):
    def read(job: str) -> str:
        if isinstance(failure, str):
            return failure
        raise failure

    with caplog.at_level(logging.WARNING):
        assert from_slurm(600, {"SLURM_JOB_ID": "77"}, read, FakeClock()) == NEVER
    assert "SLURM job 77: could not read its time limit" in caplog.text


def test_time_limit_squeue_failure_is_an_exception(tmp_path, monkeypatch):
    fake = tmp_path / "squeue"
    fake.write_text("#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id specified' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(subprocess.CalledProcessError):
        squeue_time_left("77")


def test_time_limit_stop_now_follows_the_deadline_alone():
    cpu = torch.device("cpu")
    assert stop_now(Deadline(at=0.0, clock=lambda: 1.0), cpu)
    assert not stop_now(Deadline(at=2.0, clock=lambda: 1.0), cpu)
    assert not stop_now(NEVER, cpu)


def test_time_limit_margin_knob():
    assert PretrainConfig().time_limit_margin == 600
    assert PretrainConfig(time_limit_margin=0).time_limit_margin == 0
    with pytest.raises(ValueError, match="time_limit_margin"):
        PretrainConfig(time_limit_margin=-1)


# --------------------------------------------------------------------------- real runs

# 20 updates, a metric line every 5: a run whose job has less time left than the margin stops
# at update 5, its first metric line.
SETS = ("updates=20", "log_every=5", "eval_every=10", "checkpoint_every=10")


def _fake_slurm(tmp_path: Path, time_left: str) -> tuple[dict, Path]:
    """Environment of a process inside SLURM job 4242 whose `squeue` (a fake on PATH) says
    `time_left`, and the file that records each call."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "squeue-calls"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text(f'#!/bin/sh\necho "$*" >> {calls}\necho {time_left}\n')
    (bin_dir / "squeue").chmod(0o755)
    return {"SLURM_JOB_ID": "4242", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, calls


def _curve(out: Path) -> list[dict]:
    lines = (out / "out/metrics.jsonl").read_text().splitlines()
    return [{k: json.loads(line)[k] for k in CURVE_KEYS} for line in lines]


def _steps(ck: Path) -> list[str]:
    return sorted(p.name for p in ck.glob("*/step-*"))


def test_time_limit_stop_checkpoints_exits_75_and_resumes_exactly(micro, tmp_path):
    ref = tmp_path / "ref"
    res = run(pretrain_cmd(*micro, ref, *SETS))
    assert res.returncode == 0, res.stderr[-3000:]

    env, calls = _fake_slurm(tmp_path, "9:00")  # 540 s left < the default margin of 600
    cut = tmp_path / "cut"
    cmd = pretrain_cmd(*micro, cut, *SETS)
    res = run(cmd, env)
    assert res.returncode == EXIT_CODE, res.stderr[-3000:]
    assert "stopped after update 5 of 20, 600 s before the SLURM job's time limit" in res.stderr
    assert "error" not in res.stderr.splitlines()[-1]
    assert calls.read_text() == "-h -j 4242 -o %L\n"  # once, at start
    assert _steps(cut / "ck") == ["step-00000005"] and not (cut / "out").exists()

    res = run(cmd)  # the resubmitted job, here with time enough
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((cut / "out/metrics.json").read_text())["resumed_from"] == 5
    assert _curve(cut) == _curve(ref)  # the stop fell on a metric line: the same lines
    a, b = load_file(ref / "out/model/model.safetensors"), load_file(
        cut / "out/model/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bitwise


def test_time_limit_stops_every_rank_at_the_same_update(micro, tmp_path):
    """Two ranks (torch.distributed.run, gloo): rank 0 alone asks squeue, and both stop after
    the same checkpoint, which holds both ranks' states; torchrun itself exits 1."""
    env, calls = _fake_slurm(tmp_path, "INVALID")  # the limit has already passed
    cut = tmp_path / "cut"
    res = run(pretrain_cmd(*micro, cut, *SETS), {**env, "GPTPIPE_NPROC": "2"})
    # torchrun ends the other rank once the first exits: 75 is what the first one reports.
    assert res.returncode == 1 and "exitcode  : 75" in res.stderr, res.stderr[-3000:]
    assert res.stderr.count("stopped after update 5 of 20") == 1  # rank 0 says it
    assert calls.read_text() == "-h -j 4242 -o %L\n"
    [step] = (cut / "ck").glob("*/step-*")
    assert step.name == "step-00000005"
    assert sorted(p.name for p in step.glob("rank-*.pt")) == ["rank-00000.pt", "rank-00001.pt"]
    assert (step / "meta.json").is_file()

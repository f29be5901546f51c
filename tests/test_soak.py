"""Recovery as README says (issue #13, point 4): SIGKILL the whole workflow in every stage of the
micro DAG, recover each time with `snakemake --unlock` and the same command, and end with exactly
what an uninterrupted run computed.

One project goes through a chain of kills, so that the whole soak costs about one extra micro run
(plus Snakemake's start-ups): the first run is killed during `fetch`; its recovery is killed
during `ingest`; that one's recovery during `bpe`; ... during `finetune`; the last recovery runs
to the end. Each recovery is thus shown to redo the stage it was killed in (and nothing before
it) and to get past it. The uninterrupted run is conftest's `micro_smk` (`--cores 2`, the same
command as here).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from base64 import urlsafe_b64decode
from pathlib import Path

import pytest

from procs import children, gone
from workflow_projects import (
    SNAKEMAKE, finetune_figures, job_counts, pretrain_figures, project_copy, snakemake, user_env,
)

pytestmark = pytest.mark.slow

COMMAND = [*SNAKEMAKE, "--cores", "2", "all"]  # the baseline's command (micro_smk)
# (stage, what marks it under way, seconds to wait after that appears, the stage's outputs as
# globs in the baseline project). The offsets land inside each stage on a 2-core machine: micro
# runs take (results/benchmarks/*.tsv) ingest, bpe and shard 1.0-1.7 s each (mostly Python's
# start), pretrain ~26 s, each fine-tuning job ~4 s (two side by side). A log appears when its job
# starts (the shell redirects into it), so these kills hit the job's process early on.
STAGES = [
    # fetch copies from the mirror in ~0.01 s per source: too short to aim inside it; killed as
    # soon as its log appears (the job has started; its outputs are marked incomplete).
    ("fetch", "results/logs/fetch.log", 0.0, ("data/wikipedia/*", "data/glue/*")),
    ("ingest", "results/logs/ingest/*.log", 0.4, ("results/ingest/*",)),
    ("bpe", "results/logs/bpe.log", 0.4, ("results/bpe",)),
    ("shard", "results/logs/shard.log", 0.6, ("results/shard",)),
    # pretrain: killed once its first checkpoint (update 10 of 30; meta.json is written last) is
    # complete, ~7 s after its log appears, so that the recovery shows the resume. The final
    # validation after update 30 takes ~16 s, so the kill cannot miss the stage.
    ("pretrain", "results/checkpoints/pretrain/*/step-00000010/meta.json", 0.0,
     ("results/pretrain",)),
    ("finetune", "results/logs/finetune/*/*/*.log", 1.0, ("results/finetune/*/*/seed*",)),
]
# Keys whose values depend on when or how fast, not on what was computed.
TIMING_KEYS = {"seconds", "tokens_per_s", "mfu", "elapsed", "elapsed_s", "eta"}
TIMEOUT = 300  # seconds any one run may take to reach its stage


def _is_timing(key: str) -> bool:
    return key in TIMING_KEYS or key.endswith(("_seconds", "_per_s", "_time"))


def _less_timings(value):
    if isinstance(value, dict):
        return {k: _less_timings(v) for k, v in value.items() if not _is_timing(k)}
    if isinstance(value, list):
        return [_less_timings(v) for v in value]
    return value


def _metrics(proj: Path) -> dict[str, dict]:
    """Every metrics.json under results/, less timings (and `resumed_from`, checked apart)."""
    out = {}
    for path in sorted((proj / "results").rglob("metrics.json")):
        m = _less_timings(json.loads(path.read_text()))
        m.pop("resumed_from", None)
        out[path.relative_to(proj).as_posix()] = m
    return out


def _digests(proj: Path, *globs: str) -> dict[str, str]:
    return {p.relative_to(proj).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for g in globs for p in sorted(proj.glob(g))}


def _incomplete(proj: Path) -> set[str]:
    """Outputs Snakemake has marked incomplete (.snakemake/incomplete/<urlsafe base64 of the
    path>, long names split into folders whose names start with @)."""
    root = proj / ".snakemake/incomplete"
    marked = set()
    for path in root.rglob("*"):
        if path.is_file() and path.name != "migration_underway":
            name = "".join(part.lstrip("@") for part in path.relative_to(root).parts)
            try:
                marked.add(urlsafe_b64decode(name).decode())
            except ValueError:
                pass
    return marked


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else f"({path} missing)"


def _logs_tail(proj: Path) -> str:
    logs = sorted((proj / "results/logs").rglob("*.log"))
    return "\n".join(f"--- {p.relative_to(proj)}\n{_tail(p, 1500)}" for p in logs)


def _run_and_kill(proj: Path, env: dict, out: Path, trigger: str, offset: float) -> str:
    """Start the workflow in its own session, SIGKILL its process group `offset` s after
    `trigger` (a glob) first matches, check that the kill took every process it had started
    with it; what the run printed."""
    with out.open("w") as sink:
        proc = subprocess.Popen(COMMAND, cwd=proj, env=user_env(env), start_new_session=True,
                                stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + TIMEOUT
    family: list[int] = []
    try:
        while not list(proj.glob(trigger)):
            if proc.poll() is not None:
                raise AssertionError(f"the run ended (rc {proc.returncode}) before {trigger} "
                                     f"appeared:\n{_tail(out)}\n{_logs_tail(proj)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{trigger} did not appear in {TIMEOUT} s:\n{_tail(out)}\n"
                                     f"{_logs_tail(proj)}")
            time.sleep(0.01)
        time.sleep(offset)
    finally:
        family = children(proc.pid, recursive=True)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill:\n{_tail(out)}"
    assert gone(family), f"{family} outlived the killed process group"
    return out.read_text(errors="replace")


def test_soak_sigkill_in_every_stage_recovers_as_readme_says(micro_smk, mirror_env, tmp_path):
    """Killed in fetch, ingest, bpe, shard, pretrain and finetune in turn (SIGKILL to Snakemake's
    process group: Snakemake, the job shells, torchrun, the trainers), recovered each time with
    `snakemake --unlock` and the same command: every recovery reruns the stage it was killed in
    and none before it, pre-training resumes from its checkpoint, and the outputs equal the
    uninterrupted run's (figures less timings, model weights, predictions)."""
    proj = project_copy(tmp_path / "proj", scale="micro")
    t0 = time.monotonic()
    for i, (stage, trigger, offset, outputs) in enumerate(STAGES):
        printed = _run_and_kill(proj, mirror_env, tmp_path / f"run{i}-{stage}.out", trigger,
                                offset)
        # This run redid the stage the previous one was killed in, and nothing before it.
        plan = job_counts(printed)
        # (every run redoes pre-training or an earlier stage, so zeroshot too)
        expected = {s for s, *_ in STAGES[max(i - 1, 0):]} | {"zeroshot", "report"}
        assert set(plan) == expected, (stage, plan, printed[-3000:])

        # Killed mid-stage: nothing of the stage looks complete (absent, or marked incomplete
        # so that the recovery reruns it).
        marked = _incomplete(proj)
        expected_outputs = [p.relative_to(micro_smk).as_posix()
                            for g in outputs for p in micro_smk.glob(g)]
        assert expected_outputs, (stage, outputs)
        left = [o for o in expected_outputs if (proj / o).exists() and o not in marked]
        assert not left or stage == "finetune", (stage, left, sorted(marked))
        if stage == "finetune":  # a job may finish before the kill; not every one of them
            assert len(left) < len(expected_outputs), (left, sorted(marked))
        if stage == "pretrain":
            assert not (proj / "results/pretrain").exists()  # written in one rename at the end

        if i == 0:  # as the user finds it: Snakemake refuses to run until unlocked
            locked = snakemake(proj, "all", env=mirror_env, check=False)
            text = locked.stdout + locked.stderr
            assert locked.returncode != 0 and "--unlock" in text, text[-3000:]
        snakemake(proj, "all", "--unlock", env=mirror_env)

    # The last recovery runs to the end: it redoes the killed fine-tuning jobs and the report.
    res = subprocess.run(COMMAND, cwd=proj, env=user_env(mirror_env), capture_output=True,
                         text=True, timeout=TIMEOUT)
    printed = res.stdout + res.stderr
    assert res.returncode == 0, printed[-4000:] + _logs_tail(proj)
    plan = job_counts(printed)
    # zeroshot runs beside the fine-tuning jobs: the last kill may have caught it too
    assert {"finetune", "report"} <= set(plan) <= {"finetune", "zeroshot", "report"}, plan
    assert 1 <= plan["finetune"] <= 3, plan
    wall = time.monotonic() - t0
    print(f"soak: 6 kills and recoveries in {wall:.0f} s")

    # Pre-training resumed from the checkpoint the kill left (update 10, or 20 if it was
    # written before the kill landed) rather than starting over.
    log = (proj / "results/logs/pretrain.log").read_text()
    assert "resuming from" in log, log[-2000:]
    resumed = json.loads((proj / "results/pretrain/metrics.json").read_text())["resumed_from"]
    assert resumed in (10, 20), resumed

    # The same outputs as the uninterrupted run.
    assert _metrics(proj) == _metrics(micro_smk)
    assert pretrain_figures(proj) == pretrain_figures(micro_smk)  # curve, weights' sha256
    assert finetune_figures(proj) == finetune_figures(micro_smk)
    weights = ("results/pretrain/model/*.safetensors", "results/finetune/*/*/seed*/*.safetensors",
               "results/finetune/*/*/seed*/predictions.jsonl", "results/bpe/tokenizer.json")
    assert _digests(proj, *weights) == _digests(micro_smk, *weights)
    assert (proj / "results/report/index.html").is_file()

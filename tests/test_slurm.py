"""The workflow on a real SLURM cluster (issue #6): a one-node cluster on localhost
(tests/slurm/cluster.sh, started by conftest's `slurm_cluster`), driven through the project's
SLURM profile by snakemake-executor-plugin-slurm, as on a real cluster.

The micro DAG through SLURM must compute exactly what the local baseline run computed (same
seeds, same thread counts: CPU only, the GPU requests met by a fake `gpu` GRES). A failing job
is reported with its SLURM log and reruns cleanly; interrupting Snakemake cancels its jobs; a
DVC stage that calls Snakemake with the profile works the same way. Every command runs under
`timeout -s KILL` (tests/slurm_runs.py), so a hang fails its test instead of stalling CI.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from procs import children, gone
from slurm_runs import KILL_AFTER_S, queued, slurm_logs, slurm_snakemake, submissions
from workflow_projects import (
    DVC, WALL_SECONDS, clone, finetune_figures, job_counts, pretrain_figures, project_copy, run,
    snakemake,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def contents(folder: Path) -> dict[str, object]:
    """Every file under `folder`: its sha256, or for a JSON summary its content less the
    time it took (`seconds`), which is all that may differ between two runs."""
    found: dict[str, object] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix == ".json":
            found[p.relative_to(folder).as_posix()] = {
                k: v for k, v in json.loads(p.read_text()).items() if k != "seconds"}
        elif p.is_file():
            found[p.relative_to(folder).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def micro_slurm(slurm_cluster, tmp_path_factory, mirror_env):
    """A fresh micro project run to its report through SLURM: (project, Snakemake's output,
    wall seconds)."""
    proj = project_copy(tmp_path_factory.mktemp("micro-slurm"), scale="micro")
    t0 = time.monotonic()
    res = slurm_snakemake(proj, env=mirror_env)
    return proj, res.stdout + res.stderr, time.monotonic() - t0


def test_micro_dag_through_slurm_matches_the_local_run(micro_slurm, micro_smk):
    proj, out, wall = micro_slurm
    jobs = submissions(out)
    # Every job went through sbatch; the three fine-tuning jobs as one bundle (the profile's
    # group), not three allocations.
    assert set(jobs) == {*(f"rule_{r}" for r in ("fetch", "ingest", "bpe", "shard", "pretrain",
                                                 "zeroshot", "report")),
                         "group_finetune_finetune"}
    assert {where: len(ids) for where, ids in jobs.items()} == dict.fromkeys(jobs, 1)
    logs = slurm_logs(out)
    assert len(logs) == len(jobs) and all(log.is_file() for log in logs), logs
    # The same computation as the local run: data, tokenizer, shards, pre-training, fine-tuning.
    for folder in ("results/ingest", "results/bpe", "results/shard"):
        assert contents(proj / folder) == contents(micro_smk / folder), folder
    assert pretrain_figures(proj) == pretrain_figures(micro_smk)
    assert finetune_figures(proj) == finetune_figures(micro_smk)
    assert (proj / "results/report/index.html").is_file()
    # What SLURM adds per job: every allocation here waits for the one before it (a chain),
    # so the run's extra time over the local run, shared out among them.
    local = WALL_SECONDS["micro_smk"]
    n = sum(map(len, jobs.values()))
    print(f"\nmicro DAG: local {local:.0f} s, through SLURM {wall:.0f} s in {n} allocations: "
          f"{(wall - local) / n:.1f} s more per job")


def test_a_failed_slurm_job_names_its_log_and_reruns_cleanly(micro_slurm, tmp_path,
                                                             mirror_env):
    proj = clone(micro_slurm[0], tmp_path / "proj")
    metrics = proj / "results/pretrain/metrics.json"
    good = metrics.read_bytes()
    metrics.write_text("{ not json")
    res = slurm_snakemake(proj, "--forcerun", "report", env=mirror_env, check=False)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    [job] = submissions(out)["rule_report"]
    log = proj / f".snakemake/slurm_logs/rule_report/{job}.log"
    # The failure names SLURM's log of the job, which holds the stage's error.
    assert f"log: results/logs/report.log, {log}" in out and log.is_file(), out[-3000:]
    assert "metrics.json" in (proj / "results/logs/report.log").read_text()
    assert not (proj / "results/report").exists()  # no half-written output left behind
    metrics.write_bytes(good)
    res = slurm_snakemake(proj, env=mirror_env)  # the same command as before, less --forcerun
    assert job_counts(res.stdout + res.stderr) == {"report": 1}
    assert (proj / "results/report/index.html").is_file()


def _processes_in(folder: Path) -> list[int]:
    """Live processes whose working directory is `folder` (the jobs' commands run there)."""
    pids = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if cwd.resolve() == folder.resolve() and int(cwd.parent.name) != os.getpid():
                pids.append(int(cwd.parent.name))
        except OSError:
            continue
    return pids


def test_interrupting_snakemake_cancels_its_slurm_jobs(micro_slurm, tmp_path, mirror_env):
    proj = clone(micro_slurm[0], tmp_path / "proj")
    # A long pre-training run: the knob reruns it.
    proc = slurm_snakemake(proj, "results/pretrain", "--config", "pretrain={updates: 100000}",
                           env=mirror_env, popen=True)
    lines: list[str] = []
    pump = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                            daemon=True)
    pump.start()
    deadline = time.monotonic() + 240
    try:
        while not (ids := submissions("".join(lines)).get("rule_pretrain")) or \
                queued(ids).get(ids[0]) != "RUNNING" or \
                not (proj / "results/logs/pretrain.log").exists():
            assert proc.poll() is None, "".join(lines)[-3000:]
            assert time.monotonic() < deadline, "pretrain never started on the cluster"
            time.sleep(0.5)
        time.sleep(3)  # into training, past start-up
        [smk] = children(proc.pid)  # Snakemake, under `timeout`
        os.kill(smk, signal.SIGINT)  # Ctrl-C
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    pump.join(timeout=10)
    out = "".join(lines)
    [job] = ids
    assert queued([job]).get(job) == "CANCELLED", out[-3000:]
    # Nothing of the job lives on: no torchrun, no training process, no jobstep Snakemake.
    assert gone(_processes_in(proj), timeout=30), _processes_in(proj)


DVC_STAGE = """\
# A DVC stage that runs its part of the DAG on the cluster: DVC tracks what goes in and out,
# Snakemake submits the jobs (here `fetch` and `ingest`) through the SLURM profile.
stages:
  ingest:
    cmd: >-
      snakemake --workflow-profile workflow/profiles/slurm results/ingest/enwiki-sample
      {flags}
    deps:
      - workflow/rules/data.smk
      - gptpipe/ingest/wiki.py
    params:
      - scale
      - fetch
      - ingest
    outs:
      - results/ingest/enwiki-sample
"""


def test_a_dvc_stage_runs_snakemake_on_slurm(slurm_cluster, micro_smk, tmp_path, mirror_env):
    from slurm_runs import fitted_overrides

    proj = project_copy(tmp_path / "proj", scale="micro")
    flags = " ".join(["--slurm-status-command squeue", "--slurm-init-seconds-before-status-checks 2",
                      "--slurm-keep-successful-logs", *fitted_overrides(proj)])
    (proj / "dvc.yaml").write_text(DVC_STAGE.format(flags=flags))
    run(["git", "init", "-q"], proj)  # the project's .dvc/ comes with it
    res = run(["timeout", "-s", "KILL", "600", *DVC, "repro"], proj, env=mirror_env)
    assert "Running stage 'ingest'" in res.stdout
    assert list((proj / ".snakemake/slurm_logs/rule_ingest").rglob("*.log"))  # per part
    assert list((proj / ".snakemake/slurm_logs/rule_fetch").glob("*.log"))
    assert contents(proj / "results/ingest") == contents(micro_smk / "results/ingest")
    assert "ingest" in (proj / "dvc.lock").read_text()
    res = run([*DVC, "repro"], proj, env=mirror_env)
    assert "didn't change" in res.stdout and "Running stage" not in res.stdout


def test_the_srun_launcher_spans_the_allocation(slurm_cluster, tmp_path):
    """The multi-node launch line (srun + torchrun + c10d rendezvous), run inside a real
    allocation with the environment the SLURM jobstep leaves (every SLURM_* variable but the
    job id removed), on this cluster's one node: every process joins one process group."""
    from gptpipe.workflow import pretrain_launcher

    script = tmp_path / "ranks.py"
    # Each rank writes its own file: two processes printing to one job log interleave even
    # within a line, which made an earlier version of this test flaky.
    script.write_text(
        "import os, sys, torch, torch.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "t = torch.tensor([dist.get_rank()]); dist.all_reduce(t)\n"
        "line = f'rank {dist.get_rank()} of {dist.get_world_size()} sum {int(t)}'"
        " f' master {os.environ[\"MASTER_ADDR\"]}'\n"
        "open(os.path.join(sys.argv[1], f'rank{dist.get_rank()}.txt'), 'w').write(line)\n"
        "dist.destroy_process_group()\n")
    launch = pretrain_launcher({"nodes": 1, "gpu": 2}, via_srun=True)
    job = tmp_path / "job.sh"
    job.write_text(
        "#!/bin/bash\nset -euo pipefail\n"
        'for v in $(env | grep -o "^SLURM_[A-Z_]*" | grep -vx "SLURM_JOB_ID"); do unset "$v"; done\n'
        f"export PATH={Path(sys.executable).parent}:$PATH\n"
        f"{launch} {script} {tmp_path}\n")
    out = tmp_path / "job.out"
    res = subprocess.run(["timeout", "-s", "KILL", "300", "sbatch", "--wait", "--nodes=1",
                          "--ntasks=1", "--cpus-per-task=2", "--gpus=2", f"--output={out}",
                          str(job)], capture_output=True, text=True, cwd=tmp_path)
    text = out.read_text() if out.exists() else ""
    assert res.returncode == 0, res.stderr + text
    ranks = sorted(f.read_text() for f in tmp_path.glob("rank*.txt"))
    assert [r.rsplit(" master", 1)[0] for r in ranks] == [
        "rank 0 of 2 sum 1", "rank 1 of 2 sum 1"], text + repr(ranks)


# ------------------------------------------------------------------------------ time limits
# Pre-training longer than its job's time limit, both ways it ends on a cluster, each through
# the `pretrain` rule's `retries`, resuming from a checkpoint, with the weights of a run that
# never stopped. Two projects cloned from the local baseline (only `pretrain` reruns, for the
# `--config` below) run side by side, one CPU each:
#  - "stop": a 5-minute limit, less than the default time_limit_margin (600 s), so the job
#    checkpoints and stops itself at its first metric line (update 5 of 10); the next finishes.
#  - "kill": margin 0 (off) and a 1-minute limit, at which SLURM kills the job (TIMEOUT). Once
#    the first checkpoint exists the test pauses the training (SIGSTOP): a run longer than its
#    limit without burning a CPU for a minute, and whatever the machine's speed.
TIME_LIMIT_RUNS = {"stop": ("pretrain={updates: 10}", 5),
                   "kill": ("pretrain={updates: 40, time_limit_margin: 0}", 1)}


def _pretrain_processes(proj: Path) -> list[int]:
    """The launcher and training processes (`... -m gptpipe pretrain ...`) running in `proj`."""
    found = []
    for pid in _processes_in(proj):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (b"gptpipe", b"pretrain") in itertools.pairwise(argv):
            found.append(pid)
    return found


def _pause_after_checkpoint(proj: Path, proc: subprocess.Popen, lines: list[str]) -> list[int]:
    """SIGSTOP `proj`'s training once its run's first checkpoint (update 10) is complete."""
    ck = proj / "results/checkpoints/pretrain"
    before = {p.name for p in ck.iterdir()} if ck.is_dir() else set()
    deadline = time.monotonic() + 300
    while not [m for m in ck.glob("*/step-00000010/meta.json") if m.parts[-3] not in before]:
        assert proc.poll() is None, "".join(lines)[-3000:]
        assert time.monotonic() < deadline, "pretrain wrote no checkpoint on the cluster"
        time.sleep(0.05)
    paused = _pretrain_processes(proj)
    for pid in paused:
        os.kill(pid, signal.SIGSTOP)
    assert paused and not (proj / "results/pretrain").exists(), "it finished before the pause"
    return paused


@pytest.fixture(scope="module")
def time_limit_runs(slurm_cluster, micro_smk, tmp_path_factory, mirror_env):
    """name -> (project, Snakemake's output, the figures of the same run done locally, the
    processes paused), for the two runs of TIME_LIMIT_RUNS."""
    base = tmp_path_factory.mktemp("time-limit")
    one_cpu = {"pretrain": 1}  # both fit the 2-CPU test node at once
    procs, lines, pumps = {}, {}, []
    for name, (config, minutes) in TIME_LIMIT_RUNS.items():
        proj = clone(micro_smk, base / name)
        procs[name] = slurm_snakemake(proj, "results/pretrain", "--config", config,
                                      env=mirror_env, popen=True, threads=one_cpu,
                                      resources={"pretrain": {"runtime": minutes}})
        lines[name] = []
        pumps.append(threading.Thread(target=lambda p=procs[name], out=lines[name]: out.extend(
            iter(p.stdout.readline, "")), daemon=True))
        pumps[-1].start()
    try:
        paused = _pause_after_checkpoint(base / "kill", procs["kill"], lines["kill"])
        # The uninterrupted runs, locally, with the same thread count, while SLURM works.
        local = clone(micro_smk, base / "local")
        figures = {}
        for name, (config, _) in TIME_LIMIT_RUNS.items():
            snakemake(local, "results/pretrain", "--set-threads", "pretrain=1", config=(config,),
                      env=mirror_env)
            figures[name] = pretrain_figures(local)
        for proc in procs.values():
            proc.wait(timeout=KILL_AFTER_S)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    for pump in pumps:
        pump.join(timeout=10)
    return {name: (base / name, "".join(lines[name]), figures[name],
                   paused if name == "kill" else []) for name in TIME_LIMIT_RUNS}


def _time_limit_checks(run: tuple, first_state: str) -> tuple[Path, str, int]:
    """What both runs must show: submissions that ended in `first_state` (two, unless the
    machine is slow enough for the second to run out of time as well), then one that resumed
    and completed with the uninterrupted run's curve and weights; (project, output, first job's
    id)."""
    proj, out, local, _ = run
    jobs = submissions(out).get("rule_pretrain", [])
    assert 2 <= len(jobs) <= 4, out[-4000:]  # at most 3 retries
    assert queued(jobs) == {**dict.fromkeys(jobs[:-1], first_state), jobs[-1]: "COMPLETED"}, \
        out[-4000:]
    assert "Trying to restart job" in out
    # Resubmitted, not rerun inside the allocation that ran out of time.
    logs = proj / ".snakemake/slurm_logs/rule_pretrain"
    assert not any("Trying to restart" in (logs / f"{j}.log").read_text() for j in jobs)
    assert pretrain_figures(proj) == local  # curve, final figures, weights' sha256
    return proj, out, jobs[0]


def test_time_limit_stop_before_the_limit_resubmits_and_resumes(time_limit_runs):
    proj, _, first = _time_limit_checks(time_limit_runs["stop"], "FAILED")
    log = (proj / f".snakemake/slurm_logs/rule_pretrain/{first}.log").read_text()
    # The job read its limit from squeue with only $SLURM_JOB_ID (the job step removes the rest).
    assert f"SLURM job {first} has " in log and "no more than pretrain.time_limit_margin " \
        "(600 s)" in log, log[-3000:]
    assert "stopped after update 5 of 10, 600 s before the SLURM job's time limit" in log, \
        log[-3000:]
    assert "exitcode  : 75" in log  # the training's status, under torchrun's failure report
    assert json.loads((proj / "results/pretrain/metrics.json").read_text())["resumed_from"] == 5


def test_time_limit_kill_by_slurm_resubmits_and_resumes(time_limit_runs):
    proj, out, _ = _time_limit_checks(time_limit_runs["kill"], "TIMEOUT")
    assert gone(time_limit_runs["kill"][3]), "the paused training outlived its job"
    resumed = json.loads((proj / "results/pretrain/metrics.json").read_text())["resumed_from"]
    assert resumed in (10, 20, 30), out[-3000:]

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
from slurm_runs import queued, slurm_logs, slurm_snakemake, submissions
from workflow_projects import (
    DVC, WALL_SECONDS, clone, finetune_figures, job_counts, pretrain_figures, project_copy, run,
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
                                                 "report")), "group_finetune_finetune"}
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

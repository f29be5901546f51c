"""The `slurm` tests' cluster and commands: a one-node SLURM on localhost (tests/slurm/cluster.sh)
and Snakemake runs through the project's SLURM profile, fitted to that node."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from workflow_projects import REPO, SNAKEMAKE, run, user_env

CLUSTER = REPO / "tests/slurm/cluster.sh"
PROFILE = "workflow/profiles/slurm"
FAKE_GPUS = 2  # the `gpu` GRES cluster.sh gives the node (device files that are not GPUs)
# Past this, a SLURM command is SIGKILLed (a hung executor ignores SIGTERM), failing its test.
KILL_AFTER_S = 900


def _node_idle() -> bool:
    if not shutil.which("sinfo"):
        return False
    res = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True)
    return res.returncode == 0 and res.stdout.strip() in ("idle", "mixed", "allocated")


def ensure_cluster() -> tuple[bool, str | None]:
    """(whether this call started the cluster, why it cannot run when it cannot)."""
    if _node_idle():
        return False, None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False, ("no SLURM cluster is up, and tests/slurm/cluster.sh needs root and apt to "
                       "start one (Debian's slurm-wlm)")
    res = subprocess.run(["timeout", "-s", "KILL", "600", str(CLUSTER), "start"],
                         capture_output=True, text=True,
                         env={**os.environ, "GPTPIPE_SLURM_GPUS": str(FAKE_GPUS)})
    if res.returncode != 0:
        return False, f"tests/slurm/cluster.sh start failed:\n{res.stderr[-3000:]}"
    return True, None


def stop_cluster() -> None:
    subprocess.run([str(CLUSTER), "stop"], capture_output=True, text=True, check=False)


def node_limits() -> tuple[int, int]:
    """(CPUs, memory in MB) of the test node, as SLURM sees them."""
    out = subprocess.run(["sinfo", "--noheader", "--format=%c %m"], capture_output=True,
                         text=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


# Threads per rule in the local baseline run (`snakemake --cores 2`: the rules that use every
# core get 2, the others 1). Snakemake sets OMP_NUM_THREADS to them, so a run that is to compute
# exactly the same numbers must use the same counts.
LOCAL_THREADS = {"ingest": 2, "bpe": 1, "shard": 2, "pretrain": 2, "pretrain_lstm": 1,
                 "finetune": 1, "zeroshot": 1}


def fitted_overrides(proj: Path, threads: dict[str, int] | None = None,
                     resources: dict[str, dict] | None = None) -> list[str]:
    """Command-line flags fitting the profile to the one test node: every `set-resources` entry
    kept, but capped to what the node has (a request larger than every node is never
    scheduled), the local run's thread counts, and a bundle of fine-tuning jobs capped to the
    node's CPUs, GPUs and memory (its jobs then take turns inside the allocation). On the
    CPU the fake GPUs change nothing but the process count, kept at the local run's one.
    `threads` (rule -> count) and `resources` (rule -> {key: value}) replace entries of those."""
    profile = yaml.safe_load((proj / PROFILE / "config.yaml").read_text())
    assert set(profile["set-threads"]) <= set(LOCAL_THREADS), "a threaded rule the test lacks"
    cpus, mem = node_limits()
    counts = {**LOCAL_THREADS, **(threads or {})}
    flags = ["--cores", str(cpus), "--resources", f"gpu={FAKE_GPUS}", f"mem_mb={mem // 2}",
             "--set-resource-scopes", "gpu=local",
             "--set-threads", *(f"{r}={n}" for r, n in counts.items()),
             "--set-resources"]
    fitted: dict[str, dict] = {}
    for rule, res in profile["set-resources"].items():
        for key, value in res.items():
            if key == "mem_mb":
                value = min(value, mem // 4)
            elif key == "runtime":
                value = min(value, 30)
            elif key == "gpu":  # one GPU each: pre-training then starts one process, as locally
                value = min(value, 1)
            fitted.setdefault(rule, {})[key] = value
    for rule, res in (resources or {}).items():
        fitted.setdefault(rule, {}).update(res)
    return flags + [f"{rule}:{key}={value}" for rule, res in fitted.items()
                    for key, value in res.items()]


def slurm_snakemake(proj: Path, *args: str, env: dict | None = None, check: bool = True,
                    popen: bool = False, threads: dict[str, int] | None = None,
                    resources: dict[str, dict] | None = None):
    """`snakemake --workflow-profile workflow/profiles/slurm ARGS` in `proj`, as a user of a small
    cluster types it (the profile's requests fitted to the node, `threads` and `resources` as
    `fitted_overrides` takes them), under `timeout -s KILL`.

    Status comes from `squeue` (the test cluster keeps no accounting database; finished jobs
    stay in squeue for its MinJobAge), checked 2 s after submission rather than the profile's 20,
    and SLURM's job logs are kept for the checks."""
    cmd = ["timeout", "-s", "KILL", str(KILL_AFTER_S), *SNAKEMAKE,
           "--workflow-profile", PROFILE, "--slurm-status-command", "squeue",
           "--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs",
           *args, *fitted_overrides(proj, threads, resources)]  # ARGS first: a list flag ends it
    if popen:
        return subprocess.Popen(cmd, cwd=proj, env=user_env(env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return run(cmd, proj, env=env, check=check, timeout=KILL_AFTER_S + 60)


def submissions(output: str) -> dict[str, list[int]]:
    """Where SLURM's logs go (`rule_<name>` for a job, `group_<group>_<rules>` for a bundle)
    -> the SLURM job ids Snakemake submitted there, from Snakemake's output."""
    found: dict[str, list[int]] = {}
    for m in re.finditer(r"has been submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/"
                         r"((?:rule|group)_[\w-]+)/\S*\)", output):
        found.setdefault(m.group(2), []).append(int(m.group(1)))
    return found


def slurm_logs(output: str) -> list[Path]:
    """The SLURM job logs Snakemake's output names, one per submission."""
    return [Path(p) for p in re.findall(r"has been submitted with SLURM jobid \d+ \(log: (\S+)\)",
                                        output)]


def queued(job_ids: list[int]) -> dict[int, str]:
    """SLURM's state of each job still known to the controller (finished ones included)."""
    res = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i %T",
                          "--jobs", ",".join(map(str, job_ids))],
                         capture_output=True, text=True)
    pairs = (line.split() for line in res.stdout.splitlines())
    return {int(i): state for i, state in pairs}

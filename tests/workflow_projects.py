"""Projects the workflow tests run in: copies of this checkout as a fresh clone has them, the
commands a user types there, and what those commands did.

Every run happens in a copy (under pytest's temporary folder), never in the checkout itself, so
the tests neither read nor disturb its `results/` and `data/`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)  # `python`, `torchrun` of this environment first
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
DVC = [sys.executable, "-m", "dvc"]
# Compared between runs: everything that depends on what was computed, nothing that depends on
# when or how fast (timestamps, durations, throughput, provenance).
# How long the session's baseline runs took (conftest fixture name -> seconds), for figures that
# compare a run with its baseline (the SLURM run's overhead).
WALL_SECONDS: dict[str, float] = {}
# What the session's baseline `dvc repro` printed (conftest fixture name -> stdout).
DVC_REPRO_OUTPUT: dict[str, str] = {}
CURVE_KEYS = ("step", "tokens", "loss", "val_loss", "val_bpb", "lr", "grad_norm")


def project_copy(dest: Path, scale: str | None = None) -> Path:
    """A copy of the project's files as a fresh clone has them (tracked or not ignored), with
    `scale:` in its params.yaml set to `scale` when given."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for rel in files:
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    if scale is not None:
        params = dest / "params.yaml"
        text, n = re.subn(r"(?m)^scale: \w+$", f"scale: {scale}", params.read_text())
        assert n == 1, "params.yaml has no top-level `scale:` line"
        params.write_text(text)
    return dest


def clone(src: Path, dest: Path) -> Path:
    """A copy of a project that has run, workflow metadata and timestamps included, so that
    Snakemake and DVC see exactly the state `src` was left in."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def user_env(env: dict | None = None) -> dict:
    """This environment, with its `python`, `snakemake` and `torchrun` first on PATH, plus `env`."""
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", ""), **(env or {})}


def run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True,
        timeout: int = 1800) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=user_env(env),
                         timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


def snakemake(cwd: Path, target: str, *args: str, config: tuple[str, ...] = (),
              env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`snakemake --cores 2 TARGET ARGS --config CONFIG` (`--config` takes every value after
    it, so it goes last)."""
    cmd = [*SNAKEMAKE, "--cores", "2", target, *args]
    return run([*cmd, "--config", *config] if config else cmd, cwd, env=env, check=check)


def job_counts(output: str) -> dict[str, int]:
    """Rule -> job count from the "Job stats" table Snakemake prints before it runs (or, with
    -n, would run) anything; {} when there is nothing to do."""
    if "Job stats:" not in output:
        assert "Nothing to be done" in output, output[-3000:]
        return {}
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = [line.split() for line in table.splitlines()]
    return {r[0]: int(r[1]) for r in rows
            if len(r) == 2 and r[1].isdigit() and r[0] not in ("total", "all")}


def planned(cwd: Path, target: str = "all", *config: str, env: dict | None = None,
            ) -> dict[str, int]:
    """The jobs a dry run for `target` would execute, per rule."""
    res = snakemake(cwd, target, "-n", config=config, env=env)
    return job_counts(res.stdout + res.stderr)


def dvc_ran(output: str) -> list[str]:
    """Stages `dvc repro`/`dvc exp run` ran, in order."""
    return re.findall(r"Running stage '([^']+)'", output)


def pretrain_figures(proj: Path) -> dict:
    """What pre-training computed: its loss curve, final figures and weights' digest."""
    out = proj / "results/pretrain"
    curve = [{k: json.loads(line)[k] for k in CURVE_KEYS}
             for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = json.loads((out / "metrics.json").read_text())
    import hashlib

    weights = hashlib.sha256((out / "model/model.safetensors").read_bytes()).hexdigest()
    return {"curve": curve, "weights": weights,
            **{k: final[k] for k in ("val_loss", "val_bpb", "unigram_val_loss", "tokens")}}


def finetune_figures(proj: Path) -> dict[str, dict]:
    """job folder -> its scores and training losses."""
    figures = {}
    for path in sorted((proj / "results/finetune").glob("*/*/seed*/metrics.json")):
        m = json.loads(path.read_text())
        job = path.parent.relative_to(proj / "results/finetune").as_posix()
        figures[job] = {"scores": m["scores"], "headline": m["headline"],
                        "losses": {k: v for k, v in m["train"].items()
                                   if "loss" in k or k == "steps"}}
    return figures

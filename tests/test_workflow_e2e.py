"""The data half of the real workflow (fetch -> ingest -> bpe -> shard, target `results/shard`)
on the shared sample, under Snakemake and under DVC.

Each test module works in its own copy of the project (tracked files only), so runs never
touch the checkout's `results/` and `data/`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TARGET = "results/shard"
pytestmark = pytest.mark.slow


def project_copy(dest: Path) -> Path:
    """A copy of the project's files as a fresh clone has them (tracked or not ignored)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for rel in files:
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True):
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, timeout=900)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


def snakemake(cwd: Path, *args: str, config: tuple[str, ...] = (), check: bool = True):
    """`snakemake TARGET ARGS --config CONFIG` (`--config` takes every value after it)."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", TARGET, *args]
    return run([*cmd, "--config", *config] if config else cmd, cwd, check=check)


def planned_rules(cwd: Path, *config: str) -> set[str]:
    """The rules a dry run would execute (from its job table)."""
    out = snakemake(cwd, "-n", config=config).stdout
    if "Nothing to be done" in out:
        return set()
    table = out.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = [line.split() for line in table.splitlines()[3:]]
    return {r[0] for r in rows if len(r) == 2 and r[0] not in ("total", "all")}


@pytest.fixture(scope="module")
def smk_project(tmp_path_factory, shared_data):
    proj = project_copy(tmp_path_factory.mktemp("smk"))
    snakemake(proj, config=(f"mirror={shared_data}",))
    return proj


def test_snakemake_runs_the_data_half(smk_project):
    manifest = json.loads((smk_project / "results/shard/manifest.json").read_text())
    assert manifest["splits"]["train"]["tokens"] > 100_000
    assert manifest["splits"]["val"]["samples"] > 0
    stats = json.loads((smk_project / "results/ingest/enwiki-sample/stats.json").read_text())
    assert stats["pages_seen"] == 206 and stats["dropped"]["redirect"] == 100
    bpe = json.loads((smk_project / "results/bpe/bpe.json").read_text())
    assert bpe["vocab_size"] == 8192 + 5 and manifest["vocab_size"] == 8192 + 5
    for log in ("fetch", "bpe", "shard", "ingest/enwiki-sample"):
        assert (smk_project / f"results/logs/{log}.log").is_file()


def test_second_snakemake_run_has_nothing_to_do(smk_project, shared_data):
    assert planned_rules(smk_project, f"mirror={shared_data}") == set()


def test_a_knob_reruns_only_what_reads_it(smk_project, shared_data):
    mirror = f"mirror={shared_data}"
    assert planned_rules(smk_project, mirror, "bpe={vocab_size: 4096}") == {"bpe", "shard"}
    assert planned_rules(smk_project, mirror, "shard={samples_per_shard: 100}") == {"shard"}
    assert planned_rules(smk_project, mirror, "ingest={min_chars: 50}") == {
        "ingest", "bpe", "shard"}


def test_a_config_override_reaches_the_stage(smk_project, shared_data):
    snakemake(smk_project, config=(f"mirror={shared_data}", "shard={samples_per_shard: 100}"))
    manifest = json.loads((smk_project / "results/shard/manifest.json").read_text())
    assert max(s["samples"] for s in manifest["splits"]["train"]["shards"]) == 100
    assert manifest["config"]["samples_per_shard"] == 100


def test_dvc_repro_runs_the_same_stages_and_then_is_clean(tmp_path, shared_data):
    proj = project_copy(tmp_path)
    run(["git", "init", "-q"], proj)
    env = {"GPTPIPE_MIRROR": str(shared_data)}
    dvc = [sys.executable, "-m", "dvc"]
    out = run([*dvc, "repro", "shard"], proj, env).stdout
    for stage in ("fetch", "ingest@enwiki-sample", "bpe", "shard"):
        assert f"Running stage '{stage}'" in out
    assert (proj / "results/shard/manifest.json").is_file()
    status = run([*dvc, "status", "shard"], proj, env).stdout
    assert "Data and pipelines are up to date" in status
    again = run([*dvc, "repro", "shard"], proj, env).stdout
    assert "Running stage" not in again

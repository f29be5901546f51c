"""The real workflow on the shared sample, under Snakemake and under DVC.

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
pytestmark = pytest.mark.slow


def project_copy(dest: Path) -> Path:
    """A copy of the tracked project files (what a fresh clone has)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
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


def snakemake(cwd: Path, *args: str, check: bool = True):
    return run([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd, check=check)


def planned_rules(cwd: Path, *args: str) -> set[str]:
    """The rules a dry run would execute (from its job table)."""
    out = snakemake(cwd, "-n", *args, TARGET).stdout
    if "Nothing to be done" in out:
        return set()
    table = out.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = [line.split() for line in table.splitlines()[3:]]
    return {r[0] for r in rows if len(r) == 2 and r[0] not in ("total", "all")}


TARGET = "results/shard"


@pytest.fixture(scope="module")
def smk_project(tmp_path_factory, shared_data):
    proj = project_copy(tmp_path_factory.mktemp("smk"))
    snakemake(proj, "--config", f"mirror={shared_data}", TARGET)
    return proj


def test_snakemake_runs_the_data_half(smk_project):
    manifest = json.loads((smk_project / "results/shard/manifest.json").read_text())
    assert manifest["splits"]["train"]["tokens"] > 100_000
    assert manifest["splits"]["val"]["samples"] > 0
    stats = json.loads((smk_project / "results/ingest/enwiki-sample/stats.json").read_text())
    assert stats["pages_seen"] == 206
    bpe = json.loads((smk_project / "results/bpe/bpe.json").read_text())
    assert bpe["vocab_size"] == 8192 + 5 and manifest["vocab_size"] == 8192 + 5
    for log in ("fetch", "bpe", "shard", "ingest/enwiki-sample"):
        assert (smk_project / f"results/logs/{log}.log").is_file()


def test_second_snakemake_run_has_nothing_to_do(smk_project, shared_data):
    assert planned_rules(smk_project, "--config", f"mirror={shared_data}") == set()


DATA_RULES = {"fetch", "ingest", "bpe", "shard"}


def test_a_knob_reruns_only_what_reads_it(smk_project, shared_data):
    mirror = f"mirror={shared_data}"
    plans = {
        "bpe={vocab_size: 4096}": {"bpe", "shard"},
        "shard={samples_per_shard: 100}": {"shard"},
        "ingest={min_chars: 50}": {"ingest", "bpe", "shard"},
        "model={n_layer: 2}": set(),
        "pretrain={lr: 0.0005}": set(),
    }
    for override, data_rules in plans.items():
        plan = planned_rules(smk_project, "--config", mirror, override)
        assert plan & DATA_RULES == data_rules, override
        assert "pretrain" in plan, override  # everything after shard depends on it


def test_snakemake_pretrains_below_the_unigram_baseline(smk_project):
    out = smk_project / "results/pretrain"
    figures = json.loads((out / "metrics.json").read_text())
    assert figures["val_loss"] <= figures["unigram_val_loss"] - 1.0, figures
    assert 0 < figures["val_bpb"] < 8 and figures["tokens"] == figures["updates"] * 2048
    assert {p.name for p in (out / "model").iterdir()} == {
        "model.safetensors", "model.json", "tokenizer.json"}
    assert len((out / "metrics.jsonl").read_text().splitlines()) >= 10
    assert json.loads((out / "config.json").read_text())["model"]["n_layer"] == 4
    # checkpoints stay outside the output, so that a rerun can resume from them
    assert list((smk_project / "results/checkpoints/pretrain").glob("*/step-*/meta.json"))
    assert (smk_project / "results/logs/pretrain.log").is_file()


def test_a_config_override_reaches_the_stage(smk_project, shared_data):
    snakemake(smk_project, "results/shard", "--config", f"mirror={shared_data}",
              "shard={samples_per_shard: 100}")
    manifest = json.loads((smk_project / "results/shard/manifest.json").read_text())
    assert max(s["samples"] for s in manifest["splits"]["train"]["shards"]) == 100
    assert manifest["config"]["samples_per_shard"] == 100


def test_dvc_repro_runs_the_same_stages_and_then_is_clean(tmp_path, shared_data):
    proj = project_copy(tmp_path)
    run(["git", "init", "-q"], proj)
    env = {"GPTPIPE_MIRROR": str(shared_data)}
    # The Snakemake run above trains the real tiny preset; here 20 updates show the stage runs.
    params = proj / "params.yaml"
    params.write_text(params.read_text().replace("\npretrain: {}\n", "\npretrain: {updates: 20}\n"))
    dvc = [sys.executable, "-m", "dvc"]
    out = run([*dvc, "repro", "shard"], proj, env).stdout
    for stage in ("fetch", "ingest@enwiki-sample", "bpe", "shard", "pretrain"):
        assert f"Running stage '{stage}'" in out
    assert (proj / "results/shard/manifest.json").is_file()
    assert json.loads((proj / "results/pretrain/metrics.json").read_text())["updates"] == 20
    status = run([*dvc, "status", "shard"], proj, env).stdout
    assert "Data and pipelines are up to date" in status
    again = run([*dvc, "repro", "shard"], proj, env).stdout
    assert "Running stage" not in again

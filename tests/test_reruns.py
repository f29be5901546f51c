"""Reruns redo only what a change touches, under Snakemake and under DVC (issue #5, point 3).

Each test starts from a clone of one baseline run of the `micro` DAG (conftest's `micro_smk`,
`micro_dvc`) and does what a user would: run again, change a knob, delete an output, push and
pull through a DVC remote (a workflow killed mid-stage: tests/test_soak.py). "Matches" means the
computed figures are equal (exactly: CPU, fixed thread counts), not timestamps, durations or provenance.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from workflow_projects import (
    DVC, clone, dvc_ran, finetune_figures, job_counts, planned, pretrain_figures, run,
    snakemake,
)

pytestmark = pytest.mark.slow
EVERY_RULE = {"fetch", "ingest", "bpe", "shard", "pretrain", "finetune", "zeroshot", "report"}
MICRO_JOBS = {"SST-2/full/seed0", "RTE/full/seed0", "SST-2/no_pretrain/seed0"}


@pytest.fixture
def smk(micro_smk, tmp_path) -> Path:
    return clone(micro_smk, tmp_path / "proj")


@pytest.fixture
def dvc(micro_dvc, tmp_path) -> Path:
    return clone(micro_dvc, tmp_path / "proj")


# ------------------------------------------------------------------------------ Snakemake


def test_baseline_is_the_micro_dag(micro_smk):
    assert set(finetune_figures(micro_smk)) == MICRO_JOBS
    assert (micro_smk / "results/report/index.html").is_file()
    figures = json.loads((micro_smk / "results/pretrain/metrics.json").read_text())
    assert figures["updates"] == 30 and figures["val_loss"] > 0


def test_second_snakemake_run_has_nothing_to_do(micro_smk, mirror_env):
    assert planned(micro_smk, env=mirror_env) == {}


def test_a_finetune_knob_reruns_finetune_and_report_only(smk, micro_smk, mirror_env):
    res = snakemake(smk, "all", config=("finetune={lr: 0.0001}",), env=mirror_env)
    assert job_counts(res.stderr + res.stdout) == {"finetune": 3, "report": 1}
    assert pretrain_figures(smk) == pretrain_figures(micro_smk)
    new, old = finetune_figures(smk), finetune_figures(micro_smk)
    assert new.keys() == old.keys() and new != old  # the knob reached the jobs
    lr = {json.loads(p.read_text())["train"]["lr"]
          for p in (smk / "results/finetune").glob("*/*/seed*/metrics.json")}
    assert lr == {0.0001}


def test_a_vocabulary_change_reruns_everything_from_bpe(micro_smk, mirror_env):
    plan = planned(micro_smk, "all", "bpe={vocab_size: 512}", env=mirror_env)
    assert plan == {"bpe": 1, "shard": 1, "pretrain": 1, "finetune": 3, "zeroshot": 1,
                    "report": 1}


@pytest.mark.parametrize("override, rules", [
    ("model={n_layer: 1}", {"pretrain", "finetune", "zeroshot", "report"}),
    ("pretrain={lr: 0.0005}", {"pretrain", "finetune", "zeroshot", "report"}),
    ("shard={samples_per_shard: 100}", {"shard", "pretrain", "finetune", "zeroshot", "report"}),
    ("ingest={min_chars: 50}", {"ingest", "bpe", "shard", "pretrain", "finetune", "zeroshot",
                                "report"}),
    ("zeroshot={max_examples: 8}", {"zeroshot", "report"}),
    ("report={max_notes: 2}", {"report"}),
])
def test_each_knob_reruns_what_reads_it(micro_smk, mirror_env, override, rules):
    assert set(planned(micro_smk, "all", override, env=mirror_env)) == rules


def test_a_deleted_output_reruns_it_and_what_depends_on_it(smk, micro_smk, mirror_env):
    shutil.rmtree(smk / "results/finetune/RTE/full/seed0")
    res = snakemake(smk, "all", env=mirror_env)
    assert job_counts(res.stderr + res.stdout) == {"finetune": 1, "report": 1}
    assert finetune_figures(smk) == finetune_figures(micro_smk)
    shutil.rmtree(smk / "results/shard")
    assert planned(smk, env=mirror_env) == {"shard": 1, "pretrain": 1, "finetune": 3,
                                            "zeroshot": 1, "report": 1}


def test_scale_reaches_every_stage_from_the_command_line(micro_smk, mirror_env):
    """`--config scale=gpt1`: every rule reruns, each told the new scale; the paper's tasks
    and corpus (its 59 dump parts: a fetch_dump and an ingest job each)."""
    res = snakemake(micro_smk, "all", "-n", "-p", config=("scale=gpt1",), env=mirror_env)
    plan = job_counts(res.stdout)
    assert set(plan) == EVERY_RULE | {"fetch_dump"} and plan["finetune"] > 14
    assert plan["fetch_dump"] == plan["ingest"] == 59
    commands = [c for c in res.stdout.splitlines() if " -m gptpipe " in c]
    assert commands and all("--scale gpt1" in c for c in commands), commands
    assert "data/glue/MNLI" in res.stdout and "data/other/RACE" in res.stdout  # paper's tasks


# ------------------------------------------------------------------------------------ DVC


def test_second_dvc_repro_has_nothing_to_do(micro_dvc, mirror_env):
    res = run([*DVC, "repro"], micro_dvc, env=mirror_env)
    assert dvc_ran(res.stdout) == []
    assert "Data and pipelines are up to date" in run([*DVC, "status"], micro_dvc).stdout


def test_dvc_exp_run_with_a_finetune_knob_reruns_finetune_and_report(dvc, micro_dvc,
                                                                     mirror_env):
    before = pretrain_figures(dvc)
    res = run([*DVC, "exp", "run", "-S", "finetune.lr=0.0001"], dvc, env=mirror_env)
    ran = dvc_ran(res.stdout)
    assert ran and {s.split("@")[0] for s in ran} == {"finetune", "report"}, ran
    assert pretrain_figures(dvc) == before
    lr = {json.loads(p.read_text())["train"]["lr"]
          for p in (dvc / "results/finetune").glob("*/*/seed*/metrics.json")}
    assert lr == {0.0001}


def test_dvc_scale_switch_reaches_every_stage(dvc):
    """What `dvc exp run -S scale=gpt1` changes (the `scale` key) invalidates every stage. (The
    run itself would pre-train GPT-1 for 110 B tokens: `dvc status` shows the plan.)"""
    params = dvc / "params.yaml"
    params.write_text(params.read_text().replace("scale: micro", "scale: gpt1"))
    status = json.loads(run([*DVC, "status", "--json"], dvc).stdout)
    changed = {name.split("@")[0] for name, what in status.items()
               if any("params.yaml" in json.dumps(w) and "scale" in json.dumps(w) for w in what)}
    assert changed == EVERY_RULE, status


def test_dvc_push_wipe_pull_restores_every_output(dvc, tmp_path, mirror_env):
    before = pretrain_figures(dvc), finetune_figures(dvc)
    run([*DVC, "remote", "add", "-d", "local", str(tmp_path / "remote")], dvc)
    run([*DVC, "push"], dvc)
    shutil.rmtree(dvc / "results")
    shutil.rmtree(dvc / "data")
    shutil.rmtree(dvc / ".dvc/cache")
    assert "Data and pipelines are up to date" not in run([*DVC, "status"], dvc).stdout
    run([*DVC, "pull"], dvc)
    assert "Data and pipelines are up to date" in run([*DVC, "status"], dvc).stdout
    assert (pretrain_figures(dvc), finetune_figures(dvc)) == before
    assert (dvc / "results/report/index.html").is_file()

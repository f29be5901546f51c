"""Reruns redo only what a change touches, under Snakemake and under DVC (issue #5, point 3).

Each test starts from a clone of one baseline run of the `micro` DAG (conftest's `micro_smk`,
`micro_dvc`) and does what a user would: run again, change a knob, delete an output, push and
pull through a DVC remote (a workflow killed mid-stage: tests/test_soak.py). "Matches" means the
computed figures are equal (exactly: CPU, fixed thread counts), not timestamps, durations or provenance.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from gptpipe import workflow as gw
from gptpipe.config import load_params, validate_params
from gptpipe.dvcyaml import render
from workflow_projects import (
    DVC, DVC_REPRO_OUTPUT, clone, dvc_ran, finetune_figures, job_counts, planned,
    pretrain_figures, run, snakemake,
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
    assert set(plan) == EVERY_RULE | {"fetch_dump", "pretrain_lstm"} and plan["finetune"] > 14
    assert plan["fetch_dump"] == plan["ingest"] == 59
    commands = [c for c in res.stdout.splitlines() if " -m gptpipe " in c]
    assert commands and all("--scale gpt1" in c for c in commands), commands
    assert "data/glue/MNLI" in res.stdout and "data/other/RACE" in res.stdout  # paper's tasks


# ------------------------------------------------------------------------------------ DVC


def test_second_dvc_repro_has_nothing_to_do(micro_dvc, mirror_env):
    res = run([*DVC, "repro"], micro_dvc, env=mirror_env)
    assert dvc_ran(res.stdout) == []
    assert "Data and pipelines are up to date" in run([*DVC, "status"], micro_dvc).stdout


def test_dvc_repro_runs_the_micro_job_list_only(micro_dvc):
    """With `scale: micro`, `gptpipe dvc-yaml` writes the micro DAG and `dvc repro` runs it:
    micro's fine-tuning jobs, not the tiny demo's in the committed dvc.yaml."""
    params = load_params(micro_dvc / "params.yaml")
    assert params["scale"] == "micro"
    assert (micro_dvc / "dvc.yaml").read_text() == render(params)
    jobs = {f"finetune@{t}-{v}-{s}" for t, v, s in gw.finetune_jobs(
        validate_params(params)["finetune"])}
    assert jobs == {"finetune@" + j.replace("/seed", "-").replace("/", "-") for j in MICRO_JOBS}
    ran = dvc_ran(DVC_REPRO_OUTPUT["micro_dvc"])
    assert {s for s in ran if s.startswith("finetune@")} == jobs, ran
    assert {s.split("@")[0] for s in ran} == EVERY_RULE, ran
    # .dvc/config's cache.type: the outputs are hard-linked into the cache, not copied
    assert (micro_dvc / "results/pretrain/model/model.safetensors").stat().st_nlink == 2


def test_dvc_metrics_plots_and_exp_show_compare_a_finetune_knob(dvc, micro_dvc, mirror_env,
                                                                 tmp_path):
    """`dvc metrics show` lists val_loss and the fine-tuning scores, `dvc plots show` writes its
    HTML, and `dvc exp run -S finetune.lm_weight=0.0` reruns fine-tuning and the report only
    and shows up in `dvc exp show` with its val_loss, knob and scores (issue #15)."""
    shown = json.loads(run([*DVC, "metrics", "show", "--json"], dvc).stdout)
    metrics = next(iter(shown.values()))["data"]
    pretrain = metrics["results/pretrain/metrics.json"]["data"]
    assert {"val_loss", "val_bpb", "tokens_per_s"} <= set(pretrain)
    scores = metrics["results/report/scores.json"]["data"]
    assert set(scores) == {"SST-2", "RTE"} and set(scores["SST-2"]) == {"full", "no_pretrain"}
    # one seed: `std` is null, which DVC leaves out
    assert set(scores["RTE"]["full"]) == {"mean", "seeds", "metric", "split"}
    run([*DVC, "plots", "show", "-o", str(tmp_path / "plots")], dvc)
    html = (tmp_path / "plots/index.html").read_text()
    assert "val_loss" in html and "SST-2 no_pretrain" in html and html.count("vegaEmbed") == 3

    before = pretrain_figures(dvc)
    res = run([*DVC, "exp", "run", "-S", "finetune.lm_weight=0.0"], dvc, env=mirror_env)
    ran = dvc_ran(res.stdout)
    assert ran and {s.split("@")[0] for s in ran} == {"finetune", "report"}, ran
    assert pretrain_figures(dvc) == before
    weights = {json.loads(p.read_text())["train"]["lm_weight"]
               for p in (dvc / "results/finetune").glob("*/*/seed*/metrics.json")}
    assert weights == {0.0}
    rows = list(csv.DictReader(io.StringIO(run([*DVC, "exp", "show", "--csv"], dvc).stdout)))
    assert {"val_loss", "finetune.lm_weight", "SST-2.full.mean"} <= set(rows[0]), list(rows[0])
    exp = [r for r in rows if r["Experiment"] and r["finetune.lm_weight"] == "0.0"]
    assert len(exp) == 1 and float(exp[0]["val_loss"]) == before["val_loss"], rows
    diff = json.loads(run([*DVC, "metrics", "diff", "--all", "--json"], dvc).stdout)
    assert "SST-2.full.mean" in diff["results/report/scores.json"], diff
    run([*DVC, "plots", "diff", "-o", str(tmp_path / "diff")], dvc)
    assert (tmp_path / "diff/index.html").is_file()


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

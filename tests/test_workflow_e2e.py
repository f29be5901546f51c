"""The real workflow on the shared sample, under Snakemake and under DVC.

The Snakemake run is the README's demo up to `pretrain`, at the real `tiny` scale: the data half,
then a few minutes of pre-training that must end at least 1 nat below the unigram baseline.
Each test module works in its own copy of the project (what a fresh clone has), so runs never
touch the checkout's `results/` and `data/`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)  # `python`, `torchrun` of this environment first
TARGET = "results/pretrain"
DATA_RULES = {"fetch", "ingest", "bpe", "shard"}
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
    path = {"PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, **path, **(env or {})}, timeout=1800)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


def snakemake(cwd: Path, target: str, *args: str, config: tuple[str, ...] = (),
              check: bool = True):
    """`snakemake TARGET ARGS --config CONFIG` (`--config` takes every value after it)."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", target, *args]
    return run([*cmd, "--config", *config] if config else cmd, cwd, check=check)


def planned_rules(cwd: Path, *config: str, target: str = TARGET) -> set[str]:
    """The rules a dry run for `target` would execute (from its job table)."""
    out = snakemake(cwd, target, "-n", config=config).stdout
    if "Nothing to be done" in out:
        return set()
    table = out.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = [line.split() for line in table.splitlines()]
    return {r[0] for r in rows
            if len(r) == 2 and r[1].isdigit() and r[0] not in ("total", "all")}


@pytest.fixture(scope="module")
def smk_project(tmp_path_factory, shared_data):
    proj = project_copy(tmp_path_factory.mktemp("smk"))
    snakemake(proj, TARGET, config=(f"mirror={shared_data}",))
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


def test_snakemake_pretrains_below_the_unigram_baseline(smk_project):
    """The tiny preset's acceptance figure: validation loss >= 1 nat under the unigram model."""
    out = smk_project / "results/pretrain"
    figures = json.loads((out / "metrics.json").read_text())
    assert figures["val_loss"] <= figures["unigram_val_loss"] - 1.0, figures
    assert figures["below_unigram"] >= 1.0
    assert 0 < figures["val_bpb"] < 8 and figures["tokens"] == figures["updates"] * 2048
    assert figures["updates"] == 400 and figures["processes"] == 1
    assert {p.name for p in (out / "model").iterdir()} == {
        "model.safetensors", "model.json", "tokenizer.json"}
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) >= 40 and lines[-1]["step"] == 400
    assert set(lines[0]) == {"step", "tokens", "loss", "val_loss", "val_bpb", "lr", "grad_norm",
                             "tokens_per_s", "mfu"}
    assert [r["step"] for r in lines if r["val_loss"] is not None] == [100, 200, 300, 400]
    assert json.loads((out / "config.json").read_text())["model"]["n_layer"] == 4
    # Checkpoints stay outside the output, so that a rerun can resume from them.
    assert list((smk_project / "results/checkpoints/pretrain").glob("*/step-*/meta.json"))
    assert "val loss" in (smk_project / "results/logs/pretrain.log").read_text()


def test_snakemake_finetunes_every_sample_task(smk_project, shared_data):
    """The rest of the default target: every task of the sample in `full`, and the two
    ablation variants on SST-2 and CoLA, one job each (the tiny preset's list)."""
    snakemake(smk_project, "all", config=(f"mirror={shared_data}",))
    runs = {}
    for path in (smk_project / "results/finetune").glob("*/*/seed*/metrics.json"):
        m = json.loads(path.read_text())
        assert path.parent.relative_to(smk_project / "results/finetune").as_posix() == \
            f"{m['task']}/{m['variant']}/seed{m['seed']}"
        assert m["headline"]["value"] is not None and m["train"]["steps"] > 0, path
        assert (path.parent / "predictions.jsonl").stat().st_size > 0
        runs[m["task"], m["variant"]] = m
    tasks = {"CoLA", "SST-2", "MRPC", "STS-B", "QQP", "QNLI", "RTE", "WNLI", "SNLI", "StoryCloze"}
    assert {t for t, v in runs if v == "full"} == tasks
    assert {k for k in runs if k[1] != "full"} == {
        (t, v) for t in ("SST-2", "CoLA") for v in ("no_aux", "no_pretrain")}
    assert not runs["SST-2", "no_pretrain"]["model"]["pretrained"]
    assert runs["SST-2", "no_aux"]["recipe"]["lm_weight"] == 0
    # WNLI's whole test split fits the tiny caps: a complete GLUE submission file.
    wnli = smk_project / "results/finetune/WNLI/full/seed0/WNLI.tsv"
    assert len(wnli.read_text().splitlines()) == 1 + 146
    # The QQP subset's malformed row is reported with its file and line, not dropped silently.
    reports = runs["QQP", "full"]["load_reports"]
    assert any(r["malformed"] and r["malformed"][0]["line"] >= 1 for r in reports), reports
    assert (smk_project / "results/logs/finetune/CoLA/full/seed0.log").is_file()


def test_snakemake_reports_every_run_beside_the_paper(smk_project):
    out = smk_project / "results/report"
    page = (out / "index.html").read_text(encoding="utf-8")
    data = json.loads((out / "report.json").read_text())
    assert "Table 4" in page and "Table 5" in page and "not run" in page
    assert page.count('src="data:image/png;base64,') == len(list(out.glob("*.png"))) >= 3
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing to fetch: self-contained
    assert "MNLI.zip" not in json.dumps(data["provenance"]["inputs"])  # only what the run read
    assert data["provenance"]["git"]
    assert "CoLA" in (out / "report.md").read_text(encoding="utf-8")
    assert (smk_project / "results/logs/report.log").is_file()


def test_snakemake_report_holds_the_figures(smk_project, shared_data):
    snakemake(smk_project, "all", "--report", "results/snakemake-report.zip",
              config=(f"mirror={shared_data}",))
    import zipfile

    names = zipfile.ZipFile(smk_project / "results/snakemake-report.zip").namelist()
    assert any(n.endswith("pretrain_loss.png") for n in names), names


def test_second_snakemake_run_has_nothing_to_do(smk_project, shared_data):
    assert planned_rules(smk_project, f"mirror={shared_data}", target="all") == set()


def test_a_knob_reruns_only_what_reads_it(smk_project, shared_data):
    mirror = f"mirror={shared_data}"
    finetune = planned_rules(smk_project, mirror, "finetune={lr: 0.0001}", target="all")
    assert finetune == {"finetune", "report"}
    plans = {
        "bpe={vocab_size: 4096}": {"bpe", "shard", "pretrain"},
        "shard={samples_per_shard: 100}": {"shard", "pretrain"},
        "ingest={min_chars: 50}": {"ingest", "bpe", "shard", "pretrain"},
        "model={n_layer: 2}": {"pretrain"},
        "pretrain={lr: 0.0005}": {"pretrain"},
    }
    for override, rules in plans.items():
        assert planned_rules(smk_project, mirror, override) == rules, override


def test_a_config_override_reaches_the_stage(smk_project, shared_data):
    snakemake(smk_project, "results/shard",
              config=(f"mirror={shared_data}", "shard={samples_per_shard: 100}"))
    manifest = json.loads((smk_project / "results/shard/manifest.json").read_text())
    assert max(s["samples"] for s in manifest["splits"]["train"]["shards"]) == 100
    assert manifest["config"]["samples_per_shard"] == 100


def test_dvc_repro_runs_the_same_stages_and_then_is_clean(tmp_path, shared_data):
    proj = project_copy(tmp_path)
    run(["git", "init", "-q"], proj)
    env = {"GPTPIPE_MIRROR": str(shared_data)}
    # The Snakemake run above trains the real tiny preset; 20 updates show DVC runs the stage.
    params = proj / "params.yaml"
    text = params.read_text()
    assert "\npretrain: {}\n" in text
    params.write_text(text.replace("\npretrain: {}\n", "\npretrain: {updates: 20}\n"))
    dvc = [sys.executable, "-m", "dvc"]
    out = run([*dvc, "repro", "pretrain"], proj, env).stdout
    for stage in ("fetch", "ingest@enwiki-sample", "bpe", "shard", "pretrain"):
        assert f"Running stage '{stage}'" in out
    assert json.loads((proj / "results/pretrain/metrics.json").read_text())["updates"] == 20
    status = run([*dvc, "status", "pretrain"], proj, env).stdout
    assert "Data and pipelines are up to date" in status
    again = run([*dvc, "repro", "pretrain"], proj, env).stdout
    assert "Running stage" not in again

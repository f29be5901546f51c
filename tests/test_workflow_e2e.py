"""The README's demo, for real: the whole DAG at the `tiny` scale on the shared sample.

The data half, then three minutes of pre-training that must end at least 1 nat below the unigram
baseline, every sample task fine-tuned and the report. It runs in a copy of the project (what a
fresh clone has), never touching the checkout's `results/` and `data/`. What reruns after a
change is tested at the `micro` scale (test_reruns.py).
"""

from __future__ import annotations

import json
import re

import pytest

from workflow_projects import project_copy, snakemake

TARGET = "results/pretrain"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smk_project(tmp_path_factory, shared_data):
    proj = project_copy(tmp_path_factory.mktemp("smk"))
    snakemake(proj, TARGET, config=(f"mirror={shared_data}",))  # the README's way to the mirror
    return proj


def test_snakemake_runs_the_data_half(smk_project):
    manifest = json.loads((smk_project / "results/shard/manifest.json").read_text())
    assert manifest["splits"]["train"]["tokens"] > 100_000
    assert manifest["splits"]["val"]["samples"] > 0
    stats = json.loads((smk_project / "results/ingest/enwiki-sample/stats.json").read_text())
    assert stats["pages_seen"] == 206 and stats["dropped"]["redirect"] == 100
    bpe = json.loads((smk_project / "results/bpe/bpe.json").read_text())
    assert bpe["vocab_size"] == 4096 + 5 and manifest["vocab_size"] == 4096 + 5
    for log in ("fetch", "bpe", "shard", "ingest/enwiki-sample"):
        assert (smk_project / f"results/logs/{log}.log").is_file()


def test_snakemake_pretrains_below_the_unigram_baseline(smk_project):
    """The tiny preset's acceptance figure: validation loss >= 1 nat under the unigram model."""
    out = smk_project / "results/pretrain"
    figures = json.loads((out / "metrics.json").read_text())
    assert figures["val_loss"] <= figures["unigram_val_loss"] - 1.0, figures
    assert figures["below_unigram"] >= 1.0
    assert 0 < figures["val_bpb"] < 8 and figures["tokens"] == figures["updates"] * 512
    assert figures["updates"] == 800 and figures["processes"] == 1
    assert {p.name for p in (out / "model").iterdir()} == {
        "model.safetensors", "model.json", "tokenizer.json"}
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) >= 40 and lines[-1]["step"] == 800
    assert set(lines[0]) == {"step", "tokens", "loss", "val_loss", "val_bpb", "lr", "grad_norm",
                             "tokens_per_s", "mfu"}
    assert [r["step"] for r in lines if r["val_loss"] is not None] == [200, 400, 600, 800]
    assert json.loads((out / "config.json").read_text())["model"]["n_layer"] == 4
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))  # the test extra has it
    # Weight snapshots for the zeroshot stage: the untrained model and every 100 updates.
    index = json.loads((out / "snapshots/index.json").read_text())
    assert [s["update"] for s in index] == list(range(0, 801, 100))
    # Checkpoints stay outside the output, so that a rerun can resume from them.
    assert list((smk_project / "results/checkpoints/pretrain").glob("*/step-*/meta.json"))
    assert "val loss" in (smk_project / "results/logs/pretrain.log").read_text()


def test_snakemake_finetunes_every_sample_task(smk_project, shared_data):
    """The rest of the default target: every task of the sample in `full`, the ablation
    variants (LSTM included) on SST-2 and CoLA, and SST-2 with 0, 2 and 4 blocks transferred,
    one job each (the tiny preset's list)."""
    snakemake(smk_project, "all", config=(f"mirror={shared_data}",))
    runs = {}
    for path in (smk_project / "results/finetune").glob("*/*/seed*/metrics.json"):
        m = json.loads(path.read_text())
        assert path.parent.relative_to(smk_project / "results/finetune").as_posix() == \
            f"{m['task']}/{m['variant']}/seed{m['seed']}"
        assert m["headline"]["value"] is not None and m["train"]["steps"] > 0, path
        assert (path.parent / "predictions.jsonl").stat().st_size > 0
        assert list((path.parent / "tensorboard").glob("events.out.tfevents.*")), path
        runs[m["task"], m["variant"]] = m
    tasks = {"CoLA", "SST-2", "MRPC", "STS-B", "QQP", "QNLI", "RTE", "WNLI", "SNLI", "StoryCloze"}
    assert {t for t, v in runs if v == "full"} == tasks
    assert {k for k in runs if k[1] != "full"} == {
        (t, v) for t in ("SST-2", "CoLA") for v in ("no_aux", "no_pretrain", "lstm")} | {
        ("SST-2", f"transfer{k}") for k in (0, 2, 4)}  # Figure 2 (left)
    assert not runs["SST-2", "no_pretrain"]["model"]["pretrained"]
    # Table 5's LSTM row: the full recipe on the LSTM branch's own pre-training.
    lstm = runs["CoLA", "lstm"]
    assert lstm["model"]["config"]["arch"] == "lstm" and lstm["recipe"]["lm_weight"] == 0.5
    assert lstm["model"]["folder"] == "results/pretrain_lstm/model"
    pre = json.loads((smk_project / "results/pretrain_lstm/metrics.json").read_text())
    assert pre["val_loss"] < pre["unigram_val_loss"]
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
    # Figure 2 (left): tiny fine-tunes SST-2 with 0, 2 and 4 of its 4 blocks transferred.
    assert "Layers transferred" in page and (out / "layers_transferred.png").is_file()
    assert [(r["task"], r["k"]) for r in data["layers_transferred"]] == [
        ("SST-2", 0), ("SST-2", 2), ("SST-2", 4)]
    assert (smk_project / "results/logs/report.log").is_file()
    # Figure 2 (right): the zero-shot scores of SST-2 and CoLA over the 9 snapshots, 200 each.
    zs = data["zeroshot"]
    assert {t: (r["examples"], len(r["points"])) for t, r in zs["tasks"].items()} == {
        "SST-2": (200, 9), "CoLA": (200, 9)}
    assert set(zs["not_run"]) == {"RACE", "DPRD"} and "Zero-shot" in page


def test_snakemake_report_holds_the_figures(smk_project, shared_data):
    snakemake(smk_project, "all", "--report", "results/snakemake-report.zip",
              config=(f"mirror={shared_data}",))
    import zipfile

    names = zipfile.ZipFile(smk_project / "results/snakemake-report.zip").namelist()
    assert any(n.endswith("pretrain_loss.png") for n in names), names

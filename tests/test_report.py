"""The report stage: paper tables with mean/std/n over seeds, self-contained HTML, provenance,
one-line errors naming the bad file. Stage outputs are small fakes written into tmp_path with
the layout of a real tiny run (pretrain, finetune jobs, bpe, shard, ingest)."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest

from gptpipe import tasks
from gptpipe.config import ReportConfig, load_params, resolve_section
from gptpipe.errors import GptpipeError
from gptpipe.report import collect, provenance, tables
from gptpipe.report import cli as stage

DUMP_SHA = "sha256:" + "ab" * 32
TASK_SHA = "sha256:" + "cd" * 32
TOKENIZER_SHA = "e" * 64
PARAMS = f"""\
scale: micro
fetch:
  sources:
    - {{name: enwiki-part1, role: dump, path: wikipedia/enwiki-20200101-pages-articles1.xml.bz2,
       checksum: "{DUMP_SHA}", url: "https://example.org/enwiki.bz2"}}
    - {{name: glue-sst2, role: task, kind: archive, strip_components: 1, path: glue/SST-2,
       url: "https://example.org/SST-2.zip", checksum: "{TASK_SHA}"}}
pretrain: {{lr: 0.001}}
"""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- fake stage outputs


def _write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    return path


def _pretrain(root: Path, config_lr: float = 0.001) -> Path:
    folder = root / "pretrain"
    _write(folder / "metrics.json", {
        "below_unigram": 1.27, "device": "cpu", "flops_per_token": 33_117_696, "mfu": None,
        "parameters": 5_290_240, "processes": 1, "resumed_from": None, "tokens": 81_920,
        "tokens_per_s": 1707.9, "train_seconds": 48.0, "unigram_val_loss": 7.233,
        "updates": 40, "val_bpb": 2.178, "val_loss": 5.963, "val_tokens": 7_424,
        "wall_seconds": 50.0,
    })
    lines = []
    for step in range(10, 50, 10):
        val = 7.5 - step / 20 if step % 20 == 0 else None
        lines.append({"step": step, "tokens": step * 2048, "loss": 9.0 - step / 10,
                      "val_loss": val, "val_bpb": None if val is None else val / 2.7,
                      "lr": 1e-3 * step / 40, "grad_norm": 1.0, "tokens_per_s": 1800.0,
                      "mfu": None})
    lines.append({**lines[-1], "loss": 4.5})  # a resumed run logs its last step again
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    _write(folder / "config.json", {"model": {"n_layer": 2, "n_head": 2, "d_model": 64,
                                              "d_ff": 256},
                                    "pretrain": {"lr": config_lr, "updates": 30}})
    return folder


def _job(root: Path, task: str, variant: str, seed: int, scores: dict[str, dict[str, float]],
         metric: str, **extra) -> Path:
    """A finetune job folder whose metrics.json has the real run's layout."""
    split = next(iter(scores))
    folder = root / "finetune" / task / variant / f"seed{seed}"
    _write(folder / "metrics.json", {
        "task": task, "variant": variant, "seed": seed, "device": "cpu", "threads": 1,
        "headline": {"metric": metric, "split": split, "percent": scores[split][metric],
                     "value": scores[split][metric] / 100},
        "scores": {s: {m: v / 100 for m, v in ms.items()} for s, ms in scores.items()},
        "scores_percent": scores, "reported_splits": list(scores),
        "paper_percent": dict(tasks.get(task).paper),
        "notes": extra.get("notes", []), "load_reports": extra.get("load_reports", []),
        "truncation": extra.get("truncation", {}),
        "caps": {"applied": True, "max_train_examples": 32, "max_eval_examples": 32},
        "examples": {"train": {"available": 100, "used": 32}, split: {"available": 20, "used": 20}},
        "seconds": {"predict": 1.0, "total": 6.0, "train": 4.0},
        "train": {"examples_seen": 32, "steps": 4},
        "model": {"pretrained": variant != "no_pretrain", "tokenizer_sha256": TOKENIZER_SHA},
        "config": {"lr": 6.25e-05, "max_len": 64, "seeds": [0, 1]},
    })
    return folder


def _malformed_report(n: int) -> dict:
    name = "data/glue/CoLA/train.tsv"
    return {"file": name, "split": "train", "rows": 100, "kept": 100 - n - 3,
            "malformed": [{"file": name, "line": i + 2, "why": "3 fields, expected 4"}
                          for i in range(n)],
            "dropped": {"no_label": 3, "other_split": 0}}


def _shard(i: int, n: int) -> dict:
    return {"name": f"train-{i:06d}.tar", "samples": n, "sha256": "0" * 64, "tokens": n * 65}


def build_run(root: Path, config_lr: float = 0.001) -> dict:
    """Fake outputs of every stage; returns the stage's keyword arguments."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(PARAMS)
    jobs = [
        _job(root, "SST-2", "full", 0, {"dev": {"accuracy": 54.0}}, "accuracy"),
        _job(root, "SST-2", "full", 1, {"dev": {"accuracy": 58.0}}, "accuracy"),
        _job(root, "CoLA", "no_pretrain", 0, {"dev": {"mcc": -4.0}}, "mcc",
             load_reports=[_malformed_report(7)],
             truncation={"train": {"examples": 32, "truncated": 3, "max_len": 64,
                                   "longest_tokens": 90}}),
        _job(root, "SNLI", "full", 0, {"test": {"accuracy": 41.0}}, "accuracy",
             notes=["train read from data/other/SNLI/dev.jsonl (dev.jsonl)"]),
        _job(root, "WNLI", "full", 0, {"dev": {"accuracy": 56.338}}, "accuracy"),
    ]
    _write(root / "bpe" / "bpe.json", {
        "base_vocab": 1024, "config": {"vocab_size": 1024, "style": "bytelevel",
                                       "min_frequency": 2, "limit_alphabet": 478},
        "style": "bytelevel", "tokenizer_sha256": TOKENIZER_SHA, "vocab_size": 1029,
        "special_tokens": {"<|start|>": 1024}})
    _write(root / "shard" / "manifest.json", {
        "format": "gptpipe-shards/1", "context": 64, "window": 65, "dtype": "uint16",
        "vocab_size": 1029, "tokenizer_sha256": TOKENIZER_SHA, "eod_id": 1028,
        "config": {"context": 64, "samples_per_shard": 512},
        "splits": {"train": {"documents": 90, "dropped_tail_tokens": 5, "samples": 600,
                             "tokens": 39_000, "shards": [_shard(0, 512), _shard(1, 88)]},
                   "val": {"documents": 8, "dropped_tail_tokens": 7, "samples": 60,
                           "tokens": 3_900, "shards": [_shard(0, 60)]}}})
    _write(root / "ingest" / "enwiki-part1" / "stats.json", {
        "pages_seen": 206, "pages_kept": 98, "input": "enwiki-20200101-pages-articles1.xml.bz2",
        "dropped": {"redirect": 100, "disambiguation": 8, "too_short": 0},
        "splits": {"train": 90, "val": 8}, "chars": 2_793_312, "seconds": 1.4,
        "config": {"val_fraction": 0.1, "min_chars": 200}})
    return {"params": root / "params.yaml", "pretrain": _pretrain(root, config_lr),
            "finetune": jobs, "bpe": root / "bpe", "shard": root / "shard",
            "ingest": [root / "ingest" / "enwiki-part1"], "output": root / "report"}


def _run(paths: dict, repo: Path) -> dict:
    params = load_params(paths["params"])
    inputs = stage.Inputs(paths["pretrain"], tuple(paths["finetune"]), paths["bpe"],
                          paths["shard"], tuple(paths["ingest"]))
    return stage.run(resolve_section(params, "report"), params, inputs, paths["output"],
                     repo=repo)


def _argv(paths: dict) -> list[str]:
    return ["--params", str(paths["params"]), "--pretrain", str(paths["pretrain"]),
            "--finetune", *map(str, paths["finetune"]), "--bpe", str(paths["bpe"]),
            "--shard", str(paths["shard"]), "--ingest", *map(str, paths["ingest"]),
            "--output", str(paths["output"])]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One report over the fake run (config.json's lr differs from params: a drift)."""
    root = tmp_path_factory.mktemp("run")
    paths = build_run(root, config_lr=0.002)
    (root / "dvc.lock").write_text("schema: '2.0'\n")
    doc = _run(paths, repo=root)
    return root, paths, doc


def _row(doc: dict, table: str, label: str, variant: str = "full") -> dict:
    rows = [r for r in doc["tables"][table] if r["label"] == label and r["variant"] == variant]
    assert len(rows) == 1, (table, label, variant, doc["tables"][table])
    return rows[0]


# --------------------------------------------------------------------------- tables


def test_mean_std_n_and_difference_over_seeds(made):
    _, _, doc = made
    sst2 = _row(doc, "table4", "SST-2")
    assert sst2["n"] == 2 and sst2["mean"] == pytest.approx(56.0)
    assert sst2["std"] == pytest.approx(math.sqrt(8.0))  # sample std of 54 and 58
    assert sst2["paper"] == 91.3 and sst2["diff"] == pytest.approx(56.0 - 91.3)
    assert (sst2["split"], sst2["paper_split"]) == ("dev", tables.GLUE_SERVER)
    snli = _row(doc, "table2", "SNLI")  # labelled test split: ours are test figures
    assert (snli["mean"], snli["n"], snli["split"], snli["paper_split"]) == (41.0, 1, "test",
                                                                            "test")
    assert snli["std"] is None


def test_tasks_not_run_say_so_and_show_no_number(made):
    _, _, doc = made
    for table, label in [("table2", "MNLI-m"), ("table3", "RACE-h"), ("table4", "CoLA"),
                         ("table4", "GLUE")]:
        row = _row(doc, table, label)
        assert row["status"] == "not run" and row["n"] == 0, row
        assert row["mean"] is None and row["diff"] is None and row["paper"] is not None
    assert "MNLI" in _row(doc, "table4", "GLUE")["note"]


def test_a_task_left_out_on_purpose_says_why_and_how(made, tmp_path, capsys):
    root, paths, _ = made
    params = load_params(paths["params"])
    inputs = stage.Inputs(paths["pretrain"], tuple(paths["finetune"]), paths["bpe"],
                          paths["shard"], tuple(paths["ingest"]))
    why = ("not run: source needs a manual download (Request the Story Cloze Test (2016) CSVs "
           "-- put data/other/StoryCloze/a.csv there)")
    doc = stage.run(resolve_section(params, "report"), params, inputs, tmp_path / "report",
                    repo=root, not_run={"StoryCloze": why})
    row = _row(doc, "table3", "Story Cloze")
    assert row["status"] == "not run: source needs a manual download" and row["n"] == 0
    assert row["note"] == ("Request the Story Cloze Test (2016) CSVs -- put "
                           "data/other/StoryCloze/a.csv there")
    assert _row(doc, "table3", "RACE-h")["status"] == "not run"  # no job given: no reason
    html = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "not run: source needs a manual download" in html and "StoryCloze/a.csv" in html
    assert doc["not_run"] == {"StoryCloze": why}
    argv = [*_argv({**paths, "output": tmp_path / "r2"}), "--not-run", "StoryCloze"]
    assert stage.main(argv) == 1
    assert "--not-run 'StoryCloze': expected TASK=WHY" in capsys.readouterr().err


def test_ablation_table_and_other_runs(made):
    _, _, doc = made
    cola = _row(doc, "table5", "CoLA", "no_pretrain")
    assert (cola["mean"], cola["paper"]) == (-4.0, 18.9)
    assert cola["diff"] == pytest.approx(-22.9)
    assert _row(doc, "table5", "CoLA", "no_aux")["status"] == "not run"
    labels = {r["label"] for r in doc["tables"]["table5"]}
    assert labels == {"CoLA", "avg"}  # only the ablated task's column, and the average
    wnli = _row(doc, "other", "WNLI (accuracy)")
    assert wnli["mean"] == pytest.approx(56.338) and wnli["paper"] is None


def test_glue_score_is_the_mean_of_task_means_per_seed():
    rows = []
    per_task = {"CoLA": {"mcc": 40.0}, "SST-2": {"accuracy": 90.0},
                "MRPC": {"f1": 80.0, "accuracy": 70.0}, "STS-B": {"pearson": 80.0,
                                                                  "spearman": 78.0},
                "QQP": {"f1": 70.0, "accuracy": 88.0}, "QNLI": {"accuracy": 85.0},
                "RTE": {"accuracy": 55.0}, "WNLI": {"accuracy": 65.0}}
    for seed, shift in ((0, 0.0), (1, 2.0)):
        for task, metrics in per_task.items():
            rows += [(task, "full", seed, "dev", m, v + shift) for m, v in metrics.items()]
        rows += [("MNLI", "full", seed, "dev_matched", "accuracy", 80.0 + shift),
                 ("MNLI", "full", seed, "dev_mismatched", "accuracy", 82.0 + shift)]
    scores = pl.DataFrame(rows, schema=collect.SCORES_SCHEMA, orient="row")
    glue = tables.row_values(scores, tables.TABLE4[-1], "full").sort("seed")
    expected = (40 + 90 + 75 + 79 + 79 + 81 + 85 + 55 + 65) / 9
    assert glue["value"].to_list() == pytest.approx([expected, expected + 2.0])
    mnli = tables.row_values(scores, tables.TABLE2[0], "full")
    assert mnli["split"].to_list() == ["dev_matched", "dev_matched"]


def test_table5_full_row_repeats_the_registry():
    for label, value in tables.PAPER_TABLE5["full"].items():
        if label == "avg":
            columns = [v for k, v in tables.PAPER_TABLE5["full"].items() if k != "avg"]
            assert sum(columns) / len(columns) == pytest.approx(value, abs=0.05)
        elif label == "MNLI":
            m, mm = (tasks.get("MNLI").paper[f"test_{s}/accuracy"]
                     for s in ("matched", "mismatched"))
            assert (m + mm) / 2 == pytest.approx(value, abs=0.05)
        else:
            assert next(iter(tasks.get(label).paper.values())) == value, label


# --------------------------------------------------------------------------- rendering


class _Html(HTMLParser):
    """Collects <img> attributes and asset links; checks that every element closes in order."""

    VOID = {"meta", "img", "br", "hr", "link", "input", "source"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.imgs: list[dict] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.imgs.append(attrs)
        self.links += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]} at {self.getpos()}")
        else:
            self.stack.pop()


def test_html_is_valid_and_self_contained(made):
    root, _, doc = made
    text = (root / "report" / "index.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    parser = _Html()
    parser.feed(text)
    parser.close()
    assert not parser.errors and not parser.stack, (parser.errors, parser.stack)
    assert len(parser.imgs) == len(doc["figures"]) == 4
    for img in parser.imgs:
        assert img["alt"]
        head, _, payload = img["src"].partition(",")
        assert head == "data:image/png;base64"
        assert base64.b64decode(payload, validate=True).startswith(PNG_MAGIC)
    assert all(link.startswith("data:") for link in parser.links), parser.links
    assert "<script" not in text


def test_figures_are_png_files_too_and_match_report_json(made):
    root, _, doc = made
    for fig in doc["figures"]:
        data = (root / "report" / fig["file"]).read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert hashlib.sha256(data).hexdigest() == fig["sha256"]
    assert {f["file"] for f in doc["figures"]} == {f"{n}.png" for n in stage.FIGURES}


def test_markdown_has_the_tables_notes_and_compute(made):
    root, _, _ = made
    md = (root / "report" / "report.md").read_text(encoding="utf-8")
    for title in tables.TITLES.values():
        assert f"### {title}" in md
    # The fake runs predate `chance_percent`: their Chance column says "—".
    assert "| SST-2 | 91.3 | test (GLUE server) | 56.0 ± 2.8 | 2 | -35.3 | — | dev |" in md
    assert "| MNLI-m | 82.1 | test (GLUE server) | not run | 0 | — | — | — |" in md
    assert "![Pre-training loss](pretrain_loss.png)" in md
    # 7 malformed rows: the first 5 (max_notes) listed, the rest counted; drops by reason.
    assert "data/glue/CoLA/train.tsv: 7 malformed row(s) skipped (" in md
    assert "data/glue/CoLA/train.tsv:6: 3 fields, expected 4; and 2 more)" in md
    assert "data/glue/CoLA/train.tsv: 3 row(s) dropped (no_label)" in md
    assert "train: 3 of 32 examples truncated to 64 tokens (longest 90)" in md
    assert "train read from data/other/SNLI/dev.jsonl" in md
    assert "n/a (CPU)" in md and "CPU process-hours" in md


def test_pretrain_curve_keeps_the_last_record_of_a_step(made):
    _, paths, _ = made
    curve = collect.load_pretrain(paths["pretrain"]).curve
    assert curve["step"].to_list() == [10, 20, 30, 40]
    assert curve["loss"][-1] == 4.5
    assert curve.filter(pl.col("val_loss").is_not_null())["step"].to_list() == [20, 40]


def test_compute_names_gpu_hours_on_cuda():
    summary = {"device": "cuda", "processes": 8, "train_seconds": 3600.0, "tokens": 10,
               "mfu": 0.41}
    frame = tables.compute_frame(summary, [{"device": "cuda", "seconds": {"total": 1800.0},
                                            "train": {"examples_seen": 5}}])
    pre, ft = frame.to_dicts()
    assert (pre["device_hours"], pre["hours_kind"]) == (8.0, "GPU-hours")
    assert (ft["device_hours"], ft["seen"]) == (0.5, 5)
    shown = tables.display_compute(frame)
    assert shown["Mean MFU"].to_list()[:2] == ["41.0%", "not measured"]
    assert shown["Device-hours"][-1] == "8.5000 GPU-hours"


# --------------------------------------------------------------------------- provenance


def test_provenance_has_git_checksums_versions_params_and_drift(made):
    root, _, doc = made
    prov = doc["provenance"]
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", prov["git"]["commit"])
    assert prov["dvc_lock_sha256"] == hashlib.sha256((root / "dvc.lock").read_bytes()).hexdigest()
    inputs = {i["name"]: i for i in prov["inputs"]}
    assert inputs["enwiki-part1"]["checksum"] == DUMP_SHA
    assert inputs["enwiki-part1"]["date"] == "2020-01-01"
    assert inputs["glue-sst2"]["checksum"] == TASK_SHA
    assert prov["packages"]["polars"] == pl.__version__
    assert prov["params"]["shard"]["context"] == 64  # the micro preset, resolved
    assert prov["params"]["report"] == {"title": ReportConfig().title, "max_notes": 5}
    # config.json says lr 0.002, params resolve to 0.001; job-list keys (seeds) are not drift.
    assert any(c.startswith("pretrain.lr: the stage ran with 0.002") for c in prov["checks"])
    assert not any("seeds" in c for c in prov["checks"])
    html = (root / "report" / "index.html").read_text(encoding="utf-8")
    assert DUMP_SHA in html and TOKENIZER_SHA in html and "dump of 2020-01-01" in html


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_state_reads_commit_and_dirty_flag(tmp_path):
    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t",
                               "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false",
                               *args], capture_output=True, text=True, check=True).stdout

    assert provenance.git_state(tmp_path / "nowhere") == {"commit": "unknown", "dirty": None}
    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("commit", "-q", "-m", "first")
    head = git("rev-parse", "HEAD").strip()
    assert provenance.git_state(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "a.txt").write_text("2")
    assert provenance.git_state(tmp_path) == {"commit": head, "dirty": True}


# --------------------------------------------------------------------------- bad input, CLI


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


@pytest.mark.parametrize("breakage, message", [
    (lambda p: (p["finetune"][0] / "metrics.json").unlink(),
     r"finetune/SST-2/full/seed0: no metrics\.json"),
    (lambda p: (p["finetune"][1] / "metrics.json").write_text('{"task": "SST-2",\n  oops}'),
     r"SST-2/full/seed1/metrics\.json:2:3: not valid JSON"),
    (lambda p: _append(p["pretrain"] / "metrics.jsonl", '{"step": 50, "tokens"\n'),
     r"pretrain/metrics\.jsonl:6: not valid JSON"),
    (lambda p: p["finetune"].append(p["finetune"][0]),
     r"SST-2 full seed 0 again \(also in .*seed0/metrics\.json\)"),
    (lambda p: (p["bpe"] / "bpe.json").write_text('{"style": "bytelevel"}'),
     r"bpe/bpe\.json: missing key 'vocab_size'"),
])
def test_bad_input_names_the_file_and_leaves_no_report(tmp_path, breakage, message):
    paths = build_run(tmp_path)
    breakage(paths)
    with pytest.raises(GptpipeError, match=message):
        _run(paths, repo=tmp_path)
    assert not paths["output"].exists()
    assert not list(tmp_path.glob(".report.tmp-*"))


def test_cli_exit_status_and_one_line_error(tmp_path, capsys):
    paths = build_run(tmp_path)
    assert stage.main(_argv(paths)) == 0
    assert {p.name for p in paths["output"].iterdir()} == {
        "index.html", "report.md", "report.json", "glue-submission.zip", "scores.json",
        "scores.csv",
        *(f"{n}.png" for n in stage.FIGURES)}
    capsys.readouterr()
    (paths["finetune"][2] / "metrics.json").unlink()
    assert stage.main(_argv(paths)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gptpipe report: error: ")
    assert "CoLA/no_pretrain/seed0: no metrics.json" in err[0]
    assert (paths["output"] / "index.html").is_file()  # the previous report stays whole


def test_a_report_without_finetune_jobs_marks_every_row_not_run(tmp_path):
    paths = build_run(tmp_path)
    paths["finetune"] = []
    doc = _run(paths, repo=tmp_path)
    rows = [r for name in ("table2", "table3", "table4", "table5") for r in doc["tables"][name]]
    assert rows and all(r["status"] == "not run" and r["mean"] is None for r in rows)
    assert doc["tables"]["other"] == [] and len(doc["figures"]) == 4
    assert provenance.dump_date("enwiki-latest-pages-articles.xml.bz2") == "latest (undated)"

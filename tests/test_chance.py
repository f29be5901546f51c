"""Chance baselines: the majority class on real sample labels (counted here by hand from the
files), 0 for MCC and correlations, the most frequent answer for multiple choice, and the
report's Chance column and figure marks."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from test_report import _run, build_run

from gptpipe import tasks
from gptpipe.report import chance, collect, tables
from gptpipe.tasks import metrics
from gptpipe.tasks.loaders import load_split


def _column(path: Path, name: str) -> list[str]:
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    at = lines[0].split("\t").index(name)
    return [line.split("\t")[at] for line in lines[1:]]


def test_chance_accuracy_is_the_majority_share_on_real_labels(shared_data):
    labels = _column(shared_data / "glue/SST-2/dev.tsv", "label")
    ones = labels.count("1")
    spec = tasks.get("SST-2")
    examples, _ = load_split(spec, shared_data, "dev")
    got = metrics.chance(spec.metrics, [ex.label for ex in examples])
    assert got == {"accuracy": pytest.approx(max(ones, len(labels) - ones) / len(labels))}
    assert len(labels) == 872 and ones == 444  # the hand count: "1" is the majority


def test_chance_f1_is_that_of_always_predicting_the_majority(shared_data):
    # GLUE's own MRPC dev.tsv (Quality first), against the loader's rebuild from MSRP train.
    quality = _column(shared_data / "glue/MRPC/dev.tsv", "Quality")
    n, pos = len(quality), quality.count("1")
    assert pos > n - pos  # paraphrases are the majority, so F1 of "always 1" is not 0
    spec = tasks.get("MRPC")
    examples, _ = load_split(spec, shared_data, "dev")
    got = metrics.chance(spec.metrics, [ex.label for ex in examples])
    # Always "1": TP = pos, FP = n - pos, FN = 0.
    assert got["f1"] == pytest.approx(2 * pos / (2 * pos + (n - pos)))
    assert got["accuracy"] == pytest.approx(pos / n)


def test_chance_of_mcc_and_correlations_is_zero(shared_data):
    cola = tasks.get("CoLA")
    examples, _ = load_split(cola, shared_data, "dev")
    assert metrics.chance(cola.metrics, [ex.label for ex in examples]) == {"mcc": 0.0}
    stsb = tasks.get("STS-B")
    examples, _ = load_split(stsb, shared_data, "dev")
    assert metrics.chance(stsb.metrics, [ex.label for ex in examples]) == {
        "pearson": 0.0, "spearman": 0.0}


def test_chance_of_multiple_choice_is_the_most_frequent_answer_per_group():
    gold = [0, 2, 2, 1, 3, 3, 3, 0]
    groups = ["middle", "middle", "middle", "high", "high", "high", "high", "middle"]
    got = metrics.chance(("accuracy", "accuracy@middle", "accuracy@high"), gold, groups)
    assert got == {"accuracy": 3 / 8, "accuracy@middle": 2 / 4, "accuracy@high": 3 / 4}
    assert metrics.majority([1, 0, 0, 1]) == 0  # a tie goes to the smallest label


def _add_chance(job: Path, chances: dict) -> None:
    path = job / "metrics.json"
    run = json.loads(path.read_text())
    path.write_text(json.dumps({**run, "chance_percent": chances}))


def test_chance_column_in_the_report_tables(tmp_path):
    paths = build_run(tmp_path)
    sst2_0, sst2_1, cola, snli, _wnli = paths["finetune"]
    for job in (sst2_0, sst2_1):
        _add_chance(job, {"dev": {"accuracy": 50.9}})
    _add_chance(cola, {"dev": {"mcc": 0.0}})
    _add_chance(snli, {"test": {"accuracy": 34.3}})
    doc = _run(paths, repo=tmp_path)

    def row(table: str, label: str, variant: str = "full") -> dict:
        return next(r for r in doc["tables"][table]
                    if r["label"] == label and r["variant"] == variant)

    assert row("table4", "SST-2")["chance"] == pytest.approx(50.9)
    assert row("table2", "SNLI")["chance"] == pytest.approx(34.3)
    assert row("table5", "CoLA", "no_pretrain")["chance"] == 0.0
    assert row("table2", "RTE")["chance"] is None  # not run
    assert row("other", "WNLI (accuracy)")["chance"] is None  # a run from before the field
    md = (paths["output"] / "report.md").read_text(encoding="utf-8")
    assert "| Task | Paper | Paper on | Ours (mean ± std) | n | Δ (pp) | Chance | Ours on |" in md
    assert "| SST-2 | 91.3 | test (GLUE server) | 56.0 ± 2.8 | 2 | -35.3 | 50.9 | dev |" in md
    assert "| WNLI (accuracy) | not in paper | not in paper | 56.3 | 1 | — | — | dev |" in md


def test_chance_rows_follow_the_score_rules(tmp_path):
    # GLUE's average takes chance as it takes scores: defined only when every part ran.
    runs = [{"task": "SST-2", "variant": "full", "seed": 0,
             "headline": {"metric": "accuracy", "split": "dev"},
             "chance_percent": {"dev": {"accuracy": 51.0}}}]
    frame = chance.chance_frame(runs)
    assert frame.schema == pl.Schema(collect.SCORES_SCHEMA)
    glue = next(r for r in tables.TABLE4 if r.label == "GLUE")
    assert chance.row_chance(frame, glue, "full") is None
    sst2 = next(r for r in tables.TABLE4 if r.label == "SST-2")
    assert chance.row_chance(frame, sst2, "full") == 51.0
    shown = chance.display(pl.DataFrame(
        [{**{k: None for k in tables.TABLE_SCHEMA}, "label": "SST-2", "variant": "full",
          "status": "not run", "n": 0, "chance": None}],
        schema={**tables.TABLE_SCHEMA, "chance": pl.Float64}, orient="row"))
    assert shown["Chance"].to_list() == ["—"]


def test_chance_marks_in_the_score_figures():
    from gptpipe.report import figures

    row = {**{k: None for k in tables.TABLE_SCHEMA}, "label": "SST-2", "variant": "full",
           "status": "ok", "n": 1, "mean": 60.0, "paper": 91.3}
    schema = {**tables.TABLE_SCHEMA, "chance": pl.Float64}
    with_mark = pl.DataFrame([{**row, "chance": 50.9}], schema=schema, orient="row")
    without = pl.DataFrame([{**row, "chance": None}], schema=schema, orient="row")
    assert figures.task_scores(with_mark) != figures.task_scores(without)
    assert figures.ablations(with_mark) != figures.ablations(without)

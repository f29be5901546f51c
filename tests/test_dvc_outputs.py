"""The tables DVC reads (issue #15): pre-training curves as CSV, the fine-tuning scores summary,
and the source declarations kept out of params.yaml. Micro inputs, milliseconds each; the DVC
commands themselves run on them in tests/test_reruns.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from gptpipe.config import load_params, resolve_section
from gptpipe.declared import declared_sources
from gptpipe.errors import GptpipeError
from gptpipe.pretrain.curves import write_curves
from gptpipe.report import collect
from gptpipe.report import scores as dvc_scores

REPO = Path(__file__).resolve().parents[1]


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open(encoding="utf-8")))


def test_curves_split_training_and_validation_rows(tmp_path):
    records = [
        {"step": 5, "tokens": 2560, "loss": 6.9, "val_loss": None, "lr": 1e-3, "grad_norm": 1.0},
        {"step": 10, "tokens": 5120, "loss": 6.8, "val_loss": 6.7, "val_bpb": 3.9, "lr": 9e-4},
        {"step": 15, "tokens": 7680, "loss": 6.6, "val_loss": None, "lr": 7e-4},
    ]
    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    write_curves(jsonl, tmp_path / "curves")
    train, val = _rows(tmp_path / "curves/train.csv"), _rows(tmp_path / "curves/val.csv")
    assert [(r["tokens"], float(r["loss"]), float(r["lr"])) for r in train] == [
        ("2560", 6.9, 1e-3), ("5120", 6.8, 9e-4), ("7680", 6.6, 7e-4)]
    assert val == [{"step": "10", "tokens": "5120", "val_loss": "6.7", "val_bpb": "3.9"}]


def test_curves_name_a_cut_line(tmp_path):
    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text('{"step": 5, "loss": 1.0}\n{"step": 1')
    with pytest.raises(GptpipeError, match="metrics.jsonl: line 2 is not JSON"):
        write_curves(jsonl, tmp_path / "curves")


def _run(task: str, variant: str, seed: int, value: float | None) -> dict:
    return {"task": task, "variant": variant, "seed": seed,
            "headline": {"metric": "accuracy", "split": "dev"},
            "scores_percent": {"dev": {"accuracy": value, "f1": 1.0}}}


def test_scores_summary_is_one_headline_score_per_task_and_variant(tmp_path):
    runs = [_run("SST-2", "full", 0, 80.0), _run("SST-2", "full", 1, 84.0),
            _run("SST-2", "no_aux", 0, 70.0), _run("RTE", "full", 0, None)]
    dvc_scores.write(tmp_path, runs, collect.scores_frame(runs))
    summary = json.loads((tmp_path / "scores.json").read_text())
    full = summary["SST-2"]["full"]
    assert full["mean"] == 82.0 and full["std"] == pytest.approx(2 ** 0.5 * 2)
    assert (full["seeds"], full["metric"], full["split"]) == (2, "accuracy", "dev")
    assert summary["SST-2"]["no_aux"] == {"mean": 70.0, "std": None, "seeds": 1,
                                          "metric": "accuracy", "split": "dev"}
    assert summary["RTE"]["full"]["mean"] is None and summary["RTE"]["full"]["seeds"] == 0
    table = _rows(tmp_path / "scores.csv")
    assert [(r["job"], r["mean"]) for r in table] == [
        ("SST-2 full", "82.0"), ("SST-2 no_aux", "70.0"), ("RTE full", "")]


def test_sources_are_declared_outside_the_params_and_params_can_replace_them():
    params = load_params(REPO / "params.yaml")
    assert "sources" not in params["fetch"]
    names = [s.name for s in resolve_section(params, "fetch").sources]
    assert names == [s["name"] for s in declared_sources()] and "glue-sst2" in names
    own = [{"name": "x", "path": "other/x.tsv", "url": "https://example.org/x.tsv",
            "checksum": "sha256:" + "0" * 64}]
    replaced = resolve_section({**params, "fetch": {"sources": own}}, "fetch").sources
    assert [s.name for s in replaced] == ["x"]

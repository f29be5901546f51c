"""The `finetune` section and its wiring: presets, job lists, what reruns, declared task data."""

from __future__ import annotations

import json
import logging
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from gptpipe import workflow as gw
from gptpipe.config import FinetuneConfig, Holdout, load_params, resolve_section, validate_params
from gptpipe.declared import declared_sources
from gptpipe.errors import ConfigError, GptpipeError
from gptpipe.finetune.data import files_read, recipe
from gptpipe.fetch import cli as fetch

REPO = Path(__file__).resolve().parents[1]
PARAMS = load_params(REPO / "params.yaml")


def _cfg(scale: str) -> dict:
    return validate_params(PARAMS | {"scale": scale})


def test_defaults_are_the_papers_recipe():
    cfg = FinetuneConfig()
    assert (cfg.lr, cfg.batch, cfg.epochs, cfg.warmup_fraction) == (6.25e-5, 32, 3, 0.002)
    assert (cfg.lm_weight, cfg.clf_dropout, cfg.grad_clip) == (0.5, 0.1, 1.0)
    assert cfg.weight_decay == 0.01
    assert cfg.holdout["StoryCloze"] == Holdout("val", "val_holdout", 0.2)  # 374 of 1,871
    assert "MNLI" in cfg.tasks and "RACE" in cfg.tasks


def test_tiny_jobs_are_every_sample_task_plus_two_ablated():
    jobs = gw.finetune_jobs(_cfg("tiny")["finetune"])
    assert len(jobs) == 19 and len(set(jobs)) == 19  # + 2 x lstm (Table 5's LSTM row)
    assert {t for t, v, _ in jobs if v != "full"} == {"SST-2", "CoLA"}
    assert {v for _, v, _ in jobs} == {"full", "no_aux", "no_pretrain", "lstm", "transfer0",
                                       "transfer2", "transfer4"}  # Figure 2 on SST-2
    micro = gw.finetune_jobs(_cfg("micro")["finetune"])
    assert micro == [("SST-2", "full", 0), ("RTE", "full", 0), ("SST-2", "no_pretrain", 0)]


@pytest.mark.parametrize("scale", ["tiny", "micro"])
def test_every_file_a_job_reads_is_in_the_mirror(scale, shared_data):
    cfg = _cfg(scale)
    gw.finetune_data(cfg["finetune"], cfg["fetch"])  # raises if a file is not declared
    for task, variant, _ in gw.finetune_jobs(cfg["finetune"]):
        for rel in files_read(cfg["finetune"], task, variant):
            assert (shared_data / rel).is_file(), rel


def test_undeclared_task_data_fails_before_any_job():
    sources = [s for s in declared_sources() if s["name"] != "race"]
    params = PARAMS | {"scale": "gpt1", "fetch": {"sources": sources}}
    cfg = validate_params(params)
    with pytest.raises(ConfigError, match="task RACE reads data/other/RACE/train, which no"):
        gw.finetune_data(cfg["finetune"], cfg["fetch"])


def test_every_paper_task_is_declared_and_a_run_fetches_only_what_it_reads():
    gpt1 = _cfg("gpt1")
    gpt1_needed = set(gw.needed_sources(gpt1["finetune"], gpt1["fetch"]))
    assert gpt1_needed >= {"glue-mnli", "scitail", "race", "storycloze-val"}
    # gpt1 pre-trains on enwiki-20200501 (fetch_dump jobs, one per part), not on the sample
    assert "enwiki-sample" not in gpt1_needed
    tiny = _cfg("tiny")
    needed = gw.needed_sources(tiny["finetune"], tiny["fetch"])
    assert not {"glue-mnli", "scitail", "race"} & set(needed)
    assert "enwiki-sample" in needed and "glue-cola" in needed
    flags = gw.fetch_only_flags(tiny["finetune"], tiny["fetch"])
    assert flags.split()[1:] == needed
    outs = gw.fetch_outputs(tiny["fetch"], needed)
    assert "glue/MNLI" not in outs and "glue/CoLA" in outs
    # A source no job reads is not a fetch knob: declaring one reruns nothing.
    more = PARAMS | {"fetch": {"sources": [*declared_sources(), {
        "name": "extra", "role": "task", "kind": "file", "path": "other/x.tsv",
        "url": "https://example.org/x.tsv", "checksum": "sha256:" + "0" * 64}]}}
    assert gw.fetch_knobs(more, more) == gw.fetch_knobs(PARAMS, PARAMS)


def test_task_names_are_checked_and_made_canonical():
    cfg = resolve_section({"scale": "gpt1", "finetune": {"tasks": ["sst2", "sts-b"],
                                        "overrides": {"cola": {"lr": 1e-4}}}}, "finetune")
    assert cfg.tasks == ("SST-2", "STS-B") and set(cfg.overrides) == {"CoLA"}
    assert recipe(cfg, "CoLA", "full").lr == 1e-4 and recipe(cfg, "SST-2", "full").lr == 6.25e-5
    for bad, message in [({"tasks": ["SST-5"]}, "finetune: tasks: unknown task 'SST-5'"),
                         ({"tasks": ["AX"]}, "AX is not fine-tuned"),
                         ({"tasks": ["RTE", "rte"]}, "RTE is listed twice"),
                         ({"overrides": {"RTE": {"lr": "fast"}}}, "overrides.RTE.lr"),
                         ({"variants": ["half"]}, "'half' is not one of"),
                         ({"holdout": {"QNLI": {"from_split": "dev", "to_split": "dev",
                                                "fraction": 0.5}}}, "two different splits")]:
        with pytest.raises(ConfigError, match=None) as exc:
            resolve_section({"scale": "gpt1", "finetune": bad}, "finetune")
        assert message in str(exc.value)


def test_a_knob_reruns_jobs_but_adding_a_seed_does_not():
    base = gw.knobs(PARAMS, PARAMS, "finetune")
    assert "seeds" not in json.loads(base) and json.loads(base)["lr"] == 6.25e-5
    more_seeds = PARAMS | {"finetune": {**PARAMS["finetune"], "seeds": [0, 1, 2]}}
    assert gw.knobs(PARAMS, more_seeds, "finetune") == base
    assert gw.cli_overrides(PARAMS, more_seeds, "finetune") == ""  # jobs never read them
    new_lr = PARAMS | {"finetune": {**PARAMS["finetune"], "lr": "0.0001"}}
    assert json.loads(gw.knobs(PARAMS, new_lr, "finetune"))["lr"] == 1e-4
    assert gw.cli_overrides(PARAMS, new_lr, "finetune") == "--set lr=0.0001"
    assert gw.knobs(PARAMS, new_lr, "pretrain") == gw.knobs(PARAMS, PARAMS, "pretrain")


def test_dvc_lists_the_default_jobs_with_one_command_line():
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["finetune"]
    jobs = gw.finetune_jobs(_cfg(PARAMS.get("scale", "tiny"))["finetune"])
    assert list(stage["foreach"]) == [f"{t}-{v}-{s}" for t, v, s in jobs]
    assert stage["do"]["outs"] == [gw.finetune_dir("${item.task}", "${item.variant}",
                                                   "${item.seed}")]


def test_fetch_resolves_every_source_the_demo_reads_from_the_mirror(shared_data, tmp_path):
    tiny = _cfg("tiny")
    cfg, needed = tiny["fetch"], gw.needed_sources(tiny["finetune"], tiny["fetch"])
    summary = fetch.run(cfg, tmp_path, mirror=shared_data, only=needed)
    assert [s["name"] for s in summary["sources"]] == needed
    assert all(s["how"] == "mirror" for s in summary["sources"])
    story = tmp_path / "other/StoryCloze/cloze_test_val__spring2016 - cloze_test_ALL_val.csv"
    assert story.is_file() and (tmp_path / "glue/MRPC/dev_ids.tsv").is_file()


def test_tiny_leaves_out_a_task_whose_manual_source_is_missing(tmp_path, shared_data):
    """Tiny: a source handed out on request that is in neither data/ nor the mirror drops its
    task from the jobs (and says how to get it); found in either, nothing is dropped. At paper
    scale (`required`) nothing is dropped: fetch stops with the instructions instead."""
    tiny = _cfg("tiny")
    ft, sources = tiny["finetune"], tiny["fetch"]
    left_out = gw.missing_manual(ft, sources, mirror=None, data_dir=tmp_path)
    assert set(left_out) == {"StoryCloze"}  # MRPC is built from downloads (kind: build)
    assert set(left_out["StoryCloze"]) == {"storycloze-val", "storycloze-test"}
    why = gw.why_left_out(left_out["StoryCloze"])
    assert why.startswith("not run: source needs a manual download (Request the Story Cloze")
    assert "data/other/StoryCloze/cloze_test_val__spring2016 - cloze_test_ALL_val.csv" in why
    assert gw.missing_manual(ft, sources, mirror=shared_data, data_dir=tmp_path) == {}
    story = tmp_path / "other/StoryCloze"
    story.mkdir(parents=True)
    for src in ("storycloze-val", "storycloze-test"):
        shutil.copyfile(shared_data / sources.source(src).path,
                        tmp_path / sources.source(src).path)
    assert gw.missing_manual(ft, sources, mirror=None, data_dir=tmp_path) == {}
    kept = gw.without_tasks(ft, left_out)
    jobs = gw.finetune_jobs(kept)
    assert len(jobs) == 18 and "StoryCloze" not in {t for t, _, _ in jobs}
    needed = set(gw.needed_sources(kept, sources))
    assert "storycloze-val" not in needed and "glue-mrpc-train-tsv" in needed
    assert gw.skip_flags(left_out) == "--skipped storycloze-val storycloze-test"
    assert shlex.split(gw.not_run_flags(left_out)) == ["--not-run", f"StoryCloze={why}"]
    gpt1 = _cfg("gpt1")
    assert gw.missing_manual(gpt1["finetune"], gpt1["fetch"], None, tmp_path / "none") == {}


def test_fetch_says_in_one_line_what_it_skipped(tmp_path, caplog):
    cfg = _cfg("tiny")["fetch"]
    with caplog.at_level(logging.WARNING):
        summary = fetch.run(cfg, tmp_path, only=["storycloze-val", "storycloze-test"],
                            skipped=["storycloze-val", "storycloze-test"])
    assert summary["sources"] == [] and summary["skipped"] == ["storycloze-val",
                                                                 "storycloze-test"]
    (line,) = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert "\n" not in line and line.startswith(
        "skipped storycloze-val, storycloze-test: source needs a manual download")
    assert line.count("Request the Story Cloze Test") == 1
    with pytest.raises(GptpipeError, match="only sources of kind 'manual' can be skipped"):
        fetch.run(cfg, tmp_path, skipped=["glue-cola"])

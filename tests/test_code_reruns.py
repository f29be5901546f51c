"""Editing a stage's code reruns that stage and what depends on it, under both tools.

After a complete micro run (conftest's `micro_smk`, `micro_dvc`), one real edit per stage, to a
module no hand-written list ever named: `snakemake -n` schedules exactly that stage and those
downstream of it, and `dvc status` reports exactly that stage as changed. Editing the params'
own module reruns nothing (its effect goes through the resolved params, which both track).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from workflow_projects import DVC, clone, planned, run

pytestmark = pytest.mark.slow
ORDER = ("fetch", "ingest", "bpe", "shard", "pretrain", "finetune", "zeroshot", "report")
EDITED = {  # stage -> a module of its package that the old hand-written lists left out
    "fetch": "gptpipe/fetch/sources.py",
    "ingest": "gptpipe/ingest/articles.py",  # which pages are kept, each page's split
    "bpe": "gptpipe/bpe/tokenizer.py",
    "shard": "gptpipe/shard/writer.py",
    "pretrain": "gptpipe/pretrain/loader.py",  # the pre-training data order
    "finetune": "gptpipe/finetune/data.py",
    "zeroshot": "gptpipe/zeroshot/heuristics.py",
    "report": "gptpipe/report/tables.py",
}
# What reads each stage's outputs (the Snakefile's and dvc.yaml's edges).
READERS = {"fetch": {"ingest", "finetune", "zeroshot"}, "ingest": {"bpe", "shard", "report"},
           "bpe": {"shard", "pretrain", "report"}, "shard": {"pretrain", "report"},
           "pretrain": {"finetune", "zeroshot", "report"}, "finetune": {"report"},
           "zeroshot": {"report"}, "report": set()}


def downstream(stage: str) -> set[str]:
    out, todo = {stage}, [stage]
    while todo:
        for reader in READERS[todo.pop()]:
            if reader not in out:
                out.add(reader)
                todo.append(reader)
    return out


class Edit:
    """Append a line to a module of a project, then put back its bytes and its mtime."""

    def __init__(self, proj: Path, rel: str) -> None:
        self.path, self.text = proj / rel, (proj / rel).read_bytes()
        self.stat = self.path.stat()

    def __enter__(self) -> None:
        self.path.write_bytes(self.text + b"\n# edited by a test\n")

    def __exit__(self, *exc) -> None:
        self.path.write_bytes(self.text)
        os.utime(self.path, ns=(self.stat.st_atime_ns, self.stat.st_mtime_ns))


def test_downstream_is_the_dag():
    assert downstream("ingest") == {"ingest", "bpe", "shard", "pretrain", "finetune", "zeroshot",
                                    "report"}
    assert downstream("pretrain") == {"pretrain", "finetune", "zeroshot", "report"}
    assert downstream("fetch") == set(ORDER)


def test_each_stage_edit_reruns_it_and_what_follows_under_snakemake(micro_smk, mirror_env,
                                                                   tmp_path):
    proj = clone(micro_smk, tmp_path / "proj")
    assert planned(proj, env=mirror_env) == {}
    for stage in ORDER:
        with Edit(proj, EDITED[stage]):
            assert set(planned(proj, env=mirror_env)) == downstream(stage), stage
        assert planned(proj, env=mirror_env) == {}, f"{stage}: the edit was not put back"
    with Edit(proj, "gptpipe/config.py"):
        assert planned(proj, env=mirror_env) == {}


def _dvc_changed(proj: Path) -> set[str]:
    """Stages `dvc status` reports as changed (`ingest@enwiki-sample` counts as `ingest`)."""
    status = json.loads(run([*DVC, "status", "--json"], proj).stdout or "{}")
    return {name.split("@")[0] for name in status}


def test_each_stage_edit_changes_exactly_that_stage_under_dvc(micro_dvc, tmp_path):
    proj = clone(micro_dvc, tmp_path / "proj")
    assert _dvc_changed(proj) == set()
    for stage in ORDER:
        with Edit(proj, EDITED[stage]):
            assert _dvc_changed(proj) == {stage}, stage
    with Edit(proj, "gptpipe/config.py"):
        assert _dvc_changed(proj) == set()

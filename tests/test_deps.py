"""The layout (one package per stage) and each stage's code, computed from the imports."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gptpipe import deps

REPO = Path(__file__).resolve().parents[1]
STAGES = deps.STAGES
# Commands outside the DAG: they may use any stage's code.
COMMANDS = {"gptpipe.__main__", "gptpipe.workflow", "gptpipe.deps", "gptpipe.dvcyaml",
            "gptpipe.hf", "gptpipe.plan", "gptpipe.mirror", "gptpipe.sample"}


def _modules() -> list[str]:
    return sorted(deps.module_name(p) for p in deps.PACKAGE.rglob("*.py"))


def _stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def test_every_stage_is_a_package_with_its_command_line():
    for stage in STAGES:
        assert (deps.PACKAGE / stage / "__init__.py").is_file(), stage
        assert "def main(" in (deps.PACKAGE / stage / "cli.py").read_text(), stage
    from gptpipe.__main__ import COMMANDS as table

    assert {s: table[s][0] for s in STAGES} == {s: f"gptpipe.{s}.cli" for s in STAGES}


def test_no_import_cycle():
    graph = {m: deps.imports(m) for m in _modules()}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            assert state.get(n) != 1, f"import cycle: {' -> '.join([*path, m, n])}"
            if n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_a_stage_imports_only_earlier_stages_and_shared_modules_none():
    for module in _modules():
        own = _stage_of(module)
        for target in deps.imports(module):
            other = _stage_of(target)
            if other is None or module in COMMANDS:
                continue
            assert own is not None, f"shared module {module} imports stage code {target}"
            assert STAGES.index(other) <= STAGES.index(own), f"{module} imports later {target}"


def test_closures_follow_the_imports_and_stop_at_the_params():
    code = {s: set(deps.stage_code(s)) for s in STAGES}
    # modules no hand-written list ever named: the page filter, the data order
    assert {"gptpipe/ingest/articles.py", "gptpipe/ingest/bz2blocks.py",
            "gptpipe/ingest/corpus.py"} <= code["ingest"]
    assert {"gptpipe/pretrain/loader.py", "gptpipe/shard/reader.py"} <= code["pretrain"]
    assert "gptpipe/ingest/corpus.py" in code["bpe"] & code["shard"]  # the reader of ingest
    assert "gptpipe/shard/writer.py" not in code["pretrain"]
    for stage, files in code.items():
        assert not {"gptpipe/config.py", "gptpipe/presets.py", "gptpipe/cli.py"} & files, stage
        assert not any(f.startswith("gptpipe/tasks/") for f in files) or stage in (
            "finetune", "zeroshot", "report"), stage  # editing the task registry never reruns fetch
        assert all((REPO / f).is_file() for f in files), stage


def test_a_new_module_and_import_are_tracked_without_a_list(tmp_path, monkeypatch):
    """The closure is computed: a module added to a stage package, or imported by one, is in."""
    copy = tmp_path / "gptpipe"
    shutil.copytree(deps.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "ingest/newfilter.py").write_text("from ..model import GPT\n")
    (copy / "bpe/cli.py").write_text((copy / "bpe/cli.py").read_text()
                                     + "\ndef later():\n    from .. import hf\n")
    monkeypatch.setattr(deps, "PACKAGE", copy)
    deps.imports.cache_clear()
    try:
        assert {"gptpipe/ingest/newfilter.py", "gptpipe/model.py"} <= set(deps.stage_code("ingest"))
        assert "gptpipe/hf.py" in deps.stage_code("bpe")
    finally:
        deps.imports.cache_clear()


def test_dvc_yaml_command_rewrites_and_checks(tmp_path):
    out = tmp_path / "dvc.yaml"
    cmd = [sys.executable, "-m", "gptpipe", "dvc-yaml", "--output", str(out)]
    subprocess.run(cmd, cwd=REPO, check=True)
    assert out.read_text() == (REPO / "dvc.yaml").read_text(), "dvc.yaml is stale: run " \
        "`gptpipe dvc-yaml`"
    out.write_text(out.read_text().replace("gptpipe/ingest/wiki.py", "gptpipe/wiki.py"))
    res = subprocess.run([*cmd, "--check"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 1 and "is stale: run `gptpipe dvc-yaml`" in res.stderr
    assert "-      - gptpipe/wiki.py" in res.stderr


@pytest.mark.parametrize("stage", ["nope", "config"])
def test_unknown_stage_is_refused(stage):
    with pytest.raises(ValueError, match="unknown stage"):
        deps.closure(stage)

"""Each stage's code, computed from the imports: the modules whose edit reruns the stage.

A stage's code is every module of its package (`gptpipe/<stage>/`) plus everything those import
inside `gptpipe`, transitively (imports inside functions count too: they run when the stage
does). Both tools take this one list: the Snakemake rules as inputs (`workflow/rules/common.smk`)
and the DVC stages as deps (`gptpipe dvc-yaml` writes them into dvc.yaml). Nothing is listed by
hand, so a module added to a stage, or a new import, is tracked without anyone remembering to.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
STAGES = ("fetch", "ingest", "bpe", "shard", "pretrain", "finetune", "zeroshot",
          "report")  # in DAG order

# Modules the traversal stops at: their only effect on an output goes through the resolved
# params (which both tools already track: a rule's `knobs`, a DVC stage's `params`), or they
# cannot change an output at all. Editing them reruns nothing.
EXCLUDED = frozenset({
    "gptpipe",            # the version string (a download's User-Agent)
    "gptpipe.__main__",   # the table of commands
    "gptpipe.cli",        # argument parsing, logging and one-line errors
    "gptpipe.config",     # the sections, their defaults and checks: tracked as resolved params
    "gptpipe.presets",    # the scale presets: likewise
    "gptpipe.errors",     # exception types
    "gptpipe.workflow",   # which jobs exist and their command lines (the DAG, not a job's work)
    "gptpipe.deps",       # this module
    "gptpipe.dvcyaml",    # writes dvc.yaml
})


def module_path(name: str) -> Path | None:
    """The file of module `name` (`gptpipe.ingest.wiki`), or None when it is not one of ours."""
    parts = name.split(".")
    if parts[0] != "gptpipe":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = path.resolve().relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _packages(name: str) -> list[str]:
    """The packages Python runs the `__init__` of before module `name`."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@functools.lru_cache(maxsize=None)
def imports(name: str) -> frozenset[str]:
    """The `gptpipe` modules that module `name` imports, anywhere in its body."""
    path = module_path(name)
    assert path is not None, name
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + is_pkg]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import mod` imports a module; `from mod import name`, the module itself
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            if module_path(target) is not None:
                found.add(target)
                found.update(p for p in _packages(target) if module_path(p) is not None)
    found.discard(name)
    return frozenset(found)


def stage_modules(stage: str) -> list[str]:
    """Every module of the stage's package, the package's `__init__` first."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    folder = PACKAGE / stage
    names = (module_name(p) for p in folder.glob("*.py"))
    return sorted(names, key=lambda m: (m != f"gptpipe.{stage}", m))


def closure(stage: str) -> list[str]:
    """The modules `stage` runs, its package's and all they import, less EXCLUDED (where the
    traversal stops), sorted."""
    seen: set[str] = set()
    todo = list(stage_modules(stage))
    while todo:
        name = todo.pop()
        if name in seen or name in EXCLUDED:
            continue
        seen.add(name)
        todo.extend(imports(name))
    return sorted(seen)


# Package data a stage reads as its input, not through the params: the declared sources
# (gptpipe/declared.py), which fetch downloads and verifies. (The corpus files are the deps of
# the `fetch_dump` jobs, which the workflow names itself.)
STAGE_DATA: dict[str, tuple[str, ...]] = {"fetch": ("fetch/sources.yaml",)}


def stage_code(stage: str) -> list[str]:
    """`closure(stage)` as paths relative to the project (`gptpipe/ingest/wiki.py`), then the
    package data the stage reads (STAGE_DATA): a rule's inputs, a DVC stage's deps."""
    root = PACKAGE.parent
    return [*(module_path(m).relative_to(root).as_posix() for m in closure(stage)),
            *((PACKAGE / rel).relative_to(root).as_posix() for rel in STAGE_DATA.get(stage, ()))]

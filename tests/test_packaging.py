"""environment.yml (conda, GPU) and pyproject.toml (pip) name the same dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch", "indexed_bzip2": "indexed-bzip2"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ ]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pip_names = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda_names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            conda_names |= {_name(d) for d in dep["pip"] if not d.startswith("-")}
        elif _name(dep) not in ("python", "pip"):
            conda_names.add(CONDA_NAMES.get(_name(dep), _name(dep)))
    assert conda_names == pip_names


def test_lock_pins_every_dependency_and_the_cpu_torch_release():
    lock = (REPO / "requirements/lock.txt").read_text()
    pinned = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", lock, re.M))
    pinned = {k.lower().replace("_", "-"): v for k, v in pinned.items()}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"] + project["optional-dependencies"]["test"]:
        assert _name(req).replace("_", "-") in pinned, req
    assert pinned["torch"] == "2.13.0"  # no local label: `==2.13.0` also admits 2.13.0+cpu
    assert "torch" not in {_name(r) + "==" for r in project["dependencies"] if "==" in r}


# Installed to be run as commands (the workflow tools and the SLURM executor), not imported.
COMMANDS = {"snakemake", "snakemake-executor-plugin-slurm",
            "snakemake-executor-plugin-slurm-jobstep", "dvc"}
IMPORT_NAMES = {"pyyaml": "yaml", "indexed-bzip2": "indexed_bzip2"}


def test_every_runtime_dependency_is_imported_by_runtime_code():
    """A package only tests or benchmarks use belongs in the test extra, not in every install."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    code = "\n".join(p.read_text() for p in (REPO / "gptpipe").rglob("*.py"))
    imported = set(re.findall(r"^\s*(?:import|from) ([A-Za-z_]\w*)", code, re.M))
    unused = [r for r in project["dependencies"]
              if _name(r) not in COMMANDS
              and IMPORT_NAMES.get(_name(r), _name(r).replace("-", "_")) not in imported]
    assert not unused, f"runtime dependencies no module of gptpipe imports: {unused}"

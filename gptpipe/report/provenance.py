"""Where the numbers come from: inputs and checksums, code revision, packages, configs.

Only read-only queries: `git rev-parse HEAD` and `git status --porcelain` (with optional locks
off, so not even the index's stat cache is rewritten), the sha256 of `dvc.lock`, and
`importlib.metadata`. A checkout without git (or outside a repository) reports "unknown".
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import io
from ..config import FetchConfig, flatten, to_dict

KEY_PACKAGES = ("gptpipe", "torch", "tokenizers", "snakemake", "dvc", "polars", "matplotlib")
# Wikimedia names dumps `<wiki>-<YYYYMMDD>-...` (or `<wiki>-latest-...`).
_DUMP_RE = re.compile(r"(?P<wiki>[a-z_]+wiki)-(?P<date>\d{8}|latest)")
# Keys that list which jobs exist, not what one computes: they may grow after a job ran.
_JOB_LIST_KEYS = {"finetune": ("tasks", "variants", "ablation_tasks", "ablation_variants",
                               "seeds")}


def git_state(repo: Path) -> dict[str, Any]:
    """{"commit": 40 hex digits or "unknown", "dirty": tracked files changed (None if unknown)}."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                                 text=True, env=env, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout if res.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": "unknown", "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def package_versions(names: Sequence[str] = KEY_PACKAGES) -> dict[str, str]:
    """name -> installed version, or "not installed"."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def dump_date(path: str) -> str:
    """'2016-05-01' from a Wikimedia dump path, 'latest (undated)', or 'unknown'."""
    m = _DUMP_RE.search(Path(path).name)
    if not m:
        return "unknown"
    d = m.group("date")
    return "latest (undated)" if d == "latest" else f"{d[:4]}-{d[4:6]}-{d[6:]}"


def declared_inputs(fetch: FetchConfig, names: Sequence[str] | None = None
                    ) -> list[dict[str, Any]]:
    """Each source the run read (every declared one when `names` is None): name, role, kind,
    path under data/, checksum(s), the second record that agrees with them ("unchecked" when
    params name none), dump date."""
    rows = []
    # A packaged corpus's parts (fetch_dump jobs) are read whenever it is selected.
    parts = {s.name for s in fetch.corpus_parts}
    for src in (*fetch.corpus_parts, *fetch.sources):
        if names is not None and src.name not in names and src.name not in parts:
            continue
        rows.append({"name": src.name, "role": src.role, "kind": src.kind, "path": src.path,
                     "checksum": src.checksum, "index_checksum": src.index_checksum,
                     "checked": src.checked or "unchecked",
                     "date": dump_date(src.path) if src.role == "dump" else None})
    return rows


def config_drift(resolved: Mapping[str, Mapping], recorded: Sequence[tuple[str, str, Mapping]]
                 ) -> list[str]:
    """Knobs a stage ran with that differ from what params resolve to now, as sentences.

    `recorded`: (section, file it was read from, the config that stage saved). Keys only one
    side has (a knob added later) are left out; so are job-list keys such as `seeds`.
    """
    out: list[str] = []
    for section, where, config in recorded:
        if section not in resolved:
            continue
        now = flatten(resolved[section])
        skip = _JOB_LIST_KEYS.get(section, ())
        for key, value in flatten(config).items():
            if key in now and key.split(".")[0] not in skip and now[key] != value:
                line = (f"{section}.{key}: the stage ran with {value!r}, params resolve to "
                        f"{now[key]!r} ({where})")
                if line not in out:
                    out.append(line)
    return out


def tokenizer_checks(bpe: Mapping, shard: Mapping, runs: Sequence[Mapping]) -> list[str]:
    """The shards and every pre-trained fine-tuning model used the tokenizer of `bpe`."""
    want = bpe.get("tokenizer_sha256")
    out = []
    if shard.get("tokenizer_sha256") != want:
        out.append(f"{shard['file']}: shards were encoded with tokenizer "
                   f"{shard.get('tokenizer_sha256')}, not {bpe['file']}'s {want}")
    for run in runs:
        model = run.get("model") or {}
        got = model.get("tokenizer_sha256")
        if got is not None and got != want:
            out.append(f"{run['file']}: model tokenizer {got} is not {bpe['file']}'s {want}")
    return out


def _read(resolved: Mapping[str, Any]) -> list[str] | None:
    """The sources this configuration reads (see gptpipe.workflow.needed_sources)."""
    if "finetune" not in resolved:
        return None
    from ..errors import ConfigError
    from ..workflow import needed_sources

    try:
        return needed_sources(resolved["finetune"], resolved["fetch"])
    except ConfigError:  # params the workflow would refuse: list every declared source
        return None


def collect(resolved: Mapping[str, Any], repo: Path, recorded: Sequence[tuple[str, str, Mapping]],
            checks: Sequence[str] = ()) -> dict[str, Any]:
    """The provenance block of report.json. `resolved`: section -> frozen config."""
    params = {name: to_dict(cfg) for name, cfg in resolved.items()}
    lock = repo / "dvc.lock"
    return {
        "git": git_state(repo),
        "dvc_lock_sha256": io.file_sha256(lock) if lock.is_file() else None,
        "packages": package_versions(),
        "inputs": declared_inputs(resolved["fetch"], _read(resolved)),
        "checks": [*checks, *config_drift(params, recorded)],
        "params": params,
    }

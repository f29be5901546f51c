"""The pre-training corpora `fetch.corpus` can select besides `sample`, one YAML file each in
`gptpipe/fetch/corpora/` (package data).

A corpus file lists its dump parts (file name, bytes, sha256), the folder under `data/` (and
under a mirror) they land in, and the base URL they were published at. They are package data,
not `params.yaml` entries: 59 parts would bury the file's knobs (and DVC's `exp show`).
Each part becomes a `Source` with role `dump` (one fetch job and one ingest job): its name is
the file name less `.bz2`, its URL `base/<file name>` (base: `fetch.dump_base_url`, else the
file's own), its `size` checked after download.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent / "fetch" / "corpora"
CORPORA = ("enwiki-20200501",)  # besides `sample` (the role-dump entries of fetch.sources)


def corpus_file(name: str) -> Path:
    return HERE / f"{name}.yaml"


@functools.cache
def _load(name: str) -> dict[str, Any]:
    path = corpus_file(name)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or set(data) != {"folder", "base_url", "parts"}:
        raise ValueError(f"{path}: expected the keys folder, base_url and parts")
    for i, part in enumerate(data["parts"]):
        if not (isinstance(part, list) and len(part) == 3 and str(part[0]).endswith(".bz2")
                and isinstance(part[1], int)):
            raise ValueError(f"{path}: parts[{i}]: expected [file name .bz2, bytes, sha256]")
    return data


def folder(name: str) -> str:
    """Where the corpus's parts go, relative to `data/` (and to a mirror)."""
    return _load(name)["folder"]


def part_specs(name: str, base_url: str | None = None) -> list[dict[str, Any]]:
    """The corpus's parts as `fetch.sources` entries (plain dicts, for `config.build`)."""
    data = _load(name)
    base = (base_url or data["base_url"]).rstrip("/")
    return [{"name": file.removesuffix(".bz2"), "role": "dump", "kind": "file",
             "path": f"{data['folder']}/{file}", "url": f"{base}/{file}",
             "checksum": f"sha256:{sha}", "size": size}
            for file, size, sha in data["parts"]]

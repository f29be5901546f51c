"""Reading JSON/YAML with errors that name the file and line, and hashing files and configs.

Every stage reads the outputs of earlier ones; a missing or damaged file must fail with one line
that says which file and what is wrong, never with a traceback from deep inside `json`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from .errors import GptpipeError

CHUNK = 1 << 20  # bytes read per hash update


def read_text(path: str | Path, *, missing: str = "not found",
              error: type[GptpipeError] = GptpipeError) -> str:
    """The file's UTF-8 text; a missing or unreadable file is an `error` naming it."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        raise error(f"{path}: {missing}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc}") from None


def read_json(path: str | Path, *, missing: str = "not found", kind: type = dict) -> Any:
    """The JSON value in `path`, checked to be a `kind` (`object` accepts any value)."""
    text = read_text(path, missing=missing)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GptpipeError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, kind):
        want = {dict: "a JSON object", list: "a JSON array"}.get(kind, kind.__name__)
        raise GptpipeError(f"{path}: expected {want}, got {type(data).__name__}")
    return data


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSON-lines file."""
    out = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GptpipeError(f"{path}:{number}: not valid JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise GptpipeError(f"{path}:{number}: expected a JSON object per line")
        out.append((number, record))
    return out


def read_yaml(path: str | Path, *, missing: str = "not found",
              error: type[GptpipeError] = GptpipeError) -> Any:
    """The YAML document in `path` (None when empty); bad YAML is an `error` with its line."""
    text = read_text(path, missing=missing, error=error)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None


def file_digest(path: str | Path, algo: str = "sha256") -> str:
    """Hex digest of a file's bytes (`algo`: sha256, sha1 or md5), read in 1 MiB blocks."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    return file_digest(path, "sha256")


def json_digest(obj: Any) -> str:
    """sha256 of `obj`'s canonical JSON (sorted keys, no spaces): equal configs, equal digests."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

"""Helpers the Snakefile calls (kept here so they are importable and unit-tested).

Snakemake loads `params.yaml` as its config and merges `--config` overrides into it, but its
`--config` parser reads nested values with YAML's BaseLoader, so `--config bpe='{vocab_size:
1000}'` arrives as the *string* '1000'. `effective_params` re-types such leaves, and
`cli_overrides` turns every difference from the file into `--scale`/`--set` flags, so the stage
processes see exactly what Snakemake saw, while a run without overrides has the very same
command lines as `dvc.yaml`.
"""

from __future__ import annotations

import json
import shlex
from typing import Any, Iterator, Mapping

import yaml

from .config import merge, resolve_section, to_dict, validate_params


def _retype(value: Any) -> Any:
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if isinstance(parsed, (int, float, bool)) or parsed is None else value
    if isinstance(value, Mapping):
        return {k: _retype(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_retype(v) for v in value]
    return value


def _diff(file_value: Any, config_value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, new value) for every leaf where `config_value` differs from the file."""
    if isinstance(file_value, Mapping) and isinstance(config_value, Mapping):
        for key in sorted(config_value):
            yield from _diff(file_value.get(key), config_value[key], f"{prefix}{key}.")
    elif file_value != config_value:
        yield prefix.rstrip("."), config_value


def effective_params(file_params: Mapping, config: Mapping) -> dict:
    """The params Snakemake runs with: the file, plus `--config` overrides re-typed."""
    overrides = {k: _retype(v) for k, v in config.items() if file_params.get(k) != v}
    return merge(file_params, overrides)


def cli_overrides(file_params: Mapping, config: Mapping, section: str) -> str:
    """Shell-quoted `--scale`/`--set` flags for one stage; empty when nothing is overridden."""
    params = effective_params(file_params, config)
    args: list[str] = []
    if params.get("scale", "tiny") != file_params.get("scale", "tiny"):
        args += ["--scale", str(params["scale"])]
    for key, value in _diff(file_params.get(section) or {}, params.get(section) or {}):
        args += ["--set", f"{key}={json.dumps(value)}"]
    return " ".join(shlex.quote(a) for a in args)


def knobs(file_params: Mapping, config: Mapping, section: str) -> str:
    """The resolved section as canonical JSON: a rule's `params:`, so a change reruns it."""
    cfg = resolve_section(effective_params(file_params, config), section)
    return json.dumps(to_dict(cfg), sort_keys=True)


def validate(file_params: Mapping, config: Mapping) -> dict:
    """Validate every section before any job runs (raises ConfigError naming the key)."""
    return validate_params(effective_params(file_params, config))


# The package modules each stage runs: inputs of its rule and deps of its DVC stage, so editing
# a stage's code reruns that stage (and what depends on it) under both tools.
STAGE_CODE: dict[str, tuple[str, ...]] = {
    "fetch": ("gptpipe/sources.py", "gptpipe/multistream.py", "gptpipe/stages/fetch.py"),
    "ingest": ("gptpipe/wiki.py", "gptpipe/wikitext.py", "gptpipe/stages/ingest.py"),
    "bpe": ("gptpipe/bpe.py", "gptpipe/stages/bpe.py"),
    "shard": ("gptpipe/shards.py", "gptpipe/stages/shard.py"),
}


def fetch_outputs(fetch_cfg: Any) -> list[str]:
    """Relative paths (under `data/`) of every file or folder `fetch` produces."""
    from .sources import output_paths

    return output_paths(fetch_cfg)

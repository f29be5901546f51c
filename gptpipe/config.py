"""Typed, frozen config: one dataclass per `params.yaml` section, validated before any job runs.

How a stage's knobs are resolved (later wins):

1. the dataclass defaults, which are the paper's values (GPT-1, `scale: gpt1`);
2. the preset named by the top-level `scale` key (`gptpipe/presets.py`);
3. the stage's own section in `params.yaml` (deliberate overrides only);
4. `--set key=value` on the command line (Snakemake passes `--config` overrides this way).

Unknown keys and wrong types are errors that name the key's full path, e.g.
`params.yaml: bpe.vocab_sise: unknown key (known: min_frequency, style, vocab_size)`.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from .errors import ConfigError
from .presets import PRESETS

SCALES = tuple(PRESETS)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CHECKSUM_RE = re.compile(r"^(sha256:[0-9a-f]{64}|sha1:[0-9a-f]{40}|md5:[0-9a-f]{32})$")


@dataclass(frozen=True)
class Source:
    """One input file declared in `fetch.sources`, found in the mirror or downloaded."""

    name: str  # unique; also the `ingest` wildcard for dump parts
    path: str  # relative path under `data/` and under the mirror folder
    checksum: str  # "sha256:<hex>" (or sha1:/md5:, as Wikimedia publishes) of the file at `path`
    kind: Literal["file", "archive", "manual"] = "file"
    role: Literal["dump", "task", "other"] = "other"  # dump parts become `ingest` jobs
    url: str | None = None
    url_checksum: str | None = None  # checksum of the download when `repack` transforms it
    repack: Literal["multistream"] | None = None  # URL serves one bz2 stream: split it
    pages_per_stream: int = 100  # with `repack: multistream`, as Wikimedia's dumps
    index_path: str | None = None  # multistream index (`offset:page_id:title` lines, bz2)
    index_checksum: str | None = None
    index_url: str | None = None
    instructions: str | None = None  # `kind: manual`: where to get the file by hand
    strip_components: int = 0  # `kind: archive`: leading folders dropped from member paths

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"name {self.name!r}: use letters, digits, '_', '.', '-'")
        for key in ("checksum", "url_checksum", "index_checksum"):
            value = getattr(self, key)
            if value is not None and not _CHECKSUM_RE.match(value):
                raise ValueError(f"{key} {value!r}: expected 'sha256:<hex>', 'sha1:' or 'md5:'")
        for key in ("path", "index_path"):
            value = getattr(self, key)
            if value is not None and (Path(value).is_absolute() or ".." in Path(value).parts):
                raise ValueError(f"{key} {value!r}: must be relative, without '..'")
        if self.kind == "manual" and not self.instructions:
            raise ValueError("kind 'manual' needs 'instructions' (where to get the file)")
        if self.kind != "manual" and not self.url:
            raise ValueError(f"kind {self.kind!r} needs a 'url'")
        if self.repack and not self.url_checksum:
            raise ValueError("'repack' needs 'url_checksum' (the download's own checksum)")
        if (self.index_path is None) != (self.index_checksum is None):
            raise ValueError("'index_path' and 'index_checksum' go together")
        if self.repack == "multistream" and self.index_path is None:
            raise ValueError("'repack: multistream' writes an index: set 'index_path'")
        if self.pages_per_stream < 1:
            raise ValueError("pages_per_stream must be >= 1")
        if self.kind != "file" and (self.repack or self.index_path):
            raise ValueError("'repack' and 'index_path' need kind 'file'")
        if self.index_path and not self.repack and not self.index_url:
            raise ValueError("'index_path' without 'repack' needs 'index_url' to download it from")
        if self.strip_components < 0 or (self.strip_components and self.kind != "archive"):
            raise ValueError("strip_components must be >= 0 and needs kind 'archive'")


@dataclass(frozen=True)
class FetchConfig:
    """`fetch`: every input of the pipeline, with its checksum."""

    sources: tuple[Source, ...] = ()

    def __post_init__(self) -> None:
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate source names: {', '.join(dup)}")

    @property
    def dump_parts(self) -> tuple[Source, ...]:
        return tuple(s for s in self.sources if s.role == "dump")

    def source(self, name: str) -> Source:
        for s in self.sources:
            if s.name == name:
                return s
        raise ConfigError(f"no source named {name!r} in fetch.sources")


@dataclass(frozen=True)
class IngestConfig:
    """`ingest`: wikitext to clean prose, one job per dump part."""

    val_fraction: float = 0.005  # share of pages (by hash of page id) held out for validation
    split_salt: str = "gptpipe-v1"  # changing it reshuffles the train/val assignment
    min_chars: int = 200  # drop articles with less prose than this (stubs, lists)
    rows_per_file: int = 20_000  # articles per Parquet file
    max_bad_pages: int = 0  # pages whose wikitext cannot be converted before the job fails

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("val_fraction must be in [0, 1)")
        if self.min_chars < 0 or self.rows_per_file < 1 or self.max_bad_pages < 0:
            raise ValueError("min_chars >= 0, rows_per_file >= 1, max_bad_pages >= 0")


@dataclass(frozen=True)
class BpeConfig:
    """`bpe`: the tokenizer. Special tokens follow the base vocabulary at fixed ids."""

    vocab_size: int = 40_478  # base vocabulary: GPT-1's 478 symbols + 40,000 merges
    style: Literal["bytelevel", "gpt1"] = "bytelevel"  # gpt1: lowercased, `</w>` word ends
    min_frequency: int = 2  # a pair must occur this often to be merged
    limit_alphabet: int = 478  # gpt1 style only: base symbols kept (GPT-1 kept 478)

    def __post_init__(self) -> None:
        if self.vocab_size < 300:
            raise ValueError("vocab_size must be >= 300 (the byte alphabet alone is 256)")
        if self.min_frequency < 1 or self.limit_alphabet < 1:
            raise ValueError("min_frequency and limit_alphabet must be >= 1")


@dataclass(frozen=True)
class ShardConfig:
    """`shard`: token windows in WebDataset tar shards."""

    context: int = 512  # tokens the model sees; windows hold context + 1 (inputs and targets)
    samples_per_shard: int = 2_000  # windows per tar shard

    def __post_init__(self) -> None:
        if self.context < 2 or self.samples_per_shard < 1:
            raise ValueError("context >= 2, samples_per_shard >= 1")


SECTIONS: dict[str, type] = {
    "fetch": FetchConfig,
    "ingest": IngestConfig,
    "bpe": BpeConfig,
    "shard": ShardConfig,
}
TOP_LEVEL = {"scale", "mirror", *SECTIONS}  # `mirror` arrives only through Snakemake --config


# --------------------------------------------------------------------------- building


def build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from plain data, naming `where` (a key path) in every error."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}.{missing[0]}: required key is missing")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{where}: {value!r} is not one of {choices}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads `2.5e-4` as a string; accept it as the number it is
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and not (
        isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def to_dict(obj: Any) -> Any:
    """Plain data (lists, dicts) for JSON/YAML, e.g. the resolved config saved beside outputs."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- resolving


def load_params(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def parse_set(items: list[str] | None) -> dict:
    """`["a.b=1", "c=[x, y]"]` -> `{"a": {"b": 1}, "c": ["x", "y"]}` (values parsed as YAML)."""
    out: dict = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def merge(base: Mapping, over: Mapping) -> dict:
    """Recursive dict merge; lists and scalars in `over` replace those in `base`."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve_section(
    params: Mapping, section: str, overrides: Mapping | None = None, where: str = "params.yaml"
) -> Any:
    """The frozen config of one stage, from the whole params mapping plus `--set` overrides."""
    if section not in SECTIONS:
        raise ConfigError(f"unknown section {section!r} (known: {', '.join(SECTIONS)})")
    scale = params.get("scale", "tiny")
    if scale not in PRESETS:
        raise ConfigError(f"{where}: scale: {scale!r} is not one of {', '.join(SCALES)}")
    own = params.get(section) or {}
    if not isinstance(own, Mapping):
        raise ConfigError(f"{where}: {section}: expected a mapping, got {type(own).__name__}")
    data = merge(merge(PRESETS[scale].get(section, {}), own), overrides or {})
    return build(SECTIONS[section], data, f"{where}: {section}")


def validate_params(params: Mapping, where: str = "params.yaml") -> dict[str, Any]:
    """Check every section at once (Snakemake calls this when it builds the DAG)."""
    unknown = sorted(set(params) - TOP_LEVEL)
    if unknown:
        raise ConfigError(
            f"{where}: {unknown[0]}: unknown top-level key (known: {', '.join(sorted(TOP_LEVEL))})"
        )
    return {name: resolve_section(params, name, where=where) for name in SECTIONS}

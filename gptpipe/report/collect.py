"""Read the stages' outputs into checked dicts and polars frames; no formatting happens here.

Every reader names the file (and the line of a JSON-lines file) in the `GptpipeError` it raises,
so a report never silently shows a half-read run. Percentages are the finetune stage's own
`scores_percent` (100 x the official metric); nothing is rescored.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import polars as pl

from ..errors import GptpipeError
from ..io import read_json, read_jsonl

METRICS_JSON = "metrics.json"  # a finetune job's (and pretrain's) final figures
CURVE_FILE = "metrics.jsonl"  # pretrain: one record per logged update
# One row per logged update: tokens are all processes' training tokens so far; losses in nats
# per token; val_* are null except at validations; mfu in [0, 1], null where not measured.
CURVE_SCHEMA: dict[str, Any] = {
    "step": pl.Int64, "tokens": pl.Int64, "loss": pl.Float64, "val_loss": pl.Float64,
    "val_bpb": pl.Float64, "lr": pl.Float64, "grad_norm": pl.Float64,
    "tokens_per_s": pl.Float64, "mfu": pl.Float64,
}
_CURVE_REQUIRED = ("step", "tokens", "loss", "lr")
_PRETRAIN_REQUIRED = ("val_loss", "tokens", "updates", "parameters", "train_seconds",
                      "processes", "device")
_RUN_REQUIRED = ("task", "variant", "seed", "headline", "scores_percent", "reported_splits")
# One row per (job, scored split, metric): the long form every results table is cut from.
SCORES_SCHEMA: dict[str, Any] = {
    "task": pl.Utf8, "variant": pl.Utf8, "seed": pl.Int64, "split": pl.Utf8,
    "metric": pl.Utf8, "percent": pl.Float64,
}


# --------------------------------------------------------------------------- JSON files


def require(data: Mapping, keys: Sequence[str], where: str) -> None:
    """Fail naming `where` and the first key of `keys` that `data` lacks."""
    for key in keys:
        if key not in data:
            raise GptpipeError(f"{where}: missing key {key!r}")


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# --------------------------------------------------------------------------- pretrain


@dataclass(frozen=True)
class Pretrain:
    """The pre-training run: final figures, the logged curve, and its saved config if any."""

    summary: dict  # metrics.json: losses in nats/token, seconds, tokens, mfu in [0, 1] or None
    curve: pl.DataFrame  # CURVE_SCHEMA, one row per logged update, sorted by step
    config: dict | None  # config.json: the resolved `model` and `pretrain` sections it ran with


def curve_frame(records: Sequence[tuple[int, dict]], where: Path) -> pl.DataFrame:
    """The logged records as a frame; a resumed run's re-logged steps keep their last record."""
    rows = []
    for number, record in records:
        require(record, _CURVE_REQUIRED, f"{where}:{number}")
        for key in CURVE_SCHEMA:
            value = record.get(key)
            if value is not None and not is_number(value):
                raise GptpipeError(f"{where}:{number}: {key}: expected a number, got {value!r}")
        rows.append({key: record.get(key) for key in CURVE_SCHEMA})
    frame = pl.DataFrame(rows, schema=CURVE_SCHEMA, orient="row")
    return frame.unique("step", keep="last", maintain_order=True).sort("step")


def load_pretrain(folder: Path) -> Pretrain:
    """Read `folder/metrics.json`, `folder/metrics.jsonl` and (if present) `folder/config.json`."""
    summary_path = folder / METRICS_JSON
    summary = read_json(summary_path)
    require(summary, _PRETRAIN_REQUIRED, str(summary_path))
    curve_path = folder / CURVE_FILE
    records = read_jsonl(curve_path)
    if not records:
        raise GptpipeError(f"{curve_path}: no metric records (did pre-training log any update?)")
    config_path = folder / "config.json"
    config = read_json(config_path) if config_path.is_file() else None
    return Pretrain(summary, curve_frame(records, curve_path), config)


# --------------------------------------------------------------------------- finetune


def check_run(data: dict, path: Path) -> dict:
    """A finetune job's metrics.json with the fields the report reads checked for type."""
    where = str(path)
    require(data, _RUN_REQUIRED, where)
    if not isinstance(data["task"], str) or not isinstance(data["variant"], str):
        raise GptpipeError(f"{where}: task and variant must be strings")
    if not isinstance(data["seed"], int) or isinstance(data["seed"], bool):
        raise GptpipeError(f"{where}: seed: expected an integer, got {data['seed']!r}")
    headline = data["headline"]
    if not isinstance(headline, Mapping):
        raise GptpipeError(f"{where}: headline: expected an object")
    require(headline, ("metric", "split"), f"{where}: headline")
    scores = data["scores_percent"]
    if not isinstance(scores, Mapping):
        raise GptpipeError(f"{where}: scores_percent: expected an object of splits")
    for split, by_metric in scores.items():
        if not isinstance(by_metric, Mapping):
            raise GptpipeError(f"{where}: scores_percent.{split}: expected an object of metrics")
        for metric, value in by_metric.items():
            if value is not None and not is_number(value):
                raise GptpipeError(
                    f"{where}: scores_percent.{split}.{metric}: expected a number, got {value!r}")
    return data


def load_runs(folders: Sequence[Path]) -> list[dict]:
    """Every job folder's checked metrics.json (plus `file`: where it was read), in order."""
    runs: list[dict] = []
    seen: dict[tuple, Path] = {}
    for folder in folders:
        path = folder / METRICS_JSON
        if not path.is_file():
            raise GptpipeError(f"{folder}: no {METRICS_JSON} (not a finished finetune job folder)")
        run = check_run(read_json(path), path)
        key = (run["task"], run["variant"], run["seed"])
        if key in seen:
            raise GptpipeError(f"{path}: {key[0]} {key[1]} seed {key[2]} again (also in "
                               f"{seen[key]})")
        seen[key] = path
        runs.append({**run, "file": str(path)})
    return runs


def scores_frame(runs: Sequence[Mapping]) -> pl.DataFrame:
    """SCORES_SCHEMA rows: one per job, scored split and metric (percent; null if undefined)."""
    rows = [
        {"task": run["task"], "variant": run["variant"], "seed": run["seed"], "split": split,
         "metric": metric, "percent": value}
        for run in runs
        for split, by_metric in run["scores_percent"].items()
        for metric, value in by_metric.items()
    ]
    return pl.DataFrame(rows, schema=SCORES_SCHEMA, orient="row")


# --------------------------------------------------------------------------- per-task notes


def load_notes(reports: Sequence[Mapping], max_listed: int) -> list[str]:
    """Malformed rows (first `max_listed` as file:line: why, and a count) and dropped rows."""
    notes = []
    for rep in reports:
        name = rep.get("file", "?")
        malformed = list(rep.get("malformed") or [])
        dropped = {k: v for k, v in (rep.get("dropped") or {}).items() if v}
        # The list may be capped by the writer: the counts say how many there really were.
        counted = rep.get("rows", 0) - rep.get("kept", 0) - sum(dropped.values())
        count = max(len(malformed), counted)
        if count:
            listed = "; ".join(f"{m.get('file', name)}:{m.get('line', '?')}: {m.get('why', '?')}"
                               for m in malformed[:max_listed])
            more = f"; and {count - min(len(malformed), max_listed)} more" \
                if count > min(len(malformed), max_listed) else ""
            notes.append(f"{name}: {count} malformed row(s) skipped ({listed}{more})")
        for why, n in dropped.items():
            notes.append(f"{name}: {n} row(s) dropped ({why})")
    return notes


def truncation_notes(truncation: Mapping[str, Mapping]) -> list[str]:
    """One note per split where inputs were cut to `max_len` tokens."""
    return [
        f"{split}: {t['truncated']} of {t['examples']} examples truncated to {t['max_len']} "
        f"tokens (longest {t.get('longest_tokens', '?')})"
        for split, t in truncation.items() if t.get("truncated")
    ]


def cap_notes(caps: Mapping, examples: Mapping[str, Mapping]) -> list[str]:
    """Which splits a `max_*_examples` cap shortened (examples used of available)."""
    if not caps.get("applied"):
        return []
    parts = [f"{split} {e['used']:,} of {e['available']:,}" for split, e in examples.items()
             if e.get("used", 0) < e.get("available", 0)]
    return [f"capped (examples used of available): {', '.join(parts)}"] if parts else []


def task_notes(runs: Sequence[Mapping], max_listed: int) -> dict[str, list[str]]:
    """task -> its runs' notes without repeats (variants and seeds share the same data)."""
    out: dict[str, list[str]] = {}
    for run in runs:
        notes = out.setdefault(run["task"], [])
        found = [*(run.get("notes") or []), *load_notes(run.get("load_reports") or [], max_listed),
                 *truncation_notes(run.get("truncation") or {}),
                 *cap_notes(run.get("caps") or {}, run.get("examples") or {})]
        notes.extend(n for n in dict.fromkeys(found) if n not in notes)
    return out


# --------------------------------------------------------------------------- data stages


def load_bpe(folder: Path) -> dict:
    """The tokenizer's facts from `bpe.json` (vocabulary incl. special tokens, style, sha256)."""
    path = folder / "bpe.json"
    data = read_json(path)
    require(data, ("vocab_size", "style", "tokenizer_sha256"), str(path))
    return {"file": str(path), **data}


def load_shard(folder: Path) -> dict:
    """The shards' facts from `manifest.json`: per split documents, windows, tokens, shards."""
    path = folder / "manifest.json"
    data = read_json(path)
    require(data, ("splits", "context", "dtype", "vocab_size", "tokenizer_sha256"), str(path))
    splits = {}
    for name, split in data["splits"].items():
        require(split, ("samples", "tokens"), f"{path}: splits.{name}")
        splits[name] = {"documents": split.get("documents"), "samples": split["samples"],
                        "tokens": split["tokens"], "shards": len(split.get("shards") or []),
                        "dropped_tail_tokens": split.get("dropped_tail_tokens")}
    keep = ("format", "context", "dtype", "vocab_size", "tokenizer_sha256", "eod_id", "config")
    return {"file": str(path), **{k: data.get(k) for k in keep}, "splits": splits}


def load_ingest(folders: Sequence[Path]) -> list[dict]:
    """Each dump part's `stats.json`: pages seen and kept, drops by reason, split sizes."""
    parts = []
    for folder in folders:
        path = folder / "stats.json"
        data = read_json(path)
        require(data, ("pages_seen", "pages_kept", "dropped"), str(path))
        keep = ("input", "pages_seen", "pages_kept", "dropped", "splits", "chars", "seconds",
                "config")
        parts.append({"part": folder.name, "file": str(path), **{k: data.get(k) for k in keep}})
    return parts

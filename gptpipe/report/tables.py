"""The paper's Tables 2-5 beside ours (polars), and the compute used.

Every figure is a percentage (accuracy, F1, 100 x MCC or Pearson). Ours is the mean, the sample
standard deviation (ddof 1) and the number of seeds; a table row whose runs are missing says
"not run" and never shows a number that was not measured. Ours are measured on the first split
of a row's list that a run scored: the labelled test split where one exists (SNLI, SciTail,
RACE, Story Cloze), else dev; the paper's GLUE figures are the evaluation server's test scores,
so those differences are approximate by nature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import polars as pl

from .. import tasks

GLUE_SERVER = "test (GLUE server)"
VARIANT_ORDER = ("full", "no_pretrain", "no_aux", "lstm")  # Table 5's row order
# Numbers the task registry does not hold (it keeps each task's full-model figures of Tables
# 2-4). Table 5 of the paper, "LSTM w/ aux LM" last; its MNLI column is one number (the mean of
# matched and mismatched, 81.8 for the full model) and `avg` the unweighted mean of the eight
# columns. The full row repeats Tables 2-4 (tests check that it agrees with the registry).
PAPER_TABLE5: dict[str, dict[str, float]] = {
    "full": {"avg": 74.7, "CoLA": 45.4, "SST-2": 91.3, "MRPC": 82.3, "STS-B": 82.0,
             "QQP": 70.3, "MNLI": 81.8, "QNLI": 88.1, "RTE": 56.0},
    "no_pretrain": {"avg": 59.9, "CoLA": 18.9, "SST-2": 84.0, "MRPC": 79.4, "STS-B": 30.9,
                    "QQP": 65.5, "MNLI": 75.7, "QNLI": 71.2, "RTE": 53.8},
    "no_aux": {"avg": 75.0, "CoLA": 47.9, "SST-2": 92.0, "MRPC": 84.9, "STS-B": 83.2,
               "QQP": 69.8, "MNLI": 81.1, "QNLI": 86.9, "RTE": 54.4},
    "lstm": {"avg": 69.1, "CoLA": 30.3, "SST-2": 90.5, "MRPC": 83.2, "STS-B": 71.8,
             "QQP": 68.1, "MNLI": 73.7, "QNLI": 81.1, "RTE": 54.6},
}
PAPER_GLUE_SCORE = 72.8  # Table 4, "GLUE": the evaluation server's score over its nine tasks

# One row per (table, label, variant); numbers in percent, `n` seeds, `diff` = mean - paper.
TABLE_SCHEMA = {
    "table": pl.Utf8, "label": pl.Utf8, "variant": pl.Utf8, "paper": pl.Float64,
    "paper_split": pl.Utf8, "mean": pl.Float64, "std": pl.Float64, "n": pl.Int64,
    "diff": pl.Float64, "split": pl.Utf8, "status": pl.Utf8, "note": pl.Utf8,
}
_VALUES = {"seed": pl.Int64, "value": pl.Float64, "split": pl.Utf8}


@dataclass(frozen=True)
class Measure:
    """One metric of one task; ours comes from the first of `splits` that a run scored."""

    task: str
    metric: str
    splits: tuple[str, ...] = ("test", "dev")


@dataclass(frozen=True)
class Row:
    """A table row: per seed, the mean of its measures (MNLI in Table 5: matched and
    mismatched); an aggregate row (`parts`) is the mean of its part rows, seed by seed."""

    label: str
    measures: tuple[Measure, ...] = ()
    parts: tuple["Row", ...] = ()
    paper: Mapping[str, float] | None = None  # variant -> the paper's percent
    paper_split: str = "test"


def _registry(task: str, key: str) -> dict[str, float]:
    return {"full": tasks.get(task).paper[key]}


def _task_row(label: str, task: str, metric: str, splits: tuple[str, ...] = ("test", "dev"),
              glue: bool = False) -> Row:
    key = f"{splits[0]}/{metric}"
    return Row(label, (Measure(task, metric, splits),), paper=_registry(task, key),
               paper_split=GLUE_SERVER if glue else "test")


_MNLI_M = Measure("MNLI", "accuracy", ("test_matched", "dev_matched"))
_MNLI_MM = Measure("MNLI", "accuracy", ("test_mismatched", "dev_mismatched"))
TABLE2 = (
    Row("MNLI-m", (_MNLI_M,), paper=_registry("MNLI", "test_matched/accuracy"),
        paper_split=GLUE_SERVER),
    Row("MNLI-mm", (_MNLI_MM,), paper=_registry("MNLI", "test_mismatched/accuracy"),
        paper_split=GLUE_SERVER),
    _task_row("SNLI", "SNLI", "accuracy"),
    _task_row("SciTail", "SciTail", "accuracy"),
    _task_row("QNLI", "QNLI", "accuracy", glue=True),
    _task_row("RTE", "RTE", "accuracy", glue=True),
)
TABLE3 = (
    _task_row("Story Cloze", "StoryCloze", "accuracy"),
    _task_row("RACE-m", "RACE", "accuracy@middle"),
    _task_row("RACE-h", "RACE", "accuracy@high"),
    _task_row("RACE", "RACE", "accuracy"),
)
# GLUE's score: the mean over its nine tasks of each task's metrics' mean (GLUE's own rule).
_GLUE_PARTS = (
    Row("CoLA", (Measure("CoLA", "mcc"),)),
    Row("SST-2", (Measure("SST-2", "accuracy"),)),
    Row("MRPC", (Measure("MRPC", "f1"), Measure("MRPC", "accuracy"))),
    Row("STS-B", (Measure("STS-B", "pearson"), Measure("STS-B", "spearman"))),
    Row("QQP", (Measure("QQP", "f1"), Measure("QQP", "accuracy"))),
    Row("MNLI", (_MNLI_M, _MNLI_MM)),
    Row("QNLI", (Measure("QNLI", "accuracy"),)),
    Row("RTE", (Measure("RTE", "accuracy"),)),
    Row("WNLI", (Measure("WNLI", "accuracy"),)),
)
TABLE4 = (
    _task_row("CoLA", "CoLA", "mcc", glue=True),
    _task_row("SST-2", "SST-2", "accuracy", glue=True),
    _task_row("MRPC", "MRPC", "f1", glue=True),
    _task_row("STS-B", "STS-B", "pearson", glue=True),
    _task_row("QQP", "QQP", "f1", glue=True),
    Row("GLUE", parts=_GLUE_PARTS, paper={"full": PAPER_GLUE_SCORE}, paper_split=GLUE_SERVER),
)
_TABLE5_COLUMNS = tuple(
    Row(label, measures, paper={v: PAPER_TABLE5[v][label] for v in VARIANT_ORDER},
        paper_split=GLUE_SERVER)
    for label, measures in (
        ("CoLA", (Measure("CoLA", "mcc"),)), ("SST-2", (Measure("SST-2", "accuracy"),)),
        ("MRPC", (Measure("MRPC", "f1"),)), ("STS-B", (Measure("STS-B", "pearson"),)),
        ("QQP", (Measure("QQP", "f1"),)), ("MNLI", (_MNLI_M, _MNLI_MM)),
        ("QNLI", (Measure("QNLI", "accuracy"),)), ("RTE", (Measure("RTE", "accuracy"),)),
    )
)
TITLES = {
    "table2": "Table 2: natural language inference (accuracy)",
    "table3": "Table 3: question answering and commonsense reasoning (accuracy)",
    "table4": "Table 4: classification and semantic similarity",
    "table5": "Table 5: ablations",
    "other": "Other runs (not in the paper's tables)",
}


# --------------------------------------------------------------------------- values per seed


def measure_values(scores: pl.DataFrame, m: Measure, variant: str) -> pl.DataFrame:
    """(seed, value, split): the metric per seed, on the first of `m.splits` the run scored."""
    rank = {split: i for i, split in enumerate(m.splits)}
    found = scores.filter(
        (pl.col("task") == m.task) & (pl.col("variant") == variant)
        & (pl.col("metric") == m.metric) & pl.col("split").is_in(list(m.splits))
    )
    if found.is_empty():
        return pl.DataFrame(schema=_VALUES)
    return (found.with_columns(pl.col("split").replace_strict(rank, return_dtype=pl.Int64)
                               .alias("rank"))
            .sort("seed", "rank").group_by("seed", maintain_order=True).first()
            .select("seed", pl.col("percent").alias("value"), "split"))


def _mean_of(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Seeds present in every frame; value = mean of theirs (null if any is null)."""
    if not frames or any(f.is_empty() for f in frames):
        return pl.DataFrame(schema=_VALUES)
    joined = frames[0].rename({"value": "v0", "split": "s0"})
    for i, frame in enumerate(frames[1:], start=1):
        joined = joined.join(frame.rename({"value": f"v{i}", "split": f"s{i}"}), on="seed")
    values = [pl.col(f"v{i}") for i in range(len(frames))]
    splits = sorted({s for i in range(len(frames)) for s in joined[f"s{i}"].to_list()})
    mean = (pl.when(pl.any_horizontal([v.is_null() for v in values])).then(None)
            .otherwise(pl.sum_horizontal(values) / len(frames)))
    return joined.select("seed", mean.cast(pl.Float64).alias("value"),
                         pl.lit("/".join(splits)).alias("split"))


def row_values(scores: pl.DataFrame, row: Row, variant: str) -> pl.DataFrame:
    """(seed, value, split) of one table row for one variant."""
    if row.parts:
        return _mean_of([row_values(scores, part, variant) for part in row.parts])
    return _mean_of([measure_values(scores, m, variant) for m in row.measures])


def _missing_parts(scores: pl.DataFrame, row: Row, variant: str) -> list[str]:
    return [p.label for p in row.parts if row_values(scores, p, variant).is_empty()]


def summarise(values: pl.DataFrame, paper: float | None) -> dict:
    """mean, sample std (None below 2 seeds), n, diff (percentage points), split, status, note."""
    defined = values.filter(pl.col("value").is_not_null())
    undefined = values.height - defined.height
    note = f"{undefined} seed(s) gave an undefined score" if undefined else ""
    n = defined.height
    if n == 0:
        return {"mean": None, "std": None, "n": 0, "diff": None, "split": None,
                "status": "not run" if not undefined else "undefined", "note": note}
    mean = float(defined["value"].mean())
    std = float(defined["value"].std(ddof=1)) if n > 1 else None
    splits = sorted(set("/".join(defined["split"].to_list()).split("/")))
    return {"mean": mean, "std": std, "n": n,
            "diff": mean - paper if paper is not None else None,
            "split": "/".join(splits), "status": "ok", "note": note}


# --------------------------------------------------------------------------- tables


def _why_not_run(row: Row, not_run: Mapping[str, str]) -> tuple[str, str] | None:
    """(status, note) of a row whose task was left out on purpose ("not run: <why> (<how>)")."""
    for m in row.measures:
        if m.task in not_run:
            status, _, note = not_run[m.task].partition(" (")
            return status, note[:-1] if note.endswith(")") else note
    return None


def _table_rows(name: str, rows: Sequence[Row], scores: pl.DataFrame,
                variants: Sequence[str], not_run: Mapping[str, str] = {}) -> list[dict]:
    out = []
    for variant in variants:
        for row in rows:
            paper = (row.paper or {}).get(variant)
            stats = summarise(row_values(scores, row, variant), paper)
            if row.parts and stats["status"] == "not run":
                stats["note"] = "needs " + ", ".join(_missing_parts(scores, row, variant))
            why = _why_not_run(row, not_run) if stats["status"] == "not run" else None
            if why:
                stats["status"], stats["note"] = why
            out.append({"table": name, "label": row.label, "variant": variant, "paper": paper,
                        "paper_split": row.paper_split, **stats})
    return out


def _table5_rows(scores: pl.DataFrame) -> tuple[Row, ...]:
    """Table 5's columns for the tasks an ablation ran on (all eight when none did), + avg."""
    ablated = set(scores.filter(pl.col("variant") != "full")["task"].to_list())
    chosen = tuple(r for r in _TABLE5_COLUMNS if r.measures[0].task in ablated)
    columns = chosen or _TABLE5_COLUMNS
    avg = Row("avg", parts=_TABLE5_COLUMNS,
              paper={v: PAPER_TABLE5[v]["avg"] for v in VARIANT_ORDER}, paper_split=GLUE_SERVER)
    return (*columns, avg)


def _covered() -> set[tuple[str, str]]:
    """(task, variant) pairs some paper table shows as a row (not only inside an average)."""
    full = {(m.task, "full") for rows in (TABLE2, TABLE3, TABLE4) for row in rows
            for m in row.measures}
    ablation = {(m.task, v) for row in _TABLE5_COLUMNS for m in row.measures for v in VARIANT_ORDER}
    return full | ablation


def _other_rows(runs: Sequence[Mapping], scores: pl.DataFrame) -> list[dict]:
    """Runs no paper table shows (e.g. WNLI, an ablation of SNLI), on their headline metric."""
    covered, out, done = _covered(), [], set()
    for run in runs:
        key = (run["task"], run["variant"])
        if key in covered or key in done:
            continue
        done.add(key)
        head = run["headline"]
        row = Row(run["task"], (Measure(run["task"], head["metric"], (head["split"],)),))
        stats = summarise(row_values(scores, row, run["variant"]), None)
        out.append({"table": "other", "label": f"{run['task']} ({head['metric']})",
                    "variant": run["variant"], "paper": None, "paper_split": "not in paper",
                    **stats})
    return out


def paper_tables(runs: Sequence[Mapping], scores: pl.DataFrame,
                 not_run: Mapping[str, str] = {}) -> dict[str, pl.DataFrame]:
    """table name -> TABLE_SCHEMA frame: Tables 2-5 and the runs none of them shows.

    `not_run`: task -> why it was left out on purpose, as "<status> (<how to run it>)"
    (`gptpipe.workflow.not_run_flags`): its rows say so instead of a bare "not run".
    """
    rows = {
        "table2": _table_rows("table2", TABLE2, scores, ("full",), not_run),
        "table3": _table_rows("table3", TABLE3, scores, ("full",), not_run),
        "table4": _table_rows("table4", TABLE4, scores, ("full",), not_run),
        "table5": _table_rows("table5", _table5_rows(scores), scores, VARIANT_ORDER, not_run),
        "other": _other_rows(runs, scores),
    }
    return {name: pl.DataFrame(r, schema=TABLE_SCHEMA, orient="row") for name, r in rows.items()}


# --------------------------------------------------------------------------- display


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def ours(row: Mapping) -> str:
    """'54.5 ± 1.2' (several seeds), '54.5' (one), or the status ('not run')."""
    if row["status"] != "ok":
        return row["status"]
    if row["std"] is None:
        return _pct(row["mean"])
    return f"{_pct(row['mean'])} ± {_pct(row['std'])}"


def display(frame: pl.DataFrame, with_variant: bool = False) -> pl.DataFrame:
    """The strings a reader sees, one column per header."""
    rows = []
    for r in frame.iter_rows(named=True):
        shown = {"Task": r["label"]}
        if with_variant:
            shown["Variant"] = r["variant"]
        shown |= {
            "Paper": "not in paper" if r["paper"] is None else _pct(r["paper"]),
            "Paper on": r["paper_split"],
            "Ours (mean ± std)": ours(r), "n": str(r["n"]),
            "Δ (pp)": _pct(r["diff"], signed=True), "Ours on": r["split"] or "—",
            "Note": r["note"] or "",
        }
        rows.append(shown)
    columns = ["Task", *(["Variant"] if with_variant else []), "Paper", "Paper on",
               "Ours (mean ± std)", "n", "Δ (pp)", "Ours on", "Note"]
    return pl.DataFrame(rows, schema={c: pl.Utf8 for c in columns}, orient="row")


# --------------------------------------------------------------------------- compute

PF_DAY = 1e15 * 86_400  # FLOPs in one petaflop/s-day
GPT1_PF_DAYS = 0.96  # OpenAI's estimate of GPT-1's pre-training compute (PAPER.md)
# Per stage and device: `seconds` of one process (pretrain: time inside updates over all resumed
# invocations; finetune: the jobs' total seconds), `device_hours` = processes x seconds / 3600,
# `seen` tokens (pretrain) or training examples (finetune), `mfu` in [0, 1] or null.
COMPUTE_SCHEMA = {
    "stage": pl.Utf8, "device": pl.Utf8, "jobs": pl.Int64, "processes": pl.Int64,
    "seconds": pl.Float64, "device_hours": pl.Float64, "hours_kind": pl.Utf8,
    "seen": pl.Int64, "seen_unit": pl.Utf8, "mfu": pl.Float64,
}


def hours_kind(device: str) -> str:
    """What an hour of `device` is called: GPU-hours on CUDA, CPU process-hours otherwise."""
    return "GPU-hours" if device == "cuda" else "CPU process-hours"


def compute_frame(pretrain: Mapping, runs: Sequence[Mapping]) -> pl.DataFrame:
    """COMPUTE_SCHEMA rows: pre-training, then fine-tuning per device (one process per job)."""
    device = str(pretrain["device"])
    processes = int(pretrain["processes"])
    seconds = float(pretrain["train_seconds"])
    rows = [{"stage": "pretrain", "device": device, "jobs": 1, "processes": processes,
             "seconds": seconds, "device_hours": processes * seconds / 3600,
             "hours_kind": hours_kind(device), "seen": int(pretrain["tokens"]),
             "seen_unit": "tokens", "mfu": pretrain.get("mfu")}]
    by_device: dict[str, list[Mapping]] = {}
    for run in runs:
        by_device.setdefault(str(run.get("device", "unknown")), []).append(run)
    for device, group in by_device.items():
        total = sum(float((r.get("seconds") or {}).get("total") or 0.0) for r in group)
        seen = sum(int((r.get("train") or {}).get("examples_seen") or 0) for r in group)
        rows.append({"stage": "finetune", "device": device, "jobs": len(group), "processes": 1,
                     "seconds": total, "device_hours": total / 3600,
                     "hours_kind": hours_kind(device), "seen": seen, "seen_unit": "examples",
                     "mfu": None})
    return pl.DataFrame(rows, schema=COMPUTE_SCHEMA, orient="row")


def _mfu_text(row: Mapping) -> str:
    if row["mfu"] is not None:
        return f"{100 * row['mfu']:.1f}%"
    if row["stage"] != "pretrain":
        return "not measured"
    return "n/a (CPU)" if row["device"] == "cpu" else "n/a (device peak unknown)"


def display_compute(frame: pl.DataFrame) -> pl.DataFrame:
    """The compute table as strings, with one total per kind of device-hour."""
    rows = [{"Stage": r["stage"], "Device": r["device"], "Jobs": str(r["jobs"]),
             "Processes per job": str(r["processes"]), "Seconds": f"{r['seconds']:,.1f}",
             "Device-hours": f"{r['device_hours']:.4f} {r['hours_kind']}",
             "Seen": f"{r['seen']:,} {r['seen_unit']}", "Mean MFU": _mfu_text(r)}
            for r in frame.iter_rows(named=True)]
    totals = frame.group_by("hours_kind", maintain_order=True).agg(pl.col("device_hours").sum())
    rows += [{"Stage": "total", "Device": "", "Jobs": "", "Processes per job": "", "Seconds": "",
              "Device-hours": f"{t['device_hours']:.4f} {t['hours_kind']}", "Seen": "",
              "Mean MFU": ""} for t in totals.iter_rows(named=True)]
    return pl.DataFrame(rows, orient="row")


def pretrain_facts(summary: Mapping) -> pl.DataFrame:
    """Pre-training's final figures as (Figure, Value) strings; losses in nats per token."""
    val, unigram = summary["val_loss"], summary.get("unigram_val_loss")
    facts = [("Final validation loss",
              f"{val:.3f} nats/token (perplexity {math.exp(min(val, 50.0)):,.1f})")]
    if unigram is not None:
        facts.append(("Unigram validation loss", f"{unigram:.3f} nats/token "
                      f"(the model is {unigram - val:.3f} below it)"))
    if summary.get("val_bpb") is not None:
        facts.append(("Validation bits per byte", f"{summary['val_bpb']:.3f}"))
    facts += [("Tokens seen", f"{summary['tokens']:,} in {summary['updates']:,} updates"),
              ("Parameters", f"{summary['parameters']:,}"),
              ("Device", f"{summary['device']} x {summary['processes']} process(es)"),
              ("Time inside updates", f"{summary['train_seconds']:,.1f} s")]
    if summary.get("tokens_per_s"):
        facts.append(("Throughput", f"{summary['tokens_per_s']:,.0f} tokens/s"))
    if summary.get("flops_per_token"):
        pf_days = summary["flops_per_token"] * summary["tokens"] / PF_DAY
        facts.append(("Training compute", f"{pf_days:.3g} petaflop/s-days "
                      f"(GPT-1: about {GPT1_PF_DAYS})"))
    if summary.get("resumed_from") is not None:
        facts.append(("Resumed", f"from update {summary['resumed_from']:,}"))
    return pl.DataFrame(facts, schema={"Figure": pl.Utf8, "Value": pl.Utf8}, orient="row")

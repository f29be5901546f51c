"""The fine-tuning summary DVC shows: one score per task and variant, for `dvc metrics` and
`dvc exp show` (scores.json, nested so that its columns read `SST-2.full.mean`) and for a bar
chart in `dvc plots` (scores.csv, one row per task and variant).

Each score is the task's headline metric on its headline split (what the job's metrics.json
calls `headline`), summarised over seeds by the report's own functions on its scores frame
(`tables.row_values`, `tables.summarise`): the same figures as the report's tables.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import polars as pl

from ..atomic import write_json, write_text
from . import tables

CSV_COLUMNS = ("job", "task", "variant", "metric", "split", "mean", "std", "seeds")


def summary_rows(runs: Sequence[Mapping], scores: pl.DataFrame) -> list[dict[str, Any]]:
    """One row per (task, variant), in job order: mean and sample std (None below 2 seeds)
    over seeds, in percent, and how many seeds gave a defined score."""
    rows, done = [], set()
    for run in runs:
        task, variant = run["task"], run["variant"]
        if (task, variant) in done:
            continue
        done.add((task, variant))
        head = run["headline"]
        row = tables.Row(task, (tables.Measure(task, head["metric"], (head["split"],)),))
        stats = tables.summarise(tables.row_values(scores, row, variant), None)
        rows.append({"job": f"{task} {variant}", "task": task, "variant": variant,
                     "metric": head["metric"], "split": head["split"], "mean": stats["mean"],
                     "std": stats["std"], "seeds": stats["n"]})
    return rows


def nested(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{task: {variant: {mean, std, seeds, metric, split}}}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["task"], {})[r["variant"]] = {
            k: r[k] for k in ("mean", "std", "seeds", "metric", "split")}
    return out


def write(folder: Path, runs: Sequence[Mapping], scores: pl.DataFrame) -> None:
    """scores.json and scores.csv in `folder` (the report's output, before it is published)."""
    rows = summary_rows(runs, scores)
    write_json(folder / "scores.json", nested(rows))
    text = io.StringIO()
    out = csv.writer(text, lineterminator="\n")
    out.writerow(CSV_COLUMNS)
    out.writerows([("" if r[c] is None else r[c]) for c in CSV_COLUMNS] for r in rows)
    write_text(folder / "scores.csv", text.getvalue())

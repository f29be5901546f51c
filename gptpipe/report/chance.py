"""Chance beside every score: a `chance` column in each results table and a mark in the figures.

Each fine-tuning job records, per scored split, its task's metrics for a label-blind baseline
(`chance_percent` in metrics.json, `tasks.metrics.chance`): the majority class for accuracy and
F1 (the F1 of always predicting it), the most frequent right answer for multiple choice, 0 for
MCC and correlations. A table row's chance is taken exactly as its score is (`tables.row_values`:
same measures, same split, the same mean over measures and parts), so the two sit side by side.
A run written before this field existed has no chance: its rows show "—".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import polars as pl

from . import tables
from .collect import SCORES_SCHEMA

COLUMN = "chance"
HEADER = "Chance"


def chance_frame(runs: Sequence[Mapping]) -> pl.DataFrame:
    """SCORES_SCHEMA rows of the runs' chance baselines (percent), like `collect.scores_frame`."""
    rows = [
        {"task": run["task"], "variant": run["variant"], "seed": run["seed"], "split": split,
         "metric": metric, "percent": value}
        for run in runs
        for split, by_metric in (run.get("chance_percent") or {}).items()
        for metric, value in by_metric.items()
    ]
    return pl.DataFrame(rows, schema=SCORES_SCHEMA, orient="row")


def _paper_rows() -> dict[tuple[str, str], tables.Row]:
    """(table, label) -> the Row that table shows under that label."""
    out = {(name, row.label): row
           for name, rows in (("table2", tables.TABLE2), ("table3", tables.TABLE3),
                              ("table4", tables.TABLE4)) for row in rows}
    table5 = tables._TABLE5_COLUMNS
    out |= {("table5", row.label): row for row in table5}
    out[("table5", "avg")] = tables.Row("avg", parts=table5)
    return out


def _other_rows(runs: Sequence[Mapping]) -> dict[tuple[str, str], tables.Row]:
    """The "other" table's rows as `tables._other_rows` labels them: task (headline metric)."""
    out = {}
    for run in runs:
        head = run["headline"]
        label = f"{run['task']} ({head['metric']})"
        out.setdefault(("other", label), tables.Row(
            run["task"], (tables.Measure(run["task"], head["metric"], (head["split"],)),)))
    return out


def row_chance(chances: pl.DataFrame, row: tables.Row | None, variant: str) -> float | None:
    """The row's chance in percent (mean over seeds, which share their scored split); None when
    no run of it recorded one."""
    if row is None:
        return None
    values = tables.row_values(chances, row, variant).filter(pl.col("value").is_not_null())
    return None if values.is_empty() else float(values["value"].mean())


def with_chance(results: Mapping[str, pl.DataFrame], runs: Sequence[Mapping]
                ) -> dict[str, pl.DataFrame]:
    """Each table with a `chance` column (percent; null where no run recorded one)."""
    chances = chance_frame(runs)
    rows = {**_paper_rows(), **_other_rows(runs)}
    out = {}
    for name, frame in results.items():
        if not {"label", "variant"} <= set(frame.columns):  # not a TABLE_SCHEMA table
            out[name] = frame
            continue
        values = [row_chance(chances, rows.get((name, r["label"])), r["variant"])
                  for r in frame.iter_rows(named=True)]
        out[name] = frame.with_columns(pl.Series(COLUMN, values, dtype=pl.Float64))
    return out


def _text(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.1f}"


def display(frame: pl.DataFrame, with_variant: bool = False) -> pl.DataFrame:
    """`tables.display` with a "Chance" column after "Δ (pp)"."""
    shown = tables.display(frame, with_variant=with_variant)
    values = frame[COLUMN].to_list() if COLUMN in frame.columns else [None] * frame.height
    column = pl.Series(HEADER, [_text(v) for v in values], dtype=pl.Utf8)
    at = shown.columns.index("Δ (pp)") + 1
    return shown.insert_column(at, column)

"""The report's "Zero-shot" section (paper §5, Figure 2 right): each task's zero-shot score
against pre-training updates, with its chance line, from the `zeroshot` stage's metrics.json.

The four tasks of the paper are always named: those the stage scored get a curve and table rows,
the others are listed as not run, with why.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
from matplotlib.figure import Figure

from ..io import read_json
from . import render
from .figures import _empty, to_png

NAME = "zeroshot"
TITLE = "Zero-shot"
CAPTION = ("Each task's zero-shot score (percent: accuracy, or MCC x 100 for CoLA) against "
           "pre-training updates, from the weight snapshots (update 0: the untrained model); "
           "dashed: chance on the same examples.")
_TEXT = ("No fine-tuning: the pre-trained language model's log-probabilities alone, with the "
         "paper's heuristics. SST-2: ' positive' vs ' negative' after appending 'very'; CoLA: "
         "mean token log-probability over a threshold chosen on train; RACE: the answer with the "
         "highest mean log-probability given article and question; DPRD: the pronoun replaced "
         "by each candidate, the rest of the sentence's mean log-probability. The paper "
         "(Figure 2, right) finds every heuristic improving steadily over pre-training.")
PAPER_TASKS = ("SST-2", "CoLA", "RACE", "DPRD")


def load(folder: Path) -> dict:
    return read_json(Path(folder) / "metrics.json")


def figure(doc: dict) -> bytes:
    """One panel per scored task: score against updates, chance dashed."""
    tasks = doc.get("tasks") or {}
    fig = Figure(figsize=(3.6 * max(len(tasks), 1), 3.4))
    if not tasks:
        return _empty(fig, "no zero-shot task was scored")
    for i, (task, res) in enumerate(tasks.items(), 1):
        ax = fig.add_subplot(1, len(tasks), i)
        points = res["points"]
        ax.plot([p["update"] for p in points], [100 * p["score"] for p in points], "o-",
                color="tab:blue", label="zero-shot")
        ax.axhline(100 * res["chance"], linestyle="--", color="gray",
                   label=f"chance ({100 * res['chance']:.1f})")
        ax.set_title(f"{task} ({res['metric']}, {res['split']}, n={res['examples']})",
                     fontsize=10)
        ax.set_xlabel("pre-training updates")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.axes[0].set_ylabel("score (%)")
    return to_png(fig)


def table(doc: dict) -> pl.DataFrame:
    rows = [{"Task": task, "Metric": res["metric"], "Split (examples)":
             f"{res['split']} ({res['examples']})", "Update": p["update"],
             "Tokens": f"{p['tokens']:,}", "Score": _pct(p["score"]),
             "Chance": _pct(res["chance"]),
             "Threshold": "—" if "threshold" not in p else f"{p['threshold']:.3f}"}
            for task, res in (doc.get("tasks") or {}).items() for p in res["points"]]
    schema = ["Task", "Metric", "Split (examples)", "Update", "Tokens", "Score", "Chance",
              "Threshold"]
    return pl.DataFrame(rows, schema={k: pl.Utf8 if k != "Update" else pl.Int64
                                      for k in schema}, orient="row")


def _pct(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{100 * x:.1f}"


def not_run(doc: dict) -> dict[str, str]:
    """Each of the paper's four tasks the stage did not score, and why."""
    scored, why = doc.get("tasks") or {}, doc.get("not_run") or {}
    return {t: why.get(t, "not scored") for t in PAPER_TASKS if t not in scored}


def section(folder: Path) -> tuple[render.Section, render.Figure, dict]:
    """(the section, its figure, what report.json records) from a `zeroshot` output folder."""
    doc = load(folder)
    fig = render.Figure(NAME, TITLE, CAPTION, figure(doc))
    missing = not_run(doc)
    items = tuple(f"{task}: not run: {why}" for task, why in missing.items())
    sec = render.Section(TITLE, text=_TEXT, figures=(fig,), table=table(doc), items=items)
    return sec, fig, {**doc, "not_run": missing}

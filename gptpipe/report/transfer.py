"""The report's "Layers transferred" section (Figure 2, left): score against k, per task.

Reads the `transfer<k>` fine-tuning runs (`gptpipe.finetune.transfer`): each task's headline
metric on the split the run reports it on (test where labelled, else dev), mean and sample
standard deviation over seeds, for every k that ran. Nothing is rescored. These runs are kept
out of the paper tables (`without_transfer`): Figure 2 is their only place in the paper.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import polars as pl
from matplotlib.figure import Figure as MplFigure

from . import render
from .figures import to_png

TITLE = "Layers transferred"
FIGURE = "layers_transferred"
_VARIANT = re.compile(r"transfer(-?\d+)")  # the finetune stage's `transfer<k>` names
PAPER_FINDING = (
    "Paper (Figure 2, left; MNLI and RACE, dev): transferring the embeddings already helps, "
    "and each transferred transformer layer adds more, up to 9 points on MultiNLI for the "
    "full transfer of all 12 layers.")
CAPTION = ("Score against k, the blocks taken from pre-training with the embeddings (the rest "
           "freshly initialised; -1: nothing, 0: the embeddings only): the headline metric of "
           "each task, mean over seeds, whiskers the sample standard deviation; dotted: the "
           "task's chance baseline on the same split.")


@dataclass(frozen=True)
class Layers:
    """The section, its figure (written beside the report) and report.json's rows."""

    section: render.Section
    figures: tuple[render.Figure, ...]
    rows: list[dict]


def layers_of(variant: str) -> int | None:
    match = _VARIANT.fullmatch(variant)
    return int(match.group(1)) if match else None


def without_transfer(runs: Sequence[Mapping]) -> list[Mapping]:
    """The runs the paper tables read: every run but the `transfer<k>` ones."""
    return [r for r in runs if layers_of(r["variant"]) is None]


def points(runs: Sequence[Mapping]) -> list[dict]:
    """One row per (task, k): metric, split, seeds, mean and sample std in percent (None where
    the metric was undefined for every seed) and the split's chance baseline (None for runs
    that did not record it), sorted by task (first seen) then k."""
    groups: dict[tuple[str, int], list[Mapping]] = {}
    for run in runs:
        k = layers_of(run["variant"])
        if k is not None:
            groups.setdefault((run["task"], k), []).append(run)
    order = list(dict.fromkeys(task for task, _ in groups))
    rows = []
    for (task, k), group in sorted(groups.items(), key=lambda g: (order.index(g[0][0]), g[0][1])):
        head = group[0]["headline"]
        values = [r["scores_percent"].get(head["split"], {}).get(head["metric"]) for r in group]
        defined = [v for v in values if v is not None]
        chances = [(r.get("chance_percent") or {}).get(head["split"], {}).get(head["metric"])
                   for r in group]
        rows.append({
            "task": task, "k": k, "metric": head["metric"], "split": head["split"],
            "seeds": sorted(r["seed"] for r in group), "n": len(defined),
            "mean": statistics.fmean(defined) if defined else None,
            "std": statistics.stdev(defined) if len(defined) > 1 else None,
            "chance": next((c for c in chances if c is not None), None)})
    return rows


def figure(rows: Sequence[Mapping]) -> bytes:
    """One line per task: mean score against k, sample std as whiskers, its chance baseline
    dotted in the same colour; the paper's finding as a note under the axes."""
    fig = MplFigure(figsize=(7.0, 4.0))
    ax = fig.add_subplot()
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task and r["mean"] is not None]
        if not mine:
            continue
        line = ax.errorbar([r["k"] for r in mine], [r["mean"] for r in mine],
                           yerr=[r["std"] or 0.0 for r in mine], marker="o", capsize=3,
                           label=f"{task} ({mine[0]['metric']}, {mine[0]['split']})")
        chance = next((r["chance"] for r in mine if r["chance"] is not None), None)
        if chance is not None:
            ax.axhline(chance, linestyle=":", color=line.lines[0].get_color(),
                       label=f"{task} chance ({chance:.1f})")
    ks = sorted({r["k"] for r in rows})
    ax.set_xticks(ks)
    ax.set_xlabel("k: blocks transferred with the embeddings (-1: nothing)")
    ax.set_ylabel("score (%)")
    ax.set_title("Layers transferred (ours)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    fig.text(0.0, -0.06, PAPER_FINDING, fontsize=8, wrap=True, ha="left", va="top")
    return to_png(fig)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _what(k: int) -> str:
    return {-1: "nothing", 0: "embeddings"}.get(k, f"embeddings + {k} blocks")


def table(rows: Sequence[Mapping]) -> pl.DataFrame:
    """The figure's points as text, with the chance baseline and each k's difference from
    k = 0 of the same task."""
    base = {r["task"]: r["mean"] for r in rows if r["k"] == 0}
    out = []
    for r in rows:
        ref = base.get(r["task"])
        delta = None if r["mean"] is None or ref is None else r["mean"] - ref
        ours = _pct(r["mean"]) + ("" if r["std"] is None else f" ± {r['std']:.1f}")
        out.append({"Task": r["task"], "Metric (split)": f"{r['metric']} ({r['split']})",
                    "k": str(r["k"]), "Transferred": _what(r["k"]), "Ours": ours,
                    "n": str(r["n"]), "Chance": _pct(r["chance"]),
                    "Δ vs k=0": "—" if delta is None else f"{delta:+.1f}"})
    return pl.DataFrame(out, orient="row")


def not_run(ft_cfg: Any, rows: Sequence[Mapping], left_out: Mapping[str, str]) -> list[str]:
    """Why each configured transfer task has no point, or why there is none at all."""
    if not ft_cfg.transfer_tasks or not ft_cfg.transfer_layers:
        return [("not run: finetune.transfer_tasks or finetune.transfer_layers is empty in this "
                 "configuration (list the tasks and the values of k to run Figure 2's analysis)")]
    ran = {r["task"] for r in rows}
    return [f"{task}: {left_out.get(task, 'not run: no transfer<k> job folder was given')}"
            for task in ft_cfg.transfer_tasks if task not in ran]


def layers_section(runs: Sequence[Mapping], ft_cfg: Any,
                   left_out: Mapping[str, str] | None = None) -> Layers:
    """The "Layers transferred" section over the `transfer<k>` runs among `runs`.

    `ft_cfg`: the resolved `finetune` section (which tasks and k were asked for); `left_out`:
    task -> why the workflow left it out (`gptpipe report --not-run`)."""
    rows = points(runs)
    missing = tuple(not_run(ft_cfg, rows, left_out or {}))
    if not rows:
        return Layers(render.Section(TITLE, text=PAPER_FINDING, items=missing), (), [])
    fig = render.Figure(FIGURE, TITLE, CAPTION, figure(rows))
    section = render.Section(TITLE, text=PAPER_FINDING, figures=(fig,), table=table(rows),
                             items=missing)
    return Layers(section, (fig,), rows)

"""The report's figures, drawn with matplotlib's object API and returned as PNG bytes.

`matplotlib.figure.Figure` renders PNGs with the Agg canvas without touching pyplot, so no global
backend or figure state is created (safe under Snakemake, in tests, on headless nodes). PNGs
carry no "Software" stamp, so the same inputs give the same bytes.
"""

from __future__ import annotations

import io

import polars as pl
from matplotlib.figure import Figure

_DPI = 100
_SIZE = (7.0, 4.0)  # inches


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (no metadata stamp, tight bounding box)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _empty(fig: Figure, message: str) -> bytes:
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, transform=ax.transAxes)
    return to_png(fig)


def loss_curve(curve: pl.DataFrame, unigram: float | None = None) -> bytes:
    """Training loss (logged mean since the last record) and validation loss in nats per token
    against tokens seen; the unigram baseline as a dashed line when known."""
    fig = Figure(figsize=_SIZE)
    if curve.is_empty():
        return _empty(fig, "no pre-training records")
    ax = fig.add_subplot()
    ax.plot(curve["tokens"], curve["loss"], label="train", color="tab:blue", linewidth=1.2)
    val = curve.filter(pl.col("val_loss").is_not_null())
    if not val.is_empty():
        ax.plot(val["tokens"], val["val_loss"], "o-", label="validation", color="tab:orange")
    if unigram is not None:
        ax.axhline(unigram, linestyle="--", color="gray", label=f"unigram ({unigram:.2f})")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("Pre-training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return to_png(fig)


def lr_curve(curve: pl.DataFrame) -> bytes:
    """The learning rate at each logged update against tokens seen (warm-up, then cosine)."""
    fig = Figure(figsize=_SIZE)
    if curve.is_empty():
        return _empty(fig, "no pre-training records")
    ax = fig.add_subplot()
    ax.plot(curve["tokens"], curve["lr"], color="tab:green")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("learning rate")
    ax.set_title("Pre-training learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax.grid(alpha=0.3)
    return to_png(fig)


def _chance_marks(ax, rows: pl.DataFrame, at: list, horizontal: bool) -> None:
    """Red marks at each row's chance baseline (`report.chance`), where recorded."""
    if "chance" not in rows.columns:
        return
    pairs = [(p, c) for p, c in zip(at, rows["chance"].to_list()) if c is not None]
    if not pairs:
        return
    where, level = zip(*pairs)
    marker = "|" if horizontal else "_"
    xs, ys = (level, where) if horizontal else (where, level)
    label = "chance" if not any(line.get_label() == "chance" for line in ax.lines) else None
    ax.plot(xs, ys, marker, color="tab:red", linestyle="none", markersize=12,
            markeredgewidth=2, label=label)


def task_scores(table: pl.DataFrame) -> bytes:
    """Ours (mean, bars; sample std, whiskers) beside the paper's figure (black ticks), in
    percent, for every table row that ran; `table` is `tables.TABLE_SCHEMA` rows."""
    ran = table.filter(pl.col("status") == "ok")
    fig = Figure(figsize=(_SIZE[0], max(2.5, 0.45 * ran.height + 1.2)))
    if ran.is_empty():
        return _empty(fig, "no fine-tuning runs")
    ax = fig.add_subplot()
    y = list(range(ran.height))
    ax.barh(y, ran["mean"].to_list(), xerr=ran["std"].fill_null(float("nan")).to_list(),
            color="tab:blue", alpha=0.8, label="ours (mean ± std)", capsize=3)
    paper = ran.select("paper").with_row_index("y").filter(pl.col("paper").is_not_null())
    ax.plot(paper["paper"], paper["y"], "k|", markersize=14, markeredgewidth=2, label="paper")
    _chance_marks(ax, ran, y, horizontal=True)
    ax.set_yticks(y, ran["label"].to_list())
    ax.invert_yaxis()
    ax.set_xlabel("score (%)")
    ax.set_title("Fine-tuning: ours beside the paper")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a bar
    return to_png(fig)


def ablations(table5: pl.DataFrame) -> bytes:
    """Table 5 as grouped bars: one group per task, one bar per variant (mean ± std, percent);
    the paper's figure as a black tick over each bar."""
    ran = table5.filter((pl.col("status") == "ok") & (pl.col("label") != "avg"))
    fig = Figure(figsize=_SIZE)
    if ran.is_empty():
        return _empty(fig, "no ablation runs")
    ax = fig.add_subplot()
    labels = list(dict.fromkeys(ran["label"].to_list()))
    variants = list(dict.fromkeys(ran["variant"].to_list()))
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        rows = ran.filter(pl.col("variant") == variant)
        x = [labels.index(label) + (i - (len(variants) - 1) / 2) * width
             for label in rows["label"].to_list()]
        ax.bar(x, rows["mean"].to_list(), width, yerr=rows["std"].fill_null(float("nan")).to_list(),
               capsize=3, label=variant)
        ax.plot(x, rows["paper"].to_list(), "k_", markersize=12, markeredgewidth=2)
        _chance_marks(ax, rows, x, horizontal=False)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("score (%)")
    ax.set_title("Ablations (black ticks: the paper)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return to_png(fig)

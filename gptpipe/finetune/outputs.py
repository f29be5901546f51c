"""What a fine-tuning run reports: official metrics per scored split, per-example predictions,
and GLUE submission files for the hidden-label splits."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..tasks import metrics
from ..tasks.spec import Example, TaskSpec
from ..tasks.submission import write_submission
from .model import predictions

PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"


@dataclass(frozen=True)
class SplitResult:
    """One split's examples with the model's scores and predictions, in the same order."""

    split: str
    examples: Sequence[Example]
    scores: torch.Tensor  # (n, classes), (n, choices) or (n,) for regression
    predicted: list[int | float]


def result(spec: TaskSpec, split: str, examples: Sequence[Example], scores: torch.Tensor
           ) -> SplitResult:
    return SplitResult(split, examples, scores, predictions(spec.kind, scores).tolist())


def finite(value: float) -> float | None:
    """JSON has no NaN: an undefined score (e.g. Pearson of constant predictions) is null."""
    return value if math.isfinite(value) else None


def score(spec: TaskSpec, res: SplitResult) -> dict[str, float | None]:
    """The task's official metrics (fractions / correlations) on a labelled split."""
    gold = [ex.label for ex in res.examples]
    groups = [ex.group for ex in res.examples]
    scores = metrics.compute(spec.metrics, gold, res.predicted, groups)
    return {k: finite(v) for k, v in scores.items()}


def chance(spec: TaskSpec, examples: Sequence[Example]) -> dict[str, float]:
    """The task's metrics for a label-blind baseline on a labelled split (`metrics.chance`):
    the level a score must beat to show that fine-tuning learnt anything."""
    gold = [ex.label for ex in examples]
    return metrics.chance(spec.metrics, gold, [ex.group for ex in examples])


def percent(scores: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(100.0 * v, 4) for k, v in scores.items()}


def prediction_lines(results: Sequence[SplitResult]) -> str:
    """predictions.jsonl: one JSON object per example (split, id, label, prediction, scores)."""
    lines = []
    for res in results:
        for ex, pred, row in zip(res.examples, res.predicted, res.scores.tolist()):
            lines.append(json.dumps({
                "split": res.split, "id": ex.id, "label": ex.label, "prediction": pred,
                "scores": row if isinstance(row, list) else [row],
            }))
    return "\n".join(lines) + "\n"


def write_submissions(spec: TaskSpec, results: Sequence[SplitResult],
                      available: dict[str, int], out_dir: Path) -> list[dict]:
    """One GLUE file per hidden-label split; `complete` is False when a cap left rows out
    (the GLUE server accepts only complete files)."""
    written = []
    for res in results:
        path = write_submission(spec, res.split, res.examples, res.predicted, out_dir)
        written.append({"split": res.split, "file": path.name, "rows": len(res.examples),
                        "of": available[res.split],
                        "complete": len(res.examples) == available[res.split]})
    return written

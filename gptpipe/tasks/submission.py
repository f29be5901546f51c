"""GLUE submission files: `index<TAB>prediction`, one row per test example, written atomically.

The GLUE server takes a zip of `CoLA.tsv`, `SST-2.tsv`, `MRPC.tsv`, `STS-B.tsv`, `QQP.tsv`,
`MNLI-m.tsv`, `MNLI-mm.tsv`, `QNLI.tsv`, `RTE.tsv`, `WNLI.tsv` and `AX.tsv` (the diagnostic
set, predicted by the MNLI model). Labels are spelled as GLUE expects (`TaskSpec.glue_labels`:
0/1 for CoLA, SST-2, MRPC, QQP and WNLI; `entailment`/`not_entailment` for QNLI and RTE;
`entailment`/`neutral`/`contradiction` for MNLI and AX); STS-B predictions are scores (floats).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from ..atomic import atomic_path
from ..errors import GptpipeError
from .spec import Example, TaskSpec

HEADER = "index\tprediction"


def submission_rows(spec: TaskSpec, examples: Sequence[Example],
                    predictions: Sequence[int | float]) -> list[str]:
    """`index<TAB>prediction` lines (header first) for `examples`, in their order.

    `predictions[i]` is the class index (into `spec.label_names`) or, for STS-B, the score of
    `examples[i]`; the index written is the example's id (GLUE's `index`/`id` column).
    """
    if len(examples) != len(predictions):
        raise GptpipeError(f"{spec.name}: {len(predictions)} predictions for {len(examples)} "
                           "test examples")
    lines = [HEADER]
    seen: set[str] = set()
    for ex, pred in zip(examples, predictions):
        if ex.id in seen:
            raise GptpipeError(f"{spec.name}: test example id {ex.id!r} appears twice")
        seen.add(ex.id)
        lines.append(f"{ex.id}\t{_spell(spec, ex, pred)}")
    return lines


def _spell(spec: TaskSpec, ex: Example, pred: int | float) -> str:
    if spec.kind == "regression":
        value = float(pred)
        if not math.isfinite(value):
            raise GptpipeError(f"{spec.name}: prediction for test example {ex.id!r} is {value}")
        return f"{value:.6g}"
    if not spec.glue_labels:
        raise GptpipeError(f"task {spec.name} has no GLUE submission labels")
    is_index = float(pred).is_integer() and 0 <= int(pred) < len(spec.glue_labels)
    if not is_index:
        raise GptpipeError(f"{spec.name}: prediction {pred!r} for test example {ex.id!r} is not a "
                           f"class index in 0..{len(spec.glue_labels) - 1}")
    return spec.glue_labels[int(pred)]


def write_submission(spec: TaskSpec, split: str, examples: Sequence[Example],
                     predictions: Sequence[int | float], out_dir: str | Path) -> Path:
    """Write `out_dir/<spec.submission_files[split]>` atomically; returns its path."""
    if split not in spec.submission_files:
        raise GptpipeError(f"task {spec.name} has no GLUE submission file for split {split!r}")
    path = Path(out_dir) / spec.submission_files[split]
    text = "\n".join(submission_rows(spec, examples, predictions)) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path

"""Tasks with no training data of their own, predicted by another task's fine-tuned model.

GLUE's diagnostic set AX (`TaskSpec.predict_with == "MNLI"`) has only a hidden-label test file,
and a GLUE submission must hold its `AX.tsv`: the MNLI job predicts it with the model it has
just fine-tuned, when the file is present under the data folder. Its file is declared as a
fetch source (`glue-ax`), so under the workflow it is present whenever MNLI runs; run by hand
without it, the MNLI job says in its notes that AX was not predicted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import FinetuneConfig
from ..errors import GptpipeError
from ..tasks.loaders import load_split
from ..tasks.spec import Example, TaskSpec
from ..tasks.submission import write_submission
from .data import Recipe, cap_key, companion_specs, submitted_splits
from .outputs import SplitResult, result


@dataclass(frozen=True)
class Companion:
    """One hidden-label split of a task predicted with the running task's model."""

    spec: TaskSpec
    split: str
    examples: list[Example]
    available: int

    @property
    def key(self) -> str:
        """Its name among the run's splits (predictions.jsonl, truncation): e.g. `AX/test`."""
        return f"{self.spec.name}/{self.split}"


def _check_labels(spec: TaskSpec, companion: TaskSpec) -> None:
    # The model's class i must mean the companion's class i, or every row would be mislabelled.
    if companion.label_names != spec.label_names or companion.kind != spec.kind:
        raise GptpipeError(f"task {companion.name} is predicted with the {spec.name} model, but "
                           f"its kind/labels ({companion.kind}: {companion.label_names}) differ "
                           f"from {spec.name}'s ({spec.kind}: {spec.label_names})")


def load_companions(cfg: FinetuneConfig, spec: TaskSpec, rec: Recipe, data_root: Path
                    ) -> tuple[list[Companion], list[str]]:
    """The companions' hidden-label splits found under `data_root`, and notes on those left
    out (file absent, or capped: a GLUE file must hold every row)."""
    found: list[Companion] = []
    notes: list[str] = []
    if not rec.submit:
        return found, notes
    for companion in companion_specs(spec):
        _check_labels(spec, companion)
        for split in submitted_splits(companion):
            path = companion.path(data_root, split)
            if not path.is_file():
                notes.append(f"{companion.name} {split} not predicted: {path} is absent "
                             f"(fetch source {', '.join(companion.sources)})")
                continue
            examples, report = load_split(companion, data_root, split,
                                          limit=rec.max_eval_examples, rank=cap_key,
                                          max_malformed_fraction=cfg.max_malformed_fraction)
            if len(examples) < report.kept:
                notes.append(f"no submission for {companion.name} {split}: capped at "
                             f"{len(examples)} of {report.kept} examples "
                             "(finetune.max_eval_examples: 0 predicts them all)")
                continue
            found.append(Companion(companion, split, examples, report.kept))
    return found, notes


def predict_companions(found: list[Companion],
                       predict: Callable[[list[Example]], tuple[torch.Tensor, dict]],
                       out_dir: Path) -> tuple[list[SplitResult], list[dict]]:
    """Predict each companion with `predict` (examples -> scores, truncation figures) and write
    its GLUE file into `out_dir`; returns the results (split named `Companion.key`) and the
    submission records, with the task's name and truncation beside each file."""
    results, written = [], []
    for comp in found:
        scores, truncation = predict(comp.examples)
        res = result(comp.spec, comp.key, comp.examples, scores)
        path = write_submission(comp.spec, comp.split, comp.examples, res.predicted, out_dir)
        results.append(res)
        written.append({"task": comp.spec.name, "split": comp.split, "file": path.name,
                        "rows": len(comp.examples), "of": comp.available,
                        "complete": len(comp.examples) == comp.available,
                        "truncation": truncation})
    return results, written

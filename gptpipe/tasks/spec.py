"""What a fine-tuning task is: a typed, frozen `TaskSpec`, plus the loaders' `Example` record.

A spec says how a task's files are read (`loader`, `data_dir`, `files`), how its examples become
model inputs (`kind`, paper §3.3), how it is scored (`metrics`, `eval_splits`) and where its
test predictions go (`submission_files`, `glue_labels`). Splits are named as the files are:
`train`, `dev`, `test` (MNLI: `dev_matched`, `dev_mismatched`, `test_matched`,
`test_mismatched`; Story Cloze: `val`, `test`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, Mapping

# single: `<s> text <e>`; pair: `<s> premise $ hypothesis <e>`; similarity / regression: both
# orders of `<s> A $ B <e>`, final states summed (regression: STS-B's 0-5 score, its head as
# `finetune.stsb_target` says);
# multiple_choice: `<s> context question $ answer_k <e>` per choice, softmax over choices.
Kind = Literal["single", "pair", "similarity", "regression", "multiple_choice"]
KINDS: tuple[str, ...] = ("single", "pair", "similarity", "regression", "multiple_choice")
METRIC_NAMES: tuple[str, ...] = ("accuracy", "mcc", "f1", "pearson", "spearman")


@dataclass(frozen=True)
class Example:
    """One labelled (or, in a hidden-label test split, unlabelled) task example.

    `texts`: the segments in input order (single: 1; pair/similarity: 2; multiple choice: the
    context, then the question if the task has one). `choices`: the candidate answers of a
    multiple-choice task, else None. `label`: class index into `TaskSpec.label_names` (or the
    correct choice's index), a float score for regression, None where labels are hidden.
    `group`: a subset name used by grouped metrics (RACE: "middle" / "high"), else None.
    """

    id: str
    texts: tuple[str, ...]
    choices: tuple[str, ...] | None
    label: int | float | None
    group: str | None = None


def _frozen_map(value: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class TaskSpec:
    """One task of the paper (Tables 2-5). Percentages in `paper`; counts in `sizes` are
    examples (rows with a usable label) as published, for checks and reports."""

    name: str
    kind: Kind
    loader: str  # key into `loaders.LOADERS`: the file format
    data_dir: str  # folder under `data/` (and under the mirror) holding the task's files
    files: Mapping[str, str]  # split -> path under `data_dir` (a folder for RACE)
    label_names: tuple[str, ...]  # class i as the task's own files spell it; () = regression
    metrics: tuple[str, ...]  # the first is the headline figure; "name@group" = on one group
    train_split: str | None  # None: the task is only predicted (AX, with `predict_with`)
    eval_splits: tuple[str, ...]  # labelled splits whose scores are reported
    unlabelled_splits: tuple[str, ...] = ()  # labels hidden (GLUE test): predicted, not scored
    submission_files: Mapping[str, str] = field(default_factory=dict)  # split -> GLUE file
    glue_labels: tuple[str, ...] = ()  # class i as a GLUE submission file spells it
    n_choices: int | None = None  # multiple choice only
    sources: tuple[str, ...] = ()  # `fetch.sources` names the task's files come from
    aux_files: Mapping[str, str] = field(default_factory=dict)  # e.g. MRPC's dev_ids.tsv
    sizes: Mapping[str, int] = field(default_factory=dict)  # published examples per split
    paper: Mapping[str, float] = field(default_factory=dict)  # "split/metric" -> paper's %
    predict_with: str | None = None  # AX: predicted by the model fine-tuned on this task

    def __post_init__(self) -> None:
        for name in ("files", "submission_files", "aux_files", "sizes", "paper"):
            object.__setattr__(self, name, _frozen_map(getattr(self, name)))
        problem = self._problem()
        if problem:
            raise ValueError(f"task {self.name}: {problem}")

    def _problem(self) -> str | None:
        if self.kind not in KINDS:
            return f"kind {self.kind!r} is not one of {', '.join(KINDS)}"
        needed = [s for s in (self.train_split, *self.eval_splits, *self.unlabelled_splits) if s]
        missing = [s for s in needed if s not in self.files]
        if missing:
            return f"no file for split(s) {', '.join(missing)}"
        if set(self.submission_files) - set(self.unlabelled_splits):
            return "submission files are only for unlabelled (hidden-label) splits"
        if self.train_split is None and not self.predict_with:
            return "a task without a train split needs 'predict_with'"
        if (self.kind == "regression") != (not self.label_names):
            return "regression tasks, and only they, have no label names"
        if self.glue_labels and len(self.glue_labels) != len(self.label_names):
            return "glue_labels must spell every class of label_names"
        if (self.kind == "multiple_choice") != (self.n_choices is not None):
            return "multiple-choice tasks, and only they, set n_choices"
        if self.n_choices is not None and len(self.label_names) != self.n_choices:
            return "a multiple-choice task has one label name per choice"
        bad = [m for m in self.metrics if m.partition("@")[0] not in METRIC_NAMES]
        if bad or not self.metrics:
            return f"unknown metric(s) {', '.join(bad) or '(none)'}"
        return None

    def __hash__(self) -> int:
        # The mapping fields are read-only views, which do not hash; these fields identify a
        # task's data (equal specs hash equal, as eq compares all fields).
        return hash((self.name, self.kind, self.loader, self.data_dir, tuple(self.files.items())))

    @property
    def num_labels(self) -> int:
        """Outputs of the classifier head: classes; 1 for regression and multiple choice
        (one score per sequence, compared across choices)."""
        if self.kind in ("regression", "multiple_choice"):
            return 1
        return len(self.label_names)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.files)

    def path(self, data_root: str | Path, split: str) -> Path:
        """`data_root/<data_dir>/<files[split]>` (data_root: `data/` or the mirror)."""
        if split not in self.files:
            raise KeyError(f"task {self.name} has no split {split!r} (has {', '.join(self.files)})")
        return Path(data_root) / self.data_dir / self.files[split]

    def aux_path(self, data_root: str | Path, key: str) -> Path:
        return Path(data_root) / self.data_dir / self.aux_files[key]

    def with_files(self, **overrides: str) -> TaskSpec:
        """The same task reading other files for some splits (e.g. a subset in the mirror).
        A split not yet known is added (e.g. a `dev` carved out of another file)."""
        return dataclasses.replace(self, files={**self.files, **overrides})

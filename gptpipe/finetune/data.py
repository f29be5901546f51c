"""A task's examples for one fine-tuning run: which splits train, are scored and are predicted.

The registry (`gptpipe.tasks`) says which split trains (`train_split`), which are reported
(`eval_splits`) and which get GLUE submission files (`submission_files`). The `finetune` config
may point splits at other files (`files`), carve a missing split out of another (`holdout`)
and cap the examples used (`max_*_examples`). Nothing here picks a knob on a reported split:
the recipe runs for a fixed number of epochs, with no early stopping or model selection.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .. import tasks
from ..config import FinetuneConfig, Holdout, TaskOverride
from ..errors import GptpipeError
from ..tasks.loaders import LoadReport, held_ids, load_split, split_ids
from ..tasks.spec import Example, TaskSpec
from .transfer import layers_of

CAP_SALT = "gptpipe-cap"  # hash salt of the capped subsets: the same for every seed and variant


@dataclass(frozen=True)
class Recipe:
    """The fine-tuning knobs of one (task, variant): the section's, then the task's overrides.

    The one resolved copy of these knobs: the caps, the training loop (`loop.train`) and
    metrics.json's `recipe` read them here, never from the `finetune` section.
    """

    lr: float
    batch: int  # examples per update
    micro_batch: int  # examples per forward pass; 0 = from max_tokens_per_pass (`passes`)
    max_tokens_per_pass: int  # padded tokens per forward pass when micro_batch is 0
    epochs: int
    warmup_fraction: float
    lm_weight: float  # λ; 0 for variant `no_aux`
    clf_dropout: float
    grad_clip: float
    weight_decay: float
    max_len: int  # tokens per sequence
    max_train_examples: int  # 0 = all
    max_eval_examples: int  # 0 = all
    submit: bool  # write GLUE submission files for the hidden-label splits
    pretrained: bool  # False for variant `no_pretrain`: same network, random initialisation
    stsb_target: str = "classes"  # STS-B: 6 classes (Tai et al.) or one regressed output
    fresh_special_rows: bool = True  # redraw start, delimiter and extract rows (if pretrained)
    transfer: int | None = None  # variant `transfer<k>`: k blocks pre-trained (None: all)


def recipe(cfg: FinetuneConfig, task: str, variant: str) -> Recipe:
    over = cfg.overrides.get(task, TaskOverride())
    knobs = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(Recipe)
             if hasattr(cfg, f.name)}
    knobs.update({k: v for k, v in dataclasses.asdict(over).items() if v is not None})
    knobs.setdefault("submit", True)
    if variant == "no_aux":
        knobs["lm_weight"] = 0.0
    return Recipe(**knobs, pretrained=variant != "no_pretrain", transfer=layers_of(variant))


@dataclass
class TaskData:
    """Examples per split after files, holdout and caps, with what was done to get them."""

    spec: TaskSpec  # with the config's file overrides applied
    train: list[Example]
    scored: dict[str, list[Example]]  # labelled splits whose metrics are reported
    predicted: dict[str, list[Example]]  # hidden-label splits written as submission files
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> available, used
    reports: list[dict] = field(default_factory=list)  # the loaders' LoadReports
    notes: list[str] = field(default_factory=list)  # departures from the official splits


def cap_key(ex_id: str, salt: str = CAP_SALT) -> bytes:
    """The rank of an example under `cap`: sha256(salt, id)."""
    return hashlib.sha256(f"{salt}\0{ex_id}".encode("utf-8")).digest()


def cap(examples: Sequence[Example], n: int, *, salt: str = CAP_SALT) -> list[Example]:
    """At most `n` examples (0 = all): those with the smallest sha256(salt, id), in file order.

    A hash rather than the file's head, because files are often sorted (CoLA by source, RTE
    by origin), and rather than a seeded draw, so every seed and variant sees the same subset.
    `load_task` applies the same rule while it reads (`load_split(limit=, rank=cap_key)`), so a
    capped split never sits in memory whole.
    """
    if n <= 0 or len(examples) <= n:
        return list(examples)
    keep = {ex.id for ex in sorted(examples, key=lambda ex: cap_key(ex.id, salt))[:n]}
    return [ex for ex in examples if ex.id in keep]


def _task_spec(cfg: FinetuneConfig, task: str) -> TaskSpec:
    """The registry's task, reading the config's `files` where it names other files."""
    spec = tasks.get(task)
    return spec.with_files(**cfg.files.get(spec.name, {}))


@dataclass(frozen=True)
class Plan:
    """Which splits a run trains on, scores and predicts, and which files it reads for them."""

    train: str
    scored: tuple[str, ...]  # labelled splits whose metrics are reported
    predicted: tuple[str, ...]  # hidden-label splits written as submission files
    read: tuple[str, ...]  # splits read from files (a holdout's target is carved, not read)

    @property
    def used(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.train, *self.scored, *self.predicted)))


def plan(spec: TaskSpec, rec: Recipe, hold: Holdout | None) -> Plan:
    scored = list(spec.eval_splits)
    if hold and hold.to_split not in (spec.train_split, *scored):
        scored.append(hold.to_split)  # e.g. Story Cloze's held-out val stories
    predicted = [s for s in spec.unlabelled_splits if rec.submit and s in spec.submission_files]
    wanted = [str(spec.train_split), *scored, *predicted] + ([hold.from_split] if hold else [])
    read = [s for s in dict.fromkeys(wanted) if not hold or s != hold.to_split]
    return Plan(str(spec.train_split), tuple(scored), tuple(predicted), tuple(read))


def _check_holdout(spec: TaskSpec, hold: Holdout) -> None:
    if hold.from_split not in spec.files:
        raise GptpipeError(f"finetune.holdout.{spec.name}: task {spec.name} has no split "
                           f"{hold.from_split!r} (has {', '.join(spec.files)})")
    if hold.from_split in spec.unlabelled_splits or hold.to_split in spec.unlabelled_splits:
        raise GptpipeError(f"finetune.holdout.{spec.name}: hidden-label splits cannot be held "
                           "out or carved")


# Tasks predicted with another task's model (`finetune.companions`, which loads them).


def companion_specs(spec: TaskSpec) -> list[TaskSpec]:
    """The registry's tasks predicted with `spec`'s model (MNLI: AX), in registry order."""
    return [t for t in tasks.TASKS.values() if t.predict_with == spec.name]


def submitted_splits(companion: TaskSpec) -> list[str]:
    """Hidden-label splits that have a GLUE file."""
    return [s for s in companion.unlabelled_splits if s in companion.submission_files]


def companion_paths(spec: TaskSpec, rec: Recipe) -> list[str]:
    """Paths under the data folder a run of `spec` reads for its companions (none unless it
    writes submissions)."""
    if not rec.submit:
        return []
    return [str(Path(c.data_dir) / c.files[s])
            for c in companion_specs(spec) for s in submitted_splits(c)]


def files_read(cfg: FinetuneConfig, task: str, variant: str = "full") -> list[str]:
    """Paths (relative to the data folder) of every file a run of `task` reads: what the
    workflow checks against the fetched sources before any job runs."""
    spec = _task_spec(cfg, task)
    steps = plan(spec, recipe(cfg, spec.name, variant), cfg.holdout.get(spec.name))
    paths = [str(Path(spec.data_dir) / spec.files[s]) for s in steps.read]
    if spec.loader == "mrpc" and {"train", "dev"} & set(steps.read):
        paths += [str(Path(spec.data_dir) / f) for f in spec.aux_files.values()]
    paths += companion_paths(spec, recipe(cfg, spec.name, variant))  # MNLI: AX's test file
    return list(dict.fromkeys(paths))


def _read_holdout(spec: TaskSpec, data_root: Path, hold: Holdout, limit: Callable[[str], int],
                  bad: float,
                  loaded: dict[str, tuple[list[Example], int]]) -> tuple[LoadReport, str]:
    """Read a holdout's source split twice, capped: the held-out examples (`to_split`) and the
    rest (`from_split`), each only if the run uses it; the held-out ids are chosen first from
    the ids alone. Returns the source's load report and the note saying what was done."""
    ids, report = split_ids(spec, data_root, hold.from_split, max_malformed_fraction=bad)
    held = held_ids(ids, hold.fraction)
    for name, inside in ((hold.to_split, True), (hold.from_split, False)):
        if limit(name) < 0:
            continue
        examples, _ = load_split(spec, data_root, hold.from_split, limit=limit(name),
                                 keep=lambda ex, inside=inside: (ex.id in held) == inside,
                                 rank=cap_key, max_malformed_fraction=bad)
        loaded[name] = examples, len(held) if inside else len(ids) - len(held)
    note = (f"{hold.to_split} = {len(held)} examples ({hold.fraction:.0%}) of {hold.from_split}, "
            f"chosen by a hash of their ids; {hold.from_split} keeps the other "
            f"{len(ids) - len(held)}")
    return report, note


def load_task(cfg: FinetuneConfig, task: str, rec: Recipe, data_root: Path) -> TaskData:
    """Read every split the run needs from `data_root` (laid out like the mirror / `data/`).

    Files are streamed and capped as they are read: a split holds at most its cap in memory
    (a holdout first reads its source's ids alone, to choose the held-out ones).
    """
    spec = _task_spec(cfg, task)
    hold = cfg.holdout.get(spec.name)
    if hold:
        _check_holdout(spec, hold)
    steps = plan(spec, rec, hold)
    out = TaskData(spec, [], {}, {})

    def limit(split: str) -> int:
        if split not in steps.used:
            return -1  # read only as a holdout's source: not kept
        return rec.max_train_examples if split == steps.train else rec.max_eval_examples

    hold_note = ""
    loaded: dict[str, tuple[list[Example], int]] = {}  # split -> (capped examples, available)
    for split in steps.read:
        bad = cfg.max_malformed_fraction
        if hold and split == hold.from_split:
            report, hold_note = _read_holdout(spec, data_root, hold, limit, bad, loaded)
        else:
            examples, report = load_split(spec, data_root, split, limit=max(limit(split), 0),
                                          rank=cap_key, max_malformed_fraction=bad)
            loaded[split] = examples, report.kept
        out.reports.append({"split": split, **report.to_dict()})
    for split, file in cfg.files.get(spec.name, {}).items():
        out.notes.append(f"{split} read from {spec.path(data_root, split)} ({file})")
    if hold:
        out.notes.append(hold_note)
    for split in steps.used:
        used, available = loaded[split]
        if not used:
            origin = hold.from_split if hold and split == hold.to_split else split
            raise GptpipeError(f"{spec.path(data_root, origin)}: task {spec.name} split "
                               f"{split!r} has no examples left")
        if split in steps.predicted and len(used) < available:
            # A GLUE submission must hold every row: a capped one would only be rejected.
            out.notes.append(
                f"no submission for {split}: capped at {len(used)} of {available} "
                "examples (finetune.max_eval_examples: 0 predicts them all)")
            continue
        out.counts[split] = {"available": available, "used": len(used)}
        if split == steps.train:
            out.train = used
        elif split in steps.scored:
            out.scored[split] = used
        else:
            out.predicted[split] = used
    return out

"""Score every weight snapshot of a pre-training run with the zero-shot heuristics.

Reads only the `pretrain` output: `snapshots/index.json` and its `update<N>.safetensors`, and
`model/` for the model's shape and tokenizer. Writes OUTPUT/metrics.json:

    {"snapshots": [{update, tokens, file}, ...],
     "tasks": {task: {metric, split, examples, chance, points: [{update, tokens, score}, ...],
                      (CoLA: train_examples; each point its threshold)}},
     "not_run": {task: why}}        the paper's tasks left out of `zeroshot.tasks`

Scores are fractions (accuracy) or coefficients (MCC), as the task metrics return them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .. import vocab
from ..atomic import atomic_path, write_json
from ..config import ZEROSHOT_TASKS, ZeroshotConfig, to_dict
from ..device import autocast_for, resolve_device
from ..errors import GptpipeError
from ..io import read_json
from ..modeldir import (
    CONFIG,
    TOKENIZER,
    build_model,
    model_folder,
    read_config,
    read_weights,
)
from ..tasks import Example
from . import heuristics as h
from .data import METRICS, SPLITS, load
from .score import Scorer

log = logging.getLogger(__name__)
NOT_RUN = ("not in zeroshot.tasks (the tiny and micro presets leave out RACE and DPRD: the "
           "shared sample has neither)")


def snapshot_index(pretrain: Path) -> list[dict]:
    """The snapshots pre-training wrote, by update; none is an error that says which knob."""
    path = pretrain / "snapshots" / "index.json"
    if not path.is_file():
        raise GptpipeError(f"{path}: not found; pre-train with pretrain.snapshot_every > 0 to "
                           "write weight snapshots")
    index = read_json(path, kind=list)
    if not index:
        raise GptpipeError(f"{path}: lists no snapshot")
    return sorted(index, key=lambda s: s["update"])


def evaluate(scorer: Scorer, task: str, data: dict[str, list[Example]]) -> dict:
    """One task's figure under one model: {"score"} (CoLA: and its "threshold")."""
    if task == "CoLA":
        _, score, threshold = h.cola(scorer, data["train"], data["dev"])
        return {"score": score, "threshold": threshold}
    heuristic = {"SST-2": h.sst2, "RACE": h.race, "DPRD": h.dprd}[task]
    _, score = heuristic(scorer, data[SPLITS[task][1]])
    return {"score": score}


def run(cfg: ZeroshotConfig, pretrain: Path, data_root: Path, output: Path) -> dict:
    index = snapshot_index(pretrain)
    folder = model_folder(pretrain)
    gpt = read_config(folder / CONFIG)
    tok, ids = vocab.load(folder / TOKENIZER)
    device = resolve_device(cfg.device, section="zeroshot")
    autocast, _ = autocast_for(device, cfg.precision)
    data = {task: load(task, data_root, cfg.max_examples) for task in cfg.tasks}
    tasks = {}
    for task in cfg.tasks:
        scored = data[task][SPLITS[task][1]]
        metric = METRICS[task]
        tasks[task] = {"metric": metric, "split": SPLITS[task][1], "examples": len(scored),
                       "chance": h.chance(metric, scored), "points": []}
        if task == "CoLA":
            tasks[task]["train_examples"] = len(data[task]["train"])
    for snap in index:
        path = pretrain / "snapshots" / snap["file"]
        model = build_model(gpt, read_weights(path), path).to(device)
        scorer = Scorer(model, tok, ids, device, cfg.batch_size, autocast)
        for task in cfg.tasks:
            point = {"update": snap["update"], "tokens": snap["tokens"],
                     **evaluate(scorer, task, data[task])}
            tasks[task]["points"].append(point)
            log.info("update %d: %s %s %.4f", snap["update"], task, tasks[task]["metric"],
                     point["score"])
    doc = {"snapshots": index, "tasks": tasks,
           "not_run": {t: NOT_RUN for t in ZEROSHOT_TASKS if t not in cfg.tasks}}
    with atomic_path(output, is_dir=True) as tmp:
        write_json(tmp / "metrics.json", doc)
        write_json(tmp / "config.json", {"zeroshot": to_dict(cfg), "pretrain": str(pretrain)})
    log.info("wrote %s: %d snapshot(s) x %d task(s)", output, len(index), len(cfg.tasks))
    return doc

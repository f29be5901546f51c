"""`gptpipe finetune`: fine-tune a model on one task, in one variant, with one seed (paper §3.2).

    gptpipe finetune --task SST-2 --variant full --seed 0 --model results/pretrain \\
        --data data --output results/finetune/SST-2/full/seed0

Variants (Table 5): `full` (pre-trained, task loss + λ·LM loss), `no_aux` (λ = 0),
`no_pretrain` (the same network and tokenizer, randomly initialised from the seed); Figure 2:
`transfer<k>` (as `full`, but only the embeddings and the first k blocks pre-trained). Writes
OUTPUT/metrics.json (scores, counts, caps, truncation, loader reports, losses, timings, the
resolved config), OUTPUT/predictions.jsonl (one line per scored or predicted example) and, for
tasks with GLUE test files, the submission TSV(s); all at once, or nothing.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import tasks
from ..atomic import atomic_path, write_json, write_text
from ..cli import load_config, run_cli, stage_parser
from ..config import VARIANTS, FinetuneConfig, to_dict
from ..device import autocast_for, resolve_device
from ..errors import GptpipeError
from ..io import file_sha256
from ..tasks.spec import Example, TaskSpec
from ..tasks.transforms import encode_examples
from . import companions, events, outputs, transfer
from .body import Body, build_gpt, fresh_special_rows, open_body
from .data import Recipe, TaskData, load_task, recipe
from .loop import predict, train
from .model import TaskModel, head_outputs
from .passes import examples_per_pass, passes_per_update

NAME = "finetune"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    task: str
    variant: str
    seed: int


def _encode(data: TaskData, body: Body, max_len: int) -> tuple[dict, dict]:
    """Encoded examples and truncation figures per split (train, scored, predicted)."""
    splits = {str(data.spec.train_split): data.train, **data.scored, **data.predicted}
    encoded, stats = {}, {}
    for split, examples in splits.items():
        encoded[split], st = encode_examples(examples, data.spec.kind, body.tokenizer, max_len,
                                             source=str(body.tokenizer_path))
        stats[split] = st.to_dict()
    return encoded, stats


def _spec(task: str) -> TaskSpec:
    spec = tasks.get(task)
    if spec.train_split is None:
        raise GptpipeError(f"task {spec.name} is not fine-tuned (it is predicted with the "
                           f"{spec.predict_with} model)")
    return spec


def _task_model(body: Body, spec: TaskSpec, rec: Recipe, seed: int) -> TaskModel:
    gpt = build_gpt(body, rec.pretrained, seed, rec.transfer)
    if rec.pretrained and rec.fresh_special_rows:
        fresh_special_rows(gpt, body.ids, seed)
    n_out = head_outputs(spec.kind, spec.num_labels, rec.stsb_target)
    return TaskModel(gpt, spec.kind, n_out, n_choices=spec.n_choices,
                     clf_dropout=rec.clf_dropout,
                     generator=torch.Generator().manual_seed(seed + 1))


def run(cfg: FinetuneConfig, job: Job, model_dir: Path, data_dir: Path, output: Path) -> dict:
    """Fine-tune, score and predict; write `output` atomically; return metrics.json's figures."""
    t0 = time.perf_counter()
    if not transfer.is_variant(job.variant):
        raise GptpipeError(f"unknown variant {job.variant!r} (known: {', '.join(VARIANTS)}, "
                           "transfer<k>)")
    spec = _spec(job.task)
    rec = recipe(cfg, spec.name, job.variant)
    body = open_body(model_dir, rec.max_len)
    if (job.variant == "lstm") != (body.cfg.arch == "lstm"):
        # The results folder is named by the variant: keep Table 5's rows what they say.
        raise GptpipeError(f"{body.folder / 'model.json'}: a model of arch {body.cfg.arch!r}; "
                           "variant lstm takes the LSTM branch's model (results/pretrain_lstm) "
                           "and only it")
    data = load_task(cfg, spec.name, rec, data_dir)
    extra, extra_notes = companions.load_companions(cfg, spec, rec, data_dir)
    data.notes.extend(extra_notes)  # e.g. AX (MNLI's companion) absent or capped
    encoded, truncation = _encode(data, body, rec.max_len)
    device = resolve_device(cfg.device, section=NAME)
    autocast, _ = autocast_for(device, cfg.precision)
    torch.manual_seed(job.seed)  # dropout draws from torch's global generator
    model = _task_model(body, spec, rec, job.seed).to(device)
    per_pass = examples_per_pass(rec.batch, model.seqs, rec.max_len, rec)
    log.info("%s/%s/seed%d: %d train examples, %d updates of %d in %d pass(es) of <= %d, %s",
             spec.name, job.variant, job.seed, len(data.train),
             -(-len(data.train) // rec.batch) * rec.epochs, rec.batch,
             passes_per_update(rec.batch, per_pass), per_pass, device)
    curve: list[dict] = []
    train_log = train(model, encoded[str(spec.train_split)], rec, pad_id=body.ids.pad,
                      generator=torch.Generator().manual_seed(job.seed), device=device,
                      autocast=autocast, on_update=curve.append)
    t1 = time.perf_counter()
    results = {}
    for split, examples in {**data.scored, **data.predicted}.items():
        scores = predict(model, encoded[split], batch=rec.batch, pad_id=body.ids.pad,
                         device=device, autocast=autocast)
        results[split] = outputs.result(spec, split, examples, scores)
    scores = {s: outputs.score(spec, results[s]) for s in data.scored}
    figures = _figures(cfg, job, spec, rec, body, data, truncation, train_log.to_dict(), scores)
    figures["seconds"] = {"train": train_log.seconds, "predict": round(time.perf_counter() - t1, 3)}
    figures["device"], figures["threads"] = device.type, torch.get_num_threads()
    figures["model"]["parameters"] = model.gpt.num_params()
    with atomic_path(output, is_dir=True) as tmp:
        extra_results, extra_files = companions.predict_companions(
            extra, _predictor(model, body, spec, rec, device, autocast), tmp)
        write_text(tmp / outputs.PREDICTIONS,
                   outputs.prediction_lines([*results.values(), *extra_results]))
        available = {s: c["available"] for s, c in data.counts.items()}
        figures["submission"] = outputs.write_submissions(
            spec, [results[s] for s in data.predicted], available, tmp) + extra_files
        figures["seconds"]["total"] = round(time.perf_counter() - t0, 3)
        write_json(tmp / outputs.METRICS, figures)
        events.write(tmp, curve, train_log, scores)
    headline = figures["headline"]
    log.info("wrote %s: %s %s %s", output, headline["split"], headline["metric"],
             headline["percent"])
    return figures


def _predictor(model: TaskModel, body: Body, spec: TaskSpec, rec: Recipe, device: torch.device,
               autocast) -> Callable[[list[Example]], tuple[torch.Tensor, dict]]:
    """examples -> (scores, truncation figures) with the fine-tuned model: for the tasks it
    predicts beside its own (MNLI: AX)."""
    def run_on(examples: list[Example]) -> tuple[torch.Tensor, dict]:
        encoded, stats = encode_examples(examples, spec.kind, body.tokenizer, rec.max_len,
                                         source=str(body.tokenizer_path))
        return predict(model, encoded, batch=rec.batch, pad_id=body.ids.pad, device=device,
                       autocast=autocast), stats.to_dict()
    return run_on


def _figures(cfg: FinetuneConfig, job: Job, spec: TaskSpec, rec: Recipe, body: Body,
             data: TaskData, truncation: dict, train_log: dict, scores: dict) -> dict:
    first_split = next(iter(data.scored))
    metric = spec.metrics[0]
    value = scores[first_split][metric]
    chance = {s: outputs.chance(spec, ex) for s, ex in data.scored.items()}
    return {
        "task": spec.name, "variant": job.variant, "seed": job.seed, "kind": spec.kind,
        "train_split": spec.train_split, "reported_splits": list(data.scored),
        "headline": {"split": first_split, "metric": metric, "value": value,
                     "percent": None if value is None else round(100 * value, 4)},
        "scores": scores, "scores_percent": {s: outputs.percent(v) for s, v in scores.items()},
        "chance": chance, "chance_percent": {s: outputs.percent(v) for s, v in chance.items()},
        "paper_percent": dict(spec.paper), "examples": data.counts,
        "caps": {"max_train_examples": rec.max_train_examples,
                 "max_eval_examples": rec.max_eval_examples,
                 "applied": any(c["used"] < c["available"] for c in data.counts.values())},
        "truncation": truncation, "load_reports": data.reports, "notes": data.notes,
        "train": {**train_log, "epochs": rec.epochs, "lr": rec.lr, "batch": rec.batch,
                  "lm_weight": rec.lm_weight, "model_selection": "none: fixed epochs"},
        "model": {"folder": str(body.folder), "pretrained": rec.pretrained,
                  "config": asdict(body.cfg),
                  "tokenizer_sha256": file_sha256(body.tokenizer_path)},
        "recipe": asdict(rec), "config": to_dict(cfg),
    }


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--task", required=True, help="task name, e.g. SST-2 (see gptpipe.tasks)")
    parser.add_argument("--variant", required=True, type=transfer.variant_arg,
                        help="full | no_aux (λ = 0) | no_pretrain (random initialisation) | "
                             "transfer<k> (embeddings and k blocks pre-trained; k >= -1)")
    parser.add_argument("--seed", required=True, type=int, help="initialisation, dropout, order")
    parser.add_argument("--model", required=True, type=Path, metavar="DIR",
                        help="model folder, or a pretrain output holding one in model/")
    parser.add_argument("--data", required=True, type=Path, metavar="DIR",
                        help="folder of the task files, laid out like data/ (fetch's output)")
    parser.add_argument("--output", required=True, type=Path, metavar="DIR",
                        help="folder to write metrics.json, predictions.jsonl, submissions into")

    def body(args: argparse.Namespace) -> None:
        cfg = load_config(args, NAME)
        run(cfg, Job(args.task, args.variant, args.seed), args.model, args.data, args.output)

    return run_cli(NAME, argv, parser, body)

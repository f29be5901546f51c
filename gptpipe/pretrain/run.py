"""Pre-training wired together: the model and its optimizer on their device, DDP, the trainer,
checkpoints, validation, and the output folder (`run`)."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path

import torch

from ..atomic import atomic_path, write_json
from ..config import (
    ModelConfig,
    PretrainConfig,
    to_dict,
)
from ..device import autocast_for
from ..lstm import language_model
from ..model import GPT, GPTConfig
from ..modeldir import save_model_dir
from ..optim import adamw
from ..tblog import DIR as EVENTS_DIR
from ..tblog import copy_events, open_log
from . import data
from . import distributed as dd
from .checkpoint import Checkpoints, check_dir
from .curves import write_curves
from .deadline import NEVER, TimeLimitStop, from_slurm
from .loop import Trainer, evaluate_lm, mean_mfu
from .metrics import MetricsLog, Progress, peak_flops
from .schedule import RunShape, run_shape
from .snapshots import FOLDER as SNAPSHOTS
from .snapshots import Snapshots

# Knobs that change what is watched, not what is learned: a resumed run may change them.
# `micro_batch` too: it sizes the forward passes (GPU memory), not the data, so a run moved to
# other GPUs may change it; the updates then differ by float rounding only.
OBSERVING = ("eval_every", "eval_tokens", "log_every", "checkpoint_every", "keep_checkpoints",
             "compile", "time_limit_margin", "micro_batch", "snapshot_every")
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Paths:
    shards: Path
    tokenizer: Path
    checkpoints: Path
    output: Path


def fingerprint(model_cfg: ModelConfig, cfg: PretrainConfig, info: data.DataInfo) -> dict:
    """What decides the run's trajectory: a checkpoint resumes only when all of it matches.
    (The vocabulary and context come from the shards and tokenizer, hashed here.)"""
    # The `lstm_*` run knobs are left out: the LSTM's run has already folded them into
    # tokens/updates/lr (`PretrainConfig.for_lstm`) and the transformer's never reads them, so
    # tuning the LSTM leaves the transformer's checkpoints resumable.
    pre = {k: v for k, v in to_dict(cfg).items()
           if k not in OBSERVING and not k.startswith("lstm_")}
    model = to_dict(model_cfg)
    if model_cfg.arch != "lstm":
        model.pop("lstm_units")
    return {"model": model, "pretrain": pre, "data": data.data_fingerprint(info)}


def build_model(gpt: GPTConfig, cfg: PretrainConfig, env: dd.DistEnv):
    """The model (`gpt.arch`) on its device and its AdamW (decay on matrices only, fused on
    CUDA)."""
    model = language_model(gpt, generator=torch.Generator().manual_seed(cfg.seed)).to(env.device)
    optimizer = adamw(model, lr=cfg.lr, weight_decay=cfg.weight_decay,
                      betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    return model, optimizer


def wrap(model: GPT, cfg: PretrainConfig, env: dd.DistEnv
         ) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(what evaluates, what trains): compiled if asked, and DDP-wrapped across processes."""
    fwd: torch.nn.Module = torch.compile(model) if cfg.compile else model
    if not env.distributed:
        return fwd, fwd
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [env.device.index] if env.device.type == "cuda" else None
    return fwd, DDP(fwd, device_ids=ids)


def run(model_cfg: ModelConfig, cfg: PretrainConfig, paths: Paths) -> dict:
    """Train (or resume) and, on rank 0, write the output folder; the figures of metrics.json."""
    wall0 = time.perf_counter()
    env = dd.init(cfg.device)
    if not env.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        return _run(model_cfg, cfg, paths, env, wall0)
    except TimeLimitStop as stop:
        if stop.main:
            log.warning("%s", stop)
        # Once one rank exits, torchrun ends the others: none goes before rank 0 has said why.
        dd.barrier()
        raise
    finally:
        dd.shutdown()


def _run(model_cfg: ModelConfig, cfg: PretrainConfig, paths: Paths, env: dd.DistEnv,
         wall0: float) -> dict:
    # Rank 0 alone asks SLURM, once, and decides for every rank when to stop.
    deadline = from_slurm(cfg.time_limit_margin, os.environ) if env.is_main else NEVER
    check_dir(paths.checkpoints)
    info = data.open_data(paths.shards, paths.tokenizer)
    gpt = GPTConfig(vocab_size=info.vocab_size, context=info.context, **to_dict(model_cfg))
    shape = run_shape(tokens=cfg.tokens, updates=cfg.updates, batch_tokens=cfg.batch_tokens,
                      slots=cfg.slots, micro_batch=cfg.micro_batch, context=info.context,
                      world_size=env.world_size)
    torch.manual_seed(cfg.seed + env.rank * 2**32)  # dropout: its own stream on every rank
    if gpt.arch == "lstm" and env.device.type == "cpu":
        # Its per-time-step products are too small to share: on 2 cores one thread ran an
        # update of the tiny LSTM in 0.17 s, two in 0.23 s idle and 2.2 s on a busy machine.
        torch.set_num_threads(1)
    model, optimizer = build_model(gpt, cfg, env)
    store = Checkpoints(paths.checkpoints, fingerprint(model_cfg, cfg, info),
                        cfg.keep_checkpoints, env)
    restored = store.restore(model, optimizer)
    trainer = _trainer(model, optimizer, shape, cfg, env, info, store, restored)
    trainer.deadline = deadline
    trainer.events = open_log(store.run_dir / EVENTS_DIR, restored.step if restored else 0) \
        if env.is_main else None
    # Only the transformer's run feeds the zeroshot stage (Figure 2): the LSTM branch keeps none.
    every = cfg.snapshot_every if gpt.arch == "transformer" else 0
    snaps = Snapshots(store.run_dir, every, shape.updates)
    if env.is_main:
        trainer.after_update = lambda done: snaps.maybe_save(done, model)
    start = trainer.resume(restored) if restored else 0
    if env.is_main and start == 0:
        snaps.maybe_save(0, model)  # the untrained model: Figure 2's left end
    _log_start(gpt, shape, env, model, start)
    try:
        final = trainer.run(start) or trainer.evaluate(True)
    finally:
        if trainer.metrics is not None:
            trainer.metrics.close()
        if trainer.events is not None:
            trainer.events.close()
    if not env.is_main:
        return {}
    figures = _figures(trainer, shape, info, final, model, env, wall0, restored)
    _write_output(paths, model, gpt, trainer, figures, model_cfg, cfg, env, snaps)
    return figures


def _trainer(model, optimizer, shape: RunShape, cfg: PretrainConfig, env: dd.DistEnv,
             info: data.DataInfo, store: Checkpoints, restored) -> Trainer:
    fwd, train_model = wrap(model, cfg, env)
    autocast, precision = autocast_for(env.device, cfg.precision)
    streams = {s: data.train_stream(info, s, shape, cfg.seed, cfg.shuffle_buffer, env.device)
               for s in shape.rank_slots(env.rank)}
    token_bytes = data.token_bytes(info.tokenizer).to(env.device)

    def evaluate(full: bool) -> dict:
        limit = 0 if full else cfg.eval_tokens
        batches = data.val_batches(info, cfg.micro_batch, env, limit)
        return evaluate_lm(fwd, batches, token_bytes, env.device, autocast)

    name = torch.cuda.get_device_name(env.device) if env.device.type == "cuda" else None
    metrics = MetricsLog(store.run_dir / "metrics.jsonl", restored.step if restored else 0) \
        if env.is_main else None
    progress = Progress(shape.updates, restored.step if restored else 0, shape.batch_tokens,
                        cfg.log_every, enabled=env.is_main)
    return Trainer(train_model, optimizer, shape, cfg, env, streams, evaluate, store, metrics,
                   progress, model.flops_per_token(), peak_flops(name, precision), autocast)


def _log_start(gpt: GPTConfig, shape: RunShape, env: dd.DistEnv, model: GPT, start: int) -> None:
    body = (f"one LSTM layer of {gpt.lstm_units} units, d_model {gpt.d_model}"
            if gpt.arch == "lstm" else
            f"{gpt.n_layer} layers, d_model {gpt.d_model}, {gpt.n_head} heads")
    log.info("model: %s, context %d, vocabulary %d: %s parameters", body, gpt.context,
             gpt.vocab_size, f"{model.num_params():,}")
    log.info("run: %d updates of %s tokens (%d slots x %d sequences; %d slots, %d sequences "
             "per process in %d forward pass(es)) = %s tokens on %d process(es), %s; %s",
             shape.updates, f"{shape.batch_tokens:,}", shape.slots, shape.seqs_per_slot,
             shape.slots_per_rank, shape.rank_seqs, shape.passes, f"{shape.total_tokens:,}",
             env.world_size, env.device, f"from update {start}" if start else "from scratch")


def _figures(trainer: Trainer, shape: RunShape, info: data.DataInfo, final: dict, model: GPT,
             env: dd.DistEnv, wall0: float, restored) -> dict:
    clock = trainer.clock
    baseline = data.unigram_baseline(info)
    return {
        "val_loss": final["val_loss"], "val_bpb": final["val_bpb"],
        "val_tokens": final["val_tokens"], "unigram_val_loss": baseline,
        "below_unigram": baseline - final["val_loss"],
        "updates": shape.updates, "tokens": shape.total_tokens,
        "parameters": model.num_params(), "flops_per_token": model.flops_per_token(),
        "train_seconds": round(clock.train_seconds, 3),
        "wall_seconds": round(time.perf_counter() - wall0, 3),
        "tokens_per_s": shape.total_tokens / clock.train_seconds if clock.train_seconds else None,
        "mfu": mean_mfu(clock) if trainer.peak_flops else None,
        "processes": env.world_size, "device": str(env.device.type),
        "resumed_from": restored.step if restored else None,
    }


def _write_output(paths: Paths, model: GPT, gpt: GPTConfig, trainer: Trainer, figures: dict,
                  model_cfg: ModelConfig, cfg: PretrainConfig, env: dd.DistEnv,
                  snaps: Snapshots | None = None) -> None:
    resolved = {"model": to_dict(model_cfg), "pretrain": to_dict(cfg),
                "gpt": dataclasses.asdict(gpt), "shards": str(paths.shards),
                "tokenizer": str(paths.tokenizer), "checkpoints": str(trainer.checkpoints.run_dir),
                "processes": env.world_size}
    with atomic_path(paths.output, is_dir=True) as tmp:
        save_model_dir(model, gpt, paths.tokenizer, tmp / "model")
        shutil.copyfile(trainer.checkpoints.run_dir / "metrics.jsonl", tmp / "metrics.jsonl")
        copy_events(trainer.checkpoints.run_dir / EVENTS_DIR, tmp / EVENTS_DIR)
        write_curves(tmp / "metrics.jsonl", tmp / "curves")  # for `dvc plots`
        write_json(tmp / "metrics.json", figures)
        write_json(tmp / "config.json", resolved)
        if snaps is not None and snaps.every > 0:
            snaps.export(tmp / SNAPSHOTS, trainer.shape.batch_tokens)
    log.info("wrote %s: val loss %.4f (unigram baseline %.4f), %.4f bits per byte", paths.output,
             figures["val_loss"], figures["unigram_val_loss"], figures["val_bpb"])

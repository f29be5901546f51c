"""`gptpipe pretrain`: pre-train the GPT-1 language model on the shards (paper §3.1, §4.1).

    gptpipe pretrain --params params.yaml --shards results/shard \\
        --tokenizer results/bpe/tokenizer.json --checkpoints results/checkpoints/pretrain \\
        --output results/pretrain

Writes OUTPUT/model/ (model.safetensors, model.json, tokenizer.json), metrics.jsonl (one record
per logged update), metrics.json (final figures) and config.json (the resolved config). With
more than one GPU visible (or $GPTPIPE_NPROC > 1) it re-executes itself under
`torch.distributed.run`, one process per device. A rerun resumes from the newest good
checkpoint of the same config and data under --checkpoints.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from ..atomic import atomic_path, write_json
from ..config import ModelConfig, PretrainConfig, load_params, parse_set, resolve_section, to_dict
from ..model import GPT, GPTConfig
from ..modeldir import save_model_dir
from ..train import data
from ..train import distributed as dd
from ..train.checkpoint import Checkpoints, check_dir
from ..train.loop import Recipe, Trainer, evaluate_lm, mean_mfu
from ..train.metrics import MetricsLog, Progress, peak_flops
from ..train.schedule import RunShape, run_shape
from .common import run_cli, stage_parser

NAME = "pretrain"
SECTIONS = ("model", "pretrain")
# Knobs that change what is watched, not what is learned: a resumed run may change them.
OBSERVING = ("eval_every", "eval_tokens", "log_every", "checkpoint_every", "keep_checkpoints",
             "compile")
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Paths:
    shards: Path
    tokenizer: Path
    checkpoints: Path
    output: Path


def load_configs(args: argparse.Namespace) -> tuple[ModelConfig, PretrainConfig]:
    """`model` and `pretrain` sections; `--set model.KEY=V`, `--set pretrain.KEY=V` (or KEY=V)."""
    params = load_params(args.params)
    if args.scale:
        params = {**params, "scale": args.scale}
    sets = parse_set(args.set)
    over = {s: sets.pop(s) for s in SECTIONS if isinstance(sets.get(s), dict)}
    over["pretrain"] = {**over.get("pretrain", {}), **sets}
    return tuple(  # type: ignore[return-value]
        resolve_section(params, s, over.get(s), where=str(args.params)) for s in SECTIONS
    )


def fingerprint(model_cfg: ModelConfig, cfg: PretrainConfig, info: data.DataInfo) -> dict:
    """What decides the run's trajectory: a checkpoint resumes only when all of it matches.
    (The vocabulary and context come from the shards and tokenizer, hashed here.)"""
    pre = {k: v for k, v in to_dict(cfg).items() if k not in OBSERVING}
    return {"model": to_dict(model_cfg), "pretrain": pre, "data": data.data_fingerprint(info)}


def _autocast(env: dd.DistEnv, precision: str):
    bf16 = precision == "bf16" or (
        precision == "auto" and env.device.type == "cuda" and torch.cuda.is_bf16_supported())
    if not bf16:
        return contextlib.nullcontext, "fp32"
    return (lambda: torch.autocast(env.device.type, dtype=torch.bfloat16)), "bf16"


def build_model(gpt: GPTConfig, cfg: PretrainConfig, env: dd.DistEnv):
    """The model on its device and its AdamW (decay on matrices only, fused on CUDA)."""
    model = GPT(gpt, generator=torch.Generator().manual_seed(cfg.seed)).to(env.device)
    optimizer = model.configure_optimizer(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2),
                                          eps=cfg.eps)
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
    finally:
        dd.shutdown()


def _run(model_cfg: ModelConfig, cfg: PretrainConfig, paths: Paths, env: dd.DistEnv,
         wall0: float) -> dict:
    check_dir(paths.checkpoints)
    info = data.open_data(paths.shards, paths.tokenizer)
    gpt = GPTConfig(vocab_size=info.vocab_size, context=info.context, **to_dict(model_cfg))
    shape = run_shape(tokens=cfg.tokens, updates=cfg.updates, batch_tokens=cfg.batch_tokens,
                      micro_batch=cfg.micro_batch, context=info.context,
                      world_size=env.world_size)
    torch.manual_seed(cfg.seed + env.rank * 2**32)  # dropout: its own stream on every rank
    model, optimizer = build_model(gpt, cfg, env)
    store = Checkpoints(paths.checkpoints, fingerprint(model_cfg, cfg, info),
                        cfg.keep_checkpoints, env)
    restored = store.restore(model, optimizer)
    trainer = _trainer(model, optimizer, shape, cfg, env, info, store, restored)
    start = trainer.resume(restored) if restored else 0
    _log_start(gpt, shape, env, model, start)
    try:
        final = trainer.run(start) or trainer.evaluate(True)
    finally:
        if trainer.metrics is not None:
            trainer.metrics.close()
    if not env.is_main:
        return {}
    figures = _figures(trainer, shape, info, final, model, env, wall0, restored)
    _write_output(paths, model, gpt, trainer, figures, model_cfg, cfg, env)
    return figures


def _trainer(model, optimizer, shape: RunShape, cfg: PretrainConfig, env: dd.DistEnv,
             info: data.DataInfo, store: Checkpoints, restored) -> Trainer:
    fwd, train_model = wrap(model, cfg, env)
    autocast, precision = _autocast(env, cfg.precision)
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
    recipe = Recipe(cfg.lr, cfg.warmup_updates, cfg.grad_clip, cfg.eval_every, cfg.log_every,
                    cfg.checkpoint_every)
    progress = Progress(shape.updates, restored.step if restored else 0, shape.batch_tokens,
                        cfg.log_every, enabled=env.is_main)
    return Trainer(train_model, optimizer, shape, recipe, env, streams, evaluate, store, metrics,
                   progress, model.flops_per_token(), peak_flops(name, precision), autocast)


def _log_start(gpt: GPTConfig, shape: RunShape, env: dd.DistEnv, model: GPT, start: int) -> None:
    log.info("model: %d layers, d_model %d, %d heads, context %d, vocabulary %d: %s parameters",
             gpt.n_layer, gpt.d_model, gpt.n_head, gpt.context, gpt.vocab_size,
             f"{model.num_params():,}")
    log.info("run: %d updates of %s tokens (%d x %d sequences, %d per process) = %s tokens on "
             "%d process(es), %s; %s", shape.updates, f"{shape.batch_tokens:,}", shape.slots,
             shape.micro_batch, shape.accum * shape.micro_batch, f"{shape.total_tokens:,}",
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
                  model_cfg: ModelConfig, cfg: PretrainConfig, env: dd.DistEnv) -> None:
    resolved = {"model": to_dict(model_cfg), "pretrain": to_dict(cfg),
                "gpt": dataclasses.asdict(gpt), "shards": str(paths.shards),
                "tokenizer": str(paths.tokenizer), "checkpoints": str(trainer.checkpoints.run_dir),
                "processes": env.world_size}
    with atomic_path(paths.output, is_dir=True) as tmp:
        save_model_dir(model, gpt, paths.tokenizer, tmp / "model")
        shutil.copyfile(trainer.checkpoints.run_dir / "metrics.jsonl", tmp / "metrics.jsonl")
        write_json(tmp / "metrics.json", figures)
        write_json(tmp / "config.json", resolved)
    log.info("wrote %s: val loss %.4f (unigram baseline %.4f), %.4f bits per byte", paths.output,
             figures["val_loss"], figures["unigram_val_loss"], figures["val_bpb"])


def _relaunch_if_wanted(argv: list[str], cfg: PretrainConfig) -> None:
    """Re-execute under torch.distributed.run when several local processes are wanted."""
    if dd.inside_launcher():
        return
    n = dd.wanted_processes(cfg.device)
    if n > 1:
        cmd = dd.relaunch_argv(n, [NAME, *argv])
        log.info("starting %d processes: %s", n, " ".join(cmd))
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(cmd[0], cmd)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = stage_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--shards", required=True, type=Path, metavar="DIR",
                        help="`shard` output folder (manifest.json, train-*.tar, val-*.tar)")
    parser.add_argument("--tokenizer", required=True, type=Path, metavar="FILE",
                        help="the tokenizer.json the shards were made with")
    parser.add_argument("--checkpoints", required=True, type=Path, metavar="DIR",
                        help="checkpoint folder, kept across reruns (not an output)")
    parser.add_argument("--output", required=True, type=Path, metavar="DIR",
                        help="folder to write the model and metrics into")

    def body(args: argparse.Namespace) -> None:
        model_cfg, cfg = load_configs(args)
        _relaunch_if_wanted(argv, cfg)
        run(model_cfg, cfg, Paths(args.shards, args.tokenizer, args.checkpoints, args.output))

    return run_cli(NAME, argv, parser, body)


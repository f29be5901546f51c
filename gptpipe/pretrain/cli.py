"""`gptpipe pretrain`: pre-train the GPT-1 language model on the shards (paper §3.1, §4.1).

    gptpipe pretrain --params params.yaml --shards results/shard \\
        --tokenizer results/bpe/tokenizer.json --checkpoints results/checkpoints/pretrain \\
        --output results/pretrain

With `--arch lstm` it trains Table 5's single-layer LSTM (gptpipe/lstm.py) instead, for the
run length and rate `pretrain.lstm_tokens`/`lstm_updates`/`lstm_warmup_updates`/`lstm_lr` (job
`pretrain_lstm`).

Writes OUTPUT/model/ (model.safetensors, model.json, tokenizer.json), metrics.jsonl (one record
per logged update), metrics.json (final figures) and config.json (the resolved config). With
more than one GPU visible (or $GPTPIPE_NPROC > 1) it re-executes itself under
`torch.distributed.run`, one process per device. A rerun resumes from the newest good
checkpoint of the same config and data under --checkpoints.

Inside a SLURM job it stops pretrain.time_limit_margin seconds before the job's time limit,
after saving a checkpoint, with exit status 75 (under torchrun, each worker's; torchrun itself
then exits 1): the rerun resumes there.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ..cli import run_cli, stage_parser
from ..config import (
    ModelConfig,
    PretrainConfig,
    load_params,
    parse_set,
    resolve_section,
)
from . import distributed as dd
from .deadline import EXIT_CODE, TimeLimitStop
from .run import Paths, run

NAME = "pretrain"
SECTIONS = ("model", "pretrain")
log = logging.getLogger(__name__)


def load_configs(args: argparse.Namespace) -> tuple[ModelConfig, PretrainConfig]:
    """`model` and `pretrain` sections; `--set model.KEY=V`, `--set pretrain.KEY=V` (or KEY=V)."""
    params = load_params(args.params)
    if args.scale:
        params = {**params, "scale": args.scale}
    sets = parse_set(args.set)
    over = {s: sets.pop(s) for s in SECTIONS if isinstance(sets.get(s), dict)}
    over["pretrain"] = {**over.get("pretrain", {}), **sets}
    if getattr(args, "arch", None):  # callers may build the Namespace without it
        over["model"] = {**over.get("model", {}), "arch": args.arch}
    model_cfg, cfg = (resolve_section(params, s, over.get(s), where=str(args.params))
                      for s in SECTIONS)
    # The LSTM branch trains for its own budget (pretrain.lstm_*), whichever way arch was set.
    return model_cfg, cfg.for_lstm() if model_cfg.arch == "lstm" else cfg


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
    parser.add_argument("--arch", choices=("transformer", "lstm"),
                        help="set model.arch: `lstm` is Table 5's LSTM branch (job "
                             "pretrain_lstm), trained for pretrain.lstm_* instead")

    def body(args: argparse.Namespace) -> None:
        model_cfg, cfg = load_configs(args)
        _relaunch_if_wanted(argv, cfg)
        run(model_cfg, cfg, Paths(args.shards, args.tokenizer, args.checkpoints, args.output))

    try:
        return run_cli(NAME, argv, parser, body)
    except TimeLimitStop:  # not an error: rank 0 has logged where it stopped and why
        return EXIT_CODE

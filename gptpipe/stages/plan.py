"""`gptpipe plan`: what a run will cost (tokens, GPU-hours, checkpoint and shard sizes), from
params.yaml at any scale, before anything runs: `gptpipe plan --scale gpt1 --gpus 32`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import SCALES, load_params, validate_params
from ..plan import Throughput, estimate, render
from ..workflow import finetune_jobs
from .common import run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gptpipe plan", description="estimate a run's cost from params.yaml, before it runs")
    parser.add_argument("--params", default="params.yaml", metavar="FILE",
                        help="params file (every section is read; default: params.yaml)")
    parser.add_argument("--scale", choices=SCALES, default=None,
                        help="preset to resolve against (default: the file's `scale`)")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs in the job (default: 8)")
    parser.add_argument("--gpu", default="H100",
                        help="GPU model whose bf16 peak the MFU applies to (default: H100)")
    parser.add_argument("--mfu", type=float, default=0.40,
                        help="model FLOPs utilisation to plan with (default: 0.40)")
    parser.add_argument("--tokens-per-s", type=float, default=None, metavar="N",
                        help="measured tokens/s per GPU instead of --gpu/--mfu "
                             "(benchmarks/train_step.py measures it)")
    parser.add_argument("--corpus-tokens", type=int, default=None, metavar="N",
                        help="tokens in the corpus after `shard` (default: from --shards)")
    parser.add_argument("--shards", type=Path, default=None, metavar="DIR",
                        help="a `shard` output whose manifest.json gives the corpus size")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    def body(args: argparse.Namespace) -> None:
        params = load_params(args.params)
        if args.scale:
            params = {**params, "scale": args.scale}
        cfg = validate_params(params, str(args.params))
        corpus = args.corpus_tokens
        if corpus is None and args.shards is not None:
            manifest = json.loads((args.shards / "manifest.json").read_text(encoding="utf-8"))
            corpus = sum(s["tokens"] for s in manifest["splits"].values())
        throughput = Throughput(args.gpu, args.mfu, args.tokens_per_s)
        try:
            figures = estimate(cfg, throughput, args.gpus, corpus,
                               len(finetune_jobs(cfg["finetune"])))
        except ValueError as exc:
            parser.error(str(exc))
        scale = params.get("scale", "tiny")
        sys.stdout.write((json.dumps(figures, indent=2) if args.json
                          else render(figures, scale)) + "\n")

    return run_cli("plan", argv, parser, body)

"""What a run will cost, before it starts: `gptpipe plan --scale gpt1` (nobody books a cluster
blind).

Everything comes from the resolved params (model shape, tokenizer size, context, training
length, fine-tuning jobs) plus two figures a params file cannot know: the throughput to plan
with (a model FLOPs utilisation on a named GPU, or tokens/s measured by
`benchmarks/train_step.py`) and the corpus size (tokens after `shard`; the run's own
`results/shard/manifest.json` once it exists).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .cli import run_cli
from .config import SCALES, load_params, to_dict, validate_params
from .model import N_SPECIAL, GPTConfig
from .pretrain.metrics import peak_flops
from .workflow import finetune_jobs

# Bytes per parameter held while training: fp32 weights, AdamW's two fp32 moments. Checkpoints
# store exactly these (plus small RNG and data-position state).
CHECKPOINT_BYTES_PER_PARAM = 4 + 4 + 4
TAR_BLOCK = 512  # a shard is a tar: each sample one member (a header block + data in blocks)
TAR_END_BYTES = 1024 + 5120  # per shard: end-of-archive blocks + half a 10,240-byte record


@dataclass(frozen=True)
class Throughput:
    """How fast to assume training runs: `tokens_per_s` per GPU if measured, else
    `mfu` x the peak bf16 FLOP/s of `gpu` (a name from gptpipe.pretrain.metrics.PEAK_TFLOPS)."""

    gpu: str = "H100"
    mfu: float = 0.40
    tokens_per_s: float | None = None

    def per_gpu(self, flops_per_token: int) -> tuple[float, str]:
        if self.tokens_per_s:
            return self.tokens_per_s, f"{self.tokens_per_s:,.0f} tokens/s per GPU (given)"
        peak = peak_flops(self.gpu, "bf16")
        if peak is None:
            raise ValueError(f"no peak FLOP/s known for GPU {self.gpu!r}: give tokens/s instead")
        rate = self.mfu * peak / flops_per_token
        return rate, (f"{rate:,.0f} tokens/s per GPU ({self.mfu:.0%} MFU; {self.gpu}: "
                      f"{peak / 1e12:,.0f} bf16 TFLOP/s peak)")


def model_shape(cfg: Mapping[str, Any]) -> GPTConfig:
    """The network `pretrain` would build from resolved `model`, `bpe` and `shard` sections."""
    return GPTConfig(vocab_size=cfg["bpe"].vocab_size + N_SPECIAL, context=cfg["shard"].context,
                     **to_dict(cfg["model"]))


def _count(shape: GPTConfig) -> tuple[int, int]:
    import torch

    from .model import GPT

    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = GPT(shape)
    return model.num_params(), model.flops_per_token()


def estimate(cfg: Mapping[str, Any], throughput: Throughput = Throughput(), gpus: int = 8,
             corpus_tokens: int | None = None, finetune_jobs: int = 0) -> dict:
    """The figures of one run; `cfg` is `config.validate_params(...)`'s resolved sections."""
    shape = model_shape(cfg)
    params, flops_per_token = _count(shape)
    pre = cfg["pretrain"]
    tokens = pre.tokens or pre.updates * pre.batch_tokens
    updates = math.ceil(tokens / pre.batch_tokens)
    rate, rate_text = throughput.per_gpu(flops_per_token)
    gpu_hours = tokens / rate / 3600
    out = {
        "parameters": params, "flops_per_token": flops_per_token,
        "pretrain_tokens": tokens, "updates": updates, "batch_tokens": pre.batch_tokens,
        "pretrain_flops": flops_per_token * tokens, "throughput": rate_text,
        "gpu_hours": gpu_hours, "gpus": gpus, "wall_hours": gpu_hours / gpus,
        "checkpoint_bytes": params * CHECKPOINT_BYTES_PER_PARAM,
        "model_bytes": params * 4, "finetune_jobs": finetune_jobs,
    }
    if corpus_tokens:
        window = shape.context + 1
        samples = corpus_tokens // window
        token_bytes = 2 if shape.vocab_size <= 65_536 else 4
        member = TAR_BLOCK + math.ceil(window * token_bytes / TAR_BLOCK) * TAR_BLOCK
        shards = math.ceil(samples / cfg["shard"].samples_per_shard)
        out.update(corpus_tokens=corpus_tokens, epochs=tokens / corpus_tokens, shards=shards,
                   shard_bytes=samples * member + shards * TAR_END_BYTES)
    return out


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError


def _hours(h: float) -> str:
    return f"{h:,.0f}" if h >= 10 else f"{h:.2g}"


def render(figures: Mapping[str, Any], scale: str) -> str:
    """The estimate as an aligned text table."""
    f = figures
    rows = [
        ("scale", scale),
        ("model", f"{f['parameters']:,} parameters, {f['flops_per_token'] / 1e9:,.2f} GFLOP "
                  "per token (forward + backward)"),
        ("pre-training", f"{f['pretrain_tokens']:,} tokens = {f['updates']:,} updates of "
                         f"{f['batch_tokens']:,}; {f['pretrain_flops']:.2e} FLOP"),
        ("throughput", f["throughput"]),
        ("GPU-hours", f"{_hours(f['gpu_hours'])} ({_hours(f['wall_hours'])} h wall on "
                      f"{f['gpus']} GPUs, pre-training only)"),
        ("checkpoint", f"{_size(f['checkpoint_bytes'])} each (weights + AdamW moments); the "
                       f"final model {_size(f['model_bytes'])}"),
        ("fine-tuning", f"{f['finetune_jobs']} jobs (task x variant x seed)"),
    ]
    if "corpus_tokens" in f:
        rows.append(("shards", f"{f['shards']:,} shards, {_size(f['shard_bytes'])} for "
                               f"{f['corpus_tokens']:,} corpus tokens ({f['epochs']:.1f} "
                               "epochs of it)"))
    else:
        rows.append(("shards", "corpus size unknown: give --corpus-tokens (or run `shard`)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# --------------------------------------------------------------------------- command line


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

"""What a run will cost, before it starts: `gptpipe plan --scale gpt1` (nobody books a cluster
blind).

Everything comes from the resolved params (model shape, tokenizer size, context, training
length, fine-tuning jobs) plus two figures a params file cannot know: the throughput to plan
with (a model FLOPs utilisation on a named GPU, or tokens/s measured by
`benchmarks/train_step.py`) and the corpus size (tokens after `shard`; the run's own
`results/shard/manifest.json` once it exists).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from .config import to_dict
from .model import GPTConfig, N_SPECIAL
from .train.metrics import peak_flops

# Bytes per parameter held while training: fp32 weights, AdamW's two fp32 moments. Checkpoints
# store exactly these (plus small RNG and data-position state).
CHECKPOINT_BYTES_PER_PARAM = 4 + 4 + 4
TAR_BLOCK = 512  # a shard is a tar: each sample one member (a header block + data in blocks)
TAR_END_BYTES = 1024 + 5120  # per shard: end-of-archive blocks + half a 10,240-byte record


@dataclass(frozen=True)
class Throughput:
    """How fast to assume training runs: `tokens_per_s` per GPU if measured, else
    `mfu` x the peak bf16 FLOP/s of `gpu` (a name from gptpipe.train.metrics.PEAK_TFLOPS)."""

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

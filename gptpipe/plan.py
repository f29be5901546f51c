"""What a run will cost, before it starts: `gptpipe plan --scale gpt1` (nobody books a cluster
blind).

Everything comes from the resolved params (model shape, tokenizer size, context, training
length, fine-tuning jobs) plus two figures a params file cannot know: the throughput to plan
with (a model FLOPs utilisation on a named GPU, or tokens/s measured by
`benchmarks/train_step.py`) and the corpus size (tokens after `shard`; the run's own
`results/shard/manifest.json` once it exists).

`--gpus N` checks the pre-training layout for N processes before anything is submitted (the
ConfigError `gptpipe pretrain` would stop with when N does not divide `pretrain.slots`) and
shows it: slots and sequences per GPU, forward passes per update, and the peak GPU memory of
one step (`gptpipe/memory.py`). Fine-tuning: per task, its forward pass (examples per pass from
`finetune.passes`) with its peak memory, and the GPU-hours of every job.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import tasks
from . import datacost
from .cli import run_cli
from .config import SCALES, FinetuneConfig, load_params, to_dict, validate_params
from .errors import ConfigError
from .finetune.data import recipe
from .finetune.model import sequences_per_example
from .finetune.passes import examples_per_pass
from .memory import GIB, step_memory
from .model import N_SPECIAL, GPTConfig
from .pretrain.metrics import peak_flops
from .pretrain.schedule import RunShape, run_shape
from .workflow import finetune_jobs, lstm_branch

# Bytes per parameter held while training: fp32 weights, AdamW's two fp32 moments. Checkpoints
# store exactly these (plus small RNG and data-position state).
CHECKPOINT_BYTES_PER_PARAM = 4 + 4 + 4
TAR_BLOCK = 512  # a shard is a tar: each sample one member (a header block + data in blocks)
TAR_END_BYTES = 1024 + 5120  # per shard: end-of-archive blocks + half a 10,240-byte record
# Fine-tuning cost: rough mean tokens of one input sequence (special tokens included) under
# GPT-1's 40k BPE, from the tasks' typical lengths in words (~1.3 tokens a word), not measured
# here. Batches are length-bucketed, so padding adds little; RACE's passages fill most of 512.
TOKENS_PER_SEQUENCE = {
    "CoLA": 13, "SST-2": 15, "MRPC": 57, "STS-B": 30, "QQP": 32, "MNLI": 46, "QNLI": 52,
    "RTE": 72, "WNLI": 40, "SNLI": 32, "SciTail": 45, "RACE": 440, "StoryCloze": 60,
}


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

    from .lstm import language_model

    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = language_model(shape)
    return model.num_params(), model.flops_per_token()


def pretrain_layout(cfg: Mapping[str, Any], gpus: int) -> RunShape:
    """The pre-training run's shape on `gpus` processes; ConfigError when they do not divide
    its slots (the message `gptpipe pretrain` would stop with)."""
    if gpus < 1:
        raise ConfigError(f"{gpus} GPUs: a job needs at least one")
    pre = cfg["pretrain"]
    return run_shape(tokens=pre.tokens, updates=pre.updates, batch_tokens=pre.batch_tokens,
                     slots=pre.slots, micro_batch=pre.micro_batch,
                     context=cfg["shard"].context, world_size=gpus)


def default_gpus(cfg: Mapping[str, Any], most: int = 8) -> int:
    """The most GPUs, up to `most`, whose count divides the slots (tiny's 1 slot: 1)."""
    slots = cfg["pretrain"].slots
    return max(n for n in range(1, most + 1) if slots % n == 0)


def estimate(cfg: Mapping[str, Any], throughput: Throughput = Throughput(),
             gpus: int | None = None, corpus_tokens: int | None = None) -> dict:
    """The figures of one run; `cfg` is `config.validate_params(...)`'s resolved sections.
    `gpus`: processes of the pre-training job (None: `default_gpus`)."""
    gpus = default_gpus(cfg) if gpus is None else gpus
    shape = model_shape(cfg)
    params, flops_per_token = _count(shape)
    layout = pretrain_layout(cfg, gpus)
    tokens = layout.total_tokens
    rate, rate_text = throughput.per_gpu(flops_per_token)
    gpu_hours = tokens / rate / 3600
    memory, flash = (step_memory(shape, params, max(layout.pass_sizes), layout.context,
                                 cfg["pretrain"].precision, gpus, attention_matrices=plain)
                     for plain in (True, False))
    ft = finetune_plan(cfg, shape, params, flops_per_token, rate * flops_per_token)
    out = {
        "parameters": params, "flops_per_token": flops_per_token,
        "pretrain_tokens": tokens, "updates": layout.updates, "batch_tokens": layout.batch_tokens,
        "pretrain_flops": flops_per_token * tokens, "throughput": rate_text,
        "gpu_hours": gpu_hours, "gpus": gpus, "wall_hours": gpu_hours / gpus,
        "layout": {"slots": layout.slots, "seqs_per_slot": layout.seqs_per_slot,
                   "slots_per_gpu": layout.slots_per_rank, "seqs_per_gpu": layout.rank_seqs,
                   "passes": layout.passes, "micro_batch": layout.micro_batch},
        "pretrain_memory": memory.as_dict(), "pretrain_memory_flash": flash.total,
        "checkpoint_bytes": params * CHECKPOINT_BYTES_PER_PARAM,
        "model_bytes": params * 4, "finetune_jobs": sum(t["jobs"] for t in ft),
        "finetune_gpu_hours": sum(t["gpu_hours"] for t in ft), "finetune": ft,
    }
    if lstm_branch(cfg["finetune"]):
        out["lstm"] = lstm_estimate(cfg, shape, throughput)
    if cfg["fetch"].corpus == datacost.ENWIKI_20200501.name:
        out["data_half"] = datacost.data_half(bpe_max_chars=cfg["bpe"].max_chars)
        if not corpus_tokens:  # the data half's estimate stands in until `shard` has run
            corpus_tokens = int(out["data_half"].tokens)
            out["corpus_tokens_estimated"] = True
    if corpus_tokens:
        window = shape.context + 1
        samples = corpus_tokens // window
        token_bytes = 2 if shape.vocab_size <= 65_536 else 4
        member = TAR_BLOCK + math.ceil(window * token_bytes / TAR_BLOCK) * TAR_BLOCK
        shards = math.ceil(samples / cfg["shard"].samples_per_shard)
        out.update(corpus_tokens=corpus_tokens, epochs=tokens / corpus_tokens, shards=shards,
                   shard_bytes=samples * member + shards * TAR_END_BYTES)
    return out


def lstm_estimate(cfg: Mapping[str, Any], shape: GPTConfig, throughput: Throughput) -> dict:
    """Table 5's LSTM branch (job `pretrain_lstm`, variant `lstm`): its network, its own
    pre-training budget (`pretrain.lstm_*`) on one GPU, and its fine-tuning jobs."""
    lstm = dataclasses.replace(shape, arch="lstm")
    params, flops_per_token = _count(lstm)
    pre = cfg["pretrain"].for_lstm()
    tokens = run_shape(tokens=pre.tokens, updates=pre.updates, batch_tokens=pre.batch_tokens,
                       slots=pre.slots, micro_batch=pre.micro_batch, context=shape.context,
                       world_size=1).total_tokens
    rate, _ = throughput.per_gpu(flops_per_token)
    ft = finetune_plan(cfg, lstm, params, flops_per_token, rate * flops_per_token)
    return {"units": lstm.lstm_units, "parameters": params, "flops_per_token": flops_per_token,
            "pretrain_tokens": tokens, "pretrain_flops": flops_per_token * tokens,
            "gpu_hours": tokens / rate / 3600, "finetune_jobs": sum(t["jobs"] for t in ft),
            "finetune_gpu_hours": sum(t["gpu_hours"] for t in ft)}


# --------------------------------------------------------------------------- fine-tuning


def train_examples(spec: tasks.TaskSpec, ft: FinetuneConfig, cap: int) -> int:
    """Published examples of the training split after the config's holdout and cap."""
    split = spec.train_split or ""
    n = spec.sizes.get(split, 0)
    held = ft.holdout.get(spec.name)
    if held is not None and held.from_split == split:
        n = round(n * (1 - held.fraction))
    elif held is not None and held.to_split == split:
        n = round(spec.sizes.get(held.from_split, 0) * held.fraction)
    return min(n, cap) if cap else n


def finetune_plan(cfg: Mapping[str, Any], shape: GPTConfig, params: int, flops_per_token: int,
                  flops_per_s: float) -> list[dict]:
    """Per task: its sequences per example, the peak memory of one forward pass, and the
    GPU-hours of its jobs (training only: epochs x examples x sequences x tokens, at the
    FLOP/s pre-training is planned at; the dev/test predictions add a few percent)."""
    ft = cfg["finetune"]
    jobs: dict[str, int] = {}
    for task, variant, _ in finetune_jobs(ft):
        if (variant == "lstm") == (shape.arch == "lstm"):  # each job costed on its own network
            jobs[task] = jobs.get(task, 0) + 1
    rows = []
    for task, n_jobs in jobs.items():
        spec, rec = tasks.get(task), recipe(ft, task, "full")
        seqs = sequences_per_example(spec.kind, spec.n_choices)
        per_pass = examples_per_pass(rec.batch, seqs, rec.max_len, rec)
        memory, flash = (step_memory(shape, params, per_pass * seqs, rec.max_len, ft.precision,
                                     attention_matrices=plain) for plain in (True, False))
        length = min(TOKENS_PER_SEQUENCE.get(task, rec.max_len), rec.max_len)
        # FLOPs per token at this length: the attention term scales with the sequence (an
        # LSTM's cost per token does not depend on the length).
        flops = flops_per_token - (shape.arch == "transformer") * 12 * shape.n_layer \
            * shape.d_model * (shape.context - length)
        examples = train_examples(spec, ft, rec.max_train_examples)
        hours = rec.epochs * examples * seqs * length * flops / flops_per_s / 3600
        rows.append({"task": task, "seqs_per_example": seqs, "max_len": rec.max_len,
                     "examples_per_pass": per_pass, "memory_bytes": memory.total,
                     "memory_bytes_flash": flash.total,
                     "train_examples": examples, "epochs": rec.epochs,
                     "tokens_per_seq": length, "jobs": n_jobs, "gpu_hours_per_job": hours,
                     "gpu_hours": hours * n_jobs})
    return rows


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError


def _hours(h: float) -> str:
    return f"{h:,.0f}" if h >= 10 else f"{h:.2g}"


def _gib(n: float) -> str:
    return f"{n / GIB:,.1f} GiB"


def _gpu_time(hours: float) -> str:
    if hours >= 1:
        return f"{_hours(hours)} GPU-h"
    return f"{hours * 60:.2g} GPU-min" if hours * 60 >= 1 else f"{hours * 3600:.2g} GPU-s"


def _n(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def render(figures: Mapping[str, Any], scale: str) -> str:
    """The estimate as an aligned text table."""
    f, lay, mem = figures, figures["layout"], figures["pretrain_memory"]
    rows = [
        ("scale", scale),
        ("model", (f"{f['parameters']:,} parameters, {f['flops_per_token'] / 1e9:,.2f} GFLOP "
                   "per token (forward + backward)")),
        ("pre-training", (f"{f['pretrain_tokens']:,} tokens = {f['updates']:,} updates of "
                          f"{f['batch_tokens']:,}; {f['pretrain_flops']:.2e} FLOP")),
        ("layout", (f"{_n(lay['slots'], 'slot')} x {_n(lay['seqs_per_slot'], 'sequence')} per "
                    f"update; on {_n(f['gpus'], 'GPU')} {_n(lay['slots_per_gpu'], 'slot')} = "
                    f"{_n(lay['seqs_per_gpu'], 'sequence')} per GPU in "
                    f"{_n(lay['passes'], 'forward pass')}{'es' if lay['passes'] > 1 else ''} "
                    f"of <= {lay['micro_batch']} (pretrain.micro_batch)")),
        ("GPU memory", (f"~{_gib(mem['total'])} per GPU while pre-training (weights, grads, "
                        f"AdamW {_gib(mem['states'] + mem['copies'])}; activations "
                        f"{_gib(mem['activations'])}; logits {_gib(mem['logits'])}), "
                        f"~{_gib(f['pretrain_memory_flash'])} when SDPA's flash kernel keeps "
                        "no attention matrices (CUDA, bf16); estimates: gptpipe/memory.py")),
        ("throughput", f["throughput"]),
        ("GPU-hours", (f"{_hours(f['gpu_hours'])} ({_hours(f['wall_hours'])} h wall on "
                       f"{_n(f['gpus'], 'GPU')}, pre-training only)")),
        ("checkpoint", (f"{_size(f['checkpoint_bytes'])} each (weights + AdamW moments); the "
                        f"final model {_size(f['model_bytes'])}")),
        ("fine-tuning", (f"{f['finetune_jobs']} jobs (task x variant x seed): "
                         f"{_gpu_time(f['finetune_gpu_hours'])} of training at the FLOP/s above "
                         "(short sequences often run slower); per task, a forward pass of "
                         "examples x sequences of <= max_len tokens and its peak memory "
                         "(plain / flash attention), then the training cost of one job")),
    ]
    for t in f["finetune"]:
        rows.append((f"  {t['task']}", (
            f"{t['examples_per_pass']} x {t['seqs_per_example']} x {t['max_len']}: "
            f"<= {_gib(t['memory_bytes'])} / {_gib(t['memory_bytes_flash'])}; "
            f"{t['train_examples']:,} examples x "
            f"{t['epochs']} epochs x {t['seqs_per_example']} x ~{t['tokens_per_seq']} tokens: "
            f"{_gpu_time(t['gpu_hours_per_job'])} x {_n(t['jobs'], 'job')}")))
    if "lstm" in f:
        m = f["lstm"]
        rows.append(("LSTM branch", (
            f"{m['units']:,} units, {m['parameters']:,} parameters, "
            f"{m['flops_per_token'] / 1e9:,.2f} GFLOP per token; {m['pretrain_tokens']:,} "
            f"tokens (pretrain.lstm_*): {_hours(m['gpu_hours'])} GPU-h at the rate above; "
            f"{m['finetune_jobs']} fine-tuning jobs (variant lstm): "
            f"{_gpu_time(m['finetune_gpu_hours'])}")))
    if "corpus_tokens" in f:
        rows.append(("shards", (f"{f['shards']:,} shards, {_size(f['shard_bytes'])} for "
                                f"{f['corpus_tokens']:,} corpus tokens ({f['epochs']:.1f} "
                                "epochs of it)" + (", estimated below" if f.get(
                                    "corpus_tokens_estimated") else ""))))
    else:
        rows.append(("shards", "corpus size unknown: give --corpus-tokens (or run `shard`)"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    if "data_half" in f:  # CPU-hours, memory and disk of ingest, bpe and shard on the dump
        lines += datacost.plan_lines(f["data_half"])
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gptpipe plan", description="estimate a run's cost from params.yaml, before it runs")
    parser.add_argument("--params", default="params.yaml", metavar="FILE",
                        help="params file (every section is read; default: params.yaml)")
    parser.add_argument("--scale", choices=SCALES, default=None,
                        help="preset to resolve against (default: the file's `scale`)")
    parser.add_argument("--gpus", type=int, default=None,
                        help="GPUs (processes) of the pre-training job: its layout is checked "
                             "for this count (default: the most up to 8 that divide "
                             "pretrain.slots)")
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
            figures = estimate(cfg, throughput, args.gpus, corpus)
        except ValueError as exc:
            parser.error(str(exc))
        scale = params.get("scale", "tiny")
        sys.stdout.write((json.dumps(figures, indent=2, default=dataclasses.asdict) if args.json
                          else render(figures, scale)) + "\n")

    return run_cli("plan", argv, parser, body)

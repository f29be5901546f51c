"""Training-step throughput: gptpipe's GPT against Hugging Face's `OpenAIGPTLMHeadModel`.

One step = forward, cross-entropy, backward, AdamW update, on random tokens. Both models get the
same weights, the same loss and the same optimizer settings; their runs are interleaved
(ours, HF, ours, HF, ... step by step) so that drift in the machine's speed hits both alike.

    python benchmarks/train_step.py                      # CPU, fp32, 4x256, context 256, batch 8
    python benchmarks/train_step.py --device cuda --preset gpt1 --dtype bf16 --compile

On CUDA it also prints MFU: FLOPs per token (6N + 12·L·d·T, `GPT.flops_per_token`) x tokens/s
over the device's dense peak, looked up by name; an unknown device gets no MFU figure.

`--gpu-check` is the prepared check for one lent H100/H200 (about 4 minutes). It prints, as
Markdown tables for README: pre-training updates at the paper's shape in bf16, eager and with
`torch.compile` (tokens/s, MFU, peak memory); the peak memory of RACE-shaped fine-tuning updates
by examples per pass (what `finetune`'s per-pass micro-batch should be); and one update's loss
on the CPU and on CUDA side by side, from the same weights on the same batch. `--gpu-check
--dry-run` runs the same code on the CPU at micro shapes, to prove the script works.

    python benchmarks/train_step.py --gpu-check             # CUDA: gpt1 shapes
    python benchmarks/train_step.py --gpu-check --dry-run   # CPU: micro shapes, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import torch
import torch.nn.functional as F

from gptpipe.finetune.model import TaskModel, task_loss
from gptpipe.hf import hf_config, to_hf_state_dict
from gptpipe.model import GPT, GPTConfig
from gptpipe.optim import adamw
from gptpipe.pretrain import metrics

# Dense (no sparsity) peak FLOP/s by device-name fragment and dtype; first match wins.
PEAK_FLOPS = [
    ("H100 PCIe", {"bf16": 756e12, "fp32": 51e12}),
    ("H100", {"bf16": 989e12, "fp32": 67e12}),
    ("H200", {"bf16": 989e12, "fp32": 67e12}),
    ("A100", {"bf16": 312e12, "fp32": 19.5e12}),
]


def peak_flops(device_name: str, dtype: str) -> float | None:
    for fragment, peaks in PEAK_FLOPS:
        if fragment in device_name:
            return peaks.get(dtype)
    return None


def build(args: argparse.Namespace) -> tuple[GPT, torch.nn.Module | None]:
    if args.preset:
        cfg = GPTConfig.preset(args.preset, vocab_size=args.vocab, context=args.context)
    else:
        cfg = GPTConfig(vocab_size=args.vocab, context=args.context, n_layer=4, n_head=4,
                        d_model=256, d_ff=1024)
    ours = GPT(cfg, generator=torch.Generator().manual_seed(0))
    hf = None
    if not args.no_hf:
        import transformers

        hf = transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(**hf_config(cfg)))
        hf.load_state_dict(to_hf_state_dict(ours.state_dict()), strict=False)
        hf.tie_weights()
    return ours, hf


def make_step(model: torch.nn.Module, is_hf: bool, args: argparse.Namespace):
    device = torch.device(args.device)
    model.to(device).train()
    opt = adamw(model, lr=2.5e-4, weight_decay=0.01)  # pre-training's groups; fused on CUDA
    fwd = model
    if args.compile:
        fwd = torch.compile(model, backend=getattr(args, "compile_backend", "inductor"))
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.dtype == "bf16"
                else contextlib.nullcontext())
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, args.vocab, (args.batch, args.context + 1), generator=gen).to(device)
    inputs, targets = x[:, :-1], x[:, 1:]

    def step() -> None:
        with autocast:
            logits = fwd(inputs).logits if is_hf else fwd(inputs)[0]
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def timed(step, device: str) -> float:
    """Seconds for one step, waiting for the device before and after."""
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- --gpu-check

LM_WEIGHT = 0.5  # the paper's λ for the auxiliary LM loss while fine-tuning (§3.2)
FT_EXAMPLES = (1, 2, 4, 8, 16, 32)  # RACE examples per pass; the paper's batch is 32
GiB = 2**30


def _seeded_gpt(cfg: GPTConfig) -> GPT:
    return GPT(cfg, generator=torch.Generator().manual_seed(0))


def _peak_memory(device: torch.device, reset: bool = False) -> int | None:
    if device.type != "cuda":
        return None
    if reset:
        torch.cuda.reset_peak_memory_stats()
    return torch.cuda.max_memory_allocated()


def _gib(n: int | None) -> str:
    return "n/a (CPU)" if n is None else f"{n / GiB:.1f} GiB"


def pretrain_rows(cfg: GPTConfig, device: torch.device, batch: int, steps: int, repeats: int,
                  dry_run: bool) -> list[str]:
    """Pre-training steps in bf16 autocast, eager and compiled: tokens/s, MFU, peak memory."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = metrics.peak_flops(name, "bf16")
    rows = []
    for compiled in (False, True):
        model = _seeded_gpt(cfg)
        args = argparse.Namespace(device=device.type, compile=compiled, dtype="bf16",
                                  vocab=cfg.vocab_size, context=cfg.context, batch=batch,
                                  compile_backend="eager" if dry_run else "inductor")
        step = make_step(model, False, args)
        first = timed(step, device.type)  # compiles, when compiled; then a few to settle
        for _ in range(2):
            timed(step, device.type)
        _peak_memory(device, reset=True)
        rates = [batch * cfg.context * steps / sum(timed(step, device.type) for _ in range(steps))
                 for _ in range(repeats)]
        rate = statistics.median(rates)
        util = metrics.mfu(model.flops_per_token(cfg.context), rate, peak, 1)
        rows.append(f"| {'yes' if compiled else 'no'} | {rate:,.0f} | "
                    f"{'n/a' if util is None else f'{util:.1%}'} | "
                    f"{_gib(_peak_memory(device))} | {first:.1f} |")
        del step, model
        torch.compiler.reset()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def finetune_rows(cfg: GPTConfig, device: torch.device, sizes: tuple[int, ...],
                  choices: int = 4) -> list[str]:
    """Peak memory of one fine-tuning update (forward, task + λ·LM loss, backward, AdamW) whose
    pass holds N RACE-shaped examples (`choices` sequences of the full context each)."""
    model = TaskModel(_seeded_gpt(cfg), "multiple_choice", 1, n_choices=choices).to(device)
    model.train()
    opt = adamw(model, lr=6.25e-5, weight_decay=0.01)
    gen = torch.Generator().manual_seed(2)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)

    def update(n: int) -> None:
        ids = torch.randint(0, cfg.vocab_size, (n * choices, cfg.context), generator=gen)
        extract = torch.full((n * choices,), cfg.context - 1)
        labels = torch.randint(0, choices, (n,), generator=gen)
        ids, extract, labels = ids.to(device), extract.to(device), labels.to(device)
        with autocast:
            scores, lm = model(ids, extract, with_lm=True)
            loss = task_loss("multiple_choice", scores, labels) + LM_WEIGHT * lm
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    update(1)  # AdamW's moments exist from here on, as in every update but the first
    rows = []
    for n in sizes:
        try:
            update(n)  # warm-up at this shape
            _peak_memory(device, reset=True)
            seconds = timed(lambda n=n: update(n), device.type)
            mem = _gib(_peak_memory(device))
            rows.append(f"| {n} | {n * choices * cfg.context:,} | {mem} | {n / seconds:,.1f} |")
        except torch.cuda.OutOfMemoryError:
            opt.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            rows.append(f"| {n} | {n * choices * cfg.context:,} | out of memory | — |")
            break  # a larger pass needs more
    return rows


def loss_rows(cfg: GPTConfig, device: torch.device, batch: int) -> list[str]:
    """The loss on one batch before and after one AdamW update from the same weights, per
    device and precision. Dropout is off (eval mode) so every column computes the same function:
    the differences are arithmetic alone."""
    state = _seeded_gpt(cfg).state_dict()
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.context + 1),
                      generator=torch.Generator().manual_seed(1))
    cpu = torch.device("cpu")
    settings = [("CPU fp32", cpu, False, False)]
    if device.type == "cuda":
        settings += [("CUDA fp32", device, False, False), ("CUDA fp32, TF32", device, False, True),
                     ("CUDA bf16", device, True, True)]
    else:  # the dry run: the same code, the CPU standing in
        settings += [("CPU bf16", cpu, True, False)]
    tf32 = torch.backends.cuda.matmul.allow_tf32
    losses = {}
    for label, dev, bf16, allow_tf32 in settings:
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32  # pretrain turns it on for CUDA
        model = GPT(cfg)
        model.load_state_dict(state)
        model.to(dev).eval()
        opt = adamw(model, lr=2.5e-4, weight_decay=0.01)
        inputs, targets = x[:, :-1].to(dev), x[:, 1:].to(dev)
        autocast = (torch.autocast(dev.type, dtype=torch.bfloat16) if bf16
                    else contextlib.nullcontext())
        with autocast:
            before = model(inputs, targets)[1]
        before.backward()
        opt.step()
        with torch.no_grad(), autocast:
            after = model(inputs, targets)[1]
        losses[label] = (before.item(), after.item())
        del model, opt
    torch.backends.cuda.matmul.allow_tf32 = tf32
    ref = losses["CPU fp32"]
    rows = ["| | " + " | ".join(losses) + " |", "|---" * (len(losses) + 1) + "|"]
    for i, when in enumerate(("before the update", "after one update")):
        rows.append(f"| loss {when} | " + " | ".join(f"{v[i]:.6f}" for v in losses.values())
                    + " |")
        rows.append(f"| minus CPU fp32, {when} | "
                    + " | ".join(f"{v[i] - ref[i]:+.1e}" for v in losses.values()) + " |")
    return rows


def run_gpu_check(dry_run: bool, batch: int | None) -> None:
    """Print the GPU check's Markdown tables (see the module docstring)."""
    if not dry_run and not torch.cuda.is_available():
        raise SystemExit("--gpu-check needs a CUDA device; --dry-run checks the script on the "
                         "CPU at micro shapes")
    device = torch.device("cpu" if dry_run else "cuda")
    cfg = GPTConfig.preset("micro" if dry_run else "gpt1")
    batch = batch or (4 if dry_run else 32)
    steps, repeats = (2, 2) if dry_run else (10, 3)
    sizes = FT_EXAMPLES[:2] if dry_run else FT_EXAMPLES
    name = "CPU (dry run: micro shapes, not figures)" if dry_run else torch.cuda.get_device_name()
    shape = (f"{cfg.n_layer} x {cfg.d_model}, {cfg.n_head} heads, context {cfg.context}, "
             f"vocab {cfg.vocab_size:,}")
    t0 = time.perf_counter()
    print(f"#### Train-step check: {name}, torch {torch.__version__}\n")
    print(f"Pre-training update, {shape}: {batch} x {cfg.context} tokens, bf16 autocast, "
          "AdamW; MFU over the bf16 dense peak (gptpipe.pretrain.metrics).\n")
    print("| torch.compile | tokens/s | MFU | peak memory | first step (s, compiling included) |")
    print("|---|---|---|---|---|")
    print("\n".join(pretrain_rows(cfg, device, batch, steps, repeats, dry_run)), flush=True)
    print(f"\nFine-tuning update, RACE shape (4 choices x {cfg.context} tokens per example, "
          f"task + {LM_WEIGHT} x LM loss, bf16 autocast, AdamW): peak memory by examples per "
          "pass.\n")
    print("| examples per pass | tokens per pass | peak memory | examples/s |")
    print("|---|---|---|---|")
    print("\n".join(finetune_rows(cfg, device, sizes)), flush=True)
    cmp_batch = 2 if dry_run else 4
    print(f"\nOne update from the same seed-0 weights on the same {cmp_batch} x {cfg.context} "
          "random tokens (dropout off, lr 2.5e-4).\n")
    print("\n".join(loss_rows(cfg, device, cmp_batch)))
    print(f"\n(check took {time.perf_counter() - t0:.0f} s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--preset", choices=["gpt1", "tiny", "micro"], default=None,
                   help="model shape (default: 4 layers, 256 wide, 4 heads)")
    p.add_argument("--vocab", type=int, default=None, help="default: 8192, or 40483 for gpt1")
    p.add_argument("--context", type=int, default=None, help="default: 256, or 512 for gpt1")
    p.add_argument("--batch", type=int, default=None,
                   help="sequences per step (default: 8; with --gpu-check: 32)")
    p.add_argument("--steps", type=int, default=10, help="steps per timed repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads, fixed (default: 2; with --gpu-check: every core, "
                        "for its CPU column)")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--no-hf", action="store_true", help="time gptpipe's model only")
    p.add_argument("--gpu-check", action="store_true",
                   help="the prepared CUDA check (pre-training MFU with and without compile, "
                        "RACE-shape fine-tuning memory, CPU vs CUDA loss): a Markdown table")
    p.add_argument("--dry-run", action="store_true",
                   help="with --gpu-check: on the CPU at micro shapes, to test the script")
    args = p.parse_args()
    if args.dry_run and not args.gpu_check:
        p.error("--dry-run goes with --gpu-check")
    if args.gpu_check:
        torch.set_num_threads(args.threads or (2 if args.dry_run else os.cpu_count() or 2))
        run_gpu_check(dry_run=args.dry_run, batch=args.batch)
        return
    args.batch, args.threads = args.batch or 8, args.threads or 2
    paper = args.preset == "gpt1"
    args.vocab = args.vocab or (40_478 + 5 if paper else 8_192)
    args.context = args.context or (512 if paper else 256)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ours, hf = build(args)
    runs = {"gptpipe": make_step(ours, False, args)}
    if hf is not None:
        runs["hf"] = make_step(hf, True, args)
    for _ in range(args.warmup):
        for step in runs.values():
            timed(step, args.device)
    # Steps alternate one by one (ours, HF, ours, ...), so load from other processes on a shared
    # machine falls on both alike; each repeat sums `steps` steps per model.
    tokens = args.batch * args.context * args.steps
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.repeats):
        seconds = dict.fromkeys(runs, 0.0)
        for _ in range(args.steps):
            for name, step in runs.items():
                seconds[name] += timed(step, args.device)
        for name in runs:
            rates[name].append(tokens / seconds[name])
        print(f"repeat {r + 1}: " + "  ".join(f"{n} {v[-1]:,.0f} tok/s" for n, v in rates.items()))

    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"device {name}, {args.threads} threads, {args.dtype}, compile={args.compile}, "
          f"{ours.num_params():,} parameters, batch {args.batch} x {args.context} tokens")
    median = {n: statistics.median(v) for n, v in rates.items()}
    for n, v in median.items():
        print(f"{n:8s} median {v:,.0f} tok/s  (min {min(rates[n]):,.0f}, max {max(rates[n]):,.0f})")
    if "hf" in median:
        paired = statistics.median(a / b for a, b in zip(rates["gptpipe"], rates["hf"]))
        print(f"ratio gptpipe / hf: {paired:.2f}x (median over repeats)")
    if args.device == "cuda":
        peak = peak_flops(name, args.dtype)
        flops = ours.flops_per_token(args.context) * median["gptpipe"]
        if peak is None:
            print(f"MFU unknown: no {args.dtype} peak tabulated for {name!r} "
                  f"({flops / 1e12:.1f} TFLOP/s achieved)")
        else:
            print(f"MFU {flops / peak:.1%} ({flops / 1e12:.1f} of {peak / 1e12:.0f} TFLOP/s)")


if __name__ == "__main__":
    main()

"""Training-step throughput: gptpipe's GPT against Hugging Face's `OpenAIGPTLMHeadModel`.

One step = forward, cross-entropy, backward, AdamW update, on random tokens. Both models get the
same weights, the same loss and the same optimizer settings; their runs are interleaved
(ours, HF, ours, HF, ... step by step) so that drift in the machine's speed hits both alike.

    python benchmarks/train_step.py                      # CPU, fp32, 4x256, context 256, batch 8
    python benchmarks/train_step.py --device cuda --preset gpt1 --dtype bf16 --compile

On CUDA it also prints MFU: FLOPs per token (6N + 12·L·d·T, `GPT.flops_per_token`) x tokens/s
over the device's dense peak, looked up by name; an unknown device gets no MFU figure.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F

from gptpipe.hf import hf_config, to_hf_state_dict
from gptpipe.model import GPT, GPTConfig
from gptpipe.optim import adamw

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
        fwd = torch.compile(model)
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--preset", choices=["gpt1", "tiny", "micro"], default=None,
                   help="model shape (default: 4 layers, 256 wide, 4 heads)")
    p.add_argument("--vocab", type=int, default=None, help="default: 8192, or 40483 for gpt1")
    p.add_argument("--context", type=int, default=None, help="default: 256, or 512 for gpt1")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10, help="steps per timed repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (fixed)")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--no-hf", action="store_true", help="time gptpipe's model only")
    args = p.parse_args()
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

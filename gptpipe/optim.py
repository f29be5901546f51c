"""The optimizer and learning-rate schedules of pre-training and fine-tuning, in one place.

Both stages use AdamW (Loshchilov & Hutter 2019) with the paper's decay rule and a linear
warm-up; they differ in what follows it. GPT-1 §4.1, pre-training: "the learning rate was
increased linearly from zero over the first 2000 updates and annealed to 0 using a cosine
schedule"; fine-tuning: "linear learning rate decay schedule with warmup over 0.2% of
training". Step counts here are updates (optimizer steps), 0-based.
"""

from __future__ import annotations

import math

import torch


def adamw(
    model: torch.nn.Module,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over `model`'s trainable parameters, decay on every matrix only.

    The paper decays "all non bias or gain weights" (§4.1), so the 2-D tensors (linear weights
    *and* both embeddings, as the original code does) get `weight_decay` (group 0), and the 1-D
    ones (biases, LayerNorm gains and biases) get none (group 1). `fused=None` uses the fused
    kernel exactly when every parameter is on CUDA.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    if fused is None:
        fused = all(p.is_cuda for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every parameter group the rate `lr` (the schedules are global, not per group)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def _warmup(update: int, peak: float, warmup: int) -> float:
    # `update + 1`: the first update already moves (a zero rate would waste it), and update
    # `warmup - 1` reaches the peak.
    return peak * (update + 1) / warmup


def cosine_lr(update: int, peak: float, warmup: int, total: int) -> float:
    """Pre-training's rate for the 0-based `update` of `total` updates (GPT-1 §4.1).

    Linear warm-up over the first `warmup` updates, `peak * (update + 1) / warmup`, then half a
    cosine from `peak` down to 0 at update `total` (the last update, `total - 1`, gets a small
    positive rate); updates past `total` stay at 0.
    """
    if update < warmup:
        return _warmup(update, peak, warmup)
    span = max(total - warmup, 1)
    progress = min((update - warmup) / span, 1.0)
    return 0.5 * peak * (1.0 + math.cos(math.pi * progress))


def linear_lr(update: int, peak: float, warmup: int, total: int) -> float:
    """Fine-tuning's rate for the 0-based `update` of `total` updates (GPT-1 §4.1, OpenAI's
    `warmup_linear`).

    Linear warm-up over the first `warmup` updates, `peak * (update + 1) / warmup`, then linear
    from `peak` down to `peak / (total - warmup)` at the last update (0 at update `total`).
    """
    if update < warmup:
        return _warmup(update, peak, warmup)
    return peak * (total - update) / max(total - warmup, 1)


def warmup_updates(fraction: float, total: int) -> int:
    """Warm-up length in updates for a `fraction` of `total` updates, rounded up (so any
    fraction > 0 warms up over at least one update); 0 when `fraction` is 0. The paper's 0.2%
    of a 1,000-update run is 2 updates."""
    return math.ceil(fraction * total) if fraction > 0 else 0

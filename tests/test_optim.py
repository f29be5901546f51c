"""The shared optimizer and learning-rate schedules (gptpipe.optim), used by both training stages."""

from __future__ import annotations

import math

import pytest
import torch

from gptpipe.model import GPT, GPTConfig
from gptpipe.optim import adamw, cosine_lr, linear_lr, set_lr, warmup_updates


def _micro() -> GPT:
    return GPT(GPTConfig.preset("micro", vocab_size=97), generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------- AdamW


def test_optimizer_decays_matrices_and_embeddings_only():
    model = _micro()
    opt = adamw(model, lr=2.5e-4, weight_decay=0.01)
    decay, no_decay = opt.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = [names[id(p)] for p in decay["params"]]
    plain = [names[id(p)] for p in no_decay["params"]]
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert {"wte.weight", "wpe.weight", "h.0.attn.c_attn.weight", "h.1.mlp.c_proj.weight"} \
        <= set(decayed)
    assert {"h.0.attn.c_attn.bias", "h.0.ln_1.weight", "h.1.ln_2.bias"} <= set(plain)
    assert all(n.endswith("bias") or ".ln_" in n for n in plain)
    assert set(decayed) | set(plain) == set(names.values()) and not set(decayed) & set(plain)
    assert len(decayed) == 2 + 4 * 2  # two embeddings, four matrices per block
    # Each group keeps the parameters' own order: a checkpoint's optimizer state maps by index.
    order = [n for n, _ in model.named_parameters()]
    assert decayed == [n for n in order if n in set(decayed)]
    assert plain == [n for n in order if n in set(plain)]
    assert opt.defaults["fused"] is False  # CPU parameters: no fused kernel by default
    assert opt.defaults["lr"] == 2.5e-4
    assert opt.defaults["betas"] == (0.9, 0.999) and opt.defaults["eps"] == 1e-8


def test_optimizer_passes_betas_eps_and_skips_frozen_parameters():
    model = _micro()
    model.wpe.weight.requires_grad_(False)
    opt = adamw(model, lr=1e-3, weight_decay=0.1, betas=(0.8, 0.95), eps=1e-6)
    assert opt.defaults["betas"] == (0.8, 0.95) and opt.defaults["eps"] == 1e-6
    assert all(p is not model.wpe.weight for g in opt.param_groups for p in g["params"])
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters())) - 1


def test_set_lr_reaches_every_group():
    opt = adamw(_micro(), lr=1e-3, weight_decay=0.01)
    set_lr(opt, 3e-5)
    assert [g["lr"] for g in opt.param_groups] == [3e-5, 3e-5]


# --------------------------------------------------------------------------- pre-training: cosine


def test_warmup_is_linear_from_zero_to_the_peak():
    peak, warm, total = 2.5e-4, 2000, 10_000
    assert cosine_lr(0, peak, warm, total) == pytest.approx(peak / warm)
    assert cosine_lr(999, peak, warm, total) == pytest.approx(peak * 1000 / warm)
    assert cosine_lr(1999, peak, warm, total) == pytest.approx(peak)
    rates = [cosine_lr(s, peak, warm, total) for s in range(warm)]
    assert all(b > a for a, b in zip(rates, rates[1:]))


def test_cosine_anneals_to_zero():
    peak, warm, total = 1.0, 10, 110
    assert cosine_lr(10, peak, warm, total) == 1.0
    assert cosine_lr(60, peak, warm, total) == pytest.approx(0.5)  # half-way: cos(pi/2) = 0
    assert cosine_lr(35, peak, warm, total) == 0.5 * (1 + math.cos(math.pi / 4))
    assert 0 < cosine_lr(109, peak, warm, total) < 1e-3
    assert cosine_lr(110, peak, warm, total) == pytest.approx(0.0, abs=1e-12)
    assert cosine_lr(500, peak, warm, total) == cosine_lr(110, peak, warm, total)  # stays at 0
    rates = [cosine_lr(s, peak, warm, total) for s in range(warm, total)]
    assert all(b < a for a, b in zip(rates, rates[1:]))


def test_no_warmup_starts_at_the_peak():
    assert cosine_lr(0, 3e-4, 0, 100) == 3e-4
    assert linear_lr(0, 3e-4, 0, 100) == 3e-4


# --------------------------------------------------------------------------- fine-tuning: linear


def test_fine_tuning_warms_up_then_decays_linearly_to_zero():
    total, warm = 1000, warmup_updates(0.002, 1000)  # the paper's 0.2% of training
    assert warm == 2
    lrs = [linear_lr(s, 1.0, warm, total) for s in range(total)]
    assert lrs[:3] == [0.5, 1.0, 1.0]
    assert lrs[500] == (1000 - 500) / 998
    assert lrs[-1] == 1 / 998 and all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    assert linear_lr(total, 1.0, warm, total) == 0.0


def test_warmup_updates_round_up_and_zero_means_none():
    assert warmup_updates(0.0, 1000) == 0
    assert warmup_updates(0.002, 10) == 1  # 0.02 updates: still one
    assert warmup_updates(0.002, 1001) == 3


def test_both_schedules_share_the_warmup_exactly():
    peak, warm = 6.25e-5, 7
    for s in range(warm):
        assert cosine_lr(s, peak, warm, 100) == linear_lr(s, peak, warm, 100) \
            == peak * (s + 1) / warm
    assert cosine_lr(warm, peak, warm, 100) == linear_lr(warm, peak, warm, 100) == peak

"""GPU memory estimates (gptpipe/memory.py) and the fine-tuning part of `gptpipe plan`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gptpipe import tasks
from gptpipe.config import load_params, validate_params
from gptpipe.memory import activation_bytes, logits_bytes, step_memory
from gptpipe.model import GPT, GPTConfig
from gptpipe.plan import Throughput, estimate, train_examples
from gptpipe.workflow import finetune_jobs

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
SMALL = GPTConfig(vocab_size=1_029, context=64, n_layer=2, n_head=2, d_model=64, d_ff=256)


def test_step_memory_by_hand():
    # per layer and token: (7 x 64 + 2 x 256) x 2 + 2 x 64 x 4 + 2 x 64 + 2 x 64 x (9 + 2)
    per_token = 960 * 2 + 512 + 128 + 1_408
    m = step_memory(SMALL, 1_000, seqs=4, seq_len=64, precision="bf16", processes=2)
    assert m.activations == 2 * 4 * 64 * per_token
    assert m.logits == 4 * 64 * 1_029 * (2 + 8 + 2)
    assert (m.states, m.copies) == (20_000, 2_000)  # 16 P + DDP's buckets; bf16 weight copies
    fp32 = step_memory(SMALL, 1_000, seqs=4, seq_len=64, precision="fp32")
    assert (fp32.states, fp32.copies) == (16_000, 0)
    assert fp32.logits == 4 * 64 * 1_029 * 12


def test_activation_estimate_is_close_to_what_autograd_keeps():
    """On CPU in fp32 (the plain attention kernel, which keeps the attention matrices): the
    forward pass's saved tensors and its logits, against the formula."""
    torch.manual_seed(0)
    model = GPT(SMALL).train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    x = torch.randint(0, SMALL.vocab_size, (4, 64))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits, _ = model(x, x)
    kept[logits.untyped_storage().data_ptr()] = logits.untyped_storage().nbytes()
    estimate_ = (activation_bytes(SMALL, 4, 64, 4)
                 + logits_bytes(SMALL, 4, 64, 4, backward=False))
    assert sum(kept.values()) == pytest.approx(estimate_, rel=0.15)


def test_train_examples_apply_holdout_and_cap():
    cfg = validate_params(PARAMS | {"scale": "gpt1"})["finetune"]
    assert train_examples(tasks.get("StoryCloze"), cfg, 0) == 1_497  # 1,871 less 20% held out
    assert train_examples(tasks.get("RACE"), cfg, 0) == 87_866
    tiny = validate_params(PARAMS | {"scale": "tiny"})["finetune"]
    assert train_examples(tasks.get("QQP"), tiny, 0) == round(363_846 * 0.9)
    assert train_examples(tasks.get("QNLI"), tiny, 0) == round(5_463 * 0.5)  # dev -> train
    assert train_examples(tasks.get("QNLI"), tiny, 256) == 256


def test_a_task_override_of_micro_batch_reaches_the_plan():
    cfg = validate_params(PARAMS | {"scale": "gpt1", "finetune": {
        "overrides": {"RACE": {"micro_batch": 2}}}})
    rows = {t["task"]: t for t in estimate(cfg)["finetune"]}
    assert rows["RACE"]["examples_per_pass"] == 2 and rows["SST-2"]["examples_per_pass"] == 16


def test_every_finetune_job_is_costed():
    cfg = validate_params(PARAMS | {"scale": "gpt1"})
    f = estimate(cfg, Throughput(tokens_per_s=100_000.0), gpus=8)
    rows = {t["task"]: t for t in f["finetune"]}
    # 87 jobs, Figure 2's 13 transfer<k> x 2 tasks x 3 seeds, and Table 5's LSTM branch (8 tasks
    # x 3 seeds), the last costed on its own network, under "lstm".
    assert f["finetune_jobs"] + f["lstm"]["finetune_jobs"] == len(
        finetune_jobs(cfg["finetune"])) == 87 + 78 + 24
    assert set(rows) == set(cfg["finetune"].tasks)
    # sequences per example, and examples per pass from finetune.max_tokens_per_pass 8,192
    assert {t: (rows[t]["seqs_per_example"], rows[t]["examples_per_pass"])
            for t in ("SST-2", "MRPC", "STS-B", "RACE", "StoryCloze")} == {
        "SST-2": (1, 16), "MRPC": (2, 8), "STS-B": (2, 8), "RACE": (4, 4), "StoryCloze": (2, 8)}
    race = rows["RACE"]
    assert (race["seqs_per_example"], race["max_len"], race["epochs"]) == (4, 512, 3)
    flops_per_s = 100_000.0 * f["flops_per_token"]  # the planned throughput, as FLOP/s
    length = race["tokens_per_seq"]
    flops = f["flops_per_token"] - 12 * 12 * 768 * (512 - length)
    hours = 3 * 87_866 * 4 * length * flops / flops_per_s / 3600
    assert race["gpu_hours_per_job"] == pytest.approx(hours)
    assert race["gpu_hours"] == pytest.approx(hours * race["jobs"])
    assert f["finetune_gpu_hours"] == pytest.approx(sum(t["gpu_hours"] for t in rows.values()))
    # max_tokens_per_pass sizes every task's pass to 8,192 padded tokens: the same peak
    assert rows["SST-2"]["memory_bytes"] == rows["StoryCloze"]["memory_bytes"] == race[
        "memory_bytes"] < f["pretrain_memory"]["total"] * 2

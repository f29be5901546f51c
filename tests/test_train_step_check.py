"""benchmarks/train_step.py --gpu-check: its measuring code runs on the CPU at a toy shape.

The check itself needs a lent GPU and is run by hand; this keeps the code it runs there working
as the model and fine-tuning APIs it calls change.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch

from gptpipe.model import GPTConfig

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_step.py"
TOY = GPTConfig(vocab_size=64, context=16, n_layer=1, n_head=2, d_model=16, d_ff=32)


def _bench():
    spec = importlib.util.spec_from_file_location("train_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip("|").split("|")]


def test_finetune_rows_give_one_row_per_pass_size():
    rows = _bench().finetune_rows(TOY, torch.device("cpu"), (1, 3))
    assert [_cells(r)[:3] for r in rows] == [["1", "64", "n/a (CPU)"], ["3", "192", "n/a (CPU)"]]


def test_loss_rows_compare_the_same_update_across_precisions():
    rows = _bench().loss_rows(TOY, torch.device("cpu"), 2)
    assert _cells(rows[0])[1:] == ["CPU fp32", "CPU bf16"]
    before, diff_before, after = (_cells(rows[i]) for i in (2, 3, 4))
    assert abs(float(before[1]) - math.log(TOY.vocab_size)) < 0.5  # random init, random tokens
    assert float(after[1]) < float(before[1])  # one AdamW step on the batch it was scored on
    assert float(diff_before[1]) == 0.0 and abs(float(diff_before[2])) < 0.05

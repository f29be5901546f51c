"""Issue #12 §2: the gpt1 recipe's slot layout (64 slots of one sequence, forward passes of at
most `micro_batch`) gives the same run on 1, 2 and 4 processes (torchrun, gloo on CPU), and a
run checkpointed on 2 processes continues on 1 as if it had never stopped.

The model is the micro one with 64-token sequences: 64 x 64 tokens per update, 4 updates.
Dropout is off: its masks come from each process's own RNG, so they differ by design.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from pretrain_data import pretrain_cmd, run
from safetensors.torch import load_file

SETS = ("slots=64", "batch_tokens=4096", "micro_batch=8", "updates=4", "warmup_updates=1",
        "eval_every=4", "log_every=1", "checkpoint_every=2", "keep_checkpoints=4",
        "model.embd_dropout=0", "model.attn_dropout=0", "model.resid_dropout=0")
# Processes sum the same fp32 terms in another order (per-pass accumulation, then DDP's
# all-reduce), so weights differ by rounding only. Measured differences after 4 updates are
# ~1e-7; a different data order or a missed weighting moves weights by ~lr = 1e-3.
RTOL, ATOL = 1e-4, 1e-5
WEIGHTS = "out/model/model.safetensors"


def _train(micro, out, nproc: int, *extra: str):
    res = run(pretrain_cmd(*micro, out, *SETS, *extra), {"GPTPIPE_NPROC": str(nproc)})
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def runs(micro, tmp_path_factory):
    base = tmp_path_factory.mktemp("any-gpus")
    for n in (1, 2, 4):
        _train(micro, base / f"p{n}", n)
    return base


def _assert_same_weights(a, b):
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=RTOL, atol=ATOL, msg=k)


def _records(out):
    return [json.loads(line) for line in (out / "out/metrics.jsonl").read_text().splitlines()]


def _slot_positions(ck) -> dict:
    """Every slot's saved loader position, from all of a checkpoint's rank files."""
    files = sorted(ck.glob("rank-*.pt"))
    states = [torch.load(f, weights_only=True)["slots"] for f in files]
    return {k: (v["epoch"], v["batch"]) for s in states for k, v in s.items()}


def test_gpt1_layout_gives_the_same_run_on_1_2_and_4_processes(runs):
    for n in (2, 4):
        _assert_same_weights(runs / "p1" / WEIGHTS, runs / f"p{n}" / WEIGHTS)
        one, other = _records(runs / "p1"), _records(runs / f"p{n}")
        assert [r["step"] for r in one] == [r["step"] for r in other] == [1, 2, 3, 4]
        for a, b in zip(one, other):
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-5), (n, a["step"])
        assert json.loads((runs / f"p{n}/out/metrics.json").read_text())["processes"] == n
    # Every process count read each of the 64 slots exactly as far.
    (ck1,) = (runs / "p1/ck").glob("*/step-00000004")
    positions = _slot_positions(ck1)
    assert sorted(positions, key=int) == [str(s) for s in range(64)]
    for n in (2, 4):
        (ck,) = (runs / f"p{n}/ck").glob("*/step-00000004")
        assert len(list(ck.glob("rank-*.pt"))) == n and _slot_positions(ck) == positions
    # The comparison means something: training moved the weights by far more than the
    # tolerance.
    (ck2,) = (runs / "p1/ck").glob("*/step-00000002")
    start, end = load_file(ck2 / "model.safetensors"), load_file(runs / "p1" / WEIGHTS)
    assert max((end[k] - start[k]).abs().max().item() for k in end) > 100 * ATOL


def test_checkpoint_on_2_processes_resumes_on_1(runs, tmp_path, micro):
    """Take the 2-process run's checkpoint of update 2 (its later one removed, as if it had
    stopped there) and finish on one process, in passes of 16 sequences instead of 8 (a GPU of
    another size): the weights of the uninterrupted runs."""
    resumed = tmp_path / "resumed"
    shutil.copytree(runs / "p2/ck", resumed / "ck")
    (run_dir,) = (resumed / "ck").iterdir()
    shutil.rmtree(run_dir / "step-00000004")
    res = _train(micro, resumed, 1, "micro_batch=16")
    assert "step-00000002 (update 2)" in res.stderr
    assert "resuming on 1 processes a run saved by 2" in res.stderr
    assert "64 sequences per process in 4 forward pass(es)" in res.stderr
    figures = json.loads((resumed / "out/metrics.json").read_text())
    assert figures["resumed_from"] == 2 and figures["processes"] == 1
    _assert_same_weights(runs / "p1" / WEIGHTS, resumed / WEIGHTS)
    _assert_same_weights(runs / "p2" / WEIGHTS, resumed / WEIGHTS)
    assert [r["step"] for r in _records(resumed)] == [1, 2, 3, 4]


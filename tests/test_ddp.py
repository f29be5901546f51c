"""DDP: the same global batch on two processes (torchrun, gloo on CPU) and on one gives the
same losses and weights, and the ranks read disjoint shards."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gptpipe.pretrain import data
from pretrain_data import pretrain_cmd, run

# No dropout: its masks come from each rank's own RNG, so they differ by design.
SETS = ("updates=12", "eval_every=6", "log_every=2", "model.embd_dropout=0",
        "model.attn_dropout=0", "model.resid_dropout=0")


@pytest.fixture(scope="module")
def runs(micro, tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    one = run(pretrain_cmd(*micro, base / "one", *SETS))
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2"]
    two = run(torchrun + pretrain_cmd(*micro, base / "two", *SETS)[1:])
    assert two.returncode == 0, two.stderr[-3000:]
    return base


def _records(out):
    return [json.loads(line) for line in (out / "out/metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one(runs):
    one, two = _records(runs / "one"), _records(runs / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two] == list(range(2, 13, 2))
    for a, b in zip(one, two):
        for key in ("loss", "grad_norm", "val_loss", "val_bpb"):
            if a[key] is not None:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (a["step"], key)
    wa = load_file(runs / "one/out/model/model.safetensors")
    wb = load_file(runs / "two/out/model/model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=k)
    assert one[-1]["loss"] < one[0]["loss"] - 0.1  # they trained alike, not just started alike
    assert json.loads((runs / "two/out/metrics.json").read_text())["processes"] == 2


def test_each_rank_reads_its_own_slot(runs):
    (ck,) = (runs / "two/ck").glob("*/step-00000012")
    states = [torch.load(ck / f"rank-{r:05d}.pt", weights_only=True) for r in (0, 1)]
    assert [sorted(s["slots"]) for s in states] == [["0"], ["1"]]
    assert all(s["slots"][str(r)]["world_size"] == 2 for r, s in enumerate(states))
    assert not torch.equal(states[0]["rng_cpu"], states[1]["rng_cpu"])  # own dropout streams


def test_slots_read_disjoint_shards(micro):
    """Slot s is the loader's rank s of 2: one epoch of each holds whole, distinct shards."""
    info = data.open_data(*micro)
    assert len(info.manifest.shards("train")) >= 2
    seen = []
    for slot in (0, 1):
        stream = data.SlotStream(info, slot, 2, 4, seed=0, shuffle_buffer=64,
                                 device=torch.device("cpu"))
        n = stream.loader.batches_per_epoch
        rows = {tuple(torch.cat([x[i, :1], y[i]]).tolist())
                for x, y in (next(stream) for _ in range(n)) for i in range(x.size(0))}
        assert stream.loader.epoch_info(0)["whole_shards"]
        seen.append(rows)
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    every = {tuple(r) for w in data.split_windows(info, "train") for r in np.asarray(w).tolist()}
    assert seen[0] | seen[1] <= every


def test_tensorboard_events_come_from_rank_0_only(runs):
    """Both ranks share the checkpoint folder: a second writer would add a second event file."""
    from test_tensorboard import jsonl_scalars, read_scalars

    (live,) = (runs / "two/ck").glob("*/tensorboard")
    assert len(list(live.glob("events.out.tfevents.*"))) == 1
    out = runs / "two/out"
    assert read_scalars(out / "tensorboard") == jsonl_scalars(out / "metrics.jsonl")

"""TensorBoard event files (`gptpipe.tblog`): pre-training's and fine-tuning's scalars as the
JSON records have them, each step once after a kill and resume, and training without the
`tensorboard` package (its import made to fail) giving the same figures."""

from __future__ import annotations

import json
import logging
import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gptpipe import tblog
from gptpipe.finetune import cli as stage
from pretrain_data import ENV, pretrain_cmd, run
from procs import kill_after_checkpoint
from test_finetune import micro_cfg, model_dir, one_thread, tokenizer  # noqa: F401 (fixtures)
from workflow_projects import CURVE_KEYS

SETS = ("updates=40", "checkpoint_every=10", "eval_every=20")
# Run a module with `torch.utils.tensorboard` unimportable, as where the extra is not installed.
NO_TB = ("import runpy, sys; sys.modules['torch.utils.tensorboard'] = None; "
         "sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__')")


def read_scalars(folder: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} as TensorBoard shows it (steps a resumed run redid purged); fails
    when a tag still has a step twice."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    out: dict[str, dict[int, float]] = {}
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        steps = [e.step for e in events]
        assert len(steps) == len(set(steps)), f"{tag}: a step shows more than once: {steps}"
        out[tag] = {e.step: e.value for e in events}
    return out


def f32(value: float) -> float:
    """What an event holds of a figure: TensorBoard stores scalars as float32."""
    return float(np.float32(value))


def jsonl_scalars(path: Path) -> dict[str, dict[int, float]]:
    """The JSONL's numbers per key and step, as the events should hold them."""
    out: dict[str, dict[int, float]] = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        for k, v in rec.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                out.setdefault(k, {})[rec["step"]] = f32(v)
    return out


# --------------------------------------------------------------------------- units


def test_tensorboard_writer_skips_nulls_and_draws_no_random_numbers(tmp_path):
    states = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    events = tblog.open_log(tmp_path / "tb")
    events.write({"step": 3, "loss": 2.5, "mfu": None, "done": True, "note": "x"}, 3)
    events.close()
    assert torch.equal(torch.get_rng_state(), states[0]) and random.getstate() == states[1]
    assert (np.random.get_state()[1] == states[2]).all()
    assert read_scalars(tmp_path / "tb") == {"loss": {3: 2.5}}


def test_tensorboard_resume_hides_the_steps_after_the_checkpoint(tmp_path):
    """A killed run logged steps 1..8; resumed from its checkpoint at 4, it logs 5..8 anew."""
    folder = tmp_path / "tb"
    first = tblog.open_log(folder)
    for step in range(1, 9):
        first.write({"loss": float(step)}, step)
    first.close()
    again = tblog.open_log(folder, resume_step=4)
    for step in range(5, 9):
        again.write({"loss": 10.0 * step}, step)
    again.close()
    assert read_scalars(folder)["loss"] == {1: 1, 2: 2, 3: 3, 4: 4, 5: 50, 6: 60, 7: 70, 8: 80}
    # A fresh start (resume_step 0) removes an earlier start's files.
    tblog.open_log(folder).close()
    assert read_scalars(folder) == {}


def test_tensorboard_missing_is_one_info_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with caplog.at_level(logging.INFO, logger="gptpipe.tblog"):
        assert tblog.open_log(tmp_path / "tb") is None
    assert not (tmp_path / "tb").exists()
    assert len(caplog.records) == 1 and "no TensorBoard event files" in caplog.text


# --------------------------------------------------------------------------- pre-training


@pytest.fixture(scope="module")
def uninterrupted(micro, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tb-ref")
    res = run(pretrain_cmd(*micro, out, *SETS))
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def _curve(out: Path) -> list[dict]:
    return [{k: json.loads(line)[k] for k in CURVE_KEYS}
            for line in (out / "out/metrics.jsonl").read_text().splitlines()]


def test_tensorboard_pretrain_events_after_a_kill_and_resume(micro, tmp_path, uninterrupted):
    killed = tmp_path / "killed"
    cmd = pretrain_cmd(*micro, killed, *SETS)
    kill_after_checkpoint(cmd, killed / "ck", {**os.environ, **ENV}, last_step=40)
    (run_dir,) = (killed / "ck").iterdir()
    assert list((run_dir / tblog.DIR).glob("events.out.tfevents.*")), "no live event file"
    res = run(cmd)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming from" in res.stderr

    scalars = read_scalars(killed / "out" / tblog.DIR)  # each step once, or it fails
    expected = jsonl_scalars(killed / "out/metrics.jsonl")
    assert scalars == expected
    assert {"loss", "val_loss", "lr", "grad_norm", "tokens_per_s"} <= scalars.keys()
    assert sorted(scalars["loss"]) == list(range(5, 41, 5))  # micro: log_every 5
    assert sorted(scalars["val_loss"]) == [20, 40]
    assert _curve(killed) == _curve(uninterrupted)
    assert read_scalars(uninterrupted / "out" / tblog.DIR) == jsonl_scalars(
        uninterrupted / "out/metrics.jsonl")


def test_tensorboard_missing_pretrain_runs_with_the_same_figures(micro, tmp_path,
                                                                uninterrupted):
    out = tmp_path / "no-tb"
    cmd = pretrain_cmd(*micro, out, *SETS)
    res = run([sys.executable, "-c", NO_TB, *cmd[2:]])  # cmd[2:]: gptpipe pretrain ...
    assert res.returncode == 0, res.stderr[-3000:]
    assert "no TensorBoard event files" in res.stderr
    assert not (out / "out" / tblog.DIR).exists()
    assert not list((out / "ck").glob(f"*/{tblog.DIR}"))
    assert _curve(out) == _curve(uninterrupted)
    a, b = (json.loads((d / "out/metrics.json").read_text()) for d in (out, uninterrupted))
    assert a["val_loss"] == b["val_loss"]


# --------------------------------------------------------------------------- fine-tuning


def test_tensorboard_finetune_events_match_metrics_json(micro_cfg, model_dir, shared_data,  # noqa: F811
                                                        tmp_path):
    out = tmp_path / "SST-2/full/seed0"
    figures = stage.run(micro_cfg, stage.Job("SST-2", "full", 0), model_dir, shared_data, out)
    scalars = read_scalars(out / tblog.DIR)
    train = figures["train"]
    steps = list(range(1, train["steps"] + 1))
    for tag in ("train/loss", "train/task_loss", "train/lm_loss", "train/lr"):
        assert sorted(scalars[tag]) == steps, tag
    assert scalars["train/loss"][1] == f32(train["first_loss"])
    assert scalars["epoch/loss"] == {train["steps"]: f32(train["epoch_loss"][0])}
    assert scalars["epoch/lm_loss"] == {train["steps"]: f32(train["epoch_lm_loss"][0])}
    assert scalars["dev/accuracy"] == {train["steps"]: f32(figures["scores"]["dev"]["accuracy"])}


def test_tensorboard_missing_finetune_predicts_the_same(micro_cfg, model_dir, shared_data,  # noqa: F811
                                                        tmp_path, monkeypatch):
    job = stage.Job("RTE", "no_aux", 0)
    stage.run(micro_cfg, job, model_dir, shared_data, tmp_path / "with")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    stage.run(micro_cfg, job, model_dir, shared_data, tmp_path / "without")
    assert read_scalars(tmp_path / "with" / tblog.DIR)["train/lr"]
    assert "epoch/lm_loss" not in read_scalars(tmp_path / "with" / tblog.DIR)  # λ = 0
    assert not (tmp_path / "without" / tblog.DIR).exists()
    preds = [(tmp_path / d / "predictions.jsonl").read_text() for d in ("with", "without")]
    assert preds[0] == preds[1]

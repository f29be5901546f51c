"""Checkpoints: exact round trip, keep-last-K, atomicity, damaged or foreign ones skipped."""

from __future__ import annotations

import argparse
import json
import logging
import shutil

import pytest
import torch

from gptpipe.io import file_sha256
from gptpipe.model import GPT, GPTConfig
from gptpipe.optim import adamw
from gptpipe.io import json_digest as digest
from gptpipe.pretrain.checkpoint import Checkpoints
from gptpipe.pretrain.distributed import DistEnv

ENV = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


@pytest.fixture(autouse=True)
def one_thread():
    """Micro models gain nothing from threads, and lose a lot on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


FP = {"model": {"n_layer": 2}, "pretrain": {"lr": 1e-3}, "manifest_sha256": "ab" * 32}


def _trained(seed: int = 0, steps: int = 2):
    """A micro model and an AdamW that has taken `steps` steps (so it has state)."""
    model = GPT(GPTConfig.preset("micro", vocab_size=50),
                generator=torch.Generator().manual_seed(seed))
    opt = adamw(model, lr=1e-3, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        x = torch.randint(0, 50, (2, 16), generator=gen)
        _, loss = model(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def _rank_state(tag: int) -> dict:
    return {"rng_cpu": torch.get_rng_state(), "slots": {"0": {"shard": tag, "offset": 3 * tag}}}


def _save(store: Checkpoints, step: int, model, opt):
    return store.save(step, model, opt, {"clock": {"train_seconds": step}}, _rank_state(step))


def test_round_trip_is_exact(tmp_path):
    model, opt = _trained()
    store = Checkpoints(tmp_path, FP, keep=2, env=ENV)
    path = _save(store, 7, model, opt)
    assert path == tmp_path / digest(FP)[:12] / "step-00000007"
    fresh, fresh_opt = _trained(seed=5, steps=1)
    restored = Checkpoints(tmp_path, FP, keep=2, env=ENV).restore(fresh, fresh_opt)
    assert restored is not None and restored.step == 7 and restored.world_size == 1
    assert restored.trainer == {"clock": {"train_seconds": 7}}
    assert restored.rank_states[0]["slots"] == {"0": {"shard": 7, "offset": 21}}
    for k, v in model.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k
    a, b = opt.state_dict(), fresh_opt.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i, st in a["state"].items():
        for k, v in st.items():
            assert torch.equal(v, b["state"][i][k]), (i, k)


def test_keeps_the_newest_k(tmp_path):
    model, opt = _trained()
    store = Checkpoints(tmp_path, FP, keep=2, env=ENV)
    for step in (1, 2, 3, 4):
        _save(store, step, model, opt)
    assert sorted(p.name for p in store.run_dir.glob("step-*")) == [
        "step-00000003", "step-00000004"]


def test_a_failed_save_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    model, opt = _trained()
    store = Checkpoints(tmp_path, FP, keep=2, env=ENV)
    _save(store, 1, model, opt)

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr("gptpipe.pretrain.checkpoint.save_file", disk_full)
    with pytest.raises(OSError):
        _save(store, 2, model, opt)
    assert [p.name for p in store.run_dir.iterdir() if p.name != "metrics.jsonl"] == [
        "step-00000001"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_meta"])
def test_damaged_newest_falls_back_to_the_previous(tmp_path, caplog, damage):
    model, opt = _trained()
    store = Checkpoints(tmp_path, FP, keep=3, env=ENV)
    _save(store, 1, model, opt)
    newer, newer_opt = _trained(seed=1, steps=3)
    bad = _save(store, 2, newer, newer_opt)
    weights = bad / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "flip":
        data = bytearray(weights.read_bytes())
        data[-5] ^= 0xFF
        weights.write_bytes(bytes(data))
    else:
        (bad / "meta.json").unlink()
    fresh, fresh_opt = _trained(seed=9)
    with caplog.at_level(logging.INFO):
        restored = store.restore(fresh, fresh_opt)
    assert restored.step == 1
    assert torch.equal(fresh.wte.weight, model.wte.weight)
    assert f"skipping checkpoint {bad}" in caplog.text
    expected = "missing or unreadable" if damage == "no_meta" else "does not match its recorded"
    assert expected in caplog.text
    assert bad.is_dir()  # kept for a look, never silently deleted


def test_a_pickled_object_is_never_loaded(tmp_path, caplog):
    """optimizer.pt is read with weights_only=True: a file holding arbitrary objects (code run
    on unpickling) is refused, even with a matching sha256."""
    model, opt = _trained()
    store = Checkpoints(tmp_path, FP, keep=3, env=ENV)
    path = _save(store, 1, model, opt)
    evil = {"state": {}, "param_groups": [], "evil": argparse.Namespace(x=1)}
    torch.save(evil, path / "optimizer.pt")
    meta = json.loads((path / "meta.json").read_text())
    meta["files"]["optimizer.pt"] = file_sha256(path / "optimizer.pt")
    (path / "meta.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.INFO):
        assert store.restore(*_trained(seed=3)) is None
    assert "cannot be loaded" in caplog.text


def test_another_config_starts_afresh_and_keeps_the_old_run(tmp_path, caplog):
    model, opt = _trained()
    _save(Checkpoints(tmp_path, FP, keep=1, env=ENV), 5, model, opt)
    other_fp = FP | {"model": {"n_layer": 3}}
    other = Checkpoints(tmp_path, other_fp, keep=1, env=ENV)
    with caplog.at_level(logging.INFO):
        assert other.restore(*_trained(seed=3)) is None
    assert "made with another config (model.n_layer: 2 -> 3)" in caplog.text
    # a checkpoint copied into this run's folder by hand is recognised as foreign too
    shutil.copytree(tmp_path / digest(FP)[:12] / "step-00000005", other.run_dir / "step-00000005")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert other.restore(*_trained(seed=3)) is None
    assert "made with another config or data (model.n_layer: 2 -> 3)" in caplog.text
    _save(other, 6, model, opt)  # pruning leaves foreign checkpoints alone
    assert (other.run_dir / "step-00000005").is_dir()
    assert (tmp_path / digest(FP)[:12] / "step-00000005").is_dir()

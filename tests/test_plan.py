"""`gptpipe plan`: a run's cost from params alone, checked against what runs really make."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from gptpipe.config import load_params, validate_params
from gptpipe.plan import CHECKPOINT_BYTES_PER_PARAM, Throughput, estimate

REPO = Path(__file__).resolve().parents[1]
PARAMS = load_params(REPO / "params.yaml")


def test_gpt1_cost_follows_from_the_papers_shape_and_a_stated_throughput():
    cfg = validate_params(PARAMS | {"scale": "gpt1"})
    f = estimate(cfg, Throughput("H100", 0.5), gpus=32)
    assert f["parameters"] == 116_534_784 + 5 * 768  # the paper's model + our 5 special tokens
    assert f["pretrain_tokens"] == cfg["pretrain"].tokens
    hours = f["pretrain_tokens"] * f["flops_per_token"] / (0.5 * 989e12) / 3600
    assert f["gpu_hours"] == pytest.approx(hours) and f["wall_hours"] == pytest.approx(hours / 32)
    assert f["checkpoint_bytes"] == CHECKPOINT_BYTES_PER_PARAM * f["parameters"]
    measured = estimate(cfg, Throughput(tokens_per_s=100_000.0), gpus=8)
    assert measured["gpu_hours"] == pytest.approx(f["pretrain_tokens"] / 100_000 / 3600)
    with pytest.raises(ValueError, match="no peak FLOP/s known for GPU 'T4'"):
        estimate(cfg, Throughput("T4"))


def test_shard_estimate_matches_real_shards(micro):
    shards, _ = micro
    manifest = json.loads((shards / "manifest.json").read_text())
    corpus = sum(s["tokens"] for s in manifest["splits"].values())
    made = manifest["config"]  # the fixture's own shard knobs
    cfg = validate_params(PARAMS | {"scale": "micro", "shard": {
        "context": made["context"], "samples_per_shard": made["samples_per_shard"]}})
    f = estimate(cfg, corpus_tokens=corpus)
    real = sorted(shards.glob("*.tar"))
    assert abs(f["shards"] - len(real)) <= len(manifest["splits"])  # one partial shard a split
    assert f["shard_bytes"] == pytest.approx(sum(p.stat().st_size for p in real), rel=0.15)
    assert f["epochs"] == pytest.approx(f["pretrain_tokens"] / corpus)


def test_cli_prints_the_plan(micro, tmp_path):
    shards, _ = micro
    res = subprocess.run([sys.executable, "-m", "gptpipe", "plan", "--params",
                          str(REPO / "params.yaml"), "--scale", "gpt1", "--gpus", "32",
                          "--shards", str(shards), "--json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    f = json.loads(res.stdout)
    assert f["gpus"] == 32 and f["shards"] >= 1 and math.isfinite(f["gpu_hours"])
    res = subprocess.run([sys.executable, "-m", "gptpipe", "plan", "--params",
                          str(REPO / "params.yaml"), "--scale", "gpt1"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "GPU-hours" in res.stdout and "checkpoint" in res.stdout

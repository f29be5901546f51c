"""`gptpipe plan`: a run's cost from params alone, checked against what runs really make."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from gptpipe.config import ConfigError, load_params, validate_params
from gptpipe.plan import CHECKPOINT_BYTES_PER_PARAM, Throughput, estimate

REPO = Path(__file__).resolve().parents[1]
PARAMS = load_params(REPO / "params.yaml")


def test_gpt1_cost_follows_from_the_papers_shape_and_a_stated_throughput():
    cfg = validate_params(PARAMS | {"scale": "gpt1"})
    f = estimate(cfg, Throughput("H100", 0.5), gpus=32)
    assert f["parameters"] == 116_534_784 + 5 * 768  # the paper's model + our 5 special tokens
    # the tokens rounded up to whole updates, as `pretrain` trains them
    assert f["pretrain_tokens"] == f["updates"] * 32_768
    assert 0 <= f["pretrain_tokens"] - cfg["pretrain"].tokens < 32_768
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
                          "--shards", str(shards), "--json"], check=False,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    f = json.loads(res.stdout)
    assert f["gpus"] == 32 and f["shards"] >= 1 and math.isfinite(f["gpu_hours"])
    res = subprocess.run([sys.executable, "-m", "gptpipe", "plan", "--params",
                          str(REPO / "params.yaml"), "--scale", "gpt1"],
                         check=False, capture_output=True, text=True)
    assert res.returncode == 0 and "GPU-hours" in res.stdout and "checkpoint" in res.stdout
    # The data half of the 59 parts: CPU-hours, memory and disk per stage, and the shards.
    out = res.stdout
    assert "data half on enwiki-20200501: 59 parts" in out
    for stage in ("ingest", "bpe", "shard"):
        assert any(line.split()[:1] == [stage] and "CPU-h" in line and "peak" in line
                   for line in out.splitlines()), stage
    assert "estimated below" in out and "shards" in out.split("data half")[1]
    f = estimate(validate_params(PARAMS | {"scale": "gpt1"}))
    sampled = estimate(validate_params(PARAMS | {"scale": "gpt1",
                                                 "bpe": {"max_chars": 1_000_000_000}}))
    bpe_peak = [s.peak_bytes for d in (f, sampled) for s in d["data_half"].stages
                if s.stage == "bpe"]
    assert bpe_peak[1] < bpe_peak[0]  # bpe.max_chars is what bounds BPE's memory
    assert "data_half" not in estimate(validate_params(PARAMS | {"scale": "tiny"}))


@pytest.mark.parametrize("gpus", [1, 2, 4, 8, 16, 32])
def test_gpt1_layout_is_checked_and_shown_for_every_gpu_count(gpus):
    f = estimate(validate_params(PARAMS | {"scale": "gpt1"}), gpus=gpus)
    assert f["layout"] == {"slots": 64, "seqs_per_slot": 1, "slots_per_gpu": 64 // gpus,
                           "seqs_per_gpu": 64 // gpus, "passes": 1, "micro_batch": 64}
    mem = f["pretrain_memory"]
    assert mem["total"] == mem["states"] + mem["copies"] + mem["activations"] + mem["logits"]
    assert f["pretrain_memory_flash"] < mem["total"]


def test_a_gpu_count_that_does_not_divide_the_slots_fails_before_anything_runs():
    cfg = validate_params(PARAMS | {"scale": "gpt1"})
    with pytest.raises(ConfigError, match="pretrain.slots 64 .* over 3 processes"):
        estimate(cfg, gpus=3)
    res = subprocess.run([sys.executable, "-m", "gptpipe", "plan", "--params",
                          str(REPO / "params.yaml"), "--scale", "gpt1", "--gpus", "48"],
                         check=False, capture_output=True, text=True)
    assert res.returncode == 1 and "pretrain.slots 64" in res.stderr
    assert "48 processes" in res.stderr and not res.stdout


def test_micro_batch_splits_a_gpus_share_into_passes_and_bounds_memory():
    cfg = validate_params(PARAMS | {"scale": "gpt1", "pretrain": {"micro_batch": 8}})
    one, big = estimate(cfg, gpus=1), estimate(validate_params(PARAMS | {"scale": "gpt1"}),
                                               gpus=1)
    assert one["layout"]["passes"] == 8 and one["layout"]["seqs_per_gpu"] == 64
    # activations and logits scale with the pass, the states do not
    assert one["pretrain_memory"]["activations"] * 8 == big["pretrain_memory"]["activations"]
    assert one["pretrain_memory"]["states"] == big["pretrain_memory"]["states"]


@pytest.mark.parametrize("scale, gpus", [("gpt1", 8), ("micro", 2), ("tiny", 1)])
def test_without_gpus_the_plan_takes_the_most_up_to_8_the_slots_allow(scale, gpus):
    assert estimate(validate_params(PARAMS | {"scale": scale}))["gpus"] == gpus
    with pytest.raises(ConfigError, match="at least one"):
        estimate(validate_params(PARAMS | {"scale": scale}), gpus=0)

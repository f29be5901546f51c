"""`gptpipe pretrain` and `gptpipe sample` at micro scale on shards of the real sample: the
outputs, resuming, falling back from a damaged checkpoint, and bad input failing clearly."""

from __future__ import annotations

import io
import json
import logging
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from gptpipe.bpe import tokenizer as bpe
from gptpipe import vocab
from gptpipe.config import BpeConfig
from gptpipe.model import GPT
from gptpipe.modeldir import load_model_dir
from gptpipe.pretrain import cli as pretrain
from gptpipe import sample
from gptpipe.pretrain import data, metrics
from gptpipe.pretrain.metrics import FIELDS
from pretrain_data import pretrain_cmd, run


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("GPTPIPE_NPROC", "1")
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(micro, tmp_path_factory):
    """One 30-update micro run through the CLI (a subprocess, as the workflow runs it)."""
    out = tmp_path_factory.mktemp("trained")
    res = run(pretrain_cmd(*micro, out))
    assert res.returncode == 0, res.stderr
    return out


def _argv(micro, out, *sets):
    return pretrain_cmd(*micro, out, *sets)[4:]  # without `python -m gptpipe pretrain`


def test_outputs_model_metrics_and_config(trained, micro):
    out = trained / "out"
    model, cfg = load_model_dir(out / "model")
    assert (cfg.n_layer, cfg.d_model, cfg.context, cfg.vocab_size) == (2, 64, 64, 1_024 + 5)
    assert (out / "model/tokenizer.json").read_bytes() == micro[1].read_bytes()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30]
    assert all(set(r) == set(FIELDS) for r in records)
    assert [r["step"] for r in records if r["val_loss"] is not None] == [10, 20, 30]
    assert records[-1]["tokens"] == 30 * 512 and records[-1]["mfu"] is None  # no MFU on CPU
    assert records[0]["lr"] == pytest.approx(1e-3) and records[-1]["lr"] < 1e-5  # cosine to 0
    assert records[-1]["loss"] < records[0]["loss"]
    figures = json.loads((out / "metrics.json").read_text())
    assert figures["val_loss"] == pytest.approx(records[-1]["val_loss"])
    assert figures["tokens"] == 15_360 and figures["updates"] == 30
    assert math.log(1029) > figures["val_loss"] > 3.0  # learning, not yet much
    assert 5.0 < figures["unigram_val_loss"] < math.log(1029)
    below = figures["unigram_val_loss"] - figures["val_loss"]
    assert figures["below_unigram"] == pytest.approx(below)
    assert figures["tokens_per_s"] > 0 and figures["wall_seconds"] >= figures["train_seconds"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["pretrain"]["updates"] == 30 and config["model"]["n_layer"] == 2
    assert config["gpt"]["vocab_size"] == 1_029


def test_val_bpb_is_loss_over_the_bytes_of_the_scored_text(trained, micro):
    """bits per byte = nats / ln 2 / UTF-8 bytes of the scored targets (whole val split)."""
    info = data.open_data(*micro)
    table = data.token_bytes(info.tokenizer)
    targets = torch.cat([torch.from_numpy(w[:, 1:].astype("int64")).flatten()
                         for w in data.split_windows(info, "val")])
    figures = json.loads((trained / "out/metrics.json").read_text())
    assert figures["val_tokens"] == targets.numel()
    nbytes = int(table[targets].sum())
    assert figures["val_bpb"] == pytest.approx(
        figures["val_loss"] * targets.numel() / math.log(2) / nbytes, rel=1e-6)


def test_token_bytes_count_the_texts_utf8_bytes(micro):
    tok, _ = vocab.load(micro[1])
    text = "Anarchism is a political philosophy – “stateless” societies, 2016."
    ids = tok.encode(text).ids
    assert int(data.token_bytes(tok)[ids].sum()) == len(text.encode("utf-8"))
    ids_ = vocab.special_ids(tok)
    assert data.token_bytes(tok)[[ids_.eod, ids_.pad]].tolist() == [0, 0]


def test_unigram_baseline_by_hand(micro):
    info = data.open_data(*micro)
    train = torch.cat([torch.from_numpy(w.astype("int64")).flatten()
                       for w in data.split_windows(info, "train")])
    counts = torch.bincount(train, minlength=info.vocab_size).double() + 1
    logp = (counts / counts.sum()).log()
    val = torch.cat([torch.from_numpy(w[:, 1:].astype("int64")).flatten()
                     for w in data.split_windows(info, "val")])
    assert data.unigram_baseline(info) == pytest.approx(-logp[val].mean().item(), rel=1e-9)


def test_rerun_resumes_from_the_final_checkpoint(trained, micro, tmp_path, caplog):
    out = tmp_path / "again"
    shutil.copytree(trained / "ck", out / "ck")
    with caplog.at_level(logging.INFO):
        assert pretrain.main(_argv(micro, out)) == 0
    assert "(update 30)" in caplog.text and "from update 30" in caplog.text
    a = load_file(trained / "out/model/model.safetensors")
    b = load_file(out / "out/model/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (out / "out/metrics.jsonl").read_text() == (trained / "out/metrics.jsonl").read_text()


def test_damaged_newest_checkpoint_falls_back_and_ends_the_same(trained, micro, tmp_path, caplog):
    out = tmp_path / "damaged"
    shutil.copytree(trained / "ck", out / "ck")
    (newest,) = out.glob("ck/*/step-00000030")
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with caplog.at_level(logging.INFO):
        assert pretrain.main(_argv(micro, out)) == 0
    assert f"skipping checkpoint {newest}" in caplog.text
    assert "truncated or corrupted" in caplog.text
    assert "(update 20)" in caplog.text
    a = load_file(trained / "out/model/model.safetensors")
    b = load_file(out / "out/model/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_another_model_config_starts_afresh_and_keeps_the_old_checkpoints(trained, micro,
                                                                         tmp_path, caplog):
    out = tmp_path / "other"
    shutil.copytree(trained / "ck", out / "ck")
    old = sorted(p.name for p in out.glob("ck/*/step-*"))
    with caplog.at_level(logging.INFO):
        code = pretrain.main(_argv(micro, out, "model.n_layer=1", "updates=10"))
    assert code == 0
    assert "made with another config (model.n_layer: 2 -> 1" in caplog.text
    assert "from scratch" in caplog.text
    runs = sorted(p.name for p in (out / "ck").iterdir())
    assert len(runs) == 2
    assert sorted(p.name for p in (out / "ck" / runs[0]).glob("step-*")) == old or sorted(
        p.name for p in (out / "ck" / runs[1]).glob("step-*")) == old
    assert load_model_dir(out / "out/model")[1].n_layer == 1


def test_shards_of_another_tokenizer_fail_clearly(micro, sample_texts, tmp_path, capsys):
    other = bpe.train(sample_texts[:20], BpeConfig(vocab_size=600, style="bytelevel"))
    vocab.save(other, tmp_path / "other.json")
    assert pretrain.main(_argv((micro[0], tmp_path / "other.json"), tmp_path)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shards made with another tokenizer" in err[0]
    assert "manifest.json" in err[0]
    assert not (tmp_path / "out").exists()


def test_cuda_asked_without_a_gpu_fails_clearly(micro, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present here")
    assert pretrain.main(_argv(micro, tmp_path, "device=cuda")) == 1
    err = capsys.readouterr().err
    assert "pretrain.device is 'cuda' but no CUDA device is visible" in err
    assert not (tmp_path / "out").exists()


def test_auto_device_picks_what_is_there(trained):
    figures = json.loads((trained / "out/metrics.json").read_text())
    assert figures["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


def test_a_nan_loss_stops_with_the_last_good_checkpoint(micro, tmp_path, monkeypatch, capsys,
                                                        caplog):
    real_forward = GPT.forward
    calls = {"n": 0}

    def poisoned(self, idx, targets=None, attn_mask=None):
        logits, loss = real_forward(self, idx, targets, attn_mask)
        if self.training:
            calls["n"] += 1
            if calls["n"] > 2 * 12:  # 2 micro-batches per update: NaN from update 13 on
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(GPT, "forward", poisoned)
    assert pretrain.main(_argv(micro, tmp_path)) == 1
    err = capsys.readouterr().err
    (good,) = tmp_path.glob("ck/*/step-00000010")
    assert "update 13: the loss is nan" in err and f"Last good checkpoint: {good}" in err
    assert sorted(p.name for p in good.parent.glob("step-*")) == ["step-00000010"]
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(GPT, "forward", real_forward)
    with caplog.at_level(logging.INFO):  # the checkpoint is intact: a rerun goes on from it
        assert pretrain.main(_argv(micro, tmp_path)) == 0
    assert "(update 10)" in caplog.text and (tmp_path / "out/model").is_dir()


def test_set_reaches_both_sections(micro, tmp_path):
    import argparse

    args = argparse.Namespace(params=str(pretrain_cmd(*micro, tmp_path)[5]), scale="micro",
                              set=["lr=0.002", "pretrain.updates=7", "model.d_model=32"])
    model_cfg, cfg = pretrain.load_configs(args)
    assert (cfg.lr, cfg.updates, model_cfg.d_model, model_cfg.n_layer) == (0.002, 7, 32, 2)
    args.set = ["model.d_modle=32"]
    with pytest.raises(Exception, match="model.d_modle: unknown key"):
        pretrain.load_configs(args)


def test_sample_continues_the_prompt(trained, capsys):
    model_dir = trained / "out/model"
    text = sample.run(model_dir, "The history of", tokens=12, seed=3)
    assert text.startswith("The history of") and len(text) > len("The history of")
    assert sample.run(model_dir, "The history of", tokens=12, seed=3) == text
    greedy = sample.run(model_dir, "The", tokens=8, temperature=0)
    assert greedy == sample.run(model_dir, "The", tokens=8, temperature=0, seed=99)
    assert sample.main(["--model", str(model_dir), "--prompt", "A", "--tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("A")
    assert sample.main(["--model", str(trained / "nope"), "--prompt", "A"]) == 1
    assert "model folder not found" in capsys.readouterr().err
    # The `pretrain` output folder itself is accepted wherever a model folder is.
    assert sample.run(trained / "out", "The history of", tokens=12, seed=3) == text


def test_export_hf_takes_the_pretrain_output(trained, tmp_path):
    from transformers import OpenAIGPTLMHeadModel

    from gptpipe.hf import export_main

    assert export_main(["--input", str(trained / "out"), "--output", str(tmp_path / "hf")]) == 0
    _, info = OpenAIGPTLMHeadModel.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info


@pytest.mark.parametrize("name, precision, tflops", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989), ("NVIDIA H200", "bf16", 989),
    ("NVIDIA H100 PCIe", "bf16", 756), ("NVIDIA A100-SXM4-80GB", "bf16", 312),
    ("NVIDIA A100 80GB PCIe", "fp32", 156), ("NVIDIA L4", "bf16", 121),
])
def test_peak_flops_per_device(name, precision, tflops, monkeypatch):
    monkeypatch.delenv(metrics.PEAK_ENV, raising=False)
    assert metrics.peak_flops(name, precision) == tflops * 1e12


def test_mfu_needs_a_known_peak(monkeypatch):
    monkeypatch.delenv(metrics.PEAK_ENV, raising=False)
    assert metrics.peak_flops(None, "bf16") is None  # CPU
    assert metrics.peak_flops("Some Future GPU", "bf16") is None
    monkeypatch.setenv(metrics.PEAK_ENV, "100")
    assert metrics.peak_flops("Some Future GPU", "bf16") == 100e12
    # GPT-1: ~7.6e8 FLOPs per token; 470k tokens/s on one H100 is ~36% MFU
    assert metrics.mfu(760_000_000, 470_000, 989e12, 1) == pytest.approx(0.361, abs=1e-3)
    assert metrics.mfu(760_000_000, 470_000, 989e12, 2) == pytest.approx(0.1806, abs=1e-3)
    assert metrics.mfu(760_000_000, 470_000, None, 1) is None


def test_progress_is_a_bar_on_a_terminal_and_lines_in_a_log(caplog):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    bar = metrics.Progress(total=20, start=0, tokens_per_update=100, every=5, stream=tty)
    for step in range(1, 21):
        bar.update(step, 5.0, 1e-3, 1000.0)
    bar.close()
    assert "\r" in tty.getvalue() and "20/20" in tty.getvalue()
    plain = io.StringIO()
    with caplog.at_level(logging.INFO):
        lines = metrics.Progress(total=12, start=0, tokens_per_update=100, every=5, stream=plain)
        for step in range(1, 13):
            lines.update(step, 5.0, 1e-3, 1000.0)
    assert plain.getvalue() == ""  # no carriage returns in a log file
    steps = [r.getMessage().split()[1] for r in caplog.records
             if r.getMessage().startswith("update")]
    assert steps == ["5/12", "10/12", "12/12"]


def test_bf16_autocast_path_runs_on_cpu(micro, tmp_path):
    """The GPU recipe's bf16 autocast, exercised on the CPU: it trains like fp32."""
    res = run(pretrain_cmd(*micro, tmp_path, "precision=bf16", "updates=10"))
    assert res.returncode == 0, res.stderr[-3000:]
    figures = json.loads((tmp_path / "out/metrics.json").read_text())
    assert math.isfinite(figures["val_loss"]) and figures["val_loss"] < math.log(1029)


@pytest.mark.gpu
def test_gpu_run_uses_bf16_compile_and_reports_mfu(micro, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    res = run(pretrain_cmd(*micro, tmp_path, "device=cuda", "compile=true", "updates=20"),
              env={"GPTPIPE_NPROC": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    figures = json.loads((tmp_path / "out/metrics.json").read_text())
    assert figures["device"] == "cuda" and math.isfinite(figures["val_loss"])
    name = torch.cuda.get_device_name()
    assert (figures["mfu"] is not None) == (metrics.peak_flops(name, "bf16") is not None)


def test_data_fingerprint_follows_the_content_not_the_manifest_file(micro, tmp_path):
    """A rerun of `shard` that writes the same windows (other timings in its manifest) keeps
    the checkpoints valid; other windows do not."""
    shutil.copytree(micro[0], tmp_path / "s")
    path = tmp_path / "s/manifest.json"
    before = data.data_fingerprint(data.open_data(tmp_path / "s", micro[1]))
    manifest = json.loads(path.read_text())
    manifest["seconds"] = manifest.get("seconds", 0) + 12.5
    path.write_text(json.dumps(manifest))
    assert data.data_fingerprint(data.open_data(tmp_path / "s", micro[1])) == before
    manifest["splits"]["train"]["shards"][0]["sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))
    assert data.data_fingerprint(data.open_data(tmp_path / "s", micro[1])) != before

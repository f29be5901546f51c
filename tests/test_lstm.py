"""Table 5's LSTM branch (gptpipe/lstm.py, job `pretrain_lstm`, variant `lstm`): the network's
shapes and causality, its pre-training on shards of the real sample, its model folder, one
fine-tuning job, the DAG's jobs and the plan's costing. Micro shapes: seconds each."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from pretrain_data import pretrain_cmd, run

from gptpipe import plan
from gptpipe import workflow as gw
from gptpipe.config import load_params, resolve_section, validate_params
from gptpipe.dvcyaml import stages
from gptpipe.errors import ConfigError, GptpipeError
from gptpipe.finetune import cli as stage
from gptpipe.finetune.model import TaskModel
from gptpipe.hf import export_hf
from gptpipe.lstm import LSTMLM, language_model
from gptpipe.model import GPT, GPTConfig
from gptpipe.modeldir import load_model_dir, save_model_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cfg(vocab: int = 300, units: int = 96, dropout: float = 0.0) -> GPTConfig:
    return GPTConfig.preset("micro", vocab_size=vocab, arch="lstm", lstm_units=units,
                            embd_dropout=dropout, resid_dropout=dropout)


def test_lstm_shapes_tied_head_and_parameter_count():
    model = language_model(_cfg(), generator=torch.Generator().manual_seed(0))
    assert isinstance(model, LSTMLM)
    ids = torch.randint(0, 300, (3, 17))
    h = model.hidden_states(ids)
    assert h.shape == (3, 17, 64)  # projected back to d_model (micro: 64)
    logits, loss = model(ids, ids)
    assert logits.shape == (3, 17, 300)
    assert torch.allclose(model.lm_logits(h), h @ model.wte.weight.T, atol=1e-6)
    d, H, V = 64, 96, 300  # gates 4H(d + d) + biases 8H + projection H·d + tied table V·d
    assert model.num_params() == 4 * H * (d + d) + 8 * H + H * d + V * d
    assert model.flops_per_token() == 6 * model.num_params()
    assert math.log(300) - 0.5 < loss.item() < math.log(300) + 0.5  # starts near uniform
    # The forget gates start open; the rest of the biases at 0.
    assert model.lstm.bias_ih_l0[H:2 * H].eq(1).all() and model.lstm.bias_ih_l0[:H].eq(0).all()


def test_lstm_is_causal_and_seeded():
    model = language_model(_cfg(), generator=torch.Generator().manual_seed(0)).eval()
    ids = torch.randint(0, 300, (2, 12))
    later = ids.clone()
    later[:, 7:] = torch.randint(0, 300, (2, 5))
    with torch.no_grad():
        a, b = model.hidden_states(ids), model.hidden_states(later)
    assert torch.equal(a[:, :7], b[:, :7])  # a later token never changes an earlier state
    assert not torch.allclose(a[:, 7:], b[:, 7:])
    again = language_model(_cfg(), generator=torch.Generator().manual_seed(0))
    other = language_model(_cfg(), generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.lstm.weight_hh_l0, model.lstm.weight_hh_l0)
    assert not torch.equal(other.lstm.weight_hh_l0, model.lstm.weight_hh_l0)
    with pytest.raises(ValueError, match="pad on the right"):
        model.hidden_states(ids, attn_mask=torch.tensor([[0] + [1] * 11] * 2))


def test_lstm_config_checks():
    assert isinstance(language_model(GPTConfig.preset("micro", vocab_size=300)), GPT)
    with pytest.raises(ValueError, match="lstm_units 32 must be >= d_model 64"):
        _cfg(units=32)
    params = load_params(REPO / "params.yaml") | {"scale": "micro"}
    with pytest.raises(ConfigError, match="model.arch: 'gru' is not one of 'transformer', 'lstm'"):
        resolve_section(params, "model", {"arch": "gru"})
    with pytest.raises(ConfigError, match="model.lstm_unit: unknown key"):
        resolve_section(params, "model", {"lstm_unit": 4})


def test_lstm_budget_replaces_the_run_length_and_warmup():
    params = load_params(REPO / "params.yaml")
    tiny = resolve_section(params | {"scale": "tiny"}, "pretrain")
    lstm = tiny.for_lstm()
    assert (lstm.updates, lstm.warmup_updates, lstm.lr) == (200, 20, 6e-3)
    assert lstm.updates * lstm.batch_tokens <= tiny.updates * tiny.batch_tokens
    gpt1 = resolve_section(params | {"scale": "gpt1"}, "pretrain")
    assert gpt1.for_lstm() == gpt1  # the paper gives no LSTM budget: the transformer's
    assert resolve_section(params | {"scale": "tiny"}, "model").lstm_units == 512
    assert resolve_section(params | {"scale": "gpt1"}, "model").lstm_units == 2_048


def test_lstm_model_folder_round_trip_records_the_arch(tmp_path, micro):
    _, tok_path = micro
    from gptpipe import vocab

    tok = vocab.load(tok_path)[0]
    cfg = _cfg(vocab=tok.get_vocab_size())
    model = language_model(cfg, generator=torch.Generator().manual_seed(3))
    save_model_dir(model, cfg, tok, tmp_path / "m")
    assert json.loads((tmp_path / "m/model.json").read_text())["arch"] == "lstm"
    loaded, got = load_model_dir(tmp_path / "m")
    assert got == cfg and isinstance(loaded, LSTMLM)
    ids = torch.randint(0, cfg.vocab_size, (2, 9))
    with torch.no_grad():
        assert torch.equal(loaded(ids)[0], model.eval()(ids)[0])
    with pytest.raises(GptpipeError, match="arch 'lstm'.*transformer only"):
        export_hf(tmp_path / "m", tmp_path / "hf")
    # A folder whose weights belong to another network is named with what its config says.
    data = json.loads((tmp_path / "m/model.json").read_text())
    (tmp_path / "m/model.json").write_text(json.dumps(data | {"lstm_units": 128}))
    with pytest.raises(GptpipeError, match=r"model.safetensors: lstm.*\(LSTM of 128 units"):
        load_model_dir(tmp_path / "m")
    (tmp_path / "m/model.json").write_text(json.dumps(data | {"arch": 3}))
    with pytest.raises(GptpipeError, match="model.json: arch: expected a string"):
        load_model_dir(tmp_path / "m")


@pytest.fixture(scope="module")
def lstm_pretrained(micro, tmp_path_factory):
    """A micro run of the pretrain stage with `--arch lstm` on shards of the real sample."""
    out = tmp_path_factory.mktemp("lstm")
    cmd = pretrain_cmd(*micro, out, "model.lstm_units=128", "pretrain.lstm_updates=40",
                       "pretrain.lstm_warmup_updates=4", "lstm_lr=3e-3")
    res = run([*cmd, "--arch", "lstm"])
    assert res.returncode == 0, res.stderr
    assert "one LSTM layer of 128 units" in res.stderr
    return out / "out"


def test_lstm_pretrain_stage_learns_on_the_sample(lstm_pretrained):
    figures = json.loads((lstm_pretrained / "metrics.json").read_text())
    records = [json.loads(x) for x in (lstm_pretrained / "metrics.jsonl").read_text().split("\n")
               if x]
    assert figures["updates"] == 40 and figures["tokens"] == 40 * 512  # lstm_updates, not 30
    assert records[-1]["loss"] < records[0]["loss"] - 0.5  # the LM loss falls
    assert figures["val_loss"] < math.log(1029) - 0.4  # well under a uniform guess on val
    config = json.loads((lstm_pretrained / "config.json").read_text())
    assert config["model"]["arch"] == "lstm" and config["gpt"]["lstm_units"] == 128
    assert (config["pretrain"]["warmup_updates"], config["pretrain"]["lr"]) == (4, 3e-3)
    assert json.loads((lstm_pretrained / "model/model.json").read_text())["arch"] == "lstm"


def test_lstm_finetune_job_uses_the_full_recipe(lstm_pretrained, shared_data, tmp_path):
    params = load_params(REPO / "params.yaml") | {"scale": "micro"}
    cfg = resolve_section(params, "finetune")
    out = tmp_path / "SST-2/lstm/seed0"
    figures = stage.run(cfg, stage.Job("SST-2", "lstm", 0), lstm_pretrained, shared_data, out)
    assert (figures["variant"], figures["recipe"]["lm_weight"]) == ("lstm", 0.5)
    assert figures["model"]["pretrained"] and figures["train"]["steps"] == 4
    assert 0.0 <= figures["scores"]["dev"]["accuracy"] <= 1.0
    assert (out / "predictions.jsonl").is_file()
    # The same task head and auxiliary LM loss run on the LSTM's states.
    model, _ = load_model_dir(lstm_pretrained)
    task = TaskModel(model, "single", 2)
    scores, lm = task(torch.randint(0, 1029, (3, 10)), torch.tensor([9, 5, 7]), with_lm=True)
    assert scores.shape == (3, 2) and lm.item() > 0
    # A variant and a model of the other arch refuse each other (the results would mislabel).
    with pytest.raises(GptpipeError, match="variant lstm takes the LSTM branch's model"):
        stage.run(cfg, stage.Job("SST-2", "full", 0), lstm_pretrained, shared_data,
                  tmp_path / "x")


def test_lstm_jobs_and_branch_follow_ablation_variants():
    params = load_params(REPO / "params.yaml")
    micro = resolve_section(params | {"scale": "micro"}, "finetune")
    assert not gw.lstm_branch(micro)  # micro gains nothing from the LSTM row
    ft = resolve_section(params | {"scale": "micro"}, "finetune",
                         {"ablation_variants": ["lstm"]})
    assert gw.finetune_jobs(ft) == [("SST-2", "full", 0), ("RTE", "full", 0),
                                    ("SST-2", "lstm", 0)]
    assert gw.lstm_branch(ft) and gw.pretrain_dir("lstm") == "results/pretrain_lstm"
    assert gw.pretrain_dir("no_aux") == "results/pretrain"
    tiny = stages(params | {"scale": "tiny"})
    assert "--arch lstm" in tiny["pretrain_lstm"]["cmd"]
    assert tiny["pretrain_lstm"]["outs"] == ["results/pretrain_lstm"]
    items = tiny["finetune"]["foreach"]
    assert {k: v["model"] for k, v in items.items() if v["variant"] == "lstm"} == {
        "SST-2-lstm-0": "results/pretrain_lstm", "CoLA-lstm-0": "results/pretrain_lstm"}
    assert "pretrain_lstm" not in stages(params | {"scale": "micro"})
    gpt1 = resolve_section(params | {"scale": "gpt1"}, "finetune")
    assert {t for t, v, _ in gw.finetune_jobs(gpt1) if v == "lstm"} == set(gpt1.ablation_tasks)


def test_plan_costs_the_lstm_branch_at_gpt1():
    cfg = validate_params(load_params(REPO / "params.yaml") | {"scale": "gpt1"})
    figures = plan.estimate(cfg, gpus=8, corpus_tokens=10**9)
    lstm = figures["lstm"]
    d, H, V = 768, 2_048, 40_478 + 5
    n = 4 * H * (d + d) + 8 * H + H * d + V * d
    assert (lstm["units"], lstm["parameters"]) == (2_048, n)
    assert lstm["flops_per_token"] == 6 * n
    assert lstm["pretrain_tokens"] == figures["pretrain_tokens"]  # the transformer's budget
    assert lstm["finetune_jobs"] == 8 * 3  # Table 5's tasks x seeds
    assert figures["finetune_jobs"] + lstm["finetune_jobs"] == len(
        gw.finetune_jobs(cfg["finetune"]))
    assert lstm["gpu_hours"] > 0 and lstm["finetune_gpu_hours"] > 0
    assert "LSTM branch" in plan.render(figures, "gpt1")


def test_lstm_row_of_table5_is_the_papers():
    """Variant lstm fills Table 5's "LSTM w/ aux LM" row, beside the paper's figures."""
    from gptpipe.report.collect import scores_frame
    from gptpipe.report.tables import paper_tables

    runs = [{"task": "SST-2", "variant": v, "seed": s, "headline": {"metric": "accuracy"},
             "scores_percent": {"dev": {"accuracy": 60.0 + s + (v == "lstm")}}}
            for v in ("full", "lstm") for s in (0, 1)]
    table5 = paper_tables(runs, scores_frame(runs))["table5"]
    row = table5.filter((table5["label"] == "SST-2") & (table5["variant"] == "lstm")).row(
        0, named=True)
    assert (row["paper"], row["mean"], row["n"]) == (90.5, 61.5, 2)
    assert row["diff"] == pytest.approx(61.5 - 90.5)
    avg = table5.filter((table5["label"] == "avg") & (table5["variant"] == "lstm"))
    assert avg["paper"].to_list() == [69.1]  # the paper's mean of its eight columns

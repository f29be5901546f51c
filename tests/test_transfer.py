"""Figure 2 (left), layers transferred: variant `transfer<k>` takes the embeddings and the first k
blocks from pre-training and keeps the rest as freshly initialised; its jobs, its CLI run on the
real SST-2 sample, and the report's "Layers transferred" section."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from test_report import _job, build_run
from test_report import _run as report_run

from gptpipe import workflow as gw
from gptpipe.bpe import tokenizer as bpe
from gptpipe.config import BpeConfig, load_params, resolve_section, validate_params
from gptpipe.errors import ConfigError, GptpipeError
from gptpipe.finetune import cli as stage
from gptpipe.finetune import transfer
from gptpipe.finetune.body import build_gpt, open_body
from gptpipe.finetune.data import recipe
from gptpipe.model import GPT, GPTConfig
from gptpipe.modeldir import save_model_dir
from gptpipe.plan import estimate
from gptpipe.report import transfer as section

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, shared_data) -> Path:
    """A micro model (2 blocks) drawn from seed 0, laid out like `pretrain`'s output, with a
    1,024-token BPE learned from the sample's SST-2 sentences."""
    lines = (shared_data / "glue/SST-2/train.tsv").read_text(encoding="utf-8").splitlines()
    tok = bpe.train([line.split("\t")[0] for line in lines[1:4000]], BpeConfig(vocab_size=1024),
                    source="SST-2 sample")
    gpt = GPT(GPTConfig.preset("micro", vocab_size=tok.get_vocab_size()),
              generator=torch.Generator().manual_seed(0))
    out = tmp_path_factory.mktemp("transfer") / "pretrain"
    save_model_dir(gpt, gpt.cfg, tok, out / "model")
    return out


def _params(scale: str, **finetune) -> dict:
    params = load_params(REPO / "params.yaml") | {"scale": scale}
    return {**params, "finetune": {**params["finetune"], **finetune}}


# --------------------------------------------------------------------------- the weights


@pytest.mark.parametrize("k", [-1, 0, 2])
def test_transfer_k_blocks_and_embeddings_are_pretrained_the_rest_fresh(model_dir, k):
    body = open_body(model_dir, 64)
    assert body.cfg.n_layer == 2
    got = build_gpt(body, True, seed=5, transfer=k).state_dict()
    saved = GPT(body.cfg, generator=torch.Generator().manual_seed(0)).state_dict()
    fresh = GPT(body.cfg, generator=torch.Generator().manual_seed(5)).state_dict()
    blocks = {n: int(n.split(".")[1]) for n in got if n.startswith("h.")}
    assert set(got) == set(blocks) | {"wte.weight", "wpe.weight"}  # nothing else to transfer
    for name, tensor in got.items():
        from_pretraining = blocks[name] < k if name in blocks else k >= 0
        assert torch.equal(tensor, (saved if from_pretraining else fresh)[name]), name
        if tensor.std() > 0:  # LayerNorm gains and biases are equal in both: skip those
            assert not torch.equal(tensor, (fresh if from_pretraining else saved)[name]), name
    if k in (-1, 2):  # the two ends: k = -1 starts as `no_pretrain`, k = n_layer as `full`
        end = build_gpt(body, k >= 0, seed=5).state_dict()
        torch.testing.assert_close(got, end, rtol=0, atol=0)


def test_transfer_beyond_the_model_depth_names_model_json(model_dir):
    body = open_body(model_dir, 64)
    with pytest.raises(GptpipeError, match=r"model\.json: variant transfer3 .* n_layer 2"):
        build_gpt(body, True, seed=0, transfer=3)


def test_transfer_variant_names_and_recipe(model_dir):
    assert [transfer.layers_of(v) for v in ("transfer0", "transfer-1", "transfer12", "full",
                                            "transferx", "transfer")] == [0, -1, 12, None,
                                                                          None, None]
    assert transfer.is_variant("transfer3") and not transfer.is_variant("transfer-2")
    cfg = resolve_section(_params("micro"), "finetune")
    rec = recipe(cfg, "SST-2", "transfer1")
    assert (rec.transfer, rec.pretrained, rec.lm_weight) == (1, True, 0.5)  # `full`'s recipe
    assert recipe(cfg, "SST-2", "full").transfer is None
    # The report's own reading of the names agrees with the stage's.
    assert all(section.layers_of(transfer.variant(k)) == k for k in range(-1, 13))


# --------------------------------------------------------------------------- the stage, real data


def test_transfer1_runs_on_the_sst2_sample(model_dir, shared_data, tmp_path, capsys):
    out = tmp_path / "SST-2/transfer1/seed0"
    argv = ["--params", str(REPO / "params.yaml"), "--scale", "micro", "--task", "SST-2",
            "--variant", "transfer1", "--seed", "0", "--model", str(model_dir),
            "--data", str(shared_data), "--output", str(out)]
    assert stage.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["task"], metrics["variant"], metrics["seed"]) == ("SST-2", "transfer1", 0)
    assert metrics["recipe"]["transfer"] == 1 and metrics["recipe"]["lm_weight"] == 0.5
    assert metrics["model"]["pretrained"] and metrics["train"]["steps"] == 4  # 32 / 8
    assert 0.0 <= metrics["scores"]["dev"]["accuracy"] <= 1.0
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 32
    # A k deeper than the model, and a k below -1, stop with one line naming why.
    bad = [{"transfer1": "transfer3", str(out): str(tmp_path / "bad")}.get(a, a) for a in argv]
    assert stage.main(bad) == 1
    assert "variant transfer3 transfers 3 blocks, but the model has n_layer 2" in \
        capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    with pytest.raises(SystemExit):  # argparse: exit status 2, the usage and why
        stage.main([{"transfer1": "transfer-2"}.get(a, a) for a in argv])
    assert "unknown variant 'transfer-2'" in capsys.readouterr().err


# --------------------------------------------------------------------------- jobs and plan


def test_transfer_jobs_follow_the_others_and_rerun_nothing():
    base = validate_params(_params("micro"))["finetune"]
    params = _params("micro", transfer_tasks=["SST-2"], transfer_layers=[-1, 0, 2])
    cfg = gw.validate(params, {})["finetune"]
    jobs = gw.finetune_jobs(cfg)
    assert jobs[:len(gw.finetune_jobs(base))] == gw.finetune_jobs(base)
    assert jobs[len(gw.finetune_jobs(base)):] == [("SST-2", "transfer-1", 0),
                                                  ("SST-2", "transfer0", 0),
                                                  ("SST-2", "transfer2", 0)]
    assert gw.finetune_dir("SST-2", "transfer0", 0) == "results/finetune/SST-2/transfer0/seed0"
    # Job-list keys: adding a k adds a job; the other jobs' knobs and flags stay the same.
    file = _params("micro")
    more = {"finetune": {**file["finetune"], "transfer_layers": [0, 1]}}
    assert gw.knobs(file, more, "finetune") == gw.knobs(file, {}, "finetune")
    assert gw.cli_overrides(file, more, "finetune") == ""
    # The Snakemake wildcard constraint accepts every transfer variant and nothing else new.
    rule = (REPO / "workflow/rules/finetune.smk").read_text()
    pattern = re.search(r'variant="([^"]+)"', rule).group(1)
    assert all(re.fullmatch(pattern, v) for _, v, _ in jobs)
    assert not re.fullmatch(pattern, "transfer")
    # A task the workflow leaves out (its manual source missing) loses its transfer jobs too.
    assert not gw.without_tasks(cfg, {"SST-2": {}}).transfer_tasks
    with pytest.raises(ConfigError, match="k=3 exceeds model.n_layer 2"):
        gw.validate(_params("micro", transfer_tasks=["SST-2"], transfer_layers=[3]), {})
    with pytest.raises(ConfigError, match="transfer_layers: a k is listed twice"):
        validate_params(_params("micro", transfer_layers=[1, 1]))


def test_transfer_jobs_at_gpt1_are_listed_and_costed():
    cfg = gw.validate(_params("gpt1"), {})
    ft = cfg["finetune"]
    assert (ft.transfer_tasks, ft.transfer_layers) == (("MNLI", "RACE"), tuple(range(13)))
    jobs = gw.finetune_jobs(ft)
    moved = [j for j in jobs if j[1].startswith("transfer")]
    assert len(moved) == 2 * 13 * 3 and ("RACE", "transfer12", 2) in moved
    plan = estimate(cfg, gpus=8)
    transformer = [j for j in jobs if j[1] != "lstm"]  # the LSTM branch's are costed apart
    assert plan["finetune_jobs"] == len(transformer)
    by_task = {t["task"]: t["jobs"] for t in plan["finetune"]}
    assert by_task["MNLI"] == sum(1 for t, _, _ in transformer if t == "MNLI") > 13 * 3
    tiny = gw.finetune_jobs(gw.validate(_params("tiny"), {})["finetune"])
    assert [j for j in tiny if j[1].startswith("transfer")] == [
        ("SST-2", "transfer0", 0), ("SST-2", "transfer2", 0), ("SST-2", "transfer4", 0)]


# --------------------------------------------------------------------------- the report section


def _run(task: str, k: int, seed: int, percent: float | None, metric: str = "accuracy",
         split: str = "dev") -> dict:
    return {"task": task, "variant": f"transfer{k}", "seed": seed,
            "headline": {"metric": metric, "split": split, "percent": percent},
            "scores_percent": {split: {metric: percent}},
            "chance_percent": {split: {metric: 50.9 if metric == "accuracy" else 0.0}}}


def test_transfer_report_section_plots_mean_and_spread_per_k():
    runs = [_run("SST-2", 0, 0, 50.0), _run("SST-2", 0, 1, 54.0), _run("SST-2", 2, 0, 61.0),
            _run("SST-2", 4, 0, 66.5), _run("CoLA", 0, 0, None, metric="mcc"),
            {"task": "SST-2", "variant": "full", "seed": 0}]
    cfg = resolve_section(_params("tiny", transfer_tasks=["SST-2", "CoLA", "RTE"]), "finetune")
    layers = section.layers_section(runs, cfg, {"RTE": "not run: source needs a manual download"})
    rows = {(r["task"], r["k"]): r for r in layers.rows}
    assert rows["SST-2", 0]["mean"] == 52.0 and rows["SST-2", 0]["n"] == 2
    assert rows["SST-2", 0]["std"] == pytest.approx(2 ** 1.5)  # sample std of 50, 54
    assert rows["SST-2", 4]["std"] is None and rows["CoLA", 0]["mean"] is None
    assert [r["k"] for r in layers.rows if r["task"] == "SST-2"] == [0, 2, 4]
    table = layers.section.table.to_dicts()
    assert [t["Δ vs k=0"] for t in table] == ["+0.0", "+9.0", "+14.5", "—"]
    assert table[0]["Ours"] == "52.0 ± 2.8" and table[2]["Transferred"] == "embeddings + 4 blocks"
    assert [t["Chance"] for t in table] == ["50.9", "50.9", "50.9", "0.0"]
    assert layers.section.title == "Layers transferred" and "9 points" in layers.section.text
    assert layers.section.items == ("RTE: not run: source needs a manual download",)
    assert layers.figures[0].file == "layers_transferred.png"
    assert layers.figures[0].png.startswith(PNG_MAGIC)
    assert section.without_transfer(runs) == [runs[-1]]


def test_transfer_report_section_without_jobs_says_not_run_and_why():
    off = resolve_section(_params("micro"), "finetune")
    layers = section.layers_section([], off)
    assert not layers.figures and not layers.rows and layers.section.table is None
    assert layers.section.items[0].startswith("not run: finetune.transfer_tasks")
    on = resolve_section(_params("tiny"), "finetune")
    assert section.layers_section([], on).section.items == (
        "SST-2: not run: no transfer<k> job folder was given",)


def test_transfer_runs_get_their_section_not_paper_table_rows(tmp_path):
    """The whole report over fake stage outputs plus two transfer jobs: the section sits after
    the paper tables, its figure beside the report, and no table row shows a transfer run."""
    paths = build_run(tmp_path)
    paths["finetune"] += [_job(tmp_path, "SST-2", f"transfer{k}", 0, {"dev": {"accuracy": a}},
                               "accuracy") for k, a in ((0, 51.0), (2, 57.0))]
    doc = report_run(paths, repo=tmp_path)
    assert [(r["task"], r["k"], r["mean"]) for r in doc["layers_transferred"]] == [
        ("SST-2", 0, 51.0), ("SST-2", 2, 57.0)]
    assert not [r for rows in doc["tables"].values() for r in rows
                if r["variant"].startswith("transfer")]
    assert "layers_transferred.png" in [f["file"] for f in doc["figures"]]
    assert (paths["output"] / "layers_transferred.png").read_bytes().startswith(PNG_MAGIC)
    md = (paths["output"] / "report.md").read_text()
    assert md.index("Fine-tuning beside the paper") < md.index("## Layers transferred") \
        < md.index("Per-task notes")
    assert len({j["variant"] for j in doc["jobs"]} & {"transfer0", "transfer2"}) == 2

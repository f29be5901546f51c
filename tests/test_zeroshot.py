"""The zero-shot stage (#14 §2, Figure 2 right): the four heuristics on a hand-made model whose
answers are known, weight snapshots through a resume, the stage end to end on the sample's
SST-2 and CoLA at micro scale, and the report's section."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from pretrain_data import ENV, pretrain_cmd, run
from procs import kill_after_checkpoint
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, pre_tokenizers

from gptpipe.config import ZeroshotConfig
from gptpipe.errors import GptpipeError
from gptpipe.tasks import Example
from gptpipe.vocab import SPECIAL_TOKENS, special_ids
from gptpipe.workflow import needed_sources, zeroshot_data
from gptpipe.zeroshot import data as zdata
from gptpipe.zeroshot import heuristics as h
from gptpipe.zeroshot.run import run as run_stage
from gptpipe.zeroshot.score import Scorer

WORDS = ("<unk>", "the", "cat", "dog", "chased", "because", "it", "was", "hungry", "film",
         "great", "awful", "very", "positive", "negative", "a", "z", "what", "ate", "fish")


class BagLM(torch.nn.Module):
    """A hand-made language model: the next-token logits after a prefix are the sum of the
    rows of `table` of the prefix's tokens, so what a word makes likely stays likely after it."""

    def __init__(self, table: torch.Tensor, context: int = 32) -> None:
        super().__init__()
        self.table, self.cfg = table, SimpleNamespace(context=context)

    def forward(self, x: torch.Tensor):
        return torch.cumsum(self.table[x], dim=1), None


def _scorer(boosts: dict[str, dict[str, float]], batch_size: int = 3) -> Scorer:
    vocab = {w: i for i, w in enumerate(WORDS + SPECIAL_TOKENS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    table = torch.zeros(len(vocab), len(vocab))
    for word, nexts in boosts.items():
        for nxt, value in nexts.items():
            table[vocab[word], vocab[nxt]] = value
    return Scorer(BagLM(table), tok, special_ids(tok), torch.device("cpu"), batch_size)


def _ex(i: int, texts: tuple[str, ...], label: int, choices=None) -> Example:
    return Example(str(i), texts, choices, label)


def test_zeroshot_scorer_sums_a_word_over_its_tokens_and_keeps_the_context_window():
    scorer = _scorer({"very": {"positive": 2.0}})
    [one, two] = scorer.logprobs([("the film very", " positive"),
                                  ("the film very", " positive positive")])
    assert len(one) == 1 and len(two) == 2  # one log-prob per token of the text
    # "very" put logit 2 on "positive", 0 on the 24 other tokens
    assert one[0] == pytest.approx(2.0 - math.log(math.exp(2.0) + 24)) == two[0]
    long = " ".join(["the"] * 100)
    [cut] = scorer.logprobs([(long, " cat")])
    assert len(cut) == 1  # the context lost tokens from its left, not the continuation


def test_zeroshot_sst2_compares_positive_and_negative_after_very():
    scorer = _scorer({"great": {"positive": 3.0}, "awful": {"negative": 3.0}})
    exs = [_ex(0, ("the great film",), 1), _ex(1, ("the awful film",), 0),
           _ex(2, ("a great film",), 0)]  # the third is labelled against the model
    preds, acc = h.sst2(scorer, exs)
    assert preds == [1, 0, 1] and acc == pytest.approx(2 / 3)
    assert h.chance("accuracy", exs) == pytest.approx(2 / 3)


def test_zeroshot_cola_threshold_is_chosen_on_train_and_applied_to_dev():
    scorer = _scorer({t: {"a": 4.0} for t in ("a", "<|endoftext|>")})
    train = [_ex(0, ("a a a",), 1), _ex(1, ("z z z",), 0), _ex(2, ("a a",), 1),
             _ex(3, ("z a z",), 0)]
    dev = [_ex(4, ("a a a a",), 1), _ex(5, ("z z",), 0), _ex(6, ("z",), 0)]
    preds, score, threshold = h.cola(scorer, train, dev)
    good = h.sentence_scores(scorer, [train[0], train[2]])
    bad = h.sentence_scores(scorer, [train[1], train[3]])
    assert max(bad) < threshold < min(good)
    assert preds == [1, 0, 0] and score == pytest.approx(1.0)
    assert h.best_threshold([0.1, 0.2, 0.3], [1, 0, 1]) == pytest.approx(0.25)


def test_zeroshot_race_picks_the_likeliest_answer_given_article_and_question():
    scorer = _scorer({"cat": {"fish": 3.0}, "dog": {"dog": 3.0}})
    exs = [_ex(0, ("the cat was hungry", "what ate"), 2, ("dog", "cat", "fish")),
           _ex(1, ("the dog chased", "what"), 0, ("dog", "fish", "a"))]
    preds, acc = h.race(scorer, exs)
    assert preds == [2, 0] and acc == 1.0
    assert h.chance("accuracy", exs) == pytest.approx(1 / 3)


def test_zeroshot_dprd_substitutes_the_pronoun_and_scores_the_rest():
    scorer = _scorer({"cat": {"hungry": 2.0, "was": 1.0}})
    sentence = "the cat chased the dog because it was hungry"
    assert h.substitute(sentence, "it", "dog") == ("the cat chased the dog because dog",
                                                   " was hungry")
    exs = [_ex(0, (sentence, "it"), 0, ("cat", "dog")),
           _ex(1, (sentence, "it"), 1, ("dog", "cat"))]
    preds, acc = h.dprd(scorer, exs)
    assert preds == [0, 1] and acc == 1.0
    with pytest.raises(GptpipeError, match="pronoun 'they' not found"):
        h.substitute(sentence, "they", "cat")


def test_zeroshot_dprd_reader_and_its_errors(tmp_path):
    path = tmp_path / "test.c.txt"
    path.write_text("He likes Cuba and hates Japan because it is not communist.\nit\n"
                    "Cuba,Japan\nJapan\n\nThey met them.\nthey\nA, B\nA\n")
    exs = zdata.read_dprd(path)
    assert [(ex.choices, ex.label) for ex in exs] == [(("Cuba", "Japan"), 1), (("A", "B"), 0)]
    path.write_text("One line.\nit\nA,B\nC\n")
    with pytest.raises(GptpipeError, match=r"test.c.txt:4: answer 'C' is not one of"):
        zdata.read_dprd(path)


def test_zeroshot_sources_are_fetched_only_when_its_tasks_read_them():
    from gptpipe.config import load_params, validate_params

    cfg = validate_params(load_params(Path(__file__).parents[1] / "params.yaml"))
    ft, fetch = cfg["finetune"], cfg["fetch"]
    gpt1 = ZeroshotConfig()
    assert zeroshot_data(gpt1, fetch) == ["data/glue/CoLA", "data/glue/SST-2", "data/other/RACE",
                                          "data/other/DPRD/test.c.txt"]
    assert "dprd-test" in needed_sources(ft, fetch, gpt1)
    assert "dprd-train" not in needed_sources(ft, fetch, gpt1)
    assert "dprd-test" not in needed_sources(ft, fetch, cfg["zeroshot"])  # tiny: SST-2, CoLA
    dprd = fetch.source("dprd-test")
    assert dprd.size == 67044 and dprd.checked.endswith("dataset_infos.json")


# ------------------------------------------------------------------ snapshots and the stage

SETS = ("updates=40", "checkpoint_every=10", "keep_checkpoints=1", "snapshot_every=10",
        "eval_every=20")


@pytest.fixture(scope="module")
def snap_run(micro, tmp_path_factory):
    """A micro pre-training with a snapshot every 10 of its 40 updates."""
    out = tmp_path_factory.mktemp("zeroshot-ref")
    res = run(pretrain_cmd(*micro, out, *SETS))
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_zeroshot_snapshots_survive_rotation_and_a_resume(micro, snap_run, tmp_path):
    index = json.loads((snap_run / "out/snapshots/index.json").read_text())
    assert [s["update"] for s in index] == [0, 10, 20, 30, 40]
    assert [s["tokens"] for s in index] == [512 * u for u in (0, 10, 20, 30, 40)]
    # Checkpoints rotate (one kept); the snapshots beside them stay.
    [run_dir] = (snap_run / "ck").iterdir()
    assert [p.name for p in run_dir.glob("step-*")] == ["step-00000040"]
    assert len(list((run_dir / "snapshots").glob("update*.safetensors"))) == 5
    final = load_file(snap_run / "out/model/model.safetensors")
    last = load_file(snap_run / "out/snapshots/update40.safetensors")
    assert final.keys() == last.keys() and all((final[k] == last[k]).all() for k in final)

    killed = tmp_path / "killed"
    cmd = pretrain_cmd(*micro, killed, *SETS)
    kill_after_checkpoint(cmd, killed / "ck", {**os.environ, **ENV}, last_step=40)
    res = run(cmd)
    assert res.returncode == 0 and "resuming from" in res.stderr, res.stderr[-3000:]
    again = json.loads((killed / "out/snapshots/index.json").read_text())
    assert again == index
    for snap in index:  # bitwise the uninterrupted run's weights at every snapshot
        a = load_file(snap_run / "out/snapshots" / snap["file"])
        b = load_file(killed / "out/snapshots" / snap["file"])
        assert all((a[k] == b[k]).all() for k in a), snap["file"]


def test_zeroshot_snapshots_leave_the_training_bit_identical(micro, snap_run, tmp_path):
    res = run(pretrain_cmd(*micro, tmp_path, *SETS[:-2], "snapshot_every=0", SETS[-1]))
    assert res.returncode == 0, res.stderr[-3000:]
    assert not (tmp_path / "out/snapshots").exists()
    a = load_file(snap_run / "out/model/model.safetensors")
    b = load_file(tmp_path / "out/model/model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
    # the same run fingerprint: a changed snapshot_every would resume, not start afresh
    assert [p.name for p in (snap_run / "ck").iterdir()] == [
        p.name for p in (tmp_path / "ck").iterdir()]


def test_zeroshot_stage_end_to_end_on_the_sample(snap_run, shared_data, tmp_path):
    """The CLI on the micro run's snapshots, the sample's SST-2 and CoLA, 32 examples each."""
    from gptpipe.tasks import get
    from gptpipe.tasks.loaders import load_split
    from gptpipe.zeroshot import cli

    out = tmp_path / "zs"
    params = Path(__file__).parents[1] / "params.yaml"
    rc = cli.main(["--params", str(params), "--scale", "micro", "--set", "device=cpu",
                   "--pretrain", str(snap_run / "out"), "--data", str(shared_data),
                   "--output", str(out)])
    assert rc == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert set(doc["tasks"]) == {"SST-2", "CoLA"} and set(doc["not_run"]) == {"RACE", "DPRD"}
    sst, cola = doc["tasks"]["SST-2"], doc["tasks"]["CoLA"]
    assert (sst["metric"], sst["split"], sst["examples"]) == ("accuracy", "dev", 32)
    assert (cola["metric"], cola["examples"], cola["train_examples"]) == ("mcc", 32, 32)
    assert [p["update"] for p in sst["points"]] == [0, 10, 20, 30, 40]
    assert all(0.0 <= p["score"] <= 1.0 for p in sst["points"])
    assert all(-1.0 <= p["score"] <= 1.0 and "threshold" in p for p in cola["points"])
    assert cola["chance"] == 0.0
    dev, _ = load_split(get("SST-2"), shared_data, "dev", limit=32, rank=zdata.cap_key)
    share = sum(ex.label for ex in dev) / 32
    assert sst["chance"] == pytest.approx(max(share, 1 - share))

    # a pre-training without snapshots: an error naming the file and the knob
    bare = tmp_path / "bare"
    shutil.copytree(snap_run / "out", bare)
    shutil.rmtree(bare / "snapshots")
    with pytest.raises(GptpipeError, match="snapshot_every"):
        run_stage(ZeroshotConfig(tasks=("SST-2",), max_examples=4, device="cpu"), bare,
                  shared_data, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_zeroshot_report_section(tmp_path):
    from test_report import _argv, build_run

    from gptpipe.report import cli as report

    paths = build_run(tmp_path / "run")
    zs = tmp_path / "zs"
    zs.mkdir()
    points = [{"update": u, "tokens": 512 * u, "score": s} for u, s in ((0, 0.5), (100, 0.61))]
    (zs / "metrics.json").write_text(json.dumps({
        "snapshots": [], "not_run": {"RACE": "not in zeroshot.tasks", "DPRD": "not in tasks"},
        "tasks": {"SST-2": {"metric": "accuracy", "split": "dev", "examples": 200,
                            "chance": 0.51, "points": points}}}))
    assert report.main([*_argv(paths), "--zeroshot", str(zs)]) == 0
    md = (paths["output"] / "report.md").read_text()
    section = md.split("## Zero-shot")[1].split("\n## ")[0]
    assert "| SST-2 | accuracy | dev (200) | 100 | 51,200 | 61.0 | 51.0 |" in section
    assert "RACE: not run: not in zeroshot.tasks" in section
    assert "CoLA: not run: not scored" in section
    assert (paths["output"] / "zeroshot.png").read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((paths["output"] / "report.json").read_text())
    assert doc["zeroshot"]["tasks"]["SST-2"]["points"] == points
    assert "zeroshot" in [f["name"] for f in doc["figures"]]


def test_zeroshot_config_per_scale_and_its_errors():
    from gptpipe.config import ConfigError, resolve_section

    tiny = resolve_section({"scale": "tiny"}, "zeroshot")
    gpt1 = resolve_section({"scale": "gpt1"}, "zeroshot")
    assert (tiny.tasks, tiny.max_examples) == (("SST-2", "CoLA"), 200)
    assert (gpt1.tasks, gpt1.max_examples) == (("SST-2", "CoLA", "RACE", "DPRD"), 0)
    assert resolve_section({"scale": "tiny"}, "pretrain").snapshot_every == 100
    with pytest.raises(ConfigError, match=r"zeroshot.tasks\[1\]: 'MNLI' is not one of"):
        resolve_section({"scale": "tiny", "zeroshot": {"tasks": ["SST-2", "MNLI"]}}, "zeroshot")
    with pytest.raises(ConfigError, match="snapshot_every must be >= 0"):
        resolve_section({"pretrain": {"snapshot_every": -1}}, "pretrain")

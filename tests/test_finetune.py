"""Fine-tuning (gptpipe/finetune): task heads per input
transformation, the task + λ·LM loss, bucketed batches, the stage's outputs and its errors.

A micro model (2 layers, 64 wide) with a 1,024-token BPE learned from the sample's task texts;
examples come from the real task files in the mirror, capped to tens.
"""

from __future__ import annotations

import dataclasses

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from gptpipe.bpe import tokenizer as bpe
from gptpipe import vocab
from gptpipe.io import file_sha256
from gptpipe import tasks
from gptpipe.config import BpeConfig, load_params, resolve_section
from gptpipe.finetune.body import build_gpt, open_body
from gptpipe.errors import ConfigError, GptpipeError
from gptpipe.finetune.data import (
    CAP_SALT, Recipe, cap, cap_key, files_read, load_task, recipe,
)
from gptpipe.finetune import loop
from gptpipe.finetune.loop import collate, length_batches, train
from gptpipe.finetune.model import TaskModel, lm_loss, sequences_per_example, task_loss
from gptpipe.finetune.passes import (
    examples_per_pass,
    passes_per_update,
)
from gptpipe.memory import GIB, step_memory
from gptpipe.model import GPT, GPTConfig
from gptpipe.modeldir import save_model_dir
from gptpipe.finetune import cli as stage
from gptpipe.tasks import records
from gptpipe.tasks.loaders import holdout, load_split
from gptpipe.tasks.transforms import encode_examples

REPO = Path(__file__).resolve().parents[1]
KINDS = {"single": "SST-2", "pair": "RTE", "similarity": "MRPC", "regression": "STS-B",
         "multiple_choice": "StoryCloze"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices gain nothing from threads, and a busy machine makes them spin."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def micro_cfg(shared_data):
    """The micro scale's `finetune` section, reading the mirror like `data/`."""
    params = load_params(REPO / "params.yaml") | {"scale": "micro"}
    return resolve_section(params, "finetune")


@pytest.fixture(scope="module")
def tokenizer(shared_data):
    glue = shared_data / "glue"
    texts = [line.split("\t")[0] for line in
             (glue / "SST-2/train.tsv").read_text(encoding="utf-8").splitlines()[1:6000]]
    texts += [line.split("\t")[-1] for line in
              (glue / "CoLA/train.tsv").read_text(encoding="utf-8").splitlines()]
    return bpe.train(texts, BpeConfig(vocab_size=1024, style="bytelevel"), source="test corpus")


def _gpt(tok, seed: int = 0, dropout: float = 0.1) -> GPT:
    cfg = GPTConfig.preset("micro", vocab_size=tok.get_vocab_size(), embd_dropout=dropout,
                           attn_dropout=dropout, resid_dropout=dropout)
    return GPT(cfg, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer) -> Path:
    out = tmp_path_factory.mktemp("model") / "pretrain"
    gpt = _gpt(tokenizer)
    save_model_dir(gpt, gpt.cfg, tokenizer, out / "model")  # laid out like `pretrain`'s output
    return out


def _encoded(cfg, task: str, shared_data: Path, tok, n: int = 8):
    rec = recipe(cfg, task, "full")
    data = load_task(cfg, task, rec, shared_data)
    spec = data.spec
    enc, _ = encode_examples(data.train[:n], spec.kind, tok, 64)
    return spec, enc


def _settings(lm_weight: float = 0.5, epochs: int = 1, lr: float = 1e-3, batch: int = 8,
              micro_batch: int = 0, weight_decay: float = 0.0):
    return Recipe(lr=lr, batch=batch, micro_batch=micro_batch, max_tokens_per_pass=8_192,
                  epochs=epochs, warmup_fraction=0.0, lm_weight=lm_weight, clf_dropout=0.0,
                  grad_clip=1.0, weight_decay=weight_decay, max_len=64, max_train_examples=0,
                  max_eval_examples=0, submit=False, pretrained=True)


# --------------------------------------------------------------------------- heads and losses


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_overfits_a_few_examples(kind, micro_cfg, shared_data, tokenizer):
    spec, enc = _encoded(micro_cfg, KINDS[kind], shared_data, tokenizer)
    assert spec.kind == kind
    torch.manual_seed(0)
    model = TaskModel(_gpt(tokenizer, dropout=0.0), kind, spec.num_labels,
                      n_choices=spec.n_choices, clf_dropout=0.0,
                      generator=torch.Generator().manual_seed(1))
    log = train(model, enc, _settings(epochs=30, lr=2e-3), pad_id=vocab.special_ids(tokenizer).pad,
                generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    assert log.steps == 30 and log.examples_seen == 30 * len(enc)
    assert log.epoch_task_loss[-1] < 0.25 * log.epoch_task_loss[0], log.epoch_task_loss
    assert log.epoch_lm_loss[-1] < log.epoch_lm_loss[0]


def test_similarity_adds_the_states_of_both_orders(micro_cfg, shared_data, tokenizer):
    spec, enc = _encoded(micro_cfg, "MRPC", shared_data, tokenizer, n=3)
    gpt = _gpt(tokenizer).eval()
    with torch.no_grad():  # N(0, 0.5) matrices: at N(0, 0.02) the context barely matters yet
        for p in gpt.parameters():
            p.mul_(25.0 if p.dim() == 2 else 1.0)
    model = TaskModel(gpt, "similarity", 2, clf_dropout=0.0).eval()
    ids, extract, _ = collate(enc, [0, 1, 2], vocab.special_ids(tokenizer).pad, torch.device("cpu"))
    scores, _ = model(ids, extract)
    with torch.no_grad():
        states = [gpt.hidden_states(torch.tensor([s]))[0, -1]
                  for e in enc for s in e.input_ids]  # each order alone, unpadded
    ab, ba = torch.stack(states[0::2]), torch.stack(states[1::2])
    assert (ab - ba).abs().max() > 0.1  # the two orders really differ
    torch.testing.assert_close(scores, model.head(ab + ba), atol=1e-5, rtol=1e-5)
    assert (scores - model.head(2 * ab)).abs().max() > 1e-3


def test_multiple_choice_is_a_softmax_over_the_choices(micro_cfg, shared_data, tokenizer):
    spec, enc = _encoded(micro_cfg, "StoryCloze", shared_data, tokenizer, n=4)
    model = TaskModel(_gpt(tokenizer).eval(), "multiple_choice", 1, n_choices=2,
                      clf_dropout=0.0).eval()
    ids, extract, labels = collate(enc, range(4), vocab.special_ids(tokenizer).pad,
                                   torch.device("cpu"))
    scores, _ = model(ids, extract)
    assert scores.shape == (4, 2)
    with torch.no_grad():
        h = model.gpt.hidden_states(ids)
        per_row = model.head(h[torch.arange(8), extract]).view(4, 2)
    torch.testing.assert_close(scores, per_row)
    expected = -torch.log_softmax(per_row, dim=1)[torch.arange(4), labels].mean()
    torch.testing.assert_close(task_loss("multiple_choice", scores, labels), expected)


def test_regression_is_one_output_with_squared_error():
    model = TaskModel(GPT(GPTConfig.preset("micro")), "regression", 1, clf_dropout=0.0)
    scores = model._scores(torch.randn(6, 64))
    assert scores.shape == (3,)
    gold = torch.tensor([0.0, 2.5, 5.0])
    torch.testing.assert_close(task_loss("regression", scores, gold), ((scores - gold) ** 2).mean())


def test_lm_loss_scores_real_tokens_only():
    gpt = GPT(GPTConfig.preset("micro", vocab_size=50)).eval()
    a, b = [1, 2, 3, 4, 5, 6], [7, 8, 9]
    ids = torch.tensor([a, b + [0, 0, 0]])  # b right-padded with id 0
    with torch.no_grad():
        got = lm_loss(gpt, gpt.hidden_states(ids), ids, torch.tensor([5, 2]))
        sums = [F.cross_entropy(gpt(torch.tensor([s]))[0][0, :-1], torch.tensor(s[1:]),
                                reduction="sum") for s in (a, b)]
    torch.testing.assert_close(got, (sums[0] + sums[1]) / (5 + 2))


def test_aux_weight_changes_the_loss(micro_cfg, shared_data, tokenizer):
    spec, enc = _encoded(micro_cfg, "SST-2", shared_data, tokenizer)
    pad = vocab.special_ids(tokenizer).pad
    logs = {}
    for lam in (0.0, 0.5):
        torch.manual_seed(0)
        model = TaskModel(_gpt(tokenizer), "single", 2, generator=torch.Generator().manual_seed(1))
        logs[lam] = train(model, enc, _settings(lm_weight=lam), pad_id=pad,
                          generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    assert logs[0.0].epoch_lm_loss == [] and len(logs[0.5].epoch_lm_loss) == 1
    # Same data, init and dropout: the first update's losses differ by exactly λ·LM.
    assert logs[0.0].epoch_task_loss == pytest.approx(logs[0.5].epoch_task_loss)
    assert logs[0.5].first_loss - logs[0.0].first_loss == pytest.approx(
        0.5 * logs[0.5].epoch_lm_loss[0], rel=1e-5)
    assert logs[0.5].epoch_lm_loss[0] > 1.0  # a real LM loss (ln 1029 ~ 6.9 at init)


# --------------------------------------------------------------------------- batching, schedule


@pytest.mark.parametrize("kind", ["single", "similarity", "regression", "multiple_choice"])
def test_gradient_accumulation_matches_the_plain_batch(kind, micro_cfg, shared_data, tokenizer,
                                                       monkeypatch):
    """Passes of 1 and of 3 examples (8 = 3 + 3 + 2: unequal shares, each pass padded to its own
    longest sequence) train the same weights as one pass of the whole batch, dropout off.

    With plain SGD in place of AdamW: Adam divides each gradient by its own running scale, so a
    gradient that is zero in exact arithmetic (the multiple-choice bias, added to every choice
    alike) is rounding noise in either run that Adam turns into steps as large as the lr."""
    spec, enc = _encoded(micro_cfg, KINDS[kind], shared_data, tokenizer, n=16)
    pad = vocab.special_ids(tokenizer).pad
    monkeypatch.setattr(loop, "adamw", lambda model, lr, weight_decay: torch.optim.SGD(
        model.parameters(), lr=lr))
    runs = {}
    for micro_batch in (0, 1, 3):
        model = TaskModel(_gpt(tokenizer, dropout=0.0), kind, spec.num_labels,
                          n_choices=spec.n_choices, clf_dropout=0.0,
                          generator=torch.Generator().manual_seed(1))
        start = {k: v.clone() for k, v in model.state_dict().items()}
        log = train(model, enc, _settings(epochs=2, lr=0.1, micro_batch=micro_batch),
                    pad_id=pad, generator=torch.Generator().manual_seed(0),
                    device=torch.device("cpu"))
        runs[micro_batch] = model.state_dict(), log
    plain, plain_log = runs[0]
    assert (plain_log.examples_per_pass, plain_log.passes) == (8, 4)  # 2 epochs x 2 updates
    assert max((plain[k] - start[k]).abs().max() for k in plain) > 1e-2  # the weights moved
    for micro_batch, passes in ((1, 32), (3, 12)):
        weights, log = runs[micro_batch]
        assert (log.examples_per_pass, log.passes, log.steps) == (micro_batch, passes, 4)
        for name, value in plain.items():  # fp32 rounding only: ~1e-8 here
            assert torch.allclose(weights[name], value, rtol=1e-5, atol=1e-6), name
        assert log.epoch_loss == pytest.approx(plain_log.epoch_loss, rel=1e-5)
        assert log.epoch_task_loss == pytest.approx(plain_log.epoch_task_loss, rel=1e-5)
        assert log.epoch_lm_loss == pytest.approx(plain_log.epoch_lm_loss, rel=1e-5)


def test_examples_per_pass_from_micro_batch_or_the_token_budget():
    def knobs(micro_batch: int, max_tokens: int = 8_192) -> SimpleNamespace:
        return SimpleNamespace(micro_batch=micro_batch, max_tokens_per_pass=max_tokens)

    assert examples_per_pass(32, 1, 512, knobs(0)) == 16  # 16 x 512 = 8,192 tokens
    assert examples_per_pass(32, 2, 512, knobs(0)) == 8  # similarity, Story Cloze
    assert examples_per_pass(32, 4, 512, knobs(0)) == 4  # RACE
    assert examples_per_pass(32, 3, 500, knobs(0)) == 5  # rounded down: 7,500 tokens
    assert examples_per_pass(32, 4, 512, knobs(0, 1_000)) == 1  # never less than one
    assert examples_per_pass(8, 1, 64, knobs(0)) == 8  # never more than the batch
    assert examples_per_pass(32, 4, 512, knobs(6, 1)) == 6  # micro_batch wins over the budget
    assert examples_per_pass(4, 1, 512, knobs(6)) == 4
    assert passes_per_update(32, 6) == 6 and passes_per_update(32, 32) == 1
    with pytest.raises(ValueError, match="max_len"):
        examples_per_pass(32, 1, 0, knobs(0))


def _passes(cfg, task: str) -> tuple[int, int]:
    """(examples per pass, the batch) of `task`'s recipe."""
    spec = tasks.get(task)
    rec = recipe(cfg, spec.name, "full")
    seqs = sequences_per_example(spec.kind, spec.n_choices)
    return examples_per_pass(rec.batch, seqs, rec.max_len, rec), rec.batch


@pytest.mark.parametrize("scale", ["tiny", "micro"])
def test_demo_presets_keep_one_pass_per_batch(scale):
    """The demo's figures stay those of unaccumulated updates: every task it runs fits one pass."""
    cfg = resolve_section({"scale": scale}, "finetune")
    for task in {*cfg.tasks, *cfg.ablation_tasks}:
        per_pass, batch = _passes(cfg, task)
        assert per_pass == batch, task


def test_paper_batch_fits_a_24_gib_gpu_by_the_estimate():
    """gpt1 scale, the default budget: every paper task's pass (RACE: 4 x 4 x 512 tokens) fits a
    24 GiB card by `gptpipe.memory.step_memory`'s upper bound (plain attention kernel), with 2
    GiB left for the CUDA context; twice the budget would not."""
    cfg = resolve_section({"scale": "gpt1"}, "finetune")
    shape = GPTConfig.preset("gpt1")
    params = 116_538_624  # the gpt1 network at vocabulary 40,483 (`gptpipe plan` prints it)
    per_task = {task: _passes(cfg, task) for task in cfg.tasks}
    assert per_task["RACE"] == (4, 32) and per_task["SST-2"] == (16, 32)
    assert per_task["StoryCloze"] == (8, 32)
    card = 24 * GIB
    for task, (per_pass, _) in per_task.items():
        spec = tasks.get(task)
        seqs = per_pass * sequences_per_example(spec.kind, spec.n_choices)
        need = step_memory(shape, params, seqs, cfg.max_len, "bf16").total
        assert need + 2 * GIB < card, task
    double = step_memory(shape, params, 2 * cfg.max_tokens_per_pass // 512, 512, "bf16").total
    assert double > card


def test_task_override_sets_its_own_micro_batch():
    cfg = resolve_section({"scale": "gpt1", "finetune": {"overrides": {"RACE": {
        "micro_batch": 2}}}}, "finetune")
    assert _passes(cfg, "RACE") == (2, 32) and _passes(cfg, "SST-2") == (16, 32)
    for bad in ({"micro_batch": -1}, {"overrides": {"RACE": {"micro_batch": -1}}},
                {"max_tokens_per_pass": 0}):
        with pytest.raises(ConfigError, match="micro_batch|max_tokens_per_pass"):
            resolve_section({"scale": "gpt1", "finetune": bad}, "finetune")


def test_length_batches_cover_everything_once_and_save_padding():
    lengths = torch.randint(5, 200, (1000,), generator=torch.Generator().manual_seed(0)).tolist()
    for gen in (None, torch.Generator().manual_seed(3)):
        batches = length_batches(lengths, 32, gen)
        assert sorted(i for b in batches for i in b) == list(range(1000))
        assert sum(len(b) < 32 for b in batches) == 1

    def padded(bs):
        return sum(len(b) * max(lengths[i] for i in b) for b in bs)
    random_order = torch.randperm(1000, generator=torch.Generator().manual_seed(3)).tolist()
    plain = [random_order[i:i + 32] for i in range(0, 1000, 32)]
    bucketed = length_batches(lengths, 32, torch.Generator().manual_seed(3))
    assert padded(bucketed) < 0.6 * padded(plain)
    again = length_batches(lengths, 32, torch.Generator().manual_seed(3))
    assert again == bucketed  # seeded: the same order every time


# --------------------------------------------------------------------------- data


def test_caps_take_a_hash_chosen_subset_in_file_order(micro_cfg, shared_data):
    rec = recipe(micro_cfg, "SST-2", "full")
    data = load_task(micro_cfg, "SST-2", rec, shared_data)
    assert data.counts == {"train": {"available": 67_349, "used": 32},
                           "dev": {"available": 872, "used": 32}}
    assert not data.predicted  # a capped test split would make a submission GLUE rejects
    full, _ = load_split(data.spec, shared_data, "train")
    by_hash = sorted(full, key=lambda e: hashlib.sha256(f"{CAP_SALT}\0{e.id}".encode()).digest())
    chosen = {e.id for e in by_hash[:32]}
    assert [e.id for e in data.train] == [e.id for e in full if e.id in chosen]  # file order
    assert [e.id for e in data.train] != [e.id for e in full[:32]]  # not the file's head
    assert cap(full, 0) == full


def test_holdout_stands_in_for_a_missing_split(micro_cfg, shared_data):
    data = load_task(micro_cfg, "QNLI", recipe(micro_cfg, "QNLI", "full"), shared_data)
    assert data.counts["train"]["available"] + data.counts["dev"]["available"] == 5_463
    assert not {e.id for e in data.train} & {e.id for e in data.scored["dev"]}
    assert any("train = 2732 examples (50%) of dev" in n for n in data.notes), data.notes


def test_capped_reads_stream_and_match_the_in_memory_rule(micro_cfg, shared_data, monkeypatch):
    """A cap and a holdout are applied while the file is read: the result is the in-memory
    rule's (holdout, then cap), and no more than twice the cap is ever held."""
    peak = [0]
    add = records.Collector.add

    def counting_add(self, example, line):
        add(self, example, line)
        peak[0] = max(peak[0], len(self.examples))

    monkeypatch.setattr(records.Collector, "add", counting_add)
    spec = micro_cfg  # QQP: 23,497 train rows; holdout train -> dev (10%), caps 32 / 32
    data = load_task(spec, "QQP", recipe(spec, "QQP", "full"), shared_data)
    assert 0 < peak[0] < 2 * 32 and data.counts["train"]["used"] == 32
    monkeypatch.setattr(records.Collector, "add", add)
    full, report = load_split(data.spec, shared_data, "train")
    rest, held = holdout(full, 0.1)
    assert data.train == cap(rest, 32) and data.scored["dev"] == cap(held, 32)
    assert data.counts["train"]["available"] == len(rest) and len(rest) + len(held) == report.kept
    streamed, streamed_report = load_split(data.spec, shared_data, "train", limit=100,
                                           rank=cap_key)
    assert streamed == cap(full, 100) and streamed_report == report


def test_story_cloze_holds_out_374_val_stories_as_the_original_code(shared_data):
    cfg = resolve_section({"scale": "gpt1"}, "finetune")
    data = load_task(cfg, "StoryCloze", recipe(cfg, "StoryCloze", "full"), shared_data)
    assert data.counts == {"val": {"available": 1_497, "used": 1_497},
                           "test": {"available": 1_871, "used": 1_871},
                           "val_holdout": {"available": 374, "used": 374}}
    assert list(data.scored) == ["test", "val_holdout"] and not data.predicted
    assert not {e.id for e in data.train} & {e.id for e in data.scored["val_holdout"]}


# --------------------------------------------------------------------------- the stage


def _run(cfg, model_dir, data, out, task="SST-2", variant="full", seed=0):
    return stage.run(cfg, stage.Job(task, variant, seed), model_dir, data, out)


def test_stage_writes_metrics_and_predictions(micro_cfg, model_dir, shared_data, tmp_path):
    out = tmp_path / "SST-2/full/seed0"
    figures = _run(micro_cfg, model_dir, shared_data, out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(figures))
    assert (metrics["task"], metrics["variant"], metrics["seed"]) == ("SST-2", "full", 0)
    assert metrics["reported_splits"] == ["dev"] and metrics["headline"]["metric"] == "accuracy"
    assert 0.0 <= metrics["scores"]["dev"]["accuracy"] <= 1.0
    assert metrics["scores_percent"]["dev"]["accuracy"] == pytest.approx(
        100 * metrics["scores"]["dev"]["accuracy"])
    assert metrics["caps"]["applied"] and metrics["train"]["steps"] == 4  # 32 examples / 8
    assert metrics["model"]["pretrained"] and metrics["recipe"]["lm_weight"] == 0.5
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [x["split"] for x in lines] == ["dev"] * 32
    assert all(len(x["scores"]) == 2 and x["prediction"] in (0, 1) for x in lines)
    accuracy = sum(x["label"] == x["prediction"] for x in lines) / 32
    assert metrics["scores"]["dev"]["accuracy"] == pytest.approx(accuracy)
    # The capped test split would make a submission GLUE rejects: none is written, and why.
    assert not (out / "SST-2.tsv").exists() and metrics["submission"] == []
    assert any("no submission for test: capped at 32 of 1821" in n for n in metrics["notes"])


def test_uncapped_test_split_gets_a_complete_submission(micro_cfg, model_dir, shared_data,
                                                        tmp_path):
    cfg = dataclasses.replace(micro_cfg, max_eval_examples=0)  # WNLI: 71 dev, 146 test rows
    out = tmp_path / "WNLI/full/seed0"
    metrics = _run(cfg, model_dir, shared_data, out, task="WNLI")
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [x["split"] for x in lines] == ["dev"] * 71 + ["test"] * 146
    assert all(x["label"] is None for x in lines[71:])
    rows = (out / "WNLI.tsv").read_text().splitlines()
    assert rows[0] == "index\tprediction" and len(rows) == 147
    assert [r.split("\t")[1] for r in rows[1:]] == [str(x["prediction"]) for x in lines[71:]]
    assert metrics["submission"] == [{"split": "test", "file": "WNLI.tsv", "rows": 146,
                                      "of": 146, "complete": True}]


def _mnli_like(root: Path, shared_data: Path, with_ax: bool) -> Path:
    """MNLI's file layout (and AX's) filled with the sample's RTE pairs: the sample has
    neither. Labels cycle through MNLI's three; test and AX files carry no label column."""
    rte = (shared_data / "glue/RTE/train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    pairs = [line.split("\t")[1:3] for line in rte]
    words = ("entailment", "neutral", "contradiction")
    sizes = {"train": 16, "dev_matched": 10, "dev_mismatched": 9, "test_matched": 6,
             "test_mismatched": 5}
    files = {f"MNLI/{split}.tsv": n for split, n in sizes.items()}
    if with_ax:
        files["AX/AX.tsv"] = 11
    start = 0
    for name, n in files.items():
        labelled = "dev" in name or "train" in name
        head = "index\tsentence1\tsentence2" + ("\tgold_label" if labelled else "")
        rows = [f"{i}\t{a}\t{b}" + (f"\t{words[(i * 7 + start) % 4 % 3]}" if labelled else "")
                for i, (a, b) in enumerate(pairs[start:start + n])]
        path = root / "glue" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join([head, *rows]) + "\n", encoding="utf-8")
        start += n
    return root


def test_mnli_job_predicts_ax_for_the_glue_zip(micro_cfg, model_dir, shared_data, tmp_path):
    data = _mnli_like(tmp_path / "data", shared_data, with_ax=False)
    metrics = _run(micro_cfg, model_dir, data, tmp_path / "no_ax", task="MNLI")
    assert [s["file"] for s in metrics["submission"]] == ["MNLI-m.tsv", "MNLI-mm.tsv"]
    assert any(n.startswith("AX test not predicted: ") and "glue-ax" in n
               for n in metrics["notes"])
    data = _mnli_like(tmp_path / "data", shared_data, with_ax=True)
    out = tmp_path / "MNLI/full/seed0"
    metrics = _run(micro_cfg, model_dir, data, out, task="MNLI")
    ax = metrics["submission"][-1]
    assert {k: ax[k] for k in ("task", "split", "file", "rows", "of", "complete")} == {
        "task": "AX", "split": "test", "file": "AX.tsv", "rows": 11, "of": 11, "complete": True}
    rows = (out / "AX.tsv").read_text().splitlines()
    assert rows[0] == "index\tprediction" and len(rows) == 12
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    ax_lines = [x for x in lines if x["split"] == "AX/test"]
    assert [r.split("\t")[0] for r in rows[1:]] == [x["id"] for x in ax_lines]
    assert [r.split("\t")[1] for r in rows[1:]] == [
        ("entailment", "neutral", "contradiction")[x["prediction"]] for x in ax_lines]
    # Chance on each scored split: the share of its most frequent label, counted here.
    for split in ("dev_matched", "dev_mismatched"):
        gold = [x["label"] for x in lines if x["split"] == split]
        share = max(gold.count(k) for k in set(gold)) / len(gold)
        assert metrics["chance"][split] == {"accuracy": pytest.approx(share)}
        assert metrics["chance_percent"][split]["accuracy"] == pytest.approx(100 * share)
    assert files_read(micro_cfg, "MNLI")[-1] == "glue/AX/AX.tsv"  # so the workflow fetches it


def test_same_seed_same_results_other_seed_other_results(micro_cfg, model_dir, shared_data,
                                                         tmp_path):
    runs = [_run(micro_cfg, model_dir, shared_data, tmp_path / f"r{i}", task="RTE", seed=s)
            for i, s in enumerate((3, 3, 4))]
    preds = [(tmp_path / f"r{i}/predictions.jsonl").read_text() for i in range(3)]
    assert runs[0]["scores"] == runs[1]["scores"] and preds[0] == preds[1]
    assert runs[0]["train"]["epoch_loss"] == runs[1]["train"]["epoch_loss"]
    assert preds[0] != preds[2]


def test_no_pretrain_ignores_the_weights_but_keeps_the_tokenizer(micro_cfg, model_dir,
                                                                 shared_data, tmp_path):
    body = open_body(model_dir, 64)
    trained, fresh = build_gpt(body, True, seed=5), build_gpt(body, False, seed=5)
    saved = GPT(body.cfg, generator=torch.Generator().manual_seed(0))  # what model_dir holds
    torch.testing.assert_close(trained.state_dict(), saved.state_dict())
    assert not torch.equal(fresh.h[0].mlp.c_fc.weight, saved.h[0].mlp.c_fc.weight)
    # A damaged weights file stops `full` but not `no_pretrain`, which never reads it.
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model.json", "tokenizer.json"):
        (broken / name).write_bytes((model_dir / "model" / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    figures = _run(micro_cfg, broken, shared_data, tmp_path / "np", variant="no_pretrain")
    assert figures["model"]["pretrained"] is False
    assert figures["model"]["tokenizer_sha256"] == file_sha256(broken / "tokenizer.json")
    with pytest.raises(GptpipeError, match="model.safetensors"):
        _run(micro_cfg, broken, shared_data, tmp_path / "full")


def test_no_aux_sets_lambda_to_zero(micro_cfg):
    assert recipe(micro_cfg, "SST-2", "no_aux").lm_weight == 0.0
    assert recipe(micro_cfg, "SST-2", "full").lm_weight == 0.5
    assert recipe(micro_cfg, "SST-2", "no_pretrain").pretrained is False


# --------------------------------------------------------------------------- bad input, CLI


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    code = stage.main(argv)
    return code, capsys.readouterr().err.strip().splitlines()[-1]


def _argv(model: Path, data: Path, out: Path, task: str = "SST-2") -> list[str]:
    return ["--params", str(REPO / "params.yaml"), "--scale", "micro", "--task", task,
            "--variant", "full", "--seed", "0", "--model", str(model), "--data", str(data),
            "--output", str(out)]


def _folder_with(tmp_path: Path, model_dir: Path, tok=None, cfg: GPTConfig | None = None) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    src = model_dir / "model"
    (folder / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())
    config = json.loads((src / "model.json").read_text())
    if cfg is not None:
        config["vocab_size"] = cfg.vocab_size
    (folder / "model.json").write_text(json.dumps(config))
    if tok is None:
        (folder / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    else:
        (folder / "tokenizer.json").write_text(tok.to_str())
    return folder


def test_tokenizer_without_special_tokens(tmp_path, model_dir, shared_data, capsys):
    from tokenizers import Tokenizer, models
    plain = Tokenizer(models.BPE())
    folder = _folder_with(tmp_path, model_dir, tok=plain)
    code, err = _cli(_argv(folder, shared_data, tmp_path / "out"), capsys)
    assert code == 1 and "tokenizer.json: missing special tokens <|start|>" in err
    assert not (tmp_path / "out").exists()


def test_model_and_tokenizer_vocabularies_must_match(tmp_path, model_dir, shared_data, capsys):
    folder = _folder_with(tmp_path, model_dir, cfg=GPTConfig.preset("micro", vocab_size=2000))
    code, err = _cli(_argv(folder, shared_data, tmp_path / "out"), capsys)
    assert code == 1 and f"{folder / 'model.json'}: vocab_size 2000 does not match" in err
    assert not (tmp_path / "out").exists()


def test_unknown_task_and_empty_split(tmp_path, model_dir, shared_data, capsys):
    code, err = _cli(_argv(model_dir, shared_data, tmp_path / "out", task="SST-5"), capsys)
    assert code == 1 and "unknown task 'SST-5'" in err
    data = tmp_path / "data"
    (data / "glue/SST-2").mkdir(parents=True)
    (data / "glue/SST-2/train.tsv").write_text("sentence\tlabel\n")
    code, err = _cli(_argv(model_dir, data, tmp_path / "out"), capsys)
    assert code == 1 and "train.tsv: no examples in this split" in err
    assert not (tmp_path / "out").exists()


def test_cli_error_is_one_line_without_traceback(tmp_path, model_dir, shared_data):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("GPTPIPE_DEBUG", None)
    res = subprocess.run([sys.executable, "-m", "gptpipe", "finetune",
                          *_argv(model_dir, shared_data, tmp_path / "out", task="MNLI")],
                         cwd=REPO, capture_output=True, text=True, env=env)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1].startswith("gptpipe finetune: error: ")
    assert "glue/MNLI/train.tsv: task MNLI split 'train' not found" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "out").exists()


def test_max_len_beyond_the_context_is_refused(tmp_path, model_dir, shared_data, capsys):
    argv = _argv(model_dir, shared_data, tmp_path / "out") + ["--set", "max_len=65"]
    code, err = _cli(argv, capsys)
    assert code == 1 and "finetune.max_len 65 exceeds the model's context of 64" in err


def test_starts_from_an_imported_hugging_face_folder(tmp_path, micro_cfg, shared_data):
    """The released `openai-gpt` layout (vocab.json + merges.txt in `</w>` style, no special
    tokens): `import-hf` turns it into a model folder that `finetune --model` takes."""
    import transformers

    from gptpipe.hf import import_main

    texts = [line.split("\t")[0] for line in (shared_data / "glue/SST-2/train.tsv")
             .read_text(encoding="utf-8").splitlines()[1:3000]]
    tok = bpe.train(texts, BpeConfig(vocab_size=600, style="gpt1"), source="test corpus")
    base = tok.get_vocab_size() - 5  # the released model has no rows for our special tokens
    torch.manual_seed(0)
    hf = transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(
        vocab_size=base, n_positions=64, n_embd=32, n_layer=1, n_head=2))
    hf.save_pretrained(tmp_path / "hf")
    spec = json.loads(tok.to_str())
    vocab = {t: i for t, i in tok.get_vocab().items() if i < base}
    (tmp_path / "hf/vocab.json").write_text(json.dumps(vocab))
    merges = "".join(f"{a} {b}\n" for a, b in spec["model"]["merges"])
    (tmp_path / "hf/merges.txt").write_text("#version: 0.2\n" + merges)
    assert import_main(["--input", str(tmp_path / "hf"), "--output", str(tmp_path / "m")]) == 0

    figures = _run(micro_cfg, tmp_path / "m", shared_data, tmp_path / "out")
    assert figures["model"]["pretrained"] and figures["model"]["config"]["context"] == 64
    assert figures["model"]["config"]["vocab_size"] == base + 5
    assert 0.0 <= figures["scores"]["dev"]["accuracy"] <= 1.0

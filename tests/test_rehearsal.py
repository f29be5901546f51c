"""A rehearsal of the gpt1 shape on CPU (issue #12, §5): the real stages, run as the workflow
runs them (`python -m gptpipe <stage>`, params.yaml at `--scale gpt1`), with GPT-1's network and
vocabulary at a length two cores can carry.

One chain per module: ingest the shared sample, learn a `gpt1`-style BPE of GPT-1's 40,478
tokens, shard at context 512, pre-train the full network (12 x 768, 117 M parameters) for 3
updates on 2 processes (gloo), one sequence each. The tests then check the tokenizer and the
run, kill a second run mid-way and resume it to the straight run's weights, round-trip the
model through a Hugging Face folder, and fine-tune one step per input family (max_len 512; one
RTE pair is made longer than the context, so a fine-tuning sequence fills all 512 positions).

Every step's wall and CPU seconds and peak memory are printed (`pytest -s`) and summed up at
the end (tests/rehearsal_steps.py).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch
from procs import kill_after_checkpoint
from rehearsal_steps import Ledger
from safetensors.torch import load_file
from workflow_projects import CURVE_KEYS

from gptpipe import vocab
from gptpipe.optim import cosine_lr
from gptpipe.shard import reader

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
WIKI = "wikipedia/enwiki-20160501-p10-shortened-pages-articles-multistream"
V = 40_478  # GPT-1's base vocabulary: 478 symbols + 40,000 merges
SPECIALS = len(vocab.SPECIAL_TOKENS)
CONTEXT = 512
UPDATES = 3
# One thread per process: the two ranks then share the two cores without oversubscribing, and
# CPU runs are bitwise repeatable (the resume test compares weights bit for bit).
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# The final validation scores the whole val split, ~1.7 s per 512-token window on one core:
# this salt holds out a single short article at val_fraction 0.01 ("A Modest Proposal",
# 11,059 characters: a few thousand tokens), the 97 others train.
INGEST_SETS = ("val_fraction=0.01", "split_salt=rehearsal-2")
# bpe.min_frequency 1: at the default 2 the sample's text yields only 27,997 tokens. The rest
# is gpt1's default: style gpt1, exactly 40,000 merges on GPT-1's 478 symbols.
BPE_SETS = ("min_frequency=1",)
# 2 slots of 1 sequence per update (pretrain.slots), one per rank, one forward pass each;
# eval_every stays at its default (1,000), past the run: only the final validation happens.
# A checkpoint (1.4 GB: weights and AdamW's moments) takes seconds: the straight run writes
# only the final one, the run to be killed one per update (an observing knob: the trajectory
# does not depend on it, which the resume test checks too).
PRETRAIN_SETS = (f"updates={UPDATES}", f"batch_tokens={2 * CONTEXT}", "slots=2", "micro_batch=1",
                 "keep_checkpoints=2", "log_every=1", "device=cpu")
# One task per input transformation of the paper's Figure 1 (and STS-B's regression head):
# the sample has Story Cloze, so multiple choice runs on real data too.
FINETUNE_TASKS = {"SST-2": "single", "RTE": "pair", "MRPC": "similarity",
                  "STS-B": "regression", "StoryCloze": "multiple_choice"}
FINETUNE_SETS = ("max_len=512", "batch=4", "epochs=1", "max_train_examples=4",
                 "max_eval_examples=4", "device=cpu")


def gptpipe(stage: str, *args: str, sets: tuple[str, ...] = ()) -> list[str]:
    """`python -m gptpipe STAGE` as the workflow runs it, at the gpt1 scale."""
    cmd = [sys.executable, "-m", "gptpipe", stage, "--params", str(REPO / "params.yaml"),
           "--scale", "gpt1", *args]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def env(**extra: str) -> dict:
    return {**os.environ, **ENV, **extra}


def ok(done, what: str) -> None:
    assert done.returncode == 0, f"{what} failed:\n{done.output[-4000:]}"


# --------------------------------------------------------------------------- the chain


@pytest.fixture(scope="module")
def ledger():
    book = Ledger()
    yield book
    print("\n" + book.table(), flush=True)


@pytest.fixture(scope="module")
def chain(shared_data, tmp_path_factory, ledger) -> Path:
    """ingest -> bpe -> shard -> pretrain (3 updates, 2 processes), once for the module."""
    base = tmp_path_factory.mktemp("rehearsal")
    ok(ledger.run("ingest", gptpipe(
        "ingest", "--input", str(shared_data / f"{WIKI}.xml.bz2"),
        "--index", str(shared_data / f"{WIKI}-index.txt.bz2"), "--output", str(base / "ingest"),
        "--processes", "2", sets=INGEST_SETS), env(), 300), "ingest")
    ok(ledger.run("bpe (gpt1 style, 40,478)", gptpipe(
        "bpe", "--ingest", str(base / "ingest"), "--output", str(base / "bpe"), sets=BPE_SETS),
        env(), 300), "bpe")
    ok(ledger.run("shard (context 512)", gptpipe(
        "shard", "--ingest", str(base / "ingest"), "--tokenizer",
        str(base / "bpe/tokenizer.json"), "--output", str(base / "shard")), env(), 300), "shard")
    ok(ledger.run("pretrain 3 updates, 2 ranks", pretrain_cmd(
        base, base / "straight", f"checkpoint_every={UPDATES}"),
                  env(GPTPIPE_NPROC="2"), 600), "pretrain")
    return base


def pretrain_cmd(base: Path, run: Path, checkpoint_every: str) -> list[str]:
    return gptpipe("pretrain", "--shards", str(base / "shard"),
                   "--tokenizer", str(base / "bpe/tokenizer.json"),
                   "--checkpoints", str(run / "ck"), "--output", str(run / "out"),
                   sets=(*PRETRAIN_SETS, checkpoint_every))


def curve(run: Path) -> list[dict]:
    lines = (run / "out/metrics.jsonl").read_text().splitlines()
    return [{k: json.loads(line).get(k) for k in CURVE_KEYS} for line in lines]


# --------------------------------------------------------------------------- tokenizer, shards


def test_rehearsal_bpe_learns_gpt1s_40478_tokens(chain):
    tok, ids = vocab.load(chain / "bpe/tokenizer.json")
    assert ids.base_vocab == V and ids.vocab_size == V + SPECIALS
    assert [tok.token_to_id(t) for t in vocab.SPECIAL_TOKENS] == list(range(V, V + SPECIALS))
    assert tok.token_to_id(vocab.UNK) == 0
    spec = json.loads(tok.to_str())["model"]
    assert spec["end_of_word_suffix"] == vocab.END_OF_WORD
    # <unk>, the symbols and one token per merge, as GPT-1: 478 symbols (<unk>, the 238
    # characters kept, each alone and at a word's end, and the line break `\n</w>`, a word of
    # its own) and exactly 40,000 merges (bpe.exact_merges).
    chars = {t.removesuffix(vocab.END_OF_WORD) for t, i in tok.get_vocab().items()
             if 0 < i < V and len(t.removesuffix(vocab.END_OF_WORD)) == 1}
    symbols = [t for t, i in tok.get_vocab().items()
               if 0 < i < V and t.removesuffix(vocab.END_OF_WORD) in chars]
    print(f"\n[rehearsal] bpe: {len(chars)} characters, {len(symbols)} symbols, "
          f"{len(spec['merges'])} merges")
    assert len(chars) == 238 + 1 and "\n</w>" in symbols and "\n" not in symbols
    assert 1 + len(symbols) == 478 and len(spec["merges"]) == 40_000
    assert tok.encode("The Gulf WAR").ids == tok.encode("the gulf war").ids  # lowercased
    figures = json.loads((chain / "bpe/bpe.json").read_text())
    assert figures["config"] == {"vocab_size": V, "style": "gpt1", "min_frequency": 1,
                                 "limit_alphabet": 238, "max_chars": 0,  # all the text
                                 "exact_merges": True}


def test_rehearsal_shards_hold_512_token_windows_and_a_small_val_split(chain):
    stats = json.loads((chain / "ingest/stats.json").read_text())
    assert stats["splits"] == {"train": 97, "val": 1}
    manifest = reader.read_manifest(chain / "shard")
    data = manifest.data
    assert (data["context"], data["window"], data["vocab_size"]) == (CONTEXT, CONTEXT + 1,
                                                                      V + SPECIALS)
    assert data["dtype"] == "uint16" and data["eod_id"] == V + 4
    val = data["splits"]["val"]["samples"]
    assert 2 <= val <= 8  # a few thousand tokens: the final validation takes seconds
    assert data["splits"]["train"]["samples"] >= 2 * UPDATES  # no epoch wraps in the run


# --------------------------------------------------------------------------- pre-training


def test_rehearsal_pretrain_runs_gpt1_on_two_processes(chain):
    out = chain / "straight/out"
    figures = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    gpt = config["gpt"]
    assert {k: gpt[k] for k in ("n_layer", "n_head", "d_model", "d_ff", "context",
                                "vocab_size")} == {
        "n_layer": 12, "n_head": 12, "d_model": 768, "d_ff": 3072, "context": CONTEXT,
        "vocab_size": V + SPECIALS}
    pre = config["pretrain"]
    assert (pre["lr"], pre["warmup_updates"], pre["weight_decay"], pre["grad_clip"]) == (
        2.5e-4, 2_000, 0.01, 1.0)  # the paper's recipe, from the config defaults
    assert pre["eval_every"] > UPDATES and config["processes"] == 2
    # 117 M: 12 x 7.08 M per block + (40,483 + 512) x 768 embeddings + the final LayerNorm
    # is absent in GPT-1 (post-LN); the output layer is tied to the token embedding.
    block = 4 * 768 * 768 + 4 * 768 + 2 * 768 * 3072 + 3072 + 768 + 4 * 768
    assert figures["parameters"] == 12 * block + (V + SPECIALS + CONTEXT) * 768
    assert (figures["updates"], figures["tokens"], figures["processes"]) == (
        UPDATES, UPDATES * 2 * CONTEXT, 2)
    lines = curve(chain / "straight")
    assert [x["step"] for x in lines] == [1, 2, 3]
    assert [x["lr"] for x in lines] == [cosine_lr(s, 2.5e-4, 2_000, UPDATES)
                                        for s in range(UPDATES)]
    # Only the last update was validated (no periodic validation), on the whole val split.
    assert [x["val_loss"] is not None for x in lines] == [False, False, True]
    val_windows = reader.read_manifest(chain / "shard").data["splits"]["val"]["samples"]
    assert figures["val_tokens"] == val_windows * CONTEXT
    # N(0, 0.02) weights predict nearly uniformly: every loss is close to ln V.
    for x in lines:
        assert math.isfinite(x["loss"]) and abs(x["loss"] - math.log(V + SPECIALS)) < 0.5
        assert math.isfinite(x["grad_norm"]) and x["grad_norm"] > 0
    assert math.isfinite(figures["val_loss"]) and figures["resumed_from"] is None
    steps = sorted(p.name for p in (chain / "straight/ck").glob("*/step-*"))
    assert steps == [f"step-{UPDATES:08d}"]  # checkpoint_every = the run: the final one only


def test_rehearsal_kill_and_resume_gives_the_straight_run(chain, tmp_path, ledger):
    """SIGKILL the process group (launcher and both ranks) once update 1's checkpoint exists;
    the rerun resumes and ends with the straight run's curve and weights, bit for bit."""
    run = tmp_path / "killed"
    cmd = pretrain_cmd(chain, run, "checkpoint_every=1")
    # Measured from pytest: its CPU seconds leave out the killed ranks (never reaped here).
    with ledger.measure("pretrain killed after update 1"):
        kill_after_checkpoint(cmd, run / "ck", env(GPTPIPE_NPROC="2"), last_step=UPDATES,
                              step=1, timeout=600)
    assert not (run / "out").exists()
    done = ledger.run("pretrain resumed to update 3", cmd, env(GPTPIPE_NPROC="2"), 600)
    ok(done, "the resumed pretrain")
    assert "resuming from" in done.output
    figures = json.loads((run / "out/metrics.json").read_text())
    assert figures["resumed_from"] in (1, 2)
    assert curve(run) == curve(chain / "straight")
    a = load_file(chain / "straight/out/model/model.safetensors")
    b = load_file(run / "out/model/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- Hugging Face


def test_rehearsal_hf_round_trip(chain, tmp_path, ledger):
    """export-hf, then transformers' OpenAIGPTLMHeadModel gives our logits on a real val
    window; import-hf gives back the same weights (logits equal) and tokenizer."""
    import transformers  # a test dependency (pyproject `test` extra): missing it fails

    from gptpipe.modeldir import load_model_dir

    model = chain / "straight/out/model"
    ok(ledger.run("export-hf", [sys.executable, "-m", "gptpipe", "export-hf", "--input",
                                str(model), "--output", str(tmp_path / "hf")], env(), 300),
       "export-hf")
    ok(ledger.run("import-hf", [sys.executable, "-m", "gptpipe", "import-hf", "--input",
                                str(tmp_path / "hf"), "--output", str(tmp_path / "back")],
                  env(), 300), "import-hf")
    manifest = reader.read_manifest(chain / "shard")
    path, n = manifest.shards("val")[0]
    window = reader.read_shard(path, manifest.window, manifest.dtype, n)[0]
    idx = torch.from_numpy(window[:CONTEXT].astype("int64"))[None]  # (1, 512) real tokens
    with ledger.measure("HF and our logits, 512 tokens"), torch.no_grad():
        ours, cfg = load_model_dir(model)
        want = ours.eval()(idx)[0]
        hf = transformers.OpenAIGPTLMHeadModel.from_pretrained(tmp_path / "hf").eval()
        assert (hf.config.vocab_size, hf.config.n_positions) == (V + SPECIALS, CONTEXT)
        assert want.abs().max() > 1.0  # logits near zero would prove nothing
        torch.testing.assert_close(hf(idx).logits, want, atol=1e-5, rtol=0)
        del hf
        back, back_cfg = load_model_dir(tmp_path / "back")
        assert back_cfg == cfg
        assert torch.equal(back.eval()(idx)[0], want)
    assert (tmp_path / "back/tokenizer.json").read_text() == (model / "tokenizer.json"
                                                              ).read_text()
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    tok, _ = vocab.load(model / "tokenizer.json")
    text = tok.decode(window[:200].tolist())
    assert auto.encode(text) == tok.encode(text).ids


# --------------------------------------------------------------------------- fine-tuning


@pytest.fixture(scope="module")
def finetuned(chain, shared_data, ledger) -> dict[str, Path]:
    """One update per task (4 examples, max_len 512) from the rehearsal's model, two tasks
    at a time (one core each); the mirror is read as data/."""
    out = chain / "finetune"
    data = {task: long_rte(chain, shared_data) if task == "RTE" else shared_data
            for task in FINETUNE_TASKS}
    jobs = [(f"finetune {task}", gptpipe(
        "finetune", "--task", task, "--variant", "full", "--seed", "0",
        "--model", str(chain / "straight/out"), "--data", str(data[task]),
        "--output", str(out / task), sets=FINETUNE_SETS)) for task in FINETUNE_TASKS]
    done = ledger.run_all(jobs, env(), 600, parallel=2)
    for name, result in done.items():
        ok(result, name)
    return {task: out / task for task in FINETUNE_TASKS}


def long_rte(chain: Path, shared_data: Path) -> Path:
    """A data folder whose RTE train split is the real file's first 4 pairs, the first
    premise followed by the held-out article's prose: longer than the context, so one
    training sequence is cut to fill all 512 positions. dev and test are the real files."""
    from gptpipe.ingest.corpus import iter_articles

    folder = chain / "rte-data/glue/RTE"
    folder.mkdir(parents=True, exist_ok=True)
    real = shared_data / "glue/RTE"
    header, *rows = (real / "train.tsv").read_text(encoding="utf-8").splitlines()[:5]
    article = " ".join(" ".join(text.split()) for _, text in iter_articles(
        [chain / "ingest"], split="val"))
    index, premise, *rest = rows[0].split("\t")
    rows[0] = "\t".join([index, f"{premise} {article}", *rest])
    (folder / "train.tsv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    for split in ("dev", "test"):
        (folder / f"{split}.tsv").symlink_to(real / f"{split}.tsv")
    return chain / "rte-data"


@pytest.mark.parametrize("task", list(FINETUNE_TASKS))
def test_rehearsal_finetune_one_step(finetuned, chain, task):
    metrics = json.loads((finetuned[task] / "metrics.json").read_text())
    assert metrics["kind"] == FINETUNE_TASKS[task]
    assert metrics["model"]["pretrained"] and metrics["model"]["folder"] == str(
        chain / "straight/out/model")
    shape = metrics["model"]["config"]
    assert (shape["n_layer"], shape["d_model"], shape["context"], shape["vocab_size"]) == (
        12, 768, CONTEXT, V + SPECIALS)
    assert metrics["recipe"]["max_len"] == CONTEXT and metrics["train"]["steps"] == 1
    train = metrics["examples"][metrics["train_split"]]
    assert train["used"] == 4
    assert train["available"] == 4 if task == "RTE" else train["available"] > 4  # capped
    cut = metrics["truncation"][metrics["train_split"]]
    if task == "RTE":  # one pair longer than the context, cut to 512 tokens
        assert cut["truncated"] == 1 and cut["longest_tokens"] > CONTEXT
    else:
        assert cut["truncated"] == 0
    losses = [metrics["train"]["first_loss"], *metrics["train"]["epoch_loss"]]
    assert metrics["train"]["examples_seen"] == 4 and all(math.isfinite(x) for x in losses)
    for split in metrics["reported_splits"]:
        assert metrics["examples"][split]["used"] == 4
        value = metrics["scores"][split][metrics["headline"]["metric"]]
        assert value is None or math.isfinite(value)
    lines = (finetuned[task] / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == sum(c["used"] for s, c in metrics["examples"].items()
                             if s != metrics["train_split"])  # scored and predicted splits

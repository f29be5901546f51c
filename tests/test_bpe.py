"""The tokenizer: both styles, the special-token layout, and its bad inputs."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from tokenizers import Tokenizer

from conftest import write_ingest_dir
from gptpipe.bpe import sample
from gptpipe.bpe import tokenizer as bpe
from gptpipe import vocab
from gptpipe.io import file_sha256
from gptpipe.config import BpeConfig
from gptpipe.errors import GptpipeError
from gptpipe.ingest.corpus import iter_articles


@pytest.fixture(scope="module")
def texts(sample_texts):
    return sample_texts[:40]


def test_bytelevel_layout_and_exact_round_trip(texts):
    tok = bpe.train(texts, BpeConfig(vocab_size=1000, style="bytelevel"))
    ids = vocab.special_ids(tok)
    assert (ids.start, ids.delim, ids.extract, ids.pad, ids.eod) == (1000, 1001, 1002, 1003, 1004)
    assert ids.vocab_size == tok.get_vocab_size() == 1005
    sample = texts[3][:2000] + " Ünïcödé — 東京 ✓"
    assert tok.decode(tok.encode(sample).ids) == sample  # byte-level: no unknown tokens
    # Special tokens are single ids and never produced from ordinary text.
    enc = tok.encode("<|start|>hello<|delim|>world<|extract|>")
    assert enc.ids[0] == ids.start and ids.delim in enc.ids and enc.ids[-1] == ids.extract
    assert not set(tok.encode(texts[5]).ids) & set(range(1000, 1005))


def test_gpt1_style_is_lowercased_with_word_ends(texts):
    tok = bpe.train(texts, BpeConfig(vocab_size=2000, style="gpt1", limit_alphabet=200,
                                          exact_merges=False))  # HF's count: 2,000 in all
    assert tok.token_to_id(vocab.UNK) == 0
    assert vocab.special_ids(tok).start == 2000
    pieces = tok.encode("Anarchism is a Political philosophy.").tokens
    assert all(p == p.lower() for p in pieces)
    assert any(p.endswith("</w>") for p in pieces)
    assert tok.decode(tok.encode("anarchism is a political philosophy").ids) == (
        "anarchism is a political philosophy"
    )


def test_training_is_deterministic(texts):
    a = bpe.train(texts, BpeConfig(vocab_size=800, style="bytelevel")).to_str()
    b = bpe.train(texts, BpeConfig(vocab_size=800, style="bytelevel")).to_str()
    assert a == b


def test_empty_corpus_is_an_error():
    with pytest.raises(GptpipeError, match="empty corpus"):
        bpe.train(iter([]), BpeConfig(vocab_size=500, style="bytelevel"), source="parts/x")


def test_corpus_too_small_for_the_vocabulary_is_an_error():
    with pytest.raises(GptpipeError, match="corpus too small for bpe.vocab_size=5000"):
        bpe.train(["a tiny corpus with few pairs"] * 3,
                  BpeConfig(vocab_size=5000, style="bytelevel"))


def test_load_rejects_bad_files(tmp_path, texts):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GptpipeError, match="not a valid tokenizer.json"):
        vocab.load(bad)
    with pytest.raises(GptpipeError, match="tokenizer file not found"):
        vocab.load(tmp_path / "missing.json")
    plain = bpe._new_tokenizer("bytelevel")  # a tokenizer without our special tokens
    plain.train_from_iterator(
        texts[:5], trainer=bpe._trainer(BpeConfig(vocab_size=400, style="bytelevel")))
    plain.save(str(tmp_path / "plain.json"))
    with pytest.raises(GptpipeError, match=re.escape("missing special tokens <|start|>")):
        vocab.load(tmp_path / "plain.json")


def _run_stage(*args):
    return subprocess.run([sys.executable, "-m", "gptpipe", "bpe", *map(str, args)],
                          capture_output=True, text=True)


def test_stage_trains_on_the_train_split_only(tmp_path, texts):
    rows = [{"id": i, "title": f"t{i}", "text": t, "split": "train"} for i, t in enumerate(texts)]
    rows.append({"id": 999, "title": "held out", "text": "zqxjv " * 500, "split": "val"})
    part = write_ingest_dir(tmp_path / "ingest", rows)
    out = tmp_path / "bpe"
    res = _run_stage("--ingest", part, "--output", out, "--set", "vocab_size=700")
    assert res.returncode == 0, res.stderr
    figures = json.loads((out / "bpe.json").read_text())
    assert figures["vocab_size"] == 705 and figures["config"]["vocab_size"] == 700
    assert figures["tokenizer_sha256"] == file_sha256(out / "tokenizer.json")
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert "zqxjv" not in tok.get_vocab()  # learned only from train text


def test_stage_fails_in_one_line_on_an_empty_train_split(tmp_path):
    part = write_ingest_dir(tmp_path / "ingest", [{"id": 1, "title": "a", "text": "b", "split": "val"}])
    res = _run_stage("--ingest", part, "--output", tmp_path / "bpe")
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("gptpipe bpe: error: ") and "empty corpus" in last
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "bpe").exists()


# ------------------------------------------------------------------ bpe.max_chars


def _two_parts(tmp_path, texts):
    """Two `ingest` parts (page ids 0-19 and 100-119, every 5th article in val)."""
    dirs = []
    for n, base in enumerate((0, 100)):
        rows = [{"id": base + i, "title": f"t{base + i}", "text": t,
                 "split": "val" if i % 5 == 4 else "train"}
                for i, t in enumerate(texts[20 * n: 20 * n + 20])]
        dirs.append(write_ingest_dir(tmp_path / f"p{n}", rows))
    return dirs


def test_max_chars_takes_the_lowest_ranked_train_articles_from_every_part(tmp_path, texts):
    dirs = _two_parts(tmp_path, texts)
    train = dict(iter_articles(dirs, split="train"))
    total = sum(map(len, train.values()))
    budget = total // 3
    plan = sample.plan(dirs, budget)
    assert plan == sample.plan(dirs, budget)  # deterministic
    assert (plan.total_chars, plan.total_articles) == (total, len(train))
    # What it should pick, worked out here: ids by rank, as many as fit in the budget.
    expected, used = set(), 0
    for i in sorted(train, key=sample.rank):
        if used + len(train[i]) > budget:
            break
        expected.add(i)
        used += len(train[i])
    got = list(sample.texts(dirs, plan))
    assert got == [t for i, t in train.items() if i in expected]  # in corpus order
    assert sum(map(len, got)) == plan.chars == used <= budget
    assert {i // 100 for i in expected} == {0, 1}  # spread over both parts, not a prefix
    assert sample.plan(dirs, 0) is None
    whole = sample.plan(dirs, total)
    assert whole.max_rank is None and list(sample.texts(dirs, whole)) == list(train.values())
    with pytest.raises(GptpipeError, match="no article fits in bpe.max_chars=10"):
        sample.plan(dirs, 10)
    with pytest.raises(ValueError, match="max_chars must be >= 0"):
        BpeConfig(max_chars=-1)


def test_stage_trains_on_the_max_chars_sample(tmp_path, texts):
    dirs = _two_parts(tmp_path, texts)
    total = sum(len(t) for _, t in iter_articles(dirs, split="train"))
    out = tmp_path / "bpe"
    res = _run_stage("--ingest", *dirs, "--output", out, "--set", "vocab_size=700",
                     "--set", f"max_chars={total // 2}")
    assert res.returncode == 0, res.stderr
    figures = json.loads((out / "bpe.json").read_text())
    assert figures["config"]["max_chars"] == total // 2
    assert figures["sample"] == {"chars": sample.plan(dirs, total // 2).chars,
                                 "articles": sample.plan(dirs, total // 2).articles,
                                 "split_chars": total, "split_articles": 32}
    assert 0 < figures["sample"]["chars"] <= total // 2

"""Issue #14 §5: OpenAI's code where the paper is silent, each kept as a knob.

STS-B as 6 classes (`finetune.stsb_target`), fresh start/delimiter/extract rows
(`finetune.fresh_special_rows`), exactly vocab_size - 478 BPE merges (`bpe.exact_merges`) and
the gpt1 BPE style as the paper scale's default (`bpe.style`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from conftest import write_ingest_dir
from gptpipe import vocab
from gptpipe.bpe import cli as bpe_stage
from gptpipe.bpe import tokenizer as bpe
from gptpipe.config import BpeConfig, load_params, resolve_section
from gptpipe.finetune import cli as stage
from gptpipe.finetune import loop, outputs
from gptpipe.finetune.body import build_gpt, fresh_special_rows, open_body
from gptpipe.finetune.data import load_task, recipe
from gptpipe.finetune.loop import train
from gptpipe.finetune.model import (
    TaskModel,
    expected_score,
    head_outputs,
    score_distribution,
    task_loss,
)
from gptpipe.model import GPT, GPTConfig
from gptpipe.modeldir import save_model_dir
from gptpipe.tasks.transforms import encode_examples

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def micro_cfg(shared_data):
    return resolve_section(load_params(REPO / "params.yaml") | {"scale": "micro"}, "finetune")


@pytest.fixture(scope="module")
def tokenizer(shared_data):
    rows = (shared_data / "glue/STS-B/train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    texts = [t for row in rows for t in row.split("\t")[7:9]]
    return bpe.train(texts, BpeConfig(vocab_size=600, style="bytelevel"), source="STS-B")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer) -> Path:
    """A micro `pretrain` output whose special rows are not N(0, 0.02)-sized: a redraw shows."""
    gpt = GPT(GPTConfig.preset("micro", vocab_size=tokenizer.get_vocab_size()),
              generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        gpt.wte.weight.add_(1.0)
    out = tmp_path_factory.mktemp("orig") / "pretrain"
    save_model_dir(gpt, gpt.cfg, tokenizer, out / "model")
    return out


# --------------------------------------------------------------------------- STS-B as classes


def test_stsb_label_encoding_and_its_expected_score_round_trip():
    y = torch.tensor([0.0, 0.4, 2.5, 3.8, 5.0])
    p = score_distribution(y)
    assert p.shape == (5, 6) and bool((p >= 0).all())
    torch.testing.assert_close(p.sum(dim=1), torch.ones(5))
    torch.testing.assert_close(p[3], torch.tensor([0.0, 0.0, 0.0, 0.2, 0.8, 0.0]))
    torch.testing.assert_close(p[4], torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1.0]))
    torch.testing.assert_close(p[0], torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(p @ torch.arange(6.0), y)  # sum_k k p_k = y
    torch.testing.assert_close(expected_score(p.log()), y)  # logits log p predict y back
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        score_distribution(torch.tensor([5.5]))


def test_stsb_target_sets_the_head_and_the_loss():
    assert head_outputs("regression", 1, "classes") == 6
    assert head_outputs("regression", 1, "regression") == 1
    assert head_outputs("pair", 3, "classes") == 3  # other tasks keep their classes
    logits, gold = torch.randn(4, 6), torch.tensor([0.0, 1.2, 3.5, 5.0])
    want = -(score_distribution(gold) * logits.log_softmax(dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(task_loss("regression", logits, gold), want)


def _stsb(micro_cfg, shared_data, tokenizer, n: int):
    rec = recipe(micro_cfg, "STS-B", "full")
    data = load_task(micro_cfg, "STS-B", rec, shared_data)
    enc, _ = encode_examples(data.train[:n], "regression", tokenizer, 64)
    return rec, data, enc


def test_stsb_classes_train_and_score_pearson_on_the_expected_score(micro_cfg, shared_data,
                                                                    tokenizer, model_dir):
    assert micro_cfg.stsb_target == "classes"
    rec, data, enc = _stsb(micro_cfg, shared_data, tokenizer, 16)
    rec = dataclasses.replace(rec, epochs=3, lr=2e-3, clf_dropout=0.0)
    body = open_body(model_dir, 64)
    model = stage._task_model(body, data.spec, rec, seed=0)
    assert model.head.proj.out_features == 6
    log = train(model, enc, rec, pad_id=body.ids.pad, generator=torch.Generator().manual_seed(0),
                device=torch.device("cpu"))
    assert all(math.isfinite(x) for x in log.epoch_task_loss)
    assert log.epoch_task_loss[-1] < log.epoch_task_loss[0]
    dev = data.scored["dev"][:16]
    dev_enc, _ = encode_examples(dev, "regression", tokenizer, 64)
    scores = loop.predict(model, dev_enc, batch=8, pad_id=body.ids.pad,
                          device=torch.device("cpu"))
    res = outputs.result(data.spec, "dev", dev, scores)
    assert scores.shape == (16, 6)
    assert res.predicted == pytest.approx(expected_score(scores).tolist())
    assert all(0.0 <= v <= 5.0 for v in res.predicted)
    figures = outputs.score(data.spec, res)
    assert figures["pearson"] is not None and -1.0 <= figures["pearson"] <= 1.0
    mine = torch.corrcoef(torch.stack([torch.tensor(res.predicted),
                                       torch.tensor([ex.label for ex in dev])]))[0, 1]
    assert figures["pearson"] == pytest.approx(float(mine), abs=1e-5)


def test_stsb_classes_gradient_accumulation_matches_the_plain_batch(micro_cfg, shared_data,
                                                                   tokenizer, monkeypatch):
    rec, _, enc = _stsb(micro_cfg, shared_data, tokenizer, 8)
    monkeypatch.setattr(loop, "adamw", lambda model, lr, weight_decay: torch.optim.SGD(
        model.parameters(), lr=lr))
    weights = {}
    for micro_batch in (0, 3):
        gpt = GPT(GPTConfig.preset("micro", vocab_size=tokenizer.get_vocab_size(),
                                   embd_dropout=0.0, attn_dropout=0.0, resid_dropout=0.0),
                  generator=torch.Generator().manual_seed(0))
        model = TaskModel(gpt, "regression", 6, clf_dropout=0.0,
                          generator=torch.Generator().manual_seed(1))
        r = dataclasses.replace(rec, lr=0.1, epochs=1, micro_batch=micro_batch, batch=8)
        log = train(model, enc, r, pad_id=vocab.special_ids(tokenizer).pad,
                    generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
        weights[micro_batch] = model.state_dict(), log.passes
    assert (weights[0][1], weights[3][1]) == (1, 3)
    for name, value in weights[0][0].items():
        assert torch.allclose(weights[3][0][name], value, rtol=1e-5, atol=1e-6), name


# --------------------------------------------------------------------------- special-token rows


def test_fresh_special_rows_redraw_start_delimiter_and_extract_only(model_dir, micro_cfg):
    body = open_body(model_dir, 64)
    saved = build_gpt(body, True, seed=0).wte.weight.detach().clone()
    ids = body.ids
    fresh = {"start": ids.start, "delim": ids.delim, "extract": ids.extract}
    rec = recipe(micro_cfg, "SST-2", "full")
    assert rec.fresh_special_rows
    spec = stage._spec("SST-2")
    gpt = stage._task_model(body, spec, rec, seed=0).gpt
    new = gpt.wte.weight.detach()
    rows = list(fresh.values())
    others = [i for i in range(new.size(0)) if i not in rows]
    assert torch.equal(new[others], saved[others])  # <|pad|>, <|endoftext|> and the rest kept
    assert not torch.isclose(new[rows], saved[rows]).any()
    assert float(new[rows].std()) == pytest.approx(0.02, rel=0.3)  # N(0, 0.02), not the saved
    assert float(new[rows].mean().abs()) < 0.01
    h = torch.randn(2, gpt.cfg.d_model)  # the tied output head scores them with the new rows
    torch.testing.assert_close(gpt.lm_logits(h)[:, rows], h @ new[rows].T)
    again = stage._task_model(body, spec, rec, seed=0).gpt.wte.weight.detach()
    other = stage._task_model(body, spec, rec, seed=1).gpt.wte.weight.detach()
    assert torch.equal(again, new) and not torch.equal(other[rows], new[rows])
    kept = stage._task_model(body, spec, dataclasses.replace(rec, fresh_special_rows=False),
                             seed=0).gpt.wte.weight.detach()
    assert torch.equal(kept, saved)
    # no_pretrain: all rows are fresh already; the knob draws nothing more.
    scratch = dataclasses.replace(rec, pretrained=False)
    torch.testing.assert_close(stage._task_model(body, spec, scratch, 0).gpt.wte.weight,
                               build_gpt(body, False, 0).wte.weight)
    assert fresh_special_rows(build_gpt(body, True, 0), ids, 0) == rows


# --------------------------------------------------------------------------- BPE


def test_exact_merges_on_the_sample_text_through_the_stage(tmp_path, sample_texts):
    """478 + 500: exactly 500 merges on the sample's 238 most frequent characters and the line
    break, and the same tokenizer from the stage (which reads the ingest folder twice) as from
    a list."""
    texts = sample_texts[:40]
    rows = [{"id": i, "title": f"t{i}", "text": t, "split": "train"} for i, t in enumerate(texts)]
    part = write_ingest_dir(tmp_path / "ingest", rows)
    cfg = BpeConfig(vocab_size=978)
    assert (cfg.style, cfg.limit_alphabet, cfg.exact_merges) == ("gpt1", 238, True)
    figures = bpe_stage.run(cfg, [part], tmp_path / "bpe")
    tok = Tokenizer.from_file(str(tmp_path / "bpe/tokenizer.json"))
    model = json.loads(tok.to_str())["model"]
    assert len(model["merges"]) == 500 == figures["merges"]
    assert json.loads((tmp_path / "bpe/bpe.json").read_text())["merges"] == 500
    singles = [t for t in model["vocab"] if len(t.removesuffix(vocab.END_OF_WORD)) == 1]
    # each character alone and word-final, and the line break, a word of its own: GPT-1's 478
    assert len(singles) == 2 * 238 + 1 and "\n</w>" in singles and "\n" not in singles
    ids = vocab.special_ids(tok)
    assert ids.base_vocab == len(model["vocab"]) == figures["base_vocab"]
    assert ids.base_vocab <= 478 + 500  # a merge may remake a token
    assert sorted(model["vocab"].values()) == list(range(ids.base_vocab))  # no gap
    paragraphs = tok.encode("The end.\n\n  Next one")
    stop = paragraphs.tokens.index(".</w>")  # the blank line and spaces: one line-break word
    assert paragraphs.tokens[stop + 1] == "\n</w>" != paragraphs.tokens[stop + 2]
    assert "\n" in tok.decode(paragraphs.ids)
    assert [a["content"] for a in json.loads(tok.to_str())["added_tokens"]] == [
        vocab.UNK, *vocab.SPECIAL_TOKENS]  # the word-final symbols are plain tokens
    # The tie-breaking is fixed: the same text gives the same tokenizer, also from a list.
    assert bpe.train(texts, cfg).to_str() == tok.to_str()
    # HF's count (exact_merges false): 978 tokens in all, the merges what the 478 symbols
    # leave (at least; more if a merge remakes a token).
    hf = bpe.train(texts, dataclasses.replace(cfg, exact_merges=False))
    assert vocab.special_ids(hf).base_vocab == 978
    assert len(json.loads(hf.to_str())["model"]["merges"]) >= 978 - 478


def test_alphabet_counts_what_hf_counts(sample_texts):
    texts = sample_texts[:5]
    tok = bpe.train(texts, BpeConfig(vocab_size=600, limit_alphabet=10_000, exact_merges=False))
    learned = {t for t in tok.get_vocab() if len(t) == 1}
    assert learned == set(bpe.alphabet(texts, bpe._new_tokenizer("gpt1"), 10_000))
    counts = Counter(c for t in texts for c in t.lower() if not c.isspace())
    assert bpe.alphabet(texts, bpe._new_tokenizer("gpt1"), 3) == [
        c for c, _ in counts.most_common(3)]


def test_gpt1_style_needs_more_than_478_tokens_and_a_reiterable_corpus():
    with pytest.raises(ValueError, match="exceed GPT-1's 478 symbols"):
        BpeConfig(vocab_size=478)
    BpeConfig(vocab_size=478, exact_merges=False)
    BpeConfig(vocab_size=400, style="bytelevel")
    with pytest.raises(TypeError, match="reads the texts twice"):
        bpe.train(iter(["some text"]), BpeConfig(vocab_size=600))


@pytest.mark.parametrize("scale, style", [("gpt1", "gpt1"), ("tiny", "bytelevel"),
                                          ("micro", "bytelevel")])
def test_gpt1_preset_bpe_style(scale, style):
    cfg = resolve_section(load_params(REPO / "params.yaml") | {"scale": scale}, "bpe")
    assert cfg.style == style
    if scale == "gpt1":
        assert (cfg.vocab_size, cfg.limit_alphabet, cfg.exact_merges) == (40_478, 238, True)
        assert bpe.merges_wanted(cfg) == 40_000


def test_stsb_stage_writes_expected_scores_and_the_knobs(micro_cfg, model_dir, shared_data,
                                                         tmp_path):
    out = tmp_path / "STS-B/full/seed0"
    figures = stage.run(micro_cfg, stage.Job("STS-B", "full", 0), model_dir, shared_data, out)
    assert figures["recipe"]["stsb_target"] == "classes"
    assert figures["recipe"]["fresh_special_rows"] is True
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert lines and all(len(x["scores"]) == 6 for x in lines)
    for x in lines:  # the prediction is the expected score of the 6 logits
        assert x["prediction"] == pytest.approx(float(expected_score(torch.tensor(x["scores"]))))
    assert figures["scores"]["dev"]["pearson"] is not None
    flat = stage.run(dataclasses.replace(micro_cfg, stsb_target="regression"),
                     stage.Job("STS-B", "full", 0), model_dir, shared_data, tmp_path / "r")
    assert flat["recipe"]["stsb_target"] == "regression"
    first = json.loads((tmp_path / "r/predictions.jsonl").read_text().splitlines()[0])
    assert len(first["scores"]) == 1 and first["prediction"] == pytest.approx(first["scores"][0])

"""Hugging Face parity, export/import (gptpipe/hf.py) and the model folder (gptpipe/modeldir.py)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
import transformers  # a test dependency (pyproject `test` extra): missing it fails, not skips

from gptpipe.bpe import tokenizer as bpe
from gptpipe import vocab
from gptpipe.__main__ import main
from gptpipe.config import BpeConfig
from gptpipe.errors import GptpipeError
from gptpipe.hf import config_from_hf, from_hf_state_dict, to_hf_state_dict
from gptpipe.model import GPT, GPTConfig
from gptpipe.modeldir import load_model_dir, save_model_dir

V = 300  # base vocabulary of the test tokenizer; the model has V + 5 rows
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "it was a dark and stormy night; the rain fell in torrents.",
    "Hello world, hello again! (numbers: 12 and 345)",
    "kamon tori elsa quex phing the and",
]


def _corpus() -> list[str]:
    rng = random.Random(0)
    syllables = ["ka", "to", "ri", "mon", "el", "sa", "qu", "ex", "ph", "ing", "the", "and"]
    words = [
        " ".join("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))
                 + rng.choice(["", ",", ".", "!"]) for _ in range(200))
        for _ in range(30)
    ]
    return words + SENTENCES * 20


def _train(style: str):
    return bpe.train(_corpus(), BpeConfig(vocab_size=V, style=style, min_frequency=1,
                                              exact_merges=False))


@pytest.fixture(scope="module")
def tokenizer():
    return _train("gpt1")


def _hf_model(vocab: int = V, seed: int = 0, n_ctx: int = 32):
    """A random HF GPT-1 with non-trivial LayerNorms and larger weights than the 0.02 init, so
    that a wrong transpose, a mis-ordered LayerNorm or a wrong activation shows up in logits."""
    torch.manual_seed(seed)
    cfg = transformers.OpenAIGPTConfig(vocab_size=vocab, n_positions=n_ctx, n_embd=64, n_layer=2,
                                       n_head=2)
    model = transformers.OpenAIGPTLMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") else 0.0,
                      0.2 if ".ln_" in name else 0.1)
    return model


def _ids(B: int, T: int, vocab: int = V, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


def _our_model(vocab: int = V + 5, seed: int = 0) -> GPT:
    cfg = GPTConfig(vocab_size=vocab, context=32, n_layer=2, n_head=2, d_model=64, d_ff=256)
    model = GPT(cfg, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.1)
    return model.eval()


def test_hf_weights_give_our_model_the_same_logits():
    hf = _hf_model()
    ours = GPT(config_from_hf(hf.config.to_dict(), "hf")).eval()
    ours.load_state_dict(from_hf_state_dict(hf.state_dict(), "hf"))
    idx = _ids(3, 32)
    mask = torch.ones(3, 32, dtype=torch.long)
    mask[0, :6] = 0  # left padding: HF and we must hide the same keys
    mask[1, 20:] = 0
    with torch.no_grad():
        want, got = hf(idx).logits, ours(idx)[0]
        assert want.abs().max() > 1.0  # a test with nearly-zero logits would prove nothing
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        want_m, got_m = hf(idx, attention_mask=mask).logits, ours(idx, attn_mask=mask)[0]
        torch.testing.assert_close(got_m[mask.bool()], want_m[mask.bool()], atol=1e-5, rtol=0)


def test_our_weights_give_hf_the_same_logits():
    ours = _our_model()
    hf = transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(
        vocab_size=V + 5, n_positions=32, n_embd=64, n_layer=2, n_head=2)).eval()
    result = hf.load_state_dict(to_hf_state_dict(ours.state_dict()), strict=False)
    assert not result.unexpected_keys
    assert set(result.missing_keys) <= {"lm_head.weight"}  # tied to tokens_embed, not stored
    hf.tie_weights()
    idx = _ids(2, 32, V + 5)
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, atol=1e-5, rtol=0)


def _save_ours(tokenizer, out: Path) -> GPT:
    model = _our_model()
    save_model_dir(model, model.cfg, tokenizer, out)
    return model


@pytest.mark.parametrize("style", ["gpt1", "bytelevel"])
def test_round_trip_through_hf_folders(tmp_path, tokenizer, style):
    tokenizer = tokenizer if style == "gpt1" else _train(style)
    ours = _save_ours(tokenizer, tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "model.json", "model.safetensors", "tokenizer.json"]
    assert main(["export-hf", "--input", str(tmp_path / "model"),
                 "--output", str(tmp_path / "hf")]) == 0
    hf, info = transformers.OpenAIGPTLMHeadModel.from_pretrained(tmp_path / "hf",
                                                                 output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert hf.config.vocab_size == V + 5 and hf.config.n_positions == 32
    idx = _ids(2, 32, V + 5)
    with torch.no_grad():
        want = ours(idx)[0]
        torch.testing.assert_close(hf.eval()(idx).logits, want, atol=1e-5, rtol=0)
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "Café au lait, <|start|> the quick fox <|extract|>"
    assert auto.encode(text) == tokenizer.encode(text).ids  # exactly ours, accents included
    # vocab.json + merges.txt alone serve HF's own classes; they agree with ours on plain text
    # (OpenAIGPTTokenizer strips accents, ours keeps them, so accented text is left out).
    (tmp_path / "plain").mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tmp_path / "hf" / name, tmp_path / "plain" / name)
    cls = transformers.OpenAIGPTTokenizer if style == "gpt1" else transformers.GPT2Tokenizer
    plain = cls.from_pretrained(tmp_path / "plain")
    for sentence in SENTENCES:
        assert plain.encode(sentence) == tokenizer.encode(sentence).ids, sentence
    assert main(["import-hf", "--input", str(tmp_path / "hf"),
                 "--output", str(tmp_path / "back")]) == 0
    back, cfg = load_model_dir(tmp_path / "back")
    assert cfg == ours.cfg  # no rows added: the export already had the special tokens
    with torch.no_grad():
        assert torch.equal(back(idx)[0], want)
    assert (tmp_path / "back" / "tokenizer.json").read_text() == (
        tmp_path / "model" / "tokenizer.json").read_text()


def test_import_without_our_tokenizer_json_keeps_special_rows(tmp_path, tokenizer):
    ours = _save_ours(tokenizer, tmp_path / "model")
    assert main(["export-hf", "--input", str(tmp_path / "model"),
                 "--output", str(tmp_path / "hf")]) == 0
    (tmp_path / "hf" / "tokenizer.json").unlink()  # only vocab.json + merges.txt remain
    assert main(["import-hf", "--input", str(tmp_path / "hf"),
                 "--output", str(tmp_path / "back")]) == 0
    back, cfg = load_model_dir(tmp_path / "back")
    assert cfg == ours.cfg and torch.equal(back.wte.weight, ours.wte.weight)
    tok, ids = vocab.load(tmp_path / "back" / "tokenizer.json")
    assert ids == vocab.special_ids(tokenizer)
    for sentence in SENTENCES:  # plain text: BERT-style normalising changes nothing
        assert tok.encode(sentence).ids == tokenizer.encode(sentence).ids


def _released_style_folder(tokenizer, folder: Path, pickle: bool = False):
    """An HF folder like OpenAI's released `openai-gpt`: V rows, no special tokens, vocab.json +
    merges.txt in `</w>` style, weights as safetensors or as a (weights-only) pickle."""
    hf = _hf_model()
    hf.save_pretrained(folder)
    if pickle:  # older checkpoints: pytorch_model.bin, causal-mask buffers included
        state = {k: v for k, v in hf.state_dict().items()}
        state["transformer.h.0.attn.bias"] = torch.ones(1, 1, 32, 32).tril()
        (folder / "model.safetensors").unlink()
        torch.save(state, folder / "pytorch_model.bin")
    spec = json.loads(tokenizer.to_str())
    vocab = {t: i for t, i in tokenizer.get_vocab().items() if i < V}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    merges = "".join(f"{a} {b}\n" for a, b in spec["model"]["merges"])
    (folder / "merges.txt").write_text("#version: 0.2\n" + merges)
    return hf


@pytest.mark.parametrize("pickle", [False, True])
def test_import_released_style_checkpoint(tmp_path, tokenizer, pickle):
    hf = _released_style_folder(tokenizer, tmp_path / "hf", pickle=pickle)
    for seed, out in ((0, "a"), (0, "b"), (1, "c")):
        argv = ["import-hf", "--input", str(tmp_path / "hf"), "--output", str(tmp_path / out)]
        assert main(argv + ["--seed", str(seed)]) == 0
    model, cfg = load_model_dir(tmp_path / "a")
    assert cfg.vocab_size == V + 5
    idx = _ids(2, 32)
    with torch.no_grad():  # the original rows are untouched: logits over them agree with HF
        torch.testing.assert_close(model(idx)[0][..., :V], hf(idx).logits, atol=1e-5, rtol=0)
    new_rows = model.wte.weight[V:]
    assert new_rows.shape == (5, 64) and 0.01 < new_rows.std().item() < 0.03
    assert torch.equal(load_model_dir(tmp_path / "b")[0].wte.weight, model.wte.weight)
    assert not torch.equal(load_model_dir(tmp_path / "c")[0].wte.weight[V:], new_rows)
    tok, ids = vocab.load(tmp_path / "a" / "tokenizer.json")
    assert (ids.start, ids.eod, ids.vocab_size) == (V, V + 4, V + 5)
    hf_tok = transformers.OpenAIGPTTokenizer.from_pretrained(tmp_path / "hf")
    for text in SENTENCES + ["Naïve CAFÉ, déjà vu!"]:
        assert tok.encode(text).ids == hf_tok.encode(text), text


def _cli_error(argv, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_truncated_weights_are_a_one_line_error(tmp_path, tokenizer, capsys):
    _save_ours(tokenizer, tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    err = _cli_error(["export-hf", "--input", str(tmp_path / "model"), "--output",
                      str(tmp_path / "hf")], capsys)
    assert "model.safetensors" in err and "truncated or corrupt" in err
    assert not (tmp_path / "hf").exists()  # nothing that looks complete is left behind


def test_config_that_disagrees_with_weights(tmp_path, tokenizer, capsys):
    _save_ours(tokenizer, tmp_path / "model")
    config = tmp_path / "model" / "model.json"
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "d_model": 32, "d_ff": 128}))
    shapes = r"wte.weight has shape \[305, 64\] but .* needs \[305, 32\]"
    with pytest.raises(GptpipeError, match=shapes):
        load_model_dir(tmp_path / "model")
    config.write_text(json.dumps({**data, "n_layer": 3}))
    err = _cli_error(["export-hf", "--input", str(tmp_path / "model"), "--output",
                      str(tmp_path / "hf")], capsys)
    assert "missing tensor h.2." in err and "model.safetensors" in err
    config.write_text(json.dumps({**data, "n_embd": 64}))
    with pytest.raises(GptpipeError, match="model.json: n_embd: unknown key"):
        load_model_dir(tmp_path / "model")


@pytest.mark.parametrize("missing", ["model.json", "model.safetensors", "tokenizer.json"])
def test_missing_file_is_a_one_line_error(tmp_path, tokenizer, capsys, missing):
    _save_ours(tokenizer, tmp_path / "model")
    (tmp_path / "model" / missing).unlink()
    err = _cli_error(["export-hf", "--input", str(tmp_path / "model"), "--output",
                      str(tmp_path / "hf")], capsys)
    assert f"{missing}: missing" in err


def test_import_rejects_bad_hf_folders(tmp_path, tokenizer, capsys):
    _released_style_folder(tokenizer, tmp_path / "hf")
    args = ["import-hf", "--input", str(tmp_path / "hf"), "--output", str(tmp_path / "out")]
    config = tmp_path / "hf" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "n_layer": 3}))
    assert "missing tensor h.2." in _cli_error(args, capsys)
    config.write_text(json.dumps({**json.loads(config.read_text()), "model_type": "gpt2"}))
    assert "model_type is 'gpt2'" in _cli_error(args, capsys)
    shutil.copy(tmp_path / "hf" / "merges.txt", tmp_path / "merges.bak")
    (tmp_path / "hf" / "merges.txt").write_text("#version: 0.2\nt h e\n")
    config.write_text(json.dumps({**json.loads(config.read_text()), "model_type": "openai-gpt",
                                  "n_layer": 2}))
    assert "merges.txt: line 2: expected two symbols" in _cli_error(args, capsys)
    (tmp_path / "hf" / "vocab.json").unlink()
    assert "vocab.json: missing" in _cli_error(args, capsys)
    assert not (tmp_path / "out").exists()


def test_save_model_dir_checks_the_tokenizer_size(tmp_path, tokenizer):
    model = _our_model(vocab=V + 6)
    with pytest.raises(GptpipeError, match="306 embedding rows"):
        save_model_dir(model, model.cfg, tokenizer, tmp_path / "model")
    assert not (tmp_path / "model").exists()

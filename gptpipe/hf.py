"""Hugging Face `OpenAIGPTLMHeadModel` folders to and from gptpipe model folders.

The two implementations compute the same function (tests/test_hf.py checks the logits both
ways); only names and layouts differ:

    gptpipe (model.py)            Hugging Face (modeling_openai.py)
    wte.weight                    transformer.tokens_embed.weight   (lm_head.weight is tied to it)
    wpe.weight                    transformer.positions_embed.weight
    h.{i}.attn.c_attn.weight      transformer.h.{i}.attn.c_attn.weight, transposed: HF's Conv1D
    ...                           stores weights [in, out], torch's Linear [out, in]

HF's `vocab_size` is the number of embedding rows. OpenAI's released `openai-gpt` has 40,478
rows and no special tokens; a gptpipe model has V + 5 rows (the base vocabulary, then
<|start|>, <|delim|>, <|extract|>, <|pad|>, <|endoftext|>), and exports all of them with
`vocab_size = V + 5`. Importing the released weights appends those 5 rows, drawn from
N(0, 0.02) with a seeded generator, as the paper adds randomly initialised start, delimiter and
extract embeddings for fine-tuning (§3.3).

transformers itself is not needed here: the files are written and read directly.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

from .atomic import atomic_path
from .cli import run_cli
from .errors import GptpipeError
from .io import read_json
from .model import INIT_STD, GPTConfig
from .modeldir import (
    TOKENIZER,
    build_model,
    load_model_dir,
    model_folder,
    read_weights,
    save_model_dir,
)
from .vocab import END_OF_WORD, SPECIAL_TOKENS, UNK, SpecialIds, special_ids
from .vocab import load as load_tokenizer

HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"
HF_PICKLE = "pytorch_model.bin"  # older checkpoints; read only with torch.load(weights_only=True)
PREFIX = "transformer."
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_EMBEDDINGS = {"wte.weight": "tokens_embed.weight", "wpe.weight": "positions_embed.weight"}
_HF_DEFAULTS = {  # OpenAIGPTConfig's defaults, for config.json files that leave keys out
    "vocab_size": 40_478, "n_positions": 512, "n_embd": 768, "n_layer": 12, "n_head": 12,
    "afn": "gelu", "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
    "layer_norm_epsilon": 1e-5,
}


# --------------------------------------------------------------------------- weights and config


def to_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict under `OpenAIGPTLMHeadModel`'s names (tied head left to HF to re-tie)."""
    out = {}
    for key, value in state.items():
        if key in _EMBEDDINGS:
            out[PREFIX + _EMBEDDINGS[key]] = value.contiguous()
        else:
            out[PREFIX + key] = (value.t() if key.endswith(_CONV1D) else value).contiguous()
    return out


def from_hf_state_dict(state: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """HF names (with or without the `transformer.` prefix) to ours; drops the causal-mask
    buffers older versions saved, and checks that a stored `lm_head.weight` is really tied."""
    hf_embeddings = {v: k for k, v in _EMBEDDINGS.items()}
    out, head = {}, None
    for key, value in state.items():
        name = key.removeprefix(PREFIX)
        if name.endswith((".attn.bias", ".attn.masked_bias")) or name == "position_ids":
            continue
        if name == "lm_head.weight":
            head = value
        elif name in hf_embeddings:
            out[hf_embeddings[name]] = value
        elif name.startswith("h."):
            out[name] = value.t() if name.endswith(_CONV1D) else value
        else:
            raise GptpipeError(
                f"{where}: unexpected tensor {key} (not part of OpenAIGPTLMHeadModel)"
            )
    if head is not None and "wte.weight" in out and not torch.equal(head, out["wte.weight"]):
        raise GptpipeError(f"{where}: lm_head.weight differs from tokens_embed.weight; GPT-1 ties "
                           "them and gptpipe cannot hold an untied head")
    return out


def hf_config(cfg: GPTConfig, ids: SpecialIds | None = None) -> dict:
    """`config.json` for `OpenAIGPTLMHeadModel`. HF's `afn: "gelu"` is the tanh form (its own
    table maps it to `gelu_new`, in transformers 4.x and 5.x alike)."""
    if cfg.d_ff != 4 * cfg.d_model:
        raise GptpipeError(f"d_ff {cfg.d_ff} != 4 x d_model {cfg.d_model}: HF's OpenAIGPT "
                           "hard-codes a 4x MLP, so this model cannot be exported")
    out = {
        "architectures": ["OpenAIGPTLMHeadModel"], "model_type": "openai-gpt",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.context, "n_embd": cfg.d_model,
        "n_layer": cfg.n_layer, "n_head": cfg.n_head, "afn": "gelu",
        "resid_pdrop": cfg.resid_dropout, "embd_pdrop": cfg.embd_dropout,
        "attn_pdrop": cfg.attn_dropout, "layer_norm_epsilon": cfg.layer_norm_eps,
        "initializer_range": INIT_STD, "tie_word_embeddings": True, "dtype": "float32",
    }
    if ids is not None:
        out.update(pad_token_id=ids.pad, eos_token_id=ids.eod)
    return out


def config_from_hf(data: dict, where: str) -> GPTConfig:
    """GPTConfig from an HF `config.json` mapping (missing keys take OpenAIGPTConfig defaults)."""
    if data.get("model_type", "openai-gpt") != "openai-gpt":
        raise GptpipeError(f"{where}: model_type is {data['model_type']!r}, not 'openai-gpt'")
    d = {**_HF_DEFAULTS, **data}
    if d["afn"] != "gelu":
        raise GptpipeError(f"{where}: afn {d['afn']!r}: GPT-1 uses 'gelu' (the tanh form)")
    try:
        return GPTConfig(
            vocab_size=int(d["vocab_size"]), context=int(d["n_positions"]),
            n_layer=int(d["n_layer"]), n_head=int(d["n_head"]), d_model=int(d["n_embd"]),
            d_ff=4 * int(d["n_embd"]), embd_dropout=float(d["embd_pdrop"]),
            attn_dropout=float(d["attn_pdrop"]), resid_dropout=float(d["resid_pdrop"]),
            layer_norm_eps=float(d["layer_norm_epsilon"]),
        )
    except (TypeError, ValueError) as exc:
        raise GptpipeError(f"{where}: {exc}") from None


def read_hf_weights(hf_dir: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The checkpoint's tensors: `model.safetensors`, else `pytorch_model.bin` (weights only)."""
    if (hf_dir / HF_WEIGHTS).is_file():
        return read_weights(hf_dir / HF_WEIGHTS), hf_dir / HF_WEIGHTS
    path = hf_dir / HF_PICKLE
    if not path.is_file():
        sharded = (hf_dir / f"{HF_WEIGHTS}.index.json").is_file()
        raise GptpipeError(f"{hf_dir}: " + ("sharded checkpoints are not supported" if sharded
                           else f"no {HF_WEIGHTS} or {HF_PICKLE}"))
    try:  # weights_only: tensors and plain containers, never arbitrary pickled code
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GptpipeError(f"{path}: cannot read: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GptpipeError(f"{path}: expected a state dict of tensors")
    return state, path


# --------------------------------------------------------------------------- tokenizer


def _vocab_and_merges(tok: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The BPE model's vocabulary (plus the added special tokens) and its merges, in order."""
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    return tok.get_vocab(with_added_tokens=True), merges


def tokenizer_style(tok: Tokenizer) -> str:
    """`gpt1` (`</w>` word ends), `bytelevel`, or `other`."""
    spec = json.loads(tok.to_str())
    if spec["model"].get("end_of_word_suffix") == END_OF_WORD:
        return "gpt1"
    pre = spec.get("pre_tokenizer") or {}
    return "bytelevel" if pre.get("type") == "ByteLevel" else "other"


def tokenizer_files(tok: Tokenizer, context: int) -> dict[str, str]:
    """The tokenizer files of an HF folder, name -> text.

    `tokenizer.json` is ours verbatim, and `tokenizer_config.json` names
    `PreTrainedTokenizerFast`, so `AutoTokenizer` encodes exactly as gptpipe does. `vocab.json`
    (every id, special tokens included, so ids match embedding rows) and `merges.txt` serve
    `OpenAIGPTTokenizer` (gpt1 style) or `GPT2Tokenizer` (byte-level); `OpenAIGPTTokenizer`
    normalises with BERT's rules (it strips accents; ours keeps them, NFKC), so the two agree on
    plain lowercase/ASCII text only.
    """
    vocab, merges = _vocab_and_merges(tok)
    ordered = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": context,
        "pad_token": SPECIAL_TOKENS[3], "eos_token": SPECIAL_TOKENS[4],
    }
    if UNK in vocab:
        config["unk_token"] = UNK
    return {
        "tokenizer.json": json.dumps(json.loads(tok.to_str()), ensure_ascii=False, indent=1) + "\n",
        "tokenizer_config.json": json.dumps(config, indent=2) + "\n",
        "vocab.json": json.dumps(ordered, ensure_ascii=False) + "\n",
        "merges.txt": "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
    }


def hf_style_tokenizer(
    vocab: dict[str, int], merges: list[tuple[str, str]], where: str
) -> Tokenizer:
    """The pipeline of transformers' `OpenAIGPTTokenizer`: BERT normaliser (lowercase, strip
    accents), BERT pre-tokenizer (whitespace and punctuation), BPE with `</w>` word ends.

    This is transformers 5.x's `OpenAIGPTTokenizer` exactly, and 4.x's whenever ftfy and spaCy
    are not installed (it then falls back to BERT's BasicTokenizer: the same rules). The
    original, and 4.x with both installed, fix text with ftfy and split it with spaCy, which
    differs on contractions ("isn't": spaCy `is n't`, BERT `isn ' t`) and unusual Unicode.
    Without `<unk>` in the vocabulary unknown characters are dropped, where HF's tokenizer
    raises an error.
    """
    try:
        model = models.BPE(
            vocab=vocab, merges=merges, unk_token=UNK if UNK in vocab else None,
            continuing_subword_prefix="", end_of_word_suffix=END_OF_WORD, fuse_unk=False,
        )
    except Exception as exc:
        raise GptpipeError(f"{where}: inconsistent vocabulary and merges: {exc}") from None
    tok = Tokenizer(model)
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.BPEDecoder(suffix=END_OF_WORD)
    return tok


def read_merges(path: Path) -> list[tuple[str, str]]:
    """`merges.txt`: an optional `#version` line, then one `left right` pair per line."""
    if not path.is_file():
        raise GptpipeError(f"{path}: missing")
    merges = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or (lineno == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise GptpipeError(f"{path}: line {lineno}: expected two symbols, got {line!r}")
        merges.append((parts[0], parts[1]))
    return merges


def import_tokenizer(hf_dir: Path) -> Tokenizer:
    """Our tokenizer for an HF folder, special tokens at the end.

    A `tokenizer.json` that already carries gptpipe's special tokens (one `export-hf` wrote) is
    used as it is; otherwise `vocab.json` + `merges.txt` (GPT-1 `</w>` BPE) are read, any
    special tokens of ours at the end of the vocabulary set aside, and all five appended.
    """
    try:
        return load_tokenizer(hf_dir / TOKENIZER)[0]
    except GptpipeError:
        pass  # not one of ours (or absent): build from the HF vocabulary files
    where = hf_dir / "vocab.json"
    words = read_json(where, missing="missing", kind=object)
    if not isinstance(words, dict) or sorted(words.values()) != list(range(len(words))):
        raise GptpipeError(f"{where}: expected a token -> id mapping with ids 0..n-1")
    if not any(t.endswith(END_OF_WORD) for t in words):
        raise GptpipeError(f"{where}: no `{END_OF_WORD}` tokens; only GPT-1 style BPE "
                           "vocabularies can be imported without a gptpipe tokenizer.json")
    ours = [words.get(t) for t in SPECIAL_TOKENS]
    base = len(words) - len(ours)
    if ours == list(range(base, len(words))):
        words = {t: i for t, i in words.items() if i < base}
    elif any(i is not None for i in ours):
        raise GptpipeError(f"{where}: gptpipe's special tokens must be the last "
                           f"{len(ours)} ids in order; found {ours}")
    tok = hf_style_tokenizer(words, read_merges(hf_dir / "merges.txt"), str(hf_dir))
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    special_ids(tok, source=str(hf_dir))
    return tok


# --------------------------------------------------------------------------- export and import


def export_hf(model_dir: str | Path, hf_dir: str | Path) -> dict:
    """Write an `OpenAIGPTLMHeadModel` folder (weights, config, tokenizer files) atomically."""
    model_dir = model_folder(Path(model_dir))  # a model folder or a `pretrain` output
    model, cfg = load_model_dir(model_dir)
    if cfg.arch != "transformer":
        raise GptpipeError(f"{model_dir / 'model.json'}: arch {cfg.arch!r}: Hugging Face's "
                           "OpenAIGPTLMHeadModel holds GPT-1's transformer only")
    tok, ids = load_tokenizer(model_dir / TOKENIZER)
    if ids.vocab_size != cfg.vocab_size:
        raise GptpipeError(f"{model_dir / TOKENIZER}: {ids.vocab_size} tokens, but the model has "
                           f"{cfg.vocab_size} embedding rows")
    config = hf_config(cfg, ids)
    files = tokenizer_files(tok, cfg.context)
    with atomic_path(hf_dir, is_dir=True) as tmp:
        save_file(to_hf_state_dict(model.state_dict()), str(tmp / HF_WEIGHTS),
                  metadata={"format": "pt"})
        (tmp / HF_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
    return {"parameters": model.num_params(), "vocab_size": cfg.vocab_size,
            "tokenizer_style": tokenizer_style(tok),
            "files": sorted([HF_WEIGHTS, HF_CONFIG, *files])}


def import_hf(hf_dir: str | Path, model_dir: str | Path, *, seed: int = 0) -> dict:
    """Write a gptpipe model folder from an HF GPT-1 folder (e.g. the released `openai-gpt`).

    When the checkpoint has no rows for our special tokens, 5 rows drawn from N(0, 0.02)
    (a CPU generator seeded with `seed`) are appended to the token embedding.
    """
    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise GptpipeError(f"{hf_dir}: folder not found")
    data = read_json(hf_dir / HF_CONFIG, missing="missing", kind=object)
    if not isinstance(data, dict):
        raise GptpipeError(f"{hf_dir / HF_CONFIG}: expected a JSON object")
    cfg = config_from_hf(data, str(hf_dir / HF_CONFIG))
    raw, weights_path = read_hf_weights(hf_dir)
    state = from_hf_state_dict(raw, str(weights_path))
    model = build_model(cfg, state, weights_path)  # checks names and shapes against config.json
    tok = import_tokenizer(hf_dir)
    ids = special_ids(tok)
    added = 0
    if cfg.vocab_size == ids.base_vocab:
        added = ids.vocab_size - cfg.vocab_size
        gen = torch.Generator().manual_seed(seed)
        rows = torch.randn(added, cfg.d_model, generator=gen) * INIT_STD
        state = {**model.state_dict(), "wte.weight": torch.cat([model.wte.weight.detach(), rows])}
        cfg = replace(cfg, vocab_size=ids.vocab_size)
        model = build_model(cfg, state, weights_path)
    elif cfg.vocab_size != ids.vocab_size:
        raise GptpipeError(
            f"{weights_path}: {cfg.vocab_size} embedding rows, but the tokenizer has "
            f"{ids.base_vocab} tokens (+{ids.vocab_size - ids.base_vocab} special)"
        )
    save_model_dir(model, cfg, tok, model_dir)
    return {"parameters": model.num_params(), "vocab_size": cfg.vocab_size,
            "special_rows_added": added, "tokenizer_style": tokenizer_style(tok)}


# --------------------------------------------------------------------------- command line
#   gptpipe export-hf --input results/pretrain --output results/hf/model
#   gptpipe import-hf --input openai-gpt/ --output results/pretrain/model

log = logging.getLogger(__name__)


def _parser(name: str, description: str, source: str, target: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"gptpipe {name}", description=description)
    p.add_argument("--input", required=True, type=Path, metavar=source[0], help=source[1])
    p.add_argument("--output", required=True, type=Path, metavar=target[0],
                   help=f"{target[1]} to write (replaced atomically if it exists)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def export_main(argv: list[str] | None = None) -> int:
    """`gptpipe export-hf`: the output loads with `OpenAIGPTLMHeadModel.from_pretrained(HF_DIR)`
    and `AutoTokenizer.from_pretrained(HF_DIR)`."""
    parser = _parser("export-hf", "a model folder -> a Hugging Face OpenAIGPTLMHeadModel folder",
                     ("MODEL_DIR", "a `pretrain` output, or a model folder (model.safetensors, "
                      "model.json, tokenizer.json)"), ("HF_DIR", "Hugging Face folder"))

    def body(args: argparse.Namespace) -> None:
        figures = export_hf(args.input, args.output)
        log.info("wrote %s: %d parameters, %d embedding rows, %s tokenizer", args.output,
                 figures["parameters"], figures["vocab_size"], figures["tokenizer_style"])

    return run_cli("export-hf", argv, parser, body)


def import_main(argv: list[str] | None = None) -> int:
    """`gptpipe import-hf`: reads `config.json`, `model.safetensors` (or `pytorch_model.bin`,
    tensors only) and the tokenizer (`vocab.json` + `merges.txt`); appends gptpipe's 5 special
    tokens and, when the checkpoint lacks them, 5 embedding rows drawn from N(0, 0.02) with
    `--seed` (paper §3.3)."""
    parser = _parser("import-hf", "a Hugging Face GPT-1 folder -> a gptpipe model folder",
                     ("HF_DIR", "Hugging Face OpenAIGPT folder (config.json, weights, "
                      "vocab.json, merges.txt)"), ("MODEL_DIR", "gptpipe model folder"))
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for the new special-token embedding rows (default: 0)")

    def body(args: argparse.Namespace) -> None:
        figures = import_hf(args.input, args.output, seed=args.seed)
        log.info("wrote %s: %d parameters, %d embedding rows (%d added)", args.output,
                 figures["parameters"], figures["vocab_size"], figures["special_rows_added"])

    return run_cli("import-hf", argv, parser, body)

"""gptpipe's model folder: what `pretrain` writes and `finetune`, `export-hf` and `import-hf` read.

    MODEL_DIR/
      model.safetensors   the GPT state dict (the tied output head is the token embedding, so it
                          is stored once, as `wte.weight`); float tensors, no pickle
      model.json          the GPTConfig, field by field (`arch`: transformer or lstm)
      tokenizer.json      the tokenizer, special tokens at ids V..V+4 (gptpipe/vocab.py)

The folder is written atomically: it appears complete or not at all.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from . import vocab
from .atomic import atomic_path
from .errors import GptpipeError
from .io import read_json
from .lstm import LSTMLM, language_model
from .model import GPT, GPTConfig

WEIGHTS = "model.safetensors"
CONFIG = "model.json"
TOKENIZER = "tokenizer.json"
FILES = (WEIGHTS, CONFIG, TOKENIZER)


def unwrap(model: torch.nn.Module) -> GPT | LSTMLM:
    """The plain network inside a `torch.compile` and/or DDP wrapper (their state-dict keys
    differ)."""
    for _ in range(3):
        model = getattr(model, "_orig_mod", model)
        model = getattr(model, "module", model)
    if not isinstance(model, (GPT, LSTMLM)):
        raise TypeError(f"expected a GPT or LSTMLM model, got {type(model).__name__}")
    return model


def save_model_dir(
    model: torch.nn.Module, cfg: GPTConfig, tokenizer: str | Path | Tokenizer, out_dir: str | Path
) -> None:
    """Write `out_dir` (weights, config, tokenizer) atomically.

    `tokenizer` is a `tokenizers.Tokenizer` or the path of a `tokenizer.json`; its vocabulary
    must have exactly `cfg.vocab_size` tokens, with gptpipe's special tokens last.
    """
    gpt = unwrap(model)
    if gpt.cfg != cfg:
        raise ValueError(f"the model was built with {gpt.cfg}, not {cfg}")
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else vocab.load(tokenizer)[0]
    vocab.special_ids(tok)
    if tok.get_vocab_size() != cfg.vocab_size:
        raise GptpipeError(
            f"{out_dir}: the tokenizer has {tok.get_vocab_size()} tokens but the model has "
            f"{cfg.vocab_size} embedding rows"
        )
    state = {k: v.detach().to("cpu").contiguous() for k, v in gpt.state_dict().items()}
    with atomic_path(out_dir, is_dir=True) as tmp:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        config_text = json.dumps(dataclasses.asdict(cfg), indent=2) + "\n"
        (tmp / CONFIG).write_text(config_text, encoding="utf-8")
        vocab.save(tok, tmp / TOKENIZER)


def model_folder(path: Path) -> Path:
    """`path` itself if it holds a model folder's files, else `path/model` (a `pretrain` output)."""
    for candidate in (path, path / "model"):
        if any((candidate / n).is_file() for n in FILES):
            missing = [n for n in FILES if not (candidate / n).is_file()]
            if missing:
                raise GptpipeError(f"{candidate / missing[0]}: missing; a model folder holds "
                                   f"{', '.join(FILES)}")
            return candidate
    if not path.is_dir():
        raise GptpipeError(f"{path}: model folder not found")
    raise GptpipeError(f"{path}: not a model folder ({', '.join(FILES)}) nor a pretrain output "
                       "with one in model/")


def load_model_dir(model_dir: str | Path) -> tuple[GPT | LSTMLM, GPTConfig]:
    """The model (float32, CPU, eval mode) and its config from a folder `save_model_dir` wrote.

    Raises GptpipeError naming the file for a missing file, a bad `model.json`, a truncated or
    corrupt `model.safetensors`, or weights whose names or shapes disagree with the config.
    """
    d = model_folder(Path(model_dir))
    cfg = read_config(d / CONFIG)
    return build_model(cfg, read_weights(d / WEIGHTS), d / WEIGHTS), cfg


def build_model(cfg: GPTConfig, tensors: dict[str, torch.Tensor], where: Path
                ) -> GPT | LSTMLM:
    """A float32 network (`cfg.arch`) in eval mode holding `tensors`, checked against `cfg`
    (errors name `where`)."""
    with torch.device("meta"):  # no point drawing random weights that get replaced
        model = language_model(cfg)
    check_state_dict(tensors, model.state_dict(), where, cfg)
    model.load_state_dict({k: v.float().contiguous() for k, v in tensors.items()}, assign=True)
    return model.eval()


def read_config(path: Path) -> GPTConfig:
    """GPTConfig from `model.json`; unknown keys and impossible values are GptpipeErrors."""
    return config_from_dict(read_json(path), str(path))


def config_from_dict(data: dict, where: str) -> GPTConfig:
    """GPTConfig from plain JSON data, checking keys and number types (errors name `where`)."""
    known = {f.name: f for f in dataclasses.fields(GPTConfig)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise GptpipeError(f"{where}: {unknown[0]}: unknown key (known: {', '.join(known)})")
    for name, value in data.items():
        if known[name].type.startswith("Literal"):  # `arch`: its values are checked below
            if not isinstance(value, str):
                raise GptpipeError(f"{where}: {name}: expected a string, got {value!r}")
            continue
        want = float if known[name].type == "float" else int  # annotations are strings here
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            want is int and not isinstance(value, int)
        ):
            raise GptpipeError(f"{where}: {name}: expected {want.__name__}, got {value!r}")
    try:
        return GPTConfig(**{k: float(v) if known[k].type == "float" else v
                            for k, v in data.items()})
    except ValueError as exc:
        raise GptpipeError(f"{where}: {exc}") from None


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file (never pickle); a damaged file is a GptpipeError."""
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises SafetensorError/OSError for damaged files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GptpipeError(
            f"{path}: not a readable safetensors file (truncated or corrupt?): {msg}"
        ) from None


def check_state_dict(
    tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], where: Path,
    cfg: GPTConfig,
) -> None:
    """Same names and shapes as the model `cfg` describes, else a GptpipeError naming the key."""
    shape = (f"LSTM of {cfg.lstm_units} units" if cfg.arch == "lstm" else
             f"{cfg.n_layer} layers") + f", d_model {cfg.d_model}, vocab {cfg.vocab_size}"
    missing = [k for k in expected if k not in tensors]
    if missing:
        raise GptpipeError(f"{where}: missing tensor {missing[0]} (the config says {shape})")
    unexpected = [k for k in tensors if k not in expected]
    if unexpected:
        raise GptpipeError(f"{where}: unexpected tensor {unexpected[0]} (the config says {shape})")
    for key, want in expected.items():
        got = tensors[key]
        if tuple(got.shape) != tuple(want.shape):
            raise GptpipeError(
                f"{where}: {key} has shape {list(got.shape)} but the config ({shape}) needs "
                f"{list(want.shape)}"
            )
        if not got.is_floating_point():
            raise GptpipeError(f"{where}: {key} has dtype {got.dtype}; expected floating point")

"""The network a fine-tuning run starts from: a model folder's tokenizer, shape and weights.

`--model` is a model folder (`model.safetensors`, `model.json`, `tokenizer.json`: `pretrain`'s
`model/` or an `import-hf` output) or a `pretrain` output folder holding one in `model/`. The
tokenizer must carry the task special tokens and exactly the model's vocabulary; variant
`no_pretrain` keeps the tokenizer and the shape but draws fresh N(0, 0.02) weights.
`model.json`'s `arch` says which network (GPT-1 or Table 5's LSTM, gptpipe/lstm.py) to build.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from .. import vocab
from ..errors import GptpipeError
from ..lstm import LSTMLM, language_model
from ..model import GPT, INIT_STD, GPTConfig
from ..modeldir import (
    CONFIG,
    TOKENIZER,
    WEIGHTS,
    check_state_dict,
    model_folder,
    read_config,
    read_weights,
)
from ..vocab import SpecialIds
from .transfer import check_layers, partial_state


@dataclass(frozen=True)
class Body:
    """A checked model folder: where it is, its tokenizer and special ids, its shape."""

    folder: Path
    tokenizer: Tokenizer
    ids: SpecialIds
    cfg: GPTConfig

    @property
    def tokenizer_path(self) -> Path:
        return self.folder / TOKENIZER


def open_body(path: Path, max_len: int) -> Body:
    """Check the folder, its tokenizer (special tokens, vocabulary = the model's rows) and that
    `max_len` tokens fit the model's context; errors name the file at fault."""
    folder = model_folder(path)
    tok, ids = vocab.load(folder / TOKENIZER)
    cfg = read_config(folder / CONFIG)
    if tok.get_vocab_size() != cfg.vocab_size:
        raise GptpipeError(
            f"{folder / CONFIG}: vocab_size {cfg.vocab_size} does not match the "
            f"{tok.get_vocab_size()} tokens of {folder / TOKENIZER}")
    if max_len > cfg.context:
        raise GptpipeError(
            f"{folder / CONFIG}: finetune.max_len {max_len} exceeds the model's context of "
            f"{cfg.context} tokens; set finetune.max_len <= {cfg.context}")
    return Body(folder, tok, ids, cfg)


def build_gpt(body: Body, pretrained: bool, seed: int, transfer: int | None = None
              ) -> GPT | LSTMLM:
    """The pre-trained network (`model.json`'s arch), or (`pretrained=False`) the same shape
    freshly initialised from `seed`, the weights file then not read at all. Weight names and
    shapes are checked against `model.json` (errors name the file). `transfer` k: only the
    embeddings and the first k blocks are pre-trained, the rest as freshly initialised
    (`finetune.transfer`)."""
    gpt = language_model(body.cfg, generator=torch.Generator().manual_seed(seed))
    if transfer is not None:
        check_layers(transfer, body.cfg.n_layer, str(body.folder / CONFIG))
    if pretrained:
        # Not `modeldir.load_model_dir`: it builds the network on the meta device, whose
        # initialisation imports torch's compiler stack (seconds per job at tiny scale).
        where = body.folder / WEIGHTS
        tensors = read_weights(where)
        check_state_dict(tensors, gpt.state_dict(), where, body.cfg)
        if transfer is not None:
            tensors = partial_state(tensors, transfer)
        gpt.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=transfer is None)
    return gpt


def fresh_special_rows(gpt: GPT, ids: SpecialIds, seed: int) -> list[int]:
    """Redraw from N(0, 0.02) the embedding rows of start, delimiter and extract, the tokens
    the fine-tuning inputs add (OpenAI's code draws them afresh for each run): pre-training
    never saw them, so their rows are only what weight decay left of the initialisation.
    `<|pad|>` (never attended to) and `<|endoftext|>` (seen) keep theirs. The output head is
    tied to these rows, so the auxiliary LM loss predicts them with the new rows too. Drawn
    from `seed` + 2 (the head draws from `seed` + 1); returns the rows redrawn."""
    rows = [ids.start, ids.delim, ids.extract]
    draw = torch.randn(len(rows), gpt.cfg.d_model,
                       generator=torch.Generator().manual_seed(seed + 2))
    with torch.no_grad():
        gpt.wte.weight[rows] = draw * INIT_STD
    return rows

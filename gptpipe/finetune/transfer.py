"""Variant `transfer<k>` (Figure 2, left): fine-tune with only part of the pre-trained network.

The embeddings and the first k blocks come from pre-training; blocks k.. keep the fresh
N(0, 0.02) initialisation drawn from the job's seed, exactly the weights `no_pretrain` would
start from. This is the original code's `--n_transfer`: its parameter list is the embedding
matrix followed by 12 tensors per block, and it assigns the first 1 + 12k of them (none for
k = -1). Our GPT has nothing else to transfer: no final LayerNorm, and the LM head is the token
embedding itself, so it follows the embeddings. The classifier head is always fresh.

k = -1 thus starts like `no_pretrain` and k = n_layer like `full`; the recipe is `full`'s
(auxiliary LM loss on) in every case.
"""

from __future__ import annotations

import argparse
import re
from typing import Mapping

import torch

from ..config import VARIANTS
from ..errors import GptpipeError

PREFIX = "transfer"
_VARIANT = re.compile(rf"{PREFIX}(-?\d+)")
_BLOCK = re.compile(r"h\.(\d+)\.")  # GPT.h: the blocks' parameter names start h.<i>.


def variant(k: int) -> str:
    """The variant name of k transferred blocks, e.g. `transfer0`, `transfer-1`."""
    return f"{PREFIX}{k}"


def layers_of(name: str) -> int | None:
    """k of a `transfer<k>` variant; None for any other name."""
    match = _VARIANT.fullmatch(name)
    return int(match.group(1)) if match else None


def is_variant(name: str) -> bool:
    """A variant the finetune stage runs: Table 5's, or `transfer<k>` with k >= -1."""
    k = layers_of(name)
    return name in VARIANTS or (k is not None and k >= -1)


def variant_arg(text: str) -> str:
    """argparse `type` of `--variant` (the transfer variants are too many for `choices`)."""
    if not is_variant(text):
        raise argparse.ArgumentTypeError(
            f"unknown variant {text!r} (known: {', '.join(VARIANTS)}, "
            f"{PREFIX}<k> with k >= -1)")
    return text


def check_layers(k: int, n_layer: int, where: str) -> None:
    """Refuse a k the model cannot transfer; `where` names the file or key of n_layer."""
    if not -1 <= k <= n_layer:
        raise GptpipeError(
            f"{where}: variant {variant(k)} transfers {k} blocks, but the model has n_layer "
            f"{n_layer}: use k from -1 (nothing) to {n_layer} (everything)")


def transferred(name: str, k: int) -> bool:
    """Whether parameter `name` of a GPT state dict is taken from pre-training at k."""
    block = _BLOCK.match(name)
    if block:
        return int(block.group(1)) < k
    return k >= 0  # the embeddings (wte, also the LM head, and wpe)


def partial_state(tensors: Mapping[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """The pre-trained tensors that variant `transfer<k>` loads (the rest stay fresh)."""
    return {name: t for name, t in tensors.items() if transferred(name, k)}

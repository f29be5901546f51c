"""Where a stage computes and in what precision: `device: auto|cpu|cuda` and
`precision: auto|bf16|fp32`, the same two knobs in `pretrain` and `finetune`.

`auto` means the GPU when CUDA is visible, and bf16 autocast there when the GPU supports it;
everything else runs in float32 on the CPU. Nothing here changes global state.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import torch

from .errors import GptpipeError

Autocast = Callable[[], contextlib.AbstractContextManager]  # a fresh context manager around each forward pass


def resolve_device(pref: str, local_rank: int = 0, *, section: str = "pretrain") -> torch.device:
    """The device of the process with `local_rank` on its node (0 outside a launcher).

    `auto`: that process's GPU when CUDA is present, else the CPU; `cpu`: the CPU; `cuda`
    without a visible GPU fails, naming the config knob `<section>.device`. A rank with no GPU
    of its own fails too (one process per GPU).
    """
    if pref == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise GptpipeError(
                f"process {local_rank} of this node has no GPU of its own: "
                f"{torch.cuda.device_count()} visible; start at most one process per GPU"
            )
        return torch.device("cuda", local_rank)
    if pref == "cuda":
        raise GptpipeError(
            f"{section}.device is 'cuda' but no CUDA device is visible to this process "
            f"(torch {torch.__version__}, CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use device: auto or cpu"
        )
    return torch.device("cpu")


def autocast_for(device: torch.device, precision: str) -> tuple[Autocast, str]:
    """(a factory of the forward pass's autocast context, "bf16" or "fp32").

    bf16 autocast when `precision` is `bf16`, or `auto` on a CUDA device that supports bf16;
    otherwise a no-op context and float32 throughout.
    """
    bf16 = precision == "bf16" or (
        precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    if not bf16:
        return contextlib.nullcontext, "fp32"
    return (lambda: torch.autocast(device.type, dtype=torch.bfloat16)), "bf16"

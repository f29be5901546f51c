"""How many examples one forward pass of fine-tuning holds, and what such a pass costs in memory.

An update always averages over `finetune.batch` examples (32 in the paper); when they do not fit
the GPU at once, `loop.train` runs them as several passes and accumulates the gradients. The
split never changes the update (`loop.train` weights each pass by its share of the batch), only
the memory and time it takes. Pure arithmetic, no torch: `gptpipe plan` imports it too.

Why `max_tokens_per_pass` defaults to 8,192 (`config.FinetuneConfig`): a pass holds examples x
sequences per example x `max_len` padded tokens at most. At GPT-1's shape (12 layers of 768, 12
heads, context 512, 40,483 rows with the specials, 117 M parameters) under bf16 autocast,
`gptpipe.memory.step_memory` (the one estimate, which `gptpipe plan` prints per task) puts a
step over 8,192 tokens at ~14.7 GiB with the plain attention kernel's matrices (its upper
bound) and ~8.5 GiB with SDPA's flash kernel: the auxiliary LM loss's vocabulary-wide logits
weigh nearly as much as the 12 layers. That leaves a 24 GiB card room for the CUDA context and
fragmentation; 16,384 tokens (~27.4 GiB plain) would not fit. The paper's batch of 32 then runs
as 2 passes of 16 for one-sequence tasks, 4 of 8 for similarity, regression and Story Cloze (2
sequences per example) and 8 of 4 for RACE (4 choices x 512 tokens). These are upper bounds:
real examples are mostly shorter than `max_len`, and batches are padded only to their longest.
The tiny and micro presets (batch 32 x 2 x 128 and 8 x 2 x 64 tokens at most) stay at one pass.
"""

from __future__ import annotations

import math
from typing import Protocol


class PassKnobs(Protocol):
    """What `examples_per_pass` reads: `finetune`'s section (`FinetuneConfig`) or one task's
    resolved `Recipe` (which applies the task's `micro_batch` override)."""

    @property
    def micro_batch(self) -> int: ...

    @property
    def max_tokens_per_pass(self) -> int: ...


def examples_per_pass(batch: int, seqs_per_example: int, max_len: int, cfg: PassKnobs) -> int:
    """Examples per forward pass: `cfg.micro_batch` if set (> 0), else as many examples of
    `seqs_per_example` sequences padded to `max_len` as `cfg.max_tokens_per_pass` holds; at
    least 1, at most `batch`."""
    if min(batch, seqs_per_example, max_len) < 1:
        raise ValueError("batch, seqs_per_example and max_len must be >= 1")
    if cfg.micro_batch > 0:
        return min(cfg.micro_batch, batch)
    return max(1, min(batch, cfg.max_tokens_per_pass // (seqs_per_example * max_len)))


def passes_per_update(batch: int, per_pass: int) -> int:
    """Forward passes of a full batch (the last, short batch of an epoch may need fewer)."""
    return math.ceil(batch / per_pass)

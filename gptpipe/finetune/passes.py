"""How many examples one forward pass of fine-tuning holds, and what such a pass costs in memory.

An update always averages over `finetune.batch` examples (32 in the paper); when they do not fit
the GPU at once, `loop.train` runs them as several passes and accumulates the gradients. The
split never changes the update (`loop.train` weights each pass by its share of the batch), only
the memory and time it takes. Pure arithmetic, no torch: `gptpipe plan` imports it too.

Why `max_tokens_per_pass` defaults to 8,192 (`config.FinetuneConfig`): a pass holds examples x
sequences per example x `max_len` padded tokens at most, and at GPT-1's shape (12 layers of 768,
12 heads, d_ff 3,072, context 512, ~40,483 tokens with the specials, 117 M parameters) under
bf16 autocast `pass_bytes` puts one token at ~1.39 MB:

- each layer keeps ~30 KB per token for the backward pass: bf16 inputs of the four matrix
  products (2 x 768 x 3 + 2 x 3,072), q, k, v and the attention output (2 x 768 x 4), the GELU
  input (2 x 3,072), the fp32 inputs of both LayerNorms (4 x 768 x 2), dropout masks (1 byte
  each): 24 x d_model + 4 x d_ff bytes;
- plus the attention matrices where SDPA falls back to its unfused kernel (flash attention
  keeps none): per head one row of T scores, probabilities in bf16 and a dropout mask:
  5 x 12 x 512 = 30 KB per token per layer; so ~61 KB per layer, ~0.74 MB over 12 layers;
- plus the auxiliary LM loss's logits over the whole vocabulary at every scored token: bf16
  logits, their fp32 copy, the saved log-softmax and its gradient at the backward's peak, about
  16 bytes x 40,483 = 0.65 MB per token, nearly as much as the 12 layers together.

8,192 tokens x 1.39 MB = 11.3 GB of activations, plus 1.9 GB of fp32 weights, gradients and
AdamW moments (117 M x 16 bytes) and 0.2 GB of autocast's bf16 weight copies: ~13.5 GB (12.5
GiB), about half of a 24 GiB card, the rest left to the CUDA context, the allocator's
fragmentation and the error of the estimate; 16,384 tokens (~24.8 GB, 23.1 GiB) would leave
none. The paper's batch of 32 then runs as 2 passes of 16 for one-sequence tasks, 4 of 8 for
similarity, regression and Story Cloze (2 sequences per example) and 8 of 4 for RACE (4 choices
x 512 tokens). These are upper bounds: real examples are mostly shorter than `max_len`,
batches are padded only to their longest, and padding is never scored.
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


# Bytes per token, per layer and at the LM head, of `pass_bytes`'s estimate (see above).
ACT_BYTES_PER_D_MODEL = 24
ACT_BYTES_PER_D_FF = 4
ATTN_BYTES_PER_SCORE = 5  # bf16 score + bf16 probability + 1-byte dropout mask
LM_BYTES_PER_LOGIT = 16  # bf16 logit + fp32 copy + saved log-softmax + its gradient
STATE_BYTES_PER_PARAM = 16  # fp32 weight, gradient and two AdamW moments


def pass_bytes(tokens: int, *, n_layer: int, d_model: int, n_head: int, d_ff: int,
               vocab_size: int, seq_len: int, with_lm: bool = True) -> int:
    """Upper estimate of the activation memory of one training pass over `tokens` padded
    tokens in sequences of `seq_len` (bf16 autocast; unfused attention; weights, gradients
    and optimizer state not included: see `state_bytes`)."""
    layer = (ACT_BYTES_PER_D_MODEL * d_model + ACT_BYTES_PER_D_FF * d_ff
             + ATTN_BYTES_PER_SCORE * n_head * seq_len)
    head = LM_BYTES_PER_LOGIT * vocab_size if with_lm else 0
    return tokens * (n_layer * layer + head)


def state_bytes(params: int) -> int:
    """fp32 weights, gradients and AdamW moments of `params` parameters."""
    return STATE_BYTES_PER_PARAM * params

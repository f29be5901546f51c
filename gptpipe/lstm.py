"""Table 5's baseline: a single-layer LSTM language model with GPT-1's interface.

    x_t = drop(We[u_t])                       token embedding, d_model wide; no position table:
                                              the recurrence itself knows the order
    c_t, m_t = LSTM(x_t, h_{t-1}, c_{t-1})    lstm_units cells (2,048 in the paper)
    h_t = drop(P · m_t)                       projected back to d_model (an LSTMP, Sak et al.
                                              2014), so that the head can be tied ...
    P(u_{t+1}) = softmax(h_t · We^T)          ... to the token embedding, as in GPT

The paper says only "a single layer 2048 unit LSTM"; the projection is our choice. It keeps the
states as wide as the transformer's, so fine-tuning (gptpipe/finetune/model.py) uses the same
input transformations, extract-token head and auxiliary LM loss on either network unchanged.

`LSTMLM` offers what the pre-training loop, the model folder and fine-tuning call on `GPT`:
`cfg`, `hidden_states`, `lm_logits`, `forward`, `num_params`, `flops_per_token`.
`language_model(cfg)` builds the network `cfg.arch` names.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from .model import GPT, IGNORE_INDEX, INIT_STD, GPTConfig

# On CPU torch says, once per process, that oneDNN has no LSTM with a projection and that it runs
# its own kernel: the same function, only slower (tiny's budget was measured with it).
warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
FORGET_BIAS = 1.0  # forget gates start open (Jozefowicz et al. 2015): long memory from step 1


class LSTMLM(nn.Module):
    """One LSTM layer between a tied token embedding and its transpose."""

    def __init__(self, cfg: GPTConfig, *, generator: torch.Generator | None = None) -> None:
        """`generator` (CPU) seeds the initialisation; None uses torch's global RNG."""
        super().__init__()
        if cfg.arch != "lstm":
            raise ValueError(f"LSTMLM needs model.arch 'lstm', got {cfg.arch!r}")
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)  # We, also the output head
        self.drop_in = nn.Dropout(cfg.embd_dropout)
        # proj_size = 0 means no projection (torch requires proj_size < hidden_size).
        proj = cfg.d_model if cfg.lstm_units > cfg.d_model else 0
        self.lstm = nn.LSTM(cfg.d_model, cfg.lstm_units, num_layers=1, batch_first=True,
                            proj_size=proj)
        self.drop_out = nn.Dropout(cfg.resid_dropout)
        self.init_weights(generator)

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Embedding N(0, 0.02) as GPT's; LSTM matrices U(±1/sqrt(units)) (torch's default,
        drawn from `generator` here so a seed decides them); biases 0 but the forget gates'."""
        nn.init.normal_(self.wte.weight, mean=0.0, std=INIT_STD, generator=generator)
        bound = 1.0 / math.sqrt(self.cfg.lstm_units)
        for name, p in self.lstm.named_parameters():
            if name.startswith("weight"):
                nn.init.uniform_(p, -bound, bound, generator=generator)
            else:
                nn.init.zeros_(p)
        # torch orders the gates input, forget, cell, output: rows [H, 2H) are the forget gate.
        H = self.cfg.lstm_units
        self.lstm.bias_ih_l0[H:2 * H].fill_(FORGET_BIAS)

    def hidden_states(
        self, idx: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """States (B, T, d_model) for token ids `idx` (B, T), each a function of tokens <= t.

        Right padding never reaches a real position (the recurrence runs forward). Padding
        before or between real tokens would, so an `attn_mask` with any 0 is refused.
        """
        T = idx.size(1)
        if T > self.cfg.context:
            raise ValueError(f"sequence of {T} tokens exceeds the context of {self.cfg.context}")
        if attn_mask is not None and not bool(attn_mask.all()):
            raise ValueError("the LSTM reads padding before a real token into its state: pad "
                             "on the right only")
        x = self.drop_in(self.wte(idx))  # (B, T, d_model)
        h, _ = self.lstm(x)  # (B, T, d_model): zero initial state for every row
        return self.drop_out(h)

    def lm_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Next-token logits (..., vocab_size) from states (..., d_model): h · We^T."""
        return F.linear(h, self.wte.weight)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab_size) and, given `targets`, the mean cross-entropy (as GPT's)."""
        logits = self.lm_logits(self.hidden_states(idx, attn_mask))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX
        )
        return logits, loss

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count; `non_embedding` leaves out the (tied) token table."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wte.weight.numel() if non_embedding else n

    def flops_per_token(self, context: int | None = None) -> int:
        """Training FLOPs (forward + backward) per token: 6·N, N = every parameter.

        Per token the LSTM multiplies its input (d) and its previous projected output (p = d,
        or H without a projection) by the four gates' matrices, 4H·(d + p) multiply-adds, then
        projects H cells to p (H·p) and scores the vocabulary (V·d, the tied table). At 2 FLOPs
        a multiply-add forward and twice that backward, 6·(4H(d + p) + H·p + V·d) = 6·N up to
        the biases and the gates' element-wise work (O(H), negligible). Nothing grows with the
        context, so `context` is accepted for GPT's signature and ignored.
        """
        del context
        return 6 * self.num_params()


def language_model(cfg: GPTConfig, *, generator: torch.Generator | None = None
                   ) -> GPT | LSTMLM:
    """The network `cfg.arch` names, initialised from `generator`."""
    return LSTMLM(cfg, generator=generator) if cfg.arch == "lstm" else GPT(cfg, generator=generator)

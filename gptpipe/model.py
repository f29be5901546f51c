"""GPT-1 (Radford et al. 2018, §4.1) in one file: config, block, model and task heads.

The network, exactly as the paper and OpenAI's `finetune-transformer-lm` define it:

    h0 = U·We + Wp                      token + learned position embeddings (§3.1, eq. 2)
    n  = LN(h + attn(h))                post-LN: the LayerNorm comes *after* each residual sum
    h' = LN(n + mlp(n))
    P(u) = softmax(h_L · We^T)          output head tied to the token embedding; no final LN

It computes the same function as Hugging Face's `OpenAIGPTLMHeadModel` for the same weights
(`gptpipe/hf.py` maps the names; `tests/test_hf.py` checks the logits in both directions).
This file does no I/O: model folders are read and written by `gptpipe/modeldir.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import SCALES, ModelConfig, resolve_section, to_dict

IGNORE_INDEX = -100  # targets with this value (padding, unscored positions) add no loss
INIT_STD = 0.02  # N(0, 0.02) for every weight matrix and embedding (§4.1)
N_SPECIAL = 5  # <|start|>, <|delim|>, <|extract|>, <|pad|>, <|endoftext|> (gptpipe/vocab.py)


@dataclass(frozen=True)
class GPTConfig(ModelConfig):
    """The network `GPT` builds: the `model` section's shape and checks (`ModelConfig`, §4.1)
    plus the two sizes the data decides. Defaults are the paper's; sizes are counts, not bytes."""

    vocab_size: int = 40_478 + N_SPECIAL  # embedding rows: base BPE vocabulary + special tokens
    context: int = 512  # tokens per sequence (learned position embeddings, so a hard maximum)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("vocab_size", "context"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def preset(cls, name: str, **overrides: int | float) -> "GPTConfig":
        """The network of scale preset `name` (`gpt1`, `tiny`, `micro`: gptpipe/presets.py): its
        `model` section, its BPE vocabulary plus the special tokens, its shard context; then the
        fields in `overrides` replaced (callers pass `vocab_size=special_ids.vocab_size`)."""
        if name not in SCALES:
            raise ValueError(f"unknown model preset {name!r} (known: {', '.join(SCALES)})")
        unknown = sorted(set(overrides) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown GPTConfig field {unknown[0]!r}")
        model, bpe, shard = (resolve_section({"scale": name}, s) for s in ("model", "bpe", "shard"))
        base = cls(**to_dict(model), vocab_size=bpe.vocab_size + N_SPECIAL, context=shard.context)
        return replace(base, **overrides)


class CausalSelfAttention(nn.Module):
    """Masked multi-head self-attention, scores scaled by 1/sqrt(d_head) (Vaswani et al. 2017)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.attn_dropout = cfg.attn_dropout
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model)  # fused query, key, value
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.resid_drop = nn.Dropout(cfg.resid_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """`mask`: None for plain causal attention, else a boolean (B, 1, T, T), True = attend."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        # SDPA's default scale is 1/sqrt(hs). An explicit mask already holds the causal part;
        # without one, `is_causal` lets SDPA pick its fastest (flash) kernel.
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None,
            dropout_p=self.attn_dropout if self.training else 0.0,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads side by side
        return self.resid_drop(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward network with GELU in its tanh form (Hendrycks & Gimpel 2016)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.d_model, cfg.d_ff)
        self.c_proj = nn.Linear(cfg.d_ff, cfg.d_model)
        self.drop = nn.Dropout(cfg.resid_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """One decoder block, post-LN as in GPT-1 (GPT-2 later moved the LayerNorms first)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(cfg)
        self.ln_1 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        n = self.ln_1(x + self.attn(x, mask))
        return self.ln_2(n + self.mlp(n))


class GPT(nn.Module):
    """The GPT-1 language model. Token ids in, logits over the vocabulary out."""

    def __init__(self, cfg: GPTConfig, *, generator: torch.Generator | None = None) -> None:
        """`generator` (CPU) seeds the N(0, 0.02) initialisation; None uses torch's global RNG."""
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)  # token embedding We, also the head
        self.wpe = nn.Embedding(cfg.context, cfg.d_model)  # learned position embedding Wp
        # Hugging Face drops out the sum; the original drops out rows of the embedding matrix
        # itself. The two differ only in training, never at evaluation.
        self.drop = nn.Dropout(cfg.embd_dropout)
        self.h = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        # No final LayerNorm and no separate output matrix: `lm_logits` reuses `wte.weight`.
        self.init_weights(generator)

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """N(0, 0.02) weights and zero biases for Linear/Embedding; LayerNorm gain 1, bias 0."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=INIT_STD, generator=generator)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def hidden_states(
        self, idx: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Final block's states (B, T, d_model) for token ids `idx` (B, T).

        `attn_mask` (B, T), True/1 for real tokens and False/0 for padding, keeps every position
        from attending to padding. Pass it only when a batch holds padding *before* real tokens
        or in between: with right padding alone the causal mask already hides it, and without a
        mask SDPA can use its fastest kernel. States at padded positions are meaningless.
        """
        B, T = idx.shape
        if T > self.cfg.context:
            raise ValueError(f"sequence of {T} tokens exceeds the context of {self.cfg.context}")
        if attn_mask is not None and attn_mask.shape != idx.shape:
            raise ValueError(f"attn_mask {tuple(attn_mask.shape)} does not match idx {(B, T)}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        mask = None if attn_mask is None else padding_mask(attn_mask)  # (B, 1, T, T)
        for block in self.h:
            x = block(x, mask)
        return x

    def lm_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Next-token logits (..., vocab_size) from hidden states (..., d_model): h · We^T."""
        return F.linear(h, self.wte.weight)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab_size) and, given `targets` (B, T), the mean cross-entropy in nats
        per scored token (targets equal to IGNORE_INDEX = -100 are not scored). `attn_mask` as
        in `hidden_states`."""
        logits = self.lm_logits(self.hidden_states(idx, attn_mask))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX
        )
        return logits, loss

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count; `non_embedding` leaves out both embedding tables (Kaplan et al.'s N).

        The tied output head is counted once (it *is* the token embedding).
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel() + self.wpe.weight.numel()
        return n

    def flops_per_token(self, context: int | None = None) -> int:
        """Training FLOPs (forward + backward) per token at sequence length `context`.

        6N + 12·L·d·T as in PaLM (Chowdhery et al. 2022, appendix B) and nanoGPT's
        `estimate_mfu`: 2 FLOPs per multiply-add in the forward pass, twice that backward, over
        N = the parameters used in matrix products (all but the position table, which is only
        looked up; the token table counts because it is also the output head), plus the
        attention scores and weighted sums, 12·L·d·T, that no parameter accounts for.
        """
        T = self.cfg.context if context is None else context
        n_matmul = self.num_params() - self.wpe.weight.numel()
        return 6 * n_matmul + 12 * self.cfg.n_layer * self.cfg.d_model * T


def padding_mask(attn_mask: torch.Tensor) -> torch.Tensor:
    """Boolean SDPA mask (B, 1, T, T) from a key padding mask (B, T): causal AND key is real.

    Each position may also attend to itself, so that a padding query never has every key masked
    (SDPA would return NaN there, and NaN poisons the backward pass even where unscored). A real
    query's own key is real, so this changes nothing where it matters.
    """
    T = attn_mask.size(1)
    keep = attn_mask.to(torch.bool)[:, None, None, :]  # (B, 1, 1, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=attn_mask.device).tril()  # (T, T)
    eye = torch.eye(T, dtype=torch.bool, device=attn_mask.device)  # (T, T)
    return causal & (keep | eye)  # (B, 1, T, T)


def gather_at(h: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The states (B, C) at one position per row: `h` (B, T, C), `positions` (B,) token indices.

    Fine-tuning reads the final block at the extract token (§3.2, "h_l^m").
    """
    idx = positions.long().view(-1, 1, 1).expand(-1, 1, h.size(-1))  # (B, 1, C)
    return h.gather(1, idx).squeeze(1)  # (B, C)


class ClassifierHead(nn.Module):
    """Dropout then a linear layer W_y on the extract-token state (§3.2: P(y|x) = softmax(h W_y)).

    Takes any (..., d_model) input, so the callers' input transformations (§3.3) stay one line:
    similarity sums both orders, `head(gather_at(h_ab, p_ab) + gather_at(h_ba, p_ba))`; multiple
    choice scores each (context, answer) row with `n_out=1` and reshapes to (B, choices).
    """

    def __init__(self, d_model: int, n_out: int, dropout: float = 0.1,
                 *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(d_model, n_out)
        with torch.no_grad():
            nn.init.normal_(self.proj.weight, mean=0.0, std=INIT_STD, generator=generator)
            nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.drop(x))  # (..., n_out)

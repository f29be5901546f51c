"""Peak GPU memory of one training step of `gptpipe.model.GPT`, estimated from its shape (for
`gptpipe plan`: will a forward pass of this size fit on that GPU?).

An estimate, not a measurement. It counts the large tensors a step holds at its peak, the start
of the backward pass, and nothing of the CUDA context, allocator fragmentation or kernels'
workspaces (allow 1-2 GB more for those):

    total = states + copies + activations + logits

    states      = 16 P     fp32 weights (4 bytes) + gradients (4) + AdamW's two moments (8);
                  + 4 P    DDP's gradient buckets, when more than one process trains
    copies      = 2 P      the bf16 weight copies autocast keeps during a step (bf16 only)
    activations = L x B x T x ((7 d + 2 f) e + 2 d 4 + 2 d + h T (9 + c))
        per layer and token, what autograd keeps for backward (counted as in Korthikanti et
        al. 2022, "Reducing activation recomputation", section 4.1): 7 d + 2 f elements at e
        bytes (the inputs of the four matrices, the MLP's second one f = d_ff wide; q, k and
        v; the attention output as SDPA keeps it; the GELU input), the two LayerNorm inputs,
        which stay fp32 under autocast, two 1-byte dropout masks, and the attention matrices:
        per token h x T fp32 softmax outputs and their dropout outputs (autocast runs softmax
        in fp32), a 1-byte mask and the e-byte copy the product with v reads (c = e under
        bf16 autocast, 0 in fp32). SDPA's flash and memory-efficient kernels (the default on
        CUDA) never store those matrices, so this last term is the plain kernel's bound: with
        `attention_matrices=False` it is left out.
    logits      = B x T x V x (e + 8 + c)
        the logits (e bytes), their fp32 log-softmax kept by the loss, and at the start of
        backward the fp32 gradient with respect to them, plus its e-byte cast (c = e under
        bf16 autocast, 0 in fp32).

with P parameters, L layers, d = d_model, h heads, V vocabulary rows (the tied output head),
B sequences of T tokens in the forward pass, and e = 2 (bf16 autocast) or 4 (fp32). On CPU in
fp32 (the plain attention kernel) activations + forward logits come within 15% of the bytes
autograd really keeps (tests/test_plan.py); the GPU kernels were not measured here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .model import GPTConfig

GIB = 2**30


@dataclass(frozen=True)
class StepMemory:
    """Bytes of one training step's peak, by the terms of the module docstring."""

    states: int
    copies: int
    activations: int
    logits: int

    @property
    def total(self) -> int:
        return self.states + self.copies + self.activations + self.logits

    def as_dict(self) -> dict:
        return asdict(self) | {"total": self.total}


def element_bytes(precision: str) -> int:
    """e: bytes per activation element; `auto` plans for a GPU with bf16 (what it picks there)."""
    return 4 if precision == "fp32" else 2


def activation_bytes(cfg: GPTConfig, seqs: int, seq_len: int, e: int,
                     attention_matrices: bool = True) -> int:
    """What autograd keeps of `seqs` sequences of `seq_len` tokens through every block."""
    d, f, h, T = cfg.d_model, cfg.d_ff, cfg.n_head, seq_len
    if cfg.arch == "lstm":
        # Table 5's LSTM (gptpipe/lstm.py), one layer, per token: its input and projected
        # output (2 d), the four gates, the cell, its tanh and the unprojected output (7 H), and
        # two 1-byte dropout masks (d each). A rougher count than the transformer's.
        return seqs * T * ((2 * d + 7 * cfg.lstm_units) * e + 2 * d)
    per_token = (7 * d + 2 * f) * e + 2 * d * 4 + 2 * d
    if attention_matrices:
        per_token += h * T * (9 + _cast(e))
    return cfg.n_layer * seqs * T * per_token


def logits_bytes(cfg: GPTConfig, seqs: int, seq_len: int, e: int, backward: bool = True) -> int:
    """The vocabulary-wide tensors of the LM loss at the start of backward (`backward=False`:
    what the forward pass leaves, the logits and their log-softmax)."""
    per_row = e + 4 + (4 + _cast(e) if backward else 0)
    return seqs * seq_len * cfg.vocab_size * per_row


def _cast(e: int) -> int:
    """c: bytes of the extra low-precision copy autocast makes of an fp32 tensor (fp32: 0)."""
    return e if e < 4 else 0


def step_memory(cfg: GPTConfig, params: int, seqs: int, seq_len: int, precision: str,
                processes: int = 1, attention_matrices: bool = True) -> StepMemory:
    """The peak of a step whose forward pass holds `seqs` sequences of `seq_len` tokens."""
    e = element_bytes(precision)
    return StepMemory(
        states=params * (16 + (4 if processes > 1 else 0)),
        copies=params * 2 if e == 2 else 0,
        activations=activation_bytes(cfg, seqs, seq_len, e, attention_matrices),
        logits=logits_bytes(cfg, seqs, seq_len, e),
    )

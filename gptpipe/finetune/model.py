"""The task model: GPT-1's body plus one linear head on the extract-token state (paper §3.2-3.3).

Every example arrives as S sequences in a row of the batch (see `gptpipe.tasks.transforms`):

    kind             S          head input (C = d_model)                    output per example
    single, pair     1          h[<e>]                                      n classes (logits)
    similarity       2          h[<e>] of `A $ B` + h[<e>] of `B $ A`       n classes (logits)
    regression       2          the same sum                                6 logits, or 1 score
    multiple_choice  choices    h[<e>] of each `context $ answer_k`         1 score per choice

STS-B is the one regression task. The paper does not say how it scored it; OpenAI's code ships
Tai et al.'s (2015) label encoding (`stsb_label_encoding` in its utils.py), which
`finetune.stsb_target: classes` (the default) follows: the gold 0-5 similarity y becomes a
distribution over the scores 0..5 (`score_distribution`), the head has 6 outputs trained by
cross-entropy against it, and the prediction is the expected score sum_k k·p_k, on which Pearson
and Spearman are computed. `regression` instead regresses y with one output and a mean squared
error loss, as Hugging Face's `run_glue` does. `task_loss` and `predictions` tell the two apart
by the scores' shape. Multiple-choice scores are compared by a softmax over the choices of each
example (cross-entropy on the index of the right one).

The auxiliary language-model loss (L1 in L3 = L2 + λ·L1) is computed on the same sequences:
every real token but the last predicts the next one (`<s>`, `$` and `<e>` included, as in
OpenAI's `finetune-transformer-lm`); padding is never a target.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..model import GPT, ClassifierHead, gather_at

SUMMED_KINDS = ("similarity", "regression")  # both orders' extract states added (§3.3)
STSB_CLASSES = 6  # the scores 0, 1, ..., 5 of `stsb_target: classes`


def head_outputs(kind: str, num_labels: int, stsb_target: str) -> int:
    """The head's outputs: `TaskSpec.num_labels`, but 6 for regression with `classes`."""
    return STSB_CLASSES if kind == "regression" and stsb_target == "classes" else num_labels


def score_distribution(y: torch.Tensor, n: int = STSB_CLASSES) -> torch.Tensor:
    """(B, n): each score y in [0, n-1] as p[floor y] = floor y - y + 1, p[floor y + 1] =
    y - floor y (Tai et al. 2015), so that sum_k k·p_k = y."""
    y = y.float()
    if y.numel() and not bool(((y >= 0) & (y <= n - 1)).all()):
        raise ValueError(f"scores must lie in [0, {n - 1}]; got {y.min():g} .. {y.max():g}")
    low = y.floor().clamp(max=n - 1)
    frac = (y - low).unsqueeze(1)
    p = torch.zeros(y.numel(), n, device=y.device)
    p.scatter_add_(1, low.long().unsqueeze(1), 1 - frac)
    p.scatter_add_(1, (low.long() + 1).clamp(max=n - 1).unsqueeze(1), frac)  # y = n-1: frac 0
    return p


def expected_score(logits: torch.Tensor) -> torch.Tensor:
    """(B,): sum_k k·softmax(logits)_k, the score a class distribution predicts."""
    k = torch.arange(logits.size(-1), device=logits.device, dtype=torch.float32)
    return logits.float().softmax(dim=-1) @ k


def sequences_per_example(kind: str, n_choices: int | None) -> int:
    if kind == "multiple_choice":
        if not n_choices:
            raise ValueError("a multiple-choice task needs n_choices")
        return n_choices
    return 2 if kind in SUMMED_KINDS else 1


class TaskModel(nn.Module):
    """`gpt` (pre-trained or freshly initialised) with a ClassifierHead arranged for `kind`."""

    def __init__(self, gpt: GPT, kind: str, n_out: int, *, n_choices: int | None = None,
                 clf_dropout: float = 0.1, generator: torch.Generator | None = None) -> None:
        """`n_out`: classes (single/pair/similarity), else 1 (`TaskSpec.num_labels`)."""
        super().__init__()
        self.gpt = gpt
        self.kind = kind
        self.seqs = sequences_per_example(kind, n_choices)
        self.head = ClassifierHead(gpt.cfg.d_model, n_out, clf_dropout, generator=generator)

    def forward(self, ids: torch.Tensor, extract: torch.Tensor, *, with_lm: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores per example and, if `with_lm`, the LM loss (nats per predicted token).

        `ids` (B·S, T): each example's S sequences in consecutive rows, right-padded (the
        causal mask keeps padding out of every real position, so no attention mask is needed).
        `extract` (B·S,): index of `<e>`, the last real token of each row.
        Scores: (B, classes) logits, (B,) regression outputs, or (B, S) choice scores.
        """
        h = self.gpt.hidden_states(ids)  # (B·S, T, C)
        states = gather_at(h, extract)  # (B·S, C)
        scores = self._scores(states)
        lm = lm_loss(self.gpt, h, ids, extract) if with_lm else None
        return scores, lm

    def _scores(self, states: torch.Tensor) -> torch.Tensor:
        n, c = states.shape
        if self.kind == "multiple_choice":
            return self.head(states).view(n // self.seqs, self.seqs)  # (B, S)
        if self.kind in SUMMED_KINDS:
            states = states.view(n // self.seqs, self.seqs, c).sum(dim=1)  # (B, C)
        out = self.head(states)  # (B, n_out)
        return out.squeeze(-1) if self.kind == "regression" and out.size(-1) == 1 else out


def lm_loss(gpt: GPT, h: torch.Tensor, ids: torch.Tensor, extract: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the real tokens of every row.

    Row r predicts `ids[r, t+1]` from `h[r, t]` for t < extract[r]. The logits are computed only
    at those positions, so padding costs no vocabulary-sized matrix product.
    """
    T = ids.size(1)
    pos = torch.arange(T - 1, device=ids.device)  # (T-1,)
    scored = pos[None, :] < extract[:, None]  # (B·S, T-1): positions with a real next token
    states = h[:, :-1][scored]  # (M, C)
    targets = ids[:, 1:][scored]  # (M,)
    return F.cross_entropy(gpt.lm_logits(states).float(), targets)


def task_loss(kind: str, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L2 of the paper: cross-entropy over classes or choices; for regression, cross-entropy
    against the gold score's distribution (scores (B, 6)) or squared error (scores (B,))."""
    if kind == "regression" and scores.dim() == 2:
        return F.cross_entropy(scores.float(), score_distribution(labels, scores.size(-1)))
    if kind == "regression":
        return F.mse_loss(scores.float(), labels.float())
    return F.cross_entropy(scores.float(), labels.long())


def predictions(kind: str, scores: torch.Tensor) -> torch.Tensor:
    """The predicted class or choice index (B,); for regression the expected score of the 6
    logits, or the single output itself."""
    if kind == "regression":
        return expected_score(scores) if scores.dim() == 2 else scores.float()
    return scores.argmax(dim=-1)

"""Log-probabilities of a continuation given a context, under one language model: the one
measurement every zero-shot heuristic is built from.

Texts go through the model folder's own tokenizer, so both BPE styles work: a continuation is
encoded on its own, with its leading space (`bytelevel` keeps it as `Ġ`; `gpt1` drops it and
marks word ends with `</w>`), and appended to the context's ids. A pair longer than the model's
context loses tokens from the left of its context, then from the end of its continuation: the
continuation is what is scored.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from ..device import Autocast
from ..model import GPT
from ..vocab import SpecialIds


@dataclass
class Scorer:
    """A model in eval mode on its device, its tokenizer, and how many sequences per pass."""

    model: GPT
    tok: Tokenizer
    ids: SpecialIds
    device: torch.device
    batch_size: int = 16
    autocast: Autocast = contextlib.nullcontext

    def encode(self, text: str) -> list[int]:
        """Ids of `text` without special tokens (a literal `<|...|>` in task text is dropped)."""
        return [i for i in self.tok.encode(text, add_special_tokens=False).ids
                if i < self.ids.base_vocab]

    def logprobs(self, pairs: Sequence[tuple[str | None, str]]) -> list[list[float]]:
        """For each (context, continuation): the log-probability of each continuation token.
        A context of None stands for the start of a document (`<|endoftext|>`, which precedes
        every document in the pre-training windows)."""
        seqs = [self._fit(self._context_ids(c), self.encode(t)) for c, t in pairs]
        # Batches of similar lengths pad (and compute) little; results go back in input order.
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
        out: list[list[float]] = [[] for _ in seqs]
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            for i, scores in zip(chunk, self._score([seqs[i] for i in chunk])):
                out[i] = scores
        return out

    def _context_ids(self, context: str | None) -> list[int]:
        return [self.ids.eod] if context is None else [self.ids.eod, *self.encode(context)]

    def _fit(self, ctx: list[int], cont: list[int]) -> tuple[list[int], int]:
        """(ids, tokens of it that are scored): at most the model's context, at least one
        token of context before the continuation."""
        limit = self.model.cfg.context
        cont = cont[: limit - 1] or [self.ids.eod]  # an empty text: score the end of document
        ctx = ctx[-(limit - len(cont)):]
        return ctx + cont, len(cont)

    @torch.no_grad()
    def _score(self, batch: list[tuple[list[int], int]]) -> list[list[float]]:
        width = max(len(ids) for ids, _ in batch)
        x = torch.full((len(batch), width), self.ids.pad, dtype=torch.long)
        for row, (ids, _) in enumerate(batch):
            x[row, : len(ids)] = torch.tensor(ids)
        x = x.to(self.device)
        with self.autocast():  # right padding only: the causal mask already hides it
            logits, _ = self.model(x)
        logp = F.log_softmax(logits.float(), dim=-1)
        out = []
        for row, (ids, n) in enumerate(batch):
            pos = torch.arange(len(ids) - n, len(ids), device=self.device)
            target = x[row, pos]
            out.append(logp[row, pos - 1, target].tolist())
        return out


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)

"""The paper's input transformations (§3.3, Figure 1): examples -> token-id sequences.

With `<s>` = `<|start|>`, `$` = `<|delim|>` and `<e>` = `<|extract|>` (ids V, V+1, V+2 after a
base vocabulary of V tokens, see `gptpipe.vocab`):

- single (classification):     `<s> text <e>`
- pair (entailment):           `<s> premise $ hypothesis <e>`
- similarity / regression:     `<s> A $ B <e>` and `<s> B $ A <e>`, two sequences the caller runs
                               separately, adding their final states at `<e>`
- multiple_choice:             `<s> context question $ answer_k <e>`, one sequence per choice
                               (Story Cloze: context only, no question)

Each text segment is encoded on its own without special tokens, then the ids are assembled.
Sequences longer than `max_len` tokens are cut to fit: `<s>`, `$` and `<e>` always stay, and the
longest segment loses tokens from its end first, one at a time (on a tie the later segment
gives), so a long RACE article shrinks before its question or answers. Pure functions: no
torch, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from tokenizers import Tokenizer

from ..errors import GptpipeError
from ..vocab import SpecialIds, special_ids
from .spec import KINDS, Example


@dataclass(frozen=True)
class Encoded:
    """One example as model input: `input_ids` holds one sequence per forward pass (1 for
    single/pair, 2 for similarity (A,B then B,A), one per choice for multiple choice);
    `extract_positions[i]` is the index of `<e>` in sequence i (its last token)."""

    input_ids: tuple[tuple[int, ...], ...]
    label: int | float | None
    extract_positions: tuple[int, ...]
    truncated: bool  # some segment lost tokens to fit max_len


@dataclass(frozen=True)
class EncodeStats:
    """Figures of one `encode_examples` call (lengths in tokens, specials included)."""

    examples: int
    truncated: int  # examples with at least one segment trimmed
    longest: int  # longest sequence before trimming
    max_len: int

    def to_dict(self) -> dict:
        return {"examples": self.examples, "truncated": self.truncated,
                "longest_tokens": self.longest, "max_len": self.max_len}


def fit_lengths(lengths: Sequence[int], budget: int) -> list[int]:
    """Segment lengths after trimming to a total of at most `budget` tokens.

    Same result as removing one token at a time from the currently longest segment (the later
    one on a tie), computed directly: every segment is capped at the largest level L that fits,
    and the tokens still free go one each to the earliest segments that were longer than L.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if sum(lengths) <= budget:
        return list(lengths)
    lo, hi = 0, max(lengths)
    while lo < hi:  # largest cap L with sum(min(l, L)) <= budget
        mid = (lo + hi + 1) // 2
        if sum(min(n, mid) for n in lengths) <= budget:
            lo = mid
        else:
            hi = mid - 1
    out = [min(n, lo) for n in lengths]
    spare = budget - sum(out)
    for i, n in enumerate(lengths):
        if spare == 0:
            break
        if n > lo:
            out[i] += 1
            spare -= 1
    return out


def assemble(segments: Sequence[Sequence[int]], n_before: int, ids: SpecialIds, max_len: int
             ) -> tuple[list[int], bool]:
    """`<s> seg[0] .. seg[n_before-1] $ seg[n_before] .. <e>` (no `$` when n_before covers all
    segments), trimmed to `max_len` tokens; returns (ids, whether anything was trimmed)."""
    delim = n_before < len(segments)
    specials = 3 if delim else 2
    if max_len < specials:
        raise ValueError(f"max_len {max_len} leaves no room for the {specials} special tokens")
    kept = fit_lengths([len(s) for s in segments], max_len - specials)
    out = [ids.start]
    for i, (seg, n) in enumerate(zip(segments, kept)):
        if i == n_before:
            out.append(ids.delim)
        out.extend(seg[:n])
    out.append(ids.extract)
    return out, kept != [len(s) for s in segments]


_N_TEXTS = {"single": 1, "pair": 2, "similarity": 2, "regression": 2}


def _segments_of(example: Example, kind: str) -> tuple[str, ...]:
    """All texts of an example (texts, then choices), checked against the transformation."""
    if kind == "multiple_choice":
        ok = bool(example.texts) and bool(example.choices)
    else:
        ok = len(example.texts) == _N_TEXTS[kind] and not example.choices
    if not ok:
        raise GptpipeError(f"example {example.id!r}: {len(example.texts)} text(s) and "
                           f"{'no' if not example.choices else len(example.choices)} choices "
                           f"do not fit the input transformation {kind!r}")
    return example.texts + (example.choices or ())


def encode_one(example: Example, kind: str, table: dict[str, list[int]], ids: SpecialIds,
               max_len: int) -> tuple[Encoded, int]:
    """One example, its texts' ids looked up in `table` (see `token_table`); returns the
    Encoded and its longest sequence before trimming, in tokens."""
    _segments_of(example, kind)
    specials = 2 if kind == "single" else 3
    texts = [table[t] for t in example.texts]
    if kind == "multiple_choice":
        variants = [(texts + [table[c]], len(texts)) for c in example.choices or ()]
    else:
        variants = [(texts, 1)]
    longest = max(sum(map(len, parts)) for parts, _ in variants) + specials
    if kind in ("similarity", "regression"):
        # Trim once and build both orders from the same tokens: trimming each order on its
        # own would break length ties differently.
        n_a, n_b = fit_lengths([len(t) for t in texts], max(max_len - specials, 0))
        a, b = texts[0][:n_a], texts[1][:n_b]
        variants = [([a, b], 1), ([b, a], 1)]
    seqs = tuple(tuple(assemble(parts, n, ids, max_len)[0]) for parts, n in variants)
    enc = Encoded(seqs, example.label, tuple(len(s) - 1 for s in seqs), longest > max_len)
    return enc, longest


def token_table(texts: Iterable[str], tok: Tokenizer, ids: SpecialIds) -> dict[str, list[int]]:
    """Ids of each distinct text, encoded without special tokens. A special-token string inside
    task text (e.g. a literal `<|extract|>`) would be matched by the tokenizer; its id is
    dropped so that only the transformation places special tokens."""
    unique = list(dict.fromkeys(texts))
    encodings = tok.encode_batch(unique, add_special_tokens=False)
    return {t: [i for i in e.ids if i < ids.base_vocab] for t, e in zip(unique, encodings)}


def encode_examples(examples: Sequence[Example], kind: str, tok: Tokenizer, max_len: int, *,
                    source: str = "tokenizer") -> tuple[list[Encoded], EncodeStats]:
    """Apply the paper's input transformation for `kind` (a `TaskSpec.kind`) to every example.

    `max_len`: tokens per sequence, special tokens included (the model's context). `source`
    names the tokenizer in errors (e.g. its path): one without the special tokens fails here.
    """
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    ids = special_ids(tok, source=source)
    table = token_table((t for ex in examples for t in _segments_of(ex, kind)), tok, ids)
    encoded, truncated, longest = [], 0, 0
    for ex in examples:
        enc, n = encode_one(ex, kind, table, ids, max_len)
        encoded.append(enc)
        truncated += enc.truncated
        longest = max(longest, n)
    return encoded, EncodeStats(len(examples), truncated, longest, max_len)

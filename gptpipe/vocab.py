"""The vocabulary every stage after `bpe` shares: the special tokens, their ids, and loading a
`tokenizer.json` (training it is `gptpipe.bpe`).

Vocabulary layout, as in GPT-1 (where start = 40478, delimiter = 40479, classify = 40480):

    ids 0 .. V-1   the base vocabulary learned by BPE (`bpe.vocab_size` = V; see `exact_merges`)
    V + 0          <|start|>      opens every fine-tuning input           (paper §3.3)
    V + 1          <|delim|>      separates the segments of a pair          ("$" in the paper)
    V + 2          <|extract|>    closes the input; the classifier reads here ("Extract")
    V + 3          <|pad|>        batch padding, never attended to or scored
    V + 4          <|endoftext|>  joins documents in pre-training windows

Two styles: `bytelevel` (GPT-2's byte-level BPE: no unknown tokens, exact round trip) and `gpt1`
(the original's flavour: lowercased text split into words and punctuation, `</w>` marking the
end of a word, `<unk>` = id 0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from .atomic import write_text
from .errors import GptpipeError

SPECIAL_TOKENS = ("<|start|>", "<|delim|>", "<|extract|>", "<|pad|>", "<|endoftext|>")
UNK = "<unk>"
END_OF_WORD = "</w>"



@dataclass(frozen=True)
class SpecialIds:
    """Ids of the special tokens; `base_vocab` is V, `vocab_size` the model's embedding rows."""

    start: int
    delim: int
    extract: int
    pad: int
    eod: int
    base_vocab: int

    @property
    def vocab_size(self) -> int:
        return self.base_vocab + len(SPECIAL_TOKENS)



def special_ids(tok: Tokenizer, *, source: str = "tokenizer") -> SpecialIds:
    """The special token ids, checked to sit right after the base vocabulary in order."""
    ids = [tok.token_to_id(t) for t in SPECIAL_TOKENS]
    missing = [t for t, i in zip(SPECIAL_TOKENS, ids) if i is None]
    if missing:
        raise GptpipeError(f"{source}: missing special tokens {', '.join(missing)}")
    base = ids[0]
    if ids != list(range(base, base + len(SPECIAL_TOKENS))) or tok.get_vocab_size() != base + len(
        SPECIAL_TOKENS
    ):
        raise GptpipeError(
            f"{source}: special tokens must be the last {len(SPECIAL_TOKENS)} ids in the order "
            f"{', '.join(SPECIAL_TOKENS)}; found ids {ids} in a vocabulary of {tok.get_vocab_size()}"
        )
    return SpecialIds(*ids, base_vocab=base)



def load(path: str | Path) -> tuple[Tokenizer, SpecialIds]:
    """Load a `tokenizer.json` written by `bpe` (or `import-hf`) and check its special tokens."""
    path = Path(path)
    if not path.is_file():
        raise GptpipeError(f"{path}: tokenizer file not found")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception subclasses for bad JSON
        raise GptpipeError(f"{path}: not a valid tokenizer.json: {exc}".splitlines()[0]) from None
    return tok, special_ids(tok, source=str(path))


def save(tok: Tokenizer, path: str | Path) -> None:
    """Write `tokenizer.json` atomically (tokenizers' own `save` is not)."""
    write_text(path, json.dumps(json.loads(tok.to_str()), ensure_ascii=False, indent=1) + "\n")

"""The BPE tokenizer (HF `tokenizers`): training, loading, and the special tokens the tasks need.

Vocabulary layout, as in GPT-1 (where start = 40478, delimiter = 40479, classify = 40480):

    ids 0 .. V-1   the base vocabulary learned by BPE (`bpe.vocab_size` = V)
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

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from .atomic import write_text
from .config import BpeConfig
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


def _new_tokenizer(style: str) -> Tokenizer:
    if style == "gpt1":
        tok = Tokenizer(models.BPE(unk_token=UNK, end_of_word_suffix=END_OF_WORD))
        # The original ran ftfy + spaCy and lowercased; NFKC + lowercase + a split on
        # whitespace and punctuation is the closest dependency-free equivalent.
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.BPEDecoder(suffix=END_OF_WORD)
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    return tok


def _trainer(cfg: BpeConfig) -> trainers.BpeTrainer:
    if cfg.style == "gpt1":
        return trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=[UNK],
            limit_alphabet=cfg.limit_alphabet,
            end_of_word_suffix=END_OF_WORD,
            show_progress=False,
        )
    return trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )


def train(texts: Iterable[str], cfg: BpeConfig, *, source: str = "corpus") -> Tokenizer:
    """Train on `texts` (an iterator of documents) and append the special tokens after V.

    Raises GptpipeError if the corpus is empty or too small to learn `cfg.vocab_size` tokens,
    because the special tokens must land at their fixed ids.
    """
    counted = _CountingIter(texts)
    tok = _new_tokenizer(cfg.style)
    tok.train_from_iterator(counted, trainer=_trainer(cfg))
    if counted.chars == 0:
        raise GptpipeError(f"{source}: empty corpus: no text to train the tokenizer on")
    learned = tok.get_vocab_size()
    if learned != cfg.vocab_size:
        raise GptpipeError(
            f"{source}: corpus too small for bpe.vocab_size={cfg.vocab_size}: BPE learned only "
            f"{learned} tokens from {counted.docs} documents ({counted.chars} characters); "
            "lower bpe.vocab_size or add text"
        )
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    special_ids(tok)  # checks the layout
    return tok


class _CountingIter:
    """Passes documents through while counting them, to tell an empty corpus apart."""

    def __init__(self, texts: Iterable[str]) -> None:
        self._it = iter(texts)
        self.docs = 0
        self.chars = 0

    def __iter__(self) -> Iterator[str]:
        for text in self._it:
            self.docs += 1
            self.chars += len(text)
            yield text


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


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(tok: Tokenizer, cfg: BpeConfig) -> dict:
    """Figures saved beside the tokenizer (`bpe.json`)."""
    ids = special_ids(tok)
    return {
        "style": cfg.style,
        "base_vocab": ids.base_vocab,
        "vocab_size": ids.vocab_size,
        "special_tokens": {t: tok.token_to_id(t) for t in SPECIAL_TOKENS},
    }


def save(tok: Tokenizer, path: str | Path) -> None:
    """Write `tokenizer.json` atomically (tokenizers' own `save` is not)."""
    write_text(path, json.dumps(json.loads(tok.to_str()), ensure_ascii=False, indent=1) + "\n")

"""Training the BPE tokenizer (HF `tokenizers`) and saving it with the special tokens after the
learned vocabulary (layout and styles: `gptpipe.vocab`)."""

from __future__ import annotations

from typing import Iterable, Iterator

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)

from ..config import BpeConfig
from ..errors import GptpipeError
from ..vocab import END_OF_WORD, SPECIAL_TOKENS, UNK, special_ids


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


def describe(tok: Tokenizer, cfg: BpeConfig) -> dict:
    """Figures saved beside the tokenizer (`bpe.json`)."""
    ids = special_ids(tok)
    return {
        "style": cfg.style,
        "base_vocab": ids.base_vocab,
        "vocab_size": ids.vocab_size,
        "special_tokens": {t: tok.token_to_id(t) for t in SPECIAL_TOKENS},
    }

"""Training the BPE tokenizer (HF `tokenizers`) and saving it with the special tokens after the
learned vocabulary (layout and styles: `gptpipe.vocab`).

The gpt1 style reads the text twice. HF's trainer keeps the `limit_alphabet` most frequent
characters but breaks ties in hash order, so the alphabet (and every id after it) would change
from run to run; a first pass counts the characters and picks them deterministically. With
`exact_merges` it then learns a few merges too many (its target counts the symbols, unknown
until it has read the text) and keeps the first vocab_size - 478: BPE's merges come in a fixed
order, so these are the merges a run stopping there would learn.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Iterable, Iterator

from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)

from ..config import GPT1_SYMBOLS, BpeConfig
from ..errors import GptpipeError
from ..vocab import END_OF_WORD, SPECIAL_TOKENS, UNK, special_ids


def _new_tokenizer(style: str) -> Tokenizer:
    if style == "gpt1":
        tok = Tokenizer(models.BPE(unk_token=UNK, end_of_word_suffix=END_OF_WORD))
        # The original ran ftfy + spaCy and lowercased; NFKC + lowercase + a split on
        # whitespace and punctuation (BERT's rules) is the closest dependency-free equivalent.
        # Like the original's text_standardize, a line break (with the blanks around it) is a
        # word of its own, `\n</w>`, so paragraph breaks survive; other whitespace separates.
        tok.normalizer = normalizers.Sequence([
            normalizers.NFKC(), normalizers.Lowercase(),
            normalizers.Replace(Regex(r"\s*\n\s*"), NEWLINE)])
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"[^\S\n]+"), "removed"),
            pre_tokenizers.Split(NEWLINE, "isolated"),
            pre_tokenizers.Punctuation("isolated")])
        tok.decoder = decoders.BPEDecoder(suffix=END_OF_WORD)
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    return tok


NEWLINE = "\n"  # a word of its own in the gpt1 style; only ever a whole word: `\n</w>`

# What Rust's `char::is_whitespace` (BERT's pre-tokenizer) drops: Unicode's White_Space.
WHITESPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
                       + "".join(map(chr, range(0x2000, 0x200B))))


def alphabet(texts: Iterable[str], tok: Tokenizer, limit: int) -> list[str]:
    """The `limit` most frequent characters of the normalised text (whitespace aside), ties
    by code point: what HF's trainer counts, chosen the same way every time."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(tok.normalizer.normalize_str(text))
    for char in WHITESPACE & counts.keys():
        del counts[char]
    return sorted(counts, key=lambda c: (-counts[c], c))[:limit]


def _trainer(cfg: BpeConfig, chars: list[str] | None = None) -> trainers.BpeTrainer:
    if cfg.style == "gpt1":
        chars = chars or []
        # Every character's word-final form, passed as a special token so that it has its id
        # before training: HF would number those it meets in hash order, and break ties between
        # merges of equal count by those ids (`_gpt1_vocab` makes them plain tokens again).
        # The line break is a symbol only in its word-final form: it joins the alphabet while
        # training (one symbol more, `_gpt1_vocab` drops its bare form), whatever the text.
        finals = [c + END_OF_WORD for c in [*chars, NEWLINE]]
        target = (2 + 2 * len(chars) + merges_wanted(cfg) if cfg.exact_merges
                  else cfg.vocab_size) + 1
        return trainers.BpeTrainer(
            vocab_size=target,
            min_frequency=cfg.min_frequency,
            special_tokens=[UNK, *finals],
            limit_alphabet=len(chars) + 1,
            initial_alphabet=[*chars, NEWLINE],
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
    """Train on `texts` (documents; re-iterable for the gpt1 style, which reads them twice)
    and append the special tokens after the base vocabulary.

    Raises GptpipeError if the corpus is empty or too small to learn `cfg.vocab_size` tokens
    (gpt1 style with `exact_merges`: vocab_size - 478 merges), because the special tokens must
    land at their fixed ids.
    """
    counted = _CountingIter(texts)
    tok = _new_tokenizer(cfg.style)
    chars = None
    if cfg.style == "gpt1":
        if iter(texts) is texts:
            raise TypeError("the gpt1 style reads the texts twice: pass a list or another "
                            "re-iterable collection, not an iterator")
        chars = alphabet(texts, tok, cfg.limit_alphabet)
    tok.train_from_iterator(counted, trainer=_trainer(cfg, chars))
    if counted.chars == 0:
        raise GptpipeError(f"{source}: empty corpus: no text to train the tokenizer on")
    if cfg.style == "gpt1":
        tok = _gpt1_vocab(tok, merges_wanted(cfg) if cfg.exact_merges else None, source, counted)
    if not (cfg.style == "gpt1" and cfg.exact_merges) and tok.get_vocab_size() != cfg.vocab_size:
        learned = tok.get_vocab_size()
        raise GptpipeError(
            f"{source}: corpus too small for bpe.vocab_size={cfg.vocab_size}: BPE learned only "
            f"{learned} tokens from {counted.docs} documents ({counted.chars} characters); "
            "lower bpe.vocab_size or add text"
        )
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    special_ids(tok)  # checks the layout
    return tok


def merges_wanted(cfg: BpeConfig) -> int:
    """Merges of the gpt1 style with `exact_merges`: vocab_size - 478 (GPT-1: 40,000)."""
    return cfg.vocab_size - GPT1_SYMBOLS


def _gpt1_vocab(tok: Tokenizer, n: int | None, source: str, counted: _CountingIter
                ) -> Tokenizer:
    """`tok` with its symbols in a fixed order and, if `n` is not None, cut back to its first
    `n` merges and the tokens those and the symbols hold.

    The word-final symbols (`x</w>`), special tokens while training (`_trainer`), become
    plain ones, numbered by character after <unk> and the characters. Merged tokens get
    ids in the order they are made, so the kept ones are a prefix of the ids: up to the last
    token the n-th merge made (a merge may remake a token that is already there).
    """
    spec = json.loads(tok.to_str())
    model = spec["model"]
    merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
    vocab = model["vocab"]
    symbols = vocab["".join(merges[0])] if merges else len(vocab)  # the first merge's new id
    # The bare line break (never a piece: its word is itself) goes; merged tokens move down.
    vocab.pop(NEWLINE, None)
    order = sorted((t for t, i in vocab.items() if i < symbols),
                   key=lambda t: (t != UNK, t.endswith(END_OF_WORD) and t != END_OF_WORD, t))
    shift = symbols - len(order)
    vocab.update({t: i - shift for t, i in vocab.items() if i >= symbols})
    vocab.update({t: i for i, t in enumerate(order)})
    symbols = len(order)
    spec["added_tokens"] = [a for a in spec["added_tokens"] if a["content"] == UNK]
    spec["added_tokens"][0]["id"] = 0
    if n is None:
        return Tokenizer.from_str(json.dumps(spec))
    if len(merges) < n:
        raise GptpipeError(
            f"{source}: corpus too small for {n} merges (bpe.vocab_size={n + GPT1_SYMBOLS} - "
            f"{GPT1_SYMBOLS}): BPE learned only {len(merges)} from {counted.docs} documents "
            f"({counted.chars} characters); lower bpe.vocab_size or min_frequency, or add text")
    keep = max([symbols, *(vocab["".join(m)] + 1 for m in merges[:n])])
    model["vocab"] = {t: i for t, i in vocab.items() if i < keep}
    model["merges"] = merges[:n]
    return Tokenizer.from_str(json.dumps(spec))


def merge_count(tok: Tokenizer) -> int:
    return len(json.loads(tok.to_str())["model"]["merges"])


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
        "merges": merge_count(tok),  # gpt1 style with exact_merges: vocab_size - 478
        "base_vocab": ids.base_vocab,
        "vocab_size": ids.vocab_size,
        "special_tokens": {t: tok.token_to_id(t) for t in SPECIAL_TOKENS},
    }

"""The text BPE trains on: the train split of every part, or with `bpe.max_chars` a sample of it.

The sample is the articles whose page-id hash ranks lowest, as many as fit in `max_chars`
characters. It is deterministic, spread evenly over every part (parts hold ranges of page ids,
so a prefix of the text would be the oldest articles only), and an article's place in it does
not depend on which part holds it. Finding the cut reads only the `id`, `n_chars` and `split`
columns (a few bytes per article); the text is then read once, as without a sample.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ..errors import GptpipeError
from ..ingest.corpus import iter_articles, part_files

_SALT = b"gptpipe-bpe-sample:"
_COLUMNS = ["id", "n_chars", "split"]


def rank(page_id: int) -> int:
    """The page's place in the sampling order: a keyed 64-bit hash of its id."""
    return int.from_bytes(hashlib.blake2b(_SALT + b"%d" % page_id, digest_size=8).digest(), "big")


@dataclass(frozen=True)
class Plan:
    """Which train articles BPE reads: those with `rank(id) <= max_rank` (None: all, the split
    being no larger than `bpe.max_chars`)."""

    max_rank: int | None
    chars: int  # characters of the articles read
    articles: int
    total_chars: int  # of the whole train split
    total_articles: int


def plan(dirs: Sequence[str | Path], max_chars: int) -> Plan | None:
    """The sample of at most `max_chars` characters; None for 0 (all, without reading the
    sizes first). A split no larger than `max_chars` is read whole (`max_rank` None)."""
    if max_chars <= 0:
        return None
    ids, chars = _train_sizes(dirs)
    total = int(chars.sum())
    if total <= max_chars:
        return Plan(None, total, len(ids), total, len(ids))
    ranks = np.fromiter((rank(int(i)) for i in ids), dtype=np.uint64, count=len(ids))
    order = np.argsort(ranks, kind="stable")
    taken = int(np.searchsorted(np.cumsum(chars[order]), max_chars, side="right"))
    if taken == 0:
        where = ", ".join(str(d) for d in dirs)
        raise GptpipeError(f"{where}: no article fits in bpe.max_chars={max_chars} (the first "
                           f"in the sampling order has {int(chars[order[0]])} characters)")
    return Plan(int(ranks[order[taken - 1]]), int(chars[order[:taken]].sum()), taken, total,
                len(ids))


def texts(dirs: Sequence[str | Path], p: Plan | None) -> Iterator[str]:
    """The train split's texts in `iter_articles` order, those of the sample `p` only."""
    for page_id, text in iter_articles(dirs, split="train"):
        if p is None or p.max_rank is None or rank(page_id) <= p.max_rank:
            yield text


def _train_sizes(dirs: Sequence[str | Path]) -> tuple[np.ndarray, np.ndarray]:
    """(page ids, characters) of the train split, each page id once (its first part wins, as
    in `iter_articles`)."""
    ids: list[np.ndarray] = []
    chars: list[np.ndarray] = []
    for path in part_files(dirs):
        try:
            pf = pq.ParquetFile(path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise GptpipeError(f"{path}: not a readable Parquet file: {exc}") from None
        missing = [c for c in _COLUMNS if c not in pf.schema_arrow.names]
        if missing:
            raise GptpipeError(f"{path}: missing columns {', '.join(missing)}")
        table = pf.read(columns=_COLUMNS)
        train = np.asarray(table["split"].to_numpy(zero_copy_only=False) == "train")
        ids.append(table["id"].to_numpy()[train])
        chars.append(table["n_chars"].to_numpy()[train])
    all_ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
    all_chars = np.concatenate(chars) if chars else np.empty(0, np.int64)
    _, first = np.unique(all_ids, return_index=True)
    first.sort()
    return all_ids[first], all_chars[first].astype(np.int64)

"""What pre-training reads from the shards: batch streams per slot, validation batches, the
bytes each token stands for, and the unigram baseline.

The shard format lives in `gptpipe/shard/reader.py` and the loader (the data order) in
`loader.py` beside this module; this one only adapts them to the trainer (the slot layout of
`RunShape`, devices).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tokenizers import Tokenizer

from .. import vocab
from ..errors import GptpipeError
from ..io import file_sha256, json_digest
from ..shard import reader
from .distributed import DistEnv
from .loader import ShardLoader
from .schedule import RunShape

log = logging.getLogger(__name__)

UNIGRAM_MAX_TOKENS = 100_000_000  # train tokens counted for the baseline: plenty for 40k types


@dataclass(frozen=True)
class DataInfo:
    """The shards and the tokenizer, checked to belong together."""

    manifest: reader.Manifest
    tokenizer: Tokenizer
    vocab_size: int  # embedding rows: base vocabulary + special tokens
    context: int  # tokens per training sequence (windows hold context + 1)


def open_data(shard_dir: Path, tokenizer_path: Path) -> DataInfo:
    """Read the manifest and the tokenizer; GptpipeError when they do not belong together."""
    manifest = reader.read_manifest(shard_dir)
    tok, ids = vocab.load(tokenizer_path)
    reader.check_compatible(manifest, tokenizer_sha256=file_sha256(tokenizer_path),
                            vocab_size=ids.vocab_size)
    for split in ("train", "val"):
        if not sum(n for _, n in manifest.shards(split)):
            raise GptpipeError(f"{manifest.path}: the {split} split has no windows")
    return DataInfo(manifest, tok, ids.vocab_size, int(manifest.data["context"]))


def isolated(batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`batches`, without its start drawing from torch's global RNG: a DataLoader takes a base
    seed from it for every new iterator, which would shift a resumed run's dropout masks."""
    with torch.random.fork_rng(devices=[]):
        first = next(batches, None)
    if first is None:
        return
    yield first
    yield from batches


def data_fingerprint(info: DataInfo) -> str:
    """sha256 over what the shards hold (each shard's name, samples and sha256; context, dtype,
    tokenizer), not over the manifest file, whose timings change when `shard` reruns."""
    m = info.manifest.data
    keys = ("format", "context", "window", "dtype", "vocab_size", "tokenizer_sha256", "eod_id")
    content = {k: m.get(k) for k in keys} | {
        split: [(s["name"], s["samples"], s.get("sha256")) for s in m["splits"][split]["shards"]]
        for split in ("train", "val")
    }
    return json_digest(content)


class SlotStream:
    """Endless (x, y) batches of one slot, `batch` sequences per update, epoch after epoch: the
    slot is a loader "rank" among `n_slots`, so slots read disjoint shards (or disjoint samples
    of few shards)."""

    def __init__(self, info: DataInfo, slot: int, n_slots: int, batch: int, seed: int,
                 shuffle_buffer: int, device: torch.device) -> None:
        self.loader = ShardLoader(info.manifest, "train", batch, rank=slot,
                                  world_size=n_slots, seed=seed, shuffle_buffer=shuffle_buffer,
                                  pin_memory=device.type == "cuda")
        self._it: Iterator | None = None

    def __iter__(self) -> "SlotStream":
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._it is None:
            self._it = isolated(self.loader.iter_batches(None))
        return next(self._it)

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state)
        self._it = None


def train_stream(info: DataInfo, slot: int, shape: RunShape, seed: int, shuffle_buffer: int,
                 device: torch.device) -> SlotStream:
    return SlotStream(info, slot, shape.slots, shape.seqs_per_slot, seed, shuffle_buffer, device)


def val_batches(info: DataInfo, batch_size: int, env: DistEnv, max_tokens: int = 0
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This process's share of the first `max_tokens` target tokens of the val split (0: all),
    in manifest order: window g goes to process g mod world_size, so every validation scores
    the same windows whatever the number of processes (ranks may get unequal counts: the
    results are summed once at the end, with no per-batch collective to keep in step)."""
    limit = -(-max_tokens // info.context) if max_tokens else None  # windows
    taken = 0
    for windows in split_windows(info, "val"):
        if limit is not None:
            windows = windows[: limit - taken]
        mine = windows[(env.rank - taken) % env.world_size:: env.world_size]
        taken += len(windows)
        for i in range(0, len(mine), batch_size):
            w = torch.from_numpy(mine[i: i + batch_size].astype(np.int64))
            yield w[:, :-1], w[:, 1:]
        if limit is not None and taken >= limit:
            return


def token_bytes(tok: Tokenizer) -> torch.Tensor:
    """UTF-8 bytes of text each token id stands for (special tokens: 0), as a LongTensor.

    Byte-level BPE: one character of a token is one byte. The `</w>` style: the characters'
    UTF-8 bytes, plus one for the space a word end stands for. Other tokenizers: the bytes of
    the token decoded alone.
    """
    spec = json.loads(tok.to_str())
    decoder = (spec.get("decoder") or {}).get("type")
    suffix = (spec.get("model") or {}).get("end_of_word_suffix") or ""
    special = {t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
    out = np.zeros(tok.get_vocab_size(), dtype=np.int64)
    for token, i in tok.get_vocab().items():
        if i in special:
            continue
        if decoder == "ByteLevel":
            out[i] = len(token)
        elif suffix and token.endswith(suffix):
            out[i] = len(token[: -len(suffix)].encode("utf-8")) + 1
        elif suffix:
            out[i] = len(token.encode("utf-8"))
        else:
            out[i] = len(tok.decode([i]).encode("utf-8"))
    return torch.from_numpy(out)


def split_windows(info: DataInfo, split: str, max_tokens: int = 0) -> Iterator[np.ndarray]:
    """Every window (n, context + 1) of a split, shard by shard, until ~`max_tokens` (0: all)."""
    seen = 0
    for path, n in info.manifest.shards(split):
        w = reader.read_shard(path, info.manifest.window, info.manifest.dtype, n)
        yield w
        seen += w.size
        if max_tokens and seen >= max_tokens:
            return


def unigram_baseline(info: DataInfo) -> float:
    """Cross-entropy (nats per token) of the train split's add-one-smoothed unigram
    distribution on the val targets: what a model that ignores context achieves."""
    counts = np.ones(info.vocab_size, dtype=np.float64)  # add-one (Laplace) smoothing
    for w in split_windows(info, "train", UNIGRAM_MAX_TOKENS):
        counts += np.bincount(w.ravel(), minlength=info.vocab_size)[: info.vocab_size]
    logp = np.log(counts / counts.sum())
    nats, n = 0.0, 0
    for w in split_windows(info, "val"):
        targets = w[:, 1:].ravel()  # what the model is scored on
        nats -= float(logp[targets].sum())
        n += targets.size
    return nats / n

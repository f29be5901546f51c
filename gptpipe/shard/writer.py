"""Encoding documents into token windows and writing them as shards (the format: `reader`).

Tar members carry fixed metadata (mtime 0, uid/gid 0, mode 0644, no user names), so equal inputs
give byte-identical shards however many processes encoded them.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import hashlib
import multiprocessing
import os
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from tokenizers import Tokenizer

from ..errors import GptpipeError
from .reader import TAR_BLOCK, member_suffix

_RECORD = 10_240  # tar's default record size; GNU tar and Python pad archives to it


def auto_processes() -> int:
    """Encoding processes for `shard.processes: 0`: one per available core, but 1 on machines
    with two or fewer cores.

    On 2 cores, encoding in this process with the tokenizer's own threads beat a pool of 2 in
    8 of 9 interleaved runs (about 1.1x: same CPU per token, no spawn cost). With more cores
    the pool should win, as it also runs the per-token Python work in parallel."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 1 if (cores or 1) <= 2 else cores


def make_tokenizer(path: str | Path) -> Tokenizer:
    """A tokenizer for corpus text: special-token strings in the text encode as plain text."""
    tok = Tokenizer.from_file(str(path))
    # An article quoting "<|endoftext|>" must not inject the real separator into the stream.
    tok.encode_special_tokens = True
    return tok


def encode_documents(tok: Tokenizer, texts: list[str], eod: int, dtype: np.dtype) -> np.ndarray:
    """The ids of `texts` concatenated, each document followed by `eod` (1-D, tokens)."""
    flat: list[int] = []
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        flat += enc.ids
        flat.append(eod)
    return np.array(flat, dtype=dtype)


_WORKER: dict[str, Any] = {}  # per pool process: its tokenizer, set once by `_init_worker`


def _init_worker(tokenizer_path: str) -> None:
    # One process per core already: the library's own threads would only oversubscribe.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER["tok"] = make_tokenizer(tokenizer_path)


def _encode_in_worker(texts: list[str], eod: int, dtype: str) -> np.ndarray:
    return encode_documents(_WORKER["tok"], texts, eod, np.dtype(dtype))


def _document_batches(texts: Iterable[str], max_chars: int) -> Iterator[list[str]]:
    batch: list[str] = []
    chars = 0
    for text in texts:
        batch.append(text)
        chars += len(text)
        if chars >= max_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


class Encoder:
    """Encodes documents in order with `processes` worker processes (1: in this process).

    Batches of about `batch_chars` characters go to the pool with at most two per process in
    flight, so memory stays bounded however large the corpus; results come back in submission
    order, so the stream does not depend on the number of processes. Use as a context manager.
    """

    def __init__(self, tokenizer_path: str | Path, eod: int, dtype: np.dtype, processes: int,
                 batch_chars: int = 1 << 18) -> None:
        self.eod = eod
        self.dtype = np.dtype(dtype)
        self.processes = processes
        self.batch_chars = batch_chars
        self._tok = make_tokenizer(tokenizer_path) if processes <= 1 else None
        # spawn, not fork: the parent may already run pyarrow's and tokenizers' thread pools.
        # Workers get the path, not the JSON (megabytes at 40k merges), to start quickly.
        self._pool = None if processes <= 1 else cf.ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(str(tokenizer_path),),
        )

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def encode(self, texts: Iterable[str]) -> Iterator[tuple[int, np.ndarray]]:
        """Yield `(documents, tokens)` per batch, in document order."""
        batches = _document_batches(texts, self.batch_chars)
        if self._pool is None:
            for batch in batches:
                yield len(batch), encode_documents(self._tok, batch, self.eod, self.dtype)
            return
        pending: collections.deque = collections.deque()
        try:
            for batch in batches:
                pending.append((len(batch), self._pool.submit(
                    _encode_in_worker, batch, self.eod, self.dtype.str)))
                if len(pending) >= 2 * self.processes:
                    n, fut = pending.popleft()
                    yield n, fut.result()
            while pending:
                n, fut = pending.popleft()
                yield n, fut.result()
        except BrokenProcessPool:
            raise GptpipeError("an encoding process died (killed, or out of memory?)") from None


class WindowPacker:
    """Cuts a token stream, fed in pieces of any length, into windows of `window` tokens."""

    def __init__(self, window: int, dtype: np.dtype) -> None:
        self.window = window
        self._rest = np.empty(0, dtype=dtype)

    def add(self, tokens: np.ndarray) -> np.ndarray:
        """The windows completed by `tokens`: shape (n, window); the remainder is kept."""
        buf = np.concatenate([self._rest, tokens]) if len(self._rest) else tokens
        n = len(buf) // self.window
        self._rest = buf[n * self.window:].copy()
        return buf[: n * self.window].reshape(n, self.window)

    @property
    def rest(self) -> int:
        """Tokens waiting for a full window (at the end: the dropped tail)."""
        return len(self._rest)


def ustar_header(name: str, size: int) -> bytes:
    """A POSIX ustar header for a regular file with fixed metadata (mode 0644, mtime 0, uid 0).

    Byte-identical to `tarfile.TarInfo(name).tobuf(USTAR_FORMAT)` with those fields, and about
    ten times faster, which matters at one header per sample.
    """
    raw = name.encode("ascii")
    if len(raw) > 100:
        raise ValueError(f"tar member name longer than 100 bytes: {name}")
    header = b"".join((
        raw.ljust(100, b"\0"), b"0000644\0", b"0000000\0", b"0000000\0",
        b"%011o\0" % size, b"00000000000\0", b" " * 8, b"0", b"\0" * 100,
        b"ustar\x0000", b"\0" * 247,  # user/group names, device numbers (unused), prefix
    ))
    return header[:148] + b"%06o\0" % sum(header) + header[155:]


def tar_bytes(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A whole uncompressed tar archive holding `(name, data)` members in order."""
    parts: list[bytes] = []
    for name, data in members:
        parts += (ustar_header(name, len(data)), data, b"\0" * (-len(data) % TAR_BLOCK))
    parts.append(b"\0" * (2 * TAR_BLOCK))  # end-of-archive marker
    size = sum(map(len, parts))
    parts.append(b"\0" * (-size % _RECORD))
    return b"".join(parts)


def write_shard(path: Path, windows: np.ndarray) -> dict:
    """Write one shard of `windows` (n, window) to `path`; its manifest entry."""
    key = path.name.removesuffix(".tar")
    suffix = member_suffix(windows.dtype)
    blob = tar_bytes((f"{key}-{i:06d}.{suffix}", row.tobytes()) for i, row in enumerate(windows))
    path.write_bytes(blob)
    return {"name": path.name, "samples": len(windows), "tokens": int(windows.size),
            "sha256": hashlib.sha256(blob).hexdigest()}


class ShardWriter:
    """Collects windows and writes `{split}-NNNNNN.tar` every `samples_per_shard` of them."""

    def __init__(self, out_dir: Path, split: str, samples_per_shard: int) -> None:
        self.out_dir = out_dir
        self.split = split
        self.samples_per_shard = samples_per_shard
        self.shards: list[dict] = []
        self._held: list[np.ndarray] = []
        self._count = 0

    def add(self, windows: np.ndarray) -> None:
        if len(windows):
            self._held.append(windows)
            self._count += len(windows)
        while self._count >= self.samples_per_shard:
            held = np.concatenate(self._held)
            self._flush(held[: self.samples_per_shard])
            rest = held[self.samples_per_shard:]
            self._held, self._count = ([rest] if len(rest) else []), len(rest)

    def close(self) -> list[dict]:
        """Write the last, partial shard; the manifest entries of all shards."""
        if self._count:
            self._flush(np.concatenate(self._held))
            self._held, self._count = [], 0
        return self.shards

    def _flush(self, windows: np.ndarray) -> None:
        name = f"{self.split}-{len(self.shards):06d}.tar"
        self.shards.append(write_shard(self.out_dir / name, windows))


def write_split(encoder: Encoder, texts: Iterable[str], split: str, out_dir: Path,
                context: int, samples_per_shard: int, *, source: str) -> dict:
    """Encode, pack and write one split; its manifest entry.

    Raises GptpipeError naming `source` when the split has no documents or too few tokens for
    one window: pre-training needs both training and validation windows.
    """
    window = context + 1
    packer = WindowPacker(window, encoder.dtype)
    writer = ShardWriter(out_dir, split, samples_per_shard)
    documents = 0
    for n, tokens in encoder.encode(texts):
        documents += n
        writer.add(packer.add(tokens))
    shards = writer.close()
    if documents == 0:
        raise GptpipeError(f"{source}: no articles in split {split!r}")
    samples = sum(s["samples"] for s in shards)
    if samples == 0:
        raise GptpipeError(
            f"{source}: split {split!r} has only {packer.rest} tokens in {documents} documents, "
            f"fewer than one window of {window} (context {context} + 1); pre-training needs "
            f"{split} windows: add text, raise ingest.val_fraction or lower shard.context"
        )
    return {"shards": shards, "samples": samples, "tokens": samples * window,
            "documents": documents, "dropped_tail_tokens": packer.rest}

"""Token windows in WebDataset tar shards: encode, pack, write, and read back.

A shard folder (the `shard` stage's output):

    manifest.json          format, context, dtype, tokenizer sha256, per-shard samples and sha256
    val-000000.tar ...     WebDataset shards; sample `val-000000-000017` has one member,
    train-000000.tar ...   `tokens.u16` (`.u32` for vocabularies over 65,536): context + 1
                           little-endian token ids

Each split is one token stream: its documents in `iter_articles` order, each followed by the
end-of-document token, cut into non-overlapping windows of `context + 1` tokens (the model reads
window[:-1] and predicts window[1:]). The tail shorter than a window is dropped and counted.
Tar members carry fixed metadata (mtime 0, uid/gid 0, mode 0644, no user names), so equal inputs
give byte-identical shards however many processes encoded them.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
from tokenizers import Tokenizer

from .errors import GptpipeError

FORMAT = "gptpipe-shards/1"
MANIFEST_NAME = "manifest.json"
_BLOCK = 512  # tar block: every header and every payload (padded) fills whole blocks
_RECORD = 10_240  # tar's default record size; GNU tar and Python pad archives to it


def token_dtype(vocab_size: int) -> np.dtype:
    """Little-endian uint16 when every id fits (vocab_size <= 65,536), else uint32."""
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def member_suffix(dtype: np.dtype) -> str:
    """The WebDataset extension of a sample's tokens: `tokens.u16` or `tokens.u32`."""
    return f"tokens.u{np.dtype(dtype).itemsize * 8}"


def auto_processes() -> int:
    """Encoding processes for `shard.processes: 0`: one per available core, but 1 on machines
    with two or fewer cores.

    On 2 cores, encoding in this process with the tokenizer's own threads beat a pool of 2 in
    8 of 9 interleaved runs (about 1.1x: same CPU per token, no spawn cost). With more cores
    the pool should win, as it also runs the per-token Python work in parallel."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 1 if (cores or 1) <= 2 else cores


# --------------------------------------------------------------------------- encoding


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


# --------------------------------------------------------------------------- packing


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


# --------------------------------------------------------------------------- tar writing


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
        parts += (ustar_header(name, len(data)), data, b"\0" * (-len(data) % _BLOCK))
    parts.append(b"\0" * (2 * _BLOCK))  # end-of-archive marker
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


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Manifest:
    """A shard folder's `manifest.json`, checked on reading."""

    path: Path
    data: dict

    @property
    def dir(self) -> Path:
        return self.path.parent

    @property
    def window(self) -> int:
        return int(self.data["window"])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data["dtype"]).newbyteorder("<")

    def shards(self, split: str) -> list[tuple[Path, int]]:
        """`(path, samples)` of every shard of `split`, in manifest order."""
        if split not in self.data["splits"]:
            known = ", ".join(self.data["splits"])
            raise GptpipeError(f"{self.path}: no split {split!r} (has: {known})")
        return [(self.dir / s["name"], int(s["samples"]))
                for s in self.data["splits"][split]["shards"]]


_MANIFEST_KEYS = ("format", "context", "window", "dtype", "vocab_size", "tokenizer_sha256",
                  "eod_id", "splits")


def read_manifest(path: str | Path) -> Manifest:
    """Read and check `manifest.json` (`path` may be the file or its shard folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GptpipeError(f"{path}: shard manifest not found (not a `shard` output?)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise GptpipeError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise GptpipeError(f"{path}: format {found!r} is not {FORMAT!r}")
    missing = [k for k in _MANIFEST_KEYS if k not in data]
    if missing:
        raise GptpipeError(f"{path}: missing keys {', '.join(missing)}")
    if data["window"] != data["context"] + 1:
        raise GptpipeError(f"{path}: window {data['window']} != context {data['context']} + 1")
    return Manifest(path, data)


def check_compatible(manifest: Manifest | Mapping | str | Path, *,
                     tokenizer_sha256: str | None = None, vocab_size: int | None = None,
                     context: int | None = None, where: str | None = None) -> None:
    """Raise GptpipeError unless the shards fit the given tokenizer and model (None: not checked).

    `manifest` is a read `Manifest`, its plain dict (then `where` names it in messages), a
    shard folder or a manifest path. `vocab_size` and `context` must equal the manifest's: a
    smaller vocabulary would index past the embedding, another context would train on windows
    the model was not configured for.
    """
    if isinstance(manifest, (str, Path)):
        manifest = read_manifest(manifest)
    if isinstance(manifest, Manifest):
        data, where = manifest.data, where or str(manifest.path)
    else:
        data, where = manifest, where or "shard manifest"
    if data.get("format") != FORMAT:
        raise GptpipeError(f"{where}: format {data.get('format')!r} is not {FORMAT!r}")
    have = data.get("tokenizer_sha256", "")
    if tokenizer_sha256 is not None and tokenizer_sha256 != have:
        raise GptpipeError(
            f"{where}: shards made with another tokenizer (sha256 {have[:12]}..., this run "
            f"uses {tokenizer_sha256[:12]}...): rerun `shard` with this tokenizer"
        )
    if vocab_size is not None and vocab_size != data.get("vocab_size"):
        raise GptpipeError(
            f"{where}: shards hold ids of a {data.get('vocab_size')}-token vocabulary; the "
            f"model has {vocab_size}"
        )
    if context is not None and context != data.get("context"):
        raise GptpipeError(
            f"{where}: shards are cut for context {data.get('context')}; the model uses {context}"
        )


def verify_checksums(manifest: Manifest | str | Path) -> None:
    """Raise GptpipeError naming the first shard whose sha256 differs from the manifest's."""
    m = manifest if isinstance(manifest, Manifest) else read_manifest(manifest)
    for split in m.data["splits"].values():
        for entry in split["shards"]:
            path = m.dir / entry["name"]
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except FileNotFoundError:
                raise GptpipeError(f"{path}: shard listed in {m.path} is missing") from None
            if digest != entry["sha256"]:
                raise GptpipeError(f"{path}: sha256 {digest[:12]}... does not match the "
                                   f"manifest's {entry['sha256'][:12]}... (corrupted or replaced)")


def read_shard(path: str | Path, window: int, dtype: np.dtype,
               samples: int | None = None) -> np.ndarray:
    """All windows of one shard, in member order: shape (n, window).

    A direct header walk over the ustar layout the writer produces; it also reads shards
    rewritten by tar or `webdataset.TarWriter` (pax headers and other members are skipped).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GptpipeError(f"{path}: shard not found") from None
    dtype = np.dtype(dtype)
    suffix = ("." + member_suffix(dtype)).encode()
    nbytes = window * dtype.itemsize
    rows = [np.frombuffer(data, dtype, window, offset)
            for offset in _member_offsets(path, data, suffix, nbytes)]
    if samples is not None and len(rows) != samples:
        raise GptpipeError(f"{path}: {len(rows)} samples, the manifest says {samples}")
    return np.stack(rows) if rows else np.empty((0, window), dtype)


def _member_offsets(path: Path, data: bytes, suffix: bytes, nbytes: int) -> Iterator[int]:
    """Payload offsets of the members whose names end with `suffix`, checked to hold `nbytes`."""
    offset = 0
    while offset + _BLOCK <= len(data) and data[offset] != 0:
        header = data[offset: offset + _BLOCK]
        kind = header[156:157]
        if header[257:262] != b"ustar" or kind not in (b"0", b"\0", b"x", b"g"):
            raise GptpipeError(f"{path}: byte {offset}: not a ustar regular file or pax header "
                               "(shards hold token members only)")
        try:
            size = int(header[124:136].rstrip(b"\0 ") or b"0", 8)
        except ValueError:
            raise GptpipeError(f"{path}: byte {offset}: bad tar header (size field)") from None
        name = header[:100].rstrip(b"\0")
        if kind in (b"0", b"\0") and name.endswith(suffix):
            if size != nbytes:
                raise GptpipeError(f"{path}: member {name.decode(errors='replace')} at byte "
                                   f"{offset} holds {size} bytes, expected {nbytes}")
            if offset + _BLOCK + size > len(data):
                raise GptpipeError(f"{path}: truncated at member {name.decode(errors='replace')}")
            yield offset + _BLOCK
        offset += _BLOCK + size + (-size % _BLOCK)
    if offset + _BLOCK > len(data) and offset != len(data):
        raise GptpipeError(f"{path}: truncated tar (no end-of-archive marker)")


def __getattr__(name: str) -> Any:
    """`shards.Loader` / `shards.ShardLoader`: the loader lives in `loader.py` because it needs
    torch, which the encoding processes of the `shard` stage should not pay to import."""
    if name in ("Loader", "ShardLoader"):
        from .loader import ShardLoader

        return ShardLoader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

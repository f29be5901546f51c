"""The shard format, and reading it back: the manifest, its checks, and the windows of a shard.

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

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from ..errors import GptpipeError
from ..io import read_json

FORMAT = "gptpipe-shards/1"
MANIFEST_NAME = "manifest.json"
TAR_BLOCK = 512  # tar block: every header and every payload (padded) fills whole blocks


def token_dtype(vocab_size: int) -> np.dtype:
    """Little-endian uint16 when every id fits (vocab_size <= 65,536), else uint32."""
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def member_suffix(dtype: np.dtype) -> str:
    """The WebDataset extension of a sample's tokens: `tokens.u16` or `tokens.u32`."""
    return f"tokens.u{np.dtype(dtype).itemsize * 8}"


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
    data = read_json(path, missing="shard manifest not found (not a `shard` output?)", kind=object)
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
    while offset + TAR_BLOCK <= len(data) and data[offset] != 0:
        header = data[offset: offset + TAR_BLOCK]
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
            if offset + TAR_BLOCK + size > len(data):
                raise GptpipeError(f"{path}: truncated at member {name.decode(errors='replace')}")
            yield offset + TAR_BLOCK
        offset += TAR_BLOCK + size + (-size % TAR_BLOCK)
    if offset + TAR_BLOCK > len(data) and offset != len(data):
        raise GptpipeError(f"{path}: truncated tar (no end-of-archive marker)")

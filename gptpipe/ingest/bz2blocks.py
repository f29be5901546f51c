"""Decompressing a range of a bz2 file on its own: the blocks that start in it.

A bz2 stream is a 4-byte header (`BZh1`..`BZh9`) and a run of blocks, each opening with the
48-bit magic 0x314159265359 and its 32-bit CRC, then the 48-bit end magic 0x177245385090, the
stream's CRC (the block CRCs combined) and padding to a byte. Blocks are not byte-aligned but
each decodes on its own, so a worker process can take the blocks that start in its byte range,
wrap them into a stream of their own (header, blocks, end magic, combined CRC) and hand that to
libbz2. That makes a single-stream dump decompress in parallel, with no process shipping XML to
another.

Finding blocks means finding the magics, which can appear by chance in compressed data (about
once in 2^48 bit positions). A false one makes a block fail its CRC, and `check_marks` checks
that the marks found form exactly the streams of the file; callers fall back to a sequential
read on any failure, which also names what is wrong with a bad file.
"""

from __future__ import annotations

import bz2
from dataclasses import dataclass
from pathlib import Path

from ..errors import GptpipeError

BLOCK_MAGIC = 0x314159265359
END_MAGIC = 0x177245385090
_MAX_BLOCK_BYTES = 1 << 20  # a block's compressed size is under 900k + a little, at level 9


@dataclass(frozen=True)
class Marks:
    """The block starts and stream ends found in a byte range, as (bit offset, CRC) pairs."""

    blocks: list[tuple[int, int]]
    ends: list[tuple[int, int]]


def _find(data: bytes, magic: int, base_bit: int, lo: int, hi: int) -> list[int]:
    """Bit offsets (from `base_bit`, the bit of data[0]) of `magic` starting in bits [lo, hi)
    of `data`: for each of the 8 alignments, a byte search for the whole bytes it covers."""
    found = []
    for r in range(8):
        if r == 0:
            pattern, first = magic.to_bytes(6, "big"), 0
        else:
            pattern, first = ((magic >> r) & (1 << 40) - 1).to_bytes(5, "big"), 1
        stop = hi // 8 + first + len(pattern)  # the search ends with the range
        k = data.find(pattern, max(0, lo // 8 + first - 1), stop)
        while k >= 0:
            bit = 8 * (k - first) + r
            if lo <= bit < hi and _bits(data, bit, bit + 48) == magic:
                found.append(bit)
            k = data.find(pattern, k + 1, stop)
    return sorted(base_bit + b for b in found)


def _bits(data: bytes, start: int, end: int) -> int:
    """Bits [start, end) of `data` (bit 0: the top bit of data[0]) as an integer."""
    a, b = start // 8, (end + 7) // 8
    return (int.from_bytes(data[a:b], "big") >> (8 * b - end)) & ((1 << (end - start)) - 1)


def decode_range(path: Path, start: int, end: int) -> tuple[bytes, Marks]:
    """The XML of the blocks that start in compressed bytes [start, end) of `path`, and the
    marks found there; raises GptpipeError when they do not decode."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start + _MAX_BLOCK_BYTES + 16)
    base, own = 8 * start, 8 * (end - start)
    blocks = _find(data, BLOCK_MAGIC, base, 0, own)
    ends = _find(data, END_MAGIC, base, 0, own)
    owned = Marks(
        [(b, _bits(data, b - base + 48, b - base + 80)) for b in blocks],
        [(e, _bits(data, e - base + 48, e - base + 80)) for e in ends],
    )
    marks = sorted([(b, True) for b in blocks] + [(e, False) for e in ends])
    if marks and marks[-1][1]:  # the last block ends past our range, at the next mark
        marks.append((_next_mark(data, base, own, path), False))
    out, run = [], []
    for (bit, is_block), (nxt, nxt_is_block) in zip(marks, marks[1:]):
        if is_block:
            run.append(bit)
            if not nxt_is_block or nxt >= base + own:  # a stream's end, or our range's
                out.append(_decode_run(data, base, run, nxt, path))
                run = []
    return b"".join(out), owned


def _next_mark(data: bytes, base: int, lo: int, path: Path) -> int:
    while lo < 8 * len(data):
        hi = min(8 * len(data), lo + (1 << 20))
        found = _find(data, BLOCK_MAGIC, base, lo, hi) + _find(data, END_MAGIC, base, lo, hi)
        if found:
            return min(found)
        lo = hi
    raise GptpipeError(f"{path}: a bz2 block from before byte {(base + lo) // 8} has no end")


def _decode_run(data: bytes, base: int, starts: list[int], end: int, path: Path) -> bytes:
    crc = 0
    for s in starts:
        crc = (((crc << 1) | (crc >> 31)) & 0xFFFFFFFF) ^ _bits(data, s - base + 48, s - base + 80)
    nbits = end - starts[0] + 80
    body = (_bits(data, starts[0] - base, end - base) << 80) | (END_MAGIC << 32) | crc
    pad = -nbits % 8
    stream = b"BZh9" + (body << pad).to_bytes((nbits + pad) // 8, "big")
    try:
        return bz2.decompress(stream)
    except (OSError, EOFError, ValueError) as exc:
        raise GptpipeError(f"{path}: blocks from bit {starts[0]}: {exc}") from None


def check_marks(path: Path, size: int, marks: Marks) -> None:
    """Raise GptpipeError unless the marks are exactly the file's streams: each a header at a
    byte, its blocks, an end whose CRC combines theirs, and then the next header or the end."""
    events = sorted([(b, True, c) for b, c in marks.blocks]
                    + [(e, False, c) for e, c in marks.ends])
    with open(path, "rb") as f:
        pos, i = 0, 0
        while pos < size:
            f.seek(pos)
            head = f.read(4)
            if len(head) < 4 or head[:3] != b"BZh" or not 0x31 <= head[3] <= 0x39:
                raise GptpipeError(f"{path}: no bz2 stream header at byte {pos}")
            first, crc = 8 * pos + 32, 0
            while i < len(events) and events[i][1]:  # blocks: the first right after the header
                if events[i][0] < first or (first and events[i][0] != first):
                    raise GptpipeError(f"{path}: unexpected block at bit {events[i][0]}")
                crc = (((crc << 1) | (crc >> 31)) & 0xFFFFFFFF) ^ events[i][2]
                first, i = 0, i + 1
            if i == len(events) or events[i][2] != crc or (first and events[i][0] != first):
                raise GptpipeError(f"{path}: stream from byte {pos} has no matching end")
            pos, i = (events[i][0] + 80 + 7) // 8, i + 1
    if i != len(events):
        raise GptpipeError(f"{path}: marks past the last stream")

"""Decompressing byte ranges of a bz2 file on their own (`gptpipe.ingest.bz2blocks`)."""

from __future__ import annotations

import bz2
import random
from pathlib import Path

import pytest

from gptpipe.ingest.bz2blocks import Marks, check_marks, decode_range
from gptpipe.errors import GptpipeError


def _data(n: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    words = [bytes(rng.choices(b"abcdefghij <>/", k=rng.randint(1, 9))) for _ in range(500)]
    return b" ".join(rng.choice(words) for _ in range(n))


def _ranges(path: Path, cuts: list[int]) -> tuple[bytes, Marks]:
    xml, marks = [], Marks([], [])
    for start, end in zip(cuts, cuts[1:]):
        part, found = decode_range(path, start, end)
        xml.append(part)
        marks.blocks.extend(found.blocks)
        marks.ends.extend(found.ends)
    return b"".join(xml), marks


@pytest.mark.parametrize("streams", [1, 3])
def test_any_ranges_give_the_whole_file(tmp_path: Path, streams: int) -> None:
    parts = [_data(60_000, seed) for seed in range(streams)]  # ~4 blocks each at level 1
    path = tmp_path / "x.bz2"
    path.write_bytes(b"".join(bz2.compress(p, 1) for p in parts))
    size = path.stat().st_size
    rng = random.Random(1)
    for n in (1, 2, 7, 40):
        cuts = sorted({0, size, *rng.sample(range(1, size), n - 1)})
        xml, marks = _ranges(path, cuts)
        assert xml == b"".join(parts)
        check_marks(path, size, marks)
        assert len(marks.ends) == streams


def test_check_marks_refuses_what_is_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.bz2"
    path.write_bytes(bz2.compress(_data(60_000), 1) + b"garbage")
    size = path.stat().st_size
    _, marks = _ranges(path, [0, size])
    with pytest.raises(GptpipeError, match="no bz2 stream header at byte"):
        check_marks(path, size, marks)
    with pytest.raises(GptpipeError, match="has no matching end"):
        check_marks(path, size, Marks(marks.blocks[:-1], marks.ends))


def test_a_corrupt_block_fails(tmp_path: Path) -> None:
    data = bytearray(bz2.compress(_data(60_000), 1))
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "x.bz2"
    path.write_bytes(bytes(data))
    with pytest.raises(GptpipeError, match="blocks from bit"):
        _ranges(path, [0, len(data)])

"""Reading the articles `ingest` wrote: every part, one split, each page id once."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import pyarrow.parquet as pq

from ..errors import GptpipeError

COLUMNS = ("id", "title", "text", "split")


def part_files(dirs: Sequence[str | Path]) -> list[Path]:
    """The Parquet files of the given `ingest` outputs, in a stable order (part, then file)."""
    files: list[Path] = []
    for d in dirs:
        d = Path(d)
        found = sorted(d.glob("*.parquet"))
        if not found:
            raise GptpipeError(f"{d}: no Parquet files (is this an `ingest` output folder?)")
        files += found
    return files


def iter_articles(
    dirs: Sequence[str | Path], split: str | None = None, batch_rows: int = 1024
) -> Iterator[tuple[int, str]]:
    """Yield `(page_id, text)` for `split` ("train"/"val"; None: both).

    Parts are read in the order given and a page id seen in an earlier part is skipped: dumps
    overlap at their edges and a page must not land in two places (or in both splits).
    """
    seen: set[int] = set()
    for path in part_files(dirs):
        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:
            raise GptpipeError(f"{path}: not a readable Parquet file: {exc}") from None
        missing = [c for c in COLUMNS if c not in pf.schema_arrow.names]
        if missing:
            raise GptpipeError(f"{path}: missing columns {', '.join(missing)}")
        for batch in pf.iter_batches(batch_size=batch_rows, columns=list(COLUMNS)):
            cols = batch.to_pydict()
            for pid, text, sp in zip(cols["id"], cols["text"], cols["split"]):
                if pid in seen:
                    continue
                seen.add(pid)
                if split is None or sp == split:
                    yield pid, text

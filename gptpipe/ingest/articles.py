"""The articles `ingest` keeps: which pages, cleaned, in batches in dump order, and the Parquet
parts they go to.

`PartWriter` converts each batch to Arrow as it arrives and compresses a row group as soon as
~`ROW_GROUP_CHARS` of text are buffered, so the writing overlaps with the worker processes and
little of it is left for after the last page (`gptpipe.ingest.corpus` reads the parts row group
by row group; the rows are the same as with one row group per file).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import wiki
from .wikitext import is_disambiguation, is_redirect, to_prose

COLUMNS = ("ids", "titles", "texts", "n_chars", "splits")  # Batch attributes -> Parquet
ROW_GROUP_CHARS = 16 << 20  # prose characters per row group (~16 MB; the last part's may be less)


@dataclass
class Batch:
    """Kept articles (column lists) and counts of one run of pages, in dump order."""

    ids: list[int] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    n_chars: list[int] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    seen: int = 0
    dropped: Counter = field(default_factory=Counter)
    bad: list[tuple[str, str, str]] = field(default_factory=list)  # (id, title, why)
    page_ids: list[int | None] = field(default_factory=list)  # every page; None: bad id
    xml_bytes: int = 0
    out_bytes: int = 0  # UTF-8 bytes of the kept prose
    tail: bytes = b""  # XML after the last page (`</mediawiki>` at a dump's end)

    def add_counts(self, other: Batch) -> None:
        self.seen += other.seen
        self.dropped.update(other.dropped)
        self.bad.extend(other.bad)
        self.xml_bytes += other.xml_bytes
        self.out_bytes += other.out_bytes

    def extend(self, other: Batch) -> None:
        self.add_counts(other)
        for name in COLUMNS:
            getattr(self, name).extend(getattr(other, name))
        self.page_ids.extend(other.page_ids)
        self.tail = other.tail


def split_of(page_id: int, salt: str, val_fraction: float) -> str:
    """'val' for a stable `val_fraction` share of page ids, else 'train' (a keyed hash, so it
    does not depend on which dump part holds the page)."""
    digest = hashlib.blake2b(f"{salt}:{page_id}".encode(), digest_size=8).digest()
    return "val" if int.from_bytes(digest, "big") < val_fraction * 2**64 else "train"


@dataclass(frozen=True)
class Job:
    """What a worker needs besides the bytes (pickled with every work item; it is small)."""

    where: str  # names the file (and stream) in error messages
    min_chars: int
    val_fraction: float
    split_salt: str
    namespaces: dict[str, int] = field(default_factory=dict)


def process_block(job: Job, base: int, block: bytes) -> Batch:
    """Parse, filter and clean a run of whole pages starting at XML byte `base`."""
    pages, tail = wiki.split_pages(block, base, job.where)
    out = Batch(seen=len(pages), xml_bytes=len(block), tail=tail)
    for offset, data in pages:
        _add_page(wiki.parse_page(data, offset, job.where), job, out)
    return out


def _add_page(raw: wiki.RawPage, job: Job, out: Batch) -> None:
    if not (raw.id.isascii() and raw.id.isdigit()) or not raw.title:
        out.page_ids.append(None)
        out.bad.append((raw.id, raw.title, f"no valid page id/title (id {raw.id!r})"))
        out.dropped["bad_markup"] += 1
        return
    page_id = int(raw.id)
    out.page_ids.append(page_id)
    if raw.redirect or is_redirect(raw.text):  # first: a redirect in any namespace is one
        out.dropped["redirect"] += 1
    elif wiki.namespace_of(raw, job.namespaces) != 0:
        out.dropped["namespace"] += 1
    elif is_disambiguation(raw.title, raw.text):
        out.dropped["disambiguation"] += 1
    else:
        try:
            text = to_prose(raw.text)
        except Exception as exc:  # a converter bug must not hide behind one odd page
            out.bad.append((raw.id, raw.title, f"{type(exc).__name__}: {exc}"))
            out.dropped["bad_markup"] += 1
            return
        if len(text) < job.min_chars:
            out.dropped["too_short"] += 1
            return
        out.ids.append(page_id)
        out.titles.append(raw.title)
        out.texts.append(text)
        out.n_chars.append(len(text))
        out.splits.append(split_of(page_id, job.split_salt, job.val_fraction))
        out.out_bytes += len(text.encode("utf-8"))


class PartWriter:
    """Parquet files of `rows_per_file` articles each (part-00000.parquet, ...) and totals."""

    def __init__(self, folder: Path, rows_per_file: int) -> None:
        self.folder, self.rows_per_file = folder, rows_per_file
        self.files: list[str] = []
        self.total = Batch()  # counts only
        self.kept, self.chars, self.splits = 0, 0, Counter()
        self._tables: list = []  # Arrow tables of the row group being filled
        self._group_chars = 0
        self._part_rows = 0  # rows in the open part (written or buffered)
        self._part = None  # the open part's pyarrow.parquet.ParquetWriter

    def add(self, batch: Batch) -> None:
        self.total.add_counts(batch)
        self.kept += len(batch.ids)
        self.chars += sum(batch.n_chars)
        self.splits.update(batch.splits)
        start = 0
        while start < len(batch.ids):
            end = min(len(batch.ids), start + self.rows_per_file - self._part_rows)
            self._tables.append(_arrow_table(batch, start, end))
            self._group_chars += sum(batch.n_chars[start:end])
            self._part_rows += end - start
            start = end
            if self._part_rows == self.rows_per_file:
                self._end_part()
            elif self._group_chars >= ROW_GROUP_CHARS:
                self._write_group()

    def close(self) -> None:
        if self._part_rows:
            self._end_part()
        elif not self.files:  # an empty part keeps the schema for readers
            self._tables.append(_arrow_table(Batch(), 0, 0))
            self._end_part()

    def _write_group(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.concat_tables(self._tables)
        if self._part is None:
            name = f"part-{len(self.files):05d}.parquet"
            self._part = pq.ParquetWriter(self.folder / name, table.schema, compression="zstd")
            self.files.append(name)
        self._part.write_table(table, row_group_size=max(1, table.num_rows))
        self._tables, self._group_chars = [], 0

    def _end_part(self) -> None:
        if self._tables:
            self._write_group()
        self._part.close()
        self._part, self._part_rows = None, 0


def _arrow_table(b: Batch, start: int, end: int):
    import pyarrow as pa  # here: `gptpipe ingest --help` need not pay for it

    return pa.table({
        "id": pa.array(b.ids[start:end], pa.int64()),
        "title": pa.array(b.titles[start:end], pa.string()),
        "text": pa.array(b.texts[start:end], pa.string()),
        "n_chars": pa.array(b.n_chars[start:end], pa.int64()),
        "split": pa.array(b.splits[start:end], pa.string()),
    })

"""`gptpipe ingest`: one Wikipedia dump part -> clean prose in Parquet, plus `stats.json`.

Parallelism follows where the time goes: bz2 decompression is over half of it.

- With a multistream index, each worker process takes a contiguous range of bz2 streams and
  decompresses, parses and cleans it on its own; the main process only writes Parquet.
- Without one (a single bz2 stream, or a multistream file read sequentially), the main process
  decompresses (libbz2 releases the GIL, so this runs in the pool's feeder thread while the
  main thread writes) and worker processes parse and clean blocks of whole pages.

Results are merged in dump order, so the output does not depend on the number of processes and
is the same for the single-stream and the multistream file of the same pages.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import logging
import multiprocessing
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .. import wiki
from ..atomic import atomic_path, write_json
from ..config import IngestConfig, to_dict
from ..errors import GptpipeError
from ..wikitext import is_disambiguation, is_redirect, to_prose
from .common import load_config, run_cli, stage_parser

log = logging.getLogger(__name__)

DROP_REASONS = ("namespace", "redirect", "disambiguation", "too_short", "bad_markup")
_BLOCK_BYTES = 4 << 20  # XML per single-stream work item: big enough to amortise the pickling
_TASK_BYTES = 32 << 20  # compressed bytes per multistream work item at most (bounds memory)


def split_of(page_id: int, salt: str, val_fraction: float) -> str:
    """'val' for a stable `val_fraction` share of page ids, else 'train' (a keyed hash, so it
    does not depend on which dump part holds the page)."""
    digest = hashlib.blake2b(f"{salt}:{page_id}".encode(), digest_size=8).digest()
    return "val" if int.from_bytes(digest, "big") < val_fraction * 2**64 else "train"


@dataclass(frozen=True)
class _Job:
    """What a worker needs besides the bytes (pickled with every work item; it is small)."""

    where: str  # names the file (and stream) in error messages
    min_chars: int
    val_fraction: float
    split_salt: str
    namespaces: dict[str, int] = field(default_factory=dict)


_COLUMNS = ("ids", "titles", "texts", "n_chars", "splits")  # Batch attributes -> Parquet


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
        for name in _COLUMNS:
            getattr(self, name).extend(getattr(other, name))
        self.page_ids.extend(other.page_ids)
        self.tail = other.tail


def process_block(job: _Job, base: int, block: bytes) -> Batch:
    """Parse, filter and clean a run of whole pages starting at XML byte `base`."""
    pages, tail = wiki.split_pages(block, base, job.where)
    out = Batch(seen=len(pages), xml_bytes=len(block), tail=tail)
    for offset, data in pages:
        _add_page(wiki.parse_page(data, offset, job.where), job, out)
    return out


def _add_page(raw: wiki.RawPage, job: _Job, out: Batch) -> None:
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


def _process_item(item: tuple[_Job, int, bytes]) -> Batch:
    return process_block(*item)


# --------------------------------------------------------------------------- multistream


@dataclass(frozen=True)
class _StreamTask:
    dump: Path
    index: Path
    streams: tuple[wiki.Stream, ...]
    is_last: bool  # holds the dump's last stream, whose XML ends with </mediawiki>
    job: _Job


def _process_streams(task: _StreamTask) -> Batch:
    """Decompress, parse and clean a contiguous range of streams of a multistream dump."""
    first, last = task.streams[0], task.streams[-1]
    with open(task.dump, "rb") as f:
        f.seek(first.offset)
        data = memoryview(f.read(last.end - first.offset))
    out = Batch()
    for s in task.streams:
        where = f"{task.dump}: stream at compressed byte {s.offset} (index line {s.line})"
        xml = wiki.decompress_range(data[s.offset - first.offset : s.end - first.offset], where)
        batch = process_block(dataclasses.replace(task.job, where=where), 0, xml)
        _check_stream(task.index, s, batch, final=task.is_last and s is last)
        out.extend(batch)
    return out


def _check_stream(index: Path, s: wiki.Stream, batch: Batch, final: bool) -> None:
    found = batch.page_ids
    if len(found) != len(s.page_ids) or any(a not in (None, b) for a, b in zip(found, s.page_ids)):
        raise GptpipeError(
            f"{index}: line {s.line}: the stream at compressed byte {s.offset} holds pages "
            f"{_preview(found)}, but the index lists {_preview(s.page_ids)}"
        )
    if batch.tail and not final:
        raise GptpipeError(
            f"{index}: line {s.line}: the stream at compressed byte {s.offset} holds XML after "
            "its pages, which only the dump's last stream may"
        )


def _preview(ids) -> str:
    return f"{list(ids[:5])}{'...' if len(ids) > 5 else ''} ({len(ids)})"


def _stream_tasks(streams: list[wiki.Stream], processes: int) -> list[tuple[wiki.Stream, ...]]:
    """Contiguous ranges of streams of about equal compressed size: a few per process, so the
    main process writes while workers work and a slow range does not hold up the rest."""
    first, total = streams[0].offset, streams[-1].end - streams[0].offset
    n = min(len(streams), max(4 * processes, -(-total // _TASK_BYTES)))
    groups: list[list[wiki.Stream]] = [[] for _ in range(n)]
    for s in streams:
        groups[min(n - 1, (s.offset - first) * n // max(total, 1))].append(s)
    return [tuple(g) for g in groups if g]


def _read_multistream(dump: Path, index: Path, job: _Job, processes: int,
                      dump_size: int) -> Iterator[Batch]:
    streams = wiki.read_index(index, dump, dump_size)
    envelope = wiki.Envelope(str(dump))
    with open(dump, "rb") as f:
        header = wiki.decompress_range(f.read(streams[0].offset), f"{dump}: header stream")
    if b"<page>" in header:
        raise GptpipeError(
            f"{index}: line 1: the dump has pages before offset {streams[0].offset}, the first "
            f"indexed stream (is this the index of {dump.name}?)"
        )
    envelope.feed(header)
    job = dataclasses.replace(job, namespaces=envelope.namespaces)
    groups = _stream_tasks(streams, processes)
    tasks = [_StreamTask(dump, index, g, i == len(groups) - 1, job) for i, g in enumerate(groups)]
    tail = b""
    for batch in _map(_process_streams, tasks, min(processes, len(tasks))):
        tail = batch.tail
        yield batch
    envelope.finish(tail)
    yield Batch(xml_bytes=len(header))  # the streams' XML holds the rest, `tail` included


# --------------------------------------------------------------------------- single stream


def _read_single(dump: Path, job: _Job, processes: int) -> Iterator[Batch]:
    envelope = wiki.Envelope(str(dump))
    # Parallel decompression of the one stream: measured faster on 2 cores than one thread
    # overlapping with the workers (benchmarks/ingest.py), as decompression is the long pole.
    chunks = wiki.iter_bz2_parallel(dump, processes) if processes > 1 else wiki.iter_bz2(dump)
    blocks = wiki.iter_page_blocks(chunks, envelope, _BLOCK_BYTES)
    # The namespaces are known once the header is read, i.e. before the first block.
    items = (
        (dataclasses.replace(job, namespaces=envelope.namespaces), base, block)
        for base, block in blocks
    )
    yield from _map(_process_item, items, processes)
    # Read once the pool's feeder thread has run `blocks` to its end (imap ends after that).
    yield Batch(xml_bytes=envelope.bytes_fed)


def _map(fn: Callable, items: Iterable, processes: int) -> Iterator[Batch]:
    """`map(fn, items)` in order, over `processes` worker processes when more than one.

    Workers come from a fork server, not a plain fork: forking a process whose libraries run
    threads (polars, pyarrow, torch, as when `run` is called in-process) can deadlock the child
    on a lock some thread held. The pool's feeder thread pulls `items`, so a generator that
    decompresses overlaps with the workers.
    """
    if processes <= 1:
        yield from map(fn, items)
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    with ctx.Pool(processes) as pool:
        yield from pool.imap(fn, items)


# --------------------------------------------------------------------------- output


class _PartWriter:
    """Parquet files of `rows_per_file` articles each (part-00000.parquet, ...) and totals."""

    def __init__(self, folder: Path, rows_per_file: int) -> None:
        self.folder, self.rows_per_file = folder, rows_per_file
        self.files: list[str] = []
        self.total = Batch()  # counts only
        self.kept, self.chars, self.splits = 0, 0, Counter()
        self._buf = Batch()

    def add(self, batch: Batch) -> None:
        self.total.add_counts(batch)
        self.kept += len(batch.ids)
        self.chars += sum(batch.n_chars)
        self.splits.update(batch.splits)
        for name in _COLUMNS:
            getattr(self._buf, name).extend(getattr(batch, name))
        while len(self._buf.ids) >= self.rows_per_file:
            self._write(self.rows_per_file)

    def close(self) -> None:
        if self._buf.ids or not self.files:  # an empty part keeps the schema for readers
            self._write(len(self._buf.ids))

    def _write(self, n: int) -> None:
        import pyarrow as pa  # here: `gptpipe ingest --help` need not pay for it
        import pyarrow.parquet as pq

        b = self._buf
        table = pa.table({
            "id": pa.array(b.ids[:n], pa.int64()),
            "title": pa.array(b.titles[:n], pa.string()),
            "text": pa.array(b.texts[:n], pa.string()),
            "n_chars": pa.array(b.n_chars[:n], pa.int64()),
            "split": pa.array(b.splits[:n], pa.string()),
        })
        name = f"part-{len(self.files):05d}.parquet"
        pq.write_table(table, self.folder / name, compression="zstd")
        self.files.append(name)
        for attr in _COLUMNS:
            del getattr(b, attr)[:n]


def _check_bad_pages(bad: list[tuple[str, str, str]], max_bad: int, dump: Path) -> None:
    if len(bad) > max_bad:
        page_id, title, why = bad[max_bad]
        raise GptpipeError(
            f"{dump}: more than max_bad_pages={max_bad} bad pages; page id {page_id} "
            f"({title!r}): {why}"
        )


def _available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this job may use (cgroups, taskset)
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def run(cfg: IngestConfig, dump: Path, output: Path, index: Path | None = None,
        processes: int | None = None) -> dict:
    """Ingest `dump` (read with `index` when given) into the folder `output`; return the stats
    written to `output/stats.json`."""
    t0 = time.perf_counter()
    dump, output = Path(dump), Path(output)
    processes = processes or _available_cores()
    size = wiki.check_bz2(dump)
    if index is not None and not Path(index).is_file():
        raise GptpipeError(f"{index}: index file not found")
    job = _Job(str(dump), cfg.min_chars, cfg.val_fraction, cfg.split_salt)
    with atomic_path(output, is_dir=True) as tmp:
        writer = _PartWriter(tmp, cfg.rows_per_file)
        batches = (_read_multistream(dump, Path(index), job, processes, size) if index
                   else _read_single(dump, job, processes))
        with contextlib.closing(batches):  # on an error, stop the workers now
            for batch in batches:
                writer.add(batch)
                _check_bad_pages(writer.total.bad, cfg.max_bad_pages, dump)
        if writer.total.seen == 0:
            raise GptpipeError(f"{dump}: no pages: a MediaWiki export without any <page>")
        writer.close()
        stats = _stats(cfg, dump, size, index, processes, writer, t0)
        write_json(tmp / "stats.json", stats)
    log.info("%s: %d pages, %d kept, %.1f MB prose in %.1f s", dump.name, stats["pages_seen"],
             stats["pages_kept"], stats["bytes_out"] / 1e6, stats["seconds"])
    return stats


def _stats(cfg: IngestConfig, dump: Path, size: int, index: Path | None, processes: int,
           writer: _PartWriter, t0: float) -> dict:
    t = writer.total
    return {
        "input": dump.name,
        "input_bytes": size,
        "index": Path(index).name if index else None,
        "mode": "multistream" if index else "single-stream",
        "pages_seen": t.seen,
        "pages_kept": writer.kept,
        "dropped": {reason: t.dropped.get(reason, 0) for reason in DROP_REASONS},
        "bad_pages": [{"id": i, "title": title, "error": why} for i, title, why in t.bad],
        "splits": {"train": writer.splits.get("train", 0), "val": writer.splits.get("val", 0)},
        "bytes_in": size,
        "xml_bytes": t.xml_bytes,
        "bytes_out": t.out_bytes,
        "chars": writer.chars,
        "files": writer.files,
        "seconds": round(time.perf_counter() - t0, 3),
        "processes": processes,
        "config": to_dict(cfg),
    }


# --------------------------------------------------------------------------- CLI


_EPILOG = """\
output (DIR):
  part-00000.parquet ...  columns id (int64 page id), title, text (clean prose),
                          n_chars (int64), split ("train"/"val", from a hash of the page id)
  stats.json              pages seen/kept/dropped by reason, bytes, seconds, resolved config

knobs (section `ingest`, --set KEY=VALUE): min_chars, val_fraction, split_salt, rows_per_file,
  max_bad_pages (pages whose conversion fails before the job does)

example:
  gptpipe ingest --input enwiki-pages-articles-multistream1.xml.bz2 \\
      --index enwiki-pages-articles-multistream-index1.txt.bz2 --output results/ingest/p1
"""


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser(
        "ingest",
        "One Wikipedia pages-articles dump part (.xml.bz2) -> clean prose in Parquet. Keeps\n"
        "namespace-0 articles; drops redirects, disambiguation pages and short pages; strips\n"
        "templates, tables, references, files, categories and other markup.",
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    add = parser.add_argument
    add("--input", required=True, type=Path, metavar="DUMP",
        help="the dump part, bz2 (single stream or multistream)")
    add("--index", type=Path, metavar="INDEX",
        help="its multistream index (offset:page_id:title lines); streams are then "
        "decompressed in parallel (without it: read sequentially)")
    add("--output", required=True, type=Path, metavar="DIR",
        help="output folder, written atomically (an existing one is replaced)")
    add("--processes", type=int, default=None, metavar="N",
        help="worker processes (default: the cores available to this job)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body(args: argparse.Namespace) -> None:
        if args.processes is not None and args.processes < 1:
            raise GptpipeError(f"--processes {args.processes}: must be >= 1")
        run(load_config(args, "ingest"), args.input, args.output, args.index, args.processes)

    return run_cli("ingest", argv, parser, body)

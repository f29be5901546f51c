"""Reading one dump part in parallel and writing it as Parquet plus `stats.json` (`run`).

Parallelism follows where the time goes: bz2 decompression is over half of it.

- With a multistream index, each worker process takes a contiguous range of bz2 streams and
  decompresses, parses and cleans it on its own; the main process only writes Parquet.
- Without one (a single bz2 stream, or a multistream file without its index), each worker
  takes a byte range of the file and decompresses the bz2 blocks that start there
  (`gptpipe.ingest.bz2blocks`), then parses and cleans the whole pages among them; the main process
  puts together and cleans the few pages that two ranges share. Should that fail (a bad file),
  the dump is read again sequentially, decompressed in the main process (indexed_bzip2
  threads) while workers parse and clean blocks of whole pages: that read names the problem.

Results are merged in dump order, so the output does not depend on the number of processes and
is the same for the single-stream and the multistream file of the same pages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..atomic import atomic_path, write_json
from ..config import IngestConfig, to_dict
from ..errors import GptpipeError
from . import bz2blocks, wiki
from .articles import Batch, Job, PartWriter, process_block

log = logging.getLogger(__name__)
DROP_REASONS = ("namespace", "redirect", "disambiguation", "too_short", "bad_markup")
_BLOCK_BYTES = 4 << 20  # XML per single-stream work item: big enough to amortise the pickling
# Compressed bytes per multistream work item (~10 streams of 100 pages). A worker holds its
# item's bytes and the cleaned text of all its streams, and finished items wait for the writer,
# so the item's size, not the part's, must set ingest's memory. With 16 items per process of up
# to 32 MB, items grew with the part and so did the peak (benchmarks/scale.py, one job on eight
# parts' pages: 1.78x the peak of one part; 1 MB items, at most 2 per process queued: 1.06x).
_TASK_BYTES = 1 << 20
_RANGE_BYTES = 4 << 20  # compressed bytes per single-stream work item at most (~16 bz2 blocks)


def _process_item(item: tuple[Job, int, bytes]) -> Batch:
    return process_block(*item)


@dataclass(frozen=True)
class _StreamTask:
    dump: Path
    index: Path
    streams: tuple[wiki.Stream, ...]
    is_last: bool  # holds the dump's last stream, whose XML ends with </mediawiki>
    job: Job


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
    """Contiguous ranges of streams of about equal compressed size: many per process, so the
    main process writes while workers work and a slow range does not hold up the rest."""
    first, total = streams[0].offset, streams[-1].end - streams[0].offset
    n = min(len(streams), max(16 * processes, -(-total // _TASK_BYTES)))
    groups: list[list[wiki.Stream]] = [[] for _ in range(n)]
    for s in streams:
        groups[min(n - 1, (s.offset - first) * n // max(total, 1))].append(s)
    return [tuple(g) for g in groups if g]


def _read_multistream(dump: Path, index: Path, job: Job, processes: int,
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


class _Fallback(Exception):
    """The block-parallel read cannot go on: read the dump sequentially instead."""


@dataclass(frozen=True)
class _RangeTask:
    dump: Path
    start: int  # compressed bytes [start, end): the blocks that start there
    end: int
    job: Job


def _process_range(task: _RangeTask) -> tuple[bytes, Batch | None, bytes, bz2blocks.Marks]:
    """`(head, batch, tail, marks)`: the whole pages of a range of blocks, cleaned, and the XML
    before and after them (parts of pages cut by the range's ends); batch None: no whole page."""
    xml, marks = bz2blocks.decode_range(task.dump, task.start, task.end)
    first, last = xml.find(b"<page>"), xml.rfind(b"</page>")
    if first < 0 or last < first:
        return xml, None, b"", marks
    last += len(b"</page>")
    return xml[:first], process_block(task.job, 0, xml[first:last]), xml[last:], marks


def _read_single_blocks(dump: Path, job: Job, processes: int, size: int) -> Iterator[Batch]:
    """A single-stream dump, each worker decompressing its own range of bz2 blocks; the pages
    that ranges cut in two are put together and cleaned here. Raises _Fallback, or the error
    of a bad file, which the sequential read then names precisely."""
    envelope = wiki.Envelope(str(dump))
    header = _read_header(dump, envelope)
    job = dataclasses.replace(job, namespaces=envelope.namespaces)
    n = max(16 * processes, -(-size // _RANGE_BYTES))
    tasks = [_RangeTask(dump, size * i // n, size * (i + 1) // n, job) for i in range(n)]
    carry, started, marks = b"", False, bz2blocks.Marks([], [])
    for head, batch, tail, found in _map(_process_range, tasks, processes):
        marks.blocks.extend(found.blocks)
        marks.ends.extend(found.ends)
        carry += head
        if batch is None:
            if len(carry) > wiki.MAX_PAGE_BYTES:
                raise _Fallback("a page over MAX_PAGE_BYTES")
            continue
        if not started:
            if not carry.startswith(header):
                raise _Fallback("the XML before the first page differs")
            yield Batch(xml_bytes=len(header))
            carry, started = carry[len(header) :], True
        if carry:
            yield process_block(job, 0, carry)
        yield batch
        carry = tail
    bz2blocks.check_marks(dump, size, marks)
    if not started:
        raise _Fallback("no range holds a whole page")
    last = carry.rfind(b"</page>") + 1
    if last:  # pages the last ranges hold parts of (no range after them held a whole page)
        last += len(b"</page>") - 1
        yield process_block(job, 0, carry[:last])
    envelope.finish(carry[last:])
    yield Batch(xml_bytes=len(carry) - last)


def _read_header(dump: Path, envelope: wiki.Envelope) -> bytes:
    """The XML before the first `<page>`, fed to `envelope` (the first block or two)."""
    xml = b""
    with contextlib.closing(wiki.iter_bz2(dump)) as chunks:
        for chunk in chunks:
            xml += chunk
            if (i := xml.find(b"<page>")) >= 0:
                envelope.feed(xml[:i])
                return xml[:i]
            if len(xml) >= wiki.MAX_PAGE_BYTES:
                break
    raise _Fallback("no <page> near the start")


def _read_single(dump: Path, job: Job, processes: int) -> Iterator[Batch]:
    envelope = wiki.Envelope(str(dump))
    # Parallel decompression of the one stream (indexed_bzip2 threads) when the block-parallel
    # read failed: it is the long pole, and this read names what is wrong with a bad file.
    chunks = wiki.iter_bz2_parallel(dump, processes) if processes > 1 else wiki.iter_bz2(dump)
    blocks = wiki.iter_page_blocks(chunks, envelope, _BLOCK_BYTES)
    # The namespaces are known once the header is read, i.e. before the first block.
    items = (
        (dataclasses.replace(job, namespaces=envelope.namespaces), base, block)
        for base, block in blocks
    )
    try:
        yield from _map(_process_item, items, processes)
    finally:
        # Close the decompressor here and now: after an error the pool's threads may still
        # reference it, and the garbage collector would finalize it later, anywhere.
        blocks.close()
        chunks.close()
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
    # At most 2 items per process between the feeder and this generator's consumer: imap alone
    # queues every item and keeps every finished result until it is consumed, so a writer
    # slower than the workers would hold a growing share of the part in memory.
    slots, stop = threading.BoundedSemaphore(2 * processes), threading.Event()

    def gated() -> Iterator:
        it = iter(items)
        while True:  # a slot first, then the item: `items` may decompress, i.e. hold memory
            while not slots.acquire(timeout=0.1):
                if stop.is_set():  # the consumer stopped early: let the pool shut down
                    return
            try:
                item = next(it)
            except StopIteration:
                return
            yield item

    with ctx.Pool(processes) as pool:
        try:
            for result in pool.imap(fn, gated()):
                slots.release()
                yield result
        finally:
            stop.set()


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
    job = Job(str(dump), cfg.min_chars, cfg.val_fraction, cfg.split_salt)
    with atomic_path(output, is_dir=True) as tmp:
        if index:
            batches = _read_multistream(dump, Path(index), job, processes, size)
            writer = _write(batches, tmp, cfg, dump)
        else:
            writer = _write_single(dump, job, processes, size, tmp, cfg)
        stats = _stats(cfg, dump, size, index, processes, writer, t0)
        write_json(tmp / "stats.json", stats)
    log.info("%s: %d pages, %d kept, %.1f MB prose in %.1f s", dump.name, stats["pages_seen"],
             stats["pages_kept"], stats["bytes_out"] / 1e6, stats["seconds"])
    return stats


def _write(batches: Iterator[Batch], folder: Path, cfg: IngestConfig, dump: Path) -> PartWriter:
    writer = PartWriter(folder, cfg.rows_per_file)
    with contextlib.closing(batches):  # on an error, stop the workers now
        for batch in batches:
            writer.add(batch)
            _check_bad_pages(writer.total.bad, cfg.max_bad_pages, dump)
    if writer.total.seen == 0:
        raise GptpipeError(f"{dump}: no pages: a MediaWiki export without any <page>")
    writer.close()
    return writer


def _write_single(dump: Path, job: Job, processes: int, size: int, folder: Path,
                  cfg: IngestConfig) -> PartWriter:
    """Block-parallel with several processes; on any failure, again from the start, read
    sequentially (which names what is wrong, if anything is)."""
    if processes > 1:
        try:
            return _write(_read_single_blocks(dump, job, processes, size), folder, cfg, dump)
        except (_Fallback, GptpipeError, OSError, EOFError, ValueError) as exc:
            log.debug("%s: reading it sequentially (%s)", dump, exc)
            for path in folder.iterdir():
                path.unlink()
    return _write(_read_single(dump, job, processes), folder, cfg, dump)


def _stats(cfg: IngestConfig, dump: Path, size: int, index: Path | None, processes: int,
           writer: PartWriter, t0: float) -> dict:
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

"""Reading MediaWiki `pages-articles` XML dumps compressed with bz2: safely, in blocks of pages.

A dump is a `<mediawiki>` root holding `<siteinfo>` and then one `<page>` after another. Only
the envelope (root and siteinfo) is parsed as one document; pages are cut out of the byte
stream at their `<page>`/`</page>` tags and each is parsed on its own. That lets worker
processes parse any run of whole pages, in particular the streams of a *multistream* dump, in
which the first bz2 stream holds the header, the last one `</mediawiki>`, and every stream in
between ~100 bare `<page>` elements, listed in an index of `byte_offset:page_id:title` lines.
Cutting at the tags is exact: inside text, `<` is always escaped as `&lt;`.

Every XML parser here is expat with document type declarations refused, so neither entity
expansion (billion laughs) nor external entities can happen; an undeclared `&entity;` is a
syntax error. Offsets in messages are byte offsets: "compressed byte" into the .bz2 file,
"XML byte" into the decompressed XML (into the stream's XML for a multistream dump).
"""

from __future__ import annotations

import bz2
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator
from xml.parsers import expat

from ..errors import GptpipeError

MAX_PAGE_BYTES = 512 << 20  # one page's XML; the largest real pages are a few MB
_CHUNK_BYTES = 1 << 20  # compressed bytes read at a time
_OUT_LIMIT = 32 << 20  # decompressed bytes per call, so a bz2 bomb cannot exhaust memory
_BZ2_MAGIC_RE = re.compile(rb"BZh[1-9]")
_BZ2_BLOCK_MAGIC = (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")  # block, end
_EXPORT_NS = "http://www.mediawiki.org/xml/export-"
_PAGE_OPEN, _PAGE_CLOSE = b"<page>", b"</page>"
_NO_ELEMENTS = expat.errors.codes[expat.errors.XML_ERROR_NO_ELEMENTS]  # "no element found"
_INDEX_LINE_RE = re.compile(r"(\d+):(\d+):", re.ASCII)  # offset:page_id:title (title: any text)


# --------------------------------------------------------------------------- bz2


def check_bz2(path: Path) -> int:
    """The file's size in bytes, after checking that it starts like a bz2 file."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            size = f.seek(0, 2)
    except OSError as exc:
        raise GptpipeError(f"{path}: cannot read: {exc.strerror}") from None
    if not _BZ2_MAGIC_RE.match(head):
        raise GptpipeError(f"{path}: not a bz2 file (it starts with {head!r}, not b'BZh')")
    return size


def iter_bz2(path: Path) -> Iterator[bytes]:
    """Decompressed chunks of a bz2 file made of one or more concatenated streams."""
    with open(path, "rb") as f:
        dec, stream, stream_start, pos, fed = bz2.BZ2Decompressor(), 1, 0, 0, False
        while data := f.read(_CHUNK_BYTES):
            while data or not (dec.needs_input or dec.eof):
                try:
                    out = dec.decompress(data, max_length=_OUT_LIMIT)
                except (OSError, EOFError) as exc:
                    raise GptpipeError(
                        f"{path}: corrupt bz2 data in stream {stream} (starts at compressed "
                        f"byte {stream_start}), within compressed bytes {pos}-{pos + len(data)}: "
                        f"{exc}"
                    ) from None
                fed = fed or bool(data)
                if out:
                    yield out
                if dec.eof:  # next stream, if any, starts in the unused bytes
                    used = len(data) - len(dec.unused_data)
                    pos, data = pos + used, dec.unused_data
                    dec, stream, stream_start, fed = bz2.BZ2Decompressor(), stream + 1, pos, False
                else:
                    pos, data = pos + len(data), b""
        if fed and not dec.eof:
            raise GptpipeError(
                f"{path}: truncated bz2 data: stream {stream} (starts at compressed byte "
                f"{stream_start}) ends without its end marker at byte {pos}"
            )


# Parallel readers inherited by a forked child, never destroyed there (see iter_bz2_parallel).
_FORKED_READERS: list = []


def iter_bz2_parallel(path: Path, threads: int) -> Iterator[bytes]:
    """`iter_bz2` with `threads` decompression threads (indexed_bzip2 finds the 900 kB blocks
    of even a single stream and decodes them in parallel). On any failure the file is read
    again with `iter_bz2`, whose message names the bad stream and byte range."""
    import indexed_bzip2  # a compiled extension: imported only where it is used

    owner = os.getpid()
    try:
        f = indexed_bzip2.open(str(path), parallelization=threads)
        try:
            while chunk := f.read(_CHUNK_BYTES * 4):
                yield chunk
            end = -(-max(f.block_offsets().keys(), default=0) // 8)  # bits -> bytes
        finally:
            # A generator left unfinished can be finalized by the garbage collector of a
            # forked child (a DataLoader worker, say), where the reader's threads do not exist:
            # closing or destroying the reader there aborts or hangs the child, as it joins
            # threads of another process. Only the process that opened it closes it; a child
            # keeps its copy alive until it exits (os._exit runs no destructors).
            if os.getpid() == owner:
                f.close()
            else:
                _FORKED_READERS.append(f)
    except (RuntimeError, ValueError, OSError) as exc:
        _explain_bz2_failure(path, str(exc))
    if end != path.stat().st_size:  # indexed_bzip2 skips trailing data; iter_bz2 does not
        _explain_bz2_failure(path, f"unexpected data after compressed byte {end}")


def _explain_bz2_failure(path: Path, what: str) -> None:
    for _ in iter_bz2(path):
        pass
    raise GptpipeError(f"{path}: bz2 decompression failed: {what}")


def decompress_range(data: bytes, where: str) -> bytes:
    """The XML of one or more whole bz2 streams (a range of a multistream file)."""
    try:
        return bz2.decompress(data)
    except (OSError, EOFError, ValueError) as exc:
        raise GptpipeError(f"{where}: corrupt or truncated bz2 stream: {exc}") from None


# --------------------------------------------------------------------------- index


@dataclass(frozen=True)
class Stream:
    """One bz2 stream of a multistream dump, as its index lists it."""

    offset: int  # compressed byte where the stream starts
    end: int  # compressed byte where the next stream (or the file) starts
    line: int  # index line (1-based) of its first page
    page_ids: tuple[int, ...]  # the pages it holds, in order


def read_index(index: Path, dump: Path, dump_size: int) -> list[Stream]:
    """The streams of a multistream dump, checked against the dump's bytes."""
    groups: list[tuple[int, int, list[int]]] = []
    for n, line in enumerate(_index_lines(index), 1):
        m = _INDEX_LINE_RE.match(line)
        if m is None:
            raise GptpipeError(f"{index}: line {n}: expected 'offset:page_id:title': {line[:80]!r}")
        offset, page_id = int(m.group(1)), int(m.group(2))
        if groups and offset < groups[-1][0]:
            raise GptpipeError(f"{index}: line {n}: offset {offset} is below the line before")
        if not groups or offset != groups[-1][0]:
            groups.append((offset, n, []))
        groups[-1][2].append(page_id)
    if not groups:
        raise GptpipeError(f"{index}: empty index (no 'offset:page_id:title' lines)")
    ends = [g[0] for g in groups[1:]] + [dump_size]
    streams = [Stream(o, e, n, tuple(ids)) for (o, n, ids), e in zip(groups, ends)]
    _check_stream_starts(index, dump, dump_size, streams)
    return streams


def _index_lines(index: Path) -> Iterator[str]:
    try:
        with open(index, "rb") as f:
            compressed = _BZ2_MAGIC_RE.match(f.read(4)) is not None
        opener = bz2.open if compressed else open
        with opener(index, "rt", encoding="utf-8") as f:
            for line in f:
                if line := line.rstrip("\r\n"):
                    yield line
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise GptpipeError(f"{index}: cannot read the index: {exc}") from None


def _check_stream_starts(index: Path, dump: Path, size: int, streams: list[Stream]) -> None:
    if streams[0].offset == 0:
        raise GptpipeError(
            f"{index}: line 1: offset 0 is the dump's header stream, which holds no pages "
            f"(is this the index of {dump.name}?)"
        )
    with open(dump, "rb") as f:
        for s in streams:
            f.seek(s.offset)
            head = f.read(10)
            if s.offset >= size or not (_BZ2_MAGIC_RE.match(head) and head[4:] in _BZ2_BLOCK_MAGIC):
                what = "is past the end of" if s.offset >= size else "is not a bz2 stream start in"
                raise GptpipeError(
                    f"{index}: line {s.line}: offset {s.offset} {what} {dump} ({size} bytes)"
                )


# --------------------------------------------------------------------------- XML


class _Refused(ValueError):
    pass


class _NotExport(ValueError):
    pass


def _refuse(*_args: object) -> None:
    raise _Refused("document type declarations (DTD, entities) are not allowed in a dump")


def safe_parser() -> expat.XMLParserType:
    """An expat parser that refuses DTDs, so no entity is ever declared or expanded."""
    p = expat.ParserCreate()
    p.buffer_text = True
    p.buffer_size = 1 << 20
    p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    p.StartDoctypeDeclHandler = _refuse
    p.EntityDeclHandler = _refuse
    p.ExternalEntityRefHandler = _refuse
    return p


def xml_error(
    exc: Exception, p: expat.XMLParserType, data: bytes, base: int, where: str
) -> GptpipeError:
    """A one-line error for a failed parse of `data` (which starts at XML byte `base`)."""
    if isinstance(exc, _Refused):
        return GptpipeError(f"{where}: XML byte {base + p.CurrentByteIndex}: {exc}")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as u:
        return GptpipeError(f"{where}: text is not valid UTF-8 at XML byte {base + u.start}")
    offset = base + max(p.ErrorByteIndex, 0)
    return GptpipeError(f"{where}: malformed XML at XML byte {offset}: {exc}")


class Envelope:
    """The `<mediawiki>` root and its `<siteinfo>`: fed the XML before the first page and the
    XML after the last one, it checks that the file is a MediaWiki export (of any schema
    version) and collects the namespace names."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.namespaces: dict[str, int] = {}  # name -> key, from siteinfo
        self._p = safe_parser()
        self._p.StartElementHandler = self._start
        self._p.EndElementHandler = self._end
        self._p.CharacterDataHandler = self._data
        self._depth, self._root, self._key, self._buf = 0, None, None, []
        self.bytes_fed = 0  # XML bytes seen: the header and what follows the last page

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        if self._depth == 0:
            xmlns = attrs.get("xmlns", _EXPORT_NS)
            if name != "mediawiki" or not xmlns.startswith(_EXPORT_NS):
                raise _NotExport(f"root element <{name}> xmlns={xmlns!r}")
            self._root = name
        if name == "namespace":
            self._key, self._buf = attrs.get("key"), []
        self._depth += 1

    def _data(self, text: str) -> None:
        if self._key is not None:
            self._buf.append(text)

    def _end(self, name: str) -> None:
        self._depth -= 1
        if name == "namespace" and self._key is not None:
            if self._key.lstrip("-").isdigit() and "".join(self._buf).strip():
                self.namespaces["".join(self._buf).strip()] = int(self._key)
            self._key = None

    def feed(self, data: bytes, final: bool = False) -> None:
        try:
            self._p.Parse(data, final)
        except _NotExport as exc:
            raise GptpipeError(f"{self.where}: not a MediaWiki export ({exc})") from None
        except (expat.ExpatError, _Refused) as exc:
            if self._root is None and not isinstance(exc, _Refused):
                raise GptpipeError(
                    f"{self.where}: not a MediaWiki export (not XML: {exc})"
                ) from None
            if final and getattr(exc, "code", None) == _NO_ELEMENTS:
                raise GptpipeError(
                    f"{self.where}: truncated XML: the dump ends before </mediawiki>"
                ) from None
            raise xml_error(exc, self._p, data, self.bytes_fed, self.where) from None
        self.bytes_fed += len(data)

    def finish(self, tail: bytes) -> None:
        """Feed the XML after the last page (`</mediawiki>`); the document must end there."""
        if _PAGE_OPEN in tail:
            raise GptpipeError(f"{self.where}: truncated XML: the last <page> has no </page>")
        self.feed(tail, final=True)
        if self._root is None:
            raise GptpipeError(f"{self.where}: not a MediaWiki export (no <mediawiki> root)")


def iter_page_blocks(
    chunks: Iterable[bytes], envelope: Envelope, block_bytes: int
) -> Iterator[tuple[int, bytes]]:
    """Split a dump's XML into `(xml_offset, block)`: runs of whole pages of ~`block_bytes`.

    The XML before the first page and after the last one goes to `envelope`.
    """
    it = iter(chunks)
    start = _skip_header(it, envelope)
    if start is None:
        return
    base, lead = start
    pending, size, next_try = [lead], len(lead), block_bytes
    for chunk in it:
        pending.append(chunk)
        size += len(chunk)
        if size < next_try:
            continue
        buf = b"".join(pending)
        cut = buf.rfind(_PAGE_CLOSE) + len(_PAGE_CLOSE)
        if cut < len(_PAGE_CLOSE):  # one page longer than a block: wait for its end
            if size > MAX_PAGE_BYTES:
                raise GptpipeError(
                    f"{envelope.where}: the page at XML byte {base} is over {MAX_PAGE_BYTES} bytes"
                )
            pending, next_try = [buf], 2 * size  # doubling keeps the re-joining linear
            continue
        yield base, buf[:cut]
        base += cut
        pending, size, next_try = [buf[cut:]], len(buf) - cut, block_bytes
    buf = b"".join(pending)
    cut = buf.rfind(_PAGE_CLOSE) + len(_PAGE_CLOSE) if _PAGE_CLOSE in buf else 0
    if cut:
        yield base, buf[:cut]
    envelope.finish(buf[cut:])


def _skip_header(it: Iterator[bytes], envelope: Envelope) -> tuple[int, bytes] | None:
    """Feed `envelope` up to the first `<page>`; return its XML offset and the bytes from it
    on, or None (the envelope finished) when there is no page at all."""
    base, buf = 0, b""
    for chunk in it:
        buf += chunk
        i = buf.find(_PAGE_OPEN)
        if i >= 0:
            envelope.feed(buf[:i])
            return base + i, buf[i:]
        keep = min(len(buf), len(_PAGE_OPEN) - 1)  # `<page>` may straddle two chunks
        envelope.feed(buf[: len(buf) - keep])
        base, buf = base + len(buf) - keep, buf[len(buf) - keep :]
    envelope.finish(buf)
    return None


# --------------------------------------------------------------------------- pages


@dataclass(frozen=True)
class RawPage:
    """One `<page>` as the dump has it (the text of its last revision)."""

    id: str  # as written; checked by the caller, so a bad one counts as a bad page
    title: str
    ns: int | None  # None when the export has no <ns> (schema < 0.6)
    redirect: bool  # a <redirect> element (schema >= 0.5)
    text: str
    offset: int  # XML byte where the page starts


def split_pages(block: bytes, base: int, where: str) -> tuple[list[tuple[int, bytes]], bytes]:
    """`([(xml_offset, page_xml), ...], tail)` of a run of pages; only whitespace may lie
    between pages; `tail` is what follows the last page (`</mediawiki>` in a dump's last
    stream)."""
    pages: list[tuple[int, bytes]] = []
    pos = 0
    while (start := block.find(_PAGE_OPEN, pos)) >= 0:
        if block[pos:start].strip():
            raise GptpipeError(f"{where}: unexpected XML between pages at XML byte {base + pos}")
        end = block.find(_PAGE_CLOSE, start)
        if end < 0:
            raise GptpipeError(f"{where}: the <page> at XML byte {base + start} has no </page>")
        pos = end + len(_PAGE_CLOSE)
        pages.append((base + start, block[start:pos]))
    return pages, block[pos:].strip()


def parse_page(data: bytes, offset: int, where: str) -> RawPage:
    """Parse one `<page>...</page>` (at XML byte `offset`) with a DTD-refusing expat."""
    p = safe_parser()
    fields: dict[str, str] = {}
    path: list[str] = []
    buf: list[str] = []
    redirect = False

    def start(name: str, _attrs: dict[str, str]) -> None:
        nonlocal redirect
        path.append(name)
        buf.clear()
        redirect = redirect or (name == "redirect" and len(path) == 2)

    def end(name: str) -> None:
        depth = len(path)
        if depth == 2 and name in ("title", "ns", "id"):
            fields[name] = "".join(buf)
        elif depth == 3 and name == "text" and path[1] == "revision":
            fields["text"] = "".join(buf)  # a later revision (full-history dumps) wins
        path.pop()
        buf.clear()

    p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = start, end, buf.append
    try:
        p.Parse(data, True)
    except (expat.ExpatError, _Refused) as exc:
        raise xml_error(exc, p, data, offset, where) from None
    ns = fields.get("ns", "").strip()
    return RawPage(
        id=fields.get("id", "").strip(),
        title=fields.get("title", ""),
        ns=int(ns) if ns.lstrip("-").isdigit() else None,
        redirect=redirect,
        text=fields.get("text", ""),
        offset=offset,
    )


def namespace_of(page: RawPage, namespaces: dict[str, int]) -> int:
    """The page's namespace: its <ns>, else (old schemas) the title's known prefix, else 0."""
    if page.ns is not None:
        return page.ns
    prefix, sep, _ = page.title.partition(":")
    return namespaces.get(prefix, 0) if sep else 0

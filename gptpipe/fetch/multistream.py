"""Wikimedia's multistream layout, written from a single-stream bz2 dump (`repack: multistream`).

A multistream dump is a concatenation of independent bz2 streams (header, then N pages each,
then the footer) plus an index of `byte_offset:page_id:title` lines, so readers can decompress
streams in parallel. Some dumps are published only as one stream (gensim's test fragment);
repacking them gives the same file Wikimedia's tools would, byte for byte.
"""

from __future__ import annotations

import bz2
import html
import re
from pathlib import Path
from typing import BinaryIO

from ..errors import GptpipeError


class _Streams:
    """Writes concatenated bz2 streams; `cut()` ends the current one (if it holds anything)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out, self.written, self.start = out, 0, 0
        self.comp: bz2.BZ2Compressor | None = None

    def write(self, data: bytes) -> None:
        if self.comp is None:
            self.comp, self.start = bz2.BZ2Compressor(9), self.written
        self.written += self.out.write(self.comp.compress(data))

    def cut(self) -> None:
        if self.comp is not None:
            self.written += self.out.write(self.comp.flush())
            self.comp = None


_TITLE = re.compile(rb"<title>(.*)</title>")
_ID = re.compile(rb"<id>(\d+)</id>")


def repack_multistream(src: Path, out: Path, index: Path, pages_per_stream: int = 100) -> int:
    """Split a bz2 MediaWiki dump into Wikimedia's multistream layout; returns the page count.

    Streams: the header up to and including the `</siteinfo>` line; then `pages_per_stream`
    pages each, cut at the start of a `<page>` line (whitespace between pages kept); then the
    `</mediawiki>` line. Each is compressed like `bz2.compress(data, 9)`. `index` gets one
    `byte_offset:page_id:title` line per page (offset of the page's stream, title
    XML-unescaped), itself compressed as one bz2 stream.
    """
    pages, page_title, want_id = 0, "", False
    try:
        with bz2.open(src, "rb") as xml, open(out, "wb") as fout, open(index, "wb") as fidx:
            streams, index_comp = _Streams(fout), bz2.BZ2Compressor(9)
            for line in xml:
                head = line.lstrip()
                if head.startswith(b"<page>"):
                    if pages % pages_per_stream == 0:
                        streams.cut()
                    pages, want_id, page_title = pages + 1, True, ""
                elif head.startswith(b"</mediawiki>"):
                    streams.cut()
                elif want_id and (m := _TITLE.match(head)):
                    page_title = html.unescape(m.group(1).decode("utf-8"))
                elif want_id and (m := _ID.match(head)):
                    entry = f"{streams.start}:{int(m.group(1))}:{page_title}\n"
                    fidx.write(index_comp.compress(entry.encode("utf-8")))
                    want_id = False
                streams.write(line)
                if head.startswith(b"</siteinfo>"):
                    streams.cut()
            streams.cut()
            fidx.write(index_comp.flush())
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise GptpipeError(f"{src}: cannot repack ({exc}) after {pages} pages") from None
    if pages == 0 or want_id:
        raise GptpipeError(f"{src}: no pages, or page {pages} has no <id>: not a MediaWiki dump")
    return pages

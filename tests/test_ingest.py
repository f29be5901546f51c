"""`gptpipe ingest` on the real dump samples, and on broken or hostile inputs written here."""

from __future__ import annotations

import bz2
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gptpipe.ingest import articles, wiki
from gptpipe.ingest.articles import split_of
from gptpipe.config import IngestConfig
from gptpipe.errors import GptpipeError
from gptpipe.ingest import run as ingest
from gptpipe.ingest.run import run
from gptpipe.ingest.wikitext import leakage_rate

WIKI = "wikipedia"
SINGLE = f"{WIKI}/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
MULTI = f"{WIKI}/enwiki-20160501-p10-shortened-pages-articles-multistream.xml.bz2"
INDEX = f"{WIKI}/enwiki-20160501-p10-shortened-pages-articles-multistream-index.txt.bz2"
TABLES = f"{WIKI}/extra/enwiki-table-markup.xml.bz2"
SCHEMA09 = f"{WIKI}/extra/enwiki-pages-articles-sample_wikipedia2vec.xml.bz2"
CFG = IngestConfig(val_fraction=0.1, rows_per_file=40)

HEAD = (
    '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10">\n'
    "  <siteinfo><sitename>Wikipedia</sitename><namespaces>"
    '<namespace key="0" /><namespace key="10">Template</namespace></namespaces></siteinfo>\n'
)
FOOT = "</mediawiki>\n"
PROSE = "This is a sentence of plain prose about a subject. " * 6


def page(page_id: int | str, title: str, text: str, ns: int = 0, extra: str = "") -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    return (
        f"  <page>\n    <title>{title}</title>\n    <ns>{ns}</ns>\n    <id>{page_id}</id>\n{extra}"
        f'    <revision><id>1</id><text xml:space="preserve">{text}</text></revision>\n'
        "  </page>\n"
    )


def write_dump(path: Path, xml: str | bytes) -> Path:
    path.write_bytes(bz2.compress(xml.encode() if isinstance(xml, str) else xml))
    return path


def write_multistream(folder: Path, pages: list[str], per_stream: int = 2) -> tuple[Path, Path]:
    """A multistream dump (header stream, `per_stream` pages a stream, footer stream) + index."""
    chunks = [HEAD] + ["".join(pages[i : i + per_stream]) for i in range(0, len(pages), per_stream)]
    streams = [bz2.compress(c.encode()) for c in chunks + [FOOT]]
    lines, offset = [], len(streams[0])
    for n, s in enumerate(streams[1:-1]):
        for p in pages[n * per_stream : (n + 1) * per_stream]:
            pid = p.split("<id>")[1].split("</id>")[0]
            lines.append(f"{offset}:{pid}:{p.split('<title>')[1].split('</title>')[0]}")
        offset += len(s)
    dump, index = folder / "multi.xml.bz2", folder / "multi-index.txt.bz2"
    dump.write_bytes(b"".join(streams))
    index.write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    return dump, index


def read_out(folder: Path):
    return pq.read_table(sorted(folder.glob("*.parquet")))


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def sample_runs(shared_data: Path, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("ingest")
    single = run(CFG, shared_data / SINGLE, tmp / "single", processes=2)
    multi = run(CFG, shared_data / MULTI, tmp / "multi", index=shared_data / INDEX, processes=2)
    multi1 = run(CFG, shared_data / MULTI, tmp / "multi1", index=shared_data / INDEX, processes=1)
    return {"tmp": tmp, "single": single, "multi": multi, "multi1": multi1}


def test_sample_counts(sample_runs: dict) -> None:
    stats = sample_runs["single"]
    assert stats["pages_seen"] == 206
    assert stats["dropped"]["redirect"] == 100
    assert stats["pages_kept"] + sum(stats["dropped"].values()) == stats["pages_seen"]
    assert stats["dropped"]["disambiguation"] >= 1  # e.g. "Alien" ({{disambiguation}})
    table = read_out(sample_runs["tmp"] / "single")
    assert table.num_rows == stats["pages_kept"] == sum(stats["splits"].values())
    assert stats["chars"] == sum(table["n_chars"].to_pylist())
    assert stats["bytes_out"] == sum(len(t.encode()) for t in table["text"].to_pylist())
    assert stats["bytes_in"] == stats["input_bytes"] == 1695871
    assert stats["xml_bytes"] > 6_000_000 and stats["processes"] == 2
    assert stats["config"]["val_fraction"] == 0.1
    assert json.loads((sample_runs["tmp"] / "single" / "stats.json").read_text()) == stats
    assert len(stats["files"]) == -(-table.num_rows // CFG.rows_per_file)


def test_sample_articles(sample_runs: dict) -> None:
    table = read_out(sample_runs["tmp"] / "single")
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows[12]["title"] == "Anarchism"
    assert rows[12]["text"].startswith("Anarchism is a political philosophy that advocates")
    assert rows[12]["n_chars"] == len(rows[12]["text"])
    assert 10 not in rows  # AccessibleComputing: a redirect
    assert 724 not in rows  # Wikipedia:... (namespace 4)
    assert all(len(r["text"]) >= CFG.min_chars for r in rows.values())
    assert all(r["split"] == split_of(i, CFG.split_salt, CFG.val_fraction) for i, r in rows.items())
    assert (
        table.schema.field("id").type == "int64" and table.schema.field("n_chars").type == "int64"
    )
    assert table["id"].to_pylist() == sorted(rows)  # dump order (ids ascend in this sample)


def test_sample_has_no_markup_leakage(sample_runs: dict) -> None:
    texts = read_out(sample_runs["tmp"] / "single")["text"].to_pylist()
    assert leakage_rate(texts) == 0.0


def test_multistream_equals_single_stream(sample_runs: dict) -> None:
    single = read_out(sample_runs["tmp"] / "single")
    assert read_out(sample_runs["tmp"] / "multi").equals(single)
    assert read_out(sample_runs["tmp"] / "multi1").equals(single)  # any number of processes
    for key in ("pages_seen", "pages_kept", "dropped", "splits", "chars", "xml_bytes"):
        assert sample_runs["multi"][key] == sample_runs["single"][key]
    assert sample_runs["multi"]["mode"] == "multistream"


def test_tables_vanish(shared_data: Path, tmp_path: Path) -> None:
    stats = run(CFG, shared_data / TABLES, tmp_path / "out", processes=1)
    texts = dict(zip(*read_out(tmp_path / "out").select(["title", "text"]).to_pydict().values()))
    assert stats["pages_seen"] == 5 and "Economy of Estonia" in texts
    for text in texts.values():
        assert not any(m in text for m in ("{|", "|-", "|}", "wikitable", "colspan", "||"))
    assert "Lincoln Burrows (played by Dominic Purcell)" in texts["List of Prison Break characters"]
    assert leakage_rate(texts.values()) == 0.0


def test_older_export_schema(shared_data: Path, tmp_path: Path) -> None:
    stats = run(IngestConfig(min_chars=0), shared_data / SCHEMA09, tmp_path / "out", processes=1)
    table = read_out(tmp_path / "out")
    assert stats["pages_seen"] == 3 and stats["dropped"]["redirect"] == 1
    assert table["title"].to_pylist() == ["Computer accessibility", "Accessibility"]
    assert all(len(t) > 500 for t in table["text"].to_pylist())


def test_split_is_stable_and_salted() -> None:
    ids = range(1, 20001)
    val = [i for i in ids if split_of(i, "s", 0.1) == "val"]
    assert 1700 < len(val) < 2300
    assert val == [i for i in ids if split_of(i, "s", 0.1) == "val"]
    assert val != [i for i in ids if split_of(i, "other", 0.1) == "val"]
    assert all(split_of(i, "s", 0.0) == "train" for i in range(100))


# --------------------------------------------------------------------------- small dumps


def test_filters_and_bad_pages(tmp_path: Path) -> None:
    xml = (
        HEAD
        + "".join(
            [
                page(1, "Kept", PROSE),
                page(2, "Template:X", PROSE, ns=10),
                page(3, "Gone", "#REDIRECT [[Kept]]"),
                page(4, "Moved", PROSE, extra='    <redirect title="Kept" />\n'),
                page(5, "Mercury", "'''Mercury''' may be:\n* a planet\n{{disambig}}"),
                page(6, "Foo (disambiguation)", PROSE),
                page(7, "Stub", "Tiny."),
                page("x7", "Broken id", PROSE),
            ]
        )
        + FOOT
    )
    dump = write_dump(tmp_path / "d.xml.bz2", xml)
    with pytest.raises(GptpipeError, match=r"max_bad_pages=0 .*'Broken id'"):
        run(IngestConfig(), dump, tmp_path / "out", processes=1)
    assert not (tmp_path / "out").exists()
    stats = run(IngestConfig(max_bad_pages=1), dump, tmp_path / "out", processes=2)
    assert stats["dropped"] == {
        "namespace": 1,
        "redirect": 2,
        "disambiguation": 2,
        "too_short": 1,
        "bad_markup": 1,
    }
    assert stats["pages_kept"] == 1 and stats["bad_pages"][0]["title"] == "Broken id"
    assert read_out(tmp_path / "out")["title"].to_pylist() == ["Kept"]


def test_conversion_error_counts_as_bad_page(tmp_path: Path, monkeypatch) -> None:
    def fragile(text: str) -> str:
        if "boom" in text:
            raise RecursionError("too deep")
        return text

    monkeypatch.setattr(articles, "to_prose", fragile)
    dump = write_dump(
        tmp_path / "d.xml.bz2", HEAD + page(1, "A", PROSE) + page(2, "B", "boom " * 50) + FOOT
    )
    with pytest.raises(GptpipeError, match=r"page id 2 \('B'\): RecursionError: too deep"):
        run(IngestConfig(), dump, tmp_path / "out", processes=1)
    stats = run(IngestConfig(max_bad_pages=1), dump, tmp_path / "out", processes=1)
    assert stats["dropped"]["bad_markup"] == 1 and stats["pages_kept"] == 1


def test_small_multistream_matches_single_and_all_kept_streams(tmp_path: Path) -> None:
    pages = [page(i, f"T{i}", f"Article {i}. " + PROSE) for i in range(1, 8)]
    dump, index = write_multistream(tmp_path, pages)
    single = write_dump(tmp_path / "s.xml.bz2", HEAD + "".join(pages) + FOOT)
    run(CFG, single, tmp_path / "a", processes=2)
    run(CFG, dump, tmp_path / "b", index=index, processes=3)
    run(CFG, dump, tmp_path / "c", processes=1)  # multistream, read as one sequence of streams
    assert read_out(tmp_path / "a").equals(read_out(tmp_path / "b"))
    assert read_out(tmp_path / "a").equals(read_out(tmp_path / "c"))
    assert read_out(tmp_path / "a")["id"].to_pylist() == list(range(1, 8))


def test_single_stream_is_read_in_block_ranges(shared_data: Path, tmp_path: Path,
                                               monkeypatch) -> None:
    """Workers decompress their own bz2 blocks (small blocks here: level 1, so pages straddle
    ranges), for one stream and for concatenated streams, with the output of a sequential read;
    the sequential read is disabled, so a silent fallback to it fails the test."""
    xml = bz2.decompress((shared_data / SINGLE).read_bytes())
    single = tmp_path / "s.xml.bz2"
    single.write_bytes(bz2.compress(xml, 1))
    cut = xml.index(b"<page>", len(xml) // 2)
    multi = tmp_path / "m.xml.bz2"
    multi.write_bytes(bz2.compress(xml[:cut], 1) + bz2.compress(xml[cut:], 1))
    expected = run(CFG, single, tmp_path / "seq", processes=1)

    def sequential(*_args):
        raise AssertionError("read sequentially")

    monkeypatch.setattr(ingest, "_read_single", sequential)
    for dump in (single, multi):
        stats = run(CFG, dump, tmp_path / dump.stem, processes=2)
        assert read_out(tmp_path / dump.stem).equals(read_out(tmp_path / "seq"))
        for key in ("pages_seen", "pages_kept", "dropped", "xml_bytes", "bytes_out", "chars"):
            assert stats[key] == expected[key], key
    # a real multistream file without its index: its header and footer are streams of their own
    run(CFG, shared_data / MULTI, tmp_path / "indexed", index=shared_data / INDEX, processes=2)
    run(CFG, shared_data / MULTI, tmp_path / "unindexed", processes=2)
    assert read_out(tmp_path / "unindexed").equals(read_out(tmp_path / "indexed"))


# --------------------------------------------------------------------------- bad input


def _fails(dump: Path, out: Path, match: str, index: Path | None = None, processes=2) -> None:
    with pytest.raises(GptpipeError, match=match) as err:
        run(CFG, dump, out, index=index, processes=processes)
    assert "\n" not in str(err.value)
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.tmp-*"))


@pytest.mark.parametrize("processes", [1, 2])  # one decompression thread, or several
def test_corrupt_bz2(shared_data: Path, tmp_path: Path, processes: int) -> None:
    data = bytearray((shared_data / TABLES).read_bytes())
    mid = len(data) // 2
    data[mid : mid + 8] = bytes(b ^ 0xFF for b in data[mid : mid + 8])
    dump = tmp_path / "corrupt.xml.bz2"
    dump.write_bytes(bytes(data))
    match = r"corrupt\.xml\.bz2: corrupt bz2 data in stream 1 \(starts at compressed byte 0\), "
    _fails(dump, tmp_path / "out", match + r"within compressed bytes \d+-\d+", processes=processes)


@pytest.mark.parametrize("processes", [1, 2])
def test_trailing_garbage(shared_data: Path, tmp_path: Path, processes: int) -> None:
    dump = tmp_path / "trail.xml.bz2"
    data = (shared_data / TABLES).read_bytes()
    dump.write_bytes(data + b"not bz2")
    stream2 = rf"stream 2 \(starts at compressed byte {len(data)}\)"
    match = rf"trail\.xml\.bz2: corrupt bz2 data in {stream2}"
    _fails(dump, tmp_path / "out", match, processes=processes)


def test_corrupt_multistream_names_the_stream(shared_data: Path, tmp_path: Path) -> None:
    data = bytearray((shared_data / MULTI).read_bytes())
    data[800_000:800_008] = bytes(8)  # inside the stream at 575005 (index line 101)
    dump = tmp_path / "multi.xml.bz2"
    dump.write_bytes(bytes(data))
    _fails(
        dump,
        tmp_path / "out",
        r"multi\.xml\.bz2: stream at compressed byte 575005 \(index line 101\): corrupt",
        index=shared_data / INDEX,
    )


@pytest.mark.parametrize("processes", [1, 2])
def test_truncated_bz2(shared_data: Path, tmp_path: Path, processes: int) -> None:
    dump = tmp_path / "cut.xml.bz2"
    dump.write_bytes((shared_data / TABLES).read_bytes()[:40_000])
    match = r"cut\.xml\.bz2: truncated bz2 data: stream 1 .* at byte 40000$"
    _fails(dump, tmp_path / "out", match, processes=processes)


def test_truncated_xml(tmp_path: Path) -> None:
    xml = HEAD + page(1, "A", PROSE) + page(2, "B", PROSE)
    dump = write_dump(tmp_path / "d.xml.bz2", xml[: len(xml) - 100])
    _fails(dump, tmp_path / "out", r"d\.xml\.bz2: truncated XML: the last <page> has no </page>")
    dump = write_dump(tmp_path / "e.xml.bz2", xml)
    _fails(dump, tmp_path / "out", r"e\.xml\.bz2: truncated XML: the dump ends before </mediawiki>")


@pytest.mark.parametrize(
    "content",
    [
        b"<catalog><book><title>Not a dump</title></book></catalog>",
        b"just some plain text, not XML at all\n" * 100,
        b'<rss version="2.0"><page><title>x</title></page></rss>',
    ],
)
def test_not_a_mediawiki_export(tmp_path: Path, content: bytes) -> None:
    _fails(
        write_dump(tmp_path / "other.bz2", content),
        tmp_path / "out",
        r"other\.bz2: not a MediaWiki export",
    )


def test_not_bz2(tmp_path: Path) -> None:
    plain = tmp_path / "plain.xml.bz2"
    plain.write_text(HEAD + page(1, "A", PROSE) + FOOT)
    _fails(plain, tmp_path / "out", r"plain\.xml\.bz2: not a bz2 file")


def test_billion_laughs_and_external_entities_are_refused(tmp_path: Path) -> None:
    laughs = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    xml = f'<?xml version="1.0"?><!DOCTYPE mediawiki [<!ENTITY lol0 "lol">{laughs}]>' + HEAD
    xml += page(1, "A", "x").replace("x</text>", "&lol9;</text>") + FOOT
    _fails(
        write_dump(tmp_path / "lol.xml.bz2", xml), tmp_path / "out", r"lol\.xml\.bz2: .*not allowed"
    )
    xxe = '<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + HEAD
    xxe += page(1, "A", "x").replace("x</text>", "&x;</text>") + FOOT
    _fails(
        write_dump(tmp_path / "xxe.xml.bz2", xxe), tmp_path / "out", r"xxe\.xml\.bz2: .*not allowed"
    )
    undeclared = HEAD + page(1, "A", "x").replace("x</text>", "&lol9;</text>") + FOOT
    _fails(
        write_dump(tmp_path / "u.xml.bz2", undeclared),
        tmp_path / "out",
        r"u\.xml\.bz2: malformed XML at XML byte \d+: undefined entity",
    )


def test_empty_dump(tmp_path: Path) -> None:
    _fails(
        write_dump(tmp_path / "empty.xml.bz2", HEAD + FOOT),
        tmp_path / "out",
        r"empty\.xml\.bz2: no pages",
    )


def test_invalid_utf8_names_the_offset(tmp_path: Path) -> None:
    xml = (HEAD + page(1, "A", PROSE) + page(2, "B", "caf\x00 au lait " + PROSE) + FOOT).encode()
    bad = xml.index(b"caf\x00") + 3
    xml = xml.replace(b"caf\x00", b"caf\xe9")  # Latin-1, not UTF-8
    _fails(
        write_dump(tmp_path / "latin.xml.bz2", xml),
        tmp_path / "out",
        rf"latin\.xml\.bz2: text is not valid UTF-8 at XML byte {bad}$",
    )


def test_wrong_index(tmp_path: Path) -> None:
    pages = [page(i, f"T{i}", PROSE) for i in range(1, 6)]
    dump, index = write_multistream(tmp_path, pages)
    lines = bz2.decompress(index.read_bytes()).decode().splitlines()
    size = dump.stat().st_size

    def with_lines(new: list[str]) -> Path:
        path = tmp_path / "bad-index.txt.bz2"
        path.write_bytes(bz2.compress(("\n".join(new) + "\n").encode()))
        return path

    out = tmp_path / "out"
    first = int(lines[0].split(":")[0])
    _fails(
        dump,
        out,
        r"bad-index\.txt\.bz2: line 3: offset \d+ is past the end",
        with_lines(lines[:2] + [f"{size + 10}:3:T3"]),
    )
    _fails(
        dump,
        out,
        r"bad-index\.txt\.bz2: line 1: offset \d+ is not a bz2 stream start",
        with_lines([f"{first + 1}:{line.split(':', 1)[1]}" for line in lines]),
    )
    _fails(
        dump,
        out,
        r"bad-index\.txt\.bz2: line 1: the stream at compressed byte \d+ holds pages \[1, 2\]",
        with_lines([line.replace(":1:", ":9:") for line in lines]),
    )
    _fails(
        dump,
        out,
        r"bad-index\.txt\.bz2: line 2: expected 'offset:page_id:title'",
        with_lines(lines[:1] + ["garbage"] + lines[1:]),
    )
    _fails(
        dump,
        out,
        r"bad-index\.txt\.bz2: line 1: offset 0 is the dump's header",
        with_lines([f"0:{line.split(':', 1)[1]}" for line in lines]),
    )


# --------------------------------------------------------------------------- output folder


def test_rerun_after_interruption_replaces_output(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "d.xml.bz2", HEAD + page(1, "A", PROSE) + FOOT)
    out = tmp_path / "out"
    stale = tmp_path / ".out.tmp-killed"  # what a killed run leaves behind
    stale.mkdir()
    (stale / "part-00000.parquet").write_text("half written")
    out.mkdir()
    (out / "part-00007.parquet").write_text("from an older run")
    run(CFG, dump, out, processes=1)
    assert sorted(p.name for p in out.iterdir()) == ["part-00000.parquet", "stats.json"]
    assert not stale.exists() and read_out(out)["title"].to_pylist() == ["A"]


def test_failed_run_keeps_previous_output(tmp_path: Path) -> None:
    good = write_dump(tmp_path / "good.xml.bz2", HEAD + page(1, "A", PROSE) + FOOT)
    out = tmp_path / "out"
    run(CFG, good, out, processes=1)
    with pytest.raises(GptpipeError):
        run(CFG, write_dump(tmp_path / "bad.xml.bz2", HEAD + FOOT), out, processes=1)
    assert read_out(out)["title"].to_pylist() == ["A"]


# --------------------------------------------------------------------------- CLI


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    (cwd / "params.yaml").write_text("scale: micro\n")
    return subprocess.run(
        [sys.executable, "-m", "gptpipe", "ingest", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_success(shared_data: Path, tmp_path: Path) -> None:
    done = _cli(
        "--input",
        str(shared_data / MULTI),
        "--index",
        str(shared_data / INDEX),
        "--output",
        str(tmp_path / "out"),
        "--processes",
        "2",
        "--set",
        "min_chars=1000",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["config"]["min_chars"] == 1000 and stats["config"]["val_fraction"] == 0.1
    assert stats["pages_seen"] == 206 and stats["mode"] == "multistream"


@pytest.mark.parametrize("kind", ["corrupt", "missing", "empty"])
def test_cli_one_line_errors(shared_data: Path, tmp_path: Path, kind: str) -> None:
    dump = tmp_path / f"{kind}.xml.bz2"
    if kind == "corrupt":
        data = bytearray((shared_data / TABLES).read_bytes())
        data[30_000:30_010] = bytes(10)
        dump.write_bytes(bytes(data))
    elif kind == "empty":
        write_dump(dump, HEAD + FOOT)
    done = _cli("--input", str(dump), "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gptpipe ingest: error: ")
    assert f"{kind}.xml.bz2" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_cli_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gptpipe", "ingest", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    for flag in ("--input", "--index", "--output", "--processes", "--params", "--set"):
        assert flag in done.stdout


def test_an_unfinished_parallel_read_is_not_closed_by_a_forked_child(tmp_path):
    """A parallel bz2 read left unfinished (after an error, say) may be garbage-collected in a
    forked child, such as a DataLoader worker of a later step in the same process; closing the
    reader there, where its threads do not exist, aborted the child (seen in CI)."""
    rng = random.Random(0)
    text = "".join(rng.choice("abcdefgh \n") for _ in range(3_000_000)).encode()
    path = tmp_path / "multi-block.bz2"
    path.write_bytes(bz2.compress(text))  # 900 kB blocks: several
    chunks = wiki.iter_bz2_parallel(path, 2)
    first = next(chunks)
    pid = os.fork()
    if pid == 0:  # the child finalizes its copy of the suspended generator
        code = 0
        try:
            chunks.close()
        except BaseException:
            code = 3
        os._exit(code)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    if done[0] == 0:  # it hangs joining threads it does not have
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung finalizing the parent's bz2 reader")
    assert os.waitstatus_to_exitcode(done[1]) == 0, "the child died finalizing the reader"
    assert first + b"".join(chunks) == text  # the parent's reader is untouched


def test_worker_pool_holds_at_most_two_items_per_process() -> None:
    """The pool may not run ahead of the writer: a part's memory must not grow with its size."""
    import time

    pulled: list[int] = []

    def items():
        for i in range(-40, 0):
            pulled.append(i)
            yield i

    results = ingest._map(abs, items(), 2)
    assert next(results) == 40
    time.sleep(0.5)  # time for the pool's feeder to run ahead, were it free to
    assert len(pulled) <= 2 * 2 + 1
    assert list(results) == list(range(39, 0, -1)) and len(pulled) == 40
    stopped = ingest._map(abs, items(), 2)
    next(stopped)
    start = time.perf_counter()
    stopped.close()  # a consumer that stops early (an error) must not hang the pool's shutdown
    assert time.perf_counter() - start < 5

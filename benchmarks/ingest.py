"""Benchmark `gptpipe ingest` against WikiExtractor on the same dump (not a test).

Builds a ~100 MB (XML) dump by repeating the real sample's pages under fresh page ids, as a
single bz2 stream and as a multistream file (one bz2 stream per 100 pages, level 9) with its
`offset:page_id:title` index, then times whole processes, interleaved over several runs:

- gptpipe ingest, single stream (no index);
- gptpipe ingest, multistream with the index;
- WikiExtractor (`python -m wikiextractor.WikiExtractor --no-templates --json`) on the single
  stream file (it has no use for an index). `--no-templates` is its faster mode and matches what
  gptpipe does (templates are dropped, not expanded), so the ratio is the conservative one;
  `--html-safe ""` keeps it from escaping `&` and `<` in its JSON (which would count as leaks).

A fourth command, interleaved with them, only decompresses the multistream file (its streams
split into one contiguous range per process, libbz2, output discarded): no ingest that reads the
whole dump with libbz2 can be faster, so its ratio to WikiExtractor is the ceiling of any
"x WikiExtractor" figure on this machine with this many processes.

It prints pages/s of each (pages in the dump / wall seconds, median over runs) and the ratios,
the CPU seconds of each (all its processes), the prose characters each keeps (all of them, and
on the articles both keep), and the share of articles with leftover markup
(`gptpipe.ingest.wikitext.markup_leaks` patterns). Run it on an otherwise idle machine: other work
takes cores from the better parallelised tool most (the load average is printed).

    python benchmarks/ingest.py [--xml-mb 100] [--processes 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import bz2
import json
import multiprocessing
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from gptpipe.ingest import wiki
from gptpipe.ingest.wikitext import leakage_rate

REPO = Path(__file__).resolve().parents[1]
FLOOR = "bz2 decompression only"
SAMPLE = "wikipedia/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_PAGE_RE = re.compile(rb"[ \t]*<page>.*?</page>\n?", re.S)
_ID_RE = re.compile(rb"<id>\d+</id>")
_TITLE_RE = re.compile(rb"<title>(.*?)</title>", re.S)


def build_dumps(sample: Path, folder: Path, xml_bytes: int, per_stream: int = 100) -> dict:
    """Write bench.xml.bz2, bench-multistream.xml.bz2 and its index into `folder`."""
    xml = bz2.decompress(sample.read_bytes())
    first, last = xml.index(b"<page>"), xml.rindex(b"</page>") + len(b"</page>\n")
    head = xml[: xml.rfind(b"\n", 0, first) + 1]
    foot = xml[last:]
    pages = _PAGE_RE.findall(xml, len(head), last)
    out: list[bytes] = []
    titles: list[bytes] = []
    size, page_id = 0, 0
    while size < xml_bytes:
        for page in pages:
            page_id += 1
            page = _ID_RE.sub(b"<id>%d</id>" % page_id, page, count=1)
            out.append(page)
            titles.append(_TITLE_RE.search(page).group(1))
            size += len(page)
            if size >= xml_bytes:
                break
    groups = [b"".join(out[i : i + per_stream]) for i in range(0, len(out), per_stream)]
    with multiprocessing.Pool() as pool:
        single = pool.apply_async(bz2.compress, (head + b"".join(out) + foot, 9))
        streams = pool.starmap(bz2.compress, [(g, 9) for g in [head, *groups, foot]])
        (folder / "bench.xml.bz2").write_bytes(single.get())
    offsets, pos = [], 0
    for s in streams:
        offsets.append(pos)
        pos += len(s)
    (folder / "bench-multistream.xml.bz2").write_bytes(b"".join(streams))
    lines = []
    for i in range(len(out)):
        offset = offsets[1 + i // per_stream]  # stream 0 is the header
        lines.append(b"%d:%d:%s" % (offset, i + 1, titles[i]))
    (folder / "bench-index.txt.bz2").write_bytes(bz2.compress(b"\n".join(lines) + b"\n", 9))
    return {"pages": len(out), "xml_bytes": len(head) + size + len(foot)}


def _become_subreaper() -> None:
    """Adopt orphaned descendants (Linux): a fork server's workers outlive their parent's wait,
    so without this their CPU time never reaches RUSAGE_CHILDREN."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # 36 = PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        print("note: cannot become a child subreaper; CPU seconds may miss fork-server workers")


def _reap_orphans() -> None:
    """Wait for every adopted descendant, so its CPU time is counted."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _decompress_range(args: tuple[str, int, int]) -> int:
    path, start, end = args
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    return len(wiki.decompress_range(data, path))  # as ingest decompresses its streams


def decompress_only(dump: Path, index: Path, processes: int) -> int:
    """Decompress every stream of a multistream dump over `processes` processes, one
    contiguous range of streams each (the floor for any reader of the whole dump)."""
    size = dump.stat().st_size
    starts = [s.offset for s in wiki.read_index(index, dump, size)]
    cuts = [0] + [starts[len(starts) * i // processes] for i in range(1, processes)] + [size]
    ranges = [(str(dump), a, b) for a, b in zip(cuts, cuts[1:]) if b > a]
    with multiprocessing.Pool(processes) as pool:
        return sum(pool.map(_decompress_range, ranges))


def _timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and all its descendants) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    _reap_orphans()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def _gptpipe_texts(folder: Path) -> dict[int, str]:
    table = pq.read_table(sorted(folder.glob("*.parquet")), columns=["id", "text"])
    return dict(zip(table["id"].to_pylist(), table["text"].to_pylist()))


def _wikiextractor_texts(folder: Path) -> dict[int, str]:
    texts = {}
    for path in sorted(folder.rglob("wiki_*")):
        for line in path.read_text(encoding="utf-8").splitlines():
            doc = json.loads(line)
            if doc["text"].strip():
                texts[int(doc["id"])] = doc["text"]
    return texts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--xml-mb", type=float, default=100, help="size of the benchmark dump's XML (MB)"
    )
    ap.add_argument("--processes", type=int, default=2, help="processes for both tools")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each tool (interleaved)")
    ap.add_argument(
        "--mirror",
        type=Path,
        default=Path(os.environ.get("GPTPIPE_MIRROR", REPO.parent / "shared" / "data")),
        help="folder with the real sample data (default: $GPTPIPE_MIRROR or ../shared/data)",
    )
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the dumps and outputs here, and reuse the dumps on the next run "
        "(default: a temporary folder, removed)",
    )
    ap.add_argument("--decompress-only", nargs=2, type=Path, metavar=("DUMP", "INDEX"),
                    help=argparse.SUPPRESS)  # the floor command, run as a process of its own
    args = ap.parse_args(argv)
    if args.decompress_only:
        decompress_only(*args.decompress_only, args.processes)
        return 0
    _become_subreaper()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="gptpipe-bench-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _bench(args, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def _bench(args: argparse.Namespace, work: Path) -> int:
    t = time.perf_counter()
    marker, target = work / "dumps.json", int(args.xml_mb * 1e6)
    cached = json.loads(marker.read_text()) if marker.exists() else {}
    if cached.get("target") == target:  # a kept --workdir: reuse its dumps
        info = cached
    else:
        info = build_dumps(args.mirror / SAMPLE, work, target) | {"target": target}
        marker.write_text(json.dumps(info))
    print(
        f"dump: {info['pages']} pages, {info['xml_bytes'] / 1e6:.1f} MB XML, "
        f"{(work / 'bench.xml.bz2').stat().st_size / 1e6:.1f} MB bz2 "
        f"(built in {time.perf_counter() - t:.0f} s)"
    )
    (work / "params.yaml").write_text("scale: gpt1\n")
    n = str(args.processes)
    gp = [
        sys.executable,
        "-m",
        "gptpipe",
        "ingest",
        "--params",
        str(work / "params.yaml"),
        "--processes",
        n,
    ]
    cmds = {
        "gptpipe single-stream": gp
        + ["--input", str(work / "bench.xml.bz2"), "--output", str(work / "out-single")],
        "gptpipe multistream+index": gp
        + [
            "--input",
            str(work / "bench-multistream.xml.bz2"),
            "--index",
            str(work / "bench-index.txt.bz2"),
            "--output",
            str(work / "out-multi"),
        ],
        "wikiextractor": [
            sys.executable,
            "-m",
            "wikiextractor.WikiExtractor",
            "--processes",
            n,
            "--no-templates",
            "--html-safe",
            "",
            "--json",
            "-q",
            "-o",
            str(work / "out-we"),
            str(work / "bench.xml.bz2"),
        ],
        FLOOR: [
            sys.executable,
            str(Path(__file__).resolve()),
            "--processes",
            n,
            "--decompress-only",
            str(work / "bench-multistream.xml.bz2"),
            str(work / "bench-index.txt.bz2"),
        ],
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
    print(
        f"load average before: {os.getloadavg()[0]:.2f} (other work on the machine slows "
        "every tool, and the better parallelised one most)",
        flush=True,
    )
    for run in range(args.runs):
        order = list(cmds) if run % 2 == 0 else list(cmds)[::-1]
        for name in order:
            if name == "wikiextractor":  # it appends to an existing folder: start it empty
                shutil.rmtree(work / "out-we", ignore_errors=True)
            times[name].append(_timed(cmds[name]))
            wall, cpu = times[name][-1]
            print(f"  run {run + 1} {name}: {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)
    _report(info, times, work, args.processes)
    return 0


def _report(
    info: dict, times: dict[str, list[tuple[float, float]]], work: Path, processes: int
) -> None:
    ours = {
        "gptpipe single-stream": _gptpipe_texts(work / "out-single"),
        "gptpipe multistream+index": _gptpipe_texts(work / "out-multi"),
    }
    theirs = _wikiextractor_texts(work / "out-we")
    wall = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    we_rate = info["pages"] / wall["wikiextractor"]
    runs = len(times["wikiextractor"])
    print(f"\n{info['pages']} pages, {processes} processes, median of {runs} runs; "
          f"load average now {os.getloadavg()[0]:.2f}")
    print(
        f"{'tool':26s} {'wall s':>7s} {'pages/s':>8s} {'x WE':>6s} {'CPU s':>7s} {'x WE':>6s} "
        f"{'articles':>8s} {'chars':>11s} {'leakage':>8s}"
    )
    for name in times:
        rate = info["pages"] / wall[name]
        line = (f"{name:26s} {wall[name]:7.2f} {rate:8.1f} {rate / we_rate:6.2f} {cpu[name]:7.2f} "
                f"{cpu['wikiextractor'] / cpu[name]:6.2f}")
        if name != FLOOR:
            texts = ours.get(name, theirs)
            line += (f" {len(texts):8d} {sum(map(len, texts.values())):11d} "
                     f"{leakage_rate(texts.values()):8.2%}")
        print(line)
    floor = wall["wikiextractor"] / wall[FLOOR]
    ours_multi = wall["wikiextractor"] / wall["gptpipe multistream+index"]
    print(
        f"ceiling: decompressing alone is {floor:.2f}x WikiExtractor's pages/s here; gptpipe "
        f"multistream reaches {ours_multi / floor:.0%} of it (decompression is "
        f"{cpu[FLOOR] / cpu['gptpipe multistream+index']:.0%} of its CPU seconds)"
    )
    mine = ours["gptpipe multistream+index"]
    common = mine.keys() & theirs.keys()
    ours_chars = sum(len(mine[i]) for i in common)
    their_chars = sum(len(theirs[i]) for i in common)
    print(
        f"prose chars, all articles: gptpipe/WikiExtractor = "
        f"{sum(map(len, mine.values())) / max(1, sum(map(len, theirs.values()))):.3f}"
    )
    print(
        f"prose chars, the {len(common)} articles both keep: gptpipe/WikiExtractor = "
        f"{ours_chars / max(1, their_chars):.3f}"
    )
    print(
        f"single-stream and multistream outputs identical: {ours['gptpipe single-stream'] == mine}"
    )


if __name__ == "__main__":
    sys.exit(main())

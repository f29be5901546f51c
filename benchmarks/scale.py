"""Benchmark the data half at scale: ingest, bpe and shard on 1 and on 8 dump parts (not a test).

1. Builds 8 multistream dump parts (`.xml.bz2`, one bz2 stream per 100 pages, level 9, with their
   `offset:page_id:title` index, as Wikimedia publishes them) of about `--xml-mb` MB of XML each,
   by repeating the real sample's pages under fresh page ids and titles. Size 1x is part 1 alone;
   size 8x is parts 1-8. Everything is built in a temporary folder (or `--workdir`).
2. Runs the real stage entry points, each as its own `python -m gptpipe <stage>` process at
   `scale: gpt1` (40,478-token BPE, 512-token windows), as the workflow runs them:
   - ingest: one job per part, one after another, each using every core (`threads:
     all_cores()` in the workflow, so Snakemake runs them one at a time on one machine);
     then the 8 parts' pages as one 8x-sized part, one job (skip: `--skip-big-part`): parts of
     equal size make the per-part peaks equal anyway, so this job is what checks that ingest
     streams *within* a part (enwiki-20200501's parts hold ~11x this benchmark's bz2);
   - bpe: one job over every part's output;
   - shard: one job over every part's output (processes: the stage's default, `auto`).
3. Measures each stage in a wrapper process of its own (a child subreaper): wall seconds, CPU
   seconds of the whole process tree, the peak of the tree's summed PSS (sampled every 0.1 s
   from /proc; what the job really holds, as a cgroup's memory limit sees it) and the largest
   single process's peak RSS (`ru_maxrss` of the wrapper's children, which is per wrapper,
   hence per stage). It prints throughputs (XML MB/s, articles/s, tokens/s) per stage and size.
4. Estimates BPE's memory for the full enwiki-20200501 (59 parts), which repeated pages cannot
   show (they keep the distinct words constant): a Heaps' law fit V = K n^beta of distinct
   pre-tokens over prefixes of the sample's ingested text, and the tokenizers BPE trainer's
   memory and time per distinct pre-token from training on two sizes of that text. With the
   measured stage rates this gives `gptpipe.datacost`'s constants (copy them there).

It ends with `peak RSS ratio 8x/1x: ingest X, bpe Y, shard Z` (tree PSS; ingest: the one-part
job on all 8 parts' pages, or with `--skip-big-part` the largest part job). Linux only (/proc).
About 12 minutes on an idle 2-core machine (45 on a busy one).

    python benchmarks/scale.py [--xml-mb 100] [--parts 8] [--skip-big-part] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import bz2
import ctypes
import itertools
import json
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from gptpipe import datacost

REPO = Path(__file__).resolve().parents[1]
SAMPLE = "wikipedia/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
PER_STREAM = 100  # pages per bz2 stream, as Wikimedia's multistream dumps
_PAGE_RE = re.compile(rb"[ \t]*<page>.*?</page>\n?", re.DOTALL)
_ID_RE = re.compile(rb"<id>\d+</id>")
_TITLE_RE = re.compile(rb"<title>(.*?)</title>", re.DOTALL)
_PAREN_END_RE = re.compile(rb" \([^()]*\)$")


# ------------------------------------------------------------------ the dump parts


def _renamed(title: bytes, copy: int) -> bytes:
    """A fresh title for the `copy`-th repeat, keeping a trailing "(...)" last, so that
    "X (disambiguation)" stays a disambiguation page."""
    if copy == 0:
        return title
    m = _PAREN_END_RE.search(title)
    cut = m.start() if m else len(title)
    return title[:cut] + b" ~%d" % copy + title[cut:]


def _compress_part(job: tuple[int, list[bytes]]) -> tuple[int, list[bytes]]:
    n, groups = job
    return n, [bz2.compress(g, 9) for g in groups]


def build_parts(mirror: Path, folder: Path, parts: int, xml_bytes: int) -> dict:
    """Write part-NN.xml.bz2 + part-NN-index.txt.bz2 (NN = 1..parts) into `folder`; the page
    streams are also kept per part so that `one_big_part` can join them without recompressing."""
    xml = bz2.decompress((mirror / SAMPLE).read_bytes())
    first, last = xml.index(b"<page>"), xml.rindex(b"</page>") + len(b"</page>\n")
    head, foot = xml[: xml.rfind(b"\n", 0, first) + 1], xml[last:]
    pages = _PAGE_RE.findall(xml, len(head), last)
    jobs, entries, page_id, copy = [], [], 0, 0
    for n in range(1, parts + 1):
        out: list[bytes] = []
        titles: list[tuple[int, int, bytes]] = []  # (stream, page id, title)
        size = 0
        while size < xml_bytes:
            for page in pages:
                page_id += 1
                title = _renamed(_TITLE_RE.search(page).group(1), copy)
                page = _ID_RE.sub(b"<id>%d</id>" % page_id, page, count=1)
                page = _TITLE_RE.sub(b"<title>" + title.replace(b"\\", b"\\\\") + b"</title>",
                                     page, count=1)
                titles.append((1 + len(out) // PER_STREAM, page_id, title))
                out.append(page)
                size += len(page)
                if size >= xml_bytes:
                    break
            copy += 1
        groups = [b"".join(out[i: i + PER_STREAM]) for i in range(0, len(out), PER_STREAM)]
        jobs.append((n, [head, *groups, foot]))
        entries.append((titles, len(head) + size + len(foot)))
    with multiprocessing.get_context("fork").Pool() as pool:
        streams = dict(pool.imap_unordered(_compress_part, jobs))
    info = {"parts": [], "sample_pages": len(pages)}
    for n, (titles, size) in zip(range(1, parts + 1), entries):
        _write_multistream(folder / f"part-{n:02d}", streams[n], titles)
        info["parts"].append({"xml_bytes": size, "pages": len(titles),
                              "bz2_bytes": (folder / f"part-{n:02d}.xml.bz2").stat().st_size})
        (folder / f"part-{n:02d}.streams.json").write_text(json.dumps([len(s) for s in streams[n]]))
    return info


def _write_multistream(stem: Path, streams: list[bytes],
                       pages: list[tuple[int, int, bytes]]) -> None:
    """`stem.xml.bz2` (header stream, page streams, footer stream) and `stem-index.txt.bz2`;
    `pages`: (stream number, page id, title) of every page."""
    offsets, pos = [], 0
    for s in streams:
        offsets.append(pos)
        pos += len(s)
    Path(f"{stem}.xml.bz2").write_bytes(b"".join(streams))
    lines = [b"%d:%d:%s" % (offsets[k], pid, title) for k, pid, title in pages]
    Path(f"{stem}-index.txt.bz2").write_bytes(bz2.compress(b"\n".join(lines) + b"\n", 9))


def one_big_part(folder: Path, parts: int, out: Path | None = None) -> Path:
    """`big.xml.bz2` in `out` (default `folder`): every part's page streams between one header
    and one footer stream (the compressed streams are copied, not recompressed), with its
    index."""
    streams: list[bytes] = []
    pages: list[tuple[int, int, bytes]] = []
    for n in range(1, parts + 1):
        data = (folder / f"part-{n:02d}.xml.bz2").read_bytes()
        sizes = json.loads((folder / f"part-{n:02d}.streams.json").read_text())
        cuts = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        stream_at = {offset: k for k, offset in enumerate(cuts)}
        base = len(streams) - 1 if n > 1 else 0  # the part's header stream is dropped
        own = [data[a:b] for a, b in itertools.pairwise(cuts)]  # header, pages..., footer
        streams += own[1:-1] if n > 1 else own[:-1]
        index = bz2.decompress((folder / f"part-{n:02d}-index.txt.bz2").read_bytes())
        for line in index.splitlines():
            offset, pid, title = line.split(b":", 2)
            pages.append((base + stream_at[int(offset)], int(pid), title))
        if n == parts:
            streams.append(own[-1])
    _write_multistream((out or folder) / "big", streams, pages)
    return (out or folder) / "big.xml.bz2"


# ------------------------------------------------------------------ measuring a stage


@dataclass
class Measured:
    wall: float  # seconds
    cpu: float  # CPU seconds of the stage's whole process tree
    peak_pss: float  # bytes: peak of the tree's summed PSS (sampled)
    peak_proc_rss: float  # bytes: the largest single process's peak RSS (ru_maxrss)


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            kids[int(stat[stat.rindex(b")") + 2:].split()[1])].append(int(entry.name))
    return kids


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree_pss(root: int) -> int:
    kids, total = _children(), 0
    stack = list(kids.get(root, ()))
    while stack:
        pid = stack.pop()
        stack += kids.get(pid, ())
        total += _pss(pid)
    return total


def measured(cmd: list[str], log: Path, interval: float = 0.1) -> Measured:
    """Run `cmd` under this script's `--wrap` mode and sample its tree's PSS meanwhile."""
    wrap = [sys.executable, str(Path(__file__).resolve()), "--wrap", str(log), "--", *cmd]
    start = time.perf_counter()
    proc = subprocess.Popen(wrap, stdout=subprocess.PIPE, text=True)
    peak = [0]

    def poll() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_pss(proc.pid))  # the wrapper's descendants only
            time.sleep(interval)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - start
    poller.join()
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    usage = json.loads(out.strip().splitlines()[-1])
    return Measured(wall, usage["cpu"], peak[0], usage["maxrss_kb"] * 1024)


def wrap_main(log: Path, cmd: list[str]) -> int:
    """Run `cmd` as a child subreaper (fork-server workers outlive their parent's wait and are
    adopted here), wait for every descendant, print the children's CPU seconds and max RSS."""
    ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    with open(log, "w") as err:
        rc = subprocess.run(cmd, stdout=err, stderr=err, check=False).returncode
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"cpu": u.ru_utime + u.ru_stime, "maxrss_kb": u.ru_maxrss}))
    return rc


# ------------------------------------------------------------------ the stages


def _stage(name: str, work: Path, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", "gptpipe", name, "--params", str(work / "params.yaml"),
            *map(str, args)]


def run_size(work: Path, label: str, parts: list[int]) -> dict:
    """ingest (one job per part, in turn), bpe and shard on `parts`; figures per stage."""
    out, logs = work / label, work / "logs"
    logs.mkdir(exist_ok=True)
    ingests, runs = [], []
    for n in parts:
        d = out / "ingest" / f"p{n:02d}"
        cmd = _stage("ingest", work, "--input", work / f"part-{n:02d}.xml.bz2",
                     "--index", work / f"part-{n:02d}-index.txt.bz2", "--output", d)
        runs.append(measured(cmd, logs / f"{label}-ingest-{n}.log"))
        ingests.append(d)
        print(f"  {label} ingest part {n}: {runs[-1].wall:.1f} s", flush=True)
    ingest = Measured(sum(r.wall for r in runs), sum(r.cpu for r in runs),
                      max(r.peak_pss for r in runs), max(r.peak_proc_rss for r in runs))
    bpe = measured(_stage("bpe", work, "--ingest", *ingests, "--output", out / "bpe"),
                   logs / f"{label}-bpe.log")
    print(f"  {label} bpe: {bpe.wall:.1f} s", flush=True)
    shard = measured(_stage("shard", work, "--ingest", *ingests, "--tokenizer",
                            out / "bpe" / "tokenizer.json", "--output", out / "shard"),
                     logs / f"{label}-shard.log")
    print(f"  {label} shard: {shard.wall:.1f} s", flush=True)
    stats = [json.loads((d / "stats.json").read_text()) for d in ingests]
    manifest = json.loads((out / "shard" / "manifest.json").read_text())
    splits = manifest["splits"].values()
    return {
        "stages": {"ingest": ingest, "bpe": bpe, "shard": shard},
        "xml_bytes": sum(s["xml_bytes"] for s in stats),
        "bz2_bytes": sum(s["input_bytes"] for s in stats),
        "articles": sum(s["pages_kept"] for s in stats),
        "chars": sum(s["chars"] for s in stats),
        "parquet_bytes": sum(p.stat().st_size for d in ingests for p in d.glob("*.parquet")),
        "tokens": sum(s["tokens"] + s["dropped_tail_tokens"] for s in splits),
        "shard_bytes": sum(p.stat().st_size for p in (out / "shard").glob("*.tar")),
        "processes": stats[0]["processes"],
        "ingest_dirs": ingests,
    }


def print_table(sizes: dict[str, dict]) -> None:
    print(f"\n{'size':4s} {'stage':6s} {'wall s':>7s} {'CPU s':>7s} {'XML MB/s':>9s} "
          f"{'articles/s':>10s} {'tokens/s':>10s} {'peak PSS MB':>11s} {'max proc RSS MB':>15s}")
    for label, s in sizes.items():
        for name, m in s["stages"].items():
            print(f"{label:4s} {name:6s} {m.wall:7.1f} {m.cpu:7.1f} "
                  f"{s['xml_bytes'] / 1e6 / m.wall:9.2f} {s['articles'] / m.wall:10.1f} "
                  f"{s['tokens'] / m.wall:10.0f} {m.peak_pss / 1e6:11.0f} "
                  f"{m.peak_proc_rss / 1e6:15.0f}")


# ------------------------------------------------------------------ distinct words and BPE


def sample_texts(ingest_dir: Path, sample_pages: int) -> list[str]:
    """The ingested text of the sample's own pages (the first copy: page ids 1..sample_pages)."""
    table = pq.read_table(sorted(ingest_dir.glob("*.parquet")), columns=["id", "text"])
    return [t for i, t in zip(table["id"].to_pylist(), table["text"].to_pylist())
            if i <= sample_pages]


def distinct_curve(texts: list[str], halvings: int = 8) -> tuple[list[int], list[int], int]:
    """(n, V) over prefixes of n/2^halvings .. n byte-level pre-tokens of `texts` (the "words"
    the BPE trainer counts; the larger prefixes, as the fit is extrapolated upwards), and the
    whitespace word count."""
    from tokenizers import pre_tokenizers

    pre = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokens = [w for t in texts for w, _ in pre.pre_tokenize_str(t)]
    marks = {len(tokens) >> j for j in range(halvings + 1)}
    seen: set[str] = set()
    ns, vs = [], []
    for n, w in enumerate(tokens, 1):
        seen.add(w)
        if n in marks:
            ns.append(n)
            vs.append(len(seen))
    return ns, vs, sum(len(t.split()) for t in texts)


def bpe_probe_main(path: Path, chars: int) -> int:
    """Train the stage's BPE (gpt1 scale's config) on the first `chars` characters of the texts
    in `path` (JSON list); a corpus too small for the full vocabulary still trains fully."""
    from gptpipe.bpe import tokenizer
    from gptpipe.config import BpeConfig
    from gptpipe.errors import GptpipeError

    texts, kept, total = json.loads(path.read_text()), [], 0
    for t in texts:
        if total >= chars:
            break
        kept.append(t[: chars - total])
        total += len(kept[-1])
    try:
        tokenizer.train(kept, BpeConfig())
    except GptpipeError as exc:
        if "corpus too small" not in str(exc):
            raise
    return 0


def bpe_per_word(work: Path, texts: list[str], v_of_chars) -> tuple[Measured, Measured, int, int]:
    """Train on an eighth and on all of `texts` (separate processes): the two runs and their
    distinct pre-token counts, for the trainer's memory and time per distinct word."""
    path = work / "probe.json"
    path.write_text(json.dumps(texts))
    total = sum(map(len, texts))
    runs, vs = [], []
    for chars in (total // 8, total):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--bpe-probe", str(path), str(chars)]
        runs.append(measured(cmd, work / "logs" / f"probe-{chars}.log"))
        vs.append(v_of_chars(chars))
    return runs[0], runs[1], vs[0], vs[1]


def distinct_in_prefix(texts: list[str], chars: int) -> int:
    from tokenizers import pre_tokenizers

    pre, seen, total = pre_tokenizers.ByteLevel(add_prefix_space=False), set(), 0
    for t in texts:
        if total >= chars:
            break
        piece = t[: chars - total]
        total += len(piece)
        seen.update(w for w, _ in pre.pre_tokenize_str(piece))
    return len(seen)


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--wrap"]:
        return wrap_main(Path(argv[1]), argv[3:])
    if argv[:1] == ["--bpe-probe"]:
        return bpe_probe_main(Path(argv[1]), int(argv[2]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split(
        "\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--xml-mb", type=float, default=100, help="XML per dump part (MB)")
    ap.add_argument("--parts", type=int, default=8, help="parts of the large size")
    ap.add_argument("--skip-big-part", action="store_true",
                    help="do not also ingest all parts' pages as one part (one job)")
    ap.add_argument("--mirror", type=Path,
                    default=Path(os.environ.get("GPTPIPE_MIRROR", REPO.parent / "shared/data")),
                    help="folder with the real sample data (default: $GPTPIPE_MIRROR or "
                    "../shared/data)")
    ap.add_argument("--workdir", type=Path, help="keep everything here (default: a temporary "
                    "folder, removed at the end)")
    args = ap.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gptpipe-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _bench(args, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def _bench(args: argparse.Namespace, work: Path) -> int:
    t = time.perf_counter()
    info = build_parts(args.mirror, work, args.parts, int(args.xml_mb * 1e6))
    xml = sum(p["xml_bytes"] for p in info["parts"])
    bz = sum(p["bz2_bytes"] for p in info["parts"])
    print(f"built {args.parts} parts: {xml / 1e6:.0f} MB XML, {bz / 1e6:.0f} MB bz2, "
          f"{info['parts'][0]['pages']} pages per part, in {time.perf_counter() - t:.0f} s; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (a shared machine "
          "inflates wall times; the ratios are what matter)", flush=True)
    (work / "params.yaml").write_text("scale: gpt1\n")
    sizes = {"1x": run_size(work, "1x", [1]),
             f"{args.parts}x": run_size(work, f"{args.parts}x", list(range(1, args.parts + 1)))}
    one, many = sizes["1x"], sizes[f"{args.parts}x"]
    print(f"\ningest: one job per part, one after another, {one['processes']} processes each; "
          "bpe and shard: one job over all parts (shard processes: auto)")
    print_table(sizes)
    ingest_peak = many["stages"]["ingest"].peak_pss
    if not args.skip_big_part:
        big = one_big_part(work, args.parts)
        m = measured(_stage("ingest", work, "--input", big, "--index", work / "big-index.txt.bz2",
                            "--output", work / "big-ingest"), work / "logs" / "big-ingest.log")
        print(f"{args.parts}x as one part, one ingest job: {m.wall:.1f} s, {m.cpu:.1f} CPU s, "
              f"{xml / 1e6 / m.wall:.2f} XML MB/s, peak PSS {m.peak_pss / 1e6:.0f} MB, max "
              f"proc RSS {m.peak_proc_rss / 1e6:.0f} MB")
        ingest_peak = m.peak_pss
    rates = _estimate(work, info, one, many, ingest_peak)
    ratios = [ingest_peak / one["stages"]["ingest"].peak_pss] + [
        many["stages"][s].peak_pss / one["stages"][s].peak_pss for s in ("bpe", "shard")]
    print(f"\nmeasured rates (gptpipe/datacost.py's Rates):\n{rates}")
    print(f"\npeak RSS ratio {args.parts}x/1x: ingest {ratios[0]:.2f}, bpe {ratios[1]:.2f}, "
          f"shard {ratios[2]:.2f}")
    return 0


def _estimate(work: Path, info: dict, one: dict, many: dict,
              ingest_peak: float) -> datacost.Rates:
    texts = sample_texts(one["ingest_dirs"][0], info["sample_pages"])
    ns, vs, words = distinct_curve(texts)
    heaps = datacost.fit_heaps(ns, vs)
    chars = sum(map(len, texts))
    print(f"\nsample's ingested text: {len(texts)} articles, {chars:,} chars, {words:,} words, "
          f"{ns[-1]:,} pre-tokens, {vs[-1]:,} distinct; Heaps fit V = {heaps.k:.2f} "
          f"n^{heaps.beta:.3f} over {len(ns)} prefixes ({ns[0]:,}..{ns[-1]:,} pre-tokens)")
    low, high, v_low, v_high = bpe_per_word(work, texts, lambda c: distinct_in_prefix(texts, c))
    b1, b8 = one["stages"]["bpe"], many["stages"]["bpe"]
    cpu_per_char = (b8.cpu - b1.cpu) / (many["chars"] - one["chars"])
    probe_chars = chars - chars // 8
    per_word_cpu = max(0.0, (high.cpu - low.cpu - cpu_per_char * probe_chars) / (v_high - v_low))
    per_word_bytes = (high.peak_pss - low.peak_pss) / (v_high - v_low)
    print(f"BPE trainer on {v_low:,} and {v_high:,} distinct pre-tokens: peak PSS "
          f"{low.peak_pss / 1e6:.0f} and {high.peak_pss / 1e6:.0f} MB -> "
          f"{per_word_bytes:.0f} bytes per distinct pre-token; "
          f"{per_word_cpu * 1e6:.1f} CPU us per distinct pre-token beyond counting "
          f"({cpu_per_char * 1e9:.1f} CPU ns per char, from bpe at the two sizes)")
    i1, s1, s8 = one["stages"]["ingest"], one["stages"]["shard"], many["stages"]["shard"]
    rates = datacost.Rates(
        xml_per_bz2=one["xml_bytes"] / one["bz2_bytes"],
        ingest_cpu_s_per_xml_mb=many["stages"]["ingest"].cpu / (many["xml_bytes"] / 1e6),
        ingest_peak_bytes=max(i1.peak_pss, ingest_peak),
        ingest_processes=one["processes"],
        parquet_per_char=many["parquet_bytes"] / many["chars"],
        chars_per_word=chars / words,
        pretokens_per_word=ns[-1] / words,
        words_per_article_sample=words / len(texts),
        heaps_k=heaps.k, heaps_beta=heaps.beta,
        bpe_cpu_s_per_char=cpu_per_char,
        bpe_cpu_s_per_distinct=per_word_cpu,
        bpe_base_bytes=b8.peak_pss - per_word_bytes * vs[-1],
        bpe_bytes_per_distinct=per_word_bytes,
        chars_per_token=many["chars"] / many["tokens"],
        shard_cpu_s_per_token=(s8.cpu - s1.cpu) / (many["tokens"] - one["tokens"]),
        shard_peak_bytes=max(s1.peak_pss, s8.peak_pss),
        shard_bytes_per_token=many["shard_bytes"] / many["tokens"],
    )
    print()
    for line in datacost.plan_lines(datacost.data_half(rates=rates)):
        print(line)
    return rates


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the `shard` stage and the pre-training loader (not a test).

1. Builds an `ingest`-format folder from the real sample's articles (raw wikitext of namespace-0
   pages, repeated under fresh ids up to `--text-mb`), and a byte-level BPE tokenizer
   (`--vocab`) trained on one copy of the sample.
2. Encode + pack + write: `gptpipe.shard.cli.run` with one process (the tokenizer's own
   `encode_batch` threads) and with a pool of `--processes` processes (one thread each),
   interleaved over `--runs`; stream tokens per wall second (median).
3. Read: one epoch of the train shards with `ShardLoader` (shuffled, (x, y) int64 batches,
   in-process) beside plain `webdataset.WebDataset(urls)` decoding each sample's bytes with
   numpy, interleaved over `--runs`; tokens per second (median) and the ratio (target: the loader
   at >= 0.8x of plain WebDataset).

    python benchmarks/shard.py [--text-mb 4] [--vocab 8192] [--context 128] [--runs 3]
"""

from __future__ import annotations

import argparse
import bz2
import os
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from gptpipe.bpe import tokenizer as bpe
from gptpipe import vocab
from gptpipe.config import BpeConfig, ShardConfig

# torch, polars, pyarrow and webdataset are imported where used: the encoding processes are
# spawned and re-import this script, and the real CLI's entry point imports none of them.

REPO = Path(__file__).resolve().parents[1]
SAMPLE = "wikipedia/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def sample_texts(mirror: Path) -> list[str]:
    """Raw wikitext of the sample's articles (namespace 0, no redirects)."""
    texts = []
    with bz2.open(mirror / SAMPLE) as f:
        for _, elem in ET.iterparse(f):
            if elem.tag.endswith("}page"):
                if elem.find("{*}ns").text == "0" and elem.find("{*}redirect") is None:
                    texts.append(elem.find("{*}revision/{*}text").text or "")
                elem.clear()
    return texts


def write_ingest(texts: list[str], folder: Path, chars: int) -> Path:
    """The articles repeated under fresh ids up to `chars`; every 20th in val."""
    import polars as pl

    rows, total, i = [], 0, 0
    while total < chars:
        text = texts[i % len(texts)]
        rows.append({"id": i, "title": f"p{i}", "text": text, "n_chars": len(text),
                     "split": "val" if i % 20 == 7 else "train"})
        total, i = total + len(text), i + 1
    folder.mkdir(parents=True)
    pl.DataFrame(rows).write_parquet(folder / "part-00000.parquet")
    return folder


def time_shard(cfg: ShardConfig, ingest: Path, tokenizer: Path, out: Path) -> tuple[float, int]:
    from gptpipe.shard import cli as stage

    start = time.perf_counter()
    m = stage.run(cfg, [ingest], tokenizer, out)
    seconds = time.perf_counter() - start
    tokens = sum(s["tokens"] + s["dropped_tail_tokens"] for s in m["splits"].values())
    return seconds, tokens


def read_loader(out: Path, batch_size: int) -> int:
    from gptpipe.pretrain.loader import ShardLoader

    tokens = 0
    for x, y in ShardLoader(out, "train", batch_size, seed=1):
        tokens += y.numel()
    return tokens


def read_webdataset(out: Path) -> int:
    import webdataset as wds

    urls = sorted(str(p) for p in out.glob("train-*.tar"))
    tokens = 0
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        tokens += len(np.frombuffer(sample["tokens.u16"], "<u2")) - 1  # targets, as the loader
    return tokens


def timed(fn, *args) -> tuple[float, int]:
    start = time.perf_counter()
    n = fn(*args)
    return time.perf_counter() - start, n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--mirror", type=Path,
                        default=Path(os.environ.get("GPTPIPE_MIRROR", REPO.parent / "shared/data")))
    parser.add_argument("--text-mb", type=float, default=4.0, help="characters of text (M)")
    parser.add_argument("--vocab", type=int, default=8192, help="BPE base vocabulary")
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--samples-per-shard", type=int, default=256)
    parser.add_argument("--processes", type=int, default=2, help="pool size to compare with 1")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    texts = sample_texts(args.mirror)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ingest = write_ingest(texts, work / "ingest", int(args.text_mb * 1e6))
        bpe_cfg = BpeConfig(vocab_size=args.vocab, style="bytelevel")
        vocab.save(bpe.train(texts, bpe_cfg), work / "tokenizer.json")
        enc: dict[int, list[float]] = {1: [], args.processes: []}
        for run in range(args.runs):
            for procs in enc:
                cfg = ShardConfig(context=args.context, samples_per_shard=args.samples_per_shard,
                                  processes=procs)
                seconds, tokens = time_shard(cfg, ingest, work / "tokenizer.json", work / "out")
                enc[procs].append(tokens / seconds)
                print(f"run {run}: shard, {procs} process(es): {tokens:,} tokens in "
                      f"{seconds:.2f} s", flush=True)
        read: dict[str, list[float]] = {"ShardLoader": [], "webdataset": []}
        for run in range(args.runs):
            for name, fn, extra in (("webdataset", read_webdataset, ()),
                                    ("ShardLoader", read_loader, (args.batch_size,))):
                seconds, tokens = timed(fn, work / "out", *extra)
                read[name].append(tokens / seconds)
                print(f"run {run}: read, {name}: {tokens:,} tokens in {seconds:.3f} s", flush=True)

    med = {k: statistics.median(v) for k, v in (enc | read).items()}
    print(f"\nencode+write, 1 process:  {med[1] / 1e6:.3f} M tokens/s (median of {args.runs})")
    print(f"encode+write, {args.processes} processes: {med[args.processes] / 1e6:.3f} M tokens/s"
          f"  ({med[args.processes] / med[1]:.2f}x of 1 process)")
    print(f"read, plain WebDataset:   {med['webdataset'] / 1e6:.2f} M tokens/s")
    print(f"read, ShardLoader:        {med['ShardLoader'] / 1e6:.2f} M tokens/s  "
          f"({med['ShardLoader'] / med['webdataset']:.2f}x of plain WebDataset; target >= 0.8x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

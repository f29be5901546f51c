"""`gptpipe shard`: encode the ingested articles into WebDataset shards of token windows.

    gptpipe shard --ingest results/ingest/p1 [...] --tokenizer results/bpe/tokenizer.json \\
        --output results/shard [--processes N]

Writes `OUTDIR/val-*.tar`, `OUTDIR/train-*.tar` and `OUTDIR/manifest.json` (format, dtype,
tokenizer sha256, per-shard samples and sha256, per-split documents and dropped tail, the
resolved config, seconds), all at once or not at all. The validation split goes first: it is
small, and too little of it fails the stage before the long training pass.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Sequence

from .. import vocab
from ..atomic import atomic_path, write_json
from ..cli import load_config, run_cli, stage_parser
from ..config import ShardConfig, to_dict
from ..ingest.corpus import iter_articles
from ..io import file_sha256
from . import reader, writer

log = logging.getLogger(__name__)


def run(cfg: ShardConfig, ingest_dirs: Sequence[Path], tokenizer: Path, output: Path,
        processes: int = 0) -> dict:
    """Write the shard folder `output`; return its manifest. `processes`: 0 = auto.

    How many processes encode is a property of the machine, not of the experiment: it is a flag,
    not a knob, so changing it never reruns anything, and the shards do not depend on it.
    """
    start = time.perf_counter()
    _, ids = vocab.load(tokenizer)
    tokenizer_sha256 = file_sha256(tokenizer)
    dtype = reader.token_dtype(ids.vocab_size)
    processes = processes or writer.auto_processes()
    source = ", ".join(str(d) for d in ingest_dirs)
    splits: dict[str, dict] = {}
    with atomic_path(output, is_dir=True) as tmp, \
            writer.Encoder(tokenizer, ids.eod, dtype, processes) as encoder:
        for split in ("val", "train"):
            log.info("encoding the %s split of %s with %d process(es)", split, source, processes)
            texts = (text for _, text in iter_articles(ingest_dirs, split=split))
            splits[split] = writer.write_split(encoder, texts, split, tmp, cfg.context,
                                               cfg.samples_per_shard, source=source)
            s = splits[split]
            log.info("%s: %d documents -> %d windows in %d shards (%d tail tokens dropped)",
                     split, s["documents"], s["samples"], len(s["shards"]),
                     s["dropped_tail_tokens"])
        manifest = {
            "format": reader.FORMAT, "context": cfg.context, "window": cfg.context + 1,
            "dtype": dtype.name, "vocab_size": ids.vocab_size,
            "tokenizer_sha256": tokenizer_sha256, "eod_id": ids.eod,
            "splits": {"train": splits["train"], "val": splits["val"]},
            "inputs": [str(d) for d in ingest_dirs], "config": to_dict(cfg),
            "seconds": round(time.perf_counter() - start, 3),
        }
        write_json(tmp / reader.MANIFEST_NAME, manifest)
    log.info("wrote %s in %.1f s", output, manifest["seconds"])
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("shard", __doc__.split("\n\n")[0])
    parser.add_argument("--ingest", nargs="+", required=True, type=Path, metavar="DIR",
                        help="`ingest` output folders (Parquet), in order")
    parser.add_argument("--tokenizer", required=True, type=Path, metavar="FILE",
                        help="tokenizer.json written by `bpe`")
    parser.add_argument("--output", required=True, type=Path, metavar="DIR",
                        help="shard folder to write (replaced as a whole)")
    parser.add_argument("--processes", type=int, default=None, metavar="N",
                        help="encoding processes (default 0 = auto: one per core, 1 on <= 2 cores)")

    def body(args: argparse.Namespace) -> None:
        run(load_config(args, "shard"), args.ingest, args.tokenizer, args.output,
            processes=max(0, args.processes or 0))

    return run_cli("shard", argv, parser, body)

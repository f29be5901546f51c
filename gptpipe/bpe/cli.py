"""`gptpipe bpe`: train the BPE tokenizer on the training split of every ingested part (or, with
`bpe.max_chars`, on a sample of its articles spread over every part: `gptpipe.bpe.sample`)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Iterator, Sequence

from .. import vocab
from ..atomic import atomic_path, write_json
from ..cli import load_config, run_cli, stage_parser
from ..config import BpeConfig, to_dict
from ..io import file_sha256
from . import sample
from . import tokenizer as bpe

log = logging.getLogger(__name__)


def run(cfg: BpeConfig, ingest_dirs: Sequence[Path], output: Path) -> dict:
    """Write `output/tokenizer.json` and `output/bpe.json` (figures + resolved config)."""
    start = time.perf_counter()
    where = ", ".join(str(d) for d in ingest_dirs)
    chosen = sample.plan(ingest_dirs, cfg.max_chars)
    if chosen is not None:
        log.info("bpe.max_chars=%d: training on %d of %d articles, %d of %d characters",
                 cfg.max_chars, chosen.articles, chosen.total_articles, chosen.chars,
                 chosen.total_chars)
    log.info("training %s BPE, base vocabulary %d, on %s", cfg.style, cfg.vocab_size, where)
    tok = bpe.train(_Texts(ingest_dirs, chosen), cfg, source=where)
    figures = bpe.describe(tok, cfg) | {
        "seconds": round(time.perf_counter() - start, 3),
        "sample": None if chosen is None else {  # bpe.max_chars: what it trained on
            "chars": chosen.chars, "articles": chosen.articles,
            "split_chars": chosen.total_chars, "split_articles": chosen.total_articles},
        "inputs": [str(d) for d in ingest_dirs],
        "config": to_dict(cfg),
    }
    with atomic_path(output, is_dir=True) as tmp:
        vocab.save(tok, tmp / "tokenizer.json")
        figures["tokenizer_sha256"] = file_sha256(tmp / "tokenizer.json")
        write_json(tmp / "bpe.json", figures)
    log.info("wrote %s (vocabulary %d incl. special tokens)", output, figures["vocab_size"])
    return figures


class _Texts:
    """The training texts, read afresh on each pass (the gpt1 style makes two)."""

    def __init__(self, dirs: Sequence[Path], chosen: sample.Plan | None) -> None:
        self.dirs, self.chosen = dirs, chosen

    def __iter__(self) -> Iterator[str]:
        return sample.texts(self.dirs, self.chosen)


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("bpe", __doc__)
    parser.add_argument("--ingest", nargs="+", required=True, type=Path, metavar="DIR",
                        help="`ingest` output folders (Parquet); only the train split is used")
    parser.add_argument("--output", required=True, type=Path, metavar="DIR",
                        help="folder to write tokenizer.json and bpe.json into")

    def body(args: argparse.Namespace) -> None:
        run(load_config(args, "bpe"), args.ingest, args.output)

    return run_cli("bpe", argv, parser, body)

"""`gptpipe ingest`: one Wikipedia dump part -> clean prose in Parquet, plus `stats.json`
(how: `gptpipe.ingest.run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import load_config, run_cli, stage_parser
from ..errors import GptpipeError
from .run import run

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

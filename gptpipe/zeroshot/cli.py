"""`gptpipe zeroshot`: score pre-training's weight snapshots with the paper's zero-shot heuristics.

    gptpipe zeroshot --params params.yaml --pretrain results/pretrain --data data \\
        --output results/zeroshot

Writes OUTPUT/metrics.json (each task's score at every snapshot, the examples used, chance)
and OUTPUT/config.json, at once or not at all.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import load_config, run_cli, stage_parser
from .run import run

NAME = "zeroshot"


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--pretrain", required=True, type=Path, metavar="DIR",
                        help="`pretrain` output folder (model/, snapshots/)")
    parser.add_argument("--data", required=True, type=Path, metavar="DIR",
                        help="the data folder `fetch` wrote (glue/, other/)")
    parser.add_argument("--output", required=True, type=Path, metavar="DIR",
                        help="folder to write (replaced as a whole)")

    def body(args: argparse.Namespace) -> None:
        run(load_config(args, NAME), args.pretrain, args.data, args.output)

    return run_cli(NAME, argv, parser, body)

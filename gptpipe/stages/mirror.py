"""`gptpipe mirror DIR`: every source declared in `params.yaml: fetch`, downloaded and verified
into DIR in the layout `fetch` reads a mirror in (see `gptpipe.mirror`): run it where there is
internet, then point `mirror` at DIR on an air-gapped cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..mirror import build
from .common import load_config, run_cli, stage_parser


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(
        "mirror", "download every source declared in params.yaml: fetch into a mirror folder",
        section="fetch",
    )
    parser.add_argument("output", type=Path, metavar="DIR",
                        help="the mirror folder (created; sources already there and verified "
                             "are kept)")
    parser.add_argument("--only", action="extend", nargs="+", metavar="NAME", default=None,
                        help="mirror only these sources (default: every declared one)")
    parser.add_argument("--from", dest="upstream", type=Path, metavar="DIR", default=None,
                        help="copy from this mirror instead of downloading (to extend or "
                             "re-verify a mirror, or to add manual sources placed there)")

    def body(args: argparse.Namespace) -> None:
        build(load_config(args, "fetch"), args.output, upstream=args.upstream, only=args.only)

    return run_cli("mirror", argv, parser, body)

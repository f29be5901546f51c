"""What every stage CLI shares: `--params`/`--set`/`--scale`, logging, and one-line errors."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable

from .config import SCALES, load_params, parse_set, resolve_section
from .errors import GptpipeError


def stage_parser(name: str, description: str, section: str | None = None
                 ) -> argparse.ArgumentParser:
    """The options every command shares; `section`: the params section it reads (default: the
    command's own name)."""
    section = section or name
    whose = "its own section" if section == name else "section"
    parser = argparse.ArgumentParser(prog=f"gptpipe {name}", description=description)
    knobs = parser.add_argument_group("config")
    knobs.add_argument(
        "--params", default="params.yaml", metavar="FILE",
        help=f"params file; this command reads {whose} `{section}` (default: params.yaml)",
    )
    knobs.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help=f"override a key of section `{section}` (value parsed as YAML); repeatable",
    )
    knobs.add_argument(
        "--scale", choices=SCALES, default=None,
        help="preset to resolve against (default: the file's `scale`, else tiny)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def load_config(args: argparse.Namespace, section: str) -> Any:
    params = load_params(args.params)
    if args.scale:
        params = {**params, "scale": args.scale}
    return resolve_section(params, section, parse_set(args.set), where=str(args.params))


def run_cli(name: str, argv: list[str] | None, parser: argparse.ArgumentParser,
            body: Callable[[argparse.Namespace], None]) -> int:
    """Parse, run `body`, and turn a GptpipeError into one line on stderr and exit status 1.

    Set GPTPIPE_DEBUG=1 to get the traceback instead.
    """
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=f"%(asctime)s gptpipe {name}: %(message)s", datefmt="%H:%M:%S", stream=sys.stderr,
    )
    try:
        body(args)
    except GptpipeError as exc:
        if os.environ.get("GPTPIPE_DEBUG"):
            raise
        print(f"gptpipe {name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"gptpipe {name}: interrupted", file=sys.stderr)
        return 130
    return 0

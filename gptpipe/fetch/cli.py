"""`gptpipe fetch`: resolve every source declared in `params.yaml: fetch` into DATA_DIR.

Each source lands at `DATA_DIR/<path>` (and `<index_path>`), taken from the mirror when one is
set (`--mirror DIR`, else `$GPTPIPE_MIRROR`) or downloaded, always checksum-verified; see
`gptpipe.fetch.sources` for the rules. One log line per source goes to stderr.

Which dump parts are resolved follows `fetch.corpus`: the sample's declared part, or the parts of
a packaged corpus (`--set corpus=enwiki-20200501`, the gpt1 preset's), which `--only` can also
name one by one (the workflow runs one `fetch_dump` job per part). A download that was cut off
resumes from `<path>.part`, in the same run or the next.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from ..atomic import write_json
from ..cli import load_config, run_cli, stage_parser
from ..config import FetchConfig
from ..errors import GptpipeError
from .sources import fetch_source, select

log = logging.getLogger(__name__)


def skipped_line(cfg: FetchConfig, names: list[str]) -> str:
    """The one line that says which manual sources were skipped and why."""
    how = dict.fromkeys(" ".join(str(cfg.source(n).instructions).split()) for n in names)
    return (f"skipped {', '.join(names)}: source needs a manual download, and the tasks that "
            f"read it are not run ({'; '.join(how)}; put the files under the data folder or "
            "the mirror to run them)")


def run(cfg: FetchConfig, data_dir: Path, mirror: Path | None = None,
        only: list[str] | None = None, summary: Path | None = None,
        skipped: list[str] | None = None) -> dict:
    """Resolve the sources (all, or those in `only`); returns (and optionally writes) a summary.

    The summary lists per source how it was obtained ('cached', 'mirror', 'download'), its paths
    relative to `data_dir`, its size in bytes and the seconds it took. `skipped`: sources handed
    out on request (`kind: manual`) that are missing and left out on purpose (the workflow drops
    the tasks that read them); they are not resolved, and one line says so.
    """
    t0 = time.perf_counter()
    skipped = list(dict.fromkeys(skipped or []))
    for name in skipped:
        if cfg.source(name).kind != "manual":
            raise GptpipeError(f"fetch: --skipped {name}: only sources of kind 'manual' can be "
                               f"skipped (it is {cfg.source(name).kind!r})")
    if skipped:
        log.warning("%s", skipped_line(cfg, skipped))
    done = [fetch_source(s, data_dir, mirror, lookup=cfg.source) for s in select(cfg, only)
            if s.name not in skipped]
    figures = {
        "mirror": str(mirror) if mirror is not None else None,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - t0, 3),
        "sources": [
            {
                "name": f.name,
                "how": f.how,
                "paths": [str(p.relative_to(data_dir)) for p in f.paths],
                "bytes": f.bytes,
                "seconds": round(f.seconds, 3),
            }
            for f in done
        ],
    }
    if summary is not None:
        write_json(summary, figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(
        "fetch", "resolve every source in params.yaml: fetch (from a mirror or by download)"
    )
    parser.add_argument("--output", required=True, type=Path, metavar="DATA_DIR",
                        help="folder the sources are written into (laid out like the mirror)")
    parser.add_argument("--mirror", type=Path, metavar="DIR", default=None,
                        help="local folder laid out like DATA_DIR to copy sources from instead "
                             "of downloading (default: $GPTPIPE_MIRROR, else none)")
    parser.add_argument("--only", action="extend", nargs="+", metavar="NAME", default=None,
                        help="resolve only these sources or parts of the selected corpus "
                             "(repeatable)")
    parser.add_argument("--skipped", action="extend", nargs="+", metavar="NAME", default=None,
                        help="manual sources left out on purpose (missing; their tasks are "
                             "not run): said in one line, not fetched")
    parser.add_argument("--summary", type=Path, metavar="FILE", default=None,
                        help="also write a JSON summary (how, size, seconds per source) here")

    def body(args: argparse.Namespace) -> None:
        cfg = load_config(args, "fetch")
        env = os.environ.get("GPTPIPE_MIRROR")
        mirror = args.mirror or (Path(env) if env else None)
        run(cfg, args.output, mirror=mirror, only=args.only, summary=args.summary,
            skipped=args.skipped)

    return run_cli("fetch", argv, parser, body)

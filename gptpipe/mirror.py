"""Build a mirror folder: every declared source, verified, in the layout `fetch` reads a mirror in.

For air-gapped clusters: run `gptpipe mirror DIR` where there is internet, copy DIR to the
cluster, and point `mirror` (`GPTPIPE_MIRROR`, `--config mirror=DIR`) at it; `fetch` then takes
everything from DIR, checks every checksum again, and never opens a connection.

Layout (`gptpipe.fetch.sources` reads it): a plain file at `DIR/<path>` (and `<index_path>`); a
`repack` dump already repacked there, with its index; an archive kept packed, at
`DIR/<path><ext>` (`glue/CoLA.zip`), so that the compute side verifies it against the declared
checksum before unpacking. `manual` sources cannot be downloaded: they are taken from an
upstream mirror when one is given, else listed with their instructions (the mirror is then
incomplete, and `build` says so).

Which pre-training corpus goes in is the configuration's `fetch.corpus` (the preset's: the
sample at tiny scale, the 18 GB `enwiki-20200501` at `--scale gpt1`); `--corpus NAME` asks
for another one. Its parts land at `DIR/<path>` (`wikipedia/enwiki-20200501/<file name>`), so
a folder of parts fetched any other way serves as a mirror once laid out like that.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from .cli import load_config, run_cli, stage_parser
from .config import FetchConfig, Source
from .errors import GptpipeError
from .fetch.sources import ARCHIVE_SUFFIXES, Http, _obtain, fetch_source, select

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mirrored:
    """One source in the mirror: `how` is 'cached', 'download', 'mirror' (from an upstream
    mirror) or 'missing' (a manual source nobody has placed yet)."""

    name: str
    paths: tuple[str, ...]  # relative to the mirror folder
    how: str
    instructions: str | None = None


def archive_suffix(source: Source) -> str:
    """The archive's extension, from its URL (`.zip`, `.tar.gz`, ...)."""
    name = PurePosixPath(str(source.url).split("?", 1)[0]).name.lower()
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise GptpipeError(f"source {source.name}: cannot tell the archive type of {source.url} "
                       f"(expected one of {', '.join(ARCHIVE_SUFFIXES)})")


def _archive(source: Source, root: Path, upstream: Path | None, http_: Http) -> Mirrored:
    """The archive itself, packed, at `root/<path><ext>`: fetched like any plain file."""
    rel = source.path + archive_suffix(source)
    how = _obtain(rel, source.checksum, source.url, root, upstream, source.name, http_)
    return Mirrored(source.name, (rel,), how)


def mirror_source(source: Source, root: Path, upstream: Path | None = None,
                  http_: Http = Http(), lookup: Callable[[str], Source] | None = None
                  ) -> Mirrored:
    """Put one source into the mirror folder `root` (from `upstream`, a mirror, when given;
    else its URL), verified against its declared checksum. `lookup` (name -> source) finds
    what a `kind: build` source is built from (the built file is stored, as in data/)."""
    if source.kind == "archive":
        return _archive(source, root, upstream, http_)
    if source.kind == "manual" and not (
        (root / source.path).is_file() or (upstream and (upstream / source.path).is_file())
    ):
        return Mirrored(source.name, (source.path,), "missing",
                        " ".join(str(source.instructions).split()))
    # Files, repacked dumps, built and placed manual files: the mirror's layout is data/'s.
    done = fetch_source(source, root, upstream, http_, lookup)
    return Mirrored(source.name, tuple(str(p.relative_to(root)) for p in done.paths), done.how)


def build(cfg: FetchConfig, root: Path, upstream: Path | None = None,
          only: Iterable[str] | None = None, http_: Http = Http()) -> list[Mirrored]:
    """Mirror the sources (those the configuration fetches, or those in `only`) into `root`.

    Raises GptpipeError after trying every source when a manual one is still missing: its
    instructions say where to get it, and the message where to put it.
    """
    root.mkdir(parents=True, exist_ok=True)
    done = []
    for source in select(cfg, only):
        item = mirror_source(source, root, upstream, http_, cfg.source)
        log.info("%s: %s (%s)", item.name, root / item.paths[0], item.how)
        done.append(item)
    missing = [m for m in done if m.how == "missing"]
    if missing:
        lines = [f"  {m.name}: put it at {root / m.paths[0]} -- {m.instructions}"
                 for m in missing]
        raise GptpipeError(f"the mirror {root} lacks {len(missing)} source(s) that only a person "
                           "can fetch:\n" + "\n".join(lines))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(
        "mirror", "download every source declared in params.yaml: fetch into a mirror folder",
        section="fetch",
    )
    parser.add_argument("output", type=Path, metavar="DIR",
                        help="the mirror folder (created; sources already there and verified "
                             "are kept)")
    parser.add_argument("--only", action="extend", nargs="+", metavar="NAME", default=None,
                        help="mirror only these sources (default: all the configuration fetches)")
    parser.add_argument("--corpus", default=None, metavar="NAME",
                        help="the pre-training corpus to mirror (sample or enwiki-20200501; "
                             "default: fetch.corpus, i.e. the preset's)")
    parser.add_argument("--from", dest="upstream", type=Path, metavar="DIR", default=None,
                        help="copy from this mirror instead of downloading (to extend or "
                             "re-verify a mirror, or to add manual sources placed there)")

    def body(args: argparse.Namespace) -> None:
        if args.corpus is not None:
            args.set = [*args.set, f"corpus={args.corpus}"]
        build(load_config(args, "fetch"), args.output, upstream=args.upstream, only=args.only)

    return run_cli("mirror", argv, parser, body)

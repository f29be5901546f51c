"""Resolve every declared source into `data/`: from a mirror folder, or over HTTP(S), verified.

Where a source comes from (first match wins):

1. **cached**: `DATA_DIR/<path>` (and `<index_path>`) already holds the declared checksum: nothing
   is fetched, so reruns are cheap. A file with a wrong checksum is replaced (and logged).
2. **mirror** (`--mirror DIR` or `GPTPIPE_MIRROR`): a local folder laid out like `data/`, for
   air-gapped clusters and CI. A source is found at `MIRROR/<path>` (and `MIRROR/<index_path>`);
   a `repack` source is found there already repacked. A mirror that is set but lacks a file is an
   error naming the missing mirror path: it never falls back to the network.
   An **archive** source is found in the mirror either as the archive itself at
   `MIRROR/<path><ext>` (`ext` one of `ARCHIVE_SUFFIXES`, e.g. `glue/CoLA.zip`; checksum
   verified, then unpacked) or, failing that, as its unpacked folder `MIRROR/<path>/` (copied as
   is: the declared checksum is the archive's, so such a copy is logged as unverified).
3. **download** of `url` with `urllib` (`gptpipe.fetch.download`: timeout, retries with
   backoff on connection errors and 5xx, none on 4xx; a dropped connection resumes with a
   `Range` request). A plain file is streamed into `<path>.part`, which survives a killed run
   (the next one resumes it), and renamed into place only after its size (when declared) and
   checksum matched: a partial or wrong download never sits at the final path.

Kinds: `build` is made from other sources (`gptpipe.fetch.build`: GLUE's MRPC files from the
MSRP downloads) when neither `DATA_DIR` nor the mirror has it, and checked against its checksum;
`file` is stored as is; `archive` (zip or tar, any compression) is unpacked into the
folder `DATA_DIR/<path>/`, refusing members with absolute paths or `..`, and a marker file
(`MARKER`) inside records the archive checksum it came from; `manual` is never downloaded: it
must be in the mirror or already in `DATA_DIR`, else the error gives the source's instructions.
`repack: multistream` turns a single-stream bz2 Wikipedia dump into Wikimedia's multistream
layout plus its index (see `repack_multistream`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterable

from tqdm import tqdm

from ..atomic import atomic_path
from ..config import BUILDERS, FetchConfig, Source
from ..errors import GptpipeError
from ..io import file_digest
from .build import build_glue_mrpc
from .download import CHUNK, Http, download, download_resumable
from .multistream import repack_multistream

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")
MARKER = ".gptpipe-source"  # in an unpacked archive folder: the archive checksum, one line


@dataclass(frozen=True)
class Fetched:
    """What resolving one source did: `how` is 'cached', 'mirror' or 'download'."""

    name: str
    paths: tuple[Path, ...]  # the file or folder, then the index if any
    how: str
    bytes: int  # size on disk of `paths` together
    seconds: float


# --------------------------------------------------------------------------- checksums


def _algo(spec: str) -> str:
    return spec.partition(":")[0]


def _check(actual_hex: str, spec: str, name: str, origin: str | Path) -> None:
    actual = f"{_algo(spec)}:{actual_hex}"
    if actual != spec:
        raise GptpipeError(
            f"source {name}: checksum mismatch for {origin}: expected {spec}, got {actual}"
        )


def _is_cached(path: Path, spec: str, name: str, size: int | None = None) -> bool:
    """True when `path` holds `spec` (and `size` bytes, when given: checked first, as it costs
    no read); a wrong file is logged (the caller replaces it)."""
    if not path.is_file():
        return False
    if size is not None and path.stat().st_size != size:
        log.warning("%s: %s has %d bytes, expected %d: replacing it", name, path,
                    path.stat().st_size, size)
        return False
    actual = f"{_algo(spec)}:{file_digest(path, _algo(spec))}"
    if actual == spec:
        return True
    log.warning("%s: %s has %s, expected %s: replacing it", name, path, actual, spec)
    return False


# --------------------------------------------------------------------------- copy and download


def _pump(src: BinaryIO, dst: BinaryIO, algo: str, total: int | None, label: str) -> str:
    """Copy `src` to `dst` in CHUNKs, hashing on the way; tqdm progress on a TTY if `total`."""
    h = hashlib.new(algo)
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
              file=sys.stderr, leave=False, disable=None if total else True) as bar:
        while block := src.read(CHUNK):
            h.update(block)
            dst.write(block)
            bar.update(len(block))
    return h.hexdigest()


def _copy_file(src: Path, dst: Path, algo: str) -> str:
    """Copy bytes only (no permissions: mirrors are often read-only); returns the hex digest."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        return _pump(fin, fout, algo, src.stat().st_size, src.name)


def _obtain(rel: str, spec: str, url: str | None, data_dir: Path, mirror: Path | None,
            name: str, http_: Http, size: int | None = None) -> str:
    """One plain file into `data_dir/rel`: 'cached', 'mirror' or 'download' (resumable)."""
    dest = data_dir / rel
    if _is_cached(dest, spec, name, size):
        return "cached"
    if mirror is None:
        if url is None:
            raise GptpipeError(f"source {name}: no url for {rel} and no mirror set")
        download_resumable(url, dest, spec, http_, name, size)
        return "download"
    origin = _in_mirror(mirror, rel, name)
    if size is not None and origin.stat().st_size != size:
        raise GptpipeError(f"source {name}: {origin} has {origin.stat().st_size} bytes, "
                           f"expected {size}")
    with atomic_path(dest) as tmp:
        _check(_copy_file(origin, tmp, _algo(spec)), spec, name, origin)
    return "mirror"


def _in_mirror(mirror: Path, rel: str, name: str) -> Path:
    src = mirror / rel
    if not src.is_file():
        raise GptpipeError(
            f"source {name}: {src} not found in the mirror {mirror} "
            "(add it there, or unset the mirror to download it)"
        )
    return src


# --------------------------------------------------------------------------- archives


def _member_parts(name: str, is_dir: bool, strip: int, archive: Path) -> tuple[str, ...]:
    """Path parts of an archive member after `strip` leading folders; refuses escapes."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or (p.parts and p.parts[0].endswith(":")):
        raise GptpipeError(
            f"{archive}: member {name!r} has an absolute path or '..': refusing to unpack"
        )
    if not is_dir and len(p.parts) <= strip:
        raise GptpipeError(f"{archive}: member {name!r} is not inside {strip} folder(s) to strip")
    return p.parts[strip:]


def _unpack(archive: Path, folder: Path, strip: int,
            entries: list[tuple[str, bool, Callable[[], BinaryIO]]]) -> int:
    planned = [(_member_parts(name, d, strip, archive), d, op) for name, d, op in entries]
    for parts, is_dir, open_member in planned:  # every member was checked before this write
        target = folder.joinpath(*parts)
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_member() as data, open(target, "wb") as out:
            shutil.copyfileobj(data, out, CHUNK)
    return sum(1 for _, is_dir, _ in planned if not is_dir)


def unpack(archive: Path, folder: Path, strip: int = 0) -> int:
    """Unpack a zip or tar (any compression) into `folder`; returns the files written.

    Members with absolute paths or `..`, and tar links or special files, are refused before
    anything is written. `strip` leading folders are dropped from every member path.
    """
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            entries = [(i.filename, i.is_dir(), functools.partial(zf.open, i))
                       for i in zf.infolist()]
            return _unpack(archive, folder, strip, entries)
    try:
        tf = tarfile.open(archive, "r:*")
    except tarfile.TarError:
        raise GptpipeError(f"{archive}: neither a zip nor a tar archive") from None
    with tf:
        members = tf.getmembers()
        bad = next((m.name for m in members if not (m.isfile() or m.isdir())), None)
        if bad is not None:
            raise GptpipeError(f"{archive}: member {bad!r} is a link or special file: refusing")
        entries = [(m.name, m.isdir(), functools.partial(tf.extractfile, m)) for m in members]
        return _unpack(archive, folder, strip, entries)


def _copy_tree(src: Path, dst: Path) -> None:
    """Copy a folder's files (bytes only, so a read-only mirror yields a writable copy)."""
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def _obtain_archive(source: Source, data_dir: Path, mirror: Path | None, http_: Http) -> str:
    dest = data_dir / source.path
    marker = dest / MARKER
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == source.checksum:
        return "cached"
    if dest.exists():
        log.warning("%s: %s was not unpacked from %s: replacing it", source.name, dest,
                    source.checksum)
    with atomic_path(dest, is_dir=True) as tmp:
        if mirror is not None:
            _archive_from_mirror(source, mirror, tmp)
        else:
            raw = tmp.parent / f".{dest.name}.tmp-archive-{os.getpid()}"  # swept by atomic_path
            try:
                digest = download(str(source.url), raw, _algo(source.checksum), http_, source.name)
                _check(digest, source.checksum, source.name, source.url)
                unpack(raw, tmp, source.strip_components)
            finally:
                raw.unlink(missing_ok=True)
        (tmp / MARKER).write_text(source.checksum + "\n", encoding="utf-8")
    return "mirror" if mirror is not None else "download"


def _archive_from_mirror(source: Source, mirror: Path, tmp: Path) -> None:
    base = mirror / source.path
    for suffix in ARCHIVE_SUFFIXES:
        archive = base.with_name(base.name + suffix)
        if archive.is_file():
            _check(file_digest(archive, _algo(source.checksum)), source.checksum, source.name,
                   archive)
            unpack(archive, tmp, source.strip_components)
            return
    if base.is_dir():
        log.info("%s: copying the unpacked folder %s (unverified: the checksum is the "
                 "archive's)", source.name, base)
        _copy_tree(base, tmp)
        return
    raise GptpipeError(
        f"source {source.name}: neither {base}{{{','.join(ARCHIVE_SUFFIXES)}}} nor the folder "
        f"{base}/ found in the mirror {mirror}"
    )


def _obtain_repacked(source: Source, data_dir: Path, http_: Http) -> str:
    dest, index = data_dir / source.path, data_dir / str(source.index_path)
    if _is_cached(dest, source.checksum, source.name) and _is_cached(
        index, str(source.index_checksum), source.name
    ):
        return "cached"
    with atomic_path(dest) as tmp, atomic_path(index) as tmp_index:
        raw = tmp.with_name(tmp.name + "-download")  # `.NAME.tmp-*`: swept by atomic_path
        try:
            digest = download(str(source.url), raw, _algo(str(source.url_checksum)), http_,
                              source.name)
            _check(digest, str(source.url_checksum), source.name, source.url)
            pages = repack_multistream(raw, tmp, tmp_index, source.pages_per_stream)
        finally:
            raw.unlink(missing_ok=True)
        where = f"{source.url} repacked ({pages} pages)"
        _check(file_digest(tmp, _algo(source.checksum)), source.checksum, source.name, where)
        _check(file_digest(tmp_index, _algo(str(source.index_checksum))),
               str(source.index_checksum), f"{source.name} (index)", where)
    return "download"


# --------------------------------------------------------------------------- resolution


def _manual(source: Source, data_dir: Path, mirror: Path | None) -> str:
    dest = data_dir / source.path
    if _is_cached(dest, source.checksum, source.name):
        return "cached"
    if mirror is not None and (mirror / source.path).is_file():
        return _obtain(source.path, source.checksum, None, data_dir, mirror, source.name, Http())
    looked = f" (not in the mirror {mirror} either)" if mirror is not None else ""
    how_to = " ".join(str(source.instructions).split())
    raise GptpipeError(
        f"source {source.name} must be fetched by hand: {how_to} -- put it at {dest}{looked}"
    )


def _obtain_built(source: Source, data_dir: Path, mirror: Path | None, http_: Http,
                  lookup: Callable[[str], Source] | None) -> str:
    """`kind: build`: cached, else from the mirror, else made from its `build_from` sources
    (each resolved like any source first) and checked against `checksum`."""
    dest = data_dir / source.path
    if _is_cached(dest, source.checksum, source.name):
        return "cached"
    if mirror is not None and (mirror / source.path).is_file():
        return _obtain(source.path, source.checksum, None, data_dir, mirror, source.name, http_)
    if lookup is None:
        raise GptpipeError(f"source {source.name}: is built from {', '.join(source.build_from)}"
                           ", but they were not given")
    split, keys = BUILDERS[str(source.builder)]
    inputs = {}
    try:
        for key, name in zip(keys, source.build_from):
            inputs[key] = fetch_source(lookup(name), data_dir, mirror, http_).paths[0]
    except GptpipeError as exc:
        by_hand = " ".join(str(source.instructions or "").split())
        raise GptpipeError(
            f"source {source.name}: cannot build {dest}: {exc}"
            + (f" (or by hand: {by_hand} -- put it at {dest})" if by_hand else "")) from None
    with atomic_path(dest) as tmp:
        build_glue_mrpc(split, inputs, tmp)
        _check(file_digest(tmp, _algo(source.checksum)), source.checksum, source.name,
               f"{dest} built from {', '.join(source.build_from)}")
    return "built"


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def fetch_source(source: Source, data_dir: str | os.PathLike,
                 mirror: str | os.PathLike | None = None, http_: Http = Http(),
                 lookup: Callable[[str], Source] | None = None) -> Fetched:
    """Resolve one source into `data_dir` (see the module docstring) and log one line.

    `lookup`: name -> declared source, for a `kind: build` source's `build_from`."""
    data_dir = Path(data_dir)
    mirror = Path(mirror) if mirror is not None else None
    if mirror is not None and not mirror.is_dir():
        raise GptpipeError(f"mirror folder {mirror} does not exist")
    t0 = time.perf_counter()
    if source.kind == "manual":
        how = _manual(source, data_dir, mirror)
    elif source.kind == "build":
        how = _obtain_built(source, data_dir, mirror, http_, lookup)
    elif source.kind == "archive":
        how = _obtain_archive(source, data_dir, mirror, http_)
    elif source.repack and mirror is None:
        how = _obtain_repacked(source, data_dir, http_)
    else:
        how = _obtain(source.path, source.checksum, source.url, data_dir, mirror, source.name,
                      http_, source.size)
        if source.index_path:
            index_how = _obtain(source.index_path, str(source.index_checksum), source.index_url,
                                data_dir, mirror, f"{source.name} (index)", http_)
            how = index_how if how == "cached" else how
    paths = tuple(data_dir / p for p in _relative_outputs(source))
    done = Fetched(source.name, paths, how, sum(map(_size, paths)), time.perf_counter() - t0)
    log.info("%s: %s (%s, %.2f MB, %.2f s)", source.name, paths[0], how, done.bytes / 1e6,
             done.seconds)
    return done


def resolve(source: Source, data_dir: str | os.PathLike, mirror: str | os.PathLike | None = None
            ) -> Path:
    """Resolve one source; returns `data_dir/<path>` (a folder for `kind: archive`)."""
    return fetch_source(source, data_dir, mirror).paths[0]


def select(cfg: FetchConfig, only: Iterable[str] | None = None) -> list[Source]:
    """The sources named in `only` (unknown names fail), else those the configuration fetches
    (`cfg.active_sources`: the selected corpus's parts, then the other sources)."""
    if only is None:
        return list(cfg.active_sources)
    return [cfg.source(name) for name in dict.fromkeys(only)]


def resolve_all(cfg: FetchConfig, data_dir: str | os.PathLike,
                mirror: str | os.PathLike | None = None,
                only: Iterable[str] | None = None) -> list[Path]:
    """Resolve the sources (as `select` picks them); returns every path produced."""
    return [p for s in select(cfg, only)
            for p in fetch_source(s, data_dir, mirror, lookup=cfg.source).paths]


def _relative_outputs(source: Source) -> list[str]:
    return [source.path] + ([source.index_path] if source.index_path else [])


def output_paths(cfg: FetchConfig, names: Iterable[str] | None = None) -> list[str]:
    """Paths relative to `data/` that fetch writes: each `path`, then its `index_path` if any
    (of the sources in `names`, when given, else of those `select` gives; declared order).

    A `kind: archive` source's path is a folder (Snakemake: `directory(...)`).
    """
    keep = {s.name for s in select(cfg)} if names is None else set(names)
    return [p for s in (*cfg.corpus_parts, *cfg.sources) if s.name in keep
            for p in _relative_outputs(s)]

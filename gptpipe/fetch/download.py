"""HTTP(S) downloads that survive dropped connections, verified before they count.

A dump part is hundreds of MB and the corpus 18 GB, so a dropped connection must not start a
file over. `download` streams into a file and, when the connection drops (or times out, or the
server answers 5xx), asks for the rest with `Range: bytes=N-`, N being the bytes it already
holds: a `206 Partial Content` answer is appended; a `200` (a server that ignores ranges) starts
the file over. Failures in a row are bounded (`Http.retries`, with exponential backoff); an
attempt that received bytes resets the count, so a long download over a flaky link finishes.

`download_resumable` keeps the bytes in `<dest>.part` between processes: a rerun of fetch after
a kill or a crash goes on where the last one stopped (the bytes already there are hashed again,
which is much faster than fetching them). Only a file whose size and whole-file checksum match
the declaration is renamed to `dest` (one atomic rename); a wrong one is deleted, `.part`
included, and the error says what was expected and what came.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from .. import __version__
from ..errors import GptpipeError

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes per read while copying, downloading and hashing
USER_AGENT = f"gptpipe/{__version__} (GPT-1 reproduction; python-urllib)"
PART_SUFFIX = ".part"  # `<dest>.part`: a resumable download's bytes so far


@dataclass(frozen=True)
class Http:
    """Network behaviour of downloads (runtime concerns, so not in params.yaml)."""

    timeout_s: float = 60.0  # per connect and per read
    retries: int = 2  # failed attempts in a row (no new bytes) tolerated after the first
    backoff_s: float = 2.0  # wait before retry k (k-th failure in a row) is backoff_s * 2**k


class SizeMismatch(GptpipeError):
    """The server sent a whole file of another size than declared."""


class _Progress:
    """The bytes of one file so far: its running hash and length, appended to `out`."""

    def __init__(self, out: BinaryIO, algo: str, have: int, hasher) -> None:
        self.out, self.algo, self.have, self.hash = out, algo, have, hasher

    def restart(self) -> None:
        self.out.seek(0)
        self.out.truncate()
        self.have, self.hash = 0, hashlib.new(self.algo)


def _label(url: str, name: str) -> str:
    return name or url.rsplit("/", 1)[-1]


def _start(resp: http.client.HTTPResponse, got: _Progress, url: str) -> int | None:
    """Prepare `got` for the body of `resp`; returns the bytes the body should hold (None when
    the server does not say). A 200 restarts the file; a 206 must continue where it stopped."""
    length = resp.headers.get("Content-Length")
    length_n = int(length) if length and length.isdigit() else None
    if resp.status == 206:
        m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range") or "")
        if not m or int(m.group(1)) != got.have:
            raise GptpipeError(f"{url}: asked for bytes {got.have}- and got the range "
                               f"{resp.headers.get('Content-Range')!r}")
        return length_n
    if got.have:
        log.warning("%s: the server ignored the range request: starting over", url)
        got.restart()
    return length_n


def _attempt(url: str, got: _Progress, http_: Http, label: str, size: int | None) -> None:
    """One request: fetch from `got.have` on and append to `got`; raises on a short body."""
    headers = {"User-Agent": USER_AGENT}
    if got.have:
        headers["Range"] = f"bytes={got.have}-"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=http_.timeout_s) as resp:
        expect = _start(resp, got, url)
        total = size if size is not None else (got.have + expect if expect is not None else None)
        start = got.have
        with tqdm(total=total, initial=got.have, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=label, file=sys.stderr, leave=False,
                  disable=None if total else True) as bar:
            while block := resp.read(CHUNK):
                got.hash.update(block)
                got.out.write(block)
                got.have += len(block)
                bar.update(len(block))
        if expect is not None and got.have - start != expect:
            raise http.client.IncompleteRead(b"", expect - (got.have - start))


def _range_done(got: _Progress, size: int | None, url: str) -> bool:
    """True when the file already holds `size` bytes (nothing left to ask for). More than
    `size` cannot be right: start over."""
    if size is None or got.have < size:
        return False
    if got.have > size:
        log.warning("%s: %d bytes kept, more than the %d declared: starting over", url,
                    got.have, size)
        got.restart()
        return False
    return True


def _fetch_into(url: str, got: _Progress, http_: Http, name: str, size: int | None) -> None:
    """Fill `got` with the whole of `url`, resuming after failures (see the module docstring)."""
    failures, problem = 0, ""
    while not _range_done(got, size, url):
        before = got.have
        try:
            _attempt(url, got, http_, _label(url, name), size)
            return
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code} {exc.reason}"
            if exc.code == 416 and got.have:  # the range is past the end: start over
                got.restart()
            elif exc.code < 500:  # the server answered: retrying will not help
                raise GptpipeError(f"source {name}: download failed: {url}: {problem}") from None
        except http.client.IncompleteRead as exc:
            problem = f"the connection closed {exc.expected} bytes short"
        except (urllib.error.URLError, ConnectionError, TimeoutError,
                http.client.HTTPException) as exc:
            problem = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
        failures = 0 if got.have > before else failures + 1
        if failures > http_.retries:
            stuck = f" in a row without progress, at byte {got.have}" if got.have else ""
            raise GptpipeError(f"source {name}: download failed: {url}: {problem} (after "
                               f"{failures} tries{stuck})")
        wait = http_.backoff_s * 2 ** max(failures - 1, 0)
        log.warning("%s: %s after %d bytes; retrying in %.1f s%s", url, problem, got.have, wait,
                    f" from byte {got.have}" if got.have else "")
        time.sleep(wait)


def _check_size(path: Path, size: int | None, name: str, url: str) -> None:
    if size is not None and path.stat().st_size != size:
        raise SizeMismatch(f"source {name}: {url} gave {path.stat().st_size} bytes, expected "
                           f"{size}")


def download(url: str, dst: Path, algo: str, http_: Http = Http(), name: str = "",
             size: int | None = None, resume: bool = False) -> str:
    """Stream `url` into `dst`; returns the whole file's hex digest (`algo`). Dropped
    connections are resumed with Range requests. `resume`: bytes already in `dst` count as
    received (hashed first). `size`, when given, is checked. Errors name `name` and the URL."""
    dst = Path(dst)
    hasher, have = hashlib.new(algo), 0
    if resume and dst.is_file():
        with open(dst, "rb") as f:
            while block := f.read(CHUNK):
                hasher.update(block)
                have += len(block)
        if have:
            log.info("%s: resuming %s after %d bytes", name or url, dst, have)
    with open(dst, "r+b" if have else "wb") as out:
        out.seek(have)
        got = _Progress(out, algo, have, hasher)
        _fetch_into(url, got, http_, name, size)
        out.truncate(got.have)
    _check_size(dst, size, name, url)
    return got.hash.hexdigest()


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + PART_SUFFIX)


def download_resumable(url: str, dest: Path, spec: str, http_: Http = Http(), name: str = "",
                       size: int | None = None) -> None:
    """Download `url` to `dest` through `<dest>.part` (kept across processes, see the module
    docstring); `spec` is the declared `algo:hex` checksum. On a wrong size or checksum both
    files are gone and GptpipeError says what came."""
    algo, _, want = spec.partition(":")
    part = part_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        digest = download(url, part, algo, http_, name, size, resume=True)
    except SizeMismatch:
        part.unlink(missing_ok=True)  # another file than declared: nothing worth resuming
        raise
    except GptpipeError:
        if part.is_file() and not part.stat().st_size:
            part.unlink()  # nothing to resume: leave no trace
        raise
    if digest != want:
        part.unlink(missing_ok=True)  # wrong bytes: the next try starts from zero
        raise GptpipeError(f"source {name}: checksum mismatch for {url}: expected {spec}, got "
                           f"{algo}:{digest} (the download was deleted)")
    os.replace(part, dest)

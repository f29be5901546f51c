"""Atomic outputs: a stage's file or folder appears at its final path complete, or not at all.

Everything is first written to a hidden sibling (same filesystem, so the final `rename` is
atomic) and renamed into place only when the writer finished without an exception. A killed
job therefore leaves at most a `.tmp-*` sibling behind, which the next run removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterator


def _tmp_sibling(path: Path, is_dir: bool) -> Path:
    """A new, uniquely named sibling. Created with the modes a plain `mkdir`/`open` gives
    (0777/0666 less the umask), not tempfile's private 0700/0600: once renamed it is the output,
    and it must be as readable as any other file the user writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    while True:
        tmp = path.parent / f".{path.name}.tmp-{secrets.token_hex(6)}"
        try:
            if is_dir:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


def _remove_stale(path: Path) -> None:
    """Remove leftovers of earlier interrupted writes of `path` (only ours: `.NAME.tmp-*`)."""
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path` in one rename.

    For a folder, an existing `path` is moved aside first and removed after the swap, so the
    final path only ever holds a complete old or a complete new folder.
    """
    path = Path(path)
    tmp = _tmp_sibling(path, is_dir)
    try:
        yield tmp
        if is_dir:
            if path.exists():
                old = path.parent / f".{path.name}.tmp-old-{os.getpid()}"
                os.rename(path, old)
                os.rename(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")

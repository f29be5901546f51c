"""What reading one task split yields besides examples: the `LoadReport` and its parts.

Shared by the format readers in `loaders`: a mutable `Collector` tallies records while a file
is read and is frozen into a `LoadReport` at the end.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

from ..errors import GptpipeError
from .spec import Example, TaskSpec

BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Malformed:
    """A record that could not be read. `line` is 1-based: the file's line for TSV/JSONL/CSV,
    the question number within the article file for RACE."""

    file: str
    line: int
    why: str


@dataclass(frozen=True)
class LoadReport:
    """What reading one split did: `rows` data records read (header excluded) =
    `kept` + malformed + sum(`dropped`)."""

    file: str
    rows: int
    kept: int
    malformed: tuple[Malformed, ...]
    dropped: Mapping[str, int]  # records left out by a rule, by rule name

    def to_dict(self) -> dict:
        return {
            "file": self.file, "rows": self.rows, "kept": self.kept,
            "malformed": [{"file": m.file, "line": m.line, "why": m.why} for m in self.malformed],
            "dropped": dict(self.dropped),
        }


@dataclass
class Collector:
    """Mutable tally while one split is read; frozen into a LoadReport at the end.

    Memory stays bounded by what is kept, never by the file: `keep` filters examples as they
    are read (a rule that is not a malformed or dropped record, e.g. a held-out id set);
    `limit` > 0 keeps only the `limit` examples with the smallest `rank(id)` (pruned as it
    goes, restored to file order by `finish`); `ids_only` keeps ids, not examples. `kept`
    counts every example that passed `keep`, before the limit. Duplicate ids fail at once.
    """

    file: Path
    rows: int = 0
    examples: list[Example] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # line of each kept example, for errors
    malformed: list[Malformed] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    keep: Callable[[Example], bool] | None = None
    limit: int = 0
    rank: Callable[[str], bytes] | None = None
    ids_only: bool = False
    ids: list[str] = field(default_factory=list)  # with ids_only: every kept id, in file order
    kept: int = 0
    _seen: dict[str, int] = field(default_factory=dict)

    def bad(self, line: int, why: str, where: Path | None = None) -> None:
        self.malformed.append(Malformed(str(where or self.file), line, why))

    def add(self, example: Example, line: int) -> None:
        first = self._seen.get(example.id)
        if first is not None:
            raise GptpipeError(f"{self.file}:{line}: duplicate id {example.id!r} (first at "
                               f"line {first})")
        self._seen[example.id] = line
        if self.keep is not None and not self.keep(example):
            return
        self.kept += 1
        if self.ids_only:
            self.ids.append(example.id)
            return
        self.examples.append(example)
        self.lines.append(line)
        if self.limit > 0 and len(self.examples) >= 2 * self.limit:
            self._prune()

    def _prune(self) -> None:
        if self.limit <= 0 or len(self.examples) <= self.limit or self.rank is None:
            return
        rank = self.rank
        order = sorted(range(len(self.examples)), key=lambda i: rank(self.examples[i].id))
        keep = sorted(order[:self.limit])
        self.examples = [self.examples[i] for i in keep]
        self.lines = [self.lines[i] for i in keep]

    def finish(self) -> None:
        """Apply the limit for the last time (file order is kept throughout)."""
        self._prune()


def parse_label(raw: str, spec: TaskSpec, where: str) -> int | float:
    """Class index of `raw` (as the files spell it), or the float score of a regression task."""
    if spec.kind == "regression":
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):  # float() also accepts "nan" and "inf"
            raise GptpipeError(f"{where}: unknown label {raw!r} (expected a number)")
        return value
    try:
        return spec.label_names.index(raw)
    except ValueError:
        raise GptpipeError(
            f"{where}: unknown label {raw!r} (expected one of {', '.join(spec.label_names)})"
        ) from None


def raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, bytes without its line end), split on `\\n` only."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if n == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            yield n, raw.rstrip(b"\r\n")
